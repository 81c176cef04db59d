//! The device's control side: add or recover a device, start serving it, stop and delete it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{IoUring, squeue};
use libublk::ctrl::{UblkCtrl, UblkCtrlBuilder};
use libublk::io::UblkDev;
use libublk::{UblkError, UblkFlags, sys};
use replbd_replication::BlockVolume;

use crate::config::{BlockSize, DeviceConfig, RecoveryPolicy};
use crate::error::{Result, UblkTargetError};
use crate::features::{probe_driver, require_driver};
use crate::queue::serve_queue;

/// Name libublk records for the device's target type.
const TARGET_NAME: &str = "replbd";
/// Largest discard / write-zeroes request, in 512-byte sectors (1 GiB). These requests carry no
/// data, so they are not bounded by the per-tag buffer.
const MAX_DISCARD_SECTORS: u32 = 1 << 21;

/// A device as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device number `N`.
    pub id: u32,
    /// `/dev/ublkbN`, the block device applications use.
    pub block_device: PathBuf,
    /// `/dev/ublkcN`, the character device the serving process holds.
    pub char_device: PathBuf,
    /// Hardware queues (one serving thread each).
    pub queues: u16,
    /// Requests in flight per queue.
    pub depth: u16,
    /// Logical block size.
    pub block_size: BlockSize,
    /// Size in bytes.
    pub size: u64,
    /// Largest request in bytes.
    pub max_io_bytes: u32,
    /// Whether a new process can re-attach after this one dies (USER_RECOVERY + REISSUE).
    pub crash_recovery: bool,
    /// Whether this process re-attached to an existing device rather than creating it.
    pub recovered: bool,
    /// The owner label recorded with the device (see [`DeviceConfig::owner`]).
    pub owner: Option<String>,
}

/// State shared between a [`UblkTarget`] and its [`StopHandle`]s.
struct Shared {
    ctrl: UblkCtrl,
    id: u32,
    stop_requested: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The control (dropped right after this) may send a last command (an added device that
        // never started is deleted), on whichever thread let go of the last reference; libublk
        // sends control commands through a per-thread ring that must exist on that thread.
        if let Err(e) = init_ctrl_ring_for_this_thread() {
            tracing::warn!(device = self.id, error = %e, "cannot set up a ublk control ring on this thread");
        }
    }
}

/// Stops a served device from any thread (a signal handler thread, a control socket task).
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Asks the driver to stop the device: pending requests fail, the queues wind down and
    /// [`UblkTarget::run`] returns after deleting the device. Safe to call more than once and
    /// before the device has started.
    pub fn stop(&self) -> Result<()> {
        self.shared.stop_requested.store(true, Ordering::SeqCst);
        init_ctrl_ring_for_this_thread().map_err(|e| UblkTargetError::ublk("stop", self.shared.id, e))?;
        match self.shared.ctrl.kill_dev() {
            Ok(_) => Ok(()),
            // Already gone (deleted by someone else): nothing left to stop.
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(UblkTargetError::ublk("stop", self.shared.id, e)),
        }
    }
}

/// libublk keeps one control io_uring per thread; a thread that did not create the control
/// (a signal thread) needs its own before sending commands.
fn init_ctrl_ring_for_this_thread() -> std::result::Result<(), UblkError> {
    libublk::ublk_init_ctrl_task_ring(|ring| {
        if ring.is_none() {
            *ring = Some(
                IoUring::<squeue::Entry128>::builder()
                    .build(16)
                    .map_err(UblkError::IOError)?,
            );
        }
        Ok(())
    })
}

/// The device does not exist (any more): libublk reports that as `OtherError` or `UringIOError`
/// depending on the command.
pub(crate) fn is_gone(e: &UblkError) -> bool {
    let errno = match e {
        UblkError::OtherError(errno) | UblkError::UringIOError(errno) => -errno.abs(),
        UblkError::IOError(e) => -e.raw_os_error().unwrap_or(0),
        _ => 0,
    };
    errno == -libc::ENOENT || errno == -libc::ENODEV
}

/// A ublk device serving a [`BlockVolume`]. Create it with [`UblkTarget::add`] or
/// [`UblkTarget::recover`], then call [`UblkTarget::run`].
pub struct UblkTarget<V> {
    shared: Arc<Shared>,
    volume: Arc<V>,
    info: DeviceInfo,
    runtime: Option<tokio::runtime::Handle>,
}

impl<V: BlockVolume> UblkTarget<V> {
    /// Creates a new device of the volume's size (`/dev/ublkbN` appears once [`run`](Self::run)
    /// has started the queues).
    pub fn add(volume: Arc<V>, config: &DeviceConfig) -> Result<Self> {
        config.validate()?;
        let size = volume.size();
        let block = config.block_size.bytes();
        if size == 0 || !size.is_multiple_of(u64::from(block)) {
            return Err(UblkTargetError::VolumeSize {
                size,
                block_size: block,
            });
        }
        let features = probe_driver()?;
        let ctrl_flags = match (config.recovery, features.missing_for_recovery()) {
            (RecoveryPolicy::Off, _) => 0,
            (_, None) => features.recovery_flags(),
            (RecoveryPolicy::Required, Some(missing)) => {
                return Err(UblkTargetError::RecoveryUnavailable { missing });
            }
            (RecoveryPolicy::IfAvailable, Some(missing)) => {
                tracing::warn!(
                    missing,
                    %features,
                    "the ublk driver cannot recover a live device: if this process dies, the block \
                     device goes away and pending I/O fails"
                );
                0
            }
        };
        let id = config.id.map_or(-1, |id| id as i32);
        let ctrl = UblkCtrlBuilder::default()
            .name(TARGET_NAME)
            .id(id)
            .nr_queues(config.queues)
            .depth(config.depth)
            .io_buf_bytes(config.max_io_bytes)
            .ctrl_flags(ctrl_flags)
            .dev_flags(UblkFlags::UBLK_DEV_F_ADD_DEV)
            .build()
            .map_err(|e| UblkTargetError::ublk("add", id, e))?;
        let dev = ctrl.dev_info();
        let info = DeviceInfo {
            id: dev.dev_id,
            block_device: ctrl.get_bdev_path().into(),
            char_device: ctrl.get_cdev_path().into(),
            queues: dev.nr_hw_queues,
            depth: dev.queue_depth,
            block_size: config.block_size,
            size,
            max_io_bytes: dev.max_io_buf_bytes,
            crash_recovery: ctrl_flags != 0,
            recovered: false,
            owner: config.owner.clone(),
        };
        tracing::info!(
            device = info.id,
            queues = info.queues,
            depth = info.depth,
            block_size = block,
            size,
            crash_recovery = info.crash_recovery,
            "ublk device added"
        );
        Ok(Self::new(ctrl, volume, info))
    }

    /// Re-attaches to device `id`, whose serving process died or exited without deleting it,
    /// to serve it from `volume` (which must have the device's size). Requests the host issued
    /// meanwhile, and those the old process had not completed, are then served by this process.
    pub fn recover(volume: Arc<V>, id: u32) -> Result<Self> {
        require_driver()?;
        let raw_id = i32::try_from(id).map_err(|_| UblkTargetError::InvalidConfig {
            field: "device id",
            value: id.into(),
            reason: "must fit in 31 bits",
        })?;
        let probe = UblkCtrl::new_simple(raw_id).map_err(|e| {
            if is_gone(&e) {
                UblkTargetError::NoSuchDevice { id }
            } else {
                UblkTargetError::ublk("read device info", id, e)
            }
        })?;
        let dev = probe.dev_info();
        // Keep the label the device was started with.
        let owner = probe
            .get_target_data_from_json()
            .and_then(|data| data.get("owner").and_then(|o| o.as_str()).map(str::to_owned));
        if dev.flags & sys::UBLK_F_USER_RECOVERY as u64 == 0 {
            return Err(UblkTargetError::RecoveryNotEnabled { id });
        }
        let state = u32::from(dev.state);
        if state == sys::UBLK_S_DEV_LIVE && process_alive(dev.ublksrv_pid) {
            return Err(UblkTargetError::StillServed {
                id,
                pid: dev.ublksrv_pid,
            });
        }
        let mut params = sys::ublk_params::default();
        probe
            .get_params(&mut params)
            .map_err(|e| UblkTargetError::ublk("read device parameters", id, e))?;
        let device_size = params.basic.dev_sectors << 9;
        if volume.size() != device_size {
            return Err(UblkTargetError::SizeMismatch {
                id,
                device: device_size,
                volume: volume.size(),
            });
        }
        let block_size =
            BlockSize::from_shift(params.basic.logical_bs_shift).ok_or(UblkTargetError::InvalidConfig {
                field: "logical block size shift of the device",
                value: params.basic.logical_bs_shift.into(),
                reason: "this target serves 512 or 4096-byte blocks only",
            })?;
        tracing::info!(
            device = id,
            state,
            old_pid = dev.ublksrv_pid,
            "starting user recovery"
        );
        // Waits (up to 30 s) for the driver to notice the old server is gone and quiesce.
        probe
            .start_user_recover()
            .map_err(|e| UblkTargetError::ublk("start recovery", id, e))
            .and_then(|r| match r {
                r if r < 0 => Err(UblkTargetError::ublk(
                    "start recovery",
                    id,
                    UblkError::OtherError(r),
                )),
                _ => Ok(()),
            })?;
        drop(probe);
        let ctrl = UblkCtrlBuilder::default()
            .name(TARGET_NAME)
            .id(raw_id)
            .nr_queues(dev.nr_hw_queues)
            .depth(dev.queue_depth)
            .io_buf_bytes(dev.max_io_buf_bytes)
            .dev_flags(UblkFlags::UBLK_DEV_F_RECOVER_DEV)
            .build()
            .map_err(|e| UblkTargetError::ublk("open device for recovery", id, e))?;
        let info = DeviceInfo {
            id,
            block_device: ctrl.get_bdev_path().into(),
            char_device: ctrl.get_cdev_path().into(),
            queues: dev.nr_hw_queues,
            depth: dev.queue_depth,
            block_size,
            size: device_size,
            max_io_bytes: dev.max_io_buf_bytes,
            crash_recovery: true,
            recovered: true,
            owner,
        };
        Ok(Self::new(ctrl, volume, info))
    }

    fn new(ctrl: UblkCtrl, volume: Arc<V>, info: DeviceInfo) -> Self {
        UblkTarget {
            shared: Arc::new(Shared {
                ctrl,
                id: info.id,
                stop_requested: AtomicBool::new(false),
            }),
            volume,
            info,
            runtime: None,
        }
    }

    /// Polls volume futures with this tokio runtime entered on every queue thread, for volumes
    /// whose futures need a tokio context. Pass a multi-thread runtime: its workers drive the
    /// timers and sockets those futures register.
    pub fn with_tokio(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The device.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// A handle that stops the device from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: self.shared.clone(),
        }
    }

    /// Starts the queues and serves the device until it is stopped (by a [`StopHandle`] or by
    /// deleting it), then deletes it. `on_ready` runs once the device serves I/O.
    ///
    /// If the process dies instead, a device with crash recovery stays, with I/O waiting, until
    /// [`UblkTarget::recover`] re-attaches a new process.
    pub fn run<F>(self, on_ready: F) -> Result<()>
    where
        F: FnOnce(&DeviceInfo) + Send + Sync + 'static,
    {
        let UblkTarget {
            shared,
            volume,
            info,
            runtime,
        } = self;
        let id = info.id;
        // `run` may be called on another thread than the one that created the device (a thread
        // of its own, in the node daemon); libublk's control commands need a ring on this one.
        init_ctrl_ring_for_this_thread().map_err(|e| UblkTargetError::ublk("start", id, e))?;
        let params = device_params(&info);
        let (size, recovered) = (info.size, info.recovered);
        let owner = info.owner.clone();
        let tgt_init = move |dev: &mut UblkDev| {
            if let Some(owner) = &owner {
                // Written to /run/ublksrvd/NNNN.json when the device starts (see `existing`).
                dev.set_target_json(serde_json::json!({ "owner": owner }));
            }
            dev.tgt.dev_size = size;
            dev.tgt.params = params;
            // One more submission and completion slot than tags: the queue's eventfd poll.
            dev.tgt.sq_depth = dev.dev_info.queue_depth + 1;
            dev.tgt.cq_depth = dev.dev_info.queue_depth + 1;
            Ok(())
        };
        let q_fn = move |qid: u16, dev: &UblkDev| serve_queue(qid, dev, volume, runtime);
        let ready_shared = shared.clone();
        let on_started = move |ctrl: &UblkCtrl| {
            tracing::info!(device = info.id, path = %info.block_device.display(), recovered,
                "ublk device serving");
            if ready_shared.stop_requested.load(Ordering::SeqCst) {
                // A stop raced with the start: honour it now that the device is live.
                let _ = ctrl.kill_dev();
            }
            on_ready(&info);
        };
        match shared.ctrl.run_target(tgt_init, q_fn, on_started) {
            Ok(_) => {
                tracing::info!(device = id, "ublk device stopped; deleting it");
                match shared.ctrl.del_dev() {
                    Ok(_) => Ok(()),
                    Err(e) if is_gone(&e) => Ok(()),
                    Err(e) => Err(UblkTargetError::ublk("delete", id, e)),
                }
            }
            Err(e) => {
                if recovered {
                    // Leave the device waiting for another recovery attempt: deleting it would
                    // fail the I/O the application has been waiting on.
                    shared.ctrl.disown();
                } else {
                    // The queue threads still hold /dev/ublkcN, so a synchronous delete would
                    // wait for them forever; the asynchronous one completes when we exit.
                    let _ = shared.ctrl.del_dev_async();
                }
                Err(UblkTargetError::ublk(
                    if recovered { "end recovery" } else { "start" },
                    id,
                    e,
                ))
            }
        }
    }
}

/// Device parameters: size, block sizes, request size, write cache with FUA, discard and
/// write-zeroes.
fn device_params(info: &DeviceInfo) -> sys::ublk_params {
    let shift = info.block_size.shift();
    sys::ublk_params {
        types: sys::UBLK_PARAM_TYPE_BASIC | sys::UBLK_PARAM_TYPE_DISCARD,
        basic: sys::ublk_param_basic {
            // A volatile write cache makes the kernel send FLUSH; FUA writes come through as
            // such instead of write + flush.
            attrs: sys::UBLK_ATTR_VOLATILE_CACHE | sys::UBLK_ATTR_FUA,
            logical_bs_shift: shift,
            physical_bs_shift: shift.max(12),
            io_opt_shift: shift.max(12),
            io_min_shift: shift.max(12),
            max_sectors: info.max_io_bytes >> 9,
            dev_sectors: info.size >> 9,
            ..Default::default()
        },
        discard: sys::ublk_param_discard {
            discard_alignment: 0,
            discard_granularity: info.block_size.bytes().max(4096),
            max_discard_sectors: MAX_DISCARD_SECTORS,
            max_write_zeroes_sectors: MAX_DISCARD_SECTORS,
            max_discard_segments: 1,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(crate) fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists; it takes no pointers.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Deletes device `id` (stopping it first if it is served). Pending I/O of a device waiting for
/// recovery fails.
pub fn delete_device(id: u32) -> Result<()> {
    require_driver()?;
    let raw_id = i32::try_from(id).map_err(|_| UblkTargetError::NoSuchDevice { id })?;
    let ctrl = UblkCtrl::new_simple(raw_id).map_err(|e| {
        if is_gone(&e) {
            UblkTargetError::NoSuchDevice { id }
        } else {
            UblkTargetError::ublk("read device info", id, e)
        }
    })?;
    match ctrl.del_dev() {
        Ok(_) => Ok(()),
        Err(e) if is_gone(&e) => Err(UblkTargetError::NoSuchDevice { id }),
        Err(e) => Err(UblkTargetError::ublk("delete", id, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(block_size: BlockSize) -> DeviceInfo {
        DeviceInfo {
            id: 0,
            block_device: "/dev/ublkb0".into(),
            char_device: "/dev/ublkc0".into(),
            queues: 2,
            depth: 64,
            block_size,
            size: 64 << 20,
            max_io_bytes: 512 << 10,
            crash_recovery: true,
            recovered: false,
            owner: None,
        }
    }

    #[test]
    fn params_describe_size_blocks_cache_and_discard() {
        let p = device_params(&info(BlockSize::B4096));
        assert_eq!(p.basic.logical_bs_shift, 12);
        assert_eq!(p.basic.dev_sectors, (64 << 20) >> 9);
        assert_eq!(p.basic.max_sectors, 1024);
        assert_ne!(p.basic.attrs & sys::UBLK_ATTR_FUA, 0);
        assert_ne!(p.basic.attrs & sys::UBLK_ATTR_VOLATILE_CACHE, 0);
        assert_ne!(p.types & sys::UBLK_PARAM_TYPE_DISCARD, 0);
        assert_eq!(p.discard.discard_granularity, 4096);
        let p = device_params(&info(BlockSize::B512));
        assert_eq!(p.basic.logical_bs_shift, 9);
        assert_eq!(p.basic.physical_bs_shift, 12);
    }

    #[test]
    fn missing_devices_are_recognised_in_every_error_form() {
        assert!(is_gone(&UblkError::OtherError(-libc::ENOENT)));
        assert!(is_gone(&UblkError::UringIOError(-libc::ENODEV)));
        assert!(is_gone(&UblkError::IOError(std::io::Error::from_raw_os_error(
            libc::ENOENT
        ))));
        assert!(!is_gone(&UblkError::OtherError(-libc::EBUSY)));
        assert!(!is_gone(&UblkError::QueueIsDown));
    }

    #[test]
    fn process_alive_sees_this_process_and_not_pid_zero() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(0));
    }
}
