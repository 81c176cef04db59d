//! Per-peer bitmaps and generation identifiers of open metadata.
//!
//! Byte ranges are converted to bitmap bits conservatively: marking rounds outward (any touched bit
//! is marked), clearing rounds inward (a bit is cleared only when every byte it covers is in sync).

use std::ops::Range;

use crate::error::{MetaError, Result};
use crate::layout::BITS_PER_BITMAP_BLOCK;
use crate::sparse::SparseBitmap;
use crate::superblock::{GenerationIds, NodeFlags, PeerFlags};
use crate::units::{NodeId, PeerSlot};

use super::io::write_superblock;
use super::{Metadata, State, lock};

fn blocks_of(bits: &Range<u64>) -> std::ops::RangeInclusive<u32> {
    (bits.start / BITS_PER_BITMAP_BLOCK) as u32..=(bits.end.saturating_sub(1) / BITS_PER_BITMAP_BLOCK) as u32
}

impl Metadata {
    fn check_slot(&self, slot: PeerSlot) -> Result<()> {
        if slot.index() >= self.geo.max_peers() {
            return Err(MetaError::NoSuchSlot {
                slot,
                max_peers: self.geo.max_peers(),
            });
        }
        Ok(())
    }

    fn note_dirty(st: &mut State, slot: PeerSlot, bits: &Range<u64>) {
        if !bits.is_empty() {
            st.dirty_blocks.extend(blocks_of(bits).map(|b| (slot.0, b)));
        }
    }

    /// Marks `offset..offset+len` out of sync with `slot`'s peer; returns the number of bits that
    /// changed. In memory only: durable through the activity log while the range is covered by a
    /// [`WriteGuard`](super::WriteGuard), otherwise after [`flush`](Self::flush).
    pub fn mark_out_of_sync(&self, slot: PeerSlot, offset: u64, len: u64) -> Result<u64> {
        self.check_slot(slot)?;
        self.check_range(offset, len)?;
        let bits = self.bits_touching(offset, len);
        let mut st = lock(&self.state);
        let added = st.bitmaps[slot.index()].set_range(bits.clone());
        if added > 0 {
            Self::note_dirty(&mut st, slot, &bits);
        }
        Ok(added)
    }

    /// Marks `offset..offset+len` in sync with `slot`'s peer (only bits wholly inside the range);
    /// returns the number of bits cleared.
    pub fn clear_in_sync(&self, slot: PeerSlot, offset: u64, len: u64) -> Result<u64> {
        self.check_slot(slot)?;
        self.check_range(offset, len)?;
        let bits = self.bits_within(offset, len);
        let mut st = lock(&self.state);
        let removed = st.bitmaps[slot.index()].clear_range(bits.clone());
        if removed > 0 {
            Self::note_dirty(&mut st, slot, &bits);
        }
        Ok(removed)
    }

    /// True when any byte of `offset..offset+len` is out of sync with `slot`'s peer.
    pub fn is_out_of_sync(&self, slot: PeerSlot, offset: u64, len: u64) -> Result<bool> {
        self.check_slot(slot)?;
        self.check_range(offset, len)?;
        Ok(lock(&self.state).bitmaps[slot.index()].any_in(self.bits_touching(offset, len)))
    }

    /// Number of out-of-sync bits for `slot`.
    pub fn out_of_sync_bits(&self, slot: PeerSlot) -> Result<u64> {
        self.check_slot(slot)?;
        Ok(lock(&self.state).bitmaps[slot.index()].count())
    }

    /// Bytes of data out of sync with `slot`'s peer (bits × granularity, the short last bit counted
    /// at its real size).
    pub fn out_of_sync_bytes(&self, slot: PeerSlot) -> Result<u64> {
        self.check_slot(slot)?;
        let st = lock(&self.state);
        Ok(bitmap_bytes(
            &st.bitmaps[slot.index()],
            self.geo.bm_block_size(),
            self.geo.data_size(),
        ))
    }

    /// The next out-of-sync byte range for `slot` at or after byte `from`, aligned to the bitmap
    /// granularity and clipped to the data area: what a resync walks.
    pub fn next_out_of_sync(&self, slot: PeerSlot, from: u64) -> Result<Option<Range<u64>>> {
        self.check_slot(slot)?;
        let g = self.geo.bm_block_size();
        let st = lock(&self.state);
        Ok(st.bitmaps[slot.index()]
            .next_run_from(from / g)
            .map(|bits| (bits.start * g).max(from)..(bits.end * g).min(self.geo.data_size())))
    }

    /// A copy of `slot`'s bitmap (for run-length exchange with the peer).
    pub fn bitmap(&self, slot: PeerSlot) -> Result<SparseBitmap> {
        self.check_slot(slot)?;
        Ok(lock(&self.state).bitmaps[slot.index()].clone())
    }

    /// Sets in `slot`'s bitmap every bit set in `other` (a peer's bitmap received at connect, at the
    /// same granularity); returns the number of bits that changed. Call [`flush`](Self::flush) before
    /// relying on them.
    pub fn merge_bitmap(&self, slot: PeerSlot, other: &SparseBitmap) -> Result<u64> {
        self.check_slot(slot)?;
        let mut st = lock(&self.state);
        let mut added = 0;
        for run in other.runs() {
            let n = st.bitmaps[slot.index()].set_range(run.clone());
            if n > 0 {
                Self::note_dirty(&mut st, slot, &run);
                added += n;
            }
        }
        Ok(added)
    }

    /// Writes every changed bitmap block and anything pending in the superblock; durable on return.
    pub fn flush(&self) -> Result<()> {
        let _io = lock(&self.io);
        self.usable(&lock(&self.state))?;
        self.write_dirty_blocks(None).map_err(|e| self.fail(e))
    }

    /// The generation identifiers.
    pub fn generation_ids(&self) -> GenerationIds {
        lock(&self.state).sb.gi.clone()
    }

    /// The node flags.
    pub fn flags(&self) -> NodeFlags {
        lock(&self.state).sb.flags
    }

    /// The local node's id.
    pub fn node_id(&self) -> NodeId {
        lock(&self.state).sb.node_id
    }

    /// Changes the generation identifiers and node flags with `f`, durably (both superblock copies)
    /// before returning.
    pub fn update<R>(&self, f: impl FnOnce(&mut GenerationIds, &mut NodeFlags) -> R) -> Result<R> {
        let _io = lock(&self.io);
        let sb = {
            let st = lock(&self.state);
            self.usable(&st)?;
            st.sb.clone()
        };
        let mut next = sb;
        let r = f(&mut next.gi, &mut next.flags);
        // The caller cannot clear al-clean behind the log's back, nor set it while in use.
        next.flags.set(NodeFlags::AL_CLEAN, false);
        next.seq += 1;
        write_superblock(self.dev.as_ref(), &next).map_err(|e| self.fail(e))?;
        let mut st = lock(&self.state);
        st.sb = next;
        st.stats.superblock_writes += 1;
        Ok(r)
    }

    /// Records durably that this metadata belongs to resource `name` (see the superblock's docs).
    /// Crash ordering: one superblock update (both copies, each flushed); a crash before it ends
    /// leaves the name unrecorded and the next attach records it again.
    pub fn set_resource(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.len() > crate::superblock::MAX_RESOURCE_NAME {
            return Err(MetaError::ResourceName {
                len: name.len(),
                max: crate::superblock::MAX_RESOURCE_NAME,
            });
        }
        let _io = lock(&self.io);
        let mut next = {
            let st = lock(&self.state);
            self.usable(&st)?;
            st.sb.clone()
        };
        next.resource = name.to_string();
        next.seq += 1;
        write_superblock(self.dev.as_ref(), &next).map_err(|e| self.fail(e))?;
        let mut st = lock(&self.state);
        st.sb = next;
        st.stats.superblock_writes += 1;
        Ok(())
    }

    /// Sets or clears per-peer flags of `slot`, durably.
    pub fn set_peer_flags(&self, slot: PeerSlot, flags: PeerFlags, on: bool) -> Result<()> {
        self.check_slot(slot)?;
        self.update(|gi, _| gi.peers[slot.index()].flags.set(flags, on))
    }

    /// The slot tracking `node`, assigning a free one (durably) if it has none yet.
    pub fn slot_for(&self, node: NodeId) -> Result<PeerSlot> {
        if let Some(slot) = lock(&self.state).sb.gi.slot_of(node) {
            return Ok(slot);
        }
        if node == self.node_id() {
            return Err(MetaError::SlotForSelf(node));
        }
        let max_peers = self.geo.max_peers();
        self.update(|gi, _| {
            if let Some(slot) = gi.slot_of(node) {
                return Ok(slot);
            }
            let free = gi.peers.iter().position(|p| p.node.is_none());
            let free = free.ok_or(MetaError::SlotsExhausted { node, max_peers })?;
            gi.peers[free].node = Some(node);
            Ok(PeerSlot(free as u8))
        })?
    }

    /// The slot tracking `node`, a peer added to a running resource, flagged
    /// [`PeerFlags::FULL_SYNC`] in the same durable update that assigns it (or on the slot it
    /// already has): nothing tracked what it missed before it was added — a fresh slot has no
    /// bits, and one left from an earlier membership stopped being kept when the node left — so
    /// its next resync from this node is a full one, whatever the generation identifiers say.
    pub fn slot_for_new_peer(&self, node: NodeId) -> Result<PeerSlot> {
        if node == self.node_id() {
            return Err(MetaError::SlotForSelf(node));
        }
        let max_peers = self.geo.max_peers();
        self.update(|gi, _| {
            let slot = match gi.slot_of(node) {
                Some(slot) => slot,
                None => {
                    let free = gi.peers.iter().position(|p| p.node.is_none());
                    let free = free.ok_or(MetaError::SlotsExhausted { node, max_peers })?;
                    gi.peers[free].node = Some(node);
                    PeerSlot(free as u8)
                }
            };
            gi.peers[slot.index()].flags.set(PeerFlags::FULL_SYNC, true);
            Ok(slot)
        })?
    }

    /// Whether `slot` carries [`PeerFlags::FULL_SYNC`].
    pub fn full_sync_pending(&self, slot: PeerSlot) -> bool {
        lock(&self.state)
            .sb
            .gi
            .peers
            .get(slot.index())
            .is_some_and(|p| p.flags.contains(PeerFlags::FULL_SYNC))
    }

    /// Frees the slot of `node`, a peer removed from the resource, so another node may take it;
    /// returns the slot it had (`None`: it had none).
    ///
    /// Crash ordering: the superblock is updated first (the slot unassigned, its bitmap UUID gone
    /// to the history unless another identifier holds it), then the slot's bits are cleared and
    /// written. A crash between the two leaves a free slot with stale bits: a node that takes the
    /// slot later starts with a bitmap UUID of 0, so no resync is ever decided from those bits —
    /// they only add blocks to the first resync with it. The reverse order could leave the removed
    /// node's slot assigned, with its bitmap UUID, and no bits: should the node come back, a
    /// bitmap resync would skip every block written while it was away.
    pub fn release_slot(&self, node: NodeId) -> Result<Option<PeerSlot>> {
        let released = self.update(|gi, _| {
            let slot = gi.slot_of(node)?;
            gi.clear_bitmap_uuid(slot);
            gi.peers[slot.index()] = Default::default();
            Some(slot)
        })?;
        if let Some(slot) = released {
            let bits = 0..self.geo.bm_bits();
            let mut st = lock(&self.state);
            if st.bitmaps[slot.index()].clear_range(bits.clone()) > 0 {
                Self::note_dirty(&mut st, slot, &bits);
            }
            drop(st);
            self.flush()?;
        }
        Ok(released)
    }

    /// Adds `sectors` to the dagtag. Persisted with the next superblock update.
    pub fn add_dagtag(&self, sectors: u64) {
        let mut st = lock(&self.state);
        st.sb.gi.dagtag = st.sb.gi.dagtag.wrapping_add(sectors);
    }

    /// Extents currently active in the activity log.
    pub fn active_extents(&self) -> Vec<u32> {
        lock(&self.state).al.active_extents().collect()
    }
}

/// Bytes of data covered by the set bits of `bm`.
pub fn bitmap_bytes(bm: &SparseBitmap, granularity: u64, data_size: u64) -> u64 {
    let bytes = bm.count() * granularity;
    let len = bm.len_bits();
    if len > 0 && bm.test(len - 1) {
        bytes - (len * granularity - data_size)
    } else {
        bytes
    }
}
