//! Split-brain recovery policies and the resync-into-a-Primary (`rr-conflict`) check.
//!
//! Split brain means both nodes wrote since they last shared a generation ([`crate::decide`](mod@crate::decide) rules 9
//! and 10). One side's changes must be thrown away, and only a human knows which are worth more, so the
//! default everywhere is `disconnect`: both nodes stay StandAlone until the administrator reconnects
//! the victim with `--discard-my-data`. The `after-sb-*` policies let the cluster pick a victim on its
//! own in the cases where that is acceptable, chosen by how many nodes are Primary *now*:
//!
//! - `after-sb-0pri` (no Primary): `disconnect`, `discard-younger-primary`, `discard-older-primary`,
//!   `discard-zero-changes`, `discard-least-changes`, `discard-node-NAME`;
//! - `after-sb-1pri` (one Primary): `disconnect`, `consensus` (apply the 0pri policy only if it
//!   discards the Secondary), `violently-as0p` (apply the 0pri policy even to the Primary, whose
//!   application then sees its data change underneath), `discard-secondary`, `call-pri-lost-after-sb`
//!   (apply the 0pri policy; a Primary chosen as victim is demoted first, and if that fails the
//!   `pri-lost-after-sb` handler runs);
//! - `after-sb-2pri` (two Primaries): `disconnect`, `violently-as0p`, `call-pri-lost-after-sb`.
//!
//! Policies only apply to auto-recoverable split brain (rule 9: a bitmap resync can repair it), unless
//! `always-asbp` extends them to rule 10 with a full sync. With quorum enabled, a side that has quorum
//! always wins over one that does not. [`resolve_split_brain`] is evaluated on both nodes and gives
//! mirror-image results: the two ends agree on the policies (checked at connect, see
//! [`crate::options::check_peer_agreement`]) and ties are broken by node id.
//!
//! **rr-conflict.** Independently of split brain, a resync may want to make a *current Primary* the
//! SyncTarget, which changes data under a running application. `rr-conflict` chooses: `disconnect`
//! (default), `retry-connect`, `violently` (do it anyway), `call-pri-lost` (run the `pri-lost` handler,
//! then disconnect), or `auto-discard` (after a primary crash with protocol A/B, reverse the direction
//! so the running Primary's data wins). See [`check_rr_conflict`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decide::{Decision, Rule, Side, SyncDecision, SyncKind};
use crate::names::{UnknownName, named_enum, serde_via_str};
use crate::node::NodeId;
use crate::state::{DiskState, Role};

const DISCARD_NODE_PREFIX: &str = "discard-node-";

/// Policy after a split brain with no Primary (`after-sb-0pri`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum AfterSb0Pri {
    /// Stay disconnected; the administrator decides (the default).
    #[default]
    Disconnect,
    /// Discard the node that became Primary after the split. Falls back to `discard-least-changes`
    /// when that is not a single node.
    DiscardYoungerPrimary,
    /// Discard the node that was already Primary when the split happened. Falls back to
    /// `discard-least-changes` when that is not a single node.
    DiscardOlderPrimary,
    /// Discard the node that wrote nothing since the split; disconnect if both wrote.
    DiscardZeroChanges,
    /// Discard the node that changed fewer blocks since the split.
    DiscardLeastChanges,
    /// Always discard the named node (`discard-node-NAME`).
    DiscardNode(String),
}

impl fmt::Display for AfterSb0Pri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AfterSb0Pri::Disconnect => f.write_str("disconnect"),
            AfterSb0Pri::DiscardYoungerPrimary => f.write_str("discard-younger-primary"),
            AfterSb0Pri::DiscardOlderPrimary => f.write_str("discard-older-primary"),
            AfterSb0Pri::DiscardZeroChanges => f.write_str("discard-zero-changes"),
            AfterSb0Pri::DiscardLeastChanges => f.write_str("discard-least-changes"),
            AfterSb0Pri::DiscardNode(name) => write!(f, "{DISCARD_NODE_PREFIX}{name}"),
        }
    }
}

impl FromStr for AfterSb0Pri {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let fixed = [
            AfterSb0Pri::Disconnect,
            AfterSb0Pri::DiscardYoungerPrimary,
            AfterSb0Pri::DiscardOlderPrimary,
            AfterSb0Pri::DiscardZeroChanges,
            AfterSb0Pri::DiscardLeastChanges,
        ];
        if let Some(p) = fixed.iter().find(|p| p.to_string().eq_ignore_ascii_case(t)) {
            return Ok(p.clone());
        }
        let prefix = t.get(..DISCARD_NODE_PREFIX.len());
        match (prefix, t.get(DISCARD_NODE_PREFIX.len()..)) {
            (Some(p), Some(name)) if p.eq_ignore_ascii_case(DISCARD_NODE_PREFIX) && !name.is_empty() => {
                Ok(AfterSb0Pri::DiscardNode(name.to_owned()))
            }
            _ => Err(UnknownName::new(
                "after-sb-0pri policy",
                t,
                &[
                    "disconnect",
                    "discard-younger-primary",
                    "discard-older-primary",
                    "discard-zero-changes",
                    "discard-least-changes",
                    "discard-node-NAME",
                ],
            )),
        }
    }
}

serde_via_str!(AfterSb0Pri);

named_enum! {
    /// Policy after a split brain with one Primary (`after-sb-1pri`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum AfterSb1Pri ("after-sb-1pri policy") {
        /// Stay disconnected (the default).
        #[default]
        Disconnect => "disconnect",
        /// Apply the after-sb-0pri policy if it discards the Secondary; otherwise disconnect.
        Consensus => "consensus",
        /// Apply the after-sb-0pri policy even if it discards the Primary's data.
        ViolentlyAs0p => "violently-as0p",
        /// Discard the Secondary.
        DiscardSecondary => "discard-secondary",
        /// Apply the after-sb-0pri policy; a Primary chosen as victim is demoted first, or the
        /// `pri-lost-after-sb` handler runs if it cannot be.
        CallPriLostAfterSb => "call-pri-lost-after-sb",
    }
}

named_enum! {
    /// Policy after a split brain with two Primaries (`after-sb-2pri`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum AfterSb2Pri ("after-sb-2pri policy") {
        /// Stay disconnected (the default).
        #[default]
        Disconnect => "disconnect",
        /// Apply the after-sb-0pri policy even though it discards a Primary's data.
        ViolentlyAs0p => "violently-as0p",
        /// Apply the after-sb-0pri policy; the victim Primary is demoted first, or the
        /// `pri-lost-after-sb` handler runs if it cannot be.
        CallPriLostAfterSb => "call-pri-lost-after-sb",
    }
}

named_enum! {
    /// What to do when a resync would make a current Primary the SyncTarget (`rr-conflict`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum RrConflict ("rr-conflict policy") {
        /// Drop the connection (the default).
        #[default]
        Disconnect => "disconnect",
        /// Drop the connection and try again (the situation may have changed by then).
        RetryConnect => "retry-connect",
        /// Resync into the Primary anyway.
        Violently => "violently",
        /// Run the `pri-lost` handler on the Primary, then drop the connection.
        CallPriLost => "call-pri-lost",
        /// After a primary crash (protocol A/B), reverse the resync so the running Primary is source.
        AutoDiscard => "auto-discard",
    }
}

named_enum! {
    /// A handler (user script) the engine must run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Helper ("handler") {
        /// `pri-lost-after-sb`: a Primary lost a split-brain resolution and could not be demoted.
        PriLostAfterSb => "pri-lost-after-sb",
        /// `pri-lost`: a Primary would have to become SyncTarget.
        PriLost => "pri-lost",
    }
}

/// The split-brain related options of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SplitBrainPolicies {
    /// `after-sb-0pri`.
    pub after_sb_0pri: AfterSb0Pri,
    /// `after-sb-1pri`.
    pub after_sb_1pri: AfterSb1Pri,
    /// `after-sb-2pri`.
    pub after_sb_2pri: AfterSb2Pri,
    /// `rr-conflict`.
    pub rr_conflict: RrConflict,
    /// `always-asbp`: apply the after-sb policies also to split brain that needs a full sync.
    pub always_asbp: bool,
}

/// One node's facts for split-brain resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbSide<'a> {
    /// Node id (breaks ties: the lower id keeps its data).
    pub node: NodeId,
    /// Node name, as in `discard-node-NAME`.
    pub name: &'a str,
    /// Current role.
    pub role: Role,
    /// Blocks changed since the split: bits set in this node's bitmap toward the other node.
    pub changes: u64,
    /// This node was Primary when the split happened (bit 0 of its bitmap UUID for the other node, see
    /// [`crate::gi::GenerationIds::was_primary_when_split_from`]). The node for which this is false
    /// but which was Primary afterwards is the *younger* primary.
    pub primary_at_split: bool,
    /// This node currently has quorum.
    pub have_quorum: bool,
    /// The administrator connected this node with `--discard-my-data`.
    pub discard_my_data: bool,
}

/// A detected split brain, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitBrain<'a> {
    /// This node.
    pub local: SbSide<'a>,
    /// The peer.
    pub peer: SbSide<'a>,
    /// Rule 9 (a bitmap resync can repair it) rather than rule 10.
    pub auto_recoverable: bool,
    /// Quorum is enabled for the resource.
    pub quorum_enabled: bool,
}

/// The resolution, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SbResolution {
    /// This node's changes are discarded: it becomes SyncTarget.
    DiscardLocal,
    /// The peer's changes are discarded: this node becomes SyncSource.
    DiscardRemote,
    /// Stay disconnected (StandAlone) until the administrator resolves it.
    Disconnect,
    /// This node is a Primary chosen as victim: demote it, then proceed as [`SbResolution::DiscardLocal`];
    /// if it cannot be demoted, run the handler and disconnect.
    CallHelper(Helper),
}

impl SbResolution {
    /// Whose changes are discarded, if anyone's.
    pub const fn victim(self) -> Option<Side> {
        match self {
            SbResolution::DiscardLocal | SbResolution::CallHelper(_) => Some(Side::Local),
            SbResolution::DiscardRemote => Some(Side::Peer),
            SbResolution::Disconnect => None,
        }
    }

    /// The resolution as the peer computes it, when this node is not a Primary that must demote (the
    /// peer cannot know that; compare [`SbResolution::victim`] to check agreement).
    pub const fn mirror(self) -> SbResolution {
        match self {
            SbResolution::DiscardLocal | SbResolution::CallHelper(_) => SbResolution::DiscardRemote,
            SbResolution::DiscardRemote => SbResolution::DiscardLocal,
            SbResolution::Disconnect => SbResolution::Disconnect,
        }
    }
}

impl fmt::Display for SbResolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SbResolution::DiscardLocal => f.write_str("discard my data (become SyncTarget)"),
            SbResolution::DiscardRemote => f.write_str("discard the peer's data (become SyncSource)"),
            SbResolution::Disconnect => f.write_str("disconnect"),
            SbResolution::CallHelper(h) => {
                write!(
                    f,
                    "demote and discard my data (run the {h} handler if demotion fails)"
                )
            }
        }
    }
}

/// How the victim was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SbReason {
    /// Both nodes were connected with `--discard-my-data`: nobody's data wins.
    BothDiscardMyData,
    /// Only one side has quorum; the quorate side's data wins.
    Quorum,
    /// An after-sb policy chose the victim.
    Policy {
        /// The policy option, e.g. `"after-sb-0pri"`.
        option: &'static str,
        /// Its value.
        value: String,
        /// The criterion that picked the victim.
        criterion: Criterion,
    },
    /// The administrator's `--discard-my-data` chose the victim.
    DiscardMyData,
    /// The split brain needs a full sync and `always-asbp` is off: only `--discard-my-data` may resolve it.
    NotAutoRecoverable,
    /// The policies did not pick a victim.
    Undecided {
        /// The policy option that applied, e.g. `"after-sb-1pri"`.
        option: &'static str,
        /// Its value.
        value: String,
    },
}

/// The criterion an after-sb-0pri style decision used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Criterion {
    /// The node that became Primary after the split.
    YoungerPrimary,
    /// The node that was Primary at the split.
    OlderPrimary,
    /// The node without changes.
    ZeroChanges,
    /// The node with fewer changes.
    LeastChanges,
    /// Equal by every criterion: the higher node id is the victim.
    NodeIdTieBreak,
    /// The node named in `discard-node-NAME`.
    NamedNode,
    /// The Secondary (`discard-secondary`).
    Secondary,
}

impl fmt::Display for SbReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SbReason::BothDiscardMyData => {
                f.write_str("both nodes were connected with --discard-my-data; use it on one node only")
            }
            SbReason::Quorum => f.write_str("only one side has quorum; its data wins"),
            SbReason::Policy {
                option,
                value,
                criterion,
            } => {
                let why = match criterion {
                    Criterion::YoungerPrimary => "the younger primary is discarded",
                    Criterion::OlderPrimary => "the older primary is discarded",
                    Criterion::ZeroChanges => "the node without changes is discarded",
                    Criterion::LeastChanges => "the node with fewer changes is discarded",
                    Criterion::NodeIdTieBreak => {
                        "no difference, the node with the higher node id is discarded"
                    }
                    Criterion::NamedNode => "the named node is discarded",
                    Criterion::Secondary => "the Secondary is discarded",
                };
                write!(f, "{option} {value}: {why}")
            }
            SbReason::DiscardMyData => f.write_str("resolved by --discard-my-data"),
            SbReason::NotAutoRecoverable => f.write_str(
                "the split brain needs a full sync and always-asbp is off: reconnect the node whose changes \
                 should be lost with --discard-my-data",
            ),
            SbReason::Undecided { option, value } => write!(
                f,
                "{option} {value} did not choose a victim: reconnect the node whose changes should be lost \
                 with --discard-my-data"
            ),
        }
    }
}

/// The result of [`resolve_split_brain`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SbOutcome {
    /// What this node does.
    pub resolution: SbResolution,
    /// The resync that follows must be a full sync (rule 10: no common bitmap base).
    pub full_sync: bool,
    /// Why, for the log.
    pub reason: SbReason,
}

impl fmt::Display for SbOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "split brain: {}", self.resolution)?;
        if self.full_sync && self.resolution != SbResolution::Disconnect {
            f.write_str(", full sync")?;
        }
        write!(f, " ({})", self.reason)
    }
}

/// Resolves a split brain (see the module documentation). The result on the peer is the mirror image.
pub fn resolve_split_brain(policies: &SplitBrainPolicies, sb: &SplitBrain<'_>) -> SbOutcome {
    let full_sync = !sb.auto_recoverable;
    let outcome = |resolution, reason| SbOutcome {
        resolution,
        full_sync,
        reason,
    };
    let discard = |victim: Side| match victim {
        Side::Local => SbResolution::DiscardLocal,
        Side::Peer => SbResolution::DiscardRemote,
    };

    if sb.local.discard_my_data && sb.peer.discard_my_data {
        return outcome(SbResolution::Disconnect, SbReason::BothDiscardMyData);
    }

    let mut reason = SbReason::NotAutoRecoverable;
    if sb.auto_recoverable || policies.always_asbp {
        if sb.quorum_enabled && sb.local.have_quorum != sb.peer.have_quorum {
            let victim = if sb.local.have_quorum {
                Side::Peer
            } else {
                Side::Local
            };
            return outcome(discard(victim), SbReason::Quorum);
        }
        match by_policy(policies, sb) {
            Ok((resolution, reason)) => return outcome(resolution, reason),
            Err(undecided) => reason = undecided,
        }
    }

    match (sb.local.discard_my_data, sb.peer.discard_my_data) {
        (true, _) => outcome(SbResolution::DiscardLocal, SbReason::DiscardMyData),
        (_, true) => outcome(SbResolution::DiscardRemote, SbReason::DiscardMyData),
        _ => outcome(SbResolution::Disconnect, reason),
    }
}

/// Applies the after-sb policy for the number of Primaries; `Err` carries why nothing was chosen.
fn by_policy(
    policies: &SplitBrainPolicies,
    sb: &SplitBrain<'_>,
) -> Result<(SbResolution, SbReason), SbReason> {
    /// Whether a Primary victim is demoted first (`call-pri-lost-after-sb`).
    type Demote = bool;

    let primaries = u8::from(sb.local.role.is_primary()) + u8::from(sb.peer.role.is_primary());
    let secondary = if sb.local.role.is_primary() {
        Side::Peer
    } else {
        Side::Local
    };
    let zero = victim_0pri(&policies.after_sb_0pri, sb);
    let via_zero = |demote: Demote| zero.map(|(victim, criterion)| (victim, criterion, demote));

    let (option, value, choice): (&'static str, String, Option<(Side, Criterion, Demote)>) = match primaries {
        0 => (
            "after-sb-0pri",
            policies.after_sb_0pri.to_string(),
            via_zero(false),
        ),
        1 => {
            let choice = match policies.after_sb_1pri {
                AfterSb1Pri::Disconnect => None,
                AfterSb1Pri::DiscardSecondary => Some((secondary, Criterion::Secondary, false)),
                AfterSb1Pri::Consensus => via_zero(false).filter(|(victim, _, _)| *victim == secondary),
                AfterSb1Pri::ViolentlyAs0p => via_zero(false),
                AfterSb1Pri::CallPriLostAfterSb => via_zero(true),
            };
            ("after-sb-1pri", policies.after_sb_1pri.to_string(), choice)
        }
        _ => {
            let choice = match policies.after_sb_2pri {
                AfterSb2Pri::Disconnect => None,
                AfterSb2Pri::ViolentlyAs0p => via_zero(false),
                AfterSb2Pri::CallPriLostAfterSb => via_zero(true),
            };
            ("after-sb-2pri", policies.after_sb_2pri.to_string(), choice)
        }
    };

    let Some((victim, criterion, demote)) = choice else {
        return Err(SbReason::Undecided { option, value });
    };
    let resolution = match victim {
        Side::Local if demote && sb.local.role.is_primary() => {
            SbResolution::CallHelper(Helper::PriLostAfterSb)
        }
        Side::Local => SbResolution::DiscardLocal,
        Side::Peer => SbResolution::DiscardRemote,
    };
    let value = if primaries > 0 && criterion != Criterion::Secondary {
        format!("{value} (after-sb-0pri {})", policies.after_sb_0pri)
    } else {
        value
    };
    Ok((
        resolution,
        SbReason::Policy {
            option,
            value,
            criterion,
        },
    ))
}

/// The after-sb-0pri decision, with DRBD's fall-through order: younger/older primary, then zero
/// changes, then least changes, then the node-id tie break.
fn victim_0pri(policy: &AfterSb0Pri, sb: &SplitBrain<'_>) -> Option<(Side, Criterion)> {
    let (l, p) = (&sb.local, &sb.peer);
    let split_primary = match (l.primary_at_split, p.primary_at_split) {
        (true, false) => Some(Side::Local),
        (false, true) => Some(Side::Peer),
        _ => None,
    };
    let tie_break = || {
        let victim = if l.node > p.node { Side::Local } else { Side::Peer };
        (victim, Criterion::NodeIdTieBreak)
    };
    let least_changes = || match l.changes.cmp(&p.changes) {
        std::cmp::Ordering::Less => (Side::Local, Criterion::LeastChanges),
        std::cmp::Ordering::Greater => (Side::Peer, Criterion::LeastChanges),
        std::cmp::Ordering::Equal => tie_break(),
    };
    let zero_changes = || match (l.changes == 0, p.changes == 0) {
        (true, true) => Some(tie_break()),
        (true, false) => Some((Side::Local, Criterion::ZeroChanges)),
        (false, true) => Some((Side::Peer, Criterion::ZeroChanges)),
        (false, false) => None,
    };

    match policy {
        AfterSb0Pri::Disconnect => None,
        AfterSb0Pri::DiscardNode(name) if name == l.name => Some((Side::Local, Criterion::NamedNode)),
        AfterSb0Pri::DiscardNode(name) if name == p.name => Some((Side::Peer, Criterion::NamedNode)),
        AfterSb0Pri::DiscardNode(_) => None,
        AfterSb0Pri::DiscardYoungerPrimary => match split_primary {
            Some(older) => Some((older.mirror(), Criterion::YoungerPrimary)),
            None => Some(zero_changes().unwrap_or_else(least_changes)),
        },
        AfterSb0Pri::DiscardOlderPrimary => match split_primary {
            Some(older) => Some((older, Criterion::OlderPrimary)),
            None => Some(zero_changes().unwrap_or_else(least_changes)),
        },
        AfterSb0Pri::DiscardZeroChanges => zero_changes(),
        AfterSb0Pri::DiscardLeastChanges => Some(zero_changes().unwrap_or_else(least_changes)),
    }
}

/// One side's facts for the rr-conflict check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RrSide {
    /// Node id.
    pub node: NodeId,
    /// Current role.
    pub role: Role,
    /// Current disk state.
    pub disk: DiskState,
}

/// What to do about a resync that would make a Primary the SyncTarget, from this node's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RrOutcome {
    /// No conflict: go ahead with the decision.
    Proceed,
    /// Conflict, `violently`: go ahead anyway (the Primary's data changes under the application).
    ProceedViolently,
    /// Conflict, `auto-discard`: resync in the opposite direction instead (the running Primary wins).
    Reverse(SyncDecision),
    /// Conflict: drop the connection.
    Disconnect,
    /// Conflict, `retry-connect`: drop the connection and try again.
    RetryConnect,
    /// Conflict, `call-pri-lost`: this node is the Primary; run the handler, then drop the connection.
    CallHelperAndDisconnect(Helper),
}

/// Checks `rr-conflict`: does `decision` make a Primary with at least Consistent data the SyncTarget,
/// with blocks to transfer (`out_of_sync` bits on either side)?
///
/// The check covers both ends, so both nodes reach the same verdict. `auto-discard` reverses only the
/// protocol A/B crashed-primary case ([`Rule::CrashedPrimaryAsync`]), where the crashed node's extra
/// writes are the ones to lose; any other conflict under `auto-discard` disconnects (DRBD would let the
/// resync run into the Primary).
pub fn check_rr_conflict(
    policy: RrConflict,
    decision: &Decision,
    local: RrSide,
    peer: RrSide,
    out_of_sync: u64,
) -> RrOutcome {
    let target = match decision.outcome {
        SyncDecision::BecomeTarget { .. } => Side::Local,
        SyncDecision::BecomeSource { .. } => Side::Peer,
        _ => return RrOutcome::Proceed,
    };
    let target_state = match target {
        Side::Local => local,
        Side::Peer => peer,
    };
    let conflict =
        target_state.role.is_primary() && target_state.disk >= DiskState::Consistent && out_of_sync > 0;
    if !conflict {
        return RrOutcome::Proceed;
    }
    match policy {
        RrConflict::Disconnect => RrOutcome::Disconnect,
        RrConflict::RetryConnect => RrOutcome::RetryConnect,
        RrConflict::Violently => RrOutcome::ProceedViolently,
        RrConflict::CallPriLost if target == Side::Local => {
            RrOutcome::CallHelperAndDisconnect(Helper::PriLost)
        }
        RrConflict::CallPriLost => RrOutcome::Disconnect,
        RrConflict::AutoDiscard => match decision.rule {
            // The running Primary (the former target) becomes source, using its slot for the other node.
            Rule::CrashedPrimaryAsync(_) => RrOutcome::Reverse(match target {
                Side::Local => SyncDecision::BecomeSource {
                    kind: SyncKind::Bitmap { slot_of: peer.node },
                },
                Side::Peer => SyncDecision::BecomeTarget {
                    kind: SyncKind::Bitmap { slot_of: local.node },
                },
            }),
            _ => RrOutcome::Disconnect,
        },
    }
}
