//! The `replbd-controller` process: serve the API at once (as a standby until the state is
//! loaded), open the store — SQLite, or etcd after winning the leader election — start a link to
//! every node and the node-loss loop, and run until told to stop.
//!
//! With etcd, losing the leader lease ends the process with an error: a controller that may no
//! longer be the only one must not act on the cluster (its supervisor restarts it as a standby).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use replbd_proto::controller::controller_server::ControllerServer;
use thiserror::Error;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{error, info};

use super::core::{Controller, Settings};
use super::error::ApiError;
use super::service::{Active, Service};
use super::{evict, http, links};
use crate::store::etcd::{Election, Etcd, EtcdStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// Where the state lives.
#[derive(Clone, Debug)]
pub enum StoreChoice {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// etcd.
    Etcd {
        /// Comma-separated endpoints.
        endpoints: String,
        /// Key prefix (several clusters can share one etcd).
        prefix: String,
        /// Leader lease TTL.
        lease_ttl: Duration,
        /// TLS towards etcd.
        tls: Option<crate::store::etcd::EtcdTls>,
    },
}

/// TLS files: certificate, key, and the CA the other side must be signed by (PEM).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate.
    pub cert: PathBuf,
    /// Key.
    pub key: PathBuf,
    /// CA.
    pub ca: PathBuf,
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The API address.
    pub listen: SocketAddr,
    /// `/metrics` and `/health`.
    pub http: Option<SocketAddr>,
    /// The store.
    pub store: StoreChoice,
    /// TLS with client certificates on the API.
    pub tls: Option<TlsFiles>,
    /// Settings.
    pub settings: Settings,
    /// How often node loss is checked.
    pub evict_period: Duration,
}

/// Why the controller stopped.
#[derive(Debug, Error)]
pub enum RunError {
    /// The API port could not be bound.
    #[error("cannot listen on {addr}: {source} (is another controller running?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TLS files are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state could not be loaded.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The leader lease was lost.
    #[error("lost the etcd leader lease: another controller may be active now; exiting")]
    LostLeadership,
}

fn server_tls(t: &TlsFiles) -> Result<ServerTlsConfig, RunError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| RunError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&t.cert)?, read(&t.key)?))
        .client_ca_root(Certificate::from_pem(read(&t.ca)?)))
}

/// Runs the controller until `stop` resolves.
pub async fn run(opts: Options, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), RunError> {
    let active = Active::default();
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: opts.listen,
            source,
        })?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &opts.tls {
        builder = builder
            .tls_config(server_tls(t)?)
            .map_err(|e| RunError::Tls(e.to_string()))?;
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let svc = ControllerServer::new(Service::new(active.clone()));
    let server = tokio::spawn(async move {
        let _ = builder
            .serve_with_incoming_shutdown(svc, TcpListenerStream::new(listener), async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await;
    });
    info!(address = %opts.listen, tls = opts.tls.is_some(), "controller API listening");
    let http_task = match opts.http {
        Some(addr) => Some(
            http::serve(addr, active.clone())
                .await
                .map_err(|source| RunError::Bind { addr, source })?,
        ),
        None => None,
    };
    let stop = Box::pin(stop);
    let (store, lost) = match &opts.store {
        StoreChoice::Sqlite(path) => (Store::Sqlite(SqliteStore::open(path)?), None),
        StoreChoice::Etcd {
            endpoints,
            prefix,
            lease_ttl,
            tls,
        } => {
            let etcd = Etcd::connect(endpoints, tls.as_ref()).await?;
            let a = active.clone();
            let id = opts.settings.id.clone();
            let campaign = Election::campaign(etcd, prefix, &id, *lease_ttl, move |leader| {
                a.standby(leader);
            });
            info!(id = %opts.settings.id, "standby: campaigning for the etcd leader lease");
            let election = campaign.await?;
            let lost = election.lost();
            (
                Store::Etcd(Box::new(EtcdStore::new(election, prefix))),
                Some(lost),
            )
        }
    };
    let ctl = Controller::open(store, opts.settings.clone()).await?;
    let nodes: Vec<String> = ctl.cluster().nodes.keys().cloned().collect();
    for n in &nodes {
        links::spawn(&ctl, n);
    }
    active.set(Arc::clone(&ctl));
    let evict_task = tokio::spawn(evict::run(Arc::clone(&ctl), opts.evict_period));
    info!(nodes = nodes.len(), "controller active");
    let result = match lost {
        Some(mut lost) => {
            tokio::select! {
                _ = stop => Ok(()),
                _ = lost.wait_for(|l| *l) => Err(RunError::LostLeadership),
            }
        }
        None => {
            stop.await;
            Ok(())
        }
    };
    if let Err(e) = &result {
        error!(error = %e, "controller stopping");
    }
    evict_task.abort();
    if let Store::Etcd(e) = ctl.store()
        && result.is_ok()
    {
        e.election().resign().await;
    }
    stop_tx.send_replace(true);
    let _ = server.await;
    if let Some(h) = http_task {
        h.abort();
    }
    info!("controller stopped");
    result
}
