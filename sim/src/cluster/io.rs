//! Application writes and the messages that carry them.
//!
//! The write path follows DRBD with protocol C (the only protocol simulated):
//!
//! 1. A Primary refuses a write without UpToDate data, and without quorum fails it (`on-no-quorum
//!    io-error`) or freezes it until quorum returns (`suspend-io`).
//! 2. If a peer was lost since the last write, the write first starts a new data generation
//!    (rotation is lazy, as in the engine's `rotate_if_pending`).
//! 3. The block is written locally (and covered by the activity log), sent to every connected
//!    diskful peer, and marked out of sync for every peer that is not connected.
//! 4. It completes when every peer it was sent to acknowledged it or was lost (a lost peer gets the
//!    block marked), and only if the Primary has quorum at that moment: completion happens in
//!    [`super::cluster_wide`], after quorum is re-evaluated for the step. If a peer was lost, the
//!    new generation is started *before* the write completes, not only before the next write (see
//!    [`Cluster::finish_writes`]; the engine's `rotate_if_pending` waits for the next write).
//! 5. Then the Primary sends a peer ack listing the nodes that hold the write; each Secondary marks
//!    the block for the nodes not listed (the engine's `peer_ack` module). A Secondary that loses the
//!    Primary before the peer ack marks the block for everyone.

use replbd_quorum::gi::same_generation;
use replbd_quorum::quorum::OnNoQuorum;
use replbd_quorum::rotate;
use replbd_quorum::{DiskState, NodeSet, evaluate_quorum};

use super::{Cluster, Event};
use crate::net::{Link, Msg};
use crate::node::{InFlight, Unacked, bit, members};
use crate::oracle::WriteId;

impl Cluster {
    /// The application writes `block` on `node`.
    pub(super) fn app_write(&mut self, node: usize, block: usize) {
        if block >= self.nodes[node].disk.data.len() || !self.nodes[node].is_primary() {
            return;
        }
        if self.nodes[node].disk_state != DiskState::UpToDate {
            self.note(|| format!("n{node}: write refused, the disk is not UpToDate"));
            return;
        }
        let quorum_ok =
            !self.cfg.quorum_enabled() || self.nodes[node].quorate || self.cfg.faults.write_without_quorum;
        if !quorum_ok {
            match self.cfg.quorum.on_no_quorum {
                OnNoQuorum::IoError => {
                    self.stats.writes_failed += 1;
                    self.note(|| format!("n{node}: write fails with EIO (no quorum)"));
                }
                OnNoQuorum::SuspendIo => {
                    self.nodes[node].suspended.push(block);
                    self.note(|| format!("n{node}: write frozen until quorum returns"));
                }
            }
            return;
        }
        self.submit_write(node, block);
    }

    /// Writes `block` locally and sends it to the connected peers.
    pub(super) fn submit_write(&mut self, node: usize, block: usize) {
        if self.nodes[node].rotate_pending {
            self.nodes[node].rotate_pending = false;
            self.new_generation(node);
        }
        let prev = self.nodes[node].disk.data[block];
        let id = self.writes.record(block, prev, node, self.step);
        let peers = self.connected_peers(node) & self.diskful();
        let absent = self.diskful() & !peers & !bit(node);
        let mark = !self.cfg.faults.skip_bitmap_marking;
        let n = &mut self.nodes[node];
        n.disk.data[block] = id;
        n.disk.gi.dagtag += 1;
        n.disk.seen[node] = id;
        if mark {
            n.mark(absent, 1 << block);
        }
        n.in_flight.push(InFlight {
            id,
            block,
            waiting: peers,
            holders: bit(node),
            sent_to: peers,
        });
        n.refresh_al();
        for p in members(peers) {
            self.net.send(node, p, Msg::Write { id, block });
        }
        self.note(|| format!("n{node}: write w{id} to block {block}, sent to {}", names(peers)));
    }

    /// Starts a new data generation on Primary `node`, as the engine does: peers connected at our
    /// generation with nothing out of sync first have their slot cleared (they hold it in full);
    /// then every empty slot keeps the old generation (`rotate::new_data_generation` with every
    /// peer counted as absent) until the peer confirms the new one.
    pub(super) fn new_generation(&mut self, node: usize) {
        let own = self.nodes[node].id;
        let connected = self.connected_peers(node) & self.diskful();
        let current = self.nodes[node].disk.gi.current;
        let mut in_sync = 0;
        for p in members(connected) {
            let holds_all = same_generation(self.nodes[p].disk.gi.current, current)
                && self.nodes[node].disk.bits[p] == 0
                && self.net.resync(node, p).is_none();
            if holds_all {
                in_sync |= bit(p);
                if self.nodes[node].disk.gi.bitmap[p] != 0 {
                    let pid = self.nodes[p].id;
                    self.nodes[node].disk.gi.replace_bitmap_uuid(pid, 0, own);
                }
            }
        }
        let absent: NodeSet = members(self.diskful() & !bit(node))
            .map(|p| self.nodes[p].id)
            .collect();
        let uuid = self.new_uuid();
        let primary = self.nodes[node].is_primary();
        if rotate::new_data_generation(&mut self.nodes[node].disk.gi, own, absent, uuid, primary).is_err() {
            return;
        }
        let current = self.nodes[node].disk.gi.current;
        for p in members(connected) {
            self.net.send(
                node,
                p,
                Msg::Generation {
                    current,
                    replicating: connected,
                    in_sync,
                },
            );
        }
        self.note(|| format!("n{node}: new data generation {current:016X}"));
    }

    /// Delivers the oldest message on `from`→`to`.
    pub(super) fn deliver(&mut self, from: usize, to: usize) {
        if !self.net.connected(from, to) {
            return;
        }
        let Some(msg) = self.net.pop(from, to) else {
            return;
        };
        match msg {
            Msg::Write { id, block } => self.receive_write(from, to, id, block),
            Msg::WriteAck { id } => {
                if let Some(w) = self.nodes[to].in_flight.iter_mut().find(|w| w.id == id) {
                    w.waiting &= !bit(from);
                    w.holders |= bit(from);
                }
            }
            Msg::PeerAck { id, block, holders } => {
                self.nodes[to].unacked.retain(|u| u.id != id);
                self.mark_for(to, self.diskful() & !holders, 1 << block);
                self.nodes[to].refresh_al();
            }
            Msg::Generation {
                current,
                replicating,
                in_sync,
            } => self.adopt_generation(from, to, current, replicating, in_sync & bit(to) != 0),
            Msg::CurrentUuid { current } => self.peer_reported(to, from, current),
            Msg::ResyncData { block, value } => self.receive_resync_data(from, to, block, value),
            Msg::ResyncAck { block } => self.resync_acked(to, from, block),
            Msg::ResyncDone {
                gi,
                at_current,
                state,
                seen,
                bits,
            } => {
                self.nodes[to].disk.absorb_seen(&seen);
                self.finish_resync(from, to, &gi, at_current, state, &bits);
            }
        }
    }

    fn receive_write(&mut self, from: usize, to: usize, id: WriteId, block: usize) {
        let n = &mut self.nodes[to];
        if block >= n.disk.data.len() {
            return;
        }
        n.disk.data[block] = id;
        n.disk.gi.dagtag += 1;
        n.disk.seen[from] = n.disk.seen[from].max(id);
        n.unacked.push(Unacked { id, block, from });
        n.refresh_al();
        self.net.send(to, from, Msg::WriteAck { id });
    }

    /// A connected Secondary follows the Primary into its new generation if the Primary vouches that
    /// it held all of the previous one (`in_sync`: same generation, nothing marked out of sync, no
    /// resync) — then it is UpToDate, even if it was Outdated or Consistent. The peers the Primary does
    /// not replicate to keep the old generation in their slot. Then it reports its current UUID back
    /// (the engine's `peer_reported`).
    ///
    /// The engine lets every connected UpToDate Secondary follow. The simulation found two ways that
    /// goes wrong: a Secondary that lacks blocks (marked, catch-up not yet run) follows anyway, and
    /// its UUID then claims data it does not have; an Outdated one does not follow but goes on
    /// receiving the Primary's writes under its old UUID. Either way a later handshake can make it
    /// the target of a node that lacks writes it holds, or the source of writes it lacks. So a
    /// Secondary that cannot follow (and is not a sync target already) runs the handshake with the
    /// Primary again, which makes it a sync target.
    fn adopt_generation(&mut self, from: usize, to: usize, current: u64, replicating: u32, vouched: bool) {
        let state = self.nodes[to].disk_state;
        let good = vouched
            && matches!(
                state,
                DiskState::UpToDate | DiskState::Outdated | DiskState::Consistent
            );
        if self.sync_source_of(to) == Some(from) {
            // A sync target follows its source's new generation (the sync UUID moves on).
            self.nodes[to].take_sync_uuid(current);
            self.forward_generation(to, current, replicating);
            let mine = self.nodes[to].disk.gi.current;
            self.net.send(to, from, Msg::CurrentUuid { current: mine });
            return;
        }
        let target = self.sync_source_of(to).is_some();
        let differs = !same_generation(current, self.nodes[to].disk.gi.current);
        if differs && !good && !target {
            // It cannot follow (it lacks data): the two run the handshake again, which resyncs it.
            self.note(|| {
                format!("n{to}: cannot follow n{from} into generation {current:016X}; reconnecting")
            });
            self.disconnect(from, to, Link::Down);
            self.connect(from, to, None);
            return;
        }
        if good && !target && differs {
            let own = self.nodes[to].id;
            let absent: NodeSet = members(self.diskful() & !replicating & !bit(from) & !bit(to))
                .map(|p| self.nodes[p].id)
                .collect();
            if rotate::new_data_generation(&mut self.nodes[to].disk.gi, own, absent, current, false).is_ok() {
                // Its data is the Primary's generation now, as in the engine.
                self.nodes[to].disk.gi.flags.primary_lost_quorum = false;
                if state != DiskState::UpToDate {
                    self.nodes[to].make_up_to_date();
                }
                self.note(|| format!("n{to}: follows n{from} into generation {current:016X}"));
            }
            self.forward_generation(to, current, replicating);
        }
        let mine = self.nodes[to].disk.gi.current;
        self.net.send(to, from, Msg::CurrentUuid { current: mine });
    }

    /// `node` moved to generation `current`: its sync targets follow (their sync UUID moves on).
    fn forward_generation(&mut self, node: usize, current: u64, replicating: u32) {
        let targets: Vec<usize> = self
            .net
            .resyncs()
            .filter(|r| r.source == node)
            .map(|r| r.target)
            .collect();
        for t in targets {
            self.net.send(
                node,
                t,
                Msg::Generation {
                    current,
                    replicating,
                    in_sync: 0,
                },
            );
        }
    }

    /// `peer` reported its current UUID to `node`: if it holds `node`'s generation in full, the
    /// slot `node` keeps for it is no longer needed.
    pub(super) fn peer_reported(&mut self, node: usize, peer: usize, current: u64) {
        let n = &self.nodes[node];
        let clear = !n.diskless
            && same_generation(current, n.disk.gi.current)
            && n.disk.gi.bitmap[peer] != 0
            && n.disk.bits[peer] == 0
            && self.net.resync(node, peer).is_none();
        if clear {
            let (own, pid) = (self.nodes[node].id, self.nodes[peer].id);
            self.nodes[node].disk.gi.replace_bitmap_uuid(pid, 0, own);
        }
    }

    /// Completes (or fails) the writes of Primary `node` that every peer has answered for.
    pub(super) fn finish_writes(&mut self, node: usize) {
        let quorum_ok =
            !self.cfg.quorum_enabled() || self.nodes[node].quorate || self.cfg.faults.write_without_quorum;
        let io_error = self.cfg.quorum.on_no_quorum == OnNoQuorum::IoError;
        let ready: Vec<InFlight> = self.nodes[node]
            .in_flight
            .iter()
            .filter(|w| w.waiting == 0)
            .cloned()
            .collect();
        // A write that a lost peer never acknowledged completes only in a new generation: if it
        // completed in the old one, the peer (at the old generation) would later look merely behind,
        // and a node promoted next to it would overwrite the write without seeing a split brain.
        if quorum_ok
            && !ready.is_empty()
            && self.nodes[node].rotate_pending
            && !self.cfg.faults.rotate_only_at_next_write
        {
            self.nodes[node].rotate_pending = false;
            self.new_generation(node);
        }
        for w in ready {
            if quorum_ok {
                self.writes.ack(w.id);
                self.stats.writes_acked += 1;
                self.events.push(Event::WriteCompleted { node, id: w.id });
                if self.logging {
                    let verdict = evaluate_quorum(&self.cfg.quorum, &self.quorum_input(node).as_input());
                    self.note(|| {
                        format!(
                            "n{node}: w{} completes (held by {}; {verdict})",
                            w.id,
                            names(w.holders)
                        )
                    });
                }
            } else if io_error {
                self.stats.writes_failed += 1;
                self.note(|| format!("n{node}: w{} fails with EIO (no quorum)", w.id));
            } else {
                continue;
            }
            self.send_peer_ack(node, &w);
            self.nodes[node].in_flight.retain(|x| x.id != w.id);
        }
        self.nodes[node].refresh_al();
    }

    /// Tells the peers a write went to which nodes hold it.
    pub(super) fn send_peer_ack(&mut self, node: usize, w: &InFlight) {
        for p in members(w.sent_to & self.connected_peers(node)) {
            self.net.send(
                node,
                p,
                Msg::PeerAck {
                    id: w.id,
                    block: w.block,
                    holders: w.holders,
                },
            );
        }
    }
}

/// A node mask as `{n0,n2}`.
pub(crate) fn names(mask: u32) -> String {
    let v: Vec<String> = members(mask).map(|i| format!("n{i}")).collect();
    format!("{{{}}}", v.join(","))
}
