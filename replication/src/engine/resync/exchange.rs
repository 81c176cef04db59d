//! Exchanging bitmaps at connect: each side sends its bitmap for the other, run-length encoded, in
//! chunks of at most 256 KiB so a badly fragmented bitmap never needs one huge message.
//!
//! ```text
//! BitmapChunk payload: u64 first bit | u64 end bit (exclusive) | u32 bytes per bit |
//!                      (varint gap since the previous run's end, varint run length)*
//! ```
//!
//! The receiver validates every chunk (bounds, order, no empty runs) and converts the runs to byte
//! ranges, so peers with different bitmap granularities interoperate: a received run is marked with
//! the receiver's own granularity, rounded outward.

use std::ops::Range;

use replbd_bitmap::SparseBitmap;

/// Target size of one chunk's payload.
const CHUNK: usize = 256 << 10;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *input.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        if i == 9 && b > 1 {
            return Err("varint overflows 64 bits".into());
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn header(start: u64, granularity: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK + 32);
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&granularity.to_le_bytes());
    out
}

fn seal(mut chunk: Vec<u8>, end: u64) -> Vec<u8> {
    chunk[8..16].copy_from_slice(&end.to_le_bytes());
    chunk
}

/// Encodes `bm` (one bit per `granularity` bytes) as chunk payloads covering all its bits.
pub fn encode(bm: &SparseBitmap, granularity: u32) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut cur = header(0, granularity);
    let mut prev_end = 0u64;
    for run in bm.runs() {
        if cur.len() >= CHUNK {
            chunks.push(seal(cur, run.start));
            cur = header(run.start, granularity);
            prev_end = run.start;
        }
        put_varint(&mut cur, run.start - prev_end);
        put_varint(&mut cur, run.end - run.start);
        prev_end = run.end;
    }
    chunks.push(seal(cur, bm.len_bits()));
    chunks
}

/// A decoded chunk: the sender's granularity and its runs, as byte ranges.
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    /// First and end bit the chunk covers.
    pub bits: Range<u64>,
    /// Bytes per bit on the sender.
    pub granularity: u32,
    /// Out-of-sync byte ranges, clipped to `size`.
    pub ranges: Vec<Range<u64>>,
}

/// Decodes and validates a chunk for a volume of `size` bytes.
pub fn decode(payload: &[u8], size: u64) -> Result<Chunk, String> {
    if payload.len() < 20 {
        return Err(format!(
            "bitmap chunk of {} bytes is shorter than its header",
            payload.len()
        ));
    }
    let word = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().unwrap_or_default());
    let (start, end) = (word(0), word(8));
    let granularity = u32::from_le_bytes(payload[16..20].try_into().unwrap_or_default());
    if !granularity.is_power_of_two() || !(512..=1 << 20).contains(&granularity) {
        return Err(format!("bitmap chunk with granularity {granularity}"));
    }
    let bits = size.div_ceil(u64::from(granularity));
    if start > end || end > bits {
        return Err(format!(
            "bitmap chunk covers bits {start}..{end} of a {bits}-bit bitmap"
        ));
    }
    let mut pos = 20;
    let mut at = start;
    let mut ranges = Vec::new();
    while pos < payload.len() {
        let gap = get_varint(payload, &mut pos)?;
        let len = get_varint(payload, &mut pos)?;
        let s = at.checked_add(gap).ok_or("bitmap run overflows")?;
        let e = s.checked_add(len).ok_or("bitmap run overflows")?;
        if len == 0 || e > end || (gap == 0 && at != start) {
            return Err(format!("invalid bitmap run {s}..{e} in chunk {start}..{end}"));
        }
        let g = u64::from(granularity);
        ranges.push(s * g..(e * g).min(size));
        at = e;
    }
    Ok(Chunk {
        bits: start..end,
        granularity,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_even_when_fragmented() {
        let size = 1u64 << 33; // 8 GiB at 4 KiB: 2^21 bits
        let mut bm = SparseBitmap::new(size / 4096);
        for i in (0..(1u64 << 21)).step_by(3) {
            bm.set(i);
        }
        bm.set_range(100..5000);
        let chunks = encode(&bm, 4096);
        assert!(chunks.len() > 1, "a fragmented bitmap spans several chunks");
        let mut back = SparseBitmap::new(size / 4096);
        let mut expect_start = 0;
        for c in &chunks {
            assert!(c.len() <= CHUNK + 64);
            let d = decode(c, size).unwrap();
            assert_eq!(d.bits.start, expect_start, "chunks are contiguous");
            expect_start = d.bits.end;
            for r in d.ranges {
                back.set_range(r.start / 4096..r.end.div_ceil(4096));
            }
        }
        assert_eq!(expect_start, size / 4096);
        assert_eq!(back, bm);
    }

    #[test]
    fn malformed_chunks_are_rejected() {
        let size = 1 << 30;
        assert!(decode(&[0; 5], size).is_err());
        let mut c = header(0, 4096);
        c = seal(c, 10);
        put_varint(&mut c, 5);
        put_varint(&mut c, 9); // runs past the chunk end
        assert!(decode(&c, size).is_err());
        let mut c = seal(header(0, 4096), 1 << 40);
        assert!(decode(&c, size).is_err(), "beyond the bitmap");
        c = seal(header(0, 3000), 10);
        assert!(decode(&c, size).is_err(), "granularity");
        let mut c = seal(header(0, 4096), 100);
        put_varint(&mut c, 0);
        put_varint(&mut c, 0);
        assert!(decode(&c, size).is_err(), "empty run");
    }
}
