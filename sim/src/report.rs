//! Printing results: a violation with its seed, the command that replays it and its shortest trace;
//! a replayed schedule step by step; the summary line. Text for people, JSON for tools; everything
//! goes to a writer the caller passes (the binary passes stdout).

use std::io::{self, Write};

use serde::Serialize;

use crate::config::SimConfig;
use crate::invariants::Violation;
use crate::run::{Outcome, Summary, TraceLine, replay};
use crate::shrink::shrink;

/// A violation, shrunk and replayed with effects, ready to print.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationReport {
    /// The schedule's seed.
    pub seed: u64,
    /// Its node count.
    pub nodes: usize,
    /// The invariant's number (1–4).
    pub invariant: u8,
    /// What was violated, in words.
    pub message: String,
    /// The configuration, in words.
    pub config: String,
    /// The command that replays the schedule.
    pub replay: String,
    /// Steps in the full schedule up to the violation.
    pub original_steps: usize,
    /// The shortest trace found that shows it, with what each step did.
    pub trace: Vec<TraceLine>,
}

impl ViolationReport {
    /// Shrinks `outcome`'s trace and replays the result with effects.
    pub fn build(outcome: &Outcome) -> Option<Self> {
        let violation = outcome.violation.as_ref()?;
        let config = &outcome.config;
        let shortest = shrink(config, &outcome.trace, violation.invariant);
        let replayed = replay(config, &shortest, true);
        let shown: &Violation = replayed.violation.as_ref().unwrap_or(violation);
        Some(Self {
            seed: config.seed,
            nodes: config.nodes,
            invariant: shown.invariant.number(),
            message: shown.to_string(),
            config: config.to_string(),
            replay: replay_command(config),
            original_steps: outcome.trace.len(),
            trace: replayed.lines,
        })
    }

    /// Prints the report as text.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "VIOLATION seed={} nodes={}: {}",
            self.seed, self.nodes, self.message
        )?;
        writeln!(out, "  config: {}", self.config)?;
        writeln!(out, "  replay: {}", self.replay)?;
        writeln!(
            out,
            "  shortest trace ({} of {} steps):",
            self.trace.len(),
            self.original_steps
        )?;
        write_lines(out, &self.trace)
    }
}

/// The command line that replays `config`'s schedule.
pub fn replay_command(config: &SimConfig) -> String {
    format!("replbd-sim --seed {} --nodes {}", config.seed, config.nodes)
}

/// Prints trace lines with their effects, indented.
pub fn write_lines(out: &mut impl Write, lines: &[TraceLine]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "    {:>4}. {}", line.index, line.step)?;
        for effect in &line.effects {
            writeln!(out, "            {effect}")?;
        }
    }
    Ok(())
}

/// Prints what the schedules exercised (one line).
pub fn write_coverage(out: &mut impl Write, s: &Summary) -> io::Result<()> {
    let t = &s.stats;
    writeln!(
        out,
        "coverage: steps={} with_quorum={} settled={} settled_with_uptodate={} writes_acked={} \
         writes_failed={} promotions={} promotions_refused={} quorum_lost={} handshakes={} \
         bitmap_resyncs={} full_resyncs={} resyncs_finished={} split_brains={} split_brains_resolved={} \
         rr_conflicts={}",
        s.steps,
        s.with_quorum,
        s.settled,
        s.settled_with_up_to_date,
        t.writes_acked,
        t.writes_failed,
        t.promotions,
        t.promotions_refused,
        t.quorum_lost,
        t.handshakes,
        t.bitmap_resyncs,
        t.full_resyncs,
        t.resyncs_finished,
        t.split_brains,
        t.split_brains_resolved,
        t.rr_conflicts,
    )
}

/// The final line: `schedules=N violations=V`.
pub fn write_summary_line(out: &mut impl Write, schedules: u64, violations: usize) -> io::Result<()> {
    writeln!(out, "schedules={schedules} violations={violations}")
}
