//! Random 64-bit identifiers (metadata uuids, generation UUIDs) without a dependency: std's
//! `RandomState` is seeded from the operating system's randomness once per process and per call
//! sequence, and a counter keeps successive values distinct.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random, non-zero 64-bit value.
pub fn random_u64() -> u64 {
    loop {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish();
        if v != 0 {
            return v;
        }
    }
}

/// A random generation UUID: non-zero, with bit 0 (the "primary" marker) clear.
pub fn random_uuid() -> u64 {
    loop {
        let v = random_u64() & !1;
        if v > crate::superblock::UUID_JUST_CREATED {
            return v;
        }
    }
}
