//! Quorum cases (including DRBD's quorum and tiebreaker test topologies) and monotonicity.

use proptest::prelude::*;
use replbd_quorum::quorum::{Absence, LocalVote, OnNoQuorum, PeerVote, QuorumInput, QuorumReason};
use replbd_quorum::{DiskState, QuorumConfig, QuorumPolicy, evaluate_quorum};

use DiskState::*;

const UP: PeerVote = PeerVote::Present {
    disk: UpToDate,
    quorate: false,
};
const UP_QUORATE: PeerVote = PeerVote::Present {
    disk: UpToDate,
    quorate: true,
};
const PRESENT_INCONSISTENT: PeerVote = PeerVote::Present {
    disk: Inconsistent,
    quorate: false,
};
const GONE: PeerVote = PeerVote::Absent(Absence::Unknown);
const OUTDATED: PeerVote = PeerVote::Absent(Absence::Outdated);
const QUORUMLESS: PeerVote = PeerVote::Absent(Absence::Quorumless);
const TB: PeerVote = PeerVote::DisklessConnected;
const TB_GONE: PeerVote = PeerVote::DisklessAbsent;
const ME: LocalVote = LocalVote::Diskful(UpToDate);

fn majority() -> QuorumConfig {
    QuorumConfig {
        quorum: QuorumPolicy::Majority,
        ..QuorumConfig::default()
    }
}

struct Case {
    name: &'static str,
    config: QuorumConfig,
    local: LocalVote,
    peers: &'static [PeerVote],
    had_quorum: bool,
    have: bool,
    reason: QuorumReason,
    text: &'static str,
}

fn cases() -> Vec<Case> {
    let with = |quorum, minimum_redundancy| QuorumConfig {
        quorum,
        minimum_redundancy,
        ..QuorumConfig::default()
    };
    vec![
        Case {
            name: "quorum off always has quorum",
            config: QuorumConfig::default(),
            local: ME,
            peers: &[GONE, GONE],
            had_quorum: false,
            have: true,
            reason: QuorumReason::Disabled,
            text: "quorum: quorum is off",
        },
        Case {
            name: "3 nodes all connected",
            config: majority(),
            local: ME,
            peers: &[UP, UP],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 3 of 3 voters present, need 2",
        },
        Case {
            name: "3 nodes, one unknown absent",
            config: majority(),
            local: ME,
            peers: &[UP, GONE],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 2 of 3 voters present, need 2",
        },
        Case {
            name: "3 nodes, isolated node loses quorum",
            config: majority(),
            local: ME,
            peers: &[GONE, GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 3 voters present, need 2",
        },
        Case {
            name: "5 nodes, 3 present",
            config: majority(),
            local: ME,
            peers: &[UP, UP, GONE, GONE],
            had_quorum: false,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 3 of 5 voters present, need 3",
        },
        Case {
            name: "last man standing: both absent peers outdated",
            config: majority(),
            local: ME,
            peers: &[OUTDATED, OUTDATED],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 1 of 1 voters present, need 1 (2 absent voters known not to be quorate are not \
                   counted)",
        },
        Case {
            name: "last man standing blocked by one unknown peer",
            config: majority(),
            local: ME,
            peers: &[OUTDATED, GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 3 voters present, need 2",
        },
        Case {
            name: "quorumless peer dropped",
            config: majority(),
            local: ME,
            peers: &[UP, QUORUMLESS],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 2 of 2 voters present, need 2 (1 absent voters known not to be quorate are not \
                   counted)",
        },
        Case {
            name: "quorumless peers that could form a quorum count as unknown",
            config: majority(),
            local: ME,
            peers: &[QUORUMLESS, QUORUMLESS, QUORUMLESS, UP],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 2 of 5 voters present, need 3",
        },
        Case {
            name: "2 diskful + tiebreaker: tiebreaker keeps quorum",
            config: majority(),
            local: ME,
            peers: &[GONE, TB],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Tiebreaker,
            text: "quorum: 1 of 2 voters present, need 2, kept by the tiebreaker (1 of 1 diskless nodes \
                   connected)",
        },
        Case {
            name: "2 diskful + tiebreaker: the side without the tiebreaker loses quorum",
            config: majority(),
            local: ME,
            peers: &[GONE, TB_GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 2 voters present, need 2",
        },
        Case {
            name: "2 diskful + tiebreaker: tiebreaker does not grant quorum not held before",
            config: majority(),
            local: ME,
            peers: &[GONE, TB],
            had_quorum: false,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 2 voters present, need 2",
        },
        Case {
            name: "2 diskful + 2 tiebreakers, one connected is not a majority of them",
            config: majority(),
            local: ME,
            peers: &[GONE, TB, TB_GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 2 voters present, need 2",
        },
        Case {
            name: "4 diskful, two short: tiebreaker does not help",
            config: majority(),
            local: ME,
            peers: &[GONE, GONE, GONE, TB],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 4 voters present, need 3",
        },
        Case {
            name: "4 diskful, one short with tiebreaker",
            config: majority(),
            local: ME,
            peers: &[UP, GONE, GONE, TB],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Tiebreaker,
            text: "quorum: 2 of 4 voters present, need 3, kept by the tiebreaker (1 of 1 diskless nodes \
                   connected)",
        },
        Case {
            name: "quorum all: one absent is too many",
            config: with(QuorumPolicy::All, QuorumPolicy::Off),
            local: ME,
            peers: &[UP, GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 2 of 3 voters present, need 3",
        },
        Case {
            name: "quorum all: everyone present",
            config: with(QuorumPolicy::All, QuorumPolicy::Off),
            local: ME,
            peers: &[UP, PRESENT_INCONSISTENT],
            had_quorum: false,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 3 of 3 voters present, need 3",
        },
        Case {
            name: "quorum 2 of 5",
            config: with(QuorumPolicy::Count(2), QuorumPolicy::Off),
            local: ME,
            peers: &[UP, GONE, GONE, GONE],
            had_quorum: false,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 2 of 5 voters present, need 2",
        },
        Case {
            name: "minimum redundancy: enough voters, too few UpToDate",
            config: with(QuorumPolicy::Majority, QuorumPolicy::Count(2)),
            local: ME,
            peers: &[PRESENT_INCONSISTENT, PRESENT_INCONSISTENT],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewUpToDate,
            text: "no quorum: 1 of 3 voters UpToDate, quorum-minimum-redundancy needs 2",
        },
        Case {
            name: "minimum redundancy majority satisfied",
            config: with(QuorumPolicy::Majority, QuorumPolicy::Majority),
            local: ME,
            peers: &[UP, PRESENT_INCONSISTENT],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 3 of 3 voters present, need 2",
        },
        Case {
            name: "minimum redundancy also applies to the tiebreaker",
            config: with(QuorumPolicy::Majority, QuorumPolicy::Count(2)),
            local: ME,
            peers: &[GONE, TB],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 2 voters present, need 2",
        },
        Case {
            name: "local disk not UpToDate still votes",
            config: majority(),
            local: LocalVote::Diskful(Outdated),
            peers: &[UP, GONE],
            had_quorum: false,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 2 of 3 voters present, need 2",
        },
        Case {
            name: "detached local disk is a missing vote",
            config: majority(),
            local: LocalVote::Diskful(Diskless),
            peers: &[UP, GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 1 of 3 voters present, need 2",
        },
        Case {
            name: "diskless client sees a majority of diskful nodes",
            config: majority(),
            local: LocalVote::DisklessClient,
            peers: &[UP, UP, GONE],
            had_quorum: false,
            have: true,
            reason: QuorumReason::Reached,
            text: "quorum: 2 of 3 voters present, need 2",
        },
        Case {
            name: "diskless client connected to a quorate UpToDate peer",
            config: majority(),
            local: LocalVote::DisklessClient,
            peers: &[UP_QUORATE, GONE, GONE],
            had_quorum: false,
            have: true,
            reason: QuorumReason::QuorateUpToDatePeer,
            text: "quorum: connected to an UpToDate peer that has quorum",
        },
        Case {
            name: "diskless client alone",
            config: majority(),
            local: LocalVote::DisklessClient,
            peers: &[GONE, GONE],
            had_quorum: true,
            have: false,
            reason: QuorumReason::TooFewVoters,
            text: "no quorum: 0 of 2 voters present, need 2",
        },
        Case {
            name: "diskless client is the tiebreaker of two diskful nodes",
            config: majority(),
            local: LocalVote::DisklessClient,
            peers: &[UP, GONE],
            had_quorum: true,
            have: true,
            reason: QuorumReason::Tiebreaker,
            text: "quorum: 1 of 2 voters present, need 2, kept by the tiebreaker (1 of 1 diskless nodes \
                   connected)",
        },
    ]
}

#[test]
fn quorum_table() {
    for c in cases() {
        let input = QuorumInput {
            local: c.local,
            peers: c.peers,
            had_quorum: c.had_quorum,
        };
        let verdict = evaluate_quorum(&c.config, &input);
        assert_eq!(verdict.have_quorum, c.have, "case {:?}: {verdict}", c.name);
        assert_eq!(verdict.reason, c.reason, "case {:?}: {verdict}", c.name);
        assert_eq!(verdict.to_string(), c.text, "case {:?}", c.name);
    }
}

#[test]
fn three_node_isolation_both_sides() {
    // A is cut off from B and C, which still see each other.
    let a = QuorumInput {
        local: ME,
        peers: &[GONE, GONE],
        had_quorum: true,
    };
    let b = QuorumInput {
        local: ME,
        peers: &[GONE, UP],
        had_quorum: true,
    };
    assert!(!evaluate_quorum(&majority(), &a).have_quorum);
    assert!(evaluate_quorum(&majority(), &b).have_quorum);
}

#[test]
fn on_no_quorum_names() {
    assert_eq!("suspend-io".parse::<OnNoQuorum>().unwrap(), OnNoQuorum::SuspendIo);
    assert_eq!(OnNoQuorum::IoError.to_string(), "io-error");
}

// ---- monotonicity ----

fn policy() -> impl Strategy<Value = QuorumPolicy> {
    prop_oneof![
        Just(QuorumPolicy::Off),
        Just(QuorumPolicy::Majority),
        Just(QuorumPolicy::All),
        (1u8..=5).prop_map(QuorumPolicy::Count),
    ]
}

fn config() -> impl Strategy<Value = QuorumConfig> {
    (policy(), policy()).prop_map(|(quorum, minimum_redundancy)| QuorumConfig {
        quorum,
        minimum_redundancy,
        ..QuorumConfig::default()
    })
}

fn local() -> impl Strategy<Value = LocalVote> {
    prop_oneof![
        prop::sample::select(DiskState::ALL.to_vec()).prop_map(LocalVote::Diskful),
        Just(LocalVote::DisklessClient),
    ]
}

fn peer() -> impl Strategy<Value = PeerVote> {
    prop_oneof![
        (prop::sample::select(DiskState::ALL.to_vec()), any::<bool>())
            .prop_map(|(disk, quorate)| PeerVote::Present { disk, quorate }),
        Just(GONE),
        Just(OUTDATED),
        Just(QUORUMLESS),
        Just(TB),
        Just(TB_GONE),
    ]
}

fn view() -> impl Strategy<Value = (QuorumConfig, LocalVote, Vec<PeerVote>, bool)> {
    (
        config(),
        local(),
        prop::collection::vec(peer(), 0..7),
        any::<bool>(),
    )
}

fn have(config: &QuorumConfig, local: LocalVote, peers: &[PeerVote], had_quorum: bool) -> bool {
    evaluate_quorum(
        config,
        &QuorumInput {
            local,
            peers,
            had_quorum,
        },
    )
    .have_quorum
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn adding_a_present_up_to_date_voter_never_loses_quorum((config, local, peers, had) in view()) {
        let mut more = peers.clone();
        more.push(UP);
        prop_assert!(!have(&config, local, &peers, had) || have(&config, local, &more, had));
    }

    #[test]
    fn an_absent_voter_returning_up_to_date_never_loses_quorum(
        (config, local, peers, had) in view(),
        index in any::<prop::sample::Index>(),
    ) {
        let absent: Vec<usize> = (0..peers.len()).filter(|i| matches!(peers[*i], PeerVote::Absent(_))).collect();
        if absent.is_empty() {
            return Ok(());
        }
        let mut back = peers.clone();
        back[absent[index.index(absent.len())]] = UP;
        prop_assert!(!have(&config, local, &peers, had) || have(&config, local, &back, had));
    }

    #[test]
    fn learning_an_absent_voter_is_outdated_never_loses_quorum(
        (config, local, peers, had) in view(),
        index in any::<prop::sample::Index>(),
    ) {
        let unknown: Vec<usize> = (0..peers.len()).filter(|i| peers[*i] == GONE).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut known = peers.clone();
        known[unknown[index.index(unknown.len())]] = OUTDATED;
        prop_assert!(!have(&config, local, &peers, had) || have(&config, local, &known, had));
    }

    #[test]
    fn connecting_a_tiebreaker_never_loses_quorum((config, local, peers, had) in view()) {
        let mut more = peers.clone();
        match more.iter().position(|p| *p == TB_GONE) {
            Some(i) => more[i] = TB,
            None => more.push(TB),
        }
        prop_assert!(!have(&config, local, &peers, had) || have(&config, local, &more, had));
    }

    #[test]
    fn having_had_quorum_never_hurts((config, local, peers, _had) in view()) {
        prop_assert!(!have(&config, local, &peers, false) || have(&config, local, &peers, true));
    }

    #[test]
    fn quorum_off_always_has_quorum((config, local, peers, had) in view()) {
        let off = QuorumConfig { quorum: QuorumPolicy::Off, ..config };
        prop_assert!(have(&off, local, &peers, had));
    }
}
