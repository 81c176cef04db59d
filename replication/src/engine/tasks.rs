//! The three tasks of a live link: sender, receiver and watchdog. Any of them failing a frame, a
//! socket or a timer fails the link with a reason; the others notice and stop.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::apply::Applier;
use super::core::Inner;
use super::link::{Link, Outgoing};
use crate::tls::{PeerRead, PeerWrite};
use crate::wire::messages::{self, ErrorMessage, StateReport};
use crate::wire::{FrameFlags, FrameHeader, FrameReader, FrameWriter, Kind, OutFrame};
use replbd_quorum::Protocol;

/// Frames and bytes sent per batch.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 8 << 20;

/// Sends queued frames in batches; with protocol A completes a write's path once it is on the socket.
pub(crate) async fn sender(
    link: Arc<Link>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    mut w: FrameWriter<PeerWrite>,
) {
    let mut dead = link.dead.subscribe();
    let mut frames: Vec<OutFrame> = Vec::new();
    let mut sent_seqs: Vec<u64> = Vec::new();
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = dead.wait_for(Option::is_some) => None,
        };
        let Some(first) = first else { break };
        let mut bytes = 0;
        let mut confirmations = Vec::new();
        let mut push = |m: Outgoing, frames: &mut Vec<OutFrame>, bytes: &mut usize| match m {
            Outgoing::Frame(f) => {
                *bytes += f.payload.len();
                frames.push(f);
            }
            Outgoing::Data { frame, seq } => {
                *bytes += frame.payload.len();
                frames.push(frame);
                sent_seqs.push(seq);
            }
            Outgoing::Sent(tx) => confirmations.push(tx),
        };
        push(first, &mut frames, &mut bytes);
        while frames.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) => push(m, &mut frames, &mut bytes),
                Err(_) => break,
            }
        }
        let result = tokio::select! {
            r = w.send_all(&frames) => r,
            _ = dead.wait_for(Option::is_some) => break,
        };
        if let Err(e) = result {
            link.fail(&format!("sending to the peer failed: {e}"));
            break;
        }
        if link.protocol == Protocol::A {
            for seq in sent_seqs.drain(..) {
                link.path_done(seq, true);
            }
        }
        for tx in confirmations.drain(..) {
            let _ = tx.send(());
        }
        frames.clear();
        sent_seqs.clear();
    }
    let _ = w.get_mut().shutdown().await;
}

use tokio::io::AsyncWriteExt;

fn ack(kind: Kind, seq: u64, aux: u64) -> OutFrame {
    let mut h = FrameHeader::new(kind);
    h.seq = seq;
    h.aux = aux;
    OutFrame::bare(h)
}

/// Reads frames and acts on them until the link fails.
pub(crate) async fn receiver(inner: Arc<Inner>, link: Arc<Link>, mut r: FrameReader<PeerRead>) {
    let mut dead = link.dead.subscribe();
    let applier = Applier::new(Arc::clone(&inner), Arc::clone(&link));
    loop {
        let frame = tokio::select! {
            f = r.read_frame() => f,
            _ = dead.wait_for(Option::is_some) => break,
        };
        let (h, payload) = match frame {
            Ok(f) => f,
            Err(e) => {
                link.fail(&format!("receive failed: {e}"));
                break;
            }
        };
        link.touch();
        if let Err(reason) = dispatch(&inner, &link, &applier, h, payload).await {
            tracing::warn!(resource = %inner.cfg.name, peer = link.peer, reason, "closing the connection");
            link.fail(&reason);
            break;
        }
    }
    applier.drain().await;
}

async fn dispatch(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    applier: &Applier,
    h: FrameHeader,
    payload: Bytes,
) -> Result<(), String> {
    match h.kind {
        Kind::RecvAck | Kind::WriteAck => link.path_done(h.seq, true),
        Kind::NegAck => {
            tracing::error!(resource = %inner.cfg.name, peer = link.peer, seq = h.seq, errno = h.aux, "the peer's disk failed a write; marked out of sync for it");
            link.path_done(h.seq, false);
        }
        Kind::BarrierAck => {
            link.barrier_acked(h.aux);
            inner.send_peer_acks(inner.peer_acks.acked(link.peer, h.aux));
        }
        Kind::PeerAck => inner.peer_ack_received(link, h.aux, h.seq),
        Kind::LostPrimary => inner.lost_primary_claim(link, &h)?,
        Kind::OutOfSync => inner.out_of_sync_received(link, h.sector.saturating_mul(512), h.aux)?,
        Kind::Ahead => inner.became_behind(link).await?,
        Kind::BarrierRecvAck => link.barrier_received(h.aux),
        Kind::Data | Kind::Discard | Kind::WriteZeroes => applier.apply(h, payload).await?,
        Kind::Barrier => applier.barrier(h.aux).await?,
        Kind::ReadRequest => applier.serve_read(h)?,
        Kind::ReadReply => link.finish_read(h.seq, Ok(payload)),
        Kind::ReadError => link.finish_read(h.seq, Err(i32::try_from(h.aux).unwrap_or(libc::EIO))),
        Kind::Ping => link.send(ack(Kind::Pong, h.seq, 0)),
        Kind::Pong => {}
        Kind::Leaving => inner.peer_leaving(link.peer),
        Kind::StateReport => {
            let report: StateReport =
                messages::decode(Kind::StateReport, &payload).map_err(|e| e.to_string())?;
            inner.peer_reported(link, &report).await;
        }
        Kind::Error => {
            let m: ErrorMessage = messages::decode(Kind::Error, &payload).map_err(|e| e.to_string())?;
            return Err(format!("the peer closed the connection: {}", m.message));
        }
        Kind::BitmapChunk => resync(link, h.kind)?.bitmap_chunk(&payload)?,
        Kind::BitmapDone => resync(link, h.kind)?.bitmap_done().await?,
        Kind::ResyncRequest => resync(link, h.kind)?.serve(h, payload, false)?,
        Kind::ChecksumRequest => resync(link, h.kind)?.serve(h, payload, true)?,
        Kind::ResyncData => {
            let r = resync(link, h.kind)?;
            let Some(lock) = r.begin_data(h.seq, h.sector.saturating_mul(512), payload.len() as u64) else {
                return Err(format!(
                    "resync data {} for sector {} answers no request",
                    h.seq, h.sector
                ));
            };
            applier.apply_resync(h, payload, r, lock).await?;
        }
        Kind::ResyncAck => resync(link, h.kind)?.acked(h.sector.saturating_mul(512), h.aux),
        Kind::InSync => resync(link, h.kind)?.in_sync(h.seq, h.sector.saturating_mul(512), h.aux)?,
        Kind::ResyncPaused => resync(link, h.kind)?.paused(h.seq),
        Kind::ResyncDone => {
            resync(link, h.kind)?
                .source_done(h.flags.contains(FrameFlags::FLUSH))
                .await?
        }
        Kind::ResyncFinished => resync(link, h.kind)?.target_finished(h.aux).await?,
        Kind::StartSync => super::resync::command::start_sync_received(inner, link, &payload)?,
        Kind::VerifyRequest | Kind::VerifyReply | Kind::VerifyDone => {
            super::resync::command::verify_frame(inner, link, h, payload)?
        }
        Kind::Hello | Kind::AuthResponse => {
            return Err(format!("unexpected {} frame after the handshake", h.kind));
        }
    }
    Ok(())
}

/// The link's resync, which a resync frame requires.
fn resync(link: &Link, kind: Kind) -> Result<Arc<super::resync::Resync>, String> {
    link.resync()
        .ok_or_else(|| format!("{kind} frame while no resync runs on this connection"))
}

/// Fails the link when a write stays unacknowledged past the timeout, and keeps an idle link alive
/// with pings (failing it when they go unanswered).
pub(crate) async fn watchdog(inner: Arc<Inner>, link: Arc<Link>) {
    let t = inner.cfg.timeouts;
    let tick = (t.ack / 4)
        .min(t.ping_interval / 2)
        .min(std::time::Duration::from_millis(500));
    let mut dead = link.dead.subscribe();
    let mut pinged = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = dead.wait_for(Option::is_some) => return,
        }
        if let Some(age) = link.oldest_unacked()
            && age > t.ack
        {
            link.fail(&format!(
                "the peer did not acknowledge a write within {:?} (ack timeout)",
                t.ack
            ));
            return;
        }
        let idle = link.idle();
        if idle >= t.ping_interval + t.ping_timeout {
            link.fail(&format!("no answer from the peer for {idle:?} (ping timeout)"));
            return;
        }
        if idle >= t.ping_interval {
            if !pinged {
                link.send(ack(Kind::Ping, inner.seq(), 0));
                pinged = true;
            }
        } else {
            pinged = false;
        }
    }
}
