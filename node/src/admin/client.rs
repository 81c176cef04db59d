//! The command side of the admin socket: sends one request and reads the reply (or the event
//! stream). Blocking on purpose: a command does one exchange and exits, so it needs no runtime.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::event::NodeEvent;
use super::protocol::{Reply, Request, to_line};

/// Why the daemon could not be asked.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot reach replbd-node at {}: is the daemon running? ({source})", path.display())]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed mid-way.
    #[error("lost the connection to replbd-node at {}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's reply could not be decoded (a different version?).
    #[error("replbd-node at {} sent a reply this command does not understand: {source}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The daemon closed the connection without a reply.
    #[error("replbd-node at {} closed the connection without replying", path.display())]
    NoReply {
        /// The socket.
        path: PathBuf,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A connection to the daemon's admin socket.
pub struct AdminClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AdminClient {
    /// Connects to the daemon at `path`.
    pub fn connect(path: &Path) -> Result<AdminClient, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            path: path.to_owned(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(unreachable)?;
        let writer = stream.try_clone().map_err(unreachable)?;
        Ok(AdminClient {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let line = to_line(request).map_err(|source| ClientError::Protocol {
            path: self.path.clone(),
            source,
        })?;
        self.writer.write_all(line.as_bytes()).map_err(|e| self.io(e))
    }

    fn receive(&mut self) -> Result<Reply, ClientError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(ClientError::NoReply {
                path: self.path.clone(),
            });
        }
        serde_json::from_str(&line).map_err(|source| ClientError::Protocol {
            path: self.path.clone(),
            source,
        })
    }

    /// Sends `request` and returns the daemon's reply; an error reply becomes
    /// [`ClientError::Refused`] with the daemon's message.
    pub fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        self.send(request)?;
        match self.receive()? {
            Reply::Error { error } => Err(ClientError::Refused(error)),
            reply => Ok(reply),
        }
    }

    /// Subscribes to state changes and calls `each` for every event (first the `exists` lines)
    /// until it returns `false` or the daemon closes the stream.
    pub fn events(&mut self, mut each: impl FnMut(&NodeEvent) -> bool) -> Result<(), ClientError> {
        self.request(&Request::Events)?;
        loop {
            match self.receive() {
                Ok(Reply::Event { event }) => {
                    if !each(&event) {
                        return Ok(());
                    }
                }
                Ok(Reply::Error { error }) => return Err(ClientError::Refused(error)),
                Ok(_) => {}
                Err(ClientError::NoReply { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
