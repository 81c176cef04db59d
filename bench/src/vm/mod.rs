//! `replbd-bench vm`: replbd beside the raw device and kernel DRBD, all measured in one VM boot.
//!
//! The host has no ublk driver, so `bench/vm/run` boots the VM suite's Debian kernel under qemu
//! and runs `bench/vm/bench.sh` in it: the fio matrix J1-J6 on a brd ram disk, on replbd with 0, 1
//! and 2 peers (protocol C and A) and on kernel DRBD with 1 peer (C and A), all backed by the same
//! kind of ram disk. Under emulation absolute numbers mean little; the ratios between cases of one
//! run are what this reports, with the two targets of issue 8.

mod fio;
pub mod results;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub use results::CaseResult;

/// The whole report of one VM run.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmReport {
    /// Versions, machine, settings of the run (`meta.txt` and `host.txt`).
    pub meta: BTreeMap<String, String>,
    /// Cases or jobs that failed.
    pub errors: Vec<String>,
    /// Every case and job.
    pub cases: Vec<CaseResult>,
    /// The ratios the issue asks for.
    pub ratios: Vec<Ratio>,
    /// perf's flat profiles of J4 by case (with `--profile`).
    #[serde(default)]
    pub profiles: BTreeMap<String, String>,
}

/// One case divided by another on one job and figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The case divided.
    pub case: String,
    /// The case it is divided by.
    pub baseline: String,
    /// The job.
    pub job: String,
    /// "iops" or "lat_p50_us".
    pub metric: String,
    /// case / baseline.
    pub value: f64,
    /// The target, e.g. ">= 1.0", when the issue sets one.
    pub target: Option<String>,
    /// Whether the target is met.
    pub met: Option<bool>,
}

/// Where `bench/vm/run` is (this crate's directory at build time).
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run")
}

/// Boots the VM (unless `results` names the output of an earlier run) and reads the results.
pub fn run(
    quick: bool,
    rounds: Option<u32>,
    profile: bool,
    out: &Path,
    results: Option<&Path>,
) -> Result<VmReport> {
    let dir = match results {
        Some(dir) => dir.to_path_buf(),
        None => {
            // Results of an earlier run must not mix into this one.
            if out.exists() {
                std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
            }
            let mut cmd = Command::new(script());
            cmd.arg(out);
            if quick {
                cmd.arg("--quick");
            }
            if profile {
                cmd.arg("--profile");
            }
            if let Some(n) = rounds {
                cmd.args(["--rounds", &n.to_string()]);
            }
            let status = cmd
                .status()
                .with_context(|| format!("running {}", script().display()))?;
            if !status.success() {
                bail!("{} failed ({status})", script().display());
            }
            out.to_path_buf()
        }
    };
    read(&dir)
}

/// Reads the output directory of a VM run.
pub fn read(dir: &Path) -> Result<VmReport> {
    let mut meta = results::read_meta(&dir.join("meta.txt"))?;
    if let Ok(host) = results::read_meta(&dir.join("host.txt")) {
        meta.extend(host);
    }
    let rounds = meta.get("rounds").and_then(|r| r.parse().ok()).unwrap_or(1usize);
    let mut errors: Vec<String> = std::fs::read_to_string(dir.join("errors.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let cases = results::read_cases(dir, rounds, &mut errors)?;
    let ratios = ratios(&cases);
    let mut profiles = BTreeMap::new();
    for case in ["replbd-1C", "drbd-1C"] {
        // bench/vm/run writes one profile per case and job (`profile.CASE.JOB.txt`); J4 is the
        // one a plain `--profile` makes.
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("profile.{case}.J4.txt"))) {
            profiles.insert(case.to_string(), text);
        }
    }
    Ok(VmReport {
        meta,
        errors,
        cases,
        ratios,
        profiles,
    })
}

/// The ratios of issue 8: replbd protocol C with 1 peer against kernel DRBD with 1 peer (the
/// targets), protocol A likewise, and what replbd costs without peers over the raw device.
fn ratios(cases: &[CaseResult]) -> Vec<Ratio> {
    let find = |case: &str, job: &str| cases.iter().find(|c| c.case == case && c.job == job);
    // (name, case, baseline, job, figure, target: (bound, whether it is a lower bound)).
    type Planned = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<(f64, bool)>,
    );
    let plan: [Planned; 8] = [
        (
            "replbd C 1 peer / DRBD C 1 peer",
            "replbd-1C",
            "drbd-1C",
            "J4",
            "iops",
            Some((1.0, true)),
        ),
        (
            "replbd C 1 peer / DRBD C 1 peer",
            "replbd-1C",
            "drbd-1C",
            "J1",
            "lat_p50_us",
            Some((1.2, false)),
        ),
        (
            "replbd A 1 peer / DRBD A 1 peer",
            "replbd-1A",
            "drbd-1A",
            "J4",
            "iops",
            None,
        ),
        (
            "replbd A 1 peer / DRBD A 1 peer",
            "replbd-1A",
            "drbd-1A",
            "J1",
            "lat_p50_us",
            None,
        ),
        ("replbd 0 peers / raw", "replbd-0", "raw", "J4", "iops", None),
        (
            "replbd 0 peers / raw",
            "replbd-0",
            "raw",
            "J1",
            "lat_p50_us",
            None,
        ),
        ("DRBD C 1 peer / raw", "drbd-1C", "raw", "J4", "iops", None),
        ("DRBD C 1 peer / raw", "drbd-1C", "raw", "J1", "lat_p50_us", None),
    ];
    plan.iter()
        .filter_map(|&(name, case, baseline, job, metric, target)| {
            let (a, b) = (find(case, job)?, find(baseline, job)?);
            let pick = |c: &CaseResult| if metric == "iops" { c.iops } else { c.lat_p50_us };
            let value = pick(a) / pick(b);
            Some(Ratio {
                name: name.to_string(),
                case: case.to_string(),
                baseline: baseline.to_string(),
                job: job.to_string(),
                metric: metric.to_string(),
                value,
                target: target.map(|(t, at_least)| format!("{} {t:.1}", if at_least { ">=" } else { "<=" })),
                met: target.map(|(t, at_least)| if at_least { value >= t } else { value <= t }),
            })
        })
        .collect()
}
