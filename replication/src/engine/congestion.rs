//! Congestion on asynchronous links: `on-congestion pull-ahead | disconnect` and the Ahead/Behind
//! states.
//!
//! A protocol-A peer on a slow link (a disaster-recovery site) accumulates writes the Primary has
//! acknowledged but the peer has not made durable. With `block` (the default) writers wait for
//! `max-buffers` credits, so the application runs at the link's speed. With `pull-ahead`, once
//! `congestion-fill` bytes are in flight the Primary goes **Ahead** of that peer instead:
//!
//! ```text
//!  Established ─(in flight ≥ congestion-fill)─▶ Ahead: writes only marked, OutOfSync sent
//!       ▲                                          │ in flight drained, 1 s quiet
//!       └───── resync finished ◀── SyncSource ◀────┘ (StartSync: the peer becomes SyncTarget)
//! ```
//!
//! The peer is **Behind**: consistent but old, so its disk is Outdated (persisted: a restart or a
//! failover does not mistake it for a current copy) and it does not follow the Primary into a new
//! generation. Entering Ahead rotates the current UUID before the write that found the link
//! congested, as losing the peer would: the peer's slot keeps the old generation, so whatever
//! happens next — the resync below, a disconnect, a crash of either node — the next handshake finds
//! the bitmap and resyncs exactly the marked blocks.
//!
//! With `disconnect` the congested connection is dropped instead; the reconnect resyncs by bitmap.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use replbd_bitmap::NodeFlags;
use replbd_quorum::options::OnCongestion;
use replbd_quorum::{DiskState, Protocol, ReplicationState, Role};

use super::core::Inner;
use super::link::Link;
use super::resync::SyncRole;
use super::state::Event;
use crate::wire::{FrameHeader, Kind, OutFrame};

/// How long the link must stay drained before Ahead turns into SyncSource.
const DRAINED_FOR: Duration = Duration::from_secs(1);
/// How often a link that is Ahead is checked.
const POLL: Duration = Duration::from_millis(50);

impl Inner {
    /// Before a write of `len` bytes: acts on every protocol-A link it would congest.
    pub(crate) fn check_congestion(self: &Arc<Self>, len: u64) {
        let fill = self.cfg.congestion_fill;
        if fill == 0 {
            return;
        }
        for link in self.live_data_links() {
            if link.protocol != Protocol::A || link.is_ahead() {
                continue;
            }
            let policy = self.peer(link.peer).map(|p| p.on_congestion).unwrap_or_default();
            if policy == OnCongestion::Block || self.replication(link.peer) != ReplicationState::Established {
                continue;
            }
            let in_flight = link.data_in_flight();
            if in_flight.saturating_add(len) < fill {
                continue;
            }
            match policy {
                OnCongestion::PullAhead => self.go_ahead(&link, in_flight),
                OnCongestion::Disconnect => {
                    tracing::warn!(resource = %self.cfg.name, peer = link.peer, in_flight, congestion_fill = fill, "link congested; on-congestion disconnect");
                    link.fail(&format!(
                        "congested: {in_flight} bytes in flight reached congestion-fill {fill} (on-congestion disconnect)"
                    ));
                }
                OnCongestion::Block => {}
            }
        }
    }

    /// Enters Ahead of `link`'s peer.
    fn go_ahead(self: &Arc<Self>, link: &Arc<Link>, in_flight: u64) {
        if link.set_ahead(true) {
            return;
        }
        tracing::warn!(resource = %self.cfg.name, peer = link.peer, in_flight, congestion_fill = self.cfg.congestion_fill, "link congested; going Ahead: the peer gets only out-of-sync marks until it drains");
        // Our view first, so no read is sent to the peer from here on; its own report follows.
        self.set_peer_state(link.peer, DiskState::Outdated, self.peer_role(link.peer));
        self.set_replication(link.peer, ReplicationState::Ahead);
        // Before the rotation's state report: the peer must be Behind (not following us into the new
        // generation) when that report arrives.
        link.send(OutFrame::bare(FrameHeader::new(Kind::Ahead)));
        self.rotate_pending.store(true, Ordering::SeqCst);
        tokio::spawn(resync_when_drained(Arc::clone(self), Arc::clone(link)));
    }

    /// A write not sent to `link`'s peer because this node is Ahead of it: the peer learns the
    /// range is out of sync (the local bit is set by the write path).
    pub(crate) fn tell_out_of_sync(link: &Link, offset: u64, len: u64) {
        let mut h = FrameHeader::new(Kind::OutOfSync);
        h.sector = offset / 512;
        h.aux = len;
        link.send(OutFrame::bare(h));
    }

    /// The peer behind `link` went Ahead of this node: this node is Behind it, its data consistent
    /// but old. Persisted before anything else from the peer is handled.
    pub(crate) async fn became_behind(self: &Arc<Self>, link: &Arc<Link>) -> Result<(), String> {
        if self.role() == Role::Primary {
            return Err("the peer went Ahead of a Primary".into());
        }
        let Some(d) = &self.disk else { return Ok(()) };
        let meta = Arc::clone(&d.meta);
        tokio::task::spawn_blocking(move || {
            meta.update(|_, flags| flags.set(NodeFlags::WAS_UP_TO_DATE, false))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot record that this node is Behind: {e}"))?;
        tracing::warn!(resource = %self.cfg.name, peer = link.peer, "the Primary's link to this node is congested: Behind, Outdated until it resyncs");
        self.set_replication(link.peer, ReplicationState::Behind);
        self.change(|c| {
            if c.disk != DiskState::UpToDate {
                return Vec::new();
            }
            c.disk = DiskState::Outdated;
            vec![Event::Disk(DiskState::Outdated)]
        });
        self.broadcast_state();
        Ok(())
    }

    /// True while this node is Behind some peer: it lacks writes no resync from another peer can
    /// be trusted to bring (see [`super::resync`]).
    pub(crate) fn is_behind(&self) -> bool {
        self.peers()
            .iter()
            .any(|p| self.replication(p.cfg.node_id) == ReplicationState::Behind)
    }
}

/// Ahead: once nothing written is in flight to the peer for [`DRAINED_FOR`], starts the resync of
/// what was only marked, and sends writes to the peer again.
async fn resync_when_drained(inner: Arc<Inner>, link: Arc<Link>) {
    let mut dead = link.dead.subscribe();
    let mut drained_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = dead.wait_for(Option::is_some) => return,
        }
        if link.data_in_flight() > 0 {
            drained_since = None;
            continue;
        }
        let since = *drained_since.get_or_insert_with(Instant::now);
        if since.elapsed() < DRAINED_FOR {
            continue;
        }
        match super::resync::command::begin_resync(&inner, &link, SyncRole::Source, false, true) {
            Ok(()) => {
                // Writes from here on go to the SyncTarget as data; those marked before are in the
                // bitmap it walks (or in an OutOfSync queued ahead of them).
                link.set_ahead(false);
                tracing::info!(resource = %inner.cfg.name, peer = link.peer, "link drained: leaving Ahead, resyncing the marked blocks");
                return;
            }
            Err(e) => {
                tracing::warn!(resource = %inner.cfg.name, peer = link.peer, error = %e, "cannot leave Ahead yet");
                drained_since = None;
            }
        }
    }
}
