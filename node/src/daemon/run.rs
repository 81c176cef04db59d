//! The `replbd-node daemon` process: load the configuration, open the admin socket and the metrics
//! endpoint, bring resources up if asked, and on SIGTERM or SIGINT take every resource down cleanly
//! before exiting. On SIGUSR1 it *detaches* instead: it returns at once, taking nothing down, so
//! that ublk devices stay with their I/O waiting for the next daemon (an upgrade in place).
//!
//! A clean shutdown stops each front end (in-flight requests finish), demotes, disconnects, and
//! closes the metadata so it is marked clean. SIGKILL cannot be caught: the metadata then stays
//! marked in use, and the next `up` replays the activity log (every extent that may have been
//! written is marked out of sync for every peer) — nothing here has to help with that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Daemon;
use crate::admin::server::{self, AdminSocketError};
use crate::config::{self, ConfigError};
use crate::metrics::{Metrics, http};

/// How the daemon is started.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// The admin socket.
    pub admin_socket: PathBuf,
    /// The metrics endpoint, if any.
    pub metrics: Option<SocketAddr>,
    /// Bring every resource up at start.
    pub up_all: bool,
    /// Serve the node agent for a controller.
    pub agent: Option<AgentOptions>,
}

/// How the node agent is served.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The node's name, if fixed.
    pub node_name: Option<String>,
    /// Run-time files (NBD sockets).
    pub state_dir: PathBuf,
    /// TLS with client certificates.
    pub tls: Option<crate::agent::tls::TlsFiles>,
}

/// Why the daemon could not run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The admin socket could not be opened.
    #[error(transparent)]
    AdminSocket(#[from] AdminSocketError),
    /// The metrics endpoint could not be bound.
    #[error("cannot listen for metrics on {addr}: {source} (is another daemon using the port?)")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The agent could not start.
    #[error(transparent)]
    Agent(#[from] crate::agent::service::ServeError),
    /// Signal handlers could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// How the daemon ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT: every resource was taken down.
    Stopped,
    /// SIGUSR1: nothing was taken down. The caller must end the process *at once*
    /// (`std::process::exit`), without dropping the runtime: dropping it would cancel engine
    /// futures that ublk queue threads are polling and fail those requests, while a process that
    /// just ends leaves them to be re-issued to the next daemon.
    Detached,
}

/// Runs the daemon until SIGTERM or SIGINT (or SIGUSR1, see [`Exit::Detached`]).
pub async fn run(opts: DaemonOptions) -> Result<Exit, RunError> {
    let config = match (&opts.agent, config::load(&opts.config)) {
        (_, Ok(c)) => c,
        // A node driven by a controller needs no configuration file.
        (Some(agent), Err(ConfigError::Read { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            config::NodeConfig {
                path: opts.config.clone(),
                this_node: agent
                    .node_name
                    .clone()
                    .or_else(config::hostname)
                    .unwrap_or_else(|| "localhost".to_owned()),
                resources: Vec::new(),
            }
        }
        (_, Err(e)) => return Err(e.into()),
    };
    info!(node = %config.this_node, config = %opts.config.display(), resources = config.resources.len(), "replbd-node starting");
    for r in &config.resources {
        info!(
            resource = %r.name, node_id = r.this.id, address = %r.this.address, peers = r.peers.len(),
            front_end = %r.front_end, diskless = r.this.diskless, "resource configured"
        );
    }
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(RunError::Signals)?;
    let metrics = Arc::new(Metrics::new(&config.this_node));
    let daemon = Arc::new(Daemon::new(config, Arc::clone(&metrics)));
    let (stop_tx, stop) = watch::channel(false);

    let listener = server::bind(&opts.admin_socket)?;
    let metrics_task = match opts.metrics {
        Some(addr) => {
            let l = http::bind(addr)
                .await
                .map_err(|source| RunError::Metrics { addr, source })?;
            let d = Arc::clone(&daemon);
            let refresh: http::Refresh = Arc::new(move || d.refresh_metrics());
            Some(tokio::spawn(http::serve(l, metrics, refresh, stop.clone())))
        }
        None => None,
    };
    let admin_task = tokio::spawn(server::serve(
        listener,
        opts.admin_socket.clone(),
        Arc::clone(&daemon),
        stop.clone(),
    ));
    let agent_task = match &opts.agent {
        Some(a) => {
            let name = a.node_name.clone().or_else(|| {
                (!daemon.config().resources.is_empty()).then(|| daemon.config().this_node.clone())
            });
            let agent = Arc::new(crate::agent::Agent::new(
                Arc::clone(&daemon),
                a.state_dir.clone(),
                name,
            ));
            Some(crate::agent::service::serve(agent, a.listen, a.tls.clone(), stop.clone()).await?)
        }
        None => None,
    };
    if opts.up_all {
        // In the background, so a signal during a slow attach is still handled; each resource's
        // task queues the shutdown's `down` behind its `up`.
        let d = Arc::clone(&daemon);
        tokio::spawn(async move { d.up_all().await });
    }
    info!(admin_socket = %opts.admin_socket.display(), metrics = ?opts.metrics, "replbd-node ready");

    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = usr1.recv() => "SIGUSR1",
    };
    if signal_name == "SIGUSR1" {
        warn!(
            "detaching (SIGUSR1): exiting without taking resources down; ublk devices stay with their I/O \
             waiting, and the next replbd-node re-attaches them on `up`"
        );
        // Nothing may be dropped on the way out: the daemon's state is leaked on purpose.
        std::mem::forget(daemon);
        return Ok(Exit::Detached);
    }
    info!(signal = signal_name, "shutting down: taking every resource down");
    stop_tx.send_replace(true);
    daemon.shutdown().await;
    if admin_task.await.is_err() {
        warn!("the admin socket task failed");
    }
    if let Some(t) = agent_task
        && t.await.is_err()
    {
        warn!("the agent task failed");
    }
    if let Some(t) = metrics_task
        && t.await.is_err()
    {
        warn!("the metrics task failed");
    }
    info!("replbd-node stopped");
    Ok(Exit::Stopped)
}
