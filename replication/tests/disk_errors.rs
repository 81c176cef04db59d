//! Disk errors: a local write or read error detaches the disk; the resource keeps serving through
//! its peer; nothing acknowledged is lost; a restart with the detached data resyncs it fully.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use replbd_quorum::{DiskState, Protocol};
use replbd_replication::{BlockVolume, WriteFlags};
use support::{block, cluster, in_sync, same_data, write_blocks};

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
    // Inconsistent and resyncs from the peer.
    p.secondary().await.unwrap();
    p.local_disk().unwrap().store.faults().all_writes_fail = false;
    p.down().await.unwrap();
    nodes[0].restart().await;
    assert_ne!(nodes[0].res.status().disk, DiskState::UpToDate);
    in_sync(&nodes[0], 1).await;
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
