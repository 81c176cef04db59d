//! The node daemon: hosts every resource of this node's configuration and answers admin requests.
//!
//! - [`host`]: one task per resource, the single owner of its engine and front end;
//! - [`disk`]: attaching the local disk, creating metadata, `new-current-uuid`;
//! - [`dispatch`](Daemon::handle): an admin [`Request`] → the resource's [`Op`], names → node ids;
//! - [`run`]: the process — configuration, admin socket, metrics endpoint, signals, shutdown.

pub mod disk;
mod dispatch;
pub mod host;
pub mod run;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::admin::event::NodeEvent;
use crate::admin::protocol::{Reply, Request};
use crate::admin::report::ResourceReport;
use crate::config::NodeConfig;
use crate::metrics::Metrics;
pub use host::{HostError, HostHandle, Op};

/// Longest a resource may take to go down at shutdown before the daemon stops waiting for it.
const DOWN_TIMEOUT: Duration = Duration::from_secs(90);

/// The resources of this node and what they report.
///
/// Resources come from the configuration file, and — on a node driven by a controller — are added
/// and removed at run time by the agent ([`Daemon::add_host`], [`Daemon::remove_host`]).
pub struct Daemon {
    config: NodeConfig,
    hosts: RwLock<BTreeMap<String, HostHandle>>,
    events: broadcast::Sender<NodeEvent>,
    metrics: Arc<Metrics>,
}

impl Daemon {
    /// Starts one task per configured resource (every resource down). Needs a tokio runtime.
    pub fn new(config: NodeConfig, metrics: Arc<Metrics>) -> Daemon {
        let events = broadcast::channel(4096).0;
        let hosts = config
            .resources
            .iter()
            .map(|spec| {
                let meter = metrics.io_meter(&spec.name, spec.volume.number);
                (
                    spec.name.clone(),
                    HostHandle::spawn(spec.clone(), meter, events.clone()),
                )
            })
            .collect();
        Daemon {
            config,
            hosts: RwLock::new(hosts),
            events,
            metrics,
        }
    }

    fn hosts(&self) -> BTreeMap<String, HostHandle> {
        self.hosts.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The names of every hosted resource.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Starts hosting `spec` (down); fails if a resource of that name is hosted already.
    pub fn add_host(&self, spec: crate::config::ResourceSpec) -> Result<HostHandle, String> {
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        if hosts.contains_key(&spec.name) {
            return Err(format!("resource {} is already hosted on this node", spec.name));
        }
        let meter = self.metrics.io_meter(&spec.name, spec.volume.number);
        let name = spec.name.clone();
        let handle = HostHandle::spawn(spec, meter, self.events.clone());
        hosts.insert(name, handle.clone());
        Ok(handle)
    }

    /// Takes resource `name` down and stops hosting it; `None` if it is not hosted.
    pub async fn remove_host(&self, name: &str) -> Option<Result<String, HostError>> {
        let host = self
            .hosts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)?;
        Some(host.call(Op::Down).await)
    }

    /// The event channel every resource publishes on.
    pub fn events(&self) -> broadcast::Sender<NodeEvent> {
        self.events.clone()
    }

    /// The configuration the daemon runs from.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The resource named `name`.
    pub fn host(&self, name: &str) -> Option<HostHandle> {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every resource's status, in name order.
    pub fn reports(&self) -> Vec<ResourceReport> {
        self.hosts().values().map(HostHandle::report).collect()
    }

    /// Refreshes the state metrics.
    pub fn refresh_metrics(&self) {
        self.metrics.update(&self.reports());
    }

    /// A subscription to state changes, and the `exists` events describing the state now (ending
    /// with `exists -`). Subscribing first means no change is lost between the two.
    pub fn subscribe(&self) -> (broadcast::Receiver<NodeEvent>, Vec<NodeEvent>) {
        let rx = self.events.subscribe();
        let mut initial: Vec<NodeEvent> = self.reports().iter().flat_map(NodeEvent::exists).collect();
        initial.push(NodeEvent::end_of_initial_state());
        (rx, initial)
    }

    /// Brings every resource up (`--up-all`); failures are logged, not fatal.
    pub async fn up_all(&self) {
        for (name, host) in &self.hosts() {
            match host.call(Op::Up).await {
                Ok(_) => {}
                Err(e) => warn!(resource = %name, error = %e, "up failed"),
            }
        }
    }

    /// Takes every resource down, all at once (front ends stopped, demoted, metadata clean).
    pub async fn shutdown(&self) {
        let mut downs = tokio::task::JoinSet::new();
        for (name, host) in self.hosts() {
            downs.spawn(async move {
                match tokio::time::timeout(DOWN_TIMEOUT, host.call(Op::Down)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(resource = %name, error = %e, "down at shutdown failed"),
                    Err(_) => warn!(resource = %name, "down at shutdown did not finish in time"),
                }
            });
        }
        while downs.join_next().await.is_some() {}
        info!("every resource is down");
    }

    /// Answers one admin request (except `events`, which the admin server streams itself).
    pub async fn handle(&self, request: Request) -> Reply {
        dispatch::handle(self, request).await
    }
}
