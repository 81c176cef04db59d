//! The verdict on a healed cluster: compares what each UpToDate replica holds with the history.
//!
//! # The model
//!
//! A block's writes are sent one after another (see [`crate::history`]). When the cluster has
//! healed, a block may hold:
//!
//! - its **latest acknowledged** write of the epoch, or **any write sent after it** — those were
//!   in flight or failed (EIO without quorum, a killed Primary, a broken connection), and such a
//!   write may have reached the disks or not: a failure answer does not promise that nothing was
//!   written;
//! - when no write of the epoch was acknowledged: what it held at the last check (its baseline), or
//!   any write of the epoch.
//!
//! Anything else is a violation: an acknowledged write was lost (overwritten by an older write, or
//! by zeroes), and if a flush that completed was sent after its acknowledgement, it is reported
//! as a lost *flushed* write, the stronger promise. With protocol C every acknowledged write is on
//! every connected UpToDate replica, and a process crash (`kill -9`) loses nothing the kernel
//! accepted, so the suite holds every acknowledged write to this, flushed or not; the flush tells
//! the reader how bad a loss is.
//!
//! A block that decodes to another block number was written in the wrong place; one that fails its
//! checksum is torn or corrupt. Finally every UpToDate replica must hold the same bytes in every
//! block of the data area, written by the workload or not: a replica that says UpToDate while it
//! differs would serve wrong data after the next failover.

use crate::block::{self, BLOCK, Content};
use crate::history::{BlockHistory, History, Outcome};

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An acknowledged write is missing (an older write or zeroes instead).
    LostAckedWrite,
    /// An acknowledged write covered by a completed flush is missing.
    LostFlushedWrite,
    /// A block holds data from before the last check that it no longer held then.
    StaleData,
    /// A block holds a write addressed to another block.
    MisplacedBlock,
    /// A block is neither zeroes nor a valid written block.
    CorruptBlock,
    /// A read through the Primary, while the faults ran, returned an older write than the latest
    /// acknowledged one (or older data).
    StaleRead,
    /// Two UpToDate replicas differ.
    ReplicasDiffer,
    /// The cluster did not heal (every node UpToDate and connected) in time.
    HealTimeout,
    /// A daemon exited without being told to.
    DaemonExited,
}

impl Kind {
    /// The kebab-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LostAckedWrite => "lost-acked-write",
            Kind::LostFlushedWrite => "lost-flushed-write",
            Kind::StaleData => "stale-data",
            Kind::MisplacedBlock => "misplaced-block",
            Kind::CorruptBlock => "corrupt-block",
            Kind::StaleRead => "stale-read",
            Kind::ReplicasDiffer => "replicas-differ",
            Kind::HealTimeout => "heal-timeout",
            Kind::DaemonExited => "daemon-exited",
        }
    }
}

/// One violation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Violation {
    /// What went wrong.
    pub kind: Kind,
    /// The replica (node name, or `nbd:NODE` for the Primary's NBD export) where it was seen.
    pub replica: String,
    /// The block, when it is about one.
    pub block: Option<u64>,
    /// What was expected.
    pub expected: String,
    /// What was found.
    pub found: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.kind.name(), self.replica)?;
        if let Some(b) = self.block {
            write!(f, " block {b} (offset {})", b * BLOCK as u64)?;
        }
        write!(f, ": expected {}; found {}", self.expected, self.found)
    }
}

/// What a block may hold, described for a report.
fn describe_expected(h: &BlockHistory, from: Option<usize>, history: &History) -> String {
    match from {
        Some(k) => {
            let w = &h.writes[k];
            let flushed = match w.outcome {
                Outcome::Acked(t) if history.flushed(t) => ", flushed",
                _ => "",
            };
            let later: Vec<String> = h.writes[k + 1..].iter().map(|w| format!("#{}", w.id)).collect();
            if later.is_empty() {
                format!(
                    "write #{} (acknowledged{flushed}, sent at +{}ms)",
                    w.id, w.sent_ms
                )
            } else {
                format!(
                    "write #{} (acknowledged{flushed}, sent at +{}ms) or a later unacknowledged write ({})",
                    w.id,
                    w.sent_ms,
                    later.join(" ")
                )
            }
        }
        None => format!(
            "{} or one of this epoch's unacknowledged writes ({})",
            h.baseline,
            h.writes
                .iter()
                .map(|w| format!("#{}", w.id))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Checks one block's content against its history; `None` when it is allowed.
fn check_block(history: &History, replica: &str, b: u64, found: Content) -> Option<Violation> {
    let violation = |kind, expected: String| Violation {
        kind,
        replica: replica.to_owned(),
        block: Some(b),
        expected,
        found: found.to_string(),
    };
    let Some(h) = history.blocks.get(&b) else {
        return (found != Content::Zero).then(|| violation(Kind::StaleData, "zeroes (never written)".into()));
    };
    let last_acked = h
        .writes
        .iter()
        .rposition(|w| matches!(w.outcome, Outcome::Acked(_)));
    let is_write_from = |k: usize| {
        h.writes[k..]
            .iter()
            .any(|w| found == Content::Write { block: b, id: w.id })
    };
    let allowed = match last_acked {
        Some(k) => is_write_from(k),
        None => found == h.baseline || is_write_from(0),
    };
    if allowed {
        return None;
    }
    let expected = describe_expected(h, last_acked, history);
    let kind = match found {
        Content::Garbage => Kind::CorruptBlock,
        Content::Write { block, .. } if block != b => Kind::MisplacedBlock,
        _ => match last_acked.map(|k| h.writes[k].outcome) {
            Some(Outcome::Acked(t)) if history.flushed(t) => Kind::LostFlushedWrite,
            Some(_) => Kind::LostAckedWrite,
            None => Kind::StaleData,
        },
    };
    Some(violation(kind, expected))
}

/// Checks what a read of block `b` through `replica` returned while the workload ran: the same
/// rule as for a healed replica, applied to the writes answered so far (the reader owns the block,
/// so none is in flight).
pub fn check_read(history: &History, replica: &str, b: u64, data: &[u8]) -> Option<Violation> {
    check_block(history, replica, b, block::decode(data)).map(|mut v| {
        if matches!(
            v.kind,
            Kind::LostAckedWrite | Kind::LostFlushedWrite | Kind::StaleData
        ) {
            v.kind = Kind::StaleRead;
        }
        v
    })
}

/// Checks every block of one replica's data area against the history.
pub fn check_replica(history: &History, replica: &str, data: &[u8]) -> Vec<Violation> {
    data.chunks_exact(BLOCK)
        .enumerate()
        .filter_map(|(i, chunk)| check_block(history, replica, i as u64, block::decode(chunk)))
        .collect()
}

/// Compares the data areas of the UpToDate replicas (name, bytes) block by block; one violation
/// per block where any replica differs from the first.
pub fn compare_replicas(replicas: &[(String, Vec<u8>)]) -> Vec<Violation> {
    let Some((first_name, first)) = replicas.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, data) in &replicas[1..] {
        let blocks = first.chunks(BLOCK).zip(data.chunks(BLOCK)).enumerate();
        for (i, (a, b)) in blocks.filter(|(_, (a, b))| a != b) {
            out.push(Violation {
                kind: Kind::ReplicasDiffer,
                replica: name.clone(),
                block: Some(i as u64),
                expected: format!("{} as on {first_name}", block::decode(a)),
                found: block::decode(b).to_string(),
            });
        }
        if first.len() != data.len() {
            out.push(Violation {
                kind: Kind::ReplicasDiffer,
                replica: name.clone(),
                block: None,
                expected: format!("{} bytes as on {first_name}", first.len()),
                found: format!("{} bytes", data.len()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::encode;

    fn volume(blocks: &[Option<u64>]) -> Vec<u8> {
        let mut v = Vec::new();
        for (b, id) in blocks.iter().enumerate() {
            match id {
                Some(id) => v.extend(encode(b as u64, *id)),
                None => v.extend([0u8; BLOCK]),
            }
        }
        v
    }

    /// Block 0: #1 acked, #2 failed, #3 never answered. Block 1: #4 failed only.
    fn history() -> History {
        let mut h = History::new();
        let w1 = h.begin_write(0);
        h.end_write(0, w1, Outcome::Acked(0));
        let w2 = h.begin_write(0);
        h.end_write(0, w2, Outcome::Failed);
        let w3 = h.begin_write(0);
        h.end_write(0, w3, Outcome::Unknown);
        let w4 = h.begin_write(1);
        h.end_write(1, w4, Outcome::Failed);
        h
    }

    #[test]
    fn the_latest_acked_write_or_a_later_one_is_allowed() {
        let h = history();
        for b0 in [1, 2, 3] {
            for b1 in [None, Some(4)] {
                let v = check_replica(&h, "alpha", &volume(&[Some(b0), b1, None]));
                assert!(v.is_empty(), "{b0} {b1:?}: {v:?}");
            }
        }
    }

    #[test]
    fn a_lost_acked_write_is_a_violation_and_a_flush_makes_it_worse() {
        let mut h = history();
        let v = check_replica(&h, "alpha", &volume(&[None, None]));
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].kind, v[0].block), (Kind::LostAckedWrite, Some(0)));
        assert!(
            v[0].expected.starts_with("write #1 (acknowledged, "),
            "{}",
            v[0].expected
        );
        let f = h.begin_flush();
        h.flush_done(f);
        let v = check_replica(&h, "alpha", &volume(&[None, None]));
        assert_eq!(v[0].kind, Kind::LostFlushedWrite);
        assert!(
            v[0].to_string()
                .contains("block 0 (offset 0): expected write #1 (acknowledged, flushed")
        );
    }

    #[test]
    fn an_acked_write_older_than_the_latest_is_lost() {
        let mut h = history();
        let w5 = h.begin_write(0);
        h.end_write(0, w5, Outcome::Acked(0));
        let v = check_replica(&h, "beta", &volume(&[Some(3)]));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].kind, Kind::LostAckedWrite);
    }

    #[test]
    fn garbage_misplaced_and_unwritten_blocks_are_caught() {
        let h = history();
        let mut data = volume(&[Some(1), None, Some(9)]);
        data[10] ^= 0xff;
        let v = check_replica(&h, "gamma", &data);
        let kinds: Vec<Kind> = v.iter().map(|v| v.kind).collect();
        assert_eq!(kinds, [Kind::CorruptBlock, Kind::StaleData]);
        let mut data = volume(&[Some(1)]);
        data[..BLOCK].copy_from_slice(&encode(5, 1));
        assert_eq!(check_replica(&h, "gamma", &data)[0].kind, Kind::MisplacedBlock);
    }

    #[test]
    fn settling_makes_what_was_found_the_baseline() {
        let mut h = history();
        h.settle(|b| {
            if b == 0 {
                Content::Write { block: 0, id: 2 }
            } else {
                Content::Zero
            }
        });
        assert!(check_replica(&h, "alpha", &volume(&[Some(2), None])).is_empty());
        let v = check_replica(&h, "alpha", &volume(&[Some(1), None]));
        assert_eq!(v[0].kind, Kind::StaleData);
    }

    #[test]
    fn a_read_older_than_the_latest_acked_write_is_stale() {
        let h = history();
        assert!(check_read(&h, "nbd:alpha", 0, &encode(0, 2)).is_none());
        assert!(check_read(&h, "nbd:alpha", 1, &[0u8; BLOCK]).is_none());
        let v = check_read(&h, "nbd:alpha", 0, &[0u8; BLOCK]).unwrap();
        assert_eq!(v.kind, Kind::StaleRead);
        let v = check_read(&h, "nbd:alpha", 0, &encode(1, 1)).unwrap();
        assert_eq!(v.kind, Kind::MisplacedBlock);
    }

    #[test]
    fn differing_replicas_are_reported_per_block() {
        let a = volume(&[Some(1), None, Some(4)]);
        let b = volume(&[Some(1), Some(7), Some(4)]);
        let v = compare_replicas(&[
            ("alpha".into(), a.clone()),
            ("beta".into(), b),
            ("gamma".into(), a),
        ]);
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].replica.as_str(), v[0].block), ("beta", Some(1)));
        assert_eq!(v[0].expected, "zeroes as on alpha");
    }
}
