//! Shrinking a violating trace to a short one that still shows the same invariant broken.
//!
//! Delta debugging over the list of steps: try removing chunks (half the trace, then quarters, …,
//! then single steps) and keep every removal after which a replay still violates the same
//! invariant; cut the trace after the violating step each time. Steps that no longer apply become
//! no-ops in the replay, so any subset of a trace is a valid schedule. The result is 1-minimal up to
//! the replay budget: removing any single remaining step makes the violation disappear.

use crate::config::SimConfig;
use crate::invariants::Invariant;
use crate::run::replay;
use crate::step::Step;

/// Replays allowed per shrink, so a pathological trace cannot stall a run.
const REPLAY_BUDGET: usize = 20_000;

/// The shortest trace found that still violates `invariant` (the input itself if it does not).
pub fn shrink(config: &SimConfig, trace: &[Step], invariant: Invariant) -> Vec<Step> {
    let budget = std::cell::Cell::new(REPLAY_BUDGET);
    let violates = |t: &[Step]| -> Option<usize> {
        if budget.get() == 0 {
            return None;
        }
        budget.set(budget.get() - 1);
        let r = replay(config, t, false);
        r.violation
            .filter(|v| v.invariant == invariant)
            .map(|_| r.applied)
    };
    let Some(end) = violates(trace) else {
        return trace.to_vec();
    };
    let mut current: Vec<Step> = trace[..end].to_vec();
    let mut chunk = (current.len() / 2).max(1);
    loop {
        let mut removed_any = false;
        let mut start = 0;
        while start < current.len() {
            let stop = (start + chunk).min(current.len());
            let candidate: Vec<Step> = current[..start].iter().chain(&current[stop..]).copied().collect();
            match violates(&candidate) {
                Some(end) => {
                    current = candidate;
                    current.truncate(end);
                    removed_any = true;
                }
                None => start += chunk,
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any || chunk > 1 {
            chunk = (chunk / 2).max(1);
        }
        if budget.get() == 0 {
            break;
        }
    }
    current
}
