//! Applying what a Primary sends: writes, discards, zeroing, barriers and reads.
//!
//! Writes of one epoch are applied concurrently. A barrier waits until every write received before it
//! is done, flushes the disk, and only then is acknowledged — and only then is the next frame read,
//! so no write of a later epoch reaches the disk before the writes it may depend on are durable.
//!
//! Every request is validated before any data is touched: a peer that sends a write while this node
//! is Primary, to a diskless node, beyond the end of the volume or misaligned is disconnected with
//! the reason. Each applied write is covered by this node's own activity log and marked out of sync
//! for every peer this node cannot currently reach, so this node's bitmaps are right should it be
//! promoted later.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use replbd_quorum::{Protocol, Role};
use tokio::sync::Notify;

use super::core::Inner;
use super::io_path::al_begin;
use super::link::Link;
use crate::wire::{FrameFlags, FrameHeader, Kind, OutFrame};

struct Active {
    count: AtomicU64,
    idle: Notify,
}

/// Applies one link's incoming requests to the local disk.
pub(crate) struct Applier {
    inner: Arc<Inner>,
    link: Arc<Link>,
    active: Arc<Active>,
}

fn frame(kind: Kind, seq: u64, aux: u64) -> OutFrame {
    let mut h = FrameHeader::new(kind);
    h.seq = seq;
    h.aux = aux;
    OutFrame::bare(h)
}

impl Applier {
    pub(crate) fn new(inner: Arc<Inner>, link: Arc<Link>) -> Applier {
        Applier {
            inner,
            link,
            active: Arc::new(Active {
                count: AtomicU64::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// Checks that a request for `offset..offset+len` from the peer may be served here.
    fn validate(&self, kind: Kind, offset: u64, len: u64, write: bool) -> Result<(), String> {
        if self.inner.disk.is_none() {
            return Err(format!("the peer sent a {kind} to a diskless node"));
        }
        if write && self.inner.role() == Role::Primary {
            return Err(format!(
                "the peer sent a {kind} while this node is Primary (two primaries are not allowed)"
            ));
        }
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.inner.size)
            || !offset.is_multiple_of(512)
            || !len.is_multiple_of(512)
            || len == 0
        {
            return Err(format!(
                "the peer sent a {kind} for {offset}+{len}, outside this node's {}-byte volume or not 512-byte aligned",
                self.inner.size
            ));
        }
        Ok(())
    }

    /// Applies a data, discard or write-zeroes frame (concurrently with others of its epoch).
    pub(crate) fn apply(&self, h: FrameHeader, payload: Bytes) -> Result<(), String> {
        let offset = h
            .sector
            .checked_mul(512)
            .ok_or_else(|| format!("sector {} overflows", h.sector))?;
        let len = match h.kind {
            Kind::Data => payload.len() as u64,
            _ => {
                let b: [u8; 8] = payload
                    .as_ref()
                    .try_into()
                    .map_err(|_| format!("{} frame without an 8-byte length", h.kind))?;
                u64::from_le_bytes(b)
            }
        };
        self.validate(h.kind, offset, len, true)?;
        if self.link.protocol == Protocol::B {
            self.link.send(frame(Kind::RecvAck, h.seq, 0));
        }
        self.active.count.fetch_add(1, Ordering::SeqCst);
        let (inner, link, active) = (
            Arc::clone(&self.inner),
            Arc::clone(&self.link),
            Arc::clone(&self.active),
        );
        tokio::spawn(async move {
            let result = apply_locally(&inner, &link, h, payload, offset, len).await;
            match result {
                Ok(()) if link.protocol == Protocol::C => link.send(frame(Kind::WriteAck, h.seq, 0)),
                Ok(()) => {}
                Err(errno) => link.send(frame(Kind::NegAck, h.seq, errno as u64)),
            }
            if active.count.fetch_sub(1, Ordering::SeqCst) == 1 {
                active.idle.notify_waiters();
            }
        });
        Ok(())
    }

    /// Waits until every write received so far is done.
    pub(crate) async fn drain(&self) {
        loop {
            let idle = self.active.idle.notified();
            if self.active.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// A barrier: every earlier write done and flushed, then acknowledged.
    pub(crate) async fn barrier(&self, epoch: u64) -> Result<(), String> {
        self.drain().await;
        if let Some(d) = &self.inner.disk {
            d.store
                .flush()
                .await
                .map_err(|e| format!("flushing the local disk for barrier {epoch} failed: {e}"))?;
        }
        self.link.send(frame(Kind::BarrierAck, 0, epoch));
        Ok(())
    }

    /// Serves a diskless peer's read.
    pub(crate) fn serve_read(&self, h: FrameHeader) -> Result<(), String> {
        let offset = h
            .sector
            .checked_mul(512)
            .ok_or_else(|| format!("sector {} overflows", h.sector))?;
        let len = h.aux;
        if len > u64::from(crate::wire::MAX_DATA_PAYLOAD) {
            return Err(format!(
                "the peer asked to read {len} bytes, more than {}",
                crate::wire::MAX_DATA_PAYLOAD
            ));
        }
        self.validate(h.kind, offset, len, false)?;
        let (inner, link) = (Arc::clone(&self.inner), Arc::clone(&self.link));
        tokio::spawn(async move {
            let Some(d) = &inner.disk else { return };
            match d.store.read(offset, len as usize).await {
                Ok(data) => {
                    let mut rh = FrameHeader::new(Kind::ReadReply);
                    rh.seq = h.seq;
                    rh.sector = h.sector;
                    link.send(OutFrame {
                        header: rh,
                        payload: data,
                    });
                }
                Err(e) => {
                    tracing::error!(resource = %inner.cfg.name, peer = link.peer, offset, len, error = %e, "local read for a peer failed");
                    link.send(frame(
                        Kind::ReadError,
                        h.seq,
                        e.raw_os_error().unwrap_or(libc::EIO) as u64,
                    ));
                }
            }
        });
        Ok(())
    }
}

/// The local part of applying a write; returns the errno on failure.
async fn apply_locally(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    h: FrameHeader,
    payload: Bytes,
    offset: u64,
    len: u64,
) -> Result<(), i32> {
    let Some(d) = &inner.disk else {
        return Err(libc::ENODEV);
    };
    let _guard = al_begin(&d.meta, offset, len).await.map_err(|e| {
        tracing::error!(resource = %inner.cfg.name, error = %e, "activity log failed for a replicated write");
        libc::EIO
    })?;
    for p in &inner.peers {
        if p.cfg.node_id != link.peer {
            if let Some(slot) = p.slot {
                if p.live().is_none() {
                    let _ = d.meta.mark_out_of_sync(slot, offset, len);
                }
            }
        }
    }
    let fua = h.flags.contains(FrameFlags::FUA);
    let result = match h.kind {
        Kind::Data => d.store.write(offset, payload, fua).await,
        Kind::Discard => d.store.discard(offset, len).await,
        _ => d.store.write_zeroes(offset, len).await,
    };
    d.meta.add_dagtag(len / 512);
    result.map_err(|e| {
        tracing::error!(resource = %inner.cfg.name, peer = link.peer, offset, len, error = %e, "local write of a replicated request failed");
        e.raw_os_error().unwrap_or(libc::EIO)
    })
}
