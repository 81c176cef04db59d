//! Where everything sits in a metadata area, and how big it is (format version 1).
//!
//! ```text
//!  meta_offset                                                              end of file/device
//!  │ bitmap slot 0 │ bitmap slot 1 │ … │ slot N-1 │ AL ring (R blocks) │ superblock A │ superblock B │
//! ```
//!
//! The area always ends at the end of its file or device, so the superblocks are found without
//! knowing anything else: external metadata is a file of its own (the area usually fills it), internal
//! metadata is the tail of the data device and `data_size` is what precedes it. Every block is 4 KiB.
//!
//! Size: `meta_size = 2·4KiB + R·4KiB + N·⌈⌈D/g⌉ / 32576⌉·4KiB` for data size `D`, bitmap granularity
//! `g`, `N` peer slots and `R = max(8, ⌈al_extents/888⌉ + 1)` activity-log blocks — about 32 MiB per
//! TiB per peer at 4 KiB granularity, like DRBD.

use crate::error::GeometryError;
use crate::units::MAX_PEERS;

/// Size of every metadata block.
pub const BLOCK: u64 = 4096;
/// The metadata format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Activity-log extents are `2^22` bytes (4 MiB).
pub const AL_EXTENT_SHIFT: u32 = 22;
/// Bytes per activity-log extent.
pub const AL_EXTENT_BYTES: u64 = 1 << AL_EXTENT_SHIFT;
/// Default number of activity-log extents (DRBD's default: about 4.8 GiB of hot data).
pub const DEFAULT_AL_EXTENTS: u32 = 1237;
/// Fewest activity-log extents.
pub const MIN_AL_EXTENTS: u32 = 67;
/// Most activity-log extents.
pub const MAX_AL_EXTENTS: u32 = 65534;
/// Default bitmap granularity: one bit per 4 KiB.
pub const DEFAULT_BM_BLOCK_SIZE: u64 = 4096;
/// Extent activations one activity-log transaction carries.
pub const AL_UPDATES_PER_TRANSACTION: usize = 64;
/// Slots of the full LRU context one transaction carries.
pub const AL_CONTEXT_PER_TRANSACTION: usize = 888;
/// Bitmap bits stored in one on-disk bitmap block (4072 payload bytes).
pub const BITS_PER_BITMAP_BLOCK: u64 = 4072 * 8;

/// Where the metadata area lives relative to the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// In a separate file or device.
    External,
    /// At the end of the data device.
    Internal,
}

/// The parameters chosen at creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Bytes of data the metadata describes.
    pub data_size: u64,
    /// Number of peer bitmap slots (1..=32).
    pub max_peers: usize,
    /// Bytes of data per bitmap bit (power of two, 4 KiB..=1 MiB).
    pub bm_block_size: u64,
    /// Number of activity-log extents.
    pub al_extents: u32,
}

impl Params {
    /// Checks every parameter; `data_size` must be a non-zero multiple of 4 KiB.
    pub fn validate(&self) -> Result<(), GeometryError> {
        if self.max_peers == 0 || self.max_peers > MAX_PEERS {
            return Err(GeometryError::MaxPeers(self.max_peers));
        }
        let g = self.bm_block_size;
        if !g.is_power_of_two() || !(4096..=1 << 20).contains(&g) {
            return Err(GeometryError::Granularity(g));
        }
        if !(MIN_AL_EXTENTS..=MAX_AL_EXTENTS).contains(&self.al_extents) {
            return Err(GeometryError::AlExtents(self.al_extents));
        }
        if self.data_size == 0 || !self.data_size.is_multiple_of(BLOCK) {
            return Err(GeometryError::DataSize(self.data_size));
        }
        Ok(())
    }
}

/// The computed layout of one metadata area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Internal or external.
    pub placement: Placement,
    /// The creation parameters.
    pub params: Params,
    /// Absolute byte offset of the area's first block in its device.
    pub meta_offset: u64,
}

/// Number of activity-log ring blocks for `al_extents`: enough that the ring minus one (possibly torn)
/// transaction still carries the whole LRU context, and at least 8 like DRBD's 32 KiB ring.
pub fn al_ring_slots(al_extents: u32) -> u32 {
    let per = AL_CONTEXT_PER_TRANSACTION as u32;
    (al_extents.div_ceil(per) + 1).max(8)
}

impl Geometry {
    /// The size in bytes of a metadata area for `params`.
    pub fn meta_size_for(params: &Params) -> u64 {
        let bits = params.data_size.div_ceil(params.bm_block_size);
        let bm_blocks = bits.div_ceil(BITS_PER_BITMAP_BLOCK);
        (2 + u64::from(al_ring_slots(params.al_extents)) + params.max_peers as u64 * bm_blocks) * BLOCK
    }

    /// Layout of external metadata occupying the last `meta_size` bytes of a device of `device_len`
    /// bytes.
    pub fn external(params: Params, device_len: u64) -> Result<Geometry, GeometryError> {
        params.validate()?;
        let meta_size = Self::meta_size_for(&params);
        if device_len < meta_size {
            return Err(GeometryError::DeviceTooSmall {
                device_size: device_len,
                meta_size,
            });
        }
        Ok(Geometry {
            placement: Placement::External,
            params,
            meta_offset: device_len - meta_size,
        })
    }

    /// Layout of internal metadata on a device of `device_len` bytes: the largest 4 KiB-aligned data
    /// area whose metadata fits behind it.
    pub fn internal(mut params: Params, device_len: u64) -> Result<Geometry, GeometryError> {
        let usable = device_len / BLOCK * BLOCK;
        params.data_size = BLOCK; // validate the other fields with a placeholder size
        params.validate()?;
        let meta_at_most = Self::meta_size_for(&Params {
            data_size: usable,
            ..params
        });
        if usable <= meta_at_most {
            return Err(GeometryError::DeviceTooSmall {
                device_size: device_len,
                meta_size: meta_at_most,
            });
        }
        let mut data = usable - meta_at_most;
        // The metadata for `data` may be a few blocks smaller than for the whole device: grow into them.
        while data
            + BLOCK
            + Self::meta_size_for(&Params {
                data_size: data + BLOCK,
                ..params
            })
            <= usable
        {
            data += BLOCK;
        }
        params.data_size = data;
        Ok(Geometry {
            placement: Placement::Internal,
            params,
            meta_offset: data,
        })
    }

    /// Size of the metadata area in bytes.
    pub fn meta_size(&self) -> u64 {
        Self::meta_size_for(&self.params)
    }

    /// Bytes of data described.
    pub fn data_size(&self) -> u64 {
        self.params.data_size
    }

    /// Number of peer slots.
    pub fn max_peers(&self) -> usize {
        self.params.max_peers
    }

    /// Bytes of data per bitmap bit.
    pub fn bm_block_size(&self) -> u64 {
        self.params.bm_block_size
    }

    /// Number of bits in each peer's bitmap.
    pub fn bm_bits(&self) -> u64 {
        self.params.data_size.div_ceil(self.params.bm_block_size)
    }

    /// On-disk bitmap blocks per peer slot.
    pub fn bm_blocks_per_slot(&self) -> u32 {
        self.bm_bits().div_ceil(BITS_PER_BITMAP_BLOCK) as u32
    }

    /// Number of activity-log extents in the LRU.
    pub fn al_extents(&self) -> u32 {
        self.params.al_extents
    }

    /// Number of transaction blocks in the activity-log ring.
    pub fn al_ring_slots(&self) -> u32 {
        al_ring_slots(self.params.al_extents)
    }

    /// Number of 4 MiB extents the data area spans.
    pub fn data_extents(&self) -> u64 {
        self.params.data_size.div_ceil(AL_EXTENT_BYTES)
    }

    /// Absolute offset of bitmap block `block` of peer slot `slot`.
    pub fn bitmap_offset(&self, slot: usize, block: u32) -> u64 {
        self.meta_offset + (slot as u64 * u64::from(self.bm_blocks_per_slot()) + u64::from(block)) * BLOCK
    }

    /// Absolute offset of activity-log ring block `ring_slot`.
    pub fn al_offset(&self, ring_slot: u32) -> u64 {
        self.bitmap_offset(self.max_peers(), 0) + u64::from(ring_slot) * BLOCK
    }

    /// Absolute offset of superblock copy 0 (A) or 1 (B).
    pub fn superblock_offset(&self, copy: usize) -> u64 {
        self.meta_offset + self.meta_size() - (2 - copy as u64) * BLOCK
    }

    /// Absolute offset of superblock copy `copy` on a device of `device_len` bytes, before the
    /// geometry is known.
    pub fn superblock_offset_on(device_len: u64, copy: usize) -> Option<u64> {
        (device_len / BLOCK * BLOCK).checked_sub((2 - copy as u64) * BLOCK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(data_size: u64, max_peers: usize) -> Params {
        Params {
            data_size,
            max_peers,
            bm_block_size: 4096,
            al_extents: DEFAULT_AL_EXTENTS,
        }
    }

    #[test]
    fn one_tib_costs_about_32_mib_per_peer_like_drbd() {
        let one = Geometry::meta_size_for(&params(1 << 40, 1));
        let two = Geometry::meta_size_for(&params(1 << 40, 2));
        let per_peer = two - one;
        assert!(per_peer > 32 << 20 && per_peer < 33 << 20, "{per_peer}");
    }

    #[test]
    fn internal_layout_fills_the_device_and_never_overlaps() {
        for len in [1u64 << 20, 100 << 20, (1 << 30) + 12345, 5 << 30] {
            let g = Geometry::internal(params(BLOCK, 3), len).unwrap();
            assert_eq!(g.meta_offset, g.data_size());
            assert!(g.data_size() + g.meta_size() <= len);
            // One more data block would not fit.
            let bigger = Geometry::meta_size_for(&Params {
                data_size: g.data_size() + BLOCK,
                ..g.params
            });
            assert!(g.data_size() + BLOCK + bigger > len / BLOCK * BLOCK);
            assert_eq!(g.superblock_offset(1) + BLOCK, g.meta_offset + g.meta_size());
        }
    }

    #[test]
    fn impossible_geometry_is_rejected() {
        assert_eq!(params(0, 1).validate(), Err(GeometryError::DataSize(0)));
        assert_eq!(params(4096, 0).validate(), Err(GeometryError::MaxPeers(0)));
        assert_eq!(params(4096, 33).validate(), Err(GeometryError::MaxPeers(33)));
        let p = Params {
            bm_block_size: 6000,
            ..params(4096, 1)
        };
        assert_eq!(p.validate(), Err(GeometryError::Granularity(6000)));
        let p = Params {
            al_extents: 3,
            ..params(4096, 1)
        };
        assert_eq!(p.validate(), Err(GeometryError::AlExtents(3)));
        assert!(matches!(
            Geometry::internal(params(BLOCK, 32), 64 << 10),
            Err(GeometryError::DeviceTooSmall { .. })
        ));
    }

    #[test]
    fn ring_carries_the_whole_context_even_with_a_torn_tail() {
        for al in [MIN_AL_EXTENTS, DEFAULT_AL_EXTENTS, 5000, MAX_AL_EXTENTS] {
            let r = al_ring_slots(al);
            assert!((r as usize - 1) * AL_CONTEXT_PER_TRANSACTION >= al as usize);
        }
    }
}
