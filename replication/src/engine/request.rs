//! Tracking one application write across the paths it takes: the local disk and each peer.
//!
//! A [`WriteRequest`] completes to the application when no path is *pending* any more (DRBD's rule):
//! the local write finished, and each peer either reached its protocol's point (A: handed to the
//! socket, B: received, C: written) or failed (then the block is marked out of sync for it). It
//! succeeds when at least one path succeeded.
//!
//! The request lives on after that, referenced by every link until the peer acknowledges the barrier
//! that closes its epoch (the data is then durable there). It holds the activity-log reference for
//! its range, so the extent stays in the log — and recovery would resync it — for exactly as long as
//! some peer might not have it durably. When the last reference drops, the guard ends the write.

use std::sync::{Mutex, PoisonError};

use replbd_bitmap::WriteGuard;
use tokio::sync::Notify;

/// What kind of write it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Data.
    Data,
    /// Discard.
    Discard,
    /// Write zeroes.
    Zeroes,
}

#[derive(Debug)]
struct Paths {
    pending: u32,
    succeeded: u32,
    failed: u32,
    local_error: Option<String>,
}

/// One application write in flight.
pub struct WriteRequest {
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// Epoch it belongs to.
    pub epoch: u64,
    /// Request id on the wire.
    pub seq: u64,
    /// Kind.
    pub kind: WriteKind,
    paths: Mutex<Paths>,
    done: Notify,
    _guard: Option<WriteGuard>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteRequest")
            .field("seq", &self.seq)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl WriteRequest {
    /// A request with `paths` pending paths.
    pub fn new(
        offset: u64,
        len: u64,
        kind: WriteKind,
        epoch: u64,
        seq: u64,
        paths: u32,
        guard: Option<WriteGuard>,
    ) -> WriteRequest {
        WriteRequest {
            offset,
            len,
            epoch,
            seq,
            kind,
            paths: Mutex::new(Paths {
                pending: paths,
                succeeded: 0,
                failed: 0,
                local_error: None,
            }),
            done: Notify::new(),
            _guard: guard,
        }
    }

    /// One path finished; the last one wakes the waiter.
    pub fn path_done(&self, ok: bool) {
        let mut p = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        if p.pending == 0 {
            return;
        }
        p.pending -= 1;
        p.succeeded += u32::from(ok);
        p.failed += u32::from(!ok);
        if p.pending == 0 {
            self.done.notify_one();
        }
    }

    /// Some path (local or a peer) failed.
    pub fn had_failed_path(&self) -> bool {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner).failed > 0
    }

    /// The local path finished with an error.
    pub fn local_failed(&self, error: String) {
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .local_error = Some(error);
        self.path_done(false);
    }

    /// Waits until no path is pending; `Ok` if any path succeeded, else the local error (or a
    /// description of why every path failed).
    pub async fn wait(&self) -> Result<(), String> {
        loop {
            {
                let p = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
                if p.pending == 0 {
                    return if p.succeeded > 0 {
                        Ok(())
                    } else {
                        Err(p
                            .local_error
                            .clone()
                            .unwrap_or_else(|| "no disk and no peer accepted the write".to_string()))
                    };
                }
            }
            self.done.notified().await;
        }
    }
}
