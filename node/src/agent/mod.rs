//! The node agent: what a controller talks to on this node (gRPC, default port 3366).
//!
//! The controller connects out to the agent, says which node it is, and pushes the storage pools
//! and resources this node should host — everything when it connects, then only what changed.
//! The agent makes it so: it creates volumes in the pools and metadata on them, hosts each
//! resource in the daemon like a configured one (its own task, engine, front end), adds and removes
//! the peers of a running resource in place when replicas come and go elsewhere (a Primary keeps
//! serving; other changes restart the resource), and takes down and deletes what the controller no
//! longer wants.
//! It streams the state of every resource it hosts back ([`service`]).
//!
//! The agent keeps no state of its own: after a restart the controller pushes everything again,
//! the volumes and their metadata are found where they were, and resync brings the data up to
//! date.
//!
//! - [`storage`]: pools and volumes;
//! - [`spec`]: the controller's desired resource → the daemon's resource spec;
//! - [`service`]: the gRPC service and the state stream;
//! - [`tls`]: the optional TLS with client certificates.

pub mod options;
pub mod service;
pub mod spec;
pub mod storage;
pub mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use replbd_proto::agent::{ApplyReply, ApplyRequest, DesiredResource, PoolSpec, PoolStatus, ResourceResult};
use replbd_quorum::Role;
use tracing::{info, warn};

use crate::daemon::{Daemon, Op};

/// A resource the agent hosts for the controller.
#[derive(Clone, Debug)]
struct Hosted {
    desired: DesiredResource,
    /// The last error applying it (empty: none).
    error: String,
    /// The local volume, if diskful.
    disk: Option<PathBuf>,
}

/// The agent of this node.
pub struct Agent {
    daemon: Arc<Daemon>,
    state_dir: PathBuf,
    node_name: Mutex<Option<String>>,
    pools: Mutex<BTreeMap<String, PoolSpec>>,
    pool_status: Mutex<BTreeMap<String, PoolStatus>>,
    hosted: Mutex<BTreeMap<String, Hosted>>,
    /// Serializes Apply requests.
    applying: tokio::sync::Mutex<()>,
}

/// Where a kernel with ublk has its control device.
pub const UBLK_CONTROL: &str = "/dev/ublk-control";

/// Whether this process can add ublk devices: the kernel has ublk, the control device opens for
/// reading and writing, and the process has `CAP_SYS_ADMIN`, which adding a device needs. Where it
/// cannot, controller-managed volumes are served over NBD rather than failing at promotion (a demo
/// run by an unprivileged user on a kernel with ublk).
pub fn ublk_usable() -> bool {
    let opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(UBLK_CONTROL)
        .is_ok();
    opens
        && std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| effective_caps(&s))
            .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// `CAP_SYS_ADMIN`'s bit in a capability set.
const CAP_SYS_ADMIN: u32 = 21;

/// The effective capability set from the text of `/proc/self/status` (its `CapEff:` line, hex).
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Agent {
    /// An agent hosting resources in `daemon`, keeping NBD sockets under `state_dir`; with
    /// `node_name` it only accepts a controller that knows it by that name.
    pub fn new(daemon: Arc<Daemon>, state_dir: PathBuf, node_name: Option<String>) -> Agent {
        Agent {
            daemon,
            state_dir,
            node_name: Mutex::new(node_name),
            pools: Mutex::default(),
            pool_status: Mutex::default(),
            hosted: Mutex::default(),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// The daemon.
    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }

    /// Accepts the controller's name for this node (a configured name must match).
    pub fn hello(&self, name: &str) -> Result<String, String> {
        let mut n = lock(&self.node_name);
        match n.as_deref() {
            Some(mine) if mine != name => Err(format!(
                "this agent is node {mine}, but the controller calls it {name}: fix the node's address in the controller"
            )),
            _ => {
                *n = Some(name.to_owned());
                Ok(name.to_owned())
            }
        }
    }

    /// Refreshes the capacity of every pool (runs the pools' tools: call off the runtime).
    pub fn refresh_pools(&self) {
        let pools: Vec<PoolSpec> = lock(&self.pools).values().cloned().collect();
        let status: BTreeMap<String, PoolStatus> = pools
            .iter()
            .map(|p| (p.name.clone(), storage::probe(p)))
            .collect();
        *lock(&self.pool_status) = status;
    }

    /// The last known status of every pool.
    pub fn pool_status(&self) -> Vec<PoolStatus> {
        lock(&self.pool_status).values().cloned().collect()
    }

    /// The names, last errors and disks of the resources hosted for the controller.
    pub fn hosted(&self) -> Vec<(String, String, Option<PathBuf>)> {
        lock(&self.hosted)
            .iter()
            .map(|(n, h)| (n.clone(), h.error.clone(), h.disk.clone()))
            .collect()
    }

    /// Applies a full or delta desired state.
    pub async fn apply(self: &Arc<Self>, req: ApplyRequest) -> ApplyReply {
        let _serial = self.applying.lock().await;
        *lock(&self.pools) = req.pools.iter().map(|p| (p.name.clone(), p.clone())).collect();
        let mut results = Vec::new();
        let mut delete = req.delete.clone();
        if req.full {
            let wanted: Vec<&str> = req.resources.iter().map(|r| r.name.as_str()).collect();
            delete.extend(
                lock(&self.hosted)
                    .keys()
                    .filter(|n| !wanted.contains(&n.as_str()))
                    .cloned(),
            );
        }
        for name in delete {
            let r = self.delete(&name).await;
            results.push(result(&name, r));
        }
        for d in req.resources {
            let name = d.name.clone();
            let r = self.reconcile(d).await;
            if let Some(h) = lock(&self.hosted).get_mut(&name) {
                h.error = r.as_ref().err().cloned().unwrap_or_default();
            }
            results.push(result(&name, r));
        }
        let me = Arc::clone(self);
        let _ = tokio::task::spawn_blocking(move || me.refresh_pools()).await;
        ApplyReply {
            results,
            state: Some(service::snapshot(self)),
        }
    }

    /// Takes `name` down and deletes its volumes.
    async fn delete(&self, name: &str) -> Result<String, String> {
        let hosted = lock(&self.hosted).remove(name);
        if let Some(Err(e)) = self.daemon.remove_host(name).await {
            warn!(resource = name, error = %e, "down before delete failed");
        }
        let Some(h) = hosted else {
            return Ok(format!("{name} is not hosted here"));
        };
        let pools = lock(&self.pools).clone();
        for v in &h.desired.volumes {
            if v.pool.is_empty() {
                continue;
            }
            let pool = pools.get(&v.pool).cloned().unwrap_or(PoolSpec {
                name: v.pool.clone(),
                driver: "file".into(),
                backing: h
                    .disk
                    .as_ref()
                    .and_then(|d| d.parent())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            });
            let (name, number) = (name.to_owned(), v.number);
            tokio::task::spawn_blocking(move || storage::delete_volume(&pool, &name, number))
                .await
                .map_err(|e| e.to_string())??;
        }
        info!(resource = name, "resource deleted");
        Ok(format!("{name} deleted"))
    }

    /// Makes resource `d` run as desired.
    async fn reconcile(&self, d: DesiredResource) -> Result<String, String> {
        let name = d.name.clone();
        let unchanged = lock(&self.hosted)
            .get(&name)
            .is_some_and(|h| h.desired == d && h.error.is_empty());
        if unchanged && self.daemon.host(&name).is_some_and(|h| h.report().up) {
            return Ok(format!("{name} unchanged"));
        }
        let disk = if d.diskless {
            None
        } else {
            let v = d
                .volumes
                .first()
                .ok_or_else(|| format!("{name}: no volume"))?
                .clone();
            let pool = lock(&self.pools)
                .get(&v.pool)
                .cloned()
                .ok_or_else(|| format!("{name}: storage pool {} is not known on this node", v.pool))?;
            let (res, node_id, peers, uuid) = (
                name.clone(),
                d.node_id as u8,
                d.max_peers.max(1) as usize,
                d.initial_uuid,
            );
            let path = tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
                let (path, _) = storage::create_volume(&pool, &res, v.number, v.size_bytes, peers)?;
                storage::ensure_metadata(&path, v.size_bytes, node_id, peers, uuid)?;
                Ok(path)
            })
            .await
            .map_err(|e| e.to_string())??;
            Some(path)
        };
        let ublk = ublk_usable();
        let spec = spec::build(&d, disk.clone(), &self.state_dir, ublk)?;
        lock(&self.hosted).insert(
            name.clone(),
            Hosted {
                desired: d,
                error: String::new(),
                disk,
            },
        );
        let mut was_primary = false;
        if let Some(host) = self.daemon.host(&name) {
            let running = host.spec();
            if spec::same_engine(&running, &spec) {
                host.call(Op::Up).await.map_err(|e| e.to_string())?;
                return Ok(format!("{name} is up"));
            }
            // Replicas added or removed elsewhere: the peers change in place, and a Primary's
            // device stays with its application.
            let what = match running.adjustable_to(&spec) {
                Ok(()) => {
                    let done = host
                        .call(Op::Adjust(Box::new(spec)))
                        .await
                        .map_err(|e| e.to_string())?;
                    host.call(Op::Up).await.map_err(|e| e.to_string())?;
                    return Ok(done);
                }
                Err(what) => what,
            };
            was_primary = host.report().role == Some(Role::Primary);
            info!(resource = %name, was_primary, changed = what, "configuration changed: restarting the resource");
            if let Some(Err(e)) = self.daemon.remove_host(&name).await {
                warn!(resource = %name, error = %e, "down for a restart failed");
            }
        }
        let host = self.daemon.add_host(spec)?;
        host.call(Op::Up).await.map_err(|e| e.to_string())?;
        if was_primary {
            host.call(Op::Primary { force: false })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(format!("{name} is up"))
    }
}

fn result(name: &str, r: Result<String, String>) -> ResourceResult {
    match r {
        Ok(message) => ResourceResult {
            name: name.to_owned(),
            error: String::new(),
            message,
        },
        Err(error) => {
            warn!(resource = name, error = %error, "applying the desired state failed");
            ResourceResult {
                name: name.to_owned(),
                error,
                message: String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_capabilities_are_read_from_the_status() {
        let root = "Name:\tx\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n";
        assert!(effective_caps(root).is_some_and(|c| c & (1 << CAP_SYS_ADMIN) != 0));
        let user = "CapInh:\t0000000000000000\nCapEff:\t0000000000000000\n";
        assert_eq!(effective_caps(user), Some(0));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }
}
