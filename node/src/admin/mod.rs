//! The local admin interface: drbdadm-like commands (`status`, `up`, `primary`, …) sent by
//! `replbd-node <command>` to the running daemon over a unix socket.
//!
//! Why a socket and not signals or files: commands need an answer (the engine's error message, the
//! status), and `events` needs a stream. The protocol is one JSON object per line in each
//! direction, so it can be driven by hand (`socat - UNIX:/run/replbd/admin.sock`) and read by
//! scripts; it is documented in `docs/node-daemon.md`.
//!
//! - [`protocol`]: requests and replies, and how they are framed;
//! - [`report`]: the status of a resource as sent to clients;
//! - [`event`]: state changes as sent to `events` clients (`drbdsetup events2`-like lines);
//! - [`render`]: the human-readable `status` text;
//! - [`server`]: the daemon's side of the socket;
//! - [`client`]: the command's side.

pub mod client;
pub mod event;
pub mod protocol;
pub mod render;
pub mod report;
pub mod server;

/// The default admin socket.
pub const DEFAULT_SOCKET: &str = "/run/replbd/admin.sock";
