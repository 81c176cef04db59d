//! The only source of randomness: SplitMix64, seeded from the schedule's seed.
//!
//! A schedule must replay bit for bit from its seed on any machine, in any build, forever: that is
//! what makes a printed seed worth having. So the simulator uses its own tiny generator (SplitMix64,
//! a well-known 64-bit mixer) rather than a library whose algorithm may change between versions, and
//! never reads the clock or the thread scheduler. Independent streams (the configuration, the steps,
//! the UUIDs) are derived from the seed with different constants, so changing how often one stream is
//! used (e.g. by removing steps while shrinking) does not shift the others.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

/// Purposes of the derived streams; each gets its own sequence from the same seed.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// The node count when a range was asked for.
    NodeCount = 1,
    /// The cluster configuration (quorum, policies, tiebreaker, schedule length).
    Config = 2,
    /// The random steps.
    Steps = 3,
    /// New UUIDs drawn by the simulated nodes.
    Uuids = 4,
}

impl Rng {
    /// A generator starting from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The stream `purpose` of schedule `seed`.
    pub fn stream(seed: u64, purpose: Stream) -> Self {
        let mut rng = Self::new(seed ^ (purpose as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0). The modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One element of `items`, if any.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len())).copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut s = Rng::stream(7, Stream::Steps);
        let mut u = Rng::stream(7, Stream::Uuids);
        assert_ne!(s.next_u64(), u.next_u64());
        // SplitMix64's published first output for seed 0.
        assert_eq!(Rng::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
        assert_eq!(r.pick::<u8>(&[]), None);
    }
}
