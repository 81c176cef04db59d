//! Reading a metadata area without changing it: what `open` starts from, and what `dump` and
//! `check` report.

use crate::al::replay::{Replayed, decode_ring, replay};
use crate::al::transaction::RingCheck;
use crate::bitmap_block;
use crate::device::MetaDevice;
use crate::error::{BlockDefect, Defects, MetaError, Region, Result};
use crate::layout::{BLOCK, Geometry};
use crate::sparse::SparseBitmap;
use crate::superblock::Superblock;
use crate::units::PeerSlot;

use super::io::{al_region, bitmap_region, read};

/// Blocks read per bitmap I/O.
const BITMAP_BATCH: u32 = 256;

/// Everything a metadata area says, as read.
#[derive(Debug)]
pub struct Inspection {
    /// The device's description.
    pub device: String,
    /// The superblock in use: the valid copy with the highest sequence number.
    pub superblock: Superblock,
    /// Superblock copies that are damaged or stale (the other one is in use).
    pub superblock_defects: Defects,
    /// Each slot's bitmap as stored; the whole range of a damaged block is set.
    pub bitmaps: Vec<SparseBitmap>,
    /// Bitmap blocks that failed validation.
    pub bitmap_defects: Defects,
    /// The activity log replayed, or the ring position that prevents it.
    pub al: std::result::Result<Replayed, (Region, BlockDefect)>,
}

/// Reads and validates every block of the metadata area on `dev`.
pub fn inspect(dev: &dyn MetaDevice) -> Result<Inspection> {
    let (superblock, superblock_defects) = read_superblock(dev)?;
    let geo = superblock.geometry;
    let (bitmaps, bitmap_defects) = read_bitmaps(dev, &geo, superblock.meta_uuid)?;
    let al = read_al(dev, &geo, superblock.meta_uuid)?;
    Ok(Inspection {
        device: dev.describe(),
        superblock,
        superblock_defects,
        bitmaps,
        bitmap_defects,
        al,
    })
}

/// Finds the superblock at the end of `dev`: the valid copy with the higher sequence number.
pub(crate) fn read_superblock(dev: &dyn MetaDevice) -> Result<(Superblock, Defects)> {
    let len = dev.len();
    let mut copies = Vec::with_capacity(2);
    for copy in 0..2 {
        let region_of = |offset| Region::Superblock {
            copy: if copy == 0 { 'A' } else { 'B' },
            offset,
        };
        let Some(offset) = Geometry::superblock_offset_on(len, copy) else {
            return Err(MetaError::NoMetadata {
                device: dev.describe(),
                region: region_of(0),
                defect: BlockDefect::InvalidField {
                    field: "device size",
                    reason: format!("{len} bytes"),
                },
            });
        };
        let mut block = vec![0u8; BLOCK as usize];
        read(dev, &mut block, offset, region_of(offset))?;
        copies.push((region_of(offset), Superblock::decode(&block)));
    }
    let [(ra, a), (rb, b)]: [_; 2] = copies.try_into().map_err(|_| MetaError::NoMetadata {
        device: dev.describe(),
        region: Region::Area { offset: 0 },
        defect: BlockDefect::InvalidField {
            field: "superblock",
            reason: "not read".into(),
        },
    })?;
    let mut defects = Vec::new();
    let sb = match (a, b) {
        (Ok(a), Ok(b)) => {
            let (newer, older, older_region) = if a.seq >= b.seq { (a, b, rb) } else { (b, a, ra) };
            if older.seq != newer.seq {
                defects.push((
                    older_region,
                    BlockDefect::Stale {
                        found: older.seq,
                        newest: newer.seq,
                    },
                ));
            }
            newer
        }
        (Ok(a), Err(db)) => {
            defects.push((rb, db));
            a
        }
        (Err(da), Ok(b)) => {
            defects.push((ra, da));
            b
        }
        (Err(da @ BlockDefect::BadMagic { .. }), Err(BlockDefect::BadMagic { .. })) => {
            return Err(MetaError::NoMetadata {
                device: dev.describe(),
                region: ra,
                defect: da,
            });
        }
        (Err(a), Err(b)) => {
            return Err(MetaError::SuperblocksDamaged {
                device: dev.describe(),
                a,
                b,
            });
        }
    };
    let geo = sb.geometry;
    let aligned = len / BLOCK * BLOCK;
    if geo.meta_offset.checked_add(geo.meta_size()) != Some(aligned) {
        return Err(MetaError::SizeMismatch {
            device: dev.describe(),
            meta_size: geo.meta_size(),
            reason: format!(
                "it would start at offset {} and the device has {len} bytes (was the device resized, or is this metadata for another device?)",
                geo.meta_offset
            ),
        });
    }
    Ok((sb, defects))
}

/// Reads every slot's bitmap. A block that fails validation is loaded as all-set.
pub(crate) fn read_bitmaps(
    dev: &dyn MetaDevice,
    geo: &Geometry,
    meta_uuid: u64,
) -> Result<(Vec<SparseBitmap>, Defects)> {
    let per_slot = geo.bm_blocks_per_slot();
    let mut bitmaps = Vec::with_capacity(geo.max_peers());
    let mut defects = Vec::new();
    for s in 0..geo.max_peers() {
        let slot = PeerSlot(s as u8);
        let mut bm = SparseBitmap::new(geo.bm_bits());
        let mut first = 0;
        while first < per_slot {
            let n = BITMAP_BATCH.min(per_slot - first);
            let mut buf = vec![0u8; (n as u64 * BLOCK) as usize];
            read(
                dev,
                &mut buf,
                geo.bitmap_offset(s, first),
                bitmap_region(geo, slot, first),
            )?;
            for (i, block) in buf.chunks(BLOCK as usize).enumerate() {
                let index = first + i as u32;
                match bitmap_block::validate(block, slot, index, meta_uuid) {
                    Ok(()) => bitmap_block::load(block, index, &mut bm),
                    Err(defect) => {
                        bm.set_range(bitmap_block::block_bits(index, geo.bm_bits()));
                        defects.push((bitmap_region(geo, slot, index), defect));
                    }
                }
            }
            first += n;
        }
        bitmaps.push(bm);
    }
    Ok((bitmaps, defects))
}

/// Reads and replays the activity-log ring.
pub(crate) fn read_al(
    dev: &dyn MetaDevice,
    geo: &Geometry,
    meta_uuid: u64,
) -> Result<std::result::Result<Replayed, (Region, BlockDefect)>> {
    let slots = geo.al_ring_slots();
    let mut buf = vec![0u8; (u64::from(slots) * BLOCK) as usize];
    read(dev, &mut buf, geo.al_offset(0), al_region(geo, 0))?;
    let blocks: Vec<Vec<u8>> = buf.chunks(BLOCK as usize).map(<[u8]>::to_vec).collect();
    let decoded = decode_ring(&blocks, |ring_pos| RingCheck {
        meta_uuid,
        ring_pos,
        al_extents: geo.al_extents(),
        data_extents: geo.data_extents(),
    });
    Ok(replay(&decoded, geo.al_extents()).map_err(|d| (al_region(geo, d.ring_pos), d.defect)))
}
