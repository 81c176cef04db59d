//! The backing store on a file or block device, through io_uring.
//!
//! No thread of its own: the task that starts an operation pushes its SQE and submits under a mutex,
//! then reaps whatever completions are already there — operations the kernel finishes during submit
//! (cached or memory-backed I/O) complete without any wake-up. Completions that arrive later
//! increment an eventfd registered with the ring; a task watching it through the tokio reactor reaps
//! them. An operation is thus one `io_uring_enter` plus, for asynchronous devices, one reactor wake —
//! no hand-off to another thread.
//!
//! Files are opened with `O_DIRECT` so that a completed write is in the device, not the page cache;
//! where the filesystem refuses `O_DIRECT` the store falls back to buffered I/O, says so once, and
//! relies on `fdatasync` for durability. Memory-backed files (tmpfs) have no device to wait for: they
//! are read and written with plain `pread`/`pwrite` in place, which is cheaper than any queue. Writes
//! with FUA use `RWF_DSYNC`. Flush is `IORING_OP_FSYNC` with `DATASYNC`, which covers every write that
//! *completed* before it was issued — exactly the writes acknowledged before a flush request.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::aligned::{AlignedBuf, is_aligned};

/// Most operations in the ring at once; more wait in a queue.
const MAX_IN_FLIGHT: usize = 256;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;
const BLKSSZGET: libc::c_ulong = 0x1268;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A write's buffer: the caller's bytes when already aligned, else an aligned copy.
enum WriteBuf {
    Shared(Bytes),
    Copied(AlignedBuf),
}

impl WriteBuf {
    fn as_slice(&self) -> &[u8] {
        match self {
            WriteBuf::Shared(b) => b,
            WriteBuf::Copied(b) => b.as_slice(),
        }
    }
}

enum Op {
    Read { offset: u64, buf: AlignedBuf },
    Write { offset: u64, buf: WriteBuf, fua: bool },
    Fsync,
    Fallocate { offset: u64, len: u64, mode: i32 },
}

enum Done {
    Read(AlignedBuf),
    Unit,
}

struct InFlight {
    op: Op,
    /// Bytes already transferred (reads and writes may complete short and are resumed).
    done: usize,
    reply: oneshot::Sender<io::Result<Done>>,
}

struct Ring {
    ring: IoUring,
    fd: RawFd,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    waiting: VecDeque<InFlight>,
    in_flight: usize,
}

/// How data reaches the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// io_uring with `O_DIRECT`.
    Direct,
    /// io_uring through the page cache.
    Buffered,
    /// `pread`/`pwrite` in place (memory-backed files).
    Memory,
}

/// A file or block device served through io_uring.
pub struct UringStore {
    ring: Arc<Mutex<Ring>>,
    reaper: Option<tokio::task::JoinHandle<()>>,
    file: Arc<File>,
    path: PathBuf,
    size: u64,
    mode: Mode,
    block_size: usize,
    block_device: bool,
    /// A block device without a volatile write cache, written with `O_DIRECT`: a completed write
    /// is on stable media, and the kernel completes a flush to it without doing anything.
    write_through: bool,
    /// Serializes in-place writes to a memory-backed file: concurrent `pwrite`s to one tmpfs file
    /// would spin on its inode lock in the kernel; waiting here sleeps instead.
    memory_writes: Mutex<()>,
}

impl std::fmt::Debug for UringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringStore")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("mode", &self.mode)
            .finish()
    }
}

static BUFFERED_WARNING: OnceLock<()> = OnceLock::new();

/// The error for a read that met the end of the file inside the volume. Every read lies inside the
/// size checked at attach, so the file was truncated or shrunk while attached: returning zeroes
/// would hand out (and replicate, as resync data) blocks that were never written. As an I/O error
/// it detaches the disk and the read is served by a peer instead.
fn ended_early(at: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "the backing file ends at byte {at}, inside the volume: it was truncated or shrunk while attached"
        ),
    )
}

fn open_file(path: &Path, direct: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

fn is_memory_backed(file: &File) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs fills the struct we pass, zero-initialised first.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    // SAFETY: initialised by `zeroed` and written by a successful call.
    rc == 0 && unsafe { st.assume_init() }.f_type == TMPFS_MAGIC
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UringStore {
    /// Opens `path` (a regular file or block device) for I/O, with `O_DIRECT` where the filesystem
    /// accepts it. Must be called inside a tokio runtime.
    pub fn open(path: &Path) -> io::Result<UringStore> {
        Self::open_with(path, true)
    }

    /// Opens `path` with buffered I/O (durability through `fdatasync`), never `O_DIRECT`.
    pub fn open_buffered(path: &Path) -> io::Result<UringStore> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, try_direct: bool) -> io::Result<UringStore> {
        let (file, direct) = match open_file(path, try_direct) {
            Ok(f) => (f, try_direct),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if BUFFERED_WARNING.set(()).is_ok() {
                    tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT: using buffered I/O with fdatasync for flushes");
                }
                (open_file(path, false)?, false)
            }
            Err(e) => return Err(e),
        };
        let block_device = file.metadata()?.file_type().is_block_device();
        let size = (&file).seek(SeekFrom::End(0))?;
        let block_size = if block_device {
            logical_block_size(&file)?
        } else {
            512
        };
        let write_through = block_device && direct && has_no_volatile_cache(&file);
        let mode = if !block_device && is_memory_backed(&file) {
            Mode::Memory
        } else if direct {
            Mode::Direct
        } else {
            Mode::Buffered
        };
        // SAFETY: plain syscall; the returned descriptor is checked and then owned.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let wake_fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let ring = IoUring::new(MAX_IN_FLIGHT as u32)?;
        ring.submitter().register_eventfd(wake_fd.as_raw_fd())?;
        let file = Arc::new(file);
        let ring = Arc::new(Mutex::new(Ring {
            ring,
            fd: file.as_raw_fd(),
            slots: Vec::new(),
            free: Vec::new(),
            waiting: VecDeque::new(),
            in_flight: 0,
        }));
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "the store must be opened inside a tokio runtime",
            ));
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, the same descriptor, for
        // the AsyncFd's whole life.
        let async_fd = unsafe { AsyncFd::register_with_interest(wake_fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        let weak = Arc::downgrade(&ring);
        let reaper = tokio::spawn(async move {
            loop {
                let Ok(mut guard) = async_fd.readable().await else {
                    return;
                };
                let mut counter = [0u8; 8];
                // SAFETY: reads 8 bytes into a live buffer from our non-blocking eventfd.
                let _ = unsafe { libc::read(async_fd.get_ref().as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
                guard.clear_ready();
                let Some(ring) = weak.upgrade() else { return };
                lock(&ring).reap();
            }
        });
        Ok(UringStore {
            ring,
            reaper: Some(reaper),
            file,
            path: path.to_path_buf(),
            size,
            mode,
            block_size,
            block_device,
            write_through,
            memory_writes: Mutex::new(()),
        })
    }

    /// Size of the file or device in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when I/O bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.mode == Mode::Direct
    }

    /// True for memory-backed files served with `pread`/`pwrite` in place.
    pub fn is_memory_backed(&self) -> bool {
        self.mode == Mode::Memory
    }

    /// True when a flush has nothing to make durable: a memory-backed file, or a block device
    /// written with `O_DIRECT` that has no volatile write cache (a RAM disk, an SSD with power-loss
    /// protection, a RAID controller with a battery): the kernel itself completes a flush to such
    /// a device at once. Barriers and flushes then cost no system call.
    pub fn flush_is_noop(&self) -> bool {
        self.mode == Mode::Memory || (self.mode == Mode::Direct && self.write_through)
    }

    /// The device's logical block size (512 for files).
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit(&self, op: Op) -> io::Result<Done> {
        let (reply, rx) = oneshot::channel();
        lock(&self.ring).start(InFlight { op, done: 0, reply });
        rx.await
            .map_err(|_| io::Error::other("the store dropped a request"))?
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        if self.mode == Mode::Memory {
            let mut buf = AlignedBuf::for_overwrite(len);
            let mut done = 0;
            while done < len {
                match self
                    .file
                    .read_at(&mut buf.as_mut_slice()[done..], offset + done as u64)?
                {
                    0 => return Err(ended_early(offset + done as u64)),
                    n => done += n,
                }
            }
            return Ok(buf.into_bytes());
        }
        match self
            .submit(Op::Read {
                offset,
                buf: AlignedBuf::for_overwrite(len),
            })
            .await?
        {
            Done::Read(buf) => Ok(buf.into_bytes()),
            Done::Unit => Err(io::Error::other("read completed without data")),
        }
    }

    /// Writes `data` at `offset`; with `fua` it is durable on return.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> io::Result<()> {
        if self.mode == Mode::Memory {
            let _one = self.memory_writes.lock().unwrap_or_else(PoisonError::into_inner);
            return self.file.write_all_at(&data, offset);
        }
        let buf = if self.mode != Mode::Direct || is_aligned(&data, self.block_size) {
            WriteBuf::Shared(data)
        } else {
            WriteBuf::Copied(AlignedBuf::copy_from(&data))
        };
        self.submit(Op::Write { offset, buf, fua }).await.map(|_| ())
    }

    /// Makes every completed write durable (`fdatasync`).
    pub async fn flush(&self) -> io::Result<()> {
        if self.flush_is_noop() {
            return Ok(());
        }
        self.submit(Op::Fsync).await.map(|_| ())
    }

    /// Discards a range: punches a hole in a file, `BLKDISCARD` on a device.
    pub async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.block_device {
            return self.block_ioctl(BLKDISCARD, offset, len).await;
        }
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        self.submit(Op::Fallocate { offset, len, mode }).await.map(|_| ())
    }

    /// Writes zeroes over a range: `BLKZEROOUT` on a device; on a file a zero-range fallocate, else a
    /// punched hole (which reads as zeroes), else plain zero writes.
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.block_device {
            return self.block_ioctl(BLKZEROOUT, offset, len).await;
        }
        let zero_range = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
        match self
            .submit(Op::Fallocate {
                offset,
                len,
                mode: zero_range,
            })
            .await
        {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            other => return other.map(|_| ()),
        }
        match self.discard(offset, len).await {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            other => return other,
        }
        let chunk = 1 << 20;
        let mut pos = offset;
        while pos < offset + len {
            let n = chunk.min(offset + len - pos);
            self.write(pos, AlignedBuf::zeroed(n as usize).into_bytes(), false)
                .await?;
            pos += n;
        }
        Ok(())
    }

    async fn block_ioctl(&self, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let range = [offset, len];
            // SAFETY: BLKDISCARD/BLKZEROOUT read a `[u64; 2]` range from a pointer valid for the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, range.as_ptr()) };
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
        .await
        .map_err(|e| io::Error::other(format!("ioctl task failed: {e}")))?
    }
}

impl Drop for UringStore {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.take() {
            r.abort();
        }
        // Operations still in the ring own their buffers in their slots: wait for the kernel to
        // finish them before the ring (and the slots) go away.
        let mut ring = lock(&self.ring);
        while ring.in_flight > 0 {
            if ring.ring.submit_and_wait(1).is_err() {
                break;
            }
            ring.reap();
        }
    }
}

/// Whether the block device open as `file` reports no volatile write cache
/// (`queue/write_cache` is "write through" in sysfs; a partition's queue is its disk's). Unknown
/// counts as a cache: flushes are then sent.
fn has_no_volatile_cache(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(rdev) = file.metadata().map(|m| m.rdev()) else {
        return false;
    };
    let dev = format!("/sys/dev/block/{}:{}", libc::major(rdev), libc::minor(rdev));
    std::fs::canonicalize(&dev).is_ok_and(|dir| sysfs_says_write_through(&dir))
}

/// Reads `queue/write_cache` of a sysfs block device directory, or of its parent for a partition.
fn sysfs_says_write_through(dir: &Path) -> bool {
    let own = dir.join("queue/write_cache");
    let disk = dir.parent().map(|p| p.join("queue/write_cache"));
    [Some(own), disk]
        .into_iter()
        .flatten()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|v| v.trim() == "write through")
}

fn logical_block_size(file: &File) -> io::Result<usize> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int to a pointer valid for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(size.max(512) as usize)
    }
}

/// Builds the SQE for an operation, resuming after `done` bytes.
fn entry(fd: RawFd, op: &mut Op, done: usize, user_data: u64) -> squeue::Entry {
    let fd = types::Fd(fd);
    match op {
        Op::Read { offset, buf } => {
            let len = (buf.as_slice().len() - done) as u32;
            let ptr = buf.as_mut_ptr().wrapping_add(done);
            opcode::Read::new(fd, ptr, len)
                .offset(*offset + done as u64)
                .build()
        }
        Op::Write { offset, buf, fua } => {
            let s = &buf.as_slice()[done..];
            let flags = if *fua { libc::RWF_DSYNC } else { 0 };
            opcode::Write::new(fd, s.as_ptr(), s.len() as u32)
                .offset(*offset + done as u64)
                .rw_flags(flags)
                .build()
        }
        Op::Fsync => opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build(),
        Op::Fallocate { offset, len, mode } => opcode::Fallocate::new(fd, *len)
            .offset(*offset)
            .mode(*mode)
            .build(),
    }
    .user_data(user_data)
}

impl Ring {
    /// Pushes an SQE, submitting first if the queue is full.
    fn push(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an SQE points to is owned by its slot, which lives until the
            // completion is reaped (the store waits for all completions before it is dropped).
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                tracing::error!(error = %err, "io_uring submit failed");
                return;
            }
        }
    }

    /// Starts an operation, submits, and completes whatever the kernel already finished.
    fn start(&mut self, mut f: InFlight) {
        if self.in_flight >= MAX_IN_FLIGHT {
            self.waiting.push_back(f);
            return;
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let e = entry(self.fd, &mut f.op, f.done, idx as u64);
        self.slots[idx] = Some(f);
        self.in_flight += 1;
        self.push(&e);
        if let Err(err) = self.ring.submit() {
            tracing::error!(error = %err, "io_uring submit failed");
        }
        self.reap();
    }

    /// Completes every operation in the completion queue.
    fn reap(&mut self) {
        loop {
            let done: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            if done.is_empty() {
                return;
            }
            for (user_data, res) in done {
                self.complete(user_data as usize, res);
            }
        }
    }

    fn complete(&mut self, idx: usize, res: i32) {
        let Some(mut f) = self.slots.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let total = match &f.op {
            Op::Read { buf, .. } => buf.as_slice().len(),
            Op::Write { buf, .. } => buf.as_slice().len(),
            _ => 0,
        };
        let outcome = if res == -libc::EINTR || res == -libc::EAGAIN {
            None
        } else if res < 0 {
            Some(Err(io::Error::from_raw_os_error(-res)))
        } else {
            f.done += res as usize;
            match &f.op {
                Op::Read { .. } | Op::Write { .. } if f.done < total && res > 0 => None,
                // A read at end of file returns 0 before `total`: the file shrank under us.
                Op::Read { offset, .. } if f.done < total => Some(Err(ended_early(offset + f.done as u64))),
                Op::Write { .. } if f.done < total => {
                    Some(Err(io::Error::new(io::ErrorKind::WriteZero, "short write")))
                }
                _ => Some(Ok(())),
            }
        };
        match outcome {
            None => {
                let e = entry(self.fd, &mut f.op, f.done, idx as u64);
                self.slots[idx] = Some(f);
                self.push(&e);
                if let Err(err) = self.ring.submit() {
                    tracing::error!(error = %err, "io_uring submit failed");
                }
            }
            Some(result) => {
                self.in_flight -= 1;
                self.free.push(idx);
                let done = result.map(|()| match f.op {
                    Op::Read { buf, .. } => Done::Read(buf),
                    _ => Done::Unit,
                });
                let _ = f.reply.send(done);
                if let Some(next) = self.waiting.pop_front() {
                    self.start(next);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sysfs(dir: &Path, value: &str) {
        std::fs::create_dir_all(dir.join("queue")).unwrap();
        std::fs::write(dir.join("queue/write_cache"), value).unwrap();
    }

    #[test]
    fn a_device_or_its_disk_saying_write_through_needs_no_flush() {
        let t = std::env::temp_dir().join(format!("replbd-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let ram = t.join("ram0");
        sysfs(&ram, "write through\n");
        assert!(sysfs_says_write_through(&ram));
        let nvme = t.join("nvme0n1");
        sysfs(&nvme, "write back\n");
        assert!(!sysfs_says_write_through(&nvme));
        // A partition has no queue of its own: its disk's counts.
        let part = nvme.join("nvme0n1p1");
        std::fs::create_dir_all(&part).unwrap();
        assert!(!sysfs_says_write_through(&part));
        let part = ram.join("ram0p1");
        std::fs::create_dir_all(&part).unwrap();
        assert!(sysfs_says_write_through(&part));
        assert!(!sysfs_says_write_through(&t.join("missing")));
        let _ = std::fs::remove_dir_all(&t);
    }
}
