//! `replbd-bench`: replbd's benchmarks. Every figure is measured in the run that prints it; ratios
//! compare cases measured side by side.

mod alloc;
mod bitmap;
mod engine;
mod resync;

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
    /// One memory case of `bitmap`, run in a child process (internal).
    #[command(hide = true)]
    BitmapMemoryCase {
        dirty: String,
        dirty_bytes: u64,
        pattern: String,
        budget_secs: u64,
    },
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
        } => engine::run(quick, &dir, &cases).and_then(|r| {
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
