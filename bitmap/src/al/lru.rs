//! The in-memory activity log: which 4 MiB extents are active, in which LRU slot, and how many writes
//! hold each.
//!
//! An extent is *active* when the on-disk log says so; a write may only touch active extents. Writes
//! take a reference for their duration; an extent with no references is *idle* and may be evicted,
//! least recently used first, when a new extent needs its slot.
//!
//! ```text
//!            plan (victim chosen)                 commit (transaction durable)
//!   idle ──────────────────────────▶ evicting ───────────────────────────▶ gone
//!    ▲ │ acquire                                                      new extent: idle
//!    │ ▼ release (last ref)
//!   held
//! ```
//!
//! This type does no I/O; [`crate::meta`] writes the transactions it builds.

use std::collections::{BTreeSet, HashMap};

use super::transaction::{EMPTY, Transaction};
use crate::layout::{AL_CONTEXT_PER_TRANSACTION, AL_UPDATES_PER_TRANSACTION};

#[derive(Clone, Copy, Debug)]
struct Entry {
    slot: u32,
    refs: u32,
    stamp: u64,
}

/// A planned transaction: slots to fill, and the extents it evicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `(LRU slot, new extent)`.
    pub updates: Vec<(u32, u32)>,
    /// Extents leaving the log: their bitmap bits must be durable before the transaction is.
    pub victims: Vec<u32>,
}

/// The in-memory LRU of active extents.
#[derive(Debug)]
pub struct ActivityLog {
    slots: Vec<u32>,
    entries: HashMap<u32, Entry>,
    idle: BTreeSet<(u64, u32)>,
    free: Vec<u32>,
    clock: u64,
    next_seq: u64,
    next_context: u32,
}

impl ActivityLog {
    /// An empty log of `al_extents` slots whose next transaction is number `next_seq`.
    pub fn new(al_extents: u32, next_seq: u64) -> ActivityLog {
        ActivityLog {
            slots: vec![EMPTY; al_extents as usize],
            entries: HashMap::new(),
            idle: BTreeSet::new(),
            free: (0..al_extents).rev().collect(),
            clock: 0,
            next_seq,
            next_context: 0,
        }
    }

    /// Number of LRU slots.
    pub fn capacity(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Takes a reference on every extent of `extents` if all are active; otherwise changes nothing.
    pub fn try_acquire(&mut self, extents: std::ops::RangeInclusive<u32>) -> bool {
        if !extents.clone().all(|e| self.entries.contains_key(&e)) {
            return false;
        }
        for e in extents {
            if let Some(entry) = self.entries.get_mut(&e) {
                if entry.refs == 0 {
                    self.idle.remove(&(entry.stamp, e));
                }
                entry.refs += 1;
            }
        }
        true
    }

    /// Drops one reference on every extent of `extents`.
    pub fn release(&mut self, extents: std::ops::RangeInclusive<u32>) {
        for e in extents {
            if let Some(entry) = self.entries.get_mut(&e) {
                entry.refs = entry.refs.saturating_sub(1);
                if entry.refs == 0 {
                    self.clock += 1;
                    entry.stamp = self.clock;
                    self.idle.insert((entry.stamp, e));
                }
            }
        }
    }

    /// True when `extent` is active.
    pub fn is_active(&self, extent: u32) -> bool {
        self.entries.contains_key(&extent)
    }

    /// Extents currently active.
    pub fn active_extents(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().copied().filter(|&e| e != EMPTY)
    }

    /// Number of references held by writes.
    pub fn references(&self) -> u64 {
        self.entries.values().map(|e| u64::from(e.refs)).sum()
    }

    /// Plans a transaction activating the inactive extents of `own` (the caller's write) and, while
    /// room remains in the transaction, of `others` (writes waiting behind it: group commit). Idle
    /// extents are evicted as needed, least recently used first, never one of `own`. Victims leave the
    /// log at once, so no write can take them while their bits are written out.
    ///
    /// Returns `None` when nothing in `own` is inactive, or when `own` cannot get enough slots yet
    /// because the others are held by writes.
    pub fn plan(&mut self, own: &[u32], others: &[u32]) -> Option<Plan> {
        let mut seen = BTreeSet::new();
        let own_inactive: Vec<u32> = own
            .iter()
            .copied()
            .filter(|e| !self.entries.contains_key(e) && seen.insert(*e))
            .collect();
        let evictable = self.idle.iter().filter(|(_, e)| !own.contains(e)).count();
        let available = self.free.len() + evictable;
        if own_inactive.is_empty() || available < own_inactive.len() {
            return None;
        }
        let more = others
            .iter()
            .copied()
            .filter(|e| !self.entries.contains_key(e) && seen.insert(*e));
        let wanted: Vec<u32> = own_inactive
            .into_iter()
            .chain(more)
            .take(AL_UPDATES_PER_TRANSACTION.min(available))
            .collect();
        let mut updates = Vec::with_capacity(wanted.len());
        let mut victims = Vec::new();
        for e in wanted {
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    let &(stamp, victim) = self.idle.iter().find(|(_, v)| !own.contains(v))?;
                    self.idle.remove(&(stamp, victim));
                    let entry = self.entries.remove(&victim)?;
                    victims.push(victim);
                    entry.slot
                }
            };
            updates.push((slot, e));
        }
        Some(Plan { updates, victims })
    }

    /// The transaction carrying `plan`: its updates and the next context slice, taken as it will be
    /// once the updates apply.
    pub fn transaction(&self, plan: &Plan) -> Transaction {
        let n = self.slots.len();
        let len = AL_CONTEXT_PER_TRANSACTION.min(n);
        let start = self.next_context as usize;
        let context = (0..len)
            .map(|i| {
                let slot = (start + i) % n;
                plan.updates
                    .iter()
                    .rev()
                    .find(|(s, _)| *s as usize == slot)
                    .map_or(self.slots[slot], |&(_, e)| e)
            })
            .collect();
        Transaction {
            seq: self.next_seq,
            updates: plan.updates.clone(),
            context_start: start as u32,
            context,
        }
    }

    /// The transactions that rewrite the whole ring of `ring_slots` blocks with the current (empty or
    /// not) LRU, used when the log is reset at open.
    pub fn reset_transactions(&mut self, ring_slots: u32) -> Vec<Transaction> {
        let empty = Plan {
            updates: Vec::new(),
            victims: Vec::new(),
        };
        (0..ring_slots)
            .map(|_| {
                let t = self.transaction(&empty);
                self.advance();
                t
            })
            .collect()
    }

    fn advance(&mut self) {
        self.next_seq += 1;
        let n = self.slots.len();
        self.next_context = ((self.next_context as usize + AL_CONTEXT_PER_TRANSACTION.min(n)) % n) as u32;
    }

    /// Applies a durable transaction: the new extents become active and idle.
    pub fn commit(&mut self, plan: &Plan) {
        for &(slot, extent) in &plan.updates {
            self.slots[slot as usize] = extent;
            self.clock += 1;
            self.entries.insert(
                extent,
                Entry {
                    slot,
                    refs: 0,
                    stamp: self.clock,
                },
            );
            self.idle.insert((self.clock, extent));
        }
        self.advance();
    }

    /// Sequence number the next transaction will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_idle_extent() {
        let mut al = ActivityLog::new(2, 0);
        let p = al.plan(&[10, 11], &[]).unwrap();
        assert!(p.victims.is_empty());
        al.commit(&p);
        assert!(al.try_acquire(10..=10));
        al.release(10..=10); // 10 is now more recently used than 11
        let p = al.plan(&[12], &[]).unwrap();
        assert_eq!(p.victims, vec![11]);
        assert!(!al.is_active(11), "a victim leaves at once");
        al.commit(&p);
        assert!(al.try_acquire(12..=12));
        assert!(al.is_active(12) && al.is_active(10));
        assert_eq!(al.references(), 1);
    }

    #[test]
    fn held_extents_are_never_evicted() {
        let mut al = ActivityLog::new(1, 0);
        let p = al.plan(&[1], &[]).unwrap();
        al.commit(&p);
        assert!(al.try_acquire(1..=1));
        assert_eq!(al.plan(&[2], &[]), None, "the only slot is held");
        al.release(1..=1);
        assert_eq!(al.plan(&[2], &[]).unwrap().victims, vec![1]);
    }

    #[test]
    fn own_extents_are_never_victims_and_others_ride_along() {
        let mut al = ActivityLog::new(3, 0);
        let p = al.plan(&[1], &[]).unwrap();
        al.commit(&p);
        // Own write spans 1 (active, idle) and 2: 1 must not be evicted to make room.
        let p = al.plan(&[1, 2], &[3, 4]).unwrap();
        assert!(!p.victims.contains(&1));
        assert_eq!(p.updates.iter().map(|u| u.1).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn context_reflects_the_updates() {
        let mut al = ActivityLog::new(3, 5);
        let p = al.plan(&[7], &[]).unwrap();
        let t = al.transaction(&p);
        assert_eq!(t.seq, 5);
        assert_eq!(t.context.iter().filter(|&&e| e == 7).count(), 1);
    }
}
