//! The checker workload: a few workers, each with its own connection to whichever node is
//! Primary (NBD, or its `/dev/ublkbN`: [`crate::front`]), writing self-describing blocks and flushing at random points, recording every answer
//! in the [`History`].
//!
//! Worker `w` of `n` owns the blocks `b` with `b % n == w` and waits for each answer before its
//! next request, so the writes of one block never overlap and their order is the order they were
//! sent. Most writes go to a small hot set (many overwrites of the same blocks, the case where a
//! lost write shows as an older one), the rest anywhere in the volume (many activity-log extents
//! and bitmap bits, so that resyncs have work to do).
//!
//! Every request holds a read lock of the pause lock; the harness takes the write lock to stop the
//! workload before it checks the replicas, which leaves no request in flight.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{RwLock, watch};

use crate::block::{BLOCK, encode};
use crate::checker::{Violation, check_read};
use crate::front::{Client, ClientError, FrontEnd};
use crate::history::{History, Outcome};

/// How long a request may take before its connection is abandoned (the answer is then unknown).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocks in the hot set.
const HOT_BLOCKS: u64 = 256;
/// NBD errnos after which the worker looks for the Primary again.
const EPERM: u32 = 1;
const ESHUTDOWN: u32 = 108;

/// What the workers share with the harness.
#[derive(Clone)]
pub struct Shared {
    /// The record of every request.
    pub history: Arc<Mutex<History>>,
    /// The front end the workers connect through.
    pub front: FrontEnd,
    /// The export (NBD socket or block device) of the current Primary, or `None` while there is
    /// none.
    pub primary: watch::Receiver<Option<PathBuf>>,
    /// Held (read) by every request; the harness write-locks it to pause the workload.
    pub pause: Arc<RwLock<()>>,
    /// Set to stop the workers.
    pub stop: watch::Receiver<bool>,
    /// Reads that returned what the history does not allow.
    pub read_violations: Arc<Mutex<Vec<Violation>>>,
}

fn record(history: &Mutex<History>, f: impl FnOnce(&mut History)) {
    if let Ok(mut h) = history.lock() {
        f(&mut h);
    }
}

/// Runs worker `w` of `workers` over a volume of `blocks` blocks until told to stop.
pub async fn worker(shared: Shared, w: u64, workers: u64, blocks: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(w + 1));
    let mut conn: Option<Client> = None;
    let hot = HOT_BLOCKS.min(blocks);
    loop {
        if *shared.stop.borrow() {
            break;
        }
        let guard = shared.pause.read().await;
        if *shared.stop.borrow() {
            break;
        }
        if conn.is_none() {
            let target = shared.primary.borrow().clone();
            if let Some(path) = target
                && let Ok(Ok(c)) =
                    tokio::time::timeout(Duration::from_secs(5), Client::connect(shared.front, &path)).await
            {
                conn = Some(c);
            }
        }
        let Some(c) = conn.as_mut() else {
            drop(guard);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let op = rng.random_range(0..100);
        let keep = if op < 8 {
            let tick = shared.history.lock().map(|mut h| h.begin_flush()).unwrap_or(0);
            let result = tokio::time::timeout(REQUEST_TIMEOUT, c.flush()).await;
            let ok = matches!(result, Ok(Ok(())));
            record(&shared.history, |h| {
                if ok { h.flush_done(tick) } else { h.flush_failed() }
            });
            classify(result)
        } else if op < 18 {
            let block = pick_block(&mut rng, w, workers, hot, blocks);
            let result =
                tokio::time::timeout(REQUEST_TIMEOUT, c.read(block * BLOCK as u64, BLOCK as u32)).await;
            let (result, data) = match result {
                Ok(Ok(data)) => (Ok(Ok(())), Some(data)),
                Ok(Err(e)) => (Ok(Err(e)), None),
                Err(e) => (Err(e), None),
            };
            let bad = shared.history.lock().ok().and_then(|mut h| match &data {
                Some(data) => {
                    h.counters.reads_done += 1;
                    check_read(&h, &format!("read via {}", target_name(&shared)), block, data)
                }
                None => {
                    h.counters.reads_failed += 1;
                    None
                }
            });
            if let Some(v) = bad {
                tracing::error!(worker = w, "{v}");
                if let Ok(mut list) = shared.read_violations.lock() {
                    list.push(v);
                }
            }
            classify(result)
        } else {
            let block = pick_block(&mut rng, w, workers, hot, blocks);
            let Ok(id) = shared.history.lock().map(|mut h| h.begin_write(block)) else {
                break;
            };
            let data = encode(block, id);
            let result = tokio::time::timeout(REQUEST_TIMEOUT, c.write(block * BLOCK as u64, &data)).await;
            let outcome = match &result {
                Ok(Ok(())) => Outcome::Acked(0),
                Ok(Err(ClientError::Refused(_))) => Outcome::Failed,
                _ => Outcome::Unknown,
            };
            record(&shared.history, |h| h.end_write(block, id, outcome));
            classify(result)
        };
        drop(guard);
        match keep {
            Next::Go => {}
            Next::Backoff => tokio::time::sleep(Duration::from_millis(50)).await,
            Next::Reconnect => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    if let Some(c) = conn {
        c.disconnect().await;
    }
}

/// The node whose export the workers use now: an NBD socket's directory is named after it, and
/// `/dev/ublkbN` belongs to node `N`.
fn target_name(shared: &Shared) -> String {
    let primary = shared.primary.borrow();
    let Some(p) = primary.as_ref() else {
        return "?".into();
    };
    let ublk = p
        .file_name()
        .and_then(|f| f.to_str()?.strip_prefix("ublkb")?.parse::<usize>().ok());
    match ublk {
        Some(id) if id < crate::cluster::NODES => crate::cluster::name(id).to_owned(),
        _ => p
            .parent()
            .and_then(|d| d.file_name()?.to_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into()),
    }
}

enum Next {
    Go,
    Backoff,
    Reconnect,
}

/// What to do after an answer: carry on, wait a little (EIO without quorum), or find the Primary
/// again (demoted, shutting down, connection broken, device gone, no answer).
fn classify(result: Result<Result<(), ClientError>, tokio::time::error::Elapsed>) -> Next {
    match result {
        Ok(Ok(())) => Next::Go,
        Ok(Err(ClientError::Refused(EPERM | ESHUTDOWN))) => Next::Reconnect,
        Ok(Err(ClientError::Refused(_))) => Next::Backoff,
        _ => Next::Reconnect,
    }
}

/// A block owned by worker `w`: from the hot set most of the time, else anywhere.
fn pick_block(rng: &mut StdRng, w: u64, workers: u64, hot: u64, blocks: u64) -> u64 {
    let range = if rng.random_bool(0.7) { hot } else { blocks };
    let slots = (range.saturating_sub(w)).div_ceil(workers).max(1);
    (rng.random_range(0..slots) * workers + w).min(blocks.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_only_pick_their_own_blocks() {
        let mut rng = StdRng::seed_from_u64(1);
        for w in 0..4 {
            for _ in 0..2000 {
                let b = pick_block(&mut rng, w, 4, 256, 5000);
                assert!(b < 5000 && b % 4 == w, "{w} {b}");
            }
        }
    }
}
