//! The controller's shared state: the cluster (persisted), the nodes' run-time state, the agent
//! links, error reports and counters; and the one way to change the cluster ([`Controller::commit`]).
//!
//! Changes are serialized by one async lock; readers (lists, links computing what to push) take a
//! short read lock on the in-memory cluster and never wait for the store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::error::ApiError;
use super::ops::Outcome;
use super::runtime::Runtime;
use crate::cluster::{Change, Cluster};
use crate::placement::{NodeInfo, PoolInfo};
use crate::reports::{ErrorReport, Ids};
use crate::store::Store;

/// The result of pushing the desired state to one node: per resource, an error or a message.
pub type SyncResult = Result<Vec<replbd_proto::agent::ResourceResult>, String>;

/// A message to a node's link task.
#[derive(Debug)]
pub enum LinkMsg {
    /// Push what changed and answer with the agent's results.
    Sync(oneshot::Sender<SyncResult>),
    /// Stop (the node was deleted).
    Stop,
}

/// TLS towards the agents.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// The client certificate, key and the CA that signs the agents' certificates (PEM).
    pub files: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    /// The name the agents' certificates are issued for (default: each node's address).
    pub server_name: Option<String>,
}

/// Settings of a controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A node offline longer than this has its replicas placed elsewhere (LINSTOR's auto-evict;
    /// the controller property `AutoEvictAfter` overrides it).
    pub auto_evict_after: Duration,
    /// TLS towards the agents.
    pub agent_tls: ClientTls,
    /// This controller's id (etcd: the value of the leader key).
    pub id: String,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Placements that failed.
    pub placement_failures: AtomicU64,
    /// Replicas re-placed by auto-evict.
    pub evictions: AtomicU64,
}

/// The controller.
pub struct Controller {
    cluster: RwLock<Cluster>,
    write: tokio::sync::Mutex<()>,
    store: Store,
    /// The nodes at run time.
    pub runtime: RwLock<Runtime>,
    links: Mutex<BTreeMap<String, mpsc::Sender<LinkMsg>>>,
    ids: Ids,
    /// Settings.
    pub settings: Settings,
    /// Counters.
    pub counters: Counters,
}

impl Controller {
    /// A controller over `store`, loading (and bootstrapping) the cluster state.
    pub async fn open(store: Store, settings: Settings) -> Result<Arc<Controller>, ApiError> {
        let rows = store.load().await?;
        let mut cluster = Cluster::from_rows(&rows)
            .map_err(|e| ApiError::Invalid(format!("the stored state cannot be read: {e}")))?;
        let boot = cluster.bootstrap();
        if !boot.is_empty() {
            let rows: Vec<_> = boot.iter().map(Change::row).collect();
            store.commit(&rows).await?;
            for ch in boot {
                cluster.apply(ch);
            }
        }
        info!(
            store = store.kind(), location = %store.location(), nodes = cluster.nodes.len(),
            definitions = cluster.definitions.len(), resources = cluster.resources.len(), "cluster state loaded"
        );
        Ok(Arc::new(Controller {
            cluster: RwLock::new(cluster),
            write: tokio::sync::Mutex::new(()),
            store,
            runtime: RwLock::default(),
            links: Mutex::default(),
            ids: Ids::new(),
            settings,
            counters: Counters::default(),
        }))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A read view of the cluster state.
    pub fn cluster(&self) -> RwLockReadGuard<'_, Cluster> {
        self.cluster.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The nodes at run time (read).
    pub fn runtime(&self) -> RwLockReadGuard<'_, Runtime> {
        self.runtime.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the state `node`'s agent reported (a stream snapshot or a reply's).
    pub fn set_node_state(&self, node: &str, state: replbd_proto::agent::NodeState) {
        let mut rt = self.runtime.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = rt.nodes.get_mut(node) {
            n.state = Some(state);
        }
    }

    /// Runs `decide` over the current state and persists and applies its changes, one request at
    /// a time.
    pub async fn commit(
        &self,
        decide: impl FnOnce(&Cluster) -> Result<Outcome, ApiError>,
    ) -> Result<Outcome, ApiError> {
        let _one_at_a_time = self.write.lock().await;
        let outcome = decide(&self.cluster())?;
        let rows: Vec<_> = outcome.changes.iter().map(Change::row).collect();
        if !rows.is_empty() {
            self.store.commit(&rows).await?;
        }
        let mut c = self.cluster.write().unwrap_or_else(PoisonError::into_inner);
        for ch in &outcome.changes {
            c.apply(ch.clone());
        }
        Ok(outcome)
    }

    /// Records an error report and returns its id.
    pub async fn report(&self, origin: &str, context: &str, message: &str, details: &str) -> String {
        let r = ErrorReport {
            id: self.ids.next(),
            time: crate::model::now_unix(),
            origin: origin.to_owned(),
            context: context.to_owned(),
            message: message.to_owned(),
            details: details.to_owned(),
        };
        if let Err(e) = self.store.add_report(&r).await {
            warn!(error = %e, report = %r.id, "cannot store an error report");
        }
        warn!(report = %r.id, origin, context, message, "error report");
        r.id
    }

    /// The placement view of every node: online, labels, pools with free space, resources.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        let c = self.cluster();
        let rt = self.runtime();
        c.nodes
            .values()
            .map(|n| {
                let r = rt.node(&n.name);
                NodeInfo {
                    name: n.name.clone(),
                    online: r.online(),
                    hosts_resources: n.node_type.hosts_resources(),
                    excluded: if n.evicted {
                        Some("EVICTED".into())
                    } else if n.evacuating {
                        Some("being evacuated".into())
                    } else {
                        None
                    },
                    props: n.props.clone(),
                    pools: c
                        .pools_of(&n.name)
                        .map(|p| PoolInfo {
                            name: p.name.clone(),
                            driver: p.driver,
                            free: r
                                .pool(&p.name)
                                .filter(|s| s.error.is_empty())
                                .map(|s| s.free_bytes),
                        })
                        .collect(),
                    resources: c.resources_on(&n.name).map(|r| r.name.clone()).collect(),
                }
            })
            .collect()
    }

    /// Registers the link task of `node`.
    pub fn add_link(&self, node: &str, tx: mpsc::Sender<LinkMsg>) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_owned(), tx);
    }

    /// Stops the link of `node`.
    pub async fn remove_link(&self, node: &str) {
        let tx = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node);
        if let Some(tx) = tx {
            let _ = tx.send(LinkMsg::Stop).await;
        }
        self.runtime
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .remove(node);
    }

    /// Whether `node` has a link task.
    pub fn has_link(&self, node: &str) -> bool {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(node)
    }

    /// Pushes the desired state to every node and collects the results.
    pub async fn sync_all(&self) -> BTreeMap<String, SyncResult> {
        let links: Vec<(String, mpsc::Sender<LinkMsg>)> = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        let mut waits = Vec::new();
        for (node, tx) in links {
            let (reply, answer) = oneshot::channel();
            if tx.send(LinkMsg::Sync(reply)).await.is_ok() {
                waits.push((node, answer));
            }
        }
        let mut out = BTreeMap::new();
        for (node, answer) in waits {
            let r = match tokio::time::timeout(Duration::from_secs(120), answer).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err("the link to the node stopped".to_owned()),
                Err(_) => Err("the node did not answer within 120s".to_owned()),
            };
            out.insert(node, r);
        }
        out
    }

    /// Counts a failed placement.
    pub fn placement_failed(&self) {
        self.counters.placement_failures.fetch_add(1, Ordering::Relaxed);
    }
}
