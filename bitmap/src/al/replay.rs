//! Reconstructing the set of active extents from the on-disk ring after a crash.
//!
//! Transaction `n` is written at ring position `n % R` and made durable before the next one is built,
//! so the ring holds the `R` most recent transactions — except that a crash while writing transaction
//! `S+1` may leave its position torn, destroying transaction `S+1-R` as well.
//!
//! Every LRU slot's value is the one written by the newest transaction that mentions it (as an update
//! or in its context slice, which is taken after the updates). Consecutive context slices are
//! consecutive ranges of slots, and `R - 1` of them cover all `al_extents` slots
//! ([`crate::layout::al_ring_slots`]), so even with a torn newest position every slot is mentioned by a
//! surviving transaction, and the newest mention is the truth: a later change would have been an
//! update in a later — surviving — transaction.
//!
//! Anything else that is wrong with the ring (a damaged block that is not the oldest position, a
//! sequence number out of place) means the log cannot be trusted and is reported as damage.

use super::transaction::{EMPTY, RingCheck, Transaction};
use crate::error::BlockDefect;

/// The outcome of reading one ring position.
pub type RingBlock = Result<Transaction, BlockDefect>;

/// A ring that could be replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Extents active at the time of the newest durable transaction, in LRU-slot order.
    pub active: Vec<u32>,
    /// The newest transaction number.
    pub last_seq: u64,
    /// The oldest ring position, if it was torn (normal after a crash during a transaction).
    pub torn: Option<u32>,
}

/// Why the ring could not be replayed: the position and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingDamage {
    /// Ring position.
    pub ring_pos: u32,
    /// The defect.
    pub defect: BlockDefect,
}

/// Replays `blocks` (one per ring position, in position order) for `al_extents` LRU slots.
pub fn replay(blocks: &[RingBlock], al_extents: u32) -> Result<Replayed, RingDamage> {
    let r = blocks.len() as u64;
    let newest = blocks
        .iter()
        .enumerate()
        .filter_map(|(p, b)| b.as_ref().ok().map(|t| (p, t.seq)))
        .max_by_key(|&(_, s)| s);
    let Some((_, last_seq)) = newest else {
        let defect = match blocks.first() {
            Some(Err(d)) => d.clone(),
            _ => BlockDefect::InvalidField {
                field: "ring",
                reason: "no transaction block".into(),
            },
        };
        return Err(RingDamage { ring_pos: 0, defect });
    };
    let oldest_pos = ((last_seq + 1) % r) as u32;
    let mut torn = None;
    let mut in_order: Vec<&Transaction> = Vec::with_capacity(blocks.len());
    for (pos, block) in blocks.iter().enumerate() {
        let pos = pos as u32;
        // The transaction number this position must hold: the newest n ≤ last_seq with n % R == pos.
        let back = (last_seq % r + r - u64::from(pos)) % r;
        let expected = last_seq.checked_sub(back);
        match (block, expected) {
            (Ok(t), Some(e)) if t.seq == e => in_order.push(t),
            (Err(_), _) if pos == oldest_pos => torn = Some(pos),
            (Ok(t), e) => {
                return Err(RingDamage {
                    ring_pos: pos,
                    defect: BlockDefect::Misplaced {
                        what: "transaction number",
                        found: t.seq,
                        expected: e.unwrap_or(u64::MAX),
                    },
                });
            }
            (Err(d), _) => {
                return Err(RingDamage {
                    ring_pos: pos,
                    defect: d.clone(),
                });
            }
        }
    }
    in_order.sort_by_key(|t| t.seq);
    let n = al_extents as usize;
    let mut slots: Vec<Option<u32>> = vec![None; n];
    for t in in_order {
        for &(slot, extent) in &t.updates {
            slots[slot as usize] = Some(extent);
        }
        for (i, &extent) in t.context.iter().enumerate() {
            slots[(t.context_start as usize + i) % n] = Some(extent);
        }
    }
    if let Some(missing) = slots.iter().position(Option::is_none) {
        return Err(RingDamage {
            ring_pos: oldest_pos,
            defect: BlockDefect::InvalidField {
                field: "ring",
                reason: format!("no surviving transaction describes LRU slot {missing}"),
            },
        });
    }
    let active = slots.into_iter().flatten().filter(|&e| e != EMPTY).collect();
    Ok(Replayed {
        active,
        last_seq,
        torn,
    })
}

/// Decodes every ring block with [`Transaction::decode`].
pub fn decode_ring(blocks: &[Vec<u8>], check: impl Fn(u32) -> RingCheck) -> Vec<RingBlock> {
    blocks
        .iter()
        .enumerate()
        .map(|(pos, b)| Transaction::decode(b, check(pos as u32)))
        .collect()
}
