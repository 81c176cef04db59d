//! `replbd-bench bitmap`: the cost of the in-memory bitmap.
//!
//! - Nanoseconds per set and per clear of a 4 KiB and a 1 MiB range at random places in a 16 TiB
//!   volume (4 KiB per bit), directly on the bitmap and through `Metadata::mark_out_of_sync`.
//! - Memory of a 16 TiB volume's bitmaps with 32 peer slots at 0.1 %, 1 % and 100 % dirty and with
//!   1 GiB dirty per slot, for two dirt patterns: *clustered* (runs of 64 KiB–4 MiB, like database and
//!   file-system writes) and *scattered* (isolated 4 KiB blocks, the worst case for run encodings).
//!   Memory is the live heap measured by a counting allocator; DRBD's flat bitmap is 32 MiB per TiB
//!   per peer whatever is dirty. When building all 32 slots would take too long, fewer are built
//!   (each independently, with its own random pattern) and the total is scaled to 32; the table says
//!   how many were built.

use std::time::{Duration, Instant};

use anyhow::Result;
use replbd_bitmap::SparseBitmap;
use replbd_bitmap::fault::SplitMix64;
use serde::Serialize;

use crate::alloc::{live_bytes, rss_bytes};

const TIB: u64 = 1 << 40;
const VOLUME: u64 = 16 * TIB;
const GRANULARITY: u64 = 4096;
const SLOTS: u64 = 32;
const BITS: u64 = VOLUME / GRANULARITY;

#[derive(Serialize)]
pub struct OpCost {
    pub op: String,
    pub ns_per_op: f64,
}

#[derive(Serialize)]
pub struct MemoryCase {
    pub dirty: String,
    pub pattern: &'static str,
    pub dirty_bytes_per_slot: u64,
    pub slots_built: u64,
    pub heap_bytes_32_slots: u64,
    pub rss_delta_bytes_32_slots: u64,
    pub drbd_bytes_32_slots: u64,
    pub ratio_to_drbd: f64,
}

#[derive(Serialize)]
pub struct BitmapReport {
    pub volume_bytes: u64,
    pub granularity: u64,
    pub slots: u64,
    pub ops: Vec<OpCost>,
    pub memory: Vec<MemoryCase>,
}

fn time_ops(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn op_costs(quick: bool) -> Result<Vec<OpCost>> {
    let n = if quick { 20_000 } else { 500_000 };
    let mut rng = SplitMix64::new(1);
    let starts: Vec<u64> = (0..n).map(|_| rng.below(BITS - 256)).collect();
    let mut out = Vec::new();
    for (label, bits) in [("4KiB", 1u64), ("1MiB", 256)] {
        let mut bm = SparseBitmap::new(BITS);
        let set = time_ops(n, |i| {
            bm.set_range(starts[i as usize]..starts[i as usize] + bits);
        });
        let clear = time_ops(n, |i| {
            bm.clear_range(starts[i as usize]..starts[i as usize] + bits);
        });
        out.push(OpCost {
            op: format!("set {label}"),
            ns_per_op: set,
        });
        out.push(OpCost {
            op: format!("clear {label}"),
            ns_per_op: clear,
        });
    }
    // Through the metadata handle: range checks, rounding, the mutex and dirty-block tracking.
    let params = replbd_bitmap::Params {
        data_size: VOLUME,
        max_peers: 1,
        bm_block_size: GRANULARITY,
        al_extents: replbd_bitmap::layout::DEFAULT_AL_EXTENTS,
    };
    let dir = std::env::temp_dir().join(format!("replbd-bench-meta-{}", std::process::id()));
    let dev = replbd_bitmap::FileDevice::create(&dir, replbd_bitmap::Geometry::meta_size_for(&params))?;
    let opts = replbd_bitmap::CreateOptions {
        placement: replbd_bitmap::Placement::External,
        params,
        node_id: replbd_bitmap::NodeId::new(0).ok_or_else(|| anyhow::anyhow!("node id"))?,
    };
    replbd_bitmap::create(&dev, &opts)?;
    let (meta, _) = replbd_bitmap::Metadata::open(Box::new(dev), replbd_bitmap::OpenOptions::default())?;
    let slot = replbd_bitmap::PeerSlot(0);
    let mark = time_ops(n, |i| {
        let _ = meta.mark_out_of_sync(slot, starts[i as usize] * GRANULARITY, 4096);
    });
    let clear = time_ops(n, |i| {
        let _ = meta.clear_in_sync(slot, starts[i as usize] * GRANULARITY, 4096);
    });
    out.push(OpCost {
        op: "Metadata::mark_out_of_sync 4KiB".into(),
        ns_per_op: mark,
    });
    out.push(OpCost {
        op: "Metadata::clear_in_sync 4KiB".into(),
        ns_per_op: clear,
    });
    drop(meta);
    let _ = std::fs::remove_file(&dir);
    Ok(out)
}

/// Marks `dirty_bits` bits of a fresh bitmap in `pattern`.
fn build(pattern: &str, dirty_bits: u64, seed: u64) -> SparseBitmap {
    let mut bm = SparseBitmap::new(BITS);
    let mut rng = SplitMix64::new(seed);
    if dirty_bits >= BITS {
        bm.set_range(0..BITS);
        return bm;
    }
    while bm.count() < dirty_bits {
        let len = match pattern {
            "scattered" => 1,
            _ => 16 + rng.below(1024 - 16 + 1), // 64 KiB .. 4 MiB
        }
        .min(dirty_bits - bm.count());
        let start = rng.below(BITS - len);
        bm.set_range(start..start + len);
    }
    bm
}

/// Builds one memory case in this process; meant to run in a fresh child process so that its
/// resident-memory growth belongs to this case alone.
pub fn memory_case(dirty: &str, dirty_bytes: u64, pattern: &str, budget: Duration) -> MemoryCase {
    let pattern: &'static str = if pattern == "scattered" {
        "scattered"
    } else {
        "clustered"
    };
    let heap0 = live_bytes();
    let rss0 = rss_bytes();
    let start = Instant::now();
    let mut slots = Vec::new();
    while (slots.len() as u64) < SLOTS && (slots.is_empty() || start.elapsed() < budget) {
        slots.push(build(pattern, dirty_bytes / GRANULARITY, slots.len() as u64 + 1));
    }
    let built = slots.len() as u64;
    let heap = (live_bytes() - heap0) as u64 * SLOTS / built;
    let rss = rss_bytes().saturating_sub(rss0) * SLOTS / built;
    drop(slots);
    let drbd = 32 * (1 << 20) * (VOLUME / TIB) * SLOTS;
    MemoryCase {
        dirty: dirty.to_string(),
        pattern,
        dirty_bytes_per_slot: dirty_bytes,
        slots_built: built,
        heap_bytes_32_slots: heap,
        rss_delta_bytes_32_slots: rss,
        drbd_bytes_32_slots: drbd,
        ratio_to_drbd: heap as f64 / drbd as f64,
    }
}

/// Runs [`memory_case`] in a child process (`replbd-bench bitmap-memory-case`).
fn memory_case_in_child(
    dirty: &str,
    dirty_bytes: u64,
    pattern: &str,
    budget: Duration,
) -> Result<MemoryCase> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args([
            "bitmap-memory-case",
            dirty,
            &dirty_bytes.to_string(),
            pattern,
            &budget.as_secs().to_string(),
        ])
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "memory case {dirty} {pattern} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let num = |k: &str| v[k].as_u64().unwrap_or(0);
    Ok(MemoryCase {
        dirty: dirty.to_string(),
        pattern: if pattern == "scattered" {
            "scattered"
        } else {
            "clustered"
        },
        dirty_bytes_per_slot: num("dirty_bytes_per_slot"),
        slots_built: num("slots_built"),
        heap_bytes_32_slots: num("heap_bytes_32_slots"),
        rss_delta_bytes_32_slots: num("rss_delta_bytes_32_slots"),
        drbd_bytes_32_slots: num("drbd_bytes_32_slots"),
        ratio_to_drbd: v["ratio_to_drbd"].as_f64().unwrap_or(0.0),
    })
}

pub fn run(quick: bool) -> Result<BitmapReport> {
    let ops = op_costs(quick)?;
    let budget = Duration::from_secs(if quick { 2 } else { 30 });
    let mut memory = Vec::new();
    let cases: [(&str, u64); 4] = [
        ("1GiB", 1 << 30),
        ("0.1%", VOLUME / 1000),
        ("1%", VOLUME / 100),
        ("100%", VOLUME),
    ];
    for (dirty, bytes) in cases {
        for pattern in ["clustered", "scattered"] {
            if quick && dirty == "1%" && pattern == "scattered" {
                continue;
            }
            memory.push(memory_case_in_child(
                dirty,
                bytes / GRANULARITY * GRANULARITY,
                pattern,
                budget,
            )?);
            if dirty == "100%" {
                break;
            }
        }
    }
    Ok(BitmapReport {
        volume_bytes: VOLUME,
        granularity: GRANULARITY,
        slots: SLOTS,
        ops,
        memory,
    })
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

pub fn print_table(r: &BitmapReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "bitmap: 16 TiB volume, 4 KiB per bit, {} peer slots",
        r.slots
    )?;
    writeln!(out, "{:<36} {:>10}", "operation", "ns/op")?;
    for o in &r.ops {
        writeln!(out, "{:<36} {:>10.0}", o.op, o.ns_per_op)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<6} {:<10} {:>14} {:>7} {:>16} {:>16} {:>12} {:>10}",
        "dirty",
        "pattern",
        "dirty/slot",
        "built",
        "heap (32 slots)",
        "RSS (32 slots)",
        "DRBD flat",
        "vs DRBD"
    )?;
    for m in &r.memory {
        writeln!(
            out,
            "{:<6} {:<10} {:>14} {:>7} {:>16} {:>16} {:>12} {:>9.4}x",
            m.dirty,
            m.pattern,
            mib(m.dirty_bytes_per_slot),
            m.slots_built,
            mib(m.heap_bytes_32_slots),
            mib(m.rss_delta_bytes_32_slots),
            mib(m.drbd_bytes_32_slots),
            m.ratio_to_drbd
        )?;
    }
    Ok(())
}
