//! Resync, in the spirit of the DRBD test suite: exact byte counts, resync after a Primary crash,
//! heavy writes during resync, checksum resync, interrupted resync, full initial sync.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use replbd_bitmap::NodeId;

use replbd_quorum::{Protocol, ReplicationState};
use replbd_replication::engine::{DigestAlg, Event};
use replbd_replication::{BlockVolume, Resource, WriteFlags};
use support::UUID;
use support::{
    block, cluster, cluster_with, disk_with_meta, finished, in_sync, moved_to, same_data, write_blocks,
};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_node_receives_exactly_the_bytes_it_missed() {
    let mut nodes = cluster(3, 64 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..256).await;
    p.flush().await.unwrap();
    // Node 2 goes down in an orderly way and misses 300 distinct blocks plus a 1 MiB zeroing.
    nodes[2].res.down().await.unwrap();
    write_blocks(&p, 1000..1300).await;
    write_blocks(&p, 1000..1100).await;
    p.write_zeroes(40 * MIB, MIB, WriteFlags::default())
        .await
        .unwrap();
    p.flush().await.unwrap();
    let missed = 300 * 4096 + MIB;
    assert_eq!(p.status().peer(2).unwrap().out_of_sync, missed);
    let mut events = [p.events(), nodes[1].res.events()];
    nodes[2].restart().await;
    in_sync(&nodes[0], 2).await;
    in_sync(&nodes[2], 0).await;
    // The other secondary also reaches node 2 again, without a second copy of the data.
    in_sync(&nodes[2], 1).await;
    in_sync(&nodes[1], 2).await;
    // Either the Primary or node 1 (which learned from peer acks what node 2 missed) served it.
    assert_eq!(
        moved_to(&mut events, 2),
        missed,
        "the resyncs moved exactly what node 2 missed"
    );
    p.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

/// A Secondary that goes down right after a promotion may have adopted the Primary's new
/// generation (Y, its old X now in its history) without the Primary hearing it confirm: the
/// Primary's bitmap for it still starts at X, and the Primary moved on to Z. Only the blocks in that
/// bitmap move (rule 4b), not the whole device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_followed_the_primary_unconfirmed_gets_a_bitmap_resync() {
    const Y: u64 = 0x2222_0000_0000_0000;
    const Z: u64 = 0x3333_0000_0000_0000;
    support::init_logging();
    let addrs = support::free_ports(2);
    let (d0, s0, _) = disk_with_meta(16 * MIB, 1, 0, true);
    let meta0 = Arc::clone(d0.metadata());
    let slot = meta0.slot_for(NodeId::new(1).unwrap()).unwrap();
    for i in 0..10 {
        s0.write(i * 4096, block(i), false).await.unwrap();
        meta0.mark_out_of_sync(slot, i * 4096, 4096).unwrap();
    }
    meta0.flush().unwrap();
    meta0
        .update(|gi, _| {
            gi.push_history(Y);
            gi.current = Z;
            gi.peers[slot.index()].bitmap_uuid = UUID;
        })
        .unwrap();
    let (d1, s1, _) = disk_with_meta(16 * MIB, 1, 1, true);
    d1.metadata()
        .update(|gi, _| {
            gi.push_history(UUID);
            gi.current = Y;
        })
        .unwrap();
    let r0 = Resource::start(support::config(0, &addrs, Protocol::C, &[]), Some(d0))
        .await
        .unwrap();
    let mut events = r0.events();
    let r1 = Resource::start(support::config(1, &addrs, Protocol::C, &[]), Some(d1))
        .await
        .unwrap();
    let (moved, source) = finished(&mut events, 1).await;
    assert!(source);
    assert_eq!(moved, 10 * 4096, "only the blocks in the bitmap move");
    r1.wait_for(Duration::from_secs(30), |s| {
        s.disk == replbd_quorum::DiskState::UpToDate
    })
    .await
    .unwrap();
    assert_eq!(s0.content(), s1.content());
    r0.down().await.unwrap();
    r1.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_primary_gets_its_activity_log_resynced_from_the_survivor() {
    let mut nodes = cluster(2, 32 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, (0..2000).map(|i| i * 3 % 8192)).await;
    // Power loss on the Primary: the process stops and its disk loses what it had not flushed.
    p.halt().await;
    nodes[0].store.as_ref().unwrap().crash();
    nodes[0].restart().await;
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[0], 1).await;
    same_data(&[&nodes[0], &nodes[1]]);
    let last = nodes[0].store.as_ref().unwrap().content();
    let i = 1999 * 3;
    assert!(
        last[(i * 4096) as usize..((i + 1) * 4096) as usize] == block(i)[..],
        "the acknowledged write is back"
    );
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_writes_during_resync_finish_with_identical_data() {
    let mut nodes = cluster_with(2, 64 * MIB, Protocol::C, &[], |_, cfg| {
        cfg.resync.max_rate = 16 * MIB; // about two seconds for 32 MiB
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    nodes[1].res.down().await.unwrap();
    write_blocks(&p, 0..8192).await; // 32 MiB out of sync
    nodes[1].restart().await;
    nodes[1]
        .res
        .wait_for(Duration::from_secs(20), |s| {
            s.peer(0)
                .is_some_and(|p| p.replication == ReplicationState::SyncTarget)
        })
        .await
        .unwrap();
    // Overwrite blocks the resync is moving, from 8 writers, while it runs.
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let res = p.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..300u64 {
                let i = (k * 37 + w * 1013) % 8192;
                let mut data = block(i + 100_000).to_vec();
                data[0] = w as u8;
                res.write(i * 4096, bytes::Bytes::from(data), WriteFlags::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no deadlock")
            .unwrap();
    }
    in_sync(&nodes[1], 0).await;
    p.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_resync_moves_only_blocks_that_differ() {
    let mut nodes = cluster_with(2, 16 * MIB, Protocol::C, &[], |_, cfg| {
        cfg.resync.csums = Some(DigestAlg::Sha256);
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..400).await;
    p.flush().await.unwrap();
    nodes[1].res.down().await.unwrap();
    // 400 blocks rewritten while node 1 is away: 300 with the same content, 100 changed.
    write_blocks(&p, 0..300).await;
    for i in 300..400u64 {
        p.write(i * 4096, block(i + 7777), WriteFlags::default())
            .await
            .unwrap();
    }
    assert_eq!(p.status().peer(1).unwrap().out_of_sync, 400 * 4096);
    let mut events = p.events();
    nodes[1].restart().await;
    let (moved, _) = finished(&mut events, 1).await;
    assert_eq!(moved, 100 * 4096, "only the changed blocks moved");
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_resync_resumes_where_it_stopped() {
    let mut nodes = cluster_with(2, 64 * MIB, Protocol::C, &[], |_, cfg| {
        cfg.resync.max_rate = 8 * MIB;
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    nodes[1].res.down().await.unwrap();
    write_blocks(&p, 0..4096).await; // 16 MiB
    nodes[1].restart().await;
    let dirty = 4096 * 4096;
    nodes[1]
        .res
        .wait_for(Duration::from_secs(30), |s| {
            s.peer(0)
                .is_some_and(|p| p.out_of_sync < dirty * 3 / 4 && p.out_of_sync > 0)
        })
        .await
        .unwrap();
    let mut events = p.events();
    p.cut(1);
    // The rest moves after reconnecting; nothing already moved moves again (beyond what was in
    // flight at the cut, at most the fill target).
    let (moved, _) = finished(&mut events, 1).await;
    assert!(
        moved < dirty * 3 / 4 + (4 * MIB),
        "{moved} bytes moved after the interruption"
    );
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_gets_a_full_initial_sync() {
    let mut nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..64).await;
    p.flush().await.unwrap();
    // Node 1 is replaced by a blank disk with fresh metadata.
    nodes[1].res.down().await.unwrap();
    let (d, store, meta) = disk_with_meta(16 * MIB, 1, 1, false);
    nodes[1].store = Some(store);
    nodes[1].meta = Some(meta);
    let mut events = p.events();
    nodes[1].res = Resource::start(nodes[1].cfg.clone(), Some(d)).await.unwrap();
    let (moved, source) = finished(&mut events, 1).await;
    assert!(source);
    assert_eq!(moved, 16 * MIB, "a full sync moves the whole device");
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

/// With a diskless Primary the diskful Secondaries hold the data: one that was away gets what it
/// missed from the other, as a bitmap resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_diskless_primary_a_returning_secondary_resyncs_from_the_other() {
    let mut nodes = cluster(3, 16 * MIB, Protocol::C, &[0]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..20).await;
    p.flush().await.unwrap();
    nodes[2].res.down().await.unwrap();
    write_blocks(&p, 100..110).await;
    p.flush().await.unwrap();
    let mut events = [nodes[1].res.events()];
    nodes[2].restart().await;
    in_sync(&nodes[2], 1).await;
    in_sync(&nodes[1], 2).await;
    let moved = moved_to(&mut events, 2);
    // Node 2 may have gone down before the peer ack of the last write before it (block 19)
    // arrived; it then marks that write for node 1, as DRBD does: one block of the earlier run.
    assert!(
        (10 * 4096..=11 * 4096).contains(&moved),
        "{moved} bytes moved: the 10 blocks node 2 missed (and at most the one unacked block)"
    );
    in_sync(&nodes[2], 1).await;
    same_data(&[&nodes[1], &nodes[2]]);
}

/// The same with a diskless Primary: the returning node resyncs from the other Secondary while the
/// Primary overwrites the blocks being moved. The Secondary source reads only after applying the
/// Primary's writes the target already has, and the target applies later writes after the resync
/// data — so both end with exactly what the Primary wrote last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_resync_from_a_secondary_end_with_the_primarys_data() {
    let mut nodes = cluster_with(3, 32 * MIB, Protocol::C, &[0], |_, cfg| {
        cfg.resync.max_rate = 8 * MIB; // about two seconds for 16 MiB
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    nodes[2].res.down().await.unwrap();
    write_blocks(&p, 0..4096).await; // 16 MiB out of sync for node 2
    nodes[2].restart().await;
    nodes[2]
        .res
        .wait_for(Duration::from_secs(20), |s| {
            s.peer(1)
                .is_some_and(|p| p.replication == ReplicationState::SyncTarget)
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let res = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = std::collections::HashMap::new();
            for k in 0..200u64 {
                let i = (k * 37 + w * 512) % 4096;
                let mut data = block(i + 100_000 * (w + 1)).to_vec();
                data[0] = w as u8;
                data[1] = k as u8;
                let data = bytes::Bytes::from(data);
                res.write(i * 4096, data.clone(), WriteFlags::default())
                    .await
                    .unwrap();
                last.insert(i, data);
            }
            last
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("no deadlock")
                .unwrap(),
        );
    }
    in_sync(&nodes[2], 1).await;
    p.flush().await.unwrap();
    if std::env::var("REPLBD_DIAG").is_ok() {
        let a = nodes[1].store.as_ref().unwrap().content();
        let b = nodes[2].store.as_ref().unwrap().content();
        for i in 0..(a.len() / 4096) {
            let r = i * 4096..(i + 1) * 4096;
            if a[r.clone()] != b[r.clone()] {
                let want: Vec<_> = written.iter().filter_map(|l| l.get(&(i as u64))).collect();
                eprintln!(
                    "DIAG block {i}: node1==last {:?} node2==last {:?} node2 head {:?} node1 head {:?}",
                    want.iter().any(|w| w[..] == a[r.clone()]),
                    want.iter().any(|w| w[..] == b[r.clone()]),
                    &b[r.start..r.start + 2],
                    &a[r.start..r.start + 2]
                );
            }
        }
    }
    same_data(&[&nodes[1], &nodes[2]]);
    // Every block written by exactly one writer holds that writer's last write (blocks two writers
    // raced on are covered by the replicas being identical).
    let content = nodes[2].store.as_ref().unwrap().content();
    for last in &written {
        for (i, data) in last {
            let at = (*i * 4096) as usize;
            if written.iter().filter(|l| l.contains_key(i)).count() == 1 {
                assert_eq!(
                    &content[at..at + 4096],
                    &data[..],
                    "block {i} is not the Primary's last write"
                );
            }
        }
    }
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

/// A node in the middle of its own resync holds no complete copy of any generation: it must not be
/// anybody's sync source. Node 1 is cut off while the Primary writes, so node 2 is a generation
/// ahead of it; node 2 then misses 16 MiB and resyncs them slowly from the Primary. When node 1
/// reaches node 2 in that time, the handshake says "node 1 is target" — and node 1 would take
/// node 2's half-old blocks and its generation. Instead the connection waits until node 2 is
/// UpToDate (found by `replbd-faults`, seed 31: acknowledged writes lost that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistent_node_is_nobodys_sync_source() {
    let mut nodes = cluster_with(3, 32 * MIB, Protocol::C, &[], |_, cfg| {
        cfg.resync.max_rate = 8 * MIB;
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..16).await;
    p.flush().await.unwrap();
    support::partition(&nodes, 1, &[0, 2], true);
    write_blocks(&p, 100..200).await; // node 1 misses these; node 2 moves on with the Primary
    p.flush().await.unwrap();
    nodes[2].res.down().await.unwrap();
    write_blocks(&p, 1000..5096).await; // 16 MiB node 2 misses
    p.flush().await.unwrap();
    nodes[2].restart().await;
    nodes[2]
        .res
        .wait_for(Duration::from_secs(20), |s| {
            s.peer(0)
                .is_some_and(|p| p.replication == ReplicationState::SyncTarget)
        })
        .await
        .unwrap();
    // Node 1 may reach node 2 now, but not the Primary. Node 2 still has seconds of resync ahead
    // (node 1 retries every 50 to 500 ms).
    let left = nodes[2].res.status().peer(0).unwrap().out_of_sync;
    assert!(left > 4 * MIB, "node 2 has only {left} bytes left to resync");
    let mut events = nodes[1].res.events();
    nodes[1].res.partition(2, false);
    let mut refused = None;
    while nodes[2].res.status().disk != replbd_quorum::DiskState::UpToDate {
        while let Ok(e) = events.try_recv() {
            match e {
                Event::Replication { peer: 2, state } => assert!(
                    !matches!(
                        state,
                        ReplicationState::WFBitMapT
                            | ReplicationState::SyncTarget
                            | ReplicationState::PausedSyncT
                    ),
                    "node 1 became the sync target ({state}) of node 2 while node 2 was Inconsistent"
                ),
                Event::Connection {
                    peer: 2,
                    reason: Some(r),
                    ..
                } if r.contains("Inconsistent") => refused = Some(r),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("node 1 never tried to connect to node 2 while it was Inconsistent");
    assert!(
        refused.contains("node 2 would be the sync source, but its disk is Inconsistent"),
        "{refused}"
    );
    // Once node 2 is UpToDate it serves node 1; the Primary's link heals too.
    support::partition(&nodes, 1, &[0], false);
    in_sync(&nodes[1], 2).await;
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[2], 0).await;
    p.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

/// A resync request that its link's death leaves unanswered gives up its place among the
/// Primary's writes. Node 2 resyncs from Secondary node 1 under a diskless Primary; its requests
/// hold their ranges so the Primary's later writes land after the resync data. When the link to
/// node 1 dies with requests in flight, the Primary's writes to those ranges must not wait for
/// answers that never come. They did: the resync and its link kept each other alive, so the
/// requests' locks were never dropped and node 2 never got in sync again (the liveness failure
/// `replbd-faults` found with seed 31).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_resync_link_holds_up_no_write() {
    let mut nodes = cluster_with(3, 32 * MIB, Protocol::C, &[0], |_, cfg| {
        cfg.resync.max_rate = 8 * MIB;
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    nodes[2].res.down().await.unwrap();
    write_blocks(&p, 0..4096).await; // 16 MiB out of sync for node 2
    nodes[2].restart().await;
    nodes[2]
        .res
        .wait_for(Duration::from_secs(20), |s| {
            s.peer(1)
                .is_some_and(|p| p.replication == ReplicationState::SyncTarget)
        })
        .await
        .unwrap();
    // Node 1 stops applying the Primary's writes for a moment: node 2's requests, which name
    // writes node 2 already has, wait there unanswered. Then the link between them dies.
    let writer = {
        let p = p.clone();
        tokio::spawn(async move { write_blocks(&p, (0..4096).rev()).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    nodes[1].store.as_ref().unwrap().pause_writes(true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    support::partition(&nodes, 2, &[1], true);
    nodes[1].store.as_ref().unwrap().pause_writes(false);
    // The Primary goes on overwriting every block, some inside the ranges node 2 asked for.
    tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the Primary's writes completed")
        .unwrap();
    support::partition(&nodes, 2, &[1], false);
    in_sync(&nodes[2], 1).await;
    in_sync(&nodes[1], 2).await;
    let s = nodes[2].res.status();
    assert_eq!(
        s.peer(0).map(|p| p.connection),
        Some(replbd_quorum::ConnectionState::Connected),
        "node 2 lost the Primary:\n{s}"
    );
    p.flush().await.unwrap();
    same_data(&[&nodes[1], &nodes[2]]);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}
