//! Hand-written schedules in the spirit of the DRBD test suite (quorum-isolate-primary, split-brain,
//! last man standing, quorum-tiebreaker), checked step by step by the same invariants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use replbd_quorum::quorum::{OnNoQuorum, QuorumPolicy};
use replbd_quorum::split_brain::SplitBrainPolicies;
use replbd_quorum::{DiskState, QuorumConfig, Role};
use replbd_sim::cluster::Cluster;
use replbd_sim::invariants::Checker;
use replbd_sim::net::{Link, StandAloneReason};
use replbd_sim::step::pair_bit;
use replbd_sim::{Faults, SimConfig, Step};

fn config(nodes: usize, diskless: u32, quorum: QuorumPolicy) -> SimConfig {
    SimConfig {
        seed: 7,
        nodes,
        diskless,
        steps: 0,
        quorum: QuorumConfig {
            quorum,
            minimum_redundancy: QuorumPolicy::Off,
            on_no_quorum: OnNoQuorum::IoError,
        },
        policies: SplitBrainPolicies::default(),
        faults: Faults::default(),
    }
}

/// A cluster with a checker that runs after every step.
struct Run {
    c: Cluster,
    checker: Checker,
}

impl Run {
    fn new(cfg: &SimConfig) -> Self {
        Self {
            c: Cluster::new(cfg, true),
            checker: Checker::new(cfg.nodes),
        }
    }

    fn step(&mut self, step: Step) {
        self.c.apply(&step);
        let violation = self.checker.check(&self.c);
        assert!(violation.is_none(), "{violation:?}");
    }

    /// Delivers every message and runs every resync to its end.
    fn drain(&mut self) {
        let n = self.c.cfg.nodes as u8;
        loop {
            let deliver = (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .find(|&(a, b)| self.c.net.queued(a.into(), b.into()) > 0);
            if let Some((from, to)) = deliver {
                self.step(Step::Deliver { from, to });
                continue;
            }
            let rs = self.c.net.resyncs().find(|r| self.c.resync_can_step(r));
            match rs {
                Some(r) => self.step(Step::ResyncStep {
                    source: r.source as u8,
                    target: r.target as u8,
                }),
                None => break,
            }
        }
    }

    fn acked(&self) -> usize {
        self.c.writes.acked_count()
    }
}

fn groups(a: &[usize], b: &[usize]) -> u32 {
    let mut reach = 0;
    for g in [a, b] {
        for (i, x) in g.iter().enumerate() {
            for y in &g[i + 1..] {
                reach |= pair_bit(*x, *y);
            }
        }
    }
    reach
}

#[test]
fn an_isolated_primary_fails_writes_and_rejoins_as_sync_target() {
    let mut r = Run::new(&config(3, 0, QuorumPolicy::Majority));
    r.step(Step::Promote { node: 0 });
    r.drain();
    r.step(Step::Write { node: 0, block: 1 });
    r.drain();
    assert_eq!(r.acked(), 1);

    r.step(Step::Partition {
        reach: groups(&[0], &[1, 2]),
    });
    assert!(!r.c.nodes[0].quorate && r.c.nodes[0].disk.gi.flags.primary_lost_quorum);
    r.step(Step::Write { node: 0, block: 2 });
    r.drain();
    assert_eq!(r.acked(), 1, "the isolated Primary completes no write (EIO)");

    r.step(Step::Promote { node: 1 });
    assert_eq!(r.c.nodes[1].role, Role::Primary);
    r.drain();
    r.step(Step::Write { node: 1, block: 3 });
    r.drain();
    assert_eq!(r.acked(), 2);

    r.step(Step::Demote { node: 0 });
    r.step(Step::Heal);
    r.step(Step::Connect { a: 0, b: 1 });
    assert_eq!(r.c.net.link(0, 1), Link::Connected);
    assert_eq!(
        r.c.stats.split_brains, 0,
        "a Primary that lost quorum rejoins without split brain"
    );
    r.drain();
    r.step(Step::Connect { a: 0, b: 2 });
    r.drain();
    assert_eq!(r.c.nodes[0].disk_state, DiskState::UpToDate);
    assert_eq!(r.c.nodes[0].disk.data, r.c.nodes[1].disk.data);
}

#[test]
fn split_brain_is_seen_on_both_sides_and_resolved_by_discard_my_data() {
    let mut r = Run::new(&config(3, 0, QuorumPolicy::Off));
    r.step(Step::Promote { node: 0 });
    r.drain();
    r.step(Step::Partition {
        reach: groups(&[0], &[1, 2]),
    });
    r.step(Step::Promote { node: 1 });
    r.step(Step::Write { node: 0, block: 1 });
    r.step(Step::Write { node: 1, block: 2 });
    r.drain();
    assert_eq!(r.acked(), 2);
    r.step(Step::Demote { node: 1 });
    r.step(Step::Heal);
    r.step(Step::Connect { a: 0, b: 1 });
    assert_eq!(r.c.net.link(0, 1), Link::StandAlone(StandAloneReason::SplitBrain));
    assert_eq!(r.c.stats.split_brains, 1);

    r.step(Step::DiscardMyData { victim: 1, peer: 0 });
    r.drain();
    assert_eq!(r.c.nodes[1].disk_state, DiskState::UpToDate);
    assert_eq!(r.c.nodes[1].disk.data, r.c.nodes[0].disk.data);
    let discarded = (1..=2)
        .filter(|id| r.c.writes.get(*id).is_some_and(|w| w.discarded))
        .count();
    assert_eq!(discarded, 1, "the victim's write is discarded, explicitly");
}

#[test]
fn last_man_standing_keeps_a_lone_primary_writing() {
    let mut r = Run::new(&config(3, 0, QuorumPolicy::Majority));
    r.step(Step::Promote { node: 0 });
    r.drain();
    r.step(Step::Down { node: 1 });
    r.step(Step::Down { node: 2 });
    assert!(
        r.c.nodes[0].quorate,
        "Secondaries taken down cleanly are Outdated"
    );
    r.step(Step::Write { node: 0, block: 4 });
    r.drain();
    assert_eq!(r.acked(), 1);
    // A crashed Secondary is different: nothing is known about it.
    let mut r = Run::new(&config(3, 0, QuorumPolicy::Majority));
    r.step(Step::Promote { node: 0 });
    r.drain();
    r.step(Step::Down { node: 1 });
    r.step(Step::Crash { node: 2 });
    assert!(!r.c.nodes[0].quorate);
}

#[test]
fn the_diskless_tiebreaker_keeps_quorum_on_one_side_only() {
    // n0, n1 diskful; n2 a diskless tiebreaker.
    let mut r = Run::new(&config(3, 1 << 2, QuorumPolicy::Majority));
    r.step(Step::Promote { node: 0 });
    r.drain();
    r.step(Step::Partition {
        reach: groups(&[0, 2], &[1]),
    });
    assert!(r.c.nodes[0].quorate && !r.c.nodes[1].quorate);
    r.step(Step::Write { node: 0, block: 5 });
    r.drain();
    assert_eq!(r.acked(), 1);
    r.step(Step::Demote { node: 0 });
    r.step(Step::Promote { node: 1 });
    assert_eq!(
        r.c.nodes[1].role,
        Role::Secondary,
        "the side without the tiebreaker may not promote"
    );
}
