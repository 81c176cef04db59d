//! `replbd-node daemon` as real processes: three daemons on loopback, each with its own TOML file
//! and file-backed disk, driven by the real admin commands. Data goes through the NBD export with
//! `qemu-io` (skipped with a printed reason when it is not installed) and is checked on the
//! replicas' disks; status, events, metrics, shutdown, crash recovery and every admin error path
//! are checked against exact states and messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod daemon_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_support::{
    Cluster, EventStream, NAMES, data_area, field, http_get, installed, metadata_clean, qemu_io, wait_until,
};
use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};

/// Byte `offset..offset+len` of a node's data (internal metadata: the data starts at 0).
fn data(c: &Cluster, i: usize, offset: usize, len: usize) -> Vec<u8> {
    let bytes = std::fs::read(&c.nodes[i].disk).unwrap();
    bytes[offset..offset + len].to_vec()
}

#[test]
fn three_daemons_replicate_through_nbd_and_shut_down_cleanly() {
    let mut c = Cluster::new();
    c.start_all();
    // Before `up`: configured but down.
    let s = c.status(0);
    assert!(!s.up && s.role.is_none() && s.peers.is_empty(), "{s:#?}");
    assert_eq!(c.ok(0, &["status"]), "r0 down (node alpha)\n");
    c.up_connected();

    // Every node sees the others by name, all Secondary and UpToDate.
    for (i, name) in NAMES.iter().enumerate() {
        let s = c.status(i);
        assert_eq!((s.node.as_str(), s.node_id), (*name, i as u8));
        assert_eq!(
            (s.role, s.disk),
            (Some(Role::Secondary), Some(DiskState::UpToDate))
        );
        let names: Vec<&str> = s.peers.iter().map(|p| p.name.as_str()).collect();
        let others: Vec<&str> = NAMES.iter().copied().filter(|n| n != name).collect();
        assert_eq!(names, others);
        assert_eq!(s.front_end.state, "stopped");
        assert!(s.size_bytes > 30 << 20, "{}", s.size_bytes);
    }

    let out = c.ok(0, &["primary", "r0"]);
    assert!(out.contains("r0 is Primary; NBD export r0 at unix:"), "{out}");
    let s = c.status(0);
    assert_eq!(s.role, Some(Role::Primary));
    assert_eq!(s.front_end.state, "serving");
    assert_eq!(
        s.front_end.address.as_deref(),
        Some(format!("unix:{}", c.nodes[0].nbd.display()).as_str())
    );
    for i in 1..3 {
        c.wait_status(i, "alpha seen as Primary", |s| {
            s.peer("alpha").is_some_and(|p| p.role == Role::Primary)
        });
    }
    // A Secondary serves nothing.
    assert!(!c.nodes[1].nbd.exists());

    if installed("qemu-io") {
        qemu_io(
            &c.nodes[0].nbd,
            &[
                "write -P 0xab 0 1M",
                "write -P 0xcd 4M 64k",
                "flush",
                "read -P 0xab 0 1M",
                "read -P 0xcd 4M 64k",
            ],
        );
        // Protocol C: the data is on both replicas' disks.
        for (i, name) in NAMES.iter().enumerate().skip(1) {
            assert!(
                data(&c, i, 0, 1 << 20).iter().all(|b| *b == 0xab),
                "{name} differs"
            );
            assert!(
                data(&c, i, 4 << 20, 64 << 10).iter().all(|b| *b == 0xcd),
                "{name} differs"
            );
        }
    } else {
        println!("SKIPPED: the NBD data checks: qemu-io is not installed (apt-get install qemu-utils)");
    }

    // disconnect / connect by peer name; writes while disconnected are counted out of sync.
    assert_eq!(
        c.ok(0, &["disconnect", "r0", "beta"]),
        "r0: disconnected from beta\n"
    );
    let s = c.wait_status(0, "beta StandAlone", |s| {
        s.peer("beta")
            .is_some_and(|p| p.connection == ConnectionState::StandAlone)
    });
    assert_eq!(s.peer("gamma").unwrap().connection, ConnectionState::Connected);
    assert_eq!(s.peer("beta").unwrap().replication, ReplicationState::Off);
    let text = c.ok(0, &["status", "r0"]);
    assert!(text.contains("  beta connection:StandAlone\n"), "{text}");
    if installed("qemu-io") {
        qemu_io(&c.nodes[0].nbd, &["write -P 0x11 8M 128k"]);
        let s = c.status(0);
        assert_eq!(s.peer("beta").unwrap().out_of_sync_bytes, 128 << 10);
        assert_eq!(s.peer("gamma").unwrap().out_of_sync_bytes, 0);
    }
    assert_eq!(c.ok(0, &["connect", "r0", "beta"]), "r0: connecting to beta\n");
    c.wait_status(0, "beta Connected", |s| {
        s.peer("beta")
            .is_some_and(|p| p.connection == ConnectionState::Connected)
    });

    // secondary stops the front end; down closes everything.
    assert_eq!(c.ok(0, &["secondary", "r0"]), "r0 is Secondary\n");
    let s = c.status(0);
    assert_eq!(
        (s.role, s.front_end.state.as_str()),
        (Some(Role::Secondary), "stopped")
    );
    assert!(
        !c.nodes[0].nbd.exists(),
        "the NBD socket is removed when the front end stops"
    );
    assert_eq!(c.ok(2, &["down", "r0"]), "r0 is down\n");
    assert!(!c.status(2).up);
    assert!(metadata_clean(&c.nodes[2].disk), "down leaves clean metadata");
    c.wait_status(0, "gamma gone", |s| {
        s.peer("gamma")
            .is_some_and(|p| p.connection != ConnectionState::Connected)
    });
    assert_eq!(c.ok(2, &["down", "r0"]), "r0 is already down\n");

    // SIGTERM: every resource down, metadata clean, exit 0.
    for (i, name) in NAMES.iter().enumerate() {
        assert!(!metadata_clean(&c.nodes[i].disk) || i == 2);
        assert_eq!(c.signal(i, "TERM"), Some(0), "{}", c.log(i));
        assert!(metadata_clean(&c.nodes[i].disk), "{name} not clean after SIGTERM");
        assert!(!c.nodes[i].socket.exists(), "the admin socket is removed");
        let log = c.log(i);
        assert!(
            log.contains("signal=\"SIGTERM\"") || log.contains("signal=SIGTERM"),
            "{log}"
        );
    }
}

#[test]
fn a_killed_primary_recovers_its_activity_log_on_restart() {
    let mut c = Cluster::with_primary_alpha();
    let qemu = installed("qemu-io");
    if qemu {
        qemu_io(&c.nodes[0].nbd, &["write -P 0x5a 0 2M", "flush"]);
    } else {
        println!("SKIPPED: writing through NBD before the crash: qemu-io is not installed");
    }
    assert_eq!(c.signal(0, "KILL"), None);
    assert!(
        !metadata_clean(&c.nodes[0].disk),
        "a killed primary leaves its metadata in use"
    );
    // The survivors notice.
    c.wait_status(1, "alpha gone", |s| {
        s.peer("alpha")
            .is_some_and(|p| p.connection != ConnectionState::Connected)
    });

    c.start(0);
    c.ok(0, &["up", "r0"]);
    let log = c.log(0);
    assert!(log.contains("metadata was not closed cleanly"), "{log}");
    // The activity log's extents resync from the survivors (the crashed Primary is their target),
    // then the node is UpToDate again.
    let s = c.wait_status(0, "reconnected and resynced", |s| {
        s.peers.iter().all(|p| p.connection == ConnectionState::Connected)
            && s.disk == Some(DiskState::UpToDate)
    });
    assert_eq!(s.disk, Some(DiskState::UpToDate));
    // The survivors did not change role; the restarted node can serve again.
    c.wait_status(0, "alpha connected", |s| {
        s.peers.iter().all(|p| p.role == Role::Secondary)
    });
    c.ok(0, &["primary", "r0"]);
    if qemu {
        qemu_io(&c.nodes[0].nbd, &["read -P 0x5a 0 2M"]);
    }
    c.ok(0, &["down", "r0"]);
    assert!(metadata_clean(&c.nodes[0].disk));
}

/// A Primary killed, restarted and promoted again is still a crashed Primary when it is killed a
/// second time: the next restart resyncs its activity-log extents again (the survivors are the
/// source), instead of connecting with "no crash to repair" and leaving them marked.
#[test]
fn a_primary_killed_twice_resyncs_its_activity_log_both_times() {
    if !installed("qemu-io") {
        println!("SKIPPED: writes through NBD: qemu-io is not installed (apt-get install qemu-utils)");
        return;
    }
    let mut c = Cluster::new();
    c.start_all();
    c.up_connected();
    for round in 1..=2 {
        c.ok(0, &["primary", "r0"]);
        qemu_io(&c.nodes[0].nbd, &["write -P 0x44 0 1M", "flush"]);
        // A peer that missed writes while the Primary runs is resynced from it: that resync
        // must not make the Primary forget it is one.
        c.ok(0, &["disconnect", "r0", "beta"]);
        qemu_io(&c.nodes[0].nbd, &["write -P 0x55 4M 64k", "flush"]);
        c.ok(0, &["connect", "r0", "beta"]);
        c.wait_status(0, "beta resynced", |s| {
            s.peer("beta")
                .is_some_and(|p| p.replication == ReplicationState::Established && p.out_of_sync_bytes == 0)
        });
        qemu_io(&c.nodes[0].nbd, &["write -P 0x66 8M 64k", "flush"]);
        assert_eq!(c.signal(0, "KILL"), None);
        c.wait_status(1, "alpha gone", |s| {
            s.peer("alpha")
                .is_some_and(|p| p.connection != ConnectionState::Connected)
        });
        c.start(0);
        c.ok(0, &["up", "r0"]);
        let s = c.wait_status(0, "alpha UpToDate and established with both", |s| {
            s.disk == Some(DiskState::UpToDate) && daemon_support::all_established(s)
        });
        assert!(
            s.peers.iter().all(|p| p.out_of_sync_bytes == 0),
            "round {round}: bits left after the restart: {s:#?}\n{}",
            c.log(0)
        );
        let log = c.log(0);
        let decisions: Vec<&str> = log.lines().filter(|l| l.contains("handshake decision")).collect();
        let last = &decisions[decisions.len() - 2..];
        assert!(
            last.iter().all(|l| l.contains("crashed as Primary")),
            "round {round}: {last:#?}"
        );
    }
}

/// A killed Primary's data survives on the others: another node is promoted and serves every
/// acknowledged write; the old Primary rejoins with a partial resync (its activity-log extents and
/// what the new Primary wrote meanwhile, nothing else) and ends with a disk identical to the others.
#[test]
fn a_killed_primary_fails_over_and_rejoins_with_a_partial_resync() {
    if !installed("qemu-io") {
        println!("SKIPPED: failover through NBD: qemu-io is not installed (apt-get install qemu-utils)");
        return;
    }
    let mut c = Cluster::with_primary_alpha();
    // Two activity-log extents (4 MiB each) touched on alpha: 0-4 MiB and 8-12 MiB.
    qemu_io(
        &c.nodes[0].nbd,
        &["write -P 0x11 0 1M", "write -P 0x22 8M 512k", "flush"],
    );
    assert_eq!(c.signal(0, "KILL"), None);
    for i in 1..3 {
        c.wait_status(i, "alpha gone", |s| {
            s.peer("alpha")
                .is_some_and(|p| p.connection != ConnectionState::Connected)
        });
    }

    // beta takes over and holds every acknowledged write.
    let out = c.ok(1, &["primary", "r0"]);
    assert!(out.starts_with("r0 is Primary; NBD export r0 at unix:"), "{out}");
    qemu_io(
        &c.nodes[1].nbd,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x22 8M 512k",
            "write -P 0x33 16M 1M",
            "flush",
        ],
    );

    // alpha comes back: a resync from the Primary of exactly its activity-log extents plus what
    // beta wrote without it.
    c.start(0);
    let mut events = EventStream::spawn(&c.nodes[0].socket);
    events.wait_for("exists -", Duration::from_secs(30), |l| l == "exists -");
    c.ok(0, &["up", "r0"]);
    let s = c.wait_status(0, "alpha UpToDate and established with both", |s| {
        s.disk == Some(DiskState::UpToDate) && daemon_support::all_established(s)
    });
    // Served by beta, or by gamma, which learned from beta's peer acks what alpha missed: what
    // counts is the total alpha received.
    events.drain(Duration::from_secs(1));
    let resyncs: Vec<&String> = events
        .seen
        .iter()
        .filter(|l| l.starts_with("change resync name:r0 ") && l.contains("replication:SyncTarget"))
        .collect();
    println!("alpha rejoined: {resyncs:#?}");
    let moved: u64 = resyncs
        .iter()
        .map(|l| field(l, "bytes").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(moved, (8 << 20) + (1 << 20), "{resyncs:#?}");
    assert!(s.peers.iter().all(|p| p.out_of_sync_bytes == 0), "{s:#?}");
    assert_eq!(s.peer("beta").map(|p| p.role), Some(Role::Primary), "{s:#?}");
    // Every replica holds the same data.
    let size = s.size_bytes;
    let reference = data_area(&c.nodes[1].disk, size);
    assert!(reference[16 << 20..17 << 20].iter().all(|b| *b == 0x33));
    for i in [0, 2] {
        assert!(
            data_area(&c.nodes[i].disk, size) == reference,
            "{} differs from beta after the resync",
            NAMES[i]
        );
    }
    c.ok(1, &["secondary", "r0"]);
}

#[test]
fn events_stream_the_existing_state_then_every_change() {
    let mut c = Cluster::new();
    c.start_all();
    c.up_connected();
    let spawn_events = |json: bool| {
        let mut cmd = Command::new(daemon_support::bin());
        cmd.arg("--admin-socket").arg(&c.nodes[0].socket).arg("events");
        if json {
            cmd.arg("--json");
        }
        cmd.stdout(Stdio::piped()).spawn().unwrap()
    };
    let mut text = spawn_events(false);
    let mut json = spawn_events(true);
    // Lines arrive on channels, so a missing event fails the test after a timeout instead of
    // blocking it.
    let lines_of = |out: std::process::ChildStdout| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let text_lines = lines_of(text.stdout.take().unwrap());
    let json_lines = lines_of(json.stdout.take().unwrap());
    let seen = std::cell::RefCell::new(Vec::new());
    let next = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match text_lines.recv_timeout(left) {
                Ok(line) if line == what => return,
                Ok(line) => seen.borrow_mut().push(line),
                Err(_) => panic!("no {what:?} within 30s; saw: {:#?}", seen.borrow()),
            }
        }
    };
    next("exists resource name:r0 role:Secondary");
    next(
        "exists peer-device name:r0 peer-node-id:2 conn-name:gamma volume:0 replication:Established peer-disk:UpToDate out-of-sync:0",
    );
    next("exists -");
    c.ok(0, &["primary", "r0"]);
    next("change resource name:r0 role:Primary");
    c.ok(0, &["disconnect", "r0", "gamma"]);
    next("change connection name:r0 peer-node-id:2 conn-name:gamma connection:StandAlone");
    c.ok(0, &["connect", "r0", "gamma"]);
    next("change connection name:r0 peer-node-id:2 conn-name:gamma connection:Connected");
    next("change peer-device name:r0 peer-node-id:2 conn-name:gamma volume:0 replication:Established");
    // An online verify of identical replicas finds nothing; its result is an event per peer.
    assert_eq!(
        c.ok(0, &["verify", "r0"]),
        "r0: online verify started against beta, gamma; results in `events` and the log\n"
    );
    next("change verify name:r0 peer-node-id:2 conn-name:gamma volume:0 out-of-sync:0");
    c.ok(0, &["down", "r0"]);
    next("destroy resource name:r0");
    c.ok(0, &["up", "r0"]);
    next("create resource name:r0 role:Secondary");

    // The JSON stream carries the same events, typed.
    let events: Vec<serde_json::Value> = (0..8)
        .map(|_| serde_json::from_str(&json_lines.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap())
        .collect();
    assert_eq!(events[0]["action"], "exists");
    assert_eq!(events[0]["object"], "resource");
    assert!(events.iter().any(|e| e["object"] == "end"), "{events:#?}");
    for mut child in [text, json] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn the_metrics_endpoint_serves_state_and_io() {
    let mut c = Cluster::new();
    c.start_all();
    let addr = c.nodes[0].metrics;
    assert_eq!(
        http_get(addr, "/health"),
        ("HTTP/1.1 200 OK".to_owned(), "ok\n".to_owned())
    );
    assert_eq!(http_get(addr, "/nope").0, "HTTP/1.1 404 Not Found");
    let (_, body) = http_get(addr, "/metrics");
    assert!(body.contains("replbd_resource_up{resource=\"r0\"} 0"), "{body}");
    c.up_connected();
    c.ok(0, &["primary", "r0"]);
    if installed("qemu-io") {
        qemu_io(&c.nodes[0].nbd, &["write -P 0x42 0 256k", "read -P 0x42 0 256k"]);
    } else {
        println!("SKIPPED: the I/O metrics checks: qemu-io is not installed");
    }
    c.ok(0, &["disconnect", "r0", "beta"]);
    c.wait_status(0, "beta StandAlone", |s| {
        s.peer("beta")
            .is_some_and(|p| p.connection == ConnectionState::StandAlone)
    });
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut expected = vec![
        "replbd_node_info{node=\"alpha\",version=\"0.1.0\"} 1".to_owned(),
        "replbd_resource_up{resource=\"r0\"} 1".to_owned(),
        "replbd_resource_role{resource=\"r0\",state=\"Primary\"} 1".to_owned(),
        "replbd_resource_role{resource=\"r0\",state=\"Secondary\"} 0".to_owned(),
        "replbd_resource_disk_state{resource=\"r0\",state=\"UpToDate\"} 1".to_owned(),
        "replbd_peer_connection_state{resource=\"r0\",peer=\"beta\",state=\"StandAlone\"} 1".to_owned(),
        "replbd_peer_connection_state{resource=\"r0\",peer=\"gamma\",state=\"Connected\"} 1".to_owned(),
        "replbd_peer_replication_state{resource=\"r0\",peer=\"gamma\",state=\"Established\"} 1".to_owned(),
        "replbd_peer_disk_state{resource=\"r0\",peer=\"gamma\",state=\"UpToDate\"} 1".to_owned(),
        "replbd_peer_out_of_sync_bytes{resource=\"r0\",peer=\"beta\"} 0".to_owned(),
        "replbd_io_in_flight{resource=\"r0\",volume=\"0\"} 0".to_owned(),
        format!(
            "replbd_resource_size_bytes{{resource=\"r0\"}} {}",
            c.status(0).size_bytes
        ),
    ];
    if installed("qemu-io") {
        expected.push("replbd_io_bytes_total{resource=\"r0\",volume=\"0\",op=\"write\"} 262144".to_owned());
        expected.push("replbd_io_bytes_total{resource=\"r0\",volume=\"0\",op=\"read\"} 262144".to_owned());
        expected.push("replbd_io_errors_total{resource=\"r0\",volume=\"0\",op=\"write\"} 0".to_owned());
    }
    for line in &expected {
        assert!(body.contains(line.as_str()), "missing {line:?} in:\n{body}");
    }
    assert!(body.contains("replbd_io_latency_seconds_bucket{"), "{body}");
    c.ok(0, &["down", "r0"]);
    let (_, body) = http_get(addr, "/metrics");
    for line in [
        "replbd_resource_up{resource=\"r0\"} 0",
        "replbd_resource_role{resource=\"r0\",state=\"Primary\"} 0",
        "replbd_peer_connection_state{resource=\"r0\",peer=\"gamma\",state=\"Connected\"} 0",
    ] {
        assert!(body.contains(line), "missing {line:?} after down in:\n{body}");
    }
}

#[test]
fn admin_errors_name_the_command_the_resource_and_the_reason() {
    let mut c = Cluster::new();
    // No daemon yet.
    let (code, err) = c.fails(0, &["status"]);
    assert_eq!(code, 3);
    assert!(
        err.starts_with(&format!(
            "replbd-node: cannot reach replbd-node at {}: is the daemon running?",
            c.nodes[0].socket.display()
        )),
        "{err}"
    );
    c.start(0);
    let error = |args: &[&str]| {
        let (code, err) = c.fails(0, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        err.trim_end().to_owned()
    };
    assert_eq!(
        error(&["up", "r9"]),
        "replbd-node: up r9: no such resource on this node (alpha; configured: r0)"
    );
    assert_eq!(
        error(&["status", "r9"]),
        "replbd-node: status r9: no such resource on this node (alpha; configured: r0)"
    );
    assert_eq!(
        error(&["primary", "r0"]),
        "replbd-node: primary r0: resource r0 is down: run `replbd-node up r0` first"
    );
    assert_eq!(
        error(&["connect", "r0", "zeta"]),
        "replbd-node: connect r0: r0 has no peer named zeta (peers: beta, gamma)"
    );
    assert_eq!(
        error(&["disconnect", "r0", "alpha"]),
        "replbd-node: disconnect r0: alpha is this node, not a peer"
    );
    assert!(
        error(&["new-current-uuid", "r0", "--clear-bitmap", "--uuid", "xyz"])
            .contains("invalid UUID \"xyz\"")
    );
    assert_eq!(
        error(&["new-current-uuid", "r0"]),
        "replbd-node: new-current-uuid r0: resource r0 is down: run `replbd-node up r0` first"
    );
    assert!(
        error(&["new-current-uuid", "r0", "--uuid", "5EED5EED5EED5EEC"])
            .contains("--uuid is only for --clear-bitmap")
    );

    // Fresh metadata is Inconsistent: promotion is refused with the engine's reason.
    c.ok(0, &["up", "r0"]);
    assert_eq!(c.status(0).disk, Some(DiskState::Inconsistent));
    let err = error(&["primary", "r0"]);
    assert!(
        err.starts_with(
            "replbd-node: primary r0: cannot promote: the local disk is Inconsistent (fresh metadata, no data yet)"
        ),
        "{err}"
    );
    assert_eq!(c.status(0).role, Some(Role::Secondary));
    assert!(error(&["new-current-uuid", "r0"]).contains("needs this node to be Primary"));
    assert_eq!(
        error(&["outdate", "r0"]),
        "replbd-node: outdate r0: the local disk is Inconsistent: only consistent data can be outdated"
    );
    assert_eq!(
        error(&["new-current-uuid", "r0", "--clear-bitmap"]),
        "replbd-node: new-current-uuid r0: resource r0 is up: run `replbd-node down r0` first"
    );
    // Verify and invalidate need a connected peer with a disk; the reason says which is missing.
    assert_eq!(
        error(&["verify", "r0"]),
        "replbd-node: verify r0: no connected peer with a disk to verify against"
    );
    assert_eq!(
        error(&["invalidate", "r0"]),
        "replbd-node: invalidate r0: no connected peer has UpToDate data to sync from"
    );
    assert_eq!(
        error(&["invalidate-remote", "r0", "beta"]),
        "replbd-node: invalidate-remote r0: the local disk is Inconsistent: only UpToDate data can overwrite a peer"
    );
    assert!(error(&["invalidate-remote", "r0", "omega"]).contains("r0 has no peer named omega"));
    assert!(
        c.ok(0, &["connect", "r0", "--discard-my-data"])
            .contains("a split brain discards this node's changes")
    );
    assert_eq!(c.ok(0, &["up", "r0"]), "r0 is already up\n");

    // Bad usage is clap's: exit 2.
    for args in [
        &["primary"][..],
        &["frobnicate", "r0"],
        &["status", "--bogus"],
        &["invalidate-remote", "r0"],
    ] {
        let (code, err) = c.fails(0, args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }

    // A raw client sending garbage gets an error line, and the connection stays usable.
    let mut s = UnixStream::connect(&c.nodes[0].socket).unwrap();
    s.write_all(b"not json\n{\"command\":\"status\",\"resource\":\"r0\"}\n")
        .unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("{\"result\":\"error\",\"error\":\"bad request:"),
        "{first}"
    );
    let second = lines.next().unwrap().unwrap();
    assert!(second.starts_with("{\"result\":\"status\""), "{second}");

    // A second daemon on the same socket is refused, and the first keeps running.
    let out = Command::new(daemon_support::bin())
        .args(["daemon", "--config"])
        .arg(&c.nodes[0].config)
        .arg("--admin-socket")
        .arg(&c.nodes[0].socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another replbd-node is already running on"), "{err}");
    c.ok(0, &["status"]);
    assert_eq!(c.signal(0, "TERM"), Some(0));
}

#[test]
fn configuration_errors_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("replbd.toml");
    let good = daemon_support::config_text(tmp.path(), "alpha", &[7000, 7001, 7002], "kind = \"none\"");
    let bad = good.replacen("id = 2", "id = 1", 1);
    std::fs::write(&path, &bad).unwrap();
    let line = bad.lines().position(|l| l == "id = 1").unwrap() + 1;
    let second = bad.lines().skip(line).position(|l| l == "id = 1").unwrap() + line + 1;
    for command in ["daemon", "check-config"] {
        let out = Command::new(daemon_support::bin())
            .arg(command)
            .arg("--config")
            .arg(&path)
            .arg("--admin-socket")
            .arg(tmp.path().join("admin.sock"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "{}:{second}: resource r0: node id 1 appears twice (gamma, and beta on line {line})",
            path.display()
        );
        assert!(
            err.contains(&expected),
            "{command}: expected {expected:?} in:\n{err}"
        );
    }
    std::fs::write(
        &path,
        good.replacen("\ntimeout = \"2s\"", "\ntimeout = \"2s\"\nprotocl = \"A\"", 1),
    )
    .unwrap();
    let out = Command::new(daemon_support::bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `protocl`"), "{err}");
    assert!(err.contains(&format!("{}:", path.display())), "{err}");
    let out = Command::new(daemon_support::bin())
        .args(["check-config", "--config", "/nonexistent/replbd.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the configuration /nonexistent/replbd.toml")
    );
    std::fs::write(&path, &good).unwrap();
    let out = Command::new(daemon_support::bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid; this node is alpha"));
}

#[test]
fn create_metadata_and_the_ublk_front_end_on_a_single_node() {
    let tmp = tempfile::tempdir().unwrap();
    let port = daemon_support::free_ports(1)[0];
    let disk = tmp.path().join("data").join("r1.img");
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    let config = tmp.path().join("replbd.toml");
    std::fs::write(
        &config,
        format!(
            "this-node = \"solo\"\n[resource.r1]\n[[resource.r1.node]]\nname = \"solo\"\nid = 7\naddress = \"127.0.0.1:{port}\"\n\
             [[resource.r1.volume]]\nsize = \"8MiB\"\ndisk = \"{}\"\ncreate-metadata = true\n\
             [resource.r1.net]\nshared-secret = \"x\"\n[resource.r1.front-end]\nkind = \"ublk\"\ndevice = 0\n",
            disk.display()
        ),
    )
    .unwrap();
    let socket = tmp.path().join("admin.sock");
    let mut child = Command::new(daemon_support::bin())
        .args(["daemon", "--up-all", "--config"])
        .arg(&config)
        .arg("--admin-socket")
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cli = |args: &[&str]| {
        Command::new(daemon_support::bin())
            .arg("--admin-socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    // --up-all brings it up, creating the metadata for node id 7 on a new file.
    wait_until("r1 up", Duration::from_secs(20), || {
        let out = cli(&["status", "r1", "--json"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"up\": true")
    });
    let dev = replbd_bitmap::FileDevice::open_read_only(&disk).unwrap();
    let ins = replbd_bitmap::inspect(&dev).unwrap();
    assert_eq!(ins.superblock.node_id.get(), 7);
    assert!(ins.superblock.geometry.data_size() >= 8 << 20);
    // Without /dev/ublk-control (the build machines), ublk says why it cannot serve; the resource
    // is up all the same.
    let no_driver = !std::path::Path::new(replbd_ublk::CONTROL_PATH).exists();
    if no_driver {
        let status = String::from_utf8(cli(&["status"]).stdout).unwrap();
        assert!(
            status.contains(
                "front-end:ublk /dev/ublkb0 unavailable (the kernel has no ublk driver: load ublk_drv, or use the NBD front end)"
            ),
            "{status}"
        );
        // Alone and Inconsistent: --force would promote, but the front end cannot start, so the
        // role does not change.
        let out = cli(&["primary", "r1", "--force"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            "replbd-node: primary r1: the front end could not start, so the node was not promoted: the kernel has no \
             ublk driver: load ublk_drv, or use the NBD front end\n"
        );
        let status = String::from_utf8(cli(&["status", "r1"]).stdout).unwrap();
        assert!(status.starts_with("r1 role:Secondary\n"), "{status}");
    } else {
        println!(
            "SKIPPED: the missing-driver checks: this machine has {}",
            replbd_ublk::CONTROL_PATH
        );
    }
    Command::new("kill").arg(child.id().to_string()).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(metadata_clean(&disk));
}

/// `config` without gamma's `[[resource.r0.node]]` table (it ends at the next blank line).
fn without_gamma(config: &str) -> String {
    let start = config.find("[[resource.r0.node]]\nname = \"gamma\"").unwrap();
    let end = start + config[start..].find("\n\n").unwrap() + 1;
    format!("{}{}", &config[..start], &config[end..])
}

#[test]
fn adjust_removes_and_adds_a_peer_while_the_primary_serves() {
    let c = Cluster::with_primary_alpha();
    let with_gamma: Vec<String> = (0..2)
        .map(|i| std::fs::read_to_string(&c.nodes[i].config).unwrap())
        .collect();
    let nbd = installed("qemu-io");
    if nbd {
        qemu_io(&c.nodes[0].nbd, &["write -P 0x41 0 1M", "flush"]);
    } else {
        println!("SKIPPED (data part): qemu-io is not installed (apt-get install qemu-utils)");
    }

    // gamma leaves: alpha and beta adjust to a configuration without it.
    for i in 0..2 {
        std::fs::write(&c.nodes[i].config, without_gamma(&with_gamma[i])).unwrap();
        let out = c.ok(i, &["adjust", "r0"]);
        assert_eq!(out, "r0: removed node 2\n");
        let s = c.status(i);
        let names: Vec<&str> = s.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["alpha", "beta"]
                .into_iter()
                .filter(|n| *n != NAMES[i])
                .collect::<Vec<_>>()
        );
    }
    c.ok(2, &["down", "r0"]);
    let s = c.status(0);
    assert_eq!(
        (s.role, s.front_end.state.as_str()),
        (Some(Role::Primary), "serving"),
        "{s:#?}"
    );
    if nbd {
        qemu_io(
            &c.nodes[0].nbd,
            &["read -P 0x41 0 1M", "write -P 0x42 4M 1M", "flush"],
        );
    }

    // A change that needs a restart is refused and changes nothing.
    let slower = without_gamma(&with_gamma[0]).replace("timeout = \"2s\"", "timeout = \"3s\"");
    std::fs::write(&c.nodes[0].config, slower).unwrap();
    let (_, e) = c.fails(0, &["adjust", "r0"]);
    assert!(e.contains("adjust r0: the timeouts changed"), "{e}");

    // gamma comes back: added again, it resyncs (its old bitmap slot on the others was freed).
    for i in [0, 1] {
        std::fs::write(&c.nodes[i].config, &with_gamma[i]).unwrap();
        let out = c.ok(i, &["adjust", "r0"]);
        assert_eq!(out, "r0: added node 2\n");
    }
    c.ok(2, &["up", "r0"]);
    let s = c.wait_status(2, "gamma UpToDate and established with both", |s| {
        s.disk == Some(DiskState::UpToDate) && daemon_support::all_established(s)
    });
    assert_eq!(s.peer("alpha").map(|p| p.role), Some(Role::Primary), "{s:#?}");
    c.wait_status(0, "alpha sees gamma UpToDate", |s| {
        s.peer("gamma")
            .is_some_and(|p| p.peer_disk == DiskState::UpToDate && p.out_of_sync_bytes == 0)
    });
    if nbd {
        qemu_io(&c.nodes[0].nbd, &["read -P 0x42 4M 1M", "flush"]);
        let size = s.size_bytes;
        let reference = data_area(&c.nodes[0].disk, size);
        assert!(
            data_area(&c.nodes[2].disk, size) == reference,
            "gamma differs from alpha"
        );
    }
    c.ok(0, &["secondary", "r0"]);
}
