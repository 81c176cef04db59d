//! The backing store on a file or block device, through io_uring.
//!
//! One thread owns the ring. Async callers hand it a [`Submission`] over a channel and await a
//! oneshot reply; the thread pushes SQEs, submits, and reaps completions. While it sleeps in
//! `submit_and_wait`, an armed read on an eventfd lets a new submission wake it: a submitter writes
//! the eventfd only when the thread has announced it is about to sleep, so a busy ring costs no extra
//! syscall per request.
//!
//! Files are opened with `O_DIRECT` so that a completed write is in the device, not the page cache;
//! where the filesystem refuses `O_DIRECT` (tmpfs) the store falls back to buffered I/O, says so once,
//! and relies on `fdatasync` for durability. Writes with FUA use `RWF_DSYNC`. Flush is
//! `IORING_OP_FSYNC` with `DATASYNC`, which covers every write that *completed* before it was issued —
//! exactly the writes acknowledged before a flush request.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::oneshot;

use super::aligned::{AlignedBuf, is_aligned};

/// Most operations in the ring at once; more wait in a queue inside the ring thread.
const MAX_IN_FLIGHT: usize = 256;
const WAKE: u64 = u64::MAX;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;
const BLKSSZGET: libc::c_ulong = 0x1268;

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

struct Submission {
    op: Op,
    reply: oneshot::Sender<io::Result<Done>>,
}

struct InFlight {
    op: Op,
    /// Bytes already transferred (reads and writes may complete short and are resumed).
    done: usize,
    reply: oneshot::Sender<io::Result<Done>>,
}

struct Shared {
    tx: Mutex<Option<Sender<Submission>>>,
    sleeping: AtomicBool,
    wake_fd: OwnedFd,
}

/// A file or block device served through io_uring.
pub struct UringStore {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    file: Arc<File>,
    path: PathBuf,
    size: u64,
    direct: bool,
    block_size: usize,
    block_device: bool,
}

impl std::fmt::Debug for UringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringStore")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("direct", &self.direct)
            .finish()
    }
}

static BUFFERED_WARNING: OnceLock<()> = OnceLock::new();

fn open_file(path: &Path, direct: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

impl UringStore {
    /// Opens `path` (a regular file or block device) for I/O, with `O_DIRECT` where the filesystem
    /// accepts it.
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
                    tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT (tmpfs?): using buffered I/O with fdatasync for flushes");
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
        // SAFETY: plain syscall; the returned descriptor is checked and then owned.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nobody else owns.
        let wake_fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let ring = IoUring::new(MAX_IN_FLIGHT as u32)?;
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            tx: Mutex::new(Some(tx)),
            sleeping: AtomicBool::new(false),
            wake_fd,
        });
        let file = Arc::new(file);
        let (fd, thread_shared) = (file.as_raw_fd(), Arc::clone(&shared));
        let keep_file = Arc::clone(&file);
        let thread = std::thread::Builder::new()
            .name("replbd-uring".into())
            .spawn(move || {
                let _file = keep_file;
                ring_thread(ring, rx, &thread_shared, fd);
            })?;
        Ok(UringStore {
            shared,
            thread: Some(thread),
            file,
            path: path.to_path_buf(),
            size,
            direct,
            block_size,
            block_device,
        })
    }

    /// Size of the file or device in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when I/O bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
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
        {
            let tx = self
                .shared
                .tx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(tx) = tx.as_ref() else {
                return Err(io::Error::other("the store is closed"));
            };
            tx.send(Submission { op, reply })
                .map_err(|_| io::Error::other("the store's I/O thread has stopped"))?;
        }
        if self.shared.sleeping.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our eventfd.
            let _ = unsafe { libc::write(self.shared.wake_fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        }
        rx.await
            .map_err(|_| io::Error::other("the store's I/O thread dropped a request"))?
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        match self
            .submit(Op::Read {
                offset,
                buf: AlignedBuf::zeroed(len),
            })
            .await?
        {
            Done::Read(buf) => Ok(buf.into_bytes()),
            Done::Unit => Err(io::Error::other("read completed without data")),
        }
    }

    /// Writes `data` at `offset`; with `fua` it is durable on return.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> io::Result<()> {
        let buf = if !self.direct || is_aligned(&data, self.block_size) {
            WriteBuf::Shared(data)
        } else {
            WriteBuf::Copied(AlignedBuf::copy_from(&data))
        };
        self.submit(Op::Write { offset, buf, fua }).await.map(|_| ())
    }

    /// Makes every completed write durable (`fdatasync`).
    pub async fn flush(&self) -> io::Result<()> {
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
        // Dropping the sender ends the ring thread once its in-flight operations complete.
        self.shared
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        let _ = unsafe { libc::write(self.shared.wake_fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
            // SAFETY (pointer arithmetic): `done` < buffer length while the read is resumed.
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

struct Ring {
    ring: IoUring,
    fd: RawFd,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    waiting: VecDeque<Submission>,
    in_flight: usize,
}

impl Ring {
    /// Pushes an SQE, submitting first if the queue is full.
    fn push(&mut self, e: &squeue::Entry) {
        loop {
            // SAFETY: every buffer an SQE points to is owned by its slot (or by the wake buffer)
            // and stays alive until the completion is reaped.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                tracing::error!(error = %err, "io_uring submit failed");
            }
        }
    }

    fn start(&mut self, sub: Submission) {
        if self.in_flight >= MAX_IN_FLIGHT {
            self.waiting.push_back(sub);
            return;
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let mut f = InFlight {
            op: sub.op,
            done: 0,
            reply: sub.reply,
        };
        let e = entry(self.fd, &mut f.op, 0, idx as u64);
        self.slots[idx] = Some(f);
        self.in_flight += 1;
        self.push(&e);
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
                // A read at end of file returns 0: the rest stays zeroed.
                Op::Read { .. } => Some(Ok(())),
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

fn ring_thread(ring: IoUring, rx: Receiver<Submission>, shared: &Shared, fd: RawFd) {
    // Declared first so it is dropped last: the ring (and its armed read into it) goes before it.
    let mut wake_buf = Box::new([0u8; 8]);
    let mut r = Ring {
        ring,
        fd,
        slots: Vec::new(),
        free: Vec::new(),
        waiting: VecDeque::new(),
        in_flight: 0,
    };
    let arm = |r: &mut Ring, buf: &mut [u8; 8]| {
        let e = opcode::Read::new(types::Fd(shared.wake_fd.as_raw_fd()), buf.as_mut_ptr(), 8)
            .build()
            .user_data(WAKE);
        r.push(&e);
    };
    arm(&mut r, &mut wake_buf);
    let mut closing = false;
    loop {
        loop {
            match rx.try_recv() {
                Ok(sub) => r.start(sub),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closing = true;
                    break;
                }
            }
        }
        if closing && r.in_flight == 0 && r.waiting.is_empty() {
            break;
        }
        shared.sleeping.store(true, Ordering::SeqCst);
        match rx.try_recv() {
            Ok(sub) => {
                shared.sleeping.store(false, Ordering::SeqCst);
                r.start(sub);
                if let Err(e) = r.ring.submit() {
                    tracing::error!(error = %e, "io_uring submit failed");
                }
            }
            Err(TryRecvError::Disconnected) if r.in_flight == 0 => break,
            Err(_) => {
                if let Err(e) = r.ring.submit_and_wait(1) {
                    if e.raw_os_error() != Some(libc::EINTR) {
                        tracing::error!(error = %e, "io_uring wait failed");
                    }
                }
                shared.sleeping.store(false, Ordering::SeqCst);
            }
        }
        let done: Vec<(u64, i32)> = r.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (user_data, res) in done {
            if user_data == WAKE {
                arm(&mut r, &mut wake_buf);
            } else {
                r.complete(user_data as usize, res);
            }
        }
    }
}
