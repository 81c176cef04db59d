//! Generation identifiers: the UUIDs that tell two nodes how their data relate.
//!
//! Every node keeps, in its metadata:
//!
//! - a **current UUID**, a random 64-bit value naming the generation of data on its disk. A new one is
//!   drawn whenever a primary starts writing data some peer will not get (see [`crate::rotate`]);
//! - one **bitmap UUID per peer slot**: the generation that peer was at when this node started tracking
//!   changes for it in that slot's bitmap (`0` = no tracking: the peer was in sync when last seen);
//! - up to 32 **history UUIDs**, newest first: earlier generations this node's data went through;
//! - flags (consistent, was-up-to-date, crashed-primary, primary-lost-quorum) and a **dagtag**, the
//!   number of sectors written, which orders two nodes that share a current UUID.
//!
//! Comparing two nodes' identifiers at connect ([`crate::decide`](mod@crate::decide)) gives the resync direction and
//! whether a bitmap suffices, or reveals split brain. This module is the plain value the engine fills in
//! from its on-disk metadata; it does no I/O.
//!
//! **Bit 0** of a UUID is not part of the generation: DRBD sets it while the node is Primary
//! ([`UUID_PRIMARY`]). A bitmap UUID therefore remembers whether this node was Primary when the peer
//! left, which the `discard-younger-primary`/`discard-older-primary` split-brain policies use. Every
//! comparison masks it with [`generation_of`].
//!
//! **Just created.** Fresh metadata (after `create-md`) has the current UUID [`UUID_JUST_CREATED`]
//! (`4`, as in DRBD), meaning "no data generation yet". A current UUID of `0` (never written) is read
//! the same way. A just-created node has nothing worth keeping: it always becomes a full-sync target
//! of a node with real data, and two just-created nodes need no sync at all.

use serde::{Deserialize, Serialize};

use crate::node::{MAX_NODES, NodeId};
use crate::state::DiskState;

/// Bit 0 of a UUID: set while the node holding it is Primary. Not part of the generation.
pub const UUID_PRIMARY: u64 = 1;

/// The current UUID of freshly created metadata: "no data generation yet".
pub const UUID_JUST_CREATED: u64 = 4;

/// The number of history UUIDs kept; older ones fall off the end.
pub const HISTORY_LEN: usize = 32;

/// The generation a UUID names: the UUID without the [`UUID_PRIMARY`] bit.
pub const fn generation_of(uuid: u64) -> u64 {
    uuid & !UUID_PRIMARY
}

/// Whether two UUIDs name the same real generation: equal without the primary bit, and neither empty
/// (`0`) nor the just-created marker.
pub const fn same_generation(a: u64, b: u64) -> bool {
    let (a, b) = (generation_of(a), generation_of(b));
    a == b && !is_reserved(a)
}

/// Whether `uuid` (without its primary bit) is one of the values with a special meaning, `0` (none)
/// and [`UUID_JUST_CREATED`], and so can never name a data generation. A freshly drawn random UUID
/// that is reserved must be drawn again.
pub const fn is_reserved(uuid: u64) -> bool {
    let g = generation_of(uuid);
    g == 0 || g == UUID_JUST_CREATED
}

/// Flags stored with the generation identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GiFlags {
    /// The data is a single generation (not a resync target mid-way, not fresh metadata).
    pub consistent: bool,
    /// The data was UpToDate when last known; cleared when the node learns it is Outdated.
    pub was_up_to_date: bool,
    /// The node was Primary and did not demote cleanly (crash or power loss while Primary). Its
    /// activity-log extents may hold writes a peer lacks.
    pub crashed_primary: bool,
    /// The node was Primary and lost quorum; whatever it wrote afterwards did not complete and it must
    /// take the quorate side's data.
    pub primary_lost_quorum: bool,
}

/// One node's generation identifiers, as stored in its metadata.
///
/// `bitmap` is indexed by peer node id; the entry at the node's own id is unused and ignored by every
/// rule. `history` is newest first, `0` marks unused entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationIds {
    /// The current UUID; bit 0 set while Primary.
    pub current: u64,
    /// Bitmap UUID per peer node id; `0` = not tracking changes for that peer.
    pub bitmap: [u64; MAX_NODES],
    /// Earlier generations, newest first; `0` = unused.
    pub history: [u64; HISTORY_LEN],
    /// Metadata flags.
    pub flags: GiFlags,
    /// Sectors written so far (data generation tag); orders nodes with equal current UUIDs.
    pub dagtag: u64,
}

/// One line for logs, DRBD's "uuid dump" in words: `current C0FF…EE01 bitmap n1=…,n2=… history …
/// flags consistent,…` (empty parts left out), so a handshake's decision can be checked by hand.
impl std::fmt::Display for GenerationIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "current {:016X}", self.current)?;
        let mut sep = " bitmap ";
        for (node, uuid) in self.bitmap.iter().enumerate().filter(|(_, u)| **u != 0) {
            write!(f, "{sep}n{node}={uuid:016X}")?;
            sep = ",";
        }
        let mut sep = " history ";
        for uuid in self.history.iter().filter(|u| **u != 0) {
            write!(f, "{sep}{uuid:016X}")?;
            sep = ",";
        }
        let flags = [
            (self.flags.consistent, "consistent"),
            (self.flags.was_up_to_date, "was-up-to-date"),
            (self.flags.crashed_primary, "crashed-primary"),
            (self.flags.primary_lost_quorum, "lost-quorum"),
        ];
        let mut sep = " flags ";
        for (_, name) in flags.iter().filter(|(set, _)| *set) {
            write!(f, "{sep}{name}")?;
            sep = ",";
        }
        Ok(())
    }
}

impl Default for GenerationIds {
    fn default() -> Self {
        Self::just_created()
    }
}

impl GenerationIds {
    /// The identifiers of freshly created metadata: current UUID [`UUID_JUST_CREATED`], no bitmap or
    /// history UUIDs, not consistent.
    pub const fn just_created() -> Self {
        Self {
            current: UUID_JUST_CREATED,
            bitmap: [0; MAX_NODES],
            history: [0; HISTORY_LEN],
            flags: GiFlags {
                consistent: false,
                was_up_to_date: false,
                crashed_primary: false,
                primary_lost_quorum: false,
            },
            dagtag: 0,
        }
    }

    /// The current generation (current UUID without the primary bit).
    pub const fn current_generation(&self) -> u64 {
        generation_of(self.current)
    }

    /// Whether the metadata is just created (current UUID is [`UUID_JUST_CREATED`] or `0`).
    pub const fn is_just_created(&self) -> bool {
        let g = self.current_generation();
        g == UUID_JUST_CREATED || g == 0
    }

    /// Whether the current UUID carries the primary bit (the node was Primary when it was last set).
    pub const fn current_has_primary_bit(&self) -> bool {
        self.current & UUID_PRIMARY != 0
    }

    /// The bitmap UUID this node keeps for `peer` (with its primary bit).
    pub const fn bitmap_uuid(&self, peer: NodeId) -> u64 {
        self.bitmap[peer.index()]
    }

    /// Whether this node was Primary when it started tracking changes for `peer`, i.e. when the peer
    /// left: bit 0 of the bitmap UUID. After a split brain, the node for which this is *false* became
    /// Primary later: it is the "younger" primary.
    pub const fn was_primary_when_split_from(&self, peer: NodeId) -> bool {
        self.bitmap[peer.index()] & UUID_PRIMARY != 0
    }

    /// The lowest node id other than `own` and `except` whose bitmap UUID names the same generation as
    /// `uuid`.
    pub fn bitmap_slot_holding(&self, uuid: u64, own: NodeId, except: NodeId) -> Option<NodeId> {
        NodeId::all()
            .filter(|n| *n != own && *n != except)
            .find(|n| same_generation(self.bitmap[n.index()], uuid))
    }

    /// The history generations, newest first, without unused entries.
    pub fn history_generations(&self) -> impl Iterator<Item = u64> + '_ {
        self.history
            .iter()
            .map(|u| generation_of(*u))
            .filter(|g| !is_reserved(*g))
    }

    /// Whether `uuid` names one of the history generations.
    pub fn history_contains(&self, uuid: u64) -> bool {
        self.history.iter().any(|h| same_generation(*h, uuid))
    }

    /// Whether this node remembers generation `uuid` anywhere: as current, bitmap or history UUID.
    pub fn remembers(&self, uuid: u64) -> bool {
        same_generation(self.current, uuid)
            || self.bitmap.iter().any(|b| same_generation(*b, uuid))
            || self.history_contains(uuid)
    }

    /// The disk state the metadata alone implies, before any handshake: `Inconsistent` unless
    /// consistent, `Outdated` if consistent but not known to have been up to date, else `Consistent`
    /// (only a handshake or quorum can make it `UpToDate`).
    pub const fn disk_state_from_metadata(&self) -> DiskState {
        if !self.flags.consistent {
            DiskState::Inconsistent
        } else if !self.flags.was_up_to_date {
            DiskState::Outdated
        } else {
            DiskState::Consistent
        }
    }

    /// Records generation `uuid` as the newest history entry, unless it is reserved, is the current
    /// generation, is already remembered in a bitmap slot (ignoring the slot at `own`) or in the
    /// history. The primary bit is dropped. The oldest entry falls off when the history is full.
    ///
    /// Keeping each left generation in exactly one place (a bitmap slot or the history) keeps the
    /// 32 history entries for generations nothing else remembers.
    pub fn push_history(&mut self, uuid: u64, own: NodeId) {
        let g = generation_of(uuid);
        if is_reserved(g) || g == self.current_generation() || self.history_contains(g) {
            return;
        }
        let in_slot = NodeId::all()
            .filter(|n| *n != own)
            .any(|n| same_generation(self.bitmap[n.index()], g));
        if in_slot {
            return;
        }
        self.history.copy_within(0..HISTORY_LEN - 1, 1);
        self.history[0] = g;
    }

    /// Sets the bitmap UUID for `peer` to `uuid`; a different, non-zero previous value goes to the
    /// history (it is a generation this node's data went through).
    pub fn replace_bitmap_uuid(&mut self, peer: NodeId, uuid: u64, own: NodeId) {
        let previous = self.bitmap[peer.index()];
        self.bitmap[peer.index()] = uuid;
        if previous != 0 && !same_generation(previous, uuid) {
            self.push_history(previous, own);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u8) -> NodeId {
        NodeId::new(id).unwrap()
    }

    #[test]
    fn the_log_line_names_every_part_that_is_set() {
        let mut g = GenerationIds::just_created();
        g.current = 0xAB01;
        g.bitmap[2] = 0x10;
        g.history[0] = 0x20;
        g.history[1] = 0x30;
        g.flags.consistent = true;
        assert_eq!(
            g.to_string(),
            "current 000000000000AB01 bitmap n2=0000000000000010 history 0000000000000020,0000000000000030 flags consistent"
        );
        assert_eq!(
            GenerationIds::just_created().to_string(),
            format!("current {UUID_JUST_CREATED:016X}")
        );
    }

    #[test]
    fn primary_bit_is_masked_in_comparisons() {
        assert!(same_generation(0xABCD_0000, 0xABCD_0001));
        assert!(!same_generation(0xABCD_0000, 0xABCE_0000));
        assert!(!same_generation(0, 0), "empty entries never match");
        assert!(!same_generation(
            UUID_JUST_CREATED,
            UUID_JUST_CREATED | UUID_PRIMARY
        ));
        assert!(is_reserved(1) && is_reserved(5) && !is_reserved(6));
    }

    #[test]
    fn just_created_metadata() {
        let gi = GenerationIds::just_created();
        assert!(gi.is_just_created());
        assert_eq!(gi.disk_state_from_metadata(), DiskState::Inconsistent);
        let zero = GenerationIds {
            current: 0,
            ..GenerationIds::just_created()
        };
        assert!(zero.is_just_created());
        let real = GenerationIds {
            current: 0x100,
            ..GenerationIds::just_created()
        };
        assert!(!real.is_just_created());
    }

    #[test]
    fn disk_state_from_flags() {
        let mut gi = GenerationIds {
            current: 0x100,
            ..GenerationIds::default()
        };
        gi.flags.consistent = true;
        assert_eq!(gi.disk_state_from_metadata(), DiskState::Outdated);
        gi.flags.was_up_to_date = true;
        assert_eq!(gi.disk_state_from_metadata(), DiskState::Consistent);
    }

    #[test]
    fn history_is_newest_first_bounded_and_deduplicated() {
        let own = node(0);
        let mut gi = GenerationIds {
            current: 0xF000_0000,
            ..GenerationIds::default()
        };
        for i in 1..=40u64 {
            gi.push_history(i << 8, own);
        }
        assert_eq!(gi.history[0], 40 << 8);
        assert_eq!(gi.history[HISTORY_LEN - 1], 9 << 8);
        gi.push_history(40 << 8 | UUID_PRIMARY, own);
        assert_eq!(gi.history[1], 39 << 8, "duplicate not pushed again");
        gi.push_history(0xF000_0001, own);
        assert_eq!(gi.history[0], 40 << 8, "current generation not pushed");
        gi.push_history(UUID_JUST_CREATED, own);
        assert_eq!(gi.history[0], 40 << 8, "just-created marker not pushed");
    }

    #[test]
    fn history_skips_generations_held_in_bitmap_slots() {
        let own = node(0);
        let mut gi = GenerationIds {
            current: 0x1000,
            ..GenerationIds::default()
        };
        gi.bitmap[2] = 0x2001;
        gi.push_history(0x2000, own);
        assert_eq!(gi.history[0], 0);
        gi.bitmap[0] = 0x3000;
        gi.push_history(0x3000, own);
        assert_eq!(gi.history[0], 0x3000, "the own slot is ignored");
    }

    #[test]
    fn replacing_a_bitmap_uuid_keeps_the_old_one_in_history() {
        let own = node(0);
        let mut gi = GenerationIds {
            current: 0x1000,
            ..GenerationIds::default()
        };
        gi.bitmap[1] = 0x2000;
        gi.replace_bitmap_uuid(node(1), 0, own);
        assert_eq!(gi.bitmap[1], 0);
        assert_eq!(gi.history[0], 0x2000);
    }

    #[test]
    fn younger_primary_is_read_from_the_bitmap_uuid_bit() {
        let mut gi = GenerationIds {
            current: 0x1000,
            ..GenerationIds::default()
        };
        gi.bitmap[3] = 0x2001;
        gi.bitmap[4] = 0x2000;
        assert!(gi.was_primary_when_split_from(node(3)));
        assert!(!gi.was_primary_when_split_from(node(4)));
    }

    #[test]
    fn bitmap_slot_search_skips_own_and_excluded_slots() {
        let mut gi = GenerationIds {
            current: 0x1000,
            ..GenerationIds::default()
        };
        gi.bitmap[0] = 0x5000;
        gi.bitmap[1] = 0x5000;
        gi.bitmap[7] = 0x5001;
        assert_eq!(gi.bitmap_slot_holding(0x5000, node(0), node(1)), Some(node(7)));
        assert_eq!(gi.bitmap_slot_holding(0x5000, node(0), node(2)), Some(node(1)));
        assert_eq!(gi.bitmap_slot_holding(0x6000, node(0), node(2)), None);
        assert!(gi.remembers(0x5000) && gi.remembers(0x1001) && !gi.remembers(0x6000));
    }
}
