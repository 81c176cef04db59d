//! Resync from a Secondary while a Primary writes: the ordering that keeps old data from
//! overwriting new.
//!
//! ```text
//!   Primary P ──writes (seq)──▶ SyncTarget T          Secondary source S ◀── writes (seq) ── P
//!   T: request R for range X, "I have P's writes through D"; X locked on T from now on
//!   S: waits until it has applied P's writes through D, then reads X   ──ResyncData──▶ T
//!   T: writes R; then the writes of P to X that arrived after the request
//! ```
//!
//! Every write of P that T received before the request (seq ≤ D) is in S's data; every later one is
//! applied on T after the resync data, so it wins — as it does on S. When the source *is* the
//! Primary, or no Primary is connected to the target, none of this is needed: the request carries
//! [`NO_PRIMARY`] and the source answers at once.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use crate::engine::intervals::{Intervals, Pending, RangeGuard};

/// The `primary` of a request that needs no ordering.
pub(crate) const NO_PRIMARY: u8 = u8::MAX;
/// Bytes of the ordering prefix of a ResyncRequest or ChecksumRequest payload.
pub(crate) const PREFIX: usize = 9;

/// What a resync request says about the Primary's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestOrder {
    /// The Primary's node id, or [`NO_PRIMARY`].
    pub primary: u8,
    /// The Primary's newest write the target had received when it asked.
    pub through: u64,
}

impl RequestOrder {
    pub(crate) const NONE: RequestOrder = RequestOrder {
        primary: NO_PRIMARY,
        through: 0,
    };

    /// The payload prefix.
    pub(crate) fn encode(self) -> [u8; PREFIX] {
        let mut out = [0u8; PREFIX];
        out[0] = self.primary;
        out[1..].copy_from_slice(&self.through.to_le_bytes());
        out
    }

    /// Splits a payload into its ordering prefix and the rest.
    pub(crate) fn decode(payload: &[u8]) -> Result<(RequestOrder, &[u8]), String> {
        if payload.len() < PREFIX {
            return Err(format!(
                "resync request payload of {} bytes lacks its {PREFIX}-byte ordering prefix",
                payload.len()
            ));
        }
        let through = u64::from_le_bytes(payload[1..PREFIX].try_into().map_err(|_| "bad prefix")?);
        Ok((
            RequestOrder {
                primary: payload[0],
                through,
            },
            &payload[PREFIX..],
        ))
    }
}

/// The target's lock on a requested range, taken when the request is sent. Resync data answering
/// the request is applied under it (possibly in several pieces); it is released when the request is
/// complete, and the Primary's later writes to the range, queued behind it, then go ahead.
#[derive(Debug)]
pub(crate) struct RequestLock {
    pending: Mutex<Option<Pending>>,
    held: OnceCell<Option<RangeGuard>>,
}

impl RequestLock {
    /// Takes a place in line for `range` now.
    pub(crate) fn register(intervals: &Arc<Intervals>, range: Range<u64>) -> Arc<RequestLock> {
        Arc::new(RequestLock {
            pending: Mutex::new(Some(intervals.register(range))),
            held: OnceCell::new(),
        })
    }

    /// Waits until the range is ours (every earlier overlapping write is applied).
    pub(crate) async fn granted(&self) {
        self.held
            .get_or_init(|| async {
                let p = self.pending.lock().unwrap_or_else(PoisonError::into_inner).take();
                match p {
                    Some(p) => Some(p.granted().await),
                    None => None,
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_round_trips_and_short_payloads_are_refused() {
        let o = RequestOrder {
            primary: 3,
            through: 0x0102_0304_0506_0708,
        };
        let mut payload = o.encode().to_vec();
        payload.extend_from_slice(b"digests");
        let (back, rest) = RequestOrder::decode(&payload).unwrap();
        assert_eq!((back, rest), (o, &b"digests"[..]));
        assert!(
            RequestOrder::decode(&[1, 2, 3])
                .unwrap_err()
                .contains("ordering prefix")
        );
    }

    #[tokio::test]
    async fn a_request_lock_holds_later_writes_until_it_is_dropped() {
        let iv = Arc::new(Intervals::default());
        let lock = RequestLock::register(&iv, 0..8192);
        let later = iv.register(4096..8192);
        lock.granted().await;
        let waiter = tokio::spawn(later.granted());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(lock);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
