//! Split brain at connect: who loses, decided by the `after-sb-*` policies or the administrator.
//!
//! Both nodes find split brain independently (the generation identifiers say both wrote since they
//! parted) and each runs [`replbd_quorum::resolve_split_brain`] on the same facts, mirrored: its own
//! and the peer's role, changes since the split (bits each bitmap holds for the other), who was
//! Primary at the split, quorum, and `--discard-my-data`. So both reach the same verdict without
//! another round trip: one becomes SyncTarget (its changes are overwritten by a bitmap resync, or a
//! full one when the histories share no bitmap base), the other SyncSource — or both stay
//! StandAlone until the administrator reconnects the victim with `connect --discard-my-data`.
//!
//! A Primary is never made a sync target underneath its application: a resolution that would
//! need it (`call-pri-lost-after-sb`, `violently-as0p`) disconnects instead and says so.

use replbd_quorum::split_brain::{SbSide, SplitBrain};
use replbd_quorum::{NodeId, Role, SbOutcome, SbResolution, resolve_split_brain};

use super::core::{Inner, lock};
use super::generation::{report_gi, role_from_u8};
use crate::wire::messages::StateReport;

/// What the connection does about a split brain.
pub(crate) enum Verdict {
    /// Resync: this node is the target (`true`) or the source, full or by bitmap.
    Resync { target: bool, full: bool },
    /// Stay StandAlone; the message says how to recover.
    Disconnect(String),
}

impl Inner {
    /// Resolves a split brain with `peer` on the two state reports the handshake exchanged: `ours`
    /// as sent, `theirs` as received. The peer resolves on the same two reports, mirrored, so both
    /// reach the same verdict even if a concurrent handshake with a third node changed this node's
    /// live state in between (deciding on the live state let the two ends disagree: see
    /// [`Inner::decide_with`]). Only the guard that keeps a Primary from becoming a sync target also
    /// reads the live role: that one must hold now.
    pub(crate) fn resolve_split_brain_with(
        &self,
        peer: u8,
        ours: &StateReport,
        theirs: &StateReport,
        auto_recoverable: bool,
    ) -> (Verdict, SbOutcome) {
        let (Ok(me), Ok(them)) = (NodeId::new(self.cfg.node_id), NodeId::new(peer)) else {
            let outcome = SbOutcome {
                resolution: SbResolution::Disconnect,
                full_sync: !auto_recoverable,
                reason: replbd_quorum::split_brain::SbReason::NotAutoRecoverable,
            };
            return (Verdict::Disconnect("invalid node ids".into()), outcome);
        };
        let local_gi = report_gi(ours);
        let peer_gi = report_gi(theirs);
        let role = role_from_u8(ours.role);
        let primary_now = role == Role::Primary || lock(&self.control).role == Role::Primary;
        let (my_name, peer_name) = (self.node_name(self.cfg.node_id), self.node_name(peer));
        let sb = SplitBrain {
            local: SbSide {
                node: me,
                name: &my_name,
                role,
                changes: ours.changes,
                primary_at_split: local_gi.was_primary_when_split_from(them),
                have_quorum: ours.quorate,
                discard_my_data: ours.discard_my_data,
            },
            peer: SbSide {
                node: them,
                name: &peer_name,
                role: role_from_u8(theirs.role),
                changes: theirs.changes,
                primary_at_split: peer_gi.was_primary_when_split_from(me),
                have_quorum: theirs.quorate,
                discard_my_data: theirs.discard_my_data,
            },
            auto_recoverable,
            quorum_enabled: self.quorum_config().quorum != replbd_quorum::QuorumPolicy::Off,
        };
        let outcome = resolve_split_brain(&self.cfg.split_brain, &sb);
        let verdict = match outcome.resolution {
            SbResolution::DiscardLocal if primary_now => Verdict::Disconnect(format!(
                "{outcome}; this node is Primary: demote it, then `connect --discard-my-data` here"
            )),
            SbResolution::DiscardLocal => Verdict::Resync {
                target: true,
                full: outcome.full_sync,
            },
            SbResolution::DiscardRemote => Verdict::Resync {
                target: false,
                full: outcome.full_sync,
            },
            SbResolution::CallHelper(h) => {
                // This node is the Primary victim: the handler decides what becomes of it (DRBD's
                // scripts typically stop the application or reboot); the connection waits.
                self.notify_handler(
                    self.cfg.pri_lost_after_sb.as_ref(),
                    Some(peer),
                    "pri-lost-after-sb",
                );
                Verdict::Disconnect(format!(
                    "{outcome}; the {h} handler was called: once this node is demoted, `connect --discard-my-data` here"
                ))
            }
            SbResolution::Disconnect => Verdict::Disconnect(format!(
                "{outcome}; resolve with `connect --discard-my-data` on the node whose changes are to be dropped"
            )),
        };
        (verdict, outcome)
    }
}

/// Why a connection does not go ahead after `rr-conflict` (see [`Inner::check_rr_conflict_with`]).
pub(crate) enum RrStop {
    /// Drop the connection and try again (`retry-connect`).
    Retry(String),
    /// Stay StandAlone; the message says what to do.
    StandAlone(String),
}

impl Inner {
    /// `rr-conflict`: the handshake decided a resync whose target is a Primary with data of its own
    /// — the application's data would change underneath it. `disconnect` (the default) and
    /// `call-pri-lost` (after running the `pri-lost` handler on the Primary) leave both nodes
    /// StandAlone, `retry-connect` tries again, `auto-discard` reverses the resync where the running
    /// Primary's data is the one to keep (a crashed asynchronous Primary came back). `violently` is
    /// refused like `disconnect`: replbd never resyncs into a Primary under its application.
    pub(crate) fn check_rr_conflict_with(
        &self,
        peer: u8,
        ours: &StateReport,
        theirs: &StateReport,
        decision: replbd_quorum::Decision,
    ) -> Result<replbd_quorum::Decision, RrStop> {
        use replbd_quorum::split_brain::{Helper, RrOutcome, RrSide, check_rr_conflict};
        let (Ok(me), Ok(them)) = (NodeId::new(self.cfg.node_id), NodeId::new(peer)) else {
            return Ok(decision);
        };
        // On the reports, as the peer does (see `resolve_split_brain_with`).
        let (role, disk) = (
            role_from_u8(ours.role),
            super::generation::disk_from_u8(ours.disk),
        );
        let full = matches!(
            decision.outcome,
            replbd_quorum::SyncDecision::BecomeSource {
                kind: replbd_quorum::SyncKind::Full
            } | replbd_quorum::SyncDecision::BecomeTarget {
                kind: replbd_quorum::SyncKind::Full
            }
        );
        let out_of_sync = if full {
            u64::MAX
        } else {
            ours.changes.saturating_add(theirs.changes)
        };
        let local = RrSide { node: me, role, disk };
        let remote = RrSide {
            node: them,
            role: role_from_u8(theirs.role),
            disk: super::generation::disk_from_u8(theirs.disk),
        };
        let policy = self.cfg.split_brain.rr_conflict;
        let why = |what: &str| {
            format!(
                "rr-conflict {policy}: the resync decided by {} would overwrite the data of a running Primary; {what}",
                decision.rule
            )
        };
        let decided = match check_rr_conflict(policy, &decision, local, remote, out_of_sync) {
            RrOutcome::Proceed => decision,
            RrOutcome::Reverse(outcome) => {
                tracing::warn!(resource = %self.cfg.name, peer, ?outcome, "rr-conflict auto-discard: the running Primary's data wins");
                replbd_quorum::Decision { outcome, ..decision }
            }
            RrOutcome::RetryConnect => return Err(RrStop::Retry(why("retrying the connection"))),
            RrOutcome::CallHelperAndDisconnect(Helper::PriLost) => {
                self.notify_handler(self.cfg.pri_lost.as_ref(), Some(peer), "pri-lost");
                return Err(RrStop::StandAlone(why(
                    "the pri-lost handler was called; demote the Primary, then `connect` again",
                )));
            }
            RrOutcome::ProceedViolently | RrOutcome::Disconnect | RrOutcome::CallHelperAndDisconnect(_) => {
                return Err(RrStop::StandAlone(why(
                    "demote that Primary (its changes since the split are lost by the resync), then `connect` again",
                )));
            }
        };
        // Decided on the reports; whatever they said, a node that is Primary now never becomes a
        // sync target.
        if matches!(decided.outcome, replbd_quorum::SyncDecision::BecomeTarget { .. })
            && self.role() == Role::Primary
        {
            return Err(RrStop::Retry(why(
                "this node became Primary during the handshake; retrying the connection",
            )));
        }
        Ok(decided)
    }
}
