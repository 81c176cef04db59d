//! On-disk bitmap blocks: each peer slot's bitmap is stored flat, 32576 bits per 4 KiB block, so that
//! a block can be rewritten in place when an activity-log extent leaves the log.
//!
//! ```text
//!    0  509 × u64  bits, little endian (bit i of the block is bit i%64 of word i/64)
//! 4072  u32  magic "RBBM"       4080  u32  block index within the slot
//! 4076  u16  peer slot          4084  u64  meta uuid
//! 4078  u16  zero               4092  u32  crc32c of bytes 0..4092
//! ```
//!
//! The trailer lets `check` tell a torn or rotted block (checksum) from a misdirected write (slot or
//! index) and from a block of other metadata (meta uuid). A block that fails any check is treated as
//! entirely out of sync when metadata is opened: that is always safe — it only costs resync.

use crate::codec::{check_crc, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64, seal};
use crate::error::BlockDefect;
use crate::layout::{BITS_PER_BITMAP_BLOCK, BLOCK};
use crate::sparse::SparseBitmap;
use crate::units::PeerSlot;

/// Magic of a bitmap block: "RBBM".
pub const BITMAP_MAGIC: u32 = u32::from_le_bytes(*b"RBBM");
const PAYLOAD: usize = (BITS_PER_BITMAP_BLOCK / 8) as usize;
const CRC_OFF: usize = BLOCK as usize - 4;

/// The range of bitmap bits stored in block `block` of a bitmap of `len_bits` bits.
pub fn block_bits(block: u32, len_bits: u64) -> std::ops::Range<u64> {
    let start = u64::from(block) * BITS_PER_BITMAP_BLOCK;
    start.min(len_bits)..(start + BITS_PER_BITMAP_BLOCK).min(len_bits)
}

/// Renders block `block` of `bitmap` for `slot` as a sealed 4 KiB block.
pub fn render(bitmap: &SparseBitmap, slot: PeerSlot, block: u32, meta_uuid: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK as usize];
    let bits = block_bits(block, bitmap.len_bits());
    let base = bits.start;
    bitmap.for_each_piece_in(bits, |s, e| {
        let (mut s, e) = ((s - base) as usize, (e - base) as usize);
        // Leading bits up to a byte boundary, whole bytes, trailing bits.
        while s < e && s % 8 != 0 {
            b[s / 8] |= 1 << (s % 8);
            s += 1;
        }
        let whole_end = s + (e - s) / 8 * 8;
        b[s / 8..whole_end / 8].fill(0xff);
        for i in whole_end..e {
            b[i / 8] |= 1 << (i % 8);
        }
    });
    put_u32(&mut b, PAYLOAD, BITMAP_MAGIC);
    put_u16(&mut b, PAYLOAD + 4, u16::from(slot.0));
    put_u32(&mut b, PAYLOAD + 8, block);
    put_u64(&mut b, PAYLOAD + 12, meta_uuid);
    seal(&mut b, CRC_OFF);
    b
}

/// Validates a block read from position (`slot`, `block`) of metadata `meta_uuid`.
pub fn validate(b: &[u8], slot: PeerSlot, block: u32, meta_uuid: u64) -> Result<(), BlockDefect> {
    let magic = get_u32(b, PAYLOAD);
    if magic != BITMAP_MAGIC {
        return Err(BlockDefect::BadMagic {
            found: u64::from(magic),
        });
    }
    check_crc(b, CRC_OFF).map_err(|(stored, computed)| BlockDefect::BadChecksum { stored, computed })?;
    let found = get_u64(b, PAYLOAD + 12);
    if found != meta_uuid {
        return Err(BlockDefect::Foreign {
            found,
            expected: meta_uuid,
        });
    }
    let found_slot = get_u16(b, PAYLOAD + 4);
    if found_slot != u16::from(slot.0) {
        return Err(BlockDefect::Misplaced {
            what: "peer slot",
            found: found_slot.into(),
            expected: slot.0.into(),
        });
    }
    let found_block = get_u32(b, PAYLOAD + 8);
    if found_block != block {
        return Err(BlockDefect::Misplaced {
            what: "block",
            found: found_block.into(),
            expected: block.into(),
        });
    }
    Ok(())
}

/// Sets in `bitmap` every bit set in the (validated) block `block`.
pub fn load(b: &[u8], block: u32, bitmap: &mut SparseBitmap) {
    let bits = block_bits(block, bitmap.len_bits());
    let n = (bits.end - bits.start) as usize;
    let mut run_start: Option<usize> = None;
    let mut i = 0;
    while i < n {
        let byte = b[i / 8];
        // Whole bytes that continue the current state are skipped in one step.
        if i % 8 == 0
            && i + 8 <= n
            && (byte == 0 && run_start.is_none() || byte == 0xff && run_start.is_some())
        {
            i += 8;
            continue;
        }
        let set = byte & (1 << (i % 8)) != 0;
        match (set, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(s)) => {
                bitmap.set_range(bits.start + s as u64..bits.start + i as u64);
                run_start = None;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(s) = run_start {
        bitmap.set_range(bits.start + s as u64..bits.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_load_round_trip_across_blocks() {
        let len = BITS_PER_BITMAP_BLOCK * 2 + 1000;
        let mut bm = SparseBitmap::new(len);
        for r in [
            3..4,
            7..70,
            100..5000,
            BITS_PER_BITMAP_BLOCK - 5..BITS_PER_BITMAP_BLOCK + 9,
            len - 3..len,
        ] {
            bm.set_range(r);
        }
        let mut back = SparseBitmap::new(len);
        for block in 0..3 {
            let b = render(&bm, PeerSlot(1), block, 42);
            validate(&b, PeerSlot(1), block, 42).unwrap();
            load(&b, block, &mut back);
        }
        assert_eq!(bm, back);
    }

    #[test]
    fn misplaced_and_foreign_blocks_are_named() {
        let bm = SparseBitmap::new(100);
        let b = render(&bm, PeerSlot(1), 0, 42);
        assert!(matches!(
            validate(&b, PeerSlot(2), 0, 42),
            Err(BlockDefect::Misplaced {
                what: "peer slot",
                ..
            })
        ));
        assert!(matches!(
            validate(&b, PeerSlot(1), 3, 42),
            Err(BlockDefect::Misplaced { what: "block", .. })
        ));
        assert!(matches!(
            validate(&b, PeerSlot(1), 0, 43),
            Err(BlockDefect::Foreign { .. })
        ));
        let mut torn = b.clone();
        torn[10] = 1;
        assert!(matches!(
            validate(&torn, PeerSlot(1), 0, 42),
            Err(BlockDefect::BadChecksum { .. })
        ));
    }
}
