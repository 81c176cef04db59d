//! A controller and three node daemons as real processes on loopback, driven through the `replbd`
//! CLI binary: the whole lifecycle with data written through NBD and a node outage with resync;
//! a controller restart keeping its SQLite state; bad input with clear errors; metrics and health;
//! node evacuation and auto-evict of a lost node, with the replacements resynced; replicas added
//! and removed while a Primary serves one NBD connection throughout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Cluster, free_port, http_get, qemu_io};

#[test]
fn lifecycle_through_the_cli() {
    let http = format!("127.0.0.1:{}", free_port());
    let mut c = Cluster::start(3, &["--http", &http], &[]);
    c.register_nodes("file");
    let out = c.ok(&["n", "l"]);
    assert!(out.contains("| Node ") && out.contains("| Online |"), "{out}");
    let pools = c.json(&["sp", "l"]);
    let p1 = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pool1" && p["node"] == "n1")
        .unwrap();
    assert_eq!(p1["driver"], "FILE");
    assert!(p1["free_bytes"].as_u64().unwrap() > 0);

    c.ok(&["rd", "c", "r0"]);
    c.ok(&["vd", "c", "r0", "32MiB"]);
    let out = c.ok(&["r", "c", "r0", "--auto-place", "3"]);
    assert_eq!(out.matches("SUCCESS: n").count(), 3, "{out}");
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "60"]);
    let list = c.ok(&["resource", "list"]);
    assert!(
        list.contains("| ResourceName | Node | Port | Usage  | Conns |    State | CreatedOn"),
        "{list}"
    );
    assert_eq!(list.matches("| UpToDate |").count(), 3, "{list}");

    // Data through the front end of n1.
    c.ok(&["resource", "primary", "n1", "r0"]);
    // The agent's reply carries its state: the new role and the device show at once.
    let r1 = c.replica("r0", "n1");
    assert_eq!(r1["usage"], "InUse", "{r1}");
    assert!(
        r1["volumes"][0]["device"]
            .as_str()
            .unwrap()
            .starts_with("nbd+unix://"),
        "{r1}"
    );
    let dev1 = c.device("r0", "n1");
    qemu_io(&dev1, "write -P 0x5a 0 2M");

    // n3 stops: the controller shows it Unknown, its peers show the broken connection.
    c.node("n3").stop();
    c.wait(Duration::from_secs(20), "n3 is Unknown and n1 misses it", || {
        c.replica("r0", "n3")["state"] == "Unknown"
            && c.replica("r0", "n1")["conns"]
                .as_str()
                .unwrap_or_default()
                .contains("(n3)")
    });
    let nodes = c.ok(&["node", "list"]);
    assert!(nodes.contains("OFFLINE"), "{nodes}");
    let list = c.ok(&["resource", "list"]);
    assert!(list.contains("Unknown"), "{list}");
    qemu_io(&dev1, "write -P 0xa5 2M 2M");

    // n3 returns, resyncs and is UpToDate again; the data is all there.
    c.node("n3").restart();
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "90"]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(c.replica("r0", n)["state"], "UpToDate");
    }
    c.ok(&["resource", "secondary", "n1", "r0"]);
    c.ok(&["resource", "primary", "n3", "r0"]);
    let dev3 = c.device("r0", "n3");
    qemu_io(&dev3, "read -P 0x5a 0 2M");
    qemu_io(&dev3, "read -P 0xa5 2M 2M");
    c.ok(&["resource", "secondary", "n3", "r0"]);

    let vols = c.ok(&["volume", "list"]);
    assert!(
        vols.contains("| Resource | Node | StoragePool | VolNr | DeviceName"),
        "{vols}"
    );
    let metrics = http_get(&http, "/metrics");
    assert!(
        metrics.contains("replbd_controller_nodes{state=\"online\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("replbd_controller_resources{state=\"UpToDate\"} 3"),
        "{metrics}"
    );
    assert!(http_get(&http, "/health").contains("ok"));

    // Deleting the definition removes every replica and its volume file.
    c.ok(&["resource-definition", "delete", "r0"]);
    assert!(c.json(&["resource", "list"]).as_array().unwrap().is_empty());
    for n in ["n1", "n2", "n3"] {
        let f = c.path().join(format!("pool-{n}/r0_00000.img"));
        assert!(!f.exists(), "{} was not deleted", f.display());
    }
}

#[test]
fn two_replicas_get_a_tiebreaker_and_plus_one_extends() {
    let c = Cluster::start(3, &[], &[]);
    c.register_nodes("filethin");
    c.ok(&["resource-group", "create", "rg1", "--place-count", "2"]);
    let out = c.ok(&["resource-group", "spawn-resources", "rg1", "r1", "16MiB"]);
    assert!(out.contains("diskless tiebreaker"), "{out}");
    c.ok(&["resource", "wait-sync", "r1", "--timeout", "60"]);
    let list = c.json(&["resource", "list", "-r", "r1"]);
    let states: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "UpToDate").count(),
        2,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "TieBreaker").count(),
        1,
        "{states:?}"
    );
    // +1 on a node that already has the diskless tiebreaker is not possible: only n-with-tb left
    // does not count as a new diskful node, so the request names why.
    let err = c.fails(&["resource", "create", "r1", "--auto-place", "+1"]);
    assert!(
        err.contains("cannot place 1 more diskful replica(s) of r1"),
        "{err}"
    );
}

#[test]
fn controller_restart_keeps_all_state() {
    let mut c = Cluster::start(3, &[], &[]);
    c.register_nodes("filethin");
    c.ok(&["rd", "c", "keep"]);
    c.ok(&["vd", "c", "keep", "16MiB"]);
    c.ok(&["r", "c", "keep", "--auto-place", "3"]);
    c.ok(&["node", "set-property", "n1", "zone", "a", "--aux"]);
    c.ok(&["resource", "wait-sync", "keep", "--timeout", "60"]);
    let before = (
        c.json(&["node", "list"]),
        c.json(&["resource-definition", "list"]),
        c.json(&["volume-definition", "list"]),
    );
    let ids_before: Vec<u64> = c
        .json(&["resource", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_u64().unwrap())
        .collect();
    let ctl = c.controller.as_mut().unwrap();
    ctl.stop();
    ctl.restart();
    c.wait(Duration::from_secs(20), "the controller is back", || {
        c.cli(&["controller", "version"]).status.success()
    });
    c.wait(Duration::from_secs(30), "every node is Online again", || {
        c.json(&["node", "list"])
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "Online")
    });
    assert_eq!(c.json(&["node", "list"]), before.0);
    assert_eq!(c.json(&["resource-definition", "list"]), before.1);
    assert_eq!(c.json(&["volume-definition", "list"]), before.2);
    let ids_after: Vec<u64> = c
        .json(&["resource", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids_after, ids_before);
    c.ok(&["resource", "wait-sync", "keep", "--timeout", "60"]);
    let props = c.ok(&["node", "list-properties", "n1"]);
    assert!(props.contains("Aux/zone") && props.contains("| a "), "{props}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let c = Cluster::start(2, &[], &[]);
    c.register_nodes("filethin");
    let e = c.fails(&["node", "delete", "n9"]);
    assert!(e.contains("node n9 does not exist (known: n1, n2)"), "{e}");
    assert!(e.contains("error report"), "{e}");
    let e = c.fails(&["node", "create", "n1", "127.0.0.1"]);
    assert!(e.contains("node n1 already exists"), "{e}");
    let e = c.fails(&["node", "create", "9bad", "127.0.0.1"]);
    assert!(e.contains("must start with a letter"), "{e}");
    c.ok(&["rd", "c", "r0"]);
    let e = c.fails(&["rd", "c", "r0"]);
    assert!(e.contains("resource definition r0 already exists"), "{e}");
    let e = c.fails(&["vd", "c", "r0", "10XB"]);
    assert!(e.contains("invalid size unit"), "{e}");
    let e = c.fails(&["vd", "c", "r0", "0B"]);
    assert!(e.contains("size of 0"), "{e}");
    let e = c.fails(&["vd", "c", "r0", "64"]);
    assert!(e.contains("has no unit"), "{e}");
    c.ok(&["vd", "c", "r0", "16MiB"]);
    let e = c.fails(&["r", "c", "r0", "--auto-place", "3"]);
    assert!(
        e.contains("cannot place 3 more diskful replica(s) of r0: only 2 node(s) qualify (n1, n2)"),
        "{e}"
    );
    let e = c.fails(&["r", "c", "n7", "r0"]);
    assert!(e.contains("node n7 does not exist"), "{e}");
    let e = c.fails(&["sp", "c", "file", "n1", "p2", "relative/dir"]);
    assert!(e.contains("absolute path"), "{e}");
    let e = c.fails(&["sp", "c", "zfs", "n1", "z1", "tank"]);
    assert!(e.contains("zfs"), "{e}");
    let e = c.fails(&["resource", "primary", "n1", "nope"]);
    assert!(e.contains("resource nope on node n1 does not exist"), "{e}");
    let reports = c.json(&["error-reports", "list"]);
    assert!(reports.as_array().unwrap().len() >= 5, "{reports}");
    let id = reports[0]["id"].as_str().unwrap().to_owned();
    let shown = c.ok(&["error-reports", "show", &id]);
    assert!(shown.contains(&id) && shown.contains("Message:"), "{shown}");
    // No controller at all: exit status 3 and the reason.
    let o = Command::new(support::replbd())
        .args([
            "--controllers",
            &format!("127.0.0.1:{}", free_port()),
            "node",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no active controller"));
}

/// The nodes holding a replica of `res` (diskful or not), sorted.
fn holders(c: &Cluster, res: &str) -> Vec<String> {
    let mut v: Vec<String> = c
        .json(&["resource", "list", "-r", res])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn evacuation_and_auto_evict_move_replicas_and_keep_the_data() {
    let mut c = Cluster::start(4, &["--auto-evict-after", "3s"], &[]);
    c.register_nodes("filethin");
    c.ok(&["rd", "c", "r0"]);
    c.ok(&["vd", "c", "r0", "16MiB"]);
    c.ok(&["r", "c", "n1", "n2", "n3", "r0"]);
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "60"]);
    c.ok(&["resource", "primary", "n1", "r0"]);
    qemu_io(&c.device("r0", "n1"), "write -P 0x11 0 1M");
    c.ok(&["resource", "secondary", "n1", "r0"]);

    // Evacuating n3: a replacement on n4 (the only free node), n3's replica goes once n4 is UpToDate.
    let out = c.ok(&["node", "evacuate", "n3"]);
    assert!(out.contains("r0 on n3 will be removed"), "{out}");
    c.wait(Duration::from_secs(60), "r0 moved from n3 to n4", || {
        holders(&c, "r0") == ["n1", "n2", "n4"]
    });
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "60"]);
    // An evacuated node takes nothing new until it is restored.
    let e = c.fails(&["r", "c", "r0", "--auto-place", "+1"]);
    assert!(e.contains("cannot place 1 more diskful replica(s) of r0"), "{e}");
    c.ok(&["node", "restore", "n3"]);

    // n2 goes away for longer than --auto-evict-after: EVICTED, its replica placed again on n3.
    c.node("n2").stop();
    c.wait(
        Duration::from_secs(60),
        "n2 is evicted and r0 re-placed on n3",
        || holders(&c, "r0") == ["n1", "n3", "n4"],
    );
    let nodes = c.ok(&["node", "list"]);
    assert!(nodes.contains("EVICTED"), "{nodes}");
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "60"]);
    for n in ["n1", "n3", "n4"] {
        assert_eq!(c.replica("r0", n)["state"], "UpToDate", "{n}");
    }

    // Both replacements were filled by resync: the data written on n1 reads back on n3 and n4.
    for n in ["n3", "n4"] {
        c.ok(&["resource", "primary", n, "r0"]);
        qemu_io(&c.device("r0", n), "read -P 0x11 0 1M");
        c.ok(&["resource", "secondary", n, "r0"]);
    }
    let reports = c.ok(&["error-reports", "list"]);
    assert!(!reports.contains("was not evicted"), "{reports}");
}

#[test]
fn a_primary_keeps_serving_while_replicas_are_added_and_removed() {
    let c = Cluster::start(3, &[], &[]);
    c.register_nodes("filethin");
    c.ok(&["rd", "c", "r0"]);
    c.ok(&["vd", "c", "r0", "16MiB"]);
    c.ok(&["r", "c", "n1", "n2", "r0"]);
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "60"]);
    c.ok(&["resource", "primary", "n1", "r0"]);
    let dev = c.device("r0", "n1");
    // One NBD connection for the whole change: written before, read and written after. Were the
    // resource restarted on n1 (as it was before peers changed in place), its server would go
    // and this connection with it.
    let client = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x21 0 1M", "-c", "sleep 6000"])
        .args([
            "-c",
            "read -P 0x21 0 1M",
            "-c",
            "write -P 0x22 1M 1M",
            "-c",
            "read -P 0x22 1M 1M",
        ])
        .arg(&dev)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io (qemu-utils; scripts/install-deps.sh installs it)");
    std::thread::sleep(Duration::from_millis(1500));
    c.ok(&["r", "c", "n3", "r0"]);
    c.wait(Duration::from_secs(30), "n3 holds r0", || {
        holders(&c, "r0") == ["n1", "n2", "n3"]
    });
    c.ok(&["r", "d", "n2", "r0"]);
    c.wait(Duration::from_secs(30), "n2 no longer holds r0", || {
        holders(&c, "r0") == ["n1", "n3"]
    });
    let o = client.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let log = std::fs::read_to_string(c.path().join("n1.log")).unwrap_or_default();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("adjusted") || l.contains("restarting"))
        .collect();
    assert!(
        o.status.success() && !out.contains("failed") && out.matches("read 1048576/1048576").count() == 2,
        "the NBD client did not get through the change: {out}{}\nn1's log: {changes:#?}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(c.replica("r0", "n1")["role"], "Primary");
    c.ok(&["resource", "wait-sync", "r0", "--timeout", "60"]);
    assert_eq!(c.replica("r0", "n3")["state"], "UpToDate");
    // n3 got everything: both patterns read back there.
    c.ok(&["resource", "secondary", "n1", "r0"]);
    c.ok(&["resource", "primary", "n3", "r0"]);
    qemu_io(&c.device("r0", "n3"), "read -P 0x21 0 1M");
    qemu_io(&c.device("r0", "n3"), "read -P 0x22 1M 1M");
}
