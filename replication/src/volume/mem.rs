//! A block volume in memory, for testing front ends without an engine.

use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::{BlockVolume, VolumeResult, WriteFlags, check_range};

/// A [`BlockVolume`] held in memory. Every write is immediately "durable"; counters of flushes and
/// FUA writes let tests check that a front end passed them through.
pub struct MemVolume {
    data: Mutex<Vec<u8>>,
    counters: Mutex<MemCounters>,
}

/// What a [`MemVolume`] was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemCounters {
    /// Reads served.
    pub reads: u64,
    /// Writes served.
    pub writes: u64,
    /// Writes that carried FUA.
    pub fua_writes: u64,
    /// Flushes served.
    pub flushes: u64,
    /// Discards served.
    pub discards: u64,
    /// Write-zeroes served.
    pub write_zeroes: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemVolume {
    /// A zero-filled volume of `size` bytes (rounded down to 512).
    pub fn new(size: u64) -> MemVolume {
        MemVolume {
            data: Mutex::new(vec![0; (size / 512 * 512) as usize]),
            counters: Mutex::default(),
        }
    }

    /// A copy of the content.
    pub fn snapshot(&self) -> Vec<u8> {
        lock(&self.data).clone()
    }

    /// What the volume was asked to do so far.
    pub fn counters(&self) -> MemCounters {
        *lock(&self.counters)
    }

    fn fill(&self, offset: u64, len: u64, byte: u8) -> VolumeResult<()> {
        let mut data = lock(&self.data);
        check_range(offset, len, data.len() as u64)?;
        data[offset as usize..(offset + len) as usize].fill(byte);
        Ok(())
    }
}

impl BlockVolume for MemVolume {
    fn size(&self) -> u64 {
        lock(&self.data).len() as u64
    }

    async fn read(&self, offset: u64, len: u32) -> VolumeResult<Bytes> {
        let data = lock(&self.data);
        check_range(offset, u64::from(len), data.len() as u64)?;
        lock(&self.counters).reads += 1;
        Ok(Bytes::copy_from_slice(
            &data[offset as usize..offset as usize + len as usize],
        ))
    }

    async fn write(&self, offset: u64, buf: Bytes, flags: WriteFlags) -> VolumeResult<()> {
        let mut data = lock(&self.data);
        check_range(offset, buf.len() as u64, data.len() as u64)?;
        data[offset as usize..offset as usize + buf.len()].copy_from_slice(&buf);
        let mut c = lock(&self.counters);
        c.writes += 1;
        c.fua_writes += u64::from(flags.fua);
        Ok(())
    }

    async fn flush(&self) -> VolumeResult<()> {
        lock(&self.counters).flushes += 1;
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64) -> VolumeResult<()> {
        self.fill(offset, len, 0)?;
        lock(&self.counters).discards += 1;
        Ok(())
    }

    async fn write_zeroes(&self, offset: u64, len: u64, _flags: WriteFlags) -> VolumeResult<()> {
        self.fill(offset, len, 0)?;
        lock(&self.counters).write_zeroes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_see_writes_and_ranges_are_checked() {
        let v = MemVolume::new(1 << 20);
        v.write(4096, Bytes::from(vec![7u8; 1024]), WriteFlags { fua: true })
            .await
            .unwrap();
        assert_eq!(&v.read(4096, 1024).await.unwrap()[..], &[7u8; 1024][..]);
        v.write_zeroes(4096, 512, WriteFlags::default()).await.unwrap();
        assert_eq!(v.read(4096, 512).await.unwrap()[0], 0);
        assert_eq!(v.read(4608, 512).await.unwrap()[0], 7);
        let err = v.read((1 << 20) - 512, 1024).await.unwrap_err();
        assert_eq!(err.errno(), 22);
        assert!(
            v.write(3, Bytes::from_static(&[0; 512]), WriteFlags::default())
                .await
                .is_err()
        );
        assert_eq!(v.counters().fua_writes, 1);
    }
}
