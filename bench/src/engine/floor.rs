//! The floor: the least replication can cost here. Each write goes over one loopback TCP socket to a
//! receiver thread that `pwrite`s it to a file and answers with an 8-byte acknowledgement; no
//! protocol, no metadata, no local copy. The receiver reads through a buffer and sends the
//! acknowledgements of everything it has already received in one write. Writes are pipelined (a writer task sends, a reader task
//! matches acknowledgements to requests), so queue depth behaves as it does for replbd.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A connection to the floor receiver.
pub struct Floor {
    tx: mpsc::UnboundedSender<(u64, u64, Bytes)>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    next: AtomicU64,
}

fn receiver(s: TcpStream, file: std::fs::File) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    // Buffered reads, and the acknowledgements of every request already received sent together: the
    // least syscalls a per-write acknowledgement can cost.
    let mut input = std::io::BufReader::with_capacity(256 << 10, s.try_clone()?);
    let mut output = s;
    let mut acks: Vec<u8> = Vec::with_capacity(4096);
    let mut hdr = [0u8; 20];
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if input.read_exact(&mut hdr).is_err() {
            return Ok(());
        }
        let id = u64::from_le_bytes(hdr[0..8].try_into().unwrap_or_default());
        let off = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(hdr[16..20].try_into().unwrap_or_default()) as usize;
        if len > buf.len() {
            buf.resize(len, 0);
        }
        input.read_exact(&mut buf[..len])?;
        file.write_all_at(&buf[..len], off)?;
        acks.extend_from_slice(&id.to_le_bytes());
        if input.buffer().is_empty() {
            output.write_all(&acks)?;
            acks.clear();
        }
    }
}

impl Floor {
    /// Starts a receiver writing into `path` and connects to it.
    pub async fn start(path: &Path) -> anyhow::Result<Floor> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                let _ = receiver(s, file);
            }
        });
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut r, mut w) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, u64, Bytes)>();
        tokio::spawn(async move {
            while let Some((id, off, data)) = rx.recv().await {
                let mut hdr = [0u8; 20];
                hdr[0..8].copy_from_slice(&id.to_le_bytes());
                hdr[8..16].copy_from_slice(&off.to_le_bytes());
                hdr[16..20].copy_from_slice(&(data.len() as u32).to_le_bytes());
                let bufs = [std::io::IoSlice::new(&hdr), std::io::IoSlice::new(&data)];
                let mut slices: &mut [std::io::IoSlice<'_>] = &mut bufs.clone();
                while !slices.is_empty() {
                    match w.write_vectored(slices).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
                    }
                }
            }
        });
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
        let w2 = Arc::clone(&waiting);
        tokio::spawn(async move {
            let mut ack = [0u8; 8];
            while r.read_exact(&mut ack).await.is_ok() {
                let id = u64::from_le_bytes(ack);
                if let Some(tx) = w2
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id)
                {
                    let _ = tx.send(());
                }
            }
        });
        Ok(Floor {
            tx,
            waiting,
            next: AtomicU64::new(0),
        })
    }

    /// Sends one write and waits for its acknowledgement.
    pub async fn write(&self, off: u64, data: Bytes) -> anyhow::Result<()> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, tx);
        self.tx
            .send((id, off, data))
            .map_err(|_| anyhow::anyhow!("floor sender stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("floor receiver stopped"))
    }
}
