//! The node's view of its log: durable entries in the runner's [`Storage`] plus an in-memory
//! tail of entries that are not yet acknowledged as durable ("unstable", as in etcd).
//!
//! Invariants:
//! * the log starts after `snapshot` (its base): `term(snapshot.index)` is `snapshot.term`,
//!   nothing at or below `snapshot.index` is ever read, and `snapshot.index <= stable_last`;
//! * the unstable tail holds exactly the entries `stable_last + 1 ..= last_index()`, contiguous;
//! * storage is read only at indices `<= stable_last`, which the runner has acknowledged as
//!   durable *and* which no later truncation has invalidated;
//! * `handed` (the next index to put in a Persist) lies in `stable_last + 1 ..= last_index() + 1`;
//! * every outstanding persist record's `last` is `<= handed - 1`; a truncation at `k` clips
//!   records and `stable_last` to `k - 1`, so an acknowledgement of a write that a newer leader
//!   overwrote in memory never marks the overwritten entries durable.

use crate::storage::Storage;
use crate::types::{Entry, Index, SnapshotId, Term};
use heapless::Deque;

/// How many persists may be outstanding (emitted, not acknowledged) at once. When the window is
/// full the node emits no further persist until the runner acknowledges one.
pub(crate) const PERSIST_WINDOW: usize = 8;

#[derive(Debug)]
pub(crate) struct RaftLog<P, const LOG: usize> {
    snapshot: SnapshotId,
    unstable: Deque<Entry<P>, LOG>,
    stable_last: Index,
    last_term: Term,
    handed: Index,
    records: Deque<(u64, Index), PERSIST_WINDOW>,
}

impl<P: Clone, const LOG: usize> RaftLog<P, LOG> {
    pub(crate) fn new(snapshot: SnapshotId, stable_last: Index, last_term: Term) -> Self {
        Self {
            snapshot,
            unstable: Deque::new(),
            stable_last,
            last_term,
            handed: stable_last.next(),
            records: Deque::new(),
        }
    }

    pub(crate) fn last_index(&self) -> Index {
        Index(self.stable_last.0 + self.unstable.len() as u64)
    }
    pub(crate) fn last_term(&self) -> Term {
        self.last_term
    }
    pub(crate) fn stable_last(&self) -> Index {
        self.stable_last
    }
    /// The snapshot the log starts after.
    pub(crate) fn snapshot(&self) -> SnapshotId {
        self.snapshot
    }
    /// The first index whose entry the log still holds (or will hold next).
    pub(crate) fn first_index(&self) -> Index {
        self.snapshot.index.next()
    }

    /// Forgets entries up to `through` (which the caller checked is durable and in the log).
    pub(crate) fn compact(&mut self, through: SnapshotId) {
        if through.index > self.snapshot.index {
            self.snapshot = through;
        }
    }

    /// Replaces the whole log by a snapshot installed from the leader: the log becomes empty,
    /// starting after `id`. Outstanding persist records can no longer make anything above
    /// `id.index` durable.
    pub(crate) fn reset_to(&mut self, id: SnapshotId) {
        self.unstable.clear();
        self.snapshot = id;
        self.stable_last = id.index;
        self.last_term = id.term;
        self.handed = id.index.next();
        for rec in self.records.iter_mut() {
            if rec.1 > id.index {
                rec.1 = id.index;
            }
        }
    }

    pub(crate) fn room(&self) -> usize {
        LOG - self.unstable.len()
    }

    fn unstable_at(&self, index: Index) -> Option<&Entry<P>> {
        if index <= self.stable_last {
            return None;
        }
        let off = (index.0 - self.stable_last.0 - 1) as usize;
        let (a, b) = self.unstable.as_slices();
        if off < a.len() {
            a.get(off)
        } else {
            b.get(off - a.len())
        }
    }

    /// Term of the entry at `index`; `None` beyond the log or where storage has no answer.
    pub(crate) fn term<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index || index > self.last_index() {
            return None;
        }
        if index > self.stable_last {
            return self.unstable_at(index).map(|e| e.term);
        }
        storage.term(index)
    }

    /// A copy of the entry at `index`.
    pub(crate) fn entry<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Entry<P>> {
        if index <= self.snapshot.index || index > self.last_index() {
            return None;
        }
        if index > self.stable_last {
            return self.unstable_at(index).cloned();
        }
        storage.entry(index)
    }

    /// Raft §5.4.1: is a log ending at (`last_index`, `last_term`) at least as up to date?
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term
            || (last_term == self.last_term && last_index >= self.last_index())
    }

    /// The largest index `<= index` whose term is `<= term`, with its term (etcd's
    /// `findConflictByTerm`). Used for the fast back-off hint on both sides.
    pub(crate) fn find_conflict_by_term<S: Storage<P>>(
        &self,
        index: Index,
        term: Term,
        storage: &S,
    ) -> (Index, Term) {
        let mut i = core::cmp::min(index, self.last_index());
        loop {
            match self.term(i, storage) {
                Some(t) if t > term && i.0 > 0 => i = i.prev(),
                Some(t) => return (i, t),
                None => return (i, Term(0)),
            }
        }
    }

    /// Appends one entry at `last_index() + 1`. Hands it back when full.
    pub(crate) fn push(&mut self, entry: Entry<P>) -> Result<(), Entry<P>> {
        debug_assert_eq!(entry.index, self.last_index().next());
        let term = entry.term;
        self.unstable.push_back(entry)?;
        self.last_term = term;
        Ok(())
    }

    /// Removes every entry at or after `from` (`from >= 1`). The caller guarantees that `from`
    /// is above the commit index.
    pub(crate) fn truncate_from<S: Storage<P>>(&mut self, from: Index, storage: &S) {
        if from > self.last_index() || from <= self.snapshot.index {
            return;
        }
        if from > self.stable_last {
            let keep = (from.0 - self.stable_last.0 - 1) as usize;
            while self.unstable.len() > keep {
                self.unstable.pop_back();
            }
        } else {
            self.unstable.clear();
            self.stable_last = from.prev();
        }
        let cap = from.prev();
        for rec in self.records.iter_mut() {
            if rec.1 > cap {
                rec.1 = cap;
            }
        }
        if self.handed > from {
            self.handed = from;
        }
        self.last_term = self.term(from.prev(), storage).unwrap_or(Term(0));
    }

    /// Whether entries wait to be handed to the runner, and a record slot is free.
    pub(crate) fn has_unhanded(&self) -> bool {
        self.handed <= self.last_index()
    }
    pub(crate) fn record_room(&self) -> bool {
        !self.records.is_full()
    }

    /// Moves up to `BATCH` not-yet-handed entries into `out` and records the persist `token`.
    pub(crate) fn hand_out<const BATCH: usize>(
        &mut self,
        token: u64,
        out: &mut heapless::Vec<Entry<P>, BATCH>,
    ) {
        while self.handed <= self.last_index() && !out.is_full() {
            let Some(e) = self.unstable_at(self.handed).cloned() else {
                break;
            };
            let _ = out.push(e);
            self.handed = self.handed.next();
        }
        let _ = self.records.push_back((token, self.handed.prev()));
    }

    /// The runner acknowledged every persist up to `token`.
    pub(crate) fn acknowledge(&mut self, token: u64) {
        while let Some(&(t, last)) = self.records.front() {
            if t > token {
                break;
            }
            self.records.pop_front();
            if last > self.stable_last {
                // Entries (stable_last, last] leave the unstable tail.
                while self.stable_last < last && self.unstable.pop_front().is_some() {
                    self.stable_last = self.stable_last.next();
                }
            }
        }
    }
}
