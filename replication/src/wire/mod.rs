//! The wire protocol between peers (documented for operators and implementers in
//! `docs/wire-protocol.md`).
//!
//! Every message is a frame: a fixed 44-byte [`FrameHeader`] (bincode, fixed-width little-endian
//! integers, protected by its own crc32c), then `length` payload bytes, then — when the connection
//! negotiated data integrity — a crc32c of the payload. Decoding never trusts a length before the
//! header checksum matched and the length is within the limit of its kind, and never panics: a bad
//! frame is a [`WireError`] that closes that one connection.
//!
//! Versions: one documented line per protocol version change.
//! - **1** — initial protocol: hello/auth/state handshake, data with epochs and barriers, acks for
//!   protocols A/B/C, diskless reads, keepalive.

mod frame;
mod io;
mod kind;
pub mod messages;

pub use frame::{FrameFlags, FrameHeader, HEADER_LEN, MAGIC};
pub use io::{FrameReader, FrameWriter, OutFrame};
pub use kind::Kind;

use thiserror::Error;

/// Oldest protocol version this build speaks.
pub const MIN_VERSION: u16 = 1;
/// Newest protocol version this build speaks.
pub const MAX_VERSION: u16 = 1;
/// Largest data payload (a write or read of up to 32 MiB).
pub const MAX_DATA_PAYLOAD: u32 = 32 << 20;
/// Largest control payload (handshake and state messages).
pub const MAX_CONTROL_PAYLOAD: u32 = 1 << 20;

/// Why a frame was rejected. Each closes the connection it came from.
#[derive(Debug, Error)]
pub enum WireError {
    /// The connection ended (cleanly between frames, or in the middle of one).
    #[error("connection closed{}", if *.mid_frame { " in the middle of a frame" } else { "" })]
    Closed {
        /// True when bytes of a frame were already read.
        mid_frame: bool,
    },
    /// The first bytes are not a replbd frame.
    #[error("bad magic {found:#010x}: the peer does not speak the replbd protocol")]
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// The header checksum does not match: corruption on the wire.
    #[error("header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum {
        /// Stored crc32c.
        stored: u32,
        /// Computed crc32c.
        computed: u32,
    },
    /// A message kind this version does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// A payload longer than its kind allows.
    #[error("{kind} frame of {length} bytes exceeds the limit of {limit}")]
    Oversized {
        /// The kind.
        kind: Kind,
        /// Its length.
        length: u32,
        /// The limit.
        limit: u32,
    },
    /// The payload checksum does not match (data integrity).
    #[error(
        "payload checksum mismatch on {kind} frame seq {seq} (stored {stored:#010x}, computed {computed:#010x}): data changed on the wire"
    )]
    PayloadChecksum {
        /// The kind.
        kind: Kind,
        /// Its sequence number.
        seq: u64,
        /// Stored crc32c.
        stored: u32,
        /// Computed crc32c.
        computed: u32,
    },
    /// A control payload that does not decode.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// The kind.
        kind: Kind,
        /// The decoder's reason.
        reason: String,
    },
    /// A frame that is valid on its own but not allowed here.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}
