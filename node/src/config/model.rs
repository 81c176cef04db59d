//! The checked configuration: what the daemon runs from. Every value here has been parsed and
//! validated (`config::validate`), so the daemon never re-checks or re-parses text.
//!
//! Only the resources this node takes part in are kept, each seen from this node: `this` is the
//! local node, `peers` every other node with the options of the connection to it. Options the
//! engine does not use yet (resync rates, quorum, fencing, after-split-brain policies) are stored
//! here already, parsed into `replbd_quorum`'s types, so they are validated today and can be wired
//! into the engine without touching the file format.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use replbd_quorum::options::ConnectionOptions;
use replbd_quorum::{QuorumConfig, split_brain::SplitBrainPolicies};
use replbd_replication::engine::{
    DigestAlg, PeerConfig, ReadBalancing, ResourceConfig, ResyncConfig, Timeouts,
};
use replbd_ublk::BlockSize;

use crate::nbd::ListenAddr;

/// The checked configuration of this node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The name of this node.
    pub this_node: String,
    /// The resources this node takes part in, in name order.
    pub resources: Vec<ResourceSpec>,
}

impl NodeConfig {
    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&ResourceSpec> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// One node of a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Its node id (0–63).
    pub id: u8,
    /// Its replication address.
    pub address: SocketAddr,
    /// It has no disk (a diskless client or tiebreaker).
    pub diskless: bool,
}

/// A peer of this node in a resource, with the options of the connection to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer.
    pub node: NodeSpec,
    /// The connection's options (resource `net` defaults, overridden by its `connection` table).
    pub options: ConnectionOptions,
}

/// Where a volume's metadata lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaDisk {
    /// At the end of the backing disk.
    Internal,
    /// In a separate file or device.
    External(PathBuf),
}

/// This node's volume of a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume number (0).
    pub number: u32,
    /// Configured data size: what `create-metadata` creates and the least an attached disk holds.
    pub size: Option<u64>,
    /// The backing disk on this node (`None` on a diskless node).
    pub disk: Option<PathBuf>,
    /// Where the metadata is.
    pub meta: MetaDisk,
    /// Create metadata on `up` when the disk has none.
    pub create_metadata: bool,
    /// Peer bitmap slots for metadata created by the daemon.
    pub max_peers: usize,
    /// Activity-log extents for metadata created by the daemon.
    pub al_extents: u32,
}

impl VolumeSpec {
    /// The path holding the metadata (the disk itself for internal metadata).
    pub fn meta_path(&self) -> Option<PathBuf> {
        match &self.meta {
            MetaDisk::Internal => self.disk.clone(),
            MetaDisk::External(p) => Some(p.clone()),
        }
    }
}

/// Resync and verify settings (see docs/resync-and-verify.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncSpec {
    /// `csums-alg` (net section): checksum resync with this digest.
    pub csums_alg: Option<DigestAlg>,
    /// `verify-alg` (net section).
    pub verify_alg: DigestAlg,
    /// `c-max-rate`, bytes per second (default 100 MiB/s).
    pub c_max_rate: u64,
    /// `c-min-rate`, bytes per second (default 250 KiB/s).
    pub c_min_rate: u64,
    /// `c-fill-target`, bytes in flight (default 4 MiB: requests are up to 1 MiB).
    pub c_fill_target: u64,
    /// `c-plan-ahead` (default 2 s).
    pub c_plan_ahead: Duration,
}

impl Default for ResyncSpec {
    /// The engine's defaults (one source of truth).
    fn default() -> ResyncSpec {
        let e = ResyncConfig::default();
        ResyncSpec {
            csums_alg: e.csums,
            verify_alg: e.verify,
            c_max_rate: e.max_rate,
            c_min_rate: e.min_rate,
            c_fill_target: e.fill_target,
            c_plan_ahead: e.plan_ahead,
        }
    }
}

/// Handler commands (run with `sh -c` by the engine; see docs/quorum-and-split-brain.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandlersSpec {
    /// `fence-peer`.
    pub fence_peer: Option<String>,
    /// `unfence-peer`.
    pub unfence_peer: Option<String>,
    /// `pri-lost-after-sb`.
    pub pri_lost_after_sb: Option<String>,
    /// `quorum-lost`.
    pub quorum_lost: Option<String>,
    /// `pri-lost`.
    pub pri_lost: Option<String>,
}

/// The ublk front end's device: `/dev/ublkbN` and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UblkSpec {
    /// `N` of `/dev/ublkbN`, fixed by the configuration (like DRBD's `device minor N`): a restarted
    /// daemon finds the device it left behind by this number.
    pub device: u32,
    /// Hardware queues, one serving thread each (default 1).
    pub queues: u16,
    /// Requests in flight per queue (default 64).
    pub queue_depth: u16,
    /// Logical block size (default 512).
    pub logical_block_size: BlockSize,
}

impl UblkSpec {
    /// Default hardware queues.
    pub const DEFAULT_QUEUES: u16 = 1;
    /// Default queue depth.
    pub const DEFAULT_QUEUE_DEPTH: u16 = 64;

    /// A device `N` with the default shape.
    pub fn new(device: u32) -> UblkSpec {
        UblkSpec {
            device,
            queues: Self::DEFAULT_QUEUES,
            queue_depth: Self::DEFAULT_QUEUE_DEPTH,
            logical_block_size: BlockSize::B512,
        }
    }

    /// The block device path, `/dev/ublkbN`.
    pub fn path(&self) -> String {
        format!("/dev/ublkb{}", self.device)
    }
}

/// How the volume is offered to applications on this node while it is Primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontEndSpec {
    /// `/dev/ublkbN` through the ublk front end.
    Ublk(UblkSpec),
    /// An NBD export named after the resource.
    Nbd(ListenAddr),
    /// No front end (replication only, or a diskless tiebreaker).
    None,
}

impl std::fmt::Display for FrontEndSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrontEndSpec::Ublk(u) => write!(f, "ublk {}", u.path()),
            FrontEndSpec::Nbd(a) => write!(f, "nbd {a}"),
            FrontEndSpec::None => f.write_str("none"),
        }
    }
}

/// One resource as this node runs it.
#[derive(Clone, Debug)]
pub struct ResourceSpec {
    /// The resource name.
    pub name: String,
    /// This node.
    pub this: NodeSpec,
    /// Every other node, in node-id order.
    pub peers: Vec<PeerSpec>,
    /// This node's volume.
    pub volume: VolumeSpec,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// crc32c on every data payload.
    pub data_integrity: bool,
    /// After-split-brain and rr-conflict policies (the same on every connection).
    pub split_brain: SplitBrainPolicies,
    /// Connection timers.
    pub timeouts: Timeouts,
    /// `max-epoch-size`.
    pub max_epoch_size: u32,
    /// `max-buffers` in bytes.
    pub max_buffers: u64,
    /// `congestion-fill` in bytes (0: off).
    pub congestion_fill: u64,
    /// TLS on replication connections (`tls-certificate`, `tls-key`, `tls-ca`).
    pub tls: Option<replbd_replication::tls::PeerTls>,
    /// Read balancing.
    pub read_balancing: ReadBalancing,
    /// Resync controller.
    pub resync: ResyncSpec,
    /// Quorum options.
    pub quorum: QuorumConfig,
    /// Handler commands.
    pub handlers: HandlersSpec,
    /// The front end.
    pub front_end: FrontEndSpec,
}

impl ResourceSpec {
    /// `Ok` when `next` differs from this configuration in its peers (which peers, their
    /// addresses, protocols, disks and per-peer options) and quorum options only: what a running
    /// resource applies in place. Otherwise the first other setting that differs, for the
    /// message. TLS is compared by whether it is on (its keys cannot be compared once loaded).
    pub fn adjustable_to(&self, next: &ResourceSpec) -> Result<(), &'static str> {
        let same = [
            ("the resource name", self.name == next.name),
            ("this node's name, id or address", self.this == next.this),
            // `max-peers` follows the number of peers unless set, and matters only when metadata
            // is created: not to a running resource.
            (
                "the volume",
                VolumeSpec {
                    max_peers: 0,
                    ..self.volume.clone()
                } == VolumeSpec {
                    max_peers: 0,
                    ..next.volume.clone()
                },
            ),
            ("the shared secret", self.secret == next.secret),
            ("data-integrity", self.data_integrity == next.data_integrity),
            ("the split-brain policies", self.split_brain == next.split_brain),
            ("the timeouts", self.timeouts == next.timeouts),
            ("max-epoch-size", self.max_epoch_size == next.max_epoch_size),
            ("max-buffers", self.max_buffers == next.max_buffers),
            ("congestion-fill", self.congestion_fill == next.congestion_fill),
            ("TLS", self.tls.is_some() == next.tls.is_some()),
            ("read-balancing", self.read_balancing == next.read_balancing),
            ("the resync options", self.resync == next.resync),
            ("the handlers", self.handlers == next.handlers),
            ("the front end", self.front_end == next.front_end),
        ];
        match same.iter().find(|(_, same)| !same) {
            Some((what, _)) => Err(what),
            None => Ok(()),
        }
    }

    /// The peer named `name`.
    pub fn peer_named(&self, name: &str) -> Option<&PeerSpec> {
        self.peers.iter().find(|p| p.node.name == name)
    }

    /// The name of the node with id `id` (this node's or a peer's), or `node<ID>` if unknown.
    pub fn node_name(&self, id: u8) -> String {
        if id == self.this.id {
            return self.this.name.clone();
        }
        self.peers
            .iter()
            .find(|p| p.node.id == id)
            .map_or_else(|| format!("node{id}"), |p| p.node.name.clone())
    }

    /// The engine's configuration of this resource on this node.
    pub fn engine_config(&self) -> ResourceConfig {
        let mut cfg = ResourceConfig::new(&self.name, self.this.id, self.this.address, &self.secret);
        cfg.peers = self
            .peers
            .iter()
            .map(|p| PeerConfig {
                node_id: p.node.id,
                address: p.node.address,
                protocol: p.options.protocol,
                diskless: p.node.diskless,
            })
            .collect();
        cfg.data_integrity = self.data_integrity;
        cfg.read_balancing = self.read_balancing;
        cfg.timeouts = self.timeouts;
        cfg.max_epoch_size = self.max_epoch_size;
        cfg.max_in_flight_bytes = self.max_buffers;
        cfg.congestion_fill = self.congestion_fill;
        cfg.tls = self.tls.clone();
        cfg.on_congestion = self
            .peers
            .iter()
            .map(|p| (p.node.id, p.options.on_congestion))
            .collect();
        cfg.resync = ResyncConfig {
            max_rate: self.resync.c_max_rate,
            min_rate: self.resync.c_min_rate,
            fill_target: self.resync.c_fill_target,
            plan_ahead: self.resync.c_plan_ahead,
            csums: self.resync.csums_alg,
            verify: self.resync.verify_alg,
        };
        cfg.quorum = self.quorum;
        cfg.split_brain = self.split_brain.clone();
        cfg.fencing = self
            .peers
            .iter()
            .map(|p| (p.node.id, p.options.fencing))
            .collect();
        cfg.fence_peer = self.handlers.fence_peer.clone();
        cfg.unfence_peer = self.handlers.unfence_peer.clone();
        cfg.quorum_lost = self.handlers.quorum_lost.clone();
        cfg.pri_lost_after_sb = self.handlers.pri_lost_after_sb.clone();
        cfg.pri_lost = self.handlers.pri_lost.clone();
        cfg.node_names = std::iter::once((self.this.id, self.this.name.clone()))
            .chain(self.peers.iter().map(|p| (p.node.id, p.node.name.clone())))
            .collect();
        cfg
    }
}
