//! What an existing ublk device is, before a process decides to re-attach to it, replace it or leave
//! it alone.
//!
//! A serving process that died leaves its device behind: with crash recovery, waiting (QUIESCED)
//! with the host's I/O queued; without it, stopped (DEAD) until someone deletes it. A daemon that
//! restarts must tell its own device from anybody else's before touching it, because re-attaching
//! serves the device from the daemon's volume and deleting it fails the I/O waiting on it. The
//! driver keeps no owner, so a device records one: the `owner` label of [`DeviceConfig`] is written
//! as `target_data.owner` into libublk's run file `/run/ublksrvd/NNNN.json` when the device starts,
//! and kept on recovery. [`inspect_device`] reads it back with the driver's own view of the device
//! (state, flags, serving process, size).
//!
//! [`DeviceConfig`]: crate::DeviceConfig

use libublk::ctrl::UblkCtrl;
use libublk::sys;

use crate::config::BlockSize;
use crate::device::{is_gone, process_alive};
use crate::error::{Result, UblkTargetError};
use crate::features::require_driver;

/// The driver's state of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Added but not started, or stopped: no block device, no I/O waiting.
    Dead,
    /// Served (or its server died a moment ago and the driver has not noticed yet).
    Live,
    /// Its server died; the block device stays and I/O waits for a new server (crash recovery).
    Quiesced,
    /// Its server died and the driver fails I/O until a new server attaches.
    FailIo,
    /// A state this crate does not know.
    Other(u16),
}

impl DeviceState {
    fn from_raw(state: u16) -> DeviceState {
        match u32::from(state) {
            sys::UBLK_S_DEV_DEAD => DeviceState::Dead,
            sys::UBLK_S_DEV_LIVE => DeviceState::Live,
            sys::UBLK_S_DEV_QUIESCED => DeviceState::Quiesced,
            3 => DeviceState::FailIo,
            _ => DeviceState::Other(state),
        }
    }
}

impl std::fmt::Display for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceState::Dead => f.write_str("dead"),
            DeviceState::Live => f.write_str("live"),
            DeviceState::Quiesced => f.write_str("quiesced"),
            DeviceState::FailIo => f.write_str("fail-io"),
            DeviceState::Other(s) => write!(f, "state {s}"),
        }
    }
}

/// An existing ublk device as the driver and libublk's run file describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingDevice {
    /// Device number `N`.
    pub id: u32,
    /// The driver's state.
    pub state: DeviceState,
    /// Created with USER_RECOVERY and USER_RECOVERY_REISSUE: a new process can re-attach with the
    /// host's waiting I/O re-issued.
    pub recoverable: bool,
    /// The process that serves (or served) it, as the driver recorded it.
    pub server_pid: i32,
    /// Whether that process is still running.
    pub server_alive: bool,
    /// Size in bytes (0 if the driver has no parameters for it).
    pub size: u64,
    /// Logical block size, if it is one this crate serves.
    pub block_size: Option<BlockSize>,
    /// The owner label recorded when it started (`None`: no run file, or not written by this crate).
    pub owner: Option<String>,
}

impl ExistingDevice {
    /// A live process serves it: nobody else may touch it.
    pub fn is_served(&self) -> bool {
        self.server_alive && self.state == DeviceState::Live
    }

    /// A new process can re-attach to it now (possibly after the driver notices the old server is
    /// gone): recovery enabled, started, and nobody alive serving it.
    pub fn can_recover(&self) -> bool {
        self.recoverable
            && !self.server_alive
            && matches!(self.state, DeviceState::Quiesced | DeviceState::Live)
    }
}

/// Reads device `id`: `Ok(None)` when there is no such device.
pub fn inspect_device(id: u32) -> Result<Option<ExistingDevice>> {
    require_driver()?;
    let raw_id = i32::try_from(id).map_err(|_| UblkTargetError::InvalidConfig {
        field: "device id",
        value: id.into(),
        reason: "must fit in 31 bits",
    })?;
    let ctrl = match UblkCtrl::new_simple(raw_id) {
        Ok(c) => c,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => return Err(UblkTargetError::ublk("read device info", id, e)),
    };
    let dev = ctrl.dev_info();
    let mut params = sys::ublk_params::default();
    let (size, block_size) = match ctrl.get_params(&mut params) {
        Ok(_) => (
            params.basic.dev_sectors << 9,
            BlockSize::from_shift(params.basic.logical_bs_shift),
        ),
        Err(e) if is_gone(&e) => return Ok(None),
        // A device that was added but never started has no parameters yet.
        Err(_) => (0, None),
    };
    let recovery_flags = (sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE) as u64;
    let owner = ctrl
        .get_target_data_from_json()
        .and_then(|data| data.get("owner").and_then(|o| o.as_str()).map(str::to_owned));
    Ok(Some(ExistingDevice {
        id,
        state: DeviceState::from_raw(dev.state),
        recoverable: dev.flags & recovery_flags == recovery_flags,
        server_pid: dev.ublksrv_pid,
        server_alive: process_alive(dev.ublksrv_pid),
        size,
        block_size,
        owner,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(state: DeviceState, recoverable: bool, alive: bool) -> ExistingDevice {
        ExistingDevice {
            id: 0,
            state,
            recoverable,
            server_pid: 42,
            server_alive: alive,
            size: 1 << 20,
            block_size: Some(BlockSize::B512),
            owner: Some("x".into()),
        }
    }

    #[test]
    fn only_an_unserved_started_device_with_recovery_can_be_recovered() {
        assert!(device(DeviceState::Quiesced, true, false).can_recover());
        // The driver notices a dead server only after a moment.
        assert!(device(DeviceState::Live, true, false).can_recover());
        assert!(!device(DeviceState::Live, true, true).can_recover());
        assert!(device(DeviceState::Live, true, true).is_served());
        assert!(!device(DeviceState::Quiesced, false, false).can_recover());
        assert!(!device(DeviceState::Dead, true, false).can_recover());
        assert_eq!(DeviceState::from_raw(2), DeviceState::Quiesced);
        assert_eq!(DeviceState::from_raw(9).to_string(), "state 9");
    }
}
