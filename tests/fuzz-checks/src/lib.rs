//! The checks behind replbd's fuzz targets, one module per target: each `check(data)` feeds
//! arbitrary bytes to a parser that faces untrusted input and panics when a property fails (a
//! parser panicking by itself counts too). They live here, in the main workspace, so that two
//! runners share them:
//!
//! - `fuzz/` (cargo-fuzz, nightly): coverage-guided libFuzzer runs, `cargo +nightly fuzz run X`;
//! - `replbd-fuzz-smoke` (stable, run by CI): every committed seed input, then seeded mutations of
//!   them for a time budget — not coverage-guided, but it runs on any machine and on every change.

// A fuzz check reports a failed property by panicking: that is what both runners catch.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod frame_decoder;
pub mod metadata_parsers;
pub mod nbd_parser;
pub mod node_config;

/// A fuzz target: its name and its check.
pub struct Target {
    /// The name (as in `fuzz/fuzz_targets/`).
    pub name: &'static str,
    /// The check.
    pub check: fn(&[u8]),
}

/// Every target.
pub const TARGETS: [Target; 4] = [
    Target {
        name: "frame_decoder",
        check: frame_decoder::check,
    },
    Target {
        name: "metadata_parsers",
        check: metadata_parsers::check,
    },
    Target {
        name: "nbd_parser",
        check: nbd_parser::check,
    },
    Target {
        name: "node_config",
        check: node_config::check,
    },
];
