//! Rotation rules on generation identifiers.

use replbd_quorum::gi::{GenerationIds, UUID_JUST_CREATED, UUID_PRIMARY};
use replbd_quorum::rotate::{
    GenerationEvent, ResyncFinished, RotateError, needs_new_generation, new_current_uuid_by_user,
    new_data_generation, resync_finished_as_target, resync_started_as_source, set_role_bit,
    starts_new_generation,
};
use replbd_quorum::{NodeSet, Role};

use crate::support::{GiExt, gi, n};

const X: u64 = 0x1000;
const Y: u64 = 0x2000;
const Z: u64 = 0x3000;
const W: u64 = 0x4000;

fn set(ids: &[u8]) -> NodeSet {
    ids.iter().map(|i| n(*i)).collect()
}

#[test]
fn new_generation_tracks_absent_peers_with_empty_slots() {
    let mut g = gi(X | UUID_PRIMARY);
    let started = new_data_generation(&mut g, n(0), set(&[1, 2]), Y, true).unwrap();
    assert_eq!(started, set(&[1, 2]));
    assert_eq!(g.current, Y | UUID_PRIMARY);
    assert_eq!(
        g.bitmap[1],
        X | UUID_PRIMARY,
        "bitmap UUID records that I was Primary when it left"
    );
    assert_eq!(g.bitmap[2], X | UUID_PRIMARY);
    assert_eq!(g.bitmap[3], 0, "connected peers are not tracked");
    assert_eq!(
        g.history[0], 0,
        "the old current lives in the bitmap slots, not the history"
    );
}

#[test]
fn new_generation_keeps_slots_already_tracking_an_older_generation() {
    let mut g = gi(Y).bm(1, X);
    let started = new_data_generation(&mut g, n(0), set(&[1]), Z, true).unwrap();
    assert!(started.is_empty());
    assert_eq!(g.bitmap[1], X, "the bitmap keeps counting changes since X");
    assert_eq!(g.history[0], Y, "the left generation is kept in the history");
}

#[test]
fn new_generation_ignores_the_own_slot() {
    let mut g = gi(X);
    let started = new_data_generation(&mut g, n(0), set(&[0]), Y, false).unwrap();
    assert!(started.is_empty());
    assert_eq!(g.bitmap[0], 0);
    assert_eq!(g.current, Y);
}

#[test]
fn new_generation_with_everyone_connected_keeps_the_old_one_in_history() {
    let mut g = gi(X);
    new_data_generation(&mut g, n(0), NodeSet::EMPTY, Y, true).unwrap();
    assert_eq!(g.history[0], X);
}

#[test]
fn new_generation_from_just_created_tracks_nothing() {
    let mut g = GenerationIds::just_created();
    let started = new_data_generation(&mut g, n(0), set(&[1]), Y, true).unwrap();
    assert!(started.is_empty());
    assert_eq!(g.bitmap[1], 0);
    assert_eq!(g.history[0], 0, "the just-created marker is never history");
    assert_eq!(g.current, Y | UUID_PRIMARY);
}

#[test]
fn reserved_uuids_are_rejected() {
    let mut g = gi(X);
    for bad in [0, 1, UUID_JUST_CREATED, UUID_JUST_CREATED | UUID_PRIMARY] {
        assert_eq!(
            new_data_generation(&mut g, n(0), NodeSet::EMPTY, bad, false),
            Err(RotateError::ReservedUuid(bad))
        );
    }
    assert_eq!(g, gi(X), "nothing changed");
    let err = RotateError::ReservedUuid(4).to_string();
    assert!(err.contains("draw another random value"), "{err}");
}

#[test]
fn new_generation_is_needed_only_for_untracked_absent_peers() {
    let g = gi(X).bm(1, W);
    assert!(!needs_new_generation(&g, n(0), NodeSet::EMPTY));
    assert!(!needs_new_generation(&g, n(0), set(&[1])), "already tracked");
    assert!(needs_new_generation(&g, n(0), set(&[1, 2])));
    assert!(!needs_new_generation(
        &GenerationIds::just_created(),
        n(0),
        set(&[2])
    ));
}

#[test]
fn only_primaries_rotate_on_events() {
    use GenerationEvent::*;
    let cases = [
        (Promotion, Role::Secondary, true),
        (PeerLost, Role::Primary, true),
        (PeerLost, Role::Secondary, false),
        (EnteredAhead, Role::Primary, true),
        (LocalDiskFailed, Role::Primary, true),
        (ResumedAfterSuspend, Role::Primary, true),
        (ResumedAfterSuspend, Role::Secondary, false),
    ];
    for (event, role, want) in cases {
        assert_eq!(starts_new_generation(event, role), want, "{event:?} as {role}");
    }
}

#[test]
fn role_bit_follows_demotion() {
    let mut g = gi(X | UUID_PRIMARY);
    set_role_bit(&mut g, false);
    assert_eq!(g.current, X);
    set_role_bit(&mut g, true);
    assert_eq!(g.current, X | UUID_PRIMARY);
    let mut fresh = GenerationIds::just_created();
    set_role_bit(&mut fresh, true);
    assert_eq!(fresh.current, UUID_JUST_CREATED);
}

#[test]
fn resync_start_tracks_absent_peers_on_the_source() {
    let mut g = gi(X).bm(3, W);
    let started = resync_started_as_source(&mut g, n(0), set(&[2, 3]));
    assert_eq!(started, set(&[2]));
    assert_eq!(g.bitmap[2], X);
    assert_eq!(g.bitmap[3], W);
    assert_eq!(g.current, X, "no new generation");
}

#[test]
fn resync_finish_adopts_the_source_generation() {
    // Target A (node 0) was at X, tracking node 3 since W; source B (node 1) is at Y with history
    // [X, Z] and tracks node 2 since Z and node 3 since X.
    let source = gi(Y).hist(&[X, Z]).bm(2, Z).bm(3, X).dagtag(99);
    let mut target = gi(X).bm(1, X).bm(3, W).bm(4, X);
    target.flags.consistent = false;
    target.flags.crashed_primary = true;
    let result = resync_finished_as_target(&mut target, n(0), n(1), &source, set(&[4]), false);

    assert_eq!(target.current, Y);
    assert!(target.flags.consistent && target.flags.was_up_to_date);
    assert!(!target.flags.crashed_primary);
    assert_eq!(target.dagtag, 99);
    assert_eq!(target.bitmap[1], 0, "in sync with the source now");
    assert_eq!(
        target.bitmap[2], X,
        "the source tracks node 2: the target tracks it from its old generation"
    );
    assert_eq!(target.bitmap[3], W, "an older tracking base is kept");
    assert_eq!(target.bitmap[4], 0, "node 4 is at the source's generation");
    assert_eq!(
        result,
        ResyncFinished {
            cleared: set(&[1, 4]),
            tracking: set(&[2])
        },
    );
    assert!(target.history_contains(Z), "inherited from the source");
    assert!(
        target.remembers(X),
        "the old current is remembered (in the slot for node 2)"
    );
}

#[test]
fn resync_finish_keeps_its_old_current_in_history_when_no_slot_holds_it() {
    let source = gi(Y).hist(&[X]);
    let mut target = gi(X);
    resync_finished_as_target(&mut target, n(0), n(1), &source, NodeSet::EMPTY, false);
    assert_eq!(target.current, Y);
    assert_eq!(target.history[0], X, "target pushes its old current to history");
}

#[test]
fn resync_finish_of_a_just_created_target_tracks_nothing() {
    let source = gi(Y).hist(&[X]).bm(2, X);
    let mut target = GenerationIds::just_created();
    let result = resync_finished_as_target(&mut target, n(0), n(1), &source, NodeSet::EMPTY, false);
    assert_eq!(target.current, Y);
    assert!(result.tracking.is_empty());
    assert_eq!(target.bitmap[2], 0);
    assert!(
        target.history_contains(X),
        "node 2's generation is in the history: it will get a full sync"
    );
}

#[test]
fn new_current_uuid_forgets_bitmaps_and_starts_a_generation() {
    let mut g = gi(X).bm(1, W).bm(2, Z);
    let started = new_current_uuid_by_user(&mut g, n(0), set(&[2]), Y, false, false).unwrap();
    assert_eq!(g.current, Y);
    assert_eq!(g.bitmap[1], 0);
    assert_eq!(g.bitmap[2], X, "absent node 2 now tracks the old current");
    assert_eq!(started, set(&[2]));
    assert!(g.history_contains(W) && g.history_contains(Z));
}

#[test]
fn new_current_uuid_clear_bitmap_declares_the_data_in_sync() {
    let mut g = GenerationIds::just_created().bm(1, 0);
    let started = new_current_uuid_by_user(&mut g, n(0), set(&[2]), Y, false, true).unwrap();
    assert!(started.is_empty());
    assert_eq!(g.current, Y);
    assert!(g.bitmap.iter().all(|b| *b == 0));
    assert!(g.flags.consistent && g.flags.was_up_to_date);
    assert!(new_current_uuid_by_user(&mut g, n(0), NodeSet::EMPTY, 0, false, true).is_err());
}
