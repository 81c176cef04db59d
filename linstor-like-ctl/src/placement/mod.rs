//! Auto-placement: which nodes and storage pools get a resource's replicas.
//!
//! LINSTOR's pipeline, as pure functions over a snapshot of the cluster so it is deterministic and
//! tested on fixtures (`tests.rs`):
//!
//! 1. [`filter`]: every node is kept or rejected with its reasons — offline, wrong type, evicted,
//!    already a replica, do-not-place-with, a fixed replicas-on-same value, no storage pool of the
//!    allowed names, not enough free space;
//! 2. score: each kept node offers its best pool, scored by free space (LINSTOR's default
//!    `MaxFreeSpace` strategy; a thin pool counts its free space times the oversubscription ratio);
//! 3. [`select`]: the best-scoring set of nodes that meets the node-level constraints
//!    (replicas-on-same, replicas-on-different) together with the replicas already placed; ties
//!    are broken by node name, so the same snapshot always gives the same answer;
//! 4. diskless additions: a tiebreaker when the resource ends with exactly two diskful replicas,
//!    and a diskless replica on every remaining node with diskless-on-remaining.
//!
//! A placement that cannot be met returns a [`PlacementError`] naming the condition that failed
//! and, for every node left out, why.

pub mod filter;
pub mod select;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::model::{Driver, Placement, Props};

/// A storage pool as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolInfo {
    /// Its name.
    pub name: String,
    /// Its driver.
    pub driver: Driver,
    /// Free bytes as last reported (`None`: never reported).
    pub free: Option<u64>,
}

/// A node as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its agent is connected.
    pub online: bool,
    /// Its type may host resources.
    pub hosts_resources: bool,
    /// Evicted or being evacuated: no new replicas.
    pub excluded: Option<String>,
    /// Its properties (Aux labels).
    pub props: Props,
    /// Its storage pools.
    pub pools: Vec<PoolInfo>,
    /// The resources it hosts.
    pub resources: BTreeSet<String>,
}

/// A replica the resource already has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Its node.
    pub node: String,
    /// It has a disk.
    pub diskful: bool,
}

/// How many diskful replicas are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// This many in total (`--auto-place N`).
    Total(u32),
    /// This many more than there are (`--auto-place +N`).
    Additional(u32),
}

/// What to place.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The resource definition.
    pub resource: &'a str,
    /// Bytes each diskful replica needs (all its volumes).
    pub size: u64,
    /// How many diskful replicas.
    pub count: Count,
    /// Constraints.
    pub placement: &'a Placement,
    /// Replicas already placed.
    pub existing: &'a [Existing],
    /// How far thin pools may be oversubscribed (LINSTOR's `MaxOversubscriptionRatio`, 20).
    pub oversubscription: f64,
    /// Add a diskless tiebreaker when the resource ends with two diskful replicas.
    pub tiebreaker: bool,
}

/// A diskful replica to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskfulChoice {
    /// The node.
    pub node: String,
    /// The storage pool.
    pub pool: String,
}

/// A diskless replica to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisklessChoice {
    /// The node.
    pub node: String,
    /// It is the automatic tiebreaker (else diskless-on-remaining).
    pub tiebreaker: bool,
}

/// The outcome of a placement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New diskful replicas, best first.
    pub diskful: Vec<DiskfulChoice>,
    /// New diskless replicas.
    pub diskless: Vec<DisklessChoice>,
}

/// Why a placement cannot be met.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlacementError {
    /// Fewer nodes qualify than replicas are needed.
    #[error(
        "cannot place {wanted} more diskful replica(s) of {resource}: only {} node(s) qualify{}{}",
        qualifying.len(),
        if qualifying.is_empty() { String::new() } else { format!(" ({})", qualifying.join(", ")) },
        format_rejected(rejected)
    )]
    NotEnoughNodes {
        /// The resource definition.
        resource: String,
        /// Replicas still needed.
        wanted: u32,
        /// Nodes that passed the filter.
        qualifying: Vec<String>,
        /// Every other node and why.
        rejected: BTreeMap<String, Vec<String>>,
    },
    /// Enough nodes qualify but no set of them meets the node-level constraints.
    #[error(
        "cannot place {wanted} more diskful replica(s) of {resource}: {detail}{}",
        format_rejected(rejected)
    )]
    Constraint {
        /// The resource definition.
        resource: String,
        /// Replicas still needed.
        wanted: u32,
        /// Which constraint failed and how the qualifying nodes are labelled.
        detail: String,
        /// Nodes the filter left out and why.
        rejected: BTreeMap<String, Vec<String>>,
    },
}

fn format_rejected(rejected: &BTreeMap<String, Vec<String>>) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = rejected
        .iter()
        .map(|(node, why)| format!("{node}: {}", why.join(", ")))
        .collect();
    format!("; not used: {}", parts.join("; "))
}

/// Places replicas of `req.resource` on `nodes`.
pub fn place(nodes: &[NodeInfo], req: &Request<'_>) -> Result<Plan, PlacementError> {
    let existing_diskful = req.existing.iter().filter(|e| e.diskful).count() as u32;
    let wanted = match req.count {
        Count::Total(n) => n.saturating_sub(existing_diskful),
        Count::Additional(n) => n,
    };
    let mut plan = Plan::default();
    if wanted > 0 {
        let filtered = filter::filter(nodes, req);
        plan.diskful = select::select_on(&filtered, req, wanted, nodes)?;
    }
    let placed: BTreeSet<&str> = req
        .existing
        .iter()
        .map(|e| e.node.as_str())
        .chain(plan.diskful.iter().map(|c| c.node.as_str()))
        .collect();
    let eligible_diskless = |n: &&NodeInfo| {
        n.online
            && n.hosts_resources
            && n.excluded.is_none()
            && !placed.contains(n.name.as_str())
            && !req
                .placement
                .do_not_place_with
                .iter()
                .any(|r| n.resources.contains(r))
    };
    if req.placement.diskless_on_remaining == Some(true) {
        plan.diskless = nodes
            .iter()
            .filter(eligible_diskless)
            .map(|n| DisklessChoice {
                node: n.name.clone(),
                tiebreaker: false,
            })
            .collect();
    } else {
        let diskful_total = existing_diskful + plan.diskful.len() as u32;
        let has_diskless = req.existing.iter().any(|e| !e.diskful);
        if req.tiebreaker && diskful_total == 2 && !has_diskless && !plan.diskful.is_empty() {
            let best = nodes.iter().filter(eligible_diskless).min_by(|a, b| {
                a.resources
                    .len()
                    .cmp(&b.resources.len())
                    .then(a.name.cmp(&b.name))
            });
            if let Some(n) = best {
                plan.diskless.push(DisklessChoice {
                    node: n.name.clone(),
                    tiebreaker: true,
                });
            }
        }
    }
    Ok(plan)
}
