//! A minimal NBD client: fixed newstyle handshake with `NBD_OPT_GO`, then simple-reply `READ`,
//! `WRITE` and `FLUSH`, one request at a time.
//!
//! The workload needs thousands of operations with an exact answer for each (acknowledged, error,
//! or no answer), which a process per operation (`qemu-io`) cannot give cheaply. One request at a
//! time per connection keeps the answer of each write unambiguous; concurrency comes from several
//! connections (the server advertises `CAN_MULTI_CONN`).

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::UnixStream;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const INFO_EXPORT: u16 = 0;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

/// Why a request did not succeed.
#[derive(Debug)]
pub enum NbdError {
    /// The server answered with this errno; the connection is still usable.
    Errno(u32),
    /// The connection broke or the server broke the protocol: no answer.
    Io(std::io::Error),
}

impl std::fmt::Display for NbdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NbdError::Errno(e) => write!(f, "NBD error {e}"),
            NbdError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NbdError {}

impl From<std::io::Error> for NbdError {
    fn from(e: std::io::Error) -> Self {
        NbdError::Io(e)
    }
}

fn protocol(what: String) -> NbdError {
    NbdError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

/// One connection to an export.
pub struct NbdClient {
    stream: BufStream<UnixStream>,
    size: u64,
    cookie: u64,
}

impl NbdClient {
    /// Connects to the export `name` at the unix socket `path`.
    pub async fn connect(path: &Path, name: &str) -> Result<NbdClient, NbdError> {
        let mut stream = BufStream::new(UnixStream::connect(path).await?);
        if stream.read_u64().await? != NBDMAGIC || stream.read_u64().await? != IHAVEOPT {
            return Err(protocol("not a newstyle NBD server".into()));
        }
        let flags = stream.read_u16().await?;
        if flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(protocol("the server is not fixed newstyle".into()));
        }
        stream
            .write_u32(u32::from(flags & (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)))
            .await?;
        let name_len = u32::try_from(name.len()).map_err(|_| protocol("export name too long".into()))?;
        stream.write_u64(IHAVEOPT).await?;
        stream.write_u32(OPT_GO).await?;
        stream.write_u32(4 + name_len + 2).await?;
        stream.write_u32(name_len).await?;
        stream.write_all(name.as_bytes()).await?;
        stream.write_u16(0).await?;
        stream.flush().await?;
        let mut size = None;
        loop {
            if stream.read_u64().await? != OPT_REPLY_MAGIC {
                return Err(protocol("bad option reply magic".into()));
            }
            let _option = stream.read_u32().await?;
            let kind = stream.read_u32().await?;
            let len = stream.read_u32().await?;
            let mut data = vec![0u8; len as usize];
            stream.read_exact(&mut data).await?;
            match kind {
                REP_ACK => break,
                REP_INFO if data.len() >= 12 && u16::from_be_bytes([data[0], data[1]]) == INFO_EXPORT => {
                    let mut s = [0u8; 8];
                    s.copy_from_slice(&data[2..10]);
                    size = Some(u64::from_be_bytes(s));
                }
                REP_INFO => {}
                k if k & 0x8000_0000 != 0 => {
                    return Err(protocol(format!(
                        "NBD_OPT_GO refused ({k:#x}): {}",
                        String::from_utf8_lossy(&data)
                    )));
                }
                _ => {}
            }
        }
        let size = size.ok_or_else(|| protocol("no export size in the NBD_OPT_GO reply".into()))?;
        Ok(NbdClient {
            stream,
            size,
            cookie: 0,
        })
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    async fn request(&mut self, command: u16, offset: u64, len: u32, payload: &[u8]) -> Result<(), NbdError> {
        self.cookie += 1;
        self.stream.write_u32(REQUEST_MAGIC).await?;
        self.stream.write_u16(0).await?;
        self.stream.write_u16(command).await?;
        self.stream.write_u64(self.cookie).await?;
        self.stream.write_u64(offset).await?;
        self.stream.write_u32(len).await?;
        self.stream.write_all(payload).await?;
        self.stream.flush().await?;
        if command == CMD_DISC {
            return Ok(());
        }
        if self.stream.read_u32().await? != SIMPLE_REPLY_MAGIC {
            return Err(protocol("bad reply magic".into()));
        }
        let errno = self.stream.read_u32().await?;
        if self.stream.read_u64().await? != self.cookie {
            return Err(protocol("reply to another request".into()));
        }
        if errno != 0 {
            return Err(NbdError::Errno(errno));
        }
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), NbdError> {
        let len = u32::try_from(data.len()).map_err(|_| protocol("write too large".into()))?;
        self.request(CMD_WRITE, offset, len, data).await
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, NbdError> {
        self.request(CMD_READ, offset, len, &[]).await?;
        let mut data = vec![0u8; len as usize];
        self.stream.read_exact(&mut data).await?;
        Ok(data)
    }

    /// Flushes: every write answered before is durable when this returns `Ok`.
    pub async fn flush(&mut self) -> Result<(), NbdError> {
        self.request(CMD_FLUSH, 0, 0, &[]).await
    }

    /// Says goodbye (best effort) and closes the connection.
    pub async fn disconnect(mut self) {
        let _ = self.request(CMD_DISC, 0, 0, &[]).await;
    }
}
