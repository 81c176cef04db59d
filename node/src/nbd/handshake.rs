//! The fixed-newstyle handshake on the wire: greeting, client flags, then options until the client
//! enters transmission (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`), aborts, or misbehaves.
//!
//! ```text
//! S: "NBDMAGIC" "IHAVEOPT" flags(FIXED_NEWSTYLE|NO_ZEROES)
//! C: client flags
//! repeat:
//!   C: "IHAVEOPT" option length data
//!   S: replies (decided by option::answer_option)
//! until GO acked / EXPORT_NAME answered → transmission, ABORT acked → close
//! ```
//!
//! This file only moves bytes; the decisions are in [`super::option`]. Option data is bounded by
//! [`MAX_OPTION_LEN`] before it is read, and the caller bounds the whole handshake in time.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use crate::nbd::config::MAX_OPTION_LEN;
use crate::nbd::error::{ConnectionError, Phase};
use crate::nbd::option::{ExportInfo, OptionOutcome, answer_option};
use crate::nbd::proto::{
    KNOWN_CLIENT_FLAGS, NBD_FLAG_C_NO_ZEROES, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES,
    NBD_REP_ERR_INVALID, OPTION_HEADER_LEN, OptionHeader, OptionReply, encode_export_name_reply,
    encode_greeting,
};

/// How the handshake ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeEnd {
    /// The client chose the export: transmission begins.
    Transmission,
    /// The client sent `NBD_OPT_ABORT` (acknowledged).
    Aborted,
    /// The client closed the connection between options.
    Closed,
}

fn io_error(source: std::io::Error, what: &'static str) -> ConnectionError {
    if source.kind() == std::io::ErrorKind::UnexpectedEof {
        ConnectionError::Truncated {
            phase: Phase::Handshake,
            what,
        }
    } else {
        ConnectionError::Io {
            phase: Phase::Handshake,
            source,
        }
    }
}

/// Runs the handshake for one export.
pub(crate) async fn handshake<R, W>(
    reader: &mut R,
    writer: &mut W,
    export: &ExportInfo,
) -> Result<HandshakeEnd, ConnectionError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let greeting = encode_greeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    writer
        .write_all(&greeting)
        .await
        .map_err(|e| io_error(e, "greeting"))?;
    writer.flush().await.map_err(|e| io_error(e, "greeting"))?;

    let client_flags = reader.read_u32().await.map_err(|e| io_error(e, "client flags"))?;
    if client_flags & !KNOWN_CLIENT_FLAGS != 0 {
        return Err(ConnectionError::UnknownClientFlags { flags: client_flags });
    }
    let no_zeroes = client_flags & NBD_FLAG_C_NO_ZEROES != 0;

    loop {
        let at_end = reader
            .fill_buf()
            .await
            .map_err(|e| io_error(e, "option header"))?
            .is_empty();
        if at_end {
            return Ok(HandshakeEnd::Closed);
        }
        let mut head = [0u8; OPTION_HEADER_LEN];
        reader
            .read_exact(&mut head)
            .await
            .map_err(|e| io_error(e, "option header"))?;
        let header = OptionHeader::decode(&head).map_err(|source| ConnectionError::Malformed {
            phase: Phase::Handshake,
            source,
        })?;
        if header.length > MAX_OPTION_LEN {
            return Err(ConnectionError::OptionTooLarge {
                option: header.option,
                len: header.length,
                max: MAX_OPTION_LEN,
            });
        }
        let mut data = vec![0u8; header.length as usize];
        reader
            .read_exact(&mut data)
            .await
            .map_err(|e| io_error(e, "option data"))?;

        let outcome = answer_option(header.option, &data, export);
        match &outcome {
            OptionOutcome::Continue(replies) | OptionOutcome::Go(replies) => {
                log_refusals(replies);
            }
            _ => {}
        }
        let mut out = Vec::new();
        let end = match outcome {
            OptionOutcome::Continue(replies) => {
                replies.iter().for_each(|r| r.encode_into(&mut out));
                None
            }
            OptionOutcome::Go(replies) => {
                replies.iter().for_each(|r| r.encode_into(&mut out));
                Some(HandshakeEnd::Transmission)
            }
            OptionOutcome::Abort(replies) => {
                replies.iter().for_each(|r| r.encode_into(&mut out));
                Some(HandshakeEnd::Aborted)
            }
            OptionOutcome::ExportName => {
                out = encode_export_name_reply(export.size, export.transmission_flags, no_zeroes);
                Some(HandshakeEnd::Transmission)
            }
            OptionOutcome::UnknownExportName(requested) => {
                return Err(ConnectionError::UnknownExport { requested });
            }
        };
        writer
            .write_all(&out)
            .await
            .map_err(|e| io_error(e, "option reply"))?;
        writer.flush().await.map_err(|e| io_error(e, "option reply"))?;
        if let Some(end) = end {
            debug!(option = header.option, ?end, "NBD handshake finished");
            return Ok(end);
        }
    }
}

/// Malformed options are logged as warnings (a broken or hostile client); options this server merely
/// does not support are routine (qemu asks for structured replies first) and logged at debug.
fn log_refusals(replies: &[OptionReply]) {
    for reply in replies.iter().filter(|r| r.is_error()) {
        let reason = String::from_utf8_lossy(&reply.data);
        if reply.reply == NBD_REP_ERR_INVALID {
            warn!(option = reply.option, reason = %reason, "refused malformed NBD option");
        } else {
            debug!(option = reply.option, error = reply.reply, reason = %reason, "refused NBD option");
        }
    }
}
