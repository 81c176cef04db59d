//! Write ordering: epochs and barriers.
//!
//! Every write belongs to the current epoch. The epoch closes when one of its writes completes to the
//! application — so a write issued *after* another completed always lands in a later epoch
//! (dependent-write ordering) — when it reaches `max-epoch-size` writes, or for a flush. Closing
//! sends a barrier to every live peer; a peer applies all writes of an epoch, flushes its disk and
//! acknowledges the barrier before it applies any write of the next epoch.
//!
//! The barrier of an epoch closed by a completion is sent lazily, as DRBD's sender does: it goes out
//! right ahead of the next write's data (one socket write, one read on the peer, one acknowledgement
//! batch back, instead of a separate round trip per write at queue depth 1), ahead of a flush's
//! barrier, or — when no write follows — from the barrier timer within [`LAZY_BARRIER_DELAY`]. The
//! peer sees the same stream either way: the barrier still precedes every write of the next epoch.
//! Nothing waits for an unsent barrier: a write completes on its acknowledgement, a flush sends
//! the barrier itself, and the acknowledgement timeout runs far longer than the timer.
//!
//! The tracker's lock is also what makes a write's data frames and the barriers appear on every
//! peer's stream in epoch order: a write is dispatched, and an epoch closed, while holding it.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Longest an idle Primary keeps a closed epoch's barrier before the timer sends it.
pub const LAZY_BARRIER_DELAY: Duration = Duration::from_millis(5);

/// The epoch counters.
#[derive(Debug)]
pub struct Epochs {
    current: u64,
    writes: u32,
    max_writes: u32,
    /// The epoch before `current`, closed by a completion, whose barrier is not sent yet. Only set
    /// while `current` has no writes: the next write sends it first.
    unsent: Option<Closed>,
    /// The barrier timer is running (it stops once it finds nothing unsent).
    timer_armed: bool,
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
            unsent: None,
            timer_armed: false,
        })
    }

    /// The epoch a new write joins, and the barrier to send ahead of its data, if one is unsent.
    pub fn join(&mut self) -> (u64, Option<Closed>) {
        self.writes += 1;
        (self.current, self.unsent.take())
    }

    /// True when the current epoch is full and must close after the write just joined.
    pub fn is_full(&self) -> bool {
        self.writes >= self.max_writes
    }

    /// Closes the current epoch if it has writes; its barrier is to be sent now.
    pub fn close(&mut self) -> Option<Closed> {
        if self.writes == 0 {
            return None;
        }
        let closed = self.current;
        self.current += 1;
        self.writes = 0;
        Some(Closed(closed))
    }

    /// Closes everything for a flush: the barriers to send now, oldest first.
    pub fn close_all(&mut self) -> impl Iterator<Item = Closed> + use<> {
        let unsent = self.unsent.take();
        let current = self.close();
        unsent.into_iter().chain(current)
    }

    /// A write of `epoch` completed: its epoch closes if it is still the current one, and its
    /// barrier waits for the next write. True when the barrier timer must be woken.
    pub fn completed(&mut self, epoch: u64) -> bool {
        if epoch != self.current {
            return false;
        }
        // `current` has writes, so the next write took any earlier unsent barrier already.
        let Some(c) = self.close() else { return false };
        self.unsent = Some(c);
        !std::mem::replace(&mut self.timer_armed, true)
    }

    /// For the barrier timer: the unsent barrier, if any; `None` also stops the timer (it is woken
    /// again by the next completion).
    pub fn timer_fired(&mut self) -> Option<Closed> {
        let unsent = self.unsent.take();
        self.timer_armed = unsent.is_some();
        unsent
    }

    /// The newest epoch whose barrier has been sent (0 when none).
    pub fn last_closed(&self) -> u64 {
        self.current - 1 - u64::from(self.unsent.is_some())
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
        let (a, _) = e.join();
        let (b, _) = e.join();
        assert_eq!(a, b, "concurrent writes share an epoch");
        assert!(e.completed(a), "the first unsent barrier wakes the timer");
        assert!(!e.completed(b), "the epoch is already closed");
        assert_eq!(e.last_closed(), 0, "closed, but its barrier is not sent yet");
        let (c, first) = e.join();
        assert!(c > a);
        assert_eq!(
            first,
            Some(Closed(1)),
            "the barrier goes out ahead of the next write"
        );
        assert_eq!(e.last_closed(), 1);
        assert_eq!(e.close(), Some(Closed(2)));
        assert_eq!(e.close(), None, "an empty epoch is never closed");
    }

    #[test]
    fn a_flush_sends_the_unsent_barrier_then_closes_the_current_epoch() {
        let e = Epochs::new(2048);
        let mut e = lock(&e);
        let (a, _) = e.join();
        e.completed(a);
        assert_eq!(e.close_all().collect::<Vec<_>>(), vec![Closed(1)]);
        assert_eq!(e.last_closed(), 1);
        let (b, first) = e.join();
        assert_eq!((b, first), (2, None));
        let (c, _) = e.join();
        e.completed(c);
        let (_, first) = e.join();
        assert_eq!(first, Some(Closed(2)));
        assert_eq!(e.close_all().collect::<Vec<_>>(), vec![Closed(3)]);
        assert_eq!(e.close_all().count(), 0, "nothing to close");
    }

    #[test]
    fn the_timer_sends_what_no_write_took_and_stops_when_idle() {
        let e = Epochs::new(2048);
        let mut e = lock(&e);
        let (a, _) = e.join();
        assert!(e.completed(a));
        assert_eq!(e.timer_fired(), Some(Closed(1)));
        assert_eq!(e.last_closed(), 1);
        let (b, first) = e.join();
        assert_eq!(first, None, "the timer sent it");
        assert!(!e.completed(b), "the timer is still running");
        let (c, first) = e.join();
        assert_eq!(first, Some(Closed(2)));
        e.completed(c);
        assert_eq!(e.timer_fired(), Some(Closed(3)));
        assert_eq!(e.timer_fired(), None, "nothing unsent: the timer stops");
        let (d, _) = e.join();
        assert!(e.completed(d), "a stopped timer is woken again");
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
