//! What a resource is configured with (the engine's view; the node daemon parses TOML into it).

use std::net::SocketAddr;
use std::time::Duration;

use replbd_quorum::Protocol;

/// One peer of a resource.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Its node id.
    pub node_id: u8,
    /// Where it listens for this resource.
    pub address: SocketAddr,
    /// Replication protocol on this connection; both ends must configure the same.
    pub protocol: Protocol,
    /// The peer has no disk (an intentional diskless client or tiebreaker): it gets no bitmap slot.
    pub diskless: bool,
}

/// How reads are spread when more than one copy could serve them (DRBD's `read-balancing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadBalancing {
    /// The local disk when UpToDate, else a peer (the default).
    #[default]
    PreferLocal,
    /// A peer when one is UpToDate, else the local disk.
    PreferRemote,
    /// Rotate over every UpToDate copy.
    RoundRobin,
    /// The copy with the fewest reads outstanding.
    LeastPending,
}

impl std::str::FromStr for ReadBalancing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "prefer-local" => Ok(ReadBalancing::PreferLocal),
            "prefer-remote" => Ok(ReadBalancing::PreferRemote),
            "round-robin" => Ok(ReadBalancing::RoundRobin),
            "least-pending" => Ok(ReadBalancing::LeastPending),
            _ => Err(format!(
                "unknown read-balancing {s:?}: use prefer-local, prefer-remote, round-robin or least-pending"
            )),
        }
    }
}

/// Timers of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest a connection attempt (TCP connect and handshake) may take.
    pub connect: Duration,
    /// A peer that leaves a request unacknowledged this long is disconnected (DRBD's `timeout`).
    pub ack: Duration,
    /// Keepalive interval on an idle connection (DRBD's `ping-int`).
    pub ping_interval: Duration,
    /// How long a keepalive may stay unanswered (DRBD's `ping-timeout`).
    pub ping_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How long a remote read may take before it is retried on another peer.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            ack: Duration::from_secs(6),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            read: Duration::from_secs(10),
        }
    }
}

/// A resource (one volume) as this node runs it.
#[derive(Clone, Debug)]
pub struct ResourceConfig {
    /// The resource name.
    pub name: String,
    /// This node's id.
    pub node_id: u8,
    /// Where this node listens for its peers.
    pub listen: SocketAddr,
    /// Every peer (up to 32).
    pub peers: Vec<PeerConfig>,
    /// The shared secret peers authenticate with.
    pub secret: Vec<u8>,
    /// Carry a crc32c with every data payload (DRBD's `data-integrity-alg`).
    pub data_integrity: bool,
    /// Read balancing policy.
    pub read_balancing: ReadBalancing,
    /// Timers.
    pub timeouts: Timeouts,
    /// Writes per epoch before a barrier is forced (DRBD's `max-epoch-size`).
    pub max_epoch_size: u32,
    /// Bytes of unacknowledged writes queued to one peer before writers wait (DRBD's `max-buffers`).
    pub max_in_flight_bytes: u64,
    /// Resync rates and checksums.
    pub resync: super::resync::ResyncConfig,
    /// `quorum`, `quorum-minimum-redundancy` and `on-no-quorum` (off by default, as in DRBD).
    pub quorum: replbd_quorum::QuorumConfig,
    /// `after-sb-0pri`, `after-sb-1pri`, `after-sb-2pri`, `rr-conflict`, `always-asbp`.
    pub split_brain: replbd_quorum::split_brain::SplitBrainPolicies,
    /// Node names by id, for log lines and `discard-node-NAME` (a missing one is `node<ID>`).
    pub node_names: std::collections::BTreeMap<u8, String>,
    /// `fencing` per peer (a missing peer: `dont-care`).
    pub fencing: std::collections::BTreeMap<u8, replbd_quorum::FencingPolicy>,
    /// The `fence-peer` handler, run with `sh -c`.
    pub fence_peer: Option<String>,
    /// The `unfence-peer` handler, run with `sh -c`.
    pub unfence_peer: Option<String>,
    /// The `quorum-lost` handler: run when this node, as Primary, loses quorum.
    pub quorum_lost: Option<String>,
    /// The `pri-lost-after-sb` handler: run when this node, as Primary, is the victim of a
    /// split-brain resolution (`call-pri-lost-after-sb`).
    pub pri_lost_after_sb: Option<String>,
    /// The `pri-lost` handler: run on a Primary that would have to become a sync target
    /// (`rr-conflict call-pri-lost`).
    pub pri_lost: Option<String>,
    /// `on-congestion` per peer (a missing peer: `block`); anything else needs protocol A.
    pub on_congestion: std::collections::BTreeMap<u8, replbd_quorum::options::OnCongestion>,
    /// A protocol-A link with this many bytes of writes not yet acknowledged by the peer is
    /// congested (DRBD's `congestion-fill`; 0: never).
    pub congestion_fill: u64,
    /// TLS on every replication connection (both ends must agree); `None`: plain TCP.
    pub tls: Option<crate::tls::PeerTls>,
}

impl ResourceConfig {
    /// A configuration with defaults for everything but the identities.
    pub fn new(name: &str, node_id: u8, listen: SocketAddr, secret: &[u8]) -> ResourceConfig {
        ResourceConfig {
            name: name.to_string(),
            node_id,
            listen,
            peers: Vec::new(),
            secret: secret.to_vec(),
            data_integrity: false,
            read_balancing: ReadBalancing::default(),
            timeouts: Timeouts::default(),
            max_epoch_size: 2048,
            max_in_flight_bytes: 128 << 20,
            resync: super::resync::ResyncConfig::default(),
            quorum: replbd_quorum::QuorumConfig::default(),
            split_brain: replbd_quorum::split_brain::SplitBrainPolicies::default(),
            node_names: std::collections::BTreeMap::new(),
            fencing: std::collections::BTreeMap::new(),
            fence_peer: None,
            unfence_peer: None,
            quorum_lost: None,
            pri_lost_after_sb: None,
            pri_lost: None,
            on_congestion: std::collections::BTreeMap::new(),
            congestion_fill: 0,
            tls: None,
        }
    }

    /// The name of node `id`.
    pub fn node_name(&self, id: u8) -> String {
        self.node_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("node{id}"))
    }

    /// `on-congestion` for the connection to `peer`.
    pub fn congestion_policy(&self, peer: u8) -> replbd_quorum::options::OnCongestion {
        self.on_congestion.get(&peer).copied().unwrap_or_default()
    }

    /// Checks the configuration for contradictions, naming the first one found.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(format!(
                "resource name {:?} must be 1 to 64 characters",
                self.name
            ));
        }
        if self.node_id > 63 {
            return Err(format!("node id {} is out of range 0..=63", self.node_id));
        }
        if self.peers.len() > 32 {
            return Err(format!(
                "resource {} has {} peers; at most 32 are supported",
                self.name,
                self.peers.len()
            ));
        }
        if self.secret.is_empty() {
            return Err(format!("resource {} has an empty shared secret", self.name));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            if p.node_id > 63 || p.node_id == self.node_id || !seen.insert(p.node_id) {
                return Err(format!(
                    "peer node id {} is invalid, repeated, or this node's own id",
                    p.node_id
                ));
            }
            let policy = self.congestion_policy(p.node_id);
            if policy != replbd_quorum::options::OnCongestion::Block && p.protocol != Protocol::A {
                return Err(format!(
                    "on-congestion {policy} with node {} needs protocol A (the connection uses {})",
                    p.node_id, p.protocol
                ));
            }
        }
        Ok(())
    }
}
