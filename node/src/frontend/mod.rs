//! The front end of a resource: how applications on this node reach the volume while it is
//! Primary.
//!
//! A front end runs only while the node is Primary: a Secondary refuses application I/O, so there
//! is nothing to offer. Promotion binds the front end *before* promoting (an NBD socket already in
//! use, or a ublk device number taken, fails the command without changing the role) and starts
//! serving after; demotion stops serving and drains in-flight requests *before* demoting, so no
//! client sees its requests fail with "not Primary" during an orderly switch-over.
//!
//! - [`ublk`]: `/dev/ublkbN` through the kernel's ublk driver (`replbd-ublk`), and what is found at
//!   the configured device number after a restart;
//! - [`recovery`]: when a device left behind by a daemon that died is re-attached;
//! - the NBD server lives in [`crate::nbd`].
//!
//! The volume served is the engine's resource wrapped in a [`MeteredVolume`], so every request is
//! counted in the metrics.

pub mod recovery;
pub mod ublk;

use std::sync::Arc;
use std::time::Duration;

use replbd_replication::Resource;
use replbd_ublk::UblkTargetError;
use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::report::FrontEndReport;
use crate::config::{FrontEndSpec, ResourceSpec};
use crate::metrics::MeteredVolume;
use crate::nbd::{Export, NbdConfig, NbdError, NbdServer, ShutdownHandle};

/// The volume front ends serve.
pub type ServedVolume = MeteredVolume<Resource>;

/// Why a front end could not start.
#[derive(Debug, Error)]
pub enum FrontEndError {
    /// The NBD server could not be bound.
    #[error(transparent)]
    Nbd(#[from] NbdError),
    /// The ublk device could not be created, re-attached or started.
    #[error(transparent)]
    Ublk(#[from] UblkTargetError),
    /// The ublk device number is taken, or the driver is missing; the text says what to do.
    #[error("{0}")]
    Unavailable(String),
    /// The thread serving the device could not be started.
    #[error("cannot start the thread serving /dev/ublkb{id}: {source}")]
    Thread {
        /// The device number.
        id: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device did not serve in time (it was stopped and deleted).
    #[error("/dev/ublkb{id} did not start serving within {seconds} s; it was deleted")]
    UblkStartTimeout {
        /// The device number.
        id: u32,
        /// The limit.
        seconds: u64,
    },
    /// The device's serving loop ended before the device served, without an error.
    #[error("/dev/ublkb{id} stopped before it served (was it deleted meanwhile?)")]
    UblkEnded {
        /// The device number.
        id: u32,
    },
}

/// A front end bound but not yet serving (between bind and promotion).
pub enum Prepared {
    /// An NBD server, bound.
    Nbd(Box<NbdServer<ServedVolume>>),
    /// A ublk device, added (its number reserved) but not started.
    Ublk(ublk::Added),
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
    /// `/dev/ublkbN`, serving.
    Ublk(ublk::Serving),
    /// No front end.
    None,
}

/// Binds the front end of `spec`, serving `volume`. For ublk this adds a new device: a device
/// left behind at the number must have been dealt with first ([`ublk::survey`]).
pub async fn prepare(spec: &Arc<ResourceSpec>, volume: Arc<ServedVolume>) -> Result<Prepared, FrontEndError> {
    match &spec.front_end {
        FrontEndSpec::Nbd(addr) => {
            if let crate::nbd::ListenAddr::Unix(path) = addr
                && let Some(dir) = path.parent()
            {
                // The socket's directory (e.g. /run/replbd) may not exist after a reboot.
                let _ = std::fs::create_dir_all(dir);
            }
            let export = Export::new(&spec.name, volume)?;
            let server = NbdServer::bind(addr, export, NbdConfig::default()).await?;
            Ok(Prepared::Nbd(Box::new(server)))
        }
        FrontEndSpec::Ublk(u) => {
            let (spec, u) = (Arc::clone(spec), *u);
            let added = tokio::task::spawn_blocking(move || ublk::add(&spec, &u, volume))
                .await
                .map_err(|e| FrontEndError::Unavailable(format!("the ublk control task failed: {e}")))??;
            Ok(Prepared::Ublk(added))
        }
        FrontEndSpec::None => Ok(Prepared::None),
    }
}

impl Prepared {
    /// Starts serving.
    pub async fn start(self, resource: &str) -> Result<Running, FrontEndError> {
        match self {
            Prepared::Nbd(server) => {
                let address = server.local_addr().to_string();
                let stop = server.shutdown_handle();
                info!(resource, volume = 0, front_end = "nbd", address = %address, "front end serving");
                let task = tokio::spawn(server.run());
                Ok(Running::Nbd { address, stop, task })
            }
            Prepared::Ublk(added) => Ok(Running::Ublk(added.start(resource).await?)),
            Prepared::None => Ok(Running::None),
        }
    }

    /// Releases a bound front end that will not serve (promotion failed): removes the NBD socket
    /// file, deletes an added ublk device.
    pub async fn discard(self) {
        match self {
            Prepared::Nbd(server) => {
                let stop = server.shutdown_handle();
                stop.shutdown();
                let _ = server.run().await;
            }
            Prepared::Ublk(added) => added.discard().await,
            Prepared::None => {}
        }
    }
}

impl Running {
    /// Stops serving: no new requests, in-flight requests finish (for at most the NBD drain
    /// timeout), connections close; a ublk device is stopped and deleted.
    pub async fn stop(self, resource: &str) {
        match self {
            Running::Nbd { address, stop, task } => {
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
            Running::Ublk(serving) => serving.stop(resource).await,
            Running::None => {}
        }
    }

    /// Where it serves: the NBD address or the block device.
    pub fn address(&self) -> Option<String> {
        match self {
            Running::Nbd { address, .. } => Some(address.clone()),
            Running::Ublk(s) => Some(s.info().block_device.display().to_string()),
            Running::None => None,
        }
    }
}

/// What the front end is doing, for the report.
pub enum Condition<'a> {
    /// Serving (Primary).
    Running(&'a Running),
    /// A ublk device left by a daemon that died waits, with its I/O, to be re-attached.
    Recovering(&'a str),
    /// It cannot serve; the reason says why and what to do.
    Unavailable(&'a str),
    /// Not Primary, nothing in the way.
    Stopped,
}

/// The front end's report.
pub fn report(spec: &FrontEndSpec, condition: Condition<'_>) -> FrontEndReport {
    let (kind, configured) = match spec {
        FrontEndSpec::Ublk(u) => ("ublk", Some(u.path())),
        FrontEndSpec::Nbd(a) => ("nbd", Some(a.to_string())),
        FrontEndSpec::None => ("none", None),
    };
    let (address, state, reason) = match (spec, condition) {
        (FrontEndSpec::None, _) => (None, "none", None),
        (_, Condition::Running(r)) => (r.address().or(configured), "serving", None),
        (_, Condition::Recovering(why)) => (configured, "recovering", Some(why.to_owned())),
        (_, Condition::Unavailable(why)) => (configured, "unavailable", Some(why.to_owned())),
        (_, Condition::Stopped) => (configured, "stopped", None),
    };
    FrontEndReport {
        kind: kind.to_owned(),
        address,
        state: state.to_owned(),
        reason,
    }
}
