//! Deterministic simulation of a replbd cluster, checking the safety invariants of quorum, fencing
//! and split brain.
//!
//! A seed determines everything: the cluster (3–7 nodes, quorum and split-brain options), and the
//! schedule of partitions, lost messages, delays, crashes, restarts, promotions, demotions and writes.
//! After every step four invariants are checked ([`invariants`]); a violation comes with its seed and
//! the shortest trace that still shows it ([`shrink`]).
//!
//! What runs is a model of the cluster ([`cluster`]) around the **real** `replbd-quorum` decision
//! functions: the handshake decision, quorum, promotion, split-brain policies, rr-conflict and the
//! generation-identifier rotation rules. The tokio engine itself is not simulated (it is not built
//! behind transport and disk traits); `docs/simulation.md` says exactly what is and is not modelled.
//!
//! | module | role |
//! |---|---|
//! | [`rng`] | the seeded generator (SplitMix64) |
//! | [`config`] | per-schedule configuration, node counts, planted faults |
//! | [`step`] | the events of a schedule |
//! | [`oracle`] | the ghost record of writes the checker compares against |
//! | [`node`], [`net`] | simulated disks, memory, network |
//! | [`cluster`] | what each step does |
//! | [`invariants`] | the four checks |
//! | [`generate`] | choosing random and settling steps |
//! | [`run`], [`shrink`], [`report`] | running, shrinking, printing |

pub mod cluster;
pub mod config;
pub mod generate;
pub mod invariants;
pub mod net;
pub mod node;
pub mod oracle;
pub mod report;
pub mod rng;
pub mod run;
pub mod shrink;
pub mod step;

pub use config::{Faults, NodeCounts, SimConfig};
pub use invariants::{Invariant, Violation};
pub use report::ViolationReport;
pub use run::{Outcome, Summary, replay, run_many, run_schedule};
pub use step::Step;
