//! The NBD front end: serves one [`BlockVolume`](replbd_replication::BlockVolume) as a named
//! export over the Network Block Device protocol, on a unix socket or a TCP address.
//!
//! Why NBD besides ublk: it needs no kernel driver on the serving host, qemu attaches it directly as
//! a VM disk, and `qemu-io`/`qemu-img` make it the easiest way to drive a replbd volume in tests.
//!
//! What is spoken: the fixed-newstyle handshake with `NBD_OPT_GO`/`NBD_OPT_INFO` (export size,
//! flags, block size constraints 512/4096/32 MiB), `NBD_OPT_EXPORT_NAME`, `NBD_OPT_LIST`,
//! `NBD_OPT_ABORT`; simple replies only (structured replies, TLS and metadata contexts are refused
//! cleanly). Commands: READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (FUA, NO_HOLE), DISC. Requests
//! of one connection execute concurrently and are answered in completion order.
//!
//! Module map, one concern per file:
//! - [`proto`]: wire constants and fixed structures (pure);
//! - [`option`]: option negotiation decisions (pure);
//! - [`request`]: request validation (pure; fuzzed with [`option`] and [`proto`]);
//! - [`errno`]: volume errors → NBD error values;
//! - `handshake`, `transmission`, `execute`, `writer`: the async I/O of one connection;
//! - [`connection`]: a connection from first byte to close;
//! - [`server`]: the listener, connection limit and graceful shutdown;
//! - [`config`], [`export`], [`shutdown`], [`error`]: what the embedding program configures and sees.
//!
//! ```no_run
//! # async fn example() -> Result<(), replbd_node::nbd::NbdError> {
//! use std::sync::Arc;
//! use replbd_node::nbd::{Export, ListenAddr, NbdConfig, NbdServer};
//! use replbd_replication::MemVolume;
//!
//! let export = Export::new("r0", Arc::new(MemVolume::new(64 << 20)))?;
//! let addr = ListenAddr::Unix("/run/replbd/r0.nbd".into());
//! let server = NbdServer::bind(&addr, export, NbdConfig::default()).await?;
//! let stop = server.shutdown_handle();
//! let serving = tokio::spawn(server.run());
//! // ... later:
//! stop.shutdown();
//! # let _ = serving.await;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod connection;
pub mod errno;
pub mod error;
pub mod export;
pub mod option;
pub mod proto;
pub mod request;
pub mod server;
pub mod shutdown;

mod execute;
mod handshake;
mod transmission;
mod writer;

pub use config::NbdConfig;
pub use connection::{ConnectionEnd, serve_connection};
pub use errno::NbdErrno;
pub use error::{ConnectionError, NbdError};
pub use export::Export;
pub use server::{ListenAddr, NbdServer};
pub use shutdown::{ShutdownHandle, ShutdownSignal};
