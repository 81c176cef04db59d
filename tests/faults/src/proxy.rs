//! The fault proxy: a TCP relay in front of every node's replication port, so that the suite can
//! break, stall and slow each link between two nodes without root, network namespaces or nftables.
//!
//! Each node's configuration names its peers by a proxy listener instead of their real address
//! (the engine identifies a peer by the node id in its authenticated hello, not by address). For
//! nodes `i` and `j` there is one listener per direction, and both belong to the same *link*
//! `{i, j}`, whose [`LinkState`] the injector changes:
//!
//! - **cut**: every relayed connection is closed at once and new ones are refused — a link that
//!   fails loudly (a peer that resets, an interface that goes down);
//! - **blackhole**: relayed bytes stop moving in both directions (nothing is dropped from the TCP
//!   streams) and new connections hang — a silent partition, only the engine's timeouts notice it;
//!   when the link heals, the streams carry on where they stopped, as TCP does after a partition;
//! - **delay** and **rate**: every chunk waits before it is relayed, and the relay keeps to a byte
//!   rate — a slow or congested link.
//!
//! Both directions of a link change together: a partition cuts both ways, so both sides of it see
//! the other go away and decide for themselves (the minority side loses quorum).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Whether a link passes traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Relays.
    Up,
    /// Closes every connection and refuses new ones.
    Cut,
    /// Holds every byte (and new connections) until the link heals.
    Blackhole,
}

/// The state of one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LinkState {
    /// Whether it passes traffic.
    pub mode: Mode,
    /// Extra latency per relayed chunk.
    pub delay_ms: u64,
    /// A byte-rate ceiling per direction, if any.
    pub rate_bytes_per_s: Option<u64>,
}

impl LinkState {
    /// A healthy link.
    pub const HEALTHY: LinkState = LinkState {
        mode: Mode::Up,
        delay_ms: 0,
        rate_bytes_per_s: None,
    };
}

/// The proxies of a cluster: one listener per ordered pair of nodes.
pub struct FaultProxy {
    links: BTreeMap<(usize, usize), Arc<watch::Sender<LinkState>>>,
    listeners: BTreeMap<(usize, usize), SocketAddr>,
}

/// The unordered key of the link between `a` and `b`.
fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl FaultProxy {
    /// Binds a listener on `host` (port chosen by the system) for every ordered pair of the nodes
    /// whose real replication addresses are `targets`, and starts relaying on the current runtime.
    pub async fn start(host: std::net::IpAddr, targets: &[SocketAddr]) -> std::io::Result<FaultProxy> {
        let mut links = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for a in 0..targets.len() {
            for b in a + 1..targets.len() {
                links.insert((a, b), Arc::new(watch::channel(LinkState::HEALTHY).0));
            }
        }
        for (from, _) in targets.iter().enumerate() {
            for (to, target) in targets.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind((host, 0)).await?;
                listeners.insert((from, to), listener.local_addr()?);
                let Some(link) = links.get(&key(from, to)) else {
                    continue;
                };
                tokio::spawn(accept_loop(listener, *target, Arc::clone(link), (from, to)));
            }
        }
        Ok(FaultProxy { links, listeners })
    }

    /// The address node `from` must use to reach node `to`.
    pub fn address(&self, from: usize, to: usize) -> Option<SocketAddr> {
        self.listeners.get(&(from, to)).copied()
    }

    /// Sets the state of the link between `a` and `b`.
    pub fn set(&self, a: usize, b: usize, state: LinkState) {
        if let Some(link) = self.links.get(&key(a, b)) {
            link.send_replace(state);
            tracing::debug!(a, b, ?state, "link changed");
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.send_replace(LinkState::HEALTHY);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    link: Arc<watch::Sender<LinkState>>,
    pair: (usize, usize),
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let state = link.subscribe();
        tokio::spawn(async move {
            if let Err(e) = relay(client, target, state).await {
                tracing::trace!(from = pair.0, to = pair.1, error = %e, "relay ended");
            }
        });
    }
}

/// Relays one accepted connection to `target` while the link allows.
async fn relay(
    client: TcpStream,
    target: SocketAddr,
    mut state: watch::Receiver<LinkState>,
) -> std::io::Result<()> {
    // A new connection over a cut link is refused; over a blackholed one it hangs until the link
    // heals (as a SYN that gets no answer, but without a retry limit: the engine's
    // connect-timeout gives up first).
    loop {
        let mode = state.borrow_and_update().mode;
        match mode {
            Mode::Up => break,
            Mode::Cut => return Ok(()),
            Mode::Blackhole => {
                if state.changed().await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    let upstream = TcpStream::connect(target).await?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    // When either direction ends (end of stream, error, or a cut), both sockets are dropped.
    tokio::select! {
        r = pump(cr, uw, state.clone()) => r,
        r = pump(ur, cw, state) => r,
    }
}

/// Waits until the link lets bytes through; `false` when it is cut (or the proxy is gone).
async fn passable(state: &mut watch::Receiver<LinkState>) -> bool {
    loop {
        let mode = state.borrow_and_update().mode;
        match mode {
            Mode::Up => return true,
            Mode::Cut => return false,
            Mode::Blackhole => {
                if state.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Copies one direction, obeying the link state between chunks.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut state: watch::Receiver<LinkState>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => n?,
            changed = state.changed() => {
                if changed.is_err() || state.borrow_and_update().mode == Mode::Cut {
                    return Ok(());
                }
                continue;
            }
        };
        if n == 0 {
            return to.shutdown().await;
        }
        let wait = {
            let mut st = state.clone();
            if !passable(&mut st).await {
                return Ok(());
            }
            let s = *st.borrow();
            let mut wait = Duration::from_millis(s.delay_ms);
            if let Some(rate) = s.rate_bytes_per_s.filter(|r| *r > 0) {
                wait += Duration::from_secs_f64(n as f64 / rate as f64);
            }
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            // The link may have been cut or stalled while this chunk waited.
            let mut st = state.clone();
            if !passable(&mut st).await {
                return Ok(());
            }
        }
        tokio::select! {
            w = to.write_all(&buf[..n]) => w?,
            _ = async {
                loop {
                    if state.changed().await.is_err() || state.borrow_and_update().mode == Mode::Cut {
                        return;
                    }
                }
            } => return Ok(()),
        }
    }
}
