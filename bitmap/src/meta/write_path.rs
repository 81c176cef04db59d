//! The write path: covering a write with the activity log before it may touch the data.
//!
//! The common case — every extent of the write already active — takes one mutex and bumps reference
//! counts. Otherwise the writer registers the extents it waits for and takes the I/O lock; whoever
//! holds it commits one transaction activating its own extents and, while room remains, those of the
//! writers queued behind it (group commit), so a burst of writes to cold extents costs one flush per
//! transaction rather than one per write.

use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::bitmap_block;
use crate::error::{MetaError, Result};
use crate::layout::{AL_UPDATES_PER_TRANSACTION, BITS_PER_BITMAP_BLOCK};
use crate::units::PeerSlot;

use super::io::{al_region, flush, write, write_bitmap_blocks};
use super::{Metadata, State, lock};

/// Proof that a write's range is covered by the activity log. Dropping it ends the write.
#[must_use = "dropping the guard ends the write at once"]
pub struct WriteGuard {
    meta: Arc<Metadata>,
    extents: Option<RangeInclusive<u32>>,
}

impl std::fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard")
            .field("extents", &self.extents)
            .finish()
    }
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        if let Some(extents) = self.extents.take() {
            self.meta.end_write(extents);
        }
    }
}

impl Metadata {
    /// Covers `offset..offset+len` with the activity log if that needs no I/O; `Ok(None)` means a
    /// transaction is needed and [`begin_write`](Self::begin_write) (which may block) must be used.
    pub fn try_begin_write(self: &Arc<Self>, offset: u64, len: u64) -> Result<Option<WriteGuard>> {
        let extents = self.write_extents(offset, len)?;
        let mut st = lock(&self.state);
        self.usable(&st)?;
        match extents {
            None => Ok(Some(WriteGuard {
                meta: Arc::clone(self),
                extents: None,
            })),
            Some(ext) if st.al.try_acquire(ext.clone()) => Ok(Some(WriteGuard {
                meta: Arc::clone(self),
                extents: Some(ext),
            })),
            Some(_) => Ok(None),
        }
    }

    /// Covers `offset..offset+len` with the activity log, writing a transaction (and, before it, the
    /// bitmap blocks of evicted extents) if an extent is inactive. Blocks until the transaction is
    /// durable, or until a slot frees up when every slot is held by writes in flight.
    pub fn begin_write(self: &Arc<Self>, offset: u64, len: u64) -> Result<WriteGuard> {
        let Some(ext) = self.write_extents(offset, len)? else {
            return Ok(WriteGuard {
                meta: Arc::clone(self),
                extents: None,
            });
        };
        {
            let mut st = lock(&self.state);
            self.usable(&st)?;
            if st.al.try_acquire(ext.clone()) {
                return Ok(WriteGuard {
                    meta: Arc::clone(self),
                    extents: Some(ext),
                });
            }
            st.stats.al_waits += 1;
            for e in ext.clone() {
                *st.pending.entry(e).or_insert(0) += 1;
            }
        }
        let result = self.activate(&ext);
        let mut st = lock(&self.state);
        for e in ext.clone() {
            if let Some(n) = st.pending.get_mut(&e) {
                *n -= 1;
                if *n == 0 {
                    st.pending.remove(&e);
                }
            }
        }
        drop(st);
        result.map(|()| WriteGuard {
            meta: Arc::clone(self),
            extents: Some(ext),
        })
    }

    fn write_extents(&self, offset: u64, len: u64) -> Result<Option<RangeInclusive<u32>>> {
        self.check_range(offset, len)?;
        let extents = Self::extents_of(offset, len);
        if let Some(ext) = &extents {
            let n = u64::from(ext.end() - ext.start()) + 1;
            let max = AL_UPDATES_PER_TRANSACTION as u64;
            if n > max {
                return Err(MetaError::TooManyExtents { extents: n, max });
            }
        }
        Ok(extents)
    }

    /// Loops until `ext` is acquired: commit a transaction, or wait for an idle extent.
    fn activate(&self, ext: &RangeInclusive<u32>) -> Result<()> {
        let own: Vec<u32> = ext.clone().collect();
        loop {
            let io = lock(&self.io);
            let mut st = lock(&self.state);
            self.usable(&st)?;
            if st.al.try_acquire(ext.clone()) {
                return Ok(());
            }
            let others: Vec<u32> = st
                .pending
                .keys()
                .copied()
                .filter(|e| !own.contains(e))
                .take(AL_UPDATES_PER_TRANSACTION)
                .collect();
            let Some(plan) = st.al.plan(&own, &others) else {
                // Every slot is held by a write in flight: wait for one to end.
                drop(io);
                drop(self.extent_idle.wait(st));
                continue;
            };
            let transaction = st.al.transaction(&plan);
            let victim_blocks = self.take_dirty_blocks(&mut st, |slot_block| {
                plan.victims
                    .iter()
                    .any(|&v| self.extent_blocks(v).contains(&slot_block.1))
            });
            drop(st);
            // Ordering 2: the victims' bits are durable before the transaction that evicts them.
            let persisted = (|| {
                if !victim_blocks.is_empty() {
                    write_bitmap_blocks(self.dev.as_ref(), &self.geo, &victim_blocks)?;
                    flush(self.dev.as_ref(), &self.geo)?;
                }
                // Ordering 1: the transaction is durable before any write to its extents starts.
                let ring = u64::from(self.geo.al_ring_slots());
                let pos = (transaction.seq % ring) as u32;
                write(
                    self.dev.as_ref(),
                    &transaction.encode(self.meta_uuid, pos),
                    self.geo.al_offset(pos),
                    al_region(&self.geo, pos),
                )?;
                flush(self.dev.as_ref(), &self.geo)
            })();
            if let Err(e) = persisted {
                return Err(self.fail(e));
            }
            let mut st = lock(&self.state);
            st.al.commit(&plan);
            st.stats.al_transactions += 1;
            st.stats.al_evictions += plan.victims.len() as u64;
            st.stats.bitmap_blocks_written += victim_blocks.len() as u64;
            if st.al.try_acquire(ext.clone()) {
                return Ok(());
            }
        }
    }

    fn end_write(&self, extents: RangeInclusive<u32>) {
        lock(&self.state).al.release(extents);
        self.extent_idle.notify_all();
    }

    /// Indexes of the on-disk bitmap blocks holding extent `extent`'s bits.
    fn extent_blocks(&self, extent: u32) -> RangeInclusive<u32> {
        let bits = self.extent_bits(extent);
        (bits.start / BITS_PER_BITMAP_BLOCK) as u32
            ..=(bits.end.saturating_sub(1) / BITS_PER_BITMAP_BLOCK) as u32
    }

    /// Removes the dirty blocks selected by `select` from the dirty set and renders them.
    pub(super) fn take_dirty_blocks(
        &self,
        st: &mut State,
        select: impl Fn((u8, u32)) -> bool,
    ) -> Vec<(u8, u32, Vec<u8>)> {
        let chosen: Vec<(u8, u32)> = st.dirty_blocks.iter().copied().filter(|&sb| select(sb)).collect();
        chosen
            .into_iter()
            .map(|(s, b)| {
                st.dirty_blocks.remove(&(s, b));
                (
                    s,
                    b,
                    bitmap_block::render(&st.bitmaps[usize::from(s)], PeerSlot(s), b, self.meta_uuid),
                )
            })
            .collect()
    }

    /// Writes the dirty bitmap blocks (all, or those of `slot`) and flushes. Caller holds `io`.
    pub(super) fn write_dirty_blocks(&self, slot: Option<PeerSlot>) -> Result<()> {
        let blocks = {
            let mut st = lock(&self.state);
            let blocks = self.take_dirty_blocks(&mut st, |(s, _)| slot.is_none_or(|p| p.0 == s));
            st.stats.bitmap_blocks_written += blocks.len() as u64;
            blocks
        };
        write_bitmap_blocks(self.dev.as_ref(), &self.geo, &blocks)?;
        flush(self.dev.as_ref(), &self.geo)
    }
}
