//! The daemon's side of the admin socket: accepts local clients, reads requests line by line and
//! answers each, or streams events.
//!
//! The socket file is created with mode 0600: every command can change the cluster (promote,
//! disconnect, take down), so only root — the daemon's user — may send them. A stale socket left by
//! a killed daemon is replaced; a live one means another daemon runs, which is refused.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use super::protocol::{MAX_REQUEST_LINE, Reply, Request, to_line};
use crate::daemon::Daemon;

/// Why the admin socket could not be opened.
#[derive(Debug, Error)]
pub enum AdminSocketError {
    /// Another daemon answers on the socket.
    #[error("another replbd-node is already running on {}: stop it first, or use another --admin-socket", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Something else is at the path.
    #[error("{} exists and is not a socket: remove it or use another --admin-socket", path.display())]
    NotSocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket could not be created.
    #[error("cannot create the admin socket {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Creates the admin socket at `path` (and its directory), readable and writable by its owner only.
pub fn bind(path: &Path) -> Result<UnixListener, AdminSocketError> {
    let io = |source| AdminSocketError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(AdminSocketError::NotSocket {
                path: path.to_owned(),
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AdminSocketError::InUse {
                path: path.to_owned(),
            });
        }
        debug!(path = %path.display(), "replacing a stale admin socket");
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves admin clients on `listener` until `stop` becomes true, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    daemon: Arc<Daemon>,
    mut stop: watch::Receiver<bool>,
) {
    info!(path = %path.display(), "admin socket listening");
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let daemon = Arc::clone(&daemon);
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &daemon, stop).await {
                        debug!(error = %e, "admin connection ended with an error");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "accepting an admin client failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    info!(path = %path.display(), "admin socket closed");
}

/// Reads one request line; `None` at the end of the stream.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<Result<Request, String>>> {
    let mut line = String::new();
    let n = reader.take(MAX_REQUEST_LINE).read_line(&mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') && n as u64 >= MAX_REQUEST_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request line longer than 64 KiB",
        ));
    }
    Ok(Some(
        serde_json::from_str(line.trim()).map_err(|e| format!("bad request: {e}")),
    ))
}

async fn connection(stream: UnixStream, daemon: &Daemon, stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader).await? {
        let reply = match request {
            Err(reason) => Reply::error(reason),
            Ok(Request::Events) => return stream_events(reader, write, daemon, stop).await,
            Ok(request) => daemon.handle(request).await,
        };
        write.write_all(encode(&reply).as_bytes()).await?;
    }
    Ok(())
}

fn encode(reply: &Reply) -> String {
    to_line(reply)
        .unwrap_or_else(|e| format!("{{\"result\":\"error\",\"error\":\"cannot encode the reply: {e}\"}}\n"))
}

/// Streams the state that exists, then every change, until the client closes or the daemon stops.
async fn stream_events<R: AsyncRead + Unpin>(
    mut reader: BufReader<R>,
    mut write: tokio::net::unix::OwnedWriteHalf,
    daemon: &Daemon,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (mut rx, initial) = daemon.subscribe();
    write.write_all(encode(&Reply::Subscribed).as_bytes()).await?;
    for event in initial {
        write
            .write_all(encode(&Reply::Event { event }).as_bytes())
            .await?;
    }
    let mut sink = [0u8; 256];
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(event) => write.write_all(encode(&Reply::Event { event }).as_bytes()).await?,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let reply = Reply::error(format!("events: {n} events were dropped because this client reads too slowly"));
                    write.write_all(encode(&reply).as_bytes()).await?;
                    return Ok(());
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            // The end of the client's stream ends the subscription; what it sends is ignored.
            r = reader.read(&mut sink) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
            () = stopped(&mut stop) => return Ok(()),
        }
    }
}

/// Waits until `stop` becomes true (without holding its value across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
