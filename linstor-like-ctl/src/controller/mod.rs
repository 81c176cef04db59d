//! The controller: the cluster's single source of truth.
//!
//! - [`ops`]: every request as pure decisions over the cluster state → changes;
//! - [`core`]: the shared state and the one way to change it (decide → persist → apply);
//! - [`service`]: the gRPC API the CLI calls;
//! - [`links`]: one task per node agent: connect, push desired state (full, then deltas), record
//!   reported state;
//! - [`desired`]: what each node should host; [`view`]: how it is shown (LINSTOR's columns);
//! - [`evict`]: auto-evict of lost nodes and the end of evacuations;
//! - [`http`]: `/metrics` and `/health`; [`run`]: the process;
//! - [`error`]: why a request failed; [`runtime`]: what the agents report.

pub mod core;
pub mod desired;
pub mod error;
pub mod evict;
pub mod http;
pub mod links;
pub mod ops;
pub mod run;
pub mod runtime;
pub mod service;
pub mod view;
