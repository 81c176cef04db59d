//! The checker: blocks that describe themselves, the history of what the cluster acknowledged, and
//! the verdict on every replica once the faults stop.
//!
//! The model (one write outstanding at a time, write ids increasing): for every block the checker
//! knows the newest write the cluster acknowledged, and the writes issued after it whose outcome is
//! unknown (the connection broke, or the Primary answered with an error after losing quorum or its
//! peers — such a write may have reached some disks). A replica is correct when each block holds
//! that newest acknowledged write or one of those later unknown ones (zeros if nothing was ever
//! acknowledged and nothing is unknown); every write acknowledged before a completed flush is
//! covered, since nothing older than the newest acknowledged write is accepted. All UpToDate
//! replicas must also be identical.

use crc32c::crc32c;

/// Bytes per checked block.
pub const BLOCK: usize = 4096;
const MAGIC: u32 = 0x5246_4c54; // "RFLT"

/// The content of write `id` to block `block`.
pub fn content(block: u64, id: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..12].copy_from_slice(&block.to_le_bytes());
    b[12..20].copy_from_slice(&id.to_le_bytes());
    for (i, x) in b[24..].iter_mut().enumerate() {
        *x = (id as u8).wrapping_add(i as u8);
    }
    let crc = crc32c(&[&b[0..20], &b[24..]].concat());
    b[20..24].copy_from_slice(&crc.to_le_bytes());
    b
}

/// What a block on disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Never written.
    Zero,
    /// Write `id` of the block, intact.
    Write(u64),
    /// Anything else: another block's data, a torn or corrupt write.
    Garbage,
}

/// Decodes block `block`'s bytes.
pub fn decode(block: u64, b: &[u8]) -> Found {
    if b.iter().all(|&x| x == 0) {
        return Found::Zero;
    }
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(magic), Some(blk), Some(id), Some(crc)) = (u32_at(0), u64_at(4), u64_at(12), u32_at(20)) else {
        return Found::Garbage;
    };
    if magic != MAGIC || blk != block || b.len() != BLOCK {
        return Found::Garbage;
    }
    if crc32c(&[&b[0..20], &b[24..]].concat()) != crc {
        return Found::Garbage;
    }
    Found::Write(id)
}

/// What the cluster was asked to do and answered.
pub struct History {
    /// Per block: the newest acknowledged write.
    acked: Vec<Option<u64>>,
    /// Per block: writes issued after the newest acknowledged one whose outcome is unknown.
    unknown: Vec<Vec<u64>>,
    next_id: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Flushes completed.
    pub flushes: u64,
    /// Writes or flushes whose outcome is unknown.
    pub unknown_ops: u64,
}

impl History {
    /// A history for `blocks` blocks.
    pub fn new(blocks: usize) -> History {
        History {
            acked: vec![None; blocks],
            unknown: vec![Vec::new(); blocks],
            next_id: 1,
            writes_acked: 0,
            flushes: 0,
            unknown_ops: 0,
        }
    }

    /// Blocks tracked.
    pub fn blocks(&self) -> usize {
        self.acked.len()
    }

    /// A new write id.
    pub fn next_write(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Write `id` to `block` was acknowledged.
    pub fn acked(&mut self, block: usize, id: u64) {
        self.acked[block] = Some(id);
        self.unknown[block].clear();
        self.writes_acked += 1;
    }

    /// Write `id` to `block` may or may not have happened.
    pub fn unknown(&mut self, block: usize, id: u64) {
        self.unknown[block].push(id);
        self.unknown_ops += 1;
    }

    /// Checks one replica's data; the differing blocks, described.
    pub fn check(&self, data: &[u8]) -> Vec<String> {
        let mut bad = Vec::new();
        for (i, chunk) in data.chunks(BLOCK).take(self.blocks()).enumerate() {
            let found = decode(i as u64, chunk);
            let ok = match (found, self.acked[i]) {
                (Found::Write(id), Some(a)) => id == a || self.unknown[i].contains(&id),
                (Found::Write(id), None) => self.unknown[i].contains(&id),
                (Found::Zero, None) => true,
                (Found::Zero, Some(_)) | (Found::Garbage, _) => false,
            };
            if !ok {
                bad.push(format!(
                    "block {i}: found {found:?}, expected write {:?} or one of {:?}",
                    self.acked[i], self.unknown[i]
                ));
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_describe_themselves_and_the_check_accepts_only_what_it_may() {
        let mut h = History::new(4);
        let a = h.next_write();
        h.acked(1, a);
        let b = h.next_write();
        h.unknown(2, b);
        let mut data = vec![0u8; 4 * BLOCK];
        data[BLOCK..2 * BLOCK].copy_from_slice(&content(1, a));
        assert!(h.check(&data).is_empty());
        data[2 * BLOCK..3 * BLOCK].copy_from_slice(&content(2, b));
        assert!(h.check(&data).is_empty(), "an unknown write may be there");
        // A lost acknowledged write, an old one, and misplaced data are all caught.
        let mut lost = data.clone();
        lost[BLOCK..2 * BLOCK].fill(0);
        assert_eq!(h.check(&lost).len(), 1);
        let c = h.next_write();
        h.acked(1, c);
        assert_eq!(h.check(&data).len(), 1, "block 1 still holds the older write");
        let mut wrong = data.clone();
        wrong[3 * BLOCK..].copy_from_slice(&content(2, b));
        assert!(!h.check(&wrong).is_empty());
        assert_eq!(decode(0, &content(0, 7)), Found::Write(7));
        let mut torn = content(0, 7);
        torn[100] ^= 1;
        assert_eq!(decode(0, &torn), Found::Garbage);
    }
}
