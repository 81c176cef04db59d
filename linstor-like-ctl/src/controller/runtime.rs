//! What the controller knows of each node at run time: whether its agent is connected, since
//! when, and the last state it reported (resources, pools). Nothing here is persisted: after a
//! restart the agents report again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use replbd_proto::agent::node_agent_client::NodeAgentClient;
use replbd_proto::agent::{NodeState, PoolStatus, ResourceState};
use tonic::transport::Channel;

/// The connection to a node's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet since the controller started.
    Connecting,
    /// Connected, state streaming.
    Online,
    /// Not connected: why.
    Offline(String),
}

/// One node at run time.
#[derive(Clone, Debug)]
pub struct NodeRuntime {
    /// The connection.
    pub link: LinkState,
    /// When `link` last changed.
    pub since: Instant,
    /// Unix seconds when the node went offline (0 while online).
    pub offline_since_unix: i64,
    /// The agent's client while online.
    pub client: Option<NodeAgentClient<Channel>>,
    /// The last state the agent reported.
    pub state: Option<NodeState>,
}

impl Default for NodeRuntime {
    fn default() -> NodeRuntime {
        NodeRuntime {
            link: LinkState::Connecting,
            since: Instant::now(),
            offline_since_unix: crate::model::now_unix(),
            client: None,
            state: None,
        }
    }
}

impl NodeRuntime {
    /// Whether the agent is connected.
    pub fn online(&self) -> bool {
        self.link == LinkState::Online
    }

    /// How long the node has been without a connection (zero while online).
    pub fn offline_for(&self) -> Duration {
        if self.online() {
            Duration::ZERO
        } else {
            self.since.elapsed()
        }
    }

    /// The node's state as `node list` shows it: `Online`, `OFFLINE`, `OFFLINE(reason)`.
    pub fn display(&self) -> String {
        match &self.link {
            LinkState::Online => "Online".to_owned(),
            LinkState::Connecting => "OFFLINE(connecting)".to_owned(),
            LinkState::Offline(reason) if reason.is_empty() => "OFFLINE".to_owned(),
            LinkState::Offline(reason) => format!("OFFLINE({reason})"),
        }
    }

    /// The reported state of resource `name`.
    pub fn resource(&self, name: &str) -> Option<&ResourceState> {
        self.state.as_ref()?.resources.iter().find(|r| r.name == name)
    }

    /// The reported status of pool `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolStatus> {
        self.state.as_ref()?.pools.iter().find(|p| p.name == name)
    }
}

/// Every node at run time.
#[derive(Debug, Default)]
pub struct Runtime {
    /// By node name.
    pub nodes: BTreeMap<String, NodeRuntime>,
}

impl Runtime {
    /// Node `name` (a default "connecting" entry if unknown).
    pub fn node(&self, name: &str) -> NodeRuntime {
        self.nodes.get(name).cloned().unwrap_or_default()
    }

    /// Sets node `name`'s link state.
    pub fn set_link(&mut self, name: &str, link: LinkState, client: Option<NodeAgentClient<Channel>>) {
        let n = self.nodes.entry(name.to_owned()).or_default();
        if n.link != link {
            let was_online = n.online();
            n.link = link;
            n.since = Instant::now();
            if n.online() {
                n.offline_since_unix = 0;
            } else if was_online || n.offline_since_unix == 0 {
                n.offline_since_unix = crate::model::now_unix();
            }
        }
        if !n.online() {
            n.state = None;
        }
        n.client = client;
    }
}
