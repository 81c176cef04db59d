//! The four invariants, checked after every step.
//!
//! 1. **Two Primaries never both complete writes while partitioned from each other** (with quorum
//!    on; with `quorum off` DRBD relies on split-brain detection instead, so this is not checked).
//!    For each pair of Primaries without a connection between them, the checker remembers since when;
//!    if both complete a write after that, it is a violation.
//! 2. **Once healed and resynced, every UpToDate node holds every acknowledged write** that no
//!    explicit split-brain decision discarded. "Healed and resynced": every node up, every pair
//!    reachable and connected, no message in flight, no resync running.
//! 3. **Split brain is never merged silently.** If, at a handshake, both nodes have consistent data
//!    and each holds an acknowledged write the other lacks (their histories forked), the connection
//!    may only go ahead through an after-split-brain policy or `--discard-my-data`. A handshake whose
//!    two ends reach different decisions also counts (split brain must be seen on both nodes). With
//!    `quorum off` two Primaries may legitimately write apart, and a Secondary may carry one of them's
//!    writes; there the check uses DRBD's own definition — both nodes *themselves* wrote since they
//!    diverged — because generation identifiers only record what a node wrote as Primary.
//! 4. **A minority-partitioned Primary completes no new write** (with quorum on). Judged from the
//!    whole cluster, not the Primary's opinion: the Primary's connected part of the cluster holds
//!    fewer than half the diskful nodes (or exactly half without most diskless tiebreakers), and the
//!    nodes outside it could elect a Primary of their own — some node there has data that could
//!    become UpToDate and, if all outside nodes (running or restarted) connected to it, would have
//!    quorum with what it knows about the nodes inside. A minority Primary may legitimately go on when
//!    that is impossible: the others were taken down cleanly (Outdated, last man standing) or lost a
//!    tiebreaker-decided split (the tiebreaker never gives quorum back).

use std::fmt;

use replbd_quorum::quorum::{Absence, LocalVote, PeerVote, QuorumInput};
use replbd_quorum::{DiskState, evaluate_quorum};
use serde::Serialize;

use crate::cluster::{Cluster, Event, Merge};
use crate::node::{bit, members};

/// One of the four invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Invariant {
    /// 1: two partitioned Primaries both completed writes.
    TwoPrimaries,
    /// 2: an UpToDate node lacks an acknowledged write after healing and resync.
    LostWrite,
    /// 3: a split brain was merged without a policy or `--discard-my-data`.
    SilentMerge,
    /// 4: a minority-partitioned Primary completed a write.
    MinorityWrite,
}

impl Invariant {
    /// The invariant's number in the issue.
    pub const fn number(self) -> u8 {
        match self {
            Invariant::TwoPrimaries => 1,
            Invariant::LostWrite => 2,
            Invariant::SilentMerge => 3,
            Invariant::MinorityWrite => 4,
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Invariant::TwoPrimaries => "two partitioned primaries both completed writes",
            Invariant::LostWrite => "an UpToDate node lacks an acknowledged write",
            Invariant::SilentMerge => "split brain merged silently",
            Invariant::MinorityWrite => "a minority-partitioned primary completed a write",
        };
        write!(f, "invariant {}: {text}", self.number())
    }
}

/// A violated invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// The step after which it was found (1-based).
    pub step: usize,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (after step {}): {}",
            self.invariant, self.step, self.message
        )
    }
}

/// The checker's memory between steps.
#[derive(Debug, Clone)]
pub struct Checker {
    nodes: usize,
    last_completion: Vec<Option<usize>>,
    apart_since: Vec<Option<usize>>,
}

impl Checker {
    /// A checker for a cluster of `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            last_completion: vec![None; nodes],
            apart_since: vec![None; nodes * nodes],
        }
    }

    /// Checks the state after a step; the first violation found, if any.
    pub fn check(&mut self, c: &Cluster) -> Option<Violation> {
        let violation = |invariant, message| {
            Some(Violation {
                invariant,
                step: c.step,
                message,
            })
        };
        for e in &c.events {
            match e {
                Event::WriteCompleted { node, id } => {
                    self.last_completion[*node] = Some(c.step);
                    if c.cfg.quorum_enabled()
                        && let Some(why) = minority(c, *node)
                    {
                        return violation(
                            Invariant::MinorityWrite,
                            format!("n{node} completed w{id} while {why}"),
                        );
                    }
                }
                Event::Handshake {
                    a,
                    b,
                    diverged: Some((wa, wb)),
                    merge: Merge::Implicit,
                    detail,
                } => {
                    return violation(
                        Invariant::SilentMerge,
                        format!(
                            "n{a} and n{b} connected without a split-brain decision although n{a} held \
                             acknowledged {} that n{b} lacked and n{b} held acknowledged {} that n{a} lacked \
                             ({detail})",
                            describe(c, *wa),
                            describe(c, *wb)
                        ),
                    );
                }
                Event::Disagreement { a, b, detail } => {
                    return violation(
                        Invariant::SilentMerge,
                        format!("the two ends of n{a}-n{b} reached different decisions: {detail}"),
                    );
                }
                Event::Handshake { .. } => {}
            }
        }
        if c.cfg.quorum_enabled()
            && let Some(v) = self.two_primaries(c)
        {
            return violation(Invariant::TwoPrimaries, v);
        }
        if c.quiescent() {
            for n in c
                .nodes
                .iter()
                .filter(|n| !n.diskless && n.disk_state.can_serve_io())
            {
                if let Some((block, id)) = c.writes.first_missing(&n.disk.data) {
                    return violation(
                        Invariant::LostWrite,
                        format!(
                            "the cluster is healed and resynced, n{} is UpToDate, but it lacks {} (block {block} \
                             holds w{})",
                            n.idx,
                            describe(c, id),
                            n.disk.data[block]
                        ),
                    );
                }
            }
        }
        None
    }

    fn two_primaries(&mut self, c: &Cluster) -> Option<String> {
        let n = self.nodes;
        for p in 0..n {
            for q in p + 1..n {
                let slot = p * n + q;
                let apart = c.nodes[p].is_primary() && c.nodes[q].is_primary() && !c.net.connected(p, q);
                if !apart {
                    self.apart_since[slot] = None;
                    continue;
                }
                let since = *self.apart_since[slot].get_or_insert(c.step);
                let wrote = |x: usize| self.last_completion[x].is_some_and(|s| s >= since);
                if wrote(p) && wrote(q) {
                    return Some(format!(
                        "n{p} and n{q} are both Primary without a connection since step {since}, and both \
                         completed writes since"
                    ));
                }
            }
        }
        None
    }
}

/// Why `node`'s connected part of the cluster is a minority with a possible rival, if it is.
fn minority(c: &Cluster, node: usize) -> Option<String> {
    let component = c.component(node);
    let diskful = c.diskful();
    let diskless = c.all_nodes() & !diskful;
    let total = diskful.count_ones();
    let inside = (component & diskful).count_ones();
    let tiebreakers_total = diskless.count_ones();
    let tiebreakers_inside = (component & diskless).count_ones();
    let majority = 2 * inside > total
        || (2 * inside == total && tiebreakers_total > 0 && 2 * tiebreakers_inside > tiebreakers_total);
    if majority {
        return None;
    }
    let rival = members(diskful & !component).find(|q| could_elect(c, component, *q))?;
    Some(format!(
        "its part of the cluster holds {inside} of {total} diskful nodes and n{rival} outside it could get \
         quorum with the other outside nodes"
    ))
}

/// Whether node `x`, outside `component`, could be promoted if every node outside `component`
/// (running or not) connected to it: its data could become UpToDate, and with what it knows about
/// the nodes inside `component` (nothing, after a restart) it would have quorum. This asks
/// `evaluate_quorum` about a group that does not talk to the Primary's part, so it checks that the
/// two parts' quorum decisions exclude each other.
fn could_elect(c: &Cluster, component: u32, x: usize) -> bool {
    let me = &c.nodes[x];
    if !me.data_could_be_current() {
        return false;
    }
    let peers: Vec<PeerVote> = members(c.all_nodes() & !bit(x))
        .map(|p| {
            let outside = component & bit(p) == 0;
            match (c.nodes[p].diskless, outside) {
                (true, true) => PeerVote::DisklessConnected,
                (true, false) => PeerVote::DisklessAbsent,
                (false, true) => PeerVote::Present {
                    disk: DiskState::UpToDate,
                    quorate: false,
                },
                (false, false) if me.up => PeerVote::Absent(me.absence[p]),
                (false, false) => PeerVote::Absent(Absence::Unknown),
            }
        })
        .collect();
    let input = QuorumInput {
        local: LocalVote::Diskful(DiskState::UpToDate),
        peers: &peers,
        had_quorum: me.up && me.quorate,
    };
    evaluate_quorum(&c.cfg.quorum, &input).have_quorum
}

fn describe(c: &Cluster, id: u32) -> String {
    match c.writes.get(id) {
        Some(r) => format!(
            "w{id} (block {}, written on n{} at step {})",
            r.block, r.node, r.step
        ),
        None => format!("w{id}"),
    }
}
