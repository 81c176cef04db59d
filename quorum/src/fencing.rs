//! Resource-level fencing: when to run the `fence-peer` handler and what its answer means.
//!
//! Quorum protects clusters of three or more nodes. A two-node cluster has no majority to ask, so when
//! the link drops each side can only guess whether the other is dead or merely unreachable. Fencing
//! lets an external cluster manager answer that question: before a Primary keeps writing without a
//! peer, or before a node promotes without its peer, replbd runs the `fence-peer` handler, which makes
//! sure the peer cannot become Primary with its now-stale data (usually by marking it Outdated through
//! the cluster manager, or by powering it off).
//!
//! Policies (per connection):
//!
//! | policy                 | handler runs | application I/O while it runs |
//! |------------------------|--------------|-------------------------------|
//! | `dont-care` (default)  | never        | continues                     |
//! | `resource-only`        | yes          | continues                     |
//! | `resource-and-stonith` | yes          | frozen until the handler answers |
//!
//! The handler's exit code is the answer ([`FenceOutcome`]); [`apply_fence_outcome`] turns it into the
//! peer's new disk state, whether this node must outdate itself, and whether frozen I/O may resume.
//! `unfence-peer` runs once every peer is UpToDate again ([`must_unfence`]).

use std::fmt;

use crate::names::named_enum;
use crate::state::{DiskState, Role};

named_enum! {
    /// The `fencing` option of a connection.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum FencingPolicy ("fencing policy") {
        /// No fencing: a lone node carries on (and risks split brain if the peer was alive).
        #[default]
        DontCare => "dont-care",
        /// Run `fence-peer`; I/O continues while it runs.
        ResourceOnly => "resource-only",
        /// Run `fence-peer` with application I/O frozen until it answers, so no write completes on a
        /// node that might be the one about to be shot.
        ResourceAndStonith => "resource-and-stonith",
    }
}

/// The meaning of the `fence-peer` handler's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceOutcome {
    /// Exit code 3: the peer's disk is Inconsistent (or worse); it cannot promote.
    PeerInconsistent,
    /// Exit code 4: the peer was outdated (or already was).
    PeerOutdated,
    /// Exit code 5: the peer is unreachable; it is assumed dead, but only trusted as Outdated if this
    /// node's disk is UpToDate.
    PeerUnreachable,
    /// Exit code 6: the peer is Primary; this node must outdate itself.
    PeerIsPrimary,
    /// Exit code 7: the peer was shot (STONITH); it is Outdated.
    PeerStonithed,
    /// Any other exit code: the handler failed; nothing is known about the peer.
    HandlerFailed {
        /// The exit code the handler returned.
        exit_code: i32,
    },
}

impl FenceOutcome {
    /// Interprets the handler's exit code.
    pub const fn from_exit_code(exit_code: i32) -> Self {
        match exit_code {
            3 => FenceOutcome::PeerInconsistent,
            4 => FenceOutcome::PeerOutdated,
            5 => FenceOutcome::PeerUnreachable,
            6 => FenceOutcome::PeerIsPrimary,
            7 => FenceOutcome::PeerStonithed,
            exit_code => FenceOutcome::HandlerFailed { exit_code },
        }
    }

    /// The exit code this outcome stands for.
    pub const fn exit_code(self) -> i32 {
        match self {
            FenceOutcome::PeerInconsistent => 3,
            FenceOutcome::PeerOutdated => 4,
            FenceOutcome::PeerUnreachable => 5,
            FenceOutcome::PeerIsPrimary => 6,
            FenceOutcome::PeerStonithed => 7,
            FenceOutcome::HandlerFailed { exit_code } => exit_code,
        }
    }
}

impl fmt::Display for FenceOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FenceOutcome::PeerInconsistent => "peer is Inconsistent",
            FenceOutcome::PeerOutdated => "peer was outdated",
            FenceOutcome::PeerUnreachable => "peer is unreachable",
            FenceOutcome::PeerIsPrimary => "peer is Primary",
            FenceOutcome::PeerStonithed => "peer was stonithed",
            FenceOutcome::HandlerFailed { .. } => "fence-peer handler failed",
        };
        write!(f, "fence-peer exit code {}: {text}", self.exit_code())
    }
}

/// Whether this node's data is worth protecting by fencing: it is at least Consistent, or the node is
/// (intentionally) diskless and works on its peers' data. A node with worse data has nothing a
/// fenced peer could overwrite, so DRBD skips the handler.
fn local_data_worth_fencing_for(local_disk: DiskState) -> bool {
    local_disk >= DiskState::Consistent || local_disk == DiskState::Diskless
}

/// Whether a node that just lost its connection to a peer must run `fence-peer`: it is Primary, the
/// policy is not `dont-care`, its own data is worth protecting, and the peer is not already known to
/// be Outdated or worse (`peer_disk` is the last known state; `DUnknown` when nothing is known).
///
/// Pass `Diskless` as `local_disk` only for an intentionally diskless node.
pub fn must_fence_on_peer_loss(
    policy: FencingPolicy,
    local_role: Role,
    local_disk: DiskState,
    peer_disk: DiskState,
) -> bool {
    policy != FencingPolicy::DontCare
        && local_role.is_primary()
        && local_data_worth_fencing_for(local_disk)
        && !peer_disk.is_outdated_or_worse()
}

/// Whether a node that is about to promote must first run `fence-peer` for a peer: the policy is not
/// `dont-care`, the peer is not connected, and it is not known to be Outdated or worse. The promotion
/// waits for the handler; see [`apply_fence_outcome`].
pub fn must_fence_before_promote(policy: FencingPolicy, peer_connected: bool, peer_disk: DiskState) -> bool {
    policy != FencingPolicy::DontCare && !peer_connected && !peer_disk.is_outdated_or_worse()
}

/// Whether application I/O is frozen while the handler runs (`resource-and-stonith`).
pub const fn freezes_io_while_fencing(policy: FencingPolicy) -> bool {
    matches!(policy, FencingPolicy::ResourceAndStonith)
}

/// Whether `unfence-peer` must run: the peer was fenced and every peer is UpToDate again.
pub const fn must_unfence(policy: FencingPolicy, peer_was_fenced: bool, all_peers_up_to_date: bool) -> bool {
    !matches!(policy, FencingPolicy::DontCare) && peer_was_fenced && all_peers_up_to_date
}

/// What happens to frozen application I/O after the handler answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoAfterFence {
    /// The peer is known to be unable to promote: I/O resumes (if it was frozen).
    Resume,
    /// Nothing safe is known: I/O stays frozen until the administrator resumes it explicitly
    /// (`resume-io`) after checking the peer by hand.
    StayFrozen,
}

/// The consequences of a `fence-peer` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FenceResult {
    /// The disk state to record for the peer, if the answer tells it.
    pub peer_disk: Option<DiskState>,
    /// This node must mark its own disk Outdated (the peer is Primary and has newer data).
    pub outdate_local: bool,
    /// Whether frozen I/O may resume. Only relevant with `resource-and-stonith`, which froze it.
    pub io: IoAfterFence,
}

impl FenceResult {
    /// Whether the peer is now known unable to promote (the fencing succeeded).
    pub fn peer_fenced(&self) -> bool {
        self.peer_disk.is_some_and(DiskState::is_outdated_or_worse)
    }
}

/// Interprets the handler's answer. `local_disk` is this node's disk state when the answer arrives;
/// an unreachable peer is only assumed Outdated if it is `UpToDate` (a node that is not UpToDate cannot
/// vouch that the peer's data is older than its own).
pub fn apply_fence_outcome(outcome: FenceOutcome, local_disk: DiskState) -> FenceResult {
    let fenced = |disk| FenceResult {
        peer_disk: Some(disk),
        outdate_local: false,
        io: IoAfterFence::Resume,
    };
    match outcome {
        FenceOutcome::PeerInconsistent => fenced(DiskState::Inconsistent),
        FenceOutcome::PeerOutdated | FenceOutcome::PeerStonithed => fenced(DiskState::Outdated),
        FenceOutcome::PeerUnreachable if local_disk == DiskState::UpToDate => fenced(DiskState::Outdated),
        FenceOutcome::PeerUnreachable | FenceOutcome::HandlerFailed { .. } => FenceResult {
            peer_disk: None,
            outdate_local: false,
            io: IoAfterFence::StayFrozen,
        },
        FenceOutcome::PeerIsPrimary => FenceResult {
            peer_disk: None,
            outdate_local: true,
            io: IoAfterFence::StayFrozen,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DiskState::*;

    #[test]
    fn policy_names() {
        assert_eq!(
            "resource-and-stonith".parse::<FencingPolicy>().unwrap(),
            FencingPolicy::ResourceAndStonith
        );
        assert_eq!(FencingPolicy::ResourceOnly.to_string(), "resource-only");
        assert_eq!(FencingPolicy::default(), FencingPolicy::DontCare);
        assert!("stonith".parse::<FencingPolicy>().is_err());
    }

    #[test]
    fn exit_codes_round_trip() {
        for code in [0, 1, 2, 3, 4, 5, 6, 7, 8, 127, -1] {
            assert_eq!(FenceOutcome::from_exit_code(code).exit_code(), code);
        }
        assert_eq!(
            FenceOutcome::from_exit_code(0),
            FenceOutcome::HandlerFailed { exit_code: 0 }
        );
        assert_eq!(
            FenceOutcome::PeerIsPrimary.to_string(),
            "fence-peer exit code 6: peer is Primary"
        );
    }

    #[test]
    fn outcome_table() {
        struct Case {
            name: &'static str,
            code: i32,
            local: DiskState,
            peer_disk: Option<DiskState>,
            outdate_local: bool,
            io: IoAfterFence,
        }
        let cases = [
            Case {
                name: "3 peer inconsistent",
                code: 3,
                local: UpToDate,
                peer_disk: Some(Inconsistent),
                outdate_local: false,
                io: IoAfterFence::Resume,
            },
            Case {
                name: "4 peer outdated",
                code: 4,
                local: UpToDate,
                peer_disk: Some(Outdated),
                outdate_local: false,
                io: IoAfterFence::Resume,
            },
            Case {
                name: "5 unreachable, local UpToDate",
                code: 5,
                local: UpToDate,
                peer_disk: Some(Outdated),
                outdate_local: false,
                io: IoAfterFence::Resume,
            },
            Case {
                name: "5 unreachable, local Consistent",
                code: 5,
                local: Consistent,
                peer_disk: None,
                outdate_local: false,
                io: IoAfterFence::StayFrozen,
            },
            Case {
                name: "6 peer is primary",
                code: 6,
                local: Consistent,
                peer_disk: None,
                outdate_local: true,
                io: IoAfterFence::StayFrozen,
            },
            Case {
                name: "7 stonithed",
                code: 7,
                local: UpToDate,
                peer_disk: Some(Outdated),
                outdate_local: false,
                io: IoAfterFence::Resume,
            },
            Case {
                name: "1 broken handler",
                code: 1,
                local: UpToDate,
                peer_disk: None,
                outdate_local: false,
                io: IoAfterFence::StayFrozen,
            },
            Case {
                name: "0 is not success",
                code: 0,
                local: UpToDate,
                peer_disk: None,
                outdate_local: false,
                io: IoAfterFence::StayFrozen,
            },
        ];
        for case in cases {
            let result = apply_fence_outcome(FenceOutcome::from_exit_code(case.code), case.local);
            assert_eq!(result.peer_disk, case.peer_disk, "{}", case.name);
            assert_eq!(result.outdate_local, case.outdate_local, "{}", case.name);
            assert_eq!(result.io, case.io, "{}", case.name);
            assert_eq!(
                result.peer_fenced(),
                case.io == IoAfterFence::Resume,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn fence_on_peer_loss_table() {
        use FencingPolicy::*;
        use Role::*;
        let cases = [
            (
                "primary loses unknown peer",
                ResourceOnly,
                Primary,
                UpToDate,
                DUnknown,
                true,
            ),
            (
                "stonith policy too",
                ResourceAndStonith,
                Primary,
                UpToDate,
                UpToDate,
                true,
            ),
            (
                "dont-care never fences",
                DontCare,
                Primary,
                UpToDate,
                DUnknown,
                false,
            ),
            (
                "secondary does not fence",
                ResourceOnly,
                Secondary,
                UpToDate,
                DUnknown,
                false,
            ),
            (
                "peer known outdated",
                ResourceOnly,
                Primary,
                UpToDate,
                Outdated,
                false,
            ),
            (
                "peer known inconsistent",
                ResourceOnly,
                Primary,
                UpToDate,
                Inconsistent,
                false,
            ),
            (
                "own data inconsistent",
                ResourceOnly,
                Primary,
                Inconsistent,
                DUnknown,
                false,
            ),
            (
                "diskless primary",
                ResourceOnly,
                Primary,
                Diskless,
                DUnknown,
                true,
            ),
        ];
        for (name, policy, role, local, peer, expected) in cases {
            assert_eq!(
                must_fence_on_peer_loss(policy, role, local, peer),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn fence_before_promote_table() {
        use FencingPolicy::*;
        let cases = [
            ("disconnected unknown peer", ResourceOnly, false, DUnknown, true),
            ("connected peer", ResourceOnly, true, UpToDate, false),
            (
                "disconnected outdated peer",
                ResourceAndStonith,
                false,
                Outdated,
                false,
            ),
            ("dont-care", DontCare, false, DUnknown, false),
        ];
        for (name, policy, connected, peer, expected) in cases {
            assert_eq!(
                must_fence_before_promote(policy, connected, peer),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn only_stonith_freezes_io() {
        assert!(freezes_io_while_fencing(FencingPolicy::ResourceAndStonith));
        assert!(!freezes_io_while_fencing(FencingPolicy::ResourceOnly));
        assert!(!freezes_io_while_fencing(FencingPolicy::DontCare));
    }

    #[test]
    fn unfence_when_everyone_is_up_to_date_again() {
        assert!(must_unfence(FencingPolicy::ResourceOnly, true, true));
        assert!(!must_unfence(FencingPolicy::ResourceOnly, true, false));
        assert!(!must_unfence(FencingPolicy::ResourceOnly, false, true));
        assert!(!must_unfence(FencingPolicy::DontCare, true, true));
    }
}
