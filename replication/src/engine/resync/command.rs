//! Resyncs and verifies started by an administrator on a live connection: `invalidate`,
//! `invalidate-remote`, `verify`.
//!
//! A handshake starts a resync when the generation UUIDs say one is needed; these commands start one
//! on a connection that is already Established. The initiator checks what it can (its own role, the
//! peer's last reported role and disk), registers its side, and sends `StartSync` — before any
//! bitmap frame of its own, so the peer has registered its side when the bitmap arrives. The peer
//! checks again with its own state and closes the connection with the reason if it must refuse; the
//! handshake that follows then decides from the generation UUIDs as usual.

use std::sync::Arc;

use bytes::Bytes;
use replbd_quorum::{DiskState, ReplicationState, Role};

use super::verify::Verify;
use super::{Resync, SyncRole};
use crate::engine::core::Inner;
use crate::engine::link::Link;
use crate::engine::state::Event;
use crate::wire::{FrameHeader, Kind, OutFrame};

/// Byte 0 of a `StartSync` payload: who becomes the sync target.
const SENDER_IS_TARGET: u8 = 0;
const RECEIVER_IS_TARGET: u8 = 1;

/// Why a resync or verify cannot start on a link.
fn busy(link: &Link) -> Option<String> {
    if link.resync().is_some_and(|r| r.active()) {
        return Some(format!(
            "a resync with node {} is running; wait for it to finish",
            link.peer
        ));
    }
    if link.verify().is_some() {
        return Some(format!(
            "an online verify with node {} is running; wait for it to finish",
            link.peer
        ));
    }
    None
}

/// Registers a resync in `role` on `link` and starts its bitmap exchange. With `announce`, tells the
/// peer first (`StartSync`), so the peer takes the opposite role.
pub(crate) fn begin_resync(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    role: SyncRole,
    full: bool,
    announce: bool,
) -> Result<(), String> {
    if inner.disk.is_none() || link.slot.is_none() {
        return Err(format!(
            "a resync with node {} needs a disk on both nodes",
            link.peer
        ));
    }
    if let Some(reason) = busy(link) {
        return Err(reason);
    }
    // A resync on a connection that is gone would only leave this disk Inconsistent until the
    // next handshake (which decides afresh). Late callers — an out-of-sync note applied after the
    // link died — meet this.
    if link.is_dead() {
        return Err(format!("the connection to node {} is gone", link.peer));
    }
    if role == SyncRole::Target && inner.role() == Role::Primary {
        return Err(
            "a Primary cannot become a sync target: its data is what the application reads; demote it first"
                .into(),
        );
    }
    let r = Resync::new(Arc::clone(inner), Arc::clone(link), role);
    link.set_resync(Some(Arc::clone(&r)));
    if role == SyncRole::Target {
        // Synchronously, before anything else can look: from here on this disk is not a copy to
        // promote or read from.
        inner.change(|c| {
            if c.disk == DiskState::Inconsistent {
                return Vec::new();
            }
            c.disk = DiskState::Inconsistent;
            vec![Event::Disk(DiskState::Inconsistent)]
        });
        // The peers must not count on this copy any more (read balancing, promotion checks).
        inner.broadcast_state();
        // Nor may it serve another node's resync: its blocks become partly this resync's.
        for other in inner.live_links() {
            if other.peer != link.peer
                && other
                    .resync()
                    .is_some_and(|r| r.role == SyncRole::Source && r.active())
            {
                other.fail(super::INCONSISTENT_SOURCE);
            }
        }
    }
    if announce {
        let target = if role == SyncRole::Target {
            SENDER_IS_TARGET
        } else {
            RECEIVER_IS_TARGET
        };
        link.send(OutFrame {
            header: FrameHeader::new(Kind::StartSync),
            payload: Bytes::from(vec![target, u8::from(full)]),
        });
    }
    let l = Arc::clone(link);
    tokio::spawn(async move {
        if let Err(e) = r.start(full).await {
            l.fail(&format!("starting the resync failed: {e}"));
        }
    });
    Ok(())
}

/// The peer asks for a resync (`StartSync`): take the role it leaves us.
pub(crate) fn start_sync_received(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    payload: &[u8],
) -> Result<(), String> {
    let (role, full) = match payload {
        [SENDER_IS_TARGET, full] => (SyncRole::Source, *full != 0),
        [RECEIVER_IS_TARGET, full] => (SyncRole::Target, *full != 0),
        _ => return Err(format!("malformed StartSync payload {payload:?}")),
    };
    // Both sides may start the same resync at once (a new Primary and its Secondary, each finding
    // marked blocks): each already sent its bitmap, so the other's request is already met.
    if !full && link.resync().is_some_and(|r| r.active() && r.role == role) {
        tracing::debug!(resource = %inner.cfg.name, peer = link.peer, "the peer asked for the resync already starting");
        return Ok(());
    }
    begin_resync(inner, link, role, full, false)
        .map_err(|e| format!("refusing the resync node {} asked for: {e}", link.peer))
}

/// Starts an online verify of `link` with this node as VerifyS.
pub(crate) fn begin_verify(inner: &Arc<Inner>, link: &Arc<Link>) -> Result<(), String> {
    if inner.disk.is_none() || link.slot.is_none() {
        return Err(format!(
            "verifying against node {} needs a disk on both nodes",
            link.peer
        ));
    }
    if let Some(reason) = busy(link) {
        return Err(reason);
    }
    if inner.replication(link.peer) != ReplicationState::Established {
        return Err(format!(
            "the connection to node {} is not established ({}); verify needs an idle, connected peer",
            link.peer,
            inner.replication(link.peer)
        ));
    }
    let v = Verify::new(Arc::clone(inner), Arc::clone(link), true);
    link.set_verify(Some(Arc::clone(&v)));
    let l = Arc::clone(link);
    tokio::spawn(async move {
        v.run().await;
        l.set_verify(None);
    });
    Ok(())
}

/// The verify frames a node receives.
pub(crate) fn verify_frame(
    inner: &Arc<Inner>,
    link: &Arc<Link>,
    h: FrameHeader,
    payload: Bytes,
) -> Result<(), String> {
    match h.kind {
        Kind::VerifyRequest => {
            let v = match link.verify() {
                Some(v) if !v.initiator => v,
                Some(_) => return Err("both nodes started an online verify of the same connection".into()),
                None => {
                    if let Some(r) = link.resync().filter(|r| r.running()) {
                        return Err(format!("online verify requested during a resync ({:?})", r.role));
                    }
                    let v = Verify::new(Arc::clone(inner), Arc::clone(link), false);
                    link.set_verify(Some(Arc::clone(&v)));
                    v
                }
            };
            v.compare(h, payload)
        }
        Kind::VerifyReply => match link.verify() {
            Some(v) if v.initiator => v.reply(h, &payload),
            _ => Err("verify reply while this node runs no online verify".into()),
        },
        Kind::VerifyDone => {
            if let Some(v) = link.verify() {
                v.finish();
            }
            link.set_verify(None);
            Ok(())
        }
        other => Err(format!("{other} is not a verify frame")),
    }
}
