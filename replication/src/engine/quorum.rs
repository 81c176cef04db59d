//! Quorum as this node sees it, and what it gates.
//!
//! The verdict comes from [`replbd_quorum::evaluate_quorum`]; this module feeds it from the
//! control state and acts on it:
//!
//! - it is re-evaluated inside every control-state change ([`Inner::change`]), so an `Event::Quorum`
//!   and the status never disagree with the connection states that caused them;
//! - application I/O passes [`Inner::quorum_gate`] first: without quorum it fails (`on-no-quorum
//!   io-error`) or waits until quorum returns (`suspend-io`);
//! - a write that a peer failed passes the gate again before it completes. A broken link updates
//!   the control state (Disconnecting, so quorum too) *before* it completes its requests, so a
//!   write that reached only a minority cannot slip through while the state catches up;
//! - a Primary that loses quorum records `primary-lost-quorum` in its metadata: on reconnect the
//!   handshake then prefers the peers' data over writes it made while cut off (which no
//!   application saw complete).
//!
//! What an absent peer counts as depends on how it left. One that said it was leaving
//! (`Leaving`, sent by `down` and `disconnect`) is *outdated*: it will not write, and this node's
//! writes from now on make its data old (this is what lets last man standing go down to one
//! node). One that reported having no quorum before it went is *quorumless*. One lost to a network
//! failure stays *unknown*: it may sit in a partition that has quorum. Without that distinction two
//! nodes cut apart would each drop the other from the count and both write.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use replbd_bitmap::NodeFlags;
use replbd_quorum::quorum::{Absence, LocalVote, PeerVote, QuorumInput};
use replbd_quorum::{ConnectionState, DiskState, QuorumVerdict, Role, evaluate_quorum};

use super::core::{Control, Inner, PeerView, lock};
use super::peer_ack::{Mask, bit};
use super::state::Event;
use crate::volume::{VolumeError, VolumeResult};

/// What a peer that was connected is known as once it is gone.
pub(crate) fn absence_on_leaving(v: &PeerView, had_quorum: bool) -> Absence {
    if v.leaving || matches!(v.disk, DiskState::Outdated | DiskState::Inconsistent) {
        Absence::Outdated
    } else if !v.quorate && had_quorum {
        Absence::Quorumless
    } else {
        Absence::Unknown
    }
}

impl Inner {
    /// The verdict for control state `c`, counting the peers in `gone` as absent (unknown).
    pub(crate) fn quorum_verdict(&self, c: &Control, gone: Mask, had_quorum: bool) -> QuorumVerdict {
        let local = match &self.disk {
            Some(_) => LocalVote::Diskful(c.disk),
            None => LocalVote::DisklessClient,
        };
        let peers: Vec<PeerVote> = self
            .peers()
            .iter()
            .map(|p| {
                let v = c.peers.get(&p.cfg.node_id);
                let connected = v.is_some_and(|v| v.connection == ConnectionState::Connected)
                    && gone & bit(p.cfg.node_id) == 0;
                match (p.cfg.diskless, connected, v) {
                    (true, true, _) => PeerVote::DisklessConnected,
                    (true, false, _) => PeerVote::DisklessAbsent,
                    (false, true, Some(v)) => PeerVote::Present {
                        disk: v.disk,
                        quorate: v.quorate,
                    },
                    (false, false, Some(v)) if v.connection != ConnectionState::Connected => {
                        PeerVote::Absent(v.absence)
                    }
                    (false, _, _) => PeerVote::Absent(Absence::Unknown),
                }
            })
            .collect();
        evaluate_quorum(
            &self.quorum_config(),
            &QuorumInput {
                local,
                peers: &peers,
                had_quorum,
            },
        )
    }

    /// Re-evaluates quorum after a change to `c`; on a change of verdict, records the event and
    /// returns the new value.
    pub(crate) fn reevaluate_quorum(&self, c: &mut Control, events: &mut Vec<Event>) -> Option<bool> {
        let verdict = self.quorum_verdict(c, 0, c.quorum.have_quorum);
        let before = c.quorum.have_quorum;
        c.quorum = verdict;
        if verdict.have_quorum == before {
            return None;
        }
        events.push(Event::Quorum {
            have: verdict.have_quorum,
            reason: verdict.to_string(),
        });
        Some(verdict.have_quorum)
    }

    /// Acts on a change of quorum: wakes suspended I/O, tells the peers, and keeps the
    /// `primary-lost-quorum` flag in the metadata.
    pub(crate) fn quorum_changed(self: &Inner, have: bool) {
        self.quorum_tx.send_replace(have);
        self.broadcast_state();
        let primary = self.primary.load(Ordering::SeqCst);
        if have {
            tracing::info!(resource = %self.cfg.name, "quorum regained");
        } else {
            tracing::warn!(
                resource = %self.cfg.name,
                primary,
                on_no_quorum = %self.quorum_config().on_no_quorum,
                "quorum lost"
            );
            if primary {
                self.notify_handler(self.cfg.quorum_lost.as_ref(), None, "quorum-lost");
            }
        }
        // The `primary-lost-quorum` flag says "this node's data since it lost quorum as Primary
        // holds writes that never completed": the handshake makes it the loser (equal generations,
        // or a split brain by rule 9). Set when a Primary loses quorum; cleared when a Primary
        // regains it (its writes complete again) and otherwise only when its data stops being
        // that: a resync as target replaced it, it followed a Primary into a new generation, or
        // it was promoted. Not when a *Secondary* regains quorum: the demoted old Primary that
        // comes back to one node of the majority regains quorum through it while still holding
        // its own generation, and the next node it meets — the new Primary — must still see it
        // as the loser (found by the VM fault run: rule 9, both ends StandAlone).
        // Crash ordering: the flag is advisory for the next handshake. Writes made without quorum
        // never complete, so a crash before the flag is durable loses nothing acknowledged; it
        // only makes the handshake fall back to the ordinary rules.
        if let Some(d) = &self.disk
            && primary
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let meta = Arc::clone(&d.meta);
            let name = self.cfg.name.clone();
            rt.spawn_blocking(move || {
                let set = !have;
                if let Err(e) = meta.update(|_, flags| flags.set(NodeFlags::PRIMARY_LOST_QUORUM, set)) {
                    tracing::error!(resource = %name, error = %e, "cannot record the quorum state in the metadata");
                }
            });
        }
    }

    /// Lets application I/O through when this node has quorum; otherwise fails it or waits, as
    /// `on-no-quorum` says.
    pub(crate) async fn quorum_gate(&self) -> VolumeResult<()> {
        // Frozen while a fence-peer handler runs (`resource-and-stonith`).
        if *self.frozen.borrow() > 0 {
            let mut rx = self.frozen.subscribe();
            let mut shutdown = self.shutdown.subscribe();
            tokio::select! {
                r = rx.wait_for(|n| *n == 0) => { r.map_err(|_| VolumeError::ShuttingDown)?; }
                _ = shutdown.wait_for(|s| *s) => return Err(VolumeError::ShuttingDown),
            }
        }
        if *self.quorum_tx.borrow() {
            return Ok(());
        }
        match self.quorum_config().on_no_quorum {
            replbd_quorum::quorum::OnNoQuorum::IoError => Err(VolumeError::NoQuorum {
                resource: self.cfg.name.clone(),
            }),
            replbd_quorum::quorum::OnNoQuorum::SuspendIo => {
                let mut rx = self.quorum_tx.subscribe();
                let mut shutdown = self.shutdown.subscribe();
                tokio::select! {
                    r = rx.wait_for(|q| *q) => r.map(|_| ()).map_err(|_| VolumeError::ShuttingDown),
                    _ = shutdown.wait_for(|s| *s) => Err(VolumeError::ShuttingDown),
                }
            }
        }
    }

    /// A peer said it is leaving on purpose.
    pub(crate) fn peer_leaving(&self, node: u8) {
        lock(&self.control)
            .peers
            .entry(node)
            .or_insert_with(PeerView::unknown)
            .leaving = true;
    }
}

/// Leaves a peer on purpose: tells it (`Leaving`), waits up to a second for that to be on the
/// socket, then closes the link. From a Primary, the peer acks of the last epochs are waited for
/// first (briefly: the Primary sends them as soon as every peer acknowledged): leaving with writes
/// not peer-acked would mark them for every peer, and they would move again on return.
pub(crate) async fn leave(link: Arc<super::link::Link>, reason: &'static str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
    while !link.unacked.is_empty() && tokio::time::Instant::now() < deadline && !link.is_dead() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let sent = link.send_confirmed(crate::wire::OutFrame::bare(crate::wire::FrameHeader::new(
        crate::wire::Kind::Leaving,
    )));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sent).await;
    link.fail(reason);
}

impl Inner {
    /// Checks promotion with [`replbd_quorum::can_promote`].
    pub(crate) fn may_promote(
        &self,
        force: bool,
        disk: DiskState,
    ) -> Result<replbd_quorum::promote::Promotion, replbd_quorum::PromoteRefusal> {
        let just_created = self.disk.is_some() && self.local_gi().is_just_created();
        let c = lock(&self.control);
        let primary_peers: Vec<replbd_quorum::promote::PrimaryPeer> = self
            .peers()
            .iter()
            .filter_map(|p| {
                let v = c.peers.get(&p.cfg.node_id)?;
                let node = replbd_quorum::NodeId::new(p.cfg.node_id).ok()?;
                (v.connection == ConnectionState::Connected && v.role == Role::Primary).then_some(
                    replbd_quorum::promote::PrimaryPeer {
                        node,
                        // Dual-primary is not offered: a second Primary is always refused.
                        allow_two_primaries: false,
                        protocol: p.cfg.protocol,
                    },
                )
            })
            .collect();
        let up_to_date_peer_connected = c
            .peers
            .values()
            .any(|v| v.connection == ConnectionState::Connected && v.disk == DiskState::UpToDate);
        replbd_quorum::can_promote(&replbd_quorum::promote::PromoteRequest {
            force,
            quorum: c.quorum,
            local_disk: if self.disk.is_some() {
                disk
            } else {
                DiskState::Diskless
            },
            local_just_created: just_created,
            up_to_date_peer_connected,
            primary_peers: &primary_peers,
        })
    }

    /// `primary --force` without quorum: the administrator asserts the absent nodes are down;
    /// they count as Outdated from now on.
    pub(crate) fn outdate_absent_peers(&self) {
        self.change(|c| {
            for p in self.peers().iter() {
                let v = c.peers.entry(p.cfg.node_id).or_insert_with(PeerView::unknown);
                if v.connection != ConnectionState::Connected {
                    v.absence = Absence::Outdated;
                }
            }
            tracing::warn!(resource = %self.cfg.name, "promoted without quorum: absent peers are considered Outdated");
            Vec::new()
        });
    }
}
