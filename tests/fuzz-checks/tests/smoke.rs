//! The smoke runner itself: it reads every committed seed, runs every target, replays a seed, and
//! refuses bad arguments with the usage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn smoke(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_replbd-fuzz-smoke"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_target_runs_its_seeds_and_mutations_without_a_crash() {
    let (code, text) = smoke(&["--seconds-per-target", "1", "--seed", "7"]);
    assert_eq!(code, 0, "{text}");
    for (target, min_seeds) in [
        ("frame_decoder", 100),
        ("metadata_parsers", 100),
        ("nbd_parser", 20),
        ("node_config", 100),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("replbd-fuzz-smoke: {target} ")))
            .unwrap_or_else(|| panic!("no line for {target}:\n{text}"));
        let field = |k: &str| -> u64 {
            line.split(' ')
                .find_map(|w| w.strip_prefix(k))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(field("seeds=") >= min_seeds, "{line}");
        assert!(field("inputs=") > field("seeds="), "mutations ran: {line}");
        assert_eq!(field("crashes="), 0, "{line}");
    }
    assert!(text.ends_with("crashes=0\n"), "{text}");
}

#[test]
fn bad_arguments_are_refused_with_the_usage() {
    let (code, text) = smoke(&["--target", "nope"]);
    assert_eq!(code, 2);
    assert!(
        text.contains("no target \"nope\"; the targets are frame_decoder"),
        "{text}"
    );
    let (code, text) = smoke(&["--seconds"]);
    assert_eq!(code, 2);
    assert!(text.contains("usage: replbd-fuzz-smoke"), "{text}");
}
