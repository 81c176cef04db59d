//! Keeping one peer connected.
//!
//! ```text
//!        ┌──────────── backoff (100 ms … 5 s) ◀─────────────┐
//!        ▼                                                  │ failure
//!   Connecting ─ dial (lower node id) / accept (higher) ─▶ handshake ─▶ state exchange ─▶ decide
//!                                                                                          │
//!            StandAlone ◀── split brain / unrelated data / refused configuration ◀─────────┤
//!                                                                                          ▼
//!                                             Connected: sender + receiver + watchdog until the link fails
//! ```
//!
//! Between each pair of nodes there is one TCP connection, opened by the node with the lower id.
//! Connection failures never fail application I/O; they mark writes out of sync for the peer.

use std::sync::Arc;

use replbd_quorum::{ConnectionState, ReplicationState, Role, SyncDecision, SyncKind};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::core::{Accepted, Inner, Peer};
use super::epoch;
use super::generation::{disk_from_u8, disk_to_u8, protocol_to_u8, role_from_u8, role_to_u8};
use super::link::Link;
use super::resync::SyncRole;
use super::split_brain::{RrStop, Verdict};
use super::state::Event;
use super::tasks;
use crate::handshake::{self, HandshakeError};
use crate::tls::{self, PeerRead, PeerWrite};
use crate::wire::messages::{self, ErrorCode, ErrorMessage, StateReport};
use crate::wire::{FrameReader, FrameWriter, Kind};

type Reader = FrameReader<PeerRead>;
type Writer = FrameWriter<PeerWrite>;

/// What to check when a TLS handshake fails.
const TLS_HINT: &str =
    "TLS must be on at both ends, with certificates from the same CA, each naming its node";

/// Why an attempt ended.
enum Attempt {
    /// Retry after the backoff.
    Retry(String),
    /// Stop retrying until the administrator connects again (StandAlone).
    StandAlone(String),
}

/// Resolves once the resource goes down or the peer is removed from it.
async fn stopping(shutdown: &mut watch::Receiver<bool>, removed: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => {}
        _ = removed.wait_for(|r| *r) => {}
    }
}

/// Runs one peer's connection loop until the resource goes down or the peer is removed.
pub(crate) async fn run(inner: Arc<Inner>, peer: Arc<Peer>) {
    let node = peer.cfg.node_id;
    let dial = inner.cfg.node_id < node;
    let mut incoming = super::core::lock(&peer.incoming_rx).take();
    let mut shutdown = inner.shutdown.subscribe();
    let mut removed = peer.removed.subscribe();
    let mut wanted = peer.wanted.subscribe();
    let t = inner.cfg.timeouts;
    let mut backoff = t.reconnect_min;
    let mut ever_connected = false;
    loop {
        if inner.is_shutting_down() || *removed.borrow() {
            break;
        }
        let is_wanted = *wanted.borrow();
        if !is_wanted {
            inner.set_connection(node, ConnectionState::StandAlone, None);
            tokio::select! {
                _ = wanted.wait_for(|w| *w) => {}
                _ = stopping(&mut shutdown, &mut removed) => break,
            }
            continue;
        }
        inner.set_connection(node, ConnectionState::Connecting, None);
        let partitioned = || peer.partitioned.load(std::sync::atomic::Ordering::SeqCst);
        let streams = if dial && partitioned() {
            Err(Attempt::Retry("network partition (fault injection)".to_string()))
        } else if dial {
            let dialed = tokio::select! {
                s = dial_peer(&inner, &peer) => s,
                _ = stopping(&mut shutdown, &mut removed) => break,
                _ = wanted.wait_for(|w| !*w) => continue,
            };
            dialed.map_err(Attempt::Retry)
        } else {
            let Some(rx) = incoming.as_mut() else { break };
            let accepted = tokio::select! {
                a = rx.recv() => a,
                _ = stopping(&mut shutdown, &mut removed) => break,
                _ = wanted.wait_for(|w| !*w) => continue,
            };
            match accepted {
                Some(_) if partitioned() => {
                    Err(Attempt::Retry("network partition (fault injection)".to_string()))
                }
                Some(a) => accept_peer(&inner, a).await.map_err(Attempt::Retry),
                None => break,
            }
        };
        let outcome = match streams {
            Ok((r, w)) => {
                let result = connected(&inner, &peer, r, w, ever_connected).await;
                if matches!(result, Attempt::Retry(_)) {
                    ever_connected = true;
                    backoff = t.reconnect_min;
                }
                result
            }
            Err(a) => a,
        };
        match outcome {
            Attempt::Retry(reason) => {
                tracing::info!(resource = %inner.cfg.name, peer = node, reason, "peer connection ended; retrying");
                inner.set_connection(node, ConnectionState::NetworkFailure, Some(reason));
            }
            Attempt::StandAlone(reason) => {
                tracing::error!(resource = %inner.cfg.name, peer = node, reason, "giving up on the peer until `connect`");
                // Before the state is published: a `connect` issued on seeing StandAlone must win.
                peer.wanted.send_replace(false);
                inner.set_connection(node, ConnectionState::StandAlone, Some(reason));
                continue;
            }
        }
        if dial {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopping(&mut shutdown, &mut removed) => break,
            }
            backoff = (backoff * 2).min(t.reconnect_max);
        }
    }
    if let Some(l) = peer.live() {
        l.fail(if *removed.borrow() {
            "the peer was removed from the resource"
        } else {
            "the resource is going down"
        });
    }
    peer.set_link(None);
    peer.ended.send_replace(true);
}

/// Connects to `addr` from this node's own replication address (unless it listens on every
/// address), as DRBD does: the peer, a firewall or a packet capture sees the configured address,
/// not whichever one the routing table picks.
async fn dial_from(local: std::net::IpAddr, addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    if local.is_unspecified() || local.is_ipv4() != addr.is_ipv4() {
        return TcpStream::connect(addr).await;
    }
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    bind_address_no_port(&socket)?;
    socket.bind(std::net::SocketAddr::new(local, 0))?;
    socket.connect(addr).await
}

/// `IP_BIND_ADDRESS_NO_PORT`: binding the source address does not reserve a port; `connect` picks
/// it as it would unbound (shared across destinations). Without it every outgoing connection holds
/// a port of its own that no listener can take, and a node could be refused its listening port.
fn bind_address_no_port(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: `socket` owns a valid descriptor for the whole call; the option value is a live
    // c_int of the size passed, which the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

async fn dial_peer(inner: &Arc<Inner>, peer: &Arc<Peer>) -> Result<(Reader, Writer), String> {
    let addr = peer.cfg.address;
    let t = inner.cfg.timeouts.connect;
    let stream = tokio::time::timeout(t, dial_from(inner.cfg.listen.ip(), addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out after {t:?}"))?
        .map_err(|e| format!("connecting to {addr} failed: {e}"))?;
    let _ = stream.set_nodelay(true);
    let name = inner.node_name(peer.cfg.node_id);
    let (r, w) = tokio::time::timeout(t, tls::connect(inner.cfg.tls.as_ref(), stream, &name, addr.ip()))
        .await
        .map_err(|_| format!("TLS handshake with {addr} timed out after {t:?}"))?
        .map_err(|e| format!("TLS handshake with {name} at {addr} failed: {e} ({TLS_HINT})"))?;
    let (mut r, mut w) = (FrameReader::new(r, false), FrameWriter::new(w, false));
    let agreed = tokio::time::timeout(
        t,
        handshake::connect(&inner.identity, peer.cfg.node_id, &mut r, &mut w),
    )
    .await
    .map_err(|_| format!("handshake with {addr} timed out after {t:?}"))?
    .map_err(|e| describe(inner, peer.cfg.node_id, &e))?;
    w.configure(agreed.version, false);
    Ok((r, w))
}

async fn accept_peer(inner: &Arc<Inner>, a: Accepted) -> Result<(Reader, Writer), String> {
    let Accepted {
        mut reader,
        mut writer,
        hello,
    } = a;
    let t = inner.cfg.timeouts.connect;
    let agreed = tokio::time::timeout(
        t,
        handshake::accept(&inner.identity, &hello, &mut reader, &mut writer),
    )
    .await
    .map_err(|_| format!("handshake with node {} timed out after {t:?}", hello.node))?
    .map_err(|e| describe(inner, hello.node, &e))?;
    writer.configure(agreed.version, false);
    Ok((reader, writer))
}

fn describe(inner: &Inner, node: u8, e: &HandshakeError) -> String {
    let msg = e.to_string();
    if matches!(
        e,
        HandshakeError::AuthFailed { .. }
            | HandshakeError::Refused {
                code: ErrorCode::AuthFailed,
                ..
            }
    ) {
        tracing::error!(resource = %inner.cfg.name, peer = node, error = %msg, "authentication failed");
    }
    msg
}

async fn refuse(w: &mut Writer, code: ErrorCode, message: String) -> Attempt {
    let _ = w
        .send(messages::encode(
            Kind::Error,
            &ErrorMessage {
                code,
                message: message.clone(),
            },
        ))
        .await;
    Attempt::StandAlone(message)
}

/// The connection is authenticated: exchange state, decide, run the link until it fails.
async fn connected(
    inner: &Arc<Inner>,
    peer: &Arc<Peer>,
    mut r: Reader,
    mut w: Writer,
    reconnect: bool,
) -> Attempt {
    let node = peer.cfg.node_id;
    let protocol = peer.cfg.protocol;
    let t = inner.cfg.timeouts.connect;
    let discard_my_data = peer.discard_my_data.load(std::sync::atomic::Ordering::SeqCst);
    let my_changes = match (&inner.disk, peer.slot) {
        (Some(d), Some(slot)) => d.meta.out_of_sync_bytes(slot).unwrap_or(0),
        _ => 0,
    };
    let mut report = inner.state_report_for(protocol, reconnect);
    report.discard_my_data = discard_my_data;
    report.changes = my_changes;
    if let (Some(d), Some(slot)) = (&inner.disk, peer.slot)
        && d.meta.full_sync_pending(slot)
    {
        report.flags |= super::generation::F_FULL_SYNC_FOR_YOU;
    }
    if let Err(e) = w.send(messages::encode(Kind::StateReport, &report)).await {
        return Attempt::Retry(format!("sending state failed: {e}"));
    }
    let theirs: StateReport = match tokio::time::timeout(t, r.read_frame()).await {
        Ok(Ok((h, p))) if h.kind == Kind::StateReport => match messages::decode(Kind::StateReport, &p) {
            Ok(s) => s,
            Err(e) => return Attempt::Retry(e.to_string()),
        },
        Ok(Ok((h, p))) if h.kind == Kind::Error => {
            let m = messages::decode::<ErrorMessage>(Kind::Error, &p)
                .map(|m| m.message)
                .unwrap_or_default();
            return Attempt::StandAlone(format!("the peer refused the connection: {m}"));
        }
        Ok(Ok((h, _))) => return Attempt::Retry(format!("expected the peer's state, got {}", h.kind)),
        Ok(Err(e)) => return Attempt::Retry(format!("receiving state failed: {e}")),
        Err(_) => return Attempt::Retry(format!("the peer sent no state within {t:?}")),
    };
    if theirs.protocol != protocol_to_u8(protocol) {
        let msg = format!(
            "replication protocols differ: node {} uses {protocol} for this connection, node {node} another; configure the same on both",
            inner.cfg.node_id
        );
        return refuse(&mut w, ErrorCode::Incompatible, msg).await;
    }
    if theirs.integrity != inner.cfg.data_integrity {
        let msg = format!(
            "data-integrity differs between node {} and node {node}; configure the same on both",
            inner.cfg.node_id
        );
        return refuse(&mut w, ErrorCode::Incompatible, msg).await;
    }
    let ours_size = inner.disk.as_ref().map_or(0, |d| d.size());
    if ours_size != 0 && theirs.size != 0 && ours_size != theirs.size {
        let msg = format!(
            "volume sizes differ: node {} has {ours_size} bytes, node {node} has {}; resize one side first",
            inner.cfg.node_id, theirs.size
        );
        return refuse(&mut w, ErrorCode::Incompatible, msg).await;
    }
    if inner.disk.is_none() && theirs.size != 0 {
        // A diskless node serves the size its diskful peers have.
        inner
            .size_override
            .store(theirs.size, std::sync::atomic::Ordering::Relaxed);
    }
    // A disk that failed or was detached holds no copy to resync from or to: such a node takes part
    // like a diskless one (a Primary whose disk failed keeps writing through its peers). Deciding
    // with it anyway made every connect to such a Primary a resync that failed at once, and made
    // the connecting node Inconsistent each time (found by `replbd-faults`, seed 31).
    let both_disks = inner.disk.is_some()
        && !inner.is_detached()
        && theirs.size != 0
        && !detached_state(disk_from_u8(theirs.disk));
    let mut split_brain_target = false;
    if both_disks {
        inner.forget_bits_satisfied_elsewhere(peer, &theirs);
    }
    let sync = if both_disks {
        match inner.decide_with(node, protocol, &report, &theirs) {
            Ok(d) => {
                tracing::info!(resource = %inner.cfg.name, peer = node, decision = ?d.outcome, rule = %d.rule, ours = %super::generation::report_gi(&report), theirs = %super::generation::report_gi(&theirs), "handshake decision");
                let d = match inner.check_rr_conflict_with(node, &report, &theirs, d) {
                    Ok(d) => d,
                    Err(RrStop::Retry(why)) => return Attempt::Retry(why),
                    Err(RrStop::StandAlone(why)) => {
                        return refuse(&mut w, ErrorCode::Incompatible, why).await;
                    }
                };
                match d.outcome {
                    SyncDecision::NoSync => marked_blocks_sync(inner, node, &theirs),
                    SyncDecision::BecomeSource { kind } => Some((SyncRole::Source, kind == SyncKind::Full)),
                    SyncDecision::BecomeTarget { kind } => Some((SyncRole::Target, kind == SyncKind::Full)),
                    SyncDecision::SplitBrain { auto_recoverable } => {
                        let (verdict, outcome) =
                            inner.resolve_split_brain_with(node, &report, &theirs, auto_recoverable);
                        tracing::warn!(resource = %inner.cfg.name, peer = node, rule = %d.rule, outcome = %outcome, "split brain detected");
                        inner.emit(Event::SplitBrain {
                            peer: node,
                            outcome: outcome.to_string(),
                        });
                        match verdict {
                            Verdict::Resync { target, full } => {
                                split_brain_target = target;
                                Some((
                                    if target {
                                        SyncRole::Target
                                    } else {
                                        SyncRole::Source
                                    },
                                    full,
                                ))
                            }
                            Verdict::Disconnect(why) => {
                                let msg = format!("split brain detected ({}): {why}", d.rule);
                                return refuse(&mut w, ErrorCode::Incompatible, msg).await;
                            }
                        }
                    }
                    SyncDecision::UnrelatedData => {
                        let msg = format!(
                            "unrelated data ({}): the two disks never held the same data",
                            d.rule
                        );
                        return refuse(&mut w, ErrorCode::Incompatible, msg).await;
                    }
                }
            }
            Err(e) => return Attempt::Retry(format!("cannot decide: {e}")),
        }
    } else {
        None
    };
    let sync = match new_member_full_sync(inner, node, &report, &theirs) {
        Some(full) if both_disks => Some(full),
        _ => sync,
    };
    if let Some((role, _)) = sync
        && let Some(why) = inconsistent_source(inner, node, role, &theirs)
    {
        return Attempt::Retry(why);
    }
    w.configure(crate::wire::MAX_VERSION, inner.cfg.data_integrity);
    r.set_integrity(inner.cfg.data_integrity);
    let (tx, rx) = mpsc::unbounded_channel();
    let meta = inner.disk.as_ref().map(|d| Arc::clone(&d.meta));
    let link = {
        // Registered under the epoch lock: every write dispatched from now on reaches the link, and
        // barriers of epochs closed before it count as acknowledged.
        let ep = epoch::lock(&inner.epochs);
        let link = Arc::new(Link::new(
            node,
            protocol,
            peer.slot,
            meta,
            tx,
            inner.cfg.max_in_flight_bytes,
            ep.last_closed(),
        ));
        peer.set_link(Some(Arc::clone(&link)));
        link
    };
    link.touch();
    if !split_brain_target {
        // Kept through a split-brain resync until it finishes (a reconnect in between needs it).
        peer.discard_my_data
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
    inner.set_connection(node, ConnectionState::Connected, None);
    inner.set_peer_quorate(node, theirs.quorate);
    {
        // The control state learns of a failure before any request on the link completes.
        let weak = Arc::downgrade(inner);
        link.set_on_fail(Box::new(move |reason: &str| {
            if let Some(i) = weak.upgrade() {
                // Before the role is forgotten: a lost Primary's link is drained before this node
                // knows how far it got in its stream, and no promotion may slip in meanwhile.
                if i.peer_role(node) == Role::Primary {
                    i.lost_primary_draining(node);
                }
                i.set_connection(node, ConnectionState::Disconnecting, Some(reason.to_string()));
                i.peer_lost_maybe_fence(node);
            }
        }));
    }
    inner.set_peer_state(node, disk_from_u8(theirs.disk), role_from_u8(theirs.role));
    if role_from_u8(theirs.role) == Role::Primary {
        // A Primary is here (the lost one back, or a new one that settled): its data is the
        // reference, and it resyncs this node as usual.
        inner.lost_primary_forget();
    }
    inner.set_peer_uuid(node, theirs.current_uuid);
    link.set_lineage(&theirs);
    if sync.is_none() {
        inner.set_replication(node, ReplicationState::Established);
    }
    let sender = tokio::spawn(tasks::sender(Arc::clone(&link), rx, w));
    inner.lost_primary_link_up(&link);
    // The resync is set up before the receiver runs: the peer's first bitmap frame may already be
    // on the way.
    if let Some((role, full)) = sync
        && let Err(e) = super::resync::command::begin_resync(inner, &link, role, full, false)
    {
        link.fail(&format!("starting the resync failed: {e}"));
    }
    let receiver = tokio::spawn(tasks::receiver(Arc::clone(inner), Arc::clone(&link), r));
    let watchdog = tokio::spawn(tasks::watchdog(Arc::clone(inner), Arc::clone(&link)));
    let mut dead = link.dead.subscribe();
    let reason = dead
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|d| d.clone())
        .unwrap_or_else(|| "link closed".to_string());
    peer.set_link(None);
    if let Some(rs) = link.resync() {
        rs.link_died();
    }
    let _ = tokio::join!(sender, receiver, watchdog);
    // The resync and its link refer to each other: without this neither is ever freed, and the
    // ranges its unanswered requests hold stay locked against the Primary's writes for ever
    // (`replbd-faults`, seed 31: a node stuck in Disconnecting, its Primary without quorum).
    link.set_resync(None);
    inner.send_peer_acks(inner.peer_acks.gone(node));
    inner.lost_primary_link_down(node);
    inner.primary_link_lost(&link);
    // A diskful peer dropped out while this node is Primary (with or without a disk of its own):
    // the next write starts a new generation, so the peer's return is a bitmap resync.
    if inner.primary.load(std::sync::atomic::Ordering::SeqCst) && !peer.cfg.diskless {
        inner
            .rotate_pending
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    inner.republish();
    Attempt::Retry(reason)
}

/// Handles a new incoming connection: reads its `Hello` and hands it to the peer it names.
pub(crate) async fn route_incoming(inner: Arc<Inner>, stream: TcpStream, from: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let t = inner.cfg.timeouts.connect;
    let (r, w) = match tokio::time::timeout(t, tls::accept(inner.cfg.tls.as_ref(), stream)).await {
        Ok(Ok(halves)) => halves,
        Ok(Err(e)) => {
            tracing::warn!(resource = %inner.cfg.name, %from, error = %e, "rejected an incoming connection: TLS handshake failed ({TLS_HINT})");
            return;
        }
        Err(_) => {
            tracing::warn!(resource = %inner.cfg.name, %from, "rejected an incoming connection: no TLS handshake within {t:?}");
            return;
        }
    };
    let (mut reader, mut writer) = (FrameReader::new(r, false), FrameWriter::new(w, false));
    let hello = match tokio::time::timeout(t, handshake::accept_hello(&mut reader)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(resource = %inner.cfg.name, %from, error = %e, "rejected an incoming connection");
            return;
        }
        Err(_) => {
            tracing::warn!(resource = %inner.cfg.name, %from, "rejected an incoming connection: no hello within {t:?}");
            return;
        }
    };
    let Some(peer) = inner.peer(hello.node) else {
        let e = handshake::refuse_unknown(&mut writer, &inner.identity, &hello).await;
        tracing::warn!(resource = %inner.cfg.name, %from, node = hello.node, error = %e, "rejected an incoming connection");
        return;
    };
    if hello.node > inner.cfg.node_id {
        // The node with the lower id opens the connection; a call the other way is a misconfiguration.
        tracing::warn!(resource = %inner.cfg.name, %from, node = hello.node, "rejected an incoming connection: node {} must wait for node {} to connect (the lower node id connects)", hello.node, inner.cfg.node_id);
        return;
    }
    if peer
        .incoming_tx
        .try_send(Accepted {
            reader,
            writer,
            hello,
        })
        .is_err()
    {
        tracing::warn!(resource = %inner.cfg.name, %from, "rejected an incoming connection: the peer is already connecting");
    }
}

/// Equal generations, yet blocks marked out of sync between the two nodes — by an online verify,
/// or a peer write that failed while connected: resync them, with the Primary as the source (its
/// data is what the application reads). Without a Primary there is no rule to pick the good copy:
/// the blocks stay marked and the administrator chooses with `invalidate` or `invalidate-remote`.
impl Inner {
    /// One of the two nodes completed a resync to the generation both hold now, from a third node,
    /// since they were last connected: the blocks marked between them are already equal (that
    /// source was UpToDate in this generation, which only holds while it got every write of it).
    /// Forget them rather than move them a second time. The peer side: it was resynced while away
    /// from here. This side: the resync data it applied was marked for the absent peer, which has
    /// that data.
    fn forget_bits_satisfied_elsewhere(&self, peer: &Peer, theirs: &StateReport) {
        let (Some(d), Some(slot)) = (&self.disk, peer.slot) else {
            return;
        };
        let current = self.local_gi().current & !1;
        let (_, my_disk) = self.role_and_disk();
        let both_up_to_date = my_disk == replbd_quorum::DiskState::UpToDate
            && disk_from_u8(theirs.disk) == replbd_quorum::DiskState::UpToDate
            && theirs.current_uuid & !1 == current;
        let they_synced = theirs.synced_uuid == current && theirs.synced_from != self.cfg.node_id;
        let we_synced = (*super::core::lock(&self.last_sync))
            .is_some_and(|(uuid, from)| uuid == current && from != peer.cfg.node_id);
        // Not between a Primary and a Secondary: the Primary's marks are writes the peer did not get
        // from it, and the third node may not have had them either (see
        // [`super::resync::Resync::abandon_if_redundant`]).
        let primary_involved = self.role() == Role::Primary || role_from_u8(theirs.role) == Role::Primary;
        let satisfied = current != 0 && both_up_to_date && !primary_involved && (they_synced || we_synced);
        if !satisfied || d.meta.out_of_sync_bits(slot).unwrap_or(0) == 0 {
            return;
        }
        tracing::info!(resource = %self.cfg.name, peer = peer.cfg.node_id, through = theirs.synced_from, bytes = d.meta.out_of_sync_bytes(slot).unwrap_or(0), "the peer was resynced to this generation through another node: its marked blocks need not move again");
        if let Err(e) = d.meta.clear_in_sync(slot, 0, d.size()) {
            tracing::warn!(resource = %self.cfg.name, peer = peer.cfg.node_id, error = %e, "cannot clear the peer's bitmap; the blocks will move again");
        }
    }
}

/// A disk state in which a node has no data to offer or take.
fn detached_state(d: replbd_quorum::DiskState) -> bool {
    use replbd_quorum::DiskState::{Detaching, Diskless, Failed};
    matches!(d, Diskless | Failed | Detaching)
}

/// Why the resync the handshake decided cannot start now: its source's disk is Inconsistent
/// (DRBD: "I shall become SyncSource, but I am inconsistent!"). A half-synced disk is no copy of
/// any generation; a target taking it would adopt a generation its data does not match and report
/// UpToDate with old blocks (found by `replbd-faults`, seed 31: a node resynced in full from a peer
/// restarted in the middle of its own resync, and acknowledged writes were lost). The connection
/// is retried; once the source completed its own resync it decides again.
fn inconsistent_source(inner: &Inner, node: u8, role: SyncRole, theirs: &StateReport) -> Option<String> {
    use replbd_quorum::DiskState::Inconsistent;
    match role {
        SyncRole::Source if inner.role_and_disk().1 == Inconsistent => Some(format!(
            "this node would be the sync source of node {node}, but its own disk is Inconsistent: waiting until it has a complete copy"
        )),
        SyncRole::Target if disk_from_u8(theirs.disk) == Inconsistent => Some(format!(
            "node {node} would be the sync source, but its disk is Inconsistent: waiting until it has a complete copy"
        )),
        _ => None,
    }
}

/// A peer added to the running resource on one side (its slot there flagged `full-sync`, see
/// [`super::membership`]) gets a full sync from that side, whatever the identifiers decided,
/// provided that side is UpToDate and the added peer is not Primary. Decided from the two reports
/// alone, so both ends agree. Both sides flagged: the identifiers decide (with a warning).
fn new_member_full_sync(
    inner: &Inner,
    node: u8,
    ours: &StateReport,
    theirs: &StateReport,
) -> Option<(SyncRole, bool)> {
    use super::generation::F_FULL_SYNC_FOR_YOU;
    let up_to_date = disk_to_u8(replbd_quorum::DiskState::UpToDate);
    let primary = role_to_u8(Role::Primary);
    let we_flagged = ours.flags & F_FULL_SYNC_FOR_YOU != 0;
    let they_flagged = theirs.flags & F_FULL_SYNC_FOR_YOU != 0;
    match (we_flagged, they_flagged) {
        (true, true) => {
            tracing::warn!(resource = %inner.cfg.name, peer = node, "each node was added to the other at run time: the generation identifiers decide the resync");
            None
        }
        (true, false) if ours.disk == up_to_date && theirs.role != primary => {
            tracing::info!(resource = %inner.cfg.name, peer = node, "the peer was added to this running resource: a full sync from this node");
            Some((SyncRole::Source, true))
        }
        (false, true) if theirs.disk == up_to_date && ours.role != primary => {
            tracing::info!(resource = %inner.cfg.name, peer = node, "this node was added to the peer's running resource: a full sync from it");
            Some((SyncRole::Target, true))
        }
        _ => None,
    }
}

fn marked_blocks_sync(inner: &Inner, node: u8, theirs: &StateReport) -> Option<(SyncRole, bool)> {
    let ours = inner
        .peer(node)
        .and_then(|p| p.slot)
        .zip(inner.disk.as_ref())
        .is_some_and(|(s, d)| d.meta.out_of_sync_bits(s).unwrap_or(0) > 0);
    let theirs_marked = theirs.dirty_for.contains(&inner.cfg.node_id);
    let same_generation = theirs.current_uuid & !1 == inner.local_gi().current & !1;
    if !same_generation || (!ours && !theirs_marked) {
        return None;
    }
    let we_primary = inner.role() == Role::Primary;
    let they_primary = role_from_u8(theirs.role) == Role::Primary;
    match (we_primary, they_primary) {
        (true, false) => Some((SyncRole::Source, false)),
        (false, true) => Some((SyncRole::Target, false)),
        _ => {
            tracing::warn!(resource = %inner.cfg.name, peer = node, "blocks are marked out of sync with this peer but neither node is Primary to be the sync source: run `invalidate` on the node whose copy is wrong, or `invalidate-remote` on the one whose copy is right");
            None
        }
    }
}
