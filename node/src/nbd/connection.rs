//! One client connection from first byte to close: handshake (bounded in time), then transmission.
//!
//! Generic over the stream so the same code serves unix sockets, TCP, and in-memory pipes in tests
//! and fuzzing.

use std::sync::Arc;

use replbd_replication::BlockVolume;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};

use crate::nbd::config::NbdConfig;
use crate::nbd::error::ConnectionError;
use crate::nbd::export::Export;
use crate::nbd::handshake::{HandshakeEnd, handshake};
use crate::nbd::request::Limits;
use crate::nbd::shutdown::ShutdownSignal;
use crate::nbd::transmission::{TransmissionEnd, transmission};

/// Socket buffer sizes of a connection: large enough to batch many small replies or headers.
const BUFFER: usize = 64 << 10;

/// How a connection ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The client aborted the handshake (`NBD_OPT_ABORT`).
    Aborted,
    /// The client disconnected cleanly (`NBD_CMD_DISC`) after its requests were answered.
    Disconnected,
    /// The client closed the connection between messages.
    Closed,
    /// The server shut down; in-flight requests were answered first.
    Shutdown,
}

/// Serves one client on `stream`: negotiates, then executes its requests on the export's volume
/// until it disconnects, the shutdown signal fires, or it breaks the protocol (the returned error
/// says how; nothing invalid reaches the volume).
pub async fn serve_connection<V, S>(
    stream: S,
    export: &Export<V>,
    config: &NbdConfig,
    mut shutdown: ShutdownSignal,
) -> Result<ConnectionEnd, ConnectionError>
where
    V: BlockVolume,
    S: AsyncRead + AsyncWrite,
{
    let (read_half, write_half) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(BUFFER, read_half);
    let mut writer = BufWriter::with_capacity(BUFFER, write_half);
    let info = export.info(config);
    let negotiated = tokio::select! {
        biased;
        _ = shutdown.wait() => return Ok(ConnectionEnd::Shutdown),
        r = tokio::time::timeout(config.handshake_timeout, handshake(&mut reader, &mut writer, &info)) => {
            r.map_err(|_| ConnectionError::HandshakeTimeout { after: config.handshake_timeout })??
        }
    };
    match negotiated {
        HandshakeEnd::Transmission => {}
        HandshakeEnd::Aborted => return Ok(ConnectionEnd::Aborted),
        HandshakeEnd::Closed => return Ok(ConnectionEnd::Closed),
    }
    let limits = Limits {
        export_size: info.size,
        max_payload: config.max_payload,
    };
    let end = transmission(
        &mut reader,
        writer,
        Arc::clone(export.volume()),
        limits,
        config,
        shutdown,
    )
    .await?;
    Ok(match end {
        TransmissionEnd::Disconnected => ConnectionEnd::Disconnected,
        TransmissionEnd::Closed => ConnectionEnd::Closed,
        TransmissionEnd::Shutdown => ConnectionEnd::Shutdown,
    })
}
