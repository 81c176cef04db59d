//! Running schedules: generate and check one, replay a trace, run many.
//!
//! A schedule is generated and checked in one pass: each random step is applied, recorded in the
//! trace, and the invariants are checked; after the random steps the settling steps follow the same
//! way. The trace alone (with the configuration) replays the schedule exactly, which is how a
//! violation is shrunk and how `--seed S` prints what happened.

use crate::cluster::{Cluster, Stats};
use crate::config::{Faults, NodeCounts, SimConfig};
use crate::generate::{Settler, random_step};
use crate::invariants::{Checker, Violation};
use crate::rng::{Rng, Stream};
use crate::step::Step;

/// The most settling steps after the random part (settling normally needs far fewer).
const SETTLE_LIMIT: usize = 3000;

/// The result of one schedule.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its configuration.
    pub config: SimConfig,
    /// Every step applied, random and settling.
    pub trace: Vec<Step>,
    /// The first violation, if any (the trace ends with the step that caused it).
    pub violation: Option<Violation>,
    /// What the schedule exercised.
    pub stats: Stats,
    /// The settling phase reached a healed, resynced, quiet cluster.
    pub settled: bool,
    /// UpToDate nodes at the end.
    pub up_to_date_at_end: usize,
}

/// Generates and checks the schedule of `config`.
pub fn run_schedule(config: &SimConfig) -> Outcome {
    let mut rng = Rng::stream(config.seed, Stream::Steps);
    let mut cluster = Cluster::new(config, false);
    let mut checker = Checker::new(config.nodes);
    let mut trace = Vec::with_capacity(config.steps * 2);
    let mut violation = None;
    for _ in 0..config.steps {
        let Some(step) = random_step(&mut rng, &cluster) else {
            break;
        };
        cluster.apply(&step);
        trace.push(step);
        violation = checker.check(&cluster);
        if violation.is_some() {
            break;
        }
    }
    if violation.is_none() {
        let mut settler = Settler::default();
        for _ in 0..SETTLE_LIMIT {
            let Some(step) = settler.next(&cluster) else {
                break;
            };
            cluster.apply(&step);
            trace.push(step);
            violation = checker.check(&cluster);
            if violation.is_some() {
                break;
            }
        }
    }
    Outcome {
        config: config.clone(),
        trace,
        settled: violation.is_none() && cluster.quiescent(),
        up_to_date_at_end: cluster
            .nodes
            .iter()
            .filter(|n| n.up && n.disk_state.can_serve_io())
            .count(),
        violation,
        stats: cluster.stats,
    }
}

/// One step of a replay, with what it did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TraceLine {
    /// 1-based position in the trace.
    pub index: usize,
    /// The step.
    pub step: String,
    /// What it did (decisions, state changes).
    pub effects: Vec<String>,
}

/// The result of replaying a trace.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The first violation, if any.
    pub violation: Option<Violation>,
    /// Steps applied (up to and including the violating one).
    pub applied: usize,
    /// The steps with their effects, when asked for.
    pub lines: Vec<TraceLine>,
}

/// Replays `trace` on the cluster of `config`, stopping at the first violation.
pub fn replay(config: &SimConfig, trace: &[Step], with_effects: bool) -> Replay {
    let mut cluster = Cluster::new(config, with_effects);
    let mut checker = Checker::new(config.nodes);
    let mut lines = Vec::new();
    for (i, step) in trace.iter().enumerate() {
        cluster.apply(step);
        if with_effects {
            lines.push(TraceLine {
                index: i + 1,
                step: step.describe(config.nodes),
                effects: cluster.notes.clone(),
            });
        }
        if let Some(v) = checker.check(&cluster) {
            return Replay {
                violation: Some(v),
                applied: i + 1,
                lines,
            };
        }
    }
    Replay {
        violation: None,
        applied: trace.len(),
        lines,
    }
}

/// What [`run_many`] found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Schedules with a violation.
    pub violations: Vec<Outcome>,
    /// Steps applied in all schedules.
    pub steps: u64,
    /// Schedules whose settling phase reached a healed, resynced, quiet cluster.
    pub settled: u64,
    /// Settled schedules that ended with at least one UpToDate node.
    pub settled_with_up_to_date: u64,
    /// Schedules with quorum enabled.
    pub with_quorum: u64,
    /// Counts over all schedules.
    pub stats: Stats,
}

/// Runs `count` schedules with seeds `first_seed..`, node counts from `nodes`, and `faults`
/// planted; `on_violation` sees each violating schedule as it is found.
pub fn run_many(
    first_seed: u64,
    count: u64,
    nodes: NodeCounts,
    faults: Faults,
    mut on_violation: impl FnMut(&Outcome),
) -> Summary {
    let mut summary = Summary::default();
    for seed in first_seed..first_seed.saturating_add(count) {
        let config = SimConfig::draw(seed, nodes.for_seed(seed), faults);
        let outcome = run_schedule(&config);
        summary.schedules += 1;
        summary.steps += outcome.trace.len() as u64;
        summary.stats.add(&outcome.stats);
        summary.with_quorum += u64::from(config.quorum_enabled());
        if outcome.settled {
            summary.settled += 1;
            summary.settled_with_up_to_date += u64::from(outcome.up_to_date_at_end > 0);
        }
        if outcome.violation.is_some() {
            on_violation(&outcome);
            summary.violations.push(outcome);
        }
    }
    summary
}
