//! Helpers shared by the NBD integration tests: a volume wrapper that can hold requests back or fail
//! them, a server started in the test process, and condition waits with timeouts.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use replbd_node::nbd::{Export, ListenAddr, NbdConfig, NbdError, NbdServer, ShutdownHandle};
use replbd_replication::{BlockVolume, MemVolume, VolumeError, VolumeResult, WriteFlags};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Offset value meaning "no gated offset".
const NONE: u64 = u64::MAX;

/// A [`MemVolume`] with test controls: reads at one chosen offset wait at a gate until the test
/// opens it; writes can be made to fail as if the node were not Primary; concurrency is measured.
pub struct TestVolume {
    pub mem: MemVolume,
    gated_offset: AtomicU64,
    gate: Semaphore,
    waiting_at_gate: AtomicUsize,
    fail_writes: AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl TestVolume {
    pub fn new(size: u64) -> Arc<TestVolume> {
        Arc::new(TestVolume {
            mem: MemVolume::new(size),
            gated_offset: AtomicU64::new(NONE),
            gate: Semaphore::new(0),
            waiting_at_gate: AtomicUsize::new(0),
            fail_writes: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    /// Reads at `offset` wait until [`TestVolume::open_gate`].
    pub fn gate_reads_at(&self, offset: u64) {
        self.gated_offset.store(offset, Ordering::SeqCst);
    }

    /// Lets `n` gated reads through.
    pub fn open_gate(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Reads currently held at the gate.
    pub fn waiting_at_gate(&self) -> usize {
        self.waiting_at_gate.load(Ordering::SeqCst)
    }

    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Most requests ever executing at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    async fn tracked<T>(&self, op: impl Future<Output = T>) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Give other requests of the same connection a chance to start meanwhile.
        tokio::task::yield_now().await;
        let out = op.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl BlockVolume for TestVolume {
    fn size(&self) -> u64 {
        self.mem.size()
    }

    async fn read(&self, offset: u64, len: u32) -> VolumeResult<Bytes> {
        self.tracked(async {
            if offset == self.gated_offset.load(Ordering::SeqCst) {
                self.waiting_at_gate.fetch_add(1, Ordering::SeqCst);
                let permit = self.gate.acquire().await;
                self.waiting_at_gate.fetch_sub(1, Ordering::SeqCst);
                permit.map_err(|_| VolumeError::ShuttingDown)?.forget();
            }
            self.mem.read(offset, len).await
        })
        .await
    }

    async fn write(&self, offset: u64, data: Bytes, flags: WriteFlags) -> VolumeResult<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(VolumeError::NotPrimary {
                resource: "r0".into(),
            });
        }
        self.tracked(self.mem.write(offset, data, flags)).await
    }

    async fn flush(&self) -> VolumeResult<()> {
        self.tracked(self.mem.flush()).await
    }

    async fn discard(&self, offset: u64, len: u64) -> VolumeResult<()> {
        self.tracked(self.mem.discard(offset, len)).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, flags: WriteFlags) -> VolumeResult<()> {
        self.tracked(self.mem.write_zeroes(offset, len, flags)).await
    }
}

/// A server running in the test process.
pub struct Running {
    pub addr: ListenAddr,
    pub stop: ShutdownHandle,
    pub task: JoinHandle<Result<(), NbdError>>,
}

impl Running {
    /// Shuts the server down and waits for `run` to return.
    pub async fn stop(self) {
        self.stop.shutdown();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "server did not stop cleanly: {result:?}"
        );
    }
}

/// Starts a server for `volume` exported as `r0`.
pub async fn start<V: BlockVolume>(volume: Arc<V>, addr: ListenAddr, config: NbdConfig) -> Running {
    init_logging();
    let export = Export::new("r0", volume).unwrap();
    let server = NbdServer::bind(&addr, export, config).await.unwrap();
    let addr = server.local_addr().clone();
    let stop = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    Running { addr, stop, task }
}

/// What the server logged, for tests that check log lines.
pub fn logs() -> String {
    let buf = LOGS.get_or_init(Default::default);
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        // Also show them with `--nocapture`.
        eprint!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the server's logs (debug and up for this crate) once per test binary.
pub fn init_logging() {
    let buf = Arc::clone(LOGS.get_or_init(Default::default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("replbd_node=debug"))
        .with_ansi(false)
        .with_writer(move || LogWriter(Arc::clone(&buf)))
        .try_init();
}

/// Waits until `cond` holds, failing the test after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A unique unix socket path in a fresh temporary directory (kept alive by the returned guard).
pub fn socket_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r0.nbd");
    (dir, path)
}
