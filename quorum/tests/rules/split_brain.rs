//! After-split-brain policies, --discard-my-data, rr-conflict, and their symmetry.

use proptest::prelude::*;
use replbd_quorum::decide::{Rule, Side};
use replbd_quorum::split_brain::{
    AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, Criterion, Helper, RrConflict, RrOutcome, RrSide, SbReason,
    SbSide, SplitBrain, check_rr_conflict,
};
use replbd_quorum::{
    Decision, DiskState, Role, SbResolution, SplitBrainPolicies, SyncDecision, SyncKind, resolve_split_brain,
};

use crate::support::n;

fn sb_side(node: u8, name: &'static str) -> SbSide<'static> {
    SbSide {
        node: n(node),
        name,
        role: Role::Secondary,
        changes: 10,
        primary_at_split: false,
        have_quorum: true,
        discard_my_data: false,
    }
}

/// Local "alpha" (node 0) and peer "beta" (node 1), both Secondary with 10 changes each, rule 9.
fn split() -> SplitBrain<'static> {
    SplitBrain {
        local: sb_side(0, "alpha"),
        peer: sb_side(1, "beta"),
        auto_recoverable: true,
        quorum_enabled: false,
    }
}

fn policies_0p(p: AfterSb0Pri) -> SplitBrainPolicies {
    SplitBrainPolicies {
        after_sb_0pri: p,
        ..SplitBrainPolicies::default()
    }
}

struct Case {
    name: &'static str,
    policies: SplitBrainPolicies,
    sb: SplitBrain<'static>,
    resolution: SbResolution,
    full_sync: bool,
}

fn with(mut sb: SplitBrain<'static>, edit: impl FnOnce(&mut SplitBrain<'static>)) -> SplitBrain<'static> {
    edit(&mut sb);
    sb
}

fn cases() -> Vec<Case> {
    use AfterSb0Pri::{
        DiscardLeastChanges, DiscardNode, DiscardOlderPrimary, DiscardYoungerPrimary, DiscardZeroChanges,
    };
    use SbResolution::*;
    let p1 = |after_sb_1pri| SplitBrainPolicies {
        after_sb_0pri: DiscardLeastChanges,
        after_sb_1pri,
        ..SplitBrainPolicies::default()
    };
    let p2 = |after_sb_2pri| SplitBrainPolicies {
        after_sb_0pri: DiscardLeastChanges,
        after_sb_2pri,
        ..SplitBrainPolicies::default()
    };
    let local_primary = |sb: &mut SplitBrain<'_>| sb.local.role = Role::Primary;
    let peer_primary = |sb: &mut SplitBrain<'_>| sb.peer.role = Role::Primary;
    let local_fewer = |sb: &mut SplitBrain<'_>| sb.local.changes = 3;
    let case = |name, policies, sb, resolution| Case {
        name,
        policies,
        sb,
        resolution,
        full_sync: false,
    };
    vec![
        case(
            "0pri disconnect",
            policies_0p(AfterSb0Pri::Disconnect),
            split(),
            Disconnect,
        ),
        case(
            "0pri discard-younger-primary: I became primary after the split",
            policies_0p(DiscardYoungerPrimary),
            with(split(), |sb| sb.peer.primary_at_split = true),
            DiscardLocal,
        ),
        case(
            "0pri discard-younger-primary: the peer became primary after the split",
            policies_0p(DiscardYoungerPrimary),
            with(split(), |sb| sb.local.primary_at_split = true),
            DiscardRemote,
        ),
        case(
            "0pri discard-younger-primary falls back to least changes",
            policies_0p(DiscardYoungerPrimary),
            with(split(), local_fewer),
            DiscardLocal,
        ),
        case(
            "0pri discard-older-primary",
            policies_0p(DiscardOlderPrimary),
            with(split(), |sb| sb.peer.primary_at_split = true),
            DiscardRemote,
        ),
        case(
            "0pri discard-older-primary falls back to zero changes",
            policies_0p(DiscardOlderPrimary),
            with(split(), |sb| sb.peer.changes = 0),
            DiscardRemote,
        ),
        case(
            "0pri discard-zero-changes: I changed nothing",
            policies_0p(DiscardZeroChanges),
            with(split(), |sb| sb.local.changes = 0),
            DiscardLocal,
        ),
        case(
            "0pri discard-zero-changes: both changed nothing, higher node id discarded",
            policies_0p(DiscardZeroChanges),
            with(split(), |sb| {
                sb.local.changes = 0;
                sb.peer.changes = 0;
            }),
            DiscardRemote,
        ),
        case(
            "0pri discard-zero-changes: both changed something",
            policies_0p(DiscardZeroChanges),
            split(),
            Disconnect,
        ),
        case(
            "0pri discard-least-changes",
            policies_0p(DiscardLeastChanges),
            with(split(), local_fewer),
            DiscardLocal,
        ),
        case(
            "0pri discard-least-changes: equal, higher node id discarded",
            policies_0p(DiscardLeastChanges),
            split(),
            DiscardRemote,
        ),
        case(
            "0pri discard-node naming me",
            policies_0p(DiscardNode("alpha".into())),
            split(),
            DiscardLocal,
        ),
        case(
            "0pri discard-node naming the peer",
            policies_0p(DiscardNode("beta".into())),
            split(),
            DiscardRemote,
        ),
        case(
            "0pri discard-node naming a third node",
            policies_0p(DiscardNode("gamma".into())),
            split(),
            Disconnect,
        ),
        case(
            "1pri disconnect",
            p1(AfterSb1Pri::Disconnect),
            with(split(), local_primary),
            Disconnect,
        ),
        case(
            "1pri consensus: 0pri agrees to discard the secondary",
            p1(AfterSb1Pri::Consensus),
            with(split(), |sb| {
                sb.peer.role = Role::Primary;
                sb.local.changes = 3;
            }),
            DiscardLocal,
        ),
        case(
            "1pri consensus: 0pri would discard the primary",
            p1(AfterSb1Pri::Consensus),
            with(split(), |sb| {
                sb.local.role = Role::Primary;
                sb.local.changes = 3;
            }),
            Disconnect,
        ),
        case(
            "1pri discard-secondary (I am secondary)",
            p1(AfterSb1Pri::DiscardSecondary),
            with(split(), peer_primary),
            DiscardLocal,
        ),
        case(
            "1pri discard-secondary (I am primary)",
            p1(AfterSb1Pri::DiscardSecondary),
            with(split(), local_primary),
            DiscardRemote,
        ),
        case(
            "1pri violently-as0p discards the primary",
            p1(AfterSb1Pri::ViolentlyAs0p),
            with(split(), |sb| {
                sb.local.role = Role::Primary;
                sb.local.changes = 3;
            }),
            DiscardLocal,
        ),
        case(
            "1pri call-pri-lost-after-sb: the primary victim demotes",
            p1(AfterSb1Pri::CallPriLostAfterSb),
            with(split(), |sb| {
                sb.local.role = Role::Primary;
                sb.local.changes = 3;
            }),
            CallHelper(Helper::PriLostAfterSb),
        ),
        case(
            "1pri call-pri-lost-after-sb: a secondary victim is simply discarded",
            p1(AfterSb1Pri::CallPriLostAfterSb),
            with(split(), |sb| {
                sb.peer.role = Role::Primary;
                sb.local.changes = 3;
            }),
            DiscardLocal,
        ),
        case(
            "2pri disconnect",
            p2(AfterSb2Pri::Disconnect),
            with(split(), |sb| {
                local_primary(sb);
                peer_primary(sb);
            }),
            Disconnect,
        ),
        case(
            "2pri violently-as0p",
            p2(AfterSb2Pri::ViolentlyAs0p),
            with(split(), |sb| {
                local_primary(sb);
                peer_primary(sb);
                sb.peer.changes = 1;
            }),
            DiscardRemote,
        ),
        case(
            "2pri call-pri-lost-after-sb",
            p2(AfterSb2Pri::CallPriLostAfterSb),
            with(split(), |sb| {
                local_primary(sb);
                peer_primary(sb);
                sb.local.changes = 1;
            }),
            CallHelper(Helper::PriLostAfterSb),
        ),
        case(
            "quorum: the quorate side wins before any policy",
            policies_0p(AfterSb0Pri::Disconnect),
            with(split(), |sb| {
                sb.quorum_enabled = true;
                sb.local.have_quorum = false;
            }),
            DiscardLocal,
        ),
        case(
            "quorum: ignored when quorum is off",
            policies_0p(AfterSb0Pri::Disconnect),
            with(split(), |sb| sb.local.have_quorum = false),
            Disconnect,
        ),
        case(
            "discard-my-data on me",
            policies_0p(AfterSb0Pri::Disconnect),
            with(split(), |sb| sb.local.discard_my_data = true),
            DiscardLocal,
        ),
        case(
            "discard-my-data on the peer",
            policies_0p(AfterSb0Pri::Disconnect),
            with(split(), |sb| sb.peer.discard_my_data = true),
            DiscardRemote,
        ),
        case(
            "discard-my-data on both is refused",
            policies_0p(DiscardLeastChanges),
            with(split(), |sb| {
                sb.local.discard_my_data = true;
                sb.peer.discard_my_data = true;
            }),
            Disconnect,
        ),
        case(
            "policy wins over discard-my-data",
            policies_0p(DiscardLeastChanges),
            with(split(), |sb| {
                sb.local.discard_my_data = true;
                sb.peer.changes = 1;
            }),
            DiscardRemote,
        ),
        Case {
            name: "rule 10 without always-asbp: policies do not apply",
            policies: policies_0p(DiscardLeastChanges),
            sb: with(split(), |sb| sb.auto_recoverable = false),
            resolution: Disconnect,
            full_sync: true,
        },
        Case {
            name: "rule 10 with always-asbp: full sync",
            policies: SplitBrainPolicies {
                always_asbp: true,
                ..policies_0p(DiscardLeastChanges)
            },
            sb: with(split(), |sb| {
                sb.auto_recoverable = false;
                sb.local.changes = 1;
            }),
            resolution: DiscardLocal,
            full_sync: true,
        },
        Case {
            name: "rule 10 resolved by discard-my-data: full sync",
            policies: policies_0p(AfterSb0Pri::Disconnect),
            sb: with(split(), |sb| {
                sb.auto_recoverable = false;
                sb.local.discard_my_data = true;
            }),
            resolution: DiscardLocal,
            full_sync: true,
        },
    ]
}

fn mirror(sb: &SplitBrain<'static>) -> SplitBrain<'static> {
    SplitBrain {
        local: sb.peer,
        peer: sb.local,
        ..*sb
    }
}

#[test]
fn split_brain_table() {
    for c in cases() {
        let got = resolve_split_brain(&c.policies, &c.sb);
        assert_eq!(got.resolution, c.resolution, "case {:?}: {got}", c.name);
        assert_eq!(got.full_sync, c.full_sync, "case {:?}: {got}", c.name);
        let other = resolve_split_brain(&c.policies, &mirror(&c.sb));
        assert_eq!(
            other.resolution.victim(),
            c.resolution.victim().map(Side::mirror),
            "case {:?} from the peer: {other}",
            c.name
        );
    }
}

#[test]
fn reasons_explain_the_choice() {
    let sb = with(split(), |sb| sb.local.changes = 3);
    let out = resolve_split_brain(&policies_0p(AfterSb0Pri::DiscardLeastChanges), &sb);
    assert_eq!(
        out.reason,
        SbReason::Policy {
            option: "after-sb-0pri",
            value: "discard-least-changes".into(),
            criterion: Criterion::LeastChanges
        }
    );
    assert_eq!(
        out.to_string(),
        "split brain: discard my data (become SyncTarget) (after-sb-0pri discard-least-changes: the node with \
         fewer changes is discarded)"
    );
    let out = resolve_split_brain(&SplitBrainPolicies::default(), &split());
    assert!(out.to_string().contains("--discard-my-data"), "{out}");

    let policies = SplitBrainPolicies {
        after_sb_0pri: AfterSb0Pri::DiscardLeastChanges,
        after_sb_1pri: AfterSb1Pri::Consensus,
        ..SplitBrainPolicies::default()
    };
    let sb = with(split(), |sb| {
        sb.peer.role = Role::Primary;
        sb.local.changes = 3;
    });
    let out = resolve_split_brain(&policies, &sb);
    assert_eq!(
        out.to_string(),
        "split brain: discard my data (become SyncTarget) (after-sb-1pri consensus (after-sb-0pri \
         discard-least-changes): the node with fewer changes is discarded)"
    );
}

#[test]
fn policy_names_round_trip() {
    for text in [
        "disconnect",
        "discard-younger-primary",
        "discard-older-primary",
        "discard-zero-changes",
        "discard-least-changes",
        "discard-node-alpha",
    ] {
        assert_eq!(text.parse::<AfterSb0Pri>().unwrap().to_string(), text);
    }
    assert_eq!(
        "Discard-Node-Node1".parse::<AfterSb0Pri>().unwrap(),
        AfterSb0Pri::DiscardNode("Node1".into())
    );
    assert!("discard-node-".parse::<AfterSb0Pri>().is_err());
    assert!("consensus".parse::<AfterSb0Pri>().is_err());
    for p in AfterSb1Pri::ALL {
        assert_eq!(p.to_string().parse::<AfterSb1Pri>().unwrap(), *p);
    }
    assert_eq!(
        AfterSb1Pri::CallPriLostAfterSb.to_string(),
        "call-pri-lost-after-sb"
    );
    assert_eq!(AfterSb1Pri::ViolentlyAs0p.to_string(), "violently-as0p");
    assert!("discard-secondary".parse::<AfterSb2Pri>().is_err());
    let rr: Vec<String> = RrConflict::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(
        rr,
        [
            "disconnect",
            "retry-connect",
            "violently",
            "call-pri-lost",
            "auto-discard"
        ]
    );
}

// ---- rr-conflict ----

fn rr(node: u8, role: Role, disk: DiskState) -> RrSide {
    RrSide {
        node: n(node),
        role,
        disk,
    }
}

#[test]
fn rr_conflict_table() {
    use DiskState::*;
    use Role::*;
    let target_bm = Decision {
        outcome: SyncDecision::BecomeTarget {
            kind: SyncKind::Bitmap { slot_of: n(0) },
        },
        rule: Rule::PeerBitmapForMe,
        adjustment: None,
    };
    let crashed = Decision {
        outcome: SyncDecision::BecomeTarget {
            kind: SyncKind::Bitmap { slot_of: n(0) },
        },
        rule: Rule::CrashedPrimaryAsync(Side::Peer),
        adjustment: None,
    };
    let source_crashed = crashed.mirror();
    let cases = [
        (
            "no conflict: I am secondary",
            RrConflict::Disconnect,
            target_bm,
            Secondary,
            UpToDate,
            Secondary,
            5,
            RrOutcome::Proceed,
        ),
        (
            "no conflict: nothing to transfer",
            RrConflict::Disconnect,
            target_bm,
            Primary,
            UpToDate,
            Secondary,
            0,
            RrOutcome::Proceed,
        ),
        (
            "no conflict: my data is Outdated",
            RrConflict::Disconnect,
            target_bm,
            Primary,
            Outdated,
            Secondary,
            5,
            RrOutcome::Proceed,
        ),
        (
            "disconnect",
            RrConflict::Disconnect,
            target_bm,
            Primary,
            UpToDate,
            Secondary,
            5,
            RrOutcome::Disconnect,
        ),
        (
            "retry-connect",
            RrConflict::RetryConnect,
            target_bm,
            Primary,
            Consistent,
            Secondary,
            5,
            RrOutcome::RetryConnect,
        ),
        (
            "violently",
            RrConflict::Violently,
            target_bm,
            Primary,
            UpToDate,
            Secondary,
            5,
            RrOutcome::ProceedViolently,
        ),
        (
            "call-pri-lost on the primary",
            RrConflict::CallPriLost,
            target_bm,
            Primary,
            UpToDate,
            Secondary,
            5,
            RrOutcome::CallHelperAndDisconnect(Helper::PriLost),
        ),
        (
            "auto-discard reverses after a crashed primary",
            RrConflict::AutoDiscard,
            crashed,
            Primary,
            UpToDate,
            Secondary,
            5,
            RrOutcome::Reverse(SyncDecision::BecomeSource {
                kind: SyncKind::Bitmap { slot_of: n(1) },
            }),
        ),
        (
            "auto-discard otherwise disconnects",
            RrConflict::AutoDiscard,
            target_bm,
            Primary,
            UpToDate,
            Secondary,
            5,
            RrOutcome::Disconnect,
        ),
        (
            "auto-discard seen from the crashed node",
            RrConflict::AutoDiscard,
            source_crashed,
            Secondary,
            UpToDate,
            Primary,
            5,
            RrOutcome::Reverse(SyncDecision::BecomeTarget {
                kind: SyncKind::Bitmap { slot_of: n(1) },
            }),
        ),
    ];
    for (name, policy, decision, local_role, local_disk, peer_role, bits, want) in cases {
        let (local, peer) = if decision == source_crashed {
            (rr(1, local_role, local_disk), rr(0, peer_role, UpToDate))
        } else {
            (rr(0, local_role, local_disk), rr(1, peer_role, UpToDate))
        };
        assert_eq!(
            check_rr_conflict(policy, &decision, local, peer, bits),
            want,
            "{name}"
        );
    }
}

#[test]
fn rr_conflict_is_seen_by_both_ends() {
    let decision = Decision {
        outcome: SyncDecision::BecomeTarget { kind: SyncKind::Full },
        rule: Rule::CurrentInHistory(Side::Local),
        adjustment: None,
    };
    let primary = rr(0, Role::Primary, DiskState::UpToDate);
    let secondary = rr(1, Role::Secondary, DiskState::UpToDate);
    assert_eq!(
        check_rr_conflict(RrConflict::CallPriLost, &decision, primary, secondary, 1),
        RrOutcome::CallHelperAndDisconnect(Helper::PriLost)
    );
    assert_eq!(
        check_rr_conflict(RrConflict::CallPriLost, &decision.mirror(), secondary, primary, 1),
        RrOutcome::Disconnect
    );
}

// ---- symmetry ----

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

fn any_side(node: u8) -> impl Strategy<Value = SbSide<'static>> {
    (
        prop::sample::select(Role::ALL.to_vec()),
        0u64..3,
        any::<[bool; 3]>(),
    )
        .prop_map(move |(role, changes, b)| SbSide {
            node: n(node),
            name: NAMES[usize::from(node)],
            role,
            changes,
            primary_at_split: b[0],
            have_quorum: b[1],
            discard_my_data: b[2],
        })
}

fn any_policies() -> impl Strategy<Value = SplitBrainPolicies> {
    let zero = prop_oneof![
        Just(AfterSb0Pri::Disconnect),
        Just(AfterSb0Pri::DiscardYoungerPrimary),
        Just(AfterSb0Pri::DiscardOlderPrimary),
        Just(AfterSb0Pri::DiscardZeroChanges),
        Just(AfterSb0Pri::DiscardLeastChanges),
        prop::sample::select(NAMES.to_vec()).prop_map(|n| AfterSb0Pri::DiscardNode(n.to_owned())),
    ];
    (
        zero,
        prop::sample::select(AfterSb1Pri::ALL.to_vec()),
        prop::sample::select(AfterSb2Pri::ALL.to_vec()),
        any::<bool>(),
    )
        .prop_map(
            |(after_sb_0pri, after_sb_1pri, after_sb_2pri, always_asbp)| SplitBrainPolicies {
                after_sb_0pri,
                after_sb_1pri,
                after_sb_2pri,
                always_asbp,
                ..SplitBrainPolicies::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Both nodes resolve the same split brain to mirror images: exactly one victim, or both disconnect.
    #[test]
    fn resolution_is_symmetric(
        policies in any_policies(),
        (a, b) in (0u8..3, 1u8..3).prop_flat_map(|(a, off)| (any_side(a), any_side((a + off) % 3))),
        auto_recoverable in any::<bool>(),
        quorum_enabled in any::<bool>(),
    ) {
        let ab = SplitBrain { local: a, peer: b, auto_recoverable, quorum_enabled };
        let ba = mirror(&ab);
        let x = resolve_split_brain(&policies, &ab);
        let y = resolve_split_brain(&policies, &ba);
        prop_assert_eq!(y.resolution.victim(), x.resolution.victim().map(Side::mirror), "A: {}, B: {}", x, y);
        prop_assert_eq!(x.full_sync, y.full_sync);
    }
}
