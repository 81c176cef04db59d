//! The shared internals of a running resource.
//!
//! Two kinds of state live here, kept apart on purpose:
//! - the **data path** (epoch tracker, live links, request ids) is touched by every I/O and uses
//!   short, fine-grained locks and atomics;
//! - the **control state** (role, disk state, each peer's connection and replication state) has one
//!   owner, [`Control`], behind one mutex; every change goes through it, emits an [`Event`] and
//!   republishes the [`Status`], so observers never see a state that was not reported.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use replbd_bitmap::{NodeFlags, PeerSlot};
use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};
use tokio::sync::{broadcast, mpsc, watch};

use super::config::{PeerConfig, ResourceConfig};
use super::epoch::Epochs;
use super::link::Link;
use super::local::LocalDisk;
use super::state::{Event, PeerStatus, Status};
use crate::handshake::Identity;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An accepted connection whose `Hello` named this peer, handed from the listener to the peer's task.
pub(crate) struct Accepted {
    pub reader: crate::wire::FrameReader<crate::tls::PeerRead>,
    pub writer: crate::wire::FrameWriter<crate::tls::PeerWrite>,
    pub hello: crate::wire::messages::Hello,
}

/// One configured peer.
pub(crate) struct Peer {
    pub cfg: PeerConfig,
    /// Our bitmap slot for it (diskful peer, and we have a disk).
    pub slot: Option<PeerSlot>,
    /// The live link, while connected.
    pub link: RwLock<Option<Arc<Link>>>,
    /// Accepted connections for this peer.
    pub incoming_tx: mpsc::Sender<Accepted>,
    pub incoming_rx: Mutex<Option<mpsc::Receiver<Accepted>>>,
    /// Whether the administrator wants this peer connected.
    pub wanted: watch::Sender<bool>,
    /// `connect --discard-my-data`: resolve a split brain with this peer by dropping our changes.
    /// Cleared by the next successful handshake.
    pub discard_my_data: AtomicBool,
    /// A simulated network partition (fault injection): no connection to this peer forms.
    pub partitioned: AtomicBool,
    /// Its name (log lines, handlers), `fencing` and `on-congestion` policies.
    pub name: String,
    pub fencing: replbd_quorum::FencingPolicy,
    pub on_congestion: replbd_quorum::options::OnCongestion,
    /// Set when the peer is removed from the resource: its connection task ends.
    pub removed: watch::Sender<bool>,
    /// Set by its connection task as it ends.
    pub ended: watch::Sender<bool>,
}

impl Peer {
    /// The live link, if any.
    pub fn live(&self) -> Option<Arc<Link>> {
        self.link
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|l| !l.is_dead())
            .cloned()
    }

    /// Replaces the link.
    pub fn set_link(&self, link: Option<Arc<Link>>) {
        *self.link.write().unwrap_or_else(PoisonError::into_inner) = link;
    }
}

/// The view of one peer held by [`Control`].
#[derive(Clone, Debug)]
pub(crate) struct PeerView {
    pub connection: ConnectionState,
    pub replication: ReplicationState,
    pub disk: DiskState,
    pub role: Role,
    /// The peer's current UUID as last reported (primary bit masked).
    pub uuid: u64,
    /// The peer reported having quorum.
    pub quorate: bool,
    /// The peer said it is leaving on purpose (down or disconnect), not failing.
    pub leaving: bool,
    /// While not connected: what is known about it, for the quorum count.
    pub absence: replbd_quorum::quorum::Absence,
}

impl PeerView {
    /// A peer never heard from.
    pub fn unknown() -> PeerView {
        PeerView {
            connection: ConnectionState::StandAlone,
            replication: ReplicationState::Off,
            disk: DiskState::DUnknown,
            role: Role::Unknown,
            uuid: 0,
            quorate: false,
            leaving: false,
            absence: replbd_quorum::quorum::Absence::Unknown,
        }
    }
}

/// Role, disk and peer states: the single owner of control state.
#[derive(Debug)]
pub(crate) struct Control {
    pub role: Role,
    pub disk: DiskState,
    pub peers: BTreeMap<u8, PeerView>,
    /// The quorum verdict for the state above (see [`super::quorum`]).
    pub quorum: replbd_quorum::QuorumVerdict,
}

pub(crate) struct Inner {
    pub cfg: ResourceConfig,
    pub identity: Identity,
    pub disk: Option<LocalDisk>,
    pub size: u64,
    /// The configured peers. Replaced as a whole when the administrator adds or removes one
    /// ([`super::membership`]); readers take a snapshot with [`Inner::peers`].
    pub peer_list: RwLock<Arc<Vec<Arc<Peer>>>>,
    /// `quorum`, `quorum-minimum-redundancy`, `on-no-quorum`: from the configuration, changed
    /// with the peers (a cluster manager sets quorum by the number of replicas).
    pub quorum_cfg: RwLock<replbd_quorum::QuorumConfig>,
    pub epochs: Mutex<Epochs>,
    /// Wakes the task sending barriers no write took along ([`super::epoch`]).
    pub(crate) barrier_timer: tokio::sync::Notify,
    pub next_seq: AtomicU64,
    /// Fast check for the write path.
    pub primary: AtomicBool,
    pub control: Mutex<Control>,
    pub status_tx: watch::Sender<Status>,
    pub events_tx: broadcast::Sender<Event>,
    pub shutdown: watch::Sender<bool>,
    pub round_robin: AtomicUsize,
    /// Application requests in flight (demotion waits for zero).
    pub active_io: AtomicU64,
    pub io_idle: tokio::sync::Notify,
    /// The Primary lost a peer: the next write starts a new data generation first.
    pub rotate_pending: AtomicBool,
    pub rotation: tokio::sync::Mutex<()>,
    /// Volume size for a diskless node, learned from peers (0 until known).
    pub size_override: AtomicU64,
    /// The data generation a diskless node presents: learned from UpToDate peers while Secondary,
    /// created by itself as Primary (see [`Inner::new_data_generation`]). 0 until known.
    pub diskless_uuid: AtomicU64,
    /// Range locks for writes and resync reads.
    pub intervals: Arc<super::intervals::Intervals>,
    /// Arrival order of everything applied from peers (writes, resync data), across connections.
    pub apply_order: Arc<super::intervals::Intervals>,
    /// As Primary: which peers hold each epoch (see [`super::peer_ack`]).
    pub peer_acks: super::peer_ack::Tracker,
    /// The generation this node last completed a resync to as target, and the source (see
    /// [`Inner::forget_bits_satisfied_elsewhere`]).
    pub last_sync: Mutex<Option<(u64, u8)>>,
    /// Fence-peer handlers running with `resource-and-stonith` (or failed, until `resume-io`):
    /// application I/O is frozen while this is above zero.
    pub frozen: watch::Sender<u32>,
    /// Peers fenced by a handler, for `unfence-peer` once every peer is UpToDate again.
    pub fenced: Mutex<std::collections::BTreeSet<u8>>,
    /// The local disk failed and is out of service (see [`super::detach`]).
    pub detached: AtomicBool,
    /// Whether this node has quorum now (what suspended I/O waits on).
    pub quorum_tx: watch::Sender<bool>,
    /// When application writes last passed through this node (ms since `born`).
    pub last_app_io_ms: AtomicU64,
    pub born: std::time::Instant,
    /// After losing a Primary: how much of its writes each Secondary holds (see
    /// [`super::lost_primary`]).
    pub lost_primary: super::lost_primary::Settlement,
}

/// The disk state metadata implies before any peer is heard.
pub(crate) fn disk_state_from_flags(flags: NodeFlags) -> DiskState {
    if !flags.contains(NodeFlags::CONSISTENT) {
        DiskState::Inconsistent
    } else if flags.contains(NodeFlags::WAS_UP_TO_DATE) {
        DiskState::UpToDate
    } else {
        DiskState::Outdated
    }
}

impl Inner {
    /// The volume size: the local disk's, or for a diskless node the size its peers reported.
    pub fn volume_size(&self) -> u64 {
        if self.size > 0 {
            self.size
        } else {
            self.size_override.load(Ordering::Relaxed)
        }
    }

    /// The quorum options in force.
    pub fn quorum_config(&self) -> replbd_quorum::QuorumConfig {
        *self.quorum_cfg.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the configured peers.
    pub fn peers(&self) -> Arc<Vec<Arc<Peer>>> {
        Arc::clone(&self.peer_list.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn peer(&self, node: u8) -> Option<Arc<Peer>> {
        self.peers().iter().find(|p| p.cfg.node_id == node).cloned()
    }

    /// A node's name for log lines, handlers and `discard-node-NAME`: this node's or a configured
    /// peer's from the configuration, `node<ID>` when it has none.
    pub fn node_name(&self, id: u8) -> String {
        match self.peer(id) {
            Some(p) if id != self.cfg.node_id => p.name.clone(),
            _ => self.cfg.node_name(id),
        }
    }

    /// A fresh request id.
    pub fn seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Applies `f` to the control state, then emits `events` and republishes the status.
    pub fn change(&self, f: impl FnOnce(&mut Control) -> Vec<Event>) {
        let (events, status, quorum_changed) = {
            let mut c = lock(&self.control);
            let mut events = f(&mut c);
            self.primary.store(c.role == Role::Primary, Ordering::SeqCst);
            let quorum_changed = self.reevaluate_quorum(&mut c, &mut events);
            (events, self.snapshot(&c), quorum_changed)
        };
        for e in events {
            tracing::info!(resource = %self.cfg.name, event = %e, "state change");
            let _ = self.events_tx.send(e);
        }
        self.status_tx.send_replace(status);
        if let Some(have) = quorum_changed {
            self.quorum_changed(have);
        }
    }

    /// Reports an event that changes no state.
    pub fn emit(&self, e: Event) {
        self.change(|_| vec![e]);
    }

    /// Records whether a connected peer reports quorum (a diskless client's quorum depends on it).
    pub fn set_peer_quorate(&self, node: u8, quorate: bool) {
        self.change(|c| {
            if let Some(v) = c.peers.get_mut(&node) {
                v.quorate = quorate;
            }
            Vec::new()
        });
    }

    /// Republishes the status (e.g. after out-of-sync counts changed).
    pub fn republish(&self) {
        let status = self.snapshot(&lock(&self.control));
        self.status_tx.send_replace(status);
    }

    fn snapshot(&self, c: &Control) -> Status {
        let peers = self
            .peers()
            .iter()
            .map(|p| {
                let v = c.peers.get(&p.cfg.node_id);
                let out_of_sync = match (&self.disk, p.slot) {
                    (Some(d), Some(slot)) => d.meta.out_of_sync_bytes(slot).unwrap_or(0),
                    _ => 0,
                };
                let sync = p
                    .live()
                    .and_then(|l| l.resync())
                    .filter(|r| r.running())
                    .map(|r| r.progress());
                PeerStatus {
                    sync,
                    node: p.cfg.node_id,
                    connection: v.map_or(ConnectionState::StandAlone, |v| v.connection),
                    replication: v.map_or(ReplicationState::Off, |v| v.replication),
                    disk: v.map_or(DiskState::DUnknown, |v| v.disk),
                    role: v.map_or(Role::Unknown, |v| v.role),
                    out_of_sync,
                }
            })
            .collect();
        Status {
            name: self.cfg.name.clone(),
            node: self.cfg.node_id,
            role: c.role,
            disk: c.disk,
            quorum: c.quorum.have_quorum,
            peers,
        }
    }

    /// Sets a peer's connection state (with the reason for a failure).
    pub fn set_connection(&self, node: u8, state: ConnectionState, reason: Option<String>) {
        self.change(|c| {
            let had_quorum = c.quorum.have_quorum;
            let v = c.peers.entry(node).or_insert_with(PeerView::unknown);
            let mut events = Vec::new();
            if v.connection == ConnectionState::Connected && state != ConnectionState::Connected {
                v.absence = super::quorum::absence_on_leaving(v, had_quorum);
                v.leaving = false;
                v.quorate = false;
            }
            if v.connection != state {
                v.connection = state;
                events.push(Event::Connection {
                    peer: node,
                    state,
                    reason,
                });
            }
            if state != ConnectionState::Connected {
                if v.replication != ReplicationState::Off {
                    v.replication = ReplicationState::Off;
                    events.push(Event::Replication {
                        peer: node,
                        state: ReplicationState::Off,
                    });
                }
                v.disk = DiskState::DUnknown;
                v.role = Role::Unknown;
            }
            events
        });
    }

    /// A peer's replication state.
    pub fn replication(&self, node: u8) -> ReplicationState {
        lock(&self.control)
            .peers
            .get(&node)
            .map_or(ReplicationState::Off, |v| v.replication)
    }

    /// Sets a peer's replication state.
    pub fn set_replication(&self, node: u8, state: ReplicationState) {
        self.change(|c| match c.peers.get_mut(&node) {
            Some(v) if v.replication != state => {
                v.replication = state;
                vec![Event::Replication { peer: node, state }]
            }
            _ => Vec::new(),
        });
    }

    /// Records a peer's reported disk state and role.
    pub fn set_peer_state(&self, node: u8, disk: DiskState, role: Role) {
        self.change(|c| match c.peers.get_mut(&node) {
            Some(v) if v.disk != disk || v.role != role => {
                v.disk = disk;
                v.role = role;
                vec![Event::PeerState {
                    peer: node,
                    disk,
                    role,
                }]
            }
            _ => Vec::new(),
        });
    }

    /// Live links to every peer.
    pub fn live_links(&self) -> Vec<Arc<Link>> {
        self.peers().iter().filter_map(|p| p.live()).collect()
    }

    /// Live links to the peers that store data: writes and barriers go only to them (a diskless
    /// peer, such as a tiebreaker, has nowhere to put them).
    pub fn live_data_links(&self) -> Vec<Arc<Link>> {
        self.peers()
            .iter()
            .filter(|p| !p.cfg.diskless)
            .filter_map(|p| p.live())
            .collect()
    }

    /// The role and disk state now.
    pub fn role_and_disk(&self) -> (Role, DiskState) {
        let c = lock(&self.control);
        (c.role, c.disk)
    }

    /// Notes application I/O passing through this node (for resync throttling).
    pub fn note_app_io(&self) {
        self.last_app_io_ms
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// True while application writes arrived in the last 100 ms.
    pub fn app_active(&self) -> bool {
        let last = self.last_app_io_ms.load(Ordering::Relaxed);
        last > 0 && (self.born.elapsed().as_millis() as u64).saturating_sub(last) < 100
    }

    /// Connected peers that are Primary.
    pub fn primary_peers(&self) -> Vec<u8> {
        let c = lock(&self.control);
        c.peers
            .iter()
            .filter(|(_, v)| v.connection == ConnectionState::Connected && v.role == Role::Primary)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Records a peer's reported current UUID.
    pub fn set_peer_uuid(&self, node: u8, uuid: u64) {
        if let Some(v) = lock(&self.control).peers.get_mut(&node) {
            v.uuid = uuid & !1;
        }
    }

    /// A peer's reported disk state and current UUID.
    pub fn peer_disk_and_uuid(&self, node: u8) -> (DiskState, u64) {
        lock(&self.control)
            .peers
            .get(&node)
            .map_or((DiskState::DUnknown, 0), |v| (v.disk, v.uuid))
    }

    /// A peer's role as last reported.
    pub fn peer_role(&self, node: u8) -> Role {
        lock(&self.control)
            .peers
            .get(&node)
            .map_or(Role::Unknown, |v| v.role)
    }

    /// Peers that currently report an UpToDate disk over a live link.
    pub fn up_to_date_peers(&self) -> Vec<Arc<Link>> {
        let c = lock(&self.control);
        self.peers()
            .iter()
            .filter(|p| {
                c.peers
                    .get(&p.cfg.node_id)
                    .is_some_and(|v| v.disk == DiskState::UpToDate)
            })
            .filter_map(|p| p.live())
            // A peer this node is Ahead of lacks recent writes whatever it last reported.
            .filter(|l| !l.is_ahead())
            .collect()
    }
}

/// Builds the peer table: one entry per configured peer, with a bitmap slot when both sides have
/// disks.
pub(crate) fn make_peers(cfg: &ResourceConfig, disk: Option<&LocalDisk>) -> Result<Vec<Arc<Peer>>, String> {
    cfg.peers.iter().map(|p| make_peer(cfg, p, disk, false)).collect()
}

/// One peer's entry, taking (or finding) its bitmap slot when both sides have disks. Assigning a
/// slot is durable before this returns (see `Metadata::slot_for`). A `new_member`, added to the
/// running resource, gets its slot flagged for a full sync (`Metadata::slot_for_new_peer`).
pub(crate) fn make_peer(
    cfg: &ResourceConfig,
    p: &PeerConfig,
    disk: Option<&LocalDisk>,
    new_member: bool,
) -> Result<Arc<Peer>, String> {
    let slot = match disk {
        Some(d) if !p.diskless => {
            let node = replbd_bitmap::NodeId::new(p.node_id)
                .ok_or_else(|| format!("peer node id {} is invalid", p.node_id))?;
            let slot = if new_member {
                d.meta.slot_for_new_peer(node)
            } else {
                d.meta.slot_for(node)
            };
            Some(slot.map_err(|e| format!("no bitmap slot for peer {}: {e}", p.node_id))?)
        }
        _ => None,
    };
    let (incoming_tx, incoming_rx) = mpsc::channel(4);
    Ok(Arc::new(Peer {
        cfg: p.clone(),
        slot,
        link: RwLock::new(None),
        incoming_tx,
        incoming_rx: Mutex::new(Some(incoming_rx)),
        wanted: watch::channel(true).0,
        discard_my_data: AtomicBool::new(false),
        partitioned: AtomicBool::new(false),
        name: cfg.node_name(p.node_id),
        fencing: cfg.fencing.get(&p.node_id).copied().unwrap_or_default(),
        on_congestion: cfg.congestion_policy(p.node_id),
        removed: watch::channel(false).0,
        ended: watch::channel(false).0,
    }))
}
