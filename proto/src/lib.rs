//! replbd's gRPC API, generated at build time from `proto/replbd/*.proto` (see `build.rs`).
//!
//! - [`agent`]: the node agent service every `replbd-node` serves and the controller calls;
//! - [`controller`]: the controller service the `replbd` CLI calls;
//! - [`etcd`]: the part of etcd's API the controller's etcd store needs (client only).
//!
//! The generated code carries the `.proto` comments as documentation.

/// The node agent API (`replbd.agent.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic, unused_qualifications)]
pub mod agent {
    tonic::include_proto!("replbd.agent.v1");
}

/// The controller API (`replbd.controller.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic, unused_qualifications)]
pub mod controller {
    tonic::include_proto!("replbd.controller.v1");
}

/// The subset of etcd's v3 API the controller's etcd store uses (`etcdserverpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, unused_qualifications)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

/// The version agents and controllers exchange; a different major version is refused.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The default port of the node agent.
pub const DEFAULT_AGENT_PORT: u16 = 3366;
/// The default port of the controller.
pub const DEFAULT_CONTROLLER_PORT: u16 = 3370;
