//! The resource task's part in ublk crash recovery: on `up`, look at the configured device number;
//! if this resource's device is there with the application's I/O waiting (the previous daemon
//! died while Primary), watch the engine until the node may be Primary again
//! ([`crate::frontend::recovery`]), then promote and re-attach — or, if another node took over,
//! delete the device so its waiting I/O fails instead of hanging forever.
//!
//! `primary` re-attaches a waiting device too (the operator's way when the node is alone), and
//! `secondary` and `down` delete it.

use std::sync::Arc;
use std::time::Duration;

use replbd_replication::Resource;
use replbd_ublk::ExistingDevice;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Envelope, Host, HostError, Op};
use crate::config::{FrontEndSpec, ResourceSpec};
use crate::frontend::recovery::{Verdict, verdict};
use crate::frontend::ublk::{self, Found};
use crate::frontend::{FrontEndError, Running};

/// How often the watcher re-checks even without a state change (the engine's status also moves
/// without events, e.g. resync progress).
const RECHECK: Duration = Duration::from_millis(500);

/// A ublk device left by a daemon that died, with I/O waiting on it.
pub(super) struct Waiting {
    device: ExistingDevice,
    watcher: Option<JoinHandle<()>>,
}

impl Waiting {
    /// A device found waiting, not watched (yet).
    pub(super) fn found(device: ExistingDevice) -> Waiting {
        Waiting {
            device,
            watcher: None,
        }
    }

    fn path(&self) -> String {
        format!("/dev/ublkb{}", self.device.id)
    }

    fn stop_watching(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }

    /// Deletes the device: the I/O waiting on it fails.
    pub(super) async fn give_up(mut self, resource: &str, why: &str) {
        self.stop_watching();
        let id = self.device.id;
        warn!(resource, device = %self.path(), reason = why, "deleting the ublk device left by the previous daemon: the I/O waiting on it fails");
        match tokio::task::spawn_blocking(move || ublk::delete(id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(resource, device = id, error = %e, "cannot delete the ublk device"),
            Err(e) => warn!(resource, device = id, error = %e, "the ublk delete task failed"),
        }
    }
}

/// Waits until the verdict is no longer "wait", then asks the resource's task to act.
async fn watch(spec: Arc<ResourceSpec>, engine: Resource, tx: tokio::sync::mpsc::WeakSender<Envelope>) {
    let mut changes = engine.subscribe();
    while let Verdict::Wait(_) = verdict(&spec, &engine.status()) {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
    if let Some(tx) = tx.upgrade() {
        let (reply, _) = oneshot::channel();
        let _ = tx
            .send(Envelope {
                op: Op::ResumeDevice,
                reply,
            })
            .await;
    }
}

impl Host {
    fn watched(&self, mut waiting: Waiting, engine: &Resource) -> Waiting {
        waiting.stop_watching();
        waiting.watcher = Some(tokio::spawn(watch(
            Arc::clone(&self.spec),
            engine.clone(),
            self.self_tx.clone(),
        )));
        waiting
    }

    /// On `up`: what is at the configured ublk device number, and what to do about it. Returns a
    /// note for the command's answer.
    pub(super) async fn survey_device(&mut self) -> String {
        let FrontEndSpec::Ublk(u) = &self.spec.front_end else {
            return String::new();
        };
        let name = self.name().to_owned();
        let (spec, u) = (Arc::clone(&self.spec), *u);
        let found = tokio::task::spawn_blocking(move || ublk::survey(&spec, &u))
            .await
            .unwrap_or_else(|e| Found::Blocked(format!("the ublk control task failed: {e}")));
        let Some(engine) = self.up.as_ref().map(|up| up.engine.clone()) else {
            return String::new();
        };
        match found {
            Found::Free => String::new(),
            Found::Blocked(why) => {
                warn!(resource = %name, reason = %why, "the ublk front end is unavailable");
                let note = format!("; the ublk front end is unavailable: {why}");
                if let Some(up) = self.up.as_mut() {
                    up.blocked = Some(why);
                }
                note
            }
            Found::Leftover(dev) => match self.delete_leftover(dev.id).await {
                Ok(()) => String::new(),
                Err(e) => format!("; {e}"),
            },
            Found::Recoverable(dev) => {
                let waiting = self.watched(Waiting::found(dev), &engine);
                let path = waiting.path();
                warn!(resource = %name, device = %path,
                    "the previous daemon left this resource's ublk device with I/O waiting: it is re-attached once this node can be Primary again");
                if let Some(up) = self.up.as_mut() {
                    up.waiting = Some(waiting);
                }
                format!(
                    "; {path} has I/O waiting since the previous daemon stopped: it is re-attached once {name} can be \
                     Primary again (see `replbd-node status {name}`)"
                )
            }
        }
    }

    /// Deletes this resource's device left stopped by an earlier daemon (nothing waits on it).
    pub(super) async fn delete_leftover(&mut self, id: u32) -> Result<(), HostError> {
        let name = self.name().to_owned();
        info!(resource = %name, device = id, "deleting the stopped ublk device an earlier daemon left behind");
        match tokio::task::spawn_blocking(move || ublk::delete(id)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let why = format!("cannot delete the stopped /dev/ublkb{id} left by an earlier daemon: {e}");
                if let Some(up) = self.up.as_mut() {
                    up.blocked = Some(why.clone());
                }
                Err(FrontEndError::Unavailable(why).into())
            }
            Err(e) => Err(FrontEndError::Unavailable(format!("the ublk control task failed: {e}")).into()),
        }
    }

    /// The watcher says the verdict changed: act on it.
    pub(super) async fn resume_device(&mut self) -> Result<String, HostError> {
        let name = self.name().to_owned();
        let Some(up) = self.up.as_mut() else {
            return Ok(format!("{name} is down"));
        };
        let Some(mut waiting) = up.waiting.take() else {
            return Ok(format!("{name}: no ublk device waits"));
        };
        waiting.watcher = None;
        let engine = up.engine.clone();
        match verdict(&self.spec, &engine.status()) {
            Verdict::Wait(_) => {
                let waiting = self.watched(waiting, &engine);
                if let Some(up) = self.up.as_mut() {
                    up.waiting = Some(waiting);
                }
                Ok(format!("{name}: the ublk device still waits"))
            }
            Verdict::Abandon(why) => {
                waiting.give_up(&name, &why).await;
                self.publish();
                Ok(format!("{name}: {why}; the ublk device was deleted"))
            }
            Verdict::Resume => {
                let result = self.reattach(waiting, false).await;
                if let Err(e) = &result {
                    warn!(resource = %name, error = %e, "re-attaching the ublk device failed");
                }
                result
            }
        }
    }

    /// Promotes, then re-attaches the waiting device so its I/O is served.
    pub(super) async fn reattach(&mut self, mut waiting: Waiting, force: bool) -> Result<String, HostError> {
        let name = self.name().to_owned();
        let engine = self.engine()?.clone();
        waiting.stop_watching();
        if let Err(e) = engine.primary(force).await {
            // Keep waiting: the watcher tries again when the state changes.
            let waiting = self.watched(waiting, &engine);
            if let Some(up) = self.up.as_mut() {
                up.waiting = Some(waiting);
            }
            return Err(e.into());
        }
        let path = waiting.path();
        let id = waiting.device.id;
        let volume = self.volume(&engine);
        let started = match tokio::task::spawn_blocking(move || ublk::recover(id, volume)).await {
            Ok(Ok(added)) => added.start(&name).await,
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(FrontEndError::Unavailable(format!(
                "the ublk control task failed: {e}"
            ))),
        };
        match started {
            Ok(serving) => {
                info!(resource = %name, device = %path, force, "promoted to Primary; the ublk device was re-attached and serves the I/O that waited");
                if let Some(up) = self.up.as_mut() {
                    up.front_end = Some(Running::Ublk(serving));
                    up.blocked = None;
                }
                self.publish();
                Ok(format!(
                    "{name} is Primary; {path} re-attached: the I/O that waited is served"
                ))
            }
            Err(source) => {
                // The device stays (its I/O waiting) until `secondary` or `down` deletes it.
                if let Some(up) = self.up.as_mut() {
                    up.blocked = Some(format!("re-attaching {path} failed: {source}"));
                    up.waiting = Some(waiting);
                }
                self.publish();
                Err(HostError::Reattach {
                    resource: name,
                    path,
                    source,
                })
            }
        }
    }
}
