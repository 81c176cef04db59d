//! Disk errors: a local I/O error detaches the disk (DRBD's `on-io-error detach`).
//!
//! After a failed local read, write or flush the local disk can no longer be trusted to hold what
//! the application wrote, so it is taken out of service at once: the node becomes `Diskless` and
//! keeps serving through its UpToDate peers (reads go to them, writes go only to them), exactly as
//! an intentionally diskless node does. Nothing the application was told is lost: a write whose
//! local path failed succeeded only if a peer has it.
//!
//! Crash ordering: the whole device is marked out of sync toward every peer and the bitmap flushed,
//! then the metadata drops the `consistent` and `was-up-to-date` flags (when the metadata device
//! still accepts writes), so a restart can never present the detached data as good: it comes back
//! `Inconsistent` and the resync covers every block. In that order, a crash in between leaves
//! consistent flags with a full bitmap (the next resync with a Primary still covers everything),
//! never Inconsistent data with a partial bitmap. A reattach that resyncs only the
//! blocks written while detached is not implemented.

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

    /// Detaches the local disk after an I/O error (once).
    pub(crate) fn detach_after_error(self: &Arc<Self>, what: &str, error: &std::io::Error) {
        if self.detached.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!(
            resource = %self.cfg.name,
            what,
            error = %error,
            "local disk failed: detached; the resource keeps serving through its peers. Replace the disk, \
             then `down` and `up` the resource: it resyncs fully from a peer"
        );
        if let Some(d) = &self.disk {
            // Every block is suspect toward every peer: whichever peer this node meets next, the
            // resync (into this node, whose data is Inconsistent) covers the whole device.
            for p in &self.peers {
                if let Some(slot) = p.slot
                    && let Err(e) = d.meta.mark_out_of_sync(slot, 0, d.size())
                {
                    tracing::error!(resource = %self.cfg.name, peer = p.cfg.node_id, error = %e, "cannot mark the detached disk out of sync");
                }
            }
            if let Err(e) = d.meta.flush() {
                tracing::error!(resource = %self.cfg.name, error = %e, "cannot write the bitmap of the detached disk");
            }
            let meta = Arc::clone(&d.meta);
            let name = self.cfg.name.clone();
            let persisted = meta.update(|_, flags| {
                flags.set(NodeFlags::CONSISTENT, false);
                flags.set(NodeFlags::WAS_UP_TO_DATE, false);
            });
            if let Err(e) = persisted {
                tracing::error!(resource = %name, error = %e, "cannot record the detach in the metadata: it may claim the old data on restart; discard the disk before reusing it");
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
}
