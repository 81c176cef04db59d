//! `replbd-bench engine`: replbd's write path beside its own floor, in one run.
//!
//! - `local`: the backing store alone (io_uring on a file);
//! - `floor`: minimal replication with no protocol ([`floor`]);
//! - replbd with 1 and 2 peers, protocol C and A, every node in this process over loopback TCP,
//!   data and metadata in files.
//!
//! Files go to /dev/shm by default (`--dir`), so the disk is not the bottleneck and the figures show
//! what replication itself costs. Each case reports 4 KiB QD1 write latency (p50/p99), 4 KiB QD32
//! write IOPS, 1 MiB sequential write MB/s, and CPU seconds per GiB written (the whole process: for
//! replbd and the floor that includes the peers).

mod floor;
pub mod measure;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use replbd_quorum::{ConnectionState, Protocol, ReplicationState};
use replbd_replication::store::Store;
use replbd_replication::{BlockVolume, LocalDisk, PeerConfig, Resource, ResourceConfig, WriteFlags};
use serde::{Deserialize, Serialize};

use measure::{Figures, Plan};

/// One replbd case.
#[derive(Serialize, Deserialize)]
pub struct Case {
    /// e.g. "replbd-1peer-C".
    pub name: String,
    /// Number of peers.
    pub peers: usize,
    /// Replication protocol.
    pub protocol: String,
    /// Figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// The whole report.
#[derive(Serialize, Deserialize)]
pub struct EngineReport {
    /// Backing store alone.
    pub local: Figures,
    /// Minimal replication floor.
    pub floor: Figures,
    /// replbd cases.
    pub cases: Vec<Case>,
    /// The command that made this report.
    #[serde(default)]
    pub command: Option<String>,
}

/// Bytes each node writes when a case has more than 2 peers.
const SWEEP_SPAN: u64 = 64 << 20;

/// Files of one benchmark run, removed when it ends.
pub(crate) struct Scratch {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Scratch {
    /// Files go to `dir`.
    pub(crate) fn new(dir: &Path) -> Scratch {
        Scratch {
            dir: dir.to_path_buf(),
            files: Vec::new(),
        }
    }

    /// A new file of `len` bytes with every block written once, as on a real device. Writing into a
    /// tmpfs hole costs a page allocation, and on a virtual machine the first touch of guest memory
    /// costs a hypervisor fault too (measured here: ~300 MB/s against several GB/s for memory touched
    /// before); either would dominate what the benchmark means to measure.
    pub(crate) fn prefilled_file(&mut self, name: &str, len: u64) -> Result<PathBuf> {
        use std::os::unix::fs::FileExt;
        let p = self.file(name, len)?;
        let f = std::fs::OpenOptions::new().write(true).open(&p)?;
        let zeros = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(zeros.len() as u64) as usize;
            f.write_all_at(&zeros[..n], pos)
                .with_context(|| format!("cannot fill {}", p.display()))?;
            pos += n as u64;
        }
        Ok(p)
    }

    /// A new file of `len` bytes (sparse).
    pub(crate) fn file(&mut self, name: &str, len: u64) -> Result<PathBuf> {
        let p = self
            .dir
            .join(format!("replbd-bench-{}-{name}", std::process::id()));
        let f = std::fs::File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        f.set_len(len)?;
        self.files.push(p.clone());
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

pub(crate) fn free_ports(n: usize) -> Result<Vec<std::net::SocketAddr>> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    Ok(ls.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?)
}

async fn replbd_case(scratch: &mut Scratch, plan: Plan, peers: usize, protocol: Protocol) -> Result<Figures> {
    let n = peers + 1;
    let addrs = free_ports(n)?;
    let mut nodes = Vec::new();
    for i in 0..n {
        let data = scratch.file(&format!("r{peers}{protocol}-{i}.data"), plan.span)?;
        let params = replbd_bitmap::Params {
            data_size: plan.span,
            max_peers: peers,
            bm_block_size: 4096,
            al_extents: replbd_bitmap::layout::DEFAULT_AL_EXTENTS,
        };
        let meta = scratch.file(
            &format!("r{peers}{protocol}-{i}.md"),
            replbd_bitmap::Geometry::meta_size_for(&params),
        )?;
        let dev = replbd_bitmap::FileDevice::open(&meta)?;
        let node_id = replbd_bitmap::NodeId::new(i as u8).context("node id")?;
        replbd_bitmap::create(
            &dev,
            &replbd_bitmap::CreateOptions {
                placement: replbd_bitmap::Placement::External,
                params,
                node_id,
            },
        )?;
        drop(dev);
        let disk = LocalDisk::attach(&data, &meta)?;
        disk.declare_up_to_date(0x0bad_cafe_0000_0002)?;
        let mut cfg = ResourceConfig::new("bench", i as u8, addrs[i], b"bench-secret");
        cfg.peers = (0..n)
            .filter(|&j| j != i)
            .map(|j| PeerConfig {
                node_id: j as u8,
                address: addrs[j],
                protocol,
                diskless: false,
            })
            .collect();
        nodes.push(Resource::start(cfg, Some(disk)).await?);
    }
    for r in &nodes {
        r.wait_for(Duration::from_secs(30), |s| {
            s.peers
                .iter()
                .filter(|p| {
                    p.connection == ConnectionState::Connected
                        && p.replication == ReplicationState::Established
                })
                .count()
                == peers
        })
        .await
        .map_err(|s| anyhow::anyhow!("nodes did not connect:\n{s}"))?;
    }
    let primary = nodes[0].clone();
    primary.primary(false).await?;
    let figures = measure::run(plan, move |off, data| {
        let p = primary.clone();
        async move {
            p.write(off, data, WriteFlags::default())
                .await
                .map_err(Into::into)
        }
    })
    .await?;
    for r in &nodes {
        r.down().await.map_err(anyhow::Error::msg)?;
    }
    Ok(figures)
}

/// Runs every case (or only the replbd cases named in `only`, e.g. `replbd-2peer-A`) with each
/// peer count of `peers`, protocol C and A.
pub fn run(quick: bool, dir: &Path, only: &[String], peers: &[usize]) -> Result<EngineReport> {
    let mut plan = if quick {
        Plan {
            span: 256 << 20,
            qd1_writes: 2000,
            qd32_secs: 1.0,
            seq_bytes: 256 << 20,
        }
    } else {
        Plan {
            span: 1 << 30,
            qd1_writes: 20_000,
            qd32_secs: 5.0,
            seq_bytes: 2 << 30,
        }
    };
    // Every node keeps a full copy in `dir` (memory, on /dev/shm): with many peers the copies are
    // made smaller so that 33 of them fit.
    if peers.iter().any(|&p| p > 2) {
        plan.span = plan.span.min(SWEEP_SPAN);
        plan.seq_bytes = plan.seq_bytes.min(SWEEP_SPAN);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut scratch = Scratch::new(dir);
        let local_file = scratch.file("local.data", plan.span)?;
        let store = Arc::new(Store::open(&local_file)?);
        let local = measure::run(plan, move |off, data| {
            let s = Arc::clone(&store);
            async move { s.write(off, data, false).await.map_err(Into::into) }
        })
        .await?;
        let floor_file = scratch.file("floor.data", plan.span)?;
        let fl = Arc::new(floor::Floor::start(&floor_file).await?);
        let floor = measure::run(plan, move |off, data| {
            let f = Arc::clone(&fl);
            async move { f.write(off, data).await }
        })
        .await?;
        let mut cases = Vec::new();
        let sweep = peers.iter().flat_map(|&p| [(p, Protocol::C), (p, Protocol::A)]);
        for (peers, protocol) in sweep {
            let name = format!("replbd-{peers}peer-{protocol}");
            if !only.is_empty() && !only.contains(&name) {
                continue;
            }
            let figures = replbd_case(&mut scratch, plan, peers, protocol).await?;
            cases.push(Case {
                name,
                peers,
                protocol: protocol.to_string(),
                figures,
            });
        }
        Ok(EngineReport {
            local,
            floor,
            cases,
            command: None,
        })
    })
}

/// Prints the report as a table, with the targets as ratios to the floor.
pub fn print_table(r: &EngineReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<18} {:>10} {:>9} {:>10} {:>10} {:>10}",
        "case", "4k QD32", "1M MB/s", "QD1 p50", "QD1 p99", "CPU s/GiB"
    )?;
    writeln!(
        out,
        "{:<18} {:>10} {:>9} {:>10} {:>10} {:>10}",
        "", "IOPS", "", "µs", "µs", ""
    )?;
    let row = |out: &mut dyn std::io::Write, name: &str, f: &Figures| {
        writeln!(
            out,
            "{:<18} {:>10.0} {:>9.0} {:>10.1} {:>10.1} {:>10.2}",
            name, f.iops, f.mbps, f.lat_p50_us, f.lat_p99_us, f.cpu_s_per_gib
        )
    };
    row(out, "local", &r.local)?;
    row(out, "floor", &r.floor)?;
    for c in &r.cases {
        row(out, &c.name, &c.figures)?;
    }
    if let Some(c) = r.cases.iter().find(|c| c.peers == 1 && c.protocol == "C") {
        writeln!(
            out,
            "\nprotocol C, 1 peer vs floor: IOPS {:.2}x (target >= 0.70x), QD1 p50 latency {:.2}x (target <= 1.30x)",
            c.figures.iops / r.floor.iops,
            c.figures.lat_p50_us / r.floor.lat_p50_us
        )?;
    }
    Ok(())
}
