//! Waking a queue thread that sleeps in `io_uring_enter` when a volume future completes on another
//! thread.
//!
//! A queue thread runs its per-tag tasks on a single-threaded executor and blocks in its io_uring
//! waiting for completions. Volume futures are polled in place on that thread, but the engine
//! finishes them elsewhere: a tokio worker, a blocking-pool thread, a peer connection task. Their
//! wake-up schedules the tag task on the executor, yet the thread would not notice until the next
//! ublk command arrives. So each queue owns a [`QueueWaker`]: an eventfd on which the queue keeps a
//! one-shot `POLL_ADD` armed in its own ring. [`CrossThread`] wraps every volume future so that a
//! wake-up from another thread also writes the eventfd, which completes the poll and returns the
//! thread from `io_uring_enter`.
//!
//! Cost: nothing for futures that complete while being polled (the in-memory and most cached
//! paths); for the others, one `eventfd` write per burst of cross-thread wake-ups (a flag
//! coalesces wake-ups until the queue thread has drained the eventfd) and one extra completion in
//! the ring. Wake-ups on the queue thread itself never touch the eventfd.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};

/// The eventfd that wakes one queue thread.
#[derive(Debug)]
pub(crate) struct QueueWaker {
    eventfd: File,
    /// Set by the first cross-thread wake-up after a drain: later ones need not write again.
    pending: AtomicBool,
    /// The queue thread: wake-ups from it need no eventfd.
    owner: ThreadId,
}

impl QueueWaker {
    /// An eventfd owned by the calling (queue) thread.
    pub fn new() -> io::Result<Arc<QueueWaker>> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Arc::new(QueueWaker {
            // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
            eventfd: unsafe { File::from_raw_fd(fd) },
            pending: AtomicBool::new(false),
            owner: thread::current().id(),
        }))
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Makes the queue thread return from `io_uring_enter` (if called from another thread).
    pub fn kick(&self) {
        if thread::current().id() == self.owner {
            return;
        }
        // AcqRel: the task wake-up that precedes this is visible to the queue thread once its
        // `drain` swaps the flag back (it reads this write or a later one).
        if !self.pending.swap(true, Ordering::AcqRel)
            && let Err(e) = (&self.eventfd).write_all(&1u64.to_ne_bytes())
        {
            tracing::error!(error = %e, "cannot wake ublk queue thread");
        }
    }

    /// Called by the queue thread after the poll completed: resets the eventfd, then re-enables
    /// writes. In this order a wake-up between the two is either seen now (its flag write is
    /// read by the swap) or writes the eventfd again.
    pub fn drain(&self) {
        let mut counter = [0u8; 8];
        // An eventfd read is all 8 bytes or nothing.
        match (&self.eventfd).read_exact(&mut counter) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::error!(error = %e, "cannot read ublk queue eventfd"),
        }
        self.pending.swap(false, Ordering::AcqRel);
    }
}

/// The waker given to a volume future: wakes the tag task, then the queue thread.
struct KickingWaker {
    task: Waker,
    queue: Arc<QueueWaker>,
}

impl Wake for KickingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.task.wake_by_ref();
        self.queue.kick();
    }
}

/// A future polled on a queue thread whose wake-ups may come from other threads.
pub(crate) struct CrossThread<F> {
    inner: Pin<Box<F>>,
    queue: Arc<QueueWaker>,
    /// The last task waker seen and the wrapper built around it (rebuilt only if it changes).
    cached: Option<(Waker, Waker)>,
}

impl<F: Future> CrossThread<F> {
    /// Wraps `inner` for the queue woken by `queue`.
    pub fn new(inner: F, queue: Arc<QueueWaker>) -> Self {
        CrossThread {
            inner: Box::pin(inner),
            queue,
            cached: None,
        }
    }
}

impl<F: Future> Future for CrossThread<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `CrossThread` is Unpin (the inner future is boxed), so this is a plain borrow.
        let this = self.get_mut();
        let stale = match &this.cached {
            Some((task, _)) => !task.will_wake(cx.waker()),
            None => true,
        };
        if stale {
            let wrapped = Waker::from(Arc::new(KickingWaker {
                task: cx.waker().clone(),
                queue: this.queue.clone(),
            }));
            this.cached = Some((cx.waker().clone(), wrapped));
        }
        let Some((_, wrapped)) = &this.cached else {
            return Poll::Pending;
        };
        this.inner.as_mut().poll(&mut Context::from_waker(wrapped))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    fn eventfd_value(w: &QueueWaker) -> Option<u64> {
        let mut b = [0u8; 8];
        match (&w.eventfd).read_exact(&mut b) {
            Ok(_) => Some(u64::from_ne_bytes(b)),
            Err(_) => None,
        }
    }

    #[test]
    fn wakeups_from_the_owner_thread_do_not_touch_the_eventfd() {
        let w = QueueWaker::new().unwrap();
        w.kick();
        assert_eq!(eventfd_value(&w), None);
    }

    #[test]
    fn cross_thread_wakeups_are_coalesced_until_drained() {
        let w = QueueWaker::new().unwrap();
        let w2 = w.clone();
        thread::spawn(move || {
            w2.kick();
            w2.kick();
            w2.kick();
        })
        .join()
        .unwrap();
        // One write for the three kicks.
        assert_eq!(eventfd_value(&w), Some(1));
        w.drain();
        let w3 = w.clone();
        thread::spawn(move || w3.kick()).join().unwrap();
        assert_eq!(eventfd_value(&w), Some(1));
    }

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_future_completed_on_another_thread_wakes_task_and_queue() {
        let w = QueueWaker::new().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut fut = CrossThread::new(rx, w.clone());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let task_waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&task_waker);
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());

        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            tx.send(7).unwrap();
        });
        sender.join().unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(eventfd_value(&w), Some(1));
        match Pin::new(&mut fut).poll(&mut cx) {
            Poll::Ready(Ok(7)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
