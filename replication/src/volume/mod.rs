//! The interface front ends serve: a block volume with asynchronous reads, writes, flushes, discards
//! and zeroing.
//!
//! The ublk target and the NBD server are generic over [`BlockVolume`]; the replication engine
//! implements it for a replicated volume, and [`MemVolume`] implements it in memory so front ends can
//! be tested on their own. Buffers are owned ([`Bytes`]) so a write can be handed to the local disk
//! and to every peer without copying.
//!
//! Semantics every implementation keeps:
//! - a write that returned `Ok` is acknowledged: with `fua` it is durable (locally and on every
//!   synchronous peer) when it returns; without, it is durable after the next successful `flush`;
//! - `flush` returns only when every write acknowledged before it was called is durable;
//! - reads see every acknowledged write (read-your-writes);
//! - ranges are byte offsets and lengths that must lie inside the volume and be multiples of 512.

mod mem;

use std::future::Future;

use bytes::Bytes;
use thiserror::Error;

pub use mem::MemVolume;

/// Flags of a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteFlags {
    /// Force unit access: durable before the write completes.
    pub fua: bool,
}

/// Why an I/O request failed. Each maps to the errno a block device reports.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// The range is outside the volume or not 512-byte aligned.
    #[error(
        "range {offset}+{len} is invalid for a {size}-byte volume (must be inside it and 512-byte aligned)"
    )]
    InvalidRange {
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// Size of the volume.
        size: u64,
    },
    /// The node is not Primary, so the volume is read-only (writes) or not accessible.
    #[error("resource {resource} is not Primary on this node: promote it first")]
    NotPrimary {
        /// The resource.
        resource: String,
    },
    /// The node lost quorum and `on-no-quorum` is `io-error`.
    #[error("resource {resource} has no quorum: I/O is refused (on-no-quorum io-error)")]
    NoQuorum {
        /// The resource.
        resource: String,
    },
    /// No UpToDate copy of the data is reachable (local disk gone, no UpToDate peer).
    #[error("resource {resource} has no accessible UpToDate data")]
    NoData {
        /// The resource.
        resource: String,
    },
    /// Every path failed with an I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The volume is going down.
    #[error("the volume is shutting down")]
    ShuttingDown,
}

impl VolumeError {
    /// The errno a block device reports for this error (positive value).
    pub fn errno(&self) -> i32 {
        const EIO: i32 = 5;
        const EINVAL: i32 = 22;
        const EROFS: i32 = 30;
        const ENODEV: i32 = 19;
        match self {
            VolumeError::InvalidRange { .. } => EINVAL,
            VolumeError::NotPrimary { .. } => EROFS,
            VolumeError::NoQuorum { .. } | VolumeError::NoData { .. } => EIO,
            VolumeError::Io(e) => e.raw_os_error().unwrap_or(EIO),
            VolumeError::ShuttingDown => ENODEV,
        }
    }
}

/// Result of a volume request.
pub type VolumeResult<T> = Result<T, VolumeError>;

/// A block volume served by a front end.
pub trait BlockVolume: Send + Sync + 'static {
    /// Size in bytes (a multiple of 512).
    fn size(&self) -> u64;

    /// Reads `len` bytes at `offset`.
    fn read(&self, offset: u64, len: u32) -> impl Future<Output = VolumeResult<Bytes>> + Send;

    /// Writes `data` at `offset`.
    fn write(
        &self,
        offset: u64,
        data: Bytes,
        flags: WriteFlags,
    ) -> impl Future<Output = VolumeResult<()>> + Send;

    /// Makes every write acknowledged before this call durable.
    fn flush(&self) -> impl Future<Output = VolumeResult<()>> + Send;

    /// Discards (trims) `len` bytes at `offset`: their content becomes unspecified (zeroes for
    /// implementations that can guarantee it).
    fn discard(&self, offset: u64, len: u64) -> impl Future<Output = VolumeResult<()>> + Send;

    /// Writes zeroes over `len` bytes at `offset`.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        flags: WriteFlags,
    ) -> impl Future<Output = VolumeResult<()>> + Send;
}

/// Checks that `offset..offset+len` lies inside a volume of `size` bytes and is 512-byte aligned.
pub fn check_range(offset: u64, len: u64, size: u64) -> VolumeResult<()> {
    let inside = offset.checked_add(len).is_some_and(|end| end <= size);
    if !inside || !offset.is_multiple_of(512) || !len.is_multiple_of(512) {
        return Err(VolumeError::InvalidRange { offset, len, size });
    }
    Ok(())
}
