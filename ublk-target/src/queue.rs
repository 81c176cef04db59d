//! One queue thread: its io_uring, one task per tag, and the eventfd listener that lets other
//! threads wake it. See the crate documentation for the model.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use io_uring::{opcode, types};
use libublk::helpers::IoBuf;
use libublk::io::{UblkDev, UblkQueue};
use libublk::uring_async::ublk_submit_sqe_async;
use libublk::{BufDesc, UblkError, UblkUringData};
use replbd_replication::BlockVolume;

use crate::request::{self, Failure, IoRequest};
use crate::wake::{CrossThread, QueueWaker};

/// Seconds without I/O after which libublk lets an idle queue release its buffers' pages.
const IDLE_SECS: u64 = 20;

/// What a queue did, logged when it stops (the VM suite checks `max_in_flight` to see that a
/// queue really overlaps requests).
#[derive(Default)]
struct QueueStats {
    served: Cell<u64>,
    failed: Cell<u64>,
    in_flight: Cell<u32>,
    max_in_flight: Cell<u32>,
}

impl QueueStats {
    fn start(&self) {
        let n = self.in_flight.get() + 1;
        self.in_flight.set(n);
        self.max_in_flight.set(self.max_in_flight.get().max(n));
    }

    fn finish(&self, ok: bool) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.served.set(self.served.get() + 1);
        if !ok {
            self.failed.set(self.failed.get() + 1);
        }
    }
}

/// Serves queue `qid` of `dev` until the device stops. Runs on the queue's own thread.
pub(crate) fn serve_queue<V: BlockVolume>(
    qid: u16,
    dev: &UblkDev,
    volume: Arc<V>,
    runtime: Option<tokio::runtime::Handle>,
) {
    let dev_id = dev.dev_info.dev_id;
    // Volume futures may need a tokio context (timers, sockets, spawn_blocking); polling them
    // here with the runtime entered gives them one, while the runtime's own workers drive its
    // I/O and timer drivers.
    let _tokio = runtime.as_ref().map(|h| h.enter());
    let waker = match QueueWaker::new() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(device = dev_id, queue = qid, error = %e, "cannot create queue eventfd");
            abort_start(dev);
            return;
        }
    };
    let queue = match UblkQueue::new(qid, dev) {
        Ok(q) => Rc::new(q),
        Err(e) => {
            tracing::error!(device = dev_id, queue = qid, error = %e, "cannot set up ublk queue");
            abort_start(dev);
            return;
        }
    };
    let exe = Rc::new(smol::LocalExecutor::new());
    let stats = Rc::new(QueueStats::default());
    let mut tags = Vec::new();
    for tag in queue.tags() {
        let q = queue.clone();
        let (volume, waker, stats) = (volume.clone(), waker.clone(), stats.clone());
        tags.push(exe.spawn(async move {
            match serve_tag(&q, tag, &*volume, waker, &stats).await {
                Ok(()) | Err(UblkError::QueueIsDown) => {}
                Err(e) => {
                    tracing::error!(device = dev_id, queue = qid, tag, error = %e, "ublk tag task failed");
                }
            }
        }));
    }
    // Never finishes: dropped with the executor once every tag task is done.
    let _listener = exe.spawn(listen(waker));

    let ticker = exe.clone();
    smol::block_on(exe.run(async {
        let run_ops = || while ticker.try_tick() {};
        let done = || tags.iter().all(|t| t.is_finished());
        if let Err(e) = libublk::wait_and_handle_io_events(&queue, Some(IDLE_SECS), run_ops, done).await {
            tracing::error!(device = dev_id, queue = qid, error = %e, "ublk queue event loop failed");
        }
    }));
    tracing::info!(
        device = dev_id,
        queue = qid,
        requests = stats.served.get(),
        failed = stats.failed.get(),
        max_in_flight = stats.max_in_flight.get(),
        "queue stopped"
    );
}

/// Makes the device start fail instead of waiting forever for this queue's buffers. libublk's
/// start waits until every queue has registered its buffers, and the only public way to report a
/// queue that never will is the mlock-failure flag: the start then fails with `EPERM`, and the
/// real cause is the error logged just before.
fn abort_start(dev: &UblkDev) {
    dev.notify_buffer_registration_complete(true);
}

/// The life of one tag: register its buffer and fetch a request, then execute and commit
/// (which fetches the next) until the queue goes down.
async fn serve_tag<V: BlockVolume>(
    q: &UblkQueue<'_>,
    tag: u16,
    volume: &V,
    waker: Arc<QueueWaker>,
    stats: &QueueStats,
) -> Result<(), UblkError> {
    let mut buf = IoBuf::<u8>::new(q.dev.dev_info.max_io_buf_bytes as usize);
    q.submit_io_prep_cmd(tag, BufDesc::Slice(buf.as_slice()), 0, Some(&buf))
        .await?;
    loop {
        let iod = q.get_iod(tag);
        let req = IoRequest::decode(iod.op_flags, iod.start_sector, iod.nr_sectors);
        stats.start();
        let result =
            CrossThread::new(request::execute(volume, &req, buf.as_mut_slice()), waker.clone()).await;
        stats.finish(result.is_ok());
        if let Err(failure) = &result {
            log_failure(q, tag, &req, failure);
        }
        q.submit_io_commit_cmd(tag, BufDesc::Slice(buf.as_slice()), request::completion(&result))
            .await?;
    }
}

fn log_failure(q: &UblkQueue<'_>, tag: u16, req: &IoRequest, failure: &Failure) {
    let (device, queue) = (q.dev.dev_info.dev_id, q.get_qid());
    tracing::warn!(
        device, queue, tag, op = ?req.op, offset = req.offset, len = req.len,
        errno = failure.errno(), error = %failure, "request failed"
    );
}

/// Keeps a one-shot poll armed on the queue's eventfd; each completion returns the thread from
/// `io_uring_enter` so that the executor runs the tasks woken from other threads.
async fn listen(waker: Arc<QueueWaker>) {
    loop {
        let sqe = opcode::PollAdd::new(types::Fd(waker.fd()), libc::POLLIN as u32).build();
        match ublk_submit_sqe_async(sqe, UblkUringData::Target as u64).await {
            Ok(res) if res < 0 => {
                tracing::error!(errno = -res, "poll on the queue eventfd failed");
                return;
            }
            Ok(_) => waker.drain(),
            Err(e) => {
                tracing::error!(error = %e, "cannot arm poll on the queue eventfd");
                return;
            }
        }
    }
}
