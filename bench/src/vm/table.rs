//! The VM report as text: one block per job with every case, then the ratios.

use std::io::Write;

use super::VmReport;
use super::results::JOBS;

/// What each job measures (from the standard matrix).
pub fn job_title(job: &str) -> &'static str {
    match job {
        "J1" => "4k random write, QD1",
        "J2" => "4k random write + fsync, QD1",
        "J3" => "4k random read, QD1",
        "J4" => "4k random write, 32 x 4 jobs",
        "J5" => "4k random read, 32 x 4 jobs",
        "J6" => "1M sequential write, QD16",
        _ => "",
    }
}

/// A case's label: "replbd 1 peer C".
pub fn label(system: &str, peers: u32, protocol: Option<&str>) -> String {
    match (system, protocol) {
        ("raw", _) => "raw ram disk".to_string(),
        (_, p) => format!(
            "{system} {peers} peer{} {}",
            if peers == 1 { "" } else { "s" },
            p.unwrap_or("")
        )
        .trim_end()
        .to_string(),
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
}

/// Prints every job's cases and the ratios.
pub fn print(r: &VmReport, out: &mut impl Write) -> std::io::Result<()> {
    for job in JOBS {
        let rows: Vec<_> = r.cases.iter().filter(|c| c.job == job).collect();
        if rows.is_empty() {
            continue;
        }
        writeln!(out, "{job}: {}", job_title(job))?;
        writeln!(
            out,
            "  {:<20} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>14}",
            "case", "IOPS", "MB/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU s/GiB", "IOPS min-max"
        )?;
        for c in rows {
            writeln!(
                out,
                "  {:<20} {:>9.0} {:>8.1} {:>9.0} {:>9.0} {:>9.0} {:>9} {:>14}",
                label(&c.system, c.peers, c.protocol.as_deref()),
                c.iops,
                c.mbps,
                c.lat_p50_us,
                c.lat_p99_us,
                c.lat_p999_us,
                opt(c.cpu_s_per_gib, 2),
                format!("{:.0}-{:.0}", c.iops_min, c.iops_max),
            )?;
        }
        writeln!(out)?;
    }
    for q in &r.ratios {
        let target = match (&q.target, q.met) {
            (Some(t), Some(met)) => format!(" (target {t}: {})", if met { "met" } else { "MISSED" }),
            _ => String::new(),
        };
        let metric = if q.metric == "iops" { "IOPS" } else { "p50 latency" };
        writeln!(out, "{}, {} {metric}: {:.2}x{target}", q.name, q.job, q.value)?;
    }
    for (case, text) in &r.profiles {
        writeln!(out, "\nperf profile of J4 on {case} (top 40 lines):")?;
        for line in text.lines().take(40) {
            writeln!(out, "  {line}")?;
        }
    }
    for e in &r.errors {
        writeln!(out, "error: {e}")?;
    }
    Ok(())
}
