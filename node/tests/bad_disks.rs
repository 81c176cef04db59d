//! Disks that go wrong under real `replbd-node` daemons: metadata that belongs to another resource,
//! a backing file truncated while attached, and a full filesystem. Each gives a clear error or
//! detaches the disk with the reason logged; the other replicas keep serving and no acknowledged
//! write is lost. Data goes through the NBD export with `qemu-io` (skipped with a printed reason
//! when it is not installed); the full-disk test needs to mount a small tmpfs (root) and is skipped
//! with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use daemon_support::{Cluster, NAMES, data_area, installed, qemu_io};
use replbd_bitmap::{FileDevice, Metadata, OpenOptions};
use replbd_quorum::{ConnectionState, DiskState, Role};

/// Records `resource` in the metadata of `disk`, as an `up` of that resource would have.
fn stamp(disk: &Path, resource: &str) {
    let (meta, _) =
        Metadata::open(Box::new(FileDevice::open(disk).unwrap()), OpenOptions::default()).unwrap();
    meta.set_resource(resource).unwrap();
    meta.close().unwrap();
}

fn recorded_resource(disk: &Path) -> String {
    let dev = FileDevice::open_read_only(disk).unwrap();
    replbd_bitmap::inspect(&dev).unwrap().superblock.resource
}

fn qemu_io_installed() -> bool {
    if installed("qemu-io") {
        return true;
    }
    println!("SKIPPED: qemu-io is not installed (apt-get install qemu-utils)");
    false
}

#[test]
fn metadata_of_another_resource_is_refused_and_the_peers_serve() {
    let mut c = Cluster::new();
    stamp(&c.nodes[0].disk, "r9");
    c.start_all();
    let (code, err) = c.fails(
        0,
        &[
            "new-current-uuid",
            "r0",
            "--clear-bitmap",
            "--uuid",
            daemon_support::UUID,
        ],
    );
    assert!(
        err.contains("belongs to resource \"r9\", not \"r0\""),
        "exit {code}: {err}"
    );
    let (code, err) = c.fails(0, &["up", "r0"]);
    assert!(
        err.contains("belongs to resource \"r9\", not \"r0\""),
        "exit {code}: {err}"
    );
    assert!(
        err.contains("check `disk` and `meta-disk`"),
        "the error says what to do: {err}"
    );
    assert!(!c.status(0).up, "alpha stays down");
    assert_eq!(
        recorded_resource(&c.nodes[0].disk),
        "r9",
        "the other resource's metadata is untouched"
    );

    // beta and gamma go on without alpha.
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        c.ok(
            i,
            &[
                "new-current-uuid",
                "r0",
                "--clear-bitmap",
                "--uuid",
                daemon_support::UUID,
            ],
        );
        c.ok(i, &["up", "r0"]);
        assert_eq!(
            recorded_resource(&c.nodes[i].disk),
            "r0",
            "{} records its resource at up",
            name
        );
    }
    c.wait_status(1, "gamma Connected", |s| {
        s.peer("gamma")
            .is_some_and(|p| p.connection == ConnectionState::Connected)
    });
    c.ok(1, &["primary", "r0"]);
    if qemu_io_installed() {
        qemu_io(
            &c.nodes[1].nbd,
            &["write -P 0x5a 0 256k", "flush", "read -P 0x5a 0 256k"],
        );
        assert!(data_area(&c.nodes[2].disk, 256 << 10).iter().all(|&b| b == 0x5a));
    }
}

#[test]
fn a_backing_file_truncated_under_the_primary_detaches_and_reads_come_from_a_peer() {
    if !qemu_io_installed() {
        return;
    }
    let c = Cluster::with_primary_alpha();
    qemu_io(
        &c.nodes[0].nbd,
        &["write -P 0xab 0 1M", "write -P 0xcd 16M 1M", "flush"],
    );
    // Someone truncates alpha's backing file (and with it the internal metadata at its end).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&c.nodes[0].disk)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    // The block past the new end is read from a peer, not as zeroes.
    qemu_io(&c.nodes[0].nbd, &["read -P 0xcd 16M 1M", "read -P 0xab 0 1M"]);
    let s = c.wait_status(0, "alpha detached", |s| s.disk == Some(DiskState::Diskless));
    assert_eq!(
        s.role,
        Some(Role::Primary),
        "alpha stays Primary, served by its peers"
    );
    let log = c.log(0);
    assert!(
        log.contains("truncated or shrunk while attached"),
        "the reason is logged:\n{log}"
    );
    // Writes go on through the peers and reach them.
    qemu_io(
        &c.nodes[0].nbd,
        &[
            "write -P 0xee 20M 64k",
            "flush",
            "read -P 0xee 20M 64k",
            "read -P 0xcd 16M 1M",
        ],
    );
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        let area = data_area(&c.nodes[i].disk, 21 << 20);
        assert!(area[16 << 20..17 << 20].iter().all(|&b| b == 0xcd), "{}", name);
        assert!(
            area[20 << 20..(20 << 20) + (64 << 10)].iter().all(|&b| b == 0xee),
            "{}",
            name
        );
    }
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn mount(dir: PathBuf, size: &str) -> Result<SmallFs, String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_under_the_primary_detaches_it_and_no_acknowledged_write_is_lost() {
    if !qemu_io_installed() {
        return;
    }
    let mut c = Cluster::new();
    // alpha's 32 MiB backing file, sparse, on a 6 MiB filesystem: it fills up after a few MiB.
    let fs = match SmallFs::mount(c.tmp.path().join("alpha-small-fs"), "6m") {
        Ok(fs) => fs,
        Err(e) => {
            println!("SKIPPED: cannot mount a small tmpfs to fill up ({e}); needs root");
            return;
        }
    };
    let disk = fs.dir.join("r0.img");
    daemon_support::create_disk(&disk, 0, 2);
    let config = std::fs::read_to_string(&c.nodes[0].config).unwrap();
    let old = c.nodes[0].disk.display().to_string();
    assert!(config.contains(&old));
    std::fs::write(
        &c.nodes[0].config,
        config.replace(&old, &disk.display().to_string()),
    )
    .unwrap();
    c.nodes[0].disk = disk;
    c.start_all();
    c.up_connected();
    c.ok(0, &["primary", "r0"]);
    // 12 MiB of writes: the filesystem runs out half way.
    let writes: Vec<String> = (0..12)
        .map(|m| format!("write -P {} {m}M 1M", 0x30 + m))
        .collect();
    let mut commands: Vec<&str> = writes.iter().map(String::as_str).collect();
    commands.push("flush");
    qemu_io(&c.nodes[0].nbd, &commands);
    let s = c.wait_status(0, "alpha detached", |s| s.disk == Some(DiskState::Diskless));
    assert_eq!(s.role, Some(Role::Primary));
    let log = c.log(0);
    assert!(
        log.contains("No space left on device"),
        "the reason is logged:\n{log}"
    );
    // Every acknowledged write reads back through alpha and is on both peers' disks.
    let reads: Vec<String> = (0..12).map(|m| format!("read -P {} {m}M 1M", 0x30 + m)).collect();
    qemu_io(
        &c.nodes[0].nbd,
        &reads.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        let area = data_area(&c.nodes[i].disk, 12 << 20);
        for m in 0..12usize {
            assert!(
                area[m << 20..(m + 1) << 20].iter().all(|&b| b == 0x30 + m as u8),
                "{} MiB {m}",
                name
            );
        }
    }
    drop(c);
    drop(fs);
}
