//! Peer acknowledgements: telling every Secondary which peers hold each epoch's writes.
//!
//! A Secondary sees the Primary's writes but not whether its fellow Secondaries got them. It has to
//! know — should the Primary go away, it may become the sync source for them — and DRBD's answer is
//! the peer ack, which replbd sends per epoch:
//!
//! ```text
//!   Primary: epoch e's barrier acknowledged (durable) by every peer it was sent to, or the peer gone
//!        ──PeerAck(e, mask of peers that hold all of e)──▶ each Secondary that received writes of e
//!   Secondary: every write of e is marked out of sync for each diskful peer not in the mask, and
//!        such a peer, if connected, is told (OutOfSync) — it then resyncs those blocks from here
//! ```
//!
//! So Secondaries do not accumulate bits toward each other when all is well, and a peer the Primary
//! could not reach is tracked by everyone who has the data. A Secondary that loses the Primary with
//! epochs not yet peer-acked marks those writes for every peer: it cannot know who got them.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Node ids as a bit set.
pub(crate) type Mask = u64;

/// The bit of node `n`.
pub(crate) fn bit(n: u8) -> Mask {
    1u64.checked_shl(u32::from(n)).unwrap_or(0)
}

#[derive(Debug, Default, Clone, Copy)]
struct EpochAcks {
    /// Peers every write of the epoch was queued to.
    all: Mask,
    /// Peers at least one write was queued to (they get the peer ack).
    any: Mask,
    /// The barrier went out; peers that have not acknowledged it yet.
    waiting: Option<Mask>,
    /// Peers that acknowledged the barrier.
    durable: Mask,
}

/// A finished epoch: send `PeerAck(epoch, holders)` to `recipients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub epoch: u64,
    pub holders: Mask,
    pub recipients: Mask,
}

/// The Primary's side: which peers hold which epoch.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    epochs: Mutex<BTreeMap<u64, EpochAcks>>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, EpochAcks>> {
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write of `epoch` was queued to the peers in `reached`. A write no peer got needs no peer
    /// ack (no Secondary holds it to mark for others).
    pub(crate) fn write(&self, epoch: u64, reached: Mask) {
        if reached == 0 {
            return;
        }
        let mut m = self.lock();
        match m.get_mut(&epoch) {
            Some(e) => {
                e.all &= reached;
                e.any |= reached;
            }
            None => {
                m.insert(
                    epoch,
                    EpochAcks {
                        all: reached,
                        any: reached,
                        ..EpochAcks::default()
                    },
                );
            }
        }
    }

    /// The barrier of `epoch` went to the peers in `sent_to`.
    pub(crate) fn closed(&self, epoch: u64, sent_to: Mask) -> Vec<Ready> {
        let mut m = self.lock();
        if let Some(e) = m.get_mut(&epoch) {
            // A peer may have acknowledged before this runs: the barrier goes out first.
            e.waiting = Some(sent_to & e.any & !e.durable);
        }
        take_ready(&mut m)
    }

    /// `peer` acknowledged every barrier up to `epoch`.
    pub(crate) fn acked(&self, peer: u8, epoch: u64) -> Vec<Ready> {
        let mut m = self.lock();
        for (_, e) in m.range_mut(..=epoch) {
            if e.any & bit(peer) != 0 {
                e.durable |= bit(peer);
                if let Some(w) = &mut e.waiting {
                    *w &= !bit(peer);
                }
            }
        }
        take_ready(&mut m)
    }

    /// `peer`'s connection is gone: it will acknowledge nothing more.
    pub(crate) fn gone(&self, peer: u8) -> Vec<Ready> {
        let mut m = self.lock();
        for e in m.values_mut() {
            // An epoch the peer made durable before it went stays held by it.
            if e.durable & bit(peer) == 0 {
                e.all &= !bit(peer);
            }
            if let Some(w) = &mut e.waiting {
                *w &= !bit(peer);
            }
        }
        take_ready(&mut m)
    }
}

fn take_ready(m: &mut BTreeMap<u64, EpochAcks>) -> Vec<Ready> {
    let done: Vec<u64> = m
        .iter()
        .filter(|(_, e)| e.waiting == Some(0))
        .map(|(&k, _)| k)
        .collect();
    done.into_iter()
        .filter_map(|k| m.remove(&k).map(|e| (k, e)))
        .map(|(epoch, e)| Ready {
            epoch,
            holders: e.all & e.durable,
            recipients: e.any,
        })
        .collect()
}

/// A Secondary's side, per connection to a Primary: the writes of each epoch not yet peer-acked.
#[derive(Debug, Default)]
pub(crate) struct Unacked {
    epochs: Mutex<BTreeMap<u64, Vec<Range<u64>>>>,
}

impl Unacked {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Vec<Range<u64>>>> {
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write of `epoch` to `range` arrived.
    pub(crate) fn record(&self, epoch: u64, range: Range<u64>) {
        let mut m = self.lock();
        let v = m.entry(epoch).or_default();
        match v.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => v.push(range),
        }
    }

    /// The writes of `epoch`, now peer-acked.
    pub(crate) fn take(&self, epoch: u64) -> Vec<Range<u64>> {
        self.lock().remove(&epoch).unwrap_or_default()
    }

    /// Every write not yet peer-acked, left in place (its peer ack may still come).
    pub(crate) fn ranges(&self) -> Vec<Range<u64>> {
        self.lock().values().flatten().cloned().collect()
    }

    /// Whether every write received was peer-acked.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every write never peer-acked (the Primary is gone).
    pub(crate) fn take_all(&self) -> Vec<Range<u64>> {
        std::mem::take(&mut *self.lock())
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_ready_when_every_peer_it_went_to_acknowledged_or_left() {
        let t = Tracker::default();
        t.write(5, bit(1) | bit(2));
        t.write(5, bit(1)); // node 2 missed this write
        assert!(t.closed(5, bit(1) | bit(2)).is_empty());
        assert!(t.acked(1, 5).is_empty(), "node 2 has not acknowledged");
        let r = t.acked(2, 7);
        assert_eq!(
            r,
            vec![Ready {
                epoch: 5,
                holders: bit(1),
                recipients: bit(1) | bit(2)
            }]
        );
        // A peer that leaves counts as not holding the epoch.
        t.write(6, bit(1) | bit(2));
        assert!(t.closed(6, bit(1) | bit(2)).is_empty());
        assert!(t.acked(1, 6).is_empty());
        let r = t.gone(2);
        assert_eq!(r[0].holders, bit(1));
        // Epochs without writes never appear.
        assert!(t.closed(9, bit(1)).is_empty());
    }

    #[test]
    fn an_acknowledgement_that_overtakes_the_close_still_counts() {
        let t = Tracker::default();
        t.write(3, bit(1) | bit(2));
        // The barrier is on the wire before `closed` runs; node 1 answers first.
        assert!(t.acked(1, 3).is_empty());
        assert!(t.closed(3, bit(1) | bit(2)).is_empty());
        let r = t.acked(2, 3);
        assert_eq!(r[0].holders, bit(1) | bit(2));
    }

    #[test]
    fn a_peer_that_leaves_after_acknowledging_still_holds_the_epoch() {
        let t = Tracker::default();
        t.write(4, bit(1) | bit(2));
        assert!(t.closed(4, bit(1) | bit(2)).is_empty());
        assert!(t.acked(2, 4).is_empty());
        assert!(t.gone(2).is_empty(), "node 1 has not acknowledged yet");
        let r = t.acked(1, 4);
        assert_eq!(r[0].holders, bit(1) | bit(2));
    }

    #[test]
    fn unacked_writes_merge_adjacent_ranges() {
        let u = Unacked::default();
        u.record(1, 0..4096);
        u.record(1, 4096..8192);
        u.record(1, 16384..20480);
        u.record(2, 0..512);
        assert_eq!(u.take(1), vec![0..8192, 16384..20480]);
        assert_eq!(u.take_all(), vec![0..512]);
        assert!(u.take(1).is_empty());
    }
}
