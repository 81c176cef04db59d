//! May this node become Primary? ([`can_promote`])
//!
//! Promotion is where split brain starts: a node that promotes while another partition writes, or
//! promotes on stale data, creates two histories that can only be merged by throwing one away. The
//! checks, in order:
//!
//! 1. **Other Primaries.** A connected Primary peer forbids promotion unless that connection has
//!    `allow-two-primaries` and protocol C (dual-primary is for live migration only), and there are never
//!    more than two Primaries. `--force` does not override this.
//! 2. **Data.** The node must reach UpToDate data: its own disk is UpToDate, or a connected peer's is
//!    (the node then reads from the peer while it resyncs). Otherwise:
//!    - `--force` on `Consistent` or `Outdated` data makes that data UpToDate and the start of a new
//!      generation: the administrator declares it the best copy that exists;
//!    - `--force` on `Inconsistent` data is accepted only for just-created metadata (day 0: the initial
//!      full sync of fresh disks starts from the forced node, nothing can be lost). An Inconsistent disk
//!      with real history is a resync target mid-way, a mix of two generations; promoting it would
//!      serve a corrupt file system, so replbd refuses even with `--force` (DRBD allows it);
//!    - a diskless node needs a connected UpToDate peer; `--force` cannot help.
//! 3. **Quorum.** Without quorum (see [`crate::quorum`]) promotion is refused. `--force` overrides it,
//!    as in DRBD: the administrator asserts the missing nodes are down, and they are marked Outdated so
//!    they cannot promote with their old data when they return. If they were not down, this is a split
//!    brain. With `quorum off` nothing is checked.
//!
//! Fencing (`fence-peer` before promoting while a peer is absent) is decided separately, by
//! [`crate::fencing::must_fence_before_promote`].

use std::fmt;

use thiserror::Error;

use crate::node::NodeId;
use crate::options::Protocol;
use crate::quorum::QuorumVerdict;
use crate::state::DiskState;

/// A connected peer that is currently Primary, and the options of the connection to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrimaryPeer {
    /// The peer.
    pub node: NodeId,
    /// `allow-two-primaries` on that connection.
    pub allow_two_primaries: bool,
    /// The protocol of that connection.
    pub protocol: Protocol,
}

/// Everything [`can_promote`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct PromoteRequest<'a> {
    /// `primary --force`.
    pub force: bool,
    /// This node's quorum verdict.
    pub quorum: QuorumVerdict,
    /// This node's disk state (`Diskless` for a diskless node).
    pub local_disk: DiskState,
    /// This node's metadata is just created (no data generation yet).
    pub local_just_created: bool,
    /// A connected peer is UpToDate.
    pub up_to_date_peer_connected: bool,
    /// Connected peers that are Primary now.
    pub primary_peers: &'a [PrimaryPeer],
}

/// A granted promotion, and what `--force` made the engine do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Promotion {
    /// `--force` declared the local data UpToDate (it was Consistent, Outdated, or day-0 Inconsistent).
    pub local_becomes_up_to_date: bool,
    /// `--force` overrode missing quorum: mark every absent peer Outdated.
    pub outdate_absent_peers: bool,
}

/// Why promotion was refused. The message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PromoteRefusal {
    /// A connected peer is Primary and dual-primary is not allowed on that connection.
    #[error(
        "node {peer} is already Primary: demote it first (dual-primary needs allow-two-primaries and \
         protocol C, and is meant for live migration only)"
    )]
    PeerIsPrimary {
        /// The Primary peer.
        peer: NodeId,
    },
    /// allow-two-primaries is set but the connection does not use protocol C.
    #[error(
        "node {peer} is already Primary and the connection to it uses protocol {protocol}: dual-primary \
         requires protocol C"
    )]
    TwoPrimariesNeedProtocolC {
        /// The Primary peer.
        peer: NodeId,
        /// The protocol of the connection.
        protocol: Protocol,
    },
    /// Two peers are Primary already.
    #[error("nodes {first} and {second} are already Primary; at most two nodes may be Primary at once")]
    TooManyPrimaries {
        /// One Primary peer.
        first: NodeId,
        /// Another Primary peer.
        second: NodeId,
    },
    /// The local disk is Consistent or Outdated and no UpToDate peer is connected.
    #[error(
        "the local disk is {disk} and no UpToDate peer is connected: connect to a node with UpToDate \
         data, or, if this copy is the best that exists, promote with --force"
    )]
    NotUpToDate {
        /// The local disk state.
        disk: DiskState,
    },
    /// Fresh metadata (no data generation yet) and no UpToDate peer connected: day 0.
    #[error(
        "the local disk is Inconsistent (fresh metadata, no data yet) and no UpToDate peer is connected: \
         promote with --force on the node whose data is to be the first copy; the others then get a full \
         initial sync"
    )]
    FreshMetadata,
    /// The local disk is Inconsistent with real history and no UpToDate peer is connected.
    #[error(
        "the local disk is Inconsistent (an interrupted resync: a mix of two generations) and no UpToDate \
         peer is connected; --force cannot make it usable: connect to a node with UpToDate data and let \
         the resync finish"
    )]
    Inconsistent,
    /// No usable local disk and no UpToDate peer connected.
    #[error(
        "the local disk is {disk} and no UpToDate peer is connected: attach a disk or connect to a node \
         with UpToDate data"
    )]
    NoData {
        /// The local disk state.
        disk: DiskState,
    },
    /// No quorum.
    #[error(
        "{verdict}: wait for more nodes to connect, or promote with --force if you are sure the missing \
         nodes are down (they will be marked Outdated; if they are not down, this causes split brain)"
    )]
    NoQuorum {
        /// The quorum verdict.
        verdict: QuorumVerdict,
    },
}

/// Decides whether the node may become Primary (see the module documentation).
pub fn can_promote(request: &PromoteRequest<'_>) -> Result<Promotion, PromoteRefusal> {
    check_other_primaries(request.primary_peers)?;
    let mut promotion = Promotion::default();

    let disk = request.local_disk;
    let data_reachable = disk == DiskState::UpToDate || request.up_to_date_peer_connected;
    if !data_reachable {
        match disk {
            DiskState::Consistent | DiskState::Outdated if request.force => {
                promotion.local_becomes_up_to_date = true;
            }
            DiskState::Consistent | DiskState::Outdated => return Err(PromoteRefusal::NotUpToDate { disk }),
            DiskState::Inconsistent if request.force && request.local_just_created => {
                promotion.local_becomes_up_to_date = true;
            }
            DiskState::Inconsistent if request.local_just_created => {
                return Err(PromoteRefusal::FreshMetadata);
            }
            DiskState::Inconsistent => return Err(PromoteRefusal::Inconsistent),
            _ => return Err(PromoteRefusal::NoData { disk }),
        }
    }

    if !request.quorum.have_quorum {
        if !request.force {
            return Err(PromoteRefusal::NoQuorum {
                verdict: request.quorum,
            });
        }
        promotion.outdate_absent_peers = true;
    }
    Ok(promotion)
}

fn check_other_primaries(primaries: &[PrimaryPeer]) -> Result<(), PromoteRefusal> {
    match primaries {
        [] => Ok(()),
        [only] if !only.allow_two_primaries => Err(PromoteRefusal::PeerIsPrimary { peer: only.node }),
        [only] if only.protocol != Protocol::C => Err(PromoteRefusal::TwoPrimariesNeedProtocolC {
            peer: only.node,
            protocol: only.protocol,
        }),
        [_] => Ok(()),
        [first, second, ..] => Err(PromoteRefusal::TooManyPrimaries {
            first: first.node,
            second: second.node,
        }),
    }
}

impl fmt::Display for Promotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("promotion granted")?;
        if self.local_becomes_up_to_date {
            f.write_str("; forced: local data declared UpToDate")?;
        }
        if self.outdate_absent_peers {
            f.write_str("; forced without quorum: absent peers will be marked Outdated")?;
        }
        Ok(())
    }
}
