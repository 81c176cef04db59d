//! `/metrics` (Prometheus text) and `/health` on the controller's HTTP port.
//!
//! `/health` answers `200 ok` on the active controller and `503 standby` on a standby, so a load
//! balancer in front of several controllers finds the active one. The metrics: nodes online and
//! offline, resources by state (`UpToDate`, `SyncTarget`, `Unknown`, ...), placement failures and
//! evictions. One request per connection, bounded in size and time, like the node's endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use super::service::Active;
use super::view;

/// The metrics text of the active controller.
pub fn metrics_text(active: &Active) -> String {
    let Ok(ctl) = active.get() else {
        return String::from("# standby controller: no metrics\n# EOF\n");
    };
    let mut reg = Registry::with_prefix("replbd_controller");
    let nodes: Family<Vec<(String, String)>, Gauge> = Family::default();
    let resources: Family<Vec<(String, String)>, Gauge> = Family::default();
    let failures: Counter = Counter::default();
    let evictions: Counter = Counter::default();
    {
        let c = ctl.cluster();
        let rt = ctl.runtime();
        let (mut on, mut off) = (0, 0);
        for n in c.nodes.keys() {
            if rt.node(n).online() { on += 1 } else { off += 1 }
        }
        nodes
            .get_or_create(&vec![("state".into(), "online".into())])
            .set(on);
        nodes
            .get_or_create(&vec![("state".into(), "offline".into())])
            .set(off);
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        for r in c.resources.values() {
            let n = rt.node(&r.node);
            let s = view::state(r, n.online(), n.resource(&r.name));
            let s = s.split('(').next().unwrap_or_default().to_owned();
            *by_state.entry(s).or_default() += 1;
        }
        for (s, count) in by_state {
            resources.get_or_create(&vec![("state".into(), s)]).set(count);
        }
    }
    failures.inc_by(ctl.counters.placement_failures.load(Ordering::Relaxed));
    evictions.inc_by(ctl.counters.evictions.load(Ordering::Relaxed));
    reg.register("nodes", "Nodes by agent connection state", nodes);
    reg.register(
        "resources",
        "Replicas by state as `resource list` shows it",
        resources,
    );
    reg.register(
        "placement_failures",
        "Auto-placements that could not be met",
        failures,
    );
    reg.register("evictions", "Replicas re-placed by auto-evict", evictions);
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out = "# encoding failed\n".into();
    }
    out
}

async fn handle(mut s: TcpStream, active: &Active) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    let read = async {
        loop {
            let k = s.read(&mut buf[n..]).await?;
            n += k;
            if k == 0 || buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "request head not received in time")
        })??;
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, ctype, body) = match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics_text(active),
        ),
        "/health" => match active.get() {
            Ok(_) => ("200 OK", "text/plain", "ok\n".to_owned()),
            Err(_) => ("503 Service Unavailable", "text/plain", "standby\n".to_owned()),
        },
        _ => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".to_owned(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes()).await?;
    s.shutdown().await
}

/// Serves `/metrics` and `/health` on `addr` (bound before returning).
pub async fn serve(addr: SocketAddr, active: Active) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let l = TcpListener::bind(addr).await?;
    info!(address = %addr, "metrics and health endpoint listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((s, peer)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let active = active.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(s, &active).await {
                    debug!(peer = %peer, error = %e, "metrics request failed");
                }
            });
        }
    }))
}
