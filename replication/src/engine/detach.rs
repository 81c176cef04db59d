//! Disk errors: a local I/O error detaches the disk (DRBD's `on-io-error detach`).
//!
//! After a failed local read, write or flush the local disk can no longer be trusted to hold what
//! the application wrote, so it is taken out of service at once: the node becomes `Diskless` and
//! keeps serving through its UpToDate peers (reads go to them, writes go only to them), exactly as
//! an intentionally diskless node does. Nothing the application was told is lost: a write whose
//! local path failed succeeded only if a peer has it.
//!
//! The metadata usually survives a data-disk error, and then the detached disk keeps an exact
//! account of what it misses: the failed request's range, and every write the node learns of while
//! detached (its own as Primary, a Primary's as Secondary), is marked out of sync toward every peer.
//! The disk is `Outdated` from then on (consistent, not current), so the restart after the disk is
//! repaired (`down`, `up`) resyncs exactly the marked blocks from an UpToDate peer.
//!
//! Crash ordering, for a read or write error:
//! 1. the metadata drops `was-up-to-date` and `crashed-primary`, durably — from here a restart
//!    comes back Outdated, never UpToDate, and never the source of a resync;
//! 2. the missed range is marked and the bitmap flushed, before the failed request completes.
//!
//! A crash between 1 and 2, or while detached before the lazily written bitmap reaches the disk,
//! loses no mark: every write took an activity-log reference first (a detached Secondary takes one
//! just to record the mark), and an unclean restart marks every activity-log extent for every peer.
//! A failed **flush** says nothing about which writes reached the platter, so it still marks the
//! whole device and drops `consistent`: the restart comes back Inconsistent and resyncs fully.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use replbd_bitmap::NodeFlags;
use replbd_quorum::DiskState;

use super::core::Inner;
use super::local::LocalDisk;
use super::state::Event;

impl Inner {
    /// The local disk for data I/O: `None` for a diskless node and after a detach.
    pub(crate) fn local(&self) -> Option<&LocalDisk> {
        self.disk
            .as_ref()
            .filter(|_| !self.detached.load(Ordering::SeqCst))
    }

    /// True when this node has a disk that was detached after an error.
    pub(crate) fn is_detached(&self) -> bool {
        self.disk.is_some() && self.detached.load(Ordering::SeqCst)
    }

    /// The local disk lacks `range` (a failed request, or a write while detached): it differs from
    /// every peer there.
    pub(crate) fn mark_missed_locally(&self, range: Range<u64>) {
        let Some(d) = &self.disk else { return };
        for p in self.peers().iter() {
            if let Some(slot) = p.slot
                && let Err(e) = d
                    .meta
                    .mark_out_of_sync(slot, range.start, range.end - range.start)
            {
                tracing::error!(resource = %self.cfg.name, peer = p.cfg.node_id, error = %e, "cannot mark a block the detached disk misses");
            }
        }
    }

    /// Detaches the local disk after an I/O error on `missed` (`None`: a flush, which could have
    /// lost anything). Every call marks its range; the detach itself happens once.
    pub(crate) fn detach_after_error(
        self: &Arc<Self>,
        what: &str,
        error: &std::io::Error,
        missed: Option<Range<u64>>,
    ) {
        if self.detached.swap(true, Ordering::SeqCst) {
            if let Some(r) = missed {
                self.mark_missed_locally(r);
            }
            return;
        }
        tracing::error!(
            resource = %self.cfg.name,
            what,
            error = %error,
            "local disk failed: detached; the resource keeps serving through its peers. Repair or replace \
             the disk, then `down` and `up` the resource: it resyncs what it missed from a peer"
        );
        if let Some(d) = &self.disk {
            match missed {
                Some(r) => self.record_partial_detach(d, r),
                None => self.record_full_detach(d),
            }
        }
        self.change(|c| {
            if c.disk == DiskState::Diskless {
                return Vec::new();
            }
            c.disk = DiskState::Diskless;
            vec![Event::Disk(DiskState::Failed), Event::Disk(DiskState::Diskless)]
        });
        self.broadcast_state();
    }

    /// A read or write error: the disk is consistent except where marked (see the module docs for
    /// the order).
    fn record_partial_detach(&self, d: &LocalDisk, missed: Range<u64>) {
        let persisted = d.meta.update(|_, flags| {
            flags.set(NodeFlags::WAS_UP_TO_DATE, false);
            flags.set(NodeFlags::CRASHED_PRIMARY, false);
        });
        if let Err(e) = persisted {
            tracing::error!(resource = %self.cfg.name, error = %e, "cannot record the detach in the metadata: it may claim the old data on restart; discard the disk before reusing it");
        }
        self.mark_missed_locally(missed);
        if let Err(e) = d.meta.flush() {
            tracing::error!(resource = %self.cfg.name, error = %e, "cannot write the bitmap of the detached disk");
        }
    }

    /// A flush error: every block is suspect toward every peer. Marked and flushed before the flags
    /// drop `consistent`: a crash in between leaves consistent flags with a full bitmap (the next
    /// resync with a Primary still covers everything), never Inconsistent data with a partial one.
    fn record_full_detach(&self, d: &LocalDisk) {
        self.mark_missed_locally(0..d.size());
        if let Err(e) = d.meta.flush() {
            tracing::error!(resource = %self.cfg.name, error = %e, "cannot write the bitmap of the detached disk");
        }
        let persisted = d.meta.update(|_, flags| {
            flags.set(NodeFlags::CONSISTENT, false);
            flags.set(NodeFlags::WAS_UP_TO_DATE, false);
        });
        if let Err(e) = persisted {
            tracing::error!(resource = %self.cfg.name, error = %e, "cannot record the detach in the metadata: it may claim the old data on restart; discard the disk before reusing it");
        }
    }
}
