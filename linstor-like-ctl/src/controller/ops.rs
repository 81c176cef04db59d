//! The controller's decisions: each request, checked against the cluster state, becomes a list of
//! [`Change`]s and the messages to report. Pure functions over [`Cluster`] (and, for placement,
//! a snapshot of the nodes' run-time state), so every rule is tested without a network.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::error::ApiError;
use crate::cluster::{Change, Cluster};
use crate::model::props::{check_key, lookup};
use crate::model::size::{check_volume, human};
use crate::model::{
    DEFAULT_GROUP, Driver, Node, NodeType, Placement, Props, Resource, ResourceDefinition, ResourceFlag,
    ResourceGroup, ResourceVolume, StoragePool, VolumeDefinition, names, now_unix,
};
use crate::placement::{self, Count, Existing, NodeInfo};

/// The result of a request: changes to persist and lines to report.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The changes.
    pub changes: Vec<Change>,
    /// `SUCCESS: ...`, `WARNING: ...` lines.
    pub messages: Vec<String>,
}

impl Outcome {
    fn push(&mut self, change: Change) {
        self.changes.push(change);
    }
    fn say(&mut self, m: impl Into<String>) {
        self.messages.push(m.into());
    }
}

/// The controller property that sets the replication port range (`7000-7999`).
pub const PORT_RANGE_KEY: &str = "TcpPortAutoRange";
/// The controller property that sets the range device minors are taken from (`1000-49999`, as
/// LINSTOR's): volume `N` is `/dev/ublkbN` where it is Primary.
pub const MINOR_RANGE_KEY: &str = "MinorNrAutoRange";
/// The default minor range.
pub const DEFAULT_MINOR_RANGE: (u32, u32) = (1000, 49999);
/// The highest ublk device number the kernel accepts (its minor space, 2^20 devices).
pub const MAX_MINOR: u32 = (1 << 20) - 1;
/// The default port range.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (7000, 7999);
/// Peer bitmap slots of new metadata (LINSTOR's default max-peers).
pub const DEFAULT_MAX_PEERS: u32 = 7;

fn check_props(props: &Props) -> Result<(), ApiError> {
    for k in props.keys() {
        check_key(k).map_err(ApiError::Invalid)?;
    }
    Ok(())
}

fn name_ok(what: &str, name: &str) -> Result<(), ApiError> {
    names::check(what, name).map_err(ApiError::Invalid)
}

fn node<'a>(c: &'a Cluster, name: &str) -> Result<&'a Node, ApiError> {
    c.nodes
        .get(name)
        .ok_or_else(|| ApiError::not_found("node", name, c.nodes.keys()))
}

fn definition<'a>(c: &'a Cluster, name: &str) -> Result<&'a ResourceDefinition, ApiError> {
    c.definitions
        .get(name)
        .ok_or_else(|| ApiError::not_found("resource definition", name, c.definitions.keys()))
}

fn group<'a>(c: &'a Cluster, name: &str) -> Result<&'a ResourceGroup, ApiError> {
    c.groups
        .get(name)
        .ok_or_else(|| ApiError::not_found("resource group", name, c.groups.keys()))
}

fn unique<'a>(
    kind: &'static str,
    name: &str,
    existing: impl Iterator<Item = &'a String>,
) -> Result<(), ApiError> {
    for e in existing {
        if e == name {
            return Err(ApiError::Exists {
                kind,
                name: name.to_owned(),
                hint: String::new(),
            });
        }
        if names::same_ignoring_case(e, name) {
            return Err(ApiError::Exists {
                kind,
                name: name.to_owned(),
                hint: format!(" as {e} (names differing only in case are not allowed)"),
            });
        }
    }
    Ok(())
}

/// `node create`.
pub fn node_create(c: &Cluster, n: Node) -> Result<Outcome, ApiError> {
    name_ok("node", &n.name)?;
    unique("node", &n.name, c.nodes.keys())?;
    check_props(&n.props)?;
    if n.address.trim().is_empty() || n.address.contains(char::is_whitespace) || n.address.contains('/') {
        return Err(ApiError::Invalid(format!(
            "node {}: address {:?} is not an IP address or host name",
            n.name, n.address
        )));
    }
    if let Some(other) = c
        .nodes
        .values()
        .find(|o| o.address == n.address && o.port == n.port)
    {
        return Err(ApiError::Conflict(format!(
            "node {}: {}:{} is already the address of node {}",
            n.name, n.address, n.port, other.name
        )));
    }
    let mut o = Outcome::default();
    o.say(format!(
        "SUCCESS: node {} ({}) created at {}:{}",
        n.name, n.node_type, n.address, n.port
    ));
    o.push(Change::PutNode(n));
    Ok(o)
}

/// `node delete`: only a node without resources.
pub fn node_delete(c: &Cluster, name: &str) -> Result<Outcome, ApiError> {
    node(c, name)?;
    let hosted: Vec<&str> = c.resources_on(name).map(|r| r.name.as_str()).collect();
    if !hosted.is_empty() {
        return Err(ApiError::Conflict(format!(
            "node {name} still hosts {}: delete those resources or evacuate the node first (or `node lost` if it will not come back)",
            hosted.join(", ")
        )));
    }
    let mut o = Outcome::default();
    for p in c.pools_of(name) {
        o.push(Change::DeletePool(p.node.clone(), p.name.clone()));
    }
    o.push(Change::DeleteNode(name.to_owned()));
    o.say(format!("SUCCESS: node {name} deleted"));
    Ok(o)
}

/// `node lost`: forget the node and its resources without contacting it.
pub fn node_lost(c: &Cluster, name: &str) -> Result<Outcome, ApiError> {
    node(c, name)?;
    let mut o = Outcome::default();
    for r in c.resources_on(name) {
        o.push(Change::DeleteResource(r.name.clone(), r.node.clone()));
        o.say(format!("SUCCESS: resource {} on {name} removed", r.name));
    }
    for p in c.pools_of(name) {
        o.push(Change::DeletePool(p.node.clone(), p.name.clone()));
    }
    o.push(Change::DeleteNode(name.to_owned()));
    o.say(format!("SUCCESS: node {name} lost: removed with its resources"));
    Ok(o)
}

/// `node restore`: an evicted or evacuated node may take replicas again.
pub fn node_restore(c: &Cluster, name: &str) -> Result<Outcome, ApiError> {
    let mut n = node(c, name)?.clone();
    n.evicted = false;
    n.evacuating = false;
    let mut o = Outcome::default();
    o.push(Change::PutNode(n));
    o.say(format!("SUCCESS: node {name} restored: it may take new replicas"));
    Ok(o)
}

/// `storage-pool create`.
pub fn pool_create(c: &Cluster, p: StoragePool) -> Result<Outcome, ApiError> {
    node(c, &p.node)?;
    name_ok("storage pool", &p.name)?;
    let existing: Vec<String> = c.pools_of(&p.node).map(|x| x.name.clone()).collect();
    unique("storage pool", &p.name, existing.iter()).map_err(|e| match e {
        ApiError::Exists { hint, .. } => ApiError::Exists {
            kind: "storage pool",
            name: format!("{} on node {}", p.name, p.node),
            hint,
        },
        e => e,
    })?;
    check_props(&p.props)?;
    match p.driver {
        Driver::File | Driver::FileThin if !p.backing.starts_with('/') => {
            return Err(ApiError::Invalid(format!(
                "a {} pool needs the absolute path of a directory, not {:?}",
                p.driver, p.backing
            )));
        }
        Driver::Diskless if !p.backing.is_empty() => {
            return Err(ApiError::Invalid("a diskless pool has no backing pool".into()));
        }
        Driver::LvmThin | Driver::Lvm | Driver::Zfs | Driver::ZfsThin if p.backing.is_empty() => {
            return Err(ApiError::Invalid(format!(
                "a {} pool needs its backing pool ({})",
                p.driver,
                match p.driver {
                    Driver::Lvm => "a volume group",
                    Driver::LvmThin => "VG/thinpool",
                    _ => "a zpool or dataset",
                }
            )));
        }
        Driver::LvmThin if !p.backing.contains('/') => {
            return Err(ApiError::Invalid(format!(
                "an lvmthin pool is given as VG/thinpool, not {:?}",
                p.backing
            )));
        }
        _ => {}
    }
    let mut o = Outcome::default();
    o.say(format!(
        "SUCCESS: storage pool {} ({}) created on node {}",
        p.name,
        p.driver.provider(),
        p.node
    ));
    o.push(Change::PutPool(p));
    Ok(o)
}

/// `storage-pool delete`: only a pool no volume uses.
pub fn pool_delete(c: &Cluster, node_name: &str, name: &str) -> Result<Outcome, ApiError> {
    node(c, node_name)?;
    if !c.pools.contains_key(&(node_name.to_owned(), name.to_owned())) {
        let known: Vec<String> = c.pools_of(node_name).map(|p| p.name.clone()).collect();
        return Err(ApiError::not_found("storage pool", name, known.iter()));
    }
    let users: Vec<&str> = c
        .resources_on(node_name)
        .filter(|r| r.volumes.values().any(|v| v.pool == name))
        .map(|r| r.name.as_str())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "storage pool {name} on {node_name} holds volumes of {}: delete them first",
            users.join(", ")
        )));
    }
    let mut o = Outcome::default();
    o.push(Change::DeletePool(node_name.to_owned(), name.to_owned()));
    o.say(format!(
        "SUCCESS: storage pool {name} deleted from node {node_name}"
    ));
    Ok(o)
}

fn check_placement(p: &Placement) -> Result<(), ApiError> {
    if let Some(n) = p.place_count
        && !(1..=16).contains(&n)
    {
        return Err(ApiError::Invalid(format!("place count {n} must be from 1 to 16")));
    }
    for k in p.replicas_on_same.iter().chain(&p.replicas_on_different) {
        let key = k.split_once('=').map_or(k.as_str(), |(k, _)| k);
        check_key(key).map_err(ApiError::Invalid)?;
    }
    Ok(())
}

/// `resource-group create`.
pub fn group_create(c: &Cluster, g: ResourceGroup) -> Result<Outcome, ApiError> {
    name_ok("resource group", &g.name)?;
    unique("resource group", &g.name, c.groups.keys())?;
    check_placement(&g.placement)?;
    check_props(&g.props)?;
    let mut o = Outcome::default();
    o.say(format!("SUCCESS: resource group {} created", g.name));
    o.push(Change::PutGroup(g));
    Ok(o)
}

/// `resource-group modify`: set fields replace the group's.
pub fn group_modify(c: &Cluster, g: ResourceGroup) -> Result<Outcome, ApiError> {
    let old = group(c, &g.name)?;
    check_placement(&g.placement)?;
    check_props(&g.props)?;
    let mut new = old.clone();
    new.placement = old.placement.overridden_by(&g.placement);
    if !g.description.is_empty() {
        new.description = g.description;
    }
    new.props.extend(g.props);
    let mut o = Outcome::default();
    o.say(format!("SUCCESS: resource group {} modified", new.name));
    o.push(Change::PutGroup(new));
    Ok(o)
}

/// `resource-group delete`.
pub fn group_delete(c: &Cluster, name: &str) -> Result<Outcome, ApiError> {
    group(c, name)?;
    if name == DEFAULT_GROUP {
        return Err(ApiError::Conflict(format!("{DEFAULT_GROUP} cannot be deleted")));
    }
    let users: Vec<&str> = c
        .definitions
        .values()
        .filter(|d| d.group == name)
        .map(|d| d.name.as_str())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "resource group {name} is used by {}: delete those resource definitions first",
            users.join(", ")
        )));
    }
    let mut o = Outcome::default();
    o.push(Change::DeleteGroup(name.to_owned()));
    o.say(format!("SUCCESS: resource group {name} deleted"));
    Ok(o)
}

/// The range a controller property `key` sets (`LO-HI`, both in `1..=max`), or `default`.
fn range_prop(c: &Cluster, key: &str, default: (u32, u32), max: u32) -> Result<(u32, u32), ApiError> {
    let Some(text) = c.props.get(key) else {
        return Ok(default);
    };
    let bad = || {
        ApiError::Invalid(format!(
            "controller property {key} = {text:?} is not a range like {}-{} (numbers 1-{max})",
            default.0, default.1
        ))
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b || b > max {
        return Err(bad());
    }
    Ok((a, b))
}

fn port_range(c: &Cluster) -> Result<(u16, u16), ApiError> {
    let (lo, hi) = (u32::from(DEFAULT_PORT_RANGE.0), u32::from(DEFAULT_PORT_RANGE.1));
    let (a, b) = range_prop(c, PORT_RANGE_KEY, (lo, hi), u32::from(u16::MAX))?;
    // Both fit: range_prop checked them against u16::MAX.
    Ok((a as u16, b as u16))
}

fn minor_range(c: &Cluster) -> Result<(u32, u32), ApiError> {
    range_prop(c, MINOR_RANGE_KEY, DEFAULT_MINOR_RANGE, MAX_MINOR)
}

/// The minor for a new volume: `wanted`, if free, or the lowest free one of the range.
fn pick_minor(c: &Cluster, wanted: u32) -> Result<u32, ApiError> {
    let owner = |m: u32| {
        c.definitions
            .values()
            .flat_map(|d| d.volumes.values().map(move |v| (d, v)))
            .find(|(_, v)| v.minor == m)
            .map(|(d, v)| format!("{}/{}", d.name, v.number))
    };
    if wanted != 0 {
        if wanted > MAX_MINOR {
            return Err(ApiError::Invalid(format!(
                "minor {wanted} is out of range: ublk devices are numbered 1-{MAX_MINOR}"
            )));
        }
        if let Some(user) = owner(wanted) {
            return Err(ApiError::Conflict(format!(
                "minor {wanted} is already used by volume {user}"
            )));
        }
        return Ok(wanted);
    }
    let used: BTreeSet<u32> = c
        .definitions
        .values()
        .flat_map(|d| d.volumes.values().map(|v| v.minor))
        .collect();
    let (lo, hi) = minor_range(c)?;
    (lo..=hi).find(|m| !used.contains(m)).ok_or_else(|| {
        ApiError::Conflict(format!(
            "every minor of {lo}-{hi} is in use: widen the controller property {MINOR_RANGE_KEY}"
        ))
    })
}

/// A random even generation UUID above the reserved markers.
fn random_uuid() -> u64 {
    loop {
        let u = StdRng::from_os_rng().next_u64() & !1;
        if u > 16 {
            return u;
        }
    }
}

/// `resource-definition create`.
pub fn definition_create(
    c: &Cluster,
    name: &str,
    group_name: &str,
    port: u16,
    props: Props,
) -> Result<Outcome, ApiError> {
    name_ok("resource definition", name)?;
    unique("resource definition", name, c.definitions.keys())?;
    let group_name = if group_name.is_empty() {
        DEFAULT_GROUP
    } else {
        group_name
    };
    group(c, group_name)?;
    check_props(&props)?;
    let used: BTreeSet<u16> = c.definitions.values().map(|d| d.port).collect();
    let port = if port == 0 {
        let (lo, hi) = port_range(c)?;
        (lo..=hi).find(|p| !used.contains(p)).ok_or_else(|| {
            ApiError::Conflict(format!(
                "every port of {lo}-{hi} is in use: widen the controller property {PORT_RANGE_KEY}"
            ))
        })?
    } else {
        if let Some(d) = c.definitions.values().find(|d| d.port == port) {
            return Err(ApiError::Conflict(format!(
                "port {port} is already used by {}",
                d.name
            )));
        }
        port
    };
    let mut secret = [0u8; 16];
    StdRng::from_os_rng().fill_bytes(&mut secret);
    let d = ResourceDefinition {
        name: name.to_owned(),
        group: group_name.to_owned(),
        port,
        secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
        initial_uuid: random_uuid(),
        volumes: Default::default(),
        props,
        created_on: now_unix(),
    };
    let mut o = Outcome::default();
    o.say(format!(
        "SUCCESS: resource definition {name} created (group {group_name}, port {port})"
    ));
    o.push(Change::PutDefinition(d));
    Ok(o)
}

/// `resource-definition delete`: with every resource of it.
pub fn definition_delete(c: &Cluster, name: &str) -> Result<Outcome, ApiError> {
    definition(c, name)?;
    let mut o = Outcome::default();
    for r in c.resources_of(name) {
        o.push(Change::DeleteResource(r.name.clone(), r.node.clone()));
        o.say(format!("SUCCESS: resource {name} on {} deleted", r.node));
    }
    o.push(Change::DeleteDefinition(name.to_owned()));
    o.say(format!("SUCCESS: resource definition {name} deleted"));
    Ok(o)
}

/// `volume-definition create`.
pub fn volume_create(
    c: &Cluster,
    rd: &str,
    number: Option<u32>,
    size: u64,
    minor: u32,
) -> Result<Outcome, ApiError> {
    let mut d = definition(c, rd)?.clone();
    check_volume(size).map_err(ApiError::Invalid)?;
    let number = number.unwrap_or_else(|| (0..).find(|n| !d.volumes.contains_key(n)).unwrap_or(0));
    if d.volumes.contains_key(&number) {
        return Err(ApiError::Exists {
            kind: "volume definition",
            name: format!("{rd}/{number}"),
            hint: String::new(),
        });
    }
    if number != 0 || !d.volumes.is_empty() {
        return Err(ApiError::Invalid(format!(
            "{rd} would get volume {number}: replbd runs one volume (number 0) per resource for now; create another resource definition instead"
        )));
    }
    if c.resources_of(rd).next().is_some() {
        return Err(ApiError::Conflict(format!(
            "{rd} is already deployed: adding a volume to deployed resources is not supported yet"
        )));
    }
    let minor = pick_minor(c, minor)?;
    d.volumes.insert(
        number,
        VolumeDefinition {
            number,
            size,
            minor,
            props: Props::new(),
        },
    );
    let mut o = Outcome::default();
    o.say(format!(
        "SUCCESS: volume {number} of {rd} created ({}, minor {minor})",
        human(size)
    ));
    o.push(Change::PutDefinition(d));
    Ok(o)
}

/// `volume-definition set-size`.
pub fn volume_set_size(c: &Cluster, rd: &str, number: u32, size: u64) -> Result<Outcome, ApiError> {
    let mut d = definition(c, rd)?.clone();
    check_volume(size).map_err(ApiError::Invalid)?;
    let Some(v) = d.volumes.get_mut(&number) else {
        return Err(ApiError::NotFound {
            kind: "volume definition",
            name: format!("{rd}/{number}"),
            hint: String::new(),
        });
    };
    let old = v.size;
    if c.resources_of(rd).next().is_some() {
        if size < old {
            return Err(ApiError::Invalid(format!(
                "{rd}/{number}: shrinking a deployed volume from {} to {} would cut off data; it is refused",
                human(old),
                human(size)
            )));
        }
        if size != old {
            return Err(ApiError::Conflict(format!(
                "{rd}/{number} is deployed: growing a live volume needs online resize, which the replication engine does not offer yet (delete and recreate the resource, or set the size before placing it)"
            )));
        }
    }
    v.size = size;
    let mut o = Outcome::default();
    o.say(format!(
        "SUCCESS: volume {number} of {rd} resized from {} to {}",
        human(old),
        human(size)
    ));
    o.push(Change::PutDefinition(d));
    Ok(o)
}

/// `volume-definition delete`.
pub fn volume_delete(c: &Cluster, rd: &str, number: u32) -> Result<Outcome, ApiError> {
    let mut d = definition(c, rd)?.clone();
    if d.volumes.remove(&number).is_none() {
        return Err(ApiError::NotFound {
            kind: "volume definition",
            name: format!("{rd}/{number}"),
            hint: String::new(),
        });
    }
    if c.resources_of(rd).next().is_some() {
        return Err(ApiError::Conflict(format!(
            "{rd} is deployed: delete its resources before its volume definitions"
        )));
    }
    let mut o = Outcome::default();
    o.push(Change::PutDefinition(d));
    o.say(format!("SUCCESS: volume {number} of {rd} deleted"));
    Ok(o)
}

/// How resources are to be created.
#[derive(Clone, Debug)]
pub enum Where {
    /// On these nodes.
    Nodes {
        /// The nodes.
        nodes: Vec<String>,
        /// The pool (empty: the node's best).
        pool: String,
        /// Diskless.
        diskless: bool,
    },
    /// Auto-placement.
    Auto {
        /// How many.
        count: Count,
        /// Overrides of the group's settings.
        placement: Placement,
    },
}

/// The first free node id of definition `rd` beyond `taken`.
fn next_node_id(c: &Cluster, rd: &str, taken: &mut BTreeSet<u8>) -> Result<u8, ApiError> {
    for r in c.resources_of(rd) {
        taken.insert(r.node_id);
    }
    let id = (0..=63u8)
        .find(|i| !taken.contains(i))
        .ok_or_else(|| ApiError::Conflict(format!("{rd} already has 64 replicas")))?;
    taken.insert(id);
    Ok(id)
}

/// The placement settings of definition `d` (its group's, then `over`).
pub fn effective_placement(c: &Cluster, d: &ResourceDefinition, over: &Placement) -> Placement {
    let base = c
        .groups
        .get(&d.group)
        .map(|g| g.placement.clone())
        .unwrap_or_default();
    base.overridden_by(over)
}

/// `resource create`.
pub fn resource_create(c: &Cluster, nodes: &[NodeInfo], rd: &str, wher: Where) -> Result<Outcome, ApiError> {
    let d = definition(c, rd)?;
    if d.volumes.is_empty() {
        return Err(ApiError::Conflict(format!(
            "{rd} has no volume definition: create one first (volume-definition create {rd} SIZE)"
        )));
    }
    let size: u64 = d.volumes.values().map(|v| v.size).sum();
    let existing: Vec<&Resource> = c.resources_of(rd).collect();
    let first = !existing.iter().any(|r| !r.diskless());
    let mut taken = BTreeSet::new();
    let mut o = Outcome::default();
    let mk = |node: &str, id: u8, pool: &str, flags: BTreeSet<ResourceFlag>| Resource {
        name: rd.to_owned(),
        node: node.to_owned(),
        node_id: id,
        initial: first && !flags.contains(&ResourceFlag::Diskless),
        volumes: d
            .volumes
            .keys()
            .map(|&n| {
                (
                    n,
                    ResourceVolume {
                        number: n,
                        pool: pool.to_owned(),
                    },
                )
            })
            .collect(),
        flags,
        props: Props::new(),
        created_on: now_unix(),
    };
    match wher {
        Where::Nodes {
            nodes: list,
            pool,
            diskless,
        } => {
            if list.is_empty() {
                return Err(ApiError::Invalid(
                    "name at least one node, or use --auto-place N".into(),
                ));
            }
            for n in &list {
                let info = node(c, n)?;
                if !info.node_type.hosts_resources() {
                    return Err(ApiError::Invalid(format!(
                        "node {n} is a {} node: it hosts no resources",
                        info.node_type
                    )));
                }
                if existing.iter().any(|r| r.node == *n) {
                    return Err(ApiError::Exists {
                        kind: "resource",
                        name: format!("{rd} on node {n}"),
                        hint: String::new(),
                    });
                }
                let id = next_node_id(c, rd, &mut taken)?;
                if diskless {
                    o.say(format!("SUCCESS: {rd} created on {n} (diskless, node id {id})"));
                    o.push(Change::PutResource(mk(
                        n,
                        id,
                        "",
                        [ResourceFlag::Diskless].into(),
                    )));
                    continue;
                }
                let pool = pick_pool(c, nodes, n, &pool, size)?;
                o.say(format!(
                    "SUCCESS: {rd} created on {n} (pool {pool}, node id {id})"
                ));
                o.push(Change::PutResource(mk(n, id, &pool, BTreeSet::new())));
            }
        }
        Where::Auto {
            count,
            placement: over,
        } => {
            let p = effective_placement(c, d, &over);
            check_placement(&p)?;
            let ex: Vec<Existing> = existing
                .iter()
                .map(|r| Existing {
                    node: r.node.clone(),
                    diskful: !r.diskless(),
                })
                .collect();
            let tiebreaker = lookup(&[&c.props], "AutoAddQuorumTiebreaker") != Some("false");
            let plan = placement::place(
                nodes,
                &placement::Request {
                    resource: rd,
                    size,
                    count,
                    placement: &p,
                    existing: &ex,
                    oversubscription: lookup(&[&c.props], "MaxOversubscriptionRatio")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(20.0),
                    tiebreaker,
                },
            )?;
            if plan.diskful.is_empty() && plan.diskless.is_empty() {
                let have = ex.iter().filter(|e| e.diskful).count();
                o.say(format!(
                    "INFO: {rd} already has {have} diskful replica(s): nothing to place"
                ));
            }
            for ch in &plan.diskful {
                let id = next_node_id(c, rd, &mut taken)?;
                o.say(format!(
                    "SUCCESS: {rd} placed on {} (pool {}, node id {id})",
                    ch.node, ch.pool
                ));
                o.push(Change::PutResource(mk(&ch.node, id, &ch.pool, BTreeSet::new())));
            }
            for ch in &plan.diskless {
                let id = next_node_id(c, rd, &mut taken)?;
                let mut flags: BTreeSet<ResourceFlag> = [ResourceFlag::Diskless].into();
                if ch.tiebreaker {
                    flags.insert(ResourceFlag::TieBreaker);
                }
                o.say(format!(
                    "SUCCESS: {rd} placed on {} ({}, node id {id})",
                    ch.node,
                    if ch.tiebreaker {
                        "diskless tiebreaker"
                    } else {
                        "diskless"
                    }
                ));
                o.push(Change::PutResource(mk(&ch.node, id, "", flags)));
            }
        }
    }
    Ok(o)
}

/// The pool of node `n` for an explicit resource: the named one, else the diskful pool with the
/// most free space.
fn pick_pool(c: &Cluster, nodes: &[NodeInfo], n: &str, wanted: &str, size: u64) -> Result<String, ApiError> {
    let pools: Vec<&StoragePool> = c.pools_of(n).filter(|p| p.driver != Driver::Diskless).collect();
    if !wanted.is_empty() {
        return match pools.iter().find(|p| p.name == wanted) {
            Some(p) => Ok(p.name.clone()),
            None => {
                let names: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();
                Err(ApiError::not_found(
                    "storage pool",
                    &format!("{wanted} on node {n}"),
                    names.iter(),
                ))
            }
        };
    }
    let free = |name: &str| {
        nodes
            .iter()
            .find(|i| i.name == n)
            .and_then(|i| i.pools.iter().find(|p| p.name == name))
            .and_then(|p| p.free)
    };
    pools
        .iter()
        .filter(|p| p.driver.thin() || free(&p.name).is_none_or(|f| f >= size))
        .max_by_key(|p| (free(&p.name).unwrap_or(0), std::cmp::Reverse(p.name.clone())))
        .map(|p| p.name.clone())
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "node {n} has no diskful storage pool with {} free: create one (storage-pool create file {n} POOL DIR) or name one with --storage-pool",
                human(size)
            ))
        })
}

/// `resource delete`; a tiebreaker that is no longer needed goes with the diskful replica.
pub fn resource_delete(c: &Cluster, rd: &str, node_name: &str) -> Result<Outcome, ApiError> {
    definition(c, rd)?;
    let Some(r) = c.resources.get(&(rd.to_owned(), node_name.to_owned())) else {
        let on: Vec<String> = c.resources_of(rd).map(|r| r.node.clone()).collect();
        return Err(ApiError::not_found(
            "resource",
            &format!("{rd} on node {node_name}"),
            on.iter(),
        ));
    };
    let mut o = Outcome::default();
    o.push(Change::DeleteResource(rd.to_owned(), node_name.to_owned()));
    o.say(format!("SUCCESS: resource {rd} on {node_name} deleted"));
    if !r.diskless() {
        let diskful_left = c
            .resources_of(rd)
            .filter(|x| !x.diskless() && x.node != node_name)
            .count();
        if diskful_left < 2 {
            for tb in c
                .resources_of(rd)
                .filter(|x| x.flags.contains(&ResourceFlag::TieBreaker))
            {
                o.push(Change::DeleteResource(rd.to_owned(), tb.node.clone()));
                o.say(format!(
                    "SUCCESS: tiebreaker of {rd} on {} removed (no longer needed)",
                    tb.node
                ));
            }
        }
    }
    Ok(o)
}

/// `node evacuate`: a replacement for every diskful replica on the node, placed elsewhere; the
/// node's replicas are flagged and removed later, once the replacements are UpToDate.
pub fn node_evacuate(c: &Cluster, nodes: &[NodeInfo], name: &str) -> Result<Outcome, ApiError> {
    let mut n = node(c, name)?.clone();
    n.evacuating = true;
    let mut o = Outcome::default();
    let nodes: Vec<NodeInfo> = nodes
        .iter()
        .cloned()
        .map(|mut i| {
            if i.name == name {
                i.excluded = Some("being evacuated".into());
            }
            i
        })
        .collect();
    for r in c.resources_on(name) {
        let mut flagged = r.clone();
        flagged.flags.insert(ResourceFlag::Evacuate);
        if !r.diskless() {
            let placed = resource_create(
                c,
                &nodes,
                &r.name,
                Where::Auto {
                    count: Count::Additional(1),
                    placement: Placement::default(),
                },
            )?;
            o.changes.extend(placed.changes);
            o.messages.extend(placed.messages);
        }
        o.say(format!(
            "INFO: {} on {name} will be removed once its replacement is UpToDate",
            r.name
        ));
        o.push(Change::PutResource(flagged));
    }
    o.push(Change::PutNode(n));
    o.say(format!("SUCCESS: node {name} is being evacuated"));
    Ok(o)
}

/// `... set-property`: sets and deletes properties of the object `kind`/`name`.
pub fn props_set(
    c: &Cluster,
    kind: &str,
    name: &str,
    node_name: &str,
    set: &Props,
    delete: &[String],
) -> Result<Outcome, ApiError> {
    check_props(set)?;
    let apply = |p: &mut Props| {
        for k in delete {
            p.remove(k);
        }
        p.extend(set.clone());
    };
    let mut o = Outcome::default();
    match kind {
        "controller" => {
            let mut p = c.props.clone();
            apply(&mut p);
            if set.contains_key(PORT_RANGE_KEY) || set.contains_key(MINOR_RANGE_KEY) {
                let mut probe = c.clone();
                probe.props = p.clone();
                port_range(&probe)?;
                minor_range(&probe)?;
            }
            o.push(Change::ControllerProps(p));
        }
        "node" => {
            let mut n = node(c, name)?.clone();
            apply(&mut n.props);
            o.push(Change::PutNode(n));
        }
        "storage-pool" => {
            let mut p = c
                .pools
                .get(&(node_name.to_owned(), name.to_owned()))
                .cloned()
                .ok_or_else(|| ApiError::NotFound {
                    kind: "storage pool",
                    name: format!("{name} on node {node_name}"),
                    hint: String::new(),
                })?;
            apply(&mut p.props);
            o.push(Change::PutPool(p));
        }
        "resource-group" => {
            let mut g = group(c, name)?.clone();
            apply(&mut g.props);
            o.push(Change::PutGroup(g));
        }
        "resource-definition" => {
            let mut d = definition(c, name)?.clone();
            apply(&mut d.props);
            o.push(Change::PutDefinition(d));
        }
        "resource" => {
            let mut r = c
                .resources
                .get(&(name.to_owned(), node_name.to_owned()))
                .cloned()
                .ok_or_else(|| ApiError::NotFound {
                    kind: "resource",
                    name: format!("{name} on node {node_name}"),
                    hint: String::new(),
                })?;
            apply(&mut r.props);
            o.push(Change::PutResource(r));
        }
        other => {
            return Err(ApiError::Invalid(format!(
                "properties of {other:?}: use controller, node, storage-pool, resource-group, resource-definition or resource"
            )));
        }
    }
    o.say(format!(
        "SUCCESS: properties of {kind}{} updated",
        if name.is_empty() {
            String::new()
        } else {
            format!(" {name}")
        }
    ));
    Ok(o)
}

/// The node type from its name, as an [`ApiError`].
pub fn node_type(text: &str) -> Result<NodeType, ApiError> {
    text.parse().map_err(ApiError::Invalid)
}

#[cfg(test)]
mod tests;
