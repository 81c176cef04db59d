//! One simulated node: its disk (survives crashes) and its memory (does not).
//!
//! The split follows what a real node keeps on disk: the data blocks, the generation identifiers
//! and flags, one out-of-sync bitmap per peer and the activity log are in [`Disk`]; role, disk
//! state as seen at run time, quorum, knowledge about absent peers and writes in flight are in
//! [`Node`] and are reset by a crash.

use replbd_quorum::quorum::Absence;
use replbd_quorum::{DiskState, GenerationIds, NodeId, Role};

use crate::config::MAX_NODES;
use crate::oracle::WriteId;

/// Bit of node `i` in a node mask.
pub const fn bit(i: usize) -> u32 {
    1 << i
}

/// The members of a node mask, ascending.
pub fn members(mask: u32) -> impl Iterator<Item = usize> {
    (0..MAX_NODES).filter(move |i| mask & bit(*i) != 0)
}

/// What survives a crash.
#[derive(Debug, Clone)]
pub struct Disk {
    /// Block contents: the id of the last write each block received.
    pub data: Vec<WriteId>,
    /// Generation identifiers and flags.
    pub gi: GenerationIds,
    /// Out-of-sync bitmap per peer index: bit *b* = block *b* may differ on that peer.
    pub bits: [u64; MAX_NODES],
    /// Activity log: blocks with writes in flight; after a crash they are marked for every peer.
    pub al: u64,
    /// While a resync target: the current UUID the node had before its first resync started (0 when
    /// not a target). Its current UUID meanwhile is the source's (the "sync UUID").
    pub pre_sync_current: u64,
    /// Per Primary: the newest write of its stream this disk applied (the engine's applied-write
    /// watermark; write ids grow along each Primary's stream).
    pub seen: [WriteId; MAX_NODES],
}

impl Disk {
    /// Whether this disk has applied at least as much of every Primary's stream as `other`.
    pub fn dominates(&self, other: &Disk) -> bool {
        self.seen.iter().zip(other.seen.iter()).all(|(a, b)| a >= b)
    }

    /// Takes over `other`'s watermarks where they are ahead (after copying its data).
    pub fn absorb_seen(&mut self, other: &[WriteId; MAX_NODES]) {
        for (a, b) in self.seen.iter_mut().zip(other.iter()) {
            *a = (*a).max(*b);
        }
    }
}

/// An application write on a Primary, waiting for its peers.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The write.
    pub id: WriteId,
    /// Its block.
    pub block: usize,
    /// Peers that have not acknowledged it yet.
    pub waiting: u32,
    /// Nodes known to hold it (this node and the peers that acknowledged it).
    pub holders: u32,
    /// Peers it was sent to (they get the peer ack).
    pub sent_to: u32,
}

/// A write received from a Primary whose peer ack has not arrived yet.
#[derive(Debug, Clone, Copy)]
pub struct Unacked {
    /// The write.
    pub id: WriteId,
    /// Its block.
    pub block: usize,
    /// The Primary it came from.
    pub from: usize,
}

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Index (also the node id).
    pub idx: usize,
    /// Node id for the decision functions.
    pub id: NodeId,
    /// An intentionally diskless tiebreaker (it has a [`Disk`] but never uses it).
    pub diskless: bool,
    /// Persistent state.
    pub disk: Disk,
    /// Running (not crashed or down).
    pub up: bool,
    /// Role.
    pub role: Role,
    /// Disk state at run time.
    pub disk_state: DiskState,
    /// The last quorum verdict.
    pub quorate: bool,
    /// What is known about each absent peer (set when it left).
    pub absence: [Absence; MAX_NODES],
    /// Peers connected since this node last started (the handshake's "reconnect" flag).
    pub seen_since_start: u32,
    /// As Primary: a peer was lost; the next write starts a new data generation.
    pub rotate_pending: bool,
    /// As Primary: writes sent, waiting for acknowledgements or for quorum.
    pub in_flight: Vec<InFlight>,
    /// As Primary with `on-no-quorum suspend-io`: writes frozen until quorum returns (blocks).
    pub suspended: Vec<usize>,
    /// As Secondary: received writes without a peer ack yet.
    pub unacked: Vec<Unacked>,
}

impl Node {
    /// A node with the given identity and disk, running, Secondary.
    pub fn new(idx: usize, id: NodeId, diskless: bool, disk: Disk, disk_state: DiskState) -> Self {
        Self {
            idx,
            id,
            diskless,
            disk,
            up: true,
            role: Role::Secondary,
            disk_state,
            quorate: false,
            absence: [Absence::Unknown; MAX_NODES],
            seen_since_start: 0,
            rotate_pending: false,
            in_flight: Vec::new(),
            suspended: Vec::new(),
            unacked: Vec::new(),
        }
    }

    /// Whether the node is up and Primary.
    pub fn is_primary(&self) -> bool {
        self.up && self.role == Role::Primary
    }

    /// Recomputes the activity log from the writes still in flight.
    pub fn refresh_al(&mut self) {
        let mut al = 0u64;
        for w in &self.in_flight {
            al |= 1 << w.block;
        }
        for u in &self.unacked {
            al |= 1 << u.block;
        }
        self.disk.al = al;
    }

    /// Marks `blocks` out of sync for every peer in `peers` (never for itself).
    pub fn mark(&mut self, peers: u32, blocks: u64) {
        for p in members(peers & !bit(self.idx)) {
            self.disk.bits[p] |= blocks;
        }
    }

    /// Whether the metadata says the data could serve as UpToDate after a restart (Consistent).
    pub fn data_could_be_current(&self) -> bool {
        if self.up {
            matches!(self.disk_state, DiskState::UpToDate | DiskState::Consistent)
        } else {
            self.disk.gi.disk_state_from_metadata() == DiskState::Consistent
        }
    }

    /// Persists "Outdated": the data is known not to be the newest.
    pub fn outdate(&mut self) {
        self.disk_state = DiskState::Outdated;
        self.disk.gi.flags.was_up_to_date = false;
    }

    /// As a resync target, takes the source's current UUID (the sync UUID), keeping the one it had
    /// before its first resync for the finish.
    pub fn take_sync_uuid(&mut self, source_current: u64) {
        let old = self.disk.gi.current;
        let role_bit = old & replbd_quorum::gi::UUID_PRIMARY;
        self.disk.gi.current = replbd_quorum::gi::generation_of(source_current) | role_bit;
        if self.disk.pre_sync_current == 0 {
            // The generation the data really had stays known, so handshakes can still relate this
            // node to nodes at it. A sync UUID replaced later (an interrupted resync) is not: the
            // data never became that generation.
            self.disk.pre_sync_current = old;
            self.disk.gi.push_history(old, self.id);
        }
    }

    /// Persists "UpToDate".
    pub fn make_up_to_date(&mut self) {
        self.disk_state = DiskState::UpToDate;
        self.disk.gi.flags.consistent = true;
        self.disk.gi.flags.was_up_to_date = true;
    }
}
