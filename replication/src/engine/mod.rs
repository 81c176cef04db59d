//! The resource engine: one replicated volume, its peers, and the paths of every I/O.
//!
//! - [`config`]: what a resource is configured with.
//! - [`local`]: the attached disk (store and metadata).
//! - [`resource`]: [`Resource`], the running resource — the [`BlockVolume`](crate::BlockVolume)
//!   front ends serve, and the administrative operations (primary, secondary, connect, down).
//! - [`state`]: status snapshots and events with DRBD's state names.
//! - internals: [`epoch`] (write ordering), [`request`] (completion rules), `link` (one live
//!   connection), `connection` (keeping a peer connected), `io_path` (the Primary's I/O), `apply`
//!   (applying a Primary's requests), `generation` (generation identifiers at run time).

mod admin;
mod apply;
pub mod config;
mod congestion;
mod connection;
mod core;
mod detach;
pub mod epoch;
mod fencing;
mod gate;
mod generation;
mod handlers;
mod intervals;
mod io_path;
mod link;
pub mod local;
mod lost_primary;
mod marks;
pub mod membership;
mod peer_ack;
mod quorum;
pub mod request;
pub mod resource;
pub mod resync;
mod split_brain;
pub mod state;
mod tasks;
mod watermark;

pub use admin::CommandError;
pub use config::{PeerConfig, ReadBalancing, ResourceConfig, Timeouts};
pub use local::{AttachError, LocalDisk};
pub use membership::PeerChanges;
pub use resource::{Resource, RoleError, StartError};
pub use resync::{DigestAlg, ResyncConfig, SyncProgress};
pub use state::{Event, PeerStatus, Status};
