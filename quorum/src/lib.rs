//! Pure decision logic of replbd: the rules that keep replicated data consistent.
//!
//! replbd reproduces DRBD's behaviour: which node resyncs from which after an outage, when a
//! partition may keep writing, what to do after a split brain, when to fence a peer, when a node may
//! promote. Those rules are subtle and a mistake in them silently corrupts data, so they live here,
//! apart from the engine, as plain functions of plain values: no I/O, no clocks, no randomness (new
//! UUIDs are passed in), no locks. The engine gathers the facts, calls these functions, and carries out
//! the answers; tests can drive every rule exhaustively.
//!
//! | module | decides |
//! |---|---|
//! | [`state`] | roles, disk/connection/replication states with DRBD's names |
//! | [`node`] | node ids 0–63 and sets of them |
//! | [`gi`] | generation identifiers (current, bitmap and history UUIDs, flags) |
//! | [`mod@decide`] | the handshake: resync direction, bitmap or full sync, split brain, unrelated data |
//! | [`rotate`] | how the generation identifiers change (new generation, resync start/finish, user commands) |
//! | [`quorum`] | whether a partition has quorum |
//! | [`split_brain`] | after-split-brain policies and rr-conflict |
//! | [`fencing`] | when to run fence-peer and what its answer means |
//! | [`options`] | connection options that constrain each other |
//! | [`promote`] | whether a node may become Primary |

pub mod decide;
pub mod fencing;
pub mod gi;
mod names;
pub mod node;
pub mod options;
pub mod promote;
pub mod quorum;
pub mod rotate;
pub mod split_brain;
pub mod state;

pub use decide::{Decision, HandshakeSide, Rule, Side, SyncDecision, SyncKind, decide};
pub use fencing::{FenceOutcome, FencingPolicy};
pub use gi::GenerationIds;
pub use names::UnknownName;
pub use node::{InvalidNodeId, NodeId, NodeSet};
pub use options::{ConfigError, ConnectionOptions, Protocol, validate_connection_options};
pub use promote::{PromoteRefusal, can_promote};
pub use quorum::{QuorumConfig, QuorumPolicy, QuorumVerdict, departed_peer_absence, evaluate_quorum};
pub use split_brain::{SbOutcome, SbResolution, SplitBrainPolicies, resolve_split_brain};
pub use state::{ConnectionState, DiskState, ReplicationState, Role};
