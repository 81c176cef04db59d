//! Corruption tests: bits flipped in each metadata region must be reported by `open` and `check`
//! naming the region, must never panic, and must never make `open` return data it cannot trust.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use proptest::prelude::*;
use replbd_bitmap::check::{Severity, check};
use replbd_bitmap::layout::BITS_PER_BITMAP_BLOCK;
use replbd_bitmap::{
    AlRecovery, CreateOptions, Geometry, MemDevice, MetaError, Metadata, NodeId, OpenOptions, Params,
    PeerSlot, Placement, create,
};

const G: u64 = 4096;

fn params() -> Params {
    Params {
        data_size: 600 << 20,
        max_peers: 3,
        bm_block_size: G,
        al_extents: 67,
    }
}

/// A clean image (closed) and an unclean one (writes in the log, not closed), with their geometry.
fn images() -> (Vec<u8>, Vec<u8>, Geometry) {
    let dev = Arc::new(MemDevice::new(Geometry::meta_size_for(&params())));
    let sb = create(
        dev.as_ref(),
        &CreateOptions {
            placement: Placement::External,
            params: params(),
            node_id: NodeId::new(1).unwrap(),
        },
    )
    .unwrap();
    let (meta, _) = Metadata::open(Box::new(Arc::clone(&dev)), OpenOptions::default()).unwrap();
    for i in 0..20u64 {
        let g = meta.begin_write(i * (20 << 20), 8192).unwrap();
        meta.mark_out_of_sync(PeerSlot(1), i * (20 << 20), 8192).unwrap();
        drop(g);
    }
    meta.flush().unwrap();
    let unclean = dev.snapshot();
    meta.close().unwrap();
    (dev.snapshot(), unclean, sb.geometry)
}

fn flip(image: &[u8], offset: u64, bit: usize) -> MemDevice {
    let mut img = image.to_vec();
    img[offset as usize + bit / 8] ^= 1 << (bit % 8);
    MemDevice::from_bytes(img)
}

fn open(dev: MemDevice) -> replbd_bitmap::Result<(Arc<Metadata>, replbd_bitmap::OpenReport)> {
    Metadata::open(Box::new(dev), OpenOptions::default())
}

fn damage_named(dev: &MemDevice, needle: &str) -> bool {
    check(dev)
        .unwrap()
        .iter()
        .any(|f| f.severity == Severity::Damage && f.region.contains(needle))
}

#[test]
fn one_damaged_superblock_copy_is_reported_and_repaired() {
    let (clean, _, geo) = images();
    for (copy, name) in [(0, "superblock copy A"), (1, "superblock copy B")] {
        for bit in [3usize, 400, 20_000, 32_700] {
            let dev = flip(&clean, geo.superblock_offset(copy), bit);
            assert!(damage_named(&dev, name), "check must name {name} (bit {bit})");
            let img = dev.snapshot();
            let (meta, report) = open(MemDevice::from_bytes(img)).unwrap();
            assert!(
                report.repaired.iter().any(|(r, _)| r.to_string().contains(name)),
                "{report:?}"
            );
            assert_eq!(
                meta.out_of_sync_bits(PeerSlot(1)).unwrap(),
                20 * 2,
                "bitmaps intact"
            );
        }
    }
}

#[test]
fn both_superblock_copies_damaged_is_refused_with_advice() {
    let (clean, _, geo) = images();
    let mut img = clean.clone();
    img[geo.superblock_offset(0) as usize + 100] ^= 1;
    img[geo.superblock_offset(1) as usize + 200] ^= 1;
    let err = open(MemDevice::from_bytes(img.clone()))
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, MetaError::SuperblocksDamaged { .. }), "{msg}");
    assert!(
        msg.contains("copy A") && msg.contains("copy B") && msg.contains("replbd-meta create"),
        "{msg}"
    );
    assert!(check(&MemDevice::from_bytes(img)).is_err());
}

#[test]
fn damaged_bitmap_block_is_named_and_taken_as_out_of_sync() {
    let (clean, _, geo) = images();
    let per_slot = geo.bm_blocks_per_slot();
    for (slot, block) in [(0u8, 0u32), (1, 2), (2, per_slot - 1)] {
        let dev = flip(&clean, geo.bitmap_offset(usize::from(slot), block), 77);
        let name = format!("bitmap of peer slot {slot}, block {block}");
        assert!(damage_named(&dev, &name), "check must name {name}");
        let (meta, report) = open(dev).unwrap();
        assert!(report.repaired.iter().any(|(r, _)| r.to_string().contains(&name)));
        let bm = meta.bitmap(PeerSlot(slot)).unwrap();
        let start = u64::from(block) * BITS_PER_BITMAP_BLOCK;
        let end = (start + BITS_PER_BITMAP_BLOCK).min(geo.bm_bits());
        assert!(
            bm.all_in(start..end),
            "the damaged block's range must be out of sync"
        );
        meta.close().unwrap();
    }
}

#[test]
fn damaged_activity_log_of_unclean_metadata_is_refused_unless_whole_device_resync() {
    let (_, unclean, geo) = images();
    // Any ring position other than the oldest one cannot be a torn tail.
    let oldest = {
        let ins = replbd_bitmap::inspect(&MemDevice::from_bytes(unclean.clone())).unwrap();
        ins.al.unwrap().last_seq.wrapping_add(1) % u64::from(geo.al_ring_slots())
    } as u32;
    let pos = (oldest + 3) % geo.al_ring_slots();
    let dev = flip(&unclean, geo.al_offset(pos), 4000);
    let name = format!("activity-log transaction slot {pos}");
    assert!(damage_named(&dev, &name));
    let img = dev.snapshot();
    let err = open(MemDevice::from_bytes(img.clone()))
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains("apply-al --whole-device"),
        "{msg}"
    );
    let (meta, report) = Metadata::open(
        Box::new(MemDevice::from_bytes(img)),
        OpenOptions {
            damaged_al: AlRecovery::MarkWholeDevice,
        },
    )
    .unwrap();
    assert!(report.whole_device_marked);
    for slot in 0..3 {
        assert_eq!(meta.out_of_sync_bytes(PeerSlot(slot)).unwrap(), geo.data_size());
    }
}

#[test]
fn damaged_activity_log_of_clean_metadata_is_reported_and_rewritten() {
    let (clean, _, geo) = images();
    let dev = flip(&clean, geo.al_offset(2), 9);
    assert!(damage_named(&dev, "activity-log transaction slot 2"));
    let (meta, report) = open(dev).unwrap();
    assert!(
        report
            .repaired
            .iter()
            .any(|(r, _)| r.to_string().contains("activity-log transaction slot 2"))
    );
    assert!(report.applied_extents.is_empty());
    assert_eq!(meta.out_of_sync_bits(PeerSlot(1)).unwrap(), 40);
}

#[test]
fn unclean_metadata_applies_the_activity_log() {
    let (_, unclean, _) = images();
    let findings = check(&MemDevice::from_bytes(unclean.clone())).unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.severity == Severity::Notice && f.problem.contains("not shut down cleanly"))
    );
    let (meta, report) = open(MemDevice::from_bytes(unclean)).unwrap();
    assert!(!report.was_clean);
    assert!(!report.applied_extents.is_empty());
    // Every peer gets the active extents; slot 1 also keeps its own marks.
    for slot in 0..3 {
        assert!(
            meta.out_of_sync_bytes(PeerSlot(slot)).unwrap()
                >= report.applied_extents.len() as u64 * (4 << 20) - (4 << 20)
        );
    }
}

#[test]
fn foreign_and_missing_metadata_are_named() {
    let (clean, _, geo) = images();
    let (other, _, _) = images();
    // A bitmap block copied from other metadata.
    let mut img = clean.clone();
    let off = geo.bitmap_offset(1, 0) as usize;
    img[off..off + 4096].copy_from_slice(&other[off..off + 4096]);
    let findings = check(&MemDevice::from_bytes(img)).unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.region.contains("peer slot 1, block 0") && f.problem.contains("other metadata"))
    );
    // No metadata at all.
    let err = open(MemDevice::new(1 << 20)).err().unwrap();
    assert!(matches!(err, MetaError::NoMetadata { .. }), "{err}");
    assert!(err.to_string().contains("replbd-meta create"));
    // A truncated or grown file: the superblock is not where the end of the device says.
    let mut grown = clean.clone();
    grown.extend_from_slice(&[0; 8192]);
    assert!(matches!(
        open(MemDevice::from_bytes(grown)).err().unwrap(),
        MetaError::NoMetadata { .. }
    ));
    let mut shifted = vec![0u8; 4096];
    shifted.extend_from_slice(&clean);
    let err = open(MemDevice::from_bytes(shifted)).err().unwrap();
    assert!(matches!(err, MetaError::SizeMismatch { .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever is flipped, and wherever: inspect, check and open never panic, and an open that
    /// succeeds still has the marks it had (or more).
    #[test]
    fn random_damage_never_panics_or_loses_marks(flips in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..8), 1..6), unclean_image in any::<bool>()) {
        static IMAGES: std::sync::OnceLock<(Vec<u8>, Vec<u8>, Geometry)> = std::sync::OnceLock::new();
        let (clean, unclean, _) = IMAGES.get_or_init(images);
        let mut img = if unclean_image { unclean.clone() } else { clean.clone() };
        for (at, bit) in &flips {
            let i = at.index(img.len());
            img[i] ^= 1 << bit;
        }
        let dev = MemDevice::from_bytes(img.clone());
        let _ = replbd_bitmap::inspect(&dev);
        let _ = check(&dev);
        if let Ok((meta, _)) = open(MemDevice::from_bytes(img)) {
            for i in 0..20u64 {
                prop_assert!(meta.is_out_of_sync(PeerSlot(1), i * (20 << 20), 8192).unwrap());
            }
        }
    }
}
