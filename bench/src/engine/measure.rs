//! Running the three workloads against any write target and measuring them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Bytes of the target written at random.
    pub span: u64,
    /// Sequential QD1 4 KiB writes timed one by one.
    pub qd1_writes: u64,
    /// Seconds of 4 KiB writes at queue depth 32.
    pub qd32_secs: f64,
    /// Bytes written in 1 MiB sequential writes.
    pub seq_bytes: u64,
}

/// The figures of one case.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Figures {
    /// 4 KiB QD32 write IOPS.
    pub iops: f64,
    /// 1 MiB sequential write throughput, MB/s (10^6 bytes).
    pub mbps: f64,
    /// 4 KiB QD1 write latency, median, microseconds.
    pub lat_p50_us: f64,
    /// 4 KiB QD1 write latency, 99th percentile, microseconds.
    pub lat_p99_us: f64,
    /// CPU seconds (user + system, whole process) per GiB written, over the three workloads.
    pub cpu_s_per_gib: f64,
}

/// CPU seconds used by the process so far.
pub fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; it is fully initialised by zeroing first.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: initialised by `zeroed` and written by the successful call.
    let u = unsafe { u.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// `n` pseudo-random 4 KiB-aligned offsets in `0..span`, generated as they are consumed.
fn random_offsets(n: u64, span: u64, seed: u64) -> impl Iterator<Item = u64> + Send {
    let blocks = span / 4096;
    // Distinct seeds give distinct sequences (`seed | 1` would pair 100 with 101).
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % blocks) * 4096
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs QD1 latency, QD32 IOPS and 1 MiB sequential throughput against `write`.
pub async fn run<W, F>(plan: Plan, write: W) -> anyhow::Result<Figures>
where
    W: Fn(u64, Bytes) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let block = Bytes::from(vec![0x5au8; 4096]);
    let cpu0 = cpu_seconds();
    let mut written = 0u64;
    // Warm up: touch the whole span once so later phases measure steady state.
    for off in random_offsets(2000, plan.span, 7) {
        write(off, block.clone()).await?;
    }
    let mut lat = Vec::with_capacity(plan.qd1_writes as usize);
    for off in random_offsets(plan.qd1_writes, plan.span, 11) {
        let t = Instant::now();
        write(off, block.clone()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    written += plan.qd1_writes * 4096;
    lat.sort_by(f64::total_cmp);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(plan.qd32_secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for q in 0..32u64 {
        let (write, done, block) = (write.clone(), Arc::clone(&done), block.clone());
        let offsets = random_offsets(u64::MAX, plan.span, 100 + q);
        tasks.push(tokio::spawn(async move {
            for off in offsets {
                if Instant::now() >= deadline {
                    break;
                }
                write(off, block.clone()).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let qd32 = done.load(Ordering::Relaxed);
    let iops = qd32 as f64 / start.elapsed().as_secs_f64();
    written += qd32 * 4096;
    let big = Bytes::from(vec![0xa5u8; 1 << 20]);
    let n = plan.seq_bytes >> 20;
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (write, next, big) = (write.clone(), Arc::clone(&next), big.clone());
        let span_mib = plan.span >> 20;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                write((i % span_mib) << 20, big.clone()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mbps = (n << 20) as f64 / start.elapsed().as_secs_f64() / 1e6;
    written += n << 20;
    let cpu = cpu_seconds() - cpu0;
    Ok(Figures {
        iops,
        mbps,
        lat_p50_us: percentile(&lat, 0.50),
        lat_p99_us: percentile(&lat, 0.99),
        cpu_s_per_gib: cpu / (written as f64 / (1u64 << 30) as f64),
    })
}
