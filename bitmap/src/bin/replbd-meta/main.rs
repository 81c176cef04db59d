//! `replbd-meta`: create, inspect, check and recover replbd metadata offline (like `drbdmeta`).

mod create;
mod dump;
mod recover;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Create, inspect, check and recover replbd metadata.
#[derive(Parser)]
#[command(name = "replbd-meta", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create fresh metadata (every peer slot empty, the current UUID "just created").
    Create(create::CreateArgs),
    /// Print the superblock, generation identifiers and per-peer out-of-sync amounts.
    Dump {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Metadata file, or the data device/file holding internal metadata.
        file: PathBuf,
    },
    /// Print the generation identifiers on one line, like `drbdadm show-gi`.
    ShowGi {
        /// Metadata file, or the data device/file holding internal metadata.
        file: PathBuf,
    },
    /// Recover after a crash: mark every activity-log extent out of sync for every peer, then mark
    /// the metadata clean.
    ApplyAl {
        /// If the activity log itself is damaged, mark the whole device out of sync (full resync)
        /// instead of refusing.
        #[arg(long)]
        whole_device: bool,
        /// Metadata file, or the data device/file holding internal metadata.
        file: PathBuf,
    },
    /// Check every metadata block; exits 1 naming each damaged block and what to do.
    Check {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// Metadata file, or the data device/file holding internal metadata.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REPLBD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => create::run(&args),
        Command::Dump { json, file } => dump::dump(&file, json),
        Command::ShowGi { file } => dump::show_gi(&file),
        Command::ApplyAl { whole_device, file } => recover::apply_al(&file, whole_device),
        Command::Check { json, file } => recover::check(&file, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("replbd-meta: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
