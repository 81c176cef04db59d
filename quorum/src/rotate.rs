//! How generation identifiers change: new data generations, resync start and finish, user commands.
//!
//! The identifiers only work if every node updates them the same way at the same moments. The rules
//! are pure functions on [`GenerationIds`]; the caller draws random UUIDs (so tests are deterministic)
//! and persists the result before the write that needed it proceeds (a new generation is lazy: the next
//! write waits until the new UUID is on disk).
//!
//! **New data generation** ([`new_data_generation`]) — when a node starts writing data that some peer
//! will not receive: promotion, a Primary losing a peer, entering Ahead, the Primary's own disk failing
//! while it keeps serving from peers, resuming after suspended I/O ([`starts_new_generation`]).
//! For every absent peer whose bitmap UUID is 0, the bitmap UUID becomes the old current UUID (that
//! slot now tracks the changes the peer misses); then the current UUID becomes the new value, with bit
//! 0 set if the node is Primary. Secondaries do not rotate on disconnect: they write nothing on their
//! own. Connected Secondaries that receive the new UUID from the Primary apply the same rule with the
//! received value, so they also track the peers the Primary lost.
//!
//! Because rotation is lazy, a Primary that loses quorum together with its peers writes nothing (its
//! I/O is frozen or failed) and so never rotates: when it rejoins, the quorate side's bitmap for it
//! still names its current generation and it becomes an ordinary bitmap SyncTarget (rule 4), not a
//! split brain. The engine must therefore rotate on the first write after the event, not at the event.
//!
//! **Resync start** ([`resync_started_as_source`]) — the source starts tracking its current generation
//! for absent peers that had no bitmap UUID, as above but without a new current UUID.
//!
//! **Resync finish** ([`resync_finished_as_target`]) — the target now holds the source's data: it
//! adopts the source's current UUID and pushes its old one to history, inherits the source's history,
//! and takes over the source's view of third nodes.
//!
//! **User commands.** `new-current-uuid` ([`new_current_uuid_by_user`]) forgets every bitmap UUID
//! (they go to history) and starts a new generation; with `--clear-bitmap` the node instead declares its
//! data identical to its connected peers' (the usual use: skip the initial sync of two freshly created,
//! both empty, disks). `connect --discard-my-data` changes no identifier: it only makes the handshake
//! choose this node as SyncTarget ([`crate::split_brain`]); the UUIDs change when that resync finishes.
//!
//! Every generation a node leaves stays remembered, in a bitmap slot or in the history (newest first,
//! 32 entries), so later handshakes can relate the nodes (rules 4–10 of [`crate::decide`](mod@crate::decide)).

use thiserror::Error;

use crate::gi::{GenerationIds, UUID_PRIMARY, generation_of, is_reserved, same_generation};
use crate::node::{NodeId, NodeSet};
use crate::state::Role;

/// A rotation could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RotateError {
    /// The caller's new UUID is 0 or the just-created marker (ignoring bit 0).
    #[error("new UUID {0:#018x} is reserved (0 or the just-created marker): draw another random value")]
    ReservedUuid(u64),
}

/// Events that may start a new data generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GenerationEvent {
    /// The node became Primary.
    Promotion,
    /// A connection to a peer was lost (or the peer's disk went away).
    PeerLost,
    /// The node went Ahead of a congested peer (it stops sending it data).
    EnteredAhead,
    /// The node's own disk failed; it keeps serving I/O from its peers.
    LocalDiskFailed,
    /// I/O resumed after being suspended (no quorum, fencing).
    ResumedAfterSuspend,
}

/// Whether `event` starts a new data generation on a node with `role`: only a Primary writes new data,
/// so only it rotates (it is Primary already for every event but [`GenerationEvent::Promotion`]).
pub const fn starts_new_generation(event: GenerationEvent, role: Role) -> bool {
    match event {
        GenerationEvent::Promotion => true,
        GenerationEvent::PeerLost
        | GenerationEvent::EnteredAhead
        | GenerationEvent::LocalDiskFailed
        | GenerationEvent::ResumedAfterSuspend => role.is_primary(),
    }
}

fn checked(new_uuid: u64) -> Result<u64, RotateError> {
    if is_reserved(new_uuid) {
        Err(RotateError::ReservedUuid(new_uuid))
    } else {
        Ok(generation_of(new_uuid))
    }
}

fn with_role_bit(uuid: u64, primary: bool) -> u64 {
    if primary {
        generation_of(uuid) | UUID_PRIMARY
    } else {
        generation_of(uuid)
    }
}

/// Points the empty bitmap slots of `absent` peers at the current generation. Returns the slots set.
fn track_absent_peers(gi: &mut GenerationIds, own: NodeId, absent: NodeSet) -> NodeSet {
    let mut started = NodeSet::EMPTY;
    if gi.is_just_created() {
        // No generation to track against: a just-created node's peers get a full sync anyway.
        return started;
    }
    for peer in absent.without(own).iter() {
        if gi.bitmap[peer.index()] == 0 {
            gi.bitmap[peer.index()] = gi.current;
            started.insert(peer);
        }
    }
    started
}

/// Whether starting a new generation now would change anything: some absent peer would get a bitmap
/// UUID. With every peer connected (or already tracked), the current generation can stay: every
/// peer receives the writes or already has them tracked.
pub fn needs_new_generation(gi: &GenerationIds, own: NodeId, absent: NodeSet) -> bool {
    !gi.is_just_created()
        && absent
            .without(own)
            .iter()
            .any(|peer| gi.bitmap[peer.index()] == 0)
}

/// Starts a new data generation: absent peers with an empty bitmap slot start tracking the old
/// current UUID, the current UUID becomes `new_uuid` (bit 0 = `primary`), and the old current UUID is
/// kept in the history unless a bitmap slot remembers it.
///
/// Returns the peers whose bitmap slot was set. The bitmap UUID keeps the old current UUID's bit 0,
/// recording whether this node was Primary when the peer left (used by `discard-younger-primary`).
pub fn new_data_generation(
    gi: &mut GenerationIds,
    own: NodeId,
    absent: NodeSet,
    new_uuid: u64,
    primary: bool,
) -> Result<NodeSet, RotateError> {
    let new_uuid = checked(new_uuid)?;
    let old = gi.current;
    let started = track_absent_peers(gi, own, absent);
    gi.current = with_role_bit(new_uuid, primary);
    gi.push_history(old, own);
    Ok(started)
}

/// Sets or clears bit 0 of the current UUID on a role change that does not start a generation
/// (demotion; promotion with every peer connected).
pub fn set_role_bit(gi: &mut GenerationIds, primary: bool) {
    if !gi.is_just_created() {
        gi.current = with_role_bit(gi.current, primary);
    }
}

/// At resync start, on the source: absent peers with an empty bitmap slot start tracking the current
/// generation. Returns the slots set.
pub fn resync_started_as_source(gi: &mut GenerationIds, own: NodeId, absent: NodeSet) -> NodeSet {
    track_absent_peers(gi, own, absent)
}

/// What the target's engine must do with its bitmaps after [`resync_finished_as_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResyncFinished {
    /// Slots whose bitmap UUID was cleared: the target is now in sync with those nodes (as far as the
    /// source knew), so their bits must be cleared too.
    pub cleared: NodeSet,
    /// Slots that now track the target's old generation: their bits must include every block the
    /// resync wrote (the engine marks resync writes out-of-sync for absent peers as it applies them).
    pub tracking: NodeSet,
}

/// At resync finish, on the target: adopt the source's generation.
///
/// - The source's history and bitmap UUIDs join the target's history (the target's data went through
///   the source's past now), then the target's old current UUID is pushed to the history.
/// - The current UUID becomes the source's (bit 0 = `primary`), the flags say consistent and
///   up to date, the crash and lost-quorum markers are cleared, and the dagtag is the source's.
/// - The slot for the source is cleared (now in sync).
/// - For every third node: if the source tracks changes for it (non-zero bitmap UUID) and it is not
///   in `peers_at_source_current`, the target's empty slot starts tracking the target's old generation;
///   otherwise the source considers it in sync and the target's slot is cleared.
///   A just-created target cannot track an old generation: those slots stay empty, and a later
///   handshake with that node finds the source's generation in the inherited history (full sync).
pub fn resync_finished_as_target(
    gi: &mut GenerationIds,
    own: NodeId,
    source_node: NodeId,
    source: &GenerationIds,
    peers_at_source_current: NodeSet,
    primary: bool,
) -> ResyncFinished {
    let mut result = ResyncFinished::default();
    let old = gi.current;
    let old_is_real = !gi.is_just_created();

    for h in source.history.iter().rev() {
        gi.push_history(*h, own);
    }
    for node in NodeId::all().filter(|n| *n != source_node) {
        gi.push_history(source.bitmap[node.index()], own);
    }

    gi.current = with_role_bit(source.current, primary);
    gi.flags.consistent = true;
    gi.flags.was_up_to_date = true;
    gi.flags.crashed_primary = false;
    gi.flags.primary_lost_quorum = false;
    gi.dagtag = source.dagtag;

    for node in NodeId::all().filter(|n| *n != own && *n != source_node) {
        let source_tracks =
            !is_reserved(source.bitmap[node.index()]) && !peers_at_source_current.contains(node);
        if source_tracks {
            if gi.bitmap[node.index()] == 0 && old_is_real {
                gi.bitmap[node.index()] = generation_of(old);
                result.tracking.insert(node);
            }
        } else if gi.bitmap[node.index()] != 0 {
            gi.replace_bitmap_uuid(node, 0, own);
            result.cleared.insert(node);
        }
    }
    if gi.bitmap[source_node.index()] != 0 {
        gi.replace_bitmap_uuid(source_node, 0, own);
        result.cleared.insert(source_node);
    }
    if !same_generation(old, gi.current) {
        gi.push_history(old, own);
    }
    result
}

/// `new-current-uuid [--clear-bitmap]`, run by the administrator.
///
/// Every bitmap UUID is forgotten (moved to the history). Then:
/// - without `clear_bitmap`: a new data generation starts as in [`new_data_generation`] (absent peers
///   track the old generation);
/// - with `clear_bitmap`: the node declares its data identical to every connected peer's (which must
///   adopt the same new UUID) and UpToDate: the current UUID becomes `new_uuid` and the caller clears
///   every bitmap. Used to skip the initial sync of freshly created, empty disks; on disks holding
///   different data it silently leaves them different.
pub fn new_current_uuid_by_user(
    gi: &mut GenerationIds,
    own: NodeId,
    absent: NodeSet,
    new_uuid: u64,
    primary: bool,
    clear_bitmap: bool,
) -> Result<NodeSet, RotateError> {
    let checked_uuid = checked(new_uuid)?;
    for node in NodeId::all().filter(|n| *n != own) {
        gi.replace_bitmap_uuid(node, 0, own);
    }
    if !clear_bitmap {
        return new_data_generation(gi, own, absent, checked_uuid, primary);
    }
    let old = gi.current;
    gi.current = with_role_bit(checked_uuid, primary);
    gi.push_history(old, own);
    gi.flags.consistent = true;
    gi.flags.was_up_to_date = true;
    Ok(NodeSet::EMPTY)
}
