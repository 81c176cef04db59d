//! The handshake decision table, case by case, and its symmetry.

use proptest::prelude::*;
use replbd_quorum::decide::{Adjustment, DecideError, EqualTie, TieBreaker};
use replbd_quorum::gi::{GenerationIds, UUID_JUST_CREATED, UUID_PRIMARY};
use replbd_quorum::{
    Decision, DiskState, HandshakeSide, Protocol, Role, Rule, Side, SyncDecision, SyncKind, decide,
};

use crate::support::{GiExt, gi, n};

const X: u64 = 0x1000;
const Y: u64 = 0x2000;
const Z: u64 = 0x3000;
const W: u64 = 0x4000;
/// Node ids: A is the local node, B the peer, C a third node.
const A: u8 = 0;
const B: u8 = 1;
const C: u8 = 2;

#[derive(Clone, Debug)]
struct Node {
    id: u8,
    gi: GenerationIds,
    disk: DiskState,
    role: Role,
    reconnect: bool,
}

fn node(id: u8, gi: GenerationIds) -> Node {
    Node {
        id,
        gi,
        disk: DiskState::UpToDate,
        role: Role::Secondary,
        reconnect: false,
    }
}

impl Node {
    fn disk(mut self, disk: DiskState) -> Self {
        self.disk = disk;
        self
    }
    fn primary(mut self) -> Self {
        self.role = Role::Primary;
        self
    }
    fn reconnect(mut self) -> Self {
        self.reconnect = true;
        self
    }
    fn side(&self) -> HandshakeSide<'_> {
        HandshakeSide {
            node: n(self.id),
            gi: &self.gi,
            disk: self.disk,
            role: self.role,
            reconnect: self.reconnect,
        }
    }
}

struct Case {
    name: &'static str,
    local: Node,
    peer: Node,
    protocol: Protocol,
    outcome: SyncDecision,
    rule: Rule,
    adjustment: Option<Adjustment>,
}

fn source_bitmap(slot_of: u8) -> SyncDecision {
    SyncDecision::BecomeSource {
        kind: SyncKind::Bitmap { slot_of: n(slot_of) },
    }
}
fn target_bitmap(slot_of: u8) -> SyncDecision {
    SyncDecision::BecomeTarget {
        kind: SyncKind::Bitmap { slot_of: n(slot_of) },
    }
}
const SOURCE_FULL: SyncDecision = SyncDecision::BecomeSource { kind: SyncKind::Full };
const TARGET_FULL: SyncDecision = SyncDecision::BecomeTarget { kind: SyncKind::Full };

fn case(name: &'static str, local: Node, peer: Node, outcome: SyncDecision, rule: Rule) -> Case {
    Case {
        name,
        local,
        peer,
        protocol: Protocol::C,
        outcome,
        rule,
        adjustment: None,
    }
}

impl Case {
    fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }
    fn adjusted(mut self, adjustment: Adjustment) -> Self {
        self.adjustment = Some(adjustment);
        self
    }
}

fn cases() -> Vec<Case> {
    use DiskState::*;
    use SyncDecision::*;
    let fresh = GenerationIds::just_created;
    vec![
        // Rules 1 and 2.
        case(
            "rule 1: both just created",
            node(A, fresh()),
            node(B, fresh()),
            NoSync,
            Rule::BothJustCreated,
        ),
        case(
            "rule 2: local just created is full-sync target",
            node(A, fresh()).disk(Inconsistent),
            node(B, gi(X)),
            TARGET_FULL,
            Rule::JustCreated(Side::Local),
        ),
        case(
            "rule 2: peer just created gets a full sync",
            node(A, gi(X)),
            node(B, fresh()).disk(Inconsistent),
            SOURCE_FULL,
            Rule::JustCreated(Side::Peer),
        ),
        case(
            "rule 2: current UUID 0 counts as just created",
            node(A, gi(0)),
            node(B, gi(X)),
            TARGET_FULL,
            Rule::JustCreated(Side::Local),
        ),
        case(
            "rule 2: just-created marker with primary bit",
            node(A, gi(X)),
            node(B, gi(UUID_JUST_CREATED | UUID_PRIMARY)),
            SOURCE_FULL,
            Rule::JustCreated(Side::Peer),
        ),
        // Rule 3.
        case(
            "rule 3: equal current, nothing to repair",
            node(A, gi(X)),
            node(B, gi(X)),
            NoSync,
            Rule::EqualCurrent,
        ),
        case(
            "rule 3: primary bit ignored when comparing currents",
            node(A, gi(X | UUID_PRIMARY)).primary(),
            node(B, gi(X)),
            NoSync,
            Rule::EqualCurrent,
        ),
        case(
            "rule 3: both stayed up is a reconnect, even with a crash flag",
            node(A, gi(X).crashed()).reconnect(),
            node(B, gi(X)).reconnect(),
            NoSync,
            Rule::Reconnected,
        ),
        case(
            "rule 3: protocol A, I crashed as primary: I am source",
            node(A, gi(X).crashed()),
            node(B, gi(X)).reconnect(),
            source_bitmap(B),
            Rule::CrashedPrimaryAsync(Side::Local),
        )
        .protocol(Protocol::A),
        case(
            "rule 3: protocol B, peer crashed as primary: peer is source",
            node(A, gi(X)).reconnect(),
            node(B, gi(X).crashed()),
            target_bitmap(A),
            Rule::CrashedPrimaryAsync(Side::Peer),
        )
        .protocol(Protocol::B),
        case(
            "rule 3: protocol A crashed primary is firm, not overridden by disk states",
            node(A, gi(X).crashed()).disk(Consistent),
            node(B, gi(X)).disk(UpToDate),
            source_bitmap(B),
            Rule::CrashedPrimaryAsync(Side::Local),
        )
        .protocol(Protocol::A),
        case(
            "rule 3: protocol C, peer crashed as primary while I stayed up: I am source",
            node(A, gi(X)).reconnect(),
            node(B, gi(X).crashed()),
            source_bitmap(B),
            Rule::SurvivedCrashedPrimary(Side::Local),
        ),
        case(
            "rule 3: protocol C, I crashed as primary, peer stayed up: peer is source",
            node(A, gi(X).crashed()),
            node(B, gi(X)).reconnect(),
            target_bitmap(A),
            Rule::SurvivedCrashedPrimary(Side::Peer),
        ),
        case(
            "rule 3: protocol C common power failure: crashed primary is source",
            node(A, gi(X).crashed()),
            node(B, gi(X)),
            source_bitmap(B),
            Rule::CrashedPrimaryBothOff(Side::Local),
        ),
        case(
            "rule 3: both crashed as primary, higher dagtag is source",
            node(A, gi(X).crashed().dagtag(10)),
            node(B, gi(X).crashed().dagtag(20)),
            target_bitmap(A),
            Rule::EqualTie {
                tie: EqualTie::BothCrashedPrimary,
                source: Side::Peer,
                by: TieBreaker::Dagtag,
            },
        ),
        case(
            "rule 3: both crashed as primary, equal dagtag, lower node id is source",
            node(A, gi(X).crashed()),
            node(B, gi(X).crashed()),
            source_bitmap(B),
            Rule::EqualTie {
                tie: EqualTie::BothCrashedPrimary,
                source: Side::Local,
                by: TieBreaker::NodeId,
            },
        ),
        case(
            "rule 3: one stayed up, no crash: no sync",
            node(A, gi(X)).reconnect(),
            node(B, gi(X)),
            NoSync,
            Rule::OneReconnected,
        ),
        case(
            "rule 3: I lost quorum as primary: I am target",
            node(A, gi(X).lost_quorum()),
            node(B, gi(X)),
            target_bitmap(A),
            Rule::LostQuorum(Side::Local),
        ),
        case(
            "rule 3: peer lost quorum as primary: I am source",
            node(A, gi(X)),
            node(B, gi(X).lost_quorum()),
            source_bitmap(B),
            Rule::LostQuorum(Side::Peer),
        ),
        case(
            "rule 3: lost quorum beats a protocol C crash flag",
            node(A, gi(X).lost_quorum()),
            node(B, gi(X).crashed()),
            target_bitmap(A),
            Rule::LostQuorum(Side::Local),
        ),
        case(
            "rule 3: both lost quorum, tie by dagtag",
            node(A, gi(X).lost_quorum().dagtag(7)),
            node(B, gi(X).lost_quorum().dagtag(3)),
            source_bitmap(B),
            Rule::EqualTie {
                tie: EqualTie::BothLostQuorum,
                source: Side::Local,
                by: TieBreaker::Dagtag,
            },
        ),
        case(
            "rule 3: weak result follows the current primary",
            node(A, gi(X)),
            node(B, gi(X).lost_quorum()).primary(),
            target_bitmap(A),
            Rule::LostQuorum(Side::Peer),
        )
        .adjusted(Adjustment::FollowPrimary(Side::Peer)),
        case(
            "rule 3: weak result agreeing with the primary is not marked adjusted",
            node(A, gi(X)).primary(),
            node(B, gi(X).lost_quorum()),
            source_bitmap(B),
            Rule::LostQuorum(Side::Peer),
        ),
        case(
            "rule 3: weak result with two primaries: no sync",
            node(A, gi(X).crashed()).primary(),
            node(B, gi(X)).primary(),
            NoSync,
            Rule::CrashedPrimaryBothOff(Side::Local),
        )
        .adjusted(Adjustment::BothPrimary),
        case(
            "rule 3: disk states override a weak result",
            node(A, gi(X).crashed()).disk(Outdated),
            node(B, gi(X)).disk(UpToDate),
            target_bitmap(A),
            Rule::CrashedPrimaryBothOff(Side::Local),
        )
        .adjusted(Adjustment::DiskStates {
            local: Outdated,
            peer: UpToDate,
        }),
        case(
            "rule 3: no sync turns into resync toward an Inconsistent peer",
            node(A, gi(X)).disk(UpToDate),
            node(B, gi(X)).disk(Inconsistent),
            source_bitmap(B),
            Rule::EqualCurrent,
        )
        .adjusted(Adjustment::DiskStates {
            local: UpToDate,
            peer: Inconsistent,
        }),
        case(
            "rule 3: Outdated vs UpToDate with equal UUIDs resyncs the Outdated side by bitmap",
            node(A, gi(X)).disk(Outdated),
            node(B, gi(X)).disk(UpToDate),
            target_bitmap(A),
            Rule::EqualCurrent,
        )
        .adjusted(Adjustment::DiskStates {
            local: Outdated,
            peer: UpToDate,
        }),
        case(
            "rule 3: Negotiating disk is judged from the metadata flags",
            node(A, {
                let mut g = gi(X);
                g.flags.consistent = false;
                g
            })
            .disk(Negotiating),
            node(B, gi(X)).disk(UpToDate),
            target_bitmap(A),
            Rule::EqualCurrent,
        )
        .adjusted(Adjustment::DiskStates {
            local: Inconsistent,
            peer: UpToDate,
        }),
        case(
            "rule 3: DUnknown peer disk never overrides",
            node(A, gi(X).crashed()).disk(UpToDate),
            node(B, gi(X)).disk(DUnknown),
            source_bitmap(B),
            Rule::CrashedPrimaryBothOff(Side::Local),
        ),
        // Rules 4–7.
        case(
            "rule 4: peer's bitmap UUID for me equals my current",
            node(A, gi(X)),
            node(B, gi(Y).bm(A, X)),
            target_bitmap(A),
            Rule::PeerBitmapForMe,
        ),
        case(
            "rule 4: primary bit ignored in the bitmap UUID",
            node(A, gi(X)),
            node(B, gi(Y | UUID_PRIMARY).bm(A, X | UUID_PRIMARY)).primary(),
            target_bitmap(A),
            Rule::PeerBitmapForMe,
        ),
        case(
            "rule 4: crash flags do not matter when currents differ",
            node(A, gi(X).crashed()),
            node(B, gi(Y).bm(A, X)),
            target_bitmap(A),
            Rule::PeerBitmapForMe,
        )
        .protocol(Protocol::A),
        case(
            "rule 4: firm result, not overridden by disk states",
            node(A, gi(X)).disk(UpToDate),
            node(B, gi(Y).bm(A, X)).disk(Outdated),
            target_bitmap(A),
            Rule::PeerBitmapForMe,
        ),
        case(
            "rule 4: (b) I followed the peer into Y, it never saw me confirm: its bitmap from X covers it",
            node(A, gi(Y).hist(&[X])),
            node(B, gi(Z).bm(A, X).hist(&[Y])),
            target_bitmap(A),
            Rule::PeerBitmapForMyPast,
        ),
        case(
            "rule 6: (b) the mirror image of 4b",
            node(A, gi(Z).bm(B, X).hist(&[Y])),
            node(B, gi(Y).hist(&[X])),
            source_bitmap(B),
            Rule::MyBitmapForPeerPast,
        ),
        case(
            "rules 4b and 10: 4b needs my current in the peer's history: otherwise I diverged (split brain)",
            node(A, gi(W).hist(&[X])),
            node(B, gi(Z).bm(A, X).hist(&[Y, X])),
            SplitBrain {
                auto_recoverable: false,
            },
            Rule::CommonHistory,
        ),
        case(
            "rule 5: my current is the peer's bitmap UUID for node C",
            node(A, gi(X)),
            node(B, gi(Y).bm(C, X)),
            target_bitmap(C),
            Rule::PeerBitmapForOther(n(C)),
        ),
        case(
            "rule 5: the lowest matching node id is used",
            node(A, gi(X)),
            node(B, gi(Y).bm(7, X).bm(C, X)),
            target_bitmap(C),
            Rule::PeerBitmapForOther(n(C)),
        ),
        case(
            "rules 5 and 10: the peer's slot at its own id is ignored",
            node(A, gi(X).hist(&[W])),
            node(B, gi(Y).bm(B, X).hist(&[W])),
            SplitBrain {
                auto_recoverable: false,
            },
            Rule::CommonHistory,
        ),
        case(
            "rule 6: my bitmap UUID for the peer equals its current",
            node(A, gi(X).bm(B, Y)),
            node(B, gi(Y)),
            source_bitmap(B),
            Rule::MyBitmapForPeer,
        ),
        case(
            "rule 7: the peer's current is my bitmap UUID for node C",
            node(A, gi(X).bm(C, Y)),
            node(B, gi(Y)),
            source_bitmap(C),
            Rule::MyBitmapForOther(n(C)),
        ),
        case(
            "rules 4 and 6 both match: neither direction, the next rules decide",
            node(A, gi(X).bm(B, Y).hist(&[W])),
            node(B, gi(Y).bm(A, X).hist(&[W])),
            SplitBrain {
                auto_recoverable: false,
            },
            Rule::CommonHistory,
        ),
        // Rule 8.
        case(
            "rule 8: my current is in the peer's history",
            node(A, gi(X)),
            node(B, gi(Y).hist(&[Z, X])),
            TARGET_FULL,
            Rule::CurrentInHistory(Side::Local),
        ),
        case(
            "rule 8: the peer's current is in my history",
            node(A, gi(X).hist(&[Y])),
            node(B, gi(Y)),
            SOURCE_FULL,
            Rule::CurrentInHistory(Side::Peer),
        ),
        case(
            "rules 8 and 9: both in each other's history, the next rules decide",
            node(A, gi(X).hist(&[Y]).bm(B, Z)),
            node(B, gi(Y).hist(&[X]).bm(A, Z)),
            SplitBrain {
                auto_recoverable: true,
            },
            Rule::BitmapsEqual,
        ),
        // Rules 9–11.
        case(
            "rule 9: both track changes since the same generation",
            node(A, gi(X).bm(B, Z)),
            node(B, gi(Y).bm(A, Z)),
            SplitBrain {
                auto_recoverable: true,
            },
            Rule::BitmapsEqual,
        ),
        case(
            "rule 9: primary bits differ but the generation is the same",
            node(A, gi(X).bm(B, Z | UUID_PRIMARY)),
            node(B, gi(Y).bm(A, Z)),
            SplitBrain {
                auto_recoverable: true,
            },
            Rule::BitmapsEqual,
        ),
        case(
            "rules 9 and 11: two empty bitmap UUIDs are not a match",
            node(A, gi(X)),
            node(B, gi(Y)),
            UnrelatedData,
            Rule::Unrelated,
        ),
        case(
            "rule 10: a common history UUID",
            node(A, gi(X).hist(&[Z, W])),
            node(B, gi(Y).hist(&[W])),
            SplitBrain {
                auto_recoverable: false,
            },
            Rule::CommonHistory,
        ),
        case(
            "rule 11: nothing in common",
            node(A, gi(X).hist(&[Z])),
            node(B, gi(Y).hist(&[W])),
            UnrelatedData,
            Rule::Unrelated,
        ),
        // Split brain between an Inconsistent and a better disk stays split brain: DRBD would resync
        // from the better disk and silently drop what the Inconsistent side's lineage wrote (found by
        // replbd-sim); the policies decide, and an Inconsistent node never becomes a sync source.
        case(
            "rule 9: with an Inconsistent side it is still split brain",
            node(A, gi(X).bm(B, Z)).disk(Inconsistent),
            node(B, gi(Y).bm(A, Z)).disk(UpToDate).primary(),
            SplitBrain {
                auto_recoverable: true,
            },
            Rule::BitmapsEqual,
        ),
        // Rules 4–8 keep their direction even from an Inconsistent disk: it is the newer generation
        // and may hold acknowledged writes the older Consistent node lacks (replbd-sim). The engine
        // then refuses to become SyncSource while Inconsistent, and the connection waits.
        case(
            "rule 6: an Inconsistent disk of the newer generation stays source",
            node(A, gi(X).bm(B, Y)).disk(Inconsistent),
            node(B, gi(Y)).disk(Consistent),
            source_bitmap(B),
            Rule::MyBitmapForPeer,
        ),
        case(
            "rule 8: an Inconsistent disk of the newer generation stays full-sync source",
            node(A, gi(X).hist(&[Y])).disk(Inconsistent),
            node(B, gi(Y)).disk(UpToDate),
            SOURCE_FULL,
            Rule::CurrentInHistory(Side::Peer),
        ),
        // Split brain where one side lost quorum as Primary: it takes the other side's data
        // (replbd-sim, seed 10653 before the fix: discard-secondary let it win).
        case(
            "rule 9: the side that lost quorum as Primary becomes target",
            node(A, gi(X).bm(B, Z).lost_quorum()).primary(),
            node(B, gi(Y).bm(A, Z)),
            target_bitmap(A),
            Rule::BitmapsEqual,
        )
        .adjusted(Adjustment::LostQuorum(Side::Local)),
        case(
            "rule 10: the peer lost quorum as Primary: full sync to it",
            node(A, gi(X).hist(&[Z, W])),
            node(B, gi(Y).hist(&[W]).lost_quorum()),
            SOURCE_FULL,
            Rule::CommonHistory,
        )
        .adjusted(Adjustment::LostQuorum(Side::Peer)),
        case(
            "rule 9: lost quorum decides before disk states: an Inconsistent peer is still source",
            node(A, gi(X).bm(B, Z).lost_quorum()).primary(),
            node(B, gi(Y).bm(A, Z)).disk(Inconsistent),
            target_bitmap(A),
            Rule::BitmapsEqual,
        )
        .adjusted(Adjustment::LostQuorum(Side::Local)),
        case(
            "rule 9: both lost quorum as Primary: still a split brain",
            node(A, gi(X).bm(B, Z).lost_quorum()),
            node(B, gi(Y).bm(A, Z).lost_quorum()),
            SplitBrain {
                auto_recoverable: true,
            },
            Rule::BitmapsEqual,
        ),
        case(
            "unrelated data stays unrelated whatever the disks",
            node(A, gi(X).hist(&[Z])).disk(Inconsistent),
            node(B, gi(Y).hist(&[W])),
            UnrelatedData,
            Rule::Unrelated,
        ),
    ]
}

#[test]
fn decision_table() {
    for c in cases() {
        let got = decide(&c.local.side(), &c.peer.side(), c.protocol).unwrap();
        let want = Decision {
            outcome: c.outcome,
            rule: c.rule,
            adjustment: c.adjustment,
        };
        assert_eq!(got, want, "case {:?}: got {got}", c.name);
        let mirrored = decide(&c.peer.side(), &c.local.side(), c.protocol).unwrap();
        assert_eq!(
            mirrored,
            want.mirror(),
            "case {:?} seen from the peer: got {mirrored}",
            c.name
        );
    }
}

#[test]
fn rule_numbers_match_the_table() {
    let numbers: Vec<(String, u8)> = cases()
        .iter()
        .map(|c| (c.name.to_owned(), c.rule.number()))
        .collect();
    for (name, number) in numbers {
        if let Some(rest) = name.strip_prefix("rule ") {
            let stated: u8 = rest.split(':').next().unwrap().parse().unwrap();
            assert_eq!(stated, number, "{name}");
        }
    }
}

#[test]
fn same_node_id_is_an_error() {
    let g = gi(X);
    let a = node(A, g.clone());
    let err = decide(&a.side(), &a.side(), Protocol::C).unwrap_err();
    assert_eq!(err, DecideError::SameNodeId(n(A)));
    assert!(err.to_string().contains("different node id"), "{err}");
}

#[test]
fn split_brain_display_names_the_rule() {
    let a = node(A, gi(X).bm(B, Z));
    let b = node(B, gi(Y).bm(A, Z));
    let d = decide(&a.side(), &b.side(), Protocol::C).unwrap();
    assert_eq!(
        d.to_string(),
        "split brain, auto-recoverable by the after-sb policies (rule 9: my bitmap UUID for the peer equals \
         the peer's bitmap UUID for me)"
    );
}

#[test]
fn decision_display_names_the_rule() {
    let a = node(A, gi(X));
    let b = node(B, gi(Y).bm(A, X));
    let d = decide(&a.side(), &b.side(), Protocol::C).unwrap();
    assert_eq!(
        d.to_string(),
        "become SyncTarget, using the bitmap for node 0 (rule 4: peer's bitmap UUID for me equals my current UUID)"
    );
    let a = node(A, gi(X).crashed()).disk(DiskState::Outdated);
    let b = node(B, gi(X));
    let d = decide(&a.side(), &b.side(), Protocol::C).unwrap();
    assert_eq!(
        d.to_string(),
        "become SyncTarget, using the bitmap for node 0 (rule 3: equal current UUIDs after a common power \
         failure, I crashed as Primary; decided by disk states (mine Outdated, peer's UpToDate))"
    );
}

// ---- symmetry ----

const POOL: [u64; 7] = [0, UUID_JUST_CREATED, 0x10, 0x20, 0x30, 0x40, 0x50];
const NODES: u8 = 4;

fn uuid() -> impl Strategy<Value = u64> {
    (prop::sample::select(POOL.to_vec()), any::<bool>())
        .prop_map(|(u, p)| if p { u | UUID_PRIMARY } else { u })
}

fn generation_ids() -> impl Strategy<Value = GenerationIds> {
    (
        uuid(),
        prop::collection::vec(uuid(), NODES as usize),
        prop::collection::vec(uuid(), 0..4),
        any::<[bool; 4]>(),
        0u64..3,
    )
        .prop_map(|(current, bitmaps, history, flags, dagtag)| {
            let mut g = GenerationIds {
                current,
                dagtag,
                ..GenerationIds::just_created()
            };
            g.bitmap[..bitmaps.len()].copy_from_slice(&bitmaps);
            g.history[..history.len()].copy_from_slice(&history);
            g.flags.consistent = flags[0];
            g.flags.was_up_to_date = flags[1];
            g.flags.crashed_primary = flags[2];
            g.flags.primary_lost_quorum = flags[3];
            g
        })
}

fn any_node(id: u8) -> impl Strategy<Value = Node> {
    (
        generation_ids(),
        prop::sample::select(DiskState::ALL.to_vec()),
        prop::sample::select(Role::ALL.to_vec()),
        any::<bool>(),
    )
        .prop_map(move |(gi, disk, role, reconnect)| Node {
            id,
            gi,
            disk,
            role,
            reconnect,
        })
}

fn two_nodes() -> impl Strategy<Value = (Node, Node)> {
    (0..NODES, 1..NODES).prop_flat_map(|(a, offset)| {
        let b = (a + offset) % NODES;
        (any_node(a), any_node(b))
    })
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(Protocol::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Both ends reach mirror-image decisions: A source ⇔ B target, split brain on both, same rule.
    #[test]
    fn decision_is_symmetric((a, b) in two_nodes(), protocol in protocol()) {
        let ab = decide(&a.side(), &b.side(), protocol).unwrap();
        let ba = decide(&b.side(), &a.side(), protocol).unwrap();
        prop_assert_eq!(ba, ab.mirror(), "A sees {}, B sees {}", ab, ba);
    }

    /// A bitmap resync always names a slot of a node other than the source itself.
    #[test]
    fn bitmap_slot_is_never_the_source((a, b) in two_nodes(), protocol in protocol()) {
        let d = decide(&a.side(), &b.side(), protocol).unwrap();
        match d.outcome {
            SyncDecision::BecomeSource { kind: SyncKind::Bitmap { slot_of } } => prop_assert_ne!(slot_of, n(a.id)),
            SyncDecision::BecomeTarget { kind: SyncKind::Bitmap { slot_of } } => prop_assert_ne!(slot_of, n(b.id)),
            _ => {}
        }
    }

    /// Two identical, not just-created identifier sets never need more than a bitmap resync.
    #[test]
    fn identical_identifiers_never_split_brain(a in any_node(0), protocol in protocol()) {
        let mut b = a.clone();
        b.id = 1;
        let d = decide(&a.side(), &b.side(), protocol).unwrap();
        let no_split = !matches!(d.outcome, SyncDecision::SplitBrain { .. } | SyncDecision::UnrelatedData);
        prop_assert!(no_split, "{}", d);
    }
}
