//! How the workload reaches the Primary: the NBD front end on a unix socket (on the host), or the
//! ublk front end's `/dev/ublkbN` (inside the VM suite, where the kernel has ublk).
//!
//! The two answer differently when something goes wrong, and the history must not claim more than
//! the answer says. An NBD error reply is the daemon's own verdict on the request
//! ([`ClientError::Refused`]); the connection breaking leaves the outcome open. Through a block
//! device every error is the kernel's `EIO`, whether the daemon refused the write or died after
//! writing it to some replicas, so every block-device error leaves the outcome open
//! ([`ClientError::Lost`]).

use std::path::{Path, PathBuf};

use crate::blockdev::BlockDevice;
use crate::nbd::{NbdClient, NbdError};

/// Which front end the nodes serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FrontEnd {
    /// NBD on a unix socket in the node's directory.
    Nbd,
    /// `/dev/ublkbN`, `N` being the node's id.
    Ublk,
}

impl FrontEnd {
    /// The path the workload opens to reach node `id` (whose directory is `dir`).
    pub fn export(self, dir: &Path, id: usize) -> PathBuf {
        match self {
            FrontEnd::Nbd => dir.join("r0.nbd"),
            FrontEnd::Ublk => PathBuf::from(format!("/dev/ublkb{id}")),
        }
    }

    /// The `[resource.r0.front-end]` table of node `id`'s configuration.
    pub fn config(self, dir: &Path, id: usize) -> String {
        match self {
            FrontEnd::Nbd => format!(
                "kind = \"nbd\"\nsocket = \"{}\"\n",
                self.export(dir, id).display()
            ),
            FrontEnd::Ublk => format!("kind = \"ublk\"\ndevice = {id}\n"),
        }
    }
}

/// Why a request did not succeed.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon answered with this errno: the request was not carried out.
    Refused(u32),
    /// No verdict: the connection or device failed; the request may or may not have taken effect.
    Lost(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Refused(e) => write!(f, "refused with errno {e}"),
            ClientError::Lost(why) => write!(f, "{why}"),
        }
    }
}

impl From<NbdError> for ClientError {
    fn from(e: NbdError) -> ClientError {
        match e {
            NbdError::Errno(errno) => ClientError::Refused(errno),
            NbdError::Io(e) => ClientError::Lost(e.to_string()),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Lost(e.to_string())
    }
}

/// One open connection to a Primary's front end.
pub enum Client {
    /// An NBD connection.
    Nbd(NbdClient),
    /// An open block device.
    Block(BlockDevice),
}

impl Client {
    /// Connects to the export at `path` through `front`.
    pub async fn connect(front: FrontEnd, path: &Path) -> Result<Client, ClientError> {
        Ok(match front {
            FrontEnd::Nbd => Client::Nbd(NbdClient::connect(path, crate::cluster::RESOURCE).await?),
            FrontEnd::Ublk => Client::Block(BlockDevice::open(path).await?),
        })
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Client::Nbd(c) => c.size(),
            Client::Block(b) => b.size(),
        }
    }

    /// Writes `data` at `offset`.
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        match self {
            Client::Nbd(c) => Ok(c.write(offset, data).await?),
            Client::Block(b) => Ok(b.write(offset, data).await?),
        }
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, ClientError> {
        match self {
            Client::Nbd(c) => Ok(c.read(offset, len).await?),
            Client::Block(b) => Ok(b.read(offset, len).await?),
        }
    }

    /// Flushes: every write answered before is durable when this returns `Ok`.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Client::Nbd(c) => Ok(c.flush().await?),
            Client::Block(b) => Ok(b.flush().await?),
        }
    }

    /// Closes the connection (saying goodbye where the protocol has one).
    pub async fn disconnect(self) {
        match self {
            Client::Nbd(c) => c.disconnect().await,
            Client::Block(b) => drop(b),
        }
    }
}
