//! Reading what one VM run left in its output directory (see `bench/vm/bench.sh`) into cases.
//!
//! Per round, case and job there is fio's JSON (`R.CASE.JOB.json`) and the VM's CPU counters
//! during the job (`R.CASE.JOB.cpu`: busy and total jiffies before, the same after, the CPU
//! count); `cases.tsv` names the cases and `meta.txt`/`host.txt` the versions and the machine.
//! With several rounds every figure is the median over the rounds, and the IOPS range is kept.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::fio::{self, FioFigures};

/// The jobs of the standard fio matrix.
pub const JOBS: [&str; 6] = ["J1", "J2", "J3", "J4", "J5", "J6"];

/// One case and job of a VM run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case's name in the run, e.g. "replbd-1C".
    pub case: String,
    /// "raw", "replbd" or "drbd".
    pub system: String,
    /// Peers each write is replicated to.
    pub peers: u32,
    /// Replication protocol (none for the raw device).
    pub protocol: Option<String>,
    /// "J1" ... "J6".
    pub job: String,
    /// I/Os per second.
    pub iops: f64,
    /// MB/s (10^6 bytes), both directions.
    pub mbps: f64,
    /// Total latency p50, µs.
    pub lat_p50_us: f64,
    /// Total latency p99, µs.
    pub lat_p99_us: f64,
    /// Total latency p99.9, µs.
    pub lat_p999_us: f64,
    /// Flush latency p50, µs (J2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_lat_p50_us: Option<f64>,
    /// Flush latency p99, µs (J2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_lat_p99_us: Option<f64>,
    /// CPU time of the whole VM per GiB moved, seconds.
    pub cpu_s_per_gib: Option<f64>,
    /// CPUs busy on average during the job.
    pub cpu_cores: Option<f64>,
    /// Rounds measured (the figures are their medians).
    pub rounds: usize,
    /// Lowest IOPS of the rounds.
    pub iops_min: f64,
    /// Highest IOPS of the rounds.
    pub iops_max: f64,
}

/// One round's measurement of a case and job.
struct Sample {
    fio: FioFigures,
    cpu_cores: Option<f64>,
}

/// Reads `KEY VALUE...` lines.
pub fn read_meta(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// CPUs busy on average, from `B0 T0 B1 T1 NCPU` (jiffies summed over all CPUs).
fn cpu_cores(text: &str) -> Option<f64> {
    let v: Vec<f64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [b0, t0, b1, t1, ncpu] = v.as_slice() else {
        return None;
    };
    (t1 > t0).then(|| (b1 - b0) / (t1 - t0) * ncpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_opt(v: Vec<Option<f64>>) -> Option<f64> {
    let v: Option<Vec<f64>> = v.into_iter().collect();
    v.filter(|v| !v.is_empty()).map(median)
}

/// Every case and job found in `dir`; a job whose results are missing or unreadable is noted in
/// `errors` and left out.
pub fn read_cases(dir: &Path, rounds: usize, errors: &mut Vec<String>) -> Result<Vec<CaseResult>> {
    let tsv = dir.join("cases.tsv");
    let text = std::fs::read_to_string(&tsv).with_context(|| format!("{}", tsv.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [case, system, peers, protocol, ..] = f.as_slice() else {
            continue;
        };
        for job in JOBS {
            let mut samples = Vec::new();
            for round in 1..=rounds {
                let base = format!("{round}.{case}.{job}");
                let json = dir.join(format!("{base}.json"));
                if !json.exists() {
                    // The case failed before this job ran: errors.txt says why.
                    continue;
                }
                match std::fs::read_to_string(&json)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| fio::parse(&t))
                {
                    Ok(fio) => {
                        let cpu = std::fs::read_to_string(dir.join(format!("{base}.cpu")))
                            .ok()
                            .and_then(|t| cpu_cores(&t));
                        samples.push(Sample { fio, cpu_cores: cpu });
                    }
                    Err(e) => errors.push(format!("round {round} {case} {job}: {e:#}")),
                }
            }
            if samples.is_empty() {
                continue;
            }
            out.push(combine(case, system, peers, protocol, job, &samples)?);
        }
    }
    Ok(out)
}

fn combine(
    case: &str,
    system: &str,
    peers: &str,
    protocol: &str,
    job: &str,
    samples: &[Sample],
) -> Result<CaseResult> {
    let m = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    let iops: Vec<f64> = samples.iter().map(|s| s.fio.iops).collect();
    let cpu_s_per_gib = median_opt(
        samples
            .iter()
            .map(|s| {
                let gib_per_s = s.fio.bytes_per_sec / f64::from(1u32 << 30);
                s.cpu_cores.filter(|_| gib_per_s > 0.0).map(|c| c / gib_per_s)
            })
            .collect(),
    );
    Ok(CaseResult {
        case: case.to_string(),
        system: system.to_string(),
        peers: peers
            .parse()
            .with_context(|| format!("peers {peers:?} of {case}"))?,
        protocol: (protocol != "-").then(|| protocol.to_string()),
        job: job.to_string(),
        iops: m(&|s| s.fio.iops),
        mbps: m(&|s| s.fio.bytes_per_sec / 1e6),
        lat_p50_us: m(&|s| s.fio.lat_us[0]),
        lat_p99_us: m(&|s| s.fio.lat_us[1]),
        lat_p999_us: m(&|s| s.fio.lat_us[2]),
        sync_lat_p50_us: median_opt(samples.iter().map(|s| s.fio.sync_lat_us.map(|l| l[0])).collect()),
        sync_lat_p99_us: median_opt(samples.iter().map(|s| s.fio.sync_lat_us.map(|l| l[1])).collect()),
        cpu_s_per_gib,
        cpu_cores: median_opt(samples.iter().map(|s| s.cpu_cores).collect()),
        rounds: samples.len(),
        iops_min: iops.iter().copied().fold(f64::INFINITY, f64::min),
        iops_max: iops.iter().copied().fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_opt(vec![Some(1.0), None]), None);
    }

    #[test]
    fn cpu_counters() {
        // 150 of 200 jiffies busy on 2 CPUs: 1.5 CPUs.
        assert_eq!(cpu_cores("1000 5000 1150 5200 2"), Some(1.5));
        assert_eq!(cpu_cores("1 2 3"), None);
    }
}
