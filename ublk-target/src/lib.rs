//! replbd's ublk front end: serves any [`BlockVolume`](replbd_replication::BlockVolume) as a Linux
//! block device `/dev/ublkbN` through the kernel's ublk driver (built on libublk 0.4), and keeps the
//! device alive across a crash or restart of the serving process.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use replbd_replication::MemVolume;
//! use replbd_ublk::{DeviceConfig, UblkTarget};
//!
//! let volume = Arc::new(MemVolume::new(64 << 20));
//! let target = UblkTarget::add(volume, &DeviceConfig::default())?;
//! let stop = target.stop_handle(); // call stop.stop() from a signal thread to shut down
//! target.run(|dev| tracing::info!(path = %dev.block_device.display(), "ready"))?;
//! # Ok::<(), replbd_ublk::UblkTargetError>(())
//! ```
//!
//! # Queues and tags
//!
//! A device has `queues` hardware queues of `depth` tags. blk-mq hands each request to the queue
//! of the submitting CPU and gives it a free tag of that queue; the driver writes the request's
//! descriptor into the queue's shared descriptor array at the tag's slot and completes the tag's
//! pending `FETCH` command.
//!
//! Each queue is served by one thread (`run` spawns them) with its own io_uring and a
//! single-threaded executor. On it runs one task per tag, for the life of the device:
//!
//! ```text
//! tag task:  register buffer ─► FETCH ─► [request arrives] ─► execute on the volume
//!                                 ▲                                  │
//!                                 └──── COMMIT_AND_FETCH(result) ◄───┘
//! ```
//!
//! The tasks are independent, so up to `depth` requests per queue are executing on the volume at
//! once. Data moves in copy mode: the driver copies a write's pages into the tag's buffer before
//! the request arrives, and a read's data from it after the commit. The write path copies the
//! buffer once more into an owned [`bytes::Bytes`] the volume may keep (for peers); the read path
//! copies the volume's `Bytes` into the buffer. Zero copy is not used: the kernels this targets
//! (e.g. 6.12) lack `AUTO_BUF_REG`, and the engine needs owned buffers anyway.
//!
//! Volume futures are polled in place on the queue thread. When one completes on another thread
//! (a tokio worker, the blocking pool, a peer connection), its wake-up also writes the queue's
//! eventfd, which a `POLL_ADD` in the queue's ring turns into a completion that returns the
//! thread from `io_uring_enter` (module `wake`). With [`UblkTarget::with_tokio`], each queue thread
//! enters the given runtime, so futures that need a tokio context (timers, sockets,
//! `spawn_blocking`) work unchanged. The alternative, spawning every request onto the runtime,
//! would cost a task allocation and two thread hand-offs per request even when the volume answers
//! at once; polling in place costs nothing then, and one eventfd write per burst otherwise.
//!
//! Request mapping: READ, WRITE (with `FUA` → [`WriteFlags::fua`](replbd_replication::WriteFlags)),
//! FLUSH, DISCARD and WRITE_ZEROES go to the volume's methods; a failure completes the request
//! with `-errno` from [`VolumeError::errno`](replbd_replication::VolumeError::errno); other
//! operations fail with `EOPNOTSUPP`. The device advertises a volatile write cache with FUA, so
//! the kernel sends flushes and FUA writes instead of emulating them.
//!
//! # Crash recovery
//!
//! When the driver supports `UBLK_F_USER_RECOVERY` and `UBLK_F_USER_RECOVERY_REISSUE` (probed at
//! run time, see [`probe_driver`]), a new device is created with both. The device's states as the
//! driver keeps them:
//!
//! ```text
//!            add + start                 server exits or is killed
//!   (none) ─────────────► LIVE ──────────────────────────────────────► QUIESCED
//!                          │ ▲                                            │
//!                 stop+del │ └──── END_USER_RECOVERY (new server ready) ◄─┤ START_USER_RECOVERY
//!                          ▼                                              │ (new process)
//!                       (none) ◄──────────────── del ─────────────────────┘
//! ```
//!
//! - While QUIESCED, `/dev/ublkbN` stays; new requests wait in the kernel, and requests the dead
//!   server had fetched but not completed are re-queued (REISSUE) instead of failed. Without
//!   REISSUE those would fail with `EIO`, which is why both flags are required to call recovery
//!   "available". Re-issuing is safe for a block device: a write is idempotent, and the host
//!   never saw it complete.
//! - [`UblkTarget::recover`] checks that the device has recovery enabled, is not served by a live
//!   process, and has the volume's size; sends `START_USER_RECOVERY` (retried while the driver
//!   still sees the old server: on 6.12 it notices within about 5 seconds); then `run` starts the
//!   queues, fetches every tag and sends `END_USER_RECOVERY`, after which the waiting requests are
//!   served. The application sees a pause, not an error.
//! - A clean shutdown ([`StopHandle::stop`]) stops and deletes the device: pending requests fail
//!   and `/dev/ublkbN` goes away, as when unplugging a disk.
//! - Before re-attaching, a restarting process must know the device is its own: a device records
//!   [`DeviceConfig::owner`] when it starts, and [`inspect_device`] reads it back with the driver's
//!   state, recovery flags and serving process (module `existing`).
//!
//! [`UblkTarget::run`] may be called on any thread (the node daemon gives each device a thread of
//! its own); libublk's per-thread control ring is set up where it is needed.
//!
//! Without recovery support the device is created without it (with a warning), or refused under
//! [`RecoveryPolicy::Required`]; then a dying server takes the device with it.

mod config;
mod device;
mod error;
mod existing;
mod features;
mod queue;
mod request;
pub mod testing;
mod wake;

pub use config::{BlockSize, DeviceConfig, MAX_DEPTH, MAX_QUEUES, RecoveryPolicy};
pub use device::{DeviceInfo, StopHandle, UblkTarget, delete_device};
pub use error::{Result, UblkCause, UblkTargetError};
pub use existing::{DeviceState, ExistingDevice, inspect_device};
pub use features::{CONTROL_PATH, DriverFeatures, probe_driver, require_driver};
