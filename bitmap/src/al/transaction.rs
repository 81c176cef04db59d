//! One activity-log transaction: a 4 KiB block in the on-disk ring.
//!
//! ```text
//!    0  u32  magic "RBAL"            26  u8   number of updates (≤ 64)
//!    4  u32  crc32c (this field 0)   27  u8   zero
//!    8  u64  transaction number      28  u16  first LRU slot of the context slice
//!   16  u64  meta uuid               30  u16  context slice length (≤ 888)
//!   24  u16  ring position           32  64 × {u16 LRU slot, u16 zero, u32 extent}  updates
//!                                   544  888 × u32 extent                           context slice
//! ```
//!
//! An update puts `extent` into LRU slot `slot` (evicting whatever was there). The context slice is
//! the content of LRU slots `start..start+len` (wrapping) *after* the updates; successive transactions
//! advance `start`, so the ring always holds the whole LRU (see [`super::replay`]). Extent
//! `0xffff_ffff` marks an empty slot.

use crate::codec::{check_crc, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64, seal};
use crate::error::BlockDefect;
use crate::layout::{AL_CONTEXT_PER_TRANSACTION, AL_UPDATES_PER_TRANSACTION, BLOCK};

/// Magic of a transaction block: "RBAL".
pub const AL_MAGIC: u32 = u32::from_le_bytes(*b"RBAL");
/// Extent number of an empty LRU slot.
pub const EMPTY: u32 = u32::MAX;
const CRC_OFF: usize = 4;
const UPDATES_OFF: usize = 32;
const CONTEXT_OFF: usize = UPDATES_OFF + AL_UPDATES_PER_TRANSACTION * 8;

/// A decoded activity-log transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Transaction number; transaction `n` lives at ring position `n % ring_slots`.
    pub seq: u64,
    /// `(LRU slot, extent)` pairs applied by this transaction.
    pub updates: Vec<(u32, u32)>,
    /// First LRU slot of the context slice.
    pub context_start: u32,
    /// Extents of LRU slots `context_start..` (wrapping), after the updates.
    pub context: Vec<u32>,
}

/// What a transaction is checked against when decoded.
#[derive(Clone, Copy, Debug)]
pub struct RingCheck {
    /// uuid of the metadata.
    pub meta_uuid: u64,
    /// Position the block was read from.
    pub ring_pos: u32,
    /// Number of LRU slots.
    pub al_extents: u32,
    /// Number of extents the data area has.
    pub data_extents: u64,
}

impl Transaction {
    /// Encodes into a sealed block for ring position `ring_pos`.
    pub fn encode(&self, meta_uuid: u64, ring_pos: u32) -> Vec<u8> {
        debug_assert!(self.updates.len() <= AL_UPDATES_PER_TRANSACTION);
        debug_assert!(self.context.len() <= AL_CONTEXT_PER_TRANSACTION);
        let mut b = vec![0u8; BLOCK as usize];
        put_u32(&mut b, 0, AL_MAGIC);
        put_u64(&mut b, 8, self.seq);
        put_u64(&mut b, 16, meta_uuid);
        put_u16(&mut b, 24, ring_pos as u16);
        b[26] = self.updates.len() as u8;
        put_u16(&mut b, 28, self.context_start as u16);
        put_u16(&mut b, 30, self.context.len() as u16);
        for (i, &(slot, extent)) in self.updates.iter().enumerate() {
            put_u16(&mut b, UPDATES_OFF + 8 * i, slot as u16);
            put_u32(&mut b, UPDATES_OFF + 8 * i + 4, extent);
        }
        for (i, &extent) in self.context.iter().enumerate() {
            put_u32(&mut b, CONTEXT_OFF + 4 * i, extent);
        }
        seal(&mut b, CRC_OFF);
        b
    }

    /// Decodes and validates a block read from the ring.
    pub fn decode(b: &[u8], check: RingCheck) -> Result<Transaction, BlockDefect> {
        let invalid = |field, reason: String| BlockDefect::InvalidField { field, reason };
        let magic = get_u32(b, 0);
        if magic != AL_MAGIC {
            return Err(BlockDefect::BadMagic {
                found: u64::from(magic),
            });
        }
        check_crc(b, CRC_OFF).map_err(|(stored, computed)| BlockDefect::BadChecksum { stored, computed })?;
        let uuid = get_u64(b, 16);
        if uuid != check.meta_uuid {
            return Err(BlockDefect::Foreign {
                found: uuid,
                expected: check.meta_uuid,
            });
        }
        let pos = u32::from(get_u16(b, 24));
        if pos != check.ring_pos {
            return Err(BlockDefect::Misplaced {
                what: "ring position",
                found: pos.into(),
                expected: check.ring_pos.into(),
            });
        }
        let n_updates = usize::from(b[26]);
        let context_start = u32::from(get_u16(b, 28));
        let context_len = usize::from(get_u16(b, 30));
        if n_updates > AL_UPDATES_PER_TRANSACTION {
            return Err(invalid("update count", format!("{n_updates}")));
        }
        if context_len > AL_CONTEXT_PER_TRANSACTION || context_len > check.al_extents as usize {
            return Err(invalid("context length", format!("{context_len}")));
        }
        if context_start >= check.al_extents {
            return Err(invalid(
                "context start",
                format!("{context_start} ≥ al-extents {}", check.al_extents),
            ));
        }
        let extent_ok = |e: u32| e == EMPTY || u64::from(e) < check.data_extents;
        let mut updates = Vec::with_capacity(n_updates);
        for i in 0..n_updates {
            let slot = u32::from(get_u16(b, UPDATES_OFF + 8 * i));
            let extent = get_u32(b, UPDATES_OFF + 8 * i + 4);
            if slot >= check.al_extents || !extent_ok(extent) {
                return Err(invalid("update", format!("#{i}: slot {slot}, extent {extent}")));
            }
            updates.push((slot, extent));
        }
        let mut context = Vec::with_capacity(context_len);
        for i in 0..context_len {
            let extent = get_u32(b, CONTEXT_OFF + 4 * i);
            if !extent_ok(extent) {
                return Err(invalid("context", format!("#{i}: extent {extent}")));
            }
            context.push(extent);
        }
        Ok(Transaction {
            seq: get_u64(b, 8),
            updates,
            context_start,
            context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let t = Transaction {
            seq: 77,
            updates: vec![(3, 10), (4, EMPTY)],
            context_start: 5,
            context: vec![1, 2, EMPTY],
        };
        let check = RingCheck {
            meta_uuid: 9,
            ring_pos: 5,
            al_extents: 100,
            data_extents: 20,
        };
        let b = t.encode(9, 5);
        assert_eq!(Transaction::decode(&b, check), Ok(t));
        assert!(matches!(
            Transaction::decode(&b, RingCheck { ring_pos: 4, ..check }),
            Err(BlockDefect::Misplaced { .. })
        ));
        assert!(matches!(
            Transaction::decode(
                &b,
                RingCheck {
                    meta_uuid: 8,
                    ..check
                }
            ),
            Err(BlockDefect::Foreign { .. })
        ));
        assert!(matches!(
            Transaction::decode(
                &b,
                RingCheck {
                    data_extents: 5,
                    ..check
                }
            ),
            Err(BlockDefect::InvalidField { .. })
        ));
        let mut torn = b.clone();
        torn[2000] ^= 4;
        assert!(matches!(
            Transaction::decode(&torn, check),
            Err(BlockDefect::BadChecksum { .. })
        ));
    }
}
