//! An in-memory bitmap whose memory follows what is set, not how many bits it spans.
//!
//! DRBD keeps every peer's bitmap flat in RAM: 32 MiB per TiB per peer, 16 GiB for a 16 TiB volume with
//! 32 peers even when nothing is out of sync. replbd splits the bit space into chunks of `2^20` bits
//! (4 GiB of data at 4 KiB per bit); only chunks with a set bit exist, and each stores its bits as a
//! sorted array, a list of runs, a flat bitmap or nothing at all ("full"), whichever is smallest (see
//! [`container`]). An empty bitmap costs a few dozen bytes, a fully dirty one a few bytes per chunk, and
//! the worst case — many short runs — costs what DRBD's flat bitmap costs.
//!
//! All ranges are half-open bit ranges `start..end`; out-of-range bits are clipped by the caller
//! ([`SparseBitmap::set_range`] and friends clip to `len_bits`).

mod container;
pub mod rle;

use std::collections::BTreeMap;
use std::ops::Range;

use container::{Chunk, for_each_run_in};

/// Bits per chunk: `2^CHUNK_SHIFT`.
pub const CHUNK_SHIFT: u32 = 20;

/// A bitmap of `len_bits` bits that costs memory in proportion to its set regions.
#[derive(Clone, Debug)]
pub struct SparseBitmap {
    len_bits: u64,
    chunk_shift: u32,
    count: u64,
    chunks: BTreeMap<u32, Chunk>,
}

impl PartialEq for SparseBitmap {
    fn eq(&self, other: &Self) -> bool {
        self.len_bits == other.len_bits && self.count == other.count && self.runs().eq(other.runs())
    }
}

impl Eq for SparseBitmap {}

impl SparseBitmap {
    /// An all-clear bitmap of `len_bits` bits.
    pub fn new(len_bits: u64) -> SparseBitmap {
        Self::with_chunk_shift(len_bits, CHUNK_SHIFT)
    }

    /// Like [`new`](Self::new) with chunks of `2^chunk_shift` bits (6..=20). Small chunks exist so that
    /// property tests reach every container transition with small models.
    pub fn with_chunk_shift(len_bits: u64, chunk_shift: u32) -> SparseBitmap {
        let chunk_shift = chunk_shift.clamp(6, CHUNK_SHIFT);
        // Chunk indexes are u32: cap the length so every chunk has an index.
        let len_bits = len_bits.min((u64::from(u32::MAX) + 1) << chunk_shift);
        SparseBitmap {
            len_bits,
            chunk_shift,
            count: 0,
            chunks: BTreeMap::new(),
        }
    }

    /// Number of bits the bitmap spans.
    pub fn len_bits(&self) -> u64 {
        self.len_bits
    }

    /// Number of set bits.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when no bit is set.
    pub fn is_clear(&self) -> bool {
        self.count == 0
    }

    fn chunk_bits(&self) -> u64 {
        1u64 << self.chunk_shift
    }

    /// Capacity of chunk `ci` (the last chunk may be short).
    fn cap(&self, ci: u32) -> u32 {
        let base = u64::from(ci) << self.chunk_shift;
        (self.len_bits - base).min(self.chunk_bits()) as u32
    }

    fn clip(&self, r: Range<u64>) -> Range<u64> {
        let end = r.end.min(self.len_bits);
        r.start.min(end)..end
    }

    /// Splits a clipped range into per-chunk pieces `(chunk index, local start, local end)`.
    fn pieces(&self, r: Range<u64>) -> impl Iterator<Item = (u32, u32, u32)> + use<> {
        let shift = self.chunk_shift;
        let bits = 1u64 << shift;
        let first = (r.start >> shift) as u32;
        let last = if r.is_empty() {
            first
        } else {
            ((r.end - 1) >> shift) as u32
        };
        let count = if r.is_empty() {
            0
        } else {
            u64::from(last - first) + 1
        };
        (0..count).map(move |k| {
            let ci = first + k as u32;
            let base = u64::from(ci) << shift;
            let a = r.start.max(base) - base;
            let b = r.end.min(base + bits) - base;
            (ci, a as u32, b as u32)
        })
    }

    /// Sets every bit in `r` (clipped to the bitmap); returns how many were newly set.
    pub fn set_range(&mut self, r: Range<u64>) -> u64 {
        let r = self.clip(r);
        let mut added = 0u64;
        for (ci, a, b) in self.pieces(r) {
            let cap = self.cap(ci);
            let n = match self.chunks.get_mut(&ci) {
                Some(chunk) => chunk.set(a, b, cap),
                None => {
                    self.chunks.insert(ci, Chunk::with_range(a, b, cap));
                    b - a
                }
            };
            added += u64::from(n);
        }
        self.count += added;
        added
    }

    /// Clears every bit in `r` (clipped to the bitmap); returns how many were set before.
    pub fn clear_range(&mut self, r: Range<u64>) -> u64 {
        let r = self.clip(r);
        let mut removed = 0u64;
        for (ci, a, b) in self.pieces(r) {
            let cap = self.cap(ci);
            if a == 0 && b == cap {
                if let Some(chunk) = self.chunks.remove(&ci) {
                    removed += u64::from(chunk.card);
                }
                continue;
            }
            if let Some(chunk) = self.chunks.get_mut(&ci) {
                removed += u64::from(chunk.clear(a, b, cap));
                if chunk.card == 0 {
                    self.chunks.remove(&ci);
                }
            }
        }
        self.count -= removed;
        removed
    }

    /// Sets one bit.
    pub fn set(&mut self, bit: u64) -> bool {
        self.set_range(bit..bit.saturating_add(1)) == 1
    }

    /// Tests one bit.
    pub fn test(&self, bit: u64) -> bool {
        self.count_range(bit..bit.saturating_add(1)) == 1
    }

    /// Number of set bits in `r`.
    pub fn count_range(&self, r: Range<u64>) -> u64 {
        let r = self.clip(r);
        if r.start == 0 && r.end == self.len_bits {
            return self.count;
        }
        self.pieces(r)
            .filter_map(|(ci, a, b)| self.chunks.get(&ci).map(|c| u64::from(c.count_range(a, b))))
            .sum()
    }

    /// True when at least one bit in `r` is set.
    pub fn any_in(&self, r: Range<u64>) -> bool {
        let r = self.clip(r);
        self.first_set_from(r.start).is_some_and(|b| b < r.end)
    }

    /// True when every bit in `r` is set (vacuously true for an empty range).
    pub fn all_in(&self, r: Range<u64>) -> bool {
        let r = self.clip(r);
        r.is_empty() || self.first_clear_from(r.start) >= r.end
    }

    /// The first set bit at or after `from`.
    pub fn first_set_from(&self, from: u64) -> Option<u64> {
        if from >= self.len_bits {
            return None;
        }
        let start_ci = (from >> self.chunk_shift) as u32;
        for (&ci, chunk) in self.chunks.range(start_ci..) {
            let base = u64::from(ci) << self.chunk_shift;
            let local = if ci == start_ci { (from - base) as u32 } else { 0 };
            if let Some(off) = chunk.first_set_from(local, self.cap(ci)) {
                return Some(base + u64::from(off));
            }
        }
        None
    }

    /// The first clear bit at or after `from`, or `len_bits` when every bit from there on is set.
    pub fn first_clear_from(&self, from: u64) -> u64 {
        let mut pos = from;
        while pos < self.len_bits {
            let ci = (pos >> self.chunk_shift) as u32;
            let base = u64::from(ci) << self.chunk_shift;
            match self.chunks.get(&ci) {
                None => return pos,
                Some(chunk) => match chunk.first_clear_from((pos - base) as u32, self.cap(ci)) {
                    Some(off) => return base + u64::from(off),
                    None => pos = base + u64::from(self.cap(ci)),
                },
            }
        }
        self.len_bits
    }

    /// The first maximal run of set bits that ends after `from`, clipped to start at `from`.
    pub fn next_run_from(&self, from: u64) -> Option<Range<u64>> {
        let start = self.first_set_from(from)?;
        Some(start..self.first_clear_from(start))
    }

    /// Iterates over the maximal runs of set bits, in order.
    pub fn runs(&self) -> Runs<'_> {
        Runs {
            bitmap: self,
            pos: 0,
            end: self.len_bits,
        }
    }

    /// Iterates over the maximal runs of set bits clipped to `r`.
    pub fn runs_in(&self, r: Range<u64>) -> Runs<'_> {
        let r = self.clip(r);
        Runs {
            bitmap: self,
            pos: r.start,
            end: r.end,
        }
    }

    /// Sets every bit that is set in `other` (bits beyond this bitmap's length are ignored).
    pub fn union_with(&mut self, other: &SparseBitmap) -> u64 {
        other.runs().map(|r| self.set_range(r)).sum()
    }

    /// Calls `f(start, end)` for each run of set bits intersecting `r`, clipped to it; runs that cross a
    /// chunk boundary are reported in pieces. Cheaper than [`runs_in`](Self::runs_in) for bulk copies.
    pub fn for_each_piece_in(&self, r: Range<u64>, mut f: impl FnMut(u64, u64)) {
        let r = self.clip(r);
        for (ci, a, b) in self.pieces(r) {
            if let Some(chunk) = self.chunks.get(&ci) {
                let base = u64::from(ci) << self.chunk_shift;
                for_each_run_in(chunk, a, b, self.cap(ci), |s, e| {
                    f(base + u64::from(s), base + u64::from(e))
                });
            }
        }
    }

    /// Bytes of heap memory owned by the chunk containers (excluding the chunk index itself).
    pub fn container_bytes(&self) -> usize {
        self.chunks.values().map(Chunk::heap_bytes).sum()
    }

    /// Number of chunks that hold at least one set bit.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// Iterator over maximal runs of set bits; see [`SparseBitmap::runs`].
pub struct Runs<'a> {
    bitmap: &'a SparseBitmap,
    pos: u64,
    end: u64,
}

impl Iterator for Runs<'_> {
    type Item = Range<u64>;

    fn next(&mut self) -> Option<Range<u64>> {
        if self.pos >= self.end {
            return None;
        }
        let run = self.bitmap.next_run_from(self.pos)?;
        if run.start >= self.end {
            self.pos = self.end;
            return None;
        }
        let run = run.start..run.end.min(self.end);
        self.pos = run.end;
        Some(run)
    }
}
