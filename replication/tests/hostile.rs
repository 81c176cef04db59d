//! Peers that misbehave: a wrong shared secret, a protocol version nobody speaks, garbage instead of
//! frames, a peer that authenticates and then stops reading, a peer asking for another resource,
//! and an authenticated peer sending writes outside the volume, misaligned, or to a Primary. Each is
//! refused or disconnected with a reason naming what was wrong, no data is touched, and the resource
//! keeps serving I/O.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use replbd_quorum::{ConnectionState, DiskState, Protocol, Role};
use replbd_replication::engine::Event;
use replbd_replication::handshake::{self, Identity};
use replbd_replication::wire::messages::{self, ErrorMessage, Hello, StateReport};
use replbd_replication::wire::{FrameHeader, FrameReader, FrameWriter, Kind, OutFrame};
use replbd_replication::{BlockVolume, Resource, WriteFlags};
use support::{SECRET, UUID, block, config, disk, free_ports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1 << 20;

async fn single_primary(addrs: &[std::net::SocketAddr], secret: &[u8]) -> Resource {
    let mut cfg = config(0, addrs, Protocol::C, &[]);
    cfg.secret = secret.to_vec();
    let (d, _) = disk(16 * MIB, 1, 0);
    Resource::start(cfg, Some(d)).await.unwrap()
}

/// What a well-behaved peer in `role`, UpToDate at [`UUID`] on a 16 MiB volume, reports at connect
/// time: the generations match, so no resync follows.
fn state_report(role: Role) -> StateReport {
    StateReport {
        role: u8::from(role == Role::Primary),
        disk: DiskState::ALL
            .iter()
            .position(|d| *d == DiskState::UpToDate)
            .unwrap() as u8,
        size: 16 * MIB,
        protocol: 2,
        integrity: false,
        current_uuid: UUID,
        bitmap_uuids: vec![],
        history: vec![],
        flags: 3,
        dagtag: 0,
        reconnect: false,
        dirty_for: vec![],
        replicating: 0,
        quorate: true,
        discard_my_data: false,
        changes: 0,
        synced_uuid: 0,
        synced_from: 0,
    }
}

/// Node 1 of `addrs`, with node 0 played by the test (node 1 never dials it): its resource and
/// its disk's store.
async fn node_1_alone(
    addrs: &[std::net::SocketAddr],
) -> (Resource, std::sync::Arc<replbd_replication::store::MemStore>) {
    let mut cfg = config(1, addrs, Protocol::C, &[]);
    cfg.peers[0].address = "127.0.0.1:9".parse().unwrap();
    let (d, store) = disk(16 * MIB, 1, 1);
    (Resource::start(cfg, Some(d)).await.unwrap(), store)
}

/// Waits for a connection event about `peer` whose reason contains `needle`.
async fn reason_seen(events: &mut tokio::sync::broadcast::Receiver<Event>, peer: u8, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(Event::Connection {
                peer: p,
                reason: Some(r),
                ..
            })) if p == peer && r.contains(needle) => return r,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event stream ended: {e}"),
            Err(_) => panic!("no connection event about node {peer} mentioning {needle:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_shared_secret_never_connects_and_io_goes_on() {
    let addrs = free_ports(2);
    let a = single_primary(&addrs, SECRET).await;
    let mut events = a.events();
    let mut cfg = config(1, &addrs, Protocol::C, &[]);
    cfg.secret = b"not-the-secret".to_vec();
    let (d, _) = disk(16 * MIB, 1, 1);
    let b = Resource::start(cfg, Some(d)).await.unwrap();
    let reason = reason_seen(&mut events, 1, "authentication failed").await;
    assert!(reason.contains("shared secret"), "{reason}");
    a.primary(false).await.unwrap();
    a.write(0, block(0), WriteFlags::default()).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(
        a.status().peer(1).unwrap().out_of_sync,
        4096,
        "the unauthenticated peer got nothing"
    );
    assert_ne!(b.status().peer(0).unwrap().connection, ConnectionState::Connected);
    a.down().await.unwrap();
    b.down().await.unwrap();
}

/// A raw client talking to node 1 (which accepts from node 0).
async fn raw_to_acceptor(target: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect(target).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_protocol_version_is_refused_with_an_explanation() {
    let addrs = free_ports(2);
    let (b, _) = node_1_alone(&addrs).await;
    let (r, w) = raw_to_acceptor(addrs[1]).await.into_split();
    let (mut r, mut w) = (FrameReader::new(r, false), FrameWriter::new(w, false));
    let hello = Hello {
        min_version: 7,
        max_version: 9,
        resource: "r0".into(),
        node: 0,
        peer: 1,
        nonce: [1; 32],
    };
    w.send(messages::encode(Kind::Hello, &hello)).await.unwrap();
    let (h, payload) = r.read_frame().await.unwrap();
    assert_eq!(h.kind, Kind::Error);
    let e: ErrorMessage = messages::decode(Kind::Error, &payload).unwrap();
    assert!(e.message.contains("no common protocol version"), "{}", e.message);
    assert!(
        r.read_frame().await.is_err(),
        "the connection is closed after the error"
    );
    // Still serving.
    b.primary(false).await.unwrap();
    b.write(0, block(1), WriteFlags::default()).await.unwrap();
    b.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection_and_nothing_else() {
    let addrs = free_ports(2);
    let (b, store) = node_1_alone(&addrs).await;
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0u8; 100],
        (0..=255u8).cycle().take(5000).collect(),
    ] {
        let mut s = raw_to_acceptor(addrs[1]).await;
        s.write_all(&garbage).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "the node closes the connection without answering garbage");
    }
    // A truncated hello.
    let mut s = raw_to_acceptor(addrs[1]).await;
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        resource: "r0".into(),
        node: 0,
        peer: 1,
        nonce: [1; 32],
    };
    let frame = messages::encode(Kind::Hello, &hello);
    let mut bytes = frame.header.encode().to_vec();
    bytes.truncate(20);
    s.write_all(&bytes).await.unwrap();
    drop(s);
    assert!(store.write_log().is_empty(), "no data was touched");
    b.primary(false).await.unwrap();
    b.write(4096, block(2), WriteFlags::default()).await.unwrap();
    assert_eq!(store.write_log(), vec![4096]);
    b.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_disconnected_and_writes_complete() {
    let addrs = free_ports(2);
    // The fake node 1 accepts node 0's connection, authenticates, reports matching state, then
    // never reads again.
    let listener = TcpListener::bind(addrs[1]).await.unwrap();
    let fake = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, w) = s.into_split();
        let (mut r, mut w) = (FrameReader::new(r, false), FrameWriter::new(w, false));
        let me = Identity::new("r0", 1, SECRET);
        let hello = handshake::accept_hello(&mut r).await.unwrap();
        handshake::accept(&me, &hello, &mut r, &mut w).await.unwrap();
        let (_, _) = r.read_frame().await.unwrap(); // node 0's state
        let report = state_report(Role::Secondary);
        w.send(messages::encode(Kind::StateReport, &report))
            .await
            .unwrap();
        // Hold the socket open without reading.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop((r, w));
    });
    let a = single_primary(&addrs, SECRET).await;
    a.wait_for(Duration::from_secs(10), |s| {
        s.peer(1).unwrap().connection == ConnectionState::Connected
    })
    .await
    .unwrap();
    let mut events = a.events();
    a.primary(false).await.unwrap();
    let started = Instant::now();
    for i in 0..64u64 {
        a.write(
            i * 65536,
            bytes::Bytes::from(vec![i as u8; 65536]),
            WriteFlags::default(),
        )
        .await
        .unwrap();
    }
    let took = started.elapsed();
    // Whichever fires first, the acknowledgement timeout or the keepalive, names a timeout.
    let reason = reason_seen(&mut events, 1, "timeout").await;
    assert!(took < Duration::from_secs(10), "writes stalled for {took:?}");
    assert!(
        reason.contains("did not acknowledge") || reason.contains("no answer from the peer"),
        "{reason}"
    );
    assert_eq!(
        a.status().peer(1).unwrap().out_of_sync,
        64 * 65536,
        "every write is marked for the stalled peer"
    );
    a.down().await.unwrap();
    fake.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_for_another_resource_is_refused_with_the_resource_named() {
    let addrs = free_ports(2);
    let (b, store) = node_1_alone(&addrs).await;
    let (r, w) = raw_to_acceptor(addrs[1]).await.into_split();
    let (mut r, mut w) = (FrameReader::new(r, false), FrameWriter::new(w, false));
    let me = Identity::new("r1", 0, SECRET);
    let refused = handshake::connect(&me, 1, &mut r, &mut w).await;
    let e = refused.expect_err("a hello for resource r1 reached r0's port");
    assert!(e.to_string().contains("has no resource \"r1\""), "{e}");
    assert!(store.write_log().is_empty(), "no data was touched");
    b.primary(false).await.unwrap();
    b.write(0, block(3), WriteFlags::default()).await.unwrap();
    b.down().await.unwrap();
}

/// An authenticated fake node 0 in `role`, connected to node 1 at `target`, past the state
/// exchange: what it writes next is applied by node 1 like a real peer's frames.
async fn authenticated_peer(
    target: std::net::SocketAddr,
    role: Role,
) -> (
    FrameReader<tokio::net::tcp::OwnedReadHalf>,
    FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
    u16,
) {
    let (r, w) = raw_to_acceptor(target).await.into_split();
    let (mut r, mut w) = (FrameReader::new(r, false), FrameWriter::new(w, false));
    let me = Identity::new("r0", 0, SECRET);
    let agreed = handshake::connect(&me, 1, &mut r, &mut w).await.unwrap();
    w.send(messages::encode(Kind::StateReport, &state_report(role)))
        .await
        .unwrap();
    let (h, _) = r.read_frame().await.unwrap();
    assert_eq!(h.kind, Kind::StateReport, "node 1 answers with its state");
    (r, w, agreed.version)
}

/// A replication request from the fake peer: `kind` at `sector` with `payload`.
fn request(version: u16, kind: Kind, seq: u64, sector: u64, payload: Vec<u8>) -> OutFrame {
    let mut header = FrameHeader::new(kind);
    header.version = version;
    header.seq = seq;
    header.sector = sector;
    header.aux = 1; // the epoch
    OutFrame {
        header,
        payload: payload.into(),
    }
}

/// Reads from node 1 until it closes the connection (it may send keepalives or state first).
async fn closed_by_node(r: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.read_frame()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) => panic!("node 1 kept the connection of a peer that sent an invalid request"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_peer_writing_outside_the_volume_is_disconnected_with_the_reason() {
    let addrs = free_ports(2);
    let (b, store) = node_1_alone(&addrs).await;
    let mut events = b.events();
    let end_sector = 16 * MIB / 512;
    let zeroes_len = |len: u64| len.to_le_bytes().to_vec();
    let cases: Vec<(&str, Kind, u64, Vec<u8>, &str)> = vec![
        (
            "a write past the end",
            Kind::Data,
            end_sector,
            vec![7; 4096],
            "outside this node's 16777216-byte volume",
        ),
        (
            "a write straddling the end",
            Kind::Data,
            end_sector - 4,
            vec![7; 4096],
            "outside this node's",
        ),
        (
            "a write of 100 bytes",
            Kind::Data,
            0,
            vec![7; 100],
            "not 512-byte aligned",
        ),
        (
            "a sector that overflows",
            Kind::Data,
            u64::MAX / 256,
            vec![7; 4096],
            "overflows",
        ),
        (
            "zeroing to the end of u64",
            Kind::WriteZeroes,
            8,
            zeroes_len(u64::MAX - 4095),
            "outside this node's",
        ),
        (
            "zeroing of nothing",
            Kind::WriteZeroes,
            8,
            zeroes_len(0),
            "outside this node's",
        ),
        (
            "zeroing without a length",
            Kind::WriteZeroes,
            8,
            vec![1, 2, 3],
            "without an 8-byte length",
        ),
    ];
    for (what, kind, sector, payload, needle) in cases {
        let (mut r, mut w, version) = authenticated_peer(addrs[1], Role::Primary).await;
        b.wait_for(Duration::from_secs(10), |s| {
            s.peer(0).unwrap().connection == ConnectionState::Connected
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: the fake peer never connected: {e}"));
        w.send(request(version, kind, 1, sector, payload)).await.unwrap();
        let reason = reason_seen(&mut events, 0, needle).await;
        assert!(
            reason.contains(&kind.to_string()),
            "{what}: the reason names the request: {reason}"
        );
        closed_by_node(&mut r).await;
        assert!(store.write_log().is_empty(), "{what}: no data was touched");
    }
    // The volume is intact and node 1 serves on its own.
    b.primary(false).await.unwrap();
    b.write(8192, block(4), WriteFlags::default()).await.unwrap();
    assert_eq!(store.write_log(), vec![8192]);
    b.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_writing_to_a_primary_is_disconnected_and_the_primary_keeps_its_data() {
    let addrs = free_ports(2);
    let (b, store) = node_1_alone(&addrs).await;
    b.primary(false).await.unwrap();
    b.write(0, block(5), WriteFlags::default()).await.unwrap();
    let mut events = b.events();
    let (mut r, mut w, version) = authenticated_peer(addrs[1], Role::Secondary).await;
    w.send(request(version, Kind::Data, 1, 0, vec![9; 4096]))
        .await
        .unwrap();
    let reason = reason_seen(&mut events, 0, "while this node is Primary").await;
    assert!(reason.contains("two primaries"), "{reason}");
    closed_by_node(&mut r).await;
    assert_eq!(
        store.write_log(),
        vec![0],
        "only the Primary's own write reached its disk"
    );
    assert!(
        b.read(0, 4096).await.unwrap() == block(5),
        "the Primary's block is its own"
    );
    b.down().await.unwrap();
}

/// A `LostPrimary` that names no other node of the resource, or carries a query flag that is
/// neither a question nor an answer, disconnects the peer with the reason; the node serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_lost_primary_claim_is_disconnected_with_the_reason() {
    let addrs = free_ports(2);
    let (b, store) = node_1_alone(&addrs).await;
    let mut events = b.events();
    let claim = |version: u16, about: u64, flag: u64| {
        let mut header = FrameHeader::new(Kind::LostPrimary);
        header.version = version;
        header.aux = about;
        header.seq = 42;
        header.sector = flag;
        OutFrame::bare(header)
    };
    let cases: [(&str, u64, u64, &str); 4] = [
        (
            "a node the resource does not have",
            7,
            1,
            "node 7, which is not another node",
        ),
        ("no node id at all", 300, 1, "node 300, which is not another node"),
        ("the sender itself", 0, 1, "node 0, which is not another node"),
        ("an unknown query flag", 1, 5, "query flag is 5"),
    ];
    for (what, about, flag, needle) in cases {
        let (mut r, mut w, version) = authenticated_peer(addrs[1], Role::Secondary).await;
        b.wait_for(Duration::from_secs(10), |s| {
            s.peer(0).unwrap().connection == ConnectionState::Connected
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: the fake peer never connected: {e}"));
        w.send(claim(version, about, flag)).await.unwrap();
        let reason = reason_seen(&mut events, 0, needle).await;
        assert!(
            reason.contains("LostPrimary"),
            "{what}: the reason names the frame: {reason}"
        );
        closed_by_node(&mut r).await;
    }
    b.primary(false).await.unwrap();
    b.write(0, block(6), WriteFlags::default()).await.unwrap();
    assert_eq!(store.write_log(), vec![0]);
    b.down().await.unwrap();
}
