//! Fuzzes every metadata parser with arbitrary bytes: the superblock, activity-log transactions and
//! ring replay, bitmap blocks, and the run-length bitmap encoding. None may panic; whatever parses
//! must re-encode consistently.

use replbd_bitmap::al::replay::replay;
use replbd_bitmap::al::transaction::{RingCheck, Transaction};
use replbd_bitmap::layout::BLOCK;
use replbd_bitmap::{PeerSlot, SparseBitmap, Superblock, bitmap_block};

/// Runs every check of this target on `data`; panics on a failed check.
pub fn check(data: &[u8]) {
    // The first byte chooses parameters.
    let selector = data.first().copied().unwrap_or(0);
    // Run-length bitmaps of a device up to 2^36 bits: anything that decodes re-encodes to itself.
    let len_bits = 1u64 << (selector % 37);
    if let Ok(bm) = SparseBitmap::decode_rle(data.get(1..).unwrap_or_default(), len_bits) {
        assert_eq!(
            SparseBitmap::decode_rle(&bm.encode_rle(), len_bits).ok().as_ref(),
            Some(&bm)
        );
    }
    let mut block = data.to_vec();
    block.resize(BLOCK as usize, 0);
    if let Ok(sb) = Superblock::decode(&block) {
        assert_eq!(Superblock::decode(&sb.encode()).ok().as_ref(), Some(&sb));
    }
    let check = RingCheck {
        meta_uuid: 0,
        ring_pos: u32::from(selector % 8),
        al_extents: 67 + u32::from(selector),
        data_extents: 1 + u64::from(selector) * 3,
    };
    let ring: Vec<_> = data
        .chunks(BLOCK as usize)
        .take(16)
        .enumerate()
        .map(|(pos, chunk)| {
            let mut b = chunk.to_vec();
            b.resize(BLOCK as usize, 0);
            Transaction::decode(
                &b,
                RingCheck {
                    ring_pos: pos as u32,
                    ..check
                },
            )
        })
        .collect();
    if !ring.is_empty() {
        let _ = replay(&ring, check.al_extents);
    }
    let mut bm = SparseBitmap::new(40_000 + u64::from(selector) * 1000);
    if bitmap_block::validate(&block, PeerSlot(selector % 4), 0, 0).is_ok() {
        bitmap_block::load(&block, 0, &mut bm);
    }
}
