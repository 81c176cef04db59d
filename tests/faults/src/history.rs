//! What the workload did and what the volume answered: every write (to which block, when it was
//! sent, whether it was acknowledged, failed or never answered) and every flush (sent, completed).
//!
//! Writes to one block are serialised by the workload (one worker owns a block and waits for each
//! answer before its next write to it), so the writes of a block form a sequence, and "later" has
//! one meaning: later in that sequence.
//!
//! The history is kept per *epoch*: the span between two checks. A check reads the healed
//! cluster, where every write of the epoch has been answered or abandoned, and whatever a block
//! holds then becomes its *baseline* for the next epoch ([`History::settle`]).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::block::Content;

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// Acknowledged by the volume; the value is the history's logical clock at the answer.
    Acked(u64),
    /// The volume answered with an error (EIO without quorum, EPERM after a demotion...): the
    /// write may or may not have reached some disks.
    Failed,
    /// No answer: the connection broke or the answer did not come in time.
    Unknown,
}

/// One write.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WriteRecord {
    /// Unique in the run, never 0.
    pub id: u64,
    /// Milliseconds into the run when it was sent.
    pub sent_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// One flush that completed successfully.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct FlushRecord {
    /// The logical clock when it was sent: every write acknowledged before this is durable.
    pub sent_tick: u64,
    /// Milliseconds into the run when it completed.
    pub done_ms: u64,
}

/// The writes of one block in this epoch, and what it held at the last check.
#[derive(Clone, Debug)]
pub struct BlockHistory {
    /// What the block held at the last check (zeroes at the start).
    pub baseline: Content,
    /// This epoch's writes, in the order they were sent.
    pub writes: Vec<WriteRecord>,
}

impl Default for BlockHistory {
    fn default() -> Self {
        BlockHistory {
            baseline: Content::Zero,
            writes: Vec::new(),
        }
    }
}

/// Run-wide counters.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Writes sent.
    pub writes_sent: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes answered with an error.
    pub writes_failed: u64,
    /// Writes never answered.
    pub writes_unknown: u64,
    /// Flushes completed.
    pub flushes_done: u64,
    /// Flushes that failed or were never answered.
    pub flushes_failed: u64,
    /// Reads answered with data (each checked at once).
    pub reads_done: u64,
    /// Reads that failed or were never answered.
    pub reads_failed: u64,
}

/// The whole record.
pub struct History {
    start: Instant,
    next_id: u64,
    /// A logical clock, advanced by every record: orders acknowledgements and flushes exactly.
    clock: u64,
    /// Per block number.
    pub blocks: BTreeMap<u64, BlockHistory>,
    /// This epoch's completed flushes.
    pub flushes: Vec<FlushRecord>,
    /// Run-wide counters.
    pub counters: Counters,
}

impl History {
    /// An empty history of a run starting now.
    pub fn new() -> History {
        History {
            start: Instant::now(),
            next_id: 1,
            clock: 0,
            blocks: BTreeMap::new(),
            flushes: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records a flush about to be sent; returns the tick to give [`History::flush_done`].
    pub fn begin_flush(&mut self) -> u64 {
        self.tick()
    }

    /// Records a write to `block` about to be sent; returns its id.
    pub fn begin_write(&mut self, block: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let sent_ms = self.now_ms();
        self.blocks.entry(block).or_default().writes.push(WriteRecord {
            id,
            sent_ms,
            outcome: Outcome::Pending,
        });
        self.counters.writes_sent += 1;
        id
    }

    /// Records how write `id` to `block` ended (`Acked`'s time is filled in here).
    pub fn end_write(&mut self, block: u64, id: u64, outcome: Outcome) {
        let outcome = match outcome {
            Outcome::Acked(_) => {
                self.counters.writes_acked += 1;
                Outcome::Acked(self.tick())
            }
            Outcome::Failed => {
                self.counters.writes_failed += 1;
                outcome
            }
            Outcome::Unknown | Outcome::Pending => {
                self.counters.writes_unknown += 1;
                Outcome::Unknown
            }
        };
        if let Some(w) = self
            .blocks
            .get_mut(&block)
            .and_then(|b| b.writes.iter_mut().rev().find(|w| w.id == id))
        {
            w.outcome = outcome;
        }
    }

    /// Records a flush begun at `sent_tick` that has completed successfully now.
    pub fn flush_done(&mut self, sent_tick: u64) {
        let done_ms = self.now_ms();
        self.flushes.push(FlushRecord { sent_tick, done_ms });
        self.counters.flushes_done += 1;
    }

    /// Records a flush that failed or was never answered.
    pub fn flush_failed(&mut self) {
        self.counters.flushes_failed += 1;
    }

    /// Whether a write acknowledged at tick `acked` is covered by a completed flush sent after it.
    pub fn flushed(&self, acked: u64) -> bool {
        self.flushes.iter().any(|f| f.sent_tick > acked)
    }

    /// Starts a new epoch: each block's baseline becomes what the check found in it, and the
    /// epoch's writes and flushes are forgotten.
    pub fn settle(&mut self, found: impl Fn(u64) -> Content) {
        for (block, h) in &mut self.blocks {
            h.baseline = found(*block);
            h.writes.clear();
        }
        self.flushes.clear();
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}
