//! replbd's replication engine. So far: the block-volume interface its front ends (ublk, NBD) serve,
//! with an in-memory implementation for testing them.

pub mod volume;

pub use volume::{BlockVolume, MemVolume, VolumeError, VolumeResult, WriteFlags};
