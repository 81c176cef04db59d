//! The host part of `docs/benchmarks.md`: `replbd-bench engine` (the write path in one process, no
//! ublk, no VM) as the peer count grows, with charts of IOPS and CPU cost by peer count.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;

use super::chart;
use crate::engine::EngineReport;
use crate::engine::measure::Figures;

/// A chart of one figure by peer count: file, title, y label, the figure.
type ChartSpec = (&'static str, &'static str, &'static str, fn(&Figures) -> f64);

/// The section's markdown; draws its charts into `dir`.
pub fn section(r: &EngineReport, dir: &Path) -> Result<String> {
    let mut peers: Vec<usize> = r.cases.iter().map(|c| c.peers).collect();
    peers.dedup();
    let groups: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    let by = |protocol: &str, f: fn(&Figures) -> f64| -> Vec<f64> {
        peers
            .iter()
            .map(|&p| {
                r.cases
                    .iter()
                    .find(|c| c.peers == p && c.protocol == protocol)
                    .map_or(f64::NAN, |c| f(&c.figures))
            })
            .collect()
    };
    let charts: [ChartSpec; 2] = [
        (
            "engine-iops.png",
            "Engine: 4 KiB QD32 write IOPS by peer count",
            "IOPS",
            |f| f.iops,
        ),
        (
            "engine-cpu.png",
            "Engine: CPU seconds per GiB written by peer count",
            "CPU s/GiB",
            |f| f.cpu_s_per_gib,
        ),
    ];
    for (file, title, y_label, figure) in charts {
        let series = [
            ("protocol C".to_string(), by("C", figure)),
            ("protocol A".to_string(), by("A", figure)),
        ];
        chart::draw(
            &chart::Bars {
                title,
                y_label,
                groups: &groups,
                series: &series,
                log: false,
            },
            &dir.join(file),
        )?;
    }

    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_section(r, &mut s);
    Ok(s)
}

fn write_section(r: &EngineReport, s: &mut String) -> std::fmt::Result {
    writeln!(s, "## The engine on the host, by peer count\n")?;
    writeln!(
        s,
        "`replbd-bench engine` drives the replication engine directly (no ublk, no VM): every node \
         runs in one process on this host and talks over loopback TCP, data in files on /dev/shm. \
         It shows how the write path's cost grows with the number of peers each write goes to.\n"
    )?;
    if let Some(cmd) = &r.command {
        writeln!(s, "```sh\n{cmd}\n```\n")?;
    }
    writeln!(
        s,
        "Each row is one case of that run: 4 KiB writes at queue depth 32 (IOPS), 1 MiB sequential \
         writes (MB/s), 4 KiB writes one at a time (latency) and the CPU the whole process (the \
         Primary and every peer) spent per GiB the application wrote.\n"
    )?;
    writeln!(
        s,
        "| case | peers | protocol | 4k QD32 IOPS | 1M MB/s | QD1 p50 µs | QD1 p99 µs | CPU s/GiB |"
    )?;
    writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|")?;
    let row = |s: &mut String, name: &str, peers: &str, protocol: &str, f: &Figures| {
        writeln!(
            s,
            "| {name} | {peers} | {protocol} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} |",
            f.iops, f.mbps, f.lat_p50_us, f.lat_p99_us, f.cpu_s_per_gib
        )
    };
    row(s, "local store alone", "0", "–", &r.local)?;
    row(s, "replication floor", "1", "–", &r.floor)?;
    for c in &r.cases {
        row(s, &c.name, &c.peers.to_string(), &c.protocol, &c.figures)?;
    }
    writeln!(
        s,
        "\n### IOPS by peer count\n\nQueue-depth-32 write IOPS of the engine with protocol C and A as \
         each write goes to more peers (one process does the work of every node, so this falls \
         with the total work, not only with the Primary's).\n\n![Engine IOPS](benchmarks/engine-iops.png)\n"
    )?;
    writeln!(
        s,
        "### CPU cost by peer count\n\nCPU seconds the whole process spent per GiB written, with \
         protocol C and A: the cost of sending and applying each write once more per peer.\n\n\
         ![Engine CPU](benchmarks/engine-cpu.png)\n"
    )?;
    Ok(())
}
