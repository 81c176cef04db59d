//! The Primary's I/O paths: how an application request becomes local and remote I/O.
//!
//! ```text
//! write ─▶ activity log covers the range ─▶ credits on each live link
//!       ─▶ [epoch lock] join epoch, register on every live link, queue data frames
//!       ─▶ mark out of sync for every diskful peer without a live link
//!       ─▶ local write ∥ peers ─▶ wait until no path is pending ─▶ close the epoch (barrier)
//! ```
//!
//! Flush closes the current epoch and waits until every protocol-C peer acknowledged the barrier
//! (every earlier write durable there) and every protocol-B peer received it, while the local disk
//! is flushed. Reads go to the local disk or an UpToDate peer by the read-balancing policy, and a
//! failed remote read is retried on the next copy.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use replbd_bitmap::{Metadata, WriteGuard};
use replbd_quorum::{DiskState, Protocol, Role};

use super::config::ReadBalancing;
use super::core::Inner;
use super::epoch::{self, Closed};
use super::link::Link;
use super::request::{WriteKind, WriteRequest};
use crate::volume::{VolumeError, VolumeResult, check_range};
use crate::wire::{FrameFlags, FrameHeader, Kind, OutFrame};

/// Discards and zeroing are split into pieces the activity log can cover at once.
const MAX_PIECE: u64 = 128 << 20;

/// Takes the activity-log reference for a range, writing a transaction if needed (off the async
/// threads).
pub(crate) async fn al_begin(meta: &Arc<Metadata>, offset: u64, len: u64) -> VolumeResult<WriteGuard> {
    match meta.try_begin_write(offset, len) {
        Ok(Some(g)) => Ok(g),
        Ok(None) => {
            let m = Arc::clone(meta);
            tokio::task::spawn_blocking(move || m.begin_write(offset, len))
                .await
                .map_err(|e| {
                    VolumeError::Io(std::io::Error::other(format!("activity-log task failed: {e}")))
                })?
                .map_err(|e| VolumeError::Io(std::io::Error::other(e.to_string())))
        }
        Err(e) => Err(VolumeError::Io(std::io::Error::other(e.to_string()))),
    }
}

fn io_error(e: &std::io::Error) -> VolumeError {
    VolumeError::Io(std::io::Error::new(e.kind(), e.to_string()))
}

impl Inner {
    fn not_primary(&self) -> VolumeError {
        VolumeError::NotPrimary {
            resource: self.cfg.name.clone(),
        }
    }

    fn check_access(&self, offset: u64, len: u64) -> VolumeResult<()> {
        if self.is_shutting_down() {
            return Err(VolumeError::ShuttingDown);
        }
        if !self.primary.load(Ordering::SeqCst) {
            return Err(self.not_primary());
        }
        check_range(offset, len, self.volume_size())
    }

    /// Queues a barrier closing `closed` on every live link. Called with the epoch lock held.
    fn send_barrier(&self, closed: Closed, flush: bool) {
        let mut h = FrameHeader::new(Kind::Barrier);
        h.aux = closed.0;
        if flush {
            h.flags = FrameFlags::FLUSH;
        }
        let mut sent_to = 0;
        for l in self.live_data_links() {
            l.send(OutFrame::bare(h));
            sent_to |= super::peer_ack::bit(l.peer);
        }
        let ready = self.peer_acks.closed(closed.0, sent_to);
        self.send_peer_acks(ready);
    }

    /// Sends the barrier of an epoch closed by a completion that no write took along
    /// ([`epoch::LAZY_BARRIER_DELAY`] after the first completion, and then as long as there are
    /// more), until the resource shuts down. Runs as a task for the resource's life.
    pub(crate) async fn run_barrier_timer(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = self.barrier_timer.notified() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            loop {
                tokio::time::sleep(epoch::LAZY_BARRIER_DELAY).await;
                if !self.send_unsent_barrier() {
                    break;
                }
            }
        }
        // Going down: the peers get the last barrier rather than a connection ending mid-epoch.
        self.send_unsent_barrier();
    }

    /// Sends the barrier no write took along, if any (false: none, and the timer stops).
    fn send_unsent_barrier(&self) -> bool {
        let mut ep = epoch::lock(&self.epochs);
        let unsent = ep.timer_fired();
        if let Some(c) = unsent {
            self.send_barrier(c, false);
        }
        unsent.is_some()
    }

    /// A write, discard or zeroing from the application.
    pub(crate) async fn write_path(
        self: &Arc<Self>,
        offset: u64,
        kind: WriteKind,
        data: Bytes,
        len: u64,
        fua: bool,
    ) -> VolumeResult<()> {
        self.check_access(offset, len)?;
        let _active = self.begin_io();
        // Before the rotation: a Primary cut off from the quorum starts no new generation.
        self.quorum_gate().await?;
        // Before the rotation too: going Ahead of a peer starts a new generation, and this write
        // must not be the one the peer's generation lacks unmarked.
        self.check_congestion(len);
        self.rotate_if_pending().await?;
        if kind != WriteKind::Data && len > MAX_PIECE {
            let mut pos = offset;
            while pos < offset + len {
                let n = MAX_PIECE.min(offset + len - pos);
                Box::pin(self.write_one(pos, kind, Bytes::new(), n, fua)).await?;
                pos += n;
            }
            return Ok(());
        }
        self.write_one(offset, kind, data, len, fua).await
    }

    async fn write_one(
        self: &Arc<Self>,
        offset: u64,
        kind: WriteKind,
        data: Bytes,
        len: u64,
        fua: bool,
    ) -> VolumeResult<()> {
        // Overlapping writes in order, and never while a resync read of the range is under way.
        let _range = self.intervals.write(offset..offset + len).await;
        self.note_app_io();
        let guard = match &self.disk {
            Some(d) => Some(al_begin(&d.meta, offset, len).await?),
            None => None,
        };
        // Credits before the epoch lock: waiting for a slow peer must not block other writers' dispatch.
        let mut targets: Vec<(Arc<Link>, Option<tokio::sync::OwnedSemaphorePermit>)> = Vec::new();
        let mut ahead_of = Vec::new();
        for l in self.live_data_links() {
            if l.is_ahead() {
                ahead_of.push(l);
                continue;
            }
            let bytes = if kind == WriteKind::Data { len } else { 0 };
            if let Some(permit) = l.credits(bytes).await {
                targets.push((l, Some(permit)));
            }
        }
        if self.local().is_none() && targets.is_empty() {
            return Err(VolumeError::NoData {
                resource: self.cfg.name.clone(),
            });
        }
        let mut header = FrameHeader::new(match kind {
            WriteKind::Data => Kind::Data,
            WriteKind::Discard => Kind::Discard,
            WriteKind::Zeroes => Kind::WriteZeroes,
        });
        header.sector = offset / 512;
        if fua {
            header.flags = FrameFlags::FUA;
        }
        let payload = if kind == WriteKind::Data {
            data.clone()
        } else {
            Bytes::copy_from_slice(&len.to_le_bytes())
        };
        let mut reached = Vec::with_capacity(targets.len());
        let req = {
            let mut ep = epoch::lock(&self.epochs);
            // Numbered under the epoch lock: every connection carries the writes in `seq` order,
            // which resync from a Secondary relies on (`resync::order`).
            let seq = self.seq();
            header.seq = seq;
            let (e, unsent) = ep.join();
            if let Some(c) = unsent {
                self.send_barrier(c, false);
            }
            header.aux = e;
            let paths = targets.len() as u32 + u32::from(self.local().is_some());
            let req = Arc::new(WriteRequest::new(offset, len, kind, e, seq, paths, guard));
            for (link, permit) in targets {
                let frame = OutFrame {
                    header,
                    payload: payload.clone(),
                };
                if link.register(&req, frame, permit).is_ok() {
                    reached.push(link.peer);
                } else {
                    req.path_done(false);
                }
            }
            // Marked inside the epoch lock: a peer whose link goes live next snapshots its bitmap
            // only after this, so the bit cannot be missed by the exchange at connect.
            if let Some(d) = &self.disk {
                for p in self.peers().iter() {
                    if let Some(slot) = p.slot
                        && !reached.contains(&p.cfg.node_id)
                    {
                        let _ = d.meta.mark_out_of_sync(slot, offset, len);
                    }
                }
            }
            for l in &ahead_of {
                Self::tell_out_of_sync(l, offset, len);
            }
            // A detached disk misses every write from here on.
            if self.is_detached() {
                self.mark_missed_locally(offset..offset + len);
            }
            self.peer_acks
                .write(e, reached.iter().fold(0, |m, &p| m | super::peer_ack::bit(p)));
            if ep.is_full()
                && let Some(c) = ep.close()
            {
                self.send_barrier(c, false);
            }
            req
        };
        if let Some(d) = self.local() {
            let local = match kind {
                WriteKind::Data => d.store.write(offset, data, fua).await,
                WriteKind::Discard => d.store.discard(offset, len).await,
                WriteKind::Zeroes => d.store.write_zeroes(offset, len).await,
            };
            match local {
                Ok(()) => req.path_done(true),
                Err(e) => {
                    tracing::error!(resource = %self.cfg.name, offset, len, error = %e, "local write failed");
                    self.detach_after_error("write", &e, Some(offset..offset + len));
                    req.local_failed(e.to_string());
                }
            }
            d.meta.add_dagtag(len / 512);
        }
        let result = req.wait().await;
        if epoch::lock(&self.epochs).completed(req.epoch) {
            self.barrier_timer.notify_one();
        }
        result.map_err(|e| VolumeError::Io(std::io::Error::other(e)))?;
        // A peer failed this write: its link's failure updated the quorum before the request
        // completed, so a write that reached only a minority is not acknowledged.
        if req.had_failed_path() {
            self.quorum_gate().await?;
        }
        Ok(())
    }

    /// Flush: every write acknowledged before it is durable locally and on every protocol-C peer
    /// (received on protocol-B peers).
    pub(crate) async fn flush_path(self: &Arc<Self>) -> VolumeResult<()> {
        if !self.primary.load(Ordering::SeqCst) {
            return Err(self.not_primary());
        }
        let _active = self.begin_io();
        self.quorum_gate().await?;
        let (target, links) = {
            let mut ep = epoch::lock(&self.epochs);
            for c in ep.close_all() {
                self.send_barrier(c, true);
            }
            (ep.last_closed(), self.live_data_links())
        };
        let local = async {
            match self.local() {
                Some(d) => match d.store.flush().await {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        self.detach_after_error("flush", &e, None);
                        Err(io_error(&e))
                    }
                },
                None => Ok(false),
            }
        };
        let remote = async {
            let mut durable = 0usize;
            for l in &links {
                let mut dead = l.dead.subscribe();
                let reached = match l.protocol {
                    Protocol::A => continue,
                    Protocol::B => {
                        let mut rx = l.received_epoch.subscribe();
                        tokio::select! {
                            r = rx.wait_for(|e| *e >= target) => r.is_ok(),
                            _ = dead.wait_for(Option::is_some) => false,
                        }
                    }
                    Protocol::C => {
                        let mut rx = l.acked_epoch.subscribe();
                        tokio::select! {
                            r = rx.wait_for(|e| *e >= target) => r.is_ok(),
                            _ = dead.wait_for(Option::is_some) => false,
                        }
                    }
                };
                durable += usize::from(reached);
            }
            durable
        };
        let (local, durable_peers) = tokio::join!(local, remote);
        match local {
            Ok(_) => Ok(()),
            // The local flush failed: the data is still durable wherever a peer confirmed it.
            Err(e) if durable_peers > 0 => {
                tracing::error!(resource = %self.cfg.name, error = %e, "local flush failed; data is durable on peers");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A read by the application.
    pub(crate) async fn read_path(self: &Arc<Self>, offset: u64, len: u32) -> VolumeResult<Bytes> {
        self.check_access(offset, u64::from(len))?;
        let _active = self.begin_io();
        self.quorum_gate().await?;
        let (_, disk_state) = self.role_and_disk();
        let local_ok = self.local().is_some() && disk_state == DiskState::UpToDate;
        let mut remote = self.up_to_date_peers();
        let prefer_local = match self.cfg.read_balancing {
            ReadBalancing::PreferLocal => true,
            ReadBalancing::PreferRemote => remote.is_empty(),
            ReadBalancing::RoundRobin => {
                let n = remote.len() + usize::from(local_ok);
                let pick = self.round_robin.fetch_add(1, Ordering::Relaxed) % n.max(1);
                if pick < remote.len() {
                    remote.rotate_left(pick);
                    false
                } else {
                    true
                }
            }
            ReadBalancing::LeastPending => {
                remote.sort_by_key(|l| l.reads_pending.load(Ordering::Relaxed));
                remote
                    .first()
                    .is_none_or(|l| l.reads_pending.load(Ordering::Relaxed) > 0)
            }
        };
        if local_ok
            && prefer_local
            && let Some(d) = self.local()
        {
            match d.store.read(offset, len as usize).await {
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::error!(resource = %self.cfg.name, offset, len, error = %e, "local read failed; trying peers");
                    self.detach_after_error("read", &e, Some(offset..offset + u64::from(len)));
                }
            }
        }
        for link in &remote {
            match self.remote_read(link, offset, len).await {
                Ok(b) => return Ok(b),
                Err(errno) => {
                    tracing::warn!(resource = %self.cfg.name, peer = link.peer, offset, len, errno, "remote read failed; trying the next copy")
                }
            }
        }
        if local_ok
            && !prefer_local
            && let Some(d) = self.local()
        {
            return d.store.read(offset, len as usize).await.map_err(|e| {
                self.detach_after_error("read", &e, Some(offset..offset + u64::from(len)));
                io_error(&e)
            });
        }
        Err(VolumeError::NoData {
            resource: self.cfg.name.clone(),
        })
    }

    async fn remote_read(&self, link: &Arc<Link>, offset: u64, len: u32) -> Result<Bytes, i32> {
        let seq = self.seq();
        let rx = link.start_read(seq);
        let mut h = FrameHeader::new(Kind::ReadRequest);
        h.seq = seq;
        h.sector = offset / 512;
        h.aux = u64::from(len);
        link.send(OutFrame::bare(h));
        match tokio::time::timeout(self.cfg.timeouts.read, rx).await {
            Ok(Ok(Ok(b))) if b.len() == len as usize => Ok(b),
            Ok(Ok(Ok(_))) => Err(libc::EIO),
            Ok(Ok(Err(errno))) => Err(errno),
            Ok(Err(_)) => Err(libc::EIO),
            Err(_) => {
                link.abandon_read(seq);
                Err(libc::ETIMEDOUT)
            }
        }
    }

    /// Counts an application request in flight (demotion waits for them).
    pub(crate) fn begin_io(self: &Arc<Self>) -> ActiveIo {
        self.active_io.fetch_add(1, Ordering::SeqCst);
        ActiveIo(Arc::clone(self))
    }

    /// Rotates the current UUID before the first write after the Primary lost a peer.
    async fn rotate_if_pending(self: &Arc<Self>) -> VolumeResult<()> {
        if !self.rotate_pending.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _serial = self.rotation.lock().await;
        if self.rotate_pending.swap(false, Ordering::SeqCst) {
            self.new_data_generation()
                .await
                .map_err(|e| VolumeError::Io(std::io::Error::other(e)))?;
        }
        Ok(())
    }

    /// The role this node has.
    pub(crate) fn role(&self) -> Role {
        self.role_and_disk().0
    }
}

/// Marks one application request in flight until dropped.
pub(crate) struct ActiveIo(Arc<Inner>);

impl Drop for ActiveIo {
    fn drop(&mut self) {
        if self.0.active_io.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.io_idle.notify_waiters();
        }
    }
}
