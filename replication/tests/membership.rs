//! Adding and removing peers of a running resource (`Resource::adjust`): the Primary's
//! writes go on throughout, a new peer is brought UpToDate, a removed one is forgotten (its bitmap
//! slot freed), a changed one reconnects and keeps its bitmap.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use replbd_bitmap::NodeId;
use replbd_quorum::{DiskState, Protocol, QuorumPolicy, Role};
use replbd_replication::{BlockVolume, PeerChanges, Resource, ResourceConfig, WriteFlags};
use support::*;

const SIZE: u64 = 16 << 20;

/// Node `i`'s configuration with the peers `members` (node ids, indexes into `addrs`); quorum
/// `majority` from three members on, as a cluster manager sets it.
fn config_of(i: usize, addrs: &[SocketAddr], members: &[usize], protocol: Protocol) -> ResourceConfig {
    let mut cfg = config(i, addrs, protocol, &[]);
    cfg.peers.retain(|p| members.contains(&(p.node_id as usize)));
    if members.len() >= 3 {
        cfg.quorum.quorum = QuorumPolicy::Majority;
    }
    cfg
}

/// Writes blocks 1000.. on `res` until `stop`, one at a time; every write must succeed.
fn keep_writing(res: Resource, stop: Arc<AtomicBool>) -> (tokio::task::JoinHandle<u64>, Arc<AtomicU64>) {
    let done = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&done);
    let task = tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let block = 1000 + i % 2000;
            res.write(block * 4096, support::block(i), WriteFlags::default())
                .await
                .unwrap_or_else(|e| panic!("write {i} failed while peers changed: {e}"));
            i += 1;
            counter.store(i, Ordering::SeqCst);
        }
        i
    });
    (task, done)
}

async fn wait_writes(done: &AtomicU64, at_least: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "the writer stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_join_and_leave_a_running_primary_without_disturbing_its_writes() {
    init_logging();
    let addrs = free_ports(3);
    // Nodes 0 and 1 run together; each disk has room for two peers.
    let mut nodes = Vec::new();
    for i in 0..2 {
        let cfg = config_of(i, &addrs, &[0, 1], Protocol::C);
        let (d, store, meta) = disk_with_meta(SIZE, 2, i as u8, true);
        nodes.push(Node {
            id: i as u8,
            res: Resource::start(cfg.clone(), Some(d)).await.unwrap(),
            store: Some(store),
            addr: addrs[i],
            meta: Some(meta),
            cfg,
        });
    }
    wait_connected(&nodes[0], 1).await;
    nodes[0].res.primary(false).await.unwrap();
    write_blocks(&nodes[0].res, 0..256).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (writer, done) = keep_writing(nodes[0].res.clone(), Arc::clone(&stop));
    wait_writes(&done, 20).await;

    // Node 2 joins with a new, empty disk: the two running nodes add it.
    let cfg2 = config_of(2, &addrs, &[0, 1, 2], Protocol::C);
    let (d2, store2, meta2) = disk_with_meta(SIZE, 2, 2, false);
    nodes.push(Node {
        id: 2,
        res: Resource::start(cfg2.clone(), Some(d2)).await.unwrap(),
        store: Some(store2),
        addr: addrs[2],
        meta: Some(meta2),
        cfg: cfg2,
    });
    for i in [0, 1] {
        let cfg = config_of(i, &addrs, &[0, 1, 2], Protocol::C);
        let changes = nodes[i].res.adjust(&cfg).await.unwrap();
        assert_eq!(
            changes,
            PeerChanges {
                added: vec![2],
                quorum: true,
                ..Default::default()
            }
        );
        nodes[i].cfg = cfg;
    }
    in_sync(&nodes[2], 0).await;
    in_sync(&nodes[0], 2).await;
    let before = done.load(Ordering::SeqCst);
    wait_writes(&done, before + 20).await;
    let s = nodes[0].res.status();
    assert_eq!(s.role, Role::Primary);
    assert!(s.quorum, "three of three voters present, yet no quorum:\n{s}");

    // Node 1 leaves: the others remove it, then it goes down.
    for i in [0, 2] {
        let cfg = config_of(i, &addrs, &[0, 2], Protocol::C);
        let changes = nodes[i].res.adjust(&cfg).await.unwrap();
        assert_eq!(
            changes,
            PeerChanges {
                removed: vec![1],
                quorum: true,
                ..Default::default()
            }
        );
        let s = nodes[i].res.status();
        assert!(s.peer(1).is_none(), "node {i} still lists node 1:\n{s}");
        let gi = nodes[i].res.local_disk().unwrap().meta.generation_ids();
        assert_eq!(
            gi.slot_of(NodeId::new(1).unwrap()),
            None,
            "node {i} kept node 1's slot"
        );
        nodes[i].cfg = cfg;
    }
    nodes[1].res.down().await.unwrap();
    let before = done.load(Ordering::SeqCst);
    wait_writes(&done, before + 20).await;
    let s = nodes[0].res.status();
    assert!(s.quorum, "quorum off with two members, yet no quorum:\n{s}");

    // The freed slot takes a new member: node 1 again, a new disk, under the same id.
    let cfg1 = config_of(1, &addrs, &[0, 1, 2], Protocol::C);
    let (d1, store1, meta1) = disk_with_meta(SIZE, 2, 1, false);
    nodes[1] = Node {
        id: 1,
        res: Resource::start(cfg1.clone(), Some(d1)).await.unwrap(),
        store: Some(store1),
        addr: addrs[1],
        meta: Some(meta1),
        cfg: cfg1,
    };
    for i in [0, 2] {
        let cfg = config_of(i, &addrs, &[0, 1, 2], Protocol::C);
        nodes[i].res.adjust(&cfg).await.unwrap();
    }
    in_sync(&nodes[1], 0).await;

    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    assert!(writes > 60, "only {writes} writes while peers changed");
    for i in [1, 2] {
        in_sync(&nodes[0], i as u8).await;
    }
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_protocol_changes_reconnects_and_keeps_its_bitmap() {
    let nodes = cluster(2, SIZE, Protocol::C, &[]).await;
    nodes[0].res.primary(false).await.unwrap();
    let slot_before = nodes[0]
        .res
        .local_disk()
        .unwrap()
        .meta
        .generation_ids()
        .slot_of(NodeId::new(1).unwrap());
    let addrs = [nodes[0].addr, nodes[1].addr];
    for i in [1, 0] {
        let cfg = config_of(i, &addrs, &[0, 1], Protocol::A);
        let changes = nodes[i].res.adjust(&cfg).await.unwrap();
        assert_eq!(
            changes,
            PeerChanges {
                changed: vec![1 - i as u8],
                ..Default::default()
            }
        );
    }
    write_blocks(&nodes[0].res, 0..64).await;
    in_sync(&nodes[0], 1).await;
    let gi = nodes[0].res.local_disk().unwrap().meta.generation_ids();
    assert_eq!(gi.slot_of(NodeId::new(1).unwrap()), slot_before);
    same_data(&[&nodes[0], &nodes[1]]);
    down_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_adjustment_is_refused_and_changes_nothing() {
    let nodes = cluster(2, SIZE, Protocol::C, &[]).await;
    let addrs = [nodes[0].addr, nodes[1].addr];
    let mut other = config_of(0, &addrs, &[0, 1], Protocol::C);
    other.name = "r9".into();
    let e = nodes[0].res.adjust(&other).await.unwrap_err();
    assert!(e.contains("r9"), "{e}");
    let mut twice = config_of(0, &addrs, &[0, 1], Protocol::C);
    twice.peers.push(twice.peers[0].clone());
    let e = nodes[0].res.adjust(&twice).await.unwrap_err();
    assert!(e.contains("repeated"), "{e}");
    let s = nodes[0].res.status();
    assert_eq!(s.peers.len(), 1);
    assert_eq!(s.disk, DiskState::UpToDate);
    wait_connected(&nodes[0], 1).await;
    down_all(&nodes).await;
}

/// Found by the VM scenario `node-adjust`: node 2, removed by the Primary first, caught up to the
/// Primary's new generation through node 1 (a Secondary still tracking it), then node 1 removed it
/// too and the Primary wrote on in that generation, tracked for nobody. Re-added, node 2 reported
/// the current generation identifier; deciding by the identifiers alone ("equal current UUIDs")
/// left it without the writes made after node 1 let it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_readded_with_the_current_generation_still_gets_every_write() {
    let nodes = cluster(3, SIZE, Protocol::C, &[]).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    nodes[0].res.primary(false).await.unwrap();
    write_blocks(&nodes[0].res, 0..16).await;

    // The Primary lets node 2 go; node 1 keeps it and brings it the Primary's next writes.
    nodes[0]
        .res
        .adjust(&config_of(0, &addrs, &[0, 1], Protocol::C))
        .await
        .unwrap();
    write_blocks(&nodes[0].res, 16..48).await;
    in_sync(&nodes[2], 1).await;
    let current = |n: &Node| n.res.local_disk().unwrap().meta.generation_ids().current & !1;
    assert_eq!(
        current(&nodes[2]),
        current(&nodes[0]),
        "node 2 did not reach the Primary's generation"
    );

    // Node 1 lets it go too; the Primary writes on, in the same generation.
    nodes[1]
        .res
        .adjust(&config_of(1, &addrs, &[0, 1], Protocol::C))
        .await
        .unwrap();
    write_blocks(&nodes[0].res, 100..164).await;

    // Both take it back: it must end with every write.
    for i in [0, 1] {
        nodes[i]
            .res
            .adjust(&config_of(i, &addrs, &[0, 1, 2], Protocol::C))
            .await
            .unwrap();
    }
    in_sync(&nodes[0], 2).await;
    in_sync(&nodes[2], 0).await;
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// A diskless peer (a tiebreaker) that comes back with a disk is a new replica: its disk gets a
/// full sync even when its metadata claims the generation the cluster writes in (here an empty
/// disk declared UpToDate at the Primary's current generation, the worst case: the identifiers
/// alone would decide "no resync").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiebreaker_turned_replica_gets_a_full_sync() {
    let mut nodes = cluster(3, SIZE, Protocol::C, &[2]).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    nodes[0].res.primary(false).await.unwrap();
    write_blocks(&nodes[0].res, 0..64).await;

    nodes[2].res.down().await.unwrap();
    let cfg2 = config(2, &addrs, Protocol::C, &[]);
    let current = nodes[0].res.local_disk().unwrap().meta.generation_ids().current & !1;
    let (d2, store2, _) = disk_with_meta(SIZE, 2, 2, false);
    d2.declare_up_to_date(current).unwrap();
    nodes[2].res = Resource::start(cfg2.clone(), Some(d2)).await.unwrap();
    nodes[2].store = Some(store2);
    for i in [0, 1] {
        let changes = nodes[i]
            .res
            .adjust(&config(i, &addrs, Protocol::C, &[]))
            .await
            .unwrap();
        assert_eq!(changes.changed, vec![2]);
    }
    in_sync(&nodes[0], 2).await;
    in_sync(&nodes[2], 0).await;
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}
