//! The controller: the cluster's single source of truth.
//!
//! - [`ops`]: every request as pure decisions over the cluster state → changes;
//! - [`error`]: why a request failed, and its gRPC status;
//! - [`runtime`]: what the node agents report (online, disk states, capacities);

pub mod error;
pub mod ops;
pub mod runtime;
