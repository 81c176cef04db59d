//! A metadata device that crashes on command (compiled only with the `fault-injection` feature).
//!
//! Writes since the last flush are volatile, like a disk's write cache. When the device crashes —
//! at a chosen write or flush — each volatile write independently survives whole, survives torn (a
//! random subset of its 512-byte sectors) or is lost, and every later call fails. The surviving image
//! is what a restarted node would find.

use std::io;
use std::sync::Mutex;

use crate::device::MetaDevice;

/// A small deterministic random generator (SplitMix64), so a crash schedule replays from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

struct CrashState {
    durable: Vec<u8>,
    view: Vec<u8>,
    volatile: Vec<(usize, Vec<u8>)>,
    countdown: Option<u64>,
    crashed: bool,
    ops: u64,
    rng: SplitMix64,
}

/// The crash-injecting device.
pub struct CrashDevice {
    state: Mutex<CrashState>,
}

const SECTOR: usize = 512;

impl CrashDevice {
    /// A device whose durable content is `image`; crash decisions draw from `seed`.
    pub fn new(image: Vec<u8>, seed: u64) -> CrashDevice {
        CrashDevice {
            state: Mutex::new(CrashState {
                view: image.clone(),
                durable: image,
                volatile: Vec::new(),
                countdown: None,
                crashed: false,
                ops: 0,
                rng: SplitMix64::new(seed),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CrashState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Crash during the write or flush that comes after `ops` more writes and flushes.
    pub fn crash_after(&self, ops: u64) {
        self.lock().countdown = Some(ops);
    }

    /// Writes and flushes performed so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// True once the device has crashed.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Crashes now.
    pub fn crash_now(&self) {
        let mut st = self.lock();
        Self::crash(&mut st);
    }

    /// The durable content: after a crash, what a restarted node finds.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    fn crash(st: &mut CrashState) {
        if st.crashed {
            return;
        }
        let volatile = std::mem::take(&mut st.volatile);
        for (off, data) in volatile {
            match st.rng.below(3) {
                0 => {}
                1 => st.durable[off..off + data.len()].copy_from_slice(&data),
                _ => {
                    for (i, sector) in data.chunks(SECTOR).enumerate() {
                        if st.rng.below(2) == 0 {
                            let at = off + i * SECTOR;
                            st.durable[at..at + sector.len()].copy_from_slice(sector);
                        }
                    }
                }
            }
        }
        st.view = st.durable.clone();
        st.crashed = true;
    }

    /// Counts an operation; crashes if the countdown runs out. Returns true if the device is down.
    fn tick(st: &mut CrashState) -> bool {
        if st.crashed {
            return true;
        }
        st.ops += 1;
        match st.countdown {
            Some(0) => true,
            Some(n) => {
                st.countdown = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the device is gone")
}

impl MetaDevice for CrashDevice {
    fn len(&self) -> u64 {
        self.lock().view.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.lock();
        if st.crashed {
            return Err(crashed());
        }
        let off = offset as usize;
        let src = st
            .view
            .get(off..off + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.lock();
        let off = offset as usize;
        if off + buf.len() > st.view.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let down = Self::tick(&mut st);
        if st.crashed {
            return Err(crashed());
        }
        // The write that hits the crash point is in flight when power fails: it may land torn.
        st.volatile.push((off, buf.to_vec()));
        if down {
            Self::crash(&mut st);
            return Err(crashed());
        }
        st.view[off..off + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut st = self.lock();
        if Self::tick(&mut st) {
            Self::crash(&mut st);
            return Err(crashed());
        }
        let volatile = std::mem::take(&mut st.volatile);
        for (off, data) in volatile {
            st.durable[off..off + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "crash-injecting device".to_string()
    }
}
