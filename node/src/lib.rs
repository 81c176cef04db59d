//! replbd's per-host node. So far it holds the NBD front end ([`nbd`]), which serves a
//! [`replbd_replication::BlockVolume`] to qemu, `qemu-img`/`qemu-io` and `nbd-client` on hosts
//! without ublk; the node daemon will be built around it.

pub mod nbd;
