//! Builds clusters of resources in one process over real loopback TCP, with in-memory disks.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use replbd_bitmap::{
    CreateOptions, Geometry, MemDevice, Metadata, NodeId, OpenOptions, Params, Placement, create,
};
use replbd_quorum::{ConnectionState, DiskState, Protocol, ReplicationState};
use replbd_replication::engine::{Event, Timeouts};
use replbd_replication::store::{MemStore, Store};
use replbd_replication::{BlockVolume, LocalDisk, PeerConfig, Resource, ResourceConfig, WriteFlags};
use tokio::sync::broadcast::Receiver;

pub const SECRET: &[u8] = b"test-secret";
pub const UUID: u64 = 0x1234_5678_9abc_def0;

/// One node of a test cluster.
pub struct Node {
    pub id: u8,
    pub res: Resource,
    pub store: Option<Arc<MemStore>>,
    pub addr: SocketAddr,
    pub meta: Option<Arc<MemDevice>>,
    pub cfg: ResourceConfig,
}

impl Node {
    /// Starts this node again on the same data and metadata (after `down` or `halt`).
    pub async fn restart(&mut self) {
        let d = reattach(self.meta.as_ref().unwrap(), self.store.as_ref().unwrap());
        self.res = Resource::start(self.cfg.clone(), Some(d)).await.unwrap();
    }
}

/// Logs to the test output when `REPLBD_LOG` is set (e.g. `REPLBD_LOG=info`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("REPLBD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// The lowest port the kernel hands out for outgoing connections (and for binding port 0).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// Free loopback ports, checked by binding them and released; the tests bind them right after.
///
/// They come from below the kernel's ephemeral range: a port found by binding port 0 lies inside
/// it, and between its release and the node's bind an outgoing connection of a test running in
/// parallel can take it (seen in CI: `AddrInUse`). A per-process counter, starting at a place
/// taken from the process id, hands out each port once.
pub fn free_ports(n: usize) -> Vec<SocketAddr> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = ephemeral_low().saturating_sub(LOW);
    if span < 1_000 {
        // No room below the ephemeral range: let the kernel choose.
        let listeners: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        return listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    }
    let _ = NEXT.compare_exchange(0, std::process::id() % span, Ordering::SeqCst, Ordering::SeqCst);
    let mut ports = Vec::with_capacity(n);
    for _ in 0..span {
        if ports.len() == n {
            break;
        }
        let port = u16::try_from(LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span).unwrap();
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            ports.push(l.local_addr().unwrap());
        }
    }
    assert_eq!(ports.len(), n, "no {n} free loopback ports below {}", LOW + span);
    ports
}

/// A fresh disk of `size` bytes, declared UpToDate at [`UUID`] (identical zeroes everywhere).
pub fn disk(size: u64, max_peers: usize, node: u8) -> (LocalDisk, Arc<MemStore>) {
    let (d, store, _) = disk_with_meta(size, max_peers, node, true);
    (d, store)
}

/// A fresh disk and its metadata device; `up_to_date: false` leaves the metadata "just created".
pub fn disk_with_meta(
    size: u64,
    max_peers: usize,
    node: u8,
    up_to_date: bool,
) -> (LocalDisk, Arc<MemStore>, Arc<MemDevice>) {
    let params = Params {
        data_size: size,
        max_peers: max_peers.max(1),
        bm_block_size: 4096,
        al_extents: 67,
    };
    let dev = Arc::new(MemDevice::new(Geometry::meta_size_for(&params)));
    create(
        dev.as_ref(),
        &CreateOptions {
            placement: Placement::External,
            params,
            node_id: NodeId::new(node).unwrap(),
        },
    )
    .unwrap();
    let mem = Arc::new(MemStore::new(size));
    let d = reattach(&dev, &mem);
    if up_to_date {
        d.declare_up_to_date(UUID).unwrap();
    }
    (d, mem, dev)
}

/// Attaches existing data and metadata again (recovering the metadata if it is unclean).
pub fn reattach(dev: &Arc<MemDevice>, mem: &Arc<MemStore>) -> LocalDisk {
    let (meta, report) = Metadata::open(Box::new(Arc::clone(dev)), OpenOptions::default()).unwrap();
    LocalDisk::from_parts(Store::memory(Arc::clone(mem)), meta, report).unwrap()
}

pub fn quick_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        ack: Duration::from_secs(2),
        ping_interval: Duration::from_millis(500),
        ping_timeout: Duration::from_secs(1),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        read: Duration::from_secs(2),
    }
}

/// Builds the configuration of node `i` of a full mesh over `addrs`.
pub fn config(i: usize, addrs: &[SocketAddr], protocol: Protocol, diskless: &[usize]) -> ResourceConfig {
    let mut cfg = ResourceConfig::new("r0", i as u8, addrs[i], SECRET);
    cfg.timeouts = quick_timeouts();
    cfg.peers = addrs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(j, a)| PeerConfig {
            node_id: j as u8,
            address: *a,
            protocol,
            diskless: diskless.contains(&j),
        })
        .collect();
    cfg
}

/// Starts `n` nodes (those in `diskless` without a disk) and waits until all are connected.
pub async fn cluster(n: usize, size: u64, protocol: Protocol, diskless: &[usize]) -> Vec<Node> {
    cluster_with(n, size, protocol, diskless, |_, _| {}).await
}

pub async fn cluster_with(
    n: usize,
    size: u64,
    protocol: Protocol,
    diskless: &[usize],
    tweak: impl Fn(usize, &mut ResourceConfig),
) -> Vec<Node> {
    init_logging();
    let addrs = free_ports(n);
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut cfg = config(i, &addrs, protocol, diskless);
        tweak(i, &mut cfg);
        let (d, store, meta) = if diskless.contains(&i) {
            (None, None, None)
        } else {
            let (d, s, m) = disk_with_meta(size, n - 1, i as u8, true);
            (Some(d), Some(s), Some(m))
        };
        let res = Resource::start(cfg.clone(), d).await.unwrap();
        nodes.push(Node {
            id: i as u8,
            res,
            store,
            addr: addrs[i],
            meta,
            cfg,
        });
    }
    for node in &nodes {
        wait_connected(node, n - 1).await;
    }
    nodes
}

/// Waits until `node` has `peers` peers Connected and Established.
pub async fn wait_connected(node: &Node, peers: usize) {
    let r = node
        .res
        .wait_for(Duration::from_secs(30), |s| {
            s.peers
                .iter()
                .filter(|p| {
                    p.connection == ConnectionState::Connected
                        && p.replication == ReplicationState::Established
                })
                .count()
                == peers
        })
        .await;
    if let Err(s) = r {
        panic!("node {} did not connect to {peers} peers:\n{s}", node.id);
    }
}

/// A deterministic 4 KiB block for write number `i`.
pub fn block(i: u64) -> bytes::Bytes {
    let mut v = vec![0u8; 4096];
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    bytes::Bytes::from(v)
}

pub fn checksum(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

pub async fn write_blocks(res: &Resource, blocks: impl IntoIterator<Item = u64>) {
    for i in blocks {
        res.write(i * 4096, block(i), WriteFlags::default())
            .await
            .unwrap();
    }
}

/// Waits until `node` sees `peer` Established with an UpToDate disk, and is UpToDate itself.
pub async fn in_sync(node: &Node, peer: u8) {
    let r = node
        .res
        .wait_for(Duration::from_secs(60), |s| {
            s.disk == DiskState::UpToDate
                && s.peer(peer).is_some_and(|p| {
                    p.connection == ConnectionState::Connected
                        && p.replication == ReplicationState::Established
                        && p.disk == DiskState::UpToDate
                        && p.out_of_sync == 0
                })
        })
        .await;
    if let Err(s) = r {
        panic!("node {} never got in sync with node {peer}:\n{s}", node.id);
    }
}

/// The next `ResyncFinished` event about `peer`: (bytes moved, source?).
pub async fn finished(events: &mut Receiver<Event>, peer: u8) -> (u64, bool) {
    loop {
        match tokio::time::timeout(
            Duration::from_secs(
                std::env::var("REPLBD_TEST_WAIT")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(60),
            ),
            events.recv(),
        )
        .await
        {
            Ok(Ok(Event::ResyncFinished {
                peer: p,
                bytes_moved,
                source,
                ..
            })) if p == peer => return (bytes_moved, source),
            Ok(Ok(_)) => {}
            other => panic!("no resync-finished event about node {peer}: {other:?}"),
        }
    }
}

pub fn same_data(nodes: &[&Node]) {
    let sums: Vec<u32> = nodes
        .iter()
        .map(|n| checksum(&n.store.as_ref().unwrap().content()))
        .collect();
    assert!(sums.iter().all(|s| *s == sums[0]), "replicas differ: {sums:x?}");
}

/// Bytes every source moved to `peer`, from the `ResyncFinished` events already in `events` (call
/// once `peer` is in sync). With three or more nodes a returning node may be served by a
/// Secondary that tracked what it missed (peer acks) rather than by the Primary; what counts is
/// the total it received.
pub fn moved_to(events: &mut [Receiver<Event>], peer: u8) -> u64 {
    let mut total = 0;
    for rx in events {
        while let Ok(e) = rx.try_recv() {
            if let Event::ResyncFinished {
                peer: p,
                source: true,
                bytes_moved,
                ..
            } = e
                && p == peer
            {
                total += bytes_moved;
            }
        }
    }
    total
}

/// Cuts node `a` off from every node in `others` (or heals it), on both sides.
pub fn partition(nodes: &[Node], a: usize, others: &[usize], on: bool) {
    for &b in others {
        nodes[a].res.partition(b as u8, on);
        nodes[b].res.partition(a as u8, on);
    }
}

/// Takes every node down.
pub async fn down_all(nodes: &[Node]) {
    for n in nodes {
        n.res.down().await.unwrap();
    }
}

/// Two nodes fencing each other with `policy` and the `fence-peer` command `handler`; node 0 is
/// Primary and has just lost node 1 to a partition. Returns the nodes and node 0's events from
/// before the partition.
pub async fn primary_cut_off_with_fencing(
    policy: replbd_quorum::FencingPolicy,
    handler: &str,
) -> (Vec<Node>, Receiver<Event>) {
    let nodes = cluster_with(2, 16 << 20, Protocol::C, &[], |_, cfg| {
        cfg.fencing.insert(1 - cfg.node_id, policy);
        cfg.fence_peer = Some(handler.to_owned());
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    let events = p.events();
    partition(&nodes, 0, &[1], true);
    p.wait_for(Duration::from_secs(30), |s| {
        s.peer(1).unwrap().connection != ConnectionState::Connected
    })
    .await
    .unwrap();
    (nodes, events)
}
