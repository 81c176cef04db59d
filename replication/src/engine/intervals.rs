//! Byte-range locks, granted first come, first served among overlapping ranges.
//!
//! Two rules need them on the node that originates writes:
//! - **Overlapping application writes are serialized.** Two concurrent writes to the same block may
//!   reach the local disk and a peer's disk in different orders, and the replicas would differ. A
//!   write waits for every earlier overlapping write to complete (on every path), so it lands in a
//!   later epoch and every peer applies the two in the same order (DRBD does the same).
//! - **A resync read sees no write half done.** The source reads a range only when no write to it is
//!   in flight, and holds new writes to it back until the data it read is queued to the target; a
//!   write is therefore either in the data read, or queued to the target after it. A waiting resync
//!   read already blocks new writes, so resync always makes progress under load.
//!
//! On a receiving node the same structure applies requests from one connection in arrival order
//! wherever they overlap (resync data and application writes).
//!
//! Ranges are indexed by start offset; an overlap query scans only the window as wide as the longest
//! range currently held, so thousands of held 4 KiB ranges cost a handful of comparisons each.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// (start, ticket) → end.
    held: BTreeMap<(u64, u64), u64>,
    /// Range lengths held → how many, for the scan window.
    lengths: BTreeMap<u64, usize>,
    /// ticket → start, to find an entry again.
    starts: BTreeMap<u64, u64>,
}

impl State {
    /// True when a range overlapping `range` is held with a ticket below `before`.
    fn blocked(&self, range: &Range<u64>, before: u64) -> bool {
        let longest = self.lengths.keys().next_back().copied().unwrap_or(0);
        let from = range.start.saturating_sub(longest);
        self.held
            .range((from, 0)..(range.end, 0))
            .any(|(&(start, ticket), &end)| ticket < before && start < range.end && range.start < end)
    }

    fn insert(&mut self, ticket: u64, range: &Range<u64>) {
        self.held.insert((range.start, ticket), range.end);
        *self.lengths.entry(range.end - range.start).or_insert(0) += 1;
        self.starts.insert(ticket, range.start);
    }

    fn remove(&mut self, ticket: u64) {
        let Some(start) = self.starts.remove(&ticket) else {
            return;
        };
        if let Some(end) = self.held.remove(&(start, ticket)) {
            let len = end - start;
            if let Some(n) = self.lengths.get_mut(&len) {
                *n -= 1;
                if *n == 0 {
                    self.lengths.remove(&len);
                }
            }
        }
    }
}

/// A set of range locks.
#[derive(Debug, Default)]
pub(crate) struct Intervals {
    state: Mutex<State>,
    changed: Notify,
}

/// A held lock; dropping it releases the range.
#[derive(Debug)]
pub(crate) struct RangeGuard {
    owner: Arc<Intervals>,
    ticket: u64,
}

impl Drop for RangeGuard {
    fn drop(&mut self) {
        self.owner.lock().remove(self.ticket);
        self.owner.changed.notify_waiters();
    }
}

impl Intervals {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks `range` for an application write.
    pub(crate) async fn write(self: &Arc<Self>, range: Range<u64>) -> RangeGuard {
        self.register(range).granted().await
    }

    /// Locks `range` for a resync read.
    pub(crate) async fn resync_read(self: &Arc<Self>, range: Range<u64>) -> RangeGuard {
        self.register(range).granted().await
    }

    /// Takes a place in line for `range` now (synchronously, so callers can register in arrival
    /// order); the lock is held once [`Pending::granted`] returns.
    pub(crate) fn register(self: &Arc<Self>, range: Range<u64>) -> Pending {
        let mut st = self.lock();
        let ticket = st.next;
        st.next += 1;
        let free = !st.blocked(&range, ticket);
        st.insert(ticket, &range);
        Pending {
            guard: RangeGuard {
                owner: Arc::clone(self),
                ticket,
            },
            range,
            free,
        }
    }
}

/// A place in line for a range (see [`Intervals::register`]).
#[derive(Debug)]
pub(crate) struct Pending {
    guard: RangeGuard,
    range: Range<u64>,
    free: bool,
}

impl Pending {
    /// Waits until every earlier overlapping lock is released.
    pub(crate) async fn granted(self) -> RangeGuard {
        if self.free {
            return self.guard;
        }
        let owner = Arc::clone(&self.guard.owner);
        let ticket = self.guard.ticket;
        loop {
            let changed = owner.changed.notified();
            if !owner.lock().blocked(&self.range, ticket) {
                return self.guard;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn overlapping_requests_are_granted_in_order_and_disjoint_ones_at_once() {
        let iv = Arc::new(Intervals::default());
        let w1 = iv.write(0..4096).await;
        let _other = tokio::time::timeout(Duration::from_millis(100), iv.write(8192..12288))
            .await
            .expect("disjoint");
        let iv2 = Arc::clone(&iv);
        let read = tokio::spawn(async move { iv2.resync_read(0..8192).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!read.is_finished(), "the resync read waits for the write");
        // A later write to the same range queues behind the waiting read: resync cannot starve.
        let iv3 = Arc::clone(&iv);
        let w2 = tokio::spawn(async move { iv3.write(4096..8192).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !w2.is_finished(),
            "a new write waits behind the waiting resync read"
        );
        drop(w1);
        let r = tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!w2.is_finished(), "still held by the read");
        drop(r);
        let w2 = tokio::time::timeout(Duration::from_secs(1), w2)
            .await
            .unwrap()
            .unwrap();
        drop(w2);
        assert_eq!(iv.lock().held.len(), 1, "only the disjoint write remains");
    }

    #[test]
    fn long_ranges_widen_the_scan_window() {
        let iv = Arc::new(Intervals::default());
        let big = iv.register(0..(1 << 20));
        assert!(big.free);
        let small = iv.register((1 << 20) - 4096..(1 << 20));
        assert!(!small.free, "found although it starts long before");
        let far = iv.register(2 << 20..(2 << 20) + 4096);
        assert!(far.free);
    }
}
