//! Generation identifiers at run time: what a node tells its peers, when it starts a new data
//! generation, and what it decides when a peer connects.
//!
//! - A Primary starts a new generation when promoted, and before its first write after losing a
//!   peer: every slot of a peer it cannot reach that has no bitmap UUID yet gets the old current UUID,
//!   so that slot's bitmap is known to hold every change since — which is what makes the next
//!   handshake pick a bitmap resync instead of "no sync" (the rotation is lazy, the write waits for
//!   it to be durable).
//! - A Secondary that is connected and UpToDate adopts the Primary's new generation when told.
//! - At connect, both sides' identifiers go through [`replbd_quorum::decide`], which names the rule
//!   that decided.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use replbd_bitmap::NodeFlags;
use replbd_quorum::{DiskState, GenerationIds, HandshakeSide, NodeId, Protocol, Role, decide};

use super::core::Inner;
use super::link::Link;
use crate::wire::Kind;
use crate::wire::messages::{self, StateReport};

/// Wire encoding of a disk state: its position in DRBD's order.
pub(crate) fn disk_to_u8(d: DiskState) -> u8 {
    DiskState::ALL.iter().position(|x| *x == d).unwrap_or(0) as u8
}

/// Decodes a disk state, `DUnknown` for anything unknown.
pub(crate) fn disk_from_u8(v: u8) -> DiskState {
    DiskState::ALL
        .get(usize::from(v))
        .copied()
        .unwrap_or(DiskState::DUnknown)
}

pub(crate) fn role_to_u8(r: Role) -> u8 {
    match r {
        Role::Secondary => 0,
        Role::Primary => 1,
        Role::Unknown => 2,
    }
}

pub(crate) fn role_from_u8(v: u8) -> Role {
    match v {
        0 => Role::Secondary,
        1 => Role::Primary,
        _ => Role::Unknown,
    }
}

pub(crate) fn protocol_to_u8(p: Protocol) -> u8 {
    match p {
        Protocol::A => 0,
        Protocol::B => 1,
        Protocol::C => 2,
    }
}

const F_CONSISTENT: u32 = 1;
const F_WAS_UP_TO_DATE: u32 = 2;
const F_CRASHED_PRIMARY: u32 = 4;
const F_LOST_QUORUM: u32 = 8;
/// In the report sent to one peer at connect: this node's slot for that peer is flagged
/// `full-sync` (it was added to the running resource; see [`super::membership`]). Not a
/// generation flag: [`report_gi`] ignores it.
pub(crate) const F_FULL_SYNC_FOR_YOU: u32 = 256;

/// The generation identifiers a report describes, in the decision crate's form.
pub(crate) fn report_gi(r: &StateReport) -> GenerationIds {
    let mut g = GenerationIds::just_created();
    g.current = r.current_uuid;
    for &(node, uuid) in &r.bitmap_uuids {
        if let Some(slot) = g.bitmap.get_mut(usize::from(node)) {
            *slot = uuid;
        }
    }
    for (i, h) in r.history.iter().take(g.history.len()).enumerate() {
        g.history[i] = *h;
    }
    g.flags.consistent = r.flags & F_CONSISTENT != 0;
    g.flags.was_up_to_date = r.flags & F_WAS_UP_TO_DATE != 0;
    g.flags.crashed_primary = r.flags & F_CRASHED_PRIMARY != 0;
    g.flags.primary_lost_quorum = r.flags & F_LOST_QUORUM != 0;
    g.dagtag = r.dagtag;
    g
}

impl Inner {
    /// This node's state as reported to a peer on a connection using `protocol`.
    pub(crate) fn state_report(&self, protocol: Protocol) -> StateReport {
        self.state_report_for(protocol, false)
    }

    /// The state report sent at connect; `reconnect`: this node stayed up since it was last
    /// connected to that peer.
    pub(crate) fn state_report_for(&self, protocol: Protocol, reconnect: bool) -> StateReport {
        let (role, disk) = self.role_and_disk();
        let mut r = StateReport {
            role: role_to_u8(role),
            disk: disk_to_u8(disk),
            size: self.disk.as_ref().map_or(0, |d| d.size()),
            protocol: protocol_to_u8(protocol),
            integrity: self.cfg.data_integrity,
            current_uuid: 0,
            bitmap_uuids: Vec::new(),
            history: Vec::new(),
            flags: 0,
            dagtag: 0,
            reconnect,
            dirty_for: Vec::new(),
            replicating: self
                .peers()
                .iter()
                .filter(|p| !p.cfg.diskless && p.live().is_some_and(|l| !l.is_ahead()))
                .fold(0, |m, p| m | super::peer_ack::bit(p.cfg.node_id)),
            quorate: super::core::lock(&self.control).quorum.have_quorum,
            discard_my_data: false,
            changes: 0,
            synced_uuid: 0,
            synced_from: 0,
        };
        if let Some((uuid, from)) = *super::core::lock(&self.last_sync) {
            r.synced_uuid = uuid;
            r.synced_from = from;
        }
        if self.disk.is_none() {
            let uuid = self.diskless_uuid.load(Ordering::SeqCst);
            if uuid != 0 {
                r.current_uuid = uuid | u64::from(role == Role::Primary);
            }
        }
        if let Some(d) = &self.disk {
            let gi = d.meta.generation_ids();
            let flags = d.meta.flags();
            r.current_uuid = gi.current | u64::from(role == Role::Primary);
            r.bitmap_uuids = gi
                .peers
                .iter()
                .filter_map(|p| p.node.map(|n| (n.get(), p.bitmap_uuid)))
                .collect();
            r.history = gi.history.iter().copied().filter(|&h| h != 0).collect();
            r.flags = (u32::from(flags.contains(NodeFlags::CONSISTENT)) * F_CONSISTENT)
                | (u32::from(flags.contains(NodeFlags::WAS_UP_TO_DATE)) * F_WAS_UP_TO_DATE)
                | (u32::from(flags.contains(NodeFlags::CRASHED_PRIMARY)) * F_CRASHED_PRIMARY)
                | (u32::from(flags.contains(NodeFlags::PRIMARY_LOST_QUORUM)) * F_LOST_QUORUM);
            r.dagtag = gi.dagtag;
            r.dirty_for = self
                .peers()
                .iter()
                .filter(|p| {
                    p.slot
                        .is_some_and(|s| d.meta.out_of_sync_bits(s).unwrap_or(0) > 0)
                })
                .map(|p| p.cfg.node_id)
                .collect();
        }
        r
    }

    /// This node's identifiers in the decision crate's form.
    pub(crate) fn local_gi(&self) -> GenerationIds {
        report_gi(&self.state_report(Protocol::C))
    }

    /// Tells every live peer this node's state.
    pub(crate) fn broadcast_state(&self) {
        for l in self.live_links() {
            l.send(messages::encode(
                Kind::StateReport,
                &self.state_report(l.protocol),
            ));
        }
    }

    /// Starts a new data generation, durably. Every peer slot without a bitmap UUID keeps the old
    /// generation — connected peers too, until they confirm they adopted the new one
    /// ([`Inner::peer_reported`]): a peer that drops out before confirming is still at the old
    /// generation, and its slot then says so, so its return is a bitmap resync, not a full one.
    ///
    /// A diskless Primary has no metadata, yet its diskful peers must still see a new generation
    /// (or a peer that was away would come back at the same UUID and miss what it lacks): it makes
    /// one in memory and announces it; UpToDate peers adopt it, recording the old one for the peers
    /// that are absent.
    pub(crate) async fn new_data_generation(self: &Arc<Self>) -> Result<(), String> {
        let Some(d) = &self.disk else {
            let uuid = replbd_bitmap::random::random_uuid() & !1;
            self.diskless_uuid.store(uuid, Ordering::SeqCst);
            tracing::info!(resource = %self.cfg.name, uuid = format_args!("{uuid:016X}"), "new data generation (diskless Primary)");
            self.broadcast_state();
            return Ok(());
        };
        // Peers known to hold the current generation in full (they confirmed it and miss nothing):
        // their slot records it even if it still names an older one that was never cleared.
        let gi = d.meta.generation_ids();
        let current = gi.current & !1;
        let confirmed: Vec<bool> = gi
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.node.is_some_and(|n| {
                    self.peer_disk_and_uuid(n.get()).1 == current
                        && self.peer(n.get()).is_some_and(|peer| peer.live().is_some())
                        && d.meta
                            .out_of_sync_bits(replbd_bitmap::PeerSlot(i as u8))
                            .unwrap_or(1)
                            == 0
                })
            })
            .collect();
        let meta = Arc::clone(&d.meta);
        let uuid = replbd_bitmap::random::random_uuid();
        tokio::task::spawn_blocking(move || {
            meta.update(|gi, _| {
                if gi.current & !1 == current {
                    for (i, done) in confirmed.iter().enumerate() {
                        if *done {
                            gi.clear_bitmap_uuid(replbd_bitmap::PeerSlot(i as u8));
                        }
                    }
                }
                gi.new_current(uuid, |_| true)
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!(resource = %self.cfg.name, uuid = format_args!("{uuid:016X}"), "new data generation");
        self.broadcast_state();
        Ok(())
    }

    /// A peer reported its state after the handshake (role change, new generation).
    pub(crate) async fn peer_reported(self: &Arc<Self>, link: &Arc<Link>, r: &StateReport) {
        let (peer_role, peer_disk) = (role_from_u8(r.role), disk_from_u8(r.disk));
        let was_primary = self.peer_role(link.peer) == Role::Primary;
        self.set_peer_state(link.peer, peer_disk, peer_role);
        self.set_peer_quorate(link.peer, r.quorate);
        if peer_role == Role::Primary && !was_primary {
            self.lost_primary_forget();
            self.resync_marked_from_new_primary(link);
        }
        if was_primary && peer_role == Role::Secondary {
            self.lost_primary_demoted(link);
        }
        if peer_disk == DiskState::UpToDate {
            self.maybe_unfence();
        }
        self.set_peer_uuid(link.peer, r.current_uuid);
        link.set_lineage(r);
        let Some(d) = &self.disk else {
            // A diskless Secondary presents the generation of the data it reads.
            if peer_disk == DiskState::UpToDate && r.current_uuid & !1 != 0 && self.role() != Role::Primary {
                self.diskless_uuid.store(r.current_uuid & !1, Ordering::SeqCst);
            }
            return;
        };
        let (_, disk) = self.role_and_disk();
        let theirs = r.current_uuid & !1;
        let gi = d.meta.generation_ids();
        let ours = gi.current & !1;
        // A connected peer confirms our generation: its slot no longer needs the old one, provided
        // the peer is missing nothing and no resync with it is under way.
        if theirs == ours
            && let Some(slot) = link.slot
            && gi.peers.get(slot.index()).is_some_and(|p| p.bitmap_uuid != 0)
            && d.meta.out_of_sync_bits(slot).unwrap_or(1) == 0
            && link.resync().is_none_or(|rs| !rs.running())
        {
            let meta = Arc::clone(&d.meta);
            // Checked again inside the update: a rotation may have happened meanwhile.
            let _ = tokio::task::spawn_blocking(move || {
                meta.update(|gi, _| {
                    if gi.current & !1 == theirs {
                        gi.clear_bitmap_uuid(slot);
                    }
                })
            })
            .await;
        }
        // A connected, UpToDate secondary follows the Primary into its new generation, and says so.
        // The peers the Primary's writes do not reach keep the old generation in their slot: from
        // here on this node's bitmap for them (fed by peer acks) tracks what they miss.
        if peer_role == Role::Primary && disk == DiskState::UpToDate && theirs != ours && theirs != 0 {
            let absent: Vec<bool> = gi
                .peers
                .iter()
                .map(|p| {
                    p.node.is_none_or(|n| {
                        n.get() != link.peer && r.replicating & super::peer_ack::bit(n.get()) == 0
                    })
                })
                .collect();
            let meta = Arc::clone(&d.meta);
            let res = tokio::task::spawn_blocking(move || {
                meta.update(|gi, flags| {
                    // Its data is now the Primary's generation, whose writes completed.
                    flags.set(NodeFlags::PRIMARY_LOST_QUORUM, false);
                    gi.new_current(theirs, |slot| absent.get(slot.index()).copied().unwrap_or(true))
                })
            })
            .await;
            if matches!(res, Ok(Ok(()))) {
                self.broadcast_state();
            } else {
                tracing::error!(resource = %self.cfg.name, peer = link.peer, "could not adopt the Primary's new data generation");
            }
        }
    }

    /// Decides what to do with a peer that just connected, from the two state reports the
    /// handshake exchanged: `ours` as sent, `r` as received. Both nodes thus decide on the same
    /// inputs, and the decision is the mirror image on each side. Deciding on this node's state
    /// *now* instead let a concurrent handshake with a third node (which made this node a sync
    /// target, clearing its consistent and lost-quorum flags in between) turn the peer's
    /// "become source" into a split brain here: StandAlone on one side only (found by the VM fault
    /// run through the handshake log line). A decision on a report that went stale meanwhile is
    /// caught where it matters: a sync source whose disk became Inconsistent stops serving.
    pub(crate) fn decide_with(
        &self,
        peer: u8,
        protocol: Protocol,
        ours: &StateReport,
        r: &StateReport,
    ) -> Result<replbd_quorum::Decision, String> {
        let local_gi = report_gi(ours);
        let peer_gi = report_gi(r);
        let (role, disk, reconnect) = (role_from_u8(ours.role), disk_from_u8(ours.disk), ours.reconnect);
        let me = NodeId::new(self.cfg.node_id).map_err(|e| e.to_string())?;
        let them = NodeId::new(peer).map_err(|e| e.to_string())?;
        let local = HandshakeSide {
            node: me,
            gi: &local_gi,
            disk,
            role,
            reconnect,
        };
        let remote = HandshakeSide {
            node: them,
            gi: &peer_gi,
            disk: disk_from_u8(r.disk),
            role: role_from_u8(r.role),
            reconnect: r.reconnect,
        };
        decide(&local, &remote, protocol).map_err(|e| e.to_string())
    }
}
