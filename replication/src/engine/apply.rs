//! Applying what a Primary sends: writes, discards, zeroing, barriers and reads.
//!
//! The receiver validates each request and passes it, in arrival order, through this link's
//! ordering [`Gate`]: the writes of an epoch start at once and run concurrently; a barrier waits
//! until every write before it is done, flushes the disk, acknowledges — and only then do the writes
//! after it start. So no write of a later epoch reaches the disk before the writes it may depend on
//! are durable, while the receiver keeps reading the socket meanwhile: network and disk overlap.
//!
//! Every request is validated before any data is touched: a peer that sends a write while this node
//! is Primary, to a diskless node, beyond the end of the volume or misaligned is disconnected with
//! the reason. Each applied write is covered by this node's own activity log and marked out of sync
//! for every peer this node cannot currently reach, so this node's bitmaps are right should it be
//! promoted later.

use std::sync::Arc;

use bytes::Bytes;
use replbd_quorum::{Protocol, Role};

use super::core::Inner;
use super::gate::{Gate, Starter, Work};
use super::io_path::al_begin;
use super::link::Link;
use crate::wire::{FrameFlags, FrameHeader, Kind, OutFrame};

/// The byte offset of `h`'s start sector, or the reason the peer is disconnected.
pub(crate) fn byte_offset(h: &FrameHeader) -> Result<u64, String> {
    h.sector
        .checked_mul(512)
        .ok_or_else(|| format!("the peer sent a {} whose sector {} overflows", h.kind, h.sector))
}

/// A validated write waiting for, or running through, the gate.
pub(crate) struct PendingWrite {
    h: FrameHeader,
    payload: Bytes,
    offset: u64,
    len: u64,
    /// Its place in arrival order among overlapping requests.
    order: Order,
    /// Set for resync data: whose request it answers.
    resync: Option<Arc<super::resync::Resync>>,
}

/// Where a write stands among overlapping requests.
pub(crate) enum Order {
    /// Its own place, taken when it arrived.
    Own(super::intervals::Pending),
    /// The place its resync request took when it was sent (see `resync::order`).
    Request(Arc<super::resync::order::RequestLock>),
}

/// Applies one link's incoming requests to the local disk.
pub(crate) struct Applier {
    inner: Arc<Inner>,
    link: Arc<Link>,
    gate: Arc<Gate<PendingWrite>>,
}

/// Starts writes and barriers as tasks.
struct Tasks {
    inner: Arc<Inner>,
    link: Arc<Link>,
}

impl Starter<PendingWrite> for Tasks {
    fn start_write(&self, gate: &Arc<Gate<PendingWrite>>, w: PendingWrite) {
        let (inner, link, gate) = (Arc::clone(&self.inner), Arc::clone(&self.link), Arc::clone(gate));
        tokio::spawn(async move {
            let (seq, offset, len) = (w.h.seq, w.offset, w.len);
            match w.resync.clone() {
                Some(r) => {
                    let ok = apply_locally(&inner, &link, w).await.is_ok();
                    r.data_written(seq, offset, len, ok);
                }
                None => {
                    let result = apply_locally(&inner, &link, w).await;
                    // Detached before the write counts as applied: a resync this node serves waits
                    // for the Primary's writes to be applied and then reads, and must find the disk
                    // detached rather than read the block this write failed to change.
                    if let Err(errno) = result {
                        inner.detach_after_error(
                            "replicated write",
                            &std::io::Error::from_raw_os_error(errno),
                            Some(offset..offset + len),
                        );
                    }
                    link.writes.applied(seq);
                    match result {
                        Ok(()) if link.protocol == Protocol::C => link.send(frame(Kind::WriteAck, seq, 0)),
                        Ok(()) => {}
                        Err(errno) => link.send(frame(Kind::NegAck, seq, errno as u64)),
                    }
                }
            }
            gate.write_done();
        });
    }

    fn start_barrier(&self, gate: &Arc<Gate<PendingWrite>>, epoch: u64) {
        // Nothing to flush (no disk, a detached one, or memory): acknowledge at once, without a
        // task hand-off. A detached node refused this epoch's writes (NegAck): the Primary marked them.
        if self.inner.local().is_none_or(|d| d.store.flush_is_noop()) {
            self.link.send(frame(Kind::BarrierAck, 0, epoch));
            gate.barrier_done();
            return;
        }
        let (inner, link, gate) = (Arc::clone(&self.inner), Arc::clone(&self.link), Arc::clone(gate));
        tokio::spawn(async move {
            let flushed = match inner.local() {
                Some(d) => d.store.flush().await,
                None => Ok(()),
            };
            match flushed {
                Ok(()) => link.send(frame(Kind::BarrierAck, 0, epoch)),
                Err(e) => {
                    inner.detach_after_error("flush", &e, None);
                    link.fail(&format!(
                        "flushing the local disk for barrier {epoch} failed: {e}"
                    ));
                }
            }
            gate.barrier_done();
        });
    }
}

fn frame(kind: Kind, seq: u64, aux: u64) -> OutFrame {
    let mut h = FrameHeader::new(kind);
    h.seq = seq;
    h.aux = aux;
    OutFrame::bare(h)
}

impl Applier {
    /// An applier for `link`.
    pub(crate) fn new(inner: Arc<Inner>, link: Arc<Link>) -> Applier {
        let gate = Gate::new(Box::new(Tasks {
            inner: Arc::clone(&inner),
            link: Arc::clone(&link),
        }));
        Applier { inner, link, gate }
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

    /// Queues a data, discard or write-zeroes frame.
    pub(crate) async fn apply(&self, h: FrameHeader, payload: Bytes) -> Result<(), String> {
        let offset = byte_offset(&h)?;
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
        self.inner.note_app_io();
        self.link.writes.received(h.seq);
        self.link.writes.notify();
        self.link.unacked.record(h.aux, offset..offset + len);
        let order = Order::Own(self.inner.apply_order.register(offset..offset + len));
        self.push(h, payload, offset, len, order, None).await
    }

    /// Queues resync data answering one of `resync`'s requests; `lock` is the place the request
    /// took when it was sent, if it took one.
    pub(crate) async fn apply_resync(
        &self,
        h: FrameHeader,
        payload: Bytes,
        resync: Arc<super::resync::Resync>,
        lock: Option<Arc<super::resync::order::RequestLock>>,
    ) -> Result<(), String> {
        let offset = byte_offset(&h)?;
        let len = payload.len() as u64;
        self.validate(h.kind, offset, len, true)?;
        let order = match lock {
            Some(l) => Order::Request(l),
            None => Order::Own(self.inner.apply_order.register(offset..offset + len)),
        };
        self.push(h, payload, offset, len, order, Some(resync)).await
    }

    async fn push(
        &self,
        h: FrameHeader,
        payload: Bytes,
        offset: u64,
        len: u64,
        order: Order,
        resync: Option<Arc<super::resync::Resync>>,
    ) -> Result<(), String> {
        let bytes = payload.len() as u64;
        self.gate.push(
            Work::Write(PendingWrite {
                h,
                payload,
                offset,
                len,
                order,
                resync,
            }),
            bytes,
        );
        self.gate.wait_room().await;
        Ok(())
    }

    /// Queues a barrier.
    pub(crate) async fn barrier(&self, epoch: u64) -> Result<(), String> {
        if self.link.protocol == Protocol::B {
            self.link.send(frame(Kind::BarrierRecvAck, 0, epoch));
        }
        self.gate.push(Work::Barrier(epoch), 0);
        Ok(())
    }

    /// Waits until everything received so far is done.
    pub(crate) async fn drain(&self) {
        self.gate.idle().await;
    }

    /// Serves a diskless peer's read.
    pub(crate) fn serve_read(&self, h: FrameHeader) -> Result<(), String> {
        let offset = byte_offset(&h)?;
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
async fn apply_locally(inner: &Arc<Inner>, link: &Arc<Link>, w: PendingWrite) -> Result<(), i32> {
    let PendingWrite {
        h,
        payload,
        offset,
        len,
        order,
        resync,
    } = w;
    let w_is_resync = resync.is_some();
    let _turn = match order {
        Order::Own(p) => (Some(p.granted().await), None),
        Order::Request(lock) => {
            lock.granted().await;
            (None, Some(lock))
        }
    };
    let Some(d) = inner.local() else {
        if let Some(d) = &inner.disk {
            // Detached: the write is not applied here; the activity-log reference keeps the mark
            // safe across a crash (see `detach`).
            let _guard = al_begin(&d.meta, offset, len).await.ok();
            inner.mark_missed_locally(offset..offset + len);
        }
        return Err(libc::ENODEV);
    };
    let _guard = al_begin(&d.meta, offset, len).await.map_err(|e| {
        tracing::error!(resource = %inner.cfg.name, error = %e, "activity log failed for a replicated write");
        libc::EIO
    })?;
    // Resync data changes this node's copy: peers not connected now may lack the new content.
    // (For the Primary's writes, peer acks say who lacks them: `marks`.)
    if w_is_resync {
        for p in inner.peers().iter() {
            if p.cfg.node_id != link.peer
                && let Some(slot) = p.slot
                && p.live().is_none()
            {
                let _ = d.meta.mark_out_of_sync(slot, offset, len);
            }
        }
    }
    let fua = h.flags.contains(FrameFlags::FUA);
    let result = match h.kind {
        Kind::Data | Kind::ResyncData => d.store.write(offset, payload, fua).await,
        Kind::Discard => d.store.discard(offset, len).await,
        _ => d.store.write_zeroes(offset, len).await,
    };
    d.meta.add_dagtag(len / 512);
    result.map_err(|e| {
        tracing::error!(resource = %inner.cfg.name, peer = link.peer, offset, len, error = %e, "local write of a replicated request failed");
        e.raw_os_error().unwrap_or(libc::EIO)
    })
}
