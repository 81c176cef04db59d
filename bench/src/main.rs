//! `replbd-bench`: replbd's benchmarks. Every figure is measured in the run that prints it; ratios
//! compare cases measured side by side.

mod alloc;
mod bitmap;
mod engine;
mod report;
mod resync;
mod vm;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// replbd benchmarks.
#[derive(Parser)]
#[command(name = "replbd-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// In-memory bitmap: set/clear cost and memory for a 16 TiB volume with 32 peer slots.
    Bitmap {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Fewer operations and a shorter time budget (a smoke run).
        #[arg(long)]
        quick: bool,
    },
    /// The write path: local store, a minimal-replication floor, replbd with 1-2 peers (C and A).
    Engine {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Shorter runs (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Directory for the data and metadata files.
        #[arg(long, default_value = "/dev/shm")]
        dir: std::path::PathBuf,
        /// Run only these replbd cases (e.g. `--case replbd-1peer-C`); repeatable.
        #[arg(long = "case")]
        cases: Vec<String>,
        /// Peer counts of the replbd cases, e.g. `--peers 1,2,4,8,16,32` (a sweep: with more
        /// than 2 peers every node writes 64 MiB at most).
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
        peers: Vec<usize>,
    },
    /// Resync of a 1 GiB volume with 1 %, 10 % and 100 % dirty: bytes moved vs dirty, and
    /// throughput vs copying the same ranges over a loopback socket.
    Resync {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A 128 MiB volume (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Directory for the data and metadata files.
        #[arg(long, default_value = "/dev/shm")]
        dir: std::path::PathBuf,
    },
    /// In a qemu VM, one boot: the raw ram disk, replbd with 0-2 peers and kernel DRBD with 1 peer
    /// (protocol C and A), each with the fio matrix J1-J6; prints the cases and the ratios.
    Vm {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// One round of 3 s per job instead of three rounds of 6 s.
        #[arg(long)]
        quick: bool,
        /// Run every case this many times (figures are medians); default 3, or 1 with --quick.
        #[arg(long)]
        rounds: Option<u32>,
        /// Then profile J4 on replbd and DRBD (protocol C, 1 peer) with perf inside the VM.
        #[arg(long)]
        profile: bool,
        /// Directory for the run's raw results (fio JSON, console log, report.json).
        #[arg(long, default_value = "target/bench-vm")]
        out: std::path::PathBuf,
        /// Do not boot: read the results an earlier run left in this directory.
        #[arg(long)]
        results: Option<std::path::PathBuf>,
    },
    /// Writes docs/benchmarks.md and its PNG charts from the report.json of `vm`.
    Report {
        /// The JSON `vm` wrote (OUT/report.json).
        #[arg(long, default_value = "target/bench-vm/report.json")]
        vm: std::path::PathBuf,
        /// The docs directory: benchmarks.md and benchmarks/*.png go there.
        #[arg(long, default_value = "docs")]
        docs: std::path::PathBuf,
        /// Also the JSON of `engine --json` (e.g. a peer sweep), for its tables and charts.
        #[arg(long)]
        engine: Option<std::path::PathBuf>,
        /// Also the output of `bench/node-rss/run` (resident memory of replbd-node).
        #[arg(long)]
        rss: Option<std::path::PathBuf>,
        /// TrueType font for the charts' text.
        #[arg(long, default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
        font: std::path::PathBuf,
    },
    /// One memory case of `bitmap`, run in a child process (internal).
    #[command(hide = true)]
    BitmapMemoryCase {
        dirty: String,
        dirty_bytes: u64,
        pattern: String,
        budget_secs: u64,
    },
}

/// This invocation as a command to repeat: `replbd-bench` and the arguments.
fn command_line() -> String {
    std::iter::once("replbd-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bitmap { json, quick } => bitmap::run(quick).and_then(|r| {
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else {
                bitmap::print_table(&r, &mut out)?;
            }
            Ok(())
        }),
        Command::Engine {
            json,
            quick,
            dir,
            cases,
            peers,
        } => engine::run(quick, &dir, &cases, &peers).and_then(|mut r| {
            r.command = Some(command_line());
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else {
                engine::print_table(&r, &mut out)?;
            }
            Ok(())
        }),
        Command::Resync { json, quick, dir } => resync::run(quick, &dir).and_then(|r| {
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else {
                resync::print_table(&r, &mut out)?;
            }
            Ok(())
        }),
        Command::Vm {
            json,
            quick,
            rounds,
            profile,
            out,
            results,
        } => vm::run(quick, rounds, profile, &out, results.as_deref()).and_then(|mut r| {
            r.meta.insert("command".into(), command_line());
            let dir = results.as_deref().unwrap_or(&out);
            std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&r)?)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &r)?;
                writeln!(out)?;
            } else {
                vm::table::print(&r, &mut out)?;
            }
            Ok(())
        }),
        Command::Report {
            vm,
            engine,
            rss,
            docs,
            font,
        } => report::run(
            &vm,
            engine.as_deref(),
            rss.as_deref(),
            &docs,
            &font,
            &command_line(),
        ),
        Command::BitmapMemoryCase {
            dirty,
            dirty_bytes,
            pattern,
            budget_secs,
        } => {
            let case = bitmap::memory_case(
                &dirty,
                dirty_bytes,
                &pattern,
                std::time::Duration::from_secs(budget_secs),
            );
            serde_json::to_writer(std::io::stdout().lock(), &case).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replbd-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
