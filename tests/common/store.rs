//! The simulated disk: a durable image plus writes that were issued but are not yet durable.
//! A crash loses the pending writes, or (torn) makes only a prefix of them durable.

use raftlet::{Entry, HardState, Index, SnapshotId, Storage, Term};
use std::collections::VecDeque;

/// A durable log that starts after `snapshot`: `log[k]` has index `snapshot.index + 1 + k`.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    pub hs: HardState,
    pub snapshot: SnapshotId,
    pub log: Vec<Entry<u64>>,
}

impl MemStore {
    pub fn write(
        &mut self,
        hs: Option<HardState>,
        snapshot: Option<SnapshotId>,
        entries: &[Entry<u64>],
    ) {
        if let Some(hs) = hs {
            self.hs = hs;
        }
        if let Some(s) = snapshot {
            self.log.clear();
            self.snapshot = s;
        }
        if let Some(first) = entries.first() {
            let keep = (first.index.0 - self.snapshot.index.0 - 1) as usize;
            self.log.truncate(keep);
            self.log.extend_from_slice(entries);
        }
    }

    /// Writes a persist polled from a node.
    pub fn persist(&mut self, p: &raftlet::Persist<'_, u64>) {
        let (a, b) = p.entries.as_slices();
        self.write(p.hard_state.copied(), p.snapshot.copied(), a);
        if !b.is_empty() {
            self.write(None, None, b);
        }
    }

    pub fn compact(&mut self, through: SnapshotId) {
        if through.index > self.snapshot.index {
            let n = ((through.index.0 - self.snapshot.index.0) as usize).min(self.log.len());
            self.log.drain(..n);
            self.snapshot = through;
        }
    }

    fn pos(&self, index: Index) -> Option<usize> {
        index
            .0
            .checked_sub(self.snapshot.index.0 + 1)
            .map(|k| k as usize)
    }
}

impl Storage<u64> for MemStore {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.snapshot.index.0 + self.log.len() as u64)
    }
    fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.log.get(self.pos(index)?).map(|e| e.term)
    }
    fn entry(&self, index: Index) -> Option<Entry<u64>> {
        self.log.get(self.pos(index)?).cloned()
    }
    fn snapshot(&self) -> SnapshotId {
        self.snapshot
    }
}

/// One issued write.
#[derive(Clone, Debug)]
pub struct PendingWrite {
    pub token: raftlet::PersistToken,
    pub hs: Option<HardState>,
    pub snapshot: Option<SnapshotId>,
    pub entries: Vec<Entry<u64>>,
    /// Simulated time at which the disk reports it durable.
    pub due: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub durable: MemStore,
    pub pending: VecDeque<PendingWrite>,
}

impl Disk {
    /// Completes the oldest pending write if it is due; returns its token.
    pub fn complete_due(&mut self, now: u64) -> Option<raftlet::PersistToken> {
        if self.pending.front().is_some_and(|w| w.due <= now) {
            let w = self.pending.pop_front()?;
            self.durable.write(w.hs, w.snapshot, &w.entries);
            Some(w.token)
        } else {
            None
        }
    }

    /// The entry at `index` as the runner has written it (durable or not): what a node with
    /// `Config::apply_before_durable` may ask to apply. The newest write that reaches `index`
    /// decides; one that starts at or below it and ends before it, or resets the log past it,
    /// means the entry is gone.
    pub fn written_entry(&self, index: Index) -> Option<Entry<u64>> {
        for w in self.pending.iter().rev() {
            if let Some(first) = w.entries.first()
                && first.index <= index
            {
                return w.entries.get((index.0 - first.index.0) as usize).cloned();
            }
            if w.snapshot.is_some() {
                return None;
            }
        }
        self.durable.entry(index)
    }

    /// Power loss: pending writes vanish, except that with `torn = Some(k)` the first `k` whole
    /// writes and part of the next one reached the disk (in order, as a log-structured store
    /// would leave them).
    pub fn crash(&mut self, torn: Option<(usize, usize)>) {
        if let Some((whole, partial_entries)) = torn {
            for (i, w) in self.pending.iter().enumerate() {
                if i < whole {
                    self.durable.write(w.hs, w.snapshot, &w.entries);
                } else if i == whole {
                    // The hard state and log reset are written first, then entries one by one.
                    let n = partial_entries.min(w.entries.len());
                    self.durable.write(w.hs, w.snapshot, &w.entries[..n]);
                    break;
                }
            }
        }
        self.pending.clear();
    }
}
