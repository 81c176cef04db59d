//! A minimal blocking NBD client (fixed newstyle, `NBD_OPT_EXPORT_NAME`, simple replies): one
//! request at a time, which is what the checker needs — every write's outcome is known before the
//! next one starts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use replbd_node::nbd::proto::{
    IHAVEOPT, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_MAGIC, NBD_OPT_EXPORT_NAME,
    NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC,
};

const CMD_WRITE: u16 = 1;
const CMD_FLUSH: u16 = 3;

/// How a request ended.
#[derive(Debug)]
pub enum Outcome {
    /// The server acknowledged it.
    Done,
    /// The server answered with an error (`errno`).
    Failed(u32),
}

/// One connection to an export.
pub struct Client {
    s: UnixStream,
    handle: u64,
    /// The export's size in bytes.
    pub size: u64,
}

fn read_u64(s: &mut UnixStream) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

impl Client {
    /// Connects to the export `name` on the unix socket `path`.
    pub fn connect(path: &Path, name: &str) -> Result<Client> {
        let mut s = UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        if read_u64(&mut s)? != NBD_MAGIC || read_u64(&mut s)? != IHAVEOPT {
            bail!("{} is not an NBD server (bad greeting)", path.display());
        }
        let mut flags = [0u8; 2];
        s.read_exact(&mut flags)?;
        s.write_all(&(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES).to_be_bytes())?;
        let mut opt = Vec::new();
        opt.extend_from_slice(&IHAVEOPT.to_be_bytes());
        opt.extend_from_slice(&NBD_OPT_EXPORT_NAME.to_be_bytes());
        opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
        opt.extend_from_slice(name.as_bytes());
        s.write_all(&opt)?;
        let size = read_u64(&mut s).context("the server closed instead of opening the export")?;
        s.read_exact(&mut flags)?;
        Ok(Client { s, handle: 0, size })
    }

    fn request(&mut self, cmd: u16, offset: u64, len: u32, data: &[u8]) -> Result<Outcome> {
        self.handle += 1;
        let mut h = Vec::with_capacity(28 + data.len());
        h.extend_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        h.extend_from_slice(&cmd.to_be_bytes());
        h.extend_from_slice(&self.handle.to_be_bytes());
        h.extend_from_slice(&offset.to_be_bytes());
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(data);
        self.s.write_all(&h)?;
        let mut r = [0u8; 16];
        self.s.read_exact(&mut r)?;
        let magic = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
        let error = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
        let handle = u64::from_be_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
        if magic != NBD_SIMPLE_REPLY_MAGIC || handle != self.handle {
            bail!("bad NBD reply (magic {magic:#x}, handle {handle})");
        }
        if error != 0 {
            return Ok(Outcome::Failed(error));
        }
        Ok(Outcome::Done)
    }

    /// Writes `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<Outcome> {
        self.request(CMD_WRITE, offset, data.len() as u32, data)
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<Outcome> {
        self.request(CMD_FLUSH, 0, 0, &[])
    }
}
