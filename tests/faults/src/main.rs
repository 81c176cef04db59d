//! `replbd-faults`: randomized fault schedules against three real `replbd-node` processes, checking
//! through the NBD front end and on every replica's disk that no acknowledged write is lost.
//!
//! ```text
//! replbd-faults --seconds 120               # a random seed (printed first)
//! replbd-faults --seconds 120 --seed 42     # replay seed 42's schedule
//! replbd-faults --seconds 60 --json         # one JSON document instead of text
//! ```
//!
//! The last line is always `ops_acked=A faults=F violations=V` (with `--json`, one JSON document
//! instead); the exit status is 1 when V > 0, 2 when the run could not be carried out. A violation
//! prints the seed, the schedule as executed and the differing blocks. See docs/reliability.md.

mod agent;
mod block;
mod blockdev;
mod checker;
mod cluster;
mod front;
mod harness;
mod history;
mod inject;
mod loss;
mod nbd;
mod proxy;
mod run;
mod schedule;
mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::front::FrontEnd;
use crate::run::{Options, Report};
use crate::schedule::Enabled;

/// Fault-injection reliability suite: kills, clean restarts, partitions, slow links and failovers
/// against three real replbd-node daemons, checking every acknowledged write.
#[derive(Parser)]
#[command(name = "replbd-faults", version, about)]
struct Cli {
    /// How long to inject faults (the last heal and check come after).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The schedule's seed; random (and printed) when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// The replbd-node binary (default: beside this one, or $REPLBD_NODE_BIN).
    #[arg(long, env = "REPLBD_NODE_BIN")]
    node_bin: Option<PathBuf>,
    /// The front end the workload writes through: nbd (the host), or ublk (/dev/ublkbN, N the
    /// node id; needs the kernel's ublk driver, as in the VM suite).
    #[arg(long, value_enum, default_value_t = FrontEnd::Nbd)]
    front_end: FrontEnd,
    /// Workload connections.
    #[arg(long, default_value_t = 4)]
    workers: u64,
    /// Fault time per epoch (seconds) before the cluster is healed and checked.
    #[arg(long, default_value_t = 25)]
    epoch_seconds: u64,
    /// Fault kinds to leave out: crashes, partitions, slow-links, lossy-links, disk-errors
    /// (repeatable).
    #[arg(long, value_parser = ["crashes", "partitions", "slow-links", "lossy-links", "disk-errors"])]
    without: Vec<String>,
    /// Keep the daemons' logs and disks when a violation is found (also when the agent had to
    /// resolve a split brain, with REPLBD_FAULTS_KEEP_SPLIT_BRAIN set).
    #[arg(long)]
    keep: bool,
    /// Self-test: plant a lost write on a Secondary's disk before the first check (the run must
    /// then report it).
    #[arg(long, hide = true)]
    plant_lost_write: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("REPLBD_FAULTS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut out = std::io::stdout().lock();
    match run_cli(&cli, &mut out) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "replbd-faults: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn node_bin(cli: &Cli) -> Result<PathBuf> {
    if let Some(p) = &cli.node_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("locating this binary")?;
    Ok(me.with_file_name("replbd-node"))
}

/// Runs and prints; returns the number of violations.
fn run_cli(cli: &Cli, out: &mut impl Write) -> Result<usize> {
    let seed = match cli.seed {
        Some(s) => s,
        None => rand::Rng::random(&mut StdRng::from_os_rng()),
    };
    if !cli.json {
        writeln!(
            out,
            "replbd-faults: seed={seed} seconds={} (replay: replbd-faults --seconds {} --seed {seed})",
            cli.seconds, cli.seconds
        )?;
        out.flush()?;
    }
    let without = |k: &str| cli.without.iter().any(|w| w == k);
    let opts = Options {
        seconds: cli.seconds,
        seed,
        node_bin: node_bin(cli)?,
        front: cli.front_end,
        workers: cli.workers.max(1),
        epoch_ms: cli.epoch_seconds.max(1) * 1000,
        enabled: Enabled {
            crashes: !without("crashes"),
            partitions: !without("partitions"),
            slow_links: !without("slow-links"),
            lossy_links: !without("lossy-links"),
            disk_errors: !without("disk-errors"),
        },
        keep_on_violation: cli.keep,
        plant_lost_write: cli.plant_lost_write,
    };
    let report = run::run(&opts)?;
    if cli.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_text(&report, out)?;
    }
    Ok(report.violation_count)
}

fn write_text(r: &Report, out: &mut impl Write) -> Result<()> {
    if r.violation_count > 0 {
        writeln!(
            out,
            "VIOLATIONS seed={} (replay: replbd-faults --seconds N --seed {})",
            r.seed, r.seed
        )?;
    }
    // Also when the logs were kept for a split brain the agent had to resolve: the schedule is
    // what says when it happened.
    if r.violation_count > 0 || r.kept.is_some() {
        writeln!(out, "schedule as executed:")?;
        for t in &r.trace {
            writeln!(out, "  +{:>7}ms {}", t.at_ms, t.what)?;
        }
        for e in &r.violations {
            writeln!(out, "epoch {}: {} violations", e.epoch, e.violations.len())?;
            for v in e.violations.iter().take(50) {
                writeln!(out, "  {v}")?;
            }
            if e.violations.len() > 50 {
                writeln!(out, "  ... and {} more", e.violations.len() - 50)?;
            }
        }
        if let Some(k) = &r.kept {
            writeln!(out, "logs and disks kept in {}", k.display())?;
        }
    }
    let kinds: Vec<String> = r.faults_by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect();
    let c = &r.counters;
    writeln!(
        out,
        "epochs={} wall={:.1}s writes: sent={} acked={} failed={} unknown={}; flushes: done={} failed={}; reads: checked={} failed={}; failovers={} split_brains={}; faults: {}",
        r.epochs,
        r.wall_ms as f64 / 1000.0,
        c.writes_sent,
        c.writes_acked,
        c.writes_failed,
        c.writes_unknown,
        c.flushes_done,
        c.flushes_failed,
        c.reads_done,
        c.reads_failed,
        r.failovers,
        r.split_brains,
        kinds.join(" ")
    )?;
    writeln!(
        out,
        "ops_acked={} faults={} violations={}",
        r.ops_acked, r.faults, r.violation_count
    )?;
    Ok(())
}
