//! Node identities: [`NodeId`] and small sets of them ([`NodeSet`]).
//!
//! Every node of a resource has a node id 0–63, fixed when its metadata is created; bitmap slots, the
//! per-peer bitmap UUIDs and the quorum vote are all indexed by it. A newtype keeps node ids from being
//! mixed up with bitmap slot numbers or counts, and [`NodeId::new`] makes an out-of-range id
//! unrepresentable, so code indexing a 32-entry array with [`NodeId::index`] cannot go out of bounds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The number of node ids (and so of peer slots in the generation identifiers): DRBD's 32.
pub const MAX_NODES: usize = 64;

/// A node id was outside 0–63 or was not a number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid node id {input:?}: node ids are whole numbers from 0 to 63")]
pub struct InvalidNodeId {
    /// The rejected value as given.
    pub input: String,
}

/// The id of one node of a resource, 0–63.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NodeId(u8);

impl NodeId {
    /// The largest valid node id.
    pub const MAX: NodeId = NodeId(MAX_NODES as u8 - 1);

    /// Checks that `id` is a valid node id (0–63).
    pub fn new(id: u8) -> Result<Self, InvalidNodeId> {
        if usize::from(id) < MAX_NODES {
            Ok(NodeId(id))
        } else {
            Err(InvalidNodeId {
                input: id.to_string(),
            })
        }
    }

    /// The id as a number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The id as an index into per-node arrays of length [`MAX_NODES`]; always in bounds.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every valid node id, ascending.
    pub fn all() -> impl Iterator<Item = NodeId> {
        (0..MAX_NODES as u8).map(NodeId)
    }
}

impl TryFrom<u8> for NodeId {
    type Error = InvalidNodeId;

    fn try_from(id: u8) -> Result<Self, Self::Error> {
        NodeId::new(id)
    }
}

impl From<NodeId> for u8 {
    fn from(id: NodeId) -> u8 {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = InvalidNodeId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidNodeId { input: s.to_owned() };
        let id: u8 = s.trim().parse().map_err(|_| invalid())?;
        NodeId::new(id).map_err(|_| invalid())
    }
}

/// A set of node ids, stored as a 64-bit mask (bit *n* = node *n*).
///
/// Used for "the peers that are absent", "the peers at the same generation", and similar inputs to the
/// rotation rules; it is `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NodeSet(u64);

impl NodeSet {
    /// The empty set.
    pub const EMPTY: NodeSet = NodeSet(0);

    /// The set holding exactly `node`.
    pub const fn single(node: NodeId) -> Self {
        NodeSet(1 << node.0)
    }

    /// The set as a bit mask (bit *n* = node *n*), e.g. for the wire format.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set with the members given by the bits of `mask`.
    pub const fn from_bits(mask: u64) -> Self {
        NodeSet(mask)
    }

    /// Whether `node` is in the set.
    pub const fn contains(self, node: NodeId) -> bool {
        self.0 & (1 << node.0) != 0
    }

    /// Adds `node`.
    pub fn insert(&mut self, node: NodeId) {
        self.0 |= 1 << node.0;
    }

    /// Removes `node`.
    pub fn remove(&mut self, node: NodeId) {
        self.0 &= !(1 << node.0);
    }

    /// The set without `node`.
    #[must_use]
    pub const fn without(self, node: NodeId) -> Self {
        NodeSet(self.0 & !(1 << node.0))
    }

    /// The members of both sets.
    #[must_use]
    pub const fn union(self, other: NodeSet) -> Self {
        NodeSet(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The number of members.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The members, ascending.
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        NodeId::all().filter(move |n| self.contains(*n))
    }
}

impl FromIterator<NodeId> for NodeSet {
    fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
        let mut set = NodeSet::EMPTY;
        for node in iter {
            set.insert(node);
        }
        set
    }
}

impl fmt::Display for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, node) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{node}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_accepts_0_to_63_only() {
        assert_eq!(NodeId::new(0).unwrap().get(), 0);
        assert_eq!(NodeId::new(63).unwrap(), NodeId::MAX);
        assert!(NodeId::new(64).is_err());
        assert!(NodeId::new(255).is_err());
    }

    #[test]
    fn node_id_parses_and_displays_as_a_number() {
        assert_eq!("7".parse::<NodeId>().unwrap(), NodeId::new(7).unwrap());
        assert_eq!(NodeId::new(7).unwrap().to_string(), "7");
        let err = "64".parse::<NodeId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid node id \"64\": node ids are whole numbers from 0 to 63"
        );
        assert!("x".parse::<NodeId>().is_err());
        assert!(NodeId::try_from(70).is_err());
    }

    #[test]
    fn node_set_operations() {
        let a = NodeId::new(1).unwrap();
        let b = NodeId::new(31).unwrap();
        let mut set: NodeSet = [a, b].into_iter().collect();
        assert!(set.contains(a) && set.contains(b));
        assert_eq!(set.len(), 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(set.to_string(), "{1,31}");
        set.remove(a);
        assert_eq!(set, NodeSet::single(b));
        assert!(set.without(b).is_empty());
        assert_eq!(
            NodeSet::single(a).union(NodeSet::single(b)).bits(),
            (1 << 1) | (1 << 31)
        );
    }
}
