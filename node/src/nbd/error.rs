//! Errors of the NBD front end.
//!
//! [`NbdError`] is what the embedding program sees: the server could not start or is misconfigured.
//! [`ConnectionError`] is why one client's connection ended abnormally; the server logs it with the
//! peer and goes on serving everyone else, so none of these is ever fatal to the server.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::nbd::proto::WireError;
use crate::nbd::request::RequestError;

/// The NBD server could not be set up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NbdError {
    /// A limit in the configuration is unusable.
    #[error("invalid NBD configuration: {field}: {reason}")]
    InvalidConfig {
        /// The configuration field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The export name cannot be used on the wire.
    #[error("invalid NBD export name {name:?}: {reason}")]
    InvalidExportName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A listen address could not be parsed.
    #[error(
        "invalid NBD listen address {input:?}: expected an absolute unix socket path (/run/replbd/r0.nbd, \
         unix:/run/replbd/r0.nbd) or HOST:PORT (127.0.0.1:10809)"
    )]
    InvalidListenAddr {
        /// What was given.
        input: String,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen for NBD clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another server is already listening on the unix socket path.
    #[error(
        "NBD socket {} is in use by another running server: stop it or choose another path",
        path.display()
    )]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The unix socket path exists and is not a socket, so it is not removed.
    #[error("cannot create NBD socket {}: the path exists and is not a socket", path.display())]
    PathNotSocket {
        /// The path.
        path: PathBuf,
    },
}

/// The phase of a connection, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Option negotiation.
    Handshake,
    /// Requests and replies.
    Transmission,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Handshake => "handshake",
            Phase::Transmission => "transmission",
        })
    }
}

/// Why one client connection ended abnormally.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The socket failed.
    #[error("I/O error during {phase}: {source}")]
    Io {
        /// Phase of the connection.
        phase: Phase,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The client closed the connection in the middle of a message.
    #[error("truncated {what} during {phase}: the client closed the connection mid-message")]
    Truncated {
        /// Phase of the connection.
        phase: Phase,
        /// The message that was cut.
        what: &'static str,
    },
    /// A message could not be decoded (wrong magic): the client does not speak NBD or is out of step.
    #[error("malformed message during {phase}: {source}")]
    Malformed {
        /// Phase of the connection.
        phase: Phase,
        /// What was wrong.
        #[source]
        source: WireError,
    },
    /// The client set client flags this server does not know (the protocol requires closing).
    #[error("unknown client flags {flags:#x}")]
    UnknownClientFlags {
        /// The client's flags.
        flags: u32,
    },
    /// An option's data is larger than any valid option.
    #[error("option {option} announces {len} bytes of data, more than the {max} allowed")]
    OptionTooLarge {
        /// The option code.
        option: u32,
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// `NBD_OPT_EXPORT_NAME` named an export that does not exist; that option cannot be refused, so
    /// the protocol requires closing.
    #[error("NBD_OPT_EXPORT_NAME asked for unknown export {requested:?}")]
    UnknownExport {
        /// The name the client asked for (lossily decoded).
        requested: String,
    },
    /// The client did not finish the handshake in time.
    #[error("handshake not finished within {after:?}")]
    HandshakeTimeout {
        /// The timeout.
        after: Duration,
    },
    /// A request was invalid in a way that loses the stream's framing (a write whose payload is too
    /// large to read); the error was replied, then the connection closed.
    #[error("request rejected, connection closed: {source}")]
    FatalRequest {
        /// Cookie of the request.
        cookie: u64,
        /// What was wrong.
        #[source]
        source: RequestError,
    },
}
