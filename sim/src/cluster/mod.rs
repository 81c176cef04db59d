//! The simulated cluster: nodes, network, and what each step does to them.
//!
//! The engine (`replbd-replication`) runs on tokio sockets and files and is not built behind
//! transport and disk traits, so it cannot run here. Instead this module models a cluster the way
//! the engine and DRBD behave, and every *decision* in it is made by the real `replbd-quorum`
//! functions: the handshake ([`replbd_quorum::decide`]), split-brain recovery
//! ([`replbd_quorum::resolve_split_brain`], `check_rr_conflict`), quorum
//! ([`replbd_quorum::evaluate_quorum`]), promotion ([`replbd_quorum::can_promote`]) and every change
//! of the generation identifiers (`rotate::new_data_generation`, `resync_started_as_source`,
//! `resync_finished_as_target`, `set_role_bit`). A bug in those functions shows up as a violated
//! invariant here; a bug in the surrounding model does too, which is why the model is kept small and
//! each rule in it says which DRBD behaviour it stands for.
//!
//! | module | what it models |
//! |---|---|
//! | [`io`] | application writes, acknowledgements, peer acks, message delivery |
//! | [`handshake`] | connecting: the decision, split brain, rr-conflict |
//! | [`resync`] | resync start, block transfer, finish |
//! | [`roles`] | promotion, demotion, crash, restart, clean shutdown, connection loss |
//! | [`cluster_wide`] | what holds after every step: outdating, quorum, UpToDate, completing writes |

mod cluster_wide;
mod handshake;
mod io;
mod resync;
mod roles;

use replbd_quorum::gi::is_reserved;
use replbd_quorum::{DiskState, GenerationIds, NodeId};

use crate::config::{BLOCKS, SimConfig};
use crate::net::{Link, Network};
use crate::node::{Disk, Node, bit, members};
use crate::oracle::{WriteId, WriteLog};
use crate::rng::{Rng, Stream};
use crate::step::Step;

/// How a handshake treated two histories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The nodes did not connect (refused, StandAlone).
    NotConnected,
    /// They connected with no resync or an ordinary resync: nothing was declared lost.
    Implicit,
    /// An after-split-brain policy or `--discard-my-data` chose whose changes are lost.
    Explicit,
}

/// Something the checker must know about a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The application saw write `id` on `node` complete.
    WriteCompleted {
        /// The Primary.
        node: usize,
        /// The write.
        id: WriteId,
    },
    /// Two diskful nodes ran the handshake.
    Handshake {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Before the handshake, a live acknowledged write only `a` held and one only `b` held.
        diverged: Option<(WriteId, WriteId)>,
        /// What the handshake did.
        merge: Merge,
        /// The decision, for the message.
        detail: String,
    },
    /// The two ends of a handshake disagreed (one saw split brain, the other not, or different
    /// victims).
    Disagreement {
        /// One end.
        a: usize,
        /// The other end.
        b: usize,
        /// Both decisions.
        detail: String,
    },
}

/// Counts over a schedule, to show what the schedules exercised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes the application saw complete.
    pub writes_acked: u64,
    /// Writes that failed (no quorum, demoted, crashed).
    pub writes_failed: u64,
    /// Successful promotions.
    pub promotions: u64,
    /// Promotions `can_promote` refused.
    pub promotions_refused: u64,
    /// Primaries that lost quorum.
    pub quorum_lost: u64,
    /// Handshakes between diskful nodes.
    pub handshakes: u64,
    /// Bitmap resyncs started.
    pub bitmap_resyncs: u64,
    /// Full resyncs started.
    pub full_resyncs: u64,
    /// Resyncs finished.
    pub resyncs_finished: u64,
    /// Split brains detected.
    pub split_brains: u64,
    /// Split brains resolved by a policy or `--discard-my-data`.
    pub split_brains_resolved: u64,
    /// Connections refused by rr-conflict.
    pub rr_conflicts: u64,
}

impl Stats {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Stats) {
        self.writes_acked += other.writes_acked;
        self.writes_failed += other.writes_failed;
        self.promotions += other.promotions;
        self.promotions_refused += other.promotions_refused;
        self.quorum_lost += other.quorum_lost;
        self.handshakes += other.handshakes;
        self.bitmap_resyncs += other.bitmap_resyncs;
        self.full_resyncs += other.full_resyncs;
        self.resyncs_finished += other.resyncs_finished;
        self.split_brains += other.split_brains;
        self.split_brains_resolved += other.split_brains_resolved;
        self.rr_conflicts += other.rr_conflicts;
    }
}

/// The whole simulated cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Its configuration.
    pub cfg: SimConfig,
    /// The nodes, by index (= node id).
    pub nodes: Vec<Node>,
    /// The network.
    pub net: Network,
    /// The ghost record of every write.
    pub writes: WriteLog,
    /// Steps applied so far.
    pub step: usize,
    /// What the last step did that the checker must know.
    pub events: Vec<Event>,
    /// What the last step did, in words (only when logging).
    pub notes: Vec<String>,
    /// Counts so far.
    pub stats: Stats,
    uuids: Rng,
    logging: bool,
}

impl Cluster {
    /// A running cluster: every node up, Secondary, UpToDate at the same generation, all connected.
    pub fn new(cfg: &SimConfig, logging: bool) -> Self {
        let mut uuids = Rng::stream(cfg.seed, Stream::Uuids);
        let first = fresh_uuid(&mut uuids);
        let mut gi = GenerationIds::just_created();
        gi.current = first;
        gi.flags.consistent = true;
        gi.flags.was_up_to_date = true;
        let nodes = NodeId::all()
            .take(cfg.nodes)
            .enumerate()
            .map(|(i, id)| {
                let diskless = cfg.is_diskless(i);
                let disk = Disk {
                    data: vec![0; BLOCKS],
                    gi: if diskless {
                        GenerationIds::just_created()
                    } else {
                        gi.clone()
                    },
                    bits: [0; crate::config::MAX_NODES],
                    al: 0,
                    pre_sync_current: 0,
                    seen: [0; crate::config::MAX_NODES],
                };
                let state = if diskless {
                    DiskState::Diskless
                } else {
                    DiskState::UpToDate
                };
                Node::new(i, id, diskless, disk, state)
            })
            .collect();
        let mut c = Self {
            cfg: cfg.clone(),
            nodes,
            net: Network::new(cfg.nodes),
            writes: WriteLog::new(BLOCKS),
            step: 0,
            events: Vec::new(),
            notes: Vec::new(),
            stats: Stats::default(),
            uuids,
            logging,
        };
        for a in 0..cfg.nodes {
            for b in a + 1..cfg.nodes {
                c.net.set_link(a, b, Link::Connected);
            }
            c.nodes[a].seen_since_start = c.all_nodes() & !bit(a);
        }
        c.after_step();
        c
    }

    /// Applies one step, then the cluster-wide rules that follow every step.
    pub fn apply(&mut self, step: &Step) {
        self.step += 1;
        self.events.clear();
        self.notes.clear();
        let n = self.cfg.nodes as u8;
        let valid = |x: u8| x < n;
        match *step {
            Step::Write { node, block } if valid(node) => self.app_write(node.into(), block.into()),
            Step::Deliver { from, to } if valid(from) && valid(to) => self.deliver(from.into(), to.into()),
            Step::ResyncStep { source, target } if valid(source) && valid(target) => {
                self.resync_step(source.into(), target.into());
            }
            Step::Connect { a, b } if valid(a) && valid(b) => self.connect(a.into(), b.into(), None),
            Step::Partition { reach } => self.partition(reach),
            Step::Heal => self.partition(crate::step::full_reach(self.cfg.nodes)),
            Step::Break { a, b } if valid(a) && valid(b) && self.net.connected(a.into(), b.into()) => {
                self.disconnect(a.into(), b.into(), Link::Down);
            }
            Step::Crash { node } if valid(node) => self.crash(node.into()),
            Step::Restart { node } if valid(node) => self.restart(node.into()),
            Step::Down { node } if valid(node) => self.down(node.into()),
            Step::Promote { node } if valid(node) => self.promote(node.into()),
            Step::Demote { node } if valid(node) => self.demote(node.into()),
            Step::OperatorConnect { a, b } if valid(a) && valid(b) => {
                self.operator_connect(a.into(), b.into(), None);
            }
            Step::DiscardMyData { victim, peer } if valid(victim) && valid(peer) => {
                self.operator_connect(victim.into(), peer.into(), Some(victim.into()));
            }
            _ => {}
        }
        self.after_step();
    }

    /// Records a note about the current step when logging.
    fn note(&mut self, f: impl FnOnce() -> String) {
        if self.logging {
            self.notes.push(f());
        }
    }

    /// A new random UUID (never a reserved value, bit 0 clear).
    fn new_uuid(&mut self) -> u64 {
        fresh_uuid(&mut self.uuids)
    }

    /// Mask of every node.
    pub fn all_nodes(&self) -> u32 {
        (1 << self.cfg.nodes) - 1
    }

    /// Mask of the diskful nodes.
    pub fn diskful(&self) -> u32 {
        self.cfg.diskful_mask()
    }

    /// The nodes connected to `i`.
    pub fn connected_peers(&self, i: usize) -> u32 {
        members(self.all_nodes())
            .filter(|p| self.net.connected(i, *p))
            .fold(0, |m, p| m | bit(p))
    }

    /// The nodes `i` can reach through connections, itself included.
    pub fn component(&self, i: usize) -> u32 {
        let mut seen = bit(i);
        let mut todo = vec![i];
        while let Some(x) = todo.pop() {
            for p in members(self.connected_peers(x) & !seen) {
                seen |= bit(p);
                todo.push(p);
            }
        }
        seen
    }

    /// The running Primaries among `mask`.
    pub fn primaries(&self, mask: u32) -> u32 {
        members(mask)
            .filter(|i| self.nodes[*i].is_primary())
            .fold(0, |m, i| m | bit(i))
    }

    /// The resync `i` is the target of, if any: its source.
    pub fn sync_source_of(&self, i: usize) -> Option<usize> {
        self.net.resyncs().find(|r| r.target == i).map(|r| r.source)
    }

    /// Whether `i` is the source of a running resync.
    pub fn is_sync_source(&self, i: usize) -> bool {
        self.net.resyncs().any(|r| r.source == i)
    }

    /// Whether the cluster is healed and quiet: every node up, every pair reachable and connected,
    /// no message in flight, no resync running.
    pub fn quiescent(&self) -> bool {
        let n = self.cfg.nodes;
        self.net.healed()
            && self.net.idle()
            && self.nodes.iter().all(|x| x.up)
            && (0..n).all(|a| (a + 1..n).all(|b| self.net.connected(a, b)))
            && self.net.resyncs().next().is_none()
    }
}

fn fresh_uuid(rng: &mut Rng) -> u64 {
    loop {
        let u = rng.next_u64() & !1;
        if !is_reserved(u) {
            return u;
        }
    }
}
