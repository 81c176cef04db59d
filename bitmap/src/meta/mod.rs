//! The metadata of one replicated volume, open for use: the API the replication engine calls.
//!
//! ```text
//!   create ─▶ (closed, al-clean) ─open─▶ [apply-al if unclean] ─▶ in use ─close─▶ (closed, al-clean)
//!                                                                  │ crash
//!                                                                  ▼
//!                                                         (unclean) ─open─▶ apply-al ─▶ in use
//! ```
//!
//! # The crash rule and why it holds
//!
//! *After any crash, every block written since the last time peer P was known to have it is marked
//! for P in P's on-disk bitmap, or lies in an extent the on-disk activity log lists.* `open` then marks
//! every listed extent for every peer (`apply-al`), so the rule becomes "marked in the bitmap".
//!
//! The write path keeps it with four orderings, each enforced by a `flush` of the metadata device
//! between the two steps:
//!
//! 1. **Activate before writing.** [`Metadata::begin_write`] returns only after the transaction that
//!    lists the write's extents is durable. A data write therefore always lies in a listed extent while
//!    it is in flight, whether or not it reached any disk.
//! 2. **Persist bits before evicting.** A transaction that evicts extent E is written only after every
//!    dirty bitmap block covering E is durable. Bits set for E while it was active (peer down, peer
//!    write failed) thus reach the bitmap before the log stops covering E.
//! 3. **Bits outside the log are flushed.** Bits set for ranges that are not covered by the caller's
//!    write (invalidate, verify, a peer's bitmap received at connect) are only promised durable after
//!    [`Metadata::flush`] returns; callers flush before acting on them.
//! 4. **Superblock last, twice.** State changes (flags, generation identifiers, al-clean) are written to
//!    superblock copy A, flushed, then to copy B, flushed ([`crate::superblock`]).
//!
//! Clearing bits is only ever late on disk, never early: a cleared bit reaches the disk with the next
//! write of its block, and until then the stale set bit only causes a redundant resync.
//!
//! A torn write can hit only a block being written: a torn transaction is the oldest ring position
//! and is ignored ([`crate::al::replay`]); a torn bitmap block is treated as all-dirty, which is safe;
//! a torn superblock copy loses to the other. Any metadata I/O error makes the handle fail-stop: the
//! engine detaches the disk rather than continue with metadata it cannot persist.

mod bitmaps;
mod inspect;
mod io;
mod lifecycle;
mod write_path;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

pub use bitmaps::bitmap_bytes;
pub use inspect::{Inspection, inspect};
pub use lifecycle::{AlRecovery, CreateOptions, OpenOptions, OpenReport, create};
pub use write_path::WriteGuard;

use crate::al::lru::ActivityLog;
use crate::device::MetaDevice;
use crate::error::{MetaError, Result};
use crate::layout::{AL_EXTENT_SHIFT, Geometry};
use crate::sparse::SparseBitmap;
use crate::superblock::Superblock;

/// Counters of metadata activity, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaStats {
    /// Activity-log transactions written.
    pub al_transactions: u64,
    /// Extents evicted from the activity log.
    pub al_evictions: u64,
    /// Bitmap blocks written.
    pub bitmap_blocks_written: u64,
    /// Superblock updates (each writes both copies).
    pub superblock_writes: u64,
    /// `begin_write` calls that had to wait for a transaction.
    pub al_waits: u64,
}

/// Mutable state, behind one mutex held only for in-memory work.
struct State {
    sb: Superblock,
    bitmaps: Vec<SparseBitmap>,
    /// On-disk bitmap blocks `(slot, block)` whose in-memory content changed since last written.
    dirty_blocks: BTreeSet<(u8, u32)>,
    al: ActivityLog,
    /// Extents that writers are waiting to have activated → number of waiters.
    pending: BTreeMap<u32, u32>,
    failed: Option<String>,
    closed: bool,
    stats: MetaStats,
}

/// Open metadata of one volume. Shared by the engine's tasks behind an `Arc`.
pub struct Metadata {
    dev: Box<dyn MetaDevice>,
    geo: Geometry,
    meta_uuid: u64,
    state: Mutex<State>,
    /// Signalled when an extent becomes idle (a slot may now be evicted).
    extent_idle: Condvar,
    /// Serialises every sequence of metadata I/O (transactions, bitmap write-out, superblock).
    io: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metadata {
    /// The layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The metadata instance's uuid.
    pub fn meta_uuid(&self) -> u64 {
        self.meta_uuid
    }

    /// A description of the device holding the metadata.
    pub fn device(&self) -> String {
        self.dev.describe()
    }

    /// Counters of metadata activity.
    pub fn stats(&self) -> MetaStats {
        lock(&self.state).stats
    }

    /// A copy of the superblock as last written (or about to be).
    pub fn superblock(&self) -> Superblock {
        lock(&self.state).sb.clone()
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let data_size = self.geo.data_size();
        match offset.checked_add(len) {
            Some(end) if end <= data_size => Ok(()),
            _ => Err(MetaError::OutOfBounds {
                offset,
                len,
                data_size,
            }),
        }
    }

    /// Bitmap bits touching any byte of `offset..offset+len` (rounded outward): what must be marked.
    fn bits_touching(&self, offset: u64, len: u64) -> Range<u64> {
        let g = self.geo.bm_block_size();
        if len == 0 {
            return 0..0;
        }
        offset / g..(offset + len).div_ceil(g)
    }

    /// Bitmap bits whose every byte lies in `offset..offset+len` (rounded inward; the short last
    /// bit counts as covered when the range reaches the end of the data): what may be cleared.
    fn bits_within(&self, offset: u64, len: u64) -> Range<u64> {
        let g = self.geo.bm_block_size();
        let end = offset + len;
        let last = if end == self.geo.data_size() {
            self.geo.bm_bits()
        } else {
            end / g
        };
        let first = offset.div_ceil(g);
        first.min(last)..last
    }

    /// Activity-log extents touched by `offset..offset+len`.
    fn extents_of(offset: u64, len: u64) -> Option<std::ops::RangeInclusive<u32>> {
        (len > 0).then(|| (offset >> AL_EXTENT_SHIFT) as u32..=((offset + len - 1) >> AL_EXTENT_SHIFT) as u32)
    }

    /// Bitmap bits of extent `extent`.
    fn extent_bits(&self, extent: u32) -> Range<u64> {
        let start = u64::from(extent) << AL_EXTENT_SHIFT;
        let len = (1u64 << AL_EXTENT_SHIFT).min(self.geo.data_size().saturating_sub(start));
        self.bits_touching(start, len)
    }

    fn failed_error(&self, cause: &str) -> MetaError {
        MetaError::Failed {
            device: self.dev.describe(),
            cause: cause.to_string(),
        }
    }

    /// Fails if an earlier I/O error stopped the handle, or it was closed.
    fn usable(&self, st: &State) -> Result<()> {
        if let Some(cause) = &st.failed {
            return Err(self.failed_error(cause));
        }
        if st.closed {
            return Err(self.failed_error("it was closed"));
        }
        Ok(())
    }

    /// Records the first I/O error; every later operation fails with it.
    fn fail(&self, err: MetaError) -> MetaError {
        let mut st = lock(&self.state);
        if st.failed.is_none() {
            tracing::error!(device = %self.dev.describe(), error = %err, "metadata I/O failed; metadata is now read-only");
            st.failed = Some(err.to_string());
        }
        err
    }
}
