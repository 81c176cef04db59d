//! Page-aligned buffers for `O_DIRECT` I/O.
//!
//! `O_DIRECT` requires the buffer address, offset and length to be aligned to the device's logical
//! block size. Buffers from front ends and the network are ordinary allocations, so a write whose
//! [`Bytes`] is not aligned is copied once into an [`AlignedBuf`]; reads always land in one and are
//! handed out as [`Bytes`] without another copy ([`Bytes::from_owner`]).

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

use bytes::Bytes;

/// Alignment of every buffer: a page, which satisfies any logical block size up to 4 KiB.
pub const ALIGN: usize = 4096;

/// A zero-initialised heap buffer aligned to [`ALIGN`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer is uniquely owned heap memory, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (capacity rounded up to [`ALIGN`]).
    pub fn zeroed(len: usize) -> AlignedBuf {
        let cap = len.max(1).div_ceil(ALIGN) * ALIGN;
        let layout = match Layout::from_size_align(cap, ALIGN) {
            Ok(l) => l,
            Err(_) => std::process::abort(),
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len, layout }
    }

    /// An aligned copy of `data`.
    pub fn copy_from(data: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to at least `len` initialised (zeroed or written) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Start address, for the kernel.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Shortens the buffer to `len` bytes (after a short read at the end of a file).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Turns the buffer into [`Bytes`] without copying.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// True when `data` can be handed to an `O_DIRECT` write as it is.
pub fn is_aligned(data: &[u8], block: usize) -> bool {
    (data.as_ptr() as usize).is_multiple_of(block) && data.len().is_multiple_of(block)
}

/// An allocation that never reaches here is aborted above; this helper exists for callers that
/// need an aligned zero buffer of `len` bytes as [`Bytes`].
pub fn zero_bytes(len: usize) -> Bytes {
    AlignedBuf::zeroed(len).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_convert_without_copying() {
        let mut b = AlignedBuf::zeroed(10_000);
        assert_eq!(b.as_mut_ptr() as usize % ALIGN, 0);
        b.as_mut_slice()[9_999] = 7;
        let ptr = b.as_slice().as_ptr();
        let bytes = b.into_bytes();
        assert_eq!(bytes.as_ptr(), ptr);
        assert_eq!(bytes.len(), 10_000);
        assert_eq!(bytes[9_999], 7);
        assert!(is_aligned(&bytes[..8192], 4096));
        assert!(!is_aligned(&bytes[1..4097], 4096));
    }
}
