//! The ublk front end of a resource: `/dev/ublkbN` served from the engine while the node is Primary.
//!
//! The device number comes from the configuration (`front-end.device`), like DRBD's `device minor
//! N`: it is what lets a restarted daemon find the device it left behind. Every device the daemon
//! starts also records an owner label, `replbd-node RESOURCE@NODE` (see
//! [`replbd_ublk::inspect_device`]), so the daemon touches a device at its number only when the
//! label is its own:
//!
//! | found at `device` on `up`                                  | what the daemon does                               |
//! |------------------------------------------------------------|----------------------------------------------------|
//! | nothing                                                    | nothing; `primary` adds the device                 |
//! | ours, recovery enabled, no live server (the daemon died)   | re-attach it once the node is Primary again ([`super::recovery`]) |
//! | ours, stopped (a daemon without recovery died)             | delete it: its I/O already failed, nothing waits   |
//! | ours or not, served by a live process                      | leave it; the front end is unavailable, with why   |
//! | not ours (another label, or none)                          | leave it; the front end is unavailable, with why   |
//!
//! Starting happens in two steps so that promotion can sit between them: [`add`] creates the
//! device (`ADD_DEV`, the number is reserved but no block device exists yet) before promoting, so a
//! number in use fails `primary` without changing the role; [`Added::start`] then runs the queues on
//! a thread of their own and returns once `/dev/ublkbN` serves. Re-attaching ([`recover`]) happens
//! only after promotion: the driver's recovery cannot be undone, and it must serve at once.
//!
//! The control commands block (they wait for the driver), so they run on tokio's blocking pool.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use replbd_ublk::{
    DeviceConfig, DeviceInfo, ExistingDevice, RecoveryPolicy, StopHandle, UblkTarget, UblkTargetError,
    delete_device, inspect_device,
};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{FrontEndError, ServedVolume};
use crate::config::{ResourceSpec, UblkSpec};

/// Longest wait for a device to start serving (a recovery waits up to 30 s for the driver to
/// notice the old server is gone).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The owner label of `spec`'s device on this node.
pub fn owner_label(spec: &ResourceSpec) -> String {
    format!("replbd-node {}@{}", spec.name, spec.this.name)
}

/// What is at the configured device number when the resource comes up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// No device: `primary` will add one.
    Free,
    /// This resource's device, left by a daemon that died with I/O waiting on it: re-attach.
    Recoverable(ExistingDevice),
    /// This resource's device, stopped: nothing waits on it; delete it.
    Leftover(ExistingDevice),
    /// The front end cannot serve until someone acts; the reason says what to do.
    Blocked(String),
}

/// Classifies what [`inspect_device`] found at `ublk`'s number for the resource labelled `owner`.
pub fn classify(ublk: &UblkSpec, owner: &str, found: Option<ExistingDevice>) -> Found {
    let path = ublk.path();
    let Some(dev) = found else {
        return Found::Free;
    };
    if dev.owner.as_deref() != Some(owner) {
        let who = dev.owner.as_deref().map_or_else(
            || "a device without a replbd label".to_owned(),
            |o| format!("\"{o}\""),
        );
        let served = if dev.is_served() {
            format!(", served by process {}", dev.server_pid)
        } else {
            String::new()
        };
        return Found::Blocked(format!(
            "{path} already exists and is not this resource's ({who}{served}): delete it or set another \
             front-end.device"
        ));
    }
    if dev.is_served() {
        return Found::Blocked(format!(
            "{path} is still served by process {}: is another replbd-node running with this \
             configuration? Stop it first",
            dev.server_pid
        ));
    }
    if dev.can_recover() {
        Found::Recoverable(dev)
    } else {
        Found::Leftover(dev)
    }
}

/// Looks at the configured device number (blocking). Errors (no driver) become `Blocked`.
pub fn survey(spec: &ResourceSpec, ublk: &UblkSpec) -> Found {
    match inspect_device(ublk.device) {
        Ok(found) => classify(ublk, &owner_label(spec), found),
        Err(e) => Found::Blocked(e.to_string()),
    }
}

/// Deletes a device (blocking); a device already gone is not an error.
pub fn delete(id: u32) -> Result<(), UblkTargetError> {
    match delete_device(id) {
        Ok(()) | Err(UblkTargetError::NoSuchDevice { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A device created or re-attached but not serving yet.
pub struct Added {
    target: UblkTarget<ServedVolume>,
}

/// Creates the device of `spec` serving `volume` (blocking). The block device appears on
/// [`Added::start`]; dropping an `Added` device deletes it.
pub fn add(
    spec: &ResourceSpec,
    ublk: &UblkSpec,
    volume: Arc<ServedVolume>,
) -> Result<Added, UblkTargetError> {
    let config = DeviceConfig {
        id: Some(ublk.device),
        queues: ublk.queues,
        depth: ublk.queue_depth,
        block_size: ublk.logical_block_size,
        recovery: RecoveryPolicy::IfAvailable,
        owner: Some(owner_label(spec)),
        ..DeviceConfig::default()
    };
    let target = UblkTarget::add(volume, &config)?;
    Ok(Added { target })
}

/// Re-attaches to this resource's device `id`, left by a daemon that died (blocking).
pub fn recover(id: u32, volume: Arc<ServedVolume>) -> Result<Added, UblkTargetError> {
    Ok(Added {
        target: UblkTarget::recover(volume, id)?,
    })
}

impl Added {
    /// The device.
    pub fn info(&self) -> &DeviceInfo {
        self.target.info()
    }

    /// Runs the queues on a thread of their own and waits until the device serves.
    pub async fn start(self, resource: &str) -> Result<Serving, FrontEndError> {
        let target = self.target.with_tokio(tokio::runtime::Handle::current());
        let stop = target.stop_handle();
        let info = target.info().clone();
        let id = info.id;
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("ublk{id}"))
            .spawn(move || {
                target.run(move |info| {
                    let _ = ready_tx.send(info.clone());
                })
            })
            .map_err(|source| FrontEndError::Thread { id, source })?;
        let mut serving = Serving {
            info,
            stop,
            thread: Some(thread),
        };
        match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(info)) => {
                info!(resource, device = %info.block_device.display(), recovered = info.recovered,
                    crash_recovery = info.crash_recovery, "ublk front end serving");
                serving.info = info;
                Ok(serving)
            }
            // `run` returned before the device served: its error says why.
            Ok(Err(_)) => match serving.thread.take().map(join) {
                Some(joined) => match joined.await {
                    Err(e) => Err(e.into()),
                    Ok(()) => Err(FrontEndError::UblkEnded { id }),
                },
                None => Err(FrontEndError::UblkEnded { id }),
            },
            Err(_) => {
                warn!(resource, device = id, timeout = ?START_TIMEOUT, "the ublk device did not start in time; stopping it");
                serving.stop(resource).await;
                Err(FrontEndError::UblkStartTimeout {
                    id,
                    seconds: START_TIMEOUT.as_secs(),
                })
            }
        }
    }

    /// Deletes a device that was added but will not serve (promotion failed).
    pub async fn discard(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

/// Waits for the serving thread and returns what `run` returned.
async fn join(thread: JoinHandle<Result<(), UblkTargetError>>) -> Result<(), UblkTargetError> {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(result)) => result,
        // The thread panicked or the join task failed: nothing more to learn.
        _ => Ok(()),
    }
}

/// A device serving `/dev/ublkbN`.
pub struct Serving {
    info: DeviceInfo,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<(), UblkTargetError>>>,
}

impl Serving {
    /// The device.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Stops and deletes the device: requests in flight finish, `/dev/ublkbN` goes away.
    pub async fn stop(mut self, resource: &str) {
        let stop = self.stop.clone();
        match tokio::task::spawn_blocking(move || stop.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(resource, device = self.info.id, error = %e, "cannot stop the ublk device"),
            Err(e) => warn!(resource, device = self.info.id, error = %e, "the ublk stop task failed"),
        }
        if let Some(thread) = self.thread.take() {
            match join(thread).await {
                Ok(()) => {
                    info!(resource, device = %self.info.block_device.display(), "ublk front end stopped and deleted")
                }
                Err(e) => {
                    warn!(resource, device = self.info.id, error = %e, "the ublk device ended with an error")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use replbd_ublk::{BlockSize, DeviceState};

    use super::*;

    const OWNER: &str = "replbd-node r0@alpha";

    fn device(owner: Option<&str>, state: DeviceState, recoverable: bool, alive: bool) -> ExistingDevice {
        ExistingDevice {
            id: 0,
            state,
            recoverable,
            server_pid: 4242,
            server_alive: alive,
            size: 64 << 20,
            block_size: Some(BlockSize::B512),
            owner: owner.map(str::to_owned),
        }
    }

    fn blocked(found: Found) -> String {
        match found {
            Found::Blocked(why) => why,
            other => panic!("expected Blocked, got {other:?}"),
        }
    }

    #[test]
    fn only_this_resources_device_is_touched() {
        let u = UblkSpec::new(0);
        assert_eq!(classify(&u, OWNER, None), Found::Free);
        let mine = device(Some(OWNER), DeviceState::Quiesced, true, false);
        assert_eq!(classify(&u, OWNER, Some(mine.clone())), Found::Recoverable(mine));
        let stopped = device(Some(OWNER), DeviceState::Dead, false, false);
        assert_eq!(
            classify(&u, OWNER, Some(stopped.clone())),
            Found::Leftover(stopped)
        );
        let why = blocked(classify(
            &u,
            OWNER,
            Some(device(Some("replbd-node r0@beta"), DeviceState::Live, true, true)),
        ));
        assert_eq!(
            why,
            "/dev/ublkb0 already exists and is not this resource's (\"replbd-node r0@beta\", served by process 4242): \
             delete it or set another front-end.device"
        );
        let why = blocked(classify(
            &u,
            OWNER,
            Some(device(None, DeviceState::Quiesced, true, false)),
        ));
        assert!(why.contains("(a device without a replbd label)"), "{why}");
        let why = blocked(classify(
            &u,
            OWNER,
            Some(device(Some(OWNER), DeviceState::Live, true, true)),
        ));
        assert!(
            why.starts_with("/dev/ublkb0 is still served by process 4242"),
            "{why}"
        );
    }

    #[test]
    fn owner_labels_name_the_resource_and_the_node() {
        let toml = "this-node = \"alpha\"\n[resource.r0]\n[[resource.r0.node]]\nname = \"alpha\"\nid = 0\n\
                    address = \"127.0.0.1:7000\"\n[[resource.r0.volume]]\ndisk = \"/tmp/x\"\n[resource.r0.net]\n\
                    shared-secret = \"s\"\n[resource.r0.front-end]\nkind = \"ublk\"\ndevice = 0\n";
        let c = crate::config::parse(toml, std::path::Path::new("t.toml"), None).unwrap();
        assert_eq!(owner_label(&c.resources[0]), OWNER);
    }
}
