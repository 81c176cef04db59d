//! `replbd-meta apply-al` and `replbd-meta check`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use replbd_bitmap::check::Severity;
use replbd_bitmap::units::format_size;
use replbd_bitmap::{AlRecovery, FileDevice, Metadata, OpenOptions};

pub fn apply_al(file: &Path, whole_device: bool) -> Result<ExitCode> {
    let dev = FileDevice::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let damaged_al = if whole_device {
        AlRecovery::MarkWholeDevice
    } else {
        AlRecovery::Refuse
    };
    let (meta, report) = Metadata::open(Box::new(dev), OpenOptions { damaged_al })?;
    meta.close()?;
    let mut out = std::io::stdout().lock();
    for (region, defect) in &report.repaired {
        writeln!(out, "repaired {region}: {defect}")?;
    }
    if report.whole_device_marked {
        writeln!(
            out,
            "activity log damaged: marked the whole device out of sync for every peer (full resync)"
        )?;
    } else if report.was_clean {
        writeln!(out, "metadata was clean: no activity-log extents to apply")?;
    } else {
        let n = report.applied_extents.len() as u64;
        writeln!(
            out,
            "applied the activity log: {n} extents ({}) marked out of sync for {} peer slots",
            format_size(n * replbd_bitmap::layout::AL_EXTENT_BYTES),
            meta.geometry().max_peers()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn check(file: &Path, json: bool) -> Result<ExitCode> {
    let dev = FileDevice::open_read_only(file).with_context(|| format!("cannot open {}", file.display()))?;
    let findings = replbd_bitmap::check::check(&dev)?;
    let damaged = findings.iter().any(|f| f.severity == Severity::Damage);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &findings)?;
        writeln!(out)?;
    } else {
        for f in &findings {
            let tag = match f.severity {
                Severity::Damage => "DAMAGED",
                Severity::Notice => "notice",
            };
            writeln!(out, "{tag}: {}: {} — {}", f.region, f.problem, f.action)?;
        }
        if findings.is_empty() {
            writeln!(out, "{}: metadata ok", file.display())?;
        }
    }
    Ok(if damaged {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
