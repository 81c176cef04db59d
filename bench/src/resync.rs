//! `replbd-bench resync`: how precise and how fast a resync is.
//!
//! For each dirty fraction (1 %, 10 %, 100 % of a 1 GiB volume on /dev/shm): two replbd nodes in
//! this process over loopback; the Secondary goes down in an orderly way; the Primary writes the
//! dirty ranges (random runs of 4 KiB–256 KiB, or the whole device); the Secondary comes back and
//! resyncs. Reported: the union of the dirty ranges, the bytes the resync moved, its duration (the
//! source's `resync-finished` figure: from the handshake decision to the end, bitmap exchange
//! included), and the floor — the same ranges
//! copied from one file to another over a loopback TCP socket by two threads with no protocol at
//! all. The data of both nodes is compared at the end; a difference fails the benchmark.
//!
//! The resync runs with `c-max-rate` unlimited (0), so the figure is the engine's, not the
//! controller's.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use replbd_quorum::{DiskState, Protocol, ReplicationState};
use replbd_replication::engine::{Event, ResyncConfig};
use replbd_replication::{BlockVolume, LocalDisk, PeerConfig, Resource, ResourceConfig, WriteFlags};
use serde::Serialize;

use crate::engine::{Scratch, free_ports};

const BLOCK: u64 = 4096;

/// One dirty fraction.
#[derive(Serialize)]
pub struct Case {
    /// Percent of the volume written while the peer was away.
    pub dirty_pct: f64,
    /// Bytes in the union of the written ranges.
    pub dirty_bytes: u64,
    /// Runs in that union.
    pub runs: usize,
    /// Bytes the resync moved.
    pub transferred_bytes: u64,
    /// Resync duration (source side, bitmap exchange included).
    pub seconds: f64,
    /// The same ranges copied over a loopback socket with no protocol.
    pub floor_seconds: f64,
}

/// The report.
#[derive(Serialize)]
pub struct ResyncReport {
    /// Volume size.
    pub volume_bytes: u64,
    /// One entry per dirty fraction.
    pub cases: Vec<Case>,
}

/// Deterministic xorshift.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs covering about `pct` % of `size`, merged: (offset, length), sorted, disjoint.
fn dirty_runs(size: u64, pct: f64, seed: u64) -> Vec<(u64, u64)> {
    if pct >= 100.0 {
        return vec![(0, size)];
    }
    let blocks = size / BLOCK;
    let target = (size as f64 * pct / 100.0) as u64;
    let mut rng = Rng(seed | 1);
    let mut raw = Vec::new();
    let mut covered = 0u64;
    // Overlaps make the union smaller than the sum; draw until the union reaches the target.
    while covered < target {
        let len = (1 + rng.next() % 64) * BLOCK;
        let start = (rng.next() % blocks) * BLOCK;
        raw.push((start, len.min(size - start)));
        covered = merge(&mut raw);
    }
    raw
}

/// Sorts and merges `runs` in place; returns the bytes covered.
fn merge(runs: &mut Vec<(u64, u64)>) -> u64 {
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for &(s, l) in runs.iter() {
        match out.last_mut() {
            Some((ps, pl)) if *ps + *pl >= s => *pl = (*pl).max(s + l - *ps),
            _ => out.push((s, l)),
        }
    }
    *runs = out;
    runs.iter().map(|r| r.1).sum()
}

fn pattern(rng: &mut Rng, len: u64) -> Bytes {
    let mut v = vec![0u8; len as usize];
    for c in v.chunks_mut(8) {
        let x = rng.next().to_le_bytes();
        c.copy_from_slice(&x[..c.len()]);
    }
    Bytes::from(v)
}

struct Node {
    cfg: ResourceConfig,
    data: PathBuf,
    meta: PathBuf,
}

fn node_files(scratch: &mut Scratch, tag: &str, i: usize, size: u64) -> Result<(PathBuf, PathBuf)> {
    let data = scratch.prefilled_file(&format!("resync{tag}-{i}.data"), size)?;
    let params = replbd_bitmap::Params {
        data_size: size,
        max_peers: 1,
        bm_block_size: BLOCK,
        al_extents: replbd_bitmap::layout::DEFAULT_AL_EXTENTS,
    };
    let meta = scratch.file(
        &format!("resync{tag}-{i}.md"),
        replbd_bitmap::Geometry::meta_size_for(&params),
    )?;
    let dev = replbd_bitmap::FileDevice::open(&meta)?;
    replbd_bitmap::create(
        &dev,
        &replbd_bitmap::CreateOptions {
            placement: replbd_bitmap::Placement::External,
            params,
            node_id: replbd_bitmap::NodeId::new(i as u8).context("node id")?,
        },
    )?;
    Ok((data, meta))
}

async fn wait_in_sync(r: &Resource, peer: u8) -> Result<()> {
    r.wait_for(Duration::from_secs(300), |s| {
        s.disk == DiskState::UpToDate
            && s.peer(peer).is_some_and(|p| {
                p.replication == ReplicationState::Established
                    && p.disk == DiskState::UpToDate
                    && p.out_of_sync == 0
            })
    })
    .await
    .map_err(|s| anyhow::anyhow!("node {} never got in sync with node {peer}:\n{s}", s.node))?;
    Ok(())
}

/// The resync of one dirty fraction: (bytes moved, seconds).
async fn replbd_case(scratch: &mut Scratch, size: u64, pct: f64, runs: &[(u64, u64)]) -> Result<(u64, f64)> {
    let addrs = free_ports(2)?;
    let tag = format!("{pct}");
    let mut nodes = Vec::new();
    for i in 0..2usize {
        let (data, meta) = node_files(scratch, &tag, i, size)?;
        let mut cfg = ResourceConfig::new("bench", i as u8, addrs[i], b"bench-secret");
        cfg.peers = vec![PeerConfig {
            node_id: (1 - i) as u8,
            address: addrs[1 - i],
            protocol: Protocol::C,
            diskless: false,
        }];
        cfg.resync = ResyncConfig {
            max_rate: 0,
            ..ResyncConfig::default()
        };
        nodes.push(Node { cfg, data, meta });
    }
    let attach = |n: &Node| LocalDisk::attach(&n.data, &n.meta);
    let mut res = Vec::new();
    for n in &nodes {
        let d = attach(n)?;
        d.declare_up_to_date(0x0bad_cafe_0000_0002)?;
        res.push(Resource::start(n.cfg.clone(), Some(d)).await?);
    }
    wait_in_sync(&res[0], 1).await?;
    let primary = res[0].clone();
    primary.primary(false).await?;
    res[1].down().await.map_err(anyhow::Error::msg)?;
    let mut rng = Rng(0x5eed_0000 ^ (pct * 1000.0) as u64);
    for &(off, len) in runs {
        let mut pos = off;
        while pos < off + len {
            let n = (off + len - pos).min(1 << 20);
            primary
                .write(pos, pattern(&mut rng, n), WriteFlags::default())
                .await?;
            pos += n;
        }
    }
    primary.flush().await?;
    let mut events = primary.events();
    let target = Resource::start(nodes[1].cfg.clone(), Some(attach(&nodes[1])?)).await?;
    let (moved, seconds) = loop {
        match tokio::time::timeout(Duration::from_secs(300), events.recv()).await {
            Ok(Ok(Event::ResyncFinished {
                peer: 1,
                bytes_moved,
                seconds,
                ..
            })) => break (bytes_moved, seconds),
            Ok(Ok(_)) => {}
            other => bail!("no resync-finished event: {other:?}"),
        }
    };
    wait_in_sync(&target, 0).await?;
    primary.down().await.map_err(anyhow::Error::msg)?;
    target.down().await.map_err(anyhow::Error::msg)?;
    if !same_content(&nodes[0].data, &nodes[1].data, size)? {
        bail!("after the resync of {pct}% the replicas differ");
    }
    Ok((moved, seconds))
}

fn same_content(a: &Path, b: &Path, size: u64) -> Result<bool> {
    let (fa, fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(1 << 20) as usize;
        fa.read_exact_at(&mut ba[..n], pos)?;
        fb.read_exact_at(&mut bb[..n], pos)?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// The floor: `runs` read from `src`, streamed over loopback TCP in ≤ 1 MiB pieces, written to
/// `dst` by a receiver thread. Seconds from the first read to the last write.
fn floor(src: &Path, dst: &Path, runs: &[(u64, u64)]) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let dst_file = std::fs::OpenOptions::new().write(true).open(dst)?;
    let receiver = std::thread::spawn(move || -> std::io::Result<()> {
        let (s, _) = listener.accept()?;
        let mut input = BufReader::with_capacity(1 << 20, s);
        let mut hdr = [0u8; 12];
        let mut buf = vec![0u8; 1 << 20];
        loop {
            input.read_exact(&mut hdr)?;
            let off = u64::from_le_bytes(hdr[..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(hdr[8..].try_into().unwrap_or_default()) as usize;
            if len == 0 {
                return Ok(());
            }
            input.read_exact(&mut buf[..len])?;
            dst_file.write_all_at(&buf[..len], off)?;
        }
    });
    let src_file = std::fs::File::open(src)?;
    let started = Instant::now();
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut out = BufWriter::with_capacity(1 << 20, s);
    let mut buf = vec![0u8; 1 << 20];
    for &(off, len) in runs {
        let mut pos = off;
        while pos < off + len {
            let n = (off + len - pos).min(1 << 20) as usize;
            src_file.read_exact_at(&mut buf[..n], pos)?;
            out.write_all(&pos.to_le_bytes())?;
            out.write_all(&(n as u32).to_le_bytes())?;
            out.write_all(&buf[..n])?;
            pos += n as u64;
        }
    }
    out.write_all(&[0u8; 12])?;
    out.flush()?;
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the floor receiver panicked"))??;
    Ok(started.elapsed().as_secs_f64())
}

/// Runs every dirty fraction.
pub fn run(quick: bool, dir: &Path) -> Result<ResyncReport> {
    let size: u64 = if quick { 128 << 20 } else { 1 << 30 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut cases = Vec::new();
    for pct in [1.0, 10.0, 100.0] {
        let mut scratch = Scratch::new(dir);
        let runs = dirty_runs(size, pct, 0x1234_5678 + pct as u64);
        let dirty_bytes: u64 = runs.iter().map(|r| r.1).sum();
        let (transferred_bytes, seconds) = rt.block_on(replbd_case(&mut scratch, size, pct, &runs))?;
        let src = scratch.prefilled_file("floor-src", size)?;
        let dst = scratch.prefilled_file("floor-dst", size)?;
        // The source holds data (tmpfs reads of holes would be unrealistically cheap).
        let f = std::fs::OpenOptions::new().write(true).open(&src)?;
        let mut rng = Rng(7);
        for &(off, len) in &runs {
            let mut pos = off;
            while pos < off + len {
                let n = (off + len - pos).min(1 << 20);
                f.write_all_at(&pattern(&mut rng, n), pos)?;
                pos += n;
            }
        }
        let floor_seconds = floor(&src, &dst, &runs)?;

        cases.push(Case {
            dirty_pct: pct,
            dirty_bytes,
            runs: runs.len(),
            transferred_bytes,
            seconds,
            floor_seconds,
        });
    }
    Ok(ResyncReport {
        volume_bytes: size,
        cases,
    })
}

/// Prints the report with the targets.
pub fn print_table(r: &ResyncReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "resync of a {} MiB volume, c-max-rate unlimited",
        r.volume_bytes >> 20
    )?;
    writeln!(
        out,
        "{:>6} {:>7} {:>12} {:>12} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "dirty", "runs", "dirty B", "moved B", "excess B", "replbd s", "floor s", "MB/s", "vs floor"
    )?;
    for c in &r.cases {
        let excess = c.transferred_bytes.saturating_sub(c.dirty_bytes);
        writeln!(
            out,
            "{:>5}% {:>7} {:>12} {:>12} {:>10} {:>9.3} {:>9.3} {:>9.0} {:>7.2}x",
            c.dirty_pct,
            c.runs,
            c.dirty_bytes,
            c.transferred_bytes,
            excess,
            c.seconds,
            c.floor_seconds,
            c.transferred_bytes as f64 / c.seconds / 1e6,
            c.floor_seconds / c.seconds
        )?;
    }
    writeln!(
        out,
        "\ntargets: moved <= dirty + one 4 KiB block per run; throughput >= 0.80x the floor"
    )?;
    for c in &r.cases {
        let bound = c.dirty_bytes + c.runs as u64 * BLOCK;
        writeln!(
            out,
            "  {:>5}%: precision {} (moved {} <= {}), throughput {:.2}x {}",
            c.dirty_pct,
            if c.transferred_bytes <= bound {
                "met"
            } else {
                "MISSED"
            },
            c.transferred_bytes,
            bound,
            c.floor_seconds / c.seconds,
            if c.floor_seconds / c.seconds >= 0.8 {
                "met"
            } else {
                "MISSED"
            }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_runs_are_disjoint_sorted_and_near_the_fraction() {
        let size = 1 << 30;
        for pct in [1.0, 10.0] {
            let runs = dirty_runs(size, pct, 42);
            let total: u64 = runs.iter().map(|r| r.1).sum();
            let want = (size as f64 * pct / 100.0) as u64;
            assert!(total >= want && total < want + 64 * BLOCK, "{pct}%: {total}");
            for w in runs.windows(2) {
                assert!(w[0].0 + w[0].1 < w[1].0, "{w:?}");
            }
            assert!(
                runs.iter()
                    .all(|r| r.0 % BLOCK == 0 && r.1 % BLOCK == 0 && r.0 + r.1 <= size)
            );
        }
        assert_eq!(dirty_runs(size, 100.0, 1), vec![(0, size)]);
    }
}
