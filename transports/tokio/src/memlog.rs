//! An in-memory log for tests and examples: the [`LogStore`] contract with nothing on disk.
//! Every write is "durable" at once (a restart loses everything: use [`DiskLog`] for a node
//! that must survive one).
//!
//! [`DiskLog`]: crate::storage::DiskLog

use crate::storage::{LogEntry, LogStore, Payload, RunnerPersist, SyncJob};
use raftlet::{ConfChange, EntryData, HardState, Index, SnapshotId, Storage, Term};
use std::collections::VecDeque;
use std::io;

/// A log held in memory. See the [module docs](self).
#[derive(Debug, Default, Clone)]
pub struct MemLog {
    hs: HardState,
    base: SnapshotId,
    entries: VecDeque<LogEntry>,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the hard state (in memory).
    pub(crate) fn set_hard_state(&mut self, hs: HardState) {
        self.hs = hs;
    }

    /// Discards every entry: the log now starts after `base`.
    pub(crate) fn reset(&mut self, base: SnapshotId) {
        self.entries.clear();
        self.base = base;
    }

    /// Stores `entries` (contiguous), replacing every entry at or after the first one's index;
    /// entries the log's start covers are skipped.
    pub(crate) fn replace_from(&mut self, entries: impl IntoIterator<Item = LogEntry>) {
        let base = self.base.index;
        let mut entries = entries
            .into_iter()
            .skip_while(|e| e.index <= base)
            .peekable();
        let Some(first) = entries.peek() else {
            return;
        };
        let keep = first.index.0.saturating_sub(base.0 + 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend(entries);
    }

    /// Drops the entries up to `through`, which becomes the log's start.
    pub(crate) fn compact_to(&mut self, through: SnapshotId) {
        if through.index <= self.base.index {
            return;
        }
        let drop = ((through.index.0 - self.base.index.0) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.base = through;
    }

    fn pos(&self, index: Index) -> Option<usize> {
        index
            .0
            .checked_sub(self.base.index.0 + 1)
            .map(|k| k as usize)
    }
}

impl Storage<Payload> for MemLog {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.base.index.0 + self.entries.len() as u64)
    }
    fn term(&self, index: Index) -> Option<Term> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.entries.get(self.pos(index)?).map(|e| e.term)
    }
    fn entry(&self, index: Index) -> Option<LogEntry> {
        self.entries.get(self.pos(index)?).cloned()
    }
    fn snapshot(&self) -> SnapshotId {
        self.base
    }
    fn membership_changes(&self, after: Index, f: &mut dyn FnMut(Index, &ConfChange)) {
        for e in &self.entries {
            if let (true, EntryData::Membership(c)) = (e.index > after, &e.data) {
                f(e.index, c);
            }
        }
    }
}

impl LogStore for MemLog {
    fn write(&mut self, p: &RunnerPersist<'_>) -> io::Result<()> {
        if let Some(hs) = p.hard_state {
            self.hs = *hs;
        }
        if let Some(&id) = p.snapshot {
            self.reset(id);
        }
        self.replace_from(p.entries.iter().cloned());
        Ok(())
    }
    fn start_sync(&mut self) -> io::Result<Option<SyncJob>> {
        Ok(None)
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn compact(&mut self, through: SnapshotId) -> io::Result<()> {
        self.compact_to(through);
        Ok(())
    }
    fn get(&self, index: Index) -> Option<&LogEntry> {
        self.entries.get(self.pos(index)?)
    }
}
