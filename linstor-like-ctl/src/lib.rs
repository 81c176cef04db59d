//! replbd's control plane, LINSTOR's model in Rust: the controller (`replbd-controller`) and the
//! CLI (`replbd`).
//!
//! | module | concern |
//! |---|---|
//! | [`model`] | the objects: nodes, storage pools, resource groups and definitions, volumes, resources |
//! | [`placement`] | auto-placement: filter → score → select, pure and fixture-tested |
//! | [`cluster`] | the persisted cluster state and the changes applied to it |
//! | [`store`] | where the state lives: SQLite (default) or etcd (HA controllers with a leader lease) |
//! | [`controller`] | the gRPC service, the links to node agents, node-loss handling, metrics |
//! | [`cli`] | the `replbd` command line: nouns, verbs, tables, JSON |
//! | [`demo`] | `replbd demo`: a three-node cluster on loopback, end to end |

pub mod cli;
pub mod cluster;
pub mod controller;
pub mod demo;
pub mod model;
pub mod placement;
pub mod reports;
pub mod store;
