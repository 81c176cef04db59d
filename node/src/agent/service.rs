//! The agent's gRPC service ([`NodeAgent`]) and its server.
//!
//! `Watch` streams a snapshot of every resource the agent hosts and of its pools: one at once,
//! then one after every state change and at least every [`HEARTBEAT`] (resync progress changes
//! without events, and a silent stream tells the controller the agent is gone).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use replbd_proto::agent::node_agent_server::{NodeAgent, NodeAgentServer};
use replbd_proto::agent::{
    ApplyReply, ApplyRequest, HelloReply, HelloRequest, NodeState, PeerState, PoolSpec, PoolStatus,
    ResourceState, SetRoleReply, SetRoleRequest, WatchRequest,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::{Agent, storage};
use crate::daemon::Op;

/// How often a snapshot is sent at the least.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The service over an [`Agent`].
#[derive(Clone)]
pub struct AgentService {
    agent: Arc<Agent>,
    stop: watch::Receiver<bool>,
}

impl AgentService {
    /// The service of `agent`; its state streams end when `stop` becomes true.
    pub fn new(agent: Arc<Agent>, stop: watch::Receiver<bool>) -> AgentService {
        AgentService { agent, stop }
    }
}

/// What an application opens to use resource `name`, from its front end's report: the block
/// device (`/dev/ublkbN`) as it is, an NBD listen address (`unix:/path`, `host:port`) as a qemu
/// URL for the export `name`.
fn device(name: &str, kind: &str, address: &str) -> String {
    if kind == "ublk" {
        return address.to_owned();
    }
    match address.strip_prefix("unix:") {
        Some(path) => format!("nbd+unix:///{name}?socket={path}"),
        None => format!("nbd://{address}/{name}"),
    }
}

/// A snapshot of everything the agent hosts.
pub fn snapshot(agent: &Agent) -> NodeState {
    let resources = agent
        .hosted()
        .into_iter()
        .map(|(name, error, disk)| {
            let mut st = ResourceState {
                name: name.clone(),
                error,
                allocated_bytes: disk.as_deref().map_or(0, storage::allocated),
                ..Default::default()
            };
            if let Some(h) = agent.daemon().host(&name) {
                let r = h.report();
                st.up = r.up;
                st.role = r.role.map(|x| x.to_string()).unwrap_or_default();
                st.disk = r.disk.map(|x| x.to_string()).unwrap_or_default();
                st.size_bytes = r.size_bytes;
                if r.front_end.state == "serving"
                    && let Some(a) = &r.front_end.address
                {
                    st.device = device(&name, &r.front_end.kind, a);
                }
                st.peers = r
                    .peers
                    .iter()
                    .map(|p| PeerState {
                        node: p.name.clone(),
                        node_id: u32::from(p.node_id),
                        connection: p.connection.to_string(),
                        replication: p.replication.to_string(),
                        peer_disk: p.peer_disk.to_string(),
                        role: p.role.to_string(),
                        out_of_sync_bytes: p.out_of_sync_bytes,
                        done_percent: p.done_percent.unwrap_or(-1.0),
                    })
                    .collect();
            }
            st
        })
        .collect();
    NodeState {
        resources,
        pools: agent.pool_status(),
        heartbeat_seconds: HEARTBEAT.as_secs() as u32,
    }
}

#[tonic::async_trait]
impl NodeAgent for AgentService {
    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let req = req.into_inner();
        let major = |v: &str| v.split('.').next().unwrap_or_default().to_owned();
        if major(&req.controller_version) != major(replbd_proto::VERSION) {
            return Err(Status::failed_precondition(format!(
                "VERSION MISMATCH: controller {} and agent {}",
                req.controller_version,
                replbd_proto::VERSION
            )));
        }
        let name = self
            .agent
            .hello(&req.node_name)
            .map_err(Status::failed_precondition)?;
        info!(node = %name, controller_version = %req.controller_version, "controller connected");
        Ok(Response::new(HelloReply {
            agent_version: replbd_proto::VERSION.to_owned(),
            node_name: name,
            hostname: crate::config::hostname().unwrap_or_default(),
            ublk_available: super::ublk_usable(),
        }))
    }

    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyReply>, Status> {
        let req = req.into_inner();
        info!(
            full = req.full,
            resources = req.resources.len(),
            delete = req.delete.len(),
            pools = req.pools.len(),
            "applying the desired state"
        );
        Ok(Response::new(self.agent.apply(req).await))
    }

    async fn probe_pool(&self, req: Request<PoolSpec>) -> Result<Response<PoolStatus>, Status> {
        let pool = req.into_inner();
        let st = tokio::task::spawn_blocking(move || storage::probe(&pool))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(st))
    }

    async fn set_role(&self, req: Request<SetRoleRequest>) -> Result<Response<SetRoleReply>, Status> {
        let req = req.into_inner();
        let host = self
            .agent
            .daemon()
            .host(&req.resource)
            .ok_or_else(|| Status::not_found(format!("{} is not hosted on this node", req.resource)))?;
        let op = if req.primary {
            Op::Primary { force: req.force }
        } else {
            Op::Secondary
        };
        let message = host
            .call(op)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(SetRoleReply {
            message,
            state: Some(snapshot(&self.agent)),
        }))
    }

    type WatchStream = ReceiverStream<Result<NodeState, Status>>;

    async fn watch(&self, _req: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let agent = Arc::clone(&self.agent);
        let mut events = agent.daemon().events().subscribe();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let mut last_pools = tokio::time::Instant::now();
            loop {
                if last_pools.elapsed() > Duration::from_secs(10) {
                    let a = Arc::clone(&agent);
                    let _ = tokio::task::spawn_blocking(move || a.refresh_pools()).await;
                    last_pools = tokio::time::Instant::now();
                }
                if tx.send(Ok(snapshot(&agent))).await.is_err() {
                    break;
                }
                tokio::select! {
                    e = events.recv() => {
                        if matches!(e, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            break;
                        }
                        // Let a burst of events settle into one snapshot.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        while events.try_recv().is_ok() {}
                    }
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                    // Ending the stream lets the server shut down (it waits for open calls).
                    _ = stop.changed() => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Why the agent's server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The port could not be bound.
    #[error("cannot listen for the controller on {addr}: {source} (is another replbd-node using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error("agent TLS: {0}")]
    Tls(String),
}

/// Binds `addr` and serves the agent on it until `stop` becomes true.
pub async fn serve(
    agent: Arc<Agent>,
    addr: SocketAddr,
    tls: Option<super::tls::TlsFiles>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        builder = builder
            .tls_config(t.server().map_err(ServeError::Tls)?)
            .map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let a = Arc::clone(&agent);
    tokio::task::spawn_blocking(move || a.refresh_pools());
    info!(address = %addr, tls = tls.is_some(), "agent listening for the controller");
    let streams_stop = stop.clone();
    Ok(tokio::spawn(async move {
        let svc = NodeAgentServer::new(AgentService::new(agent, streams_stop));
        let r = builder
            .serve_with_incoming_shutdown(svc, TcpListenerStream::new(listener), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            warn!(error = %e, "the agent server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn devices_as_applications_open_them() {
        assert_eq!(device("r0", "ublk", "/dev/ublkb1000"), "/dev/ublkb1000");
        assert_eq!(
            device("r0", "nbd", "unix:/run/replbd/nbd/r0.sock"),
            "nbd+unix:///r0?socket=/run/replbd/nbd/r0.sock"
        );
        assert_eq!(device("r0", "nbd", "127.0.0.1:10809"), "nbd://127.0.0.1:10809/r0");
    }
}
