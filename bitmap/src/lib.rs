//! replbd's on-disk metadata: the superblock, generation identifiers, the activity log and one dirty
//! bitmap per peer — what lets a node know, after an outage or a crash, exactly which blocks each
//! peer is missing, so that resync is partial and no acknowledged write is forgotten.
//!
//! - [`layout`]: where everything sits and the size formula (documented in `docs/metadata-format.md`).
//! - [`superblock`]: geometry, flags and generation identifiers, written twice atomically.
//! - [`al`]: the activity log — transactions in an on-disk ring, an in-memory LRU, crash replay.
//! - [`bitmap_block`]: the on-disk form of the per-peer bitmaps.
//! - [`sparse`]: the in-memory bitmap whose memory follows what is dirty.
//! - [`meta`]: [`Metadata`], the open handle the replication engine uses, with the crash-ordering
//!   argument; [`create`], [`inspect`] and [`check`](check::check) for tools.

pub mod al;
pub mod bitmap_block;
pub mod check;
mod codec;
pub mod device;
pub mod error;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod layout;
pub mod meta;
pub mod random;
pub mod sparse;
pub mod superblock;
pub mod units;

pub use device::{FileDevice, MemDevice, MetaDevice};
pub use error::{BlockDefect, Defects, GeometryError, MetaError, Region, Result};
pub use layout::{Geometry, Params, Placement};
pub use meta::{
    AlRecovery, CreateOptions, Inspection, MetaStats, Metadata, OpenOptions, OpenReport, WriteGuard, create,
    inspect,
};
pub use sparse::SparseBitmap;
pub use superblock::{GenerationIds, NodeFlags, PeerFlags, PeerGenerations, Superblock};
pub use units::{NodeId, PeerSlot};
