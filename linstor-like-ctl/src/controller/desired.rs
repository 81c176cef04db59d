//! What each node should host, computed from the cluster state: its storage pools and, for every
//! resource on it, the replication setup (port, secret, node ids and addresses of every member)
//! and its volumes. The agent link pushes it (all of it on connect, changes after).

use std::collections::{BTreeMap, HashMap};

use replbd_proto::agent::{DesiredResource, DesiredVolume, Member, PoolSpec};

use super::ops::DEFAULT_MAX_PEERS;
use crate::cluster::Cluster;
use crate::model::props::effective;
use crate::model::{Driver, Props, ResourceDefinition};

/// The pools of node `node`.
pub fn pools(c: &Cluster, node: &str) -> Vec<PoolSpec> {
    c.pools_of(node)
        .map(|p| PoolSpec {
            name: p.name.clone(),
            driver: p.driver.as_str().to_owned(),
            backing: p.backing.clone(),
        })
        .collect()
}

/// The hex secret as bytes (the text itself if it is not hex).
fn secret(hex: &str) -> Vec<u8> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    bytes.unwrap_or_else(|| hex.as_bytes().to_vec())
}

/// Every resource node `node` should host, by name.
pub fn resources(c: &Cluster, node: &str) -> BTreeMap<String, DesiredResource> {
    let mut out = BTreeMap::new();
    for r in c.resources_on(node) {
        let Some(d) = c.definitions.get(&r.name) else {
            continue;
        };
        let members: Vec<Member> = c
            .resources_of(&r.name)
            .filter_map(|m| {
                let n = c.nodes.get(&m.node)?;
                Some(Member {
                    node: m.node.clone(),
                    node_id: u32::from(m.node_id),
                    address: n.address.clone(),
                    diskless: m.diskless(),
                })
            })
            .collect();
        let diskful = members.iter().filter(|m| !m.diskless).count() as u32;
        let volumes = d
            .volumes
            .values()
            .map(|v| DesiredVolume {
                number: v.number,
                size_bytes: v.size,
                minor: v.minor,
                pool: r
                    .volumes
                    .get(&v.number)
                    .map(|x| x.pool.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let drbd_options = drbd_options(c, d, &r.props, members.len());
        let pool_diskless = r.volumes.values().any(|v| {
            c.pools
                .get(&(node.to_owned(), v.pool.clone()))
                .is_some_and(|p| p.driver == Driver::Diskless)
        });
        out.insert(
            r.name.clone(),
            DesiredResource {
                name: r.name.clone(),
                port: u32::from(d.port),
                secret: secret(&d.secret),
                node_id: u32::from(r.node_id),
                members,
                volumes,
                diskless: r.diskless() || pool_diskless,
                initial_uuid: if r.initial { d.initial_uuid } else { 0 },
                max_peers: DEFAULT_MAX_PEERS.max(diskful.saturating_sub(1)),
                drbd_options,
            },
        );
    }
    out
}

/// The namespace of the DRBD options passed to nodes.
const DRBD_OPTIONS: &str = "DrbdOptions/";

/// The DRBD options of a resource on a node: the effective `DrbdOptions/...` properties
/// (controller → resource group → resource definition → resource, the closest wins) without the
/// prefix, plus LINSTOR's auto-quorum — with three or more members (a diskless tiebreaker counts)
/// and no explicit `Resource/quorum`, `quorum majority` and `on-no-quorum` from
/// `DrbdOptions/auto-quorum` (`io-error` by default, `suspend-io`, or `disabled` to leave quorum
/// off), so a partitioned minority stops writing without anyone having to ask for it.
fn drbd_options(
    c: &Cluster,
    d: &ResourceDefinition,
    resource_props: &Props,
    members: usize,
) -> HashMap<String, String> {
    let group = c.groups.get(&d.group).map(|g| &g.props);
    let empty = Props::new();
    let layers = [
        ("controller", &c.props),
        ("resource-group", group.unwrap_or(&empty)),
        ("resource-definition", &d.props),
        ("resource", resource_props),
    ];
    let mut out: HashMap<String, String> = effective(&layers)
        .into_iter()
        .filter_map(|(k, (v, _))| k.strip_prefix(DRBD_OPTIONS).map(|k| (k.to_owned(), v)))
        .collect();
    let auto = out.remove("auto-quorum").unwrap_or_else(|| "io-error".to_owned());
    if members >= 3 && auto != "disabled" && !out.contains_key("Resource/quorum") {
        out.insert("Resource/quorum".into(), "majority".into());
        out.entry("Resource/on-no-quorum".into()).or_insert(auto);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drbd_options_come_from_the_closest_layer_and_quorum_is_automatic_from_three_members() {
        let mut c = Cluster::default();
        c.props.insert("DrbdOptions/Net/protocol".into(), "A".into());
        c.props.insert("Aux/zone".into(), "a".into());
        let mut d = ResourceDefinition {
            name: "r0".into(),
            group: "DfltRscGrp".into(),
            port: 7000,
            secret: "00".into(),
            initial_uuid: 0,
            volumes: BTreeMap::new(),
            props: Props::new(),
            created_on: 0,
        };
        d.props.insert("DrbdOptions/Net/protocol".into(), "C".into());
        let none = Props::new();
        let two = drbd_options(&c, &d, &none, 2);
        assert_eq!(two.get("Net/protocol").map(String::as_str), Some("C"));
        assert!(!two.contains_key("Aux/zone") && !two.contains_key("Resource/quorum"));
        let three = drbd_options(&c, &d, &none, 3);
        assert_eq!(three.get("Resource/quorum").map(String::as_str), Some("majority"));
        assert_eq!(
            three.get("Resource/on-no-quorum").map(String::as_str),
            Some("io-error")
        );
        d.props
            .insert("DrbdOptions/auto-quorum".into(), "disabled".into());
        let off = drbd_options(&c, &d, &none, 3);
        assert!(!off.contains_key("Resource/quorum") && !off.contains_key("auto-quorum"));
        d.props
            .insert("DrbdOptions/auto-quorum".into(), "suspend-io".into());
        let suspend = drbd_options(&c, &d, &none, 4);
        assert_eq!(
            suspend.get("Resource/on-no-quorum").map(String::as_str),
            Some("suspend-io")
        );
        let mut r = Props::new();
        r.insert("DrbdOptions/Resource/quorum".into(), "off".into());
        assert_eq!(
            drbd_options(&c, &d, &r, 3)
                .get("Resource/quorum")
                .map(String::as_str),
            Some("off")
        );
    }

    #[test]
    fn secrets_are_hex() {
        assert_eq!(secret("0aff"), vec![0x0a, 0xff]);
        assert_eq!(secret("xyz!"), b"xyz!".to_vec());
    }
}
