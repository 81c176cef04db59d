//! Errors of the ublk front end. Each message says what failed, why, and what to do.

use std::fmt;

use thiserror::Error;

/// Result of a ublk front-end operation.
pub type Result<T, E = UblkTargetError> = std::result::Result<T, E>;

/// Why the ublk front end could not create, recover, serve or delete a device.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UblkTargetError {
    /// `/dev/ublk-control` does not exist: the running kernel has no ublk driver loaded.
    #[error("the kernel has no ublk driver: load ublk_drv, or use the NBD front end")]
    NoDriver,
    /// The driver does not answer `GET_FEATURES` (added in Linux 6.5).
    #[error(
        "the ublk driver does not report its features ({cause}): the ublk front end needs Linux 6.5 or later"
    )]
    FeaturesUnknown {
        /// What the driver answered.
        cause: UblkCause,
    },
    /// Crash recovery was required but the driver lacks a feature it needs.
    #[error(
        "the ublk driver lacks {missing}: crash recovery of a live device is unavailable (if the serving \
         process dies, /dev/ublkbN goes away and I/O fails); use a kernel whose ublk_drv has \
         USER_RECOVERY and USER_RECOVERY_REISSUE, or do not require recovery"
    )]
    RecoveryUnavailable {
        /// The missing driver feature(s).
        missing: &'static str,
    },
    /// A configuration value is out of range.
    #[error("invalid {field} {value}: {reason}")]
    InvalidConfig {
        /// The option.
        field: &'static str,
        /// The value given.
        value: u64,
        /// What is allowed.
        reason: &'static str,
    },
    /// The volume's size cannot be a device of this logical block size.
    #[error(
        "the volume has {size} bytes, which is not a positive multiple of the {block_size}-byte logical block \
         size: resize the volume or choose another block size"
    )]
    VolumeSize {
        /// Size of the volume in bytes.
        size: u64,
        /// Logical block size in bytes.
        block_size: u32,
    },
    /// There is no ublk device with this id.
    #[error("there is no ublk device {id} (no /dev/ublkc{id}): nothing to recover or delete")]
    NoSuchDevice {
        /// The device id.
        id: u32,
    },
    /// The device to recover was created without `UBLK_F_USER_RECOVERY`.
    #[error(
        "ublk device {id} was created without USER_RECOVERY and cannot be re-attached: delete it and add a new one"
    )]
    RecoveryNotEnabled {
        /// The device id.
        id: u32,
    },
    /// The device to recover is still served by a live process.
    #[error(
        "ublk device {id} is still served by process {pid}: stop or kill that process before recovering the device"
    )]
    StillServed {
        /// The device id.
        id: u32,
        /// The serving process.
        pid: i32,
    },
    /// The volume offered for recovery does not have the device's size.
    #[error(
        "ublk device {id} has {device} bytes but the volume has {volume}: recover it with the volume it was serving"
    )]
    SizeMismatch {
        /// The device id.
        id: u32,
        /// Size of the live device in bytes.
        device: u64,
        /// Size of the volume in bytes.
        volume: u64,
    },
    /// A ublk control command failed (the message includes libublk's error and the errno).
    #[error("ublk {op} failed for device {id}: {cause}")]
    Ublk {
        /// What was being done (`add`, `start`, `start recovery`, `delete`, …).
        op: &'static str,
        /// The device id (`-1` before the driver assigned one).
        id: i64,
        /// What libublk or the driver answered.
        cause: UblkCause,
    },
}

/// A libublk error with the errno spelled out (libublk's own messages omit it). Its message is
/// complete, so it reports no further source.
#[derive(Debug)]
pub struct UblkCause(pub libublk::UblkError);

impl UblkCause {
    /// The negative errno carried by the error, if any.
    pub fn errno(&self) -> Option<i32> {
        use libublk::UblkError as E;
        match &self.0 {
            E::OtherError(e) | E::UringIOError(e) if *e != 0 => Some(-e.abs()),
            E::IOError(e) => e.raw_os_error().map(|e| -e),
            _ => None,
        }
    }
}

impl fmt::Display for UblkCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno() {
            Some(errno) => write!(f, "{} ({})", self.0, std::io::Error::from_raw_os_error(-errno)),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for UblkCause {}

impl UblkTargetError {
    /// Wraps a libublk error with what was being done.
    pub(crate) fn ublk(op: &'static str, id: impl Into<i64>, e: libublk::UblkError) -> Self {
        UblkTargetError::Ublk {
            op,
            id: id.into(),
            cause: UblkCause(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_driver_message_tells_what_to_do() {
        assert_eq!(
            UblkTargetError::NoDriver.to_string(),
            "the kernel has no ublk driver: load ublk_drv, or use the NBD front end"
        );
    }

    #[test]
    fn ublk_errors_show_the_errno() {
        let e = UblkTargetError::ublk("start", 3, libublk::UblkError::OtherError(-22));
        let msg = e.to_string();
        assert!(
            msg.starts_with("ublk start failed for device 3: other failure ("),
            "{msg}"
        );
        assert!(msg.contains("Invalid argument"), "{msg}");
    }
}
