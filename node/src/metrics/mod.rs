//! Prometheus metrics of the node: per resource its role and disk state, per peer the connection
//! and replication state and the bytes out of sync, and per volume the I/O the front end serves
//! (counts, bytes, errors, latency, requests in flight).
//!
//! State metrics are *state sets*: one series per possible state with value 1 for the current one
//! and 0 for the others (`replbd_resource_role{resource="r0",state="Primary"} 1`), so a graph or an
//! alert can select a state by name. They are refreshed from the resources' status when scraped
//! ([`Metrics::update`]); the I/O metrics are counted as requests complete ([`metered`]).
//! Every metric is listed in `docs/metrics.md`.
//!
//! - [`metered`]: the `BlockVolume` wrapper that counts I/O;
//! - [`http`]: the minimal HTTP server for `/metrics` and `/health`.

pub mod http;
pub mod metered;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};

use crate::admin::report::ResourceReport;
pub use metered::{IoMeter, MeteredVolume};

/// The kind of an I/O request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as Prometheus users write them
pub enum Op {
    /// Reads.
    read,
    /// Writes.
    write,
    /// Flushes.
    flush,
    /// Discards (trims).
    discard,
    /// Zeroing writes.
    write_zeroes,
}

impl Op {
    /// Every kind.
    pub const ALL: [Op; 5] = [Op::read, Op::write, Op::flush, Op::discard, Op::write_zeroes];
}

/// Labels of I/O metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IoLabels {
    /// The resource.
    pub resource: String,
    /// The volume number.
    pub volume: u32,
    /// The request kind.
    pub op: Op,
}

/// Labels of per-volume metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeLabels {
    /// The resource.
    pub resource: String,
    /// The volume number.
    pub volume: u32,
}

/// Labels of per-resource metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The resource.
    pub resource: String,
}

/// Labels of a per-resource state set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceStateLabels {
    /// The resource.
    pub resource: String,
    /// The state's name.
    pub state: String,
}

/// Labels of per-peer metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The resource.
    pub resource: String,
    /// The peer's node name.
    pub peer: String,
}

/// Labels of a per-peer state set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerStateLabels {
    /// The resource.
    pub resource: String,
    /// The peer's node name.
    pub peer: String,
    /// The state's name.
    pub state: String,
}

/// The I/O metric families, shared by every [`IoMeter`].
#[derive(Clone)]
pub struct IoFamilies {
    requests: Family<IoLabels, Counter>,
    bytes: Family<IoLabels, Counter>,
    errors: Family<IoLabels, Counter>,
    latency: Family<IoLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<VolumeLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~13 s.
    Histogram::new(exponential_buckets(50e-6, 2.0, 19))
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    io: IoFamilies,
    up: Family<ResourceLabels, Gauge>,
    role: Family<ResourceStateLabels, Gauge>,
    disk: Family<ResourceStateLabels, Gauge>,
    size: Family<ResourceLabels, Gauge>,
    connection: Family<PeerStateLabels, Gauge>,
    replication: Family<PeerStateLabels, Gauge>,
    peer_disk: Family<PeerStateLabels, Gauge>,
    out_of_sync: Family<PeerLabels, Gauge>,
    /// Peers each resource has reported, so their series can be zeroed when it goes down.
    peers_seen: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Metrics {
    /// The node's metrics, for node `node`.
    pub fn new(node: &str) -> Metrics {
        let mut registry = Registry::default();
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![
            ("node".to_owned(), node.to_owned()),
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        ])
        .set(1);
        registry.register(
            "replbd_node_info",
            "This node's name and replbd version (always 1)",
            info,
        );
        let io = IoFamilies {
            requests: Family::default(),
            bytes: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
        };
        registry.register(
            "replbd_io_requests",
            "Application I/O requests completed by the front end",
            io.requests.clone(),
        );
        registry.register(
            "replbd_io_bytes",
            "Bytes read, written, discarded or zeroed by application requests",
            io.bytes.clone(),
        );
        registry.register(
            "replbd_io_errors",
            "Application I/O requests that failed",
            io.errors.clone(),
        );
        registry.register(
            "replbd_io_latency_seconds",
            "Latency of application I/O requests",
            io.latency.clone(),
        );
        registry.register(
            "replbd_io_in_flight",
            "Application I/O requests being executed",
            io.in_flight.clone(),
        );
        let mut m = Metrics {
            registry,
            io,
            up: Family::default(),
            role: Family::default(),
            disk: Family::default(),
            size: Family::default(),
            connection: Family::default(),
            replication: Family::default(),
            peer_disk: Family::default(),
            out_of_sync: Family::default(),
            peers_seen: Mutex::default(),
        };
        let r = &mut m.registry;
        r.register(
            "replbd_resource_up",
            "1 while the resource is up on this node",
            m.up.clone(),
        );
        r.register(
            "replbd_resource_role",
            "This node's role (state set: 1 for the current role)",
            m.role.clone(),
        );
        r.register(
            "replbd_resource_disk_state",
            "This node's disk state (state set: 1 for the current state)",
            m.disk.clone(),
        );
        r.register(
            "replbd_resource_size_bytes",
            "Size of the volume in bytes",
            m.size.clone(),
        );
        r.register(
            "replbd_peer_connection_state",
            "Connection state to each peer (state set)",
            m.connection.clone(),
        );
        r.register(
            "replbd_peer_replication_state",
            "Replication state to each peer (state set)",
            m.replication.clone(),
        );
        r.register(
            "replbd_peer_disk_state",
            "Each peer's disk state as it reported it (state set)",
            m.peer_disk.clone(),
        );
        r.register(
            "replbd_peer_out_of_sync_bytes",
            "Bytes this node has marked out of sync with each peer",
            m.out_of_sync.clone(),
        );
        m
    }

    /// The meter of resource `resource`'s volume `volume`.
    pub fn io_meter(&self, resource: &str, volume: u32) -> IoMeter {
        IoMeter::new(&self.io, resource, volume)
    }

    /// Refreshes the state metrics from the resources' reports.
    pub fn update(&self, reports: &[ResourceReport]) {
        for r in reports {
            let res = ResourceLabels {
                resource: r.name.clone(),
            };
            self.up.get_or_create(&res).set(i64::from(r.up));
            self.size
                .get_or_create(&res)
                .set(i64::try_from(r.size_bytes).unwrap_or(i64::MAX));
            state_set(&self.role, &r.name, Role::ALL, r.role);
            state_set(&self.disk, &r.name, DiskState::ALL, r.disk);
            let mut seen = self.peers_seen.lock().unwrap_or_else(PoisonError::into_inner);
            let peers = seen.entry(r.name.clone()).or_default();
            if !r.up {
                // A resource that is down has no connections: every state of its peers is 0.
                for peer in peers.iter() {
                    peer_state_set(&self.connection, &r.name, peer, ConnectionState::ALL, None);
                    peer_state_set(&self.replication, &r.name, peer, ReplicationState::ALL, None);
                    peer_state_set(&self.peer_disk, &r.name, peer, DiskState::ALL, None);
                }
            }
            peers.extend(r.peers.iter().map(|p| p.name.clone()));
            drop(seen);
            for p in &r.peers {
                peer_state_set(
                    &self.connection,
                    &r.name,
                    &p.name,
                    ConnectionState::ALL,
                    Some(p.connection),
                );
                peer_state_set(
                    &self.replication,
                    &r.name,
                    &p.name,
                    ReplicationState::ALL,
                    Some(p.replication),
                );
                peer_state_set(
                    &self.peer_disk,
                    &r.name,
                    &p.name,
                    DiskState::ALL,
                    Some(p.peer_disk),
                );
                self.out_of_sync
                    .get_or_create(&PeerLabels {
                        resource: r.name.clone(),
                        peer: p.name.clone(),
                    })
                    .set(i64::try_from(p.out_of_sync_bytes).unwrap_or(i64::MAX));
            }
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn state_set<S: ToString + Copy + PartialEq>(
    family: &Family<ResourceStateLabels, Gauge>,
    resource: &str,
    all: &[S],
    current: Option<S>,
) {
    for s in all {
        family
            .get_or_create(&ResourceStateLabels {
                resource: resource.to_owned(),
                state: s.to_string(),
            })
            .set(i64::from(Some(*s) == current));
    }
}

fn peer_state_set<S: ToString + Copy + PartialEq>(
    family: &Family<PeerStateLabels, Gauge>,
    resource: &str,
    peer: &str,
    all: &[S],
    current: Option<S>,
) {
    for s in all {
        family
            .get_or_create(&PeerStateLabels {
                resource: resource.to_owned(),
                peer: peer.to_owned(),
                state: s.to_string(),
            })
            .set(i64::from(Some(*s) == current));
    }
}
