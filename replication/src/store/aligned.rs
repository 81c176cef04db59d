//! Page-aligned buffers for `O_DIRECT` I/O.
//!
//! `O_DIRECT` requires the buffer address, offset and length to be aligned to the device's logical
//! block size. Buffers from front ends and the network are ordinary allocations, so a write whose
//! [`Bytes`] is not aligned is copied once into an [`AlignedBuf`]; reads always land in one and are
//! handed out as [`Bytes`] without another copy ([`Bytes::from_owner`]).
//!
//! Freed buffers go back to a pool of power-of-two size classes (4 KiB to 32 MiB, a bounded number
//! per class) instead of to the allocator: large allocations would otherwise be mapped, faulted in
//! and zeroed by the kernel on every request.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

use bytes::Bytes;

/// Alignment of every buffer: a page, which satisfies any logical block size up to 4 KiB.
pub const ALIGN: usize = 4096;

/// A heap buffer aligned to [`ALIGN`].
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

const MIN_CLASS: u32 = 12; // 4 KiB
const MAX_CLASS: u32 = 25; // 32 MiB
const CLASSES: usize = (MAX_CLASS - MIN_CLASS + 1) as usize;
/// Bytes each size class may keep.
const CLASS_BYTES: usize = 64 << 20;

struct Free(NonNull<u8>);
// SAFETY: a pooled buffer is unowned memory waiting for its next owner.
unsafe impl Send for Free {}

static POOL: [std::sync::Mutex<Vec<Free>>; CLASSES] = [const { std::sync::Mutex::new(Vec::new()) }; CLASSES];

fn class_of(cap: usize) -> Option<usize> {
    let shift = cap.trailing_zeros();
    (cap.is_power_of_two() && (MIN_CLASS..=MAX_CLASS).contains(&shift)).then(|| (shift - MIN_CLASS) as usize)
}

fn pool(class: usize) -> std::sync::MutexGuard<'static, Vec<Free>> {
    POOL[class]
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// SAFETY: the buffer is uniquely owned heap memory, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let (mut b, recycled) = Self::take(len);
        if recycled {
            b.as_mut_slice().fill(0);
        }
        b
    }

    /// A buffer of `len` bytes with unspecified (initialised) content, for data that is about to be
    /// overwritten entirely.
    pub fn for_overwrite(len: usize) -> AlignedBuf {
        Self::take(len).0
    }

    /// A buffer from the pool (`true`) or freshly zero-allocated.
    fn take(len: usize) -> (AlignedBuf, bool) {
        let cap = len.max(1).div_ceil(ALIGN) * ALIGN;
        let cap = if cap <= 1 << MAX_CLASS {
            cap.next_power_of_two()
        } else {
            cap
        };
        let layout = match Layout::from_size_align(cap, ALIGN) {
            Ok(l) => l,
            Err(_) => std::process::abort(),
        };
        if let Some(class) = class_of(cap)
            && let Some(Free(ptr)) = pool(class).pop()
        {
            return (AlignedBuf { ptr, len, layout }, true);
        }
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        (AlignedBuf { ptr, len, layout }, false)
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
        if let Some(class) = class_of(self.layout.size()) {
            let mut free = pool(class);
            if free.len() * self.layout.size() < CLASS_BYTES {
                free.push(Free(self.ptr));
                return;
            }
        }
        // SAFETY: allocated in `take` with exactly this layout.
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
    fn recycled_buffers_come_back_zeroed_when_asked() {
        let mut a = AlignedBuf::zeroed(8192);
        a.as_mut_slice().fill(9);
        drop(a);
        let b = AlignedBuf::zeroed(8192);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        let c = AlignedBuf::for_overwrite(5000);
        assert_eq!(c.as_slice().len(), 5000);
    }

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
