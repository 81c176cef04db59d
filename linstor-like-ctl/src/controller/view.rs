//! How resources and volumes are shown: LINSTOR's columns and state strings, computed from the
//! stored resource and what its node last reported.
//!
//! | state | when |
//! |---|---|
//! | `Unknown` | the node is offline, or has not reported the resource yet |
//! | `UpToDate`, `Inconsistent`, `Outdated`, `Consistent`, `Failed`, `Attaching` | the disk state |
//! | `SyncTarget(43.00%)` | this replica receives a resync; the percentage is what is in sync |
//! | `Diskless`, `TieBreaker` | a diskless replica (automatic tiebreaker) that is up |
//! | `Down`, `Failed(...)` | not up; with the node's error when applying it failed |
//!
//! Conns is `Ok` when every peer is connected, else the states of the others, e.g.
//! `Connecting(n2)`, `StandAlone(n3)`.

use replbd_proto::agent::ResourceState;
use replbd_proto::controller as pb;

use crate::model::{Resource, ResourceFlag};

/// The replica's disk state as shown.
pub fn state(r: &Resource, online: bool, st: Option<&ResourceState>) -> String {
    let Some(st) = st.filter(|_| online) else {
        return "Unknown".to_owned();
    };
    if !st.up {
        return if st.error.is_empty() {
            "Down".to_owned()
        } else {
            "Failed".to_owned()
        };
    }
    if r.diskless() || st.disk == "Diskless" {
        return if r.flags.contains(&ResourceFlag::TieBreaker) {
            "TieBreaker".to_owned()
        } else {
            "Diskless".to_owned()
        };
    }
    if let Some(p) = st
        .peers
        .iter()
        .find(|p| p.replication == "SyncTarget" || p.replication == "PausedSyncT")
    {
        let pct = if p.done_percent >= 0.0 {
            p.done_percent
        } else {
            0.0
        };
        return format!("{}({pct:.2}%)", p.replication);
    }
    st.disk.clone()
}

/// The Conns column.
pub fn conns(online: bool, st: Option<&ResourceState>) -> String {
    let Some(st) = st.filter(|_| online && st.is_some_and(|s| s.up)) else {
        return String::new();
    };
    let bad: Vec<String> = st
        .peers
        .iter()
        .filter(|p| p.connection != "Connected")
        .map(|p| format!("{}({})", p.connection, p.node))
        .collect();
    if bad.is_empty() {
        "Ok".to_owned()
    } else {
        bad.join(",")
    }
}

/// The Repl column of a volume: `Established(2)` when every peer replicates normally, else each
/// peer's replication state.
pub fn repl(online: bool, st: Option<&ResourceState>) -> String {
    let Some(st) = st.filter(|_| online && st.is_some_and(|s| s.up)) else {
        return String::new();
    };
    if st.peers.iter().all(|p| p.replication == "Established") {
        return format!("Established({})", st.peers.len());
    }
    st.peers
        .iter()
        .map(|p| format!("{}({})", p.replication, p.node))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resource as listed.
pub fn resource(
    r: &Resource,
    port: u16,
    online: bool,
    st: Option<&ResourceState>,
    sizes: &[(u32, u64)],
) -> pb::Resource {
    let shown = st.filter(|_| online);
    let state = state(r, online, st);
    let role = shown.map(|s| s.role.clone()).unwrap_or_default();
    let usage = match (shown, role.as_str()) {
        (None, _) => String::new(),
        (Some(_), "Primary") => "InUse".to_owned(),
        (Some(_), _) => "Unused".to_owned(),
    };
    let volumes = r
        .volumes
        .values()
        .map(|v| pb::Volume {
            resource: r.name.clone(),
            node: r.node.clone(),
            number: v.number,
            storage_pool: if r.diskless() {
                "DfltDisklessStorPool".into()
            } else {
                v.pool.clone()
            },
            device: shown.map(|s| s.device.clone()).unwrap_or_default(),
            allocated_bytes: shown.map_or(0, |s| s.allocated_bytes),
            size_bytes: sizes.iter().find(|(n, _)| *n == v.number).map_or(0, |(_, s)| *s),
            state: state.clone(),
            disk: shown.map(|s| s.disk.clone()).unwrap_or_default(),
            repl: repl(online, st),
            in_use: role == "Primary",
            done_percent: shown
                .and_then(|s| s.peers.iter().find(|p| p.replication == "SyncTarget"))
                .map_or(-1.0, |p| p.done_percent),
        })
        .collect();
    pb::Resource {
        name: r.name.clone(),
        node: r.node.clone(),
        port: u32::from(port),
        node_id: u32::from(r.node_id),
        flags: r.flags.iter().map(ToString::to_string).collect(),
        usage,
        conns: conns(online, st),
        state,
        created_on: r.created_on,
        volumes,
        role,
        connections: shown
            .map(|s| {
                s.peers
                    .iter()
                    .map(|p| pb::Connection {
                        peer: p.node.clone(),
                        connection: p.connection.clone(),
                        replication: p.replication.clone(),
                        peer_disk: p.peer_disk.clone(),
                        done_percent: p.done_percent,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        error: shown.map(|s| s.error.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use replbd_proto::agent::PeerState;

    use super::*;

    fn res(flags: &[ResourceFlag]) -> Resource {
        Resource {
            name: "r0".into(),
            node: "n1".into(),
            node_id: 0,
            flags: flags.iter().copied().collect(),
            volumes: Default::default(),
            initial: false,
            props: Default::default(),
            created_on: 0,
        }
    }

    fn peer(node: &str, conn: &str, repl: &str, pct: f64) -> PeerState {
        PeerState {
            node: node.into(),
            node_id: 1,
            connection: conn.into(),
            replication: repl.into(),
            peer_disk: "UpToDate".into(),
            role: "Secondary".into(),
            out_of_sync_bytes: 0,
            done_percent: pct,
        }
    }

    fn up(disk: &str, peers: Vec<PeerState>) -> ResourceState {
        ResourceState {
            name: "r0".into(),
            up: true,
            role: "Secondary".into(),
            disk: disk.into(),
            peers,
            ..Default::default()
        }
    }

    #[test]
    fn state_strings() {
        let r = res(&[]);
        assert_eq!(state(&r, false, Some(&up("UpToDate", vec![]))), "Unknown");
        assert_eq!(state(&r, true, None), "Unknown");
        assert_eq!(state(&r, true, Some(&up("UpToDate", vec![]))), "UpToDate");
        assert_eq!(
            state(
                &r,
                true,
                Some(&up(
                    "Inconsistent",
                    vec![peer("n2", "Connected", "SyncTarget", 43.0)]
                ))
            ),
            "SyncTarget(43.00%)"
        );
        assert_eq!(
            state(
                &res(&[ResourceFlag::Diskless]),
                true,
                Some(&up("Diskless", vec![]))
            ),
            "Diskless"
        );
        assert_eq!(
            state(
                &res(&[ResourceFlag::Diskless, ResourceFlag::TieBreaker]),
                true,
                Some(&up("Diskless", vec![]))
            ),
            "TieBreaker"
        );
        let mut failed = up("", vec![]);
        failed.up = false;
        failed.error = "disk full".into();
        assert_eq!(state(&r, true, Some(&failed)), "Failed");
    }

    #[test]
    fn conns_and_repl() {
        let st = up(
            "UpToDate",
            vec![
                peer("n2", "Connected", "Established", -1.0),
                peer("n3", "Connecting", "Off", -1.0),
            ],
        );
        assert_eq!(conns(true, Some(&st)), "Connecting(n3)");
        assert_eq!(repl(true, Some(&st)), "Established(n2),Off(n3)");
        let ok = up("UpToDate", vec![peer("n2", "Connected", "Established", -1.0)]);
        assert_eq!(conns(true, Some(&ok)), "Ok");
        assert_eq!(repl(true, Some(&ok)), "Established(1)");
        assert_eq!(conns(false, Some(&ok)), "");
    }
}
