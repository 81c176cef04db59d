//! Settling a lost Primary's last writes between the Secondaries it leaves behind.
//!
//! A Primary that loses one Secondary goes on writing to the others (it keeps quorum through
//! them), and those writes are acknowledged. If it then dies before its peer acks tell everyone
//! who holds what ([`super::peer_ack`]), the Secondaries are left with different amounts of its
//! stream: the one cut off first lacks acknowledged writes the others have. Promoting it and
//! resyncing "the lost Primary's writes" from its copy would overwrite them (found by
//! `replbd-faults` through `/dev/ublkbN`: seed 20261123, a flushed write zero on every replica).
//!
//! Every link carries the Primary's writes in one order (their `seq`, numbered under the epoch
//! lock), so what a Secondary holds of the stream is a prefix, and the newest `seq` it applied — its
//! **position** — says how far it got. So, as DRBD does after losing a Primary:
//!
//! ```text
//!   S loses Primary P (its link drained: every write received is applied)
//!   S ──LostPrimary(P, position, query)──▶ every connected peer; and to peers that connect later
//!   peer Q with a record for P: notes S's position, answers with its own
//!   peer Q still connected to P: keeps S's position until it loses P itself (then it queries),
//!                                or until P is demoted (then it answers where P's stream stopped)
//!   peer Q that never had P's stream: answers position 0 (nothing to offer)
//!   the one behind starts a resync as target from the one ahead (both bitmaps are merged: the
//!   blocks either marked for the lost Primary's unconfirmed writes move forward, never back)
//! ```
//!
//! Until every connected peer has answered and it has resynced from every peer ahead of it, a node
//! refuses promotion with the reason; an HA agent promotes another node or retries. The node behind
//! drives its resync, so it knows it is behind before that resync can end.
//! `seq` starts at the wall clock in microseconds when the engine starts, so a restarted Primary's
//! stream is ahead of its previous one and positions never compare across restarts the wrong way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use replbd_quorum::Role;

use super::core::Inner;
use super::link::Link;
use super::resync::SyncRole;
use crate::wire::{FrameHeader, Kind, OutFrame};

/// What this node knows about the last Primary it lost.
#[derive(Debug)]
struct Record {
    primary: u8,
    /// The newest of the Primary's writes this node applied.
    position: u64,
    /// Connected peers whose position has not come yet.
    awaiting: BTreeSet<u8>,
    /// Peers ahead of this node: it takes a resync from them before it may be promoted.
    behind: BTreeSet<u8>,
    /// Peers already compared with, and their positions (a query and an answer may both arrive).
    compared: BTreeMap<u8, u64>,
}

impl Record {
    /// Notes `peer`'s position: `Some(false)` when this node is behind it (and takes a resync from
    /// it), `Some(true)` when ahead, `None` when nothing is to move or the peer was already compared
    /// with.
    fn compare(&mut self, peer: u8, theirs: u64) -> Option<bool> {
        self.awaiting.remove(&peer);
        if self.compared.insert(peer, theirs).is_some() {
            return None;
        }
        let v = ahead(self.position, theirs);
        if v == Some(false) {
            self.behind.insert(peer);
        }
        v
    }
}

#[derive(Debug, Default)]
struct State {
    /// Primaries whose link failed and is still being drained (its writes applied).
    draining: BTreeSet<u8>,
    record: Option<Record>,
    /// Positions peers reported for a Primary this node is still connected to.
    early: BTreeMap<u8, (u8, u64)>,
}

/// Per resource: the settlement after losing a Primary.
#[derive(Debug, Default)]
pub(crate) struct Settlement {
    state: Mutex<State>,
}

impl Settlement {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The first value of the write sequence: the wall clock in microseconds, so a restarted
/// Primary's writes number after its previous life's (far fewer than one write per microsecond).
pub(crate) fn first_seq() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX >> 1))
        .max(1)
}

/// What this node can say about a Primary a peer lost.
enum Known {
    /// It lost that Primary too, holding its writes through this position.
    Recorded(u64),
    /// It is still connected to it, no longer Primary: its stream stopped at this position.
    Final(u64),
    /// It holds none of that Primary's latest writes.
    Nothing,
}

/// `LostPrimary`: `aux` the lost Primary's node id, `seq` the sender's position, `sector` 1 when the
/// sender wants the receiver's position back.
fn claim(primary: u8, position: u64, query: bool) -> OutFrame {
    let mut h = FrameHeader::new(Kind::LostPrimary);
    h.aux = u64::from(primary);
    h.seq = position;
    h.sector = u64::from(query);
    OutFrame::bare(h)
}

/// Who moves the data between two positions in the same stream: `Some(true)` this node (ahead),
/// `Some(false)` the peer, `None` nobody (the same writes, or one side holds none of them).
fn ahead(mine: u64, theirs: u64) -> Option<bool> {
    if mine == 0 || theirs == 0 || mine == theirs {
        None
    } else {
        Some(mine > theirs)
    }
}

impl Inner {
    /// The connection to `link`'s peer, which sent this node writes as Primary, is gone and drained.
    pub(crate) fn settle_lost_primary(self: &Arc<Self>, link: &Link) {
        self.lost_primary.lock().draining.remove(&link.peer);
        let position = link.writes.received_through();
        if position == 0 || self.disk.is_none() {
            return;
        }
        let primary = link.peer;
        let live: Vec<Arc<Link>> = self
            .live_links()
            .into_iter()
            .filter(|l| l.peer != primary && l.slot.is_some())
            .collect();
        // Positions peers sent while this node still had the Primary are compared at once, before
        // any frame goes out: a peer's resync of this node cannot finish before this node knows it
        // is behind that peer.
        let behind: Vec<u8> = {
            let mut st = self.lost_primary.lock();
            let early = std::mem::take(&mut st.early);
            let mut r = Record {
                primary,
                position,
                awaiting: live.iter().map(|l| l.peer).collect(),
                behind: BTreeSet::new(),
                compared: BTreeMap::new(),
            };
            let behind = early
                .into_iter()
                .filter(|&(q, (p, _))| p == primary && live.iter().any(|l| l.peer == q))
                .filter(|&(q, (_, pos))| r.compare(q, pos) == Some(false))
                .map(|(q, _)| q)
                .collect();
            st.record = Some(r);
            behind
        };
        tracing::info!(resource = %self.cfg.name, primary, position, peers = live.len(), "lost the Primary: comparing how much of its writes each Secondary holds");
        for l in &live {
            l.send(claim(primary, position, true));
        }
        for l in live.iter().filter(|l| behind.contains(&l.peer)) {
            self.take_writes_from(l, primary);
        }
    }

    /// The link to `primary`, a Primary, failed; it is drained next ([`Inner::settle_lost_primary`]).
    pub(crate) fn lost_primary_draining(&self, primary: u8) {
        self.lost_primary.lock().draining.insert(primary);
    }

    /// A peer's `LostPrimary`, or the reason the peer is disconnected: it must name another node of
    /// this resource than the sender, and ask (1) or answer (0).
    pub(crate) fn lost_primary_claim(
        self: &Arc<Self>,
        link: &Arc<Link>,
        h: &FrameHeader,
    ) -> Result<(), String> {
        let primary = u8::try_from(h.aux)
            .ok()
            .filter(|&p| p != link.peer && (p == self.cfg.node_id || self.peer(p).is_some()))
            .ok_or_else(|| {
                format!(
                    "the peer sent a {} about node {}, which is not another node of resource {}",
                    h.kind, h.aux, self.cfg.name
                )
            })?;
        if h.sector > 1 {
            return Err(format!(
                "the peer sent a {} whose query flag is {}, not 0 or 1",
                h.kind, h.sector
            ));
        }
        let (theirs, query) = (h.seq, h.sector == 1);
        let known = {
            let mut st = self.lost_primary.lock();
            match &st.record {
                Some(r) if r.primary == primary => Known::Recorded(r.position),
                _ => match self.peer(primary).and_then(|p| p.live()) {
                    // Still connected to that Primary: this node answers when it loses it too.
                    Some(_) if self.peer_role(primary) == Role::Primary => {
                        st.early.insert(link.peer, (primary, theirs));
                        return Ok(());
                    }
                    // Connected to it, and it was demoted: its stream here is complete.
                    Some(l) => Known::Final(l.writes.received_through()),
                    None => Known::Nothing,
                },
            }
        };
        let mine = match known {
            Known::Recorded(p) | Known::Final(p) => p,
            Known::Nothing => 0,
        };
        if query {
            link.send(claim(primary, mine, false));
        }
        match known {
            Known::Recorded(_) => self.compare_positions(link, primary, theirs),
            // Behind a peer that lost this node's former Primary: take what it got further.
            Known::Final(_) if ahead(mine, theirs) == Some(false) => self.take_writes_from(link, primary),
            _ => {}
        }
        Ok(())
    }

    /// The peer behind `link` holds the lost `primary`'s writes up to `theirs`.
    fn compare_positions(self: &Arc<Self>, link: &Arc<Link>, primary: u8, theirs: u64) {
        let verdict = {
            let mut st = self.lost_primary.lock();
            let Some(r) = st.record.as_mut().filter(|r| r.primary == primary) else {
                return;
            };
            tracing::info!(resource = %self.cfg.name, primary, peer = link.peer, mine = r.position, theirs, "positions in the lost Primary's stream");
            r.compare(link.peer, theirs)
        };
        if verdict == Some(false) {
            self.take_writes_from(link, primary);
        }
    }

    /// The peer behind `link` got further in `primary`'s stream: this node takes the blocks either
    /// side marked from it, as sync target. The node behind drives, so it has noted that it is
    /// behind before the resync can end (which is what lets it be promoted).
    fn take_writes_from(self: &Arc<Self>, link: &Arc<Link>, primary: u8) {
        if self.role() == Role::Primary || link.resync().is_some_and(|r| r.active()) {
            return;
        }
        tracing::info!(resource = %self.cfg.name, primary, peer = link.peer, "the peer holds more of the lost Primary's writes: resyncing them from it");
        if let Err(e) = super::resync::command::begin_resync(self, link, SyncRole::Target, false, true) {
            tracing::warn!(resource = %self.cfg.name, peer = link.peer, error = %e, "cannot resync the lost Primary's last writes from the peer now");
        }
    }

    /// The Primary behind `primary` was demoted while connected: positions peers sent for it are
    /// answered now with where its stream stopped here (they wait for the answer to be promoted).
    pub(crate) fn lost_primary_demoted(self: &Arc<Self>, primary: &Link) {
        let waiting: Vec<(u8, u64)> = {
            let mut st = self.lost_primary.lock();
            let (mine, rest): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut st.early)
                .into_iter()
                .partition(|(_, (p, _))| *p == primary.peer);
            st.early = rest;
            mine.into_iter().map(|(q, (_, pos))| (q, pos)).collect()
        };
        let mine = primary.writes.received_through();
        for (q, theirs) in waiting {
            if let Some(l) = self.peer(q).and_then(|p| p.live()) {
                l.send(claim(primary.peer, mine, false));
                if ahead(mine, theirs) == Some(false) {
                    self.take_writes_from(&l, primary.peer);
                }
            }
        }
    }

    /// A link came up: a peer that was away when the Primary was lost settles too.
    pub(crate) fn lost_primary_link_up(&self, link: &Link) {
        if link.slot.is_none() {
            return;
        }
        let mut st = self.lost_primary.lock();
        if let Some(r) = st.record.as_mut()
            && r.primary != link.peer
        {
            r.awaiting.insert(link.peer);
            r.compared.remove(&link.peer);
            link.send(claim(r.primary, r.position, true));
        }
    }

    /// The link to `peer` is gone: it cannot answer now. A peer this node is behind stays so:
    /// it holds acknowledged writes this node lacks (they are compared again when it returns;
    /// `primary --force` overrides).
    pub(crate) fn lost_primary_link_down(&self, peer: u8) {
        let mut st = self.lost_primary.lock();
        st.early.remove(&peer);
        if let Some(r) = st.record.as_mut() {
            r.awaiting.remove(&peer);
            r.compared.remove(&peer);
        }
    }

    /// A resync from `peer` as target finished: this node now holds what `peer` had, and later
    /// comparisons (a reconnect) find the two equal.
    pub(crate) fn lost_primary_synced_from(&self, peer: u8) {
        if let Some(r) = self.lost_primary.lock().record.as_mut()
            && r.behind.remove(&peer)
            && let Some(&theirs) = r.compared.get(&peer)
        {
            r.position = r.position.max(theirs);
        }
    }

    /// Why this node may not be promoted yet, if it may not.
    pub(crate) fn lost_primary_blocks_promotion(&self) -> Option<String> {
        let st = self.lost_primary.lock();
        if let Some(p) = st.draining.first() {
            return Some(format!(
                "the connection to the lost Primary (node {p}) is still applying its last writes; retry in a moment"
            ));
        }
        let r = st.record.as_ref()?;
        if let Some(q) = r.behind.first() {
            return Some(format!(
                "node {q} holds writes of the lost Primary (node {}) that this node lacks; it is resyncing them from node {q} first (or promote node {q})",
                r.primary
            ));
        }
        r.awaiting.first().map(|q| {
            format!(
                "waiting for node {q} to report how many of the lost Primary's (node {}) writes it holds; retry in a moment",
                r.primary
            )
        })
    }

    /// Waits up to `within` until [`Inner::lost_primary_blocks_promotion`] has nothing to say.
    pub(crate) async fn lost_primary_settled(&self, within: std::time::Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.lost_primary_blocks_promotion() {
                None => return Ok(()),
                Some(reason) if tokio::time::Instant::now() >= deadline => return Err(reason),
                Some(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// This node became Primary, or a connected peer did (having settled with its own peers): that
    /// Primary's data is the reference now.
    pub(crate) fn lost_primary_forget(&self) {
        let mut st = self.lost_primary.lock();
        st.record = None;
        st.early.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_further_ahead_moves_data() {
        assert_eq!(ahead(10, 7), Some(true));
        assert_eq!(ahead(7, 10), Some(false));
        assert_eq!(ahead(7, 7), None);
        // A node that holds none of the stream offers nothing and is not a source.
        assert_eq!(ahead(7, 0), None);
        assert_eq!(ahead(0, 7), None);
    }

    #[test]
    fn a_record_notes_each_peer_once_and_who_is_behind() {
        let mut r = Record {
            primary: 0,
            position: 10,
            awaiting: [1, 2].into(),
            behind: BTreeSet::new(),
            compared: BTreeMap::new(),
        };
        assert_eq!(r.compare(1, 12), Some(false));
        assert!(
            r.behind.contains(&1),
            "node 1 got further: this node waits for it"
        );
        assert_eq!(r.compare(1, 12), None, "a query and an answer count once");
        assert_eq!(r.compare(2, 7), Some(true));
        assert!(r.awaiting.is_empty());
        assert!(!r.behind.contains(&2));
    }

    #[test]
    fn a_claim_carries_primary_position_and_query() {
        let f = claim(3, 99, true);
        assert_eq!(
            (f.header.kind, f.header.aux, f.header.seq, f.header.sector),
            (Kind::LostPrimary, 3, 99, 1)
        );
        assert_eq!(claim(3, 0, false).header.sector, 0);
    }

    #[test]
    fn the_sequence_starts_after_any_earlier_life() {
        let a = first_seq();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(first_seq() >= a + 1000, "a later start numbers later");
    }
}
