//! A block device opened with `O_DIRECT`, as a database opens its volume: a write is answered once
//! the device (here replbd's ublk front end) acknowledged it, not once it reached the page cache,
//! and a read sees what the device returns. A flush is `fdatasync`, which the kernel turns into a
//! `FLUSH` request to the device.
//!
//! The calls block, so each runs on tokio's blocking pool; a request the workload gives up on
//! (timeout) finishes there later or fails when the device goes away.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

/// Alignment `O_DIRECT` needs for buffers, offsets and lengths (the page size covers every logical
/// block size).
const ALIGN: usize = 4096;

/// An open block device.
pub struct BlockDevice {
    file: Arc<File>,
    size: u64,
}

/// A zeroed buffer of `len` bytes at an [`ALIGN`]-aligned address: a vector with room to spare and
/// the aligned window into it.
struct Aligned {
    raw: Vec<u8>,
    at: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let raw = vec![0u8; len + ALIGN];
        let at = raw.as_ptr().align_offset(ALIGN);
        Aligned { raw, at, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.raw[self.at..self.at + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + self.len]
    }
}

fn check_aligned(offset: u64, len: usize) -> std::io::Result<()> {
    if !offset.is_multiple_of(ALIGN as u64) || !len.is_multiple_of(ALIGN) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("O_DIRECT I/O at {offset}+{len} is not {ALIGN}-byte aligned"),
        ));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("block I/O task failed: {e}")))?
}

impl BlockDevice {
    /// Opens `path` for direct reading and writing.
    pub async fn open(path: &Path) -> std::io::Result<BlockDevice> {
        let path = path.to_owned();
        blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)?;
            let size = file.seek(SeekFrom::End(0))?;
            Ok(BlockDevice {
                file: Arc::new(file),
                size,
            })
        })
        .await
    }

    /// The device's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `data` at `offset` (both aligned).
    pub async fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        check_aligned(offset, data.len())?;
        let mut buf = Aligned::new(data.len());
        buf.bytes_mut().copy_from_slice(data);
        let file = Arc::clone(&self.file);
        blocking(move || file.write_all_at(buf.bytes(), offset)).await
    }

    /// Reads `len` bytes at `offset` (both aligned).
    pub async fn read(&self, offset: u64, len: u32) -> std::io::Result<Vec<u8>> {
        let len = len as usize;
        check_aligned(offset, len)?;
        let file = Arc::clone(&self.file);
        blocking(move || {
            let mut buf = Aligned::new(len);
            file.read_exact_at(buf.bytes_mut(), offset)?;
            Ok(buf.bytes().to_vec())
        })
        .await
    }

    /// `fdatasync`: every write answered before is durable on return.
    pub async fn flush(&self) -> std::io::Result<()> {
        let file = Arc::clone(&self.file);
        blocking(move || file.sync_data()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_sized() {
        for len in [4096, 8192, 1 << 20] {
            let mut b = Aligned::new(len);
            assert_eq!(b.bytes().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.bytes_mut().len(), len);
        }
        assert!(check_aligned(4096, 4096).is_ok());
        assert!(check_aligned(512, 4096).is_err());
        assert!(check_aligned(0, 100).is_err());
    }

    #[tokio::test]
    async fn a_regular_file_reads_back_what_was_written() {
        // tmpfs refuses O_DIRECT; a file on the disk the tests run from usually accepts it.
        let dir = tempfile::Builder::new()
            .prefix("replbd-faults-blockdev.")
            .tempdir_in(std::env::current_dir().unwrap())
            .unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let dev = match BlockDevice::open(&path).await {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                eprintln!("skipped: the filesystem refuses O_DIRECT ({e})");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(dev.size(), 1 << 20);
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        dev.write(4096, &data).await.unwrap();
        dev.flush().await.unwrap();
        assert_eq!(dev.read(4096, 8192).await.unwrap(), data);
        assert!(dev.write(100, &data).await.is_err(), "misaligned");
    }
}
