//! What each node should host, computed from the cluster state: its storage pools and, for every
//! resource on it, the replication setup (port, secret, node ids and addresses of every member)
//! and its volumes. The agent link pushes it (all of it on connect, changes after).

use std::collections::BTreeMap;

use replbd_proto::agent::{DesiredResource, DesiredVolume, Member, PoolSpec};

use super::ops::DEFAULT_MAX_PEERS;
use crate::cluster::Cluster;
use crate::model::Driver;

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
                pool: r
                    .volumes
                    .get(&v.number)
                    .map(|x| x.pool.clone())
                    .unwrap_or_default(),
            })
            .collect();
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
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hex() {
        assert_eq!(secret("0aff"), vec![0x0a, 0xff]);
        assert_eq!(secret("xyz!"), b"xyz!".to_vec());
    }
}
