//! Validation of transmission requests: a pure function from a decoded header to either a typed
//! [`Request`] the volume may execute, or a [`Rejection`] saying which error to reply and whether the
//! connection can go on.
//!
//! Everything a hostile or buggy client can get wrong is decided here, before any buffer is
//! allocated or the volume is touched: unknown commands and flags, zero or oversized lengths,
//! offsets that are unaligned or beyond the export (with overflow-safe arithmetic). Keeping it free of
//! I/O is what lets `cargo fuzz` drive it directly.
//!
//! A rejected write still has its payload on the wire. If that payload is no larger than the
//! server's maximum it is read and thrown away so the stream stays in step; if it is larger, the
//! server will not read it and closes the connection after replying.

use std::fmt;

use thiserror::Error;

use crate::nbd::config::MIN_BLOCK;
use crate::nbd::errno::NbdErrno;
use crate::nbd::proto::{
    NBD_CMD_DISC, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM,
    NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, RequestHeader,
};

/// What requests are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size of the export in bytes.
    pub export_size: u64,
    /// Largest read or write payload accepted.
    pub max_payload: u32,
}

/// The command of a request, for log lines and error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `NBD_CMD_READ`.
    Read,
    /// `NBD_CMD_WRITE`.
    Write,
    /// `NBD_CMD_DISC`.
    Disconnect,
    /// `NBD_CMD_FLUSH`.
    Flush,
    /// `NBD_CMD_TRIM`.
    Trim,
    /// `NBD_CMD_WRITE_ZEROES`.
    WriteZeroes,
    /// Any other command code (including ones this server did not negotiate, like
    /// `NBD_CMD_BLOCK_STATUS`).
    Other(u16),
}

impl Command {
    /// The command a code names.
    pub fn from_code(code: u16) -> Command {
        match code {
            NBD_CMD_READ => Command::Read,
            NBD_CMD_WRITE => Command::Write,
            NBD_CMD_DISC => Command::Disconnect,
            NBD_CMD_FLUSH => Command::Flush,
            NBD_CMD_TRIM => Command::Trim,
            NBD_CMD_WRITE_ZEROES => Command::WriteZeroes,
            other => Command::Other(other),
        }
    }

    /// The flags valid on this command. `NBD_CMD_FLAG_FUA` is valid on every command once
    /// `NBD_FLAG_SEND_FUA` is advertised (the protocol says so; it is ignored where nothing is
    /// written).
    fn valid_flags(self) -> u16 {
        match self {
            Command::WriteZeroes => NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
            _ => NBD_CMD_FLAG_FUA,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Read => f.write_str("READ"),
            Command::Write => f.write_str("WRITE"),
            Command::Disconnect => f.write_str("DISC"),
            Command::Flush => f.write_str("FLUSH"),
            Command::Trim => f.write_str("TRIM"),
            Command::WriteZeroes => f.write_str("WRITE_ZEROES"),
            Command::Other(code) => write!(f, "command {code}"),
        }
    }
}

/// A valid request, ready to be executed on the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read `len` bytes at `offset`.
    Read {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Write the `len`-byte payload that follows the header at `offset`.
    Write {
        /// Byte offset.
        offset: u64,
        /// Length of the payload.
        len: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Make every write already replied to durable.
    Flush,
    /// Discard `len` bytes at `offset`.
    Trim {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
        /// Durable before the reply.
        fua: bool,
    },
    /// Write zeroes over `len` bytes at `offset` (never leaving a hole, so `NBD_CMD_FLAG_NO_HOLE`
    /// needs no special handling).
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Finish in-flight requests, then close.
    Disconnect,
}

impl Request {
    /// Bytes of payload that follow the header on the wire.
    pub fn payload_len(&self) -> u32 {
        match self {
            Request::Write { len, .. } => *len,
            _ => 0,
        }
    }

    /// Bytes of data this request moves in either direction (its cost in the in-flight budget).
    pub fn data_len(&self) -> u32 {
        match self {
            Request::Write { len, .. } | Request::Read { len, .. } => *len,
            _ => 0,
        }
    }

    /// The command, for log lines.
    pub fn command(&self) -> Command {
        match self {
            Request::Read { .. } => Command::Read,
            Request::Write { .. } => Command::Write,
            Request::Flush => Command::Flush,
            Request::Trim { .. } => Command::Trim,
            Request::WriteZeroes { .. } => Command::WriteZeroes,
            Request::Disconnect => Command::Disconnect,
        }
    }
}

/// Why a request was rejected.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// The command is unknown or was not negotiated.
    #[error("unsupported {command}")]
    UnknownCommand {
        /// The command.
        command: Command,
    },
    /// Flags not documented for this command.
    #[error("{command} with invalid flags {flags:#06x}")]
    InvalidFlags {
        /// The command.
        command: Command,
        /// The flags sent.
        flags: u16,
    },
    /// A zero-length data command.
    #[error("{command} of length 0 at offset {offset}")]
    ZeroLength {
        /// The command.
        command: Command,
        /// Byte offset.
        offset: u64,
    },
    /// A read or write larger than the advertised maximum payload.
    #[error("{command} of {len} bytes is larger than the {max}-byte maximum payload")]
    TooLarge {
        /// The command.
        command: Command,
        /// Requested length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// Offset or length not a multiple of the minimum block size.
    #[error("{command} range {offset}+{len} is not aligned to {MIN_BLOCK} bytes")]
    Misaligned {
        /// The command.
        command: Command,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// The range ends beyond the export.
    #[error("{command} range {offset}+{len} ends beyond the {size}-byte export")]
    OutOfRange {
        /// The command.
        command: Command,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
        /// Export size.
        size: u64,
    },
}

impl RequestError {
    /// The error value replied to the client, as the protocol recommends: `ENOSPC` for writes
    /// beyond the end, `EOVERFLOW` for oversized requests, `EINVAL` for everything else.
    pub fn errno(&self) -> NbdErrno {
        match self {
            RequestError::TooLarge { .. } => NbdErrno::Overflow,
            RequestError::OutOfRange {
                command: Command::Write | Command::Trim | Command::WriteZeroes,
                ..
            } => NbdErrno::NoSpc,
            _ => NbdErrno::Inval,
        }
    }
}

/// What to do with the stream after replying to a rejected request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterReject {
    /// Nothing follows the header: read the next request.
    Continue,
    /// This many payload bytes follow the header: read and discard them, then go on.
    Discard(u32),
    /// The payload is too large to read: reply, then close the connection.
    Close,
}

/// A rejected request: the error to reply under its cookie, and what happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Cookie to reply under.
    pub cookie: u64,
    /// Why.
    pub error: RequestError,
    /// What to do with the stream.
    pub then: AfterReject,
}

/// Checks a request header against the export and the server's limits.
pub fn parse_request(header: &RequestHeader, limits: &Limits) -> Result<Request, Rejection> {
    let command = Command::from_code(header.command);
    let (offset, len) = (header.offset, header.length);
    // Only a write carries a payload; it is skipped when it fits the limit, else the stream is lost.
    let then = match command {
        Command::Write if len > limits.max_payload => AfterReject::Close,
        Command::Write => AfterReject::Discard(len),
        _ => AfterReject::Continue,
    };
    let reject = |error| Rejection {
        cookie: header.cookie,
        error,
        then,
    };
    match command {
        // A disconnect is honoured whatever its flags or fields: there is no reply to carry an error.
        Command::Disconnect => return Ok(Request::Disconnect),
        Command::Other(_) => return Err(reject(RequestError::UnknownCommand { command })),
        _ => {}
    }
    if header.flags & !command.valid_flags() != 0 {
        return Err(reject(RequestError::InvalidFlags {
            command,
            flags: header.flags,
        }));
    }
    let fua = header.flags & NBD_CMD_FLAG_FUA != 0;
    if command == Command::Flush {
        // Offset and length are reserved (zero); a flush covers the whole export whatever they say.
        return Ok(Request::Flush);
    }
    if len == 0 {
        return Err(reject(RequestError::ZeroLength { command, offset }));
    }
    if matches!(command, Command::Read | Command::Write) && len > limits.max_payload {
        return Err(reject(RequestError::TooLarge {
            command,
            len,
            max: limits.max_payload,
        }));
    }
    if !offset.is_multiple_of(u64::from(MIN_BLOCK)) || !len.is_multiple_of(MIN_BLOCK) {
        return Err(reject(RequestError::Misaligned { command, offset, len }));
    }
    let inside = offset
        .checked_add(u64::from(len))
        .is_some_and(|end| end <= limits.export_size);
    if !inside {
        return Err(reject(RequestError::OutOfRange {
            command,
            offset,
            len,
            size: limits.export_size,
        }));
    }
    Ok(match command {
        Command::Read => Request::Read { offset, len },
        Command::Write => Request::Write { offset, len, fua },
        Command::Trim => Request::Trim { offset, len, fua },
        _ => Request::WriteZeroes { offset, len, fua },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        export_size: 1 << 20,
        max_payload: 64 << 10,
    };

    fn header(command: u16, flags: u16, offset: u64, length: u32) -> RequestHeader {
        RequestHeader {
            flags,
            command,
            cookie: 42,
            offset,
            length,
        }
    }

    fn rejected(h: RequestHeader) -> Rejection {
        match parse_request(&h, &LIMITS) {
            Err(r) => r,
            Ok(req) => panic!("{h:?} accepted as {req:?}"),
        }
    }

    #[test]
    fn valid_requests_become_typed_commands() {
        let p = |h| parse_request(&h, &LIMITS);
        assert_eq!(
            p(header(NBD_CMD_READ, 0, 4096, 512)),
            Ok(Request::Read {
                offset: 4096,
                len: 512
            })
        );
        assert_eq!(
            p(header(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 64 << 10)),
            Ok(Request::Write {
                offset: 0,
                len: 64 << 10,
                fua: true
            })
        );
        assert_eq!(p(header(NBD_CMD_FLUSH, 0, 0, 0)), Ok(Request::Flush));
        assert_eq!(
            p(header(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 1 << 20)),
            Ok(Request::WriteZeroes {
                offset: 0,
                len: 1 << 20,
                fua: false
            }),
            "write-zeroes carries no payload, so it may exceed max_payload"
        );
        assert_eq!(
            p(header(NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, (1 << 20) - 512, 512)),
            Ok(Request::Trim {
                offset: (1 << 20) - 512,
                len: 512,
                fua: true
            })
        );
        assert_eq!(p(header(NBD_CMD_DISC, 0xffff, 9, 9)), Ok(Request::Disconnect));
    }

    #[test]
    fn invalid_requests_get_the_documented_errors() {
        let r = rejected(header(NBD_CMD_READ, 0, 1 << 20, 512));
        assert_eq!(
            (r.error.errno(), r.then),
            (NbdErrno::Inval, AfterReject::Continue)
        );
        let r = rejected(header(NBD_CMD_WRITE, 0, 1 << 20, 512));
        assert_eq!(
            (r.error.errno(), r.then),
            (NbdErrno::NoSpc, AfterReject::Discard(512))
        );
        let r = rejected(header(NBD_CMD_WRITE, 0, 0, (64 << 10) + 512));
        assert_eq!(
            (r.error.errno(), r.then),
            (NbdErrno::Overflow, AfterReject::Close)
        );
        let r = rejected(header(NBD_CMD_READ, 0, 0, (64 << 10) + 512));
        assert_eq!(
            (r.error.errno(), r.then),
            (NbdErrno::Overflow, AfterReject::Continue)
        );
        let r = rejected(header(NBD_CMD_READ, 0, 100, 512));
        assert!(matches!(r.error, RequestError::Misaligned { .. }));
        let r = rejected(header(NBD_CMD_READ, 0, 0, 0));
        assert!(matches!(r.error, RequestError::ZeroLength { .. }));
        let r = rejected(header(NBD_CMD_READ, NBD_CMD_FLAG_NO_HOLE, 0, 512));
        assert!(matches!(r.error, RequestError::InvalidFlags { .. }));
        let r = rejected(header(7, 0, 0, 512));
        assert_eq!(
            r.error,
            RequestError::UnknownCommand {
                command: Command::Other(7)
            }
        );
        assert_eq!(r.cookie, 42);
        // Offset arithmetic must not overflow.
        let r = rejected(header(NBD_CMD_TRIM, 0, u64::MAX - 511, 1024));
        assert!(matches!(r.error, RequestError::OutOfRange { .. }));
    }
}
