//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// replbd's node daemon and its admin commands (drbdadm-like).
#[derive(Parser)]
#[command(name = "replbd-node", version, about)]
pub struct Cli {
    /// The daemon's admin socket.
    #[arg(long, global = true, env = "REPLBD_ADMIN_SOCKET", default_value = replbd_node::admin::DEFAULT_SOCKET)]
    pub admin_socket: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: host every resource of this node until SIGTERM or SIGINT.
    Daemon {
        /// The configuration file.
        #[arg(long, env = "REPLBD_CONFIG", default_value = replbd_node::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Serve Prometheus metrics on this address (`/metrics`, `/health`), e.g. 127.0.0.1:9942.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Bring every resource up at start.
        #[arg(long)]
        up_all: bool,
        /// Serve the node agent a controller drives on this address (e.g. 0.0.0.0:3366). Without
        /// a configuration file the node then hosts only what the controller gives it.
        #[arg(long, value_name = "ADDR")]
        agent: Option<SocketAddr>,
        /// The node's name in the cluster (default: the configuration's this-node, else the host
        /// name); a controller that calls the node otherwise is refused.
        #[arg(long, value_name = "NAME")]
        node_name: Option<String>,
        /// Where the agent keeps run-time files (NBD sockets).
        #[arg(long, value_name = "DIR", default_value = "/run/replbd")]
        state_dir: PathBuf,
        /// TLS for the agent: this node's certificate (PEM); needs --agent-tls-key and --agent-tls-ca.
        #[arg(long, value_name = "FILE", requires_all = ["agent_tls_key", "agent_tls_ca"])]
        agent_tls_cert: Option<PathBuf>,
        /// TLS for the agent: this node's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "agent_tls_cert")]
        agent_tls_key: Option<PathBuf>,
        /// TLS for the agent: the CA that signs the controllers' client certificates (PEM).
        #[arg(long, value_name = "FILE", requires = "agent_tls_cert")]
        agent_tls_ca: Option<PathBuf>,
    },
    /// Check the configuration file and print what this node would host.
    CheckConfig {
        /// The configuration file.
        #[arg(long, env = "REPLBD_CONFIG", default_value = replbd_node::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Show the status of one resource or all: role, disk, and each peer's connection and replication.
    Status {
        /// The resource (all when omitted).
        resource: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring a resource up: attach the disk, start replication, connect to the peers.
    Up {
        /// The resource.
        resource: String,
    },
    /// Take a resource down: stop the front end, demote, disconnect, close the metadata cleanly.
    Down {
        /// The resource.
        resource: String,
    },
    /// Promote this node to Primary and start the resource's front end.
    Primary {
        /// The resource.
        resource: String,
        /// Promote even though the local data is not UpToDate, making it the newest.
        #[arg(long)]
        force: bool,
    },
    /// Stop the front end and demote this node to Secondary.
    Secondary {
        /// The resource.
        resource: String,
    },
    /// Connect to a peer (or every peer) again.
    Connect {
        /// The resource.
        resource: String,
        /// The peer's node name (every peer when omitted).
        peer: Option<String>,
        /// Resolve a split brain by discarding this node's changes.
        #[arg(long)]
        discard_my_data: bool,
    },
    /// Disconnect from a peer (or every peer) and stay disconnected until `connect`.
    Disconnect {
        /// The resource.
        resource: String,
        /// The peer's node name (every peer when omitted).
        peer: Option<String>,
    },
    /// Start an online verify against the peers.
    Verify {
        /// The resource.
        resource: String,
    },
    /// Resume I/O frozen by fencing: only after making sure the peer that could not be fenced
    /// cannot write.
    ResumeIo {
        /// The resource.
        resource: String,
    },
    /// Mark the local data Outdated (on a disconnected Secondary): it is not promoted without
    /// --force and resyncs from an UpToDate peer on the next connection.
    Outdate {
        /// The resource.
        resource: String,
    },
    /// Discard the local data and resync it from a peer.
    Invalidate {
        /// The resource.
        resource: String,
    },
    /// Apply the configuration file's peers and quorum options to the running resource without
    /// restarting it: peers added there start connecting, removed ones are disconnected and
    /// forgotten, changed ones reconnect (like `drbdadm adjust`). Other changes need down/up.
    Adjust {
        /// The resource.
        resource: String,
    },
    /// Resync a peer's data from this node.
    InvalidateRemote {
        /// The resource.
        resource: String,
        /// The peer's node name.
        peer: String,
    },
    /// Start a new data generation: on a running Primary, now; with --clear-bitmap, on a resource
    /// that is down, declaring the data UpToDate with every bitmap clear, skipping the initial sync
    /// of identical disks (run it on every node with the same --uuid).
    NewCurrentUuid {
        /// The resource.
        resource: String,
        /// Clear every bitmap and declare the data UpToDate.
        #[arg(long)]
        clear_bitmap: bool,
        /// The new current UUID (16 hex digits); random when omitted.
        #[arg(long)]
        uuid: Option<String>,
    },
    /// Print state changes as they happen (like `drbdsetup events2`), until interrupted.
    Events {
        /// Print JSON, one event per line.
        #[arg(long)]
        json: bool,
    },
}
