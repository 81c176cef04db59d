//! Which of a Primary's writes a node has applied: the basis for resyncing from a Secondary while
//! a Primary writes.
//!
//! A Primary numbers its writes (`seq`) in the order it queues them, the same number on every
//! connection, and each connection delivers them in that order. A SyncTarget asking a Secondary for
//! a range says "I have received the Primary's writes up to `seq` D"; the Secondary reads the range
//! only once it has applied every write of that Primary up to D. Its data is then at least as new as
//! anything the target holds, and the target holds later writes to the range back until the resync
//! data is written (see `resync::order`), so resync data never overwrites newer data.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Highest write seq received.
    received: u64,
    /// Received and not yet applied.
    pending: BTreeSet<u64>,
}

/// The writes received from one peer, and which are applied.
#[derive(Debug, Default)]
pub(crate) struct AppliedWrites {
    state: Mutex<State>,
    changed: Notify,
}

impl AppliedWrites {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write `seq` arrived.
    pub(crate) fn received(&self, seq: u64) {
        let mut st = self.lock();
        st.received = st.received.max(seq);
        st.pending.insert(seq);
    }

    /// Write `seq` is on the disk (or failed: it will not become any more applied).
    pub(crate) fn applied(&self, seq: u64) {
        self.lock().pending.remove(&seq);
        self.changed.notify_waiters();
    }

    /// Highest write seq received so far.
    pub(crate) fn received_through(&self) -> u64 {
        self.lock().received
    }

    fn through(&self, seq: u64) -> bool {
        let st = self.lock();
        st.received >= seq && st.pending.first().is_none_or(|&p| p > seq)
    }

    /// Waits until every write up to `seq` has been received and applied.
    pub(crate) async fn wait_through(&self, seq: u64) {
        loop {
            let changed = self.changed.notified();
            if self.through(seq) {
                return;
            }
            changed.await;
        }
    }

    /// Wakes waiters (a write arrived: `received` moved).
    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_receipt_and_application_of_every_earlier_write() {
        let w = Arc::new(AppliedWrites::default());
        w.received(3);
        w.received(5);
        assert_eq!(w.received_through(), 5);
        let waiter = {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.wait_through(7).await })
        };
        w.applied(3);
        w.applied(5);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "7 not received yet");
        // 8 arriving shows nothing numbered up to 7 is still coming; 8 itself need not be applied.
        w.received(8);
        w.notify();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("every write through 7 is applied")
            .unwrap();
        assert!(!w.through(8));
        w.applied(8);
        // Applying out of order: 10 done, 9 not.
        w.received(9);
        w.received(10);
        w.applied(10);
        assert!(!w.through(9));
        assert!(w.through(8));
    }
}
