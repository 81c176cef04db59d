//! Step 1 and 2 of placement: which nodes may take a diskful replica, with which pool, and how
//! good each is (free space).

use std::collections::BTreeMap;

use super::{NodeInfo, Request};
use crate::model::props::aux_key;
use crate::model::size::human;

/// A node that may take a diskful replica, with its best pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Its best pool.
    pub pool: String,
    /// Higher is better: the pool's usable free bytes.
    pub score: f64,
}

/// The result of filtering.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filtered {
    /// Qualifying nodes, best first (score, then name).
    pub candidates: Vec<Candidate>,
    /// Every node left out and why (nodes already holding a replica are not listed).
    pub rejected: BTreeMap<String, Vec<String>>,
}

/// Splits a replicas-on-same entry into its key and a fixed value (`zone=a`).
pub fn split_constraint(entry: &str) -> (String, Option<String>) {
    match entry.split_once('=') {
        Some((k, v)) => (aux_key(k.trim()), Some(v.trim().to_owned())),
        None => (aux_key(entry.trim()), None),
    }
}

/// Filters and scores `nodes` for `req`.
pub fn filter(nodes: &[NodeInfo], req: &Request<'_>) -> Filtered {
    let mut out = Filtered::default();
    for n in nodes {
        if req.existing.iter().any(|e| e.node == n.name) {
            continue;
        }
        let mut why = Vec::new();
        if !n.hosts_resources {
            why.push("its node type does not host resources".to_owned());
        }
        if let Some(x) = &n.excluded {
            why.push(x.clone());
        }
        if !n.online {
            why.push("OFFLINE".to_owned());
        }
        for r in &req.placement.do_not_place_with {
            if n.resources.contains(r) {
                why.push(format!("hosts {r} (do-not-place-with)"));
            }
        }
        for entry in &req.placement.replicas_on_same {
            let (key, fixed) = split_constraint(entry);
            match (n.props.get(&key), fixed) {
                (Some(v), Some(f)) if *v != f => {
                    why.push(format!("{key} is {v}, replicas-on-same needs {f}"))
                }
                (None, _) => why.push(format!("has no {key} (replicas-on-same)")),
                _ => {}
            }
        }
        for entry in &req.placement.replicas_on_different {
            let (key, _) = split_constraint(entry);
            if !n.props.contains_key(&key) {
                why.push(format!("has no {key} (replicas-on-different)"));
            }
        }
        let best = best_pool(n, req, &mut why);
        match (why.is_empty(), best) {
            (true, Some((pool, score))) => out.candidates.push(Candidate {
                node: n.name.clone(),
                pool,
                score,
            }),
            _ => {
                out.rejected.insert(n.name.clone(), why);
            }
        }
    }
    out.candidates.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.node.cmp(&b.node))
    });
    out
}

/// The node's best pool for `req` and its score; reasons for rejecting pools go to `why` when no
/// pool fits.
fn best_pool(n: &NodeInfo, req: &Request<'_>, why: &mut Vec<String>) -> Option<(String, f64)> {
    let allowed = |name: &str| {
        req.placement.storage_pools.is_empty() || req.placement.storage_pools.iter().any(|p| p == name)
    };
    let mut problems = Vec::new();
    let mut best: Option<(String, f64)> = None;
    let mut any_allowed = false;
    for p in n.pools.iter().filter(|p| allowed(&p.name)) {
        if p.driver == crate::model::Driver::Diskless {
            continue;
        }
        any_allowed = true;
        let Some(free) = p.free else {
            problems.push(format!("pool {} has not reported its capacity", p.name));
            continue;
        };
        let usable = if p.driver.thin() {
            free as f64 * req.oversubscription
        } else {
            free as f64
        };
        if usable < req.size as f64 {
            problems.push(format!(
                "pool {} has {} free, needs {}",
                p.name,
                human(free),
                human(req.size)
            ));
            continue;
        }
        let better = best
            .as_ref()
            .is_none_or(|(name, s)| usable > *s || (usable == *s && p.name < *name));
        if better {
            best = Some((p.name.clone(), usable));
        }
    }
    if best.is_none() {
        if !any_allowed {
            if req.placement.storage_pools.is_empty() {
                why.push("has no diskful storage pool".to_owned());
            } else {
                why.push(format!(
                    "has no storage pool named {}",
                    req.placement.storage_pools.join(" or ")
                ));
            }
        } else {
            why.extend(problems);
        }
    }
    best
}
