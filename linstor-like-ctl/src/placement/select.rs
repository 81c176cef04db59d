//! Step 3 of placement: the best set of qualifying nodes that meets the node-level constraints.
//!
//! A depth-first search over the candidates in score order: the first complete set found is the
//! one a greedy choice would make, and backtracking finds a set whenever one exists (a greedy
//! choice alone can paint itself into a corner with several replicas-on-different keys). The
//! search is bounded; clusters large enough to hit the bound get an error that says so.

use std::collections::BTreeMap;

use super::filter::{Candidate, Filtered, split_constraint};
use super::{DiskfulChoice, NodeInfo, PlacementError, Request};

/// Most search steps before giving up.
const MAX_STEPS: usize = 200_000;

/// The node-level constraints, resolved to keys and the values already taken.
struct Constraints {
    /// replicas-on-same keys (without a fixed value: those were filtered already), with the value
    /// the existing replicas fix, if any.
    same: Vec<(String, Option<String>)>,
    /// replicas-on-different keys with the values existing replicas use.
    different: Vec<(String, Vec<String>)>,
}

fn label<'a>(nodes: &'a [NodeInfo], node: &str, key: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|n| n.name == node)
        .and_then(|n| n.props.get(key))
        .map(String::as_str)
}

/// Chooses `wanted` of `filtered`'s candidates; `nodes` are the cluster's nodes (for the labels of
/// candidates and existing replicas).
pub fn select_on(
    filtered: &Filtered,
    req: &Request<'_>,
    wanted: u32,
    nodes: &[NodeInfo],
) -> Result<Vec<DiskfulChoice>, PlacementError> {
    let k = wanted as usize;
    let cands = &filtered.candidates;
    if cands.len() < k {
        return Err(PlacementError::NotEnoughNodes {
            resource: req.resource.to_owned(),
            wanted,
            qualifying: cands.iter().map(|c| c.node.clone()).collect(),
            rejected: filtered.rejected.clone(),
        });
    }
    let existing: Vec<&str> = req
        .existing
        .iter()
        .filter(|e| e.diskful)
        .map(|e| e.node.as_str())
        .collect();
    let constraints = Constraints {
        same: req
            .placement
            .replicas_on_same
            .iter()
            .map(|e| split_constraint(e))
            .filter(|(_, fixed)| fixed.is_none())
            .map(|(key, _)| {
                let fixed = existing
                    .iter()
                    .find_map(|n| label(nodes, n, &key))
                    .map(str::to_owned);
                (key, fixed)
            })
            .collect(),
        different: req
            .placement
            .replicas_on_different
            .iter()
            .map(|e| {
                let (key, _) = split_constraint(e);
                let used = existing
                    .iter()
                    .filter_map(|n| label(nodes, n, &key))
                    .map(str::to_owned)
                    .collect();
                (key, used)
            })
            .collect(),
    };
    let labels: Vec<BTreeMap<&str, &str>> = cands
        .iter()
        .map(|c| {
            let props = nodes.iter().find(|n| n.name == c.node).map(|n| &n.props);
            constraints
                .same
                .iter()
                .map(|(k, _)| k)
                .chain(constraints.different.iter().map(|(k, _)| k))
                .filter_map(|k| props.and_then(|p| p.get(k)).map(|v| (k.as_str(), v.as_str())))
                .collect()
        })
        .collect();
    let mut chosen = Vec::with_capacity(k);
    let mut steps = 0;
    if search(cands, &labels, &constraints, k, 0, &mut chosen, &mut steps) {
        return Ok(chosen
            .iter()
            .map(|&i| DiskfulChoice {
                node: cands[i].node.clone(),
                pool: cands[i].pool.clone(),
            })
            .collect());
    }
    let detail = if steps >= MAX_STEPS {
        format!("no placement found within {MAX_STEPS} search steps")
    } else {
        explain(cands, &labels, &constraints, k)
    };
    Err(PlacementError::Constraint {
        resource: req.resource.to_owned(),
        wanted,
        detail,
        rejected: filtered.rejected.clone(),
    })
}

/// Whether candidate `i` fits with `chosen`.
fn fits(labels: &[BTreeMap<&str, &str>], c: &Constraints, chosen: &[usize], i: usize) -> bool {
    for (key, fixed) in &c.same {
        let v = labels[i].get(key.as_str());
        if let Some(f) = fixed
            && v != Some(&f.as_str())
        {
            return false;
        }
        if let Some(&j) = chosen.first()
            && labels[j].get(key.as_str()) != v
        {
            return false;
        }
    }
    for (key, used) in &c.different {
        let Some(v) = labels[i].get(key.as_str()) else {
            return false;
        };
        if used.iter().any(|u| u == v) || chosen.iter().any(|&j| labels[j].get(key.as_str()) == Some(v)) {
            return false;
        }
    }
    true
}

fn search(
    cands: &[Candidate],
    labels: &[BTreeMap<&str, &str>],
    c: &Constraints,
    k: usize,
    from: usize,
    chosen: &mut Vec<usize>,
    steps: &mut usize,
) -> bool {
    if chosen.len() == k {
        return true;
    }
    for i in from..cands.len() {
        if cands.len() - i < k - chosen.len() {
            return false;
        }
        *steps += 1;
        if *steps >= MAX_STEPS {
            return false;
        }
        if fits(labels, c, chosen, i) {
            chosen.push(i);
            if search(cands, labels, c, k, i + 1, chosen, steps) {
                return true;
            }
            chosen.pop();
        }
    }
    false
}

/// Says which constraint made the search fail, with the labels of the qualifying nodes.
fn explain(cands: &[Candidate], labels: &[BTreeMap<&str, &str>], c: &Constraints, k: usize) -> String {
    let groups = |key: &str| {
        let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (i, cand) in cands.iter().enumerate() {
            by.entry(labels[i].get(key).copied().unwrap_or("(none)"))
                .or_default()
                .push(cand.node.as_str());
        }
        by.iter()
            .map(|(v, ns)| format!("{v}: {}", ns.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    for (key, fixed) in &c.same {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for l in labels {
            if let Some(v) = l.get(key.as_str()) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let enough = counts
            .iter()
            .any(|(v, n)| *n >= k && fixed.as_deref().is_none_or(|f| f == *v));
        if !enough {
            let need = fixed
                .as_ref()
                .map_or_else(String::new, |f| format!(" (the existing replicas have {f})"));
            return format!(
                "replicas-on-same {key}: no value is shared by {k} qualifying nodes{need} [{}]",
                groups(key)
            );
        }
    }
    for (key, used) in &c.different {
        let mut distinct: Vec<&str> = labels
            .iter()
            .filter_map(|l| l.get(key.as_str()).copied())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        distinct.retain(|v| !used.iter().any(|u| u == v));
        if distinct.len() < k {
            let taken = if used.is_empty() {
                String::new()
            } else {
                format!(", {} taken by existing replicas", used.join(", "))
            };
            return format!(
                "replicas-on-different {key}: only {} unused distinct value(s) among qualifying nodes{taken} [{}]",
                distinct.len(),
                groups(key)
            );
        }
    }
    "the replicas-on-same and replicas-on-different constraints cannot be met together".to_owned()
}
