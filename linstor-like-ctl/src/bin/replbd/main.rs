//! `replbd`: the LINSTOR-like command line of a replbd cluster, and `replbd demo`.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use replbd_ctl::cli::{self, Failure, args::Cli, args::Noun};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REPLBD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ERROR: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Failure> = rt.block_on(async move {
        match cli.command {
            Noun::Demo(args) => replbd_ctl::demo::run(args).await,
            _ => cli::run(cli).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let _ = writeln!(std::io::stderr(), "ERROR: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
