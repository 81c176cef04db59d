//! Online verify and the invalidate commands, as in the DRBD test suite: differences injected
//! behind the engine's back are found at their exact sectors, are not fixed by the verify, and are
//! fixed by a later resync (reconnect with a Primary, `invalidate`, `invalidate-remote`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use replbd_quorum::{DiskState, Protocol};
use replbd_replication::BlockVolume;
use replbd_replication::engine::Event;
use support::{Node, cluster, finished, in_sync, same_data, write_blocks};
use tokio::sync::broadcast::Receiver;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 16 * MIB;

/// The next `VerifyFinished` event: (out-of-sync bytes, half-open sector ranges).
async fn verified(events: &mut Receiver<Event>, peer: u8) -> (u64, Vec<(u64, u64)>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Ok(Event::VerifyFinished {
                peer: p,
                out_of_sync_bytes,
                sectors,
                ..
            })) if p == peer => return (out_of_sync_bytes, sectors),
            Ok(Ok(_)) => {}
            other => panic!("no verify-finished event about node {peer}: {other:?}"),
        }
    }
}

/// Changes node's data directly on its disk, as silent corruption would: one byte inside block 5,
/// the whole of block 40, blocks 50 and 51. Expected differing sectors: [40, 48), [320, 328),
/// [400, 416).
async fn corrupt(node: &Node) {
    let store = node.store.as_ref().unwrap();
    store
        .write(5 * 4096 + 100, Bytes::from_static(&[0xa5]), false)
        .await
        .unwrap();
    store
        .write(40 * 4096, Bytes::from(vec![0x5a; 4096]), false)
        .await
        .unwrap();
    store
        .write(50 * 4096, Bytes::from(vec![0x77; 8192]), false)
        .await
        .unwrap();
}

const CORRUPTED: [(u64, u64); 3] = [(40, 48), (320, 328), (400, 416)];

fn out_of_sync(node: &Node, peer: u8) -> u64 {
    node.res.status().peer(peer).unwrap().out_of_sync
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_injected_differences_at_exact_sectors_and_a_reconnect_fixes_them() {
    let nodes = cluster(2, SIZE, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    write_blocks(p, 0..64).await;
    p.flush().await.unwrap();
    same_data(&[&nodes[0], &nodes[1]]);

    corrupt(&nodes[1]).await;
    let mut ev0 = nodes[0].res.events();
    let mut ev1 = nodes[1].res.events();
    assert_eq!(p.verify(Some(1)).unwrap(), vec![1]);
    let (bytes, sectors) = verified(&mut ev0, 1).await;
    assert_eq!(sectors, CORRUPTED);
    assert_eq!(bytes, 4 * 4096);
    // The verify target reports the same.
    assert_eq!(verified(&mut ev1, 0).await, (bytes, sectors));
    // Marked on both sides, fixed on neither.
    assert_eq!(out_of_sync(&nodes[0], 1), 4 * 4096);
    assert_eq!(out_of_sync(&nodes[1], 0), 4 * 4096);
    let a = nodes[0].store.as_ref().unwrap().content();
    let b = nodes[1].store.as_ref().unwrap().content();
    assert_ne!(a, b, "verify must not fix anything");

    // Disconnect/connect: the Primary is the source and exactly the marked blocks move.
    p.disconnect(Some(1)).unwrap();
    p.connect(Some(1)).unwrap();
    let (moved, source) = finished(&mut ev0, 1).await;
    assert!(source);
    assert_eq!(moved, 4 * 4096);
    in_sync(&nodes[0], 1).await;
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);

    // And a second verify finds nothing.
    nodes[1].res.verify(None).unwrap();
    assert_eq!(verified(&mut ev1, 0).await, (0, vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_resyncs_everything_from_the_peer() {
    let nodes = cluster(2, SIZE, Protocol::C, &[]).await;
    let p = &nodes[0].res;
    p.primary(false).await.unwrap();
    write_blocks(p, 0..64).await;
    p.flush().await.unwrap();
    corrupt(&nodes[1]).await;

    // A Primary cannot invalidate itself; a verify cannot start twice.
    let e = p.invalidate(None).unwrap_err().to_string();
    assert!(e.contains("Primary"), "{e}");

    let mut ev1 = nodes[1].res.events();
    assert_eq!(nodes[1].res.invalidate(None).unwrap(), 0);
    let (moved, source) = finished(&mut ev1, 0).await;
    assert!(!source);
    assert_eq!(moved, SIZE, "invalidate is a full sync");
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_remote_overwrites_the_peer_while_the_primary_keeps_writing() {
    let nodes = cluster(2, SIZE, Protocol::C, &[]).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..64).await;
    corrupt(&nodes[1]).await;

    let mut ev0 = p.events();
    p.invalidate_remote(1).unwrap();
    // Application writes go on during the full sync.
    let writer = tokio::spawn({
        let p = p.clone();
        async move { write_blocks(&p, 100..400).await }
    });
    let (moved, source) = finished(&mut ev0, 1).await;
    writer.await.unwrap();
    assert!(source);
    assert!(moved > 0 && moved <= SIZE, "moved {moved}");
    p.flush().await.unwrap();
    in_sync(&nodes[0], 1).await;
    assert_eq!(nodes[1].res.status().disk, DiskState::UpToDate);
    same_data(&[&nodes[0], &nodes[1]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_refuse_what_they_cannot_do() {
    let nodes = cluster(3, SIZE, Protocol::C, &[2]).await;
    let s = &nodes[1].res;
    // Unknown peer, diskless peer, diskless node.
    assert!(
        s.verify(Some(9))
            .unwrap_err()
            .to_string()
            .contains("no peer with node id 9")
    );
    assert!(s.verify(Some(2)).unwrap_err().to_string().contains("diskless"));
    assert!(
        nodes[2]
            .res
            .verify(None)
            .unwrap_err()
            .to_string()
            .contains("diskless")
    );
    assert!(
        nodes[2]
            .res
            .invalidate(None)
            .unwrap_err()
            .to_string()
            .contains("diskless")
    );
    // The peer is Primary: it cannot be overwritten.
    nodes[0].res.primary(false).await.unwrap();
    nodes[1]
        .res
        .wait_for(Duration::from_secs(10), |st| {
            st.peer(0).is_some_and(|p| p.role == replbd_quorum::Role::Primary)
        })
        .await
        .unwrap();
    let e = s.invalidate_remote(0).unwrap_err().to_string();
    assert!(e.contains("Primary"), "{e}");
    // A second verify while one runs on the same connection.
    nodes[0].res.verify(Some(1)).unwrap();
    let e = nodes[0].res.verify(Some(1)).unwrap_err().to_string();
    assert!(e.contains("verify") || e.contains("VerifyS"), "{e}");
}
