//! `replbd-sim`: runs seeded schedules of a simulated replbd cluster and checks the quorum and
//! split-brain invariants after every step.
//!
//! ```text
//! replbd-sim --seeds 10000                 # 10,000 schedules, 3–7 nodes, seeds 0..10000
//! replbd-sim --seeds 500 --nodes 5         # 500 schedules of 5 nodes
//! replbd-sim --seed 1234 --nodes 4         # replay one schedule, step by step
//! ```
//!
//! The last line is always `schedules=N violations=V` (with `--json`, one JSON document instead);
//! the exit status is 1 when V > 0, 2 on a usage or output error.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use replbd_sim::report::{self, ViolationReport};
use replbd_sim::{Faults, NodeCounts, SimConfig, run_many, run_schedule};
use serde::Serialize;

/// Deterministic simulation of a replbd cluster (partitions, crashes, promotions, writes) checking
/// that quorum and split-brain handling never lose an acknowledged write.
#[derive(Parser)]
#[command(name = "replbd-sim", version, about)]
struct Cli {
    /// Number of schedules to run (seeds FIRST..FIRST+N).
    #[arg(long, default_value_t = 1000, conflicts_with = "seed")]
    seeds: u64,
    /// The first seed of a `--seeds` run.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay one schedule and print every step with its effects.
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes per schedule: K, A..=B or A..B (3–7); a range draws the count per seed.
    #[arg(long, default_value = "3..=7")]
    nodes: NodeCounts,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print a line of counts showing what the schedules exercised.
    #[arg(long)]
    coverage: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let result = match cli.seed {
        Some(seed) => replay_one(&cli, seed, &mut out),
        None => run(&cli, &mut out),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("replbd-sim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    schedules: u64,
    violations: usize,
    reports: &'a [ViolationReport],
}

/// Runs `--seeds` schedules; returns the number of violations.
fn run(cli: &Cli, out: &mut impl Write) -> Result<usize> {
    let mut reports = Vec::new();
    let mut failed = None;
    let summary = run_many(
        cli.first_seed,
        cli.seeds,
        cli.nodes,
        Faults::default(),
        |outcome| {
            if let Some(r) = ViolationReport::build(outcome) {
                if !cli.json
                    && let Err(e) = r.write_text(out)
                {
                    failed.get_or_insert(e);
                }
                reports.push(r);
            }
        },
    );
    if let Some(e) = failed {
        return Err(e).context("writing a report");
    }
    let violations = summary.violations.len();
    if cli.json {
        serde_json::to_writer_pretty(
            &mut *out,
            &JsonSummary {
                schedules: summary.schedules,
                violations,
                reports: &reports,
            },
        )?;
        writeln!(out)?;
        return Ok(violations);
    }
    if cli.coverage {
        report::write_coverage(out, &summary)?;
    }
    report::write_summary_line(out, summary.schedules, violations)?;
    Ok(violations)
}

/// Replays the schedule of `seed`; returns the number of violations (0 or 1).
fn replay_one(cli: &Cli, seed: u64, out: &mut impl Write) -> Result<usize> {
    let config = SimConfig::draw(seed, cli.nodes.for_seed(seed), Faults::default());
    let outcome = run_schedule(&config);
    let full = replbd_sim::replay(&config, &outcome.trace, true);
    let report = ViolationReport::build(&outcome);
    let violations = usize::from(report.is_some());
    if cli.json {
        #[derive(Serialize)]
        struct JsonReplay<'a> {
            seed: u64,
            nodes: usize,
            config: String,
            trace: &'a [replbd_sim::run::TraceLine],
            violation: Option<&'a ViolationReport>,
        }
        serde_json::to_writer_pretty(
            &mut *out,
            &JsonReplay {
                seed,
                nodes: config.nodes,
                config: config.to_string(),
                trace: &full.lines,
                violation: report.as_ref(),
            },
        )?;
        writeln!(out)?;
        return Ok(violations);
    }
    {
        writeln!(out, "seed={seed} nodes={}: {config}", config.nodes)?;
        writeln!(out, "  trace ({} steps):", full.lines.len())?;
        report::write_lines(out, &full.lines)?;
        match &report {
            Some(r) => r.write_text(out)?,
            None => writeln!(
                out,
                "  no violation; settled={} UpToDate at the end={}",
                outcome.settled, outcome.up_to_date_at_end
            )?,
        }
    }
    report::write_summary_line(out, 1, violations)?;
    Ok(violations)
}
