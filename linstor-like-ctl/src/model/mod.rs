//! The cluster's objects as the controller stores them: LINSTOR's nouns with replbd's fields.
//!
//! Every object here is persisted as one JSON record (see [`crate::cluster`]); runtime state the
//! nodes report (online, disk states, capacities) is not part of these records and lives in
//! [`crate::controller::runtime`]. Names and values are checked by [`names`], [`size`] and
//! [`props`] before an object is built, so an object in the store is always valid.

pub mod names;
pub mod props;
pub mod size;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Key/value properties of an object (`Aux/zone = a`, `DrbdOptions/...`).
pub type Props = BTreeMap<String, String>;

/// The name of the resource group every resource definition belongs to unless told otherwise.
pub const DEFAULT_GROUP: &str = "DfltRscGrp";

/// The kind of a node (LINSTOR's node types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NodeType {
    /// Hosts resources (the default).
    #[default]
    Satellite,
    /// Runs a controller and hosts resources.
    Combined,
    /// Runs a controller only: never gets resources.
    Controller,
    /// Known to the cluster, never gets resources.
    Auxiliary,
}

impl NodeType {
    /// Whether resources may be placed on a node of this type.
    pub fn hosts_resources(self) -> bool {
        matches!(self, NodeType::Satellite | NodeType::Combined)
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeType::Satellite => "SATELLITE",
            NodeType::Combined => "COMBINED",
            NodeType::Controller => "CONTROLLER",
            NodeType::Auxiliary => "AUXILIARY",
        })
    }
}

impl FromStr for NodeType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "satellite" => Ok(NodeType::Satellite),
            "combined" => Ok(NodeType::Combined),
            "controller" => Ok(NodeType::Controller),
            "auxiliary" => Ok(NodeType::Auxiliary),
            other => Err(format!(
                "unknown node type {other:?}: use satellite, combined, controller or auxiliary"
            )),
        }
    }
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its type.
    pub node_type: NodeType,
    /// Its address (IP or host name): the agent's and the replication address.
    pub address: String,
    /// The agent's port.
    pub port: u16,
    /// Properties (`Aux/...` labels used by placement).
    #[serde(default)]
    pub props: Props,
    /// Evicted after being offline too long: its replicas were placed elsewhere.
    #[serde(default)]
    pub evicted: bool,
    /// Being evacuated by `node evacuate`.
    #[serde(default)]
    pub evacuating: bool,
}

/// How a storage pool stores volumes (LINSTOR's providers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Driver {
    /// A preallocated file per volume in a directory.
    File,
    /// A sparse file per volume in a directory.
    FileThin,
    /// A logical volume in a volume group.
    Lvm,
    /// A thin logical volume in a thin pool.
    LvmThin,
    /// A ZFS volume.
    Zfs,
    /// A sparse ZFS volume.
    ZfsThin,
    /// No storage: diskless replicas only.
    Diskless,
}

impl Driver {
    /// The name the agent and the CLI use (`file`, `filethin`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::File => "file",
            Driver::FileThin => "filethin",
            Driver::Lvm => "lvm",
            Driver::LvmThin => "lvmthin",
            Driver::Zfs => "zfs",
            Driver::ZfsThin => "zfsthin",
            Driver::Diskless => "diskless",
        }
    }

    /// LINSTOR's provider name, shown in `storage-pool list`.
    pub fn provider(self) -> &'static str {
        match self {
            Driver::File => "FILE",
            Driver::FileThin => "FILE_THIN",
            Driver::Lvm => "LVM",
            Driver::LvmThin => "LVM_THIN",
            Driver::Zfs => "ZFS",
            Driver::ZfsThin => "ZFS_THIN",
            Driver::Diskless => "DISKLESS",
        }
    }

    /// Volumes take space only as they are written.
    pub fn thin(self) -> bool {
        matches!(self, Driver::FileThin | Driver::LvmThin | Driver::ZfsThin)
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "").as_str() {
            "file" => Ok(Driver::File),
            "filethin" => Ok(Driver::FileThin),
            "lvm" => Ok(Driver::Lvm),
            "lvmthin" => Ok(Driver::LvmThin),
            "zfs" => Ok(Driver::Zfs),
            "zfsthin" => Ok(Driver::ZfsThin),
            "diskless" => Ok(Driver::Diskless),
            other => Err(format!(
                "unknown storage pool driver {other:?}: use file, filethin, lvm, lvmthin, zfs, zfsthin or diskless"
            )),
        }
    }
}

/// A storage pool on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePool {
    /// Its node.
    pub node: String,
    /// Its name (the same name on several nodes is the usual setup).
    pub name: String,
    /// How it stores volumes.
    pub driver: Driver,
    /// The backing pool: directory, volume group, VG/thinpool, zpool (empty for diskless).
    pub backing: String,
    /// Properties.
    #[serde(default)]
    pub props: Props,
}

/// Where and how replicas are placed: a resource group's settings, or overrides on one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Diskful replicas wanted.
    #[serde(default)]
    pub place_count: Option<u32>,
    /// Only these storage pools (empty: any).
    #[serde(default)]
    pub storage_pools: Vec<String>,
    /// Every replica's node has the same value of each of these Aux properties (`zone`, or
    /// `zone=a` for a fixed value).
    #[serde(default)]
    pub replicas_on_same: Vec<String>,
    /// Every replica's node has a different value of each of these Aux properties.
    #[serde(default)]
    pub replicas_on_different: Vec<String>,
    /// Never on a node hosting one of these resources.
    #[serde(default)]
    pub do_not_place_with: Vec<String>,
    /// A diskless replica on every other node.
    #[serde(default)]
    pub diskless_on_remaining: Option<bool>,
}

impl Placement {
    /// These settings with `over`'s set fields replacing them.
    pub fn overridden_by(&self, over: &Placement) -> Placement {
        let pick = |a: &Vec<String>, b: &Vec<String>| if b.is_empty() { a.clone() } else { b.clone() };
        Placement {
            place_count: over.place_count.or(self.place_count),
            storage_pools: pick(&self.storage_pools, &over.storage_pools),
            replicas_on_same: pick(&self.replicas_on_same, &over.replicas_on_same),
            replicas_on_different: pick(&self.replicas_on_different, &over.replicas_on_different),
            do_not_place_with: pick(&self.do_not_place_with, &over.do_not_place_with),
            diskless_on_remaining: over.diskless_on_remaining.or(self.diskless_on_remaining),
        }
    }
}

/// A resource group: a template of placement settings and properties for resource definitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceGroup {
    /// Its name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Placement settings of its resources.
    #[serde(default)]
    pub placement: Placement,
    /// Properties inherited by its resource definitions.
    #[serde(default)]
    pub props: Props,
}

/// A volume of a resource definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeDefinition {
    /// Volume number.
    pub number: u32,
    /// Usable size in bytes.
    pub size: u64,
    /// The device minor, unique in the cluster: the volume is `/dev/ublkbN` on the node where it
    /// is Primary (where the kernel has ublk). 0 for definitions stored before minors existed
    /// (served over NBD).
    #[serde(default)]
    pub minor: u32,
    /// Properties.
    #[serde(default)]
    pub props: Props,
}

/// A resource definition: a replicated volume set, placed on nodes as resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDefinition {
    /// Its name.
    pub name: String,
    /// Its resource group.
    pub group: String,
    /// The replication TCP port, the same on every node.
    pub port: u16,
    /// The shared secret peers authenticate with (hex).
    pub secret: String,
    /// The generation every first replica is declared UpToDate at (no initial sync of new,
    /// all-zero volumes).
    pub initial_uuid: u64,
    /// Its volumes, by number.
    #[serde(default)]
    pub volumes: BTreeMap<u32, VolumeDefinition>,
    /// Properties.
    #[serde(default)]
    pub props: Props,
    /// Unix seconds.
    #[serde(default)]
    pub created_on: i64,
}

/// A flag on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceFlag {
    /// No local disk: reads and writes go to peers.
    Diskless,
    /// A diskless replica added automatically so two diskful replicas have a third vote.
    TieBreaker,
    /// Being replaced by `node evacuate`: removed once every other replica is UpToDate.
    Evacuate,
}

impl fmt::Display for ResourceFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceFlag::Diskless => "DISKLESS",
            ResourceFlag::TieBreaker => "TIE_BREAKER",
            ResourceFlag::Evacuate => "EVACUATE",
        })
    }
}

/// A volume of a resource on its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceVolume {
    /// Volume number.
    pub number: u32,
    /// The storage pool it is in (empty when diskless).
    pub pool: String,
}

/// A resource: a resource definition placed on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The resource definition.
    pub name: String,
    /// The node.
    pub node: String,
    /// This replica's node id in the resource (0-63).
    pub node_id: u8,
    /// Flags.
    #[serde(default)]
    pub flags: BTreeSet<ResourceFlag>,
    /// Its volumes.
    #[serde(default)]
    pub volumes: BTreeMap<u32, ResourceVolume>,
    /// Declare new metadata UpToDate at the definition's initial UUID (a first replica).
    #[serde(default)]
    pub initial: bool,
    /// Properties.
    #[serde(default)]
    pub props: Props,
    /// Unix seconds.
    #[serde(default)]
    pub created_on: i64,
}

impl Resource {
    /// The replica has no local disk.
    pub fn diskless(&self) -> bool {
        self.flags.contains(&ResourceFlag::Diskless)
    }
}

/// Seconds since the Unix epoch now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
