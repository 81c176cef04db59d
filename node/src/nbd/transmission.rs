//! The transmission phase of one connection: read requests, execute them concurrently, reply out of
//! order.
//!
//! ```text
//!  socket ──► reader loop ──parse_request──► spawn(execute on volume) ──┐
//!               │  (rejections: error reply)                             │ Reply (cookie, result, permit)
//!               └──────────────────────────────────────────────────────► mpsc ──► writer ──► socket
//! ```
//!
//! The reader owns the read half and is the only place that parses the stream; every valid request
//! runs in its own task, so a slow request never holds up later ones and replies go out in
//! completion order, matched by cookie. One writer owns the write half ([`super::writer`]).
//!
//! Backpressure: before a request's payload is read (or a read is started), the reader takes
//! `REQUEST_OVERHEAD + length` permits from the connection's in-flight budget; the permit travels
//! with the reply and is released once the reply is written. A client that pipelines without
//! reading replies stalls its own reader, never the server's memory. The reply queue is bounded too.
//!
//! Ending: `NBD_CMD_DISC`, end of stream, a shutdown signal or a fatal protocol error stop the
//! reader. It drops its end of the reply queue; requests still running finish and send their
//! replies, the writer drains the queue, flushes and shuts the socket down. So every request that
//! was read is answered before the connection closes, as the protocol requires on disconnect.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use replbd_replication::BlockVolume;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, BufWriter};
use tokio::sync::mpsc::{self, Sender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, debug, trace, warn};

use crate::nbd::config::{NbdConfig, REQUEST_OVERHEAD};
use crate::nbd::error::{ConnectionError, Phase};
use crate::nbd::execute::execute;
use crate::nbd::proto::{REQUEST_HEADER_LEN, RequestHeader};
use crate::nbd::request::{AfterReject, Limits, Rejection, Request, parse_request};
use crate::nbd::shutdown::ShutdownSignal;
use crate::nbd::writer::{Reply, write_replies};

/// Replies waiting for the writer, at most.
const REPLY_QUEUE: usize = 256;

/// How the transmission phase ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransmissionEnd {
    /// The client sent `NBD_CMD_DISC`.
    Disconnected,
    /// The client closed the connection between requests.
    Closed,
    /// The server is shutting down.
    Shutdown,
}

enum ReadEnd {
    Done(TransmissionEnd),
    /// The writer stopped (its error is the reason).
    WriterGone,
}

enum Frame {
    Eof,
    Disconnect,
    Request {
        cookie: u64,
        request: Request,
        payload: Bytes,
        permit: Option<OwnedSemaphorePermit>,
    },
    Rejected(Rejection),
}

fn io_error(source: std::io::Error, what: &'static str) -> ConnectionError {
    if source.kind() == std::io::ErrorKind::UnexpectedEof {
        ConnectionError::Truncated {
            phase: Phase::Transmission,
            what,
        }
    } else {
        ConnectionError::Io {
            phase: Phase::Transmission,
            source,
        }
    }
}

/// Serves requests for `volume` until the client disconnects, the shutdown signal fires or the
/// client breaks the protocol.
pub(crate) async fn transmission<V, R, W>(
    reader: &mut R,
    mut writer: BufWriter<W>,
    volume: Arc<V>,
    limits: Limits,
    config: &NbdConfig,
    shutdown: ShutdownSignal,
) -> Result<TransmissionEnd, ConnectionError>
where
    V: BlockVolume,
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(REPLY_QUEUE);
    let budget = Arc::new(Semaphore::new(config.max_in_flight_bytes as usize));
    let reading = read_requests(reader, tx, volume, limits, budget, shutdown);
    let writing = write_replies(&mut writer, rx);
    let (read_end, written) = tokio::join!(reading, writing);
    match (read_end, written) {
        (Err(e), _) => Err(e),
        (Ok(ReadEnd::WriterGone), Err(source)) => Err(ConnectionError::Io {
            phase: Phase::Transmission,
            source,
        }),
        (Ok(ReadEnd::WriterGone), Ok(_)) => Ok(TransmissionEnd::Closed),
        (Ok(ReadEnd::Done(end)), written) => {
            // The client may hang up without waiting for the last replies; that is its choice.
            if let Err(e) = written {
                debug!(error = %e, ?end, "could not deliver every reply after the reader stopped");
            }
            Ok(end)
        }
    }
}

async fn read_requests<V, R>(
    reader: &mut R,
    tx: Sender<Reply>,
    volume: Arc<V>,
    limits: Limits,
    budget: Arc<Semaphore>,
    mut shutdown: ShutdownSignal,
) -> Result<ReadEnd, ConnectionError>
where
    V: BlockVolume,
    R: AsyncBufRead + Unpin,
{
    loop {
        // Cancelling `read_frame` midway loses stream position; that only happens when the
        // connection is closing anyway.
        let frame = tokio::select! {
            biased;
            _ = shutdown.wait() => return Ok(ReadEnd::Done(TransmissionEnd::Shutdown)),
            _ = tx.closed() => return Ok(ReadEnd::WriterGone),
            frame = read_frame(reader, &limits, &budget) => frame?,
        };
        match frame {
            Frame::Eof => return Ok(ReadEnd::Done(TransmissionEnd::Closed)),
            Frame::Disconnect => return Ok(ReadEnd::Done(TransmissionEnd::Disconnected)),
            Frame::Request {
                cookie,
                request,
                payload,
                permit,
            } => {
                trace!(cookie, ?request, "NBD request");
                let volume = Arc::clone(&volume);
                let tx = tx.clone();
                tokio::spawn(
                    async move {
                        let result = execute(&*volume, request, payload).await;
                        // If the writer is gone the client is too; nobody is left to tell.
                        let _ = tx
                            .send(Reply {
                                cookie,
                                result,
                                permit,
                            })
                            .await;
                    }
                    .in_current_span(),
                );
            }
            Frame::Rejected(rejection) => {
                let errno = rejection.error.errno();
                warn!(
                    cookie = rejection.cookie,
                    reason = %rejection.error,
                    %errno,
                    "rejected invalid NBD request"
                );
                let reply = Reply {
                    cookie: rejection.cookie,
                    result: Err(errno),
                    permit: None,
                };
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return Ok(ReadEnd::Done(TransmissionEnd::Shutdown)),
                    sent = tx.send(reply) => if sent.is_err() {
                        return Ok(ReadEnd::WriterGone);
                    },
                }
                if rejection.then == AfterReject::Close {
                    return Err(ConnectionError::FatalRequest {
                        cookie: rejection.cookie,
                        source: rejection.error,
                    });
                }
            }
        }
    }
}

/// Reads one request (header and, for writes, payload) and checks it.
async fn read_frame<R>(
    reader: &mut R,
    limits: &Limits,
    budget: &Arc<Semaphore>,
) -> Result<Frame, ConnectionError>
where
    R: AsyncBufRead + Unpin,
{
    let at_end = reader
        .fill_buf()
        .await
        .map_err(|e| io_error(e, "request header"))?
        .is_empty();
    if at_end {
        return Ok(Frame::Eof);
    }
    let mut head = [0u8; REQUEST_HEADER_LEN];
    reader
        .read_exact(&mut head)
        .await
        .map_err(|e| io_error(e, "request header"))?;
    let header = RequestHeader::decode(&head).map_err(|source| ConnectionError::Malformed {
        phase: Phase::Transmission,
        source,
    })?;
    match parse_request(&header, limits) {
        Ok(Request::Disconnect) => Ok(Frame::Disconnect),
        Ok(request) => {
            // The semaphore is never closed, so this only waits; without a permit the request would
            // still be served correctly, merely unbudgeted.
            let cost = REQUEST_OVERHEAD.saturating_add(request.data_len());
            let permit = Arc::clone(budget).acquire_many_owned(cost).await.ok();
            let payload = read_payload(reader, request.payload_len()).await?;
            Ok(Frame::Request {
                cookie: header.cookie,
                request,
                payload,
                permit,
            })
        }
        Err(rejection) => {
            if let AfterReject::Discard(len) = rejection.then {
                let skipped =
                    tokio::io::copy(&mut (&mut *reader).take(u64::from(len)), &mut tokio::io::sink())
                        .await
                        .map_err(|e| io_error(e, "write payload"))?;
                if skipped < u64::from(len) {
                    return Err(io_error(
                        std::io::ErrorKind::UnexpectedEof.into(),
                        "write payload",
                    ));
                }
            }
            Ok(Frame::Rejected(rejection))
        }
    }
}

/// Reads exactly `len` payload bytes without zero-filling a buffer first.
async fn read_payload<R: AsyncBufRead + Unpin>(reader: &mut R, len: u32) -> Result<Bytes, ConnectionError> {
    let len = len as usize;
    if len == 0 {
        return Ok(Bytes::new());
    }
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let want = (len - buf.len()) as u64;
        let n = (&mut *reader)
            .take(want)
            .read_buf(&mut buf)
            .await
            .map_err(|e| io_error(e, "write payload"))?;
        if n == 0 {
            return Err(io_error(
                std::io::ErrorKind::UnexpectedEof.into(),
                "write payload",
            ));
        }
    }
    Ok(buf.freeze())
}
