//! The front end of a resource: how applications on this node reach the volume while it is
//! Primary.
//!
//! A front end runs only while the node is Primary: a Secondary refuses application I/O, so there
//! is nothing to offer. Promotion binds the front end *before* promoting (an NBD socket already in
//! use fails the command without changing the role) and starts serving after; demotion stops
//! serving and drains in-flight requests *before* demoting, so no client sees its requests fail
//! with "not Primary" during an orderly switch-over.
//!
//! The volume served is the engine's resource wrapped in a [`MeteredVolume`], so every request is
//! counted in the metrics. The ublk front end is built elsewhere (`ublk-target/`) and not linked
//! into this daemon yet: a resource configured with it says so in its status and log.

use std::sync::Arc;
use std::time::Duration;

use replbd_replication::Resource;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::report::FrontEndReport;
use crate::config::FrontEndSpec;
use crate::metrics::MeteredVolume;
use crate::nbd::{Export, NbdConfig, NbdError, NbdServer, ShutdownHandle};

/// Why the ublk front end cannot be started.
pub const UBLK_UNAVAILABLE: &str = "the ublk front end is not built yet (replbd-ublk is not part of this build); use kind = \"nbd\" to serve this resource";

/// The volume front ends serve.
pub type ServedVolume = MeteredVolume<Resource>;

/// A front end bound but not yet serving (between bind and promotion).
pub enum Prepared {
    /// An NBD server, bound.
    Nbd(Box<NbdServer<ServedVolume>>),
    /// ublk, which this build cannot start.
    UblkUnavailable,
    /// No front end.
    None,
}

/// A front end after promotion.
pub enum Running {
    /// An NBD server serving the export.
    Nbd {
        /// Where it listens.
        address: String,
        /// Stops it.
        stop: ShutdownHandle,
        /// The server task.
        task: JoinHandle<Result<(), NbdError>>,
    },
    /// ublk was configured but cannot run.
    UblkUnavailable,
    /// No front end.
    None,
}

/// Binds the front end `spec` for resource `name`, serving `volume`.
pub async fn prepare(
    spec: &FrontEndSpec,
    name: &str,
    volume: Arc<ServedVolume>,
) -> Result<Prepared, NbdError> {
    match spec {
        FrontEndSpec::Nbd(addr) => {
            if let crate::nbd::ListenAddr::Unix(path) = addr
                && let Some(dir) = path.parent()
            {
                // The socket's directory (e.g. /run/replbd) may not exist after a reboot.
                let _ = std::fs::create_dir_all(dir);
            }
            let export = Export::new(name, volume)?;
            let server = NbdServer::bind(addr, export, NbdConfig::default()).await?;
            Ok(Prepared::Nbd(Box::new(server)))
        }
        FrontEndSpec::Ublk => Ok(Prepared::UblkUnavailable),
        FrontEndSpec::None => Ok(Prepared::None),
    }
}

impl Prepared {
    /// Starts serving.
    pub fn start(self, resource: &str) -> Running {
        match self {
            Prepared::Nbd(server) => {
                let address = server.local_addr().to_string();
                let stop = server.shutdown_handle();
                info!(resource, volume = 0, front_end = "nbd", address = %address, "front end serving");
                let task = tokio::spawn(server.run());
                Running::Nbd { address, stop, task }
            }
            Prepared::UblkUnavailable => {
                warn!(
                    resource,
                    volume = 0,
                    front_end = "ublk",
                    reason = UBLK_UNAVAILABLE,
                    "front end not started"
                );
                Running::UblkUnavailable
            }
            Prepared::None => Running::None,
        }
    }

    /// Releases a bound front end that will not serve (promotion failed); removes its socket file.
    pub async fn discard(self) {
        if let Prepared::Nbd(server) = self {
            let stop = server.shutdown_handle();
            stop.shutdown();
            let _ = server.run().await;
        }
    }
}

impl Running {
    /// Stops serving: no new clients, in-flight requests finish (for at most the NBD drain
    /// timeout), connections close.
    pub async fn stop(self, resource: &str) {
        if let Running::Nbd { address, stop, task } = self {
            stop.shutdown();
            match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(Ok(Ok(()))) => {
                    info!(resource, volume = 0, front_end = "nbd", address = %address, "front end stopped")
                }
                Ok(Ok(Err(e))) => {
                    warn!(resource, volume = 0, error = %e, "NBD front end ended with an error")
                }
                Ok(Err(e)) => warn!(resource, volume = 0, error = %e, "NBD front end task failed"),
                Err(_) => warn!(resource, volume = 0, "NBD front end did not stop within 60s"),
            }
        }
    }
}

/// The front end's report: `running` is the front end after promotion, if Primary.
pub fn report(spec: &FrontEndSpec, running: Option<&Running>) -> FrontEndReport {
    let kind = match spec {
        FrontEndSpec::Ublk => "ublk",
        FrontEndSpec::Nbd(_) => "nbd",
        FrontEndSpec::None => "none",
    };
    let configured = match spec {
        FrontEndSpec::Nbd(a) => Some(a.to_string()),
        _ => None,
    };
    let (address, state, reason) = match (spec, running) {
        (FrontEndSpec::None, _) => (None, "none", None),
        (FrontEndSpec::Ublk, _) => (None, "unavailable", Some(UBLK_UNAVAILABLE.to_owned())),
        (_, Some(Running::Nbd { address, .. })) => (Some(address.clone()), "serving", None),
        (_, _) => (configured, "stopped", None),
    };
    FrontEndReport {
        kind: kind.to_owned(),
        address,
        state: state.to_owned(),
        reason,
    }
}
