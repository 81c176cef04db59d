//! What one schedule simulates: the cluster's shape and options, all drawn from the seed.
//!
//! Each schedule gets its own configuration, so 10,000 schedules cover many combinations instead of
//! one: 3–7 nodes (sometimes with a diskless tiebreaker), `quorum majority | all | N` or `off`,
//! `quorum-minimum-redundancy`, `on-no-quorum`, and every after-split-brain policy. The configuration
//! depends only on the seed and the node count, so `--seed S --nodes K` rebuilds it exactly.
//!
//! [`Faults`] plants a bug in the simulated cluster. It exists so tests can show that the checker
//! catches each kind of violation; a normal run never sets it.

use std::fmt;
use std::str::FromStr;

use replbd_quorum::QuorumConfig;
use replbd_quorum::quorum::{OnNoQuorum, QuorumPolicy};
use replbd_quorum::split_brain::{AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, RrConflict, SplitBrainPolicies};
use thiserror::Error;

use crate::rng::{Rng, Stream};

/// The fewest nodes a schedule simulates.
pub const MIN_NODES: usize = 3;
/// The most nodes a schedule simulates.
pub const MAX_NODES: usize = 7;
/// Blocks per simulated disk: few, so that writes collide and bitmaps overlap often.
pub const BLOCKS: usize = 12;

/// Bugs that can be planted in the simulated cluster, to prove the checker finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// A Primary without quorum completes writes anyway (breaks invariants 4 and 1).
    pub write_without_quorum: bool,
    /// A split brain found at connect is resynced from the lower node id without any policy
    /// (breaks invariant 3).
    pub merge_split_brain: bool,
    /// A Primary does not mark blocks out of sync for peers it cannot reach (breaks invariant 2).
    pub skip_bitmap_marking: bool,
    /// A Primary that lost a peer starts the new generation only before its next write, as the
    /// engine's `rotate_if_pending` does, so writes in flight when the peer was lost complete in the
    /// old generation (breaks invariant 3 with `quorum off`).
    pub rotate_only_at_next_write: bool,
}

impl Faults {
    /// Whether any fault is planted.
    pub const fn any(&self) -> bool {
        self.write_without_quorum
            || self.merge_split_brain
            || self.skip_bitmap_marking
            || self.rotate_only_at_next_write
    }
}

/// The node counts to simulate: one, or a range drawn per schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCounts {
    /// Fewest nodes.
    pub min: usize,
    /// Most nodes.
    pub max: usize,
}

impl Default for NodeCounts {
    fn default() -> Self {
        Self {
            min: MIN_NODES,
            max: MAX_NODES,
        }
    }
}

impl NodeCounts {
    /// The node count of schedule `seed`.
    pub fn for_seed(&self, seed: u64) -> usize {
        if self.min == self.max {
            self.min
        } else {
            self.min + Rng::stream(seed, Stream::NodeCount).below(self.max - self.min + 1)
        }
    }
}

/// A `--nodes` value that is not `K`, `A..B` or `A..=B` within 3–7.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid node count {0:?}: give K, A..=B or A..B with {MIN_NODES} <= A <= B <= {MAX_NODES}")]
pub struct BadNodeCount(pub String);

impl FromStr for NodeCounts {
    type Err = BadNodeCount;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNodeCount(s.to_owned());
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        let (min, max) = if let Some((a, b)) = s.split_once("..=") {
            (num(a)?, num(b)?)
        } else if let Some((a, b)) = s.split_once("..") {
            (num(a)?, num(b)?.checked_sub(1).ok_or_else(bad)?)
        } else {
            let k = num(s)?;
            (k, k)
        };
        if MIN_NODES <= min && min <= max && max <= MAX_NODES {
            Ok(Self { min, max })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for NodeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
}

/// The configuration of one simulated cluster and schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The schedule's seed.
    pub seed: u64,
    /// Nodes in the cluster (diskful and diskless).
    pub nodes: usize,
    /// Bit *i* set: node *i* is an intentionally diskless tiebreaker.
    pub diskless: u32,
    /// Random steps before the final settling phase.
    pub steps: usize,
    /// `quorum`, `quorum-minimum-redundancy`, `on-no-quorum`.
    pub quorum: QuorumConfig,
    /// The after-split-brain and rr-conflict policies (the same on every connection).
    pub policies: SplitBrainPolicies,
    /// Planted bugs (tests only).
    pub faults: Faults,
}

impl SimConfig {
    /// The configuration of schedule `seed` with `nodes` nodes.
    pub fn draw(seed: u64, nodes: usize, faults: Faults) -> Self {
        let nodes = nodes.clamp(MIN_NODES, MAX_NODES);
        let mut rng = Rng::stream(seed, Stream::Config);
        // A diskless tiebreaker when it makes the diskful count even (2+1, 4+1, 6+1).
        let diskless: u32 = if nodes % 2 == 1 && rng.chance(30) {
            1 << (nodes - 1)
        } else {
            0
        };
        let diskful = nodes - diskless.count_ones() as usize;
        let majority = diskful / 2 + 1;
        let quorum = if rng.chance(15) {
            QuorumPolicy::Off
        } else {
            match rng.below(10) {
                0..=6 => QuorumPolicy::Majority,
                7 => QuorumPolicy::All,
                _ => QuorumPolicy::Count((majority + rng.below(diskful - majority + 1)) as u8),
            }
        };
        let minimum_redundancy = if quorum != QuorumPolicy::Off && rng.chance(20) {
            QuorumPolicy::Count(2)
        } else {
            QuorumPolicy::Off
        };
        let on_no_quorum = if rng.chance(50) {
            OnNoQuorum::IoError
        } else {
            OnNoQuorum::SuspendIo
        };
        let victim = rng.below(diskful);
        let zero = [
            AfterSb0Pri::Disconnect,
            AfterSb0Pri::DiscardYoungerPrimary,
            AfterSb0Pri::DiscardOlderPrimary,
            AfterSb0Pri::DiscardZeroChanges,
            AfterSb0Pri::DiscardLeastChanges,
            AfterSb0Pri::DiscardNode(node_name(victim)),
        ];
        let after_sb_0pri = zero.get(rng.below(zero.len())).cloned().unwrap_or_default();
        let policies = SplitBrainPolicies {
            after_sb_0pri,
            after_sb_1pri: rng.pick(AfterSb1Pri::ALL).unwrap_or_default(),
            after_sb_2pri: rng.pick(AfterSb2Pri::ALL).unwrap_or_default(),
            rr_conflict: if rng.chance(70) {
                RrConflict::Disconnect
            } else {
                RrConflict::RetryConnect
            },
            always_asbp: rng.chance(20),
        };
        Self {
            seed,
            nodes,
            diskless,
            steps: 80 + rng.below(80),
            quorum: QuorumConfig {
                quorum,
                minimum_redundancy,
                on_no_quorum,
            },
            policies,
            faults,
        }
    }

    /// Whether node `i` is a diskless tiebreaker.
    pub const fn is_diskless(&self, i: usize) -> bool {
        self.diskless & (1 << i) != 0
    }

    /// Bit mask of the diskful nodes.
    pub const fn diskful_mask(&self) -> u32 {
        ((1u32 << self.nodes) - 1) & !self.diskless
    }

    /// Whether quorum is enabled (`quorum` is not `off`).
    pub fn quorum_enabled(&self) -> bool {
        self.quorum.quorum != QuorumPolicy::Off
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = &self.quorum;
        write!(
            f,
            "{} nodes{}, quorum {}, quorum-minimum-redundancy {}, on-no-quorum {}, after-sb-0pri {}, \
             after-sb-1pri {}, after-sb-2pri {}, rr-conflict {}, always-asbp {}",
            self.nodes,
            if self.diskless != 0 {
                format!(" (n{} diskless)", self.diskless.trailing_zeros())
            } else {
                String::new()
            },
            q.quorum,
            q.minimum_redundancy,
            q.on_no_quorum,
            self.policies.after_sb_0pri,
            self.policies.after_sb_1pri,
            self.policies.after_sb_2pri,
            self.policies.rr_conflict,
            if self.policies.always_asbp { "yes" } else { "no" },
        )
    }
}

/// The name of node `i`, as used in traces and in `discard-node-NAME`.
pub fn node_name(i: usize) -> String {
    format!("n{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_counts_parse() {
        assert_eq!("5".parse::<NodeCounts>().unwrap(), NodeCounts { min: 5, max: 5 });
        assert_eq!("3..=7".parse::<NodeCounts>().unwrap(), NodeCounts::default());
        assert_eq!(
            "3..6".parse::<NodeCounts>().unwrap(),
            NodeCounts { min: 3, max: 5 }
        );
        assert!("2".parse::<NodeCounts>().is_err());
        assert!("8".parse::<NodeCounts>().is_err());
        assert!("6..=4".parse::<NodeCounts>().is_err());
        assert!("x".parse::<NodeCounts>().is_err());
    }

    #[test]
    fn config_is_a_function_of_seed_and_nodes() {
        for seed in 0..200 {
            let a = SimConfig::draw(seed, 5, Faults::default());
            assert_eq!(a, SimConfig::draw(seed, 5, Faults::default()));
            let diskful = a.diskful_mask().count_ones() as usize;
            assert!(diskful >= 2);
            if let QuorumPolicy::Count(k) = a.quorum.quorum {
                assert!(usize::from(k) > diskful / 2 && usize::from(k) <= diskful);
            }
        }
        let counts = NodeCounts::default();
        assert!((0..100).all(|s| (3..=7).contains(&counts.for_seed(s))));
    }
}
