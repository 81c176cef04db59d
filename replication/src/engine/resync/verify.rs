//! Online verify: compare this node's data with a peer's without moving it.
//!
//! ```text
//!   VerifyS (the node where `verify` runs)          VerifyT (the peer)
//!   read 1 MiB, one digest per bitmap block ──▶ read the same range, compare each digest
//!   mark the blocks that differ ◀────────────── VerifyReply: a bitmap of the blocks that differ
//!   … to the end of the device
//!   VerifyDone ───────────────────────────────▶
//! ```
//!
//! Only digests cross the wire. Blocks that differ are marked out of sync on both nodes and reported
//! with their exact sector ranges (log, and a `VerifyFinished` event); nothing is fixed — a later
//! resync (reconnect, `invalidate`, `invalidate-remote`) moves them. Reads of a range hold the range
//! lock, so a write in flight on this node does not show up as a difference; a write applied on the
//! peer between the two reads can still show up as one (DRBD has the same caveat), and marking it is
//! harmless.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use replbd_quorum::ReplicationState;
use tokio::sync::Notify;

use super::DigestAlg;
use crate::engine::core::Inner;
use crate::engine::link::Link;
use crate::engine::state::Event;
use crate::wire::{FrameHeader, Kind, OutFrame};

/// Bytes compared per request.
const CHUNK: u64 = 1 << 20;
/// Requests in flight.
const WINDOW: u64 = 8;

/// The verify of one link, on either end.
pub(crate) struct Verify {
    inner: Arc<Inner>,
    link: Arc<Link>,
    /// True on the node that started it.
    pub initiator: bool,
    started: Instant,
    differing: Mutex<Vec<Range<u64>>>,
    in_flight: AtomicU64,
    changed: Notify,
    done: AtomicBool,
}

fn digests(alg: DigestAlg, data: &[u8], block: usize) -> Vec<u8> {
    let mut out = (block as u32).to_le_bytes().to_vec();
    for b in data.chunks(block) {
        out.extend_from_slice(&alg.digest(b));
    }
    out
}

impl Verify {
    pub(crate) fn new(inner: Arc<Inner>, link: Arc<Link>, initiator: bool) -> Arc<Verify> {
        Arc::new(Verify {
            inner,
            link,
            initiator,
            started: Instant::now(),
            differing: Mutex::default(),
            in_flight: AtomicU64::new(0),
            changed: Notify::new(),
            done: AtomicBool::new(false),
        })
    }

    fn alg(&self) -> DigestAlg {
        self.inner.cfg.resync.verify
    }

    fn block(&self) -> usize {
        self.inner
            .disk
            .as_ref()
            .map_or(4096, |d| d.meta.geometry().bm_block_size() as usize)
    }

    /// Records `range` as out of sync with the peer.
    fn mark(&self, range: Range<u64>) {
        if let (Some(d), Some(slot)) = (&self.inner.disk, self.link.slot) {
            let _ = d
                .meta
                .mark_out_of_sync(slot, range.start, range.end - range.start);
        }
        let mut diff = self.differing.lock().unwrap_or_else(PoisonError::into_inner);
        match diff.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => diff.push(range),
        }
    }

    /// VerifyS: walks the device.
    pub(crate) async fn run(self: Arc<Self>) {
        let Some(d) = &self.inner.disk else { return };
        self.inner
            .set_replication(self.link.peer, ReplicationState::VerifyS);
        let size = d.size();
        let mut dead = self.link.dead.subscribe();
        let mut pos = 0u64;
        while pos < size {
            if self.link.is_dead() {
                return;
            }
            if self.in_flight.load(Ordering::SeqCst) >= WINDOW {
                tokio::select! {
                    _ = self.changed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = dead.wait_for(Option::is_some) => return,
                }
                continue;
            }
            let len = CHUNK.min(size - pos);
            let data = {
                let _lock = self.inner.intervals.resync_read(pos..pos + len).await;
                match d.store.read(pos, len as usize).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(resource = %self.inner.cfg.name, offset = pos, error = %e, "online verify: local read failed");
                        return;
                    }
                }
            };
            let mut h = FrameHeader::new(Kind::VerifyRequest);
            h.seq = self.inner.seq();
            h.sector = pos / 512;
            h.aux = len;
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            self.link.send(OutFrame {
                header: h,
                payload: Bytes::from(digests(self.alg(), &data, self.block())),
            });
            pos += len;
        }
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = dead.wait_for(Option::is_some) => return,
            }
        }
        self.link.send(OutFrame::bare(FrameHeader::new(Kind::VerifyDone)));
        self.finish();
    }

    /// VerifyT: compares one range with the initiator's digests and answers.
    pub(crate) fn compare(self: &Arc<Self>, h: FrameHeader, payload: Bytes) -> Result<(), String> {
        let offset = h.sector.checked_mul(512).ok_or("sector overflows")?;
        let len = h.aux;
        let size = self.inner.size;
        if len == 0 || len > CHUNK || offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(format!(
                "verify request for {offset}+{len} is outside the {size}-byte volume"
            ));
        }
        self.inner
            .set_replication(self.link.peer, ReplicationState::VerifyT);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let Some(d) = &me.inner.disk else { return };
            let data = {
                let _lock = me.inner.intervals.resync_read(offset..offset + len).await;
                match d.store.read(offset, len as usize).await {
                    Ok(b) => b,
                    Err(e) => {
                        me.link
                            .fail(&format!("online verify: reading {offset}+{len} failed: {e}"));
                        return;
                    }
                }
            };
            let block = payload
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes) as usize;
            let alg = me.alg();
            let dlen = alg.digest(&[]).len();
            let theirs = payload.get(4..).unwrap_or_default();
            let blocks = if block == 0 { 0 } else { data.len().div_ceil(block) };
            let mut bits = vec![0u8; blocks.div_ceil(8)];
            if block == 0 || theirs.len() != blocks * dlen {
                tracing::warn!(resource = %me.inner.cfg.name, peer = me.link.peer, "online verify: malformed digests; the whole range counts as different");
                bits.fill(0xff);
            }
            for i in 0..blocks {
                let ours = alg.digest(&data[i * block..((i + 1) * block).min(data.len())]);
                if theirs
                    .get(i * dlen..(i + 1) * dlen)
                    .is_none_or(|t| t != ours.as_slice())
                {
                    bits[i / 8] |= 1 << (i % 8);
                    let s = offset + (i * block) as u64;
                    me.mark(s..(s + block as u64).min(offset + len));
                }
            }
            let mut rh = FrameHeader::new(Kind::VerifyReply);
            rh.seq = h.seq;
            rh.sector = h.sector;
            rh.aux = len;
            me.link.send(OutFrame {
                header: rh,
                payload: Bytes::from(bits),
            });
        });
        Ok(())
    }

    /// VerifyS: the peer's answer for one range.
    pub(crate) fn reply(&self, h: FrameHeader, payload: &[u8]) -> Result<(), String> {
        let offset = h.sector.checked_mul(512).ok_or("sector overflows")?;
        let len = h.aux;
        let block = self.block() as u64;
        let blocks = len.div_ceil(block) as usize;
        if payload.len() != blocks.div_ceil(8) {
            return Err(format!(
                "verify reply for {offset}+{len} has {} bytes, expected {}",
                payload.len(),
                blocks.div_ceil(8)
            ));
        }
        for i in 0..blocks {
            if payload[i / 8] & (1 << (i % 8)) != 0 {
                let s = offset + i as u64 * block;
                self.mark(s..(s + block).min(offset + len));
            }
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Either end: the verify is complete. Reports the differing ranges.
    pub(crate) fn finish(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(d) = &self.inner.disk {
            let _ = d.meta.flush();
        }
        let ranges: Vec<Range<u64>> = self
            .differing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        for r in &ranges {
            tracing::warn!(resource = %self.inner.cfg.name, peer = self.link.peer, start_sector = r.start / 512, end_sector = r.end / 512 - 1, "online verify: out of sync");
        }
        tracing::info!(resource = %self.inner.cfg.name, peer = self.link.peer, out_of_sync_bytes = bytes, ranges = ranges.len(), seconds = self.started.elapsed().as_secs_f64(), "online verify finished");
        self.inner
            .set_replication(self.link.peer, ReplicationState::Established);
        let sectors = ranges.iter().map(|r| (r.start / 512, r.end / 512)).collect();
        let e = Event::VerifyFinished {
            peer: self.link.peer,
            initiator: self.initiator,
            out_of_sync_bytes: bytes,
            sectors,
        };
        self.inner.change(|_| vec![e]);
    }
}
