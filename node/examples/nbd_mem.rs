//! Serves an in-memory volume over NBD, for trying clients by hand:
//!
//! ```sh
//! cargo run -p replbd-node --example nbd_mem -- /tmp/r0.nbd 64     # unix socket, 64 MiB
//! cargo run -p replbd-node --example nbd_mem -- 127.0.0.1:10809 64  # TCP
//! qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' 'nbd+unix:///r0?socket=/tmp/r0.nbd'
//! ```
//!
//! Ctrl-C shuts the server down gracefully. Log level: `RUST_LOG` (default `info`).

use std::sync::Arc;

use anyhow::Context;
use replbd_node::nbd::{Export, ListenAddr, NbdConfig, NbdServer};
use replbd_replication::MemVolume;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let addr: ListenAddr = args.next().as_deref().unwrap_or("127.0.0.1:10809").parse()?;
    let mib: u64 = match args.next() {
        Some(s) => s.parse().context("size in MiB")?,
        None => 64,
    };
    let export = Export::new("r0", Arc::new(MemVolume::new(mib << 20)))?;
    let server = NbdServer::bind(&addr, export, NbdConfig::default()).await?;
    let stop = server.shutdown_handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.shutdown();
        }
    });
    server.run().await?;
    Ok(())
}
