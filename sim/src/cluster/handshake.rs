//! Connecting two nodes: the generation-identifier handshake and what follows it.
//!
//! Both ends run [`decide`] on the same facts and must reach mirror-image results; the simulator
//! runs it from both sides and reports a disagreement as a violation. Then:
//!
//! - **no sync**: the connection is established. A Consistent or Outdated node at the same
//!   generation as an UpToDate peer, with nothing marked out of sync, becomes UpToDate (DRBD's
//!   "UpToDate on reconnect"). Blocks marked out of sync at the same generation are resynced by the
//!   cluster-wide rule that follows every step ([`super::cluster_wide`]).
//! - **source / target**: [`check_rr_conflict`] guards a Primary becoming target, and an
//!   Inconsistent node never becomes source (the connection waits, as DRBD's "I shall become
//!   SyncSource, but I am inconsistent!"); then a bitmap resync of the source's slot and both ends'
//!   marks for each other (DRBD resyncs the union), or a full one.
//! - **split brain**: [`resolve_split_brain`] on both ends; no victim → both StandAlone; a victim
//!   (policy or `--discard-my-data`) → it becomes the target and the writes only it held are
//!   recorded as explicitly discarded. `decide` itself resolves a split brain against a side that
//!   lost quorum as Primary (`Adjustment::LostQuorum`); that counts as explicit too.
//! - **unrelated data**: StandAlone.
//!
//! Two model rules stand for DRBD's cluster-wide (two-phase commit) connect and keep each sync
//! target with a single writer: a connection that would put two Primaries into one connected part of
//! the cluster is refused, and a node that is a sync target connects to nobody else until it is done
//! (nor becomes the target of a Secondary while a Primary writes to it). Refused connections stay
//! `Down` and are retried by later steps.

use replbd_quorum::decide::Adjustment;
use replbd_quorum::gi::same_generation;
use replbd_quorum::quorum::Absence;
use replbd_quorum::split_brain::{RrOutcome, RrSide, SbSide, SplitBrain, check_rr_conflict};
use replbd_quorum::{
    Decision, DiskState, HandshakeSide, Protocol, Side, SyncDecision, SyncKind, decide, resolve_split_brain,
};

use super::io::names;
use super::{Cluster, Event, Merge};
use crate::config::{BLOCKS, node_name};
use crate::net::{Link, StandAloneReason};
use crate::node::{bit, members};

/// Every block.
const ALL_BLOCKS: u64 = (1 << BLOCKS) - 1;

impl Cluster {
    /// `a` and `b` connect (`discard`: the node connected with `--discard-my-data`).
    pub(super) fn connect(&mut self, a: usize, b: usize, discard: Option<usize>) {
        let ready = a != b
            && self.net.link(a, b) == Link::Down
            && self.nodes[a].up
            && self.nodes[b].up
            && self.net.reachable(a, b);
        if !ready {
            return;
        }
        let (pa, pb) = (
            self.primaries(self.component(a)),
            self.primaries(self.component(b)),
        );
        if pa != 0 && pb != 0 && pa != pb {
            self.note(|| {
                format!(
                    "n{a}-n{b}: refused, Primaries {} and {} would meet",
                    names(pa),
                    names(pb)
                )
            });
            return;
        }
        if self.nodes[a].diskless || self.nodes[b].diskless {
            self.establish(a, b);
            return;
        }
        if self.sync_source_of(a).is_some() || self.sync_source_of(b).is_some() {
            self.note(|| format!("n{a}-n{b}: refused, a sync target connects when its resync is done"));
            return;
        }
        self.stats.handshakes += 1;
        let (da, db) = self.decisions(a, b);
        let consistent = |x: usize| self.nodes[x].disk.gi.flags.consistent;
        let (da_data, db_data) = (&self.nodes[a].disk.data, &self.nodes[b].disk.data);
        let diverged = if !consistent(a) || !consistent(b) {
            None
        } else if self.cfg.quorum_enabled() {
            self.writes.divergence(da_data, db_data)
        } else {
            self.writes.divergence_by_writers((da_data, a), (db_data, b))
        };
        let detail = format!("n{a}: {da}");
        if db != da.mirror() {
            let detail = format!("n{a}: {da} / n{b}: {db}");
            self.note(|| format!("n{a}-n{b}: the two ends disagree: {detail}"));
            self.net
                .set_link(a, b, Link::StandAlone(StandAloneReason::Disagreement));
            self.events.push(Event::Disagreement { a, b, detail });
            return;
        }
        self.note(|| format!("n{a}-n{b}: handshake, {detail}"));
        let merge = match da.outcome {
            SyncDecision::NoSync => {
                self.establish(a, b);
                Merge::Implicit
            }
            SyncDecision::BecomeSource { kind } => self.decided_resync(a, b, kind, &da),
            SyncDecision::BecomeTarget { kind } => self.decided_resync(b, a, kind, &da),
            SyncDecision::SplitBrain { auto_recoverable } => {
                self.stats.split_brains += 1;
                if self.cfg.faults.merge_split_brain {
                    self.start_resync(a.min(b), a.max(b), ALL_BLOCKS);
                    Merge::Implicit
                } else {
                    self.split_brain(a, b, auto_recoverable, discard)
                }
            }
            SyncDecision::UnrelatedData if self.resync_unfinished(a) || self.resync_unfinished(b) => {
                // A resync target carries its source's sync UUID, which need not relate to the
                // other node; it cannot be a source anyway. Wait instead of giving up.
                self.note(|| {
                    format!("n{a}-n{b}: no common generation while a resync is unfinished; retry later")
                });
                Merge::NotConnected
            }
            SyncDecision::UnrelatedData => {
                self.net
                    .set_link(a, b, Link::StandAlone(StandAloneReason::Unrelated));
                Merge::NotConnected
            }
        };
        self.events.push(Event::Handshake {
            a,
            b,
            diverged,
            merge,
            detail,
        });
    }

    /// Whether `x` is a resync target that has not finished (it carries a sync UUID).
    fn resync_unfinished(&self, x: usize) -> bool {
        self.nodes[x].disk.pre_sync_current != 0
    }

    /// [`decide`] run by each end.
    fn decisions(&self, a: usize, b: usize) -> (Decision, Decision) {
        let side = |x: usize, y: usize| {
            let n = &self.nodes[x];
            HandshakeSide {
                node: n.id,
                gi: &n.disk.gi,
                disk: n.disk_state,
                role: n.role,
                reconnect: n.seen_since_start & bit(y) != 0,
            }
        };
        let (sa, sb) = (side(a, b), side(b, a));
        match (decide(&sa, &sb, Protocol::C), decide(&sb, &sa, Protocol::C)) {
            (Ok(da), Ok(db)) => (da, db),
            // Distinct indexes give distinct node ids; this cannot happen.
            _ => unreachable_decision(),
        }
    }

    /// Marks `a`–`b` connected.
    pub(super) fn establish(&mut self, a: usize, b: usize) {
        self.link_up(a, b);
        if self.nodes[a].diskless || self.nodes[b].diskless {
            return;
        }
        let same = same_generation(self.nodes[a].disk.gi.current, self.nodes[b].disk.gi.current);
        let clean = self.nodes[a].disk.bits[b] == 0 && self.nodes[b].disk.bits[a] == 0;
        for (x, y) in [(a, b), (b, a)] {
            let weaker = matches!(
                self.nodes[x].disk_state,
                DiskState::Consistent | DiskState::Outdated
            );
            if same && clean && weaker && self.nodes[y].disk_state == DiskState::UpToDate {
                self.nodes[x].make_up_to_date();
                self.note(|| format!("n{x}: UpToDate (same generation as UpToDate n{y})"));
            }
            let current = self.nodes[y].disk.gi.current;
            self.peer_reported(x, y, current);
        }
    }

    /// Marks `a`–`b` connected; each learns what the other knows about the nodes it is not connected
    /// to. Knowledge only ever gets *less* trusting here: a node that `b` sees (or last saw) as not
    /// Outdated, or whose departure `b` could not judge, stops counting as Outdated or quorumless for
    /// `a`. Without this, an Outdated peer that a third node has since resynced to UpToDate would still
    /// look Outdated, and last man standing could give a minority quorum (found by the simulation).
    pub(super) fn link_up(&mut self, a: usize, b: usize) {
        self.net.set_link(a, b, Link::Connected);
        self.nodes[a].seen_since_start |= bit(b);
        self.nodes[b].seen_since_start |= bit(a);
        for (x, y) in [(a, b), (b, a)] {
            for z in members(self.diskful() & !bit(x) & !bit(y)) {
                let view = if self.net.connected(y, z) {
                    if self.nodes[z].disk_state.is_outdated_or_worse() {
                        Absence::Outdated
                    } else {
                        Absence::Unknown
                    }
                } else {
                    self.nodes[y].absence[z]
                };
                let mine = self.nodes[x].absence[z];
                if trust(view) < trust(mine) {
                    self.nodes[x].absence[z] = view;
                }
            }
        }
    }

    /// Whether `source` must not become a sync source: its own disk is Inconsistent (DRBD drops the
    /// connection: "I shall become SyncSource, but I am inconsistent!"). A half-synced disk is not a
    /// copy of any generation; the target would adopt a generation UUID its data does not match.
    fn refuse_inconsistent_source(&mut self, source: usize, target: usize) -> bool {
        if self.nodes[source].disk_state != DiskState::Inconsistent {
            return false;
        }
        self.note(|| {
            format!("n{source}-n{target}: n{source} would be SyncSource but is Inconsistent; retry later")
        });
        true
    }

    /// A resync the decision asked for. If it resolved a split brain against the side that lost
    /// quorum as Primary, it is an explicit resolution (as "the quorate side wins" in the
    /// split-brain policies): the writes only the losing side held are recorded as discarded.
    fn decided_resync(&mut self, source: usize, target: usize, kind: SyncKind, da: &Decision) -> Merge {
        let by_quorum = matches!(da.adjustment, Some(Adjustment::LostQuorum(_)));
        if by_quorum {
            self.stats.split_brains += 1;
        }
        let merge = self.resync_by_decision(source, target, kind, da);
        if !by_quorum || merge != Merge::Implicit {
            return merge;
        }
        self.stats.split_brains_resolved += 1;
        // The resync has started but moved nothing yet: the target's blocks are still its own.
        let lost = self
            .writes
            .discard(&self.nodes[target].disk.data, &self.nodes[source].disk.data);
        self.note(|| format!("n{target}: lost quorum as Primary, discards {lost} acknowledged writes"));
        Merge::Explicit
    }

    /// Within one generation a resync may only come from a node that has applied at least as much
    /// of every Primary's stream as the target (the engine's applied-write watermarks): the target
    /// may hold writes received straight from the Primary that the source has not got yet, and
    /// copying the source's older block over them would lose them (found by the simulation). Across
    /// generations the decision's direction stands.
    fn watermark_allows(&mut self, source: usize, target: usize) -> bool {
        let (s, t) = (&self.nodes[source].disk, &self.nodes[target].disk);
        if !same_generation(s.gi.current, t.gi.current) || s.dominates(t) {
            return true;
        }
        self.note(|| format!("n{source}-n{target}: n{source} has not caught up with the writes n{target} holds; retry later"));
        false
    }

    /// A decided resync from `source` to `target`, after the rr-conflict check.
    fn resync_by_decision(&mut self, source: usize, target: usize, kind: SyncKind, da: &Decision) -> Merge {
        let target_primary = self.primaries(self.connected_peers(target)) & !bit(source);
        if target_primary != 0 || self.is_sync_source(target) {
            self.note(|| format!("n{target}: refused to become SyncTarget of n{source} while busy"));
            return Merge::NotConnected;
        }
        if self.refuse_inconsistent_source(source, target) {
            return Merge::NotConnected;
        }
        if !self.watermark_allows(source, target) {
            return Merge::NotConnected;
        }
        let set = self.resync_set(source, target, kind);
        let (a, b) = if da.outcome == (SyncDecision::BecomeSource { kind }) {
            (source, target)
        } else {
            (target, source)
        };
        let rr = |x: usize| RrSide {
            node: self.nodes[x].id,
            role: self.nodes[x].role,
            disk: self.nodes[x].disk_state,
        };
        let outcome = check_rr_conflict(
            self.cfg.policies.rr_conflict,
            da,
            rr(a),
            rr(b),
            u64::from(set.count_ones()),
        );
        match outcome {
            RrOutcome::Proceed | RrOutcome::ProceedViolently => {
                self.start_resync(source, target, set);
                Merge::Implicit
            }
            RrOutcome::Reverse(d) => {
                let (s, t) = match d {
                    SyncDecision::BecomeSource { .. } => (a, b),
                    _ => (b, a),
                };
                if self.refuse_inconsistent_source(s, t) {
                    return Merge::NotConnected;
                }
                let set = self.nodes[s].disk.bits[t] | self.nodes[t].disk.bits[s];
                self.start_resync(s, t, set);
                Merge::Implicit
            }
            RrOutcome::RetryConnect => {
                self.stats.rr_conflicts += 1;
                self.note(|| format!("n{a}-n{b}: rr-conflict, retry later"));
                Merge::NotConnected
            }
            RrOutcome::Disconnect | RrOutcome::CallHelperAndDisconnect(_) => {
                self.stats.rr_conflicts += 1;
                self.note(|| format!("n{a}-n{b}: rr-conflict, StandAlone"));
                self.net
                    .set_link(a, b, Link::StandAlone(StandAloneReason::RrConflict));
                Merge::NotConnected
            }
        }
    }

    /// The blocks a resync of `kind` transfers: the source's slot and both ends' marks for each
    /// other, or every block.
    fn resync_set(&self, source: usize, target: usize, kind: SyncKind) -> u64 {
        match kind {
            SyncKind::Full => ALL_BLOCKS,
            SyncKind::Bitmap { slot_of } => {
                let s = &self.nodes[source].disk;
                let slot = slot_of.index().min(s.bits.len() - 1);
                s.bits[slot] | s.bits[target] | self.nodes[target].disk.bits[source]
            }
        }
    }

    /// A split brain between `a` and `b`: the after-sb policies (or `--discard-my-data` on
    /// `discard`) pick a victim, or both stay StandAlone.
    fn split_brain(&mut self, a: usize, b: usize, auto_recoverable: bool, discard: Option<usize>) -> Merge {
        let names = [node_name(a), node_name(b)];
        let side = |x: usize, y: usize, name: usize| {
            let n = &self.nodes[x];
            SbSide {
                node: n.id,
                name: &names[name],
                role: n.role,
                changes: u64::from(n.disk.bits[y].count_ones()),
                primary_at_split: n.disk.gi.was_primary_when_split_from(self.nodes[y].id),
                have_quorum: n.quorate,
                discard_my_data: discard == Some(x),
            }
        };
        let quorum_enabled = self.cfg.quorum_enabled();
        let (sa, sb) = (side(a, b, 0), side(b, a, 1));
        let oa = resolve_split_brain(
            &self.cfg.policies,
            &SplitBrain {
                local: sa,
                peer: sb,
                auto_recoverable,
                quorum_enabled,
            },
        );
        let ob = resolve_split_brain(
            &self.cfg.policies,
            &SplitBrain {
                local: sb,
                peer: sa,
                auto_recoverable,
                quorum_enabled,
            },
        );
        let victim_a = oa
            .resolution
            .victim()
            .map(|s| if s == Side::Local { a } else { b });
        let victim_b = ob
            .resolution
            .victim()
            .map(|s| if s == Side::Local { b } else { a });
        if victim_a != victim_b {
            let detail = format!("n{a}: {oa} / n{b}: {ob}");
            self.note(|| format!("n{a}-n{b}: split brain, the two ends disagree: {detail}"));
            self.net
                .set_link(a, b, Link::StandAlone(StandAloneReason::Disagreement));
            self.events.push(Event::Disagreement { a, b, detail });
            return Merge::NotConnected;
        }
        let Some(victim) = victim_a else {
            self.note(|| format!("n{a}-n{b}: {oa}; both StandAlone"));
            self.net
                .set_link(a, b, Link::StandAlone(StandAloneReason::SplitBrain));
            return Merge::NotConnected;
        };
        let winner = if victim == a { b } else { a };
        if self.refuse_inconsistent_source(winner, victim) {
            return Merge::NotConnected;
        }
        let busy = self.is_sync_source(victim) || self.sync_source_of(victim).is_some();
        if busy || self.primaries(self.connected_peers(victim)) & !bit(winner) != 0 {
            self.note(|| {
                format!("n{victim}: split-brain victim is busy (resync or another Primary); retry later")
            });
            return Merge::NotConnected;
        }
        if self.nodes[victim].is_primary() {
            // call-pri-lost-after-sb demotes the victim; violently-as0p leaves it Primary. Either
            // way its pending writes are abandoned.
            self.abandon_writes(victim);
            if victim_outcome_demotes(&oa, &ob, victim == a) {
                self.demote(victim);
            }
        }
        let lost = self
            .writes
            .discard(&self.nodes[victim].disk.data, &self.nodes[winner].disk.data);
        self.stats.split_brains_resolved += 1;
        self.note(|| format!("n{a}-n{b}: {oa}; n{victim} discards {lost} acknowledged writes"));
        let set = if oa.full_sync {
            ALL_BLOCKS
        } else {
            self.nodes[winner].disk.bits[victim] | self.nodes[victim].disk.bits[winner]
        };
        self.start_resync(winner, victim, set);
        Merge::Explicit
    }

    /// Fails every write of `node` still in flight or frozen.
    fn abandon_writes(&mut self, node: usize) {
        let all: Vec<_> = self.nodes[node].in_flight.drain(..).collect();
        for w in &all {
            self.send_peer_ack(node, w);
        }
        let n = &mut self.nodes[node];
        self.stats.writes_failed += (all.len() + n.suspended.len()) as u64;
        n.suspended.clear();
        n.refresh_al();
    }
}

/// How much an absence record lets a node discount the peer (last man standing).
fn trust(a: Absence) -> u8 {
    match a {
        Absence::Unknown => 0,
        Absence::Quorumless => 1,
        Absence::Outdated => 2,
    }
}

/// Whether the victim's own resolution says to demote it first (`call-pri-lost-after-sb`).
fn victim_outcome_demotes(
    oa: &replbd_quorum::SbOutcome,
    ob: &replbd_quorum::SbOutcome,
    victim_is_a: bool,
) -> bool {
    let own = if victim_is_a { oa } else { ob };
    matches!(own.resolution, replbd_quorum::SbResolution::CallHelper(_))
}

/// [`decide`] only fails for equal node ids, which the cluster never passes.
fn unreachable_decision() -> (Decision, Decision) {
    let none = Decision {
        outcome: SyncDecision::UnrelatedData,
        rule: replbd_quorum::Rule::Unrelated,
        adjustment: None,
    };
    (none, none)
}
