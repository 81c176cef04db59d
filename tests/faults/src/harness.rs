//! The harness: the cluster, its fault proxy and packet loss, who the agent made Primary, and the trace of
//! everything done to the cluster (the resolved schedule a violation report prints).

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::watch;

use crate::checker::{Kind, Violation};
use crate::cluster::{Cluster, NODES, name};
use crate::loss::PacketLoss;
use crate::proxy::FaultProxy;

/// One line of the trace.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TraceLine {
    /// Milliseconds into the run.
    pub at_ms: u64,
    /// What happened.
    pub what: String,
}

/// The cluster under test and what the agent knows about it.
pub struct Harness {
    /// The daemons.
    pub cluster: Cluster,
    /// The links between them.
    pub proxy: FaultProxy,
    /// Packet loss on those links (nftables).
    pub loss: PacketLoss,
    /// The node the agent promoted last, while it is believed to serve.
    pub primary: Option<usize>,
    primary_tx: watch::Sender<Option<PathBuf>>,
    start: Instant,
    /// Everything done, in order.
    pub trace: Vec<TraceLine>,
    /// Violations found outside the data checks (daemons that exited on their own).
    pub violations: Vec<Violation>,
    /// Promotions the agent made.
    pub failovers: u64,
    /// Split brains (or refused connections) the agent resolved with `--discard-my-data`.
    pub split_brains: u64,
}

impl Harness {
    /// A harness around a created (not started) cluster.
    pub fn new(cluster: Cluster, proxy: FaultProxy, primary_tx: watch::Sender<Option<PathBuf>>) -> Harness {
        Harness {
            cluster,
            proxy,
            loss: PacketLoss::new(),
            primary: None,
            primary_tx,
            start: Instant::now(),
            trace: Vec::new(),
            violations: Vec::new(),
            failovers: 0,
            split_brains: 0,
        }
    }

    /// Milliseconds since the harness started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a line of the trace (and logs it).
    pub fn note(&mut self, what: String) {
        let at_ms = self.now_ms();
        tracing::info!(at_ms, "{what}");
        self.trace.push(TraceLine { at_ms, what });
    }

    /// Tells the workload where the Primary is (or that there is none).
    pub fn set_primary(&mut self, primary: Option<usize>) {
        self.primary = primary;
        self.primary_tx
            .send_replace(primary.map(|i| self.cluster.nodes[i].export.clone()));
    }

    /// Notices daemons that exited without being told to: each is a violation (with the end of
    /// its log), and it is left stopped for the agent to restart.
    pub fn reap(&mut self) {
        for i in 0..NODES {
            if let Some(status) = self.cluster.exited(i) {
                let tail = self.cluster.log_tail(i, 20);
                self.note(format!("{} exited on its own ({status})", name(i)));
                self.violations.push(Violation {
                    kind: Kind::DaemonExited,
                    replica: name(i).to_owned(),
                    block: None,
                    expected: "the daemon keeps running".into(),
                    found: format!("exited ({status}); last log lines:\n{tail}"),
                });
                if self.primary == Some(i) {
                    self.set_primary(None);
                }
            }
        }
    }
}
