//! Block I/O on the metadata device, with errors that name the region.

use crate::device::MetaDevice;
use crate::error::{MetaError, Region, Result};
use crate::layout::{BLOCK, Geometry};
use crate::superblock::Superblock;
use crate::units::PeerSlot;

fn io_error(dev: &dyn MetaDevice, op: &'static str, region: Region, source: std::io::Error) -> MetaError {
    MetaError::Io {
        op,
        region,
        device: dev.describe(),
        source,
    }
}

/// Reads `buf.len()` bytes of `region` at `offset`.
pub(crate) fn read(dev: &dyn MetaDevice, buf: &mut [u8], offset: u64, region: Region) -> Result<()> {
    dev.read_at(buf, offset)
        .map_err(|e| io_error(dev, "read", region, e))
}

/// Writes `buf` to `region` at `offset` (not yet durable).
pub(crate) fn write(dev: &dyn MetaDevice, buf: &[u8], offset: u64, region: Region) -> Result<()> {
    dev.write_at(buf, offset)
        .map_err(|e| io_error(dev, "write", region, e))
}

/// Makes every completed write durable.
pub(crate) fn flush(dev: &dyn MetaDevice, geo: &Geometry) -> Result<()> {
    dev.flush().map_err(|e| {
        io_error(
            dev,
            "flush",
            Region::Area {
                offset: geo.meta_offset,
            },
            e,
        )
    })
}

/// The region of superblock copy `copy` (0 = A, 1 = B).
pub(crate) fn superblock_region(geo: &Geometry, copy: usize) -> Region {
    Region::Superblock {
        copy: if copy == 0 { 'A' } else { 'B' },
        offset: geo.superblock_offset(copy),
    }
}

/// The region of bitmap block `block` of `slot`.
pub(crate) fn bitmap_region(geo: &Geometry, slot: PeerSlot, block: u32) -> Region {
    Region::Bitmap {
        slot,
        block,
        offset: geo.bitmap_offset(slot.index(), block),
    }
}

/// The region of activity-log ring position `pos`.
pub(crate) fn al_region(geo: &Geometry, pos: u32) -> Region {
    Region::ActivityLog {
        ring_slot: pos,
        offset: geo.al_offset(pos),
    }
}

/// Writes both superblock copies durably, A then B (see [`crate::superblock`] for why both).
pub(crate) fn write_superblock(dev: &dyn MetaDevice, sb: &Superblock) -> Result<()> {
    let geo = &sb.geometry;
    let block = sb.encode();
    for copy in 0..2 {
        write(
            dev,
            &block,
            geo.superblock_offset(copy),
            superblock_region(geo, copy),
        )?;
        flush(dev, geo)?;
    }
    Ok(())
}

/// Writes rendered bitmap blocks `(slot, block, bytes)`, merging neighbours into larger writes. Not
/// durable until the caller flushes.
pub(crate) fn write_bitmap_blocks(
    dev: &dyn MetaDevice,
    geo: &Geometry,
    blocks: &[(u8, u32, Vec<u8>)],
) -> Result<()> {
    let mut i = 0;
    while i < blocks.len() {
        let (slot, first, _) = &blocks[i];
        let mut j = i + 1;
        while j < blocks.len() && blocks[j].0 == *slot && blocks[j].1 == first + (j - i) as u32 && j - i < 256
        {
            j += 1;
        }
        let mut buf = Vec::with_capacity((j - i) * BLOCK as usize);
        for (_, _, bytes) in &blocks[i..j] {
            buf.extend_from_slice(bytes);
        }
        let slot = PeerSlot(*slot);
        write(
            dev,
            &buf,
            geo.bitmap_offset(slot.index(), *first),
            bitmap_region(geo, slot, *first),
        )?;
        i = j;
    }
    Ok(())
}
