//! One ublk request: decoded from the driver's I/O descriptor, executed against a [`BlockVolume`],
//! and turned into the completion value the driver expects (bytes transferred, 0, or `-errno`).
//!
//! Kept free of libublk types so it is tested on any machine with [`replbd_replication::MemVolume`].

use bytes::Bytes;
use libublk::sys;
use replbd_replication::{BlockVolume, VolumeError, WriteFlags};

/// What the host asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
    /// An operation this target does not implement (zoned ops, WRITE_SAME, …).
    Unsupported(u8),
}

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IoRequest {
    pub op: Op,
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Force unit access (`UBLK_IO_F_FUA`): durable before completion.
    pub fua: bool,
}

impl IoRequest {
    /// Decodes the fields of a `ublksrv_io_desc`.
    pub fn decode(op_flags: u32, start_sector: u64, nr_sectors: u32) -> IoRequest {
        let op = match op_flags & 0xff {
            sys::UBLK_IO_OP_READ => Op::Read,
            sys::UBLK_IO_OP_WRITE => Op::Write,
            sys::UBLK_IO_OP_FLUSH => Op::Flush,
            sys::UBLK_IO_OP_DISCARD => Op::Discard,
            sys::UBLK_IO_OP_WRITE_ZEROES => Op::WriteZeroes,
            other => Op::Unsupported(other as u8),
        };
        IoRequest {
            op,
            offset: start_sector << 9,
            len: u64::from(nr_sectors) << 9,
            fua: op_flags & sys::UBLK_IO_F_FUA != 0,
        }
    }

    fn flags(&self) -> WriteFlags {
        WriteFlags { fua: self.fua }
    }
}

/// Why a request failed before or after reaching the volume.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The volume refused or failed it.
    #[error(transparent)]
    Volume(VolumeError),
    /// The request does not fit the per-tag buffer (the driver never sends one, by `max_sectors`).
    #[error("request of {len} bytes exceeds the {buf}-byte tag buffer")]
    TooLarge { len: u64, buf: usize },
    /// The volume returned a read of the wrong length.
    #[error("the volume returned {got} bytes for a {expected}-byte read")]
    ShortRead { expected: u64, got: usize },
    /// Not implemented by this target.
    #[error("operation {0} is not supported")]
    Unsupported(u8),
}

impl Failure {
    /// The positive errno the host sees.
    pub fn errno(&self) -> i32 {
        match self {
            Failure::Volume(e) => e.errno(),
            Failure::TooLarge { .. } => libc::EINVAL,
            Failure::ShortRead { .. } => libc::EIO,
            Failure::Unsupported(_) => libc::EOPNOTSUPP,
        }
    }
}

/// Executes `req` against `volume`; `buf` is the tag's buffer (data to write, or where a read
/// lands). Returns the number of bytes a READ/WRITE transferred, 0 for the others.
pub(crate) async fn execute<V: BlockVolume>(
    volume: &V,
    req: &IoRequest,
    buf: &mut [u8],
) -> Result<u32, Failure> {
    let data_len = || {
        usize::try_from(req.len)
            .ok()
            .filter(|&n| n <= buf.len())
            .ok_or(Failure::TooLarge {
                len: req.len,
                buf: buf.len(),
            })
    };
    match req.op {
        Op::Read => {
            let n = data_len()?;
            let data = volume.read(req.offset, n as u32).await.map_err(Failure::Volume)?;
            if data.len() != n {
                return Err(Failure::ShortRead {
                    expected: req.len,
                    got: data.len(),
                });
            }
            buf[..n].copy_from_slice(&data);
            Ok(n as u32)
        }
        Op::Write => {
            let n = data_len()?;
            // The one copy of the write path: the tag's buffer is reused for the next request,
            // while the volume may keep the data (peers, queues) after this returns.
            let data = Bytes::copy_from_slice(&buf[..n]);
            volume
                .write(req.offset, data, req.flags())
                .await
                .map_err(Failure::Volume)?;
            Ok(n as u32)
        }
        Op::Flush => volume.flush().await.map(|()| 0).map_err(Failure::Volume),
        Op::Discard => volume
            .discard(req.offset, req.len)
            .await
            .map(|()| 0)
            .map_err(Failure::Volume),
        Op::WriteZeroes => volume
            .write_zeroes(req.offset, req.len, req.flags())
            .await
            .map(|()| 0)
            .map_err(Failure::Volume),
        Op::Unsupported(op) => Err(Failure::Unsupported(op)),
    }
}

/// The completion value for the driver: bytes or 0 on success, `-errno` on failure.
pub(crate) fn completion(result: &Result<u32, Failure>) -> i32 {
    match result {
        Ok(n) => i32::try_from(*n).unwrap_or(i32::MAX),
        Err(f) => -f.errno(),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use replbd_replication::MemVolume;

    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        smol::block_on(f)
    }

    fn req(op: u32, flags: u32, sector: u64, sectors: u32) -> IoRequest {
        IoRequest::decode(op | flags, sector, sectors)
    }

    #[test]
    fn decodes_ops_ranges_and_fua() {
        let r = req(sys::UBLK_IO_OP_WRITE, sys::UBLK_IO_F_FUA, 8, 16);
        assert_eq!(
            r,
            IoRequest {
                op: Op::Write,
                offset: 4096,
                len: 8192,
                fua: true
            }
        );
        assert_eq!(req(sys::UBLK_IO_OP_READ, 0, 0, 1).op, Op::Read);
        assert!(!req(sys::UBLK_IO_OP_READ, 0, 0, 1).fua);
        assert_eq!(req(sys::UBLK_IO_OP_FLUSH, 0, 0, 0).op, Op::Flush);
        assert_eq!(req(sys::UBLK_IO_OP_DISCARD, 0, 0, 8).op, Op::Discard);
        assert_eq!(
            req(sys::UBLK_IO_OP_WRITE_ZEROES, sys::UBLK_IO_F_NOUNMAP, 0, 8).op,
            Op::WriteZeroes
        );
        assert_eq!(req(sys::UBLK_IO_OP_WRITE_SAME, 0, 0, 8).op, Op::Unsupported(4));
    }

    #[test]
    fn write_read_flush_discard_zeroes_reach_the_volume() {
        let v = MemVolume::new(1 << 20);
        let mut buf = vec![0u8; 64 << 10];
        buf[..8192].fill(0xab);
        let w = req(sys::UBLK_IO_OP_WRITE, sys::UBLK_IO_F_FUA, 16, 16);
        assert_eq!(completion(&run(execute(&v, &w, &mut buf))), 8192);

        let mut out = vec![0u8; 64 << 10];
        let r = req(sys::UBLK_IO_OP_READ, 0, 16, 16);
        assert_eq!(completion(&run(execute(&v, &r, &mut out))), 8192);
        assert!(out[..8192].iter().all(|&b| b == 0xab));

        let f = req(sys::UBLK_IO_OP_FLUSH, 0, 0, 0);
        assert_eq!(completion(&run(execute(&v, &f, &mut out))), 0);
        let d = req(sys::UBLK_IO_OP_DISCARD, 0, 16, 8);
        assert_eq!(completion(&run(execute(&v, &d, &mut out))), 0);
        let z = req(sys::UBLK_IO_OP_WRITE_ZEROES, 0, 24, 8);
        assert_eq!(completion(&run(execute(&v, &z, &mut out))), 0);
        assert!(v.snapshot()[8192..16384].iter().all(|&b| b == 0));

        let c = v.counters();
        assert_eq!(
            (
                c.writes,
                c.fua_writes,
                c.reads,
                c.flushes,
                c.discards,
                c.write_zeroes
            ),
            (1, 1, 1, 1, 1, 1)
        );
    }

    #[test]
    fn failures_become_negative_errnos() {
        let v = MemVolume::new(1 << 20);
        let mut buf = vec![0u8; 4096];
        // Past the end: the volume's InvalidRange → EINVAL.
        let r = req(sys::UBLK_IO_OP_READ, 0, 2048, 8);
        assert_eq!(completion(&run(execute(&v, &r, &mut buf))), -libc::EINVAL);
        // Larger than the tag buffer.
        let r = req(sys::UBLK_IO_OP_WRITE, 0, 0, 16);
        assert_eq!(completion(&run(execute(&v, &r, &mut buf))), -libc::EINVAL);
        let r = req(sys::UBLK_IO_OP_WRITE_SAME, 0, 0, 8);
        assert_eq!(completion(&run(execute(&v, &r, &mut buf))), -libc::EOPNOTSUPP);
    }
}
