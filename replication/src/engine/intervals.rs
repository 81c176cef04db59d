//! Byte-range locks on the node that originates writes.
//!
//! Two rules need them:
//! - **Overlapping application writes are serialized.** Two concurrent writes to the same block may
//!   reach the local disk and a peer's disk in different orders, and the replicas would differ. A
//!   write waits for every earlier overlapping write to complete (on every path), so it lands in a
//!   later epoch and every peer applies the two in the same order (DRBD does the same).
//! - **A resync read sees no write half done.** The source reads a range only when no write to it is
//!   in flight, and holds new writes to it back until the data it read is queued to the target; a
//!   write is therefore either in the data read, or queued to the target after it — and the target
//!   applies overlapping requests in arrival order. A waiting resync read already blocks new writes,
//!   so resync always makes progress under load.
//!
//! Locks are granted in request order among conflicting requests (a ticket queue), so neither side
//! starves.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug)]
struct Entry {
    ticket: u64,
    range: Range<u64>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    entries: Vec<Entry>,
}

/// The range locks of one resource.
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
        {
            let mut st = self.owner.lock();
            st.entries.retain(|e| e.ticket != self.ticket);
        }
        self.owner.changed.notify_waiters();
    }
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
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
        let free = !st.entries.iter().any(|e| overlaps(&e.range, &range));
        st.entries.push(Entry {
            ticket,
            range: range.clone(),
        });
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
            // Granted when no earlier (lower ticket) entry overlaps: first come, first served.
            let blocked = owner
                .lock()
                .entries
                .iter()
                .any(|e| e.ticket < ticket && overlaps(&e.range, &self.range));
            if !blocked {
                return self.guard;
            }
            changed.await;
        }
    }
}

impl Intervals {
    /// Number of locks held or waited for (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
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
        assert_eq!(iv.len(), 1, "only the disjoint write remains");
    }
}
