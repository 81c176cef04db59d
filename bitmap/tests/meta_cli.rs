//! `replbd-meta` as an operator uses it: real binary, real files.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replbd-meta"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("replbd-meta-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn flip_byte(path: &str, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new(path))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn create_dump_show_gi_and_check_external_metadata() {
    let d = TempDir::new("external");
    let f = d.file("r0.md");
    let o = meta(&[
        "create",
        "--external",
        &f,
        "--size",
        "64MiB",
        "--max-peers",
        "3",
        "--node-id",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("data 64MiB, 3 peer slots"), "{}", text(&o));
    let o = meta(&["dump", "--json", &f]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["magic"], "RPLBDMD1");
    assert_eq!(v["version"], 1);
    assert_eq!(v["size_bytes"], 64 << 20);
    assert_eq!(v["max_peers"], 3);
    assert_eq!(v["node_id"], 2);
    assert_eq!(v["bm_block_size"], 4096);
    assert_eq!(v["al_extents"], 1237);
    assert_eq!(v["current_uuid"], "0000000000000004");
    assert_eq!(v["clean"], true);
    assert_eq!(v["peers"].as_array().unwrap().len(), 3);
    assert_eq!(v["peers"][1]["dirty_bytes"], 0);
    let o = meta(&["show-gi", &f]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim().split(':').count(),
        1 + 3 + 2 + 1
    );
    let o = meta(&["check", &f]);
    assert!(
        o.status.success() && text(&o).contains("metadata ok"),
        "{}",
        text(&o)
    );
    // Refuses to overwrite without --force.
    let o = meta(&["create", "--external", &f, "--size", "64MiB", "--max-peers", "3"]);
    assert!(
        !o.status.success() && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    let o = meta(&[
        "create",
        "--external",
        &f,
        "--size",
        "32MiB",
        "--max-peers",
        "1",
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn internal_metadata_damage_is_named_and_repaired() {
    let d = TempDir::new("internal");
    let f = d.file("disk.img");
    std::fs::File::create(&f).unwrap().set_len(256 << 20).unwrap();
    let o = meta(&[
        "create",
        "--internal",
        &f,
        "--max-peers",
        "2",
        "--bm-block-size",
        "64KiB",
        "--al-extents",
        "100",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&meta(&["dump", "--json", &f]).stdout).unwrap();
    let meta_offset = v["meta_offset"].as_u64().unwrap();
    assert_eq!(v["placement"], "internal");
    assert_eq!(v["size_bytes"].as_u64().unwrap(), meta_offset);
    // Superblock copy B is the last 4 KiB of the file.
    flip_byte(&f, (256 << 20) - 100);
    let o = meta(&["check", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("DAMAGED: superblock copy B"), "{}", text(&o));
    let o = meta(&["apply-al", &f]);
    assert!(
        o.status.success() && text(&o).contains("repaired superblock copy B"),
        "{}",
        text(&o)
    );
    let o = meta(&["check", &f]);
    assert!(o.status.success(), "{}", text(&o));
    // The first bitmap block (slot 0, block 0) is at the metadata offset.
    flip_byte(&f, meta_offset + 10);
    let o = meta(&["check", "--json", &f]);
    assert_eq!(o.status.code(), Some(1));
    let findings: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        findings[0]["region"].as_str().unwrap(),
        format!("bitmap of peer slot 0, block 0 (offset {meta_offset})")
    );
    assert_eq!(findings[0]["severity"], "damage");
}

#[test]
fn bad_input_gets_one_line_errors() {
    let d = TempDir::new("bad");
    let f = d.file("x.md");
    for (args, needle) in [
        (
            vec![
                "create",
                "--external",
                f.as_str(),
                "--size",
                "64XB",
                "--max-peers",
                "3",
            ],
            "unknown unit",
        ),
        (
            vec![
                "create",
                "--external",
                f.as_str(),
                "--size",
                "64MiB",
                "--max-peers",
                "33",
            ],
            "max-peers 33 is out of range",
        ),
        (
            vec![
                "create",
                "--external",
                f.as_str(),
                "--size",
                "5000",
                "--max-peers",
                "3",
            ],
            "multiple of 4KiB",
        ),
        (
            vec![
                "create",
                "--external",
                f.as_str(),
                "--size",
                "1GiB",
                "--max-peers",
                "3",
                "--bm-block-size",
                "3000",
            ],
            "power of two",
        ),
        (
            vec![
                "create",
                "--external",
                f.as_str(),
                "--size",
                "1GiB",
                "--max-peers",
                "3",
                "--node-id",
                "99",
            ],
            "node id 99",
        ),
        (
            vec!["create", "--internal", "/nonexistent/disk", "--max-peers", "3"],
            "cannot open /nonexistent/disk",
        ),
        (vec!["dump", "/nonexistent/md"], "cannot open /nonexistent/md"),
        (vec!["check", "/dev/null"], "no replbd metadata"),
    ] {
        let o = meta(&args);
        assert!(!o.status.success(), "{args:?} must fail");
        let t = text(&o);
        assert!(t.contains(needle), "{args:?}: expected {needle:?} in {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    // A file that is not metadata.
    std::fs::write(&f, vec![7u8; 1 << 20]).unwrap();
    let o = meta(&["dump", &f]);
    assert!(
        !o.status.success() && text(&o).contains("no replbd metadata found"),
        "{}",
        text(&o)
    );
}
