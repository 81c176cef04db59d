//! Node loss and evacuation, run every few seconds by the active controller.
//!
//! - **Auto-evict** (LINSTOR's): a node offline longer than `AutoEvictAfter` (controller property,
//!   e.g. `60m`; the controller's `--auto-evict-after` by default) is marked EVICTED and each of
//!   its replicas is placed again elsewhere (`+1` with the resource's placement settings), so the
//!   place count is restored. A replica is left where it is when no other replica is UpToDate —
//!   the offline node may hold the last good copy — and an error report says so. Nothing is
//!   evicted while more than `AutoEvictMaxDisconnectedNodes` percent (default 34) of the nodes
//!   are offline: that is a network problem, not a lost node.
//! - **Evacuation**: a replica flagged EVACUATE is deleted once every other diskful replica of its
//!   resource is UpToDate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use super::core::Controller;
use super::error::ApiError;
use super::ops::{self, Outcome, Where};
use crate::cluster::{Change, Cluster};
use crate::model::props::lookup;
use crate::model::{Placement, ResourceFlag};
use crate::placement::Count;

/// Parses `90s`, `5m`, `1h` or a number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        's' => (&t[..t.len() - 1], 1),
        'm' => (&t[..t.len() - 1], 60),
        'h' => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .map(|n| Duration::from_secs(n * mult))
}

/// Whether replica `name` on `node` reports UpToDate.
fn up_to_date(ctl: &Controller, name: &str, node: &str) -> bool {
    let rt = ctl.runtime();
    let n = rt.node(node);
    n.online() && n.resource(name).is_some_and(|r| r.up && r.disk == "UpToDate")
}

/// One round of auto-evict and evacuation.
pub async fn tick(ctl: &Arc<Controller>) {
    let (threshold, max_pct, candidates) = {
        let c = ctl.cluster();
        let threshold = lookup(&[&c.props], "AutoEvictAfter")
            .and_then(parse_duration)
            .unwrap_or(ctl.settings.auto_evict_after);
        let max_pct: f64 = lookup(&[&c.props], "AutoEvictMaxDisconnectedNodes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(34.0);
        let rt = ctl.runtime();
        let candidates: Vec<String> = c
            .nodes
            .values()
            .filter(|n| !n.evicted && rt.node(&n.name).offline_for() > threshold)
            .map(|n| n.name.clone())
            .collect();
        (threshold, max_pct, candidates)
    };
    let total = ctl.cluster().nodes.len().max(1);
    let offline = {
        let c = ctl.cluster();
        let rt = ctl.runtime();
        c.nodes.keys().filter(|n| !rt.node(n).online()).count()
    };
    if !candidates.is_empty() && (offline as f64) * 100.0 / (total as f64) > max_pct {
        warn!(
            offline,
            total, "not evicting: too many nodes are offline at once (a network problem?)"
        );
    } else {
        for node in candidates {
            evict(ctl, &node, threshold).await;
        }
    }
    finish_evacuations(ctl).await;
}

async fn evict(ctl: &Arc<Controller>, node: &str, after: Duration) {
    let infos = ctl.node_infos();
    let resources: Vec<(String, bool)> = ctl
        .cluster()
        .resources_on(node)
        .map(|r| (r.name.clone(), r.diskless()))
        .collect();
    let mut kept = Vec::new();
    for (name, diskless) in &resources {
        let others_ok = ctl
            .cluster()
            .resources_of(name)
            .filter(|r| r.node != node && !r.diskless())
            .any(|r| up_to_date(ctl, name, &r.node));
        if !diskless && !others_ok {
            kept.push(name.clone());
            continue;
        }
        let (name, node_s, diskless, infos) = (name.clone(), node.to_owned(), *diskless, infos.clone());
        let r = ctl
            .commit(move |c: &Cluster| {
                let mut o = Outcome::default();
                if !diskless {
                    match ops::resource_create(
                        c,
                        &infos,
                        &name,
                        Where::Auto {
                            count: Count::Additional(1),
                            placement: Placement::default(),
                        },
                    ) {
                        Ok(p) => {
                            o.changes.extend(p.changes);
                            o.messages.extend(p.messages);
                        }
                        Err(e) => o.messages.push(format!("no replacement: {e}")),
                    }
                }
                o.changes
                    .push(Change::DeleteResource(name.clone(), node_s.clone()));
                Ok::<Outcome, ApiError>(o)
            })
            .await;
        match r {
            Ok(o) => {
                ctl.counters.evictions.fetch_add(1, Ordering::Relaxed);
                info!(node, messages = ?o.messages, "replica evicted");
            }
            Err(e) => warn!(node, error = %e, "evicting a replica failed"),
        }
    }
    for name in &kept {
        ctl.report(
            "controller",
            &format!("auto-evict {node}"),
            &format!("{name} on {node} was not evicted: no other replica is UpToDate, so the offline node may hold the last good copy"),
            "",
        )
        .await;
    }
    let node_s = node.to_owned();
    let r = ctl
        .commit(move |c: &Cluster| {
            let mut o = Outcome::default();
            if let Some(n) = c.nodes.get(&node_s) {
                let mut n = n.clone();
                n.evicted = true;
                o.changes.push(Change::PutNode(n));
            }
            Ok::<Outcome, ApiError>(o)
        })
        .await;
    if let Err(e) = r {
        warn!(node, error = %e, "marking the node evicted failed");
    }
    warn!(node, offline_for = ?after, kept = kept.len(), "node EVICTED: offline too long, its replicas were placed elsewhere");
    ctl.sync_all().await;
}

async fn finish_evacuations(ctl: &Arc<Controller>) {
    let flagged: Vec<(String, String)> = ctl
        .cluster()
        .resources
        .values()
        .filter(|r| r.flags.contains(&ResourceFlag::Evacuate))
        .map(|r| (r.name.clone(), r.node.clone()))
        .collect();
    let mut changed = false;
    for (name, node) in flagged {
        let others: Vec<String> = ctl
            .cluster()
            .resources_of(&name)
            .filter(|r| r.node != node && !r.diskless() && !r.flags.contains(&ResourceFlag::Evacuate))
            .map(|r| r.node.clone())
            .collect();
        if others.is_empty() || !others.iter().all(|o| up_to_date(ctl, &name, o)) {
            continue;
        }
        let (n2, node2) = (name.clone(), node.clone());
        if ctl
            .commit(move |c: &Cluster| {
                let mut o = Outcome::default();
                if c.resources.contains_key(&(n2.clone(), node2.clone())) {
                    o.changes.push(Change::DeleteResource(n2, node2));
                }
                Ok::<Outcome, ApiError>(o)
            })
            .await
            .is_ok()
        {
            info!(resource = %name, node = %node, "evacuated replica removed: its replacement is UpToDate");
            changed = true;
        }
    }
    if changed {
        ctl.sync_all().await;
    }
}

/// Runs [`tick`] every `period` until the controller is dropped.
pub async fn run(ctl: Arc<Controller>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        tick(&ctl).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("60m"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("x"), None);
    }
}
