//! Seeded fault schedules: a run is a sequence of epochs, each a list of faults with how long each
//! lasts and how long the cluster runs healthy after it.
//!
//! A fault names a *role* (the Primary, the first or second Secondary), not a node: which node
//! that is depends on earlier failovers, and the injector resolves it when the fault starts (the
//! resolved node is written to the trace). The same seed gives the same sequence of faults and
//! timings; the exact interleaving with the workload's I/O and the daemons' timers is not
//! reproducible, so a replay repeats the schedule, not every byte.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::proxy::Mode;

/// One fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// `kill -9` of the Primary; the HA agent promotes a survivor; the node restarts after the hold.
    KillPrimary,
    /// `kill -9` of a Secondary; it restarts after the hold.
    KillSecondary {
        /// Which Secondary (by node order).
        nth: usize,
    },
    /// A clean stop (SIGTERM) of the Primary, failover, and a start after the hold.
    RestartPrimary,
    /// A clean stop (SIGTERM) of a Secondary and a start after the hold.
    RestartSecondary {
        /// Which Secondary.
        nth: usize,
    },
    /// Both links of the Primary fail: it is the minority side and loses quorum; the HA agent
    /// promotes a node on the majority side and demotes the old Primary.
    IsolatePrimary {
        /// Cut or blackhole.
        mode: Mode,
    },
    /// Both links of a Secondary fail: the Primary keeps quorum with the other Secondary.
    IsolateSecondary {
        /// Which Secondary.
        nth: usize,
        /// Cut or blackhole.
        mode: Mode,
    },
    /// Only the link between the Primary and one Secondary fails: every node keeps quorum
    /// through the third.
    CutLink {
        /// Which Secondary.
        nth: usize,
        /// Cut or blackhole.
        mode: Mode,
    },
    /// A Secondary is killed and restarted, and while it resyncs from the Primary, the Primary
    /// (its sync source) is killed too: the agent promotes the other Secondary.
    KillPrimaryDuringResync {
        /// Which Secondary is killed first.
        nth: usize,
        /// How long after the Secondary's restart the Primary dies.
        after_ms: u64,
    },
    /// A link fails and recovers repeatedly, each outage shorter than or close to the ping
    /// timeout: connections that stall and resume, or drop and reconnect in quick succession.
    Flap {
        /// One end (node index).
        a: usize,
        /// The other end (node index).
        b: usize,
        /// Cut or blackhole.
        mode: Mode,
        /// How many outages.
        times: u32,
        /// Each outage, in milliseconds (the link is up as long between them).
        outage_ms: u64,
    },
    /// A Secondary's disk fails — every write or read (a dead disk), or those of one MiB — and the
    /// node detaches, going on without a disk; after the hold the disk is repaired and reattached
    /// (`down`, `up`: it comes back Outdated and resyncs what it missed).
    DiskFailure {
        /// Which Secondary.
        nth: usize,
        /// What fails.
        failing: DiskFault,
    },
    /// The Primary's disk fails the same ways: it detaches and serves reads and writes through its
    /// peers; after the hold it is stopped cleanly (failover), started and brought up again.
    PrimaryDiskFailure {
        /// What fails.
        failing: DiskFault,
    },
    /// One link loses a share of its packets in both directions (nftables); TCP retransmits.
    LossyLink {
        /// One end (node index).
        a: usize,
        /// The other end (node index).
        b: usize,
        /// Percent of packets dropped.
        percent: u32,
    },
    /// One link gets latency and a byte-rate ceiling.
    SlowLink {
        /// One end (node index).
        a: usize,
        /// The other end (node index).
        b: usize,
        /// Added latency per relayed chunk.
        delay_ms: u64,
        /// Byte-rate ceiling in KiB/s.
        rate_kib_per_s: u64,
    },
}

/// What a failing disk fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiskFault {
    /// Reads fail, not writes.
    pub reads: bool,
    /// Every request of that kind fails, not only one MiB's.
    pub whole: bool,
    /// The failing MiB (when not `whole`).
    pub mib: u64,
}

impl std::fmt::Display for DiskFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.reads { "read" } else { "write" };
        if self.whole {
            write!(f, "every {what}")
        } else {
            write!(f, "{what}s of MiB {}", self.mib)
        }
    }
}

impl Fault {
    /// The kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillPrimary => "kill-primary",
            Fault::KillSecondary { .. } => "kill-secondary",
            Fault::RestartPrimary => "restart-primary",
            Fault::RestartSecondary { .. } => "restart-secondary",
            Fault::IsolatePrimary { .. } => "isolate-primary",
            Fault::IsolateSecondary { .. } => "isolate-secondary",
            Fault::CutLink { .. } => "cut-link",
            Fault::SlowLink { .. } => "slow-link",
            Fault::LossyLink { .. } => "lossy-link",
            Fault::PrimaryDiskFailure { .. } => "primary-disk-failure",
            Fault::KillPrimaryDuringResync { .. } => "kill-primary-during-resync",
            Fault::Flap { .. } => "flap-link",
            Fault::DiskFailure { .. } => "disk-failure",
        }
    }
}

/// A fault and its timing.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Step {
    /// The fault.
    pub fault: Fault,
    /// How long it lasts before the node restarts or the link heals.
    pub hold_ms: u64,
    /// How long the cluster runs without a fault afterwards.
    pub gap_ms: u64,
}

/// Which fault kinds a schedule may draw.
#[derive(Clone, Copy, Debug)]
pub struct Enabled {
    /// Kills and clean restarts.
    pub crashes: bool,
    /// Partitions and link cuts.
    pub partitions: bool,
    /// Slow links.
    pub slow_links: bool,
    /// Lossy links.
    pub lossy_links: bool,
    /// Disk write errors.
    pub disk_errors: bool,
}

/// The schedule generator of one seed.
pub struct Schedule {
    rng: StdRng,
    enabled: Enabled,
    epoch_ms: u64,
}

impl Schedule {
    /// The schedule of `seed`, with epochs of about `epoch_ms` of faults each.
    pub fn new(seed: u64, enabled: Enabled, epoch_ms: u64) -> Schedule {
        Schedule {
            rng: StdRng::seed_from_u64(seed),
            enabled,
            epoch_ms,
        }
    }

    fn mode(&mut self) -> Mode {
        if self.rng.random_bool(0.5) {
            Mode::Cut
        } else {
            Mode::Blackhole
        }
    }

    /// A disk fault: writes more often than reads (a Secondary reads only to serve a resync).
    fn disk_fault(&mut self) -> DiskFault {
        DiskFault {
            reads: self.rng.random_bool(0.3),
            whole: self.rng.random_bool(0.5),
            mib: self.rng.random_range(0..4),
        }
    }

    /// Two different nodes.
    fn pair(&mut self) -> (usize, usize) {
        let a = self.rng.random_range(0..3);
        (a, (a + self.rng.random_range(1..3)) % 3)
    }

    fn fault(&mut self) -> Option<Fault> {
        let mut choices: Vec<(u32, u8)> = Vec::new();
        if self.enabled.crashes {
            choices.extend([(3, 0), (2, 1), (1, 2), (1, 3), (2, 8)]);
        }
        if self.enabled.partitions {
            choices.extend([(3, 4), (2, 5), (2, 6), (2, 9)]);
        }
        if self.enabled.slow_links {
            choices.push((2, 7));
        }
        if self.enabled.lossy_links {
            choices.push((2, 11));
        }
        if self.enabled.disk_errors {
            choices.extend([(2, 10), (1, 12)]);
        }
        let total: u32 = choices.iter().map(|c| c.0).sum();
        if total == 0 {
            return None;
        }
        let mut pick = self.rng.random_range(0..total);
        let kind = choices.iter().find(|c| {
            if pick < c.0 {
                true
            } else {
                pick -= c.0;
                false
            }
        })?;
        let nth = self.rng.random_range(0..2);
        Some(match kind.1 {
            0 => Fault::KillPrimary,
            1 => Fault::KillSecondary { nth },
            2 => Fault::RestartPrimary,
            3 => Fault::RestartSecondary { nth },
            4 => Fault::IsolatePrimary { mode: self.mode() },
            5 => Fault::IsolateSecondary {
                nth,
                mode: self.mode(),
            },
            6 => Fault::CutLink {
                nth,
                mode: self.mode(),
            },
            8 => Fault::KillPrimaryDuringResync {
                nth,
                after_ms: self.rng.random_range(0..=600),
            },
            10 => Fault::DiskFailure {
                nth,
                failing: self.disk_fault(),
            },
            12 => Fault::PrimaryDiskFailure {
                failing: self.disk_fault(),
            },
            11 => {
                let (a, b) = self.pair();
                Fault::LossyLink {
                    a,
                    b,
                    percent: self.rng.random_range(1..=20),
                }
            }
            9 => {
                let (a, b) = self.pair();
                Fault::Flap {
                    a,
                    b,
                    mode: self.mode(),
                    times: self.rng.random_range(2..=6),
                    outage_ms: self.rng.random_range(100..=1500),
                }
            }
            _ => {
                let (a, b) = self.pair();
                Fault::SlowLink {
                    a,
                    b,
                    delay_ms: self.rng.random_range(1..=40),
                    rate_kib_per_s: self.rng.random_range(256..=8192),
                }
            }
        })
    }

    /// The next epoch's steps.
    pub fn next_epoch(&mut self) -> Vec<Step> {
        let mut steps = Vec::new();
        let mut total = 0;
        while total < self.epoch_ms {
            let Some(fault) = self.fault() else { break };
            let step = Step {
                fault,
                hold_ms: self.rng.random_range(1500..=7000),
                gap_ms: self.rng.random_range(500..=3000),
            };
            total += step.hold_ms + step.gap_ms;
            steps.push(step);
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Enabled = Enabled {
        crashes: true,
        partitions: true,
        slow_links: true,
        lossy_links: true,
        disk_errors: true,
    };

    #[test]
    fn a_seed_gives_the_same_schedule() {
        let mut a = Schedule::new(7, ALL, 20_000);
        let mut b = Schedule::new(7, ALL, 20_000);
        for _ in 0..5 {
            let (x, y) = (a.next_epoch(), b.next_epoch());
            assert_eq!(format!("{x:?}"), format!("{y:?}"));
            assert!(!x.is_empty());
        }
        let mut c = Schedule::new(8, ALL, 20_000);
        assert_ne!(
            format!("{:?}", Schedule::new(7, ALL, 20_000).next_epoch()),
            format!("{:?}", c.next_epoch())
        );
    }

    #[test]
    fn disabled_kinds_are_never_drawn() {
        let only_slow = Enabled {
            crashes: false,
            partitions: false,
            slow_links: true,
            lossy_links: false,
            disk_errors: false,
        };
        let mut s = Schedule::new(1, only_slow, 60_000);
        for step in s.next_epoch() {
            let Fault::SlowLink { a, b, .. } = step.fault else {
                panic!("{step:?}");
            };
            assert!(a != b && a < 3 && b < 3);
        }
        let none = Enabled {
            crashes: false,
            partitions: false,
            slow_links: false,
            lossy_links: false,
            disk_errors: false,
        };
        assert!(Schedule::new(1, none, 60_000).next_epoch().is_empty());
    }

    #[test]
    fn every_kind_is_drawn_eventually() {
        let mut s = Schedule::new(3, ALL, 60_000);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..20 {
            kinds.extend(s.next_epoch().iter().map(|s| s.fault.kind()));
        }
        assert_eq!(kinds.len(), 13, "{kinds:?}");
    }
}
