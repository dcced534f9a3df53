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
            self.entries.clear();
            self.base = id;
        }
        if let Some(first) = p.entries.first() {
            let keep = first.index.0.saturating_sub(self.base.index.0 + 1) as usize;
            self.entries.truncate(keep);
            self.entries.extend(p.entries.iter().cloned());
        }
        Ok(())
    }
    fn start_sync(&mut self) -> io::Result<Option<SyncJob>> {
        Ok(None)
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn compact(&mut self, through: SnapshotId) -> io::Result<()> {
        if through.index <= self.base.index {
            return Ok(());
        }
        let drop = ((through.index.0 - self.base.index.0) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.base = through;
        Ok(())
    }
    fn get(&self, index: Index) -> Option<&LogEntry> {
        self.entries.get(self.pos(index)?)
    }
}
