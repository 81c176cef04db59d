//! Administrator commands on a running resource: `verify`, `invalidate`, `invalidate-remote`,
//! `new-current-uuid`, `outdate`.
//!
//! They behave as in DRBD: `verify` compares the data with a peer and marks what differs without
//! fixing it (a reconnect, or one of the invalidate commands, moves it); `invalidate` throws this
//! node's data away and fetches all of it from an UpToDate peer; `invalidate-remote` does the same to
//! a peer with this node's data. Both invalidates move every block (a full sync) and keep the device
//! usable: reads on the invalidated node are served by its peers until the sync is complete.

use std::sync::Arc;

use replbd_quorum::{DiskState, ReplicationState, Role};

use super::core::Inner;
use super::link::Link;
use super::resource::Resource;
use super::resync::SyncRole;
use super::resync::command::{begin_resync, begin_verify};

/// Why an administrator command was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(String);

/// A live connection to `peer` with a disk on both ends, ready for a resync or verify.
fn ready_link(inner: &Inner, peer: u8) -> Result<Arc<Link>, CommandError> {
    let p = inner.peer(peer).ok_or_else(|| {
        CommandError(format!(
            "resource {} has no peer with node id {peer}",
            inner.cfg.name
        ))
    })?;
    let link = p
        .live()
        .ok_or_else(|| CommandError(format!("node {peer} is not connected; connect it first")))?;
    if link.slot.is_none() {
        return Err(CommandError(format!(
            "node {peer} is diskless: there is no data to compare or sync"
        )));
    }
    match inner.replication(peer) {
        ReplicationState::Established => Ok(link),
        state => Err(CommandError(format!(
            "the connection to node {peer} is {state}; wait until it is Established"
        ))),
    }
}

impl Resource {
    /// Starts an online verify against `peer`, or against every connected peer with a disk. The
    /// outcome arrives as [`super::Event::VerifyFinished`], one per peer. Returns the peers verified.
    pub fn verify(&self, peer: Option<u8>) -> Result<Vec<u8>, CommandError> {
        let inner = &self.inner;
        if inner.disk.is_none() {
            return Err(CommandError(
                "this node is diskless: there is nothing to verify".into(),
            ));
        }
        let peers: Vec<u8> = match peer {
            Some(p) => vec![p],
            None => inner
                .peers()
                .iter()
                .filter(|p| p.live().is_some_and(|l| l.slot.is_some()))
                .map(|p| p.cfg.node_id)
                .collect(),
        };
        if peers.is_empty() {
            return Err(CommandError(
                "no connected peer with a disk to verify against".into(),
            ));
        }
        for &p in &peers {
            let link = ready_link(inner, p)?;
            begin_verify(inner, &link).map_err(CommandError)?;
        }
        Ok(peers)
    }

    /// Discards this node's data and resyncs all of it from `peer` (or from any connected UpToDate
    /// peer). Returns the sync source.
    pub fn invalidate(&self, peer: Option<u8>) -> Result<u8, CommandError> {
        let inner = &self.inner;
        if inner.disk.is_none() {
            return Err(CommandError(
                "this node is diskless: there is no local data to invalidate".into(),
            ));
        }
        if inner.role() == Role::Primary {
            return Err(CommandError(
                "this node is Primary: demote it first (a Primary's data is what the application reads)"
                    .into(),
            ));
        }
        let source = match peer {
            Some(p) => p,
            // A Primary first: a Secondary source pauses while another node writes.
            None => {
                let candidates: Vec<u8> = inner
                    .up_to_date_peers()
                    .iter()
                    .filter(|l| l.slot.is_some())
                    .map(|l| l.peer)
                    .collect();
                let primaries = inner.primary_peers();
                candidates
                    .iter()
                    .find(|p| primaries.contains(p))
                    .or(candidates.first())
                    .copied()
                    .ok_or_else(|| CommandError("no connected peer has UpToDate data to sync from".into()))?
            }
        };
        let link = ready_link(inner, source)?;
        let (disk, _) = inner.peer_disk_and_uuid(source);
        if disk != DiskState::UpToDate {
            return Err(CommandError(format!(
                "node {source} is {disk}: only an UpToDate peer can be the sync source"
            )));
        }
        tracing::warn!(resource = %inner.cfg.name, source, "invalidate: discarding the local data; full resync from the peer");
        begin_resync(inner, &link, SyncRole::Target, true, true).map_err(CommandError)?;
        Ok(source)
    }

    /// Overwrites `peer`'s data with this node's: a full resync with this node as the source.
    pub fn invalidate_remote(&self, peer: u8) -> Result<(), CommandError> {
        let inner = &self.inner;
        let (_, disk) = inner.role_and_disk();
        if inner.disk.is_none() || disk != DiskState::UpToDate {
            return Err(CommandError(format!(
                "the local disk is {disk}: only UpToDate data can overwrite a peer"
            )));
        }
        let link = ready_link(inner, peer)?;
        if inner.peer_role(peer) == Role::Primary {
            return Err(CommandError(format!(
                "node {peer} is Primary: demote it before overwriting its data"
            )));
        }
        tracing::warn!(resource = %inner.cfg.name, peer, "invalidate-remote: full resync of the peer from this node");
        begin_resync(inner, &link, SyncRole::Source, true, true).map_err(CommandError)
    }
}

impl Resource {
    /// `new-current-uuid` on a running Primary: starts a new data generation now (instead of at the
    /// next promotion or peer loss), durably. Connected UpToDate peers follow it; absent peers keep
    /// the old one in their bitmap slot, so their return is a bitmap resync as usual. Use it to
    /// mark a point in time — before a snapshot or a backup of a Secondary, say — that later
    /// handshakes can tell apart.
    pub async fn new_current_uuid(&self) -> Result<(), CommandError> {
        let inner = &self.inner;
        if inner.disk.is_none() {
            return Err(CommandError(
                "this node is diskless: it has no generation identifiers of its own".into(),
            ));
        }
        if inner.role() != Role::Primary {
            return Err(CommandError(
                "new-current-uuid on a running resource needs this node to be Primary (a Secondary \
                 starting its own generation would diverge from the Primary); on a resource that is \
                 down, `new-current-uuid --clear-bitmap` skips the initial sync"
                    .into(),
            ));
        }
        inner.new_data_generation().await.map_err(CommandError)
    }
}

impl Resource {
    /// `outdate`: marks this node's data Outdated (consistent, not current), durably — what a
    /// cluster manager's fencing does to a node it cannot trust to be current. An Outdated node is
    /// not promoted without `--force`; the next connection to an UpToDate peer resyncs it from its
    /// bitmap. Refused on a Primary and while connected (as in DRBD): a connected node's data is
    /// kept current by its peers.
    pub async fn outdate(&self) -> Result<(), CommandError> {
        let inner = &self.inner;
        let Some(d) = &inner.disk else {
            return Err(CommandError(
                "this node is diskless: there is no local data to outdate".into(),
            ));
        };
        if inner.role() == Role::Primary {
            return Err(CommandError("this node is Primary: demote it first".into()));
        }
        if let Some(l) = inner.live_links().first() {
            return Err(CommandError(format!(
                "refusing to outdate while connected (to node {}): disconnect first",
                l.peer
            )));
        }
        let (_, disk) = inner.role_and_disk();
        if disk < DiskState::Outdated {
            return Err(CommandError(format!(
                "the local disk is {disk}: only consistent data can be outdated"
            )));
        }
        let meta = Arc::clone(&d.meta);
        tokio::task::spawn_blocking(move || {
            meta.update(|_, flags| flags.set(replbd_bitmap::NodeFlags::WAS_UP_TO_DATE, false))
        })
        .await
        .map_err(|e| CommandError(e.to_string()))?
        .map_err(|e| CommandError(format!("cannot record the outdated state: {e}")))?;
        inner.change(|c| {
            if c.disk == DiskState::Outdated {
                return Vec::new();
            }
            c.disk = DiskState::Outdated;
            vec![super::state::Event::Disk(DiskState::Outdated)]
        });
        Ok(())
    }
}
