//! Builders shared by the rule tests.

use replbd_quorum::decide::HandshakeSide;
use replbd_quorum::gi::GenerationIds;
use replbd_quorum::{DiskState, NodeId, Role};

/// Node id `id` (must be < 32).
pub fn n(id: u8) -> NodeId {
    NodeId::new(id).unwrap()
}

/// Generation identifiers with current UUID `current` and nothing else set; consistent and was
/// up to date.
pub fn gi(current: u64) -> GenerationIds {
    let mut gi = GenerationIds {
        current,
        ..GenerationIds::just_created()
    };
    gi.flags.consistent = true;
    gi.flags.was_up_to_date = true;
    gi
}

/// Chainable edits of `GenerationIds`.
pub trait GiExt {
    /// Sets the bitmap UUID for `peer`.
    fn bm(self, peer: u8, uuid: u64) -> Self;
    /// Sets the history, newest first.
    fn hist(self, uuids: &[u64]) -> Self;
    /// Sets the crashed-primary flag.
    fn crashed(self) -> Self;
    /// Sets the primary-lost-quorum flag.
    fn lost_quorum(self) -> Self;
    /// Sets the dagtag.
    fn dagtag(self, dagtag: u64) -> Self;
}

impl GiExt for GenerationIds {
    fn bm(mut self, peer: u8, uuid: u64) -> Self {
        self.bitmap[usize::from(peer)] = uuid;
        self
    }
    fn hist(mut self, uuids: &[u64]) -> Self {
        self.history[..uuids.len()].copy_from_slice(uuids);
        self
    }
    fn crashed(mut self) -> Self {
        self.flags.crashed_primary = true;
        self
    }
    fn lost_quorum(mut self) -> Self {
        self.flags.primary_lost_quorum = true;
        self
    }
    fn dagtag(mut self, dagtag: u64) -> Self {
        self.dagtag = dagtag;
        self
    }
}

/// A handshake side: Secondary, UpToDate, not reconnecting.
pub fn side(node: u8, gi: &GenerationIds) -> HandshakeSide<'_> {
    HandshakeSide {
        node: n(node),
        gi,
        disk: DiskState::UpToDate,
        role: Role::Secondary,
        reconnect: false,
    }
}
