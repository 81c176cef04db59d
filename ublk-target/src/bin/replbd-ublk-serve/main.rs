//! `replbd-ublk-serve`: serves a file-backed volume as `/dev/ublkbN` through replbd's ublk front
//! end. A tool for tests (the VM suite) and experiments, not the node daemon.

mod cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use replbd_ublk::testing::FileVolume;
use replbd_ublk::{UblkTarget, delete_device, probe_driver};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libublk=warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replbd-ublk-serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Add(args) => {
            let config = args.device_config()?;
            let volume = FileVolume::open(&args.file, args.size)
                .with_context(|| format!("opening {}", args.file.display()))?;
            serve(UblkTarget::add(Arc::new(volume), &config)?)
        }
        Command::Recover(args) => {
            let volume = FileVolume::open(&args.file, None)
                .with_context(|| format!("opening {}", args.file.display()))?;
            serve(UblkTarget::recover(Arc::new(volume), args.id)?)
        }
        Command::Del(args) => Ok(delete_device(args.id)?),
        Command::Features => {
            let features = probe_driver()?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "features: {features}")?;
            match features.missing_for_recovery() {
                None => writeln!(out, "crash recovery: available")?,
                Some(missing) => writeln!(out, "crash recovery: unavailable (missing {missing})")?,
            }
            Ok(())
        }
    }
}

/// Serves `target` until SIGINT/SIGTERM (stop and delete) or SIGUSR1 (leave it for `recover`).
fn serve(target: UblkTarget<FileVolume>) -> anyhow::Result<()> {
    // FileVolume runs its system calls on this runtime's blocking pool; the target enters it on
    // every queue thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("replbd-rt")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let target = target.with_tokio(runtime.handle().clone());
    let stop = target.stop_handle();
    let id = target.info().id;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    tracing::warn!(
                        device = id,
                        "detaching: exiting without stopping the device; re-attach with `recover`"
                    );
                    std::process::exit(0);
                }
                tracing::info!(device = id, signal, "stopping the device");
                if let Err(e) = stop.stop() {
                    tracing::error!(device = id, error = %e, "cannot stop the device");
                }
            }
        })
        .context("starting the signal thread")?;
    target.run(|dev| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", dev.block_device.display());
        let _ = out.flush();
    })?;
    Ok(())
}
