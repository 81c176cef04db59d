//! Promotion checks.

use replbd_quorum::promote::{PrimaryPeer, PromoteRequest, Promotion};
use replbd_quorum::quorum::{Absence, LocalVote, PeerVote, QuorumInput, QuorumVerdict};
use replbd_quorum::{
    DiskState, PromoteRefusal, Protocol, QuorumConfig, QuorumPolicy, can_promote, evaluate_quorum,
};

use crate::support::n;

fn verdict(have: bool) -> QuorumVerdict {
    let config = QuorumConfig {
        quorum: QuorumPolicy::Majority,
        ..QuorumConfig::default()
    };
    let peers: &[PeerVote] = if have {
        &[
            PeerVote::Present {
                disk: DiskState::UpToDate,
                quorate: true,
            },
            PeerVote::Absent(Absence::Unknown),
        ]
    } else {
        &[
            PeerVote::Absent(Absence::Unknown),
            PeerVote::Absent(Absence::Unknown),
        ]
    };
    evaluate_quorum(
        &config,
        &QuorumInput {
            local: LocalVote::Diskful(DiskState::UpToDate),
            peers,
            had_quorum: true,
        },
    )
}

fn request(disk: DiskState) -> PromoteRequest<'static> {
    PromoteRequest {
        force: false,
        quorum: verdict(true),
        local_disk: disk,
        local_just_created: false,
        up_to_date_peer_connected: false,
        primary_peers: &[],
    }
}

#[test]
fn promote_table() {
    use DiskState::*;
    let granted = Promotion::default();
    let forced_data = Promotion {
        local_becomes_up_to_date: true,
        outdate_absent_peers: false,
    };
    let single_primary_no_dual = [PrimaryPeer {
        node: n(1),
        allow_two_primaries: false,
        protocol: Protocol::C,
    }];
    let single_primary_proto_a = [PrimaryPeer {
        node: n(1),
        allow_two_primaries: true,
        protocol: Protocol::A,
    }];
    let two_primaries = [
        PrimaryPeer {
            node: n(1),
            allow_two_primaries: true,
            protocol: Protocol::C,
        },
        PrimaryPeer {
            node: n(2),
            allow_two_primaries: true,
            protocol: Protocol::C,
        },
    ];
    let dual = [PrimaryPeer {
        node: n(1),
        allow_two_primaries: true,
        protocol: Protocol::C,
    }];
    let cases: Vec<(&str, PromoteRequest<'_>, Result<Promotion, PromoteRefusal>)> = vec![
        ("UpToDate with quorum", request(UpToDate), Ok(granted)),
        (
            "Inconsistent but an UpToDate peer is connected",
            PromoteRequest {
                up_to_date_peer_connected: true,
                ..request(Inconsistent)
            },
            Ok(granted),
        ),
        (
            "diskless with an UpToDate peer",
            PromoteRequest {
                up_to_date_peer_connected: true,
                ..request(Diskless)
            },
            Ok(granted),
        ),
        (
            "Consistent without force",
            request(Consistent),
            Err(PromoteRefusal::NotUpToDate { disk: Consistent }),
        ),
        (
            "Outdated with force",
            PromoteRequest {
                force: true,
                ..request(Outdated)
            },
            Ok(forced_data),
        ),
        (
            "Consistent with force",
            PromoteRequest {
                force: true,
                ..request(Consistent)
            },
            Ok(forced_data),
        ),
        (
            "Inconsistent without force",
            request(Inconsistent),
            Err(PromoteRefusal::Inconsistent),
        ),
        (
            "Inconsistent with force and history is refused",
            PromoteRequest {
                force: true,
                ..request(Inconsistent)
            },
            Err(PromoteRefusal::Inconsistent),
        ),
        (
            "day 0: Inconsistent just-created without force says to use --force",
            PromoteRequest {
                local_just_created: true,
                ..request(Inconsistent)
            },
            Err(PromoteRefusal::FreshMetadata),
        ),
        (
            "day 0: Inconsistent just-created with force",
            PromoteRequest {
                force: true,
                local_just_created: true,
                ..request(Inconsistent)
            },
            Ok(forced_data),
        ),
        (
            "diskless without an UpToDate peer, even forced",
            PromoteRequest {
                force: true,
                ..request(Diskless)
            },
            Err(PromoteRefusal::NoData { disk: Diskless }),
        ),
        (
            "no quorum",
            PromoteRequest {
                quorum: verdict(false),
                ..request(UpToDate)
            },
            Err(PromoteRefusal::NoQuorum {
                verdict: verdict(false),
            }),
        ),
        (
            "no quorum, forced: absent peers get outdated",
            PromoteRequest {
                force: true,
                quorum: verdict(false),
                ..request(UpToDate)
            },
            Ok(Promotion {
                local_becomes_up_to_date: false,
                outdate_absent_peers: true,
            }),
        ),
        (
            "another primary without allow-two-primaries",
            PromoteRequest {
                primary_peers: &single_primary_no_dual,
                ..request(UpToDate)
            },
            Err(PromoteRefusal::PeerIsPrimary { peer: n(1) }),
        ),
        (
            "another primary, force does not help",
            PromoteRequest {
                force: true,
                primary_peers: &single_primary_no_dual,
                ..request(UpToDate)
            },
            Err(PromoteRefusal::PeerIsPrimary { peer: n(1) }),
        ),
        (
            "dual primary needs protocol C",
            PromoteRequest {
                primary_peers: &single_primary_proto_a,
                ..request(UpToDate)
            },
            Err(PromoteRefusal::TwoPrimariesNeedProtocolC {
                peer: n(1),
                protocol: Protocol::A,
            }),
        ),
        (
            "dual primary allowed",
            PromoteRequest {
                primary_peers: &dual,
                ..request(UpToDate)
            },
            Ok(granted),
        ),
        (
            "never three primaries",
            PromoteRequest {
                primary_peers: &two_primaries,
                ..request(UpToDate)
            },
            Err(PromoteRefusal::TooManyPrimaries {
                first: n(1),
                second: n(2),
            }),
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(can_promote(&req), want, "{name}");
    }
}

#[test]
fn refusals_say_what_to_do() {
    let err = can_promote(&PromoteRequest {
        quorum: verdict(false),
        ..request(DiskState::UpToDate)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no quorum: 1 of 3 voters present, need 2: wait for more nodes to connect, or promote with --force if \
         you are sure the missing nodes are down (they will be marked Outdated; if they are not down, this \
         causes split brain)"
    );
    let err = can_promote(&request(DiskState::Outdated)).unwrap_err();
    assert!(err.to_string().contains("promote with --force"), "{err}");
    let err = can_promote(&request(DiskState::Inconsistent)).unwrap_err();
    assert!(err.to_string().contains("let the resync finish"), "{err}");
}

#[test]
fn quorum_off_never_blocks() {
    let off = evaluate_quorum(
        &QuorumConfig::default(),
        &QuorumInput {
            local: LocalVote::Diskful(DiskState::UpToDate),
            peers: &[],
            had_quorum: false,
        },
    );
    assert_eq!(
        can_promote(&PromoteRequest {
            quorum: off,
            ..request(DiskState::UpToDate)
        }),
        Ok(Promotion::default())
    );
}
