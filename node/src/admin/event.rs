//! State changes as the daemon reports them to `events` clients: typed, with node names, and with
//! a `Display` that is a `drbdsetup events2` line (`change connection name:r0 peer-node-id:1
//! conn-name:beta connection:Connected`).
//!
//! A client first receives the state that exists (`exists …` lines, closed by `exists -`), then
//! every change as it happens — so a script never misses the state it started in.

use std::fmt;

use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};
use replbd_replication::engine::Event;
use serde::{Deserialize, Serialize};

use super::report::ResourceReport;
use crate::config::ResourceSpec;

/// What kind of line an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The state at the time the client subscribed.
    Exists,
    /// An object appeared (a resource came up).
    Create,
    /// An object changed.
    Change,
    /// An object disappeared (a resource went down).
    Destroy,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Exists => "exists",
            Action::Create => "create",
            Action::Change => "change",
            Action::Destroy => "destroy",
        })
    }
}

/// What an event is about, with its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "kebab-case")]
pub enum Object {
    /// A resource and its role.
    Resource {
        /// The resource.
        name: String,
        /// This node's role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
    },
    /// The local disk of a volume.
    Device {
        /// The resource.
        name: String,
        /// The volume.
        volume: u32,
        /// The disk state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disk: Option<DiskState>,
        /// Whether this node has quorum.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quorum: Option<bool>,
    },
    /// The fence-peer handler answered for a peer.
    Fenced {
        /// The resource.
        name: String,
        /// The peer's node id.
        peer_node_id: u8,
        /// The peer's node name.
        conn_name: String,
        /// The exit code and its meaning.
        outcome: String,
    },
    /// A split brain found at connect with a peer, and what happens about it.
    SplitBrain {
        /// The resource.
        name: String,
        /// The peer's node id.
        peer_node_id: u8,
        /// The peer's node name.
        conn_name: String,
        /// The resolution (or "disconnect") and why.
        outcome: String,
    },
    /// The connection to a peer.
    Connection {
        /// The resource.
        name: String,
        /// The peer's node id.
        peer_node_id: u8,
        /// The peer's node name.
        conn_name: String,
        /// The connection state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<ConnectionState>,
        /// The peer's role.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        /// Why the connection changed (failures).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A volume as replicated to a peer.
    PeerDevice {
        /// The resource.
        name: String,
        /// The peer's node id.
        peer_node_id: u8,
        /// The peer's node name.
        conn_name: String,
        /// The volume.
        volume: u32,
        /// The replication state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replication: Option<ReplicationState>,
        /// The peer's disk state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_disk: Option<DiskState>,
        /// Bytes out of sync with the peer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        out_of_sync_bytes: Option<u64>,
    },
    /// An online verify with a peer finished: what it found out of sync (marked, not fixed).
    VerifyResult {
        /// The resource.
        name: String,
        /// The peer's node id.
        peer_node_id: u8,
        /// The peer's node name.
        conn_name: String,
        /// The volume.
        volume: u32,
        /// Bytes found out of sync.
        out_of_sync_bytes: u64,
        /// The differing ranges as inclusive `(first, last)` sectors.
        sectors: Vec<(u64, u64)>,
    },
    /// A resync with a peer finished: what it moved (to report and assert partial resyncs).
    Resync {
        /// The resource.
        name: String,
        /// The peer's node id.
        peer_node_id: u8,
        /// The peer's node name.
        conn_name: String,
        /// The volume.
        volume: u32,
        /// This node's side: SyncSource or SyncTarget.
        replication: ReplicationState,
        /// Bytes of data moved (blocks found in sync by checksum not counted).
        bytes_moved: u64,
        /// How long it took, in milliseconds.
        milliseconds: u64,
    },
    /// The end of the initial `exists` lines (`exists -`).
    End,
}

/// A state change, or a piece of the state that exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// exists, create, change or destroy.
    pub action: Action,
    /// The object and its fields.
    #[serde(flatten)]
    pub object: Object,
}

impl NodeEvent {
    /// The changes of `spec`'s resource that an engine event reports, with peer ids named (a
    /// peer's new role and disk state are two lines, on its connection and its peer device).
    pub fn from_engine(spec: &ResourceSpec, event: &Event) -> Vec<NodeEvent> {
        let name = spec.name.clone();
        let volume = spec.volume.number;
        let change = |object| NodeEvent {
            action: Action::Change,
            object,
        };
        let connection = |peer: u8, state, role, reason| Object::Connection {
            name: name.clone(),
            peer_node_id: peer,
            conn_name: spec.node_name(peer),
            connection: state,
            role,
            reason,
        };
        let peer_device = |peer: u8, replication, peer_disk| Object::PeerDevice {
            name: name.clone(),
            peer_node_id: peer,
            conn_name: spec.node_name(peer),
            volume,
            replication,
            peer_disk,
            out_of_sync_bytes: None,
        };
        match event {
            Event::Role(role) => vec![change(Object::Resource {
                name: name.clone(),
                role: Some(*role),
            })],
            Event::Disk(disk) => vec![change(Object::Device {
                name: name.clone(),
                volume,
                disk: Some(*disk),
                quorum: None,
            })],
            Event::Quorum { have, .. } => vec![change(Object::Device {
                name: name.clone(),
                volume,
                disk: None,
                quorum: Some(*have),
            })],
            Event::Fenced { peer, outcome } => vec![change(Object::Fenced {
                name: name.clone(),
                peer_node_id: *peer,
                conn_name: spec.node_name(*peer),
                outcome: outcome.clone(),
            })],
            Event::SplitBrain { peer, outcome } => vec![change(Object::SplitBrain {
                name: name.clone(),
                peer_node_id: *peer,
                conn_name: spec.node_name(*peer),
                outcome: outcome.clone(),
            })],
            Event::Connection { peer, state, reason } => {
                vec![change(connection(*peer, Some(*state), None, reason.clone()))]
            }
            Event::Replication { peer, state } => vec![change(peer_device(*peer, Some(*state), None))],
            Event::PeerAdded { peer } => vec![NodeEvent {
                action: Action::Create,
                object: connection(*peer, None, None, None),
            }],
            Event::PeerRemoved { peer } => vec![NodeEvent {
                action: Action::Destroy,
                object: connection(*peer, None, None, None),
            }],
            Event::PeerState { peer, disk, role } => vec![
                change(connection(*peer, None, Some(*role), None)),
                change(peer_device(*peer, None, Some(*disk))),
            ],
            Event::VerifyFinished {
                peer,
                out_of_sync_bytes,
                sectors,
                ..
            } => vec![change(Object::VerifyResult {
                name: name.clone(),
                peer_node_id: *peer,
                conn_name: spec.node_name(*peer),
                volume,
                out_of_sync_bytes: *out_of_sync_bytes,
                sectors: sectors.iter().map(|&(s, e)| (s, e.saturating_sub(1))).collect(),
            })],
            // A finished resync leaves nothing out of sync with that peer.
            Event::ResyncFinished {
                peer,
                source,
                bytes_moved,
                seconds,
            } => vec![
                change(Object::Resync {
                    name: name.clone(),
                    peer_node_id: *peer,
                    conn_name: spec.node_name(*peer),
                    volume,
                    replication: if *source {
                        ReplicationState::SyncSource
                    } else {
                        ReplicationState::SyncTarget
                    },
                    bytes_moved: *bytes_moved,
                    milliseconds: (seconds * 1000.0).round() as u64,
                }),
                change(Object::PeerDevice {
                    name: name.clone(),
                    peer_node_id: *peer,
                    conn_name: spec.node_name(*peer),
                    volume,
                    replication: None,
                    peer_disk: None,
                    out_of_sync_bytes: Some(0),
                }),
            ],
        }
    }

    /// The `exists` lines describing a resource's state (nothing for a resource that is down).
    pub fn exists(report: &ResourceReport) -> Vec<NodeEvent> {
        if !report.up {
            return Vec::new();
        }
        let e = |object| NodeEvent {
            action: Action::Exists,
            object,
        };
        let name = &report.name;
        let mut out = vec![
            e(Object::Resource {
                name: name.clone(),
                role: report.role,
            }),
            e(Object::Device {
                name: name.clone(),
                volume: report.volume,
                disk: report.disk,
                quorum: report.quorum,
            }),
        ];
        for p in &report.peers {
            out.push(e(Object::Connection {
                name: name.clone(),
                peer_node_id: p.node_id,
                conn_name: p.name.clone(),
                connection: Some(p.connection),
                role: Some(p.role),
                reason: None,
            }));
            out.push(e(Object::PeerDevice {
                name: name.clone(),
                peer_node_id: p.node_id,
                conn_name: p.name.clone(),
                volume: report.volume,
                replication: Some(p.replication),
                peer_disk: Some(p.peer_disk),
                out_of_sync_bytes: Some(p.out_of_sync_bytes),
            }));
        }
        out
    }

    /// A resource came up (`create`) or went down (`destroy`).
    pub fn lifecycle(action: Action, name: &str, role: Option<Role>) -> NodeEvent {
        NodeEvent {
            action,
            object: Object::Resource {
                name: name.to_owned(),
                role,
            },
        }
    }

    /// `exists -`.
    pub fn end_of_initial_state() -> NodeEvent {
        NodeEvent {
            action: Action::Exists,
            object: Object::End,
        }
    }
}

impl fmt::Display for NodeEvent {
    /// One `drbdsetup events2`-like line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        match &self.object {
            Object::End => f.write_str(" -"),
            Object::Resource { name, role } => {
                write!(f, " resource name:{name}")?;
                if let Some(r) = role {
                    write!(f, " role:{r}")?;
                }
                Ok(())
            }
            Object::Device {
                name,
                volume,
                disk,
                quorum,
            } => {
                write!(f, " device name:{name} volume:{volume}")?;
                if let Some(d) = disk {
                    write!(f, " disk:{d}")?;
                }
                if let Some(q) = quorum {
                    write!(f, " quorum:{}", if *q { "yes" } else { "no" })?;
                }
                Ok(())
            }
            Object::Fenced {
                name,
                peer_node_id,
                conn_name,
                outcome,
            } => write!(
                f,
                " fence-peer name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} outcome:{outcome:?}"
            ),
            Object::SplitBrain {
                name,
                peer_node_id,
                conn_name,
                outcome,
            } => write!(
                f,
                " split-brain name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} outcome:{outcome:?}"
            ),
            Object::Connection {
                name,
                peer_node_id,
                conn_name,
                connection,
                role,
                reason,
            } => {
                write!(
                    f,
                    " connection name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name}"
                )?;
                if let Some(c) = connection {
                    write!(f, " connection:{c}")?;
                }
                if let Some(r) = role {
                    write!(f, " role:{r}")?;
                }
                if let Some(r) = reason {
                    write!(f, " reason:{r:?}")?;
                }
                Ok(())
            }
            Object::VerifyResult {
                name,
                peer_node_id,
                conn_name,
                volume,
                out_of_sync_bytes,
                sectors,
            } => {
                write!(
                    f,
                    " verify name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} volume:{volume} out-of-sync:{out_of_sync_bytes}"
                )?;
                for (first, last) in sectors {
                    write!(f, " sectors:{first}-{last}")?;
                }
                Ok(())
            }
            Object::PeerDevice {
                name,
                peer_node_id,
                conn_name,
                volume,
                replication,
                peer_disk,
                out_of_sync_bytes,
            } => {
                write!(
                    f,
                    " peer-device name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} volume:{volume}"
                )?;
                if let Some(r) = replication {
                    write!(f, " replication:{r}")?;
                }
                if let Some(d) = peer_disk {
                    write!(f, " peer-disk:{d}")?;
                }
                if let Some(o) = out_of_sync_bytes {
                    write!(f, " out-of-sync:{o}")?;
                }
                Ok(())
            }
            Object::Resync {
                name,
                peer_node_id,
                conn_name,
                volume,
                replication,
                bytes_moved,
                milliseconds,
            } => write!(
                f,
                " resync name:{name} peer-node-id:{peer_node_id} conn-name:{conn_name} volume:{volume} \
                 replication:{replication} bytes:{bytes_moved} ms:{milliseconds}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_drbdsetup_events2() {
        let e = NodeEvent {
            action: Action::Change,
            object: Object::Connection {
                name: "r0".into(),
                peer_node_id: 1,
                conn_name: "beta".into(),
                connection: Some(ConnectionState::Connecting),
                role: None,
                reason: Some("connection refused".into()),
            },
        };
        assert_eq!(
            e.to_string(),
            "change connection name:r0 peer-node-id:1 conn-name:beta connection:Connecting reason:\"connection refused\""
        );
        assert_eq!(NodeEvent::end_of_initial_state().to_string(), "exists -");
        assert_eq!(
            NodeEvent::lifecycle(Action::Create, "r0", Some(Role::Secondary)).to_string(),
            "create resource name:r0 role:Secondary"
        );
        let resync = NodeEvent {
            action: Action::Change,
            object: Object::Resync {
                name: "r0".into(),
                peer_node_id: 1,
                conn_name: "beta".into(),
                volume: 0,
                replication: ReplicationState::SyncTarget,
                bytes_moved: 4 << 20,
                milliseconds: 812,
            },
        };
        assert_eq!(
            resync.to_string(),
            "change resync name:r0 peer-node-id:1 conn-name:beta volume:0 replication:SyncTarget bytes:4194304 ms:812"
        );
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            "{\"action\":\"change\",\"object\":\"connection\",\"name\":\"r0\",\"peer_node_id\":1,\"conn_name\":\"beta\",\"connection\":\"Connecting\",\"reason\":\"connection refused\"}"
        );
        assert_eq!(serde_json::from_str::<NodeEvent>(&json).unwrap(), e);
    }
}
