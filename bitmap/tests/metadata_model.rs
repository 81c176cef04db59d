//! Byte ranges through the open-metadata API against a per-bit model written independently: marking
//! rounds outward, clearing inward, at every granularity, across extent and bitmap-block boundaries.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use replbd_bitmap::{
    CreateOptions, Geometry, MemDevice, MetaError, Metadata, NodeId, OpenOptions, Params, PeerSlot,
    Placement, create,
};

fn open_fresh(params: Params) -> Arc<Metadata> {
    let dev = MemDevice::new(Geometry::meta_size_for(&params));
    create(
        &dev,
        &CreateOptions {
            placement: Placement::External,
            params,
            node_id: NodeId::new(0).unwrap(),
        },
    )
    .unwrap();
    Metadata::open(Box::new(dev), OpenOptions::default()).unwrap().0
}

#[derive(Clone, Debug)]
enum Op {
    Mark(u64, u64),
    Clear(u64, u64),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn byte_ranges_round_conservatively(
        gshift in 0u32..5,
        blocks in 1u64..400,
        tail in 0u64..8,
        ops in proptest::collection::vec((any::<bool>(), 0u64..1_000_000, 1u64..300_000), 1..40),
        probes in proptest::collection::vec((0u64..1_000_000, 1u64..100_000), 10),
    ) {
        let g = 4096u64 << gshift;
        // A data size that is not a multiple of the granularity, so the last bit is short.
        let data_size = blocks * g + tail * 4096;
        let params = Params { data_size, max_peers: 2, bm_block_size: g, al_extents: 67 };
        let meta = open_fresh(params);
        let nbits = data_size.div_ceil(g) as usize;
        let mut model = vec![false; nbits];
        for (mark, off, len) in ops {
            let off = off % data_size;
            let len = len.min(data_size - off);
            let op = if mark { Op::Mark(off, len) } else { Op::Clear(off, len) };
            match op {
                Op::Mark(off, len) => {
                    let guard = meta.begin_write(off, len);
                    meta.mark_out_of_sync(PeerSlot(1), off, len).unwrap();
                    drop(guard);
                    for (b, bit) in model.iter_mut().enumerate() {
                        let (s, e) = (b as u64 * g, ((b as u64 + 1) * g).min(data_size));
                        if s < off + len && off < e {
                            *bit = true;
                        }
                    }
                }
                Op::Clear(off, len) => {
                    meta.clear_in_sync(PeerSlot(1), off, len).unwrap();
                    for (b, bit) in model.iter_mut().enumerate() {
                        let (s, e) = (b as u64 * g, ((b as u64 + 1) * g).min(data_size));
                        if off <= s && e <= off + len {
                            *bit = false;
                        }
                    }
                }
            }
        }
        let bytes: u64 = model.iter().enumerate().filter(|(_, b)| **b)
            .map(|(b, _)| ((b as u64 + 1) * g).min(data_size) - b as u64 * g).sum();
        prop_assert_eq!(meta.out_of_sync_bytes(PeerSlot(1)).unwrap(), bytes);
        prop_assert_eq!(meta.out_of_sync_bits(PeerSlot(1)).unwrap(), model.iter().filter(|b| **b).count() as u64);
        prop_assert_eq!(meta.out_of_sync_bits(PeerSlot(0)).unwrap(), 0);
        for (off, len) in probes {
            let off = off % data_size;
            let len = len.min(data_size - off);
            let expect = (off / g..(off + len).div_ceil(g)).any(|b| model[b as usize]);
            prop_assert_eq!(meta.is_out_of_sync(PeerSlot(1), off, len).unwrap(), expect);
            let next = model.iter().enumerate().skip((off / g) as usize).find(|(_, b)| **b).map(|(b, _)| b as u64);
            let got = meta.next_out_of_sync(PeerSlot(1), off).unwrap();
            match next {
                None => prop_assert_eq!(got, None),
                Some(b) => {
                    let run_end = model.iter().enumerate().skip(b as usize).find(|(_, x)| !**x).map_or(nbits as u64, |(e, _)| e as u64);
                    prop_assert_eq!(got, Some((b * g).max(off)..(run_end * g).min(data_size)));
                }
            }
        }
    }
}

#[test]
fn bad_ranges_and_slots_are_refused_with_reasons() {
    let meta = open_fresh(Params {
        data_size: 1 << 30,
        max_peers: 2,
        bm_block_size: 4096,
        al_extents: 100,
    });
    let err = meta.begin_write((1 << 30) - 4096, 8192).unwrap_err();
    assert!(matches!(err, MetaError::OutOfBounds { .. }), "{err}");
    let err = meta.begin_write(0, 65 << 22).unwrap_err();
    assert!(
        matches!(err, MetaError::TooManyExtents { extents: 65, max: 64 }),
        "{err}"
    );
    assert!(err.to_string().contains("split"));
    let err = meta.mark_out_of_sync(PeerSlot(2), 0, 4096).unwrap_err();
    assert!(err.to_string().contains("peer slot 2 does not exist"), "{err}");
    assert!(meta.begin_write(0, 64 << 22).is_ok());
}

/// Metadata of node 3 with two peer slots, on a device kept for reopening (a crash).
fn node_3_with_two_slots() -> (Arc<MemDevice>, Arc<Metadata>) {
    let params = Params {
        data_size: 64 << 20,
        max_peers: 2,
        bm_block_size: 4096,
        al_extents: 67,
    };
    let dev = Arc::new(MemDevice::new(Geometry::meta_size_for(&params)));
    create(
        dev.as_ref(),
        &CreateOptions {
            placement: Placement::External,
            params,
            node_id: NodeId::new(3).unwrap(),
        },
    )
    .unwrap();
    let (meta, _) = Metadata::open(Box::new(Arc::clone(&dev)), OpenOptions::default()).unwrap();
    (dev, meta)
}

#[test]
fn peer_slots_are_assigned_once_and_persist() {
    let (dev, meta) = node_3_with_two_slots();
    let a = meta.slot_for(NodeId::new(7).unwrap()).unwrap();
    let b = meta.slot_for(NodeId::new(9).unwrap()).unwrap();
    assert_ne!(a, b);
    assert_eq!(meta.slot_for(NodeId::new(7).unwrap()).unwrap(), a);
    assert!(matches!(
        meta.slot_for(NodeId::new(3).unwrap()),
        Err(MetaError::SlotForSelf(_))
    ));
    assert!(matches!(
        meta.slot_for(NodeId::new(11).unwrap()),
        Err(MetaError::SlotsExhausted { .. })
    ));
    drop(meta); // crash: slot assignments were durable when slot_for returned
    let (meta, _) = Metadata::open(Box::new(dev), OpenOptions::default()).unwrap();
    assert_eq!(meta.generation_ids().slot_of(NodeId::new(9).unwrap()), Some(b));
}

#[test]
fn a_released_slot_is_free_clean_and_its_generation_kept_in_the_history() {
    let (dev, meta) = node_3_with_two_slots();
    let (n7, n9, n11) = (
        NodeId::new(7).unwrap(),
        NodeId::new(9).unwrap(),
        NodeId::new(11).unwrap(),
    );
    let a = meta.slot_for(n7).unwrap();
    meta.slot_for(n9).unwrap();
    let generation = 0xABCD_0000_0000_0010;
    meta.update(|gi, _| gi.peers[a.index()].bitmap_uuid = generation)
        .unwrap();
    meta.mark_out_of_sync(a, 1 << 20, 8 << 20).unwrap();
    meta.flush().unwrap();
    assert_eq!(meta.release_slot(n7).unwrap(), Some(a));
    assert_eq!(meta.release_slot(n7).unwrap(), None, "released twice");
    assert_eq!(meta.out_of_sync_bits(a).unwrap(), 0);
    drop(meta); // crash: the release was durable when it returned
    let (meta, _) = Metadata::open(Box::new(Arc::clone(&dev)), OpenOptions::default()).unwrap();
    let gi = meta.generation_ids();
    assert_eq!(gi.slot_of(n7), None);
    assert!(
        gi.history.contains(&generation),
        "the slot's generation went to the history"
    );
    assert_eq!(
        meta.out_of_sync_bits(a).unwrap(),
        0,
        "the bits were cleared on disk"
    );
    // Another node, added to the running resource, takes the freed slot: no generation of its
    // own, a full sync pending, durably.
    assert_eq!(meta.slot_for_new_peer(n11).unwrap(), a);
    assert_eq!(meta.generation_ids().peers[a.index()].bitmap_uuid, 0);
    assert!(meta.full_sync_pending(a));
    assert!(!meta.full_sync_pending(meta.slot_for(n9).unwrap()));
    drop(meta);
    let (meta, _) = Metadata::open(Box::new(dev), OpenOptions::default()).unwrap();
    assert!(meta.full_sync_pending(a));
}

#[test]
fn concurrent_writers_share_transactions_and_lose_no_mark() {
    let params = Params {
        data_size: 2 << 30,
        max_peers: 2,
        bm_block_size: 4096,
        al_extents: 67,
    };
    let dev = Arc::new(MemDevice::new(Geometry::meta_size_for(&params)));
    create(
        dev.as_ref(),
        &CreateOptions {
            placement: Placement::External,
            params,
            node_id: NodeId::new(0).unwrap(),
        },
    )
    .unwrap();
    let (meta, _) = Metadata::open(Box::new(Arc::clone(&dev)), OpenOptions::default()).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let meta = Arc::clone(&meta);
            std::thread::spawn(move || {
                let mut marked = Vec::new();
                let mut x = t + 1;
                for i in 0..1500u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = (x % ((2 << 30) / 4096 - 16)) * 4096;
                    let g = meta.begin_write(off, 16384).unwrap();
                    if i % 3 == 0 {
                        meta.mark_out_of_sync(PeerSlot((t % 2) as u8), off, 16384)
                            .unwrap();
                        marked.push(((t % 2) as u8, off));
                    }
                    drop(g);
                    if t == 0 && i % 100 == 0 {
                        meta.flush().unwrap();
                    }
                }
                marked
            })
        })
        .collect();
    let marked: Vec<(u8, u64)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let stats = meta.stats();
    assert!(stats.al_evictions > 0 && stats.al_transactions > 0, "{stats:?}");
    meta.close().unwrap();
    let (meta, report) = Metadata::open(Box::new(dev), OpenOptions::default()).unwrap();
    assert!(report.was_clean);
    for (slot, off) in marked {
        assert!(meta.is_out_of_sync(PeerSlot(slot), off, 16384).unwrap());
    }
}

#[test]
fn a_write_waits_for_a_free_slot_when_every_extent_is_held() {
    let params = Params {
        data_size: 1 << 30,
        max_peers: 1,
        bm_block_size: 4096,
        al_extents: 67,
    };
    let meta = open_fresh(params);
    let held: Vec<_> = (0..67u64)
        .map(|e| meta.begin_write(e << 22, 4096).unwrap())
        .collect();
    let (tx, rx) = mpsc::channel();
    let m2 = Arc::clone(&meta);
    let waiter = std::thread::spawn(move || {
        let g = m2.begin_write(100 << 22, 4096);
        tx.send(g.is_ok()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "must wait while all 67 slots are held"
    );
    assert!(
        meta.try_begin_write(101 << 22, 4096).unwrap().is_none(),
        "no slot without I/O"
    );
    drop(held);
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true));
    waiter.join().unwrap();
    assert!(matches!(meta.close(), Ok(())));
}

#[test]
fn close_refuses_while_writes_are_in_flight_and_then_succeeds() {
    let meta = open_fresh(Params {
        data_size: 64 << 20,
        max_peers: 1,
        bm_block_size: 4096,
        al_extents: 67,
    });
    let g = meta.begin_write(0, 4096).unwrap();
    assert!(matches!(meta.close(), Err(MetaError::Busy { in_flight: 1 })));
    drop(g);
    meta.close().unwrap();
    assert!(
        meta.begin_write(0, 4096).is_err(),
        "a closed handle refuses writes"
    );
}
