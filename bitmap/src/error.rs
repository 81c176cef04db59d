//! Errors of the metadata layer. Every error that concerns the disk names the region (and its byte
//! offset) so an operator knows what is damaged; the `Display` text says what to do where there is
//! something to do.

use std::fmt;
use std::io;

use thiserror::Error;

use crate::units::{NodeId, PeerSlot};

/// A region of the metadata area, for error messages and `replbd-meta check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// One of the two superblock copies.
    Superblock {
        /// `'A'` or `'B'`.
        copy: char,
        /// Absolute byte offset.
        offset: u64,
    },
    /// One transaction block of the activity-log ring.
    ActivityLog {
        /// Position in the ring.
        ring_slot: u32,
        /// Absolute byte offset.
        offset: u64,
    },
    /// One 4 KiB block of a peer slot's on-disk bitmap.
    Bitmap {
        /// The peer slot.
        slot: PeerSlot,
        /// Block index within the slot's bitmap.
        block: u32,
        /// Absolute byte offset.
        offset: u64,
    },
    /// The metadata area as a whole.
    Area {
        /// Absolute byte offset of its start.
        offset: u64,
    },
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Superblock { copy, offset } => write!(f, "superblock copy {copy} (offset {offset})"),
            Region::ActivityLog { ring_slot, offset } => {
                write!(f, "activity-log transaction slot {ring_slot} (offset {offset})")
            }
            Region::Bitmap { slot, block, offset } => {
                write!(f, "bitmap of peer slot {slot}, block {block} (offset {offset})")
            }
            Region::Area { offset } => write!(f, "metadata area (offset {offset})"),
        }
    }
}

/// What is wrong with one metadata block.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BlockDefect {
    /// The block does not start with this block type's magic (never written, overwritten, or not
    /// replbd metadata at all).
    #[error("wrong magic {found:#x}")]
    BadMagic {
        /// The value found.
        found: u64,
    },
    /// The checksum does not match the content: a torn write or corruption.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        /// Stored crc32c.
        stored: u32,
        /// Computed crc32c.
        computed: u32,
    },
    /// The block is intact but belongs to other metadata (a different `meta_uuid`).
    #[error("block belongs to other metadata (meta uuid {found:#018x}, expected {expected:#018x})")]
    Foreign {
        /// uuid in the block.
        found: u64,
        /// uuid of this metadata.
        expected: u64,
    },
    /// The block is intact but was written for another position (a misdirected write).
    #[error("block was written for {what} {found}, found at {expected}")]
    Misplaced {
        /// Which field disagrees.
        what: &'static str,
        /// Value in the block.
        found: u64,
        /// Value expected at this position.
        expected: u64,
    },
    /// The block is intact but a field holds an impossible value.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The block is intact but older than the other superblock copy: an update was interrupted by a
    /// crash after the first copy was written. Normal after a crash; rewritten at the next open.
    #[error("holds update {found} while the other copy holds update {newest} (an update was interrupted)")]
    Stale {
        /// Sequence number of this copy.
        found: u64,
        /// Sequence number of the newer copy.
        newest: u64,
    },
    /// The block was written by a newer (or unknown) metadata format.
    #[error("format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
}

/// Parameters that cannot describe a metadata area.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GeometryError {
    /// `max_peers` outside 1..=32.
    #[error("max-peers {0} is out of range: use 1 to 32")]
    MaxPeers(usize),
    /// Node id outside 0..=63.
    #[error("node id {0} is out of range: use 0 to 63")]
    NodeId(u32),
    /// Bitmap granularity not a power of two in 4 KiB..=1 MiB.
    #[error("bitmap block size {0} is invalid: use a power of two from 4KiB to 1MiB")]
    Granularity(u64),
    /// `al_extents` outside the supported range.
    #[error("al-extents {0} is out of range: use 67 to 65534")]
    AlExtents(u32),
    /// The data size is zero or not a multiple of 4 KiB.
    #[error("data size {0} is invalid: it must be a non-zero multiple of 4KiB")]
    DataSize(u64),
    /// A device too small to hold internal metadata and any data.
    #[error(
        "{device_size} bytes are too small for internal metadata with these settings (needs more than {meta_size} bytes)"
    )]
    DeviceTooSmall {
        /// Size of the device.
        device_size: u64,
        /// Size the metadata alone needs.
        meta_size: u64,
    },
}

/// Errors of the metadata layer.
#[derive(Debug, Error)]
pub enum MetaError {
    /// An I/O call on the metadata device failed.
    #[error("{op} of {region} on {device} failed: {source}")]
    Io {
        /// `read`, `write` or `flush`.
        op: &'static str,
        /// Which region.
        region: Region,
        /// The device's description (path).
        device: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The device has no replbd metadata where it should be.
    #[error(
        "no replbd metadata found on {device} ({region}: {defect}); create it with `replbd-meta create`, or check that this is the right file and that it was not resized"
    )]
    NoMetadata {
        /// The device.
        device: String,
        /// Where the superblock was expected.
        region: Region,
        /// What was found there.
        defect: BlockDefect,
    },
    /// Both superblock copies are damaged.
    #[error(
        "both superblock copies on {device} are damaged: copy A: {a}; copy B: {b}. The metadata cannot be trusted: recreate it with `replbd-meta create` and let the data resync fully from a peer"
    )]
    SuperblocksDamaged {
        /// The device.
        device: String,
        /// What is wrong with copy A.
        a: BlockDefect,
        /// What is wrong with copy B.
        b: BlockDefect,
    },
    /// A damaged block that cannot be repaired safely.
    #[error("{region} on {device} is damaged: {defect}. {advice}")]
    Damaged {
        /// The device.
        device: String,
        /// Which block.
        region: Region,
        /// What is wrong.
        defect: BlockDefect,
        /// What to do about it.
        advice: &'static str,
    },
    /// The superblock describes a metadata area that does not fit the device.
    #[error("the superblock on {device} describes {meta_size} bytes of metadata, but {reason}")]
    SizeMismatch {
        /// The device.
        device: String,
        /// Metadata size in the superblock.
        meta_size: u64,
        /// What does not fit.
        reason: String,
    },
    /// Invalid creation parameters.
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    /// A byte range outside the data area.
    #[error("range {offset}+{len} is outside the {data_size}-byte data area")]
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the data area.
        data_size: u64,
    },
    /// A write range spanning more activity-log extents than one transaction can activate.
    #[error(
        "a write spanning {extents} activity-log extents is too large: split it (at most {max} extents of 4MiB)"
    )]
    TooManyExtents {
        /// Extents spanned.
        extents: u64,
        /// Most allowed.
        max: u64,
    },
    /// No such peer slot.
    #[error("peer slot {slot} does not exist (this metadata has {max_peers} slots)")]
    NoSuchSlot {
        /// The slot asked for.
        slot: PeerSlot,
        /// How many there are.
        max_peers: usize,
    },
    /// Every peer slot is assigned to another node.
    #[error(
        "no free peer slot for node {node}: all {max_peers} slots are assigned; recreate the metadata with a larger --max-peers"
    )]
    SlotsExhausted {
        /// The node that needs a slot.
        node: NodeId,
        /// How many slots there are.
        max_peers: usize,
    },
    /// A peer slot cannot be given to the local node.
    #[error("node {0} is this node itself and gets no peer slot")]
    SlotForSelf(NodeId),
    /// An earlier metadata I/O error left the handle unusable.
    #[error("the metadata on {device} failed earlier ({cause}); detach the disk and reattach it to recover")]
    Failed {
        /// The device.
        device: String,
        /// The first error.
        cause: String,
    },
    /// A resource name the superblock cannot record.
    #[error("a resource name of {len} bytes cannot be recorded in the metadata (1 to {max})")]
    ResourceName {
        /// Its length in bytes.
        len: usize,
        /// The longest name recorded.
        max: usize,
    },
    /// Orderly close while writes are still in flight.
    #[error("cannot close the metadata: {in_flight} writes are still in flight")]
    Busy {
        /// Writes still holding activity-log references.
        in_flight: u64,
    },
}

/// Damaged blocks found while reading, each with its region.
pub type Defects = Vec<(Region, BlockDefect)>;

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, MetaError>;
