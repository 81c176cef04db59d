//! The local backing store of a volume: a file or block device through io_uring ([`UringStore`]), or
//! memory for tests and simulation ([`MemStore`]). [`Store`] is the one type the engine uses; with the
//! `fault-injection` feature it can be told to fail reads, writes or flushes.

pub mod aligned;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod mem;
pub mod uring;

use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use mem::MemStore;
pub use uring::UringStore;

enum Backend {
    Uring(UringStore),
    Mem(Arc<MemStore>),
}

/// A volume's local data.
pub struct Store {
    backend: Backend,
    #[cfg(feature = "fault-injection")]
    faults: std::sync::Mutex<fault::FaultPlan>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Store {
    fn with(backend: Backend) -> Store {
        Store {
            backend,
            #[cfg(feature = "fault-injection")]
            faults: std::sync::Mutex::default(),
        }
    }

    /// Opens a file or block device.
    pub fn open(path: &Path) -> io::Result<Store> {
        Ok(Store::with(Backend::Uring(UringStore::open(path)?)))
    }

    /// Opens a file or block device with buffered I/O (no `O_DIRECT`).
    pub fn open_buffered(path: &Path) -> io::Result<Store> {
        Ok(Store::with(Backend::Uring(UringStore::open_buffered(path)?)))
    }

    /// Wraps an in-memory store.
    pub fn memory(mem: Arc<MemStore>) -> Store {
        Store::with(Backend::Mem(mem))
    }

    /// Size of the file, device or memory in bytes.
    pub fn size(&self) -> u64 {
        match &self.backend {
            Backend::Uring(u) => u.size(),
            Backend::Mem(m) => m.size(),
        }
    }

    /// A description for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Uring(u) => u.path().display().to_string(),
            Backend::Mem(_) => "memory".to_string(),
        }
    }

    /// True when a flush has nothing to do (memory-backed files: there is no cache below the page
    /// cache to empty; block devices without a volatile write cache), so barriers can be
    /// acknowledged without a round trip.
    pub fn flush_is_noop(&self) -> bool {
        match &self.backend {
            Backend::Uring(u) => u.flush_is_noop(),
            Backend::Mem(_) => false,
        }
    }

    /// The injected-fault plan.
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> std::sync::MutexGuard<'_, fault::FaultPlan> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits out the plan's delay (the lock is not held while waiting).
    #[cfg(feature = "fault-injection")]
    async fn injected_delay(&self) {
        let delay = self.faults().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        #[cfg(feature = "fault-injection")]
        self.faults().check_read(offset, len as u64)?;
        match &self.backend {
            Backend::Uring(u) => u.read(offset, len).await,
            Backend::Mem(m) => m.read(offset, len).await,
        }
    }

    /// Writes `data` at `offset`; with `fua` it is durable on return.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.injected_delay().await;
        #[cfg(feature = "fault-injection")]
        self.faults().check_write(offset, data.len() as u64)?;
        match &self.backend {
            Backend::Uring(u) => u.write(offset, data, fua).await,
            Backend::Mem(m) => m.write(offset, data, fua).await,
        }
    }

    /// Makes every completed write durable.
    pub async fn flush(&self) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.injected_delay().await;
        #[cfg(feature = "fault-injection")]
        self.faults().check_flush()?;
        match &self.backend {
            Backend::Uring(u) => u.flush().await,
            Backend::Mem(m) => m.flush().await,
        }
    }

    /// Discards a range (its content becomes zeroes on files and memory).
    pub async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.faults().check_write(offset, len)?;
        match &self.backend {
            Backend::Uring(u) => u.discard(offset, len).await,
            Backend::Mem(m) => m.zero(offset, len).await,
        }
    }

    /// Writes zeroes over a range.
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.faults().check_write(offset, len)?;
        match &self.backend {
            Backend::Uring(u) => u.write_zeroes(offset, len).await,
            Backend::Mem(m) => m.zero(offset, len).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, dir: &str) -> Option<std::path::PathBuf> {
        let d = Path::new(dir);
        if !d.is_dir() {
            return None;
        }
        let p = d.join(format!("replbd-store-{name}-{}", std::process::id()));
        std::fs::File::create(&p).ok()?.set_len(8 << 20).ok()?;
        Some(p)
    }

    async fn exercise(path: &Path, direct: bool) {
        let store = if direct {
            Store::open(path).unwrap()
        } else {
            Store::open_buffered(path).unwrap()
        };
        assert_eq!(store.size(), 8 << 20);
        // Unaligned source buffer (offset 1 into a Vec) exercises the aligned copy under O_DIRECT.
        let mut raw = vec![0u8; 8193];
        raw[1..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        let data = Bytes::from(raw).slice(1..);
        store.write(4096, data.clone(), false).await.unwrap();
        store
            .write(1 << 20, Bytes::from(vec![9u8; 512]), true)
            .await
            .unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.read(4096, 8192).await.unwrap(), data);
        store.write_zeroes(4096, 4096).await.unwrap();
        let back = store.read(4096, 8192).await.unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0));
        assert_eq!(&back[4096..], &data[4096..]);
        store.discard(8192, 4096).await.unwrap();
        assert!(store.read(8192, 4096).await.unwrap().iter().all(|&b| b == 0));
        // Many concurrent operations (more than the ring's depth).
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for i in 0..600u64 {
            let s = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let off = (i % 1000) * 4096 + (2 << 20);
                s.write(off, Bytes::from(vec![(i % 256) as u8; 4096]), false)
                    .await
                    .unwrap();
                assert_eq!(s.read(off, 4096).await.unwrap()[0], (i % 256) as u8);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let err = store.read(8 << 20, 4096).await.unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::UnexpectedEof,
            "reading past the end: {err}"
        );
        // The file truncated under the open store: a read of the lost part is an error, never
        // zeroes that look like data; what is left still reads back.
        let resize = |len: u64| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(len))
                .unwrap();
        };
        resize(4 << 20);
        let err = store.read(6 << 20, 4096).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        let straddling = store.read((4 << 20) - 4096, 8192).await.unwrap_err();
        assert!(
            straddling.to_string().contains("ends at byte 4194304"),
            "{straddling}"
        );
        assert_eq!(store.read(1 << 20, 512).await.unwrap()[..], [9u8; 512][..]);
        resize(8 << 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn io_uring_store_on_a_disk_filesystem_direct_and_buffered() {
        let Some(p) = temp("disk", "/var/tmp") else {
            println!("SKIPPED: /var/tmp is not available");
            return;
        };
        let direct = UringStore::open(&p).unwrap().is_direct();
        exercise(&p, true).await;
        // The io_uring path through the page cache.
        assert!(!UringStore::open_buffered(&p).unwrap().is_memory_backed());
        exercise(&p, false).await;
        let _ = std::fs::remove_file(&p);
        println!("O_DIRECT accepted by /var/tmp: {direct}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_backed_files_are_served_in_place() {
        let Some(p) = temp("shm", "/dev/shm") else {
            println!("SKIPPED: /dev/shm is not available");
            return;
        };
        assert!(UringStore::open(&p).unwrap().is_memory_backed());
        exercise(&p, false).await;
        exercise(&p, true).await;
        let _ = std::fs::remove_file(&p);
    }
}
