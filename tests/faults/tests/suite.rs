//! `replbd-faults` end to end: a short seeded run against real daemons ends with zero violations
//! and the summary line, and a planted lost write is reported with the seed, the schedule and the
//! block. Both need the `replbd-node` binary beside `replbd-faults`; it is built here when missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn faults_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_replbd-faults"))
}

/// The `replbd-node` binary beside ours, built with cargo if it is not there yet.
fn node_bin() -> Option<PathBuf> {
    let node = faults_bin().with_file_name("replbd-node");
    if !node.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "-p", "replbd-node"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
    }
    node.exists().then_some(node)
}

fn run(node: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(faults_bin())
        .args(args)
        .arg("--node-bin")
        .arg(node)
        .env("REPLBD_FAULTS_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The numbers of the last line, `ops_acked=A faults=F violations=V`.
fn summary(stdout: &str) -> (u64, u64, u64) {
    let last = stdout.lines().last().unwrap_or_default();
    let fields: Vec<u64> = last
        .split(' ')
        .map(|kv| {
            let (_, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("not a summary line: {last:?}"));
            v.parse().unwrap()
        })
        .collect();
    assert!(last.starts_with("ops_acked="), "{last:?}");
    (fields[0], fields[1], fields[2])
}

#[test]
fn a_short_seeded_run_loses_nothing() {
    let Some(node) = node_bin() else {
        println!("SKIPPED: replbd-node could not be built beside replbd-faults");
        return;
    };
    let (code, stdout, stderr) = run(&node, &["--seconds", "12", "--seed", "7", "--epoch-seconds", "6"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("replbd-faults: seed=7 "), "{stdout}");
    let (ops, faults, violations) = summary(&stdout);
    assert!(ops > 100 && faults >= 1 && violations == 0, "{stdout}");
}

#[test]
fn a_planted_lost_write_is_reported_with_the_seed_and_the_block() {
    let Some(node) = node_bin() else {
        println!("SKIPPED: replbd-node could not be built beside replbd-faults");
        return;
    };
    let (code, stdout, stderr) = run(
        &node,
        &[
            "--seconds",
            "3",
            "--seed",
            "11",
            "--without",
            "crashes",
            "--without",
            "partitions",
            "--plant-lost-write",
        ],
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("VIOLATIONS seed=11 (replay: replbd-faults --seconds N --seed 11)"),
        "{stdout}"
    );
    assert!(stdout.contains("planted: block "), "{stdout}");
    // The Secondary's disk holds an older acknowledged write: a lost write there, and it differs
    // from the other replicas in that one block.
    let lost = stdout.lines().find(|l| l.contains("lost-")).expect(&stdout);
    assert!(
        lost.contains(": expected write #") && lost.contains("found write #"),
        "{lost}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("replicas-differ on ")),
        "{stdout}"
    );
    let (ops, _, violations) = summary(&stdout);
    assert!(ops > 0 && violations == 2, "{stdout}");
}
