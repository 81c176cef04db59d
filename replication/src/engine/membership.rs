//! Adding and removing peers of a running resource, and changing its quorum options: DRBD's
//! `adjust` for connections.
//!
//! Why not restart the resource: on a Primary a restart takes the device away from the
//! application for as long as the demotion, the new handshakes and the promotion take, and a
//! cluster manager changes members exactly when things already go wrong (a replica re-placed after
//! a node was lost). Here the peers that stay are not touched: their links, resyncs and writes in
//! flight go on while a new peer starts connecting or a removed one is disconnected.
//!
//! - **Added** peer: it gets a bitmap slot (durably, before it is used) flagged `full-sync`, an
//!   entry in the peer table and a connection task. Nothing here tracked what it missed before:
//!   a node that was a member earlier may come back with the current generation identifier yet
//!   without the writes made after the last node tracking it let it go (the VM scenario
//!   `node-adjust` found exactly that: the node caught up to the new generation through a
//!   Secondary, which then removed it, and the Primary wrote on). So the first resync with an
//!   added peer is a full one from this node, whatever the identifiers say — unless this node is
//!   not UpToDate or the peer is Primary; the flag goes once a resync with it finishes.
//! - **Removed** peer: told it is being left (`Leaving`, so its own quorum count knows), its link
//!   closed, its connection task ended; then it leaves the peer table and the quorum count, and
//!   its bitmap slot is freed (see `Metadata::release_slot` for the crash ordering).
//! - **Changed** peer (address, protocol, a disk added or removed, its name or policies): its
//!   connection is closed and opened again with the new settings; its slot and bitmap stay, so a
//!   Primary's writes meanwhile cost only a bitmap resync. A peer that gains a disk (a diskless
//!   tiebreaker turned into a replica) is treated as an added one: its new disk gets a full sync.
//!
//! The quorum options change with the members (LINSTOR turns quorum on once a resource has three
//! replicas). Quorum is evaluated again after each change: a new voter that has not connected yet
//! counts as absent, a removed one no longer counts at all; a Primary that loses quorum by the
//! change acts on it as on any loss (`on-no-quorum`).

use std::sync::Arc;
use std::time::Duration;

use super::config::{PeerConfig, ResourceConfig};
use super::core::{Inner, Peer, make_peer};
use super::resource::Resource;
use super::state::Event;

/// Longest wait for a removed peer's connection task to end (a handshake in progress finishes or
/// times out first).
const RETIRE_WAIT: Duration = Duration::from_secs(10);

/// What [`Resource::adjust`] changed (peers by node id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerChanges {
    /// Peers added.
    pub added: Vec<u8>,
    /// Peers removed.
    pub removed: Vec<u8>,
    /// Peers reconnected with changed settings.
    pub changed: Vec<u8>,
    /// The quorum options changed.
    pub quorum: bool,
}

impl PeerChanges {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && !self.quorum
    }
}

impl std::fmt::Display for PeerChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |ids: &[u8]| ids.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
        let mut parts = Vec::new();
        for (what, ids) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("reconnected", &self.changed),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what} node {}", list(ids)));
            }
        }
        if self.quorum {
            parts.push("quorum options changed".to_owned());
        }
        if parts.is_empty() {
            f.write_str("nothing changed")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Whether `p` would run with the settings `q` and `cfg` give it.
fn same_peer(p: &Peer, q: &PeerConfig, cfg: &ResourceConfig) -> bool {
    p.cfg.address == q.address
        && p.cfg.protocol == q.protocol
        && p.cfg.diskless == q.diskless
        && p.name == cfg.node_name(q.node_id)
        && p.fencing == cfg.fencing.get(&q.node_id).copied().unwrap_or_default()
        && p.on_congestion == cfg.congestion_policy(q.node_id)
}

impl Resource {
    /// Makes this resource's peers and quorum options those of `cfg` without restarting it: peers
    /// not in `cfg` are disconnected and forgotten, new ones start connecting, changed ones
    /// reconnect. Everything else in `cfg` must be what the resource runs with already; the
    /// caller restarts the resource for other changes.
    pub async fn adjust(&self, cfg: &ResourceConfig) -> Result<PeerChanges, String> {
        let inner = &self.inner;
        cfg.validate()?;
        if cfg.name != inner.cfg.name || cfg.node_id != inner.cfg.node_id {
            return Err(format!(
                "the new configuration is for resource {} node {}, not {} node {}",
                cfg.name, cfg.node_id, inner.cfg.name, inner.cfg.node_id
            ));
        }
        if inner.is_shutting_down() {
            return Err(format!("resource {} is going down", inner.cfg.name));
        }
        let _one_at_a_time = self.adjusting.lock().await;
        let current = inner.peers();
        let mut changes = PeerChanges::default();
        // Changed peers that had no disk here and have one now: like new members, nothing
        // tracked what their new disk lacks.
        let mut gained_disk = Vec::new();
        for p in current.iter() {
            match cfg.peers.iter().find(|q| q.node_id == p.cfg.node_id) {
                None => changes.removed.push(p.cfg.node_id),
                Some(q) if !same_peer(p, q, cfg) => {
                    changes.changed.push(p.cfg.node_id);
                    if p.cfg.diskless && !q.diskless {
                        gained_disk.push(q.node_id);
                    }
                }
                Some(_) => {}
            }
        }
        for q in &cfg.peers {
            if !current.iter().any(|p| p.cfg.node_id == q.node_id) {
                changes.added.push(q.node_id);
            }
        }
        for &node in changes.removed.iter().chain(&changes.changed) {
            self.retire(node, !changes.changed.contains(&node)).await?;
        }
        for q in cfg
            .peers
            .iter()
            .filter(|q| changes.added.contains(&q.node_id) || changes.changed.contains(&q.node_id))
        {
            let new_member = changes.added.contains(&q.node_id) || gained_disk.contains(&q.node_id);
            self.enlist(cfg, q, new_member)?;
        }
        if inner.quorum_config() != cfg.quorum {
            *inner
                .quorum_cfg
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = cfg.quorum;
            changes.quorum = true;
            // Evaluated again under the new options.
            inner.change(|_| Vec::new());
        }
        if !changes.is_empty() {
            tracing::info!(resource = %inner.cfg.name, %changes, "peers adjusted");
        }
        Ok(changes)
    }

    /// Adds peer `q` and starts connecting to it; a `new_member` (not a changed one) is flagged
    /// for a full sync from this node.
    fn enlist(&self, cfg: &ResourceConfig, q: &PeerConfig, new_member: bool) -> Result<(), String> {
        let inner = &self.inner;
        let peer = make_peer(cfg, q, inner.disk.as_ref(), new_member)?;
        let node = q.node_id;
        {
            let mut list = inner
                .peer_list
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut next: Vec<Arc<Peer>> = list.iter().cloned().collect();
            next.push(Arc::clone(&peer));
            *list = Arc::new(next);
        }
        inner.change(|c| {
            c.peers.remove(&node);
            vec![Event::PeerAdded { peer: node }]
        });
        let task = tokio::spawn(super::connection::run(Arc::clone(inner), peer));
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        Ok(())
    }

    /// Disconnects peer `node` (telling it first), ends its connection task and takes it out of the
    /// peer table and the quorum count; with `forget`, frees its bitmap slot too.
    async fn retire(&self, node: u8, forget: bool) -> Result<(), String> {
        let inner: &Arc<Inner> = &self.inner;
        let Some(peer) = inner.peer(node) else {
            return Ok(());
        };
        peer.removed.send_replace(true);
        peer.wanted.send_replace(false);
        if let Some(link) = peer.live() {
            super::quorum::leave(link, "the peer was removed from the resource").await;
        }
        let mut ended = peer.ended.subscribe();
        if tokio::time::timeout(RETIRE_WAIT, ended.wait_for(|e| *e))
            .await
            .is_err()
        {
            tracing::warn!(resource = %inner.cfg.name, peer = node, "the removed peer's connection task did not end within 10s");
            if let Some(link) = peer.live() {
                link.fail("the peer was removed from the resource");
            }
        }
        {
            let mut list = inner
                .peer_list
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let next: Vec<Arc<Peer>> = list.iter().filter(|p| p.cfg.node_id != node).cloned().collect();
            *list = Arc::new(next);
        }
        inner.change(|c| {
            c.peers.remove(&node);
            vec![Event::PeerRemoved { peer: node }]
        });
        if forget
            && peer.slot.is_some()
            && let Some(d) = &inner.disk
            && let Some(id) = replbd_bitmap::NodeId::new(node)
        {
            let meta = Arc::clone(&d.meta);
            tokio::task::spawn_blocking(move || meta.release_slot(id))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("freeing the bitmap slot of removed node {node} failed: {e}"))?;
        }
        Ok(())
    }
}
