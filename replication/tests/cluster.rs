//! The engine over real loopback TCP: replication, protocols, ordering, flush durability, diskless
//! access, exact out-of-sync accounting and 32 peers.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use replbd_quorum::{ConnectionState, Protocol};
use replbd_replication::engine::ReadBalancing;
use replbd_replication::{BlockVolume, WriteFlags};
use support::{block, checksum, cluster, cluster_with};

const MIB: u64 = 1 << 20;

async fn write_blocks(res: &replbd_replication::Resource, blocks: impl IntoIterator<Item = u64>) {
    for i in blocks {
        res.write(i * 4096, block(i), WriteFlags::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_replicate_to_every_peer_and_reads_see_them() {
    let nodes = cluster(3, 64 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    write_blocks(p, (0..512).map(|i| i * 7 % 16384)).await;
    p.write_zeroes(8 * MIB, MIB, WriteFlags::default()).await.unwrap();
    p.discard(20 * MIB, 4 * MIB).await.unwrap();
    p.flush().await.unwrap();
    assert!(p.read(7 * 4096, 4096).await.unwrap() == block(7));
    let sums: Vec<u32> = nodes
        .iter()
        .map(|n| checksum(&n.store.as_ref().unwrap().content()))
        .collect();
    assert!(sums.iter().all(|s| *s == sums[0]), "replicas differ: {sums:x?}");
    // Secondaries refuse application I/O.
    let err = nodes[1]
        .res
        .write(0, block(0), WriteFlags::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not Primary"), "{err}");
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_peer_slot_holds_exactly_the_bytes_it_missed() {
    let nodes = cluster(3, 64 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    write_blocks(p, 0..256).await;
    // Quiesce: every barrier acknowledged, nothing in flight.
    p.flush().await.unwrap();
    for peer in [1u8, 2] {
        assert_eq!(p.status().peer(peer).unwrap().out_of_sync, 0);
    }
    p.disconnect(Some(2)).unwrap();
    p.wait_for(Duration::from_secs(10), |s| {
        s.peer(2).unwrap().connection == ConnectionState::StandAlone
    })
    .await
    .unwrap();
    // 300 distinct blocks (some rewritten twice), plus a 1 MiB zeroing that overlaps 0 of them.
    let written: Vec<u64> = (1000..1300).collect();
    write_blocks(p, written.iter().copied()).await;
    write_blocks(p, (1000..1100).collect::<Vec<_>>()).await;
    p.write_zeroes(40 * MIB, MIB, WriteFlags::default())
        .await
        .unwrap();
    p.flush().await.unwrap();
    let st = p.status();
    assert_eq!(
        st.peer(2).unwrap().out_of_sync,
        300 * 4096 + MIB,
        "peer 2 missed exactly these bytes"
    );
    assert_eq!(st.peer(1).unwrap().out_of_sync, 0, "peer 1 missed nothing");
    // Writes kept going: peer 1 has them.
    assert!(nodes[1].store.as_ref().unwrap().content()[1299 * 4096..1300 * 4096] == block(1299)[..]);
    // Peer acknowledgements told node 1 that node 2 missed these writes. Node 1 still reaches
    // node 2, so it brings node 2 up to date itself, as DRBD 9 does between secondaries.
    nodes[1]
        .res
        .wait_for(Duration::from_secs(20), |s| {
            let peer = s.peer(2).unwrap();
            peer.replication == replbd_quorum::ReplicationState::Established && peer.out_of_sync == 0
        })
        .await
        .unwrap();
    assert!(
        nodes[1].store.as_ref().unwrap().content() == nodes[2].store.as_ref().unwrap().content(),
        "node 2 caught up through node 1"
    );
    // The Primary still tracks what node 2 missed from it: its slot is cleared by its own resync.
    assert_eq!(p.status().peer(2).unwrap().out_of_sync, 300 * 4096 + MIB);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_reconnects_by_itself_and_catches_up() {
    let nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    p.cut(1);
    // Writes during the outage succeed; the connection comes back by itself and the peer resyncs.
    write_blocks(p, 0..64).await;
    p.wait_for(Duration::from_secs(20), |s| {
        let peer = s.peer(1).unwrap();
        peer.connection == ConnectionState::Connected
            && peer.replication == replbd_quorum::ReplicationState::Established
            && peer.out_of_sync == 0
    })
    .await
    .unwrap();
    p.flush().await.unwrap();
    let (a, b) = (
        nodes[0].store.as_ref().unwrap().content(),
        nodes[1].store.as_ref().unwrap().content(),
    );
    assert!(a == b, "the peer caught up with the writes it missed");
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_c_waits_for_the_peer_disk_while_a_and_b_do_not() {
    for protocol in [Protocol::A, Protocol::B, Protocol::C] {
        let nodes = cluster(2, 16 * MIB, protocol, &[]).await;
        let p = &nodes[0].res;
        p.primary(false).await.unwrap();
        let peer_store = nodes[1].store.clone().unwrap();
        peer_store.pause_writes(true);
        let res = p.clone();
        let write = tokio::spawn(async move { res.write(0, block(1), WriteFlags::default()).await });
        let early = tokio::time::timeout(Duration::from_millis(500), async {
            while !write.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok();
        match protocol {
            Protocol::C => assert!(
                !early,
                "a protocol C write completed before the peer's disk write"
            ),
            _ => assert!(early, "a protocol {protocol} write waited for the peer's disk"),
        }
        assert_eq!(
            peer_store.write_log().len(),
            0,
            "the peer's disk has not written yet"
        );
        peer_store.pause_writes(false);
        tokio::time::timeout(Duration::from_secs(5), async {
            while !write.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        write.await.unwrap().unwrap();
        p.flush().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while peer_store.write_log().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert!(
            peer_store.content()[..4096] == block(1)[..],
            "protocol {protocol}: the peer has the data"
        );
        for n in &nodes {
            n.res.down().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_issued_after_another_completed_is_never_applied_before_it() {
    // Protocol A: both writes complete at once on the Primary, so only barriers keep them ordered.
    let nodes = cluster(2, 16 * MIB, Protocol::A, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    let peer_store = nodes[1].store.clone().unwrap();
    peer_store.pause_writes(true);
    for i in 0..20u64 {
        p.write(i * 4096, block(i), WriteFlags::default()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    peer_store.pause_writes(false);
    p.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while peer_store.write_log().len() < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let log = peer_store.write_log();
    let expected: Vec<u64> = (0..20).map(|i| i * 4096).collect();
    assert_eq!(log, expected, "dependent writes applied out of order on the peer");
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flush_every_earlier_write_survives_power_loss_on_every_node() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    write_blocks(p, 0..200).await;
    p.flush().await.unwrap();
    // Written after the flush: may be lost.
    write_blocks(p, 200..210).await;
    for n in &nodes {
        n.store.as_ref().unwrap().crash();
    }
    for n in &nodes {
        let s = n.store.as_ref().unwrap();
        for i in 0..200u64 {
            assert!(
                s.content()[(i * 4096) as usize..((i + 1) * 4096) as usize] == block(i)[..],
                "node {} lost block {i}",
                n.id
            );
        }
    }
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_flush_power_loss_does_lose_writes() {
    // The control experiment: the memory store really loses unflushed writes, so the flush test
    // above can fail. Peers flush at every barrier; the Primary's own disk only on a flush request.
    let nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    let local = nodes[0].store.clone().unwrap();
    write_blocks(p, 0..10).await;
    local.crash();
    let lost = (0..10u64)
        .filter(|&i| local.content()[(i * 4096) as usize..((i + 1) * 4096) as usize] != block(i)[..])
        .count();
    assert_eq!(lost, 10, "unflushed writes survived a crash of the memory store");
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fua_writes_are_durable_on_protocol_c_peers_at_completion() {
    let nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    p.write(4096, block(5), WriteFlags { fua: true }).await.unwrap();
    for n in &nodes {
        assert!(
            n.store.as_ref().unwrap().durable()[4096..8192] == block(5)[..],
            "node {}",
            n.id
        );
    }
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diskless_primary_writes_to_every_disk_and_reads_from_peers() {
    for policy in [
        ReadBalancing::PreferLocal,
        ReadBalancing::PreferRemote,
        ReadBalancing::RoundRobin,
        ReadBalancing::LeastPending,
    ] {
        let nodes = cluster_with(3, 16 * MIB, Protocol::C, &[2], |i, cfg| {
            if i == 2 {
                cfg.read_balancing = policy;
            }
        })
        .await;
        let client = &nodes[2].res;
        client.primary(false).await.unwrap();
        write_blocks(client, 0..64).await;
        client.flush().await.unwrap();
        for n in &nodes[..2] {
            assert!(n.store.as_ref().unwrap().content()[63 * 4096..64 * 4096] == block(63)[..]);
        }
        for i in 0..64u64 {
            assert!(
                client.read(i * 4096, 4096).await.unwrap() == block(i),
                "{policy:?} block {i}"
            );
        }
        // One copy gone: reads are served by the other.
        nodes[0].res.down().await.unwrap();
        for i in 0..8u64 {
            assert!(
                client.read(i * 4096, 4096).await.unwrap() == block(i),
                "block {i} after losing a copy"
            );
        }
        nodes[1].res.down().await.unwrap();
        nodes[2].res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_peers_hold_identical_data() {
    let nodes = cluster(33, 16 * MIB, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    // 16 MiB: 4096 blocks of 4 KiB, 16 writers at a time.
    let mut tasks = Vec::new();
    for w in 0..16u64 {
        let res = p.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..4096).step_by(16) {
                res.write(i * 4096, block(i), WriteFlags::default())
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // On a loaded 2-core machine a connection may time out under 33 nodes' traffic; the peer is
    // then resynced. Identical data is required once every peer is back in sync.
    p.wait_for(Duration::from_secs(60), |s| {
        s.peers
            .iter()
            .all(|x| x.replication == replbd_quorum::ReplicationState::Established && x.out_of_sync == 0)
    })
    .await
    .unwrap();
    p.flush().await.unwrap();
    let sums: Vec<u32> = nodes
        .iter()
        .map(|n| checksum(&n.store.as_ref().unwrap().durable()))
        .collect();
    assert!(sums.iter().all(|s| *s == sums[0]), "replicas differ: {sums:x?}");
    assert!(p.status().peers.iter().all(|s| s.out_of_sync == 0));
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_barrier_of_a_last_write_goes_out_without_another_write() {
    // A write stays registered on its link until the peer acknowledges its barrier, and the
    // watchdog fails a link whose oldest write waits longer than the ack timeout. The barrier of
    // the last write before a pause is sent lazily, by the barrier timer: without it this link
    // would fail after 300 ms.
    let nodes = cluster_with(2, 16 * MIB, Protocol::C, &[], |_, cfg| {
        cfg.timeouts.ack = Duration::from_millis(300);
    })
    .await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    let mut events = p.events();
    for round in 0..3u64 {
        write_blocks(p, [round]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, replbd_replication::engine::Event::Connection { .. }),
            "the connection changed while idle after a write: {e}"
        );
    }
    assert_eq!(p.status().peer(1).unwrap().connection, ConnectionState::Connected);
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}
