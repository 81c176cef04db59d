//! The fixed frame header.
//!
//! ```text
//!  0 u32 magic "RPLB"   8 u32 flags        16 u64 seq      32 u64 aux
//!  4 u16 version        12 u32 length      24 u64 sector   40 u32 crc32c of bytes 0..40
//!  6 u16 kind
//! ```
//! Encoded with bincode's standard configuration and fixed-width integers (little endian).

use bincode::{Decode, Encode};

use super::{Kind, WireError};

/// "RPLB" little endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"RPLB");
/// Encoded header length, checksum included.
pub const HEADER_LEN: usize = 44;
const BODY_LEN: usize = 40;

/// Frame flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameFlags(pub u32);

impl FrameFlags {
    /// Force unit access: the peer writes the data durably before acknowledging.
    pub const FUA: FrameFlags = FrameFlags(1);
    /// A crc32c of the payload follows the payload.
    pub const PAYLOAD_CRC: FrameFlags = FrameFlags(2);
    /// The barrier is part of a flush request.
    pub const FLUSH: FrameFlags = FrameFlags(4);
    const KNOWN: u32 = 7;

    /// True when every flag of `other` is set.
    pub fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub fn with(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }
}

#[derive(Encode, Decode)]
struct RawHeader {
    magic: u32,
    version: u16,
    kind: u16,
    flags: u32,
    length: u32,
    seq: u64,
    sector: u64,
    aux: u64,
}

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version of the connection (0 during the handshake).
    pub version: u16,
    /// Message kind.
    pub kind: Kind,
    /// Flags.
    pub flags: FrameFlags,
    /// Payload length in bytes (excluding the payload checksum).
    pub length: u32,
    /// Request id.
    pub seq: u64,
    /// Start sector (512 bytes).
    pub sector: u64,
    /// Kind-specific value (epoch, length, errno).
    pub aux: u64,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

impl FrameHeader {
    /// A header of `kind` with everything else zero.
    pub fn new(kind: Kind) -> FrameHeader {
        FrameHeader {
            version: 0,
            kind,
            flags: FrameFlags::default(),
            length: 0,
            seq: 0,
            sector: 0,
            aux: 0,
        }
    }

    /// Encodes the header with its checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let raw = RawHeader {
            magic: MAGIC,
            version: self.version,
            kind: self.kind as u16,
            flags: self.flags.0,
            length: self.length,
            seq: self.seq,
            sector: self.sector,
            aux: self.aux,
        };
        let mut out = [0u8; HEADER_LEN];
        // A fixed-size struct always encodes to exactly BODY_LEN bytes.
        let _ = bincode::encode_into_slice(raw, &mut out[..BODY_LEN], config());
        let crc = crc32c::crc32c(&out[..BODY_LEN]);
        out[BODY_LEN..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a header: magic, checksum, kind, flags and the kind's length limit.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader, WireError> {
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        let stored = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]);
        let computed = crc32c::crc32c(&bytes[..BODY_LEN]);
        if stored != computed {
            return Err(WireError::HeaderChecksum { stored, computed });
        }
        let (raw, _): (RawHeader, usize) = bincode::decode_from_slice(&bytes[..BODY_LEN], config())
            .map_err(|e| WireError::Violation(format!("undecodable header: {e}")))?;
        let kind = Kind::from_code(raw.kind).ok_or(WireError::UnknownKind(raw.kind))?;
        if raw.flags & !FrameFlags::KNOWN != 0 {
            return Err(WireError::Violation(format!(
                "unknown flags {:#x} on {kind} frame",
                raw.flags
            )));
        }
        let limit = kind.payload_limit();
        if raw.length > limit {
            return Err(WireError::Oversized {
                kind,
                length: raw.length,
                limit,
            });
        }
        Ok(FrameHeader {
            version: raw.version,
            kind,
            flags: FrameFlags(raw.flags),
            length: raw.length,
            seq: raw.seq,
            sector: raw.sector,
            aux: raw.aux,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_every_single_bit_flip() {
        let h = FrameHeader {
            version: 1,
            kind: Kind::Data,
            flags: FrameFlags::FUA.with(FrameFlags::PAYLOAD_CRC),
            length: 4096,
            seq: 77,
            sector: 1 << 40,
            aux: 9,
        };
        let b = h.encode();
        assert_eq!(FrameHeader::decode(&b).unwrap(), h);
        for bit in 0..HEADER_LEN * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(FrameHeader::decode(&c).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let mut h = FrameHeader::new(Kind::Ping);
        h.length = 1;
        assert!(matches!(
            FrameHeader::decode(&h.encode()),
            Err(WireError::Oversized { .. })
        ));
        let mut b = FrameHeader::new(Kind::Ping).encode();
        b[6] = 0xee;
        let crc = crc32c::crc32c(&b[..40]);
        b[40..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(FrameHeader::decode(&b), Err(WireError::UnknownKind(_))));
    }
}
