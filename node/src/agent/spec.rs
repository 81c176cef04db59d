//! From the controller's [`DesiredResource`] to the [`ResourceSpec`] the daemon hosts: the same
//! checked model the TOML file produces, so a controller-driven resource runs exactly like a
//! configured one. Options the controller does not set take the configuration file's defaults.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use replbd_proto::agent::DesiredResource;
use replbd_quorum::options::ConnectionOptions;
use replbd_replication::engine::Timeouts;

use crate::config::{
    FrontEndSpec, HandlersSpec, MetaDisk, NodeSpec, PeerSpec, ResourceSpec, ResyncSpec, UblkSpec, VolumeSpec,
};
use crate::nbd::ListenAddr;

/// Resolves `host` and `port` to one address.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

/// Where the NBD export of `resource` listens on this node.
pub fn nbd_socket(state_dir: &Path, resource: &str) -> PathBuf {
    state_dir.join("nbd").join(format!("{resource}.sock"))
}

/// The front end of `d` on this node: `/dev/ublkbN` with the volume's minor where the kernel has
/// ublk (`ublk`), else an NBD export on a unix socket under `state_dir` (also for a volume from a
/// controller that assigned no minor). Like DRBD's `/dev/drbdN`, the device number is the same on
/// every node and exists only while the node is Primary.
pub fn front_end(d: &DesiredResource, ublk: bool, state_dir: &Path) -> FrontEndSpec {
    match d.volumes.first().map(|v| v.minor) {
        Some(minor) if ublk && minor != 0 => FrontEndSpec::Ublk(UblkSpec::new(minor)),
        _ => FrontEndSpec::Nbd(ListenAddr::Unix(nbd_socket(state_dir, &d.name))),
    }
}

/// The spec of `d` on this node; `disk` is the local volume (`None`: diskless); `ublk`: the kernel
/// has ublk (see [`front_end`]).
pub fn build(
    d: &DesiredResource,
    disk: Option<PathBuf>,
    state_dir: &Path,
    ublk: bool,
) -> Result<ResourceSpec, String> {
    let port = u16::try_from(d.port).map_err(|_| format!("port {} is out of range", d.port))?;
    let node_id = |id: u32| {
        u8::try_from(id)
            .ok()
            .filter(|i| *i <= 63)
            .ok_or(format!("node id {id} is out of range 0-63"))
    };
    let this_id = node_id(d.node_id)?;
    let mut this = None;
    let mut peers = Vec::new();
    for m in &d.members {
        let spec = NodeSpec {
            name: m.node.clone(),
            id: node_id(m.node_id)?,
            address: resolve(&m.address, port)?,
            diskless: m.diskless,
        };
        if spec.id == this_id {
            this = Some(spec);
        } else {
            peers.push(PeerSpec {
                node: spec,
                options: ConnectionOptions::default(),
            });
        }
    }
    peers.sort_by_key(|p| p.node.id);
    let this =
        this.ok_or_else(|| format!("{}: this node (id {this_id}) is not among the members", d.name))?;
    let size = d.volumes.first().map(|v| v.size_bytes);
    if d.secret.is_empty() {
        return Err(format!("{}: no shared secret", d.name));
    }
    let mut spec = ResourceSpec {
        name: d.name.clone(),
        this,
        peers,
        volume: VolumeSpec {
            number: 0,
            size,
            disk,
            meta: MetaDisk::Internal,
            create_metadata: false,
            max_peers: d.max_peers.max(1) as usize,
            al_extents: replbd_bitmap::layout::DEFAULT_AL_EXTENTS,
        },
        secret: d.secret.clone(),
        data_integrity: false,
        split_brain: Default::default(),
        timeouts: Timeouts {
            // Reconnect quickly: a restarted node should rejoin within seconds.
            reconnect_max: Duration::from_secs(2),
            ..Timeouts::default()
        },
        max_epoch_size: 2048,
        max_buffers: 128 << 20,
        congestion_fill: 0,
        tls: None,
        read_balancing: Default::default(),
        resync: ResyncSpec::default(),
        quorum: Default::default(),
        handlers: HandlersSpec::default(),
        front_end: front_end(d, ublk, state_dir),
    };
    super::options::apply(&mut spec, &d.drbd_options).map_err(|e| format!("{}: {e}", d.name))?;
    Ok(spec)
}

/// Whether two specs would run the same engine (a change means the resource restarts).
pub fn same_engine(a: &ResourceSpec, b: &ResourceSpec) -> bool {
    a.this == b.this
        && a.peers
            .iter()
            .map(|p| &p.node)
            .eq(b.peers.iter().map(|p| &p.node))
        && a.volume == b.volume
        && a.secret == b.secret
        && a.peers
            .iter()
            .map(|p| &p.options)
            .eq(b.peers.iter().map(|p| &p.options))
        && a.quorum == b.quorum
        && a.data_integrity == b.data_integrity
        && a.resync == b.resync
        && a.congestion_fill == b.congestion_fill
        && a.max_buffers == b.max_buffers
}

#[cfg(test)]
mod tests {
    use replbd_proto::agent::{DesiredVolume, Member};

    use super::*;

    #[test]
    fn members_become_this_node_and_peers() {
        let d = DesiredResource {
            name: "r0".into(),
            port: 7000,
            secret: b"s".to_vec(),
            node_id: 1,
            members: vec![
                Member {
                    node: "n2".into(),
                    node_id: 1,
                    address: "127.0.0.2".into(),
                    diskless: false,
                },
                Member {
                    node: "n1".into(),
                    node_id: 0,
                    address: "127.0.0.1".into(),
                    diskless: false,
                },
            ],
            volumes: vec![DesiredVolume {
                number: 0,
                size_bytes: 1 << 20,
                pool: "p".into(),
                minor: 1000,
            }],
            diskless: false,
            initial_uuid: 0,
            max_peers: 7,
            drbd_options: Default::default(),
        };
        let s = build(&d, Some("/x".into()), Path::new("/run/st"), false).unwrap();
        assert_eq!(s.this.name, "n2");
        assert_eq!(s.this.address, "127.0.0.2:7000".parse().unwrap());
        assert_eq!(s.peers.len(), 1);
        assert_eq!(s.peers[0].node.name, "n1");
        assert_eq!(s.volume.size, Some(1 << 20));
        assert!(same_engine(&s, &s.clone()));
        assert_eq!(
            s.front_end,
            FrontEndSpec::Nbd(ListenAddr::Unix("/run/st/nbd/r0.sock".into())),
            "no ublk in the kernel: NBD"
        );
        let u = build(&d, Some("/x".into()), Path::new("/run/st"), true).unwrap();
        assert_eq!(
            u.front_end,
            FrontEndSpec::Ublk(UblkSpec::new(1000)),
            "ublk: the volume's minor"
        );
        let mut unnumbered = d.clone();
        unnumbered.volumes[0].minor = 0;
        assert!(
            matches!(
                build(&unnumbered, Some("/x".into()), Path::new("/run/st"), true)
                    .unwrap()
                    .front_end,
                FrontEndSpec::Nbd(_)
            ),
            "a volume without a minor is served over NBD even where ublk exists"
        );
        let mut other = d.clone();
        other.node_id = 5;
        assert!(
            build(&other, None, Path::new("/"), false)
                .unwrap_err()
                .contains("not among the members")
        );
        // DRBD options: applied, and a change means a restart.
        let mut with = d.clone();
        for (k, v) in [
            ("Resource/quorum", "majority"),
            ("Resource/on-no-quorum", "suspend-io"),
            ("Net/protocol", "A"),
            ("Net/on-congestion", "pull-ahead"),
            ("Net/congestion-fill", "32MiB"),
            ("PeerDevice/c-max-rate", "40MiB"),
            ("PeerDevice/c-plan-ahead", "1s"),
        ] {
            with.drbd_options.insert(k.into(), v.into());
        }
        let t = build(&with, Some("/x".into()), Path::new("/run/st"), false).unwrap();
        assert_eq!(t.quorum.quorum, replbd_quorum::QuorumPolicy::Majority);
        assert_eq!(
            t.quorum.on_no_quorum,
            replbd_quorum::quorum::OnNoQuorum::SuspendIo
        );
        assert_eq!(t.peers[0].options.protocol, replbd_quorum::Protocol::A);
        assert_eq!(t.congestion_fill, 32 << 20);
        assert_eq!(t.resync.c_max_rate, 40 << 20);
        assert_eq!(t.resync.c_plan_ahead, Duration::from_secs(1));
        assert!(!same_engine(&s, &t));
        let e = t.engine_config();
        assert_eq!(
            e.congestion_policy(0),
            replbd_quorum::options::OnCongestion::PullAhead
        );
        // Unknown keys, bad values and bad combinations fail with the key named.
        let failing = |k: &str, v: &str| {
            let mut x = d.clone();
            x.drbd_options.insert(k.into(), v.into());
            build(&x, None, Path::new("/"), false).unwrap_err()
        };
        assert!(
            failing("Resource/quorom", "majority").contains("DrbdOptions/Resource/quorom is not an option")
        );
        assert!(failing("Resource/quorum", "most").contains("DrbdOptions/Resource/quorum = \"most\""));
        assert!(failing("Net/on-congestion", "pull-ahead").contains("requires protocol A"));
    }
}
