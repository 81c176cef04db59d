//! Run-length encoding of a [`SparseBitmap`] for exchange with a peer at connect time.
//!
//! ```text
//! 'R' 0x01 | varint len_bits | varint clear₀ varint set₀ | varint clear₁ varint set₁ | …
//! ```
//!
//! Lengths alternate clear/set starting with a clear run (which may be 0 long); every later run is at
//! least 1 bit long, the runs never go past `len_bits`, and the tail after the last set run is implied
//! clear. Varints are unsigned LEB128, at most 10 bytes. The cost is proportional to the number of dirty
//! runs, like the bitmap itself. Decoding validates everything, and the receiver states the length it
//! expects (its own device's bit count): a few bytes can describe one enormous run, so without that
//! bound a corrupt or hostile peer could make the receiver allocate without limit.

use thiserror::Error;

use super::SparseBitmap;

const MAGIC: u8 = b'R';
const VERSION: u8 = 1;

/// Why an encoded bitmap was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RleError {
    /// The input ended inside the header or a run length.
    #[error("run-length bitmap truncated at byte {offset}")]
    Truncated {
        /// Byte offset where more input was expected.
        offset: usize,
    },
    /// The first byte is not the encoding's magic.
    #[error("not a run-length bitmap: magic byte {found:#04x}, expected {MAGIC:#04x}")]
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// The encoding version is not one this build understands.
    #[error("run-length bitmap version {found} is not supported (this build reads version {VERSION})")]
    BadVersion {
        /// The version found.
        found: u8,
    },
    /// A varint was longer than 10 bytes or overflowed 64 bits.
    #[error("malformed varint at byte {offset}")]
    BadVarint {
        /// Byte offset of the varint.
        offset: usize,
    },
    /// The bitmap's length is not the one the receiver expects.
    #[error(
        "run-length bitmap has {len_bits} bits, expected {expected} (the peers' devices differ in size or granularity)"
    )]
    WrongLength {
        /// Claimed length.
        len_bits: u64,
        /// Expected length.
        expected: u64,
    },
    /// A run other than the first clear run has zero length.
    #[error("zero-length run at byte {offset}")]
    ZeroRun {
        /// Byte offset of the run length.
        offset: usize,
    },
    /// The runs extend past `len_bits`.
    #[error("runs extend past the bitmap's {len_bits} bits at byte {offset}")]
    PastEnd {
        /// Byte offset of the offending run length.
        offset: usize,
        /// The bitmap's length.
        len_bits: u64,
    },
    /// A set run was missing after a clear run.
    #[error("a clear run is not followed by a set run at byte {offset}")]
    DanglingClearRun {
        /// Byte offset where the set run was expected.
        offset: usize,
    },
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &[u8], pos: &mut usize) -> Result<u64, RleError> {
    let start = *pos;
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *input.get(*pos).ok_or(RleError::Truncated { offset: *pos })?;
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return Err(RleError::BadVarint { offset: start });
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(RleError::BadVarint { offset: start })
}

impl SparseBitmap {
    /// Encodes the bitmap as alternating clear/set run lengths.
    pub fn encode_rle(&self) -> Vec<u8> {
        let mut out = vec![MAGIC, VERSION];
        put_varint(&mut out, self.len_bits());
        let mut pos = 0u64;
        for run in self.runs() {
            put_varint(&mut out, run.start - pos);
            put_varint(&mut out, run.end - run.start);
            pos = run.end;
        }
        out
    }

    /// Decodes an encoding made by [`encode_rle`](Self::encode_rle) of a bitmap of `expected_len_bits`
    /// bits, validating every field.
    pub fn decode_rle(input: &[u8], expected_len_bits: u64) -> Result<SparseBitmap, RleError> {
        let magic = *input.first().ok_or(RleError::Truncated { offset: 0 })?;
        if magic != MAGIC {
            return Err(RleError::BadMagic { found: magic });
        }
        let version = *input.get(1).ok_or(RleError::Truncated { offset: 1 })?;
        if version != VERSION {
            return Err(RleError::BadVersion { found: version });
        }
        let mut pos = 2;
        let len_bits = get_varint(input, &mut pos)?;
        if len_bits != expected_len_bits {
            return Err(RleError::WrongLength {
                len_bits,
                expected: expected_len_bits,
            });
        }
        let mut bitmap = SparseBitmap::new(len_bits);
        let mut bit = 0u64;
        let mut first = true;
        while pos < input.len() {
            let at = pos;
            let clear = get_varint(input, &mut pos)?;
            if clear == 0 && !first {
                return Err(RleError::ZeroRun { offset: at });
            }
            first = false;
            let at = pos;
            if pos >= input.len() {
                return Err(RleError::DanglingClearRun { offset: pos });
            }
            let set = get_varint(input, &mut pos)?;
            if set == 0 {
                return Err(RleError::ZeroRun { offset: at });
            }
            let start = bit.checked_add(clear).filter(|&s| s < len_bits);
            let end = start.and_then(|s| s.checked_add(set)).filter(|&e| e <= len_bits);
            let (Some(start), Some(end)) = (start, end) else {
                return Err(RleError::PastEnd { offset: at, len_bits });
            };
            bitmap.set_range(start..end);
            bit = end;
        }
        Ok(bitmap)
    }
}
