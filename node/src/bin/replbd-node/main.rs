//! `replbd-node`: the per-host daemon (`replbd-node daemon`) and the drbdadm-like commands that
//! talk to it over its admin socket (`status`, `up`, `primary`, `events`, …).
//!
//! Exit status: 0 success, 1 the command failed (the daemon's or the configuration's message is
//! printed), 2 bad usage, 3 the daemon cannot be reached.

mod cli;
mod commands;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REPLBD_LOG").unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let is_daemon = matches!(cli.command, cli::Command::Daemon { .. });
    init_logging(if is_daemon { "info" } else { "warn" });
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr().lock(), "replbd-node: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
