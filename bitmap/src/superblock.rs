//! The superblock: geometry, node flags and generation identifiers, in one 4 KiB block kept twice.
//!
//! ## Layout (format version 1, little endian)
//!
//! ```text
//!    0  u64  magic "RPLBDMD1"            72  u64  current UUID
//!    8  u32  format version (1)          80  u64  dagtag (sectors written)
//!   12  u32  node flags                  88  u64×32 history UUIDs, newest first
//!   16  u64  sequence number            344  32 × peer slot {u8 node id (0xff: none), 3 pad,
//!   24  u64  meta uuid                                       u32 flags, u64 bitmap UUID}
//!   32  u64  data size (bytes)          856  u8 resource name length (0: not recorded),
//!                                       857  resource name, up to 64 bytes of UTF-8
//!                                       921  zero
//!   40  u64  metadata offset            4092 u32 crc32c of bytes 0..4092
//!   48  u64  metadata size
//!   56  u8 placement, u8 node id, u8 max peers, u8 log2(bitmap granularity)
//!   60  u32 al-extents, 64 u32 al ring blocks, 68 u32 log2(al extent size)
//! ```
//!
//! ## Why two copies are always both written
//!
//! An update writes copy A, flushes, writes copy B, flushes, and only then counts as done. So at any
//! crash at most one copy is torn, and:
//! - if A is torn, B still holds the previous state and the update was never acknowledged;
//! - if B is torn, A already holds the new state;
//! - if a copy rots later (bit flip), the other holds the same, current state.
//!
//! Reading takes the valid copy with the highest sequence number; a damaged copy is rewritten at the
//! next update. Writing only one copy per update (ping-pong) would be cheaper but would make a rotted
//! newest copy silently roll the state back, losing e.g. a generation-UUID rotation.
//!
//! ## Why the resource name is recorded
//!
//! The node id alone does not tell one resource's metadata from another's on the same node: a
//! configuration that points resource `r1` at `r0`'s disk would otherwise attach, compare `r0`'s
//! generations with `r1`'s peers and resync one resource's data over the other's. The name was
//! added inside format version 1 in bytes that used to be zero, so older metadata reads as "not
//! recorded" and is stamped at its next attach.

use serde::Serialize;

use crate::codec::{check_crc, get_u32, get_u64, put_u32, put_u64, seal};
use crate::error::BlockDefect;
use crate::layout::{AL_EXTENT_SHIFT, BLOCK, FORMAT_VERSION, Geometry, Params, Placement, al_ring_slots};
use crate::units::{MAX_PEERS, NodeId, PeerSlot};

/// Magic of a superblock: "RPLBDMD1" little endian.
pub const SUPERBLOCK_MAGIC: u64 = u64::from_le_bytes(*b"RPLBDMD1");
/// Number of history UUIDs kept.
pub const HISTORY_UUIDS: usize = 32;
/// The current UUID of freshly created metadata ("just created": no data generation yet).
pub const UUID_JUST_CREATED: u64 = 4;

const CRC_OFF: usize = BLOCK as usize - 4;
const HISTORY_OFF: usize = 88;
const PEERS_OFF: usize = HISTORY_OFF + HISTORY_UUIDS * 8;
const PEER_ENTRY: usize = 16;
const NO_NODE: u8 = 0xff;
const RESOURCE_OFF: usize = PEERS_OFF + PEER_ENTRY * MAX_PEERS;
/// The longest resource name the superblock records (the configuration's limit too).
pub const MAX_RESOURCE_NAME: usize = 64;

macro_rules! flag_set {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $flag:ident = $bit:expr, $label:literal;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(u32);

        impl $name {
            $($(#[$fdoc])* pub const $flag: $name = $name($bit);)*
            const ALL: u32 = 0 $(| $bit)*;
            const NAMES: &'static [($name, &'static str)] = &[$(($name::$flag, $label)),*];

            /// The raw bits.
            pub fn bits(self) -> u32 {
                self.0
            }

            /// Flags from raw bits, or `None` if an unknown bit is set.
            pub fn from_bits(bits: u32) -> Option<$name> {
                (bits & !Self::ALL == 0).then_some($name(bits))
            }

            /// True when every flag in `other` is set.
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// Sets or clears `other`.
            pub fn set(&mut self, other: $name, on: bool) {
                if on { self.0 |= other.0 } else { self.0 &= !other.0 }
            }

            /// The names of the set flags, in DRBD's spelling.
            pub fn names(self) -> Vec<&'static str> {
                Self::NAMES.iter().filter(|(f, _)| self.contains(*f)).map(|(_, n)| *n).collect()
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.names().serialize(s)
            }
        }
    };
}

flag_set! {
    /// Node-wide metadata flags.
    NodeFlags {
        /// The local data is consistent (not mid-resync as a target).
        CONSISTENT = 1, "consistent";
        /// The local data was UpToDate when last attached.
        WAS_UP_TO_DATE = 2, "was-up-to-date";
        /// The node was primary and did not demote cleanly: it may hold writes no peer has.
        CRASHED_PRIMARY = 4, "crashed-primary";
        /// The activity log is clean: every bitmap bit is on disk, no extent needs apply-al.
        AL_CLEAN = 8, "al-clean";
        /// The node was primary when it lost quorum.
        PRIMARY_LOST_QUORUM = 16, "primary-lost-quorum";
        /// The node had quorum when the metadata was last written.
        HAVE_QUORUM = 32, "have-quorum";
    }
}

flag_set! {
    /// Per-peer-slot metadata flags.
    PeerFlags {
        /// The peer was connected when the metadata was last written.
        CONNECTED = 1, "connected";
        /// The peer is known to be Outdated.
        OUTDATED = 2, "outdated";
        /// The peer was fenced.
        FENCING = 4, "fencing";
        /// A full sync towards the peer is pending.
        FULL_SYNC = 8, "full-sync";
    }
}

/// Generation identifiers of one peer slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerGenerations {
    /// The node this slot tracks, once assigned.
    pub node: Option<NodeId>,
    /// The data generation this slot's bitmap tracks changes against (0: none).
    pub bitmap_uuid: u64,
    /// Per-peer flags.
    pub flags: PeerFlags,
}

/// The generation identifiers of a node's data (DRBD's "GI").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GenerationIds {
    /// The current data generation (bit 0: role was primary).
    pub current: u64,
    /// Earlier generations, newest first; 0 marks an empty entry.
    pub history: [u64; HISTORY_UUIDS],
    /// Sectors written, ordering nodes that share a current UUID.
    pub dagtag: u64,
    /// One entry per peer slot.
    pub peers: Vec<PeerGenerations>,
}

impl GenerationIds {
    /// Fresh identifiers: "just created", no history, `max_peers` unassigned slots.
    pub fn just_created(max_peers: usize) -> GenerationIds {
        GenerationIds {
            current: UUID_JUST_CREATED,
            history: [0; HISTORY_UUIDS],
            dagtag: 0,
            peers: vec![PeerGenerations::default(); max_peers],
        }
    }

    /// Pushes `uuid` onto the history (newest first), dropping the oldest; 0 and repeats of the
    /// newest entry are ignored.
    pub fn push_history(&mut self, uuid: u64) {
        if uuid == 0 || self.history[0] == uuid {
            return;
        }
        self.history.copy_within(0..HISTORY_UUIDS - 1, 1);
        self.history[0] = uuid;
    }

    /// Starts a new data generation (DRBD's rotation): every slot whose peer is absent (per
    /// `absent`) and has no bitmap UUID yet gets the old current UUID as its bitmap UUID — its bitmap
    /// now tracks changes since then — and `new_uuid` becomes current. If no slot kept the old UUID it
    /// goes to the history, so a later handshake can still relate the generations.
    pub fn new_current(&mut self, new_uuid: u64, absent: impl Fn(PeerSlot) -> bool) {
        let old = self.current;
        let mut kept = false;
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if peer.node.is_some() && peer.bitmap_uuid == 0 && absent(PeerSlot(i as u8)) {
                peer.bitmap_uuid = old;
                kept = true;
            }
        }
        if !kept {
            self.push_history(old);
        }
        self.current = new_uuid;
    }

    /// Forgets the bitmap UUID of `slot` (its peer is in sync with this node again). A generation
    /// is remembered in exactly one place — the current UUID, a bitmap slot or the history — so
    /// when no other slot holds the cleared one it moves to the history: a handshake with a node
    /// that still knows that generation (as its current, bitmap or history UUID) must find it.
    /// Without this a Primary that rotated while a peer was away and then resynced that peer no
    /// longer remembered the generation the two nodes had last shared.
    pub fn clear_bitmap_uuid(&mut self, slot: PeerSlot) {
        let Some(peer) = self.peers.get_mut(slot.index()) else {
            return;
        };
        let gone = std::mem::take(&mut peer.bitmap_uuid) & !1;
        let elsewhere = gone == self.current & !1
            || self.peers.iter().any(|p| p.bitmap_uuid & !1 == gone)
            || self.history.iter().any(|h| h & !1 == gone);
        if gone != 0 && !elsewhere {
            self.push_history(gone);
        }
    }

    /// The slot assigned to `node`, if any.
    pub fn slot_of(&self, node: NodeId) -> Option<PeerSlot> {
        self.peers
            .iter()
            .position(|p| p.node == Some(node))
            .map(|i| PeerSlot(i as u8))
    }
}

/// The decoded content of a superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Sequence number; the higher valid copy wins.
    pub seq: u64,
    /// Random id of this metadata instance, stamped into every block.
    pub meta_uuid: u64,
    /// The layout.
    pub geometry: Geometry,
    /// The local node's id.
    pub node_id: NodeId,
    /// Node flags.
    pub flags: NodeFlags,
    /// Generation identifiers.
    pub gi: GenerationIds,
    /// The resource this metadata belongs to; empty when not recorded (metadata created by
    /// `replbd-meta create` and not attached since, or by a version that did not record it).
    pub resource: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> BlockDefect {
    BlockDefect::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl Superblock {
    /// Encodes into a sealed 4 KiB block.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK as usize];
        let g = &self.geometry;
        put_u64(&mut b, 0, SUPERBLOCK_MAGIC);
        put_u32(&mut b, 8, FORMAT_VERSION);
        put_u32(&mut b, 12, self.flags.bits());
        put_u64(&mut b, 16, self.seq);
        put_u64(&mut b, 24, self.meta_uuid);
        put_u64(&mut b, 32, g.data_size());
        put_u64(&mut b, 40, g.meta_offset);
        put_u64(&mut b, 48, g.meta_size());
        b[56] = match g.placement {
            Placement::External => 0,
            Placement::Internal => 1,
        };
        b[57] = self.node_id.get();
        b[58] = g.max_peers() as u8;
        b[59] = g.bm_block_size().trailing_zeros() as u8;
        put_u32(&mut b, 60, g.al_extents());
        put_u32(&mut b, 64, g.al_ring_slots());
        put_u32(&mut b, 68, AL_EXTENT_SHIFT);
        put_u64(&mut b, 72, self.gi.current);
        put_u64(&mut b, 80, self.gi.dagtag);
        for (i, h) in self.gi.history.iter().enumerate() {
            put_u64(&mut b, HISTORY_OFF + 8 * i, *h);
        }
        for (i, p) in self.gi.peers.iter().enumerate() {
            let off = PEERS_OFF + PEER_ENTRY * i;
            b[off] = p.node.map_or(NO_NODE, NodeId::get);
            put_u32(&mut b, off + 4, p.flags.bits());
            put_u64(&mut b, off + 8, p.bitmap_uuid);
        }
        // Longer names are refused by `Metadata::set_resource`; truncating here keeps encode total.
        let name = &self.resource.as_bytes()[..self.resource.len().min(MAX_RESOURCE_NAME)];
        b[RESOURCE_OFF] = name.len() as u8;
        b[RESOURCE_OFF + 1..RESOURCE_OFF + 1 + name.len()].copy_from_slice(name);
        seal(&mut b, CRC_OFF);
        b
    }

    /// Decodes and validates a superblock block.
    pub fn decode(b: &[u8]) -> Result<Superblock, BlockDefect> {
        if b.len() != BLOCK as usize {
            return Err(invalid("block", format!("{} bytes instead of {BLOCK}", b.len())));
        }
        let magic = get_u64(b, 0);
        if magic != SUPERBLOCK_MAGIC {
            return Err(BlockDefect::BadMagic { found: magic });
        }
        check_crc(b, CRC_OFF).map_err(|(stored, computed)| BlockDefect::BadChecksum { stored, computed })?;
        let version = get_u32(b, 8);
        if version != FORMAT_VERSION {
            return Err(BlockDefect::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = NodeFlags::from_bits(get_u32(b, 12))
            .ok_or_else(|| invalid("node flags", format!("unknown bits in {:#x}", get_u32(b, 12))))?;
        let placement = match b[56] {
            0 => Placement::External,
            1 => Placement::Internal,
            v => return Err(invalid("placement", format!("{v}"))),
        };
        let node_id = NodeId::new(b[57]).ok_or_else(|| invalid("node id", format!("{} > 63", b[57])))?;
        let max_peers = usize::from(b[58]);
        let bm_shift = u32::from(b[59]);
        if !(12..=20).contains(&bm_shift) {
            return Err(invalid("bitmap granularity", format!("2^{bm_shift} bytes")));
        }
        let params = Params {
            data_size: get_u64(b, 32),
            max_peers,
            bm_block_size: 1 << bm_shift,
            al_extents: get_u32(b, 60),
        };
        params
            .validate()
            .map_err(|e| invalid("geometry", e.to_string()))?;
        let meta_offset = get_u64(b, 40);
        let geometry = Geometry {
            placement,
            params,
            meta_offset,
        };
        if get_u64(b, 48) != geometry.meta_size() {
            return Err(invalid(
                "metadata size",
                format!(
                    "{} recorded, {} computed from the geometry",
                    get_u64(b, 48),
                    geometry.meta_size()
                ),
            ));
        }
        if get_u32(b, 64) != al_ring_slots(params.al_extents) {
            return Err(invalid(
                "activity-log ring size",
                format!("{} blocks", get_u32(b, 64)),
            ));
        }
        if get_u32(b, 68) != AL_EXTENT_SHIFT {
            return Err(invalid(
                "activity-log extent size",
                format!("2^{} bytes", get_u32(b, 68)),
            ));
        }
        if placement == Placement::Internal && meta_offset != params.data_size {
            return Err(invalid(
                "metadata offset",
                "internal metadata must start where the data ends",
            ));
        }
        let mut history = [0u64; HISTORY_UUIDS];
        for (i, h) in history.iter_mut().enumerate() {
            *h = get_u64(b, HISTORY_OFF + 8 * i);
        }
        let mut peers = Vec::with_capacity(max_peers);
        for i in 0..MAX_PEERS {
            let off = PEERS_OFF + PEER_ENTRY * i;
            let raw_node = b[off];
            let raw_flags = get_u32(b, off + 4);
            let bitmap_uuid = get_u64(b, off + 8);
            if i >= max_peers {
                if raw_node != 0 || raw_flags != 0 || bitmap_uuid != 0 {
                    return Err(invalid(
                        "peer slots",
                        format!("slot {i} is beyond max-peers {max_peers} but not empty"),
                    ));
                }
                continue;
            }
            let node = match raw_node {
                NO_NODE => None,
                n => Some(NodeId::new(n).ok_or_else(|| invalid("peer node id", format!("slot {i}: {n}")))?),
            };
            if node == Some(node_id) {
                return Err(invalid(
                    "peer node id",
                    format!("slot {i} is assigned to this node itself"),
                ));
            }
            if node.is_some() && peers.iter().any(|p: &PeerGenerations| p.node == node) {
                return Err(invalid(
                    "peer node id",
                    format!("slot {i} repeats node {}", raw_node),
                ));
            }
            let flags = PeerFlags::from_bits(raw_flags)
                .ok_or_else(|| invalid("peer flags", format!("slot {i}: unknown bits in {raw_flags:#x}")))?;
            peers.push(PeerGenerations {
                node,
                bitmap_uuid,
                flags,
            });
        }
        let name_len = usize::from(b[RESOURCE_OFF]);
        if name_len > MAX_RESOURCE_NAME {
            return Err(invalid(
                "resource name",
                format!("{name_len} bytes, more than {MAX_RESOURCE_NAME}"),
            ));
        }
        let resource = std::str::from_utf8(&b[RESOURCE_OFF + 1..RESOURCE_OFF + 1 + name_len])
            .map_err(|_| invalid("resource name", "not UTF-8"))?
            .to_string();
        Ok(Superblock {
            resource,
            seq: get_u64(b, 16),
            meta_uuid: get_u64(b, 24),
            geometry,
            node_id,
            flags,
            gi: GenerationIds {
                current: get_u64(b, 72),
                history,
                dagtag: get_u64(b, 80),
                peers,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::DEFAULT_AL_EXTENTS;

    #[test]
    fn a_cleared_bitmap_uuid_is_remembered_in_the_history_once_no_slot_holds_it() {
        let mut gi = GenerationIds::just_created(2);
        gi.current = 0x100;
        gi.peers[0].node = NodeId::new(1);
        gi.peers[1].node = NodeId::new(2);
        gi.new_current(0x201, |_| true);
        assert_eq!((gi.peers[0].bitmap_uuid, gi.peers[1].bitmap_uuid), (0x100, 0x100));
        assert_eq!(gi.history[0], 0, "kept in the slots, not the history");
        gi.clear_bitmap_uuid(PeerSlot(0));
        assert_eq!(gi.history[0], 0, "slot 1 still remembers it");
        gi.clear_bitmap_uuid(PeerSlot(1));
        assert_eq!(gi.history[0], 0x100, "the last slot gave it to the history");
        gi.peers[0].bitmap_uuid = 0x201;
        gi.clear_bitmap_uuid(PeerSlot(0));
        assert_eq!(
            gi.history[..2],
            [0x100, 0],
            "the current generation is not history"
        );
    }

    fn sample() -> Superblock {
        let params = Params {
            data_size: 1 << 30,
            max_peers: 3,
            bm_block_size: 4096,
            al_extents: DEFAULT_AL_EXTENTS,
        };
        let geometry = Geometry::external(params, Geometry::meta_size_for(&params)).unwrap();
        let mut gi = GenerationIds::just_created(3);
        gi.peers[1] = PeerGenerations {
            node: NodeId::new(7),
            bitmap_uuid: 0xabc,
            flags: PeerFlags::OUTDATED,
        };
        gi.push_history(0x1234);
        Superblock {
            seq: 9,
            meta_uuid: 0xfeed,
            geometry,
            node_id: NodeId::new(2).unwrap(),
            flags: NodeFlags::AL_CLEAN,
            gi,
            resource: "r0".into(),
        }
    }

    #[test]
    fn round_trips() {
        let sb = sample();
        assert_eq!(Superblock::decode(&sb.encode()), Ok(sb));
    }

    #[test]
    fn the_resource_name_is_optional_bounded_and_utf8() {
        let mut sb = sample();
        sb.resource = String::new();
        let unnamed = sb.encode();
        assert!(
            unnamed[RESOURCE_OFF..CRC_OFF].iter().all(|&b| b == 0),
            "as before the name existed"
        );
        assert_eq!(
            Superblock::decode(&unnamed).map(|s| s.resource),
            Ok(String::new())
        );
        sb.resource = "x".repeat(MAX_RESOURCE_NAME);
        assert_eq!(Superblock::decode(&sb.encode()), Ok(sb.clone()));
        let mut long = sb.encode();
        long[RESOURCE_OFF] = MAX_RESOURCE_NAME as u8 + 1;
        seal(&mut long, CRC_OFF);
        assert!(matches!(
            Superblock::decode(&long),
            Err(BlockDefect::InvalidField {
                field: "resource name",
                ..
            })
        ));
        let mut not_utf8 = sb.encode();
        not_utf8[RESOURCE_OFF + 1] = 0xff;
        seal(&mut not_utf8, CRC_OFF);
        assert!(matches!(
            Superblock::decode(&not_utf8),
            Err(BlockDefect::InvalidField {
                field: "resource name",
                ..
            })
        ));
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let block = sample().encode();
        for bit in (0..BLOCK as usize * 8).step_by(97) {
            let mut b = block.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(Superblock::decode(&b).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn rotation_keeps_the_old_generation_for_absent_peers() {
        let mut gi = sample().gi;
        gi.peers[0].node = NodeId::new(5);
        gi.current = 0x100;
        // slot 0 absent with no bitmap uuid: takes the old current; slot 1 keeps its older 0xabc.
        gi.new_current(0x200, |_| true);
        assert_eq!(gi.current, 0x200);
        assert_eq!(gi.peers[0].bitmap_uuid, 0x100);
        assert_eq!(gi.peers[1].bitmap_uuid, 0xabc);
        assert_eq!(gi.history[0], 0x1234);
        // Nobody absent: the old current goes to history.
        gi.new_current(0x300, |_| false);
        assert_eq!(gi.history[0], 0x200);
    }
}
