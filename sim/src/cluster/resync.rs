//! Resync: moving the out-of-sync blocks from the sync source to the sync target.
//!
//! At the start both ends record the blocks to move in their bitmap for each other (so an
//! interrupted resync continues at the next connect), the target becomes Inconsistent (persisted),
//! and the source applies `rotate::resync_started_as_source`. The set is the decision's bitmap (or
//! every block) plus the writes the source received whose peer ack has not arrived: until then it
//! cannot know whether the target got them.
//!
//! Each `ResyncStep` sends the lowest block still marked on the source and not already on its way,
//! with its contents at that moment. The target writes it, clears its own mark and acknowledges; the
//! source clears its mark on the acknowledgement — unless the block was marked again meanwhile (a
//! peer ack showed the target missed a newer write), in which case it is sent again. A mark is thus
//! only dropped once the target has the block, so a block lost with a broken connection, or with a
//! crash of either end, is still marked for the next connect. Blocks marked after the resync started
//! are sent too. Messages on a connection arrive in order, so a block the Primary writes after the
//! source read it reaches the target after the resync copy.
//!
//! The target takes the source's current UUID at the start (DRBD's sync UUID) and follows it if
//! the source starts a new generation meanwhile, remembering its own earlier one: while it is
//! Inconsistent its identifiers say which lineage its data is moving to, so no node of an older
//! lineage can become its source and overwrite the newer writes it already holds (and no old Primary
//! can regain quorum through it that way; found by the simulation). At the finish the earlier
//! generation is put back for `resync_finished_as_target`, which then adopts the source's.
//!
//! A resync that moves the target to the source's generation marks every block it writes out of
//! sync for the target's other peers (its data changed under them); a catch-up within one
//! generation does not. When nothing is left, the source sends its generation identifiers; the
//! target applies `rotate::resync_finished_as_target` and the bitmap changes it returns, and takes
//! the source's disk state (UpToDate, Consistent, Outdated — or Inconsistent: copying a half-synced
//! disk does not make a whole one).

use replbd_quorum::gi::same_generation;
use replbd_quorum::rotate;
use replbd_quorum::{DiskState, GenerationIds, NodeSet};

use super::Cluster;
use crate::net::{Msg, Resync};
use crate::node::{bit, members};
use crate::oracle::WriteId;

impl Cluster {
    /// Connects `source` and `target` with a resync of the blocks in `set`.
    pub(super) fn start_resync(&mut self, source: usize, target: usize, set: u64) {
        self.begin_resync(source, target, set, false);
    }

    /// Connects `source` and `target` with a resync of `set`; `catch_up`: both are at the same
    /// generation and the target only fetches blocks it missed.
    pub(super) fn begin_resync(&mut self, source: usize, target: usize, set: u64, catch_up: bool) {
        self.link_up(source, target);
        let absent: NodeSet = members(self.diskful() & !self.connected_peers(source) & !bit(source))
            .map(|p| self.nodes[p].id)
            .collect();
        let own = self.nodes[source].id;
        // An Inconsistent target still needs what an earlier, interrupted resync (perhaps from
        // another node) did not deliver: everything it has marked toward any peer.
        let pending = if self.nodes[target].disk_state == DiskState::Inconsistent {
            self.nodes[target].disk.bits.iter().fold(0, |m, b| m | b)
        } else {
            0
        };
        let set = set | pending | self.unacked_blocks(source);
        rotate::resync_started_as_source(&mut self.nodes[source].disk.gi, own, absent);
        self.nodes[source].disk.bits[target] |= set;
        let source_current = self.nodes[source].disk.gi.current;
        let t = &mut self.nodes[target];
        t.disk.bits[source] |= set;
        t.disk.gi.flags.consistent = false;
        t.disk_state = DiskState::Inconsistent;
        t.take_sync_uuid(source_current);
        self.net.set_resync(
            source,
            target,
            Some(Resync {
                source,
                target,
                done_sent: false,
                catch_up,
                in_flight: 0,
                remarked: 0,
                written: 0,
            }),
        );
        if set.count_ones() as usize == self.nodes[target].disk.data.len() {
            self.stats.full_resyncs += 1;
        } else {
            self.stats.bitmap_resyncs += 1;
        }
        self.note(|| {
            format!(
                "n{source}->n{target}: resync of {} blocks starts",
                set.count_ones()
            )
        });
    }

    /// Blocks of writes `node` received and has no peer ack for yet.
    fn unacked_blocks(&self, node: usize) -> u64 {
        self.nodes[node].unacked.iter().fold(0, |m, u| m | 1 << u.block)
    }

    /// Marks `blocks` out of sync on `node` for `peers`; a block already on its way to one of them
    /// in a resync is sent again.
    pub(super) fn mark_for(&mut self, node: usize, peers: u32, blocks: u64) {
        self.nodes[node].mark(peers, blocks);
        for p in members(peers & !bit(node)) {
            if let Some(mut rs) = self.net.resync(node, p)
                && rs.source == node
                && rs.in_flight & blocks != 0
            {
                rs.remarked |= rs.in_flight & blocks;
                self.net.set_resync(node, p, Some(rs));
            }
        }
    }

    /// Whether a `ResyncStep` on `rs` would do something now.
    pub fn resync_can_step(&self, rs: &Resync) -> bool {
        let marked = self.nodes[rs.source].disk.bits[rs.target];
        !rs.done_sent && (marked & !rs.in_flight != 0 || (marked == 0 && rs.in_flight == 0))
    }

    /// The source sends its next out-of-sync block, or says it is done.
    pub(super) fn resync_step(&mut self, source: usize, target: usize) {
        let Some(mut rs) = self.net.resync(source, target) else {
            return;
        };
        if rs.source != source || !self.net.connected(source, target) || !self.resync_can_step(&rs) {
            return;
        }
        // Writes received since the start whose peer ack is still missing go along too.
        let pending = self.unacked_blocks(source) & !rs.in_flight;
        self.nodes[source].disk.bits[target] |= pending;
        let to_send = self.nodes[source].disk.bits[target] & !rs.in_flight;
        if to_send != 0 {
            let block = to_send.trailing_zeros() as usize;
            let value = self.nodes[source].disk.data[block];
            rs.in_flight |= 1 << block;
            self.net.set_resync(source, target, Some(rs));
            self.net.send(source, target, Msg::ResyncData { block, value });
            return;
        }
        if rs.in_flight != 0 {
            return;
        }
        let s = &self.nodes[source];
        let at_current: NodeSet = members(self.connected_peers(source) & self.diskful() & !bit(target))
            .filter(|q| {
                same_generation(self.nodes[*q].disk.gi.current, s.disk.gi.current) && s.disk.bits[*q] == 0
            })
            .map(|q| self.nodes[q].id)
            .collect();
        let msg = Msg::ResyncDone {
            gi: Box::new(s.disk.gi.clone()),
            at_current,
            state: s.disk_state,
            seen: s.disk.seen,
            bits: s.disk.bits,
        };
        self.net.send(source, target, msg);
        rs.done_sent = true;
        self.net.set_resync(source, target, Some(rs));
    }

    /// One resync block arrives at the target.
    pub(super) fn receive_resync_data(&mut self, source: usize, target: usize, block: usize, value: WriteId) {
        // A resync that moves the target to the source's generation changes its data under its
        // other peers: mark the block for them. A catch-up within one generation only brings the
        // target to where the others are; whoever holds a write tracks who missed it.
        let rs = self.net.resync(source, target);
        let catch_up = rs.is_some_and(|r| r.catch_up);
        if let Some(mut r) = rs {
            r.written |= 1 << block;
            self.net.set_resync(source, target, Some(r));
        }
        let diskful = self.diskful();
        let t = &mut self.nodes[target];
        if block >= t.disk.data.len() {
            return;
        }
        t.disk.data[block] = value;
        t.disk.bits[source] &= !(1 << block);
        if !catch_up {
            self.mark_for(target, diskful & !bit(source), 1 << block);
        }
        self.net.send(target, source, Msg::ResyncAck { block });
    }

    /// The target has `block`: the source drops its mark unless it was marked again meanwhile.
    pub(super) fn resync_acked(&mut self, source: usize, target: usize, block: usize) {
        let Some(mut rs) = self.net.resync(source, target) else {
            return;
        };
        let b = 1 << block;
        if rs.remarked & b != 0 {
            rs.remarked &= !b;
        } else {
            self.nodes[source].disk.bits[target] &= !b;
        }
        rs.in_flight &= !b;
        self.net.set_resync(source, target, Some(rs));
    }

    /// The source's "done" arrives: the target adopts the source's generation.
    pub(super) fn finish_resync(
        &mut self,
        source: usize,
        target: usize,
        source_gi: &GenerationIds,
        at_current: NodeSet,
        state: DiskState,
        source_bits: &[u64; crate::config::MAX_NODES],
    ) {
        let written = self.net.resync(source, target).map_or(0, |r| r.written);
        let (own, sid) = (self.nodes[target].id, self.nodes[source].id);
        let primary = self.nodes[target].is_primary();
        let t = &mut self.nodes[target];
        // The rotation rule works from the generation the target had before the resync.
        if t.disk.pre_sync_current != 0 {
            t.disk.gi.current = t.disk.pre_sync_current;
            t.disk.pre_sync_current = 0;
        }
        let done =
            rotate::resync_finished_as_target(&mut t.disk.gi, own, sid, source_gi, at_current, primary);
        for p in done.cleared.iter() {
            if let Some(bits) = t.disk.bits.get_mut(p.index()) {
                *bits = 0;
            }
        }
        // Slots that now track the target's old generation must cover every block the resync
        // wrote (a catch-up did not mark them as it went).
        for p in done.tracking.iter() {
            if let Some(bits) = t.disk.bits.get_mut(p.index()) {
                *bits |= written;
            }
        }
        // The target's data is now the source's: what the source knows a third node lacks, the
        // target's data differs from it too.
        for (p, b) in source_bits.iter().enumerate() {
            if p != target && p != source {
                t.disk.bits[p] |= b;
            }
        }
        t.disk.bits[source] = 0;
        // The target is now as good as the source: an Inconsistent source leaves it Inconsistent,
        // an Outdated one Outdated.
        match state {
            DiskState::UpToDate => t.make_up_to_date(),
            DiskState::Inconsistent => {
                t.disk.gi.flags.consistent = false;
                t.disk_state = DiskState::Inconsistent;
            }
            DiskState::Outdated => t.outdate(),
            _ => t.disk_state = DiskState::Consistent,
        }
        self.net.set_resync(source, target, None);
        self.stats.resyncs_finished += 1;
        self.report_current(target, source);
        self.note(|| {
            format!("n{source}->n{target}: resync finished, n{target} adopts the source's generation")
        });
    }
}
