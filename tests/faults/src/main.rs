//! `replbd-faults`: runs randomized fault schedules against three real `replbd-node` processes
//! (protocol C, quorum majority, `on-no-quorum io-error`) while a checker writes through the
//! Primary's NBD export, then verifies that no acknowledged write was lost (see [`checker`]).
//!
//! Faults, one at a time, each healed before the next: `kill -9` of the Primary (an HA agent
//! promotes a quorate survivor, the killed node restarts and resyncs), `kill -9` of a Secondary,
//! a network partition isolating the Primary (nftables drops between the nodes' loopback
//! addresses; the majority side promotes, the old Primary is demoted and rejoins) or a Secondary,
//! and a clean restart (`down`, `up`) of a Secondary. The schedule comes from `--seed`; the same
//! seed replays the same schedule (timing still varies).
//!
//! Output ends with `ops_acked=A faults=F violations=V`; the exit status is 1 on a violation, 2
//! when the harness itself failed (a node never became healthy: that is reported, not hidden).

mod checker;
mod cluster;
mod nbd;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use replbd_quorum::{ConnectionState, DiskState, Role};

use checker::{BLOCK, History, content};
use cluster::{Cluster, NAMES, healthy};
use nbd::{Client, Outcome};

/// Blocks the checker writes (4 MiB).
const BLOCKS: usize = 1024;
const HEAL: Duration = Duration::from_secs(90);

#[derive(Parser)]
#[command(about = "Fault-injection reliability suite for replbd")]
struct Opts {
    /// How long to inject faults.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Schedule seed (random when omitted; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Replication port of every node (each on its own loopback address).
    #[arg(long, default_value_t = 7790)]
    port: u16,
    /// Keep the cluster's directory (logs, disks) afterwards.
    #[arg(long)]
    keep: bool,
}

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillPrimary,
    KillSecondary,
    IsolatePrimary,
    IsolateSecondary,
    RestartSecondary,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillPrimary => "kill-9-primary",
            Fault::KillSecondary => "kill-9-secondary",
            Fault::IsolatePrimary => "partition-primary",
            Fault::IsolateSecondary => "partition-secondary",
            Fault::RestartSecondary => "restart-secondary",
        }
    }
}

/// The workload's connection to the current Primary.
struct Workload {
    client: Option<Client>,
    primary: usize,
    history: History,
}

impl Workload {
    fn connect(&mut self, cluster: &Cluster, primary: usize) -> Result<()> {
        self.primary = primary;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Client::connect(&cluster.nodes[primary].nbd, "r0") {
                Ok(c) if c.size < (BLOCKS * BLOCK) as u64 => {
                    bail!(
                        "the export is {} bytes; the checker needs {}",
                        c.size,
                        BLOCKS * BLOCK
                    );
                }
                Ok(c) => {
                    self.client = Some(c);
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Writes (and sometimes flushes) for `d`; stops early once a request fails.
    fn run(&mut self, rng: &mut StdRng, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            let Some(c) = self.client.as_mut() else { return };
            if rng.random_range(0..16) == 0 {
                match c.flush() {
                    Ok(Outcome::Done) => self.history.flushes += 1,
                    Ok(Outcome::Failed(errno)) => {
                        note(&format!("flush failed (errno {errno}); outcome unknown"));
                        self.history.unknown_ops += 1;
                        self.client = None;
                    }
                    Err(e) => {
                        note(&format!("flush: connection lost ({e}); outcome unknown"));
                        self.history.unknown_ops += 1;
                        self.client = None;
                    }
                }
                continue;
            }
            let block = rng.random_range(0..BLOCKS);
            let id = self.history.next_write();
            match c.write((block * BLOCK) as u64, &content(block as u64, id)) {
                Ok(Outcome::Done) => self.history.acked(block, id),
                Ok(Outcome::Failed(errno)) => {
                    note(&format!(
                        "write {id} to block {block} failed (errno {errno}); outcome unknown"
                    ));
                    self.history.unknown(block, id);
                    self.client = None;
                }
                Err(e) => {
                    note(&format!(
                        "write {id} to block {block}: connection lost ({e}); outcome unknown"
                    ));
                    self.history.unknown(block, id);
                    self.client = None;
                }
            }
        }
    }
}

struct Run {
    cluster: Cluster,
    rng: StdRng,
    work: Workload,
    faults: BTreeMap<&'static str, u64>,
    schedule: Vec<String>,
}

impl Run {
    fn say(&mut self, what: String) {
        note(&what);
        self.schedule.push(what);
    }

    /// Promotes `node` once it is UpToDate, quorate and sees no other Primary.
    fn promote(&mut self, node: usize) -> Result<()> {
        self.cluster
            .wait(node, "UpToDate with quorum and no Primary peer", HEAL, |s| {
                s.disk == Some(DiskState::UpToDate)
                    && s.quorum == Some(true)
                    && s.peers.iter().all(|p| p.role != Role::Primary)
            })?;
        let deadline = Instant::now() + HEAL;
        while let Err(e) = self.cluster.admin(node, &["primary", "r0"]) {
            if Instant::now() > deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.work.connect(&self.cluster, node)
    }

    /// Waits until every node runs and is healthy, then reconnects the workload if it lost its
    /// connection.
    fn heal(&mut self) -> Result<()> {
        for i in 0..NAMES.len() {
            if !self.cluster.running(i) {
                self.cluster.start(i)?;
            }
        }
        for i in 0..NAMES.len() {
            self.cluster
                .wait(i, "healthy (UpToDate, every peer in sync)", HEAL, healthy)?;
        }
        if self.work.client.is_none() {
            let p = self.work.primary;
            self.work.connect(&self.cluster, p)?;
        }
        Ok(())
    }

    fn inject(&mut self, fault: Fault) -> Result<()> {
        let p = self.work.primary;
        let others: Vec<usize> = (0..NAMES.len()).filter(|&i| i != p).collect();
        let s = others[self.rng.random_range(0..others.len())];
        let t = others.iter().copied().find(|&i| i != s).unwrap_or(s);
        *self.faults.entry(fault.name()).or_default() += 1;
        match fault {
            Fault::KillPrimary => {
                self.say(format!(
                    "kill -9 {} (Primary) under writes; promote {}",
                    NAMES[p], NAMES[s]
                ));
                self.kill_under_load(p)?;
                self.work.client = None;
                self.promote(s)?;
                let d = self.pause();
                self.work.run(&mut self.rng, d);
            }
            Fault::KillSecondary => {
                self.say(format!("kill -9 {} (Secondary) under writes", NAMES[s]));
                self.kill_under_load(s)?;
                let d = self.pause();
                self.work.run(&mut self.rng, d);
            }
            Fault::IsolatePrimary => {
                self.say(format!(
                    "partition {} (Primary) from {} and {}; promote {}",
                    NAMES[p], NAMES[s], NAMES[t], NAMES[s]
                ));
                self.cluster.partition(p, &others, true)?;
                // The isolated Primary's writes fail once it loses quorum; none is acknowledged.
                let d = self.pause();
                self.work.run(&mut self.rng, d);
                self.work.client = None;
                self.cluster.wait(s, "the old Primary gone", HEAL, |st| {
                    st.peers
                        .iter()
                        .any(|x| x.node_id == p as u8 && x.connection != ConnectionState::Connected)
                })?;
                self.promote(s)?;
                let d = self.pause();
                self.work.run(&mut self.rng, d);
                // The HA agent demotes the old Primary before the network heals.
                self.cluster.admin(p, &["secondary", "r0"])?;
                self.cluster.partition(p, &others, false)?;
            }
            Fault::IsolateSecondary => {
                self.say(format!(
                    "partition {} (Secondary) from {} and {}",
                    NAMES[s], NAMES[p], NAMES[t]
                ));
                let rest: Vec<usize> = (0..NAMES.len()).filter(|&i| i != s).collect();
                self.cluster.partition(s, &rest, true)?;
                let d = self.pause();
                self.work.run(&mut self.rng, d);
                self.cluster.partition(s, &rest, false)?;
            }
            Fault::RestartSecondary => {
                self.say(format!("down/up {} (Secondary)", NAMES[s]));
                self.cluster.admin(s, &["down", "r0"])?;
                let d = self.pause();
                self.work.run(&mut self.rng, d);
                self.cluster.admin(s, &["up", "r0"])?;
            }
        }
        self.heal()
    }

    /// `kill -9` of `node` at a random moment while the workload writes (so that requests are in
    /// flight when it dies).
    fn kill_under_load(&mut self, node: usize) -> Result<()> {
        let pid = self
            .cluster
            .pid(node)
            .context("the node to kill is not running")?;
        let delay = Duration::from_millis(self.rng.random_range(0..300));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
        });
        self.work.run(&mut self.rng, delay + Duration::from_millis(200));
        let _ = killer.join();
        self.cluster.kill(node)
    }

    fn pause(&mut self) -> Duration {
        Duration::from_millis(self.rng.random_range(300..1500))
    }

    /// Stops everything cleanly and checks every replica; the violations found.
    fn verify(&mut self) -> Result<Vec<String>> {
        let p = self.work.primary;
        self.work.client = None;
        self.cluster.admin(p, &["secondary", "r0"])?;
        for i in 0..NAMES.len() {
            self.cluster.admin(i, &["down", "r0"])?;
        }
        let mut violations = Vec::new();
        let mut images = Vec::new();
        for (i, n) in self.cluster.nodes.iter().enumerate() {
            let data = std::fs::read(&n.disk).with_context(|| format!("reading {}", n.disk.display()))?;
            let data = data.get(..BLOCKS * BLOCK).unwrap_or(&data).to_vec();
            for v in self.work.history.check(&data) {
                violations.push(format!("{}: {v}", NAMES[i]));
            }
            images.push(data);
        }
        for i in 1..images.len() {
            if images[i] != images[0] {
                let differing = images[i]
                    .chunks(BLOCK)
                    .zip(images[0].chunks(BLOCK))
                    .filter(|(a, b)| a != b)
                    .count();
                violations.push(format!(
                    "{} and {} are both UpToDate but differ in {differing} blocks",
                    NAMES[0], NAMES[i]
                ));
            }
        }
        Ok(violations)
    }
}

/// A progress line on standard error.
fn note(what: &str) {
    let _ = writeln!(std::io::stderr().lock(), "replbd-faults: {what}");
}

fn main() -> Result<()> {
    let opts = Opts::parse();
    let seed = opts.seed.unwrap_or_else(|| StdRng::from_os_rng().random());
    let mut cluster = Cluster::create(opts.port)?;
    cluster.keep = opts.keep;
    note(&format!(
        "seed {seed} ({}s); cluster in {}; partitions {}",
        opts.seconds,
        cluster.dir.display(),
        if cluster.can_partition {
            "with nftables"
        } else {
            "skipped: nft is not usable here (run as root with nftables)"
        }
    ));
    cluster.start_all()?;
    let mut run = Run {
        cluster,
        rng: StdRng::seed_from_u64(seed),
        work: Workload {
            client: None,
            primary: 0,
            history: History::new(BLOCKS),
        },
        faults: BTreeMap::new(),
        schedule: Vec::new(),
    };
    run.promote(0)?;
    let mut kinds = vec![Fault::KillPrimary, Fault::KillSecondary, Fault::RestartSecondary];
    if run.cluster.can_partition {
        kinds.extend([Fault::IsolatePrimary, Fault::IsolateSecondary]);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.seconds);
    let mut harness_error = None;
    while Instant::now() < deadline {
        let d = run.pause();
        run.work.run(&mut run.rng, d);
        let fault = kinds[run.rng.random_range(0..kinds.len())];
        if let Err(e) = run.inject(fault) {
            harness_error = Some(e);
            break;
        }
    }
    let violations = match &harness_error {
        None => run.verify()?,
        Some(_) => Vec::new(),
    };
    let h = &run.work.history;
    let faults: u64 = run.faults.values().sum();
    let mut out = std::io::stdout().lock();
    if opts.json {
        let v = serde_json::json!({
            "seed": seed,
            "seconds": started.elapsed().as_secs_f64(),
            "ops_acked": h.writes_acked + h.flushes,
            "writes_acked": h.writes_acked,
            "flushes": h.flushes,
            "unknown_ops": h.unknown_ops,
            "faults": run.faults,
            "violations": violations,
        });
        writeln!(out, "{v}")?;
    } else {
        for (k, n) in &run.faults {
            writeln!(out, "fault {k}: {n}")?;
        }
        writeln!(
            out,
            "writes_acked={} flushes={} unknown={} seconds={:.0}",
            h.writes_acked,
            h.flushes,
            h.unknown_ops,
            started.elapsed().as_secs_f64()
        )?;
    }
    if !violations.is_empty() {
        writeln!(out, "VIOLATIONS (replay with --seed {seed}):")?;
        for s in &run.schedule {
            writeln!(out, "  schedule: {s}")?;
        }
        for v in violations.iter().take(50) {
            writeln!(out, "  {v}")?;
        }
        run.cluster.keep = true;
    }
    writeln!(
        out,
        "ops_acked={} faults={faults} violations={}",
        h.writes_acked + h.flushes,
        violations.len()
    )?;
    drop(out);
    if let Some(e) = harness_error {
        run.cluster.keep = true;
        bail!(
            "the harness failed (seed {seed}, files kept in {}): {e:#}",
            run.cluster.dir.display()
        );
    }
    if !violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
