//! The demo's data path: writing a byte pattern through the volume's front end and reading it
//! back. A volume served as a block device (`/dev/ublkbN`, where the kernel has ublk) is written
//! and read here with `O_DIRECT`, so the read-back comes from the device and not from the page
//! cache; one served over NBD (`nbd+unix://…`) is written with `qemu-io`, which speaks NBD.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{say, which};
use crate::cli::Failure;

/// Alignment `O_DIRECT` needs for the buffer, offsets and lengths (the largest logical block size).
const ALIGN: usize = 4096;
/// Bytes per system call.
const CHUNK: usize = 1 << 20;

/// Writes `pattern` over `len` bytes at `offset` of `device`, durably.
pub fn write_pattern(device: &str, pattern: u8, offset: u64, len: u64) -> Result<(), Failure> {
    if !is_block_device(device) {
        return qemu_io(device, &format!("write -P 0x{pattern:x} {offset} {len}"));
    }
    say(&format!(
        "\n$ write 0x{pattern:x} over {} at {} of {device} (O_DIRECT, then fsync)",
        mib(len),
        mib(offset)
    ));
    let f = open_direct(device, true)?;
    let mut storage = vec![0u8; CHUNK + ALIGN];
    let buf = aligned(&mut storage);
    buf.fill(pattern);
    each_chunk(offset, len, |at, n| {
        f.write_all_at(&buf[..n], at)
            .map_err(|e| Failure::new(format!("writing {device} at byte {at} failed: {e}")))
    })?;
    f.sync_all()
        .map_err(|e| Failure::new(format!("fsync of {device} failed: {e}")))?;
    say(&format!("wrote {} ({len} bytes)", mib(len)));
    Ok(())
}

/// Reads `len` bytes at `offset` of `device` and checks every byte is `pattern`.
pub fn check_pattern(device: &str, pattern: u8, offset: u64, len: u64) -> Result<(), Failure> {
    if !is_block_device(device) {
        return qemu_io(device, &format!("read -P 0x{pattern:x} {offset} {len}"));
    }
    say(&format!(
        "\n$ read {} at {} of {device} (O_DIRECT) and check every byte is 0x{pattern:x}",
        mib(len),
        mib(offset)
    ));
    let f = open_direct(device, false)?;
    let mut storage = vec![0u8; CHUNK + ALIGN];
    let buf = aligned(&mut storage);
    each_chunk(offset, len, |at, n| {
        f.read_exact_at(&mut buf[..n], at)
            .map_err(|e| Failure::new(format!("reading {device} at byte {at} failed: {e}")))?;
        match buf[..n].iter().position(|b| *b != pattern) {
            None => Ok(()),
            Some(i) => Err(Failure::new(format!(
                "{device} holds 0x{:x} at byte {}, not the 0x{pattern:x} written there",
                buf[i],
                at + i as u64
            ))),
        }
    })?;
    say(&format!(
        "read {} ({len} bytes): every byte is 0x{pattern:x}",
        mib(len)
    ));
    Ok(())
}

/// Opens `device` with `O_DIRECT`, for writing or for reading.
fn open_direct(device: &str, write: bool) -> Result<File, Failure> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(device)
        .map_err(|e| {
            let how = if write { "writing" } else { "reading" };
            Failure::new(format!("cannot open {device} for {how}: {e}"))
        })
}

fn is_block_device(device: &str) -> bool {
    device.starts_with("/dev/")
}

/// The `CHUNK`-sized window of `storage` that starts on an `ALIGN` boundary.
fn aligned(storage: &mut [u8]) -> &mut [u8] {
    let skip = storage.as_ptr().align_offset(ALIGN);
    &mut storage[skip..skip + CHUNK]
}

fn each_chunk(
    offset: u64,
    len: u64,
    mut f: impl FnMut(u64, usize) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(CHUNK as u64) as usize;
        f(at, n)?;
        at += n as u64;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{}MiB", bytes >> 20)
}

/// Runs qemu-io with `command` on the NBD export `device`.
fn qemu_io(device: &str, command: &str) -> Result<(), Failure> {
    let qemu = which("qemu-io").ok_or_else(|| {
        Failure::new("qemu-io is not installed: the demo writes through the NBD front end with it (install qemu-utils, e.g. scripts/install-deps.sh)")
    })?;
    run_qemu_io(&qemu, device, command)
}

fn run_qemu_io(qemu: &Path, device: &str, command: &str) -> Result<(), Failure> {
    say(&format!("\n$ qemu-io -f raw -c '{command}' '{device}'"));
    let o = std::process::Command::new(qemu)
        .args(["-f", "raw", "-c", command, device])
        .output()
        .map_err(|e| Failure::new(format!("running qemu-io: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        say(line);
    }
    if !o.status.success() || text.contains("Pattern verification failed") {
        return Err(Failure::new(format!(
            "qemu-io {command:?} failed: {}{}",
            String::from_utf8_lossy(&o.stderr).trim(),
            text.trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_aligned_and_whole() {
        let mut storage = vec![0u8; CHUNK + ALIGN];
        let w = aligned(&mut storage);
        assert_eq!(w.len(), CHUNK);
        assert_eq!(w.as_ptr() as usize % ALIGN, 0);
    }

    #[test]
    fn chunks_cover_the_range_once() {
        let mut seen = Vec::new();
        each_chunk(3 << 20, (2 << 20) + 4096, |at, n| {
            seen.push((at, n));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(3 << 20, CHUNK), (4 << 20, CHUNK), (5 << 20, 4096)]);
    }

    #[test]
    fn block_devices_and_nbd_addresses_are_told_apart() {
        assert!(is_block_device("/dev/ublkb1000"));
        assert!(!is_block_device("nbd+unix:///demo?socket=/tmp/x.sock"));
    }
}
