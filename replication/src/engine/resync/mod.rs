//! Resync: bringing a peer that missed writes up to date, moving exactly the blocks marked out of
//! sync.
//!
//! ```text
//!   handshake decides Source/Target ─▶ link live ─▶ both send their bitmap for the other (WFBitMapS/T)
//!        ─▶ both merge the union (durably) ─▶ SyncSource / SyncTarget
//!   SyncTarget walks its bitmap:  ResyncRequest ─▶  (source: range lock, read)  ─▶ ResyncData
//!                 write, clear bit, ResyncAck ─▶  (source clears its bit)
//!   no bit left, nothing in flight: ResyncDone ─▶ source forgets the bitmap UUID ─▶ ResyncFinished(uuid)
//!        ─▶ target adopts the source's generation, UpToDate ─▶ Established
//! ```
//!
//! - The target drives: at most `fill-target` bytes in flight, at most `max-rate` per second, and —
//!   while application writes are arriving and the resync runs above `min-rate` — a pause of one tick
//!   so the application keeps most of the bandwidth.
//! - With `csums-alg` the target sends a digest of its own block instead of asking for the data, and
//!   the source answers "in sync" when its digest matches: only differing blocks move.
//! - Bits are cleared as blocks arrive, durably with the next metadata flush, so an interrupted resync
//!   resumes where it stopped; the target's metadata says "not consistent" from the start of the
//!   resync to its end.
//! - Application writes keep flowing to the target during resync. The source never reads a range
//!   with a write in flight ([`super::intervals`]) and the target applies overlapping requests in
//!   arrival order, so resync data never overwrites newer application data.
//! - Only a Primary, or a node while no Primary is writing, serves as SyncSource: a Secondary with a
//!   writing Primary behind it could send data older than what the target already applied from that
//!   Primary. Such a resync waits (PausedSyncS/T) until the target can sync from the Primary or
//!   nobody writes.

pub(crate) mod command;
pub mod exchange;
pub(crate) mod order;
mod rate;
pub(crate) mod verify;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use replbd_bitmap::NodeFlags;
use replbd_bitmap::superblock::UUID_JUST_CREATED;
use replbd_quorum::{DiskState, ReplicationState, Role};
use tokio::sync::Notify;

use super::core::Inner;
use super::link::Link;
use super::state::Event;
use crate::wire::{FrameHeader, Kind, OutFrame};

pub use rate::RateControl;

/// Why a source whose disk was detached ends the resync: from the detach on, its disk misses the
/// writes it is sent, so what it reads may be older than what the target already holds (found by
/// `replbd-faults`: a target resumed a paused resync from a Secondary whose disk had just failed and
/// took its stale blocks, then reported UpToDate). The connection is dropped; at the reconnect the
/// handshake sees a diskless node, and the target syncs from another source.
const DETACHED_SOURCE: &str = "this node's disk was detached: it can no longer be a sync source";

/// Why a source stops serving when it became a sync target itself: from then on its blocks are
/// partly another generation's. The reconnect decides again, and waits until this node is
/// UpToDate before it serves anybody (see `connection::inconsistent_source`).
pub(crate) const INCONSISTENT_SOURCE: &str =
    "this node became a sync target itself (its disk is Inconsistent): it can no longer be a sync source";

/// Largest single resync request.
pub const MAX_REQUEST: u64 = 1 << 20;

/// How blocks are compared for checksum resync and online verify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DigestAlg {
    /// crc32c (4 bytes).
    #[default]
    Crc32c,
    /// SHA-256 (32 bytes).
    Sha256,
}

impl DigestAlg {
    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Crc32c => crc32c::crc32c(data).to_le_bytes().to_vec(),
            DigestAlg::Sha256 => ring::digest::digest(&ring::digest::SHA256, data)
                .as_ref()
                .to_vec(),
        }
    }
}

impl std::str::FromStr for DigestAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "crc32c" => Ok(DigestAlg::Crc32c),
            "sha256" => Ok(DigestAlg::Sha256),
            _ => Err(format!("unknown digest algorithm {s:?}: use crc32c or sha256")),
        }
    }
}

/// Resync settings (DRBD's `c-max-rate`, `c-min-rate`, `c-fill-target`, `csums-alg`).
#[derive(Clone, Copy, Debug)]
pub struct ResyncConfig {
    /// Most bytes per second a resync requests (0: unlimited).
    pub max_rate: u64,
    /// Below this rate a resync is never slowed for application I/O.
    pub min_rate: u64,
    /// Bytes a target keeps requested.
    pub fill_target: u64,
    /// How far ahead the rate controller plans (`c-plan-ahead`; zero: a fixed rate of `max_rate`).
    pub plan_ahead: Duration,
    /// Compare digests before moving data.
    pub csums: Option<DigestAlg>,
    /// Digest for online verify.
    pub verify: DigestAlg,
}

impl Default for ResyncConfig {
    fn default() -> Self {
        ResyncConfig {
            max_rate: 100 << 20,
            min_rate: 250 << 10,
            fill_target: 4 << 20,
            plan_ahead: Duration::from_secs(2),
            csums: None,
            verify: DigestAlg::Crc32c,
        }
    }
}

/// Which end of the resync this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRole {
    /// Has the newer data.
    Source,
    /// Receives it.
    Target,
}

/// Progress as shown by `status`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyncProgress {
    /// Percent done.
    pub percent: f64,
    /// Bytes still out of sync.
    pub bytes_left: u64,
    /// Bytes per second over the resync so far.
    pub rate: u64,
    /// Estimated seconds to go.
    pub eta_secs: u64,
    /// Bytes moved (data sent as a whole, not digests).
    pub bytes_moved: u64,
}

/// One outstanding request of a SyncTarget.
struct Request {
    range: Range<u64>,
    /// Data writes received for it and not yet done.
    writes: u32,
    /// Every part of it has been answered (data covering it, or the source's "in sync").
    answered: bool,
    /// A local write of it failed: its bits stay set.
    failed: bool,
    /// The place the request took among writes to its range (see [`order`]).
    lock: Option<Arc<order::RequestLock>>,
}

#[derive(Default)]
struct Flight {
    bytes: u64,
    requests: HashMap<u64, Request>,
}

/// The resync of one link.
pub(crate) struct Resync {
    inner: Arc<Inner>,
    link: Arc<Link>,
    /// This node's role.
    pub role: SyncRole,
    started: Instant,
    start_bytes: AtomicU64,
    moved: AtomicU64,
    flight: Mutex<Flight>,
    changed: Notify,
    bitmap_done: AtomicBool,
    finished: AtomicBool,
    /// The resync ended without moving data (see [`Resync::abandon_if_redundant`]).
    abandoned: AtomicBool,
    paused_until: Mutex<Option<Instant>>,
    rate: Mutex<RateControl>,
    /// Our own side of the exchange is done: the bitmap for the peer is complete (a full sync has
    /// marked everything), persisted and queued to the peer ahead of any request. The resync must
    /// not start before — bits cleared by arriving data would be marked again.
    local_ready: tokio::sync::watch::Sender<bool>,
    /// Nodes (bit = node id) this node had no live link to when the resync began: every block the
    /// resync writes is marked for them (`apply_locally`), which target_finished relies on.
    absent_at_start: u64,
}

fn frame(kind: Kind, seq: u64, sector: u64, aux: u64) -> OutFrame {
    let mut h = FrameHeader::new(kind);
    h.seq = seq;
    h.sector = sector;
    h.aux = aux;
    OutFrame::bare(h)
}

impl Resync {
    pub(crate) fn new(inner: Arc<Inner>, link: Arc<Link>, role: SyncRole) -> Arc<Resync> {
        let rate = RateControl::new(inner.cfg.resync);
        let absent_at_start = inner
            .peers()
            .iter()
            .filter(|p| p.live().is_none() && p.cfg.node_id < 64)
            .fold(0u64, |m, p| m | 1 << p.cfg.node_id);
        Arc::new(Resync {
            inner,
            link,
            role,
            started: Instant::now(),
            start_bytes: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            flight: Mutex::default(),
            changed: Notify::new(),
            bitmap_done: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            paused_until: Mutex::new(None),
            rate: Mutex::new(rate),
            local_ready: tokio::sync::watch::Sender::new(false),
            absent_at_start,
        })
    }

    fn flight(&self) -> MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn out_of_sync(&self) -> u64 {
        match (&self.inner.disk, self.link.slot) {
            (Some(d), Some(slot)) => d.meta.out_of_sync_bytes(slot).unwrap_or(0),
            _ => 0,
        }
    }

    /// Progress so far.
    pub(crate) fn progress(&self) -> SyncProgress {
        let left = self.out_of_sync();
        let total = self.start_bytes.load(Ordering::Relaxed).max(left);
        let done = total - left;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (done as f64 / secs) as u64;
        SyncProgress {
            percent: if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            },
            bytes_left: left,
            rate,
            eta_secs: left.checked_div(rate).unwrap_or(0),
            bytes_moved: self.moved.load(Ordering::Relaxed),
        }
    }

    /// Starts the exchange: makes the local bitmap complete for the peer and sends it.
    pub(crate) async fn start(self: &Arc<Self>, full: bool) -> Result<(), String> {
        let Some(d) = &self.inner.disk else {
            return Err("resync without a disk".into());
        };
        let Some(slot) = self.link.slot else {
            return Err("resync with a diskless peer".into());
        };
        let meta = Arc::clone(&d.meta);
        let size = d.size();
        let target = self.role == SyncRole::Target;
        let unconfirmed = if target {
            Vec::new()
        } else {
            self.inner.unconfirmed_writes()
        };
        tokio::task::spawn_blocking(move || -> Result<(), replbd_bitmap::MetaError> {
            if full {
                meta.mark_out_of_sync(slot, 0, size)?;
            }
            // Crash ordering: these marks are flushed with the rest before the bitmap is sent;
            // a crash before only leaves them unmarked again, and nothing has moved yet.
            for r in &unconfirmed {
                meta.mark_out_of_sync(slot, r.start, r.end - r.start)?;
            }
            meta.flush()?;
            if target {
                // From now to the end of the resync this node's data is not one consistent generation.
                meta.update(|_, flags| flags.set(NodeFlags::CONSISTENT, false))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let state = if target {
            ReplicationState::WFBitMapT
        } else {
            ReplicationState::WFBitMapS
        };
        self.inner.set_replication(self.link.peer, state);
        let bm = d.meta.bitmap(slot).map_err(|e| e.to_string())?;
        let granularity = d.meta.geometry().bm_block_size() as u32;
        for chunk in exchange::encode(&bm, granularity) {
            self.link.send(OutFrame {
                header: FrameHeader::new(Kind::BitmapChunk),
                payload: Bytes::from(chunk),
            });
        }
        self.link.send(frame(Kind::BitmapDone, 0, 0, 0));
        // Ready only once our whole bitmap is queued: a target starts requesting as soon as this is
        // set and the peer's bitmap is in, and the source must have merged ours before it serves
        // and acknowledges requests — else bits of ours arriving after their acks stay set there.
        self.local_ready.send_replace(true);
        Ok(())
    }

    /// A chunk of the peer's bitmap: merge it.
    pub(crate) fn bitmap_chunk(&self, payload: &[u8]) -> Result<(), String> {
        let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot) else {
            return Ok(());
        };
        let chunk =
            exchange::decode(payload, d.size()).map_err(|e| format!("bad bitmap from the peer: {e}"))?;
        for r in chunk.ranges {
            d.meta
                .mark_out_of_sync(slot, r.start, r.end - r.start)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The peer's bitmap is complete: persist the union and start.
    pub(crate) async fn bitmap_done(self: &Arc<Self>) -> Result<(), String> {
        let Some(d) = &self.inner.disk else { return Ok(()) };
        let mut ready = self.local_ready.subscribe();
        let mut dead = self.link.dead.subscribe();
        tokio::select! {
            _ = ready.wait_for(|r| *r) => {}
            _ = dead.wait_for(Option::is_some) => return Ok(()),
        }
        let meta = Arc::clone(&d.meta);
        tokio::task::spawn_blocking(move || meta.flush())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.bitmap_done.store(true, Ordering::SeqCst);
        // A source serves requests as they come: a small resync can be over (the target sent
        // ResyncDone) before this side finished persisting the union. Then it stays Established.
        if self.finished.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.start_bytes.store(self.out_of_sync(), Ordering::Relaxed);
        let peer = self.link.peer;
        tracing::info!(resource = %self.inner.cfg.name, peer, role = ?self.role, bytes = self.out_of_sync(), "resync starts");
        match self.role {
            SyncRole::Source => self.inner.set_replication(peer, ReplicationState::SyncSource),
            SyncRole::Target => {
                self.inner.set_replication(peer, ReplicationState::SyncTarget);
                tokio::spawn(Arc::clone(self).drive());
                // Already UpToDate through another source meanwhile: maybe nothing to do here.
                if self.inner.role_and_disk().1 == DiskState::UpToDate {
                    self.abandon_if_redundant(self.inner.local_gi().current);
                }
            }
        }
        self.inner.republish();
        Ok(())
    }

    /// Whether this target must wait: the source said it cannot serve now, or another source is
    /// preferred. A node syncs from one source at a time — the one it started with first — so the
    /// same blocks do not cross the network twice; when that resync ends, the others are usually
    /// redundant ([`Resync::abandon_if_redundant`]).
    fn target_should_pause(&self) -> bool {
        // Behind a congested Primary: this node lacks writes no other peer's data can be trusted
        // to bring (the Primary's resync, once its link drains, will).
        if self.inner.is_behind() {
            return true;
        }
        let paused = *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        if paused.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        let mine = self.rank();
        self.inner
            .live_links()
            .iter()
            .filter(|l| l.peer != self.link.peer)
            .filter_map(|l| l.resync())
            .any(|r| r.role == SyncRole::Target && r.active() && r.rank() < mine)
    }

    /// Which of several target resyncs runs: one from the Primary first (its copy is the one the
    /// application reads, and its marks for this node are the only ones that say for certain what
    /// this node lacks — see [`Resync::abandon_if_redundant`]), then the one started first (what
    /// it already moved need not move again; the others end as redundant when it finishes),
    /// unless its source asked it to wait (`ResyncPaused`).
    fn rank(&self) -> (bool, bool, Instant, u8) {
        let backing_off = self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| Instant::now() < t);
        let from_secondary = self.inner.peer_role(self.link.peer) != Role::Primary;
        (backing_off, from_secondary, self.started, self.link.peer)
    }

    /// Target: what a request for `range` must say about a Primary's writes, and the place it takes
    /// among them. When the source is the Primary, its data and its writes arrive on one connection
    /// in order and nothing is needed. Otherwise the range is locked now — a Primary's write that
    /// arrives from here on (even over a connection not yet up) is applied after the resync data —
    /// and the request names the Primary's newest write already received, for the source to wait for.
    fn request_order(&self, range: Range<u64>) -> (order::RequestOrder, Option<Arc<order::RequestLock>>) {
        if self.inner.peer_role(self.link.peer) == Role::Primary {
            return (order::RequestOrder::NONE, None);
        }
        // The lock before the watermark is read: a write that arrives in between is both waited for
        // by the source and queued behind the resync data here — harmless either way.
        let lock = order::RequestLock::register(&self.inner.apply_order, range);
        let primary = self
            .inner
            .primary_peers()
            .into_iter()
            .filter(|&p| p != self.link.peer)
            .find_map(|p| self.inner.peer(p).and_then(|peer| peer.live()));
        let ord = match primary {
            Some(p) => order::RequestOrder {
                primary: p.peer,
                through: p.writes.received_through(),
            },
            None => order::RequestOrder::NONE,
        };
        (ord, Some(lock))
    }

    /// The SyncTarget's loop: request every out-of-sync block.
    async fn drive(self: Arc<Self>) {
        let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot) else {
            return;
        };
        let mut dead = self.link.dead.subscribe();
        let mut cursor = 0u64;
        let mut paused_state = false;
        loop {
            if self.link.is_dead() || self.finished.load(Ordering::SeqCst) {
                return;
            }
            let (source_disk, _) = self.inner.peer_disk_and_uuid(self.link.peer);
            if matches!(
                source_disk,
                DiskState::Diskless | DiskState::Failed | DiskState::Detaching | DiskState::Inconsistent
            ) {
                self.link.fail(&format!(
                    "the sync source's disk is {source_disk}: it can no longer serve this resync"
                ));
                return;
            }
            if self.target_should_pause() {
                if !paused_state {
                    self.inner
                        .set_replication(self.link.peer, ReplicationState::PausedSyncT);
                    paused_state = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = dead.wait_for(Option::is_some) => return,
                }
                continue;
            }
            if paused_state {
                self.inner
                    .set_replication(self.link.peer, ReplicationState::SyncTarget);
                paused_state = false;
            }
            let next = d.meta.next_out_of_sync(slot, cursor).ok().flatten();
            let in_flight = self.flight().bytes;
            let Some(run) = next else {
                if in_flight > 0 {
                    self.wait_change(&mut dead).await;
                } else if cursor > 0 {
                    cursor = 0;
                } else {
                    self.link.send(frame(Kind::ResyncDone, 0, 0, 0));
                    return;
                }
                continue;
            };
            let len = (run.end - run.start).min(MAX_REQUEST);
            let wait = {
                let mut rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
                rate.delay(len, in_flight, self.inner.app_active())
            };
            if let Some(w) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(w) => {}
                    _ = self.changed.notified() => {}
                    _ = dead.wait_for(Option::is_some) => return,
                }
                continue;
            }
            let seq = self.inner.seq();
            let (req_order, lock) = self.request_order(run.start..run.start + len);
            {
                let mut f = self.flight();
                f.bytes += len;
                f.requests.insert(
                    seq,
                    Request {
                        range: run.start..run.start + len,
                        writes: 0,
                        answered: false,
                        failed: false,
                        lock,
                    },
                );
            }
            let block = d.meta.geometry().bm_block_size() as usize;
            let checksums = match self.inner.cfg.resync.csums {
                Some(alg) => d.store.read(run.start, len as usize).await.ok().map(|local| {
                    // One digest per bitmap block, so only the blocks that differ move.
                    let mut payload = req_order.encode().to_vec();
                    payload.extend_from_slice(&(block as u32).to_le_bytes());
                    for b in local.chunks(block) {
                        payload.extend_from_slice(&alg.digest(b));
                    }
                    payload
                }),
                None => None,
            };
            match checksums {
                Some(payload) => {
                    let mut h = FrameHeader::new(Kind::ChecksumRequest);
                    h.seq = seq;
                    h.sector = run.start / 512;
                    h.aux = len;
                    self.link.send(OutFrame {
                        header: h,
                        payload: Bytes::from(payload),
                    });
                }
                None => {
                    let mut h = FrameHeader::new(Kind::ResyncRequest);
                    h.seq = seq;
                    h.sector = run.start / 512;
                    h.aux = len;
                    self.link.send(OutFrame {
                        header: h,
                        payload: Bytes::copy_from_slice(&req_order.encode()),
                    });
                }
            }
            cursor = run.start + len;
        }
    }

    async fn wait_change(&self, dead: &mut tokio::sync::watch::Receiver<Option<String>>) {
        tokio::select! {
            _ = self.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = dead.wait_for(Option::is_some) => {}
        }
    }

    /// Target: resync data for `offset..offset+len` arrived for request `seq`. Counts it against
    /// the request and returns the request's place among writes (if it took one); `None` if it
    /// answers no request (a protocol violation).
    pub(crate) fn begin_data(
        &self,
        seq: u64,
        offset: u64,
        len: u64,
    ) -> Option<Option<Arc<order::RequestLock>>> {
        let mut f = self.flight();
        let r = f.requests.get_mut(&seq)?;
        let end = offset.saturating_add(len);
        if len == 0 || offset < r.range.start || end > r.range.end {
            return None;
        }
        r.writes += 1;
        if offset == r.range.start && end == r.range.end {
            r.answered = true;
        }
        Some(r.lock.clone())
    }

    /// Target: resync data for request `seq` was written locally (or failed).
    pub(crate) fn data_written(&self, seq: u64, offset: u64, len: u64, ok: bool) {
        if ok {
            if let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot) {
                let _ = d.meta.clear_in_sync(slot, offset, len);
            }
            self.moved.fetch_add(len, Ordering::Relaxed);
        }
        {
            let mut f = self.flight();
            if let Some(r) = f.requests.get_mut(&seq) {
                r.writes = r.writes.saturating_sub(1);
                r.failed |= !ok;
            }
        }
        self.maybe_complete(seq);
    }

    /// Target: the source found the rest of request `seq` in sync.
    pub(crate) fn in_sync(&self, seq: u64, offset: u64, len: u64) -> Result<(), String> {
        {
            let mut f = self.flight();
            let r = f
                .requests
                .get_mut(&seq)
                .ok_or_else(|| format!("in-sync answer {seq} matches no request"))?;
            if r.range.start != offset || r.range.end - r.range.start != len {
                return Err(format!(
                    "in-sync answer {seq} for {offset}+{len} does not match its request"
                ));
            }
            r.answered = true;
        }
        self.maybe_complete(seq);
        Ok(())
    }

    /// Completes request `seq` once every part is answered and written: the whole range is now in
    /// sync (the blocks not written matched), and the source may clear its bits too.
    fn maybe_complete(&self, seq: u64) {
        let done = {
            let mut f = self.flight();
            match f.requests.get(&seq) {
                Some(r) if r.answered && r.writes == 0 => {
                    let r = f.requests.remove(&seq);
                    if let Some(r) = &r {
                        f.bytes -= r.range.end - r.range.start;
                    }
                    r
                }
                _ => None,
            }
        };
        let Some(r) = done else { return };
        if !r.failed {
            let (offset, len) = (r.range.start, r.range.end - r.range.start);
            if let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot) {
                let _ = d.meta.clear_in_sync(slot, offset, len);
            }
            self.link.send(frame(Kind::ResyncAck, seq, offset / 512, len));
        }
        self.changed.notify_waiters();
    }

    /// The link died: the requests in flight will never be answered. Their places among the
    /// Primary's writes (see [`Resync::request_order`]) are given up now, before the link's tasks
    /// are joined: when the source has become the Primary meanwhile, its own writes on this very
    /// link queue behind them, and the receiver's teardown waits for those writes — the link
    /// would never finish closing. Their blocks stay marked out of sync, so the next resync asks
    /// for them again.
    pub(crate) fn link_died(&self) {
        let mut f = self.flight();
        f.requests.clear();
        f.bytes = 0;
    }

    /// Target: the source cannot serve now; put the request back and wait a while.
    pub(crate) fn paused(&self, seq: u64) {
        let mut f = self.flight();
        if let Some(r) = f.requests.remove(&seq) {
            f.bytes -= r.range.end - r.range.start;
        }
        drop(f);
        *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Instant::now() + Duration::from_secs(1));
        self.changed.notify_waiters();
    }

    /// Source: serve a request (data, or with `checksum` a digest comparison).
    pub(crate) fn serve(
        self: &Arc<Self>,
        h: FrameHeader,
        payload: Bytes,
        checksum: bool,
    ) -> Result<(), String> {
        let offset = super::apply::byte_offset(&h)?;
        let len = h.aux;
        let size = self.inner.size;
        if len == 0
            || len > MAX_REQUEST
            || offset.checked_add(len).is_none_or(|e| e > size)
            || !offset.is_multiple_of(512)
            || !len.is_multiple_of(512)
        {
            return Err(format!(
                "resync request for {offset}+{len} is outside the {size}-byte volume or misaligned"
            ));
        }
        if let Some(why) = self.cannot_serve() {
            return Err(why.to_owned());
        }
        let (ord, _) = order::RequestOrder::decode(&payload)?;
        let digest = checksum.then(|| payload.slice(order::PREFIX..));
        // The target already holds the Primary's writes through `ord.through`: read only once they
        // are applied here too. Without a connection to that Primary they may never be.
        let primary_link = if ord.primary == order::NO_PRIMARY || ord.primary == self.inner.cfg.node_id {
            None
        } else {
            match self.inner.peer(ord.primary).and_then(|p| p.live()) {
                Some(l) => Some(l),
                None => {
                    self.link.send(frame(Kind::ResyncPaused, h.seq, h.sector, len));
                    return Ok(());
                }
            }
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let Some(d) = &me.inner.disk else { return };
            if let Some(pl) = primary_link {
                let (mut theirs, mut mine) = (pl.dead.subscribe(), me.link.dead.subscribe());
                tokio::select! {
                    _ = pl.writes.wait_through(ord.through) => {}
                    _ = theirs.wait_for(Option::is_some) => {
                        me.link.send(frame(Kind::ResyncPaused, h.seq, h.sector, len));
                        return;
                    }
                    _ = mine.wait_for(Option::is_some) => return,
                }
            }
            // No write to the range is half done while we read it, and none starts until the data
            // is queued behind whatever was sent before.
            let _lock = me.inner.intervals.resync_read(offset..offset + len).await;
            // Checked again after the read: a disk that became Inconsistent only during it may
            // already hold the new source's blocks (its resync starts after the state change).
            let data = match d.store.read(offset, len as usize).await {
                Ok(b) if me.cannot_serve().is_none() => b,
                Ok(_) => {
                    me.link.fail(me.cannot_serve().unwrap_or(DETACHED_SOURCE));
                    return;
                }
                Err(e) => {
                    me.link
                        .fail(&format!("reading {offset}+{len} for the resync failed: {e}"));
                    return;
                }
            };
            if let (Some(theirs), Some(alg)) = (&digest, me.inner.cfg.resync.csums) {
                me.send_differing(&h, offset, &data, theirs, alg);
                return;
            }
            me.moved.fetch_add(len, Ordering::Relaxed);
            let mut rh = FrameHeader::new(Kind::ResyncData);
            rh.seq = h.seq;
            rh.sector = h.sector;
            me.link.send(OutFrame {
                header: rh,
                payload: data,
            });
        });
        Ok(())
    }

    /// Source: why this node's disk cannot serve resync data now, if it cannot.
    fn cannot_serve(&self) -> Option<&'static str> {
        if self.inner.is_detached() {
            Some(DETACHED_SOURCE)
        } else if self.inner.role_and_disk().1 == DiskState::Inconsistent {
            Some(INCONSISTENT_SOURCE)
        } else {
            None
        }
    }

    /// Source, checksum resync: sends the runs of blocks whose digest differs from the target's,
    /// then closes the request with "in sync" for the rest.
    fn send_differing(&self, h: &FrameHeader, offset: u64, data: &Bytes, theirs: &[u8], alg: DigestAlg) {
        let block = theirs
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes) as usize;
        let dlen = alg.digest(&[]).len();
        let digests = &theirs[4.min(theirs.len())..];
        let blocks = if block == 0 { 0 } else { data.len().div_ceil(block) };
        let differs = |i: usize| {
            let theirs = digests.get(i * dlen..(i + 1) * dlen);
            let ours = alg.digest(&data[i * block..((i + 1) * block).min(data.len())]);
            theirs.is_none_or(|t| t != ours.as_slice())
        };
        if block == 0 || !block.is_power_of_two() || digests.len() != blocks * dlen {
            // Malformed digests: send everything rather than trust them.
            self.moved.fetch_add(data.len() as u64, Ordering::Relaxed);
            let mut rh = FrameHeader::new(Kind::ResyncData);
            rh.seq = h.seq;
            rh.sector = h.sector;
            self.link.send(OutFrame {
                header: rh,
                payload: data.clone(),
            });
            return;
        }
        let mut i = 0;
        while i < blocks {
            if !differs(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < blocks && differs(i) {
                i += 1;
            }
            let (a, b) = (start * block, (i * block).min(data.len()));
            self.moved.fetch_add((b - a) as u64, Ordering::Relaxed);
            let mut rh = FrameHeader::new(Kind::ResyncData);
            rh.seq = h.seq;
            rh.sector = (offset + a as u64) / 512;
            self.link.send(OutFrame {
                header: rh,
                payload: data.slice(a..b),
            });
        }
        self.link
            .send(frame(Kind::InSync, h.seq, h.sector, data.len() as u64));
    }

    /// Source: the target wrote a range.
    pub(crate) fn acked(&self, offset: u64, len: u64) {
        if let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot) {
            let _ = d.meta.clear_in_sync(slot, offset, len);
        }
    }

    /// Source: the target has nothing left; forget the bitmap UUID and tell it the generation.
    pub(crate) async fn source_done(&self, abandoned: bool) -> Result<(), String> {
        let Some(d) = &self.inner.disk else { return Ok(()) };
        let Some(slot) = self.link.slot else { return Ok(()) };
        let meta = Arc::clone(&d.meta);
        let size = d.size();
        let primary = self.inner.role() == Role::Primary;
        let current = tokio::task::spawn_blocking(move || -> Result<u64, replbd_bitmap::MetaError> {
            if abandoned {
                meta.clear_in_sync(slot, 0, size)?;
            }
            meta.flush()?;
            meta.update(|gi, flags| {
                gi.clear_bitmap_uuid(slot);
                // Whatever a crash as Primary left behind is resolved with this peer now — unless
                // this node is Primary right now: then the flag means "Primary, not demoted
                // cleanly", and a crash from here on must still be found by the next handshake.
                if !primary {
                    flags.set(NodeFlags::CRASHED_PRIMARY, false);
                }
                gi.current
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.finished.store(true, Ordering::SeqCst);
        self.link.send(frame(Kind::ResyncFinished, 0, 0, current));
        // Reported before Established: whoever sees the connection in sync sees the event too.
        self.report_finished(true);
        self.inner
            .set_replication(self.link.peer, ReplicationState::Established);
        // The peer's disk counts as UpToDate when the peer says so (its state report after it
        // persisted the new generation), not before.
        tracing::info!(resource = %self.inner.cfg.name, peer = self.link.peer, moved = self.moved.load(Ordering::Relaxed), seconds = self.started.elapsed().as_secs_f64(), "resync finished (source)");
        Ok(())
    }

    /// Target: this node became UpToDate through another source. A paused resync from a Secondary
    /// that is UpToDate at the same generation has nothing left to move — both hold that
    /// generation's data — so it ends here, its bits cleared on both sides.
    ///
    /// Never a resync from the Primary: its bits for this node are writes it made that this node
    /// did not receive from it, and the third node this node synced from may lack some of them too
    /// — blocks that node itself got by resync from the Primary are not passed on (found by
    /// `replbd-faults`: a node resynced through a Secondary, its resync from the Primary abandoned,
    /// reported UpToDate with one block older than the Primary's).
    pub(crate) fn abandon_if_redundant(&self, our_uuid: u64) {
        if self.role != SyncRole::Target || !self.running() {
            return;
        }
        if self.inner.peer_role(self.link.peer) == Role::Primary {
            return;
        }
        let (disk, uuid) = self.inner.peer_disk_and_uuid(self.link.peer);
        if disk == DiskState::UpToDate && uuid == our_uuid & !1 {
            tracing::info!(resource = %self.inner.cfg.name, peer = self.link.peer, "resync no longer needed: both nodes hold the same generation");
            self.abandoned.store(true, Ordering::SeqCst);
            let mut h = FrameHeader::new(Kind::ResyncDone);
            h.flags = crate::wire::FrameFlags::FLUSH;
            self.link.send(OutFrame::bare(h));
        }
    }

    /// Target: the slots of third nodes that the source tracks changes for and that this node could
    /// not reach during the whole resync (so the resync's writes are all marked for them).
    fn slots_to_track_as_the_source_does(&self) -> Vec<replbd_bitmap::PeerSlot> {
        self.absent_third_node_slots(|n| {
            n < 64 && self.absent_at_start & (1 << n) != 0 && self.link.peer_tracks(n)
        })
    }

    /// Target: the slots of nodes other than the source, not connected now, whose last report
    /// named generation `uuid` (what this node holds once the resync ends).
    fn absent_slots_at_generation(&self, uuid: u64) -> Vec<replbd_bitmap::PeerSlot> {
        self.absent_third_node_slots(|n| uuid != 0 && self.inner.peer_disk_and_uuid(n).1 == uuid)
    }

    /// The slots of nodes other than the source that are not connected now and satisfy `which`.
    fn absent_third_node_slots(&self, which: impl Fn(u8) -> bool) -> Vec<replbd_bitmap::PeerSlot> {
        self.inner
            .peers()
            .iter()
            .filter(|p| {
                let n = p.cfg.node_id;
                n != self.link.peer && p.live().is_none() && which(n)
            })
            .filter_map(|p| p.slot)
            .collect()
    }

    /// Target: the resync is over; adopt the source's generation and become UpToDate.
    pub(crate) async fn target_finished(&self, source_uuid: u64) -> Result<(), String> {
        let Some(d) = &self.inner.disk else { return Ok(()) };
        let Some(slot) = self.link.slot else { return Ok(()) };
        let meta = Arc::clone(&d.meta);
        let (abandoned, size) = (self.abandoned.load(Ordering::SeqCst), d.size());
        let source_lineage = self.link.lineage();
        let take_over = self.slots_to_track_as_the_source_does();
        let caught_up_to_absent = self.absent_slots_at_generation(source_uuid & !1);
        tokio::task::spawn_blocking(move || -> Result<(), replbd_bitmap::MetaError> {
            if abandoned {
                meta.clear_in_sync(slot, 0, size)?;
            }
            meta.flush()?;
            meta.update(|gi, flags| {
                let new = source_uuid & !1;
                // The data is the source's now, and so is its lineage (DRBD copies the source's
                // bitmap and history UUIDs at this point too): without it, a node that shares a
                // generation only with the source would find this one unrelated (found by
                // `replbd-faults`: a crashed Primary's peer, resynced through the new Primary,
                // refused as "no UUID in common" when the old Primary returned). Ours stays in
                // the history, newest; the source's older ones behind it. Crash ordering: one
                // metadata update, with the new current UUID and the flags below.
                let old = gi.current;
                for &u in source_lineage.iter().rev() {
                    if u != new && u != old && !gi.history.contains(&u) {
                        gi.push_history(u);
                    }
                }
                if old != new {
                    gi.push_history(old);
                }
                gi.current = new;
                gi.clear_bitmap_uuid(slot);
                // The source tracks changes for these absent nodes since some generation of its
                // own; this node's bitmap for them holds every block changed here since `old`
                // (resync data and replicated writes alike are marked for absent peers as they
                // are applied), so its slot now tracks `old` — as the source's would. Without it,
                // a node that tracks the source as of `old` found this one unrelated when it came
                // back (found by `replbd-faults` in the VM: an old Primary refused as "no UUID in
                // common" by a node resynced by the new Primary right after its promotion).
                let old_is_real = old & !1 > UUID_JUST_CREATED && old & !1 != new;
                for &s in &take_over {
                    if old_is_real && gi.peers[s.index()].bitmap_uuid == 0 {
                        gi.peers[s.index()].bitmap_uuid = old & !1;
                    }
                }
                // Absent nodes last seen at the generation this node now holds: this node's data
                // is that generation's, and every block it changed since such a node left (resync
                // data included) is marked for it, so its slot tracks `new` rather than an older
                // generation it still named (a node that was this one's sync source and died
                // mid-resync: the slot named the generation before the resync, and its return
                // after this node's promotion was a full sync by rule 8, or a split brain).
                for &s in &caught_up_to_absent {
                    let slot = &mut gi.peers[s.index()].bitmap_uuid;
                    if *slot != 0 && *slot & !1 != new {
                        *slot = new;
                    }
                }
                flags.set(NodeFlags::CONSISTENT, true);
                flags.set(NodeFlags::WAS_UP_TO_DATE, true);
                flags.set(NodeFlags::CRASHED_PRIMARY, false);
                // The writes it never completed as a Primary without quorum are overwritten.
                flags.set(NodeFlags::PRIMARY_LOST_QUORUM, false);
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.finished.store(true, Ordering::SeqCst);
        self.inner
            .set_replication(self.link.peer, ReplicationState::Established);
        self.inner.change(|c| {
            if c.disk != DiskState::UpToDate {
                c.disk = DiskState::UpToDate;
                vec![Event::Disk(DiskState::UpToDate)]
            } else {
                Vec::new()
            }
        });
        self.inner.broadcast_state();
        self.report_finished(false);
        let our_uuid = source_uuid & !1;
        for l in self.inner.live_links() {
            if let Some(r) = l.resync()
                && l.peer != self.link.peer
            {
                r.abandon_if_redundant(our_uuid);
            }
        }
        tracing::info!(resource = %self.inner.cfg.name, peer = self.link.peer, moved = self.moved.load(Ordering::Relaxed), seconds = self.started.elapsed().as_secs_f64(), "resync finished (target): UpToDate");
        if !abandoned {
            *super::core::lock(&self.inner.last_sync) = Some((source_uuid & !1, self.link.peer));
        }
        self.inner.lost_primary_synced_from(self.link.peer);
        // `connect --discard-my-data` has done its work: this node now holds the peer's data.
        if let Some(p) = self.inner.peer(self.link.peer) {
            p.discard_my_data.store(false, Ordering::SeqCst);
        }
        // Blocks the source reported missing here after this resync had walked past them.
        if d.meta.out_of_sync_bits(slot).unwrap_or(0) > 0 && self.inner.role() != Role::Primary {
            tracing::info!(resource = %self.inner.cfg.name, peer = self.link.peer, "blocks marked during the resync remain; resyncing them");
            command::begin_resync(&self.inner, &self.link, SyncRole::Target, false, true)?;
        }
        Ok(())
    }

    fn report_finished(&self, source: bool) {
        // Both nodes hold the same data now, and this node tracks the peer from here on: a peer
        // added at run time needs no full sync any more (see `super::membership`).
        if let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot)
            && d.meta.full_sync_pending(slot)
            && let Err(e) = d
                .meta
                .set_peer_flags(slot, replbd_bitmap::PeerFlags::FULL_SYNC, false)
        {
            tracing::warn!(resource = %self.inner.cfg.name, peer = self.link.peer, error = %e, "cannot clear the full-sync flag; the next resync with this peer is a full one again");
        }
        let e = Event::ResyncFinished {
            peer: self.link.peer,
            source,
            bytes_moved: self.moved.load(Ordering::Relaxed),
            seconds: self.started.elapsed().as_secs_f64(),
        };
        self.inner.change(|_| vec![e]);
    }

    /// True from creation to the end: starting, exchanging bitmaps or moving data.
    pub(crate) fn active(&self) -> bool {
        !self.finished.load(Ordering::SeqCst)
    }

    /// True once the exchange completed.
    pub(crate) fn running(&self) -> bool {
        self.bitmap_done.load(Ordering::SeqCst) && !self.finished.load(Ordering::SeqCst)
    }
}
