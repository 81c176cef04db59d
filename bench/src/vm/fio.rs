//! One fio JSON result (`--output-format=json`), reduced to the figures the VM benchmarks report.
//!
//! With `group_reporting` fio writes one entry in `jobs` per job group, holding the sums over the
//! group's processes; with `lat_percentiles=1` the total latency (submission to completion) has
//! the percentiles in `lat_ns.percentile`. A job that writes reports its `write` side, one that
//! reads its `read` side; `fsync=1` adds a `sync` side with the latency of the flushes.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Figures of one fio run.
#[derive(Debug, Clone, PartialEq)]
pub struct FioFigures {
    /// I/Os per second (the direction the job does).
    pub iops: f64,
    /// Bytes per second, both directions.
    pub bytes_per_sec: f64,
    /// Total latency percentiles, µs: p50, p99, p99.9.
    pub lat_us: [f64; 3],
    /// Latency of the flushes (p50, p99), µs, when the job flushed.
    pub sync_lat_us: Option<[f64; 2]>,
}

#[derive(Deserialize)]
struct Output {
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    #[serde(default)]
    error: i64,
    read: Side,
    write: Side,
    #[serde(default)]
    sync: Option<Sync>,
}

#[derive(Deserialize)]
struct Side {
    iops: f64,
    bw_bytes: f64,
    #[serde(default)]
    lat_ns: Option<Lat>,
    #[serde(default)]
    clat_ns: Option<Lat>,
}

#[derive(Deserialize)]
struct Sync {
    #[serde(default)]
    total_ios: u64,
    #[serde(default)]
    lat_ns: Option<Lat>,
}

#[derive(Deserialize)]
struct Lat {
    #[serde(default)]
    percentile: std::collections::BTreeMap<String, f64>,
}

impl Lat {
    /// The percentile `p` ("50.000000") in µs.
    fn us(&self, p: &str) -> Option<f64> {
        self.percentile.get(p).map(|ns| ns / 1000.0)
    }
}

/// Parses fio's JSON output. fio may print notes before the JSON object; they are skipped.
pub fn parse(text: &str) -> Result<FioFigures> {
    let start = text.find('{').context("no JSON object in fio's output")?;
    let out: Output = serde_json::from_str(&text[start..]).context("fio JSON")?;
    let job = match out.jobs.as_slice() {
        [job] => job,
        jobs => bail!("expected one job group (group_reporting), found {}", jobs.len()),
    };
    if job.error != 0 {
        bail!("fio reported error {}", job.error);
    }
    let side = if job.write.iops > 0.0 {
        &job.write
    } else {
        &job.read
    };
    let lat = side
        .lat_ns
        .as_ref()
        .filter(|l| !l.percentile.is_empty())
        .or(side.clat_ns.as_ref())
        .context("no latency percentiles (lat_percentiles=1)")?;
    let pct = |p: &str| lat.us(p).with_context(|| format!("no p{p} latency"));
    let sync_lat_us = match &job.sync {
        Some(s) if s.total_ios > 0 => s
            .lat_ns
            .as_ref()
            .and_then(|l| Some([l.us("50.000000")?, l.us("99.000000")?])),
        _ => None,
    };
    Ok(FioFigures {
        iops: side.iops,
        bytes_per_sec: job.read.bw_bytes + job.write.bw_bytes,
        lat_us: [pct("50.000000")?, pct("99.000000")?, pct("99.900000")?],
        sync_lat_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: &str = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version":"fio-3.33","jobs":[{"jobname":"J1","error":0,
 "read":{"iops":0.0,"bw_bytes":0,"lat_ns":{"percentile":{}}},
 "write":{"iops":2500.5,"bw_bytes":10242048,
   "clat_ns":{"percentile":{"50.000000":100}},
   "lat_ns":{"percentile":{"50.000000":350000,"99.000000":900000,"99.900000":1500000}}},
 "sync":{"total_ios":0,"lat_ns":{"percentile":{}}}}]}"#;

    #[test]
    fn write_job_reports_write_side_total_latency() {
        let f = parse(WRITE).unwrap();
        assert_eq!(f.iops, 2500.5);
        assert_eq!(f.bytes_per_sec, 10242048.0);
        assert_eq!(f.lat_us, [350.0, 900.0, 1500.0]);
        assert_eq!(f.sync_lat_us, None);
    }

    #[test]
    fn read_job_and_flushes() {
        let text = r#"{"jobs":[{"error":0,
 "read":{"iops":100.0,"bw_bytes":409600,"lat_ns":{"percentile":{"50.000000":1000,"99.000000":2000,"99.900000":3000}}},
 "write":{"iops":0.0,"bw_bytes":0},
 "sync":{"total_ios":7,"lat_ns":{"percentile":{"50.000000":5000,"99.000000":8000}}}}]}"#;
        let f = parse(text).unwrap();
        assert_eq!(f.iops, 100.0);
        assert_eq!(f.lat_us, [1.0, 2.0, 3.0]);
        assert_eq!(f.sync_lat_us, Some([5.0, 8.0]));
    }

    #[test]
    fn errors_are_reported() {
        let text = r#"{"jobs":[{"error":5,"read":{"iops":0,"bw_bytes":0},"write":{"iops":0,"bw_bytes":0}}]}"#;
        assert!(parse(text).unwrap_err().to_string().contains("error 5"));
        assert!(parse("fio: no such file").is_err());
    }
}
