//! A live, authenticated connection to one peer, and everything in flight on it.
//!
//! Writes are *registered* on a link (under the epoch lock, in epoch order) and their frames queued
//! to its sender task. A registered write leaves the link only when the peer acknowledges the barrier
//! of its epoch; until then the link holds a reference to it (and so its activity-log extent). If the
//! link fails, every write still registered is marked out of sync in the peer's bitmap slot — it may
//! or may not have reached the peer's disk — and writes still waiting for this peer stop waiting.
//!
//! Backpressure: a write takes credits for its bytes before it is queued and gives them back when the
//! peer no longer needs the buffer (protocol A: sent; B/C: acknowledged). A peer that stops reading
//! thus stalls writers only until the acknowledgement timeout closes the link.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use replbd_bitmap::{Metadata, PeerSlot};
use replbd_quorum::Protocol;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::request::WriteRequest;
use crate::wire::OutFrame;

/// A frame queued for the sender task.
#[derive(Debug)]
pub enum Outgoing {
    /// Any frame.
    Frame(OutFrame),
    /// A write's data frame; with protocol A its path completes once the frame is on the socket.
    Data {
        /// The frame.
        frame: OutFrame,
        /// Its request id.
        seq: u64,
    },
    /// Fires once every frame queued before it is on the socket.
    Sent(oneshot::Sender<()>),
}

struct Entry {
    req: Arc<WriteRequest>,
    /// Data bytes it counts in [`Link::data_in_flight`].
    bytes: u64,
    /// The write is still waiting for this peer.
    pending: bool,
    queued_at: Instant,
    _credits: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Inflight {
    dead: Option<String>,
    entries: BTreeMap<u64, Entry>,
    /// Data bytes of `entries`: written by the application, not yet durable on the peer.
    bytes: u64,
}

/// A remote read's answer: the data or an errno.
pub type ReadAnswer = Result<Bytes, i32>;

/// One live connection.
pub struct Link {
    /// The peer's node id.
    pub peer: u8,
    /// Replication protocol.
    pub protocol: Protocol,
    /// Our bitmap slot for the peer (`None`: we are diskless or it is).
    pub slot: Option<PeerSlot>,
    meta: Option<Arc<Metadata>>,
    tx: mpsc::UnboundedSender<Outgoing>,
    inflight: Mutex<Inflight>,
    credits: Arc<Semaphore>,
    /// Newest epoch the peer acknowledged as durable.
    pub acked_epoch: watch::Sender<u64>,
    /// Newest epoch whose barrier the peer acknowledged receiving (protocol B).
    pub received_epoch: watch::Sender<u64>,
    reads: Mutex<HashMap<u64, oneshot::Sender<ReadAnswer>>>,
    /// Remote reads outstanding (for `least-pending`).
    pub reads_pending: AtomicU64,
    /// Set (with the reason) when the link fails.
    pub dead: watch::Sender<Option<String>>,
    /// When a frame last arrived (milliseconds since `born`).
    pub last_rx_ms: AtomicU64,
    /// When the link came up.
    pub born: Instant,
    resync: Mutex<Option<Arc<super::resync::Resync>>>,
    /// The peer's writes this node received and applied (when the peer is a Primary).
    pub(crate) writes: super::watermark::AppliedWrites,
    /// The peer's writes (as Primary) not yet peer-acked, by epoch.
    pub(crate) unacked: super::peer_ack::Unacked,
    verify: Mutex<Option<Arc<super::resync::verify::Verify>>>,
    /// Set by the first `fail`.
    failing: std::sync::atomic::AtomicBool,
    /// Runs at the start of the first `fail`.
    #[allow(clippy::type_complexity)]
    on_fail: Mutex<Option<Box<dyn FnOnce(&str) + Send + Sync>>>,
    /// The link is congested and this node Ahead of the peer: writes are not sent, only marked
    /// (see [`super::congestion`]).
    ahead: std::sync::atomic::AtomicBool,
    /// The peer's earlier generations as last reported: its bitmap UUIDs, then its history.
    lineage: Mutex<Vec<u64>>,
    /// The nodes the peer tracks changes for (a non-zero bitmap UUID), as last reported.
    tracking: AtomicU64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a write could not be registered on a link.
#[derive(Debug)]
pub struct LinkDown;

impl Link {
    /// A link whose sender task reads `tx`'s other end; barriers up to `acked_through` count as
    /// acknowledged (the peer never had those writes).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        peer: u8,
        protocol: Protocol,
        slot: Option<PeerSlot>,
        meta: Option<Arc<Metadata>>,
        tx: mpsc::UnboundedSender<Outgoing>,
        max_in_flight_bytes: u64,
        acked_through: u64,
    ) -> Link {
        let permits = usize::try_from(max_in_flight_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Link {
            peer,
            protocol,
            slot,
            meta,
            tx,
            inflight: Mutex::default(),
            credits: Arc::new(Semaphore::new(permits)),
            acked_epoch: watch::channel(acked_through).0,
            received_epoch: watch::channel(acked_through).0,
            reads: Mutex::default(),
            reads_pending: AtomicU64::new(0),
            dead: watch::channel(None).0,
            last_rx_ms: AtomicU64::new(0),
            born: Instant::now(),
            resync: Mutex::new(None),
            writes: Default::default(),
            unacked: Default::default(),
            verify: Mutex::new(None),
            failing: std::sync::atomic::AtomicBool::new(false),
            on_fail: Mutex::new(None),
            ahead: std::sync::atomic::AtomicBool::new(false),
            lineage: Mutex::default(),
            tracking: AtomicU64::new(0),
        }
    }

    /// Records the peer's earlier generations from its state report.
    pub(crate) fn set_lineage(&self, report: &crate::wire::messages::StateReport) {
        let mut l = lock(&self.lineage);
        l.clear();
        l.extend(report.bitmap_uuids.iter().map(|&(_, u)| u & !1));
        l.extend(report.history.iter().map(|&u| u & !1));
        l.retain(|&u| u != 0);
        let tracking = report
            .bitmap_uuids
            .iter()
            .filter(|&&(node, uuid)| uuid & !1 != 0 && node < 64)
            .fold(0u64, |m, &(node, _)| m | 1 << node);
        self.tracking.store(tracking, Ordering::SeqCst);
    }

    /// Whether the peer, as last reported, tracks changes for `node` (has a bitmap UUID for it).
    pub(crate) fn peer_tracks(&self, node: u8) -> bool {
        node < 64 && self.tracking.load(Ordering::SeqCst) & (1 << node) != 0
    }

    /// The peer's earlier generations as last reported, newest first.
    pub(crate) fn lineage(&self) -> Vec<u64> {
        lock(&self.lineage).clone()
    }

    /// The online verify running on this link, if any.
    pub(crate) fn verify(&self) -> Option<Arc<super::resync::verify::Verify>> {
        lock(&self.verify).clone()
    }

    /// Sets the online verify of this link.
    pub(crate) fn set_verify(&self, v: Option<Arc<super::resync::verify::Verify>>) {
        *lock(&self.verify) = v;
    }

    /// The resync running on this link, if any.
    pub(crate) fn resync(&self) -> Option<Arc<super::resync::Resync>> {
        lock(&self.resync).clone()
    }

    /// Sets the resync of this link.
    pub(crate) fn set_resync(&self, r: Option<Arc<super::resync::Resync>>) {
        *lock(&self.resync) = r;
    }

    /// Bytes of application writes queued or sent to the peer and not yet durable there (their
    /// barrier not acknowledged).
    pub fn data_in_flight(&self) -> u64 {
        lock(&self.inflight).bytes
    }

    /// True while this node is Ahead of the peer (congestion, `pull-ahead`).
    pub fn is_ahead(&self) -> bool {
        self.ahead.load(Ordering::SeqCst)
    }

    /// Enters (`true`) or leaves Ahead; returns the previous value.
    pub(crate) fn set_ahead(&self, on: bool) -> bool {
        self.ahead.swap(on, Ordering::SeqCst)
    }

    /// True once the link failed.
    pub fn is_dead(&self) -> bool {
        self.dead.borrow().is_some()
    }

    /// Takes credits for `bytes` of write data (waits while the peer's queue is full). `None` when
    /// the link failed meanwhile.
    pub async fn credits(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Arc::clone(&self.credits).acquire_many_owned(n).await.ok()
    }

    /// Queues any frame.
    pub fn send(&self, frame: OutFrame) {
        let _ = self.tx.send(Outgoing::Frame(frame));
    }

    /// Queues `frame`; the receiver fires once it is on the socket (never, if the link fails).
    pub fn send_confirmed(&self, frame: OutFrame) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Outgoing::Frame(frame));
        let _ = self.tx.send(Outgoing::Sent(tx));
        rx
    }

    /// Runs `f` when the link fails, before any request on it completes (the control state learns
    /// of the failure before a write that missed this peer can complete).
    pub(crate) fn set_on_fail(&self, f: Box<dyn FnOnce(&str) + Send + Sync>) {
        *lock(&self.on_fail) = Some(f);
    }

    /// Registers `req` and queues its frame. Fails when the link is down.
    pub fn register(
        &self,
        req: &Arc<WriteRequest>,
        frame: OutFrame,
        credits: Option<OwnedSemaphorePermit>,
    ) -> Result<(), LinkDown> {
        let mut inf = lock(&self.inflight);
        if inf.dead.is_some() {
            return Err(LinkDown);
        }
        let bytes = if req.kind == super::request::WriteKind::Data {
            req.len
        } else {
            0
        };
        inf.bytes += bytes;
        inf.entries.insert(
            req.seq,
            Entry {
                req: Arc::clone(req),
                bytes,
                pending: true,
                queued_at: Instant::now(),
                _credits: credits,
            },
        );
        drop(inf);
        if self.tx.send(Outgoing::Data { frame, seq: req.seq }).is_err() {
            return Err(LinkDown);
        }
        Ok(())
    }

    /// The write `seq` reached its protocol point on the peer (or failed there: `ok == false`, and
    /// its range is marked out of sync).
    pub fn path_done(&self, seq: u64, ok: bool) {
        let mut inf = lock(&self.inflight);
        let Some(e) = inf.entries.get_mut(&seq) else {
            return;
        };
        if !e.pending {
            return;
        }
        e.pending = false;
        e._credits = None;
        let req = Arc::clone(&e.req);
        drop(inf);
        if !ok {
            self.mark_out_of_sync(&req);
        }
        req.path_done(ok);
    }

    /// The peer made every write of epochs up to `epoch` durable: they leave the link.
    pub fn barrier_acked(&self, epoch: u64) {
        let mut released = Vec::new();
        {
            let mut inf = lock(&self.inflight);
            while let Some(entry) = inf.entries.first_entry() {
                if entry.get().req.epoch > epoch {
                    break;
                }
                let e = entry.remove();
                inf.bytes -= e.bytes;
                released.push(e);
            }
        }
        for e in released {
            if e.pending {
                // The barrier implies the write was applied; its own ack was not seen.
                e.req.path_done(true);
            }
        }
        self.acked_epoch.send_if_modified(|v| {
            let changed = epoch > *v;
            *v = (*v).max(epoch);
            changed
        });
    }

    /// Protocol B: the peer received barrier `epoch`.
    pub fn barrier_received(&self, epoch: u64) {
        self.received_epoch.send_if_modified(|v| {
            let changed = epoch > *v;
            *v = (*v).max(epoch);
            changed
        });
    }

    fn mark_out_of_sync(&self, req: &WriteRequest) {
        if let (Some(meta), Some(slot)) = (&self.meta, self.slot)
            && let Err(e) = meta.mark_out_of_sync(slot, req.offset, req.len)
        {
            tracing::error!(peer = self.peer, error = %e, "cannot mark a write out of sync");
        }
    }

    /// Age of the oldest write still registered, if any.
    pub fn oldest_unacked(&self) -> Option<std::time::Duration> {
        lock(&self.inflight)
            .entries
            .first_key_value()
            .map(|(_, e)| e.queued_at.elapsed())
    }

    /// Starts a remote read with id `seq`.
    pub fn start_read(&self, seq: u64) -> oneshot::Receiver<ReadAnswer> {
        let (tx, rx) = oneshot::channel();
        if self.is_dead() {
            let _ = tx.send(Err(libc::EIO));
            return rx;
        }
        lock(&self.reads).insert(seq, tx);
        self.reads_pending.fetch_add(1, Ordering::Relaxed);
        rx
    }

    /// Completes remote read `seq`.
    pub fn finish_read(&self, seq: u64, answer: ReadAnswer) {
        if let Some(tx) = lock(&self.reads).remove(&seq) {
            self.reads_pending.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(answer);
        }
    }

    /// Forgets remote read `seq` (timed out).
    pub fn abandon_read(&self, seq: u64) {
        if lock(&self.reads).remove(&seq).is_some() {
            self.reads_pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Records that a frame arrived.
    pub fn touch(&self) {
        self.last_rx_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last frame arrived.
    pub fn idle(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_rx_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// Fails the link (once): every registered write is marked out of sync for the peer and stops
    /// waiting for it, remote reads fail, queued writers are released.
    pub fn fail(&self, reason: &str) {
        if self.failing.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(f) = lock(&self.on_fail).take() {
            f(reason);
        }
        let entries = {
            let mut inf = lock(&self.inflight);
            if inf.dead.is_some() {
                return;
            }
            inf.dead = Some(reason.to_string());
            inf.bytes = 0;
            std::mem::take(&mut inf.entries)
        };
        self.dead.send_replace(Some(reason.to_string()));
        self.credits.close();
        let marked = entries.len();
        for (_, e) in entries {
            self.mark_out_of_sync(&e.req);
            if e.pending {
                e.req.path_done(false);
            }
        }
        let reads: Vec<_> = lock(&self.reads).drain().collect();
        for (_, tx) in reads {
            let _ = tx.send(Err(libc::EIO));
        }
        self.reads_pending.store(0, Ordering::Relaxed);
        tracing::warn!(
            peer = self.peer,
            reason,
            unacknowledged_writes = marked,
            "connection to peer lost"
        );
    }
}
