//! Crash tests: a random workload runs on metadata whose device crashes at a random write or flush
//! (volatile writes survive whole, torn, or not at all); the surviving image is opened (recovery,
//! apply-al) and the crash rule is checked:
//!
//! - every bit marked for peer P by a completed write, or by an out-of-log mark that was flushed, and
//!   not cleared since, is set for P;
//! - every block of a write in flight at the crash is set for every peer;
//! - nothing is set that was never marked, never inside an active extent and never in a torn block
//!   (recovery is precise, not "mark everything");
//! - the generation identifiers are the last acknowledged ones or the one being written.
//!
//! `REPLBD_CRASH_SEEDS=N` runs N seeds (default 1000); `REPLBD_CRASH_SEED=S` replays one seed.
//! A failure prints its seed.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Range;
use std::sync::Arc;

use replbd_bitmap::fault::{CrashDevice, SplitMix64};
use replbd_bitmap::layout::{AL_EXTENT_BYTES, BITS_PER_BITMAP_BLOCK};
use replbd_bitmap::{
    CreateOptions, GenerationIds, MemDevice, Metadata, NodeId, OpenOptions, Params, PeerSlot, Placement,
    Region, SparseBitmap, WriteGuard, create,
};

struct Setup {
    params: Params,
    image: Vec<u8>,
}

fn setup(rng: &mut SplitMix64) -> Setup {
    // Half the seeds use devices far larger than the activity log, so extents are evicted constantly.
    let mib = if rng.below(2) == 0 {
        16 + rng.below(1024)
    } else {
        1024 + rng.below(3072)
    };
    let data_size = mib << 20 | (rng.below(64) << 12);
    let params = Params {
        data_size,
        max_peers: 1 + rng.below(4) as usize,
        bm_block_size: 4096 << rng.below(5),
        al_extents: 67 + rng.below(16) as u32,
    };
    let dev = MemDevice::new(replbd_bitmap::Geometry::meta_size_for(&params));
    let opts = CreateOptions {
        placement: Placement::External,
        params,
        node_id: NodeId::new(0).unwrap(),
    };
    create(&dev, &opts).unwrap();
    Setup {
        params,
        image: dev.snapshot(),
    }
}

/// What the workload was promised, in bitmap bits.
struct Model {
    g: u64,
    data_size: u64,
    bits: u64,
    must: Vec<SparseBitmap>,
    allowed: Vec<SparseBitmap>,
    in_flight: Vec<(u64, Range<u64>)>,
    gi_acked: GenerationIds,
    gi_pending: Option<GenerationIds>,
}

impl Model {
    fn touching(&self, off: u64, len: u64) -> Range<u64> {
        off / self.g..(off + len).div_ceil(self.g)
    }
    fn within(&self, off: u64, len: u64) -> Range<u64> {
        let end = off + len;
        let last = if end == self.data_size {
            self.bits
        } else {
            end / self.g
        };
        off.div_ceil(self.g).min(last)..last
    }
    fn allow_extents(&mut self, off: u64, len: u64) {
        let first = off / AL_EXTENT_BYTES * AL_EXTENT_BYTES;
        let end = (off + len).div_ceil(AL_EXTENT_BYTES) * AL_EXTENT_BYTES;
        let r = self.touching(first, end.min(self.data_size) - first);
        for a in &mut self.allowed {
            a.set_range(r.clone());
        }
    }
}

fn random_range(rng: &mut SplitMix64, data_size: u64) -> (u64, u64) {
    let len = match rng.below(10) {
        0..=5 => 512 * (1 + rng.below(16)),
        6..=8 => 4096 * (1 + rng.below(256)),
        _ => (1 << 20) * (1 + rng.below(24)),
    }
    .min(data_size);
    let off = rng.below((data_size - len) / 512 + 1) * 512;
    (off, len)
}

enum Outcome {
    Finished,
    Crashed,
}

/// Runs the workload; stops at the first error (the crash).
fn workload(
    meta: &mut Arc<Metadata>,
    dev: &Arc<CrashDevice>,
    rng: &mut SplitMix64,
    m: &mut Model,
    steps: usize,
) -> Outcome {
    let peers = m.must.len();
    // Some schedules rarely flush or close, so only the activity log protects their bits.
    let quiet = rng.below(2) == 0;
    let mut held: Vec<(WriteGuard, u64, (u64, u64))> = Vec::new();
    let mut next_id = 0u64;
    for _ in 0..steps {
        let mut roll = rng.below(100);
        if quiet && ((80..=84).contains(&roll) || roll >= 95) {
            roll = rng.below(60);
        }
        let result: Result<(), ()> = (|| {
            match roll {
                0..=59 => {
                    let (off, len) = random_range(rng, m.data_size);
                    let marked: Vec<usize> = (0..peers).filter(|_| rng.below(10) < 3).collect();
                    // A transaction may become durable even when the crash makes begin_write fail.
                    m.allow_extents(off, len);
                    let guard = meta.begin_write(off, len).map_err(|_| ())?;
                    next_id += 1;
                    m.in_flight.push((next_id, m.touching(off, len)));
                    for &p in &marked {
                        meta.mark_out_of_sync(PeerSlot(p as u8), off, len)
                            .map_err(|_| ())?;
                        let bits = m.touching(off, len);
                        m.must[p].set_range(bits.clone());
                        m.allowed[p].set_range(bits);
                    }
                    if rng.below(5) == 0 && held.len() < 3 {
                        held.push((guard, next_id, (off, len)));
                    } else {
                        drop(guard);
                        m.in_flight.retain(|(id, _)| *id != next_id);
                    }
                }
                60..=69 => {
                    if !held.is_empty() {
                        let i = rng.below(held.len() as u64) as usize;
                        let (guard, id, _) = held.remove(i);
                        drop(guard);
                        m.in_flight.retain(|(x, _)| *x != id);
                    }
                }
                70..=79 => {
                    let (off, len) = random_range(rng, m.data_size);
                    let p = rng.below(peers as u64) as usize;
                    meta.clear_in_sync(PeerSlot(p as u8), off, len).map_err(|_| ())?;
                    let bits = m.within(off, len);
                    m.must[p].clear_range(bits);
                }
                80..=84 => meta.flush().map_err(|_| ())?,
                85..=89 => {
                    let uuid = rng.next_u64() & !1;
                    let mut next = m.gi_acked.clone();
                    next.new_current(uuid, |_| true);
                    m.gi_pending = Some(next.clone());
                    meta.update(|gi, _| gi.new_current(uuid, |_| true))
                        .map_err(|_| ())?;
                    m.gi_acked = next;
                    m.gi_pending = None;
                }
                90..=94 => {
                    // Out-of-log marking (invalidate / verify): promised only once flushed.
                    let (off, len) = random_range(rng, m.data_size);
                    let p = rng.below(peers as u64) as usize;
                    let bits = m.touching(off, len);
                    m.allowed[p].set_range(bits.clone());
                    meta.mark_out_of_sync(PeerSlot(p as u8), off, len)
                        .map_err(|_| ())?;
                    meta.flush().map_err(|_| ())?;
                    m.must[p].set_range(bits);
                }
                _ => {
                    // Orderly down and up again, once no write is in flight.
                    held.clear();
                    m.in_flight.clear();
                    meta.close().map_err(|_| ())?;
                    let (reopened, report) =
                        Metadata::open(Box::new(Arc::clone(dev)), OpenOptions::default()).map_err(|_| ())?;
                    assert!(
                        report.was_clean && report.applied_extents.is_empty(),
                        "clean close must need no recovery"
                    );
                    *meta = reopened;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            assert!(dev.crashed(), "an operation failed without a crash: {:?}", roll);
            return Outcome::Crashed;
        }
    }
    drop(held);
    Outcome::Finished
}

fn run_seed(seed: u64) -> Result<String, String> {
    let mut setup_rng = SplitMix64::new(seed);
    let s = setup(&mut setup_rng);
    let steps = 50 + setup_rng.below(250) as usize;
    let run = |crash_after: Option<u64>| {
        let dev = Arc::new(CrashDevice::new(s.image.clone(), seed ^ 0xdead_beef));
        if let Some(n) = crash_after {
            dev.crash_after(n);
        }
        let bits = s.params.data_size.div_ceil(s.params.bm_block_size);
        let mut m = Model {
            g: s.params.bm_block_size,
            data_size: s.params.data_size,
            bits,
            must: (0..s.params.max_peers).map(|_| SparseBitmap::new(bits)).collect(),
            allowed: (0..s.params.max_peers).map(|_| SparseBitmap::new(bits)).collect(),
            in_flight: Vec::new(),
            gi_acked: GenerationIds::just_created(s.params.max_peers),
            gi_pending: None,
        };
        let mut rng = SplitMix64::new(seed.wrapping_mul(31).wrapping_add(7));
        let outcome = match Metadata::open(Box::new(Arc::clone(&dev)), OpenOptions::default()) {
            Ok((mut meta, _)) => workload(&mut meta, &dev, &mut rng, &mut m, steps),
            Err(_) => {
                assert!(dev.crashed());
                Outcome::Crashed
            }
        };
        (dev, m, outcome)
    };
    // Dry run to count the I/O operations, then crash at a uniformly chosen one (or after the end).
    let (dry, _, _) = run(None);
    let total = dry.ops();
    let crash_at = setup_rng.below(total + 1);
    let (dev, m, outcome) = run(Some(crash_at));
    if matches!(outcome, Outcome::Finished) {
        dev.crash_now();
    }
    let image = dev.durable_image();
    let (meta, report) = Metadata::open(Box::new(MemDevice::from_bytes(image)), OpenOptions::default())
        .map_err(|e| format!("recovery failed after crash at op {crash_at}/{total}: {e}"))?;
    let mut torn = SparseBitmap::new(m.bits);
    for (region, _) in &report.repaired {
        if let Region::Bitmap { block, .. } = region {
            let start = u64::from(*block) * BITS_PER_BITMAP_BLOCK;
            torn.set_range(start..start + BITS_PER_BITMAP_BLOCK);
        }
    }
    for p in 0..m.must.len() {
        let got = meta.bitmap(PeerSlot(p as u8)).map_err(|e| e.to_string())?;
        for run in m.must[p].runs() {
            if !got.all_in(run.clone()) {
                return Err(format!(
                    "slot {p}: promised bits {run:?} not all set after crash at op {crash_at}/{total}"
                ));
            }
        }
        for (_, run) in &m.in_flight {
            if !got.all_in(run.clone()) {
                return Err(format!(
                    "slot {p}: in-flight write {run:?} not covered after crash at op {crash_at}/{total}"
                ));
            }
        }
        let mut allowed = m.allowed[p].clone();
        allowed.union_with(&torn);
        for run in got.runs() {
            if !allowed.all_in(run.clone()) {
                return Err(format!(
                    "slot {p}: bits {run:?} set that were never marked, active or torn (crash at op {crash_at}/{total})"
                ));
            }
        }
    }
    let gi = meta.generation_ids();
    let gi_ok =
        gi.current == m.gi_acked.current || m.gi_pending.as_ref().is_some_and(|p| p.current == gi.current);
    if !gi_ok {
        return Err(format!(
            "generation identifiers rolled back or corrupted: {:#x}",
            gi.current
        ));
    }
    // A second recovery after the first must find clean, consistent metadata.
    meta.close().map_err(|e| e.to_string())?;
    Ok(format!(
        "crash at op {crash_at}/{total}, {} extents applied",
        report.applied_extents.len()
    ))
}

#[test]
fn crash_rule_holds_for_every_seed() {
    let (first, count) = match std::env::var("REPLBD_CRASH_SEED") {
        Ok(s) => (s.parse::<u64>().expect("REPLBD_CRASH_SEED must be a number"), 1),
        Err(_) => (
            1,
            std::env::var("REPLBD_CRASH_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1000u64),
        ),
    };
    let mut failures = Vec::new();
    for seed in first..first + count {
        match std::panic::catch_unwind(|| run_seed(seed)) {
            Ok(Ok(summary)) if count == 1 => println!("seed {seed}: {summary}"),
            Ok(Ok(_)) => {}
            Ok(Err(why)) => failures.push(format!("seed {seed}: {why}")),
            Err(_) => failures.push(format!("seed {seed}: panicked")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} crash schedules violated the crash rule (replay one with REPLBD_CRASH_SEED=<seed> cargo test -p replbd-bitmap --test crash -- --nocapture):\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("crash schedules: {count} run, 0 violations");
}
