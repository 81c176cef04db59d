//! One step of a schedule: an event the outside world (network, operator, HA agent, application)
//! causes. A schedule is a list of steps; its trace is the same list, printed.
//!
//! Steps are concrete (which node, which block, which link) and are chosen while the schedule runs,
//! looking at the cluster's state, so most of them do something. Replaying a list of steps needs no
//! randomness, which is what makes shrinking possible: remove a step and run the rest again. A step
//! that no longer applies after a removal (a write on a node that is not Primary any more) does
//! nothing.

use std::fmt;

/// Bit of the pair `a`–`b` (in any order) in a reachability mask.
pub const fn pair_bit(a: usize, b: usize) -> u32 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    1 << (hi * (hi - 1) / 2 + lo)
}

/// The mask with every pair of `n` nodes reachable.
pub const fn full_reach(n: usize) -> u32 {
    let pairs = n * (n - 1) / 2;
    if pairs >= 32 { u32::MAX } else { (1 << pairs) - 1 }
}

/// An event of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The application writes one block on `node` (only a Primary accepts it).
    Write {
        /// The node.
        node: u8,
        /// The block written.
        block: u8,
    },
    /// The oldest message on the link `from`→`to` arrives.
    Deliver {
        /// Sender.
        from: u8,
        /// Receiver.
        to: u8,
    },
    /// The sync source sends the next out-of-sync block (or, when none is left, says it is done).
    ResyncStep {
        /// Sync source.
        source: u8,
        /// Sync target.
        target: u8,
    },
    /// The two nodes, able to reach each other, connect and run the handshake.
    Connect {
        /// One end.
        a: u8,
        /// The other end.
        b: u8,
    },
    /// The network changes: only the pairs in `reach` can talk. Connections across a cut break.
    Partition {
        /// Bit [`pair_bit`] set: that pair can reach each other.
        reach: u32,
    },
    /// The network heals: every pair can talk again.
    Heal,
    /// A message is lost: the connection between the two breaks (TCP) and both sides notice.
    Break {
        /// One end.
        a: u8,
        /// The other end.
        b: u8,
    },
    /// The node crashes: everything in memory is lost, the disk and metadata stay.
    Crash {
        /// The node.
        node: u8,
    },
    /// A crashed or stopped node starts again.
    Restart {
        /// The node.
        node: u8,
    },
    /// The administrator takes a Secondary down cleanly.
    Down {
        /// The node.
        node: u8,
    },
    /// The HA agent promotes the node (through `can_promote` and `evaluate_quorum`).
    Promote {
        /// The node.
        node: u8,
    },
    /// The HA agent demotes the node; writes waiting for quorum fail.
    Demote {
        /// The node.
        node: u8,
    },
    /// The administrator connects a StandAlone pair again.
    OperatorConnect {
        /// One end.
        a: u8,
        /// The other end.
        b: u8,
    },
    /// The administrator connects `victim` to `peer` with `--discard-my-data`.
    DiscardMyData {
        /// The node whose changes are dropped.
        victim: u8,
        /// The peer.
        peer: u8,
    },
}

/// Formats a reachability mask: groups when the reachable pairs form disjoint groups, otherwise the
/// list of cut pairs.
pub struct ReachDisplay {
    /// The mask.
    pub reach: u32,
    /// Node count.
    pub nodes: usize,
}

impl fmt::Display for ReachDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nodes;
        let reach = |a: usize, b: usize| self.reach & pair_bit(a, b) != 0;
        let mut group_of = vec![usize::MAX; n];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for a in 0..n {
            if group_of[a] != usize::MAX {
                continue;
            }
            let id = groups.len();
            group_of[a] = id;
            let mut g = vec![a];
            for (b, slot) in group_of.iter_mut().enumerate().skip(a + 1) {
                if *slot == usize::MAX && reach(a, b) {
                    *slot = id;
                    g.push(b);
                }
            }
            groups.push(g);
        }
        let cliques = (0..n).all(|a| (a + 1..n).all(|b| reach(a, b) == (group_of[a] == group_of[b])));
        if cliques {
            for (i, g) in groups.iter().enumerate() {
                let names: Vec<String> = g.iter().map(|x| format!("n{x}")).collect();
                write!(f, "{}{{{}}}", if i > 0 { " | " } else { "" }, names.join(","))?;
            }
            Ok(())
        } else {
            f.write_str("cut")?;
            for a in 0..n {
                for b in a + 1..n {
                    if !reach(a, b) {
                        write!(f, " n{a}-n{b}")?;
                    }
                }
            }
            Ok(())
        }
    }
}

impl Step {
    /// The step as a trace line, for a cluster of `nodes` nodes.
    pub fn describe(&self, nodes: usize) -> String {
        match *self {
            Step::Write { node, block } => format!("write n{node} block {block}"),
            Step::Deliver { from, to } => format!("deliver n{from}->n{to}"),
            Step::ResyncStep { source, target } => format!("resync step n{source}->n{target}"),
            Step::Connect { a, b } => format!("connect n{a}-n{b}"),
            Step::Partition { reach } => format!("partition {}", ReachDisplay { reach, nodes }),
            Step::Heal => "heal the network".to_owned(),
            Step::Break { a, b } => format!("message lost: connection n{a}-n{b} breaks"),
            Step::Crash { node } => format!("crash n{node}"),
            Step::Restart { node } => format!("restart n{node}"),
            Step::Down { node } => format!("take n{node} down cleanly"),
            Step::Promote { node } => format!("HA agent promotes n{node}"),
            Step::Demote { node } => format!("HA agent demotes n{node}"),
            Step::OperatorConnect { a, b } => format!("operator connects n{a}-n{b}"),
            Step::DiscardMyData { victim, peer } => {
                format!("operator connects n{victim} to n{peer} with --discard-my-data")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_bits_are_distinct_and_symmetric() {
        let mut seen = 0u32;
        for a in 0..7 {
            for b in a + 1..7 {
                assert_eq!(pair_bit(a, b), pair_bit(b, a));
                assert_eq!(seen & pair_bit(a, b), 0);
                seen |= pair_bit(a, b);
            }
        }
        assert_eq!(seen, full_reach(7));
    }

    #[test]
    fn partitions_print_as_groups_or_cuts() {
        let reach = pair_bit(0, 1) | pair_bit(2, 3) | pair_bit(2, 4) | pair_bit(3, 4);
        assert_eq!(
            Step::Partition { reach }.describe(5),
            "partition {n0,n1} | {n2,n3,n4}"
        );
        let cut = full_reach(3) & !pair_bit(0, 2);
        assert_eq!(Step::Partition { reach: cut }.describe(3), "partition cut n0-n2");
    }
}
