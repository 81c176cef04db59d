//! Property tests: every `SparseBitmap` operation agrees with a plain `Vec<bool>`.
//!
//! Small chunk sizes (64–256 bits) make arrays, runs, dense words and full chunks appear, change into
//! one another and cross chunk boundaries within a few operations; the default 2^20-bit chunk is
//! covered too.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use replbd_bitmap::SparseBitmap;
use replbd_bitmap::sparse::rle::RleError;

#[derive(Clone, Debug)]
enum Op {
    Set(u64, u64),
    Clear(u64, u64),
    SetBit(u64),
}

fn op(len: u64) -> impl Strategy<Value = Op> {
    let range = (0..=len, 0..=len).prop_map(|(a, b)| (a.min(b), a.max(b)));
    // Mostly short ranges (like 4 KiB writes), some long ones (like a resync or an invalidate).
    let short = (0..len.max(1), 1..40u64).prop_map(move |(a, n)| (a, (a + n).min(len)));
    prop_oneof![
        3 => short.clone().prop_map(|(a, b)| Op::Set(a, b)),
        1 => range.clone().prop_map(|(a, b)| Op::Set(a, b)),
        2 => short.prop_map(|(a, b)| Op::Clear(a, b)),
        1 => range.prop_map(|(a, b)| Op::Clear(a, b)),
        2 => (0..len.max(1)).prop_map(Op::SetBit),
    ]
}

fn model_runs(m: &[bool]) -> Vec<std::ops::Range<u64>> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < m.len() {
        if m[i] {
            let s = i;
            while i < m.len() && m[i] {
                i += 1;
            }
            runs.push(s as u64..i as u64);
        } else {
            i += 1;
        }
    }
    runs
}

fn check(bm: &SparseBitmap, m: &[bool], probes: &[(u64, u64)]) {
    let len = m.len() as u64;
    assert_eq!(bm.count(), m.iter().filter(|&&b| b).count() as u64);
    assert_eq!(bm.runs().collect::<Vec<_>>(), model_runs(m));
    for &(a, b) in probes {
        let (a, b) = (a.min(len), b.min(len));
        let (a, b) = (a.min(b), a.max(b));
        let slice = &m[a as usize..b as usize];
        assert_eq!(
            bm.count_range(a..b),
            slice.iter().filter(|&&x| x).count() as u64,
            "count {a}..{b}"
        );
        assert_eq!(bm.any_in(a..b), slice.iter().any(|&x| x), "any {a}..{b}");
        assert_eq!(bm.all_in(a..b), slice.iter().all(|&x| x), "all {a}..{b}");
        let first_set = m[a as usize..].iter().position(|&x| x).map(|p| a + p as u64);
        assert_eq!(bm.first_set_from(a), first_set, "first_set_from {a}");
        let first_clear = m[a as usize..]
            .iter()
            .position(|&x| !x)
            .map_or(len, |p| a + p as u64);
        assert_eq!(bm.first_clear_from(a), first_clear, "first_clear_from {a}");
        let clipped: Vec<_> = model_runs(m)
            .into_iter()
            .filter_map(|r| {
                let s = r.start.max(a);
                let e = r.end.min(b);
                (s < e).then_some(s..e)
            })
            .collect();
        assert_eq!(bm.runs_in(a..b).collect::<Vec<_>>(), clipped, "runs_in {a}..{b}");
    }
    if len > 0 {
        assert_eq!(bm.test(len - 1), m[len as usize - 1]);
    }
}

fn apply(bm: &mut SparseBitmap, m: &mut [bool], op: &Op) {
    match *op {
        Op::Set(a, b) => {
            let expect = m[a as usize..b as usize].iter().filter(|&&x| !x).count() as u64;
            assert_eq!(bm.set_range(a..b), expect, "set {a}..{b} newly set");
            m[a as usize..b as usize].fill(true);
        }
        Op::Clear(a, b) => {
            let expect = m[a as usize..b as usize].iter().filter(|&&x| x).count() as u64;
            assert_eq!(bm.clear_range(a..b), expect, "clear {a}..{b} newly cleared");
            m[a as usize..b as usize].fill(false);
        }
        Op::SetBit(i) => {
            assert_eq!(bm.set(i), !m[i as usize]);
            m[i as usize] = true;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn operations_match_a_vec_of_bools(
        shift in 6u32..=8,
        len in 1u64..1200,
        ops in proptest::collection::vec(op(1200), 1..120),
        probes in proptest::collection::vec((0u64..1200, 0u64..1200), 8),
    ) {
        let mut bm = SparseBitmap::with_chunk_shift(len, shift);
        let mut m = vec![false; len as usize];
        for op in &ops {
            let op = match *op {
                Op::Set(a, b) => Op::Set(a.min(len), b.min(len).max(a.min(len))),
                Op::Clear(a, b) => Op::Clear(a.min(len), b.min(len).max(a.min(len))),
                Op::SetBit(i) => Op::SetBit(i % len),
            };
            apply(&mut bm, &mut m, &op);
        }
        check(&bm, &m, &probes);
        // Run-length encoding round-trips exactly.
        let decoded = SparseBitmap::decode_rle(&bm.encode_rle(), len).unwrap();
        prop_assert_eq!(decoded.runs().collect::<Vec<_>>(), model_runs(&m));
        prop_assert_eq!(decoded.len_bits(), len);
    }

    #[test]
    fn dense_chunks_turn_back_into_runs_and_full(shift in 6u32..=7, seed in any::<u64>()) {
        // Fill a chunk bit by bit in a scattered order until it is full, then clear it the same way.
        let len = 3u64 << shift;
        let mut bm = SparseBitmap::with_chunk_shift(len, shift);
        let mut m = vec![false; len as usize];
        let mut order: Vec<u64> = (0..len).collect();
        let mut s = seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            apply(&mut bm, &mut m, &Op::SetBit(i));
        }
        check(&bm, &m, &[(0, len)]);
        prop_assert_eq!(bm.container_bytes(), 0, "a full bitmap stores nothing per chunk");
        for &i in &order {
            apply(&mut bm, &mut m, &Op::Clear(i, i + 1));
        }
        prop_assert!(bm.is_clear());
        prop_assert_eq!(bm.chunk_count(), 0);
    }

    #[test]
    fn union_matches_or(
        len in 1u64..600,
        a in proptest::collection::vec((0u64..600, 1u64..50), 0..30),
        b in proptest::collection::vec((0u64..600, 1u64..50), 0..30),
    ) {
        let mut x = SparseBitmap::with_chunk_shift(len, 6);
        let mut y = SparseBitmap::with_chunk_shift(len, 6);
        let mut m = vec![false; len as usize];
        for &(s, n) in &a {
            let (s, e) = (s.min(len), (s + n).min(len));
            x.set_range(s..e);
            m[s as usize..e as usize].fill(true);
        }
        for &(s, n) in &b {
            let (s, e) = (s.min(len), (s + n).min(len));
            y.set_range(s..e);
            m[s as usize..e as usize].fill(true);
        }
        x.union_with(&y);
        prop_assert_eq!(x.runs().collect::<Vec<_>>(), model_runs(&m));
    }

    #[test]
    fn rle_decoder_never_panics_on_garbage(len in 0u64..200, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = SparseBitmap::decode_rle(&bytes, len);
        let mut framed = vec![b'R', 1, len as u8];
        framed.extend_from_slice(&bytes);
        if let Ok(bm) = SparseBitmap::decode_rle(&framed, len) {
            // Whatever decodes re-encodes to something that decodes to the same bitmap.
            prop_assert_eq!(SparseBitmap::decode_rle(&bm.encode_rle(), len).unwrap(), bm);
        }
    }
}

#[test]
fn default_chunks_handle_ranges_across_chunk_boundaries() {
    let len = (1u64 << 20) * 3 + 17;
    let mut bm = SparseBitmap::new(len);
    bm.set_range((1 << 20) - 5..(1 << 20) + 5);
    bm.set_range(2 << 20..len);
    assert_eq!(
        bm.runs().collect::<Vec<_>>(),
        vec![(1 << 20) - 5..(1 << 20) + 5, 2 << 20..len]
    );
    assert_eq!(bm.count(), 10 + len - (2 << 20));
    bm.clear_range(0..len);
    assert!(bm.is_clear());
}

#[test]
fn rle_rejects_malformed_input_with_a_reason() {
    let d = SparseBitmap::decode_rle;
    assert_eq!(d(&[], 10), Err(RleError::Truncated { offset: 0 }));
    assert_eq!(d(b"X", 10), Err(RleError::BadMagic { found: b'X' }));
    assert_eq!(d(&[b'R', 9], 10), Err(RleError::BadVersion { found: 9 }));
    // len 10, clear 0, set 20: past the end.
    assert!(matches!(
        d(&[b'R', 1, 10, 0, 20], 10),
        Err(RleError::PastEnd { .. })
    ));
    // len 10, clear 0, set 2, clear 0: zero-length clear run in the middle.
    assert!(matches!(
        d(&[b'R', 1, 10, 0, 2, 0, 1], 10),
        Err(RleError::ZeroRun { .. })
    ));
    // A clear run with no set run after it.
    assert!(matches!(
        d(&[b'R', 1, 10, 3], 10),
        Err(RleError::DanglingClearRun { .. })
    ));
    // Overlong varint.
    let overlong = [
        b'R', 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ];
    assert!(matches!(d(&overlong, 10), Err(RleError::BadVarint { .. })));
    // A huge claimed length (found by the fuzzer: one run of 2^50 bits exhausted memory) is refused
    // before anything is allocated.
    let huge = [
        b'R', 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ];
    assert!(matches!(
        d(&huge, 1 << 32),
        Err(RleError::WrongLength {
            expected: 0x1_0000_0000,
            ..
        })
    ));
}
