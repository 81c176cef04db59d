//! The handshake decision: from two nodes' generation identifiers, who resyncs from whom, and how.
//!
//! When two diskful nodes connect, each compares its [`GenerationIds`] with the peer's and picks one of:
//! no resync, become sync source, become sync target (using a bitmap, or a full sync), split brain, or
//! unrelated data. The rules are DRBD's, applied in order; the first that matches decides:
//!
//! | #  | condition (from this node's point of view)                    | result                          |
//! |----|----------------------------------------------------------------|---------------------------------|
//! | 1  | both just created                                              | no sync                         |
//! | 2  | one just created                                               | that one is target, full sync   |
//! | 3  | current UUIDs equal                                            | see below                       |
//! | 4  | peer's bitmap UUID for me == my current                        | target, peer's bitmap for me    |
//! | 4b | peer's bitmap UUID for me is in my history, my current in its  | target, peer's bitmap for me    |
//! | 5  | my current is the peer's bitmap UUID for another node N        | target, peer's bitmap for N     |
//! | 6  | my bitmap UUID for the peer == peer's current                  | source, my bitmap for the peer  |
//! | 6b | my bitmap UUID for the peer is in its history, its current in mine | source, my bitmap for the peer |
//! | 7  | peer's current is my bitmap UUID for another node N            | source, my bitmap for N         |
//! | 8  | my current in the peer's history (or the reverse, not both)    | target (source), full sync      |
//! | 9  | my bitmap UUID for the peer == peer's bitmap UUID for me, ≠ 0  | split brain, auto-recoverable   |
//! | 10 | any history UUID in common                                     | split brain, disconnect         |
//! | 11 | nothing in common                                              | unrelated data, disconnect      |
//!
//! **Rules 4b and 6b** cover a peer that followed the Primary into a new generation (it adopted the
//! new current UUID and recorded its old one in its history) while the Primary never learned that it
//! had: the Primary's bitmap for it still starts at the old generation. The peer's current is an
//! ancestor of the Primary's (it did not diverge), and the bitmap covers every write since the old
//! generation — a superset of what the peer lacks — so a bitmap resync is exact enough; DRBD's
//! tables would fall through to rule 8 and copy the whole device.
//!
//! **Rule 3, equal current UUIDs**, separates a harmless reconnect from a crash that left the two disks
//! different in the crashed primary's activity-log extents. In order:
//!
//! 1. both nodes stayed up since they were last connected ("reconnect"): no sync;
//! 2. protocol A or B and exactly one crashed as Primary: that node is source (bitmap). With an
//!    asynchronous link the survivor may lack writes the crashed primary acknowledged;
//! 3. exactly one was a Primary that lost quorum: it is target (its last writes never completed);
//! 4. one crashed as Primary while the other stayed up: the survivor is source (with protocol C it holds
//!    every acknowledged write; the crashed node's extra writes were never acknowledged);
//! 5. one stayed up, nothing to repair: no sync;
//! 6. common power failure: the crashed Primary is source;
//! 7. otherwise no sync.
//!
//! Results 3, 4 and 6 are *weak*: differing disk states (e.g. Outdated vs UpToDate) replace them, the
//! better disk being source; failing that, if a node is Primary right now, the Primary is source (both
//! Primary: no sync). When both nodes match the same weak rule (both lost quorum,
//! both crashed as Primary) the tie goes to the higher dagtag (more data written), then the lower node id.
//!
//! **Inconsistent and Outdated disks.** Apart from the weak results above, only a "no sync" between
//! an Inconsistent or Outdated disk and a better one turns into a resync (by bitmap) from the better
//! disk: at equal generations the worse disk holds nothing the better one lacks, and its bitmap
//! names what it misses (an Outdated disk that was detached after an I/O error marked every write
//! it missed). Rules 2 and 4–8 keep their
//! direction, and a split brain stays a split brain:
//! DRBD reverses both toward the better disk ("becoming sync target due to disk states"), which
//! silently discards acknowledged writes that the Inconsistent node's side holds — an Inconsistent
//! node of the *newer* generation, an interrupted catch-up, still carries writes the older Consistent
//! node lacks (both found by the deterministic simulation, `replbd-sim`). Instead the engine must
//! refuse to become the source of any resync while its own disk is Inconsistent (DRBD: "I shall
//! become SyncSource, but I am inconsistent!"): such a connection waits for a complete copy, and an
//! Inconsistent node never survives a split brain.
//!
//! **Split brain and lost quorum.** A split brain where exactly one side carries the
//! primary-lost-quorum flag is resolved against that side, as rule 3 does for equal UUIDs: it lost
//! quorum as Primary, so nothing it wrote since completed, and it must take the quorate side's data
//! (even from an Inconsistent peer, which then cannot be a source: the connection waits). Leaving it
//! to the after-split-brain policies let `discard-secondary` discard the Secondary that carried the
//! majority's acknowledged writes, after which the old Primary regained quorum through it and
//! completed its frozen writes (found by `replbd-sim`: two Primaries completing writes apart).
//!
//! **Symmetry.** Both ends run this function on the same facts and must reach mirror-image results
//! (one source, the other target; split brain on both), or the connection would be torn between two
//! sources. Every rule is therefore checked in both directions at once: where DRBD's order would let
//! "I am target" (rules 4, 5) win on one end and "I am target" win on the other end too (possible only
//! with corrupt or hand-edited identifiers), neither direction is taken and the next rules decide.
//! [`Decision::mirror`] states the contract and the property tests check it.

use std::fmt;

use thiserror::Error;

use crate::gi::{GenerationIds, same_generation};
use crate::node::NodeId;
use crate::options::Protocol;
use crate::state::{DiskState, Role};

/// One end of a connection, from the point of view of the node running the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This node.
    Local,
    /// The peer.
    Peer,
}

impl Side {
    /// The same end seen from the other node.
    pub const fn mirror(self) -> Side {
        match self {
            Side::Local => Side::Peer,
            Side::Peer => Side::Local,
        }
    }

    const fn subject(self) -> &'static str {
        match self {
            Side::Local => "I",
            Side::Peer => "the peer",
        }
    }
}

/// What one node brings to the handshake.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeSide<'a> {
    /// The node's id.
    pub node: NodeId,
    /// Its generation identifiers (for the peer: as received in the handshake).
    pub gi: &'a GenerationIds,
    /// Its disk state. `Negotiating` is replaced by the state the metadata implies.
    pub disk: DiskState,
    /// Its current role.
    pub role: Role,
    /// The node stayed up since it was last connected to this peer: the connection broke, the node did
    /// not restart (DRBD's "reconnect" UUID flag).
    pub reconnect: bool,
}

impl HandshakeSide<'_> {
    fn data_disk(&self) -> DiskState {
        if self.disk == DiskState::Negotiating {
            self.gi.disk_state_from_metadata()
        } else {
            self.disk
        }
    }
}

/// How a resync transfers data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncKind {
    /// Only the blocks set in the sync source's bitmap slot that tracks node `slot_of`.
    Bitmap {
        /// The node whose slot (in the sync source's metadata) lists the blocks to send.
        slot_of: NodeId,
    },
    /// Every block.
    Full,
}

impl fmt::Display for SyncKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncKind::Bitmap { slot_of } => write!(f, "using the bitmap for node {slot_of}"),
            SyncKind::Full => f.write_str("full sync"),
        }
    }
}

/// The outcome of the handshake comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncDecision {
    /// The data is the same generation; no resync.
    NoSync,
    /// This node has the newer data and becomes SyncSource.
    BecomeSource {
        /// Bitmap or full.
        kind: SyncKind,
    },
    /// The peer has the newer data; this node becomes SyncTarget.
    BecomeTarget {
        /// Bitmap or full.
        kind: SyncKind,
    },
    /// Both sides wrote independently since they diverged.
    SplitBrain {
        /// Both bitmaps track changes since the same generation (rule 9), so the after-sb policies may
        /// resolve it with a bitmap resync. Otherwise only a full sync can (rule 10).
        auto_recoverable: bool,
    },
    /// No common generation at all: these disks never held the same data. Always disconnect.
    UnrelatedData,
}

impl SyncDecision {
    /// The same outcome as the peer sees it.
    pub const fn mirror(self) -> SyncDecision {
        match self {
            SyncDecision::BecomeSource { kind } => SyncDecision::BecomeTarget { kind },
            SyncDecision::BecomeTarget { kind } => SyncDecision::BecomeSource { kind },
            other => other,
        }
    }
}

impl fmt::Display for SyncDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncDecision::NoSync => f.write_str("no resync"),
            SyncDecision::BecomeSource { kind } => write!(f, "become SyncSource, {kind}"),
            SyncDecision::BecomeTarget { kind } => write!(f, "become SyncTarget, {kind}"),
            SyncDecision::SplitBrain {
                auto_recoverable: true,
            } => f.write_str("split brain, auto-recoverable by the after-sb policies"),
            SyncDecision::SplitBrain {
                auto_recoverable: false,
            } => f.write_str("split brain"),
            SyncDecision::UnrelatedData => f.write_str("unrelated data"),
        }
    }
}

/// Two nodes matched the same equal-current-UUID rule; see [`TieBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EqualTie {
    /// Both were Primaries that lost quorum.
    BothLostQuorum,
    /// Both crashed as Primary (dual-primary power failure).
    BothCrashedPrimary,
}

/// What broke an [`EqualTie`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TieBreaker {
    /// The node with the higher dagtag (more sectors written) is source.
    Dagtag,
    /// Equal dagtags: the node with the lower node id is source.
    NodeId,
}

/// The rule that decided, for the log. `Display` names it, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Rule 1: both just created.
    BothJustCreated,
    /// Rule 2: the given side's metadata is just created; it is target of a full sync.
    JustCreated(Side),
    /// Rule 3: equal current UUIDs and both nodes stayed up.
    Reconnected,
    /// Rule 3: equal current UUIDs, protocol A/B, the given side crashed as Primary and is source.
    CrashedPrimaryAsync(Side),
    /// Rule 3: equal current UUIDs, the given side lost quorum as Primary and is target.
    LostQuorum(Side),
    /// Rule 3: equal current UUIDs, the given side stayed up while the other crashed as Primary; the
    /// survivor is source.
    SurvivedCrashedPrimary(Side),
    /// Rule 3: equal current UUIDs, one node stayed up and there is no crash to repair.
    OneReconnected,
    /// Rule 3: equal current UUIDs after a common power failure; the given side crashed as Primary and
    /// is source.
    CrashedPrimaryBothOff(Side),
    /// Rule 3: equal current UUIDs, both sides matched the same rule; the tie breaker chose `source`.
    EqualTie {
        /// The rule both matched.
        tie: EqualTie,
        /// The side that became source.
        source: Side,
        /// What decided.
        by: TieBreaker,
    },
    /// Rule 3: equal current UUIDs, nothing to repair.
    EqualCurrent,
    /// Rule 4: the peer's bitmap UUID for me equals my current UUID.
    PeerBitmapForMe,
    /// Rule 4b: the peer's bitmap UUID for me is an earlier generation of mine, and my current UUID is
    /// in the peer's history.
    PeerBitmapForMyPast,
    /// Rule 5: my current UUID is the peer's bitmap UUID for another node.
    PeerBitmapForOther(NodeId),
    /// Rule 6: my bitmap UUID for the peer equals the peer's current UUID.
    MyBitmapForPeer,
    /// Rule 6b: my bitmap UUID for the peer is an earlier generation of the peer's, and the peer's
    /// current UUID is in my history.
    MyBitmapForPeerPast,
    /// Rule 7: the peer's current UUID is my bitmap UUID for another node.
    MyBitmapForOther(NodeId),
    /// Rule 8: the given side's current UUID is in the other side's history; it is full-sync target.
    CurrentInHistory(Side),
    /// Rule 9: my bitmap UUID for the peer equals its bitmap UUID for me.
    BitmapsEqual,
    /// Rule 10: a common history UUID.
    CommonHistory,
    /// Rule 11: nothing in common.
    Unrelated,
}

impl Rule {
    /// The number of the rule in the decision table (1–11).
    pub const fn number(self) -> u8 {
        match self {
            Rule::BothJustCreated => 1,
            Rule::JustCreated(_) => 2,
            Rule::Reconnected
            | Rule::CrashedPrimaryAsync(_)
            | Rule::LostQuorum(_)
            | Rule::SurvivedCrashedPrimary(_)
            | Rule::OneReconnected
            | Rule::CrashedPrimaryBothOff(_)
            | Rule::EqualTie { .. }
            | Rule::EqualCurrent => 3,
            Rule::PeerBitmapForMe | Rule::PeerBitmapForMyPast => 4,
            Rule::PeerBitmapForOther(_) => 5,
            Rule::MyBitmapForPeer | Rule::MyBitmapForPeerPast => 6,
            Rule::MyBitmapForOther(_) => 7,
            Rule::CurrentInHistory(_) => 8,
            Rule::BitmapsEqual => 9,
            Rule::CommonHistory => 10,
            Rule::Unrelated => 11,
        }
    }

    /// The same rule as the peer names it.
    pub const fn mirror(self) -> Rule {
        match self {
            Rule::JustCreated(s) => Rule::JustCreated(s.mirror()),
            Rule::CrashedPrimaryAsync(s) => Rule::CrashedPrimaryAsync(s.mirror()),
            Rule::LostQuorum(s) => Rule::LostQuorum(s.mirror()),
            Rule::SurvivedCrashedPrimary(s) => Rule::SurvivedCrashedPrimary(s.mirror()),
            Rule::CrashedPrimaryBothOff(s) => Rule::CrashedPrimaryBothOff(s.mirror()),
            Rule::EqualTie { tie, source, by } => Rule::EqualTie {
                tie,
                source: source.mirror(),
                by,
            },
            Rule::PeerBitmapForMe => Rule::MyBitmapForPeer,
            Rule::MyBitmapForPeer => Rule::PeerBitmapForMe,
            Rule::PeerBitmapForMyPast => Rule::MyBitmapForPeerPast,
            Rule::MyBitmapForPeerPast => Rule::PeerBitmapForMyPast,
            Rule::PeerBitmapForOther(n) => Rule::MyBitmapForOther(n),
            Rule::MyBitmapForOther(n) => Rule::PeerBitmapForOther(n),
            Rule::CurrentInHistory(s) => Rule::CurrentInHistory(s.mirror()),
            other => other,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: ", self.number())?;
        match self {
            Rule::BothJustCreated => f.write_str("both sides have just-created metadata"),
            Rule::JustCreated(Side::Local) => f.write_str("my metadata is just created"),
            Rule::JustCreated(Side::Peer) => f.write_str("the peer's metadata is just created"),
            Rule::Reconnected => f.write_str("equal current UUIDs and both nodes stayed up (a reconnect)"),
            Rule::CrashedPrimaryAsync(s) => write!(
                f,
                "equal current UUIDs, {} crashed as Primary and protocol A/B may have left acknowledged \
                 writes only there",
                s.subject()
            ),
            Rule::LostQuorum(s) => write!(f, "equal current UUIDs, {} lost quorum as Primary", s.subject()),
            Rule::SurvivedCrashedPrimary(s) => write!(
                f,
                "equal current UUIDs, {} stayed up while the other node crashed as Primary",
                s.subject()
            ),
            Rule::OneReconnected => {
                f.write_str("equal current UUIDs, one node stayed up and there is no crash to repair")
            }
            Rule::CrashedPrimaryBothOff(s) => write!(
                f,
                "equal current UUIDs after a common power failure, {} crashed as Primary",
                s.subject()
            ),
            Rule::EqualTie { tie, source, by } => {
                let tie = match tie {
                    EqualTie::BothLostQuorum => "both nodes lost quorum as Primary",
                    EqualTie::BothCrashedPrimary => "both nodes crashed as Primary",
                };
                let by = match by {
                    TieBreaker::Dagtag => "the higher dagtag",
                    TieBreaker::NodeId => "the lower node id",
                };
                let who = match source {
                    Side::Local => "I am",
                    Side::Peer => "the peer is",
                };
                write!(f, "equal current UUIDs, {tie}; {who} source by {by}")
            }
            Rule::EqualCurrent => f.write_str("equal current UUIDs"),
            Rule::PeerBitmapForMe => f.write_str("peer's bitmap UUID for me equals my current UUID"),
            Rule::PeerBitmapForMyPast => f.write_str(
                "the peer's bitmap UUID for me is an earlier generation of mine, and the peer's history continues from my current UUID",
            ),
            Rule::PeerBitmapForOther(n) => {
                write!(f, "my current UUID is the peer's bitmap UUID for node {n}")
            }
            Rule::MyBitmapForPeer => {
                f.write_str("my bitmap UUID for the peer equals the peer's current UUID")
            }
            Rule::MyBitmapForPeerPast => f.write_str(
                "my bitmap UUID for the peer is an earlier generation of the peer's, and my history continues from the peer's current UUID",
            ),
            Rule::MyBitmapForOther(n) => {
                write!(f, "the peer's current UUID is my bitmap UUID for node {n}")
            }
            Rule::CurrentInHistory(Side::Local) => f.write_str("my current UUID is in the peer's history"),
            Rule::CurrentInHistory(Side::Peer) => f.write_str("the peer's current UUID is in my history"),
            Rule::BitmapsEqual => {
                f.write_str("my bitmap UUID for the peer equals the peer's bitmap UUID for me")
            }
            Rule::CommonHistory => f.write_str("the only common UUIDs are in both histories"),
            Rule::Unrelated => f.write_str("no UUID in common"),
        }
    }
}

/// A change the roles or disk states made to the rule's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Adjustment {
    /// The disk states differ and decided the direction: the better disk is source.
    DiskStates {
        /// This node's disk state.
        local: DiskState,
        /// The peer's disk state.
        peer: DiskState,
    },
    /// A weak rule 3 result was overridden: the current Primary is source.
    FollowPrimary(Side),
    /// A weak rule 3 result was dropped: both nodes are Primary, neither may become target.
    BothPrimary,
    /// A split brain where only the given side lost quorum as Primary: it takes the other side's
    /// data.
    LostQuorum(Side),
}

impl Adjustment {
    /// The same adjustment as the peer sees it.
    pub const fn mirror(self) -> Adjustment {
        match self {
            Adjustment::DiskStates { local, peer } => Adjustment::DiskStates {
                local: peer,
                peer: local,
            },
            Adjustment::FollowPrimary(s) => Adjustment::FollowPrimary(s.mirror()),
            Adjustment::BothPrimary => Adjustment::BothPrimary,
            Adjustment::LostQuorum(s) => Adjustment::LostQuorum(s.mirror()),
        }
    }
}

impl fmt::Display for Adjustment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Adjustment::DiskStates { local, peer } => {
                write!(f, "decided by disk states (mine {local}, peer's {peer})")
            }
            Adjustment::FollowPrimary(Side::Local) => f.write_str("I am Primary, so I am source"),
            Adjustment::FollowPrimary(Side::Peer) => f.write_str("the peer is Primary, so it is source"),
            Adjustment::BothPrimary => f.write_str("both nodes are Primary, so neither resyncs"),
            Adjustment::LostQuorum(Side::Local) => {
                f.write_str("I lost quorum as Primary, so I take the peer's data")
            }
            Adjustment::LostQuorum(Side::Peer) => {
                f.write_str("the peer lost quorum as Primary, so it takes my data")
            }
        }
    }
}

/// The result of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What to do.
    pub outcome: SyncDecision,
    /// The rule of the table that matched.
    pub rule: Rule,
    /// A change made to the rule's result by roles or disk states, if any.
    pub adjustment: Option<Adjustment>,
}

impl Decision {
    /// The decision as the peer computes it. For any inputs, `decide(b, a)` equals
    /// `decide(a, b).mirror()`.
    pub const fn mirror(self) -> Decision {
        Decision {
            outcome: self.outcome.mirror(),
            rule: self.rule.mirror(),
            adjustment: match self.adjustment {
                Some(a) => Some(a.mirror()),
                None => None,
            },
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.outcome, self.rule)?;
        if let Some(adjustment) = self.adjustment {
            write!(f, "; {adjustment}")?;
        }
        f.write_str(")")
    }
}

/// The handshake cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecideError {
    /// Both ends claim the same node id.
    #[error(
        "the peer uses node id {0}, which is this node's own id: give every node of the resource a \
         different node id"
    )]
    SameNodeId(NodeId),
}

/// The rule's result before roles and disk states are considered.
enum Verdict {
    /// Final, except that "no sync" between an Inconsistent or Outdated and a better disk becomes a
    /// resync, and a split brain where only one side lost quorum as Primary is resolved against it.
    Firm(SyncDecision),
    /// A rule 3 direction that current roles and disk states override.
    Weak { source: Side },
}

/// Compares the two sides' generation identifiers (see the module documentation for the rules).
///
/// `protocol` is the replication protocol of this connection.
pub fn decide(
    local: &HandshakeSide<'_>,
    peer: &HandshakeSide<'_>,
    protocol: Protocol,
) -> Result<Decision, DecideError> {
    if local.node == peer.node {
        return Err(DecideError::SameNodeId(local.node));
    }
    let (verdict, rule) = compare(local, peer, protocol);
    Ok(adjust(local, peer, verdict, rule))
}

fn compare(l: &HandshakeSide<'_>, p: &HandshakeSide<'_>, protocol: Protocol) -> (Verdict, Rule) {
    use SyncDecision::*;

    match (l.gi.is_just_created(), p.gi.is_just_created()) {
        (true, true) => return (Verdict::Firm(NoSync), Rule::BothJustCreated),
        (true, false) => {
            return (
                Verdict::Firm(BecomeTarget { kind: SyncKind::Full }),
                Rule::JustCreated(Side::Local),
            );
        }
        (false, true) => {
            return (
                Verdict::Firm(BecomeSource { kind: SyncKind::Full }),
                Rule::JustCreated(Side::Peer),
            );
        }
        (false, false) => {}
    }

    if same_generation(l.gi.current, p.gi.current) {
        return equal_current(l, p, protocol);
    }

    // Rules 4–7: one side's current generation is what the other tracks changes against.
    match (target_by_bitmap(l, p), target_by_bitmap(p, l)) {
        (Some((slot_of, rule)), None) => {
            return (
                Verdict::Firm(BecomeTarget {
                    kind: SyncKind::Bitmap { slot_of },
                }),
                rule,
            );
        }
        (None, Some((slot_of, rule))) => {
            return (
                Verdict::Firm(BecomeSource {
                    kind: SyncKind::Bitmap { slot_of },
                }),
                rule.mirror(),
            );
        }
        _ => {}
    }

    // Rule 8: one side's current generation is in the other's past.
    match (
        p.gi.history_contains(l.gi.current),
        l.gi.history_contains(p.gi.current),
    ) {
        (true, false) => {
            return (
                Verdict::Firm(BecomeTarget { kind: SyncKind::Full }),
                Rule::CurrentInHistory(Side::Local),
            );
        }
        (false, true) => {
            return (
                Verdict::Firm(BecomeSource { kind: SyncKind::Full }),
                Rule::CurrentInHistory(Side::Peer),
            );
        }
        _ => {}
    }

    // Rule 9: both track changes against the same generation: they diverged from it.
    if same_generation(l.gi.bitmap_uuid(p.node), p.gi.bitmap_uuid(l.node)) {
        return (
            Verdict::Firm(SplitBrain {
                auto_recoverable: true,
            }),
            Rule::BitmapsEqual,
        );
    }

    // Rule 10: a common ancestor further back.
    if l.gi.history_generations().any(|g| p.gi.history_contains(g)) {
        return (
            Verdict::Firm(SplitBrain {
                auto_recoverable: false,
            }),
            Rule::CommonHistory,
        );
    }

    (Verdict::Firm(UnrelatedData), Rule::Unrelated)
}

/// Rules 4 and 5 for `me` as target: the slot (in `them`'s metadata) tracking changes since my current
/// generation, and the rule that found it.
fn target_by_bitmap(me: &HandshakeSide<'_>, them: &HandshakeSide<'_>) -> Option<(NodeId, Rule)> {
    let theirs_for_me = them.gi.bitmap_uuid(me.node);
    if same_generation(theirs_for_me, me.gi.current) {
        return Some((me.node, Rule::PeerBitmapForMe));
    }
    if theirs_for_me & !1 != 0
        && me.gi.history_contains(theirs_for_me)
        && them.gi.history_contains(me.gi.current)
    {
        return Some((me.node, Rule::PeerBitmapForMyPast));
    }
    them.gi
        .bitmap_slot_holding(me.gi.current, them.node, me.node)
        .map(|other| (other, Rule::PeerBitmapForOther(other)))
}

fn equal_current(l: &HandshakeSide<'_>, p: &HandshakeSide<'_>, protocol: Protocol) -> (Verdict, Rule) {
    let (l_crashed, p_crashed) = (l.gi.flags.crashed_primary, p.gi.flags.crashed_primary);
    let (l_lost, p_lost) = (l.gi.flags.primary_lost_quorum, p.gi.flags.primary_lost_quorum);
    let weak = |source| Verdict::Weak { source };
    let bitmap_source = |source: Side| {
        let target = match source {
            Side::Local => p.node,
            Side::Peer => l.node,
        };
        let kind = SyncKind::Bitmap { slot_of: target };
        match source {
            Side::Local => Verdict::Firm(SyncDecision::BecomeSource { kind }),
            Side::Peer => Verdict::Firm(SyncDecision::BecomeTarget { kind }),
        }
    };

    if l.reconnect && p.reconnect {
        return (Verdict::Firm(SyncDecision::NoSync), Rule::Reconnected);
    }
    if protocol != Protocol::C {
        match (l_crashed, p_crashed) {
            (true, false) => return (bitmap_source(Side::Local), Rule::CrashedPrimaryAsync(Side::Local)),
            (false, true) => return (bitmap_source(Side::Peer), Rule::CrashedPrimaryAsync(Side::Peer)),
            _ => {}
        }
    }
    match (l_lost, p_lost) {
        (true, false) => return (weak(Side::Peer), Rule::LostQuorum(Side::Local)),
        (false, true) => return (weak(Side::Local), Rule::LostQuorum(Side::Peer)),
        (true, true) => {
            let (source, by) = tie_break(l, p);
            return (
                weak(source),
                Rule::EqualTie {
                    tie: EqualTie::BothLostQuorum,
                    source,
                    by,
                },
            );
        }
        (false, false) => {}
    }
    if p_crashed && l.reconnect {
        return (weak(Side::Local), Rule::SurvivedCrashedPrimary(Side::Local));
    }
    if l_crashed && p.reconnect {
        return (weak(Side::Peer), Rule::SurvivedCrashedPrimary(Side::Peer));
    }
    if l.reconnect || p.reconnect {
        return (Verdict::Firm(SyncDecision::NoSync), Rule::OneReconnected);
    }
    match (l_crashed, p_crashed) {
        (true, true) => {
            let (source, by) = tie_break(l, p);
            (
                weak(source),
                Rule::EqualTie {
                    tie: EqualTie::BothCrashedPrimary,
                    source,
                    by,
                },
            )
        }
        (true, false) => (weak(Side::Local), Rule::CrashedPrimaryBothOff(Side::Local)),
        (false, true) => (weak(Side::Peer), Rule::CrashedPrimaryBothOff(Side::Peer)),
        (false, false) => (Verdict::Firm(SyncDecision::NoSync), Rule::EqualCurrent),
    }
}

/// The source when both sides matched the same rule: higher dagtag, then lower node id.
fn tie_break(l: &HandshakeSide<'_>, p: &HandshakeSide<'_>) -> (Side, TieBreaker) {
    use std::cmp::Ordering;
    match l.gi.dagtag.cmp(&p.gi.dagtag) {
        Ordering::Greater => (Side::Local, TieBreaker::Dagtag),
        Ordering::Less => (Side::Peer, TieBreaker::Dagtag),
        Ordering::Equal if l.node < p.node => (Side::Local, TieBreaker::NodeId),
        Ordering::Equal => (Side::Peer, TieBreaker::NodeId),
    }
}

fn adjust(l: &HandshakeSide<'_>, p: &HandshakeSide<'_>, verdict: Verdict, rule: Rule) -> Decision {
    let (ld, pd) = (l.data_disk(), p.data_disk());
    let disks_differ = ld != pd && ld.describes_data() && pd.describes_data();
    let one_inconsistent = ld == DiskState::Inconsistent || pd == DiskState::Inconsistent;
    // A consistent but older copy (Outdated by fencing, Behind, or a detached disk) next to an
    // UpToDate one of the same generation: catch it up from its bitmap.
    let one_outdated = (ld == DiskState::UpToDate) != (pd == DiskState::UpToDate);
    let resync_kind = |source: Side, full: bool| {
        if full {
            SyncKind::Full
        } else {
            SyncKind::Bitmap {
                slot_of: match source {
                    Side::Local => p.node,
                    Side::Peer => l.node,
                },
            }
        }
    };
    let resync_from = |source: Side| {
        let kind = resync_kind(source, false);
        match source {
            Side::Local => SyncDecision::BecomeSource { kind },
            Side::Peer => SyncDecision::BecomeTarget { kind },
        }
    };
    let by_disks = || Decision {
        outcome: resync_from(if ld > pd { Side::Local } else { Side::Peer }),
        rule,
        adjustment: Some(Adjustment::DiskStates { local: ld, peer: pd }),
    };

    match verdict {
        Verdict::Firm(SyncDecision::NoSync) if disks_differ && (one_inconsistent || one_outdated) => {
            by_disks()
        }
        Verdict::Firm(SyncDecision::SplitBrain { auto_recoverable })
            if l.gi.flags.primary_lost_quorum != p.gi.flags.primary_lost_quorum =>
        {
            let loser = if l.gi.flags.primary_lost_quorum {
                Side::Local
            } else {
                Side::Peer
            };
            let source = loser.mirror();
            let kind = resync_kind(source, !auto_recoverable);
            Decision {
                outcome: match source {
                    Side::Local => SyncDecision::BecomeSource { kind },
                    Side::Peer => SyncDecision::BecomeTarget { kind },
                },
                rule,
                adjustment: Some(Adjustment::LostQuorum(loser)),
            }
        }
        Verdict::Firm(outcome) => Decision {
            outcome,
            rule,
            adjustment: None,
        },
        Verdict::Weak { .. } if disks_differ => by_disks(),
        Verdict::Weak { source } => {
            let (outcome_source, adjustment) = match (l.role.is_primary(), p.role.is_primary()) {
                (true, true) => {
                    return Decision {
                        outcome: SyncDecision::NoSync,
                        rule,
                        adjustment: Some(Adjustment::BothPrimary),
                    };
                }
                (true, false) => (Side::Local, Some(Adjustment::FollowPrimary(Side::Local))),
                (false, true) => (Side::Peer, Some(Adjustment::FollowPrimary(Side::Peer))),
                (false, false) => (source, None),
            };
            let adjustment = if outcome_source == source {
                None
            } else {
                adjustment
            };
            Decision {
                outcome: resync_from(outcome_source),
                rule,
                adjustment,
            }
        }
    }
}
