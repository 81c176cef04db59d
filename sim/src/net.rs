//! The simulated network: who can reach whom, the state of each connection, and the messages on
//! each link.
//!
//! Reachability is a matrix (a bit per pair), so partitions need not be clean halves: A may reach B
//! and C while B and C cannot reach each other. A connection is a TCP stream: messages on one
//! direction arrive in order, one per `Deliver` step, so any delay is possible; a lost message breaks
//! the stream, which both ends notice at once (the simulator does not model the detection time).
//! When a connection breaks, every message still queued on it is lost.

use std::collections::VecDeque;

use replbd_quorum::{DiskState, GenerationIds, NodeSet};

use crate::oracle::WriteId;
use crate::step::{full_reach, pair_bit};

/// Why a connection is StandAlone (waiting for the administrator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandAloneReason {
    /// Split brain that no policy resolved.
    SplitBrain,
    /// The disks never held the same data.
    Unrelated,
    /// A resync would have made a Primary the target (`rr-conflict disconnect`).
    RrConflict,
    /// The two ends reached different decisions (a bug the checker reports).
    Disagreement,
}

/// The state of the connection between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Not connected; connects when both are up and can reach each other.
    Down,
    /// Not connected, and will not connect until the administrator says so.
    StandAlone(StandAloneReason),
    /// Connected.
    Connected,
}

/// A resync running on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync {
    /// Sync source.
    pub source: usize,
    /// Sync target.
    pub target: usize,
    /// The source said it is done; the target finishes when that message arrives.
    pub done_sent: bool,
    /// A catch-up within one generation (marked blocks), not a move to the source's generation.
    pub catch_up: bool,
    /// Blocks sent and not yet acknowledged by the target.
    pub in_flight: u64,
    /// Blocks marked again at the source while in flight: an acknowledgement must not clear them.
    pub remarked: u64,
    /// Blocks the target wrote in this resync.
    pub written: u64,
}

/// A message between two nodes.
#[derive(Debug, Clone)]
pub enum Msg {
    /// An application write, Primary → Secondary.
    Write {
        /// Write id.
        id: WriteId,
        /// Block.
        block: usize,
    },
    /// The write is on the Secondary's disk (protocol C).
    WriteAck {
        /// Write id.
        id: WriteId,
    },
    /// Which nodes hold a finished write: Secondaries mark it for the others.
    PeerAck {
        /// Write id.
        id: WriteId,
        /// Block.
        block: usize,
        /// Nodes that hold it.
        holders: u32,
    },
    /// The Primary started a new data generation.
    Generation {
        /// Its new current UUID.
        current: u64,
        /// The peers the Primary replicates to (the others keep the old generation in their slot).
        replicating: u32,
        /// The peers the Primary knows hold all of its previous generation (same generation,
        /// nothing marked out of sync): they follow even if they are Outdated.
        in_sync: u32,
    },
    /// A node reports its current UUID (after adopting a generation or finishing a resync).
    CurrentUuid {
        /// Its current UUID.
        current: u64,
    },
    /// One block of a resync, source → target.
    ResyncData {
        /// Block.
        block: usize,
        /// Its contents at the source.
        value: WriteId,
    },
    /// The target wrote a resync block; the source may clear its mark.
    ResyncAck {
        /// Block.
        block: usize,
    },
    /// The resync is complete; the target adopts the source's generation.
    ResyncDone {
        /// The source's generation identifiers.
        gi: Box<GenerationIds>,
        /// The source's peers known to hold its current generation in full.
        at_current: NodeSet,
        /// The source's disk state: the target's data is now as good as the source's, no better.
        state: DiskState,
        /// The source's applied-write watermarks.
        seen: [WriteId; crate::config::MAX_NODES],
        /// The source's out-of-sync marks for its peers: the target's data is now the source's.
        bits: [u64; crate::config::MAX_NODES],
    },
}

/// Reachability, connections and in-flight messages.
#[derive(Debug, Clone)]
pub struct Network {
    nodes: usize,
    /// Bit [`pair_bit`] set: the pair can reach each other.
    pub reach: u32,
    links: Vec<Link>,
    resyncs: Vec<Option<Resync>>,
    queues: Vec<VecDeque<Msg>>,
}

impl Network {
    /// A network of `nodes` nodes, fully reachable, every connection `Down`.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            reach: full_reach(nodes),
            links: vec![Link::Down; nodes * nodes],
            resyncs: vec![None; nodes * nodes],
            queues: vec![VecDeque::new(); nodes * nodes],
        }
    }

    fn pair(&self, a: usize, b: usize) -> usize {
        a.min(b) * self.nodes + a.max(b)
    }

    /// Whether `a` and `b` can reach each other.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        a != b && self.reach & pair_bit(a, b) != 0
    }

    /// Whether every pair can reach each other.
    pub fn healed(&self) -> bool {
        self.reach == full_reach(self.nodes)
    }

    /// The connection state of `a`–`b`.
    pub fn link(&self, a: usize, b: usize) -> Link {
        self.links.get(self.pair(a, b)).copied().unwrap_or(Link::Down)
    }

    /// Sets the connection state of `a`–`b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: Link) {
        let i = self.pair(a, b);
        if let Some(l) = self.links.get_mut(i) {
            *l = link;
        }
    }

    /// Whether `a` and `b` are connected.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        a != b && self.link(a, b) == Link::Connected
    }

    /// The resync on `a`–`b`, if one runs.
    pub fn resync(&self, a: usize, b: usize) -> Option<Resync> {
        self.resyncs.get(self.pair(a, b)).copied().flatten()
    }

    /// Sets or clears the resync on `a`–`b`.
    pub fn set_resync(&mut self, a: usize, b: usize, resync: Option<Resync>) {
        let i = self.pair(a, b);
        if let Some(r) = self.resyncs.get_mut(i) {
            *r = resync;
        }
    }

    /// Every running resync.
    pub fn resyncs(&self) -> impl Iterator<Item = Resync> + '_ {
        self.resyncs.iter().filter_map(|r| *r)
    }

    /// Queues `msg` on the link `from`→`to`.
    pub fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if let Some(q) = self.queues.get_mut(from * self.nodes + to) {
            q.push_back(msg);
        }
    }

    /// Takes the oldest message on `from`→`to`.
    pub fn pop(&mut self, from: usize, to: usize) -> Option<Msg> {
        self.queues.get_mut(from * self.nodes + to)?.pop_front()
    }

    /// Messages waiting on `from`→`to`.
    pub fn queued(&self, from: usize, to: usize) -> usize {
        self.queues.get(from * self.nodes + to).map_or(0, VecDeque::len)
    }

    /// Whether any message is in flight anywhere.
    pub fn idle(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// Drops every message between `a` and `b`, both directions (the stream broke).
    pub fn clear(&mut self, a: usize, b: usize) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(q) = self.queues.get_mut(x * self.nodes + y) {
                q.clear();
            }
        }
    }
}
