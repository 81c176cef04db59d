//! Quorum and split brain through the engine, in the spirit of the DRBD test suite:
//! quorum-isolate-primary (io-error and suspend-io), quorum-tiebreaker, last man standing,
//! promotion refusals, and split brain detected on both sides and recovered with
//! `connect --discard-my-data` (and by an after-sb policy).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use replbd_quorum::quorum::OnNoQuorum;
use replbd_quorum::split_brain::AfterSb0Pri;
use replbd_quorum::{ConnectionState, QuorumConfig, QuorumPolicy, ReplicationState, Role};
use replbd_replication::engine::{Event, Resource, RoleError};
use replbd_replication::{BlockVolume, VolumeError, WriteFlags};
use support::{
    Node, block, cluster_with, down_all, in_sync, partition, primary_cut_off_with_fencing, same_data,
    write_blocks,
};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(20);

fn majority(on_no_quorum: OnNoQuorum) -> QuorumConfig {
    QuorumConfig {
        quorum: QuorumPolicy::Majority,
        minimum_redundancy: QuorumPolicy::Off,
        on_no_quorum,
    }
}

async fn wait_quorum(res: &Resource, have: bool) {
    res.wait_for(WAIT, |s| s.quorum == have)
        .await
        .unwrap_or_else(|s| panic!("node {} never reached quorum={have}: {s}", s.node));
}

/// `n` nodes with `quorum majority` and `on_no_quorum`; node 0 promoted once it has quorum.
async fn quorate_primary(n: usize, on_no_quorum: OnNoQuorum) -> (Vec<Node>, Resource) {
    let nodes = cluster_with(n, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.quorum = majority(on_no_quorum);
    })
    .await;
    let p = nodes[0].res.clone();
    wait_quorum(&p, true).await;
    p.primary(false).await.unwrap();
    (nodes, p)
}

/// quorum-isolate-primary: the isolated Primary gets I/O errors and cannot be promoted again; the
/// majority promotes a new Primary; on rejoin the old Primary resyncs from it without split brain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_primary_fails_io_and_the_majority_carries_on() {
    let nodes = cluster_with(3, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.quorum = majority(OnNoQuorum::IoError);
    })
    .await;
    for n in &nodes {
        wait_quorum(&n.res, true).await;
    }
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..16).await;
    p.flush().await.unwrap();

    partition(&nodes, 0, &[1, 2], true);
    wait_quorum(&p, false).await;
    let err = p.write(20 * 4096, block(999), WriteFlags::default()).await;
    assert!(matches!(err, Err(VolumeError::NoQuorum { .. })), "{err:?}");
    assert!(matches!(p.flush().await, Err(VolumeError::NoQuorum { .. })));
    p.secondary().await.unwrap();
    match p.primary(false).await {
        Err(RoleError::Refused(e)) => assert!(e.to_string().contains("no quorum"), "{e}"),
        other => panic!("promotion without quorum: {other:?}"),
    }

    // The majority still has quorum: an HA agent promotes node 1, which writes on.
    let q = nodes[1].res.clone();
    wait_quorum(&q, true).await;
    q.primary(false).await.expect("node 1 promotes with the majority");
    write_blocks(&q, 100..132).await;
    q.flush().await.unwrap();

    // Rejoin: no split brain; node 0 ends with node 1's data.
    let mut events = p.events();
    partition(&nodes, 0, &[1, 2], false);
    in_sync(&nodes[0], 1).await;
    in_sync(&nodes[2], 1).await;
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, Event::SplitBrain { .. }), "{e}");
    }
    q.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// With `on-no-quorum suspend-io` the isolated Primary's I/O waits, and completes once the
/// partition heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_io_resumes_when_quorum_returns() {
    let (nodes, p) = quorate_primary(3, OnNoQuorum::SuspendIo).await;
    write_blocks(&p, 0..4).await;
    partition(&nodes, 0, &[1, 2], true);
    wait_quorum(&p, false).await;
    let res = p.clone();
    let write = tokio::spawn(async move { res.write(8 * 4096, block(8), WriteFlags::default()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!write.is_finished(), "I/O without quorum must be suspended");
    partition(&nodes, 0, &[1, 2], false);
    tokio::time::timeout(WAIT, write)
        .await
        .expect("the suspended write resumes")
        .unwrap()
        .unwrap();
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[2], 0).await;
    p.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// quorum-tiebreaker: two diskful nodes and a diskless tiebreaker. The node that keeps the
/// tiebreaker keeps quorum; the one cut off from both loses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diskless_tiebreaker_keeps_quorum_on_its_side() {
    let nodes = cluster_with(3, 16 * MIB, replbd_quorum::Protocol::C, &[2], |_, cfg| {
        cfg.quorum = majority(OnNoQuorum::IoError);
    })
    .await;
    for n in &nodes {
        wait_quorum(&n.res, true).await;
    }
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..8).await;
    partition(&nodes, 0, &[1, 2], true);
    wait_quorum(&p, false).await;
    // Node 1 is one vote short of two but keeps the tiebreaker, so it keeps quorum.
    let q = nodes[1].res.clone();
    let s = q.status();
    assert!(s.quorum, "node 1 with the tiebreaker: {s}");
    q.primary(false).await.unwrap();
    write_blocks(&q, 50..60).await;
    assert!(matches!(
        p.write(0, block(1), WriteFlags::default()).await,
        Err(VolumeError::NoQuorum { .. })
    ));
    p.secondary().await.unwrap();
    partition(&nodes, 0, &[1, 2], false);
    in_sync(&nodes[0], 1).await;
    q.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1]]);
    down_all(&nodes).await;
}

/// Last man standing: Secondaries that leave on purpose (`down`) do not take quorum with them, down
/// to the Primary alone; a Secondary lost to a network failure does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondaries_that_leave_on_purpose_leave_the_last_man_standing_with_quorum() {
    let (nodes, p) = quorate_primary(3, OnNoQuorum::IoError).await;
    nodes[2].res.down().await.unwrap();
    nodes[1].res.down().await.unwrap();
    p.wait_for(WAIT, |s| {
        s.peers.iter().all(|x| x.connection != ConnectionState::Connected)
    })
    .await
    .unwrap();
    assert!(p.status().quorum, "{}", p.status());
    write_blocks(&p, 0..4).await;
    p.down().await.unwrap();
}

/// A Primary whose peers fail (no goodbye) loses quorum: they may have formed a majority elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondaries_lost_to_a_network_failure_take_quorum_with_them() {
    let (nodes, p) = quorate_primary(3, OnNoQuorum::IoError).await;
    nodes[2].res.halt().await;
    write_blocks(&p, 0..4).await; // 2 of 3: still quorate
    nodes[1].res.halt().await;
    wait_quorum(&p, false).await;
    assert!(matches!(
        p.write(0, block(1), WriteFlags::default()).await,
        Err(VolumeError::NoQuorum { .. })
    ));
    p.down().await.unwrap();
}

/// A second Primary is refused while one is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_primary_is_refused() {
    let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, _| {}).await;
    nodes[0].res.primary(false).await.unwrap();
    nodes[1]
        .res
        .wait_for(WAIT, |s| s.peer(0).unwrap().role == Role::Primary)
        .await
        .unwrap();
    match nodes[1].res.primary(false).await {
        Err(RoleError::Refused(e)) => assert!(e.to_string().contains("already Primary"), "{e}"),
        other => panic!("a second Primary: {other:?}"),
    }
    down_all(&nodes).await;
}

/// Makes a split brain between two nodes: both become Primary while disconnected and write.
async fn split_brain(nodes: &[Node]) {
    nodes[0].res.primary(false).await.unwrap();
    write_blocks(&nodes[0].res, 0..8).await;
    nodes[0].res.flush().await.unwrap();
    nodes[0].res.secondary().await.unwrap();
    nodes[1]
        .res
        .wait_for(WAIT, |s| s.peer(0).unwrap().role == Role::Secondary)
        .await
        .unwrap();
    partition(nodes, 0, &[1], true);
    for (i, n) in nodes.iter().enumerate() {
        n.res
            .wait_for(WAIT, |s| {
                s.peer(1 - i as u8).unwrap().connection != ConnectionState::Connected
            })
            .await
            .unwrap();
        n.res.primary(false).await.unwrap();
    }
    write_blocks(&nodes[0].res, 100..110).await;
    write_blocks(&nodes[1].res, 200..205).await;
    nodes[0].res.secondary().await.unwrap();
    nodes[1].res.secondary().await.unwrap();
}

/// split-brain: detected on both sides (StandAlone, event naming the rule), then recovered by
/// connecting the victim with `--discard-my-data`; ten repetitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_is_detected_on_both_sides_and_recovered_with_discard_my_data() {
    for round in 0..10 {
        let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, _| {}).await;
        split_brain(&nodes).await;
        let mut events: Vec<_> = nodes.iter().map(|n| n.res.events()).collect();
        partition(&nodes, 0, &[1], false);
        for (i, n) in nodes.iter().enumerate() {
            let s = n
                .res
                .wait_for(WAIT, |s| {
                    s.peer(1 - i as u8).unwrap().connection == ConnectionState::StandAlone
                })
                .await
                .unwrap_or_else(|s| panic!("round {round}: node {i} not StandAlone: {s}"));
            assert_eq!(s.disk, replbd_quorum::DiskState::UpToDate);
        }
        for (i, rx) in events.iter_mut().enumerate() {
            let mut saw = false;
            while let Ok(e) = rx.try_recv() {
                saw |= matches!(e, Event::SplitBrain { .. });
            }
            assert!(saw, "round {round}: node {i} reported no split brain");
        }
        // Node 1's changes are dropped.
        nodes[1].res.connect_discarding_my_data(Some(0)).unwrap();
        nodes[0].res.connect(Some(1)).unwrap();
        in_sync(&nodes[1], 0).await;
        in_sync(&nodes[0], 1).await;
        same_data(&[&nodes[0], &nodes[1]]);
        let content = nodes[1].store.as_ref().unwrap().content();
        assert!(
            content[100 * 4096..101 * 4096] == block(100)[..],
            "node 0's write survived"
        );
        assert!(
            content[200 * 4096..201 * 4096] != block(200)[..],
            "node 1's write was discarded"
        );
        down_all(&nodes).await;
    }
}

/// `after-sb-0pri discard-least-changes` resolves a split brain by itself: the node with fewer
/// changes becomes SyncTarget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_sb_policy_resolves_a_split_brain_automatically() {
    let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.split_brain.after_sb_0pri = AfterSb0Pri::DiscardLeastChanges;
    })
    .await;
    split_brain(&nodes).await;
    partition(&nodes, 0, &[1], false);
    in_sync(&nodes[1], 0).await;
    in_sync(&nodes[0], 1).await;
    same_data(&[&nodes[0], &nodes[1]]);
    let content = nodes[0].store.as_ref().unwrap().content();
    assert!(
        content[100 * 4096..101 * 4096] == block(100)[..],
        "the node with more changes won"
    );
    assert_eq!(
        nodes[0].res.status().peer(1).unwrap().replication,
        ReplicationState::Established
    );
    down_all(&nodes).await;
}

/// fencing resource-and-stonith: a Primary that loses its peer freezes I/O until the fence-peer
/// handler answers; exit 7 (STONITH) resumes it, the handler saw the peer in its environment, and
/// the peer counts as Outdated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_freezes_io_until_the_handler_fences_the_peer() {
    let env_file = std::env::temp_dir().join(format!("replbd-fence-env-{}", std::process::id()));
    let _ = std::fs::remove_file(&env_file);
    let handler = format!(
        "sleep 1; echo \"$REPLBD_RESOURCE $REPLBD_PEER $REPLBD_PEER_NODE_ID\" > {}; exit 7",
        env_file.display()
    );
    let (nodes, mut events) =
        primary_cut_off_with_fencing(replbd_quorum::FencingPolicy::ResourceAndStonith, &handler).await;
    let p = nodes[0].res.clone();
    let res = p.clone();
    let write = tokio::spawn(async move { res.write(0, block(5), WriteFlags::default()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "I/O must be frozen while the handler runs");
    tokio::time::timeout(WAIT, write)
        .await
        .expect("I/O resumes once the peer is fenced")
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap().trim(),
        "r0 node1 1",
        "the handler's environment"
    );
    let mut saw = false;
    while let Ok(e) = events.try_recv() {
        saw |= matches!(&e, Event::Fenced { peer: 1, outcome } if outcome.contains("exit code 7"));
    }
    assert!(saw, "a fence-peer event");
    let _ = std::fs::remove_file(&env_file);
    partition(&nodes, 0, &[1], false);
    in_sync(&nodes[1], 0).await;
    down_all(&nodes).await;
}

/// A handler that fails (exit 1) proves nothing: I/O stays frozen until `resume-io`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fence_keeps_io_frozen_until_resume_io() {
    let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.fencing
            .insert(1 - cfg.node_id, replbd_quorum::FencingPolicy::ResourceAndStonith);
        cfg.fence_peer = Some("exit 1".into());
    })
    .await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    partition(&nodes, 0, &[1], true);
    p.wait_for(WAIT, |s| {
        s.peer(1).unwrap().connection != ConnectionState::Connected
    })
    .await
    .unwrap();
    let res = p.clone();
    let write = tokio::spawn(async move { res.write(0, block(5), WriteFlags::default()).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!write.is_finished(), "I/O stays frozen after a failed fence");
    assert!(p.resume_io());
    tokio::time::timeout(WAIT, write).await.unwrap().unwrap().unwrap();
    partition(&nodes, 0, &[1], false);
    in_sync(&nodes[1], 0).await;
    down_all(&nodes).await;
}

/// fencing before promotion: a node cut off from its peer runs `fence-peer` for it before it
/// promotes; a handler that proves nothing (exit 1) refuses the promotion, one that outdates the
/// peer (exit 4) lets it through; `--force` skips the handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_while_cut_off_fences_the_peer_first() {
    let exit_file = std::env::temp_dir().join(format!("replbd-fence-exit-{}", std::process::id()));
    std::fs::write(&exit_file, "1").unwrap();
    let handler = format!("exit $(cat {})", exit_file.display());
    let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.fencing
            .insert(1 - cfg.node_id, replbd_quorum::FencingPolicy::ResourceOnly);
        cfg.fence_peer = Some(handler.clone());
    })
    .await;
    let s = nodes[1].res.clone();
    partition(&nodes, 0, &[1], true);
    s.wait_for(WAIT, |st| {
        st.peer(0).unwrap().connection != ConnectionState::Connected
    })
    .await
    .unwrap();
    let mut events = s.events();
    let refused = s.primary(false).await.unwrap_err();
    assert!(
        matches!(&refused, RoleError::NotFenced(m) if m.contains("node0") && m.contains("exit code 1")),
        "{refused}"
    );
    assert_eq!(s.status().role, Role::Secondary);
    std::fs::write(&exit_file, "4").unwrap();
    s.primary(false).await.unwrap();
    let mut fenced = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Fenced { peer: 0, outcome } = e {
            fenced.push(outcome);
        }
    }
    assert_eq!(fenced.len(), 2, "{fenced:?}");
    assert!(fenced[1].contains("exit code 4"), "{fenced:?}");
    // Known Outdated now: demoting and promoting again needs no handler.
    std::fs::write(&exit_file, "1").unwrap();
    s.secondary().await.unwrap();
    s.primary(false).await.unwrap();
    s.secondary().await.unwrap();
    let _ = std::fs::remove_file(&exit_file);
    partition(&nodes, 0, &[1], false);
    down_all(&nodes).await;
}

/// The `quorum-lost` handler runs when a Primary loses quorum (not on a Secondary), with the
/// resource in its environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_losing_quorum_runs_the_quorum_lost_handler() {
    let out = std::env::temp_dir().join(format!("replbd-quorum-lost-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let handler = format!("echo \"$REPLBD_RESOURCE $DRBD_RESOURCE\" >> {}", out.display());
    let nodes = cluster_with(3, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.quorum = majority(OnNoQuorum::IoError);
        cfg.quorum_lost = Some(handler.clone());
    })
    .await;
    for n in &nodes {
        wait_quorum(&n.res, true).await;
    }
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    partition(&nodes, 0, &[1, 2], true);
    wait_quorum(&p, false).await;
    let mut ran = String::new();
    for _ in 0..100 {
        ran = std::fs::read_to_string(&out).unwrap_or_default();
        if !ran.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Exactly once: the Secondaries kept quorum (two of three) and the Primary ran it alone.
    assert_eq!(ran, "r0 r0\n");
    let _ = std::fs::remove_file(&out);
    p.secondary().await.unwrap();
    partition(&nodes, 0, &[1, 2], false);
    down_all(&nodes).await;
}

/// `after-sb-1pri call-pri-lost-after-sb`: the Primary that loses the resolution (fewer changes,
/// `discard-least-changes`) runs the `pri-lost-after-sb` handler and stays disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_losing_a_split_brain_runs_pri_lost_after_sb() {
    let out = std::env::temp_dir().join(format!("replbd-pri-lost-{}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let handler = format!("echo \"$REPLBD_RESOURCE $REPLBD_PEER\" >> {}", out.display());
    let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
        cfg.split_brain.after_sb_0pri = AfterSb0Pri::DiscardLeastChanges;
        cfg.split_brain.after_sb_1pri = replbd_quorum::split_brain::AfterSb1Pri::CallPriLostAfterSb;
        cfg.pri_lost_after_sb = Some(handler.clone());
    })
    .await;
    split_brain(&nodes).await;
    // Node 1 (5 changes against node 0's 10) is Primary when the nodes meet again.
    nodes[1].res.primary(true).await.unwrap();
    partition(&nodes, 0, &[1], false);
    let mut ran = String::new();
    for _ in 0..200 {
        ran = std::fs::read_to_string(&out).unwrap_or_default();
        if !ran.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ran.starts_with("r0 node0\n"), "handler output {ran:?}");
    assert_eq!(
        nodes[1].res.status().role,
        Role::Primary,
        "not demoted behind the handler's back"
    );
    let _ = std::fs::remove_file(&out);
    down_all(&nodes).await;
}

/// Waits for a connection event about `peer` on `rx` whose reason contains `needle`.
async fn reason_seen(rx: &mut tokio::sync::broadcast::Receiver<Event>, peer: u8, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(Event::Connection {
                peer: p,
                reason: Some(r),
                ..
            })) if p == peer && r.contains(needle) => return r,
            Ok(Ok(_)) => {}
            other => panic!("no connection event about node {peer} mentioning {needle:?}: {other:?}"),
        }
    }
}

/// A split brain whose after-sb policies (`discard-least-changes`, `violently-as0p`) discard the
/// node that is Primary when the nodes meet. DRBD would let `rr-conflict` decide whether the resync
/// runs into the Primary; replbd never resyncs into a running Primary, whatever `rr-conflict` says:
/// the Primary goes StandAlone with the reason and what to do, keeps its role and its data, and
/// once demoted, `connect --discard-my-data` resyncs it from the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_brain_never_resyncs_into_a_running_primary_whatever_rr_conflict_says() {
    use replbd_quorum::split_brain::{AfterSb1Pri, RrConflict};
    for policy in [RrConflict::Disconnect, RrConflict::RetryConnect] {
        let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, cfg| {
            cfg.split_brain.after_sb_0pri = AfterSb0Pri::DiscardLeastChanges;
            cfg.split_brain.after_sb_1pri = AfterSb1Pri::ViolentlyAs0p;
            cfg.split_brain.rr_conflict = policy;
        })
        .await;
        split_brain(&nodes).await;
        // Node 1 (5 changes against node 0's 10) is the one to discard, and Primary when they meet.
        nodes[1].res.primary(true).await.unwrap();
        let mut events = nodes[1].res.events();
        partition(&nodes, 0, &[1], false);
        let reason = reason_seen(&mut events, 0, "split brain").await;
        assert!(
            reason.contains("this node is Primary: demote it, then `connect --discard-my-data` here"),
            "{policy}: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = nodes[1].res.status();
        assert_eq!(s.role, Role::Primary, "{policy}: still Primary");
        assert_ne!(
            s.peer(0).unwrap().replication,
            ReplicationState::SyncTarget,
            "{policy}: no resync into the Primary"
        );
        nodes[1]
            .res
            .wait_for(WAIT, |s| {
                s.peer(0).unwrap().connection == ConnectionState::StandAlone
            })
            .await
            .unwrap_or_else(|s| panic!("{policy}: node 1 not StandAlone: {s}"));
        let content = nodes[1].store.as_ref().unwrap().content();
        assert!(
            content[200 * 4096..201 * 4096] == block(200)[..],
            "{policy}: the Primary's data is untouched"
        );
        // The operator demotes it and drops its changes.
        nodes[1].res.secondary().await.unwrap();
        nodes[1].res.connect_discarding_my_data(Some(0)).unwrap();
        let _ = nodes[0].res.connect(Some(1));
        in_sync(&nodes[1], 0).await;
        in_sync(&nodes[0], 1).await;
        same_data(&[&nodes[0], &nodes[1]]);
        let content = nodes[1].store.as_ref().unwrap().content();
        assert!(
            content[100 * 4096..101 * 4096] == block(100)[..],
            "{policy}: node 0's changes won"
        );
        down_all(&nodes).await;
    }
}

/// `new-current-uuid` on a running Primary: a new generation the connected peer follows; refused on
/// a Secondary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_current_uuid_on_a_primary_starts_a_generation_the_peer_follows() {
    let nodes = cluster_with(2, 16 * MIB, replbd_quorum::Protocol::C, &[], |_, _| {}).await;
    assert!(
        nodes[1].res.new_current_uuid().await.is_err(),
        "a Secondary rotated"
    );
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..4).await;
    let before = nodes[0].res.local_disk().unwrap().meta.generation_ids().current;
    p.new_current_uuid().await.unwrap();
    let after = nodes[0].res.local_disk().unwrap().meta.generation_ids().current;
    assert_ne!(before & !1, after & !1);
    let follows = || nodes[1].res.local_disk().unwrap().meta.generation_ids().current & !1;
    for _ in 0..100 {
        if follows() == after & !1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(follows(), after & !1, "the Secondary did not follow");
    write_blocks(&p, 4..8).await;
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);
    down_all(&nodes).await;
}

/// Three nodes with `quorum majority`; node 0's resyncs as target are slow (512 KiB/s), so one is
/// still running when the test changes the cluster around it.
async fn three_with_a_slow_node_0() -> Vec<Node> {
    let nodes = cluster_with(3, 16 * MIB, replbd_quorum::Protocol::C, &[], |i, cfg| {
        cfg.quorum = majority(OnNoQuorum::IoError);
        if i == 0 {
            cfg.resync.max_rate = 512 << 10;
            cfg.resync.min_rate = 0;
            cfg.resync.plan_ahead = Duration::ZERO;
        }
    })
    .await;
    for n in &nodes {
        wait_quorum(&n.res, true).await;
    }
    nodes
}

/// Node 0, Primary, is isolated: its write fails; a generation of its own starts anyway (here by
/// hand, in the fault run by the rotation of a write that raced the quorum loss); an HA agent
/// demotes it. The majority promotes node 1, which writes 2 MiB. Node 0 stays cut off.
async fn old_primary_isolated_and_a_new_primary_writing(nodes: &[Node]) {
    let old = nodes[0].res.clone();
    old.primary(false).await.unwrap();
    write_blocks(&old, 0..16).await;
    old.flush().await.unwrap();
    partition(nodes, 0, &[1, 2], true);
    wait_quorum(&old, false).await;
    let err = old.write(20 * 4096, block(999), WriteFlags::default()).await;
    assert!(matches!(err, Err(VolumeError::NoQuorum { .. })), "{err:?}");
    old.new_current_uuid().await.unwrap();
    old.secondary().await.unwrap();
    let new = nodes[1].res.clone();
    wait_quorum(&new, true).await;
    new.primary(false).await.unwrap();
    write_blocks(&new, 1000..1512).await;
    new.flush().await.unwrap();
}

async fn wait_sync_target(node: &Node, source: u8) {
    node.res
        .wait_for(WAIT, |s| {
            s.quorum && s.peer(source).unwrap().replication == ReplicationState::SyncTarget
        })
        .await
        .unwrap_or_else(|s| panic!("node {} is not node {source}'s sync target:\n{s}", node.id));
}

/// An old Primary that lost quorum stays the loser until a resync has replaced its data, not
/// merely until it regains quorum. Found in the VM fault run: the isolated Primary (a generation
/// of its own, begun on a write that never completed) came back to one node of the majority,
/// regained quorum through it and started resyncing from it; then the new Primary came back, and
/// with the flag gone the same generation identifiers that had just made it the target now read as
/// a split brain (rule 9), and both ends went StandAlone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_resyncing_after_lost_quorum_meets_the_new_primary_without_split_brain() {
    let nodes = three_with_a_slow_node_0().await;
    old_primary_isolated_and_a_new_primary_writing(&nodes).await;
    // Node 0 comes back to node 2 first: it regains quorum and becomes node 2's sync target.
    let mut events = nodes[0].res.events();
    partition(&nodes, 0, &[2], false);
    wait_sync_target(&nodes[0], 2).await;
    // Then to node 1, the Primary, while that resync runs.
    partition(&nodes, 0, &[1], false);
    in_sync(&nodes[0], 1).await;
    in_sync(&nodes[0], 2).await;
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, Event::SplitBrain { .. }), "{e}");
    }
    nodes[1].res.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}

/// A sync target whose source dies mid-resync, finished by a third node and then promoted, takes
/// the dead source back by its bitmap. Its slot for the source still named an older generation
/// (here: the one it had itself when it was isolated as Primary, which the source's slot for it
/// names too), so the source's return was a full sync of the whole volume by rule 8 — or, before
/// the fix above, a split brain by rule 9 (the known gap of docs/reliability.md). The source was
/// at the generation the resync ended at, and everything this node changed since the source left
/// is marked for it, so the slot now names that generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_target_promoted_after_its_source_died_takes_it_back_by_bitmap() {
    let nodes = three_with_a_slow_node_0().await;
    old_primary_isolated_and_a_new_primary_writing(&nodes).await;
    // Node 0 comes back to node 1, the Primary, only, and becomes its sync target.
    partition(&nodes, 0, &[1], false);
    wait_sync_target(&nodes[0], 1).await;
    // Node 1 dies mid-resync (cut off from both; demoted there).
    partition(&nodes, 1, &[0, 2], true);
    wait_quorum(&nodes[1].res, false).await;
    let _ = nodes[1].res.secondary().await;
    // Node 0 comes back to node 2, finishes its resync there, is promoted and writes.
    partition(&nodes, 0, &[2], false);
    in_sync(&nodes[0], 2).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.expect("node 0 promotes with node 2");
    write_blocks(&p, 2000..2008).await;
    p.flush().await.unwrap();
    // Node 1 returns: a bitmap resync from node 0 — about the 2 MiB resynced since it left and
    // the 32 KiB written since — not a full one of 16 MiB, and no split brain.
    let mut events = p.events();
    partition(&nodes, 1, &[0, 2], false);
    let (moved, source) = support::finished(&mut events, 1).await;
    assert!(source, "node 0 must be node 1's sync source");
    assert!(
        moved < 8 * MIB,
        "node 1's return moved {moved} bytes: a full sync"
    );
    in_sync(&nodes[1], 0).await;
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, Event::SplitBrain { .. }), "{e}");
    }
    p.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1], &nodes[2]]);
    down_all(&nodes).await;
}
