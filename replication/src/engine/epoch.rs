//! Write ordering: epochs and barriers.
//!
//! Every write belongs to the current epoch. The epoch closes when one of its writes completes to the
//! application — so a write issued *after* another completed always lands in a later epoch
//! (dependent-write ordering) — when it reaches `max-epoch-size` writes, or for a flush. Closing
//! sends a barrier to every live peer; a peer applies all writes of an epoch, flushes its disk and
//! acknowledges the barrier before it applies any write of the next epoch.
//!
//! The tracker's lock is also what makes a write's data frames and the barriers appear on every
//! peer's stream in epoch order: a write is dispatched, and an epoch closed, while holding it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The epoch counters.
#[derive(Debug)]
pub struct Epochs {
    current: u64,
    writes: u32,
    max_writes: u32,
}

/// What closing an epoch yields: the epoch to put in the barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed(pub u64);

impl Epochs {
    /// Epoch 1 opens first; `max_writes` forces a barrier after that many writes.
    pub fn new(max_writes: u32) -> Mutex<Epochs> {
        Mutex::new(Epochs {
            current: 1,
            writes: 0,
            max_writes: max_writes.max(1),
        })
    }

    /// The epoch a new write joins.
    pub fn join(&mut self) -> u64 {
        self.writes += 1;
        self.current
    }

    /// True when the current epoch is full and must close after the write just joined.
    pub fn is_full(&self) -> bool {
        self.writes >= self.max_writes
    }

    /// Closes the current epoch if it has writes.
    pub fn close(&mut self) -> Option<Closed> {
        if self.writes == 0 {
            return None;
        }
        let closed = self.current;
        self.current += 1;
        self.writes = 0;
        Some(Closed(closed))
    }

    /// A write of `epoch` completed: its epoch closes if it is still the current one.
    pub fn completed(&mut self, epoch: u64) -> Option<Closed> {
        if epoch == self.current { self.close() } else { None }
    }

    /// The newest epoch whose barrier has been sent (0 when none).
    pub fn last_closed(&self) -> u64 {
        self.current - 1
    }
}

/// Locks the tracker.
pub fn lock(m: &Mutex<Epochs>) -> MutexGuard<'_, Epochs> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_after_a_completion_is_in_a_later_epoch() {
        let e = Epochs::new(2048);
        let mut e = lock(&e);
        let a = e.join();
        let b = e.join();
        assert_eq!(a, b, "concurrent writes share an epoch");
        assert_eq!(e.completed(a), Some(Closed(1)));
        assert_eq!(e.completed(b), None, "the epoch is already closed");
        let c = e.join();
        assert!(c > a);
        assert_eq!(e.last_closed(), 1);
        assert_eq!(e.close(), Some(Closed(2)));
        assert_eq!(e.close(), None, "an empty epoch is never closed");
    }

    #[test]
    fn epochs_are_bounded() {
        let e = Epochs::new(3);
        let mut e = lock(&e);
        e.join();
        e.join();
        assert!(!e.is_full());
        e.join();
        assert!(e.is_full());
    }
}
