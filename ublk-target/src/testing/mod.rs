//! Volumes for tests and tools, not for production: the real engine lives in
//! `replbd-replication`. [`FileVolume`] lets `replbd-ublk-serve` and the VM suite exercise the ublk
//! front end against a plain file.

mod file_volume;

pub use file_volume::FileVolume;
