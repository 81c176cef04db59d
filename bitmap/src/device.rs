//! Where metadata lives: a file or block device (external metadata, or internal metadata at the end of
//! the data device), or memory for tests.
//!
//! Metadata I/O is small, 4 KiB aligned and rare compared with data I/O (an activity-log transaction
//! when a new 4 MiB extent becomes hot, bitmap blocks when an extent leaves the log), so it is plain
//! positional I/O followed by `fdatasync`; the ordering arguments in [`crate::meta`] rely only on
//! "a `flush` that returns makes every earlier completed write durable".

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A byte-addressed device holding a metadata area.
pub trait MetaDevice: Send + Sync {
    /// Size of the device in bytes.
    fn len(&self) -> u64;
    /// True when the device holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`; not durable until [`flush`](Self::flush) returns.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;
    /// A name for messages (the path).
    fn describe(&self) -> String;
}

/// A metadata file or block device.
pub struct FileDevice {
    file: File,
    len: u64,
    path: PathBuf,
}

impl FileDevice {
    /// Opens an existing file or block device read-write.
    pub fn open(path: &Path) -> io::Result<FileDevice> {
        Self::open_with(path, true)
    }

    /// Opens an existing file or block device read-only (inspection: `dump`, `check`).
    pub fn open_read_only(path: &Path) -> io::Result<FileDevice> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, write: bool) -> io::Result<FileDevice> {
        let mut file = OpenOptions::new().read(true).write(write).open(path)?;
        // Seeking to the end gives the size of regular files and block devices alike.
        let len = file.seek(SeekFrom::End(0))?;
        Ok(FileDevice {
            file,
            len,
            path: path.to_path_buf(),
        })
    }

    /// Creates (or truncates) a regular file of `len` bytes for external metadata.
    pub fn create(path: &Path, len: u64) -> io::Result<FileDevice> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len)?;
        Ok(FileDevice {
            file,
            len,
            path: path.to_path_buf(),
        })
    }
}

impl MetaDevice for FileDevice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Metadata in memory, for tests and tools. Every write is immediately "durable".
pub struct MemDevice {
    bytes: Mutex<Vec<u8>>,
}

impl MemDevice {
    /// A zero-filled device of `len` bytes.
    pub fn new(len: u64) -> MemDevice {
        MemDevice {
            bytes: Mutex::new(vec![0; len as usize]),
        }
    }

    /// A device holding `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> MemDevice {
        MemDevice {
            bytes: Mutex::new(bytes),
        }
    }

    /// A copy of the device's content.
    pub fn snapshot(&self) -> Vec<u8> {
        lock(&self.bytes).clone()
    }

    /// Applies `f` to the raw bytes (tests use it to corrupt blocks).
    pub fn modify(&self, f: impl FnOnce(&mut [u8])) {
        f(&mut lock(&self.bytes));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bounds(len: usize, offset: u64, n: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let end = start.checked_add(n).filter(|&e| e <= len);
    end.map(|e| start..e)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "beyond the end of the device"))
}

impl MetaDevice for MemDevice {
    fn len(&self) -> u64 {
        lock(&self.bytes).len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = lock(&self.bytes);
        let r = bounds(bytes.len(), offset, buf.len())?;
        buf.copy_from_slice(&bytes[r]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut bytes = lock(&self.bytes);
        let r = bounds(bytes.len(), offset, buf.len())?;
        bytes[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

impl<T: MetaDevice + ?Sized> MetaDevice for std::sync::Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}
