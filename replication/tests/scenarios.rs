//! DRBD-suite scenarios over loopback: switch-primaries, the resync-direction chain, and fencing
//! with every exit code under both fencing policies.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use replbd_quorum::{ConnectionState, DiskState, FencingPolicy, Protocol};
use replbd_replication::engine::Event;
use replbd_replication::{BlockVolume, WriteFlags};
use support::{
    Node, block, cluster, down_all, in_sync, partition, primary_cut_off_with_fencing, same_data, write_blocks,
};
use tokio::sync::broadcast::Receiver;

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(30);

/// Promotes `node` once no connected peer reports Primary (a demotion elsewhere has arrived).
async fn promote(node: &Node) {
    node.res
        .wait_for(WAIT, |s| {
            s.peers.iter().all(|p| p.role != replbd_quorum::Role::Primary)
        })
        .await
        .unwrap();
    // Retried: after losing a Primary, a node settles with its peers before it may be promoted.
    promote_retrying(node).await;
}

/// Promotes `node` as an HA agent would: retried while it is refused; returns the refusals.
async fn promote_retrying(node: &Node) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut refusals = Vec::new();
    loop {
        match node.res.primary(false).await {
            Ok(()) => return refusals,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {} never promoted: {e}",
                    node.id
                );
                refusals.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Resyncs that finished among `events` (either side).
fn resyncs(events: &mut Receiver<Event>) -> Vec<(u8, u64)> {
    std::iter::from_fn(|| events.try_recv().ok())
        .filter_map(|e| match e {
            Event::ResyncFinished {
                peer, bytes_moved, ..
            } => Some((peer, bytes_moved)),
            _ => None,
        })
        .collect()
}

/// switch-primaries: the Primary role moves around three nodes five times, each Primary writing;
/// every switch is a clean demote/promote, so no resync ever runs and all copies stay identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_primaries_keeps_every_copy_identical_without_a_resync() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let mut events: Vec<_> = nodes.iter().map(|n| n.res.events()).collect();
    for round in 0..5u64 {
        let p = &nodes[(round % 3) as usize].res;
        promote(&nodes[(round % 3) as usize]).await;
        write_blocks(p, round * 100..round * 100 + 20).await;
        p.flush().await.unwrap();
        p.secondary().await.unwrap();
    }
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..3u8 {
            if j as usize != i {
                in_sync(n, j).await;
            }
        }
    }
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    for (i, rx) in events.iter_mut().enumerate() {
        assert_eq!(resyncs(rx), [], "node {i} resynced");
    }
    down_all(&nodes).await;
}

/// resync-direction chain: generations move along a chain of nodes while one link is cut; each
/// node resyncs in the right direction, and closing the ring — two nodes that both reached the
/// newest generation through others — moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_ring_after_a_chain_of_generations_needs_no_resync() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    // C (2) is cut off; A (0) writes generation 1, B (1) follows.
    partition(&nodes, 2, &[0, 1], true);
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    write_blocks(&a, 0..10).await;
    a.secondary().await.unwrap();
    // B writes generation 2; A follows.
    let b = nodes[1].res.clone();
    promote(&nodes[1]).await;
    write_blocks(&b, 50..60).await;
    b.secondary().await.unwrap();
    in_sync(&nodes[0], 1).await;
    // C comes back to B only: it resyncs from B, exactly the 20 blocks it missed. (B reports the
    // end of a resync before its own view of C is in sync.)
    let mut b_events = nodes[1].res.events();
    let mut c_events = nodes[2].res.events();
    partition(&nodes, 2, &[1], false);
    in_sync(&nodes[2], 1).await;
    in_sync(&nodes[1], 2).await;
    assert_eq!(resyncs(&mut b_events), [(2, 20 * 4096)]);
    let _ = resyncs(&mut c_events);
    // Closing the ring: A and C hold the same generation already.
    let mut a_events = a.events();
    partition(&nodes, 2, &[0], false);
    in_sync(&nodes[2], 0).await;
    in_sync(&nodes[0], 2).await;
    // A resync's end reaches the target's events just after its in-sync state: give it time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved: u64 = resyncs(&mut a_events)
        .iter()
        .chain(resyncs(&mut c_events).iter())
        .map(|(_, b)| b)
        .sum();
    assert_eq!(moved, 0, "closing the ring moved data");
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// What a `fence-peer` answer must lead to on a Primary that lost its peer.
struct FenceCase {
    exit: i32,
    /// The peer counts as fenced (promotion elsewhere is impossible).
    fenced: bool,
    /// With `resource-and-stonith`, frozen I/O resumes by itself.
    resumes: bool,
    /// This node outdates itself.
    outdates_self: bool,
}

/// fencing: every exit code under `resource-only` (I/O never frozen) and `resource-and-stonith`
/// (I/O frozen until an answer that proves the peer cannot write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fence_peer_exit_code_under_both_policies() {
    let cases = [
        FenceCase {
            exit: 3,
            fenced: true,
            resumes: true,
            outdates_self: false,
        },
        FenceCase {
            exit: 4,
            fenced: true,
            resumes: true,
            outdates_self: false,
        },
        FenceCase {
            exit: 5,
            fenced: true,
            resumes: true,
            outdates_self: false,
        },
        FenceCase {
            exit: 6,
            fenced: false,
            resumes: false,
            outdates_self: true,
        },
        FenceCase {
            exit: 7,
            fenced: true,
            resumes: true,
            outdates_self: false,
        },
        FenceCase {
            exit: 1,
            fenced: false,
            resumes: false,
            outdates_self: false,
        },
    ];
    for policy in [FencingPolicy::ResourceOnly, FencingPolicy::ResourceAndStonith] {
        for case in &cases {
            let label = format!("{policy} exit {}", case.exit);
            let handler = format!("exit {}", case.exit);
            let (nodes, mut events) = primary_cut_off_with_fencing(policy, &handler).await;
            let p = nodes[0].res.clone();
            // The handler's answer.
            let outcome = loop {
                match tokio::time::timeout(WAIT, events.recv()).await {
                    Ok(Ok(Event::Fenced { peer: 1, outcome })) => break outcome,
                    Ok(Ok(_)) => {}
                    other => panic!("{label}: no fence-peer event: {other:?}"),
                }
            };
            assert!(
                outcome.contains(&format!("exit code {}", case.exit)),
                "{label}: {outcome}"
            );
            // Frozen (stonith) I/O resumes only on an answer that fences the peer.
            let res = p.clone();
            let write = tokio::spawn(async move { res.write(0, block(1), WriteFlags::default()).await });
            tokio::time::sleep(Duration::from_millis(300)).await;
            let frozen = policy == FencingPolicy::ResourceAndStonith && !case.resumes;
            assert_eq!(!write.is_finished(), frozen, "{label}: I/O frozen?");
            if frozen {
                p.resume_io();
            }
            tokio::time::timeout(WAIT, write).await.unwrap().unwrap().unwrap();
            let st = p.status();
            assert_eq!(
                st.disk == DiskState::Outdated,
                case.outdates_self,
                "{label}: local disk {}",
                st.disk
            );
            // A fenced peer counts as Outdated: promoting again runs no handler and succeeds; an
            // unfenced one is fenced again first, and the promotion is refused.
            p.secondary().await.unwrap();
            let again = p.primary(false).await;
            assert_eq!(
                again.is_ok(),
                case.fenced,
                "{label}: promotion after the answer: {again:?}"
            );
            let refenced = std::iter::from_fn(|| events.try_recv().ok())
                .any(|e| matches!(e, Event::Fenced { peer: 1, .. }));
            assert_eq!(
                refenced,
                !case.fenced && !case.outdates_self,
                "{label}: fence-peer ran again?"
            );
            p.secondary().await.unwrap();
            partition(&nodes, 0, &[1], false);
            down_all(&nodes).await;
        }
    }
}

/// outdate: refused while connected and on a Primary; on a disconnected Secondary the data is
/// Outdated (durably: a restart keeps it), promotion needs `--force`, and reconnecting to the
/// UpToDate peer brings it back to UpToDate by a bitmap resync of what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outdated_secondary_is_not_promoted_and_catches_up_on_reconnect() {
    let mut nodes = cluster(2, 16 * MIB, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    assert!(p.outdate().await.unwrap_err().to_string().contains("Primary"));
    let s = nodes[1].res.clone();
    assert!(
        s.outdate()
            .await
            .unwrap_err()
            .to_string()
            .contains("while connected")
    );
    write_blocks(&p, 0..8).await;
    s.disconnect(Some(0)).unwrap();
    s.wait_for(WAIT, |st| {
        st.peer(0).unwrap().connection == ConnectionState::StandAlone
    })
    .await
    .unwrap();
    s.outdate().await.unwrap();
    assert_eq!(s.status().disk, DiskState::Outdated);
    write_blocks(&p, 100..105).await;
    // Durable: a restart (kept apart from node 0) comes back Outdated, and promotion is refused.
    s.down().await.unwrap();
    p.partition(1, true);
    nodes[1].restart().await;
    let s = nodes[1].res.clone();
    assert_eq!(s.status().disk, DiskState::Outdated);
    assert!(s.primary(false).await.is_err(), "an Outdated node was promoted");
    let mut p_events = p.events();
    p.partition(1, false);
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[0], 1).await;
    let moved: u64 = resyncs(&mut p_events).iter().map(|(_, b)| b).sum();
    assert_eq!(moved, 5 * 4096, "the Outdated node gets exactly what it missed");
    same_data(&[&nodes[0], &nodes[1]]);
    down_all(&nodes).await;
}

/// Asserts that every node of `nodes` holds `blocks` as written by `write_blocks` (`refusals`: the
/// promotion refusals before, for the message).
fn holds_blocks(nodes: &[Node], blocks: &[u64], refusals: &[String]) {
    for n in nodes {
        let c = n.store.as_ref().unwrap().content();
        for &i in blocks {
            let at = usize::try_from(i * 4096).unwrap();
            assert_eq!(
                &c[at..at + 4096],
                &block(i)[..],
                "block {i} on node {} (refusals: {refusals:?})",
                n.id
            );
        }
    }
}

/// Waits until `node` no longer sees `peer` connected.
async fn apart(node: &Node, peer: u8) {
    node.res
        .wait_for(WAIT, |s| {
            s.peer(peer)
                .is_some_and(|p| p.connection != ConnectionState::Connected)
        })
        .await
        .unwrap();
}

/// Found by `replbd-faults`: C, cut off from the Primary A but connected to B, is resynced by B
/// (which tracks A's writes C missed) and takes A's generation from it. Blocks B itself got from A
/// by resync (written by A while B was away too) are not passed on by B; only A's bitmap for C has
/// them. When C meets A again with equal generations, they must still move — once, C ended
/// UpToDate with them missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_secondary_got_by_resync_still_reaches_a_node_resynced_through_it() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    // A–C cut: A's writes reach B, which marks them for C and resyncs C.
    partition(&nodes, 0, &[2], true);
    apart(&nodes[0], 2).await;
    write_blocks(&a, 0..4).await;
    in_sync(&nodes[2], 1).await;
    // A–B cut too: A alone writes (quorum is off here).
    partition(&nodes, 0, &[1], true);
    apart(&nodes[0], 1).await;
    write_blocks(&a, 10..14).await;
    // A–B heal: B resyncs those from A. Then A writes more, which B passes on to C; C resyncs
    // from B and ends in A's generation.
    partition(&nodes, 0, &[1], false);
    in_sync(&nodes[1], 0).await;
    write_blocks(&a, 20..24).await;
    in_sync(&nodes[2], 1).await;
    in_sync(&nodes[1], 2).await;
    // A–C heal: C must get blocks 10..14 from A.
    partition(&nodes, 0, &[2], false);
    in_sync(&nodes[2], 0).await;
    in_sync(&nodes[0], 2).await;
    let c = nodes[2].store.as_ref().unwrap().content();
    for i in (0..4).chain(10..14).chain(20..24) {
        let at = usize::try_from(i * 4096).unwrap();
        assert_eq!(&c[at..at + 4096], &block(i)[..], "block {i} on C");
    }
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// Found by `replbd-faults`: the Primary A dies while C resyncs from it; B is promoted and C
/// finishes from B, taking B's generation. When A comes back, C and A must still be related (C
/// took B's lineage with its data), not refused as "unrelated data".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resynced_from_the_new_primary_is_related_to_the_old_one() {
    let mut nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    partition(&nodes, 2, &[0, 1], true);
    apart(&nodes[0], 2).await;
    write_blocks(&a, 0..64).await;
    // A dies; B takes over and writes; C comes back to B only and resyncs from it.
    a.halt().await;
    let b = nodes[1].res.clone();
    promote(&nodes[1]).await;
    write_blocks(&b, 100..110).await;
    partition(&nodes, 2, &[1], false);
    in_sync(&nodes[2], 1).await;
    // A restarts (a crashed Primary) and meets both.
    nodes[0].restart().await;
    partition(&nodes, 2, &[0], false);
    in_sync(&nodes[0], 1).await;
    in_sync(&nodes[0], 2).await;
    in_sync(&nodes[2], 0).await;
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// Found by `replbd-faults` through `/dev/ublkbN` (seed 20261123: a flushed write zero on every
/// replica). The Primary A, cut off from B, goes on writing to C — acknowledged writes B never
/// sees — and dies before its peer acks tell C that B lacks them. B is behind C in A's stream:
/// promoting it and resyncing "A's unconfirmed writes" from its copy overwrote C's. B may only be
/// promoted once C has resynced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_behind_in_the_lost_primarys_stream_takes_the_writes_before_promotion() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    write_blocks(&a, 0..4).await;
    a.flush().await.unwrap();
    partition(&nodes, 0, &[1], true);
    apart(&nodes[0], 1).await;
    apart(&nodes[1], 0).await;
    // C holds its flushes: its barrier ack, and with it A's peer ack naming the holders, never
    // comes. One write only — a later epoch's write would wait behind the held barrier on C.
    let c_store = nodes[2].store.as_ref().unwrap();
    c_store.pause_flushes(true);
    write_blocks(&a, [10]).await;
    a.halt().await;
    c_store.pause_flushes(false);
    apart(&nodes[2], 0).await;
    // B is promoted as an HA agent would: retried while it is not allowed yet.
    let refusals = promote_retrying(&nodes[1]).await;
    in_sync(&nodes[2], 1).await;
    holds_blocks(&nodes[1..], &[0, 1, 2, 3, 10], &refusals);
    same_data(&[&nodes[1], &nodes[2]]);
    for n in &nodes[1..] {
        n.res.down().await.unwrap();
    }
}

/// The other side of the settlement after losing a Primary: a node cut off from a Primary that is
/// alive is not promoted (its peer, still connected to that Primary, does not answer), and once
/// that Primary is demoted the peer answers with where its stream stopped, resyncs the node if it
/// is ahead, and the node is promoted with every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_a_live_primary_waits_and_is_promoted_once_it_is_demoted() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    write_blocks(&a, 0..4).await;
    partition(&nodes, 0, &[1], true);
    apart(&nodes[1], 0).await;
    write_blocks(&a, 10..12).await;
    let b = &nodes[1].res;
    let refused = b
        .primary(false)
        .await
        .expect_err("A is still Primary, reachable through C");
    assert!(refused.to_string().contains("node 2"), "{refused}");
    a.secondary().await.unwrap();
    promote_retrying(&nodes[1]).await;
    in_sync(&nodes[2], 1).await;
    let c = nodes[1].store.as_ref().unwrap().content();
    for i in (0..4).chain(10..12) {
        let at = usize::try_from(i * 4096).unwrap();
        assert_eq!(&c[at..at + 4096], &block(i)[..], "block {i} on B");
    }
    same_data(&[&nodes[1], &nodes[2]]);
    partition(&nodes, 0, &[1], false);
    down_all(&nodes).await;
}

/// The hole the settlement after losing a Primary cannot see: B, away from everyone while the
/// Primary A wrote (and restarted meanwhile, so it has no record of A's stream), comes back to C
/// only and is resynced by it. C's marks for B come from A's peer acks; the ack for A's last write
/// (block 10) is still outstanding — C holds its flushes, so its barrier ack never reaches A — and
/// without more the resync leaves block 10 out: B ends UpToDate without an acknowledged write. A
/// then dies; B holds none of A's stream, so it is behind nobody, and once promoted its copy of
/// block 10 went over C's. A Secondary that serves a resync includes the Primary's writes not yet
/// peer-acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resynced_by_a_secondary_gets_the_primarys_writes_not_yet_peer_acked() {
    let mut nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    write_blocks(&a, 0..4).await;
    a.flush().await.unwrap();
    partition(&nodes, 1, &[0, 2], true);
    for (n, p) in [(1, 0), (1, 2), (0, 1), (2, 1)] {
        apart(&nodes[n], p).await;
    }
    nodes[1].res.down().await.unwrap();
    // Peer-acked while B is away: C marks it for B.
    write_blocks(&a, [5]).await;
    a.flush().await.unwrap();
    let c_store = Arc::clone(nodes[2].store.as_ref().unwrap());
    c_store.pause_flushes(true);
    write_blocks(&a, [10]).await;
    nodes[1].restart().await;
    nodes[1].res.partition(0, true);
    nodes[2].res.partition(1, false);
    in_sync(&nodes[1], 2).await;
    a.halt().await;
    c_store.pause_flushes(false);
    apart(&nodes[2], 0).await;
    let refusals = promote_retrying(&nodes[1]).await;
    in_sync(&nodes[2], 1).await;
    holds_blocks(&nodes[1..], &[0, 1, 2, 3, 5, 10], &refusals);
    same_data(&[&nodes[1], &nodes[2]]);
    partition(&nodes, 1, &[0], false);
    for n in &nodes[1..] {
        n.res.down().await.unwrap();
    }
}

/// Found by `replbd-faults` in the VM (seed 20261191, an agent-resolved "split brain"): the
/// Primary A is cut off with a write not yet peer-acked; B is promoted and C, which marked that
/// write, resyncs it from B — and so takes B's new generation at the end of a resync instead of
/// following B into it while UpToDate. B's bitmap for A tracks A's generation; C's must too. It
/// did not: when A came back, C knew A's generation only as history and A took a full sync from
/// it (and, had A started a new generation of its own meanwhile, was refused as "no UUID in
/// common"). Now A's return to C is a bitmap resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_resynced_by_a_new_primary_tracks_the_old_primary_as_the_new_primary_does() {
    let nodes = cluster(3, 16 * MIB, Protocol::C, &[]).await;
    let a = nodes[0].res.clone();
    a.primary(false).await.unwrap();
    write_blocks(&a, 0..4).await;
    a.flush().await.unwrap();
    // C holds its flushes: A's write of block 10 completes but is never peer-acked.
    let c_store = Arc::clone(nodes[2].store.as_ref().unwrap());
    c_store.pause_flushes(true);
    write_blocks(&a, [10]).await;
    partition(&nodes, 0, &[1, 2], true);
    c_store.pause_flushes(false);
    for (n, p) in [(0, 1), (0, 2), (1, 0), (2, 0)] {
        apart(&nodes[n], p).await;
    }
    // B is promoted; C resyncs A's unconfirmed write from it and ends in B's generation.
    promote_retrying(&nodes[1]).await;
    in_sync(&nodes[2], 1).await;
    let b = nodes[1].res.clone();
    write_blocks(&b, 20..24).await;
    a.secondary().await.unwrap();
    // A comes back to C only.
    let mut a_events = a.events();
    partition(&nodes, 0, &[2], false);
    in_sync(&nodes[0], 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved: u64 = resyncs(&mut a_events).iter().map(|(_, b)| b).sum();
    assert!(
        moved < MIB,
        "A's return to C moved {moved} bytes: a full sync, not a bitmap resync"
    );
    holds_blocks(&nodes[..1], &[0, 1, 2, 3, 10, 20, 21, 22, 23], &[]);
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    partition(&nodes, 0, &[1], false);
    down_all(&nodes).await;
}
