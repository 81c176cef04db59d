//! Acting on peer acks: sending them as Primary, and as Secondary marking what other peers lack
//! (see [`super::peer_ack`] for the protocol).
//!
//! Crash ordering: a Secondary marks a write for the peers that lack it only once the Primary says
//! who holds it. If this node crashes first, the write's extent is still in its activity log, and
//! an unclean attach marks every activity-log extent out of sync for every peer — so nothing is
//! missed, only more is resynced.

use std::ops::Range;
use std::sync::Arc;

use replbd_quorum::Role;

use super::core::Inner;
use super::link::Link;
use super::peer_ack::{Mask, Ready, bit};
use super::resync::SyncRole;
use crate::wire::{FrameHeader, Kind, OutFrame};

/// Tells the peer behind `link` that it lacks `ranges`, which this node holds: it fetches them.
fn tell_out_of_sync(link: &Link, ranges: &[Range<u64>]) {
    for r in ranges {
        let mut h = FrameHeader::new(Kind::OutOfSync);
        h.sector = r.start / 512;
        h.aux = r.end - r.start;
        link.send(OutFrame::bare(h));
    }
}

impl Inner {
    /// Sends each ready epoch's peer ack to the peers that received its writes.
    pub(crate) fn send_peer_acks(&self, ready: Vec<Ready>) {
        if ready.is_empty() {
            return;
        }
        let links = self.live_links();
        for r in ready {
            let mut h = FrameHeader::new(Kind::PeerAck);
            h.seq = r.holders;
            h.aux = r.epoch;
            for l in links.iter().filter(|l| r.recipients & bit(l.peer) != 0) {
                l.send(OutFrame::bare(h));
            }
        }
    }

    /// Marks `ranges` out of sync for every diskful peer (other than `primary`) not in `holders`,
    /// and, with `tell`, tells those that are connected (they then resync from this node).
    fn mark_for_missing(&self, primary: u8, holders: Mask, ranges: &[Range<u64>], tell: bool) {
        let Some(d) = &self.disk else { return };
        if ranges.is_empty() {
            return;
        }
        for p in self.peers().iter() {
            let n = p.cfg.node_id;
            let Some(slot) = p.slot else { continue };
            if n == primary || holders & bit(n) != 0 {
                continue;
            }
            for r in ranges {
                let _ = d.meta.mark_out_of_sync(slot, r.start, r.end - r.start);
            }
            tracing::debug!(resource = %self.cfg.name, peer = n, ranges = ranges.len(), "marked writes the peer did not get");
            if tell && let Some(l) = p.live() {
                tell_out_of_sync(&l, ranges);
            }
        }
    }

    /// The writes of every Primary connected to this node that are not peer-acked yet: whether
    /// other Secondaries got them is not known here. A sync source includes them in what it moves
    /// — its marks for the target come from peer acks, and one still outstanding may be the only
    /// word that the target lacks a write. Without this a node away from the Primary and resynced
    /// by this one ended UpToDate without an acknowledged write, and, promoted after the Primary
    /// died, pushed its older block over this node's (it held none of the Primary's stream, so the
    /// settlement of [`super::lost_primary`] saw nothing to compare). At worst a few blocks the
    /// target already holds move again.
    pub(crate) fn unconfirmed_writes(&self) -> Vec<Range<u64>> {
        self.live_links()
            .iter()
            .flat_map(|l| l.unacked.ranges())
            .collect()
    }

    /// The Primary behind `link` says every write of `epoch` is durable on `holders`.
    pub(crate) fn peer_ack_received(&self, link: &Link, epoch: u64, holders: Mask) {
        let ranges = link.unacked.take(epoch);
        self.mark_for_missing(link.peer, holders | bit(self.cfg.node_id), &ranges, true);
    }

    /// The connection to a Primary is gone with writes never peer-acked: whoever else may lack
    /// them, this node cannot tell.
    pub(crate) fn primary_link_lost(self: &Arc<Self>, link: &Link) {
        self.settle_lost_primary(link);
        let ranges = link.unacked.take_all();
        if !ranges.is_empty() {
            tracing::info!(resource = %self.cfg.name, peer = link.peer, ranges = ranges.len(), "writes of the lost Primary were never peer-acked; marked out of sync for every peer");
        }
        // Every Secondary does the same. Whose copy of these writes to keep is settled by how far
        // each got in the Primary's stream ([`super::lost_primary`]): the one ahead resyncs the
        // others, and a node behind is not promoted before; with equal positions the copies are
        // the same and the marks stay until a Primary emerges and resyncs them from its copy
        // ([`Inner::resync_marked_after_promotion`]), or until the next handshake.
        self.mark_for_missing(link.peer, bit(self.cfg.node_id), &ranges, false);
        if ranges.is_empty() {
            return;
        }
        // Except toward a node taking a resync from this one right now: it is Inconsistent,
        // adopting this node's data anyway, and may have been away while the lost Primary wrote —
        // then only this node holds those writes, acknowledged ones included, and the resync's
        // bitmap lacked them (the Primary's peer acks that would have named the peer never came).
        // Without this it finished "UpToDate" without them, was promoted, and pushed its older
        // blocks back over this node's (found by `replbd-faults`, seed 32: an acknowledged, flushed
        // write lost). Its running resync picks the blocks up before it ends.
        for l in self.live_links() {
            if l.peer != link.peer
                && l.resync()
                    .is_some_and(|r| r.role == SyncRole::Source && r.active())
            {
                tracing::info!(resource = %self.cfg.name, peer = l.peer, ranges = ranges.len(), "the lost Primary's last writes go to this node's sync target too");
                tell_out_of_sync(&l, &ranges);
            }
        }
        // A new Primary may already be here: promoted elsewhere before this node noticed the old
        // one was gone, its promotion found no marks to fetch. Fetch them now, or they would stay
        // marked while every node reports UpToDate (found by `replbd-faults`: 8 blocks out of
        // sync between a Secondary and the new Primary, forever).
        if self.role() == Role::Primary {
            self.resync_marked_after_promotion();
            return;
        }
        for l in self.live_links() {
            if l.peer != link.peer && self.peer_role(l.peer) == Role::Primary {
                self.resync_marked_from_new_primary(&l);
            }
        }
    }

    /// A new Primary: blocks marked for connected peers (writes of a lost Primary nobody confirmed,
    /// an online verify's findings) move from this node now, its copy being the one the
    /// application uses.
    pub(crate) fn resync_marked_after_promotion(self: &Arc<Self>) {
        let Some(d) = &self.disk else { return };
        for p in self.peers().iter() {
            let (Some(slot), Some(l)) = (p.slot, p.live()) else {
                continue;
            };
            if d.meta.out_of_sync_bits(slot).unwrap_or(0) == 0 || l.resync().is_some_and(|r| r.active()) {
                continue;
            }
            if let Err(e) = super::resync::command::begin_resync(self, &l, SyncRole::Source, false, true) {
                tracing::warn!(resource = %self.cfg.name, peer = p.cfg.node_id, error = %e, "cannot resync the blocks marked for this peer; they stay marked");
            }
        }
    }

    /// A connected peer became Primary: blocks this Secondary marked for it (writes of the previous
    /// Primary nobody confirmed) are fetched from it, its copy being the one the application uses.
    pub(crate) fn resync_marked_from_new_primary(self: &Arc<Self>, link: &Arc<Link>) {
        let (Some(d), Some(slot)) = (&self.disk, link.slot) else {
            return;
        };
        if self.role() == Role::Primary
            || d.meta.out_of_sync_bits(slot).unwrap_or(0) == 0
            || link.resync().is_some_and(|r| r.active())
        {
            return;
        }
        if let Err(e) = super::resync::command::begin_resync(self, link, SyncRole::Target, false, true) {
            tracing::warn!(resource = %self.cfg.name, peer = link.peer, error = %e, "cannot resync the blocks marked for the new Primary; they stay marked");
        }
    }

    /// The peer behind `link` holds `offset..offset+len` and this node does not: mark it, after
    /// whatever this node is still applying there, and fetch it from that peer.
    pub(crate) fn out_of_sync_received(
        self: &Arc<Self>,
        link: &Arc<Link>,
        offset: u64,
        len: u64,
    ) -> Result<(), String> {
        let end = offset.checked_add(len);
        if len == 0 || end.is_none_or(|e| e > self.size) {
            return Err(format!(
                "out-of-sync note for {offset}+{len} is outside the {}-byte volume",
                self.size
            ));
        }
        let (Some(_), Some(slot)) = (&self.disk, link.slot) else {
            return Ok(());
        };
        // Behind every request and write already applying to the range (a resync write answering
        // an older request clears these bits; the mark must come after it).
        let turn = self.apply_order.register(offset..offset + len);
        let (inner, link) = (Arc::clone(self), Arc::clone(link));
        tokio::spawn(async move {
            let _turn = turn.granted().await;
            let Some(d) = &inner.disk else { return };
            if let Err(e) = d.meta.mark_out_of_sync(slot, offset, len) {
                tracing::error!(resource = %inner.cfg.name, peer = link.peer, offset, len, error = %e, "cannot mark blocks the peer reported missing here");
                return;
            }
            // A resync with this peer under way picks the bits up (its target, this node, walks the
            // bitmap again before it ends); otherwise start one.
            // Behind a congested Primary: that Primary starts the resync once its link drains.
            if link.resync().is_none_or(|r| !r.active())
                && inner.role() != Role::Primary
                && !inner.is_behind()
                && let Err(e) =
                    super::resync::command::begin_resync(&inner, &link, SyncRole::Target, false, true)
            {
                tracing::warn!(resource = %inner.cfg.name, peer = link.peer, error = %e, "cannot resync blocks the peer reported missing here; they stay marked");
            }
        });
        Ok(())
    }
}
