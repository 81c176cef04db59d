//! One run: start the cluster behind the fault proxy, run the workload, and repeat epochs of
//! faults → pause the workload → heal → check every UpToDate replica → resume, until the time is
//! up.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use replbd_quorum::DiskState;
use tokio::sync::{RwLock, watch};

use crate::block::{self, BLOCK, Content};
use crate::checker::{self, Kind, Violation};
use crate::cluster::{Cluster, NODES, name};
use crate::front::{Client, FrontEnd};
use crate::harness::{Harness, TraceLine};
use crate::history::{Counters, History};
use crate::proxy::FaultProxy;
use crate::schedule::{Enabled, Schedule, Step};
use crate::workload::{self, Shared};

/// How long the cluster may take to heal after an epoch.
const HEAL_WITHIN: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Total duration of the fault phase (the last epoch's heal and check come after).
    pub seconds: u64,
    /// The schedule's seed.
    pub seed: u64,
    /// The `replbd-node` binary.
    pub node_bin: PathBuf,
    /// The front end the workload and the check go through.
    pub front: FrontEnd,
    /// Workload connections.
    pub workers: u64,
    /// Faults per epoch, in milliseconds of fault time.
    pub epoch_ms: u64,
    /// Which fault kinds to draw.
    pub enabled: Enabled,
    /// Keep the temporary directory (logs, disks) when there are violations.
    pub keep_on_violation: bool,
    /// Self-test of the checker: before the first check, overwrite an acknowledged block on one
    /// Secondary's disk with an older write of it (a planted lost write that must be reported).
    pub plant_lost_write: bool,
}

/// The violations of one epoch, with what was done to the cluster up to then.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochViolations {
    /// The epoch (from 1).
    pub epoch: u64,
    /// The violations.
    pub violations: Vec<Violation>,
}

/// The outcome of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Wall time of the whole run in milliseconds.
    pub wall_ms: u64,
    /// Epochs run (each ends with a heal and a check).
    pub epochs: u64,
    /// Acknowledged writes, completed flushes and checked reads.
    pub ops_acked: u64,
    /// The workload's counters.
    pub counters: Counters,
    /// Faults injected.
    pub faults: u64,
    /// Faults injected, by kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Promotions by the HA agent.
    pub failovers: u64,
    /// Split brains (or refused connections) resolved with `--discard-my-data`.
    pub split_brains: u64,
    /// Violations, by epoch.
    pub violations: Vec<EpochViolations>,
    /// Every violation counted once.
    pub violation_count: usize,
    /// The schedule as executed.
    pub trace: Vec<TraceLine>,
    /// The steps drawn from the seed.
    pub schedule: Vec<Step>,
    /// Where the logs and disks were kept, when they were.
    pub kept: Option<PathBuf>,
}

/// A loopback address for this run's listeners, unlikely to be used by a concurrent run.
fn run_host() -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + (pid % 100) as u8,
        ((pid / 100) % 250) as u8 + 1,
        1,
    ))
}

/// Free ports on `host` for the daemons' own listeners (bound, then released for them).
fn free_ports(host: IpAddr, n: usize) -> Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((host, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("binding on {host}"))?;
    Ok(listeners.iter().filter_map(|l| l.local_addr().ok()).collect())
}

/// Runs the suite.
pub fn run(opts: &Options) -> Result<Report> {
    if !opts.node_bin.exists() {
        bail!(
            "{} not found: build it first (cargo build -p replbd-node) or pass --node-bin",
            opts.node_bin.display()
        );
    }
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let host = run_host();
    let listen = free_ports(host, NODES)?;
    let proxy = rt.block_on(FaultProxy::start(host, &listen))?;
    let cluster = Cluster::create(&opts.node_bin, opts.front, |this, of| {
        if this == of {
            listen[of]
        } else {
            proxy.address(this, of).unwrap_or(listen[of])
        }
    })?;
    tracing::info!(dir = %cluster.dir().display(), %host, seed = opts.seed, "cluster created");
    let (primary_tx, primary_rx) = watch::channel(None);
    let mut h = Harness::new(cluster, proxy, primary_tx);
    for i in 0..NODES {
        h.cluster.start(i)?;
    }
    h.cluster.initialise()?;
    if !h.heal(HEAL_WITHIN)? {
        bail!("the new cluster did not come up: {:?}", h.trace.last());
    }

    let size = h.cluster.status(0)?.size_bytes;
    let blocks = size / BLOCK as u64;
    let history = Arc::new(Mutex::new(History::new()));
    let pause = Arc::new(RwLock::new(()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let read_violations = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        front: opts.front,
        read_violations: Arc::clone(&read_violations),
        history: Arc::clone(&history),
        primary: primary_rx,
        pause: Arc::clone(&pause),
        stop: stop_rx,
    };
    let workers: Vec<_> = (0..opts.workers)
        .map(|w| {
            rt.spawn(workload::worker(
                shared.clone(),
                w,
                opts.workers,
                blocks,
                opts.seed,
            ))
        })
        .collect();

    let mut schedule = Schedule::new(opts.seed, opts.enabled, opts.epoch_ms);
    let mut drawn = Vec::new();
    let mut faults_by_kind = BTreeMap::new();
    let mut all_violations = Vec::new();
    let mut epoch = 0;
    let deadline = started + Duration::from_secs(opts.seconds);
    while Instant::now() < deadline {
        epoch += 1;
        h.note(format!("epoch {epoch}"));
        for step in schedule.next_epoch() {
            if Instant::now() >= deadline {
                break;
            }
            drawn.push(step);
            if h.inject(&step)? {
                *faults_by_kind.entry(step.fault.kind().to_owned()).or_insert(0) += 1;
            }
            if h.primary.is_none() {
                h.failover(None, Duration::from_secs(5))?;
            }
        }
        // Stop the workload (every request answered or abandoned), heal, check.
        let paused = rt.block_on(pause.write());
        let mut violations = std::mem::take(&mut h.violations);
        if let Ok(mut reads) = read_violations.lock() {
            violations.append(&mut reads);
        }
        if !h.heal(HEAL_WITHIN)? {
            violations.push(Violation {
                kind: Kind::HealTimeout,
                replica: "cluster".into(),
                block: None,
                expected: format!("every node UpToDate and connected within {HEAL_WITHIN:?}"),
                found: h.trace.last().map(|t| t.what.clone()).unwrap_or_default(),
            });
        }
        if opts.plant_lost_write && epoch == 1 {
            plant_lost_write(&mut h, &history)?;
        }
        violations.extend(check(&mut h, &rt, &history, size)?);
        if !violations.is_empty() {
            for v in violations.iter().take(20) {
                tracing::error!(epoch, seed = opts.seed, "{v}");
            }
            all_violations.push(EpochViolations { epoch, violations });
        }
        drop(paused);
    }
    stop_tx.send_replace(true);
    for w in workers {
        let _ = rt.block_on(w);
    }
    let counters = history.lock().map(|h| h.counters).unwrap_or_default();
    let violation_count = all_violations.iter().map(|e| e.violations.len()).sum();
    let kept = ((violation_count > 0
        || (h.split_brains > 0 && std::env::var_os("REPLBD_FAULTS_KEEP_SPLIT_BRAIN").is_some()))
        && opts.keep_on_violation)
        .then(|| h.cluster.keep_dir());
    Ok(Report {
        seed: opts.seed,
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        epochs: epoch,
        ops_acked: counters.writes_acked + counters.flushes_done + counters.reads_done,
        counters,
        faults: faults_by_kind.values().sum(),
        faults_by_kind,
        failovers: h.failovers,
        split_brains: h.split_brains,
        violations: all_violations,
        violation_count,
        trace: h.trace,
        schedule: drawn,
        kept,
    })
}

/// Reads every UpToDate replica's data area and the Primary's NBD export and checks them; then
/// starts the next epoch from what the replicas hold.
fn check(
    h: &mut Harness,
    rt: &tokio::runtime::Runtime,
    history: &Mutex<History>,
    size: u64,
) -> Result<Vec<Violation>> {
    let before: Vec<_> = (0..NODES).map(|i| h.cluster.status(i).ok()).collect();
    let up_to_date = |s: &Option<replbd_node::admin::report::ResourceReport>| {
        s.as_ref().is_some_and(|s| s.disk == Some(DiskState::UpToDate))
    };
    let mut replicas = Vec::new();
    if let Some(p) = h.primary {
        let path = h.cluster.nodes[p].export.clone();
        let data = rt
            .block_on(read_export(h.cluster.front(), &path, size))
            .with_context(|| format!("reading {} of {}", path.display(), name(p)))?;
        let via = match h.cluster.front() {
            FrontEnd::Nbd => "nbd",
            FrontEnd::Ublk => "ublk",
        };
        replicas.push((format!("{via}:{}", name(p)), data));
    }
    for (i, s) in before.iter().enumerate() {
        if up_to_date(s) {
            replicas.push((name(i).to_owned(), h.cluster.data_area(i, size)?));
        }
    }
    // The states must not have changed while the disks were read (nothing writes now).
    for (i, s) in before.iter().enumerate() {
        let now = h.cluster.status(i).ok();
        if up_to_date(s) != up_to_date(&now) {
            h.note(format!("{}: disk state changed during the check", name(i)));
        }
    }
    let mut violations = Vec::new();
    let Ok(mut hist) = history.lock() else {
        bail!("the history lock is poisoned");
    };
    for (name, data) in &replicas {
        violations.extend(checker::check_replica(&hist, name, data));
    }
    violations.extend(checker::compare_replicas(&replicas));
    let total: usize = hist.blocks.values().map(|b| b.writes.len()).sum();
    h.note(format!(
        "check: {} replicas read ({}), {total} writes this epoch, {} violations",
        replicas.len(),
        replicas
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        violations.len()
    ));
    if let Some((_, reference)) = replicas.first() {
        hist.settle(|b| {
            let at = usize::try_from(b).unwrap_or(usize::MAX).saturating_mul(BLOCK);
            reference.get(at..at + BLOCK).map_or(Content::Zero, block::decode)
        });
    }
    Ok(violations)
}

/// Overwrites, on a Secondary's disk, the block with the most acknowledged writes with its first
/// acknowledged write: what a replica that lost the later writes would hold.
fn plant_lost_write(h: &mut Harness, history: &Mutex<History>) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let Some(victim) = (0..NODES).find(|&i| Some(i) != h.primary) else {
        bail!("no Secondary to plant a lost write on");
    };
    let Ok(hist) = history.lock() else {
        bail!("the history lock is poisoned");
    };
    let acked = |b: &crate::history::BlockHistory| {
        b.writes
            .iter()
            .filter(|w| matches!(w.outcome, crate::history::Outcome::Acked(_)))
            .map(|w| w.id)
            .collect::<Vec<u64>>()
    };
    let Some((block, ids)) = hist
        .blocks
        .iter()
        .map(|(b, bh)| (*b, acked(bh)))
        .filter(|(_, ids)| ids.len() >= 2)
        .max_by_key(|(_, ids)| ids.len())
    else {
        bail!("no block with two acknowledged writes to plant a lost write on");
    };
    drop(hist);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&h.cluster.nodes[victim].disk)?;
    file.write_all_at(&block::encode(block, ids[0]), block * BLOCK as u64)?;
    file.sync_all()?;
    h.note(format!(
        "planted: block {block} on {} set back to write #{} (of {} acknowledged)",
        name(victim),
        ids[0],
        ids.len()
    ));
    Ok(())
}

/// Reads the first `size` bytes of the export at `path`.
async fn read_export(front: FrontEnd, path: &std::path::Path, size: u64) -> Result<Vec<u8>> {
    let mut c = Client::connect(front, path)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if c.size() != size {
        bail!("the export is {} bytes, the resource {size}", c.size());
    }
    let mut data = Vec::with_capacity(usize::try_from(size)?);
    let chunk = 1u64 << 20;
    let mut off = 0;
    while off < size {
        let len = u32::try_from(chunk.min(size - off))?;
        data.extend(c.read(off, len).await.map_err(|e| anyhow::anyhow!("{e}"))?);
        off += u64::from(len);
    }
    c.disconnect().await;
    Ok(data)
}
