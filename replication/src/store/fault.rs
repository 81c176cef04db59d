//! Injected disk errors for tests (compiled only with the `fault-injection` feature).

use std::io;
use std::ops::Range;

/// Which requests fail with `EIO`.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Byte ranges whose reads fail.
    pub read_errors: Vec<Range<u64>>,
    /// Byte ranges whose writes fail.
    pub write_errors: Vec<Range<u64>>,
    /// Every write fails (a dead disk).
    pub all_writes_fail: bool,
    /// Every read fails.
    pub all_reads_fail: bool,
    /// Flushes fail.
    pub flush_fails: bool,
    /// Every write and flush takes at least this long (a slow or overloaded disk).
    pub delay: std::time::Duration,
}

fn overlaps(ranges: &[Range<u64>], offset: u64, len: u64) -> bool {
    ranges.iter().any(|r| r.start < offset + len && offset < r.end)
}

fn eio(what: &str, offset: u64, len: u64) -> io::Error {
    io::Error::other(format!("injected {what} error at {offset}+{len} (EIO)"))
}

impl FaultPlan {
    /// Fails a read of `offset..offset+len` if planned.
    pub fn check_read(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.all_reads_fail || overlaps(&self.read_errors, offset, len) {
            return Err(eio("read", offset, len));
        }
        Ok(())
    }

    /// Fails a write of `offset..offset+len` if planned.
    pub fn check_write(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.all_writes_fail || overlaps(&self.write_errors, offset, len) {
            return Err(eio("write", offset, len));
        }
        Ok(())
    }

    /// Fails a flush if planned.
    pub fn check_flush(&self) -> io::Result<()> {
        if self.flush_fails {
            return Err(eio("flush", 0, 0));
        }
        Ok(())
    }
}
