//! Identifiers and sizes used throughout the metadata: newtypes so a peer slot is never confused with a
//! node id, and size parsing that accepts what operators type (`4096`, `64MiB`, `1TiB`).

use std::fmt;

use serde::Serialize;
use thiserror::Error;

/// Largest node id a resource may use. A resource has at most 33 nodes (itself and 32 peers), and
/// ids need not be dense.
pub const MAX_NODE_ID: u8 = 63;

/// Most peer slots (bitmaps) a metadata area can hold.
pub const MAX_PEERS: usize = 32;

/// A node's id within a resource (0..=63).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeId(u8);

impl NodeId {
    /// A node id, if `id` is in range.
    pub fn new(id: u8) -> Option<NodeId> {
        (id <= MAX_NODE_ID).then_some(NodeId(id))
    }

    /// The raw id.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of a per-peer bitmap slot (0..max_peers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PeerSlot(pub u8);

impl PeerSlot {
    /// The slot as an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for PeerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A size string that could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid size {input:?}: {reason} (examples: 4096, 512KiB, 64MiB, 1TiB)")]
pub struct SizeError {
    input: String,
    reason: &'static str,
}

/// Parses `4096`, `4k`, `4KiB`, `64MiB`, `1TiB`, `2G` … as bytes (binary units; `k`/`KB`/`KiB` are all
/// 1024).
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = |reason| SizeError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let n: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(err("unknown unit")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| err("the size overflows 64 bits"))
}

/// Formats bytes with the largest binary unit that divides them exactly (`64MiB`, `4096` → `4KiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 5] = [(50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}")
}

/// Formats bytes for people: exact when a binary unit divides them, else one decimal (`127.2MiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 5] = [(50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift {
            if bytes.trailing_zeros() >= shift {
                return format!("{}{unit}", bytes >> shift);
            }
            return format!("{:.1}{unit}", bytes as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size(" 2G "), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("99999999999PiB").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn sizes_format_exactly() {
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(format_size(0), "0");
        assert_eq!(human_size(130304 << 10), "127.2MiB");
        assert_eq!(human_size(64 << 20), "64MiB");
        assert_eq!(human_size(100), "100B");
    }

    #[test]
    fn node_ids_are_bounded() {
        assert!(NodeId::new(63).is_some());
        assert!(NodeId::new(64).is_none());
    }
}
