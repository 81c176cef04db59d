//! Creating, opening (with crash recovery) and cleanly closing metadata.

use std::sync::{Arc, Condvar, Mutex};

use crate::al::lru::ActivityLog;
use crate::al::replay::Replayed;
use crate::bitmap_block;
use crate::device::MetaDevice;
use crate::error::{BlockDefect, MetaError, Region, Result};
use crate::layout::{BLOCK, Geometry, Params, Placement};
use crate::random::random_u64;
use crate::sparse::SparseBitmap;
use crate::superblock::{GenerationIds, NodeFlags, Superblock};
use crate::units::{NodeId, PeerSlot};

use super::inspect::inspect;
use super::io::{flush, write, write_bitmap_blocks, write_superblock};
use super::{MetaStats, Metadata, State, lock};

/// What to create.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    /// Internal (at the end of the data device) or external.
    pub placement: Placement,
    /// The layout parameters; `data_size` is ignored for internal metadata (it is what remains of
    /// the device).
    pub params: Params,
    /// The local node's id.
    pub node_id: NodeId,
}

/// Writes fresh, clean metadata on `dev` and returns its superblock. Every peer slot starts
/// unassigned with an empty bitmap; the current UUID is "just created".
///
/// Crash ordering: both superblock positions are zeroed and flushed first, then the bitmaps and the
/// activity-log ring are written and flushed, and only then the superblock. A crash part-way leaves a
/// device that reports "no metadata" rather than a mix of old and new.
pub fn create(dev: &dyn MetaDevice, opts: &CreateOptions) -> Result<Superblock> {
    let geo = match opts.placement {
        Placement::External => Geometry::external(opts.params, dev.len())?,
        Placement::Internal => Geometry::internal(opts.params, dev.len())?,
    };
    let zero = vec![0u8; BLOCK as usize];
    for copy in 0..2 {
        write(
            dev,
            &zero,
            geo.superblock_offset(copy),
            super::io::superblock_region(&geo, copy),
        )?;
    }
    flush(dev, &geo)?;
    let meta_uuid = random_u64();
    let empty = SparseBitmap::new(geo.bm_bits());
    for s in 0..geo.max_peers() {
        let slot = PeerSlot(s as u8);
        let blocks: Vec<(u8, u32, Vec<u8>)> = (0..geo.bm_blocks_per_slot())
            .map(|b| (slot.0, b, bitmap_block::render(&empty, slot, b, meta_uuid)))
            .collect();
        write_bitmap_blocks(dev, &geo, &blocks)?;
    }
    let mut al = ActivityLog::new(geo.al_extents(), 0);
    write_ring_reset(dev, &geo, meta_uuid, &mut al)?;
    let sb = Superblock {
        seq: 1,
        meta_uuid,
        geometry: geo,
        node_id: opts.node_id,
        flags: NodeFlags::AL_CLEAN,
        gi: GenerationIds::just_created(geo.max_peers()),
        resource: String::new(),
    };
    write_superblock(dev, &sb)?;
    tracing::info!(device = %dev.describe(), data_size = geo.data_size(), meta_size = geo.meta_size(), max_peers = geo.max_peers(), "created metadata");
    Ok(sb)
}

/// Rewrites every ring position with the current LRU content and flushes.
fn write_ring_reset(
    dev: &dyn MetaDevice,
    geo: &Geometry,
    meta_uuid: u64,
    al: &mut ActivityLog,
) -> Result<()> {
    let slots = geo.al_ring_slots();
    let mut buf = vec![0u8; (u64::from(slots) * BLOCK) as usize];
    for t in al.reset_transactions(slots) {
        let pos = (t.seq % u64::from(slots)) as u32;
        let start = (u64::from(pos) * BLOCK) as usize;
        buf[start..start + BLOCK as usize].copy_from_slice(&t.encode(meta_uuid, pos));
    }
    write(dev, &buf, geo.al_offset(0), super::io::al_region(geo, 0))?;
    flush(dev, geo)
}

/// What `open` does when the metadata is unclean and its activity log cannot be replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlRecovery {
    /// Refuse to open, naming the damaged block (the default).
    #[default]
    Refuse,
    /// Mark the whole device out of sync for every peer (a full resync) and open.
    MarkWholeDevice,
}

/// Options for [`Metadata::open`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Policy for an unreplayable activity log.
    pub damaged_al: AlRecovery,
}

/// What `open` found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The metadata was closed cleanly (no activity-log recovery needed).
    pub was_clean: bool,
    /// Extents marked out of sync for every peer by activity-log recovery (apply-al).
    pub applied_extents: Vec<u32>,
    /// The whole device was marked out of sync because the log could not be replayed.
    pub whole_device_marked: bool,
    /// Damaged blocks that were repaired: superblock copies rewritten, bitmap blocks taken as fully
    /// out of sync and rewritten, activity-log blocks of clean metadata rewritten.
    pub repaired: Vec<(Region, BlockDefect)>,
}

impl Metadata {
    /// Opens metadata for use, recovering from an unclean shutdown first.
    ///
    /// Crash ordering of recovery: (1) the bits of every extent the log lists are set for every peer
    /// and written and flushed; (2) the superblock is marked al-clean; (3) the ring is rewritten
    /// empty and flushed; (4) the superblock is marked in use (not al-clean). A crash before (2)
    /// repeats the recovery, which is idempotent; a crash after (2) finds clean metadata whose bits
    /// are already on disk; a crash after (4) finds an empty log.
    pub fn open(dev: Box<dyn MetaDevice>, opts: OpenOptions) -> Result<(Arc<Metadata>, OpenReport)> {
        let ins = inspect(dev.as_ref())?;
        let mut sb = ins.superblock;
        let geo = sb.geometry;
        let mut bitmaps = ins.bitmaps;
        let was_clean = sb.flags.contains(NodeFlags::AL_CLEAN);
        let mut report = OpenReport {
            was_clean,
            ..OpenReport::default()
        };
        let mut dirty: std::collections::BTreeSet<(u8, u32)> = std::collections::BTreeSet::new();
        for (region, defect) in ins.superblock_defects.into_iter().chain(ins.bitmap_defects) {
            if let Region::Bitmap { slot, block, .. } = region {
                dirty.insert((slot.0, block));
            }
            tracing::warn!(device = %dev.describe(), %region, %defect, "repairing damaged metadata block");
            report.repaired.push((region, defect));
        }
        let next_seq = match (&ins.al, was_clean) {
            (Ok(Replayed { last_seq, .. }), _) => last_seq + 1,
            (Err(_), _) => 0,
        };
        let mut mark = |bits: std::ops::Range<u64>, bitmaps: &mut Vec<SparseBitmap>| {
            for (s, bm) in bitmaps.iter_mut().enumerate() {
                if bm.set_range(bits.clone()) > 0 || !bits.is_empty() {
                    let first = (bits.start / crate::layout::BITS_PER_BITMAP_BLOCK) as u32;
                    let last = (bits.end.saturating_sub(1) / crate::layout::BITS_PER_BITMAP_BLOCK) as u32;
                    dirty.extend((first..=last).map(|b| (s as u8, b)));
                }
            }
        };
        match (ins.al, was_clean) {
            (Err((region, defect)), true) => {
                tracing::warn!(device = %dev.describe(), %region, %defect, "activity log damaged, but the metadata is clean: rewriting it");
                report.repaired.push((region, defect));
            }
            (Ok(_), true) => {}
            (Ok(replayed), false) => {
                let g = geo.bm_block_size();
                for &extent in &replayed.active {
                    let start = u64::from(extent) << crate::layout::AL_EXTENT_SHIFT;
                    let len = crate::layout::AL_EXTENT_BYTES.min(geo.data_size().saturating_sub(start));
                    mark(start / g..(start + len).div_ceil(g), &mut bitmaps);
                }
                report.applied_extents = replayed.active;
            }
            (Err((region, defect)), false) => match opts.damaged_al {
                AlRecovery::Refuse => {
                    return Err(MetaError::Damaged {
                        device: dev.describe(),
                        region,
                        defect,
                        advice: "The metadata was not shut down cleanly and the activity log that says which blocks may differ from the peers cannot be read. Run `replbd-meta apply-al --whole-device` to mark the whole device out of sync (a full resync from a peer), or restore the metadata from a peer",
                    });
                }
                AlRecovery::MarkWholeDevice => {
                    tracing::warn!(device = %dev.describe(), %region, %defect, "activity log damaged: marking the whole device out of sync for every peer");
                    mark(0..geo.bm_bits(), &mut bitmaps);
                    report.whole_device_marked = true;
                }
            },
        }
        // (1) bits on disk.
        let rendered: Vec<(u8, u32, Vec<u8>)> = dirty
            .iter()
            .map(|&(s, b)| {
                (
                    s,
                    b,
                    bitmap_block::render(&bitmaps[usize::from(s)], PeerSlot(s), b, sb.meta_uuid),
                )
            })
            .collect();
        write_bitmap_blocks(dev.as_ref(), &geo, &rendered)?;
        flush(dev.as_ref(), &geo)?;
        let mut sb_writes = 0;
        // (2) al-clean, if recovery ran.
        if !was_clean {
            sb.flags.set(NodeFlags::AL_CLEAN, true);
            sb.seq += 1;
            write_superblock(dev.as_ref(), &sb)?;
            sb_writes += 1;
            if !report.applied_extents.is_empty() || report.whole_device_marked {
                tracing::info!(device = %dev.describe(), extents = report.applied_extents.len(), whole_device = report.whole_device_marked, "applied the activity log after an unclean shutdown");
            }
        }
        // (3) empty ring.
        let mut al = ActivityLog::new(geo.al_extents(), next_seq);
        write_ring_reset(dev.as_ref(), &geo, sb.meta_uuid, &mut al)?;
        // (4) in use.
        sb.flags.set(NodeFlags::AL_CLEAN, false);
        sb.seq += 1;
        write_superblock(dev.as_ref(), &sb)?;
        sb_writes += 1;
        let meta_uuid = sb.meta_uuid;
        let state = State {
            sb,
            bitmaps,
            dirty_blocks: std::collections::BTreeSet::new(),
            al,
            pending: std::collections::BTreeMap::new(),
            failed: None,
            closed: false,
            stats: MetaStats {
                bitmap_blocks_written: rendered.len() as u64,
                superblock_writes: sb_writes,
                ..MetaStats::default()
            },
        };
        let meta = Metadata {
            dev,
            geo,
            meta_uuid,
            state: Mutex::new(state),
            extent_idle: Condvar::new(),
            io: Mutex::new(()),
        };
        Ok((Arc::new(meta), report))
    }

    /// Closes cleanly (an orderly down): writes every dirty bitmap block, then marks the activity log
    /// clean. Fails with [`MetaError::Busy`] while writes are in flight. The handle is unusable
    /// afterwards.
    pub fn close(&self) -> Result<()> {
        let _io = lock(&self.io);
        {
            let st = lock(&self.state);
            self.usable(&st)?;
            let in_flight = st.al.references();
            if in_flight > 0 {
                return Err(MetaError::Busy { in_flight });
            }
        }
        self.write_dirty_blocks(None).map_err(|e| self.fail(e))?;
        let sb = {
            let mut st = lock(&self.state);
            st.sb.flags.set(NodeFlags::AL_CLEAN, true);
            st.sb.seq += 1;
            st.stats.superblock_writes += 1;
            st.sb.clone()
        };
        write_superblock(self.dev.as_ref(), &sb).map_err(|e| self.fail(e))?;
        lock(&self.state).closed = true;
        tracing::info!(device = %self.dev.describe(), "metadata closed cleanly");
        Ok(())
    }
}
