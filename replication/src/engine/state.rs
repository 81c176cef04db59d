//! What a resource reports: a status snapshot (`status`) and a stream of typed state changes
//! (`events`, like `drbdsetup events2`), with DRBD's state names.

use std::fmt;

use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};

/// One peer as this node sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub node: u8,
    /// Connection state.
    pub connection: ConnectionState,
    /// Replication state.
    pub replication: ReplicationState,
    /// The peer's disk state (DUnknown while not connected).
    pub disk: DiskState,
    /// The peer's role (Unknown while not connected).
    pub role: Role,
    /// Bytes marked out of sync with the peer in this node's bitmap.
    pub out_of_sync: u64,
    /// Resync progress while one runs.
    pub sync: Option<super::resync::SyncProgress>,
}

/// A resource's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The resource.
    pub name: String,
    /// This node's id.
    pub node: u8,
    /// Role.
    pub role: Role,
    /// Local disk state.
    pub disk: DiskState,
    /// Whether this node has quorum (always true with `quorum off`).
    pub quorum: bool,
    /// Peers, by node id.
    pub peers: Vec<PeerStatus>,
}

impl Status {
    /// The peer with node id `node`.
    pub fn peer(&self, node: u8) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| p.node == node)
    }
}

impl fmt::Display for Status {
    /// DRBD's `drbdadm status` layout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} role:{}", self.name, self.role)?;
        write!(f, "  disk:{}", self.disk)?;
        if !self.quorum {
            f.write_str(" quorum:no")?;
        }
        writeln!(f)?;
        for p in &self.peers {
            write!(f, "  node{} connection:{}", p.node, p.connection)?;
            if p.connection == ConnectionState::Connected {
                write!(f, " role:{}", p.role)?;
            }
            writeln!(f)?;
            if p.connection == ConnectionState::Connected {
                write!(f, "    replication:{} peer-disk:{}", p.replication, p.disk)?;
                if let Some(s) = &p.sync {
                    write!(f, " done:{:.2}", s.percent)?;
                }
                if p.out_of_sync > 0 {
                    write!(f, " out-of-sync:{}", p.out_of_sync)?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// A state change.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// This node's role changed.
    Role(Role),
    /// This node's disk state changed.
    Disk(DiskState),
    /// The connection to a peer changed.
    Connection {
        /// The peer.
        peer: u8,
        /// Its new state.
        state: ConnectionState,
        /// Why (for failures).
        reason: Option<String>,
    },
    /// The replication state towards a peer changed.
    Replication {
        /// The peer.
        peer: u8,
        /// Its new state.
        state: ReplicationState,
    },
    /// A resync with a peer finished.
    ResyncFinished {
        /// The peer.
        peer: u8,
        /// This node's role in it.
        source: bool,
        /// Bytes of data moved (blocks found in sync by checksum not counted).
        bytes_moved: u64,
        /// How long it took.
        seconds: f64,
    },
    /// An online verify with a peer finished.
    VerifyFinished {
        /// The peer.
        peer: u8,
        /// This node started it (VerifyS).
        initiator: bool,
        /// Bytes found out of sync.
        out_of_sync_bytes: u64,
        /// The differing ranges, as half-open sector ranges.
        sectors: Vec<(u64, u64)>,
    },
    /// This node gained or lost quorum.
    Quorum {
        /// Whether it has quorum now.
        have: bool,
        /// The verdict, e.g. "no quorum: 1 of 3 voters present, need 2".
        reason: String,
    },
    /// The fence-peer handler answered for a peer.
    Fenced {
        /// The peer.
        peer: u8,
        /// The handler's exit code and its meaning.
        outcome: String,
    },
    /// The handshake with a peer found split brain.
    SplitBrain {
        /// The peer.
        peer: u8,
        /// What happens, and why (the resolution, or "disconnect" and how to recover).
        outcome: String,
    },
    /// A peer was added to the running resource (`adjust`); it starts connecting.
    PeerAdded {
        /// The peer.
        peer: u8,
    },
    /// A peer was removed from the running resource (`adjust`): disconnected and forgotten.
    PeerRemoved {
        /// The peer.
        peer: u8,
    },
    /// A peer's disk or role as it reported them.
    PeerState {
        /// The peer.
        peer: u8,
        /// Its disk state.
        disk: DiskState,
        /// Its role.
        role: Role,
    },
}

impl fmt::Display for Event {
    /// One line, like `drbdsetup events2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Role(r) => write!(f, "change resource role:{r}"),
            Event::Disk(d) => write!(f, "change device disk:{d}"),
            Event::Connection { peer, state, reason } => {
                write!(f, "change connection peer-node-id:{peer} connection:{state}")?;
                if let Some(r) = reason {
                    write!(f, " reason:{r:?}")?;
                }
                Ok(())
            }
            Event::Replication { peer, state } => {
                write!(f, "change peer-device peer-node-id:{peer} replication:{state}")
            }
            Event::ResyncFinished {
                peer,
                source,
                bytes_moved,
                seconds,
            } => write!(
                f,
                "resync-finished peer-node-id:{peer} role:{} bytes:{bytes_moved} seconds:{seconds:.3}",
                if *source { "SyncSource" } else { "SyncTarget" }
            ),
            Event::VerifyFinished {
                peer,
                initiator,
                out_of_sync_bytes,
                sectors,
            } => {
                write!(
                    f,
                    "verify-finished peer-node-id:{peer} role:{} out-of-sync:{out_of_sync_bytes}",
                    if *initiator { "VerifyS" } else { "VerifyT" }
                )?;
                for (s, e) in sectors {
                    write!(f, " sectors:{s}-{}", e.saturating_sub(1))?;
                }
                Ok(())
            }
            Event::Quorum { have, reason } => {
                write!(
                    f,
                    "change resource quorum:{} reason:{reason:?}",
                    if *have { "yes" } else { "no" }
                )
            }
            Event::Fenced { peer, outcome } => {
                write!(f, "fence-peer peer-node-id:{peer} outcome:{outcome:?}")
            }
            Event::SplitBrain { peer, outcome } => {
                write!(f, "split-brain peer-node-id:{peer} outcome:{outcome:?}")
            }
            Event::PeerAdded { peer } => write!(f, "create connection peer-node-id:{peer}"),
            Event::PeerRemoved { peer } => write!(f, "destroy connection peer-node-id:{peer}"),
            Event::PeerState { peer, disk, role } => write!(
                f,
                "change peer-device peer-node-id:{peer} peer-disk:{disk} role:{role}"
            ),
        }
    }
}
