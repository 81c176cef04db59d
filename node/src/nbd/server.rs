//! The listener: accepts clients on a unix socket or TCP address and serves each connection in its
//! own task, independently of the others.
//!
//! Lifecycle: [`NbdServer::bind`] validates the configuration and binds; [`NbdServer::run`] accepts
//! until the [`ShutdownHandle`] fires, then stops accepting (and removes the unix socket file),
//! lets every connection finish its in-flight requests for up to `drain_timeout`, cuts whatever is
//! left, and returns. A connection's failure (protocol error, timeout, I/O error) is logged with the
//! peer and the reason and never affects the listener or other clients.
//!
//! TCP addresses are whatever the caller gives; [`ListenAddr::localhost`] is the safe default,
//! since NBD has no authentication here (no TLS): expose it beyond the host only on a trusted
//! network.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use replbd_replication::BlockVolume;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::nbd::config::NbdConfig;
use crate::nbd::connection::{ConnectionEnd, serve_connection};
use crate::nbd::error::NbdError;
use crate::nbd::export::Export;
use crate::nbd::shutdown::{ShutdownHandle, ShutdownSignal};

/// The IANA port for NBD.
pub const DEFAULT_TCP_PORT: u16 = 10809;

/// Where an NBD server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// A unix socket path (qemu: `nbd+unix:///EXPORT?socket=PATH`).
    Unix(PathBuf),
    /// A TCP address (qemu: `nbd://HOST:PORT/EXPORT`).
    Tcp(SocketAddr),
}

impl ListenAddr {
    /// TCP on 127.0.0.1 only: reachable from this host, not from the network.
    pub fn localhost(port: u16) -> ListenAddr {
        ListenAddr::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

impl Default for ListenAddr {
    /// `127.0.0.1:10809`.
    fn default() -> ListenAddr {
        ListenAddr::localhost(DEFAULT_TCP_PORT)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = NbdError;

    /// `unix:PATH` or an absolute path is a unix socket; `HOST:PORT` with a literal IP is TCP.
    fn from_str(s: &str) -> Result<ListenAddr, NbdError> {
        let path = s.strip_prefix("unix:").unwrap_or(s);
        if path.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| NbdError::InvalidListenAddr { input: s.to_owned() })
    }
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A bound NBD server for one export.
pub struct NbdServer<V> {
    listener: Listener,
    local_addr: ListenAddr,
    export: Arc<Export<V>>,
    config: Arc<NbdConfig>,
    shutdown: ShutdownHandle,
}

impl<V: BlockVolume> NbdServer<V> {
    /// Binds `addr` for `export`. A stale unix socket file left by a previous server is replaced;
    /// a live one (another server answers) is an error, and so is a path that is not a socket.
    /// For TCP port 0, [`NbdServer::local_addr`] tells the port chosen.
    pub async fn bind(
        addr: &ListenAddr,
        export: Export<V>,
        config: NbdConfig,
    ) -> Result<NbdServer<V>, NbdError> {
        config.validate()?;
        let bind_error = |source| NbdError::Bind {
            addr: addr.to_string(),
            source,
        };
        let (listener, local_addr) = match addr {
            ListenAddr::Unix(path) => (Listener::Unix(bind_unix(path)?), addr.clone()),
            ListenAddr::Tcp(sock) => {
                let l = TcpListener::bind(sock).await.map_err(bind_error)?;
                let local = l.local_addr().map_err(bind_error)?;
                (Listener::Tcp(l), ListenAddr::Tcp(local))
            }
        };
        info!(addr = %local_addr, export = export.name(), size = export.volume().size(), "NBD server listening");
        Ok(NbdServer {
            listener,
            local_addr,
            export: Arc::new(export),
            config: Arc::new(config),
            shutdown: ShutdownHandle::new(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local_addr
    }

    /// The handle that shuts this server down gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Accepts and serves clients until shut down; returns once every connection is closed.
    pub async fn run(self) -> Result<(), NbdError> {
        let NbdServer {
            listener,
            local_addr,
            export,
            config,
            shutdown,
        } = self;
        let mut stop = shutdown.signal();
        let mut connections = JoinSet::new();
        let mut next_id = 0u64;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.wait() => break,
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = done {
                        warn!(error = %e, "NBD connection task failed");
                    }
                    continue;
                }
                accepted = accept(&listener) => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors or a connection reset before accept: back
                    // off briefly instead of spinning, and keep serving.
                    warn!(addr = %local_addr, error = %e, "accepting an NBD client failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            next_id += 1;
            let span = info_span!("nbd", conn = next_id, peer = %peer, export = export.name());
            if connections.len() >= config.max_connections {
                span.in_scope(|| {
                    warn!(
                        peer = %peer,
                        reason = "too many connections",
                        max = config.max_connections,
                        "refusing NBD client"
                    );
                });
                continue;
            }
            match stream {
                Stream::Unix(s) => {
                    spawn_connection(&mut connections, s, peer, &export, &config, &shutdown, span)
                }
                Stream::Tcp(s) => {
                    spawn_connection(&mut connections, s, peer, &export, &config, &shutdown, span)
                }
            }
        }
        drop(listener);
        if let ListenAddr::Unix(path) = &local_addr
            && let Err(e) = std::fs::remove_file(path)
        {
            debug!(path = %path.display(), error = %e, "could not remove NBD socket file");
        }
        info!(
            addr = %local_addr,
            connections = connections.len(),
            "NBD server stopped accepting; draining connections"
        );
        let drained = tokio::time::timeout(config.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                addr = %local_addr,
                left = connections.len(),
                timeout = ?config.drain_timeout,
                "NBD connections did not drain in time; closing them"
            );
            connections.shutdown().await;
        }
        info!(addr = %local_addr, "NBD server stopped");
        Ok(())
    }
}

fn spawn_connection<V, S>(
    set: &mut JoinSet<()>,
    stream: S,
    peer: String,
    export: &Arc<Export<V>>,
    config: &Arc<NbdConfig>,
    shutdown: &ShutdownHandle,
    span: tracing::Span,
) where
    V: BlockVolume,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let export = Arc::clone(export);
    let config = Arc::clone(config);
    let signal: ShutdownSignal = shutdown.signal();
    set.spawn(
        async move {
            debug!("NBD client connected");
            match serve_connection(stream, &export, &config, signal).await {
                Ok(ConnectionEnd::Closed | ConnectionEnd::Disconnected | ConnectionEnd::Aborted) => {
                    debug!("NBD client disconnected");
                }
                Ok(ConnectionEnd::Shutdown) => debug!("NBD connection closed for shutdown"),
                Err(reason) => warn!(peer = %peer, reason = %reason, "closing NBD connection"),
            }
        }
        .instrument(span),
    );
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, String)> {
    match listener {
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            // Unix peers have no address; their credentials say who they are.
            let peer = match s.peer_cred() {
                Ok(c) => format!("unix(pid={},uid={})", c.pid().unwrap_or(-1), c.uid()),
                Err(_) => "unix".to_owned(),
            };
            Ok((Stream::Unix(s), peer))
        }
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            // Replies are small and latency-bound: never wait to coalesce them.
            s.set_nodelay(true)?;
            Ok((Stream::Tcp(s), peer.to_string()))
        }
    }
}

fn bind_unix(path: &Path) -> Result<UnixListener, NbdError> {
    let bind_error = |source| NbdError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    };
    match UnixListener::bind(path) {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        Err(e) => return Err(bind_error(e)),
    }
    // Something is at the path. Replace it only if it is a socket nobody answers on.
    let meta = std::fs::symlink_metadata(path).map_err(bind_error)?;
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        return Err(NbdError::PathNotSocket {
            path: path.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(NbdError::SocketInUse {
            path: path.to_owned(),
        });
    }
    debug!(path = %path.display(), "replacing stale NBD socket file");
    std::fs::remove_file(path).map_err(bind_error)?;
    UnixListener::bind(path).map_err(bind_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        let unix = ListenAddr::Unix("/run/replbd/r0.nbd".into());
        assert_eq!(
            "/run/replbd/r0.nbd".parse::<ListenAddr>().ok(),
            Some(unix.clone())
        );
        assert_eq!("unix:/run/replbd/r0.nbd".parse::<ListenAddr>().ok(), Some(unix));
        assert_eq!(
            "127.0.0.1:10809".parse::<ListenAddr>().ok(),
            Some(ListenAddr::default())
        );
        assert!("[::1]:10809".parse::<ListenAddr>().is_ok());
        for bad in ["relative/path", "localhost:10809", "unix:relative", ""] {
            assert!(matches!(
                bad.parse::<ListenAddr>(),
                Err(NbdError::InvalidListenAddr { .. })
            ));
        }
    }
}
