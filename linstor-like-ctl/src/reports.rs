//! Error reports: every failed request and every problem a node reports is kept with an id, so a
//! one-line error can point at the full story (`replbd error-reports show ID`), as in LINSTOR.
//!
//! Ids are `PREFIX-NNNNNN`: the prefix is the controller's start time in hex (unique per
//! controller run), the number counts up within that run.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// How many reports are kept; older ones are dropped.
pub const KEEP: usize = 1000;

/// One error report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Its id.
    pub id: String,
    /// Unix seconds.
    pub time: i64,
    /// `controller` or the node that reported it.
    pub origin: String,
    /// What was being done (`resource create r0`).
    pub context: String,
    /// The error.
    pub message: String,
    /// More: the chain of causes, the request.
    pub details: String,
}

/// Makes report ids.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    next: AtomicU64,
}

impl Ids {
    /// Ids for a controller started now.
    pub fn new() -> Ids {
        Ids {
            prefix: format!("{:08X}", crate::model::now_unix() as u32),
            next: AtomicU64::new(1),
        }
    }

    /// The next id.
    pub fn next(&self) -> String {
        format!("{}-{:06}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for Ids {
    fn default() -> Ids {
        Ids::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up() {
        let ids = Ids::new();
        let a = ids.next();
        let b = ids.next();
        assert!(a.ends_with("-000001") && b.ends_with("-000002"), "{a} {b}");
        assert_eq!(a.len(), 15);
    }
}
