//! Packet loss on a link, with nftables: the fault proxy works on TCP streams and cannot lose a
//! packet, so a lossy link is made in the kernel instead — a random share of the packets to and
//! from the link's two proxy listeners is dropped, and TCP retransmits them (with its backoff, as on
//! a real lossy network). Both directions of the link lose packets.
//!
//! The rules live in a table of their own, named after this process, with one chain per link that
//! the input hook jumps to; a link's loss is set by replacing its chain's rules and cleared by
//! flushing it. The table is deleted when the [`PacketLoss`] is dropped. Needs root and `nft`;
//! without them the fault kind is skipped with the reason.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The nftables table of this run.
pub struct PacketLoss {
    table: String,
    /// Why lossy links cannot be made here, if they cannot.
    unavailable: Option<String>,
    /// Links whose chain exists (and is jumped to).
    chains: Mutex<BTreeSet<(usize, usize)>>,
}

/// Runs an nft script.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl PacketLoss {
    /// Creates this run's table, or records why it cannot.
    pub fn new() -> PacketLoss {
        let table = format!("replbd_faults_{}", std::process::id());
        let unavailable = nft(&format!(
            "add table inet {table}\nadd chain inet {table} input {{ type filter hook input priority 0; policy accept; }}\n"
        ))
        .err()
        .map(|e| format!("{e} (lossy links need root and nftables)"));
        PacketLoss {
            table,
            unavailable,
            chains: Mutex::new(BTreeSet::new()),
        }
    }

    /// Why lossy links cannot be made, if they cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Drops `percent` % of the packets to and from `ports` (the link's two proxy listeners).
    pub fn set(&self, link: (usize, usize), ports: [u16; 2], percent: u32) -> Result<(), String> {
        if let Some(why) = &self.unavailable {
            return Err(why.clone());
        }
        let t = &self.table;
        let chain = format!("link_{}_{}", link.0, link.1);
        let mut script = String::new();
        let mut chains = self
            .chains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if chains.insert(link) {
            script += &format!("add chain inet {t} {chain}\nadd rule inet {t} input jump {chain}\n");
        }
        let set = format!("{{ {}, {} }}", ports[0], ports[1]);
        script += &format!(
            "flush chain inet {t} {chain}\n\
             add rule inet {t} {chain} tcp dport {set} numgen random mod 100 < {percent} drop\n\
             add rule inet {t} {chain} tcp sport {set} numgen random mod 100 < {percent} drop\n"
        );
        nft(&script)
    }

    /// Stops dropping packets on `link`.
    pub fn clear(&self, link: (usize, usize)) -> Result<(), String> {
        let chains = self
            .chains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !chains.contains(&link) {
            return Ok(());
        }
        nft(&format!(
            "flush chain inet {} link_{}_{}\n",
            self.table, link.0, link.1
        ))
    }
}

impl Drop for PacketLoss {
    fn drop(&mut self) {
        if self.unavailable.is_none() {
            let _ = nft(&format!("delete table inet {}\n", self.table));
        }
    }
}
