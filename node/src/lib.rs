//! replbd's per-host node: the `replbd-node` daemon that hosts every local resource, and its parts.
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | the TOML configuration file (standalone operation, like DRBD without LINSTOR) |
//! | [`daemon`] | the resources of this node, one owner task each; the process and its signals |
//! | [`admin`] | the local admin socket: drbdadm-like commands, status, events |
//! | [`agent`] | the node agent a controller drives over gRPC: pools, volumes, resources, state stream |
//! | [`metrics`] | Prometheus metrics and the `/metrics` endpoint; the I/O-metering volume |
//! | [`frontend`] | starting and stopping a resource's front end with its role |
//! | [`nbd`] | the NBD front end that serves a [`replbd_replication::BlockVolume`] to qemu, `qemu-io`, `nbd-client` |
//!
//! The binary (`src/bin/replbd-node/`) is a thin command line over these.

pub mod admin;
pub mod agent;
pub mod config;
pub mod daemon;
pub mod frontend;
pub mod metrics;
pub mod nbd;
