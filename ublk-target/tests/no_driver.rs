//! On a kernel without ublk (no `/dev/ublk-control`, like the build machines), every entry point
//! fails with the one message that tells the operator what to do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use replbd_replication::MemVolume;
use replbd_ublk::{CONTROL_PATH, DeviceConfig, UblkTarget, UblkTargetError, probe_driver};

const MESSAGE: &str = "the kernel has no ublk driver: load ublk_drv, or use the NBD front end";

/// True (after saying why) when this machine has a ublk driver, so the missing-driver path
/// cannot be exercised here; the VM suite covers the driver-present paths.
fn driver_present() -> bool {
    if Path::new(CONTROL_PATH).exists() {
        eprintln!(
            "SKIPPED: {CONTROL_PATH} exists, so the missing-driver error cannot be produced on this machine"
        );
        return true;
    }
    false
}

#[test]
fn library_reports_the_missing_driver() {
    if driver_present() {
        return;
    }
    assert!(matches!(probe_driver(), Err(UblkTargetError::NoDriver)));
    let err = UblkTarget::add(Arc::new(MemVolume::new(1 << 20)), &DeviceConfig::default())
        .err()
        .expect("add must fail without a driver");
    assert_eq!(err.to_string(), MESSAGE);
    let err = UblkTarget::recover(Arc::new(MemVolume::new(1 << 20)), 0)
        .err()
        .expect("recover must fail without a driver");
    assert_eq!(err.to_string(), MESSAGE);
    assert_eq!(replbd_ublk::delete_device(0).unwrap_err().to_string(), MESSAGE);
}

#[test]
fn serve_binary_reports_the_missing_driver() {
    if driver_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vol");
    let bin = env!("CARGO_BIN_EXE_replbd-ublk-serve");
    for args in [
        vec!["add", "--file", file.to_str().unwrap(), "--size", "1MiB"],
        vec!["recover", "--id", "0", "--file", file.to_str().unwrap()],
        vec!["del", "--id", "0"],
        vec!["features"],
    ] {
        let out = Command::new(bin).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("replbd-ublk-serve: {MESSAGE}")),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed a device path");
    }
}
