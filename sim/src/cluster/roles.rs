//! Roles and lifecycle: promotion, demotion, crash, restart, clean shutdown, lost connections.
//!
//! Promotion is what an HA agent does: it picks a Secondary with UpToDate data and asks
//! [`can_promote`] with the node's [`evaluate_quorum`] verdict. As in DRBD 9, a role change is a
//! cluster-wide transaction among connected nodes, so every Primary reachable through connections
//! counts as "another Primary" (`primary_peers`), not only direct peers. Like the engine, the
//! promoted node marks itself crashed-primary (cleared by a clean demotion) and starts a new data
//! generation at once.
//!
//! A crash loses memory only: role, connections, writes in flight (never acknowledged), frozen
//! writes. On restart the activity log is applied (its blocks are marked out of sync for every
//! peer), the disk state comes from the metadata, and the node is Secondary. A clean shutdown of a
//! Secondary while a Primary runs in its part of the cluster outdates it first, and its peers know,
//! which is what lets a lone Primary keep quorum (last man standing).

use replbd_quorum::promote::{PrimaryPeer, PromoteRequest};
use replbd_quorum::quorum::Absence;
use replbd_quorum::rotate;
use replbd_quorum::{DiskState, Protocol, Role, can_promote, departed_peer_absence, evaluate_quorum};

use super::Cluster;
use crate::net::{Link, Msg};
use crate::node::{bit, members};

impl Cluster {
    /// The HA agent promotes `node`.
    pub(super) fn promote(&mut self, node: usize) {
        let n = &self.nodes[node];
        if !n.up || n.diskless || n.role == Role::Primary || n.disk_state != DiskState::UpToDate {
            return;
        }
        // The HA agent waits while a connected peer resyncs from another node (the model keeps one
        // writer per sync target; see `handshake`).
        let busy =
            members(self.connected_peers(node)).any(|p| self.sync_source_of(p).is_some_and(|s| s != node));
        if busy || self.sync_source_of(node).is_some() {
            self.note(|| format!("n{node}: HA agent waits, a peer is resyncing"));
            return;
        }
        let primary_peers: Vec<PrimaryPeer> = members(self.primaries(self.component(node)) & !bit(node))
            .map(|p| PrimaryPeer {
                node: self.nodes[p].id,
                allow_two_primaries: false,
                protocol: Protocol::C,
            })
            .collect();
        let verdict = evaluate_quorum(&self.cfg.quorum, &self.quorum_input(node).as_input());
        let request = PromoteRequest {
            force: false,
            quorum: verdict,
            local_disk: self.nodes[node].disk_state,
            local_just_created: self.nodes[node].disk.gi.is_just_created(),
            up_to_date_peer_connected: members(self.connected_peers(node))
                .any(|p| self.nodes[p].disk_state == DiskState::UpToDate),
            primary_peers: &primary_peers,
        };
        match can_promote(&request) {
            Ok(_) => {
                self.stats.promotions += 1;
                let n = &mut self.nodes[node];
                n.role = Role::Primary;
                n.disk.gi.flags.crashed_primary = true;
                n.disk.gi.flags.primary_lost_quorum = false;
                n.rotate_pending = false;
                self.new_generation(node);
                self.note(|| format!("n{node}: promoted ({verdict})"));
            }
            Err(e) => {
                self.stats.promotions_refused += 1;
                self.note(|| format!("n{node}: promotion refused: {e}"));
            }
        }
    }

    /// The HA agent demotes `node`. Writes still waiting for a peer make it wait (it does nothing);
    /// writes waiting only for quorum, and frozen writes, fail.
    pub(super) fn demote(&mut self, node: usize) {
        if !self.nodes[node].is_primary() {
            return;
        }
        if self.nodes[node].in_flight.iter().any(|w| w.waiting != 0) {
            self.note(|| format!("n{node}: demotion waits for writes in flight"));
            return;
        }
        self.fail_frozen_writes(node);
        let n = &mut self.nodes[node];
        n.role = Role::Secondary;
        n.rotate_pending = false;
        n.disk.gi.flags.crashed_primary = false;
        rotate::set_role_bit(&mut n.disk.gi, false);
        self.note(|| format!("n{node}: demoted to Secondary"));
    }

    /// Fails every write of `node` that waits only for quorum or is frozen.
    pub(super) fn fail_frozen_writes(&mut self, node: usize) {
        let ready: Vec<_> = self.nodes[node]
            .in_flight
            .iter()
            .filter(|w| w.waiting == 0)
            .cloned()
            .collect();
        for w in &ready {
            self.send_peer_ack(node, w);
        }
        let n = &mut self.nodes[node];
        let failed = ready.len() + n.suspended.len();
        n.in_flight.retain(|w| w.waiting != 0);
        n.suspended.clear();
        n.refresh_al();
        self.stats.writes_failed += failed as u64;
    }

    /// `node` crashes.
    pub(super) fn crash(&mut self, node: usize) {
        if !self.nodes[node].up {
            return;
        }
        let n = &self.nodes[node];
        self.stats.writes_failed += (n.in_flight.len() + n.suspended.len()) as u64;
        self.stop(node);
        self.note(|| format!("n{node}: crashed"));
    }

    /// The administrator takes Secondary `node` down cleanly. If a Primary runs in its part of the
    /// cluster it outdates itself first (its data will fall behind), and its peers know it.
    pub(super) fn down(&mut self, node: usize) {
        let n = &self.nodes[node];
        if !n.up || n.role == Role::Primary {
            return;
        }
        if !n.diskless && self.primaries(self.component(node)) != 0 && n.disk_state >= DiskState::Outdated {
            self.nodes[node].outdate();
        }
        self.stop(node);
        self.note(|| format!("n{node}: down"));
    }

    /// Drops every connection of `node` and marks it stopped.
    fn stop(&mut self, node: usize) {
        for p in members(self.all_nodes() & !bit(node)) {
            let was_connected = self.net.connected(node, p);
            self.net.set_link(node, p, Link::Down);
            if was_connected {
                self.net.clear(node, p);
                self.net.set_resync(node, p, None);
                self.peer_lost(p, node);
            }
        }
        let n = &mut self.nodes[node];
        n.up = false;
        n.quorate = false;
        // Memory is gone; the activity log on disk still covers what was in flight.
        n.in_flight.clear();
        n.suspended.clear();
        n.unacked.clear();
    }

    /// `node` starts again.
    pub(super) fn restart(&mut self, node: usize) {
        if self.nodes[node].up {
            return;
        }
        let diskful = self.diskful();
        let n = &mut self.nodes[node];
        n.up = true;
        n.role = Role::Secondary;
        n.quorate = false;
        n.absence = [Absence::Unknown; crate::config::MAX_NODES];
        n.seen_since_start = 0;
        n.rotate_pending = false;
        if n.diskless {
            n.disk_state = DiskState::Diskless;
        } else {
            rotate::set_role_bit(&mut n.disk.gi, false);
            n.disk_state = n.disk.gi.disk_state_from_metadata();
            // apply-al: whatever was in flight may differ on any peer.
            let al = n.disk.al;
            n.mark(diskful, al);
            n.disk.al = 0;
        }
        self.note(|| format!("n{node}: restarted"));
    }

    /// The connection `a`–`b` ends (both sides notice); it becomes `link`.
    pub(super) fn disconnect(&mut self, a: usize, b: usize, link: Link) {
        if self.net.connected(a, b) {
            self.net.clear(a, b);
            self.net.set_resync(a, b, None);
            self.net.set_link(a, b, link);
            self.peer_lost(a, b);
            self.peer_lost(b, a);
            self.note(|| format!("n{a}-n{b}: connection lost"));
        } else {
            self.net.set_link(a, b, link);
        }
    }

    /// `node` lost its connection to `peer`.
    fn peer_lost(&mut self, node: usize, peer: usize) {
        if !self.nodes[node].up || self.nodes[peer].diskless || self.nodes[node].diskless {
            return;
        }
        // What the node records about the peer: Outdated if known, else quorumless only if it keeps
        // quorum without the peer (`departed_peer_absence`), else unknown.
        let absence = if self.nodes[peer].disk_state.is_outdated_or_worse() {
            Absence::Outdated
        } else {
            self.nodes[node].absence[peer] = Absence::Unknown;
            departed_peer_absence(&self.cfg.quorum, &self.quorum_input(node).as_input())
        };
        let diskful = self.diskful();
        let n = &mut self.nodes[node];
        n.absence[peer] = absence;
        // The Primary: writes the peer did not acknowledge are out of sync for it; the next write
        // starts a new generation.
        if n.role == Role::Primary {
            for w in n.in_flight.iter_mut().filter(|w| w.waiting & bit(peer) != 0) {
                w.waiting &= !bit(peer);
                n.disk.bits[peer] |= 1 << w.block;
            }
            n.rotate_pending = true;
        }
        // A Secondary that loses the Primary before its peer acks cannot know who got those
        // writes: they are out of sync for every other peer.
        let lost: u64 = n
            .unacked
            .iter()
            .filter(|u| u.from == peer)
            .fold(0, |m, u| m | 1 << u.block);
        n.unacked.retain(|u| u.from != peer);
        n.refresh_al();
        self.mark_for(node, diskful & !bit(peer), lost);
    }

    /// The network changes: pairs outside `reach` cannot talk; their connections break.
    pub(super) fn partition(&mut self, reach: u32) {
        self.net.reach = reach & crate::step::full_reach(self.cfg.nodes);
        let n = self.cfg.nodes;
        for a in 0..n {
            for b in a + 1..n {
                if !self.net.reachable(a, b) && self.net.connected(a, b) {
                    self.disconnect(a, b, Link::Down);
                }
            }
        }
    }

    /// The administrator connects a StandAlone pair again, optionally with `--discard-my-data` on
    /// `discard`.
    pub(super) fn operator_connect(&mut self, a: usize, b: usize, discard: Option<usize>) {
        if a == b || !matches!(self.net.link(a, b), Link::StandAlone(_)) {
            return;
        }
        self.net.set_link(a, b, Link::Down);
        self.connect(a, b, discard);
    }

    /// Sends `node`'s current UUID to `peer` (a state report).
    pub(super) fn report_current(&mut self, node: usize, peer: usize) {
        let current = self.nodes[node].disk.gi.current;
        self.net.send(node, peer, Msg::CurrentUuid { current });
    }
}
