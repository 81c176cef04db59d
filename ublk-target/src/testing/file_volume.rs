//! A [`BlockVolume`] backed by a regular file, with blocking system calls.
//!
//! - read / write: `pread` / `pwrite` (the whole range, retrying short transfers);
//! - flush, and FUA writes: `fdatasync`;
//! - discard: `fallocate(PUNCH_HOLE)`, so discarded ranges read back as zeroes;
//! - write-zeroes: `fallocate(ZERO_RANGE)`, else `PUNCH_HOLE`, else writing zeroes.
//!
//! Each call runs on tokio's blocking pool when the caller is inside a tokio runtime (the ublk
//! target enters one on its queue threads when given one), so a queue keeps many requests in
//! flight; outside a runtime it runs inline.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use replbd_replication::{BlockVolume, VolumeError, VolumeResult, WriteFlags, volume::check_range};

/// Largest buffer of zeroes written at once when the file system cannot zero a range itself.
const ZERO_CHUNK: u64 = 1 << 20;

/// A volume stored in a file.
#[derive(Clone, Debug)]
pub struct FileVolume {
    file: Arc<File>,
    size: u64,
}

impl FileVolume {
    /// Opens (creating if needed) the file at `path`. With `size`, the file is first extended or
    /// truncated to it; the volume's size is the file's, rounded down to 512 bytes.
    pub fn open(path: &Path, size: Option<u64>) -> io::Result<FileVolume> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(size.is_some())
            .truncate(false)
            .open(path)?;
        if let Some(size) = size {
            file.set_len(size)?;
        }
        let size = file.metadata()?.len() / 512 * 512;
        Ok(FileVolume {
            file: Arc::new(file),
            size,
        })
    }

    async fn blocking<T, F>(&self, f: F) -> VolumeResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&File) -> io::Result<T> + Send + 'static,
    {
        let file = self.file.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(move || f(&file))
                .await
                .map_err(|e| VolumeError::Io(io::Error::other(e)))?
                .map_err(VolumeError::Io),
            Err(_) => f(&file).map_err(VolumeError::Io),
        }
    }
}

fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let (off, len) = (
        libc::off_t::try_from(offset).map_err(io::Error::other)?,
        libc::off_t::try_from(len).map_err(io::Error::other)?,
    );
    // SAFETY: fallocate takes a descriptor we own and plain integers.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(
        file,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS))
}

fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    match fallocate(
        file,
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    ) {
        Err(e) if unsupported(&e) => {}
        other => return other,
    }
    match punch_hole(file, offset, len) {
        Err(e) if unsupported(&e) => {}
        other => return other,
    }
    let zeroes = vec![0u8; len.min(ZERO_CHUNK) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZERO_CHUNK) as usize;
        file.write_all_at(&zeroes[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

impl BlockVolume for FileVolume {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read(&self, offset: u64, len: u32) -> VolumeResult<Bytes> {
        check_range(offset, len.into(), self.size)?;
        self.blocking(move |f| {
            let mut buf = vec![0u8; len as usize];
            f.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write(&self, offset: u64, data: Bytes, flags: WriteFlags) -> VolumeResult<()> {
        check_range(offset, data.len() as u64, self.size)?;
        self.blocking(move |f| {
            f.write_all_at(&data, offset)?;
            if flags.fua {
                f.sync_data()?;
            }
            Ok(())
        })
        .await
    }

    async fn flush(&self) -> VolumeResult<()> {
        self.blocking(|f| f.sync_data()).await
    }

    async fn discard(&self, offset: u64, len: u64) -> VolumeResult<()> {
        check_range(offset, len, self.size)?;
        self.blocking(move |f| match punch_hole(f, offset, len) {
            Err(e) if unsupported(&e) => zero_range(f, offset, len),
            other => other,
        })
        .await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, flags: WriteFlags) -> VolumeResult<()> {
        check_range(offset, len, self.size)?;
        self.blocking(move |f| {
            zero_range(f, offset, len)?;
            if flags.fua {
                f.sync_data()?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(v: &FileVolume) {
        v.write(4096, Bytes::from(vec![5u8; 8192]), WriteFlags { fua: true })
            .await
            .unwrap();
        assert_eq!(&v.read(4096, 8192).await.unwrap()[..], &[5u8; 8192][..]);
        v.discard(4096, 4096).await.unwrap();
        assert_eq!(&v.read(4096, 4096).await.unwrap()[..], &[0u8; 4096][..]);
        assert_eq!(&v.read(8192, 4096).await.unwrap()[..], &[5u8; 4096][..]);
        v.write_zeroes(8192, 4096, WriteFlags::default()).await.unwrap();
        assert_eq!(&v.read(8192, 4096).await.unwrap()[..], &[0u8; 4096][..]);
        v.flush().await.unwrap();
        assert_eq!(v.read(v.size(), 512).await.unwrap_err().errno(), libc::EINVAL);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_volume_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let v = FileVolume::open(&dir.path().join("vol"), Some(1 << 20)).unwrap();
        assert_eq!(v.size(), 1 << 20);
        exercise(&v).await;
    }

    #[test]
    fn file_volume_inline_without_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        let v = FileVolume::open(&path, Some((1 << 20) + 100)).unwrap();
        assert_eq!(v.size(), 1 << 20);
        smol::block_on(exercise(&v));
        smol::block_on(v.write(0, Bytes::from(vec![9u8; 512]), WriteFlags::default())).unwrap();
        // Reopening without a size keeps the content.
        let again = FileVolume::open(&path, None).unwrap();
        assert_eq!(again.size(), 1 << 20);
        let head = smol::block_on(again.read(0, 512)).unwrap();
        assert_eq!(&head[..], &[9u8; 512][..]);
    }
}
