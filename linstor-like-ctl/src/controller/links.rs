//! One task per node: connects out to the node's agent, keeps it in step with the cluster state
//! and records what it reports.
//!
//! ```text
//!   connect ─▶ Hello (version, node name) ─▶ Watch (state stream) ─▶ Apply(full) ─▶ Online
//!     ▲                                                                               │
//!     └──── backoff (0.5 s doubling to 5 s) ◀── stream ends / silent 5 s / error ◀─────┘
//!   while Online: Sync requests push only the resources that changed since the last push
//! ```
//!
//! While the node is offline, sync requests are answered at once with the reason, so a request
//! never waits for a node that is down; the node gets everything when it comes back.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use replbd_proto::agent::node_agent_client::NodeAgentClient;
use replbd_proto::agent::{ApplyRequest, DesiredResource, HelloRequest, NodeState, PoolSpec, WatchRequest};
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tracing::{debug, info, warn};

use super::core::{Controller, LinkMsg, SyncResult};
use super::desired;
use super::runtime::LinkState;

/// Longest a silent state stream is trusted.
const SILENCE: Duration = Duration::from_secs(5);

/// Starts the link task of `node`.
pub fn spawn(ctl: &Arc<Controller>, node: &str) {
    if ctl.has_link(node) {
        return;
    }
    let (tx, rx) = mpsc::channel(16);
    ctl.add_link(node, tx);
    tokio::spawn(run(Arc::clone(ctl), node.to_owned(), rx));
}

fn set_link(ctl: &Controller, node: &str, link: LinkState, client: Option<NodeAgentClient<Channel>>) {
    let mut rt = ctl.runtime.write().unwrap_or_else(PoisonError::into_inner);
    rt.set_link(node, link, client);
}

/// How a session ended.
enum End {
    Stop,
    Lost(String),
}

async fn run(ctl: Arc<Controller>, node: String, mut rx: mpsc::Receiver<LinkMsg>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let target = ctl
            .cluster()
            .nodes
            .get(&node)
            .map(|n| (n.address.clone(), n.port));
        let Some((address, port)) = target else { return };
        match connect(&ctl, &node, &address, port).await {
            Ok((client, stream)) => {
                backoff = Duration::from_millis(500);
                match session(&ctl, &node, client, stream, &mut rx).await {
                    End::Stop => return,
                    End::Lost(reason) => {
                        warn!(node = %node, reason = %reason, "node went offline");
                        set_link(&ctl, &node, LinkState::Offline(String::new()), None);
                    }
                }
            }
            Err(reason) => {
                debug!(node = %node, reason = %reason, "cannot reach the node's agent");
                set_link(&ctl, &node, LinkState::Offline(reason), None);
            }
        }
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                m = rx.recv() => match m {
                    None | Some(LinkMsg::Stop) => return,
                    Some(LinkMsg::Sync(reply)) => {
                        let _ = reply.send(Err(format!("node {node} is OFFLINE: the change is applied when it connects")));
                    }
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Connects to the agent, says hello and opens the state stream.
async fn connect(
    ctl: &Controller,
    node: &str,
    address: &str,
    port: u16,
) -> Result<(NodeAgentClient<Channel>, Streaming<NodeState>), String> {
    let tls = &ctl.settings.agent_tls;
    let scheme = if tls.files.is_some() { "https" } else { "http" };
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_owned()
    };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{host}:{port}"))
        .map_err(|e| format!("bad address: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(120));
    if let Some((cert, key, ca)) = &tls.files {
        let read = |p: &std::path::PathBuf| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca)?))
            .identity(Identity::from_pem(read(cert)?, read(key)?))
            .domain_name(tls.server_name.clone().unwrap_or_else(|| address.to_owned()));
        endpoint = endpoint.tls_config(cfg).map_err(|e| format!("TLS: {e}"))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let text = format!(
            "{e}: {}",
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        if text.contains("refused") {
            "connection refused".to_owned()
        } else {
            text
        }
    })?;
    let mut client = NodeAgentClient::new(channel);
    client
        .hello(HelloRequest {
            node_name: node.to_owned(),
            controller_version: replbd_proto::VERSION.to_owned(),
        })
        .await
        .map_err(|s| s.message().to_owned())?;
    let stream = client
        .watch(WatchRequest {})
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    Ok((client, stream))
}

/// What was pushed last: pools and resources.
#[derive(Default)]
struct Pushed {
    pools: Vec<PoolSpec>,
    resources: BTreeMap<String, DesiredResource>,
}

async fn push(
    ctl: &Controller,
    node: &str,
    client: &mut NodeAgentClient<Channel>,
    pushed: &mut Pushed,
    full: bool,
) -> SyncResult {
    let (pools, want) = {
        let c = ctl.cluster();
        (desired::pools(&c, node), desired::resources(&c, node))
    };
    let changed: Vec<DesiredResource> = want
        .values()
        .filter(|d| full || pushed.resources.get(&d.name) != Some(*d))
        .cloned()
        .collect();
    let delete: Vec<String> = if full {
        Vec::new()
    } else {
        pushed
            .resources
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect()
    };
    if !full && changed.is_empty() && delete.is_empty() && pools == pushed.pools {
        return Ok(Vec::new());
    }
    let reply = client
        .apply(ApplyRequest {
            full,
            pools: pools.clone(),
            resources: changed,
            delete,
        })
        .await
        .map_err(|s| format!("apply failed: {}", s.message()))?
        .into_inner();
    pushed.pools = pools;
    pushed.resources = want;
    if let Some(state) = reply.state {
        ctl.set_node_state(node, state);
    }
    for r in reply.results.iter().filter(|r| !r.error.is_empty()) {
        ctl.report(node, &format!("applying resource {}", r.name), &r.error, "")
            .await;
        // A failed resource is pushed again with the next sync.
        pushed.resources.remove(&r.name);
    }
    Ok(reply.results)
}

async fn session(
    ctl: &Arc<Controller>,
    node: &str,
    mut client: NodeAgentClient<Channel>,
    mut stream: Streaming<NodeState>,
    rx: &mut mpsc::Receiver<LinkMsg>,
) -> End {
    let mut pushed = Pushed::default();
    if let Err(e) = push(ctl, node, &mut client, &mut pushed, true).await {
        return End::Lost(e);
    }
    set_link(ctl, node, LinkState::Online, Some(client.clone()));
    info!(node, "node online: full state pushed");
    loop {
        tokio::select! {
            m = tokio::time::timeout(SILENCE, stream.message()) => match m {
                Ok(Ok(Some(state))) => ctl.set_node_state(node, state),
                Ok(Ok(None)) => return End::Lost("the agent closed the state stream".into()),
                Ok(Err(s)) => return End::Lost(format!("state stream: {}", s.message())),
                Err(_) => return End::Lost(format!("no state from the agent for {}s", SILENCE.as_secs())),
            },
            m = rx.recv() => match m {
                None | Some(LinkMsg::Stop) => return End::Stop,
                Some(LinkMsg::Sync(reply)) => {
                    let r = push(ctl, node, &mut client, &mut pushed, false).await;
                    let lost = r.as_ref().err().cloned();
                    let _ = reply.send(r);
                    if let Some(e) = lost {
                        return End::Lost(e);
                    }
                }
            },
        }
    }
}
