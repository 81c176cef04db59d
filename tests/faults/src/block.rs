//! Self-describing blocks: every block the workload writes says which block it belongs to and which
//! write produced it, with a checksum over all of it.
//!
//! Reading a replica back then needs no copy of the expected data: a block decodes to the write
//! that produced it (or to "never written", all zeroes, or to garbage), and the checker compares
//! write ids with its history. A block written to the wrong place decodes to another block number; a
//! torn or corrupted block fails its checksum.

/// Bytes per block: the workload writes whole, aligned 4 KiB blocks.
pub const BLOCK: usize = 4096;

const MAGIC: &[u8; 8] = b"RBDFAULT";
const CRC_AT: usize = 24;

/// What a block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Content {
    /// All zeroes: never written (the disks start zeroed).
    Zero,
    /// Written by write `id`, which addressed block `block`.
    Write {
        /// The block the write addressed.
        block: u64,
        /// The write's id (unique in a run, never 0).
        id: u64,
    },
    /// Neither zeroes nor a valid block: torn, corrupt or foreign data.
    Garbage,
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Zero => write!(f, "zeroes"),
            Content::Write { block, id } => write!(f, "write #{id} (of block {block})"),
            Content::Garbage => write!(f, "garbage"),
        }
    }
}

/// The content write `id` stores in block `block`.
pub fn encode(block: u64, id: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&block.to_le_bytes());
    b[16..24].copy_from_slice(&id.to_le_bytes());
    // A filler that differs per block and write, so a block that is half one write and half
    // another fails the checksum instead of looking plausible.
    let mut x = block.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id ^ 0xD1B5_4A32_D192_ED03;
    for chunk in b[32..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let crc = checksum(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The crc32c of a block with its checksum field taken as zero.
fn checksum(b: &[u8]) -> u32 {
    let head = crc32c::crc32c(&b[..CRC_AT]);
    let zero = crc32c::crc32c_append(head, &[0u8; 4]);
    crc32c::crc32c_append(zero, &b[CRC_AT + 4..])
}

/// Decodes one block of `BLOCK` bytes.
pub fn decode(b: &[u8]) -> Content {
    if b.len() != BLOCK {
        return Content::Garbage;
    }
    if b.iter().all(|x| *x == 0) {
        return Content::Zero;
    }
    if &b[..8] != MAGIC {
        return Content::Garbage;
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[CRC_AT..CRC_AT + 4]);
    if u32::from_le_bytes(crc) != checksum(b) {
        return Content::Garbage;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    Content::Write {
        block: word(8),
        id: word(16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_decodes_to_the_write_that_produced_it() {
        let b = encode(17, 4242);
        assert_eq!(decode(&b), Content::Write { block: 17, id: 4242 });
        assert_eq!(decode(&[0u8; BLOCK]), Content::Zero);
        assert_ne!(encode(17, 4242), encode(17, 4243));
        assert_ne!(encode(17, 4242), encode(18, 4242));
    }

    #[test]
    fn torn_and_corrupt_blocks_are_garbage() {
        let a = encode(3, 1);
        let b = encode(3, 2);
        let mut torn = a.clone();
        torn[2048..].copy_from_slice(&b[2048..]);
        assert_eq!(decode(&torn), Content::Garbage);
        let mut flipped = a.clone();
        flipped[4000] ^= 1;
        assert_eq!(decode(&flipped), Content::Garbage);
        assert_eq!(decode(&a[..512]), Content::Garbage);
        assert_eq!(decode(&[0xffu8; BLOCK]), Content::Garbage);
    }
}
