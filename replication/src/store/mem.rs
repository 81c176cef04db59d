//! A backing store in memory with a volatile write cache, for tests and the deterministic simulation.
//!
//! Writes land in the cache (what reads see) and reach the durable image only on `flush`, or at once
//! with FUA. [`MemStore::crash`] throws the cache away, as a power failure would, so tests can check
//! that what replbd acknowledged as durable really was flushed. Writes can be paused (to observe
//! protocol A versus C) and (through the `Store` wrapper) made to fail.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

/// Counters of what a [`MemStore`] was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStoreCounters {
    /// Writes (including zeroing and discards).
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Flushes.
    pub flushes: u64,
    /// Reads.
    pub reads: u64,
}

struct Inner {
    view: Vec<u8>,
    durable: Vec<u8>,
    /// Cached, not yet durable ranges: start → end.
    volatile: BTreeMap<usize, usize>,
    counters: MemStoreCounters,
    /// Offsets of writes in the order they were applied (for ordering tests).
    log: Vec<u64>,
}

/// An in-memory backing store.
pub struct MemStore {
    inner: Mutex<Inner>,
    paused: watch::Sender<bool>,
    flushes_paused: watch::Sender<bool>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").field("size", &self.size()).finish()
    }
}

fn range(offset: u64, len: usize, size: usize) -> io::Result<std::ops::Range<usize>> {
    let start = offset as usize;
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range beyond the end of the store",
        )),
    }
}

impl MemStore {
    /// A zeroed store of `size` bytes.
    pub fn new(size: u64) -> MemStore {
        MemStore::from_image(vec![0; size as usize])
    }

    /// A store whose durable content is `image`.
    pub fn from_image(image: Vec<u8>) -> MemStore {
        MemStore {
            inner: Mutex::new(Inner {
                view: image.clone(),
                durable: image,
                volatile: BTreeMap::new(),
                counters: MemStoreCounters::default(),
                log: Vec::new(),
            }),
            paused: watch::channel(false).0,
            flushes_paused: watch::channel(false).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.lock().view.len() as u64
    }

    /// What reads see now.
    pub fn content(&self) -> Vec<u8> {
        self.lock().view.clone()
    }

    /// What survives a crash now.
    pub fn durable(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// Loses every write not yet flushed, like a power failure.
    pub fn crash(&self) {
        let mut g = self.lock();
        g.view = g.durable.clone();
        g.volatile.clear();
    }

    /// Offsets of the writes applied so far, in order.
    pub fn write_log(&self) -> Vec<u64> {
        self.lock().log.clone()
    }

    /// Counters of requests served.
    pub fn counters(&self) -> MemStoreCounters {
        self.lock().counters
    }

    /// Holds (`true`) or releases (`false`) every write until released.
    pub fn pause_writes(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Holds (`true`) or releases (`false`) every flush until released (writes go on).
    pub fn pause_flushes(&self, paused: bool) {
        self.flushes_paused.send_replace(paused);
    }

    async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut g = self.lock();
        let r = range(offset, len, g.view.len())?;
        g.counters.reads += 1;
        Ok(Bytes::copy_from_slice(&g.view[r]))
    }

    /// Writes `data` at `offset`; with `fua` durable at once.
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> io::Result<()> {
        self.wait_unpaused().await;
        self.apply(offset, data.len(), fua, |dst| dst.copy_from_slice(&data))
    }

    fn apply(&self, offset: u64, len: usize, fua: bool, fill: impl Fn(&mut [u8])) -> io::Result<()> {
        let mut g = self.lock();
        let r = range(offset, len, g.view.len())?;
        fill(&mut g.view[r.clone()]);
        if fua {
            fill(&mut g.durable[r.clone()]);
        } else {
            g.volatile.insert(r.start, r.end);
        }
        g.counters.writes += 1;
        g.counters.bytes_written += len as u64;
        g.log.push(offset);
        Ok(())
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> io::Result<()> {
        let _ = self.flushes_paused.subscribe().wait_for(|p| !*p).await;
        let mut g = self.lock();
        let Inner {
            view,
            durable,
            volatile,
            counters,
            ..
        } = &mut *g;
        for (&s, &e) in volatile.iter() {
            durable[s..e].copy_from_slice(&view[s..e]);
        }
        volatile.clear();
        counters.flushes += 1;
        Ok(())
    }

    /// Zeroes a range (discard and write-zeroes alike).
    pub async fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        self.wait_unpaused().await;
        self.apply(offset, len as usize, false, |dst| dst.fill(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_flushed_or_fua_writes_survive_a_crash() {
        let s = MemStore::new(8192);
        s.write(0, Bytes::from(vec![1u8; 512]), false).await.unwrap();
        s.write(512, Bytes::from(vec![2u8; 512]), true).await.unwrap();
        assert_eq!(s.read(0, 1).await.unwrap()[0], 1);
        s.crash();
        assert_eq!(s.read(0, 1).await.unwrap()[0], 0, "unflushed write lost");
        assert_eq!(s.read(512, 1).await.unwrap()[0], 2, "FUA write kept");
        s.write(1024, Bytes::from(vec![3u8; 512]), false).await.unwrap();
        s.flush().await.unwrap();
        s.crash();
        assert_eq!(s.read(1024, 1).await.unwrap()[0], 3, "flushed write kept");
    }
}
