//! The single writer of a connection's replies.
//!
//! Requests complete concurrently and in any order; each completion is sent here as one
//! [`Reply`] and this task alone writes to the socket, so a reply header and its read data are never
//! interleaved with another reply. Replies that are ready together are written in one batch and
//! flushed once. Each reply carries the in-flight budget permit of its request, released only once
//! the reply is written: the budget bounds memory until the bytes have left the process.

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::Receiver;

use crate::nbd::errno::NbdErrno;
use crate::nbd::proto::encode_simple_reply;

/// One simple reply to write.
pub(crate) struct Reply {
    /// The request's cookie.
    pub cookie: u64,
    /// Error, or success with a read's data.
    pub result: Result<Option<Bytes>, NbdErrno>,
    /// The request's share of the in-flight budget, released after writing.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Writes replies until every sender is gone, then flushes and shuts the write side down.
/// Returns the number of replies written.
pub(crate) async fn write_replies<W>(
    writer: &mut BufWriter<W>,
    mut replies: Receiver<Reply>,
) -> std::io::Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let mut written = 0u64;
    while let Some(first) = replies.recv().await {
        let mut next = Some(first);
        while let Some(reply) = next {
            write_one(writer, reply).await?;
            written += 1;
            next = replies.try_recv().ok();
        }
        writer.flush().await?;
    }
    writer.shutdown().await?;
    Ok(written)
}

async fn write_one<W: AsyncWrite + Unpin>(writer: &mut BufWriter<W>, reply: Reply) -> std::io::Result<()> {
    let error = match &reply.result {
        Ok(_) => 0,
        Err(errno) => errno.code(),
    };
    writer
        .write_all(&encode_simple_reply(error, reply.cookie))
        .await?;
    if let Ok(Some(data)) = &reply.result {
        writer.write_all(data).await?;
    }
    drop(reply.permit);
    Ok(())
}
