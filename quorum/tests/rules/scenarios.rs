//! Whole scenarios: rotations on each node as events happen, then the handshake on reconnect. They
//! mirror DRBD's own test suite (resync chains, isolated primary, split brain and its recovery).

use replbd_quorum::decide::HandshakeSide;
use replbd_quorum::gi::{GenerationIds, UUID_PRIMARY};
use replbd_quorum::rotate::{new_data_generation, resync_finished_as_target, set_role_bit};
use replbd_quorum::split_brain::{SbSide, SplitBrain};
use replbd_quorum::{
    Decision, DiskState, NodeSet, Protocol, Role, Rule, SbResolution, SplitBrainPolicies, SyncDecision,
    SyncKind, decide, resolve_split_brain,
};

use crate::support::{gi, n, side};

const G0: u64 = 0x1000;
const G1: u64 = 0x2000;
const G2: u64 = 0x3000;

fn set(ids: &[u8]) -> NodeSet {
    ids.iter().map(|i| n(*i)).collect()
}

fn handshake(a: &HandshakeSide<'_>, b: &HandshakeSide<'_>) -> (Decision, Decision) {
    let ab = decide(a, b, Protocol::C).unwrap();
    let ba = decide(b, a, Protocol::C).unwrap();
    assert_eq!(ba, ab.mirror(), "both ends must agree");
    (ab, ba)
}

fn bitmap(slot_of: u8) -> SyncKind {
    SyncKind::Bitmap { slot_of: n(slot_of) }
}

#[test]
fn primary_loses_a_peer_and_resyncs_it_by_bitmap() {
    // A (0) Primary, B (1) Secondary, in sync at G0. B goes away; A writes.
    let mut a = gi(G0 | UUID_PRIMARY);
    let mut b = gi(G0);
    new_data_generation(&mut a, n(0), set(&[1]), G1, true).unwrap();

    let mut a_side = side(0, &a);
    a_side.role = Role::Primary;
    let (ab, _) = handshake(&a_side, &side(1, &b));
    assert_eq!(ab.outcome, SyncDecision::BecomeSource { kind: bitmap(1) });
    assert_eq!(ab.rule, Rule::MyBitmapForPeer);

    // After the resync B is at A's generation and they need nothing more.
    let a_snapshot = a.clone();
    resync_finished_as_target(&mut b, n(1), n(0), &a_snapshot, NodeSet::EMPTY, false);
    a.bitmap[1] = 0; // the source clears its slot once the target acked every block
    let mut a_side = side(0, &a);
    a_side.role = Role::Primary;
    let (ab, _) = handshake(&a_side, &side(1, &b));
    assert_eq!(ab.outcome, SyncDecision::NoSync);
}

#[test]
fn secondaries_track_absent_peers_too_and_close_the_ring() {
    // Three nodes at G0. C (2) leaves. A (0) promotes and writes; B (1), connected, adopts G1.
    let mut a = gi(G0);
    let mut b = gi(G0);
    let c = gi(G0);
    new_data_generation(&mut a, n(0), set(&[2]), G1, true).unwrap();
    new_data_generation(&mut b, n(1), set(&[2]), G1, false).unwrap();

    // C comes back and first meets B: B can resync it from its own bitmap slot.
    let (bc, _) = handshake(&side(1, &b), &side(2, &c));
    assert_eq!(bc.outcome, SyncDecision::BecomeSource { kind: bitmap(2) });

    // C resyncs from B; B's view of A: A is at B's current.
    let mut c = c;
    resync_finished_as_target(&mut c, n(2), n(1), &b.clone(), set(&[0]), false);
    b.bitmap[2] = 0;
    a.bitmap[2] = 0; // A hears that C is in sync (it now has A's generation)

    // Closing the ring: every pair agrees there is nothing to do.
    for ((i, x), (j, y)) in [((0, &a), (1, &b)), ((1, &b), (2, &c)), ((0, &a), (2, &c))] {
        let (d, _) = handshake(&side(i, x), &side(j, y));
        assert_eq!(d.outcome, SyncDecision::NoSync, "{i} vs {j}: {d}");
    }
}

#[test]
fn chain_of_generations_uses_the_oldest_tracking_base() {
    // A (0) Primary at G0 with B (1) away: two further generations pass (promotion, peer loss).
    let mut a = gi(G0 | UUID_PRIMARY);
    let b = gi(G0);
    new_data_generation(&mut a, n(0), set(&[1]), G1, true).unwrap();
    new_data_generation(&mut a, n(0), set(&[1]), G2, true).unwrap();
    assert_eq!(a.bitmap[1], G0 | UUID_PRIMARY, "still counting since G0");
    let (ab, _) = handshake(&side(0, &a), &side(1, &b));
    assert_eq!(ab.outcome, SyncDecision::BecomeSource { kind: bitmap(1) });
}

#[test]
fn isolated_primary_that_wrote_nothing_rejoins_as_bitmap_target() {
    // A (0) Primary isolated from B (1) and C (2). A has no quorum, so no write proceeds and it never
    // rotates (rotation is lazy); it only notes that it lost quorum as Primary.
    let mut a = gi(G0 | UUID_PRIMARY);
    a.flags.primary_lost_quorum = true;
    // B promotes with C's vote and writes.
    let mut b = gi(G0);
    new_data_generation(&mut b, n(1), set(&[0]), G1, true).unwrap();

    let mut a_side = side(0, &a);
    a_side.role = Role::Primary;
    let mut b_side = side(1, &b);
    b_side.role = Role::Primary;
    let (ab, _) = handshake(&a_side, &b_side);
    assert_eq!(
        ab.outcome,
        SyncDecision::BecomeTarget { kind: bitmap(0) },
        "resync, not split brain: {ab}"
    );
}

#[test]
fn isolated_primary_that_did_write_is_split_brain_resolved_by_quorum() {
    // Same, but A wrote (and rotated) before noticing the loss of quorum.
    let mut a = gi(G0 | UUID_PRIMARY);
    new_data_generation(&mut a, n(0), set(&[1, 2]), G2, true).unwrap();
    let mut b = gi(G0);
    new_data_generation(&mut b, n(1), set(&[0]), G1, true).unwrap();

    let (ab, _) = handshake(&side(0, &a), &side(1, &b));
    assert_eq!(
        ab.outcome,
        SyncDecision::SplitBrain {
            auto_recoverable: true
        }
    );

    let sb = |node, name, primary_at_split, have_quorum| SbSide {
        node: n(node),
        name,
        role: Role::Secondary,
        changes: 5,
        primary_at_split,
        have_quorum,
        discard_my_data: false,
    };
    let split = SplitBrain {
        local: sb(0, "a", a.was_primary_when_split_from(n(1)), false),
        peer: sb(1, "b", b.was_primary_when_split_from(n(0)), true),
        auto_recoverable: true,
        quorum_enabled: true,
    };
    let out = resolve_split_brain(&SplitBrainPolicies::default(), &split);
    assert_eq!(out.resolution, SbResolution::DiscardLocal, "{out}");
    assert!(
        split.local.primary_at_split && !split.peer.primary_at_split,
        "B is the younger primary"
    );
}

#[test]
fn split_brain_is_detected_on_both_nodes_and_recovered_with_discard_my_data() {
    // A (0) and B (1) at G0 lose each other; both promote and write.
    let mut a = gi(G0);
    let mut b = gi(G0);
    new_data_generation(&mut a, n(0), set(&[1]), G1, true).unwrap();
    new_data_generation(&mut b, n(1), set(&[0]), G2, true).unwrap();

    let (ab, ba) = handshake(&side(0, &a), &side(1, &b));
    assert_eq!(
        ab.outcome,
        SyncDecision::SplitBrain {
            auto_recoverable: true
        }
    );
    assert_eq!(
        ba.outcome,
        SyncDecision::SplitBrain {
            auto_recoverable: true
        }
    );

    // Default policies: both stay StandAlone.
    let sides = |a_dmd, b_dmd| {
        let s = |node, name, dmd| SbSide {
            node: n(node),
            name,
            role: Role::Secondary,
            changes: 3,
            primary_at_split: false,
            have_quorum: true,
            discard_my_data: dmd,
        };
        (s(0, "a", a_dmd), s(1, "b", b_dmd))
    };
    let (sa, sb) = sides(false, false);
    let policies = SplitBrainPolicies::default();
    let on_a = resolve_split_brain(
        &policies,
        &SplitBrain {
            local: sa,
            peer: sb,
            auto_recoverable: true,
            quorum_enabled: false,
        },
    );
    let on_b = resolve_split_brain(
        &policies,
        &SplitBrain {
            local: sb,
            peer: sa,
            auto_recoverable: true,
            quorum_enabled: false,
        },
    );
    assert_eq!(
        (on_a.resolution, on_b.resolution),
        (SbResolution::Disconnect, SbResolution::Disconnect)
    );

    // The administrator reconnects B with --discard-my-data: B becomes SyncTarget by bitmap.
    let (sa, sb) = sides(false, true);
    let on_a = resolve_split_brain(
        &policies,
        &SplitBrain {
            local: sa,
            peer: sb,
            auto_recoverable: true,
            quorum_enabled: false,
        },
    );
    let on_b = resolve_split_brain(
        &policies,
        &SplitBrain {
            local: sb,
            peer: sa,
            auto_recoverable: true,
            quorum_enabled: false,
        },
    );
    assert_eq!(
        (on_a.resolution, on_b.resolution),
        (SbResolution::DiscardRemote, SbResolution::DiscardLocal)
    );
    assert!(!on_a.full_sync && !on_b.full_sync);

    // After B's resync from A, they agree.
    resync_finished_as_target(&mut b, n(1), n(0), &a.clone(), NodeSet::EMPTY, false);
    a.bitmap[1] = 0;
    let (ab, _) = handshake(&side(0, &a), &side(1, &b));
    assert_eq!(ab.outcome, SyncDecision::NoSync);
}

#[test]
fn day_zero_initial_sync_from_the_forced_primary() {
    // Two fresh nodes. A is forced Primary (new generation); B is still just created.
    let mut a = GenerationIds::just_created();
    let b = GenerationIds::just_created();
    new_data_generation(&mut a, n(0), NodeSet::EMPTY, G1, true).unwrap();
    let mut a_side = side(0, &a);
    a_side.role = Role::Primary;
    let mut b_side = side(1, &b);
    b_side.disk = DiskState::Inconsistent;
    let (ab, _) = handshake(&a_side, &b_side);
    assert_eq!(ab.outcome, SyncDecision::BecomeSource { kind: SyncKind::Full });
}

#[test]
fn demoted_primary_and_secondary_reconnect_without_resync() {
    // A demotes cleanly while connected: only the role bit changes.
    let mut a = gi(G1 | UUID_PRIMARY);
    set_role_bit(&mut a, false);
    let b = gi(G1);
    let (ab, _) = handshake(&side(0, &a), &side(1, &b));
    assert_eq!(ab.outcome, SyncDecision::NoSync);
}
