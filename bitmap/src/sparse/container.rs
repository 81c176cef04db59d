//! One chunk of a [`SparseBitmap`](super::SparseBitmap): up to `2^chunk_shift` bits stored in whichever
//! of four representations is smallest for the bits it holds.
//!
//! | representation | cost | chosen when |
//! |---|---|---|
//! | `Array` | 4 bytes per set bit | isolated set bits (random 4 KiB writes) |
//! | `Runs` | 8 bytes per run | clustered set bits (sequential writes, large ranges) |
//! | `Dense` | `chunk_bits / 8` bytes | many short runs: never worse than a flat bitmap |
//! | `Full` | 0 | every bit set |
//!
//! `Array` and `Runs` are capped at [`VEC_MAX`] entries so that an update never moves more than a few
//! tens of KiB; past that the chunk turns dense. All offsets are relative to the chunk start and ranges
//! are half-open `[a, b)`.

use std::cmp::{max, min};

/// Most entries an `Array` or `Runs` container holds before the chunk turns dense.
pub(crate) const VEC_MAX: usize = 8192;

/// A half-open run of set bits `[start, end)` inside one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Run {
    fn len(self) -> u32 {
        self.end - self.start
    }
}

/// The storage of one chunk. Never empty: an empty chunk is removed from the map instead.
#[derive(Clone, Debug)]
pub(crate) enum Container {
    /// Sorted, distinct offsets of the set bits.
    Array(Vec<u32>),
    /// Sorted runs, disjoint and never adjacent.
    Runs(Vec<Run>),
    /// One bit per offset, little-endian within each word.
    Dense(Box<[u64]>),
    /// Every bit of the chunk is set.
    Full,
}

/// A chunk: its container plus the number of bits set in it (kept exact by every operation).
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub(crate) card: u32,
    pub(crate) c: Container,
}

fn words_for(cap: u32) -> usize {
    cap.div_ceil(64) as usize
}

fn mask(lo: u32, hi: u32) -> u64 {
    // Bits [lo, hi) of one word, 0 <= lo < hi <= 64.
    let upper = if hi == 64 { u64::MAX } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

/// Calls `f(word_index, mask)` for every word touched by `[a, b)`.
fn for_each_word(a: u32, b: u32, mut f: impl FnMut(usize, u64)) {
    let mut pos = a;
    while pos < b {
        let w = pos / 64;
        let lo = pos % 64;
        let hi = min(64, b - w * 64);
        f(w as usize, mask(lo, hi));
        pos = w * 64 + hi;
    }
}

impl Chunk {
    /// A chunk with every bit in `[a, b)` set and no other.
    pub(crate) fn with_range(a: u32, b: u32, cap: u32) -> Chunk {
        if a == 0 && b == cap {
            return Chunk {
                card: cap,
                c: Container::Full,
            };
        }
        let c = if b - a == 1 {
            Container::Array(vec![a])
        } else {
            Container::Runs(vec![Run { start: a, end: b }])
        };
        Chunk { card: b - a, c }
    }

    /// Sets `[a, b)`; returns how many bits changed from clear to set.
    pub(crate) fn set(&mut self, a: u32, b: u32, cap: u32) -> u32 {
        let added = match &mut self.c {
            Container::Full => 0,
            Container::Array(v) if b - a == 1 => match v.binary_search(&a) {
                Ok(_) => 0,
                Err(i) => {
                    v.insert(i, a);
                    1
                }
            },
            Container::Array(v) => {
                let mut runs = array_to_runs(v);
                let added = runs_set(&mut runs, a, b);
                self.c = Container::Runs(runs);
                added
            }
            Container::Runs(runs) => runs_set(runs, a, b),
            Container::Dense(words) => {
                let mut added = 0;
                for_each_word(a, b, |w, m| {
                    added += (m & !words[w]).count_ones();
                    words[w] |= m;
                });
                added
            }
        };
        if added > 0 {
            self.card += added;
            self.normalize(cap, b - a);
        }
        added
    }

    /// Clears `[a, b)`; returns how many bits changed from set to clear. The caller removes the chunk
    /// when its count drops to zero.
    pub(crate) fn clear(&mut self, a: u32, b: u32, cap: u32) -> u32 {
        let removed = match &mut self.c {
            Container::Full => {
                let mut runs = Vec::with_capacity(2);
                if a > 0 {
                    runs.push(Run { start: 0, end: a });
                }
                if b < cap {
                    runs.push(Run { start: b, end: cap });
                }
                self.c = Container::Runs(runs);
                b - a
            }
            Container::Array(v) => {
                let lo = v.partition_point(|&x| x < a);
                let hi = v.partition_point(|&x| x < b);
                v.drain(lo..hi);
                (hi - lo) as u32
            }
            Container::Runs(runs) => runs_clear(runs, a, b),
            Container::Dense(words) => {
                let mut removed = 0;
                for_each_word(a, b, |w, m| {
                    removed += (m & words[w]).count_ones();
                    words[w] &= !m;
                });
                removed
            }
        };
        if removed > 0 {
            self.card -= removed;
            if self.card > 0 {
                self.normalize(cap, b - a);
            }
        }
        removed
    }

    /// Number of set bits in `[a, b)`.
    pub(crate) fn count_range(&self, a: u32, b: u32) -> u32 {
        match &self.c {
            Container::Full => b - a,
            Container::Array(v) => (v.partition_point(|&x| x < b) - v.partition_point(|&x| x < a)) as u32,
            Container::Runs(runs) => {
                let i = runs.partition_point(|r| r.end <= a);
                runs[i..]
                    .iter()
                    .take_while(|r| r.start < b)
                    .map(|r| min(r.end, b) - max(r.start, a))
                    .sum()
            }
            Container::Dense(words) => {
                let mut n = 0;
                for_each_word(a, b, |w, m| n += (words[w] & m).count_ones());
                n
            }
        }
    }

    /// The first set offset at or after `from`, if any below `cap`.
    pub(crate) fn first_set_from(&self, from: u32, cap: u32) -> Option<u32> {
        if from >= cap {
            return None;
        }
        self.first_set_unbounded(from).filter(|&x| x < cap)
    }

    fn first_set_unbounded(&self, from: u32) -> Option<u32> {
        match &self.c {
            Container::Full => Some(from),
            Container::Array(v) => v.get(v.partition_point(|&x| x < from)).copied(),
            Container::Runs(runs) => runs
                .get(runs.partition_point(|r| r.end <= from))
                .map(|r| max(r.start, from)),
            Container::Dense(words) => {
                let mut w = (from / 64) as usize;
                let mut bits = words[w] & !((1u64 << (from % 64)) - 1);
                loop {
                    if bits != 0 {
                        return Some(w as u32 * 64 + bits.trailing_zeros());
                    }
                    w += 1;
                    if w >= words.len() {
                        return None;
                    }
                    bits = words[w];
                }
            }
        }
    }

    /// The first clear offset at or after `from`, if any below `cap`.
    pub(crate) fn first_clear_from(&self, from: u32, cap: u32) -> Option<u32> {
        if from >= cap {
            return None;
        }
        let found = match &self.c {
            Container::Full => return None,
            Container::Array(v) => {
                // Walk forward over consecutive set offsets starting at `from`.
                let mut i = v.partition_point(|&x| x < from);
                let mut pos = from;
                while i < v.len() && v[i] == pos {
                    pos += 1;
                    i += 1;
                }
                pos
            }
            Container::Runs(runs) => {
                let i = runs.partition_point(|r| r.end <= from);
                match runs.get(i) {
                    Some(r) if r.start <= from => r.end,
                    _ => from,
                }
            }
            Container::Dense(words) => {
                let mut w = (from / 64) as usize;
                let mut bits = !words[w] & !((1u64 << (from % 64)) - 1);
                loop {
                    if bits != 0 {
                        break w as u32 * 64 + bits.trailing_zeros();
                    }
                    w += 1;
                    if w >= words.len() {
                        break cap;
                    }
                    bits = !words[w];
                }
            }
        };
        (found < cap).then_some(found)
    }

    /// Bytes of heap memory this chunk's container owns.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.c {
            Container::Full => 0,
            Container::Array(v) => v.capacity() * 4,
            Container::Runs(r) => r.capacity() * 8,
            Container::Dense(w) => w.len() * 8,
        }
    }

    /// Re-chooses the cheapest representation after a change that touched `span` bits.
    fn normalize(&mut self, cap: u32, span: u32) {
        if self.card == cap {
            self.c = Container::Full;
            return;
        }
        let dense_bytes = words_for(cap) * 8;
        let low = (VEC_MAX / 4) as u32;
        let (card, nruns) = match &self.c {
            Container::Full => return,
            Container::Array(v) => (v.len(), array_run_count(v)),
            Container::Runs(r) => (self.card as usize, r.len()),
            // A dense chunk is only re-examined when it became sparse or a large range changed it:
            // the scan costs as much as a few thousand single-bit updates.
            Container::Dense(words) if self.card < low || span >= 4096 => {
                (self.card as usize, dense_run_count(words))
            }
            Container::Dense(_) => return,
        };
        let array_ok = card <= VEC_MAX && card * 4 < dense_bytes;
        let runs_ok = nruns <= VEC_MAX && nruns * 8 < dense_bytes;
        let want = if array_ok && (!runs_ok || card * 4 <= nruns * 8) {
            Repr::Array
        } else if runs_ok {
            Repr::Runs
        } else {
            Repr::Dense
        };
        let c = std::mem::replace(&mut self.c, Container::Full);
        self.c = match (c, want) {
            (Container::Array(v), Repr::Array) => Container::Array(v),
            (Container::Runs(r), Repr::Runs) => Container::Runs(r),
            (Container::Dense(w), Repr::Dense) => Container::Dense(w),
            (c, want) => {
                let runs = container_runs(&c, cap);
                match want {
                    Repr::Array => Container::Array(runs.iter().flat_map(|r| r.start..r.end).collect()),
                    Repr::Runs => Container::Runs(runs),
                    Repr::Dense => {
                        let mut words = vec![0u64; words_for(cap)].into_boxed_slice();
                        for r in &runs {
                            for_each_word(r.start, r.end, |w, m| words[w] |= m);
                        }
                        Container::Dense(words)
                    }
                }
            }
        };
    }
}

#[derive(Clone, Copy)]
enum Repr {
    Array,
    Runs,
    Dense,
}

fn array_run_count(v: &[u32]) -> usize {
    if v.is_empty() {
        return 0;
    }
    1 + v.windows(2).filter(|w| w[1] != w[0] + 1).count()
}

fn array_to_runs(v: &[u32]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::with_capacity(array_run_count(v) + 1);
    for &x in v {
        match runs.last_mut() {
            Some(r) if r.end == x => r.end += 1,
            _ => runs.push(Run { start: x, end: x + 1 }),
        }
    }
    runs
}

fn dense_run_count(words: &[u64]) -> usize {
    // A run starts at every set bit whose predecessor is clear.
    let mut carry = 0u64;
    let mut n = 0;
    for &w in words {
        let prev = (w << 1) | carry;
        n += (w & !prev).count_ones() as usize;
        carry = w >> 63;
    }
    n
}

/// All runs of a container, in order.
fn container_runs(c: &Container, cap: u32) -> Vec<Run> {
    match c {
        Container::Full => vec![Run { start: 0, end: cap }],
        Container::Array(v) => array_to_runs(v),
        Container::Runs(r) => r.clone(),
        Container::Dense(words) => {
            let mut runs: Vec<Run> = Vec::new();
            for (wi, &w) in words.iter().enumerate() {
                let mut bits = w;
                while bits != 0 {
                    let tz = bits.trailing_zeros();
                    let start = wi as u32 * 64 + tz;
                    let ones = (bits >> tz).trailing_ones();
                    let end = start + ones;
                    match runs.last_mut() {
                        Some(r) if r.end == start => r.end = end,
                        _ => runs.push(Run { start, end }),
                    }
                    bits = if tz + ones >= 64 {
                        0
                    } else {
                        bits & !mask(tz, tz + ones)
                    };
                }
            }
            runs
        }
    }
}

fn runs_set(runs: &mut Vec<Run>, a: u32, b: u32) -> u32 {
    // Runs [i, j) overlap or touch [a, b): they merge into one.
    let i = runs.partition_point(|r| r.end < a);
    let j = runs.partition_point(|r| r.start <= b);
    let (start, end, covered) = if i < j {
        let covered: u32 = runs[i..j]
            .iter()
            .map(|r| min(r.end, b).saturating_sub(max(r.start, a)))
            .sum();
        (min(a, runs[i].start), max(b, runs[j - 1].end), covered)
    } else {
        (a, b, 0)
    };
    runs.splice(i..j, [Run { start, end }]);
    (b - a) - covered
}

fn runs_clear(runs: &mut Vec<Run>, a: u32, b: u32) -> u32 {
    // Runs [i, j) intersect [a, b).
    let i = runs.partition_point(|r| r.end <= a);
    let j = runs.partition_point(|r| r.start < b);
    if i >= j {
        return 0;
    }
    let removed: u32 = runs[i..j].iter().map(|r| min(r.end, b) - max(r.start, a)).sum();
    let first = runs[i];
    let last = runs[j - 1];
    let mut keep = Vec::with_capacity(2);
    if first.start < a {
        keep.push(Run {
            start: first.start,
            end: a,
        });
    }
    if last.end > b {
        keep.push(Run {
            start: b,
            end: last.end,
        });
    }
    debug_assert!(keep.iter().all(|r| r.len() > 0));
    runs.splice(i..j, keep);
    removed
}

/// Calls `f(start, end)` for every run of `chunk` that intersects `[a, b)`, clipped to it.
pub(crate) fn for_each_run_in(chunk: &Chunk, a: u32, b: u32, cap: u32, mut f: impl FnMut(u32, u32)) {
    match &chunk.c {
        Container::Full => f(a, b),
        Container::Runs(runs) => {
            let i = runs.partition_point(|r| r.end <= a);
            for r in runs[i..].iter().take_while(|r| r.start < b) {
                f(max(r.start, a), min(r.end, b));
            }
        }
        Container::Array(_) | Container::Dense(_) => {
            let mut pos = a;
            while let Some(s) = chunk.first_set_from(pos, b) {
                let e = chunk.first_clear_from(s, cap).map_or(b, |e| min(e, b));
                f(s, e);
                pos = e;
            }
        }
    }
}
