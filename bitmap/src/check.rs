//! `replbd-meta check`: every finding about a metadata area, with what it means and what to do.

use serde::Serialize;

use crate::device::MetaDevice;
use crate::error::{BlockDefect, Region, Result};
use crate::meta::inspect;
use crate::superblock::NodeFlags;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Expected after a crash; handled automatically.
    Notice,
    /// A damaged block.
    Damage,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious.
    pub severity: Severity,
    /// The region, as text (e.g. "bitmap of peer slot 2, block 17 (offset 69632)").
    pub region: String,
    /// What is wrong.
    pub problem: String,
    /// What happens or what to do.
    pub action: String,
}

impl Finding {
    fn new(
        severity: Severity,
        region: &Region,
        problem: impl ToString,
        action: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            region: region.to_string(),
            problem: problem.to_string(),
            action: action.into(),
        }
    }
}

/// Checks every block of the metadata on `dev`. An `Err` means the metadata cannot be used at all
/// (no superblock, both copies damaged, wrong size, I/O error).
pub fn check(dev: &dyn MetaDevice) -> Result<Vec<Finding>> {
    let ins = inspect(dev)?;
    let mut findings = Vec::new();
    for (region, defect) in &ins.superblock_defects {
        findings.push(match defect {
            BlockDefect::Stale { .. } => Finding::new(
                Severity::Notice,
                region,
                defect,
                "a crash interrupted a superblock update; the newer copy is used and the next open rewrites this one",
            ),
            _ => Finding::new(
                Severity::Damage,
                region,
                defect,
                "the other superblock copy is valid and is used; opening the metadata (e.g. `replbd-meta apply-al`) rewrites this copy",
            ),
        });
    }
    for (region, defect) in &ins.bitmap_defects {
        findings.push(Finding::new(
            Severity::Damage,
            region,
            defect,
            "the block's whole range is treated as out of sync with that peer (more resync, no data loss); opening the metadata rewrites it",
        ));
    }
    let clean = ins.superblock.flags.contains(NodeFlags::AL_CLEAN);
    match &ins.al {
        Err((region, defect)) if clean => findings.push(Finding::new(
            Severity::Damage,
            region,
            defect,
            "harmless while the metadata is clean (the log is not needed); the next open rewrites it",
        )),
        Err((region, defect)) => findings.push(Finding::new(
            Severity::Damage,
            region,
            defect,
            "the metadata was not shut down cleanly and the log cannot be replayed: run `replbd-meta apply-al --whole-device` (full resync from a peer)",
        )),
        Ok(replayed) if !clean => {
            if let Some(pos) = replayed.torn {
                let region = Region::ActivityLog { ring_slot: pos, offset: ins.superblock.geometry.al_offset(pos) };
                findings.push(Finding::new(
                    Severity::Notice,
                    &region,
                    "torn transaction (a crash during an activity-log write)",
                    "normal after a crash; the transaction was never relied on",
                ));
            }
            findings.push(Finding::new(
                Severity::Notice,
                &Region::Area { offset: ins.superblock.geometry.meta_offset },
                format!("not shut down cleanly: {} activity-log extents were active", replayed.active.len()),
                "opening the metadata (or `replbd-meta apply-al`) marks them out of sync for every peer",
            ));
        }
        Ok(_) => {}
    }
    Ok(findings)
}
