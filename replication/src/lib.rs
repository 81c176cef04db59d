//! replbd's replication engine: the backing store, the wire protocol and the resource engine that
//! replicates a volume to its peers; and the block-volume interface its front ends (ublk, NBD) serve.

pub mod engine;
pub mod store;
pub mod volume;

pub use engine::{LocalDisk, PeerChanges, PeerConfig, Resource, ResourceConfig, Status};
pub use volume::{BlockVolume, MemVolume, VolumeError, VolumeResult, WriteFlags};
pub mod auth;
pub mod handshake;
pub mod tls;
pub mod wire;
