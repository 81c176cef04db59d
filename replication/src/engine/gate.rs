//! The receiving side's write-ordering gate.
//!
//! Writes of one epoch may run concurrently; a barrier must wait for all of them, flush, be
//! acknowledged, and only then may writes after it start. The gate enforces exactly that without
//! ever blocking the socket reader:
//!
//! ```text
//!            write ─▶ start it (open gate)          write/barrier ─▶ queue it (closed gate)
//!   open ──── barrier ───▶ closed: wait for running writes ─▶ flush ─▶ ack ─▶ release the queue
//! ```
//!
//! The gate only decides *when* work starts; the caller supplies how ([`Starter`]). When the last
//! write of an epoch finishes it starts the barrier's flush, and when the barrier is acknowledged
//! the queued work is released in order — up to the next barrier.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Work in arrival order.
pub(crate) enum Work<W> {
    /// A write.
    Write(W),
    /// A barrier closing epoch `0`.
    Barrier(u64),
}

/// How the gate starts work (spawns tasks); each started write must call [`Gate::write_done`] when
/// finished, each started barrier [`Gate::barrier_done`].
pub(crate) trait Starter<W>: Send + Sync {
    /// Starts a write.
    fn start_write(&self, gate: &Arc<Gate<W>>, write: W);
    /// Starts the flush and acknowledgement of barrier `epoch` (every earlier write is done).
    fn start_barrier(&self, gate: &Arc<Gate<W>>, epoch: u64);
}

struct State<W> {
    running: u64,
    /// Bytes of queued work.
    queued_bytes: u64,
    /// The barrier the gate is closed on, and whether its flush started.
    barrier: Option<(u64, bool)>,
    queue: VecDeque<(Work<W>, u64)>,
    /// Waiters for "everything received so far is done".
    idle: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// The gate of one connection.
pub(crate) struct Gate<W> {
    state: Mutex<State<W>>,
    starter: Box<dyn Starter<W>>,
    room: tokio::sync::Notify,
}

/// Queued bytes beyond which the socket reader waits ([`Gate::wait_room`]).
pub(crate) const QUEUE_LIMIT: u64 = 64 << 20;

impl<W: Send + 'static> Gate<W> {
    pub(crate) fn new(starter: Box<dyn Starter<W>>) -> Arc<Gate<W>> {
        Arc::new(Gate {
            state: Mutex::new(State {
                running: 0,
                queued_bytes: 0,
                barrier: None,
                queue: VecDeque::new(),
                idle: Vec::new(),
            }),
            starter,
            room: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Work of `bytes` bytes arrived from the peer.
    ///
    /// Queued while the gate is closed *or while earlier work still waits in the queue*:
    /// [`Gate::barrier_done`] releases the queue one item at a time, dropping the lock to start
    /// each, and work arriving in between must not overtake what is still queued — a write of a
    /// later epoch started ahead of a queued barrier could wait (overlap order) for a write
    /// queued behind that barrier, which waits for it: the link would stall until its timeout.
    pub(crate) fn push(self: &Arc<Self>, work: Work<W>, bytes: u64) {
        let mut st = self.lock();
        if st.barrier.is_some() || !st.queue.is_empty() {
            st.queued_bytes += bytes;
            st.queue.push_back((work, bytes));
            return;
        }
        self.admit(st, work);
    }

    /// Waits while more than [`QUEUE_LIMIT`] bytes wait behind a barrier.
    pub(crate) async fn wait_room(&self) {
        loop {
            let room = self.room.notified();
            if self.lock().queued_bytes <= QUEUE_LIMIT {
                return;
            }
            room.await;
        }
    }

    /// Starts `work` on an open gate (consumes the lock).
    fn admit(self: &Arc<Self>, mut st: MutexGuard<'_, State<W>>, work: Work<W>) {
        match work {
            Work::Write(w) => {
                st.running += 1;
                drop(st);
                self.starter.start_write(self, w);
            }
            Work::Barrier(epoch) => {
                let start = st.running == 0;
                st.barrier = Some((epoch, start));
                drop(st);
                if start {
                    self.starter.start_barrier(self, epoch);
                }
            }
        }
    }

    /// A started write finished.
    pub(crate) fn write_done(self: &Arc<Self>) {
        let mut st = self.lock();
        st.running = st.running.saturating_sub(1);
        if st.running > 0 {
            return;
        }
        match st.barrier {
            Some((epoch, false)) => {
                st.barrier = Some((epoch, true));
                drop(st);
                self.starter.start_barrier(self, epoch);
            }
            Some(_) => {}
            None => {
                for w in st.idle.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    /// The barrier's flush and acknowledgement are done: release queued work up to the next barrier.
    pub(crate) fn barrier_done(self: &Arc<Self>) {
        let mut st = self.lock();
        st.barrier = None;
        while st.barrier.is_none() {
            let Some((work, bytes)) = st.queue.pop_front() else {
                break;
            };
            st.queued_bytes -= bytes;
            self.admit(st, work);
            st = self.lock();
        }
        self.room.notify_waiters();
        if st.barrier.is_none() && st.running == 0 {
            for w in st.idle.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Waits until every write and barrier pushed so far is done.
    pub(crate) async fn idle(self: &Arc<Self>) {
        let rx = {
            let mut st = self.lock();
            if st.running == 0 && st.barrier.is_none() && st.queue.is_empty() {
                return;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            st.idle.push(tx);
            rx
        };
        let _ = rx.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what started; completions are driven by the test.
    struct Recorder(Mutex<Vec<String>>);

    impl Starter<u32> for Arc<Recorder> {
        fn start_write(&self, _: &Arc<Gate<u32>>, w: u32) {
            self.0.lock().unwrap().push(format!("w{w}"));
        }
        fn start_barrier(&self, _: &Arc<Gate<u32>>, e: u64) {
            self.0.lock().unwrap().push(format!("b{e}"));
        }
    }

    fn log(r: &Arc<Recorder>) -> Vec<String> {
        std::mem::take(&mut *r.0.lock().unwrap())
    }

    #[test]
    fn writes_after_a_barrier_wait_for_its_flush() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let gate = Gate::new(Box::new(Arc::clone(&rec)));
        gate.push(Work::Write(1), 1);
        gate.push(Work::Write(2), 1);
        assert_eq!(log(&rec), ["w1", "w2"], "an epoch's writes run together");
        gate.push(Work::Barrier(1), 0);
        gate.push(Work::Write(3), 1);
        gate.push(Work::Barrier(2), 0);
        gate.push(Work::Write(4), 1);
        assert!(log(&rec).is_empty(), "nothing starts while epoch 1 runs");
        gate.write_done();
        assert!(log(&rec).is_empty());
        gate.write_done();
        assert_eq!(
            log(&rec),
            ["b1"],
            "the last write of the epoch starts the barrier"
        );
        gate.barrier_done();
        assert_eq!(log(&rec), ["w3"], "released up to the next barrier");
        gate.write_done();
        assert_eq!(log(&rec), ["b2"]);
        gate.barrier_done();
        assert_eq!(log(&rec), ["w4"]);
    }

    #[test]
    fn a_barrier_with_no_writes_running_starts_at_once() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let gate = Gate::new(Box::new(Arc::clone(&rec)));
        gate.push(Work::Barrier(7), 0);
        assert_eq!(log(&rec), ["b7"]);
        gate.push(Work::Write(1), 1);
        assert!(log(&rec).is_empty());
        gate.barrier_done();
        assert_eq!(log(&rec), ["w1"]);
    }

    /// Starts like [`Recorder`], and when write `trigger` starts, pushes `arriving` — as the socket
    /// reader does while another thread releases the queue.
    struct Interleaved {
        rec: Arc<Recorder>,
        trigger: u32,
        arriving: Mutex<Option<u32>>,
    }

    impl Starter<u32> for Arc<Interleaved> {
        fn start_write(&self, gate: &Arc<Gate<u32>>, w: u32) {
            self.rec.start_write(gate, w);
            if w == self.trigger
                && let Some(a) = self.arriving.lock().unwrap().take()
            {
                gate.push(Work::Write(a), 1);
            }
        }
        fn start_barrier(&self, gate: &Arc<Gate<u32>>, e: u64) {
            self.rec.start_barrier(gate, e);
        }
    }

    #[test]
    fn work_arriving_while_the_queue_is_released_keeps_its_place() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let starter = Arc::new(Interleaved {
            rec: Arc::clone(&rec),
            trigger: 2,
            arriving: Mutex::new(Some(4)),
        });
        let gate = Gate::new(Box::new(Arc::clone(&starter)));
        gate.push(Work::Write(1), 1);
        gate.push(Work::Barrier(1), 0);
        gate.push(Work::Write(2), 1);
        gate.push(Work::Barrier(2), 0);
        gate.push(Work::Write(3), 1);
        gate.write_done();
        assert_eq!(log(&rec), ["w1", "b1"]);
        // Releasing write 2 lets write 4 arrive: it belongs after barrier 2 and write 3.
        gate.barrier_done();
        assert_eq!(log(&rec), ["w2"], "write 4 does not overtake barrier 2");
        gate.write_done();
        assert_eq!(log(&rec), ["b2"]);
        gate.barrier_done();
        assert_eq!(log(&rec), ["w3", "w4"], "then in arrival order");
    }
}
