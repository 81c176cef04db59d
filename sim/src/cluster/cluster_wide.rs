//! What holds after every step, in order:
//!
//! 1. **Outdating.** In DRBD 9 a role or connection change is a cluster-wide transaction, and a node
//!    in the same connected part of the cluster as the Primary but without a direct connection to
//!    it cannot receive its writes: it becomes Outdated (persisted). A node cut off from the Primary
//!    altogether keeps its state; quorum is what keeps it from being promoted.
//! 2. **Quorum.** Every running node's verdict is recomputed with [`evaluate_quorum`] from what it
//!    knows: connected peers and their disk states, what it recorded about each absent peer when it
//!    left (Outdated, quorumless, unknown), diskless tiebreakers, and whether it had quorum before.
//!    A Primary that loses quorum sets the persistent primary-lost-quorum flag; one that regains it
//!    clears it.
//! 3. **Consistent → UpToDate.** A Consistent node (after a restart) becomes UpToDate once it has
//!    quorum (with `quorum off`: once it is connected to every diskful peer) with every handshake
//!    done and no resync into it: no reachable peer had newer data.
//! 4. **Writes.** Primaries complete the writes every peer answered for, if they have quorum now, and
//!    resume frozen writes once quorum returns.
//! 5. **Marked blocks.** Two connected nodes at the same generation, one of which has blocks marked
//!    out of sync for the other (a peer ack showed the other missed a write, or a Secondary lost the
//!    Primary before its peer acks), resync those blocks — the engine's OutOfSync and
//!    `marked_blocks_sync`. The source must have applied at least as much of every Primary's write
//!    stream as the target (the engine's applied-write watermarks); among such, the Primary if one of
//!    them is, else the one that is ahead, else (equal) the one whose marks point at the other. When
//!    neither qualifies, nothing moves yet (the engine warns; a later handshake decides). While the catch-up has to wait (a node is busy with another resync), the target is
//!    Outdated: it is known to lack data, and must not be trusted as a survivor or promoted.

use replbd_quorum::gi::same_generation;
use replbd_quorum::quorum::{LocalVote, PeerVote, QuorumInput};
use replbd_quorum::rotate::{GenerationEvent, starts_new_generation};
use replbd_quorum::{DiskState, evaluate_quorum};

use super::Cluster;
use crate::node::{bit, members};

/// A node's view for the quorum computation (owned, so the cluster can be borrowed again).
pub(super) struct QuorumView {
    local: LocalVote,
    peers: Vec<PeerVote>,
    had_quorum: bool,
}

impl QuorumView {
    /// The input [`evaluate_quorum`] takes.
    pub(super) fn as_input(&self) -> QuorumInput<'_> {
        QuorumInput {
            local: self.local,
            peers: &self.peers,
            had_quorum: self.had_quorum,
        }
    }
}

impl Cluster {
    /// What `node` knows for the quorum computation.
    pub(super) fn quorum_input(&self, node: usize) -> QuorumView {
        let me = &self.nodes[node];
        let local = if me.diskless {
            LocalVote::DisklessClient
        } else {
            LocalVote::Diskful(me.disk_state)
        };
        let peers = members(self.all_nodes() & !bit(node))
            .map(|p| {
                let peer = &self.nodes[p];
                let connected = self.net.connected(node, p);
                match (peer.diskless, connected) {
                    (true, true) => PeerVote::DisklessConnected,
                    (true, false) => PeerVote::DisklessAbsent,
                    (false, true) => PeerVote::Present {
                        disk: peer.disk_state,
                        quorate: peer.quorate,
                    },
                    (false, false) => PeerVote::Absent(me.absence[p]),
                }
            })
            .collect();
        QuorumView {
            local,
            peers,
            had_quorum: me.quorate,
        }
    }

    /// The cluster-wide rules that follow every step (see the module documentation).
    pub(super) fn after_step(&mut self) {
        self.outdate_unconnected();
        self.update_quorum();
        self.consistent_to_up_to_date();
        for p in members(self.primaries(self.all_nodes())) {
            self.finish_writes(p);
            self.resume_frozen(p);
        }
        self.resync_marked_blocks();
    }

    fn resync_marked_blocks(&mut self) {
        let n = self.cfg.nodes;
        for a in 0..n {
            for b in a + 1..n {
                match self.marked_direction(a, b) {
                    Some((source, target, false)) => {
                        let set = self.nodes[source].disk.bits[target] | self.nodes[target].disk.bits[source];
                        self.note(|| format!("n{source}->n{target}: blocks marked out of sync"));
                        self.begin_resync(source, target, set, true);
                    }
                    Some((source, target, true)) => {
                        // The catch-up must wait; meanwhile the target is known to lack data.
                        if matches!(
                            self.nodes[target].disk_state,
                            DiskState::UpToDate | DiskState::Consistent
                        ) {
                            self.nodes[target].outdate();
                            self.note(|| {
                                format!("n{target}: Outdated (lacks blocks n{source} has, catch-up waits)")
                            });
                        }
                    }
                    None => {}
                }
            }
        }
    }

    /// Which way blocks marked between connected `a` and `b` should move, and whether that has to
    /// wait (one of them is busy with another resync, or the target is with another Primary).
    fn marked_direction(&self, a: usize, b: usize) -> Option<(usize, usize, bool)> {
        let (x, y) = (&self.nodes[a], &self.nodes[b]);
        let (ab, ba) = (x.disk.bits[b], y.disk.bits[a]);
        if x.diskless || y.diskless || (ab | ba) == 0 || !self.net.connected(a, b) {
            return None;
        }
        if self.net.resync(a, b).is_some() || !same_generation(x.disk.gi.current, y.disk.gi.current) {
            return None;
        }
        // The source must have applied at least as much of every Primary's stream as the target
        // (watermarks); if neither has, nothing can move yet.
        let (a_ahead, b_ahead) = (x.disk.dominates(&y.disk), y.disk.dominates(&x.disk));
        let (source, target) = match (x.is_primary(), y.is_primary()) {
            (true, false) if a_ahead => (a, b),
            (false, true) if b_ahead => (b, a),
            (false, false) => match (a_ahead, b_ahead) {
                (true, false) => (a, b),
                (false, true) => (b, a),
                (true, true) if ba == 0 => (a, b),
                (true, true) if ab == 0 => (b, a),
                _ => return None,
            },
            _ => return None,
        };
        if !matches!(
            self.nodes[source].disk_state,
            DiskState::UpToDate | DiskState::Consistent
        ) {
            return None;
        }
        let busy = |i: usize| self.sync_source_of(i).is_some();
        let other_primary = self.primaries(self.connected_peers(target)) & !bit(source) != 0;
        let wait = busy(source) || busy(target) || self.is_sync_source(target) || other_primary;
        Some((source, target, wait))
    }

    fn outdate_unconnected(&mut self) {
        for p in members(self.primaries(self.all_nodes())) {
            let component = self.component(p);
            for x in members(component & self.diskful() & !bit(p)) {
                let state = self.nodes[x].disk_state;
                if !self.net.connected(x, p) && matches!(state, DiskState::UpToDate | DiskState::Consistent) {
                    self.nodes[x].outdate();
                    self.note(|| format!("n{x}: Outdated (not connected to Primary n{p})"));
                }
            }
        }
    }

    fn update_quorum(&mut self) {
        let verdicts: Vec<Option<bool>> = (0..self.cfg.nodes)
            .map(|i| {
                self.nodes[i]
                    .up
                    .then(|| evaluate_quorum(&self.cfg.quorum, &self.quorum_input(i).as_input()).have_quorum)
            })
            .collect();
        for (i, v) in verdicts.into_iter().enumerate() {
            let Some(have) = v else { continue };
            let n = &mut self.nodes[i];
            let had = n.quorate;
            n.quorate = have;
            if n.is_primary() && !n.diskless {
                if had && !have {
                    n.disk.gi.flags.primary_lost_quorum = true;
                    self.stats.quorum_lost += 1;
                    self.note(|| format!("n{i}: Primary lost quorum"));
                } else if have {
                    n.disk.gi.flags.primary_lost_quorum = false;
                }
            }
        }
    }

    fn consistent_to_up_to_date(&mut self) {
        let quorum = self.cfg.quorum_enabled();
        for x in members(self.diskful()) {
            let n = &self.nodes[x];
            if !n.up || n.disk_state != DiskState::Consistent || self.sync_source_of(x).is_some() {
                continue;
            }
            let ready = if quorum {
                n.quorate
            } else {
                self.connected_peers(x) & self.diskful() == self.diskful() & !bit(x)
            };
            if ready {
                self.nodes[x].make_up_to_date();
                self.note(|| format!("n{x}: UpToDate (no peer has newer data)"));
            }
        }
    }

    fn resume_frozen(&mut self, node: usize) {
        let n = &self.nodes[node];
        let may_write = n.quorate || !self.cfg.quorum_enabled();
        if n.suspended.is_empty() || !may_write || n.disk_state != DiskState::UpToDate {
            return;
        }
        let blocks = std::mem::take(&mut self.nodes[node].suspended);
        if starts_new_generation(GenerationEvent::ResumedAfterSuspend, self.nodes[node].role) {
            self.nodes[node].rotate_pending = true;
        }
        self.note(|| format!("n{node}: quorum is back, {} frozen writes resume", blocks.len()));
        for b in blocks {
            self.submit_write(node, b);
        }
    }
}
