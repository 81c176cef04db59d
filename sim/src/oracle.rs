//! The ghost record of every write: what the simulated nodes cannot see but the checker must.
//!
//! Each application write gets an id; a disk block holds the id of the write it last received
//! (0 = the initial contents every node starts with). For every write the log keeps the block, the
//! write it overwrote on the Primary (`prev`), whether the application saw it complete
//! (acknowledged), and whether an explicit split-brain decision threw it away (discarded).
//!
//! The `prev` links make each block's history a tree. A block value **holds** write `w` if `w` is on
//! the path from the value back to the initial contents: the value is `w` or a later write made on top
//! of `w`. This is the ground truth the invariants compare against: "every UpToDate node holds every
//! acknowledged write", "both sides hold acknowledged writes the other lacks" (a real split brain).

/// A write's id; 0 is the initial contents.
pub type WriteId = u32;

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// The block written.
    pub block: usize,
    /// The write this one overwrote on the Primary.
    pub prev: WriteId,
    /// The Primary that made it.
    pub node: usize,
    /// The step that made it.
    pub step: usize,
    /// The application saw it complete.
    pub acked: bool,
    /// An explicit split-brain resolution (policy or `--discard-my-data`) discarded it.
    pub discarded: bool,
}

/// Every write of a schedule.
#[derive(Debug, Clone, Default)]
pub struct WriteLog {
    records: Vec<WriteRecord>,
    acked_by_block: Vec<Vec<WriteId>>,
}

impl WriteLog {
    /// An empty log for `blocks` blocks.
    pub fn new(blocks: usize) -> Self {
        Self {
            records: vec![WriteRecord {
                block: usize::MAX,
                prev: 0,
                node: usize::MAX,
                step: 0,
                acked: true,
                discarded: false,
            }],
            acked_by_block: vec![Vec::new(); blocks],
        }
    }

    /// Records a new write of `block` by `node` over `prev`; returns its id.
    pub fn record(&mut self, block: usize, prev: WriteId, node: usize, step: usize) -> WriteId {
        let id = self.records.len() as WriteId;
        self.records.push(WriteRecord {
            block,
            prev,
            node,
            step,
            acked: false,
            discarded: false,
        });
        id
    }

    /// The record of write `id`.
    pub fn get(&self, id: WriteId) -> Option<&WriteRecord> {
        self.records.get(id as usize)
    }

    /// The number of writes made (acknowledged or not).
    pub fn len(&self) -> usize {
        self.records.len() - 1
    }

    /// Whether no write was made.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks write `id` acknowledged to the application.
    pub fn ack(&mut self, id: WriteId) {
        if let Some(r) = self.records.get_mut(id as usize)
            && !r.acked
        {
            r.acked = true;
            if let Some(list) = self.acked_by_block.get_mut(r.block) {
                list.push(id);
            }
        }
    }

    /// The number of acknowledged writes.
    pub fn acked_count(&self) -> usize {
        self.acked_by_block.iter().map(Vec::len).sum()
    }

    /// Whether block value `value` holds write `w` (see the module documentation).
    pub fn holds(&self, value: WriteId, w: WriteId) -> bool {
        let mut v = value;
        // Ids only decrease along `prev`, so the walk stops as soon as it passes `w`.
        while v > w {
            match self.records.get(v as usize) {
                Some(r) => v = r.prev,
                None => return false,
            }
        }
        v == w
    }

    /// The acknowledged writes that are not discarded, block by block.
    pub fn live_acked(&self) -> impl Iterator<Item = (usize, WriteId)> + '_ {
        self.acked_by_block
            .iter()
            .enumerate()
            .flat_map(move |(block, ids)| {
                ids.iter()
                    .copied()
                    .filter(move |id| self.records.get(*id as usize).is_some_and(|r| !r.discarded))
                    .map(move |id| (block, id))
            })
    }

    /// The first live acknowledged write that the disk `data` does not hold.
    pub fn first_missing(&self, data: &[WriteId]) -> Option<(usize, WriteId)> {
        self.live_acked()
            .find(|(block, id)| !data.get(*block).is_some_and(|v| self.holds(*v, *id)))
    }

    /// A live acknowledged write `a` holds and `b` lacks, and one the other way round: the two disks
    /// went separate ways, each with writes the application saw complete.
    pub fn divergence(&self, a: &[WriteId], b: &[WriteId]) -> Option<(WriteId, WriteId)> {
        let mut only_a = None;
        let mut only_b = None;
        for (block, id) in self.live_acked() {
            let (va, vb) = (a.get(block).copied(), b.get(block).copied());
            let ha = va.is_some_and(|v| self.holds(v, id));
            let hb = vb.is_some_and(|v| self.holds(v, id));
            if ha && !hb && only_a.is_none() {
                only_a = Some(id);
            }
            if hb && !ha && only_b.is_none() {
                only_b = Some(id);
            }
        }
        only_a.zip(only_b)
    }

    /// DRBD's definition of split brain: `a` holds a live acknowledged write that node `a_node`
    /// itself made and `b` lacks, and `b` one that `b_node` made and `a` lacks — both nodes wrote
    /// since their data diverged. Unlike [`WriteLog::divergence`] it ignores writes a node merely
    /// received from a third Primary.
    pub fn divergence_by_writers(
        &self,
        (a, a_node): (&[WriteId], usize),
        (b, b_node): (&[WriteId], usize),
    ) -> Option<(WriteId, WriteId)> {
        let mut only_a = None;
        let mut only_b = None;
        for (block, id) in self.live_acked() {
            let Some(writer) = self.get(id).map(|r| r.node) else {
                continue;
            };
            let ha = a.get(block).is_some_and(|v| self.holds(*v, id));
            let hb = b.get(block).is_some_and(|v| self.holds(*v, id));
            if writer == a_node && ha && !hb && only_a.is_none() {
                only_a = Some(id);
            }
            if writer == b_node && hb && !ha && only_b.is_none() {
                only_b = Some(id);
            }
        }
        only_a.zip(only_b)
    }

    /// An explicit split-brain resolution made `victim` take `winner`'s data: every live acknowledged
    /// write the victim holds and the winner lacks is discarded. Returns how many.
    pub fn discard(&mut self, victim: &[WriteId], winner: &[WriteId]) -> usize {
        let lost: Vec<WriteId> = self
            .live_acked()
            .filter(|(block, id)| {
                victim.get(*block).is_some_and(|v| self.holds(*v, *id))
                    && !winner.get(*block).is_some_and(|v| self.holds(*v, *id))
            })
            .map(|(_, id)| id)
            .collect();
        for id in &lost {
            if let Some(r) = self.records.get_mut(*id as usize) {
                r.discarded = true;
            }
        }
        lost.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_follows_the_overwrite_chain() {
        let mut log = WriteLog::new(2);
        let w1 = log.record(0, 0, 0, 1);
        let w2 = log.record(0, w1, 0, 2);
        let w3 = log.record(0, w1, 1, 3); // another branch on top of w1
        assert!(log.holds(w2, w1) && log.holds(w2, w2) && log.holds(w2, 0));
        assert!(!log.holds(w2, w3) && !log.holds(w3, w2) && !log.holds(w1, w2));
        log.ack(w2);
        log.ack(w3);
        assert_eq!(log.acked_count(), 2);
        assert_eq!(log.divergence(&[w2, 0], &[w3, 0]), Some((w2, w3)));
        assert_eq!(log.divergence(&[w2, 0], &[w1, 0]), None);
        assert_eq!(log.first_missing(&[w2, 0]), Some((0, w3)));
        assert_eq!(log.discard(&[w3, 0], &[w2, 0]), 1);
        assert_eq!(log.first_missing(&[w2, 0]), None);
    }
}
