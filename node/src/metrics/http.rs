//! A minimal HTTP/1.1 server for the metrics endpoint: `GET /metrics` (OpenMetrics text) and
//! `GET /health` (`ok`). One request per connection, `Connection: close`.
//!
//! Why not hyper: a scrape endpoint needs to read one request line and write one response; a
//! hand-written loop of a few dozen lines has no dependency to keep up to date and bounds every
//! input (header size, read time) explicitly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Metrics;

/// Largest request head read, in bytes.
const MAX_HEAD: usize = 8 << 10;
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server calls before encoding the metrics, to refresh the state metrics.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Serves `/metrics` and `/health` on `listener` until `stop` becomes true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    refresh: Refresh,
    mut stop: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    info!(addr = ?addr, "metrics endpoint listening");
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let metrics = Arc::clone(&metrics);
                let refresh = Arc::clone(&refresh);
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &metrics, &refresh).await {
                        debug!(peer = %peer, error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "accepting a metrics client failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    info!(addr = ?addr, "metrics endpoint stopped");
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Reads the request head: up to the blank line, at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() >= MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The status line, content type and body for a request line.
pub fn respond(
    request_line: &str,
    metrics: &Metrics,
    refresh: &Refresh,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET is supported\n".into());
    }
    match path {
        "/metrics" => {
            refresh();
            match metrics.encode() {
                Ok(body) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    TEXT,
                    "encoding the metrics failed\n".into(),
                ),
            }
        }
        "/health" => ("200 OK", TEXT, "ok\n".into()),
        _ => (
            "404 Not Found",
            TEXT,
            "not found: try /metrics or /health\n".into(),
        ),
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics, refresh: &Refresh) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request not sent in time"))??;
    let request_line = head.lines().next().unwrap_or("");
    let (status, content_type, body) = respond(request_line, metrics, refresh);
    let head_only = request_line.starts_with("HEAD ");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body.as_str() }
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let m = Metrics::new("alpha");
        let refreshed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = Arc::clone(&refreshed);
        let refresh: Refresh = Arc::new(move || r.store(true, std::sync::atomic::Ordering::SeqCst));
        let (status, ctype, body) = respond("GET /metrics HTTP/1.1", &m, &refresh);
        assert_eq!(status, "200 OK");
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(
            body.contains("replbd_node_info") && body.ends_with("# EOF\n"),
            "{body}"
        );
        assert!(refreshed.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(respond("GET /health HTTP/1.1", &m, &refresh).2, "ok\n");
        assert_eq!(respond("GET /nope HTTP/1.1", &m, &refresh).0, "404 Not Found");
        assert_eq!(
            respond("POST /metrics HTTP/1.1", &m, &refresh).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond("", &m, &refresh).0, "405 Method Not Allowed");
    }
}
