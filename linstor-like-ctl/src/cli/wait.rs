//! `resource wait-sync`: polls the resource until every diskful replica is UpToDate, every
//! diskless one is up, and all of them are connected with replication established, printing each replica's state as it changes (`SyncTarget(43.00%)`), so a
//! long resync shows progress.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use replbd_proto::controller as pb;
use replbd_proto::controller::controller_client::ControllerClient;
use tonic::transport::Channel;

use super::Failure;

/// In sync: UpToDate (diskless: up) and connected to every peer, every peer established.
fn done(r: &pb::Resource) -> bool {
    matches!(r.state.as_str(), "UpToDate" | "Diskless" | "TieBreaker")
        && r.conns == "Ok"
        && r.connections.iter().all(|c| c.replication == "Established")
}

/// Waits for `resource` to be in sync, up to `timeout`.
pub async fn until_synced(
    c: &mut ControllerClient<Channel>,
    resource: &str,
    timeout: Duration,
    progress: bool,
) -> Result<(), Failure> {
    let start = Instant::now();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let l = c
            .resource_list(pb::ResourceListRequest {
                resources: vec![resource.to_owned()],
                nodes: Vec::new(),
            })
            .await?
            .into_inner();
        if l.resources.is_empty() {
            return Err(Failure::new(format!(
                "resource {resource} has no replicas (resource list -r {resource})"
            )));
        }
        let now: BTreeMap<String, String> = l
            .resources
            .iter()
            .map(|r| {
                let s = if r.conns.is_empty() || r.conns == "Ok" {
                    r.state.clone()
                } else {
                    format!("{} {}", r.state, r.conns)
                };
                (r.node.clone(), s)
            })
            .collect();
        if progress && now != last {
            let line: Vec<String> = now.iter().map(|(n, s)| format!("{n}: {s}")).collect();
            let mut e = std::io::stderr().lock();
            let _ = writeln!(
                e,
                "{resource}: {} ({:.0}s)",
                line.join(", "),
                start.elapsed().as_secs_f64()
            );
            last = now.clone();
        }
        if l.resources.iter().all(done) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let line: Vec<String> = now.iter().map(|(n, s)| format!("{n}: {s}")).collect();
            return Err(Failure::new(format!(
                "{resource} is not in sync after {}s: {}",
                timeout.as_secs(),
                line.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
