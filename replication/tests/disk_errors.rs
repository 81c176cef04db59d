//! io-errors (DRBD suite): a local write or read error detaches the disk; the resource keeps serving
//! through its peer; nothing acknowledged is lost; the restart after the repair comes back Outdated
//! and resyncs exactly the blocks the disk missed — the failed request and every write while
//! detached — whichever node's disk failed. A failed flush resyncs fully.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use replbd_quorum::{DiskState, Protocol};
use replbd_replication::{BlockVolume, WriteFlags};
use support::{block, cluster, finished, in_sync, same_data, write_blocks};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_detaches_the_disk_and_the_primary_serves_through_its_peer() {
    let mut nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..8).await;
    p.local_disk().unwrap().store.faults().all_writes_fail = true;
    // The local path fails, the peer's succeeds: the write is acknowledged, the disk detached.
    p.write(100 * 4096, block(100), WriteFlags::default())
        .await
        .unwrap();
    assert_eq!(p.status().disk, DiskState::Diskless, "{}", p.status());
    write_blocks(&p, 200..210).await;
    p.flush().await.unwrap();
    // Reads come from the peer, including the block the local disk never got.
    for i in [0u64, 7, 100, 205] {
        assert!(p.read(i * 4096, 4096).await.unwrap() == block(i), "block {i}");
    }
    // The peer sees a Diskless node.
    nodes[1]
        .res
        .wait_for(std::time::Duration::from_secs(10), |s| {
            s.peer(0).unwrap().disk == DiskState::Diskless
        })
        .await
        .unwrap();
    // Restarted on the same (repaired) disk, the node does not claim the old data: it comes back
    // Outdated and resyncs from the peer exactly what it missed: block 100 and blocks 200..210.
    p.secondary().await.unwrap();
    p.local_disk().unwrap().store.faults().all_writes_fail = false;
    p.down().await.unwrap();
    let mut source_events = nodes[1].res.events();
    nodes[0].restart().await;
    assert_eq!(nodes[0].res.status().disk, DiskState::Outdated);
    in_sync(&nodes[0], 1).await;
    assert_eq!(finished(&mut source_events, 0).await, (11 * 4096, true));
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_is_served_by_the_peer_and_detaches_the_disk() {
    let nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..4).await;
    p.local_disk().unwrap().store.faults().read_errors.push(0..4096);
    assert!(p.read(0, 4096).await.unwrap() == block(0));
    assert_eq!(p.status().disk, DiskState::Diskless);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_resyncs_exactly_the_unreadable_block_after_the_restart() {
    let mut nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..8).await;
    p.local_disk()
        .unwrap()
        .store
        .faults()
        .read_errors
        .push(3 * 4096..4 * 4096);
    assert!(p.read(3 * 4096, 4096).await.unwrap() == block(3));
    p.secondary().await.unwrap();
    p.local_disk().unwrap().store.faults().read_errors.clear();
    p.down().await.unwrap();
    let mut source_events = nodes[1].res.events();
    nodes[0].restart().await;
    in_sync(&nodes[0], 1).await;
    assert_eq!(finished(&mut source_events, 0).await, (4096, true));
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_whose_disk_fails_resyncs_exactly_the_writes_it_missed() {
    let mut nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..8).await;
    nodes[1].res.local_disk().unwrap().store.faults().all_writes_fail = true;
    // The Secondary's write fails: it detaches and refuses the rest; the Primary goes on.
    write_blocks(&p, 100..104).await;
    nodes[1]
        .res
        .wait_for(std::time::Duration::from_secs(10), |s| {
            s.disk == DiskState::Diskless
        })
        .await
        .unwrap();
    write_blocks(&p, 200..206).await;
    p.flush().await.unwrap();
    // Repaired and restarted: Outdated, then exactly the 10 blocks it missed.
    nodes[1].res.local_disk().unwrap().store.faults().all_writes_fail = false;
    nodes[1].res.down().await.unwrap();
    let mut source_events = p.events();
    nodes[1].restart().await;
    assert_eq!(nodes[1].res.status().disk, DiskState::Outdated);
    in_sync(&nodes[1], 0).await;
    assert_eq!(finished(&mut source_events, 1).await, (10 * 4096, true));
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_error_resyncs_the_whole_device_after_the_restart() {
    let mut nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..8).await;
    p.local_disk().unwrap().store.faults().flush_fails = true;
    p.flush().await.unwrap();
    assert_eq!(p.status().disk, DiskState::Diskless);
    p.secondary().await.unwrap();
    p.local_disk().unwrap().store.faults().flush_fails = false;
    p.down().await.unwrap();
    let mut source_events = nodes[1].res.events();
    nodes[0].restart().await;
    assert_eq!(nodes[0].res.status().disk, DiskState::Inconsistent);
    in_sync(&nodes[0], 1).await;
    assert_eq!(finished(&mut source_events, 0).await, (16 * MIB, true));
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}
