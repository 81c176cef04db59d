//! How a new device is shaped: queues, depth, logical block size, request size, crash recovery.

use crate::error::{Result, UblkTargetError};

/// Logical block size of the device: the smallest unit the host may read or write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlockSize {
    /// 512-byte sectors (the default; what every tool expects).
    #[default]
    B512,
    /// 4096-byte blocks ("4Kn"): the host never issues smaller or misaligned I/O.
    B4096,
}

impl BlockSize {
    /// Size in bytes.
    pub fn bytes(self) -> u32 {
        1 << self.shift()
    }

    /// log2 of the size, as the driver wants it.
    pub fn shift(self) -> u8 {
        match self {
            BlockSize::B512 => 9,
            BlockSize::B4096 => 12,
        }
    }

    /// The block size of `bytes`, if it is 512 or 4096.
    pub fn from_bytes(bytes: u32) -> Option<BlockSize> {
        match bytes {
            512 => Some(BlockSize::B512),
            4096 => Some(BlockSize::B4096),
            _ => None,
        }
    }

    /// The block size of a shift the driver reported.
    pub(crate) fn from_shift(shift: u8) -> Option<BlockSize> {
        match shift {
            9 => Some(BlockSize::B512),
            12 => Some(BlockSize::B4096),
            _ => None,
        }
    }
}

/// Whether a new device is created so that a new process can re-attach to it after a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryPolicy {
    /// Enable crash recovery if the driver supports it; otherwise warn and serve without it.
    #[default]
    IfAvailable,
    /// Refuse to create the device unless crash recovery is available.
    Required,
    /// Do not enable it: if the serving process dies, the kernel fails pending I/O and removes the
    /// block device.
    Off,
}

/// Most queues a device may have (the driver's limit is 4096; more than the CPU count gains nothing).
pub const MAX_QUEUES: u16 = 64;
/// Largest queue depth the driver accepts.
pub const MAX_DEPTH: u16 = 4096;

/// Shape of a new ublk device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Device number `N` of `/dev/ublkbN`; `None` lets the driver choose.
    pub id: Option<u32>,
    /// Hardware queues: each is served by its own thread with its own io_uring.
    pub queues: u16,
    /// Requests in flight per queue (one tag, one buffer and one task each).
    pub depth: u16,
    /// Logical block size.
    pub block_size: BlockSize,
    /// Largest request in bytes (the per-tag buffer size); a multiple of 4096.
    pub max_io_bytes: u32,
    /// Crash recovery.
    pub recovery: RecoveryPolicy,
    /// A label recorded with the device (libublk's run file), so that a process restarting after
    /// a crash can tell its own device from others before re-attaching ([`inspect_device`]).
    ///
    /// [`inspect_device`]: crate::inspect_device
    pub owner: Option<String>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            id: None,
            queues: 1,
            depth: 64,
            block_size: BlockSize::B512,
            max_io_bytes: 512 << 10,
            recovery: RecoveryPolicy::IfAvailable,
            owner: None,
        }
    }
}

impl DeviceConfig {
    /// Checks every value is within what the driver and this target accept.
    pub fn validate(&self) -> Result<()> {
        let invalid =
            |field, value: u64, reason| Err(UblkTargetError::InvalidConfig { field, value, reason });
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return invalid("queue count", self.queues.into(), "must be 1 to 64");
        }
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return invalid("queue depth", self.depth.into(), "must be 1 to 4096");
        }
        if self.max_io_bytes < 4096 || self.max_io_bytes > 1 << 20 || !self.max_io_bytes.is_multiple_of(4096)
        {
            return invalid(
                "maximum request size",
                self.max_io_bytes.into(),
                "must be a multiple of 4096 from 4 KiB to 1 MiB",
            );
        }
        if let Some(id) = self.id
            && id > i32::MAX as u32
        {
            return invalid("device id", id.into(), "must fit in 31 bits");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_enforced() {
        assert!(DeviceConfig::default().validate().is_ok());
        let bad = [
            DeviceConfig {
                queues: 0,
                ..Default::default()
            },
            DeviceConfig {
                depth: 5000,
                ..Default::default()
            },
            DeviceConfig {
                max_io_bytes: 6000,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(UblkTargetError::InvalidConfig { .. })),
                "{c:?}"
            );
        }
    }

    #[test]
    fn block_sizes_round_trip() {
        for b in [BlockSize::B512, BlockSize::B4096] {
            assert_eq!(BlockSize::from_bytes(b.bytes()), Some(b));
            assert_eq!(BlockSize::from_shift(b.shift()), Some(b));
        }
        assert_eq!(BlockSize::from_bytes(1024), None);
    }
}
