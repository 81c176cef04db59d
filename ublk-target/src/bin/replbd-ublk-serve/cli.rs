//! Command line of `replbd-ublk-serve`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use replbd_bitmap::units::parse_size;
use replbd_ublk::{BlockSize, DeviceConfig, RecoveryPolicy};

/// Serves a file as a ublk block device (/dev/ublkbN): a test and diagnostic tool for replbd's
/// ublk front end. Prints the device path on stdout when it is ready.
///
/// Signals: SIGINT/SIGTERM stop and delete the device; SIGUSR1 exits at once and leaves the
/// device (with I/O waiting) for `recover`, like a crash but on purpose (an upgrade).
#[derive(Debug, Parser)]
#[command(name = "replbd-ublk-serve", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a device serving FILE, and serve it until stopped.
    Add(AddArgs),
    /// Re-attach to device ID, whose serving process died, and serve it from FILE.
    Recover(RecoverArgs),
    /// Delete device ID (stopping it if it is served).
    Del(DelArgs),
    /// Show what the loaded ublk driver supports.
    Features,
}

/// `add` options.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The backing file (created if --size is given).
    #[arg(long)]
    pub file: PathBuf,
    /// Resize the file to this size first (4096, 64MiB, 1G, …).
    #[arg(long, value_parser = size_arg)]
    pub size: Option<u64>,
    /// Hardware queues (one serving thread each).
    #[arg(long, default_value_t = 1)]
    pub queues: u16,
    /// Requests in flight per queue.
    #[arg(long, default_value_t = 64)]
    pub depth: u16,
    /// Logical block size: 512 or 4096.
    #[arg(long, default_value_t = 512, value_parser = block_size_arg)]
    pub block_size: u32,
    /// Largest request (multiple of 4KiB, at most 1MiB).
    #[arg(long, default_value = "512KiB", value_parser = size_arg)]
    pub max_io: u64,
    /// Device number N of /dev/ublkbN (default: the driver chooses).
    #[arg(long)]
    pub id: Option<u32>,
    /// Fail unless the driver supports crash recovery.
    #[arg(long, conflicts_with = "no_recovery")]
    pub require_recovery: bool,
    /// Create the device without crash recovery.
    #[arg(long)]
    pub no_recovery: bool,
}

impl AddArgs {
    /// The device configuration these options describe.
    pub fn device_config(&self) -> anyhow::Result<DeviceConfig> {
        let block_size = BlockSize::from_bytes(self.block_size)
            .ok_or_else(|| anyhow::anyhow!("block size must be 512 or 4096"))?;
        let max_io_bytes = u32::try_from(self.max_io)
            .map_err(|_| anyhow::anyhow!("--max-io {} is too large", self.max_io))?;
        Ok(DeviceConfig {
            id: self.id,
            queues: self.queues,
            depth: self.depth,
            block_size,
            max_io_bytes,
            recovery: if self.require_recovery {
                RecoveryPolicy::Required
            } else if self.no_recovery {
                RecoveryPolicy::Off
            } else {
                RecoveryPolicy::IfAvailable
            },
            owner: Some(format!("replbd-ublk-serve {}", self.file.display())),
        })
    }
}

/// `recover` options.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The device number N of /dev/ublkbN.
    #[arg(long)]
    pub id: u32,
    /// The backing file the device was serving.
    #[arg(long)]
    pub file: PathBuf,
}

/// `del` options.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The device number N of /dev/ublkbN.
    #[arg(long)]
    pub id: u32,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn block_size_arg(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" | "4k" | "4KiB" => Ok(4096),
        _ => Err(format!("{s:?} is not 512 or 4096")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_options_become_a_device_config() {
        let cli = Cli::parse_from([
            "replbd-ublk-serve",
            "add",
            "--file",
            "/tmp/x",
            "--size",
            "64MiB",
            "--queues",
            "2",
            "--depth",
            "32",
            "--block-size",
            "4096",
            "--id",
            "3",
            "--require-recovery",
        ]);
        let Command::Add(add) = cli.command else {
            panic!("not add");
        };
        assert_eq!(add.size, Some(64 << 20));
        let c = add.device_config().unwrap();
        assert_eq!(
            (c.queues, c.depth, c.block_size, c.id, c.recovery),
            (2, 32, BlockSize::B4096, Some(3), RecoveryPolicy::Required)
        );
        assert!(Cli::try_parse_from(["x", "add", "--file", "f", "--block-size", "1024"]).is_err());
    }
}
