//! What the loaded ublk driver can do, probed at run time (`UBLK_U_CMD_GET_FEATURES`).
//!
//! The target relies only on the driver's baseline (copy-mode I/O through per-tag buffers) plus,
//! for crash recovery, `UBLK_F_USER_RECOVERY` and `UBLK_F_USER_RECOVERY_REISSUE`. It deliberately
//! does not need zero copy, `AUTO_BUF_REG`, `PER_IO_DAEMON`, `QUIESCE` or `UPDATE_SIZE`, which
//! kernels such as Debian's 6.12 lack.

use std::fmt;
use std::path::Path;

use libublk::ctrl::UblkCtrl;
use libublk::sys;

use crate::error::{Result, UblkCause, UblkTargetError};

/// The ublk control device; present exactly when ublk_drv is loaded.
pub const CONTROL_PATH: &str = "/dev/ublk-control";

/// Names of the driver feature bits this crate reports (bit, name).
const NAMES: [(u64, &str); 13] = [
    (sys::UBLK_F_SUPPORT_ZERO_COPY as u64, "ZERO_COPY"),
    (
        sys::UBLK_F_URING_CMD_COMP_IN_TASK as u64,
        "URING_CMD_COMP_IN_TASK",
    ),
    (sys::UBLK_F_NEED_GET_DATA as u64, "NEED_GET_DATA"),
    (sys::UBLK_F_USER_RECOVERY as u64, "USER_RECOVERY"),
    (sys::UBLK_F_USER_RECOVERY_REISSUE as u64, "USER_RECOVERY_REISSUE"),
    (sys::UBLK_F_UNPRIVILEGED_DEV as u64, "UNPRIVILEGED_DEV"),
    (sys::UBLK_F_CMD_IOCTL_ENCODE as u64, "CMD_IOCTL_ENCODE"),
    (sys::UBLK_F_USER_COPY as u64, "USER_COPY"),
    (sys::UBLK_F_ZONED as u64, "ZONED"),
    (sys::UBLK_F_UPDATE_SIZE as u64, "UPDATE_SIZE"),
    (sys::UBLK_F_AUTO_BUF_REG as u64, "AUTO_BUF_REG"),
    (sys::UBLK_F_QUIESCE as u64, "QUIESCE"),
    (sys::UBLK_F_PER_IO_DAEMON as u64, "PER_IO_DAEMON"),
];

/// The feature bits the loaded ublk driver reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverFeatures(u64);

impl DriverFeatures {
    /// Wraps raw `UBLK_F_*` bits.
    pub fn from_bits(bits: u64) -> DriverFeatures {
        DriverFeatures(bits)
    }

    /// The raw `UBLK_F_*` bits.
    pub fn bits(self) -> u64 {
        self.0
    }

    fn has(self, flag: u64) -> bool {
        self.0 & flag == flag
    }

    /// A new process may re-attach to a device whose server died (`UBLK_F_USER_RECOVERY`).
    pub fn user_recovery(self) -> bool {
        self.has(sys::UBLK_F_USER_RECOVERY as u64)
    }

    /// Requests in flight when the server died are re-issued to the new one instead of failed
    /// (`UBLK_F_USER_RECOVERY_REISSUE`).
    pub fn user_recovery_reissue(self) -> bool {
        self.has(sys::UBLK_F_USER_RECOVERY_REISSUE as u64)
    }

    /// Crash recovery without the application seeing an error needs both flags.
    pub fn recovery_available(self) -> bool {
        self.user_recovery() && self.user_recovery_reissue()
    }

    /// Which recovery feature is missing, for messages; `None` when recovery is available.
    pub fn missing_for_recovery(self) -> Option<&'static str> {
        match (self.user_recovery(), self.user_recovery_reissue()) {
            (true, true) => None,
            (false, true) => Some("USER_RECOVERY"),
            (true, false) => Some("USER_RECOVERY_REISSUE"),
            (false, false) => Some("USER_RECOVERY and USER_RECOVERY_REISSUE"),
        }
    }

    /// The `UBLK_F_*` flags a new device is created with under `recovery`.
    pub(crate) fn recovery_flags(self) -> u64 {
        if self.recovery_available() {
            (sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE) as u64
        } else {
            0
        }
    }

    /// Names of the known features present.
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, name)| *name)
            .collect()
    }
}

impl fmt::Display for DriverFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} [{}]", self.0, self.names().join(" "))
    }
}

/// Fails with [`UblkTargetError::NoDriver`] if `/dev/ublk-control` is missing.
pub fn require_driver() -> Result<()> {
    if Path::new(CONTROL_PATH).exists() {
        Ok(())
    } else {
        Err(UblkTargetError::NoDriver)
    }
}

/// Asks the loaded driver what it supports.
pub fn probe_driver() -> Result<DriverFeatures> {
    require_driver()?;
    let ctrl = UblkCtrl::new(None, -1, 0, 0, 0, 0, 0, libublk::UblkFlags::empty())
        .map_err(|e| UblkTargetError::ublk("open control device", -1, e))?;
    match ctrl.get_driver_features() {
        Some(bits) => Ok(DriverFeatures(bits)),
        None => Err(UblkTargetError::FeaturesUnknown {
            cause: UblkCause(libublk::UblkError::OtherError(-libc::EOPNOTSUPP)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_needs_both_flags() {
        let both =
            DriverFeatures::from_bits((sys::UBLK_F_USER_RECOVERY | sys::UBLK_F_USER_RECOVERY_REISSUE) as u64);
        assert!(both.recovery_available());
        assert_eq!(both.missing_for_recovery(), None);
        let only = DriverFeatures::from_bits(sys::UBLK_F_USER_RECOVERY as u64);
        assert!(!only.recovery_available());
        assert_eq!(only.missing_for_recovery(), Some("USER_RECOVERY_REISSUE"));
        assert_eq!(only.recovery_flags(), 0);
        assert_eq!(both.to_string(), "0x18 [USER_RECOVERY USER_RECOVERY_REISSUE]");
    }
}
