//! Fencing: before a Primary carries on without a peer, the cluster manager makes sure that peer
//! cannot write (DRBD's `fence-peer`).
//!
//! When a Primary's connection to a peer fails (not a peer that said it was leaving: that one is
//! Outdated already) and `fencing` for that peer is not `dont-care`, the `fence-peer` handler runs
//! with `REPLBD_RESOURCE`, `REPLBD_PEER` (the node name), `REPLBD_PEER_NODE_ID` and
//! `REPLBD_PEER_ADDRESS` in its environment (and DRBD's `DRBD_RESOURCE`, `DRBD_PEER_NODE_ID`, so
//! existing scripts work). Its exit code means what it means in DRBD
//! ([`replbd_quorum::fencing::apply_fence_outcome`]).
//!
//! With `resource-and-stonith` application I/O is frozen from the moment the link fails — before
//! any request on it completes, so no write that missed the peer is acknowledged until the peer is
//! known unable to promote — until the handler answers. An answer that proves nothing (exit code
//! 5 with a local disk that is not UpToDate, or any unknown code) keeps I/O frozen until the
//! administrator checks the peer and calls `resume-io`.
//!
//! A node that promotes (without `--force`) while a diskful peer is neither connected nor known
//! Outdated runs the handler for that peer first, and the promotion is refused unless the answer
//! proves the peer cannot write.
//!
//! Once every diskful peer is connected and UpToDate again, `unfence-peer` runs for each fenced
//! peer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use replbd_quorum::fencing::{
    FenceOutcome, FenceResult, FencingPolicy, IoAfterFence, apply_fence_outcome, freezes_io_while_fencing,
    must_fence_before_promote, must_fence_on_peer_loss, must_unfence,
};
use replbd_quorum::quorum::Absence;
use replbd_quorum::{ConnectionState, DiskState};

use super::core::{Inner, PeerView, lock};
use super::state::Event;

impl Inner {
    fn fencing_for(&self, peer: u8) -> FencingPolicy {
        self.peer(peer).map(|p| p.fencing).unwrap_or_default()
    }

    /// The link to `node` just failed (called before its requests complete): fence it if the
    /// policy says so, freezing I/O first with `resource-and-stonith`.
    pub(crate) fn peer_lost_maybe_fence(self: &Arc<Self>, node: u8) {
        // A peer removed from the resource is left on purpose: nothing to fence.
        if self.peer(node).is_none_or(|p| *p.removed.borrow()) {
            return;
        }
        let policy = self.fencing_for(node);
        let (role, disk, peer_known_outdated) = {
            let c = lock(&self.control);
            let outdated = c.peers.get(&node).is_some_and(|v| v.absence == Absence::Outdated);
            (c.role, c.disk, outdated)
        };
        let local = if self.disk.is_some() {
            disk
        } else {
            DiskState::Diskless
        };
        let peer_disk = if peer_known_outdated {
            DiskState::Outdated
        } else {
            DiskState::DUnknown
        };
        if !must_fence_on_peer_loss(policy, role, local, peer_disk) {
            return;
        }
        let freeze = freezes_io_while_fencing(policy);
        if freeze {
            self.frozen.send_modify(|n| *n += 1);
            tracing::warn!(resource = %self.cfg.name, peer = node, "I/O frozen while the fence-peer handler runs");
        }
        let inner = Arc::clone(self);
        tokio::spawn(async move { inner.fence(node, freeze).await });
    }

    async fn fence(self: Arc<Self>, node: u8, froze: bool) {
        let (outcome, result) = self.fence_and_record(node).await;
        if froze {
            match result.io {
                IoAfterFence::Resume => {
                    self.frozen.send_modify(|n| *n = n.saturating_sub(1));
                    tracing::info!(resource = %self.cfg.name, peer = node, "fencing done: I/O resumes");
                }
                IoAfterFence::StayFrozen => tracing::error!(
                    resource = %self.cfg.name,
                    peer = node,
                    outcome = %outcome,
                    "the peer could not be fenced: I/O stays frozen; make sure the peer cannot write, then run resume-io"
                ),
            }
        }
    }

    /// Before a promotion (without `--force`): every diskful peer that is neither connected nor
    /// known to be Outdated is fenced first when its policy says so, as DRBD does — a node cut off
    /// from a peer cannot tell whether that peer is Primary on the other side. An answer that does
    /// not prove the peer unable to write refuses the promotion.
    pub(crate) async fn fence_before_promotion(self: &Arc<Self>) -> Result<(), String> {
        let to_fence: Vec<u8> = {
            let c = lock(&self.control);
            self.peers()
                .iter()
                .filter(|p| !p.cfg.diskless)
                .map(|p| p.cfg.node_id)
                .filter(|&n| {
                    let view = c.peers.get(&n);
                    let connected = view.is_some_and(|v| v.connection == ConnectionState::Connected);
                    let disk = match view {
                        Some(v) if connected => v.disk,
                        Some(v) if v.absence == Absence::Outdated => DiskState::Outdated,
                        _ => DiskState::DUnknown,
                    };
                    must_fence_before_promote(self.fencing_for(n), connected, disk)
                })
                .collect()
        };
        for node in to_fence {
            tracing::warn!(resource = %self.cfg.name, peer = node, "promoting while cut off from a peer: running fence-peer first");
            let (outcome, result) = self.fence_and_record(node).await;
            if !result.peer_fenced() {
                return Err(format!(
                    "{} is not connected and fence-peer did not fence it ({outcome}): it may be Primary \
                     elsewhere. Make sure it cannot write, then retry, or promote with --force",
                    self.node_name(node)
                ));
            }
        }
        Ok(())
    }

    /// Runs `fence-peer` for `node` and records what its answer means.
    async fn fence_and_record(self: &Arc<Self>, node: u8) -> (FenceOutcome, FenceResult) {
        let outcome = match self
            .run_handler(self.cfg.fence_peer.as_deref(), Some(node), "fence-peer")
            .await
        {
            Some(code) => FenceOutcome::from_exit_code(code),
            None => FenceOutcome::HandlerFailed { exit_code: -1 },
        };
        let (_, disk) = self.role_and_disk();
        let result = apply_fence_outcome(outcome, disk);
        tracing::warn!(resource = %self.cfg.name, peer = node, outcome = %outcome, "fence-peer answered");
        self.change(|c| {
            let mut events = vec![Event::Fenced {
                peer: node,
                outcome: outcome.to_string(),
            }];
            if result.peer_fenced() {
                let v = c.peers.entry(node).or_insert_with(PeerView::unknown);
                if v.connection != ConnectionState::Connected {
                    v.absence = Absence::Outdated;
                }
            }
            if result.outdate_local && c.disk == DiskState::UpToDate {
                c.disk = DiskState::Outdated;
                events.push(Event::Disk(DiskState::Outdated));
            }
            events
        });
        if result.peer_fenced() {
            lock(&self.fenced).insert(node);
        }
        if result.outdate_local
            && let Some(d) = &self.disk
        {
            let meta = Arc::clone(&d.meta);
            let _ = tokio::task::spawn_blocking(move || {
                meta.update(|_, flags| flags.set(replbd_bitmap::NodeFlags::WAS_UP_TO_DATE, false))
            })
            .await;
        }
        (outcome, result)
    }

    /// A peer reported UpToDate: once every diskful peer is connected and UpToDate, the fenced ones
    /// are unfenced.
    pub(crate) fn maybe_unfence(self: &Arc<Self>) {
        let all_up_to_date = {
            let c = lock(&self.control);
            self.peers().iter().filter(|p| !p.cfg.diskless).all(|p| {
                c.peers.get(&p.cfg.node_id).is_some_and(|v| {
                    v.connection == ConnectionState::Connected && v.disk == DiskState::UpToDate
                })
            })
        };
        let nodes: Vec<u8> = {
            let mut fenced = lock(&self.fenced);
            let ready: Vec<u8> = fenced
                .iter()
                .copied()
                .filter(|&n| must_unfence(self.fencing_for(n), true, all_up_to_date))
                .collect();
            for n in &ready {
                fenced.remove(n);
            }
            ready
        };
        for node in nodes {
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                if inner.cfg.unfence_peer.is_some() {
                    let code = inner
                        .run_handler(inner.cfg.unfence_peer.as_deref(), Some(node), "unfence-peer")
                        .await;
                    tracing::info!(resource = %inner.cfg.name, peer = node, exit_code = ?code, "unfence-peer ran");
                }
            });
        }
    }

    /// `resume-io`: the administrator made sure no other node writes; frozen I/O continues.
    pub(crate) fn resume_io(&self) -> bool {
        let was = *self.frozen.borrow() > 0;
        self.frozen.send_replace(0);
        if was {
            tracing::warn!(resource = %self.cfg.name, "I/O resumed by the administrator");
        }
        self.primary.load(Ordering::SeqCst) && was
    }
}
