//! ahead-behind (DRBD suite): a protocol-A peer whose disk cannot keep up congests its link; with
//! `on-congestion pull-ahead` the Primary goes Ahead (writes marked, not sent), the peer Behind and
//! Outdated; once the link drains the Primary becomes SyncSource and the peer catches up, then both
//! are Established with identical data. A crash of the Primary while Ahead loses nothing either.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use replbd_quorum::options::OnCongestion;
use replbd_quorum::{DiskState, Protocol, ReplicationState};
use replbd_replication::engine::{Event, ResourceConfig};
use replbd_replication::{BlockVolume, WriteFlags};
use support::{Node, block, cluster_with, in_sync, same_data, write_blocks};
use tokio::sync::broadcast::Receiver;

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(30);

/// Two protocol-A nodes, node 0 pulling ahead of node 1 once 64 KiB are in flight.
async fn congestible_pair() -> Vec<Node> {
    cluster_with(2, 16 * MIB, Protocol::A, &[], |i, cfg: &mut ResourceConfig| {
        cfg.on_congestion.insert(1 - i as u8, OnCongestion::PullAhead);
        cfg.congestion_fill = 64 << 10;
        // The slow disk holds writes far longer than the tests' usual ack timeout.
        cfg.timeouts.ack = Duration::from_secs(60);
    })
    .await
}

/// Makes node 1's disk slow: every write and flush takes 10 ms.
fn slow_disk(node: &Node, slow: bool) {
    node.res.local_disk().unwrap().store.faults().delay = if slow {
        Duration::from_millis(10)
    } else {
        Duration::ZERO
    };
}

/// The events received so far.
fn drain(rx: &mut Receiver<Event>) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// The replication states `peer` went through, in order.
fn replication_states(events: &[Event], peer: u8) -> Vec<ReplicationState> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Replication { peer: p, state } if *p == peer => Some(*state),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_congested_protocol_a_peer_falls_behind_then_resyncs_and_is_established_again() {
    let nodes = congestible_pair().await;
    let (p, s) = (&nodes[0].res, &nodes[1].res);
    let mut p_events = p.events();
    let mut s_events = s.events();
    p.primary(false).await.unwrap();
    slow_disk(&nodes[1], true);
    // Far more than 64 KiB: the link congests, and the writes go on at local speed.
    write_blocks(p, 0..512).await;
    s.wait_for(WAIT, |st| {
        st.peer(0).unwrap().replication == ReplicationState::Behind && st.disk == DiskState::Outdated
    })
    .await
    .unwrap_or_else(|st| panic!("node 1 never fell Behind: {st}"));
    // Behind: not a copy to promote or read from.
    assert_eq!(p.status().peer(1).unwrap().replication, ReplicationState::Ahead);
    write_blocks(p, 512..1024).await;
    p.flush().await.unwrap();
    slow_disk(&nodes[1], false);
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[0], 1).await;
    same_data(&[&nodes[0], &nodes[1]]);
    // Ahead, then a resync (SyncSource), then Established; the peer Behind, then SyncTarget.
    let p_seen = drain(&mut p_events);
    let ps = replication_states(&p_seen, 1);
    let ss = replication_states(&drain(&mut s_events), 0);
    let ahead = ps.iter().position(|&x| x == ReplicationState::Ahead).unwrap();
    let source = ps
        .iter()
        .position(|&x| x == ReplicationState::SyncSource)
        .unwrap();
    assert!(ahead < source, "primary states: {ps:?}");
    assert_eq!(
        ps.last(),
        Some(&ReplicationState::Established),
        "primary states: {ps:?}"
    );
    let behind = ss.iter().position(|&x| x == ReplicationState::Behind).unwrap();
    let target = ss
        .iter()
        .position(|&x| x == ReplicationState::SyncTarget)
        .unwrap();
    assert!(behind < target, "secondary states: {ss:?}");
    // Only what was marked moved: whole blocks, at least one, and not the 15 (at least) that were
    // in flight as data when the 64 KiB fill was reached.
    let moved: u64 = p_seen
        .iter()
        .filter_map(|e| match e {
            Event::ResyncFinished {
                peer: 1,
                source: true,
                bytes_moved,
                ..
            } => Some(*bytes_moved),
            _ => None,
        })
        .sum();
    assert!(
        moved > 0 && moved <= (1024 - 15) * 4096 && moved.is_multiple_of(4096),
        "moved {moved} bytes"
    );
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_crash_while_ahead_loses_nothing_and_the_outdated_peer_cannot_be_promoted() {
    let mut nodes = congestible_pair().await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..16).await;
    p.flush().await.unwrap();
    slow_disk(&nodes[1], true);
    write_blocks(&p, 16..512).await;
    nodes[1]
        .res
        .wait_for(WAIT, |st| st.disk == DiskState::Outdated)
        .await
        .unwrap_or_else(|st| panic!("node 1 never fell Behind: {st}"));
    write_blocks(&p, 512..640).await;
    p.flush().await.unwrap();
    p.halt().await;
    slow_disk(&nodes[1], false);
    // Alone and Outdated: refused, as in DRBD (only `--force` would take the old data).
    nodes[1]
        .res
        .wait_for(WAIT, |st| {
            st.peer(0).unwrap().replication == ReplicationState::Off
        })
        .await
        .unwrap();
    assert_eq!(nodes[1].res.status().disk, DiskState::Outdated);
    assert!(
        nodes[1].res.primary(false).await.is_err(),
        "an Outdated node was promoted"
    );
    // The crashed Primary returns: its bitmap for node 1 names node 1's generation, so node 1
    // resyncs exactly the marked blocks from it.
    nodes[0].restart().await;
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[0], 1).await;
    same_data(&[&nodes[0], &nodes[1]]);
    let content = nodes[1].store.as_ref().unwrap().content();
    for i in [0u64, 100, 511, 600, 639] {
        let at = (i * 4096) as usize;
        assert!(
            content[at..at + 4096] == block(i)[..],
            "block {i} missing on node 1"
        );
    }
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_congestion_disconnect_drops_the_congested_peer_and_it_resyncs_on_return() {
    let nodes = cluster_with(2, 16 * MIB, Protocol::A, &[], |i, cfg: &mut ResourceConfig| {
        cfg.on_congestion.insert(1 - i as u8, OnCongestion::Disconnect);
        cfg.congestion_fill = 64 << 10;
        cfg.timeouts.ack = Duration::from_secs(60);
    })
    .await;
    let p = nodes[0].res.clone();
    let mut events = p.events();
    p.primary(false).await.unwrap();
    slow_disk(&nodes[1], true);
    write_blocks(&p, 0..256).await;
    slow_disk(&nodes[1], false);
    p.write(300 * 4096, block(300), WriteFlags::default())
        .await
        .unwrap();
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[0], 1).await;
    same_data(&[&nodes[0], &nodes[1]]);
    let mut congested = false;
    while let Ok(e) = events.try_recv() {
        if let Event::Connection {
            peer: 1,
            reason: Some(r),
            ..
        } = &e
        {
            congested |= r.contains("congestion-fill");
        }
    }
    assert!(congested, "the connection was not dropped for congestion");
    for n in &nodes {
        n.res.down().await.unwrap();
    }
}
