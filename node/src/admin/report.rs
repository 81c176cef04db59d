//! The status of a resource as the daemon reports it: the engine's [`Status`] with node names
//! instead of node ids, the front end, and whether the resource is up at all.
//!
//! The engine knows peers by node id; operators know them by name, so every report is built from
//! the engine's status and the resource's configuration ([`ResourceReport::build`]).

use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};
use replbd_replication::Status;
use serde::{Deserialize, Serialize};

use crate::config::ResourceSpec;

/// The state of a resource's front end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontEndReport {
    /// `ublk`, `nbd` or `none`, as configured.
    pub kind: String,
    /// Where it serves (`unix:/run/replbd/r0.nbd`, `127.0.0.1:10809`), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `serving`, `stopped` (not Primary), `unavailable` or `none`.
    pub state: String,
    /// Why it is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One peer of a resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer's node name.
    pub name: String,
    /// The peer's node id.
    pub node_id: u8,
    /// Connection state.
    pub connection: ConnectionState,
    /// Replication state.
    pub replication: ReplicationState,
    /// The peer's disk state as it reported it (DUnknown while not connected).
    pub peer_disk: DiskState,
    /// The peer's role (Unknown while not connected).
    pub role: Role,
    /// Bytes this node has marked out of sync with the peer.
    pub out_of_sync_bytes: u64,
    /// Resync progress in percent while a resync or verify runs (DRBD's `done:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_percent: Option<f64>,
}

/// One resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceReport {
    /// The resource.
    pub name: String,
    /// This node's name.
    pub node: String,
    /// This node's id.
    pub node_id: u8,
    /// Whether the resource is up (brought up and not down).
    pub up: bool,
    /// Role (absent while down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Local disk state (absent while down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskState>,
    /// Whether this node has quorum (absent while down; always true with `quorum off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<bool>,
    /// The volume number.
    pub volume: u32,
    /// The volume size in bytes (0 while down, or diskless before a peer reported it).
    pub size_bytes: u64,
    /// The front end.
    pub front_end: FrontEndReport,
    /// Every peer, in node-id order (empty while down).
    pub peers: Vec<PeerReport>,
}

/// Whether `state` is a resync or verify, for which DRBD shows progress.
pub fn is_syncing(state: ReplicationState) -> bool {
    matches!(
        state,
        ReplicationState::SyncSource
            | ReplicationState::SyncTarget
            | ReplicationState::PausedSyncS
            | ReplicationState::PausedSyncT
            | ReplicationState::VerifyS
            | ReplicationState::VerifyT
    )
}

/// Percent of the volume in sync, with two decimals' worth of precision.
pub fn done_percent(size: u64, out_of_sync: u64) -> f64 {
    if size == 0 {
        return 100.0;
    }
    let in_sync = size.saturating_sub(out_of_sync);
    (in_sync as f64 * 10000.0 / size as f64).floor() / 100.0
}

impl ResourceReport {
    /// A report of a resource that is down.
    pub fn down(spec: &ResourceSpec, front_end: FrontEndReport) -> ResourceReport {
        ResourceReport {
            name: spec.name.clone(),
            node: spec.this.name.clone(),
            node_id: spec.this.id,
            up: false,
            role: None,
            disk: None,
            quorum: None,
            volume: spec.volume.number,
            size_bytes: 0,
            front_end,
            peers: Vec::new(),
        }
    }

    /// A report of a running resource from its engine status.
    pub fn build(
        spec: &ResourceSpec,
        status: &Status,
        size: u64,
        front_end: FrontEndReport,
    ) -> ResourceReport {
        let peers = status
            .peers
            .iter()
            .map(|p| PeerReport {
                name: spec.node_name(p.node),
                node_id: p.node,
                connection: p.connection,
                replication: p.replication,
                peer_disk: p.disk,
                role: p.role,
                out_of_sync_bytes: p.out_of_sync,
                done_percent: is_syncing(p.replication).then(|| done_percent(size, p.out_of_sync)),
            })
            .collect();
        ResourceReport {
            name: spec.name.clone(),
            node: spec.this.name.clone(),
            node_id: spec.this.id,
            up: true,
            role: Some(status.role),
            disk: Some(status.disk),
            quorum: Some(status.quorum),
            volume: spec.volume.number,
            size_bytes: size,
            front_end,
            peers,
        }
    }

    /// The peer named `name`.
    pub fn peer(&self, name: &str) -> Option<&PeerReport> {
        self.peers.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_truncated_to_two_decimals() {
        assert_eq!(done_percent(0, 0), 100.0);
        assert_eq!(done_percent(100 << 20, 0), 100.0);
        assert_eq!(done_percent(100, 57), 43.0);
        assert_eq!(done_percent(3, 1), 66.66);
        assert_eq!(done_percent(100, 100), 0.0);
        assert!(is_syncing(ReplicationState::SyncTarget) && !is_syncing(ReplicationState::Established));
    }
}
