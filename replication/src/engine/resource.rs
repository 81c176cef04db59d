//! A running resource: the handle front ends and the node daemon use.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use replbd_bitmap::NodeFlags;
use replbd_quorum::{DiskState, Role};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use super::config::ResourceConfig;
use super::connection;
use super::core::{Control, Inner, disk_state_from_flags, lock, make_peers};
use super::epoch::Epochs;
use super::local::LocalDisk;
use super::request::WriteKind;
use super::state::{Event, Status};
use crate::handshake::Identity;
use crate::volume::{BlockVolume, VolumeResult, WriteFlags};

/// Why a resource could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration contradicts itself.
    #[error("invalid configuration of resource {resource}: {reason}")]
    Config {
        /// The resource.
        resource: String,
        /// What is wrong.
        reason: String,
    },
    /// The replication port could not be bound.
    #[error(
        "resource {resource} cannot listen on {address}: {source} (is another resource or process using the port?)"
    )]
    Listen {
        /// The resource.
        resource: String,
        /// The address.
        address: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a role change was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoleError {
    /// Promotion refused: another Primary, no UpToDate data, or no quorum (the message says what
    /// to do).
    #[error("cannot promote: {0}")]
    Refused(#[from] replbd_quorum::PromoteRefusal),
    /// Persisting the new state failed.
    #[error("updating the metadata failed: {0}")]
    Metadata(String),
    /// A disconnected peer could not be fenced before the promotion.
    #[error("cannot promote: {0}")]
    NotFenced(String),
    /// The resource is going down.
    #[error("the resource is going down")]
    ShuttingDown,
    /// The Primary was lost and the Secondaries have not yet settled who holds its last writes.
    #[error("cannot promote yet: {0}")]
    Settling(String),
}

/// How long `primary` waits for the Secondaries to settle a lost Primary's last writes (see
/// [`super::lost_primary`]) before it refuses with the reason.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// A running replicated resource.
#[derive(Clone)]
pub struct Resource {
    pub(super) inner: Arc<Inner>,
    pub(super) tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// Held while peers are added or removed ([`super::membership`]): one change at a time.
    pub(super) adjusting: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.inner.cfg.name)
            .field("node", &self.inner.cfg.node_id)
            .finish()
    }
}

impl Resource {
    /// Starts a resource: binds its replication port and starts connecting to its peers.
    /// `disk` is `None` for a diskless node.
    pub async fn start(cfg: ResourceConfig, disk: Option<LocalDisk>) -> Result<Resource, StartError> {
        let config_error = |reason: String| StartError::Config {
            resource: cfg.name.clone(),
            reason,
        };
        cfg.validate().map_err(config_error)?;
        let peers = make_peers(&cfg, disk.as_ref()).map_err(config_error)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StartError::Listen {
                resource: cfg.name.clone(),
                address: cfg.listen,
                source,
            })?;
        let disk_state = match &disk {
            Some(d) => disk_state_from_flags(d.meta.flags()),
            None => DiskState::Diskless,
        };
        let size = disk.as_ref().map_or(0, LocalDisk::size);
        let identity = Identity::new(&cfg.name, cfg.node_id, &cfg.secret);
        let control = Control {
            role: Role::Secondary,
            disk: disk_state,
            peers: Default::default(),
            // Replaced by the real verdict below, before anything reads it.
            quorum: replbd_quorum::QuorumVerdict {
                have_quorum: false,
                reason: replbd_quorum::quorum::QuorumReason::TooFewVoters,
                tally: Default::default(),
            },
        };
        let status = Status {
            name: cfg.name.clone(),
            node: cfg.node_id,
            role: Role::Secondary,
            disk: disk_state,
            quorum: false,
            peers: Vec::new(),
        };
        let inner = Arc::new(Inner {
            epochs: Epochs::new(cfg.max_epoch_size),
            identity,
            size,
            peer_list: RwLock::new(Arc::new(peers)),
            quorum_cfg: RwLock::new(cfg.quorum),
            disk,
            next_seq: AtomicU64::new(super::lost_primary::first_seq()),
            primary: AtomicBool::new(false),
            control: std::sync::Mutex::new(control),
            status_tx: watch::channel(status).0,
            events_tx: broadcast::channel(1024).0,
            shutdown: watch::channel(false).0,
            round_robin: AtomicUsize::new(0),
            active_io: AtomicU64::new(0),
            io_idle: Notify::new(),
            rotate_pending: AtomicBool::new(false),
            diskless_uuid: AtomicU64::new(0),
            rotation: tokio::sync::Mutex::new(()),
            size_override: AtomicU64::new(0),
            intervals: Arc::default(),
            apply_order: Arc::default(),
            peer_acks: Default::default(),
            barrier_timer: Notify::new(),
            quorum_tx: watch::channel(false).0,
            last_sync: std::sync::Mutex::new(None),
            frozen: watch::channel(0).0,
            detached: AtomicBool::new(false),
            fenced: Default::default(),
            last_app_io_ms: AtomicU64::new(0),
            lost_primary: Default::default(),
            born: std::time::Instant::now(),
            cfg,
        });
        {
            let mut c = lock(&inner.control);
            c.quorum = inner.quorum_verdict(&c, 0, false);
            inner.quorum_tx.send_replace(c.quorum.have_quorum);
            tracing::info!(resource = %inner.cfg.name, quorum = %c.quorum, "started");
        }
        inner.republish();
        let mut tasks = Vec::new();
        let l_inner = Arc::clone(&inner);
        tasks.push(tokio::spawn(async move {
            let mut shutdown = l_inner.shutdown.subscribe();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = shutdown.wait_for(|s| *s) => break,
                };
                match accepted {
                    Ok((stream, from)) => {
                        tokio::spawn(connection::route_incoming(Arc::clone(&l_inner), stream, from));
                    }
                    Err(e) => {
                        tracing::warn!(resource = %l_inner.cfg.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
        for p in inner.peers().iter() {
            tasks.push(tokio::spawn(connection::run(Arc::clone(&inner), Arc::clone(p))));
        }
        tasks.push(tokio::spawn(Arc::clone(&inner).run_barrier_timer()));
        tracing::info!(resource = %inner.cfg.name, node = inner.cfg.node_id, listen = %inner.cfg.listen, peers = inner.peers().len(), disk = %disk_state, "resource up");
        Ok(Resource {
            inner,
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
            adjusting: Arc::default(),
        })
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    /// The current state.
    pub fn status(&self) -> Status {
        self.inner.republish();
        self.inner.status_tx.borrow().clone()
    }

    /// A receiver of state snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status_tx.subscribe()
    }

    /// A stream of state changes.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events_tx.subscribe()
    }

    /// Waits until `pred` holds for the status, or `timeout` passes (returning the last status).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Result<Status, Status> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.inner.republish();
            let s = rx.borrow_and_update().clone();
            if pred(&s) {
                return Ok(s);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(s) },
                _ = tokio::time::sleep_until(deadline) => return Err(self.status()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// The attached disk, if any.
    pub fn local_disk(&self) -> Option<&LocalDisk> {
        self.inner.disk.as_ref()
    }

    /// Promotes this node to Primary.
    pub async fn primary(&self, force: bool) -> Result<(), RoleError> {
        let inner = &self.inner;
        if inner.is_shutting_down() {
            return Err(RoleError::ShuttingDown);
        }
        let (role, _) = inner.role_and_disk();
        if role == Role::Primary {
            return Ok(());
        }
        if !force {
            inner
                .lost_primary_settled(SETTLE_WAIT)
                .await
                .map_err(RoleError::Settling)?;
        }
        let (_, disk) = inner.role_and_disk();
        let promotion = inner.may_promote(force, disk)?;
        if !force {
            inner
                .fence_before_promotion()
                .await
                .map_err(RoleError::NotFenced)?;
        }
        if promotion.outdate_absent_peers {
            inner.outdate_absent_peers();
        }
        let force = force && promotion.local_becomes_up_to_date;
        // Promoted with quorum, what it writes from now on completes; promoted without (forced),
        // nothing does until quorum returns, and the flag says so as a quorum loss would.
        let quorate = *inner.quorum_tx.borrow();
        if let Some(d) = &inner.disk {
            let meta = Arc::clone(&d.meta);
            tokio::task::spawn_blocking(move || {
                meta.update(|_, flags| {
                    flags.set(NodeFlags::CRASHED_PRIMARY, true);
                    flags.set(NodeFlags::PRIMARY_LOST_QUORUM, !quorate);
                    if force {
                        flags.set(NodeFlags::CONSISTENT, true);
                        flags.set(NodeFlags::WAS_UP_TO_DATE, true);
                    }
                })
            })
            .await
            .map_err(|e| RoleError::Metadata(e.to_string()))?
            .map_err(|e| RoleError::Metadata(e.to_string()))?;
        }
        inner.new_data_generation().await.map_err(RoleError::Metadata)?;
        inner.change(|c| {
            let mut events = vec![Event::Role(Role::Primary)];
            c.role = Role::Primary;
            if force && c.disk != DiskState::UpToDate && inner.disk.is_some() {
                c.disk = DiskState::UpToDate;
                events.push(Event::Disk(DiskState::UpToDate));
            }
            events
        });
        inner.lost_primary_forget();
        inner.broadcast_state();
        inner.resync_marked_after_promotion();
        Ok(())
    }

    /// Demotes this node to Secondary: new writes are refused, writes in flight finish and are
    /// flushed, and the metadata stops saying "crashed primary".
    pub async fn secondary(&self) -> Result<(), RoleError> {
        let inner = &self.inner;
        if inner.role() != Role::Primary {
            return Ok(());
        }
        inner.primary.store(false, Ordering::SeqCst);
        self.wait_io_idle().await;
        // Flush by hand: the flush path refuses non-primaries.
        inner.primary.store(true, Ordering::SeqCst);
        let flushed = inner.flush_path().await;
        inner.primary.store(false, Ordering::SeqCst);
        if let Err(e) = flushed {
            tracing::error!(resource = %inner.cfg.name, error = %e, "flush while demoting failed");
        }
        if let Some(d) = &inner.disk {
            let meta = Arc::clone(&d.meta);
            tokio::task::spawn_blocking(move || {
                meta.update(|_, flags| flags.set(NodeFlags::CRASHED_PRIMARY, false))
            })
            .await
            .map_err(|e| RoleError::Metadata(e.to_string()))?
            .map_err(|e| RoleError::Metadata(e.to_string()))?;
        }
        inner.change(|c| {
            c.role = Role::Secondary;
            vec![Event::Role(Role::Secondary)]
        });
        inner.broadcast_state();
        Ok(())
    }

    async fn wait_io_idle(&self) {
        loop {
            let idle = self.inner.io_idle.notified();
            if self.inner.active_io.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Connects (again) to `peer`, or to every peer.
    pub fn connect(&self, peer: Option<u8>) -> Result<(), String> {
        self.for_peers(peer, |p| {
            p.wanted.send_replace(true);
        })
    }

    /// Connects to `peer` (or every peer) as `connect --discard-my-data`: should the handshake find
    /// split brain, this node's changes are the ones dropped (it becomes SyncTarget).
    pub fn connect_discarding_my_data(&self, peer: Option<u8>) -> Result<(), String> {
        if self.inner.role() == Role::Primary {
            return Err(format!(
                "resource {} is Primary here: demote it before connecting with --discard-my-data (its data would change under the application)",
                self.inner.cfg.name
            ));
        }
        self.for_peers(peer, |p| {
            p.discard_my_data.store(true, Ordering::SeqCst);
            p.wanted.send_replace(true);
        })
    }

    /// Disconnects from `peer`, or from every peer, and stays disconnected until `connect`. The
    /// peer is told first, so it knows this node left on purpose (for its quorum count).
    pub fn disconnect(&self, peer: Option<u8>) -> Result<(), String> {
        self.for_peers(peer, |p| {
            p.wanted.send_replace(false);
            if let Some(l) = p.live() {
                tokio::spawn(super::quorum::leave(l, "disconnected by the administrator"));
            }
        })
    }

    /// `resume-io`: I/O frozen by fencing continues. Only after making sure that the peer that
    /// could not be fenced cannot write. Returns whether I/O was frozen.
    pub fn resume_io(&self) -> bool {
        self.inner.resume_io()
    }

    /// Cuts `peer` off as a network partition would: the connection fails and no new one forms
    /// until `partition(peer, false)`. Apply it on both sides for a symmetric partition. For tests
    /// and fault injection.
    pub fn partition(&self, peer: u8, on: bool) {
        if let Some(p) = self.inner.peer(peer) {
            p.partitioned.store(on, Ordering::SeqCst);
            if on && let Some(l) = p.live() {
                l.fail("network partition");
            }
        }
    }

    fn for_peers(&self, peer: Option<u8>, f: impl Fn(&super::core::Peer)) -> Result<(), String> {
        match peer {
            Some(n) => {
                let p = self.inner.peer(n).ok_or_else(|| {
                    format!("resource {} has no peer with node id {n}", self.inner.cfg.name)
                })?;
                f(&p);
            }
            None => self.inner.peers().iter().for_each(|p| f(p)),
        }
        Ok(())
    }

    /// Cuts the connection to `peer` as a network failure would (it reconnects by itself): for tests
    /// and fault injection.
    pub fn cut(&self, peer: u8) {
        if let Some(l) = self.inner.peer(peer).and_then(|p| p.live()) {
            l.fail("connection cut");
        }
    }

    /// Stops the resource the way `kill -9` would: no demotion, no flush, connections dropped, the
    /// metadata left as it is on disk (unclean). For fault injection and tests.
    pub async fn halt(&self) {
        self.inner.shutdown.send_replace(true);
        for p in self.inner.peers().iter() {
            if let Some(l) = p.live() {
                l.fail("the node halted");
            }
        }
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Takes the resource down: demotes if Primary, closes every connection, waits for in-flight
    /// I/O, and closes the metadata cleanly (the activity log is clean afterwards).
    pub async fn down(&self) -> Result<(), String> {
        if self.inner.role() == Role::Primary {
            self.secondary().await.map_err(|e| e.to_string())?;
        }
        // Tell the peers first: they then know this node left on purpose.
        let goodbyes: Vec<_> = self
            .inner
            .peers()
            .iter()
            .filter_map(|p| p.live())
            .map(|l| tokio::spawn(super::quorum::leave(l, "the resource is going down")))
            .collect();
        for g in goodbyes {
            let _ = g.await;
        }
        self.inner.shutdown.send_replace(true);
        for p in self.inner.peers().iter() {
            if let Some(l) = p.live() {
                l.fail("the resource is going down");
            }
        }
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                tracing::warn!(resource = %self.inner.cfg.name, "a task did not stop within 10s");
            }
        }
        if let Some(d) = &self.inner.disk {
            // Replicated writes still being applied hold activity-log references briefly.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                match d.meta.close() {
                    Ok(()) => break,
                    Err(replbd_bitmap::MetaError::Busy { .. }) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => return Err(format!("closing the metadata failed: {e}")),
                }
            }
            d.store
                .flush()
                .await
                .map_err(|e| format!("final flush failed: {e}"))?;
        }
        tracing::info!(resource = %self.inner.cfg.name, "resource down");
        Ok(())
    }
}

impl BlockVolume for Resource {
    fn size(&self) -> u64 {
        self.inner.volume_size()
    }

    async fn read(&self, offset: u64, len: u32) -> VolumeResult<Bytes> {
        self.inner.read_path(offset, len).await
    }

    async fn write(&self, offset: u64, data: Bytes, flags: WriteFlags) -> VolumeResult<()> {
        let len = data.len() as u64;
        self.inner
            .write_path(offset, WriteKind::Data, data, len, flags.fua)
            .await
    }

    async fn flush(&self) -> VolumeResult<()> {
        self.inner.flush_path().await
    }

    async fn discard(&self, offset: u64, len: u64) -> VolumeResult<()> {
        self.inner
            .write_path(offset, WriteKind::Discard, Bytes::new(), len, false)
            .await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, flags: WriteFlags) -> VolumeResult<()> {
        self.inner
            .write_path(offset, WriteKind::Zeroes, Bytes::new(), len, flags.fua)
            .await
    }
}
