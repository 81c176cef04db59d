//! `replbd-bench report`: turns the JSON of `replbd-bench vm` (and, when given, of an engine peer
//! sweep and the output of `bench/node-rss/run`) into `docs/benchmarks.md` and PNG
//! charts, so that the published figures are exactly those a run measured: nothing is typed by
//! hand. Each table and chart comes with one sentence saying what it shows.

mod chart;
mod engine;
mod markdown;
mod rss;

use std::path::Path;

use anyhow::{Context, Result};

use crate::vm::VmReport;
use crate::vm::results::JOBS;
use crate::vm::table::label;

/// Writes `DOCS/benchmarks.md` and its charts in `DOCS/benchmarks/` from a VM report.
pub fn run(
    vm_json: &Path,
    engine_json: Option<&Path>,
    rss: Option<&Path>,
    docs: &Path,
    font: &Path,
    command: &str,
) -> Result<()> {
    let text = std::fs::read_to_string(vm_json).with_context(|| format!("{}", vm_json.display()))?;
    let mut vm: VmReport = serde_json::from_str(&text).with_context(|| format!("{}", vm_json.display()))?;
    let img_dir = docs.join("benchmarks");
    std::fs::create_dir_all(&img_dir).with_context(|| format!("{}", img_dir.display()))?;
    vm.meta.insert("report_command".into(), command.to_string());
    chart::load_font(font)?;
    let charts = charts(&vm, &img_dir)?;
    let mut md = markdown::render(&vm, &charts);
    if let Some(path) = engine_json {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let report: crate::engine::EngineReport =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        md.push_str(&engine::section(&report, &img_dir)?);
    }
    if let Some(path) = rss {
        md.push_str(&rss::section(&crate::vm::results::read_meta(path)?));
    }
    let out = docs.join("benchmarks.md");
    std::fs::write(&out, md).with_context(|| format!("{}", out.display()))
}

/// A chart written: its file name (under `benchmarks/`), title and the sentence explaining it.
pub struct Chart {
    /// File name.
    pub file: String,
    /// Title.
    pub title: String,
    /// What it shows.
    pub sentence: String,
}

/// The cases of the report in their order of first appearance.
fn case_names(vm: &VmReport) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in &vm.cases {
        if !out.iter().any(|(n, _)| *n == c.case) {
            out.push((c.case.clone(), label(&c.system, c.peers, c.protocol.as_deref())));
        }
    }
    // raw first, then replbd, then DRBD; by peers, protocol C before A, within a system.
    let rank = |n: &str| {
        let system = match n.split('-').next() {
            Some("raw") => 0,
            Some("replbd") => 1,
            _ => 2,
        };
        (system, n.replace('C', "0"))
    };
    out.sort_by_key(|a| rank(&a.0));
    out
}

/// One figure of a case.
type Figure = fn(&crate::vm::CaseResult) -> f64;

fn value(vm: &VmReport, case: &str, job: &str, f: Figure) -> f64 {
    vm.cases
        .iter()
        .find(|c| c.case == case && c.job == job)
        .map_or(f64::NAN, f)
}

fn charts(vm: &VmReport, dir: &Path) -> Result<Vec<Chart>> {
    let cases = case_names(vm);
    let mut out = Vec::new();

    let iops_jobs: Vec<String> = JOBS[..5].iter().map(|j| j.to_string()).collect();
    let series: Vec<(String, Vec<f64>)> = cases
        .iter()
        .map(|(c, l)| {
            (
                l.clone(),
                iops_jobs.iter().map(|j| value(vm, c, j, |r| r.iops)).collect(),
            )
        })
        .collect();
    chart::draw(
        &chart::Bars {
            title: "IOPS by job and case (log scale)",
            y_label: "IOPS",
            groups: &iops_jobs,
            series: &series,
            log: true,
        },
        &dir.join("vm-iops.png"),
    )?;
    out.push(Chart {
        file: "vm-iops.png".into(),
        title: "IOPS by job and case".into(),
        sentence: "IOPS of the 4 KiB jobs J1-J5 for every case, on a log scale so that the queue-depth-1 \
                   jobs and the 128-deep J4/J5 fit one chart; higher is better."
            .into(),
    });

    let lat_groups: Vec<(String, &str, Figure)> = vec![
        ("J1 p50".into(), "J1", |r| r.lat_p50_us),
        ("J1 p99".into(), "J1", |r| r.lat_p99_us),
        ("J2 p50".into(), "J2", |r| r.lat_p50_us),
        ("J3 p50".into(), "J3", |r| r.lat_p50_us),
        ("J3 p99".into(), "J3", |r| r.lat_p99_us),
    ];
    let names: Vec<String> = lat_groups.iter().map(|g| g.0.clone()).collect();
    let series: Vec<(String, Vec<f64>)> = cases
        .iter()
        .map(|(c, l)| {
            (
                l.clone(),
                lat_groups.iter().map(|(_, j, f)| value(vm, c, j, *f)).collect(),
            )
        })
        .collect();
    chart::draw(
        &chart::Bars {
            title: "Latency at queue depth 1 (µs, log scale)",
            y_label: "µs",
            groups: &names,
            series: &series,
            log: true,
        },
        &dir.join("vm-latency.png"),
    )?;
    out.push(Chart {
        file: "vm-latency.png".into(),
        title: "Latency at queue depth 1".into(),
        sentence: "Median and 99th percentile latency of single 4 KiB writes (J1), writes each followed \
                   by a flush (J2, the write only) and reads (J3) for every case, on a log scale; lower is better."
            .into(),
    });
    Ok(out)
}
