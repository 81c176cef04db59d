//! One resource on this node: a task that owns everything about it — the engine while it is up,
//! the front end while it is Primary, the forwarding of its events — and applies the admin
//! operations one at a time.
//!
//! Why a task per resource (crucible's single-owner style): operations on one resource must not
//! interleave (a `down` must not run while a `primary` is binding the front end), but operations on
//! different resources must not wait for each other. The task receives typed [`Op`]s over a
//! channel and answers each; nothing else mutates its state. Readers (status, metrics, events) get
//! a [`HostView`] snapshot through a `watch` channel and ask the engine for its status directly,
//! so a slow operation never blocks a `status`.
//!
//! A ublk device left behind by a daemon that died is this task's too: [`reattach`] finds it on
//! `up` and re-attaches it once the node may be Primary again (`frontend::recovery`).

mod reattach;

use std::sync::Arc;

use replbd_quorum::Role;
use replbd_replication::{BlockVolume, Resource};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::disk::{self, DiskError};
use crate::admin::event::{Action, NodeEvent};
use crate::admin::report::{FrontEndReport, ResourceReport};
use crate::config::{FrontEndSpec, ResourceSpec};
use crate::frontend::recovery::{Verdict, verdict};
use crate::frontend::ublk::{self, Found};
use crate::frontend::{self, Condition, FrontEndError, Running as FrontEnd};
use crate::metrics::{IoMeter, MeteredVolume};
use reattach::Waiting;

/// Why an operation on a resource failed. The message is what the admin command prints after
/// `COMMAND RESOURCE: `.
#[derive(Debug, Error)]
pub enum HostError {
    /// The resource must be up for this operation.
    #[error("resource {resource} is down: run `replbd-node up {resource}` first")]
    Down {
        /// The resource.
        resource: String,
    },
    /// The resource must be down for this operation.
    #[error("resource {resource} is up: run `replbd-node down {resource}` first")]
    Up {
        /// The resource.
        resource: String,
    },
    /// The disk could not be attached or its metadata changed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The engine did not start.
    #[error(transparent)]
    Start(#[from] replbd_replication::engine::StartError),
    /// The engine refused a role change.
    #[error(transparent)]
    Role(#[from] replbd_replication::engine::RoleError),
    /// The engine refused another operation.
    #[error("{0}")]
    Engine(String),
    /// The front end could not be bound; the role was not changed.
    #[error("the front end could not start, so the node was not promoted: {0}")]
    FrontEnd(#[from] FrontEndError),
    /// The front end did not start after promotion; the node was demoted again.
    #[error("the front end could not start, so the node was demoted again: {0}")]
    FrontEndStart(#[source] FrontEndError),
    /// The node was promoted but the ublk device waiting since the daemon restarted could not be
    /// re-attached.
    #[error(
        "promoted, but re-attaching {path} failed: {source}; `replbd-node secondary {resource}` deletes the \
         device (its waiting I/O fails)"
    )]
    Reattach {
        /// The resource.
        resource: String,
        /// The block device.
        path: String,
        /// What failed.
        #[source]
        source: FrontEndError,
    },
    /// The daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// An operation on a resource; peers are node ids (the dispatcher resolved the names).
#[derive(Clone, Debug)]
pub enum Op {
    /// Attach, start the engine, connect.
    Up,
    /// Stop the front end, demote, disconnect, close the metadata.
    Down,
    /// Bind the front end, promote, serve.
    Primary {
        /// Promote data that is not UpToDate.
        force: bool,
    },
    /// Stop the front end, demote.
    Secondary,
    /// Connect to a peer or all.
    Connect {
        /// The peer's node id, or all.
        peer: Option<u8>,
        /// Discard this node's changes after a split brain.
        discard_my_data: bool,
    },
    /// Disconnect from a peer or all.
    Disconnect {
        /// The peer's node id, or all.
        peer: Option<u8>,
    },
    /// Online verify.
    Verify,
    /// Resync the local data from a peer.
    Invalidate,
    /// `resume-io`.
    ResumeIo,
    /// `outdate`.
    Outdate,
    /// Resync a peer's data from this node.
    InvalidateRemote {
        /// The peer's node id.
        peer: u8,
    },
    /// `new-current-uuid` without `--clear-bitmap` on a running Primary: a new data generation.
    RotateUuid,
    /// `new-current-uuid --clear-bitmap` with this UUID (resource down).
    NewCurrentUuid {
        /// The new current UUID.
        uuid: u64,
    },
    /// Tests only (`fault-injection`): the local disk's injected failures.
    #[cfg(feature = "fault-injection")]
    InjectDiskFault {
        /// Byte ranges whose reads fail.
        read_errors: Vec<(u64, u64)>,
        /// Byte ranges whose writes fail.
        write_errors: Vec<(u64, u64)>,
        /// Every write fails.
        all_writes_fail: bool,
    },
    /// Run with this configuration from now on, which differs from the current one in its peers
    /// and quorum options only: peers are added, removed or reconnected without restarting the
    /// resource (the front end, a Primary's device, stays). Refused for other changes.
    Adjust(Box<ResourceSpec>),
    /// Internal, sent by the resource's own recovery watcher: the ublk device left by a daemon
    /// that died may now be re-attached (or must be given up).
    ResumeDevice,
}

/// What readers see of a resource.
#[derive(Clone)]
pub struct HostView {
    /// The engine, while up.
    pub engine: Option<Resource>,
    /// The front end's state.
    pub front_end: FrontEndReport,
    /// A ublk device left by a daemon that died waits to be re-attached: the report's reason is
    /// the current [`verdict`].
    pub recovering: bool,
}

struct Envelope {
    op: Op,
    reply: oneshot::Sender<Result<String, HostError>>,
}

/// The handle of a resource's task.
#[derive(Clone)]
pub struct HostHandle {
    spec: watch::Receiver<Arc<ResourceSpec>>,
    tx: mpsc::Sender<Envelope>,
    view: watch::Receiver<HostView>,
}

impl HostHandle {
    /// Starts the task of resource `spec` (down), counting its I/O with `meter` and publishing its
    /// events on `events`.
    pub fn spawn(spec: ResourceSpec, meter: IoMeter, events: broadcast::Sender<NodeEvent>) -> HostHandle {
        let spec = Arc::new(spec);
        let (spec_tx, spec_rx) = watch::channel(Arc::clone(&spec));
        let (tx, rx) = mpsc::channel(16);
        let (view_tx, view) = watch::channel(HostView {
            engine: None,
            front_end: frontend::report(&spec.front_end, Condition::Stopped),
            recovering: false,
        });
        let host = Host {
            spec,
            spec_tx,
            meter,
            events,
            view: view_tx,
            up: None,
            self_tx: tx.downgrade(),
        };
        tokio::spawn(host.run(rx));
        HostHandle {
            spec: spec_rx,
            tx,
            view,
        }
    }

    /// The resource's configuration (as changed by the last [`Op::Adjust`]).
    pub fn spec(&self) -> Arc<ResourceSpec> {
        Arc::clone(&self.spec.borrow())
    }

    /// Applies `op` and returns what was done.
    pub async fn call(&self, op: Op) -> Result<String, HostError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Envelope { op, reply })
            .await
            .map_err(|_| HostError::ShuttingDown)?;
        answer.await.map_err(|_| HostError::ShuttingDown)?
    }

    /// The resource's status now.
    pub fn report(&self) -> ResourceReport {
        let mut view = self.view.borrow().clone();
        let spec = self.spec();
        match &view.engine {
            Some(engine) => {
                let status = engine.status();
                if view.recovering
                    && let Verdict::Wait(why) | Verdict::Abandon(why) = verdict(&spec, &status)
                {
                    view.front_end.reason = Some(why);
                }
                ResourceReport::build(&spec, &status, engine.size(), view.front_end)
            }
            None => ResourceReport::down(&spec, view.front_end),
        }
    }
}

/// A resource that is up.
struct UpState {
    engine: Resource,
    /// The front end, while Primary.
    front_end: Option<FrontEnd>,
    /// A ublk device left by a daemon that died, waiting to be re-attached.
    waiting: Option<Waiting>,
    /// Why the front end cannot serve (found on `up` or at the last attempt).
    blocked: Option<String>,
    forwarder: JoinHandle<()>,
}

/// The task's state: the single owner of everything about the resource.
struct Host {
    spec: Arc<ResourceSpec>,
    /// Publishes `spec` to the handles and the event forwarder when it changes.
    spec_tx: watch::Sender<Arc<ResourceSpec>>,
    meter: IoMeter,
    events: broadcast::Sender<NodeEvent>,
    view: watch::Sender<HostView>,
    up: Option<UpState>,
    /// The task's own queue, for the recovery watcher (weak: the task ends when the handles go).
    self_tx: mpsc::WeakSender<Envelope>,
}

impl Host {
    async fn run(mut self, mut rx: mpsc::Receiver<Envelope>) {
        while let Some(Envelope { op, reply }) = rx.recv().await {
            let result = self.apply(op).await;
            let _ = reply.send(result);
        }
        // Every handle is gone: the daemon is stopping. Leave the metadata clean.
        if self.up.is_some() {
            let _ = self.down().await;
        }
    }

    fn name(&self) -> &str {
        &self.spec.name
    }

    fn publish(&self) {
        let up = self.up.as_ref();
        let condition = match up {
            Some(UpState {
                front_end: Some(fe), ..
            }) => Condition::Running(fe),
            Some(UpState {
                blocked: Some(why), ..
            }) => Condition::Unavailable(why),
            Some(UpState { waiting: Some(_), .. }) => {
                Condition::Recovering("I/O waits until this node is Primary again")
            }
            _ => Condition::Stopped,
        };
        self.view.send_replace(HostView {
            engine: up.map(|u| u.engine.clone()),
            front_end: frontend::report(&self.spec.front_end, condition),
            recovering: up
                .is_some_and(|u| u.waiting.is_some() && u.front_end.is_none() && u.blocked.is_none()),
        });
    }

    fn volume(&self, engine: &Resource) -> Arc<frontend::ServedVolume> {
        Arc::new(MeteredVolume::new(Arc::new(engine.clone()), self.meter.clone()))
    }

    fn engine(&self) -> Result<&Resource, HostError> {
        self.up
            .as_ref()
            .map(|u| &u.engine)
            .ok_or_else(|| HostError::Down {
                resource: self.spec.name.clone(),
            })
    }

    fn peer_name(&self, peer: Option<u8>) -> String {
        peer.map_or_else(|| "every peer".to_owned(), |p| self.spec.node_name(p))
    }

    async fn apply(&mut self, op: Op) -> Result<String, HostError> {
        let name = self.name().to_owned();
        match op {
            Op::Up => self.bring_up().await,
            Op::Down => self.down().await,
            Op::Primary { force } => self.primary(force).await,
            Op::Secondary => self.secondary().await,
            Op::Connect {
                peer,
                discard_my_data,
            } => {
                let engine = self.engine()?;
                if discard_my_data {
                    engine
                        .connect_discarding_my_data(peer)
                        .map_err(HostError::Engine)?;
                } else {
                    engine.connect(peer).map_err(HostError::Engine)?;
                }
                info!(resource = %name, peer = %self.peer_name(peer), discard_my_data, "connecting");
                Ok(format!(
                    "{name}: connecting to {}{}",
                    self.peer_name(peer),
                    if discard_my_data {
                        " (a split brain discards this node's changes)"
                    } else {
                        ""
                    }
                ))
            }
            Op::Disconnect { peer } => {
                self.engine()?.disconnect(peer).map_err(HostError::Engine)?;
                info!(resource = %name, peer = %self.peer_name(peer), "disconnected by the administrator");
                Ok(format!("{name}: disconnected from {}", self.peer_name(peer)))
            }
            Op::Verify => {
                let peers = self
                    .engine()?
                    .verify(None)
                    .map_err(|e| HostError::Engine(e.to_string()))?;
                let names: Vec<String> = peers.iter().map(|&p| self.spec.node_name(p)).collect();
                info!(resource = %name, peers = ?names, "online verify started");
                Ok(format!(
                    "{name}: online verify started against {}; results in `events` and the log",
                    names.join(", ")
                ))
            }
            #[cfg(feature = "fault-injection")]
            Op::InjectDiskFault {
                read_errors,
                write_errors,
                all_writes_fail,
            } => {
                let disk = self
                    .engine()?
                    .local_disk()
                    .ok_or_else(|| HostError::Engine("no local disk to fail".into()))?;
                let mut plan = disk.store.faults();
                plan.read_errors = read_errors.iter().map(|&(a, b)| a..b).collect();
                plan.write_errors = write_errors.iter().map(|&(a, b)| a..b).collect();
                plan.all_writes_fail = all_writes_fail;
                warn!(resource = %name, ?read_errors, ?write_errors, all_writes_fail, "injected disk faults set");
                Ok(format!("{name}: injected disk faults set"))
            }
            Op::Outdate => {
                self.engine()?
                    .outdate()
                    .await
                    .map_err(|e| HostError::Engine(e.to_string()))?;
                Ok(format!("{name}: local data marked Outdated"))
            }
            Op::ResumeIo => {
                if self.engine()?.resume_io() {
                    warn!(resource = %name, "I/O frozen by fencing resumed by the administrator");
                    Ok(format!("{name}: frozen I/O resumed"))
                } else {
                    Ok(format!("{name}: I/O was not frozen"))
                }
            }
            Op::Invalidate => {
                let source = self
                    .engine()?
                    .invalidate(None)
                    .map_err(|e| HostError::Engine(e.to_string()))?;
                Ok(format!(
                    "{name}: local data invalidated; full resync from {} started",
                    self.spec.node_name(source)
                ))
            }
            Op::InvalidateRemote { peer } => {
                self.engine()?
                    .invalidate_remote(peer)
                    .map_err(|e| HostError::Engine(e.to_string()))?;
                Ok(format!(
                    "{name}: data of {} invalidated; full resync from this node started",
                    self.spec.node_name(peer)
                ))
            }
            Op::ResumeDevice => self.resume_device().await,
            Op::Adjust(next) => self.adjust(*next).await,
            Op::RotateUuid => {
                self.engine()?
                    .new_current_uuid()
                    .await
                    .map_err(|e| HostError::Engine(e.to_string()))?;
                Ok(format!("{name}: new data generation started"))
            }
            Op::NewCurrentUuid { uuid } => {
                if self.up.is_some() {
                    return Err(HostError::Up { resource: name });
                }
                let spec = Arc::clone(&self.spec);
                tokio::task::spawn_blocking(move || disk::new_current_uuid_clear_bitmap(&spec, uuid))
                    .await
                    .map_err(|e| HostError::Engine(format!("the metadata task failed: {e}")))??;
                Ok(format!(
                    "{name}: new current UUID {uuid:016X}, bitmaps cleared, data UpToDate; run the same command with --uuid {uuid:016X} on every other node"
                ))
            }
        }
    }

    async fn bring_up(&mut self) -> Result<String, HostError> {
        let name = self.name().to_owned();
        if self.up.is_some() {
            return Ok(format!("{name} is already up"));
        }
        let spec = Arc::clone(&self.spec);
        let disk = tokio::task::spawn_blocking(move || disk::attach(&spec))
            .await
            .map_err(|e| HostError::Engine(format!("the attach task failed: {e}")))??;
        let meta = disk.as_ref().map(|d| Arc::clone(d.metadata()));
        let engine = match Resource::start(self.spec.engine_config(), disk).await {
            Ok(engine) => engine,
            Err(e) => {
                // The engine never ran: close the metadata as attach found it.
                if let Some(meta) = meta {
                    let _ = meta.close();
                }
                return Err(e.into());
            }
        };
        let forwarder = tokio::spawn(forward_events(
            self.spec_tx.subscribe(),
            engine.events(),
            self.events.clone(),
        ));
        let role = engine.status().role;
        self.up = Some(UpState {
            engine,
            front_end: None,
            waiting: None,
            blocked: None,
            forwarder,
        });
        let note = self.survey_device().await;
        self.publish();
        let _ = self
            .events
            .send(NodeEvent::lifecycle(Action::Create, &name, Some(role)));
        info!(resource = %name, volume = self.spec.volume.number, "resource up");
        Ok(format!("{name} is up{note}"))
    }

    async fn down(&mut self) -> Result<String, HostError> {
        let name = self.name().to_owned();
        let Some(mut up) = self.up.take() else {
            return Ok(format!("{name} is already down"));
        };
        if let Some(fe) = up.front_end.take() {
            fe.stop(&name).await;
        }
        if let Some(waiting) = up.waiting.take() {
            waiting.give_up(&name, "the resource was taken down").await;
        }
        let result = up.engine.down().await;
        up.forwarder.abort();
        self.publish();
        let _ = self
            .events
            .send(NodeEvent::lifecycle(Action::Destroy, &name, None));
        match result {
            Ok(()) => {
                info!(resource = %name, "resource down, metadata clean");
                Ok(format!("{name} is down"))
            }
            Err(e) => {
                warn!(resource = %name, error = %e, "resource down with an error");
                Err(HostError::Engine(e))
            }
        }
    }

    async fn primary(&mut self, force: bool) -> Result<String, HostError> {
        let name = self.name().to_owned();
        let engine = self.engine()?.clone();
        let serving = self.up.as_ref().is_some_and(|u| u.front_end.is_some());
        if serving && engine.status().role == Role::Primary {
            return Ok(format!("{name} is already Primary"));
        }
        if let Some(waiting) = self.up.as_mut().and_then(|u| u.waiting.take()) {
            return self.reattach(waiting, force).await;
        }
        if let FrontEndSpec::Ublk(u) = &self.spec.front_end {
            // What is at the device number now (it may have changed since `up`).
            let (spec, u) = (Arc::clone(&self.spec), *u);
            let found = tokio::task::spawn_blocking(move || ublk::survey(&spec, &u))
                .await
                .unwrap_or_else(|e| Found::Blocked(format!("the ublk control task failed: {e}")));
            match found {
                Found::Free => {}
                Found::Leftover(dev) => self.delete_leftover(dev.id).await?,
                Found::Recoverable(dev) => return self.reattach(Waiting::found(dev), force).await,
                Found::Blocked(why) => {
                    if let Some(up) = self.up.as_mut() {
                        up.blocked = Some(why.clone());
                    }
                    self.publish();
                    return Err(FrontEndError::Unavailable(why).into());
                }
            }
        }
        if let Some(up) = self.up.as_mut() {
            up.blocked = None;
        }
        let prepared = frontend::prepare(&self.spec, self.volume(&engine)).await?;
        if let Err(e) = engine.primary(force).await {
            prepared.discard().await;
            return Err(e.into());
        }
        let running = match prepared.start(&name).await {
            Ok(r) => r,
            Err(e) => {
                warn!(resource = %name, error = %e, "the front end did not start; demoting again");
                if let Err(d) = engine.secondary().await {
                    warn!(resource = %name, error = %d, "demoting after the failed start failed");
                }
                return Err(HostError::FrontEndStart(e));
            }
        };
        let note = match &running {
            FrontEnd::Nbd { address, .. } => format!("; NBD export {name} at {address}"),
            FrontEnd::Ublk(s) => format!("; {}", s.info().block_device.display()),
            FrontEnd::None => String::new(),
        };
        if let Some(up) = self.up.as_mut() {
            up.front_end = Some(running);
        }
        self.publish();
        info!(resource = %name, force, "promoted to Primary");
        Ok(format!("{name} is Primary{note}"))
    }

    async fn secondary(&mut self) -> Result<String, HostError> {
        let name = self.name().to_owned();
        let engine = self.engine()?.clone();
        if let Some(fe) = self.up.as_mut().and_then(|u| u.front_end.take()) {
            fe.stop(&name).await;
        }
        if let Some(waiting) = self.up.as_mut().and_then(|u| u.waiting.take()) {
            waiting.give_up(&name, "demoted by the administrator").await;
        }
        self.publish();
        engine.secondary().await?;
        info!(resource = %name, "demoted to Secondary");
        Ok(format!("{name} is Secondary"))
    }
}

impl Host {
    /// Runs with `next`, which differs from the current configuration in its peers and quorum
    /// options only: the engine (when up) adds, removes and reconnects peers in place; the front
    /// end is not touched.
    async fn adjust(&mut self, next: ResourceSpec) -> Result<String, HostError> {
        let name = self.name().to_owned();
        self.spec.adjustable_to(&next).map_err(|what| {
            HostError::Engine(format!(
                "{what} changed, which needs the resource restarted (`down`, then `up`); nothing was changed"
            ))
        })?;
        let summary = match &self.up {
            Some(up) => up
                .engine
                .adjust(&next.engine_config())
                .await
                .map_err(HostError::Engine)?
                .to_string(),
            None => "configuration updated (the resource is down)".to_owned(),
        };
        let next = Arc::new(next);
        self.spec = Arc::clone(&next);
        self.spec_tx.send_replace(next);
        self.publish();
        info!(resource = %name, changes = %summary, "adjusted");
        Ok(format!("{name}: {summary}"))
    }
}

/// Republishes a resource's engine events on the node's event channel, with node names.
async fn forward_events(
    spec: watch::Receiver<Arc<ResourceSpec>>,
    mut from: broadcast::Receiver<replbd_replication::engine::Event>,
    to: broadcast::Sender<NodeEvent>,
) {
    loop {
        match from.recv().await {
            Ok(e) => {
                let spec = Arc::clone(&spec.borrow());
                for event in NodeEvent::from_engine(&spec, &e) {
                    let _ = to.send(event);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(resource = %spec.borrow().name, missed = n, "event forwarding fell behind; some state changes were not forwarded");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
