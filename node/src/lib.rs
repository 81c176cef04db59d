//! replbd's per-host node: the `replbd-node` daemon that hosts every local resource, and its parts.
//!
//! - [`config`]: the TOML configuration file (standalone operation, like DRBD without LINSTOR);
//! - [`nbd`]: the NBD front end that serves a [`replbd_replication::BlockVolume`] to qemu,
//!   `qemu-img`/`qemu-io` and `nbd-client`.

pub mod config;
pub mod nbd;
