//! Choosing steps: random ones while the schedule runs, then deterministic ones that heal and settle
//! the cluster so invariant 2 can be checked at the end.
//!
//! Random steps are drawn by looking at the cluster (only Primaries get writes, only links with
//! messages get deliveries), with weights that keep traffic flowing between faults: most steps
//! deliver messages, write or resync; a few partition, heal, break connections, crash, restart, take
//! nodes down, promote (the HA agent picks a Secondary with UpToDate data and no Primary in its part
//! of the cluster; `can_promote` decides) or demote (often a Primary that lost quorum), and the
//! administrator reconnects StandAlone nodes, sometimes with `--discard-my-data`.
//!
//! The settling phase acts like an operator after the storm: heal the network, restart every node,
//! let all messages and resyncs finish, have the HA agent demote Primaries without quorum (or all but
//! one Primary), connect everything, resolve remaining split brains with `--discard-my-data` on the
//! Inconsistent node or else the one with fewer changes, and reconnect links that still have blocks
//! marked out of sync.

use replbd_quorum::DiskState;

use crate::cluster::Cluster;
use crate::config::BLOCKS;
use crate::net::{Link, StandAloneReason};
use crate::node::members;
use crate::rng::Rng;
use crate::step::{Step, full_reach, pair_bit};

/// A random next step, or `None` if nothing at all can happen.
pub fn random_step(rng: &mut Rng, c: &Cluster) -> Option<Step> {
    let n = c.cfg.nodes;
    let all = c.all_nodes();
    let up = |i: usize| c.nodes[i].up;
    let pairs = || (0..n).flat_map(move |a| (a + 1..n).map(move |b| (a, b)));
    let u = |i: usize| i as u8;
    let mut menu: Vec<(usize, Vec<Step>)> = Vec::new();

    let primaries: Vec<Step> = members(c.primaries(all))
        .map(|p| Step::Write {
            node: u(p),
            block: rng.below(BLOCKS) as u8,
        })
        .collect();
    menu.push((25, primaries));

    let deliveries: Vec<Step> = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .filter(|&(a, b)| c.net.queued(a, b) > 0 && c.net.connected(a, b))
        .map(|(a, b)| Step::Deliver { from: u(a), to: u(b) })
        .collect();
    menu.push((35, deliveries));

    let resyncs: Vec<Step> = c
        .net
        .resyncs()
        .filter(|r| c.resync_can_step(r))
        .map(|r| Step::ResyncStep {
            source: u(r.source),
            target: u(r.target),
        })
        .collect();
    menu.push((12, resyncs));

    let connects: Vec<Step> = pairs()
        .filter(|&(a, b)| c.net.link(a, b) == Link::Down && up(a) && up(b) && c.net.reachable(a, b))
        .map(|(a, b)| Step::Connect { a: u(a), b: u(b) })
        .collect();
    menu.push((10, connects));

    menu.push((
        3,
        vec![Step::Partition {
            reach: random_partition(rng, n),
        }],
    ));
    if !c.net.healed() {
        menu.push((3, vec![Step::Heal]));
    }
    let breaks: Vec<Step> = pairs()
        .filter(|&(a, b)| c.net.connected(a, b))
        .map(|(a, b)| Step::Break { a: u(a), b: u(b) })
        .collect();
    menu.push((2, breaks));

    let running: Vec<usize> = (0..n).filter(|i| up(*i)).collect();
    menu.push((2, running.iter().map(|&i| Step::Crash { node: u(i) }).collect()));
    menu.push((
        5,
        (0..n)
            .filter(|i| !up(*i))
            .map(|i| Step::Restart { node: u(i) })
            .collect(),
    ));
    menu.push((
        1,
        running
            .iter()
            .filter(|&&i| !c.nodes[i].is_primary())
            .map(|&i| Step::Down { node: u(i) })
            .collect(),
    ));

    let candidates: Vec<Step> = running
        .iter()
        .filter(|&&i| {
            let x = &c.nodes[i];
            !x.diskless
                && !x.is_primary()
                && x.disk_state == DiskState::UpToDate
                && c.primaries(c.component(i)) == 0
        })
        .map(|&i| Step::Promote { node: u(i) })
        .collect();
    menu.push((5, candidates));
    let quorumless: Vec<Step> = members(c.primaries(all))
        .filter(|&p| !c.nodes[p].quorate)
        .map(|p| Step::Demote { node: u(p) })
        .collect();
    menu.push((6, quorumless));
    menu.push((
        1,
        members(c.primaries(all))
            .map(|p| Step::Demote { node: u(p) })
            .collect(),
    ));

    let standalone: Vec<(usize, usize, StandAloneReason)> = pairs()
        .filter_map(|(a, b)| match c.net.link(a, b) {
            Link::StandAlone(r) if up(a) && up(b) && c.net.reachable(a, b) => Some((a, b, r)),
            _ => None,
        })
        .collect();
    menu.push((
        2,
        standalone
            .iter()
            .map(|&(a, b, _)| Step::OperatorConnect { a: u(a), b: u(b) })
            .collect(),
    ));
    menu.push((
        2,
        standalone
            .iter()
            .filter(|(_, _, r)| *r == StandAloneReason::SplitBrain)
            .map(|&(a, b, _)| {
                let (victim, peer) = if rng.chance(50) { (a, b) } else { (b, a) };
                Step::DiscardMyData {
                    victim: u(victim),
                    peer: u(peer),
                }
            })
            .collect(),
    ));

    let total: usize = menu.iter().filter(|(_, s)| !s.is_empty()).map(|(w, _)| w).sum();
    let mut pick = rng.below(total);
    for (weight, steps) in menu.iter().filter(|(_, s)| !s.is_empty()) {
        if pick < *weight {
            return rng.pick(steps);
        }
        pick -= weight;
    }
    None
}

/// A random reachability mask: two or three groups, or random cut pairs.
fn random_partition(rng: &mut Rng, n: usize) -> u32 {
    if rng.chance(65) {
        let groups = 2 + rng.below(2);
        let group: Vec<usize> = (0..n).map(|_| rng.below(groups)).collect();
        let mut reach = 0;
        for a in 0..n {
            for b in a + 1..n {
                if group[a] == group[b] {
                    reach |= pair_bit(a, b);
                }
            }
        }
        reach
    } else {
        let mut reach = full_reach(n);
        for a in 0..n {
            for b in a + 1..n {
                if rng.chance(35) {
                    reach &= !pair_bit(a, b);
                }
            }
        }
        reach
    }
}

/// The operator's deterministic steps after the random part.
#[derive(Debug, Clone, Default)]
pub struct Settler {
    tried: u32,
    bounced: u32,
}

impl Settler {
    /// The next settling step, or `None` when there is nothing left to do.
    pub fn next(&mut self, c: &Cluster) -> Option<Step> {
        let step = self.pick(c);
        match step {
            Some(Step::Connect { a, b }) => self.tried |= pair_bit(a.into(), b.into()),
            Some(_) => self.tried = 0,
            None => {}
        }
        step
    }

    fn pick(&mut self, c: &Cluster) -> Option<Step> {
        let n = c.cfg.nodes;
        let u = |i: usize| i as u8;
        if !c.net.healed() {
            return Some(Step::Heal);
        }
        if let Some(i) = (0..n).find(|i| !c.nodes[*i].up) {
            return Some(Step::Restart { node: u(i) });
        }
        for a in 0..n {
            for b in 0..n {
                if c.net.queued(a, b) > 0 && c.net.connected(a, b) {
                    return Some(Step::Deliver { from: u(a), to: u(b) });
                }
            }
        }
        if let Some(r) = c.net.resyncs().find(|r| c.resync_can_step(r)) {
            return Some(Step::ResyncStep {
                source: u(r.source),
                target: u(r.target),
            });
        }
        let primaries: Vec<usize> = members(c.primaries(c.all_nodes())).collect();
        let demote = primaries
            .iter()
            .rev()
            .find(|&&p| (c.cfg.quorum_enabled() && !c.nodes[p].quorate) || primaries.len() > 1);
        if let Some(&p) = demote
            && c.nodes[p].in_flight.iter().all(|w| w.waiting == 0)
        {
            return Some(Step::Demote { node: u(p) });
        }
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect();
        if let Some(&(a, b)) = pairs
            .iter()
            .find(|&&(a, b)| c.net.link(a, b) == Link::Down && self.tried & pair_bit(a, b) == 0)
        {
            return Some(Step::Connect { a: u(a), b: u(b) });
        }
        for &(a, b) in &pairs {
            match c.net.link(a, b) {
                Link::StandAlone(StandAloneReason::SplitBrain) => {
                    // An Inconsistent node cannot be a sync source, so it is the victim; otherwise
                    // the one with fewer changes.
                    let changes = |x: usize, y: usize| c.nodes[x].disk.bits[y].count_ones();
                    let inconsistent = |x: usize| c.nodes[x].disk_state == DiskState::Inconsistent;
                    let victim = if inconsistent(a) != inconsistent(b) {
                        if inconsistent(a) { a } else { b }
                    } else if changes(a, b) < changes(b, a) {
                        a
                    } else {
                        b
                    };
                    let peer = if victim == a { b } else { a };
                    if c.nodes[victim].is_primary() {
                        return Some(Step::Demote { node: u(victim) });
                    }
                    return Some(Step::DiscardMyData {
                        victim: u(victim),
                        peer: u(peer),
                    });
                }
                Link::StandAlone(StandAloneReason::RrConflict) => {
                    if let Some(p) = [a, b].into_iter().find(|x| c.nodes[*x].is_primary()) {
                        return Some(Step::Demote { node: u(p) });
                    }
                    return Some(Step::OperatorConnect { a: u(a), b: u(b) });
                }
                _ => {}
            }
        }
        let leftover = |a: usize, b: usize| {
            let (x, y) = (&c.nodes[a], &c.nodes[b]);
            let behind = |s: DiskState| matches!(s, DiskState::Outdated | DiskState::Consistent);
            !x.diskless
                && !y.diskless
                && c.net.connected(a, b)
                && (x.disk.bits[b] != 0
                    || y.disk.bits[a] != 0
                    || behind(x.disk_state)
                    || behind(y.disk_state))
        };
        if let Some(&(a, b)) = pairs
            .iter()
            .find(|&&(a, b)| leftover(a, b) && self.bounced & pair_bit(a, b) == 0)
        {
            self.bounced |= pair_bit(a, b);
            return Some(Step::Break { a: u(a), b: u(b) });
        }
        None
    }
}
