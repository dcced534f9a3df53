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
//!   overwrote in memory never marks the overwritten entries durable;
//! * the records' tokens are consecutive (the node numbers persists 1, 2, 3..., and one taken
//!   back gives its token back), and their `last`s never decrease from the oldest to the newest;
//! * `last_term` is the term of the entry at `last_index()` (the snapshot's term when the log is
//!   empty): `term` answers it without a lookup, and debug builds check it against one.

use crate::action::Entries;
use crate::storage::Storage;
use crate::types::{Entry, Index, SnapshotId, Term};
use heapless::Deque;

/// How many persists may be outstanding (emitted, not acknowledged) at once. When the window is
/// full the node emits no further persist until the runner acknowledges one, so a runner that
/// holds persists back (to batch them, or while its store is full) needs room for this many.
pub const PERSIST_WINDOW: usize = 8;

#[derive(Debug)]
pub(crate) struct RaftLog<P, const LOG: usize> {
    snapshot: SnapshotId,
    unstable: Deque<Entry<P>, LOG>,
    stable_last: Index,
    last_term: Term,
    handed: Index,
    records: Records,
    /// The last index: `stable_last + unstable.len()`, kept rather than computed (a ring's
    /// length takes branches, and the last index is asked for on every message).
    last: Index,
    /// `handed` before the newest hand-out (to take it back: [`unhand`](Self::unhand)).
    handed_before: Index,
}

impl<P: Clone, const LOG: usize> RaftLog<P, LOG> {
    pub(crate) const fn new(snapshot: SnapshotId, stable_last: Index, last_term: Term) -> Self {
        Self {
            snapshot,
            unstable: Deque::new(),
            stable_last,
            last_term,
            handed: stable_last.next(),
            records: Records::new(),
            last: stable_last,
            handed_before: stable_last.next(),
        }
    }

    /// Makes this log what [`new`](Self::new) would, in place: the unstable tail is emptied
    /// where it lies rather than built anew (a node initialised in place needs no stack for it).
    pub(crate) fn reinit(&mut self, snapshot: SnapshotId, stable_last: Index, last_term: Term) {
        self.snapshot = snapshot;
        self.unstable.clear();
        self.stable_last = stable_last;
        self.last = stable_last;
        self.last_term = last_term;
        self.handed = stable_last.next();
        self.handed_before = self.handed;
        self.records.clear();
    }

    pub(crate) fn last_index(&self) -> Index {
        debug_assert_eq!(self.last.0, self.stable_last.0 + self.unstable.len() as u64);
        self.last
    }
    pub(crate) fn last_term(&self) -> Term {
        self.last_term
    }
    pub(crate) fn stable_last(&self) -> Index {
        self.stable_last
    }
    /// The last index handed to the runner in a persist (written, if not yet durable):
    /// `stable_last` or above.
    pub(crate) fn handed_last(&self) -> Index {
        self.handed.prev()
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
        self.last = id.index;
        self.last_term = id.term;
        self.handed = id.index.next();
        self.clip_records(id.index);
    }

    /// No outstanding persist record may make anything above `last` durable any more.
    fn clip_records(&mut self, last: Index) {
        self.records.clip(last);
    }

    pub(crate) fn room(&self) -> usize {
        LOG - (self.last.0 - self.stable_last.0) as usize
    }

    /// The unstable entry at `index`: `None` at or below `stable_last` and past the tail. The
    /// offset is converted with a check, so an untrusted huge index cannot wrap into a valid
    /// slot on a 32-bit target.
    fn unstable_at(&self, index: Index) -> Option<&Entry<P>> {
        let off = index.0.checked_sub(self.stable_last.0.saturating_add(1))?;
        let off = usize::try_from(off).ok()?;
        let (a, b) = self.unstable.as_slices();
        if off < a.len() {
            a.get(off)
        } else {
            b.get(off - a.len())
        }
    }

    /// Term of the entry at `index`; `None` beyond the log or where storage has no answer.
    pub(crate) fn term<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Term> {
        // The last entry's term is kept (the most asked for: an append that extends the log,
        // a commit of the newest entry).
        if index == self.last {
            debug_assert!(
                self.term_looked_up(index, storage)
                    .is_none_or(|t| t == self.last_term)
            );
            return Some(self.last_term);
        }
        self.term_looked_up(index, storage)
    }

    /// [`term`](Self::term) without the last term kept: looked up in the tail or in storage.
    fn term_looked_up<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Term> {
        match index.cmp(&self.snapshot.index) {
            core::cmp::Ordering::Less => None,
            core::cmp::Ordering::Equal => Some(self.snapshot.term),
            // Past the log, the tail answers nothing.
            core::cmp::Ordering::Greater if index > self.stable_last => {
                self.unstable_at(index).map(|e| e.term)
            }
            core::cmp::Ordering::Greater => storage.term(index),
        }
    }

    /// A copy of the entry at `index`.
    pub(crate) fn entry<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Entry<P>> {
        if index <= self.snapshot.index {
            return None;
        }
        if index > self.stable_last {
            // Past the log, the tail answers nothing.
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
        // Terminates: index 0 answers term 0 (an empty log's base) or nothing (a compacted
        // log's), so the walk stops there at the latest.
        let mut i = core::cmp::min(index, self.last_index());
        loop {
            match self.term(i, storage) {
                Some(t) if t > term => i = i.prev(),
                Some(t) => return (i, t),
                None => return (i, Term(0)),
            }
        }
    }

    /// Appends one entry at `last_index() + 1`. Hands it back when full.
    #[inline]
    pub(crate) fn push(&mut self, entry: Entry<P>) -> Result<(), Entry<P>> {
        debug_assert_eq!(entry.index, self.last_index().next());
        let term = entry.term;
        self.unstable.push_back(entry)?;
        self.last = self.last.next();
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
            // In one step: the deque drops the removed entries as slices.
            self.unstable
                .truncate((from.0 - self.stable_last.0 - 1) as usize);
        } else {
            self.unstable.clear();
            self.stable_last = from.prev();
        }
        self.last = from.prev();
        self.clip_records(from.prev());
        self.handed = self.handed.min(from);
        // Looked up: the kept last term is the truncated entry's.
        self.last_term = self.term_looked_up(from.prev(), storage).unwrap_or(Term(0));
    }

    /// Whether entries wait to be handed to the runner, and a record slot is free.
    pub(crate) fn has_unhanded(&self) -> bool {
        self.handed <= self.last_index()
    }
    pub(crate) fn record_room(&self) -> bool {
        !self.records.is_full()
    }

    /// Hands out every not-yet-handed entry, as one run, and records the persist `token`.
    pub(crate) fn hand_out(&mut self, token: u64) -> Entries<'_, P> {
        let from = self.handed;
        self.handed_before = from;
        let last = self.last_index();
        self.handed = last.next();
        self.records.push(token, last);
        let n = (last.0 + 1).saturating_sub(from.0) as usize;
        self.entries_from(from, n)
    }

    /// Up to `n` unstable entries from `index` (which must be above `stable_last`), borrowed.
    pub(crate) fn entries_from(&self, index: Index, n: usize) -> Entries<'_, P> {
        let Some(off) = index
            .0
            .checked_sub(self.stable_last.0.saturating_add(1))
            .and_then(|o| usize::try_from(o).ok())
        else {
            return Entries::EMPTY;
        };
        let (a, b) = self.unstable.as_slices();
        let (a, b) = match a.get(off..) {
            Some(rest) => (rest, b),
            None => (&[][..], b.get(off - a.len()..).unwrap_or(&[])),
        };
        let a_n = a.len().min(n);
        let b_n = b.len().min(n - a_n);
        Entries::new(&a[..a_n], &b[..b_n])
    }

    /// Takes back the newest hand-out, persist `token`: its entries are handed out again by the
    /// next one. Returns whether `token` was the newest record.
    pub(crate) fn unhand(&mut self, token: u64) -> bool {
        if !self.records.pop_newest(token) {
            return false;
        }
        // A truncation since may have moved `handed` lower already.
        self.handed = self
            .handed
            .min(self.handed_before)
            .max(self.stable_last.next());
        true
    }

    /// The runner acknowledged every persist up to `token`.
    pub(crate) fn acknowledge(&mut self, token: u64) {
        let Some(last) = self.records.take_through(token) else {
            return;
        };
        // Entries (stable_last, last] leave the unstable tail (none if a truncation or a reset
        // clipped the records to or below stable_last), in one step: the deque drops them as
        // slices rather than popping them one by one.
        if last > self.stable_last {
            let len = self.unstable.len();
            let gone = core::cmp::min((last.0 - self.stable_last.0) as usize, len);
            if gone == 1 {
                self.unstable.pop_front();
            } else {
                self.unstable.retain_back(len - gone);
            }
            self.stable_last = Index(self.stable_last.0 + gone as u64);
        }
    }
}

/// The outstanding persists, oldest first: for each, the last index it makes durable. The node
/// numbers its persists 1, 2, 3... (a deferred one takes its token back), so the outstanding
/// tokens are consecutive and token `t`'s record lives in slot `t % PERSIST_WINDOW`.
#[derive(Debug)]
struct Records {
    last: [Index; PERSIST_WINDOW],
    /// The token of the oldest outstanding persist (meaningless while `len` is 0).
    first: u64,
    len: usize,
}

impl Records {
    const fn new() -> Self {
        Self {
            last: [Index(0); PERSIST_WINDOW],
            first: 0,
            len: 0,
        }
    }

    fn slot(token: u64) -> usize {
        (token % PERSIST_WINDOW as u64) as usize
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn is_full(&self) -> bool {
        self.len == PERSIST_WINDOW
    }

    /// Records persist `token` (the one after the newest outstanding), making `last` durable.
    /// The caller checked that a slot is free.
    fn push(&mut self, token: u64, last: Index) {
        if self.len == 0 {
            self.first = token;
        }
        debug_assert!(self.len < PERSIST_WINDOW);
        debug_assert_eq!(token, self.first + self.len as u64);
        self.last[Self::slot(token)] = last;
        self.len += 1;
    }

    /// Forgets the newest record if it is `token`'s.
    fn pop_newest(&mut self, token: u64) -> bool {
        if self.len == 0 || self.first + self.len as u64 - 1 != token {
            return false;
        }
        self.len -= 1;
        true
    }

    /// No outstanding record may make anything above `last` durable any more.
    fn clip(&mut self, last: Index) {
        for k in 0..self.len as u64 {
            let slot = &mut self.last[Self::slot(self.first + k)];
            *slot = (*slot).min(last);
        }
    }

    /// Drops the records of every persist up to `token`; the highest index they make durable,
    /// or `None` if there was no such record.
    fn take_through(&mut self, token: u64) -> Option<Index> {
        if self.len == 0 || token < self.first {
            return None;
        }
        let n = core::cmp::min(token - self.first + 1, self.len as u64);
        let mut durable = Index(0);
        for k in 0..n {
            durable = durable.max(self.last[Self::slot(self.first + k)]);
        }
        self.first += n;
        self.len -= n as usize;
        Some(durable)
    }
}

#[cfg(test)]
mod tests {
    //! The log on its own: the unstable tail, persist records, truncation and compaction bounds.
    //! The storage is a plain array standing for what the runner made durable; like a real
    //! runner's, it may still hold entries below the log's base (compaction deletes lazily).
    use super::*;
    use crate::types::EntryData;

    extern crate std;
    use std::vec::Vec;

    #[derive(Default)]
    struct Disk(Vec<Entry<u32>>);

    impl Storage<u32> for Disk {
        fn hard_state(&self) -> crate::HardState {
            crate::HardState::default()
        }
        fn last_index(&self) -> Index {
            Index(self.0.len() as u64)
        }
        fn term(&self, i: Index) -> Option<Term> {
            if i.0 == 0 {
                return Some(Term(0));
            }
            self.0.get(i.0 as usize - 1).map(|e| e.term)
        }
        fn entry(&self, i: Index) -> Option<Entry<u32>> {
            i.0.checked_sub(1)
                .and_then(|k| self.0.get(k as usize))
                .cloned()
        }
    }

    fn e(index: u64, term: u64) -> Entry<u32> {
        Entry {
            term: Term(term),
            index: Index(index),
            data: EntryData::Normal(index as u32),
        }
    }

    fn sid(index: u64, term: u64) -> SnapshotId {
        SnapshotId {
            index: Index(index),
            term: Term(term),
        }
    }

    /// A disk holding entries `1..=n` of the given terms, and a log whose durable part is all of
    /// it.
    fn durable(terms: &[u64]) -> (Disk, RaftLog<u32, 8>) {
        let disk = Disk(
            terms
                .iter()
                .enumerate()
                .map(|(k, &t)| e(k as u64 + 1, t))
                .collect(),
        );
        let last = Index(terms.len() as u64);
        let log = RaftLog::new(SnapshotId::ZERO, last, Term(*terms.last().unwrap_or(&0)));
        (disk, log)
    }

    fn handed(log: &mut RaftLog<u32, 8>, token: u64) -> Vec<u64> {
        log.hand_out(token).iter().map(|e| e.index.0).collect()
    }

    #[test]
    fn the_unstable_tail_answers_above_the_durable_part() {
        let (disk, mut log) = durable(&[1, 1, 2]);
        assert_eq!(log.last_index(), Index(3));
        for (i, t) in [(4, 2), (5, 3), (6, 3)] {
            log.push(e(i, t)).unwrap();
        }
        assert_eq!(log.last_index(), Index(6));
        assert_eq!(log.last_term(), Term(3));
        assert_eq!(log.stable_last(), Index(3));
        assert_eq!(log.room(), 5);
        // Durable entries come from storage, unstable ones from the tail.
        assert_eq!(log.term(Index(2), &disk), Some(Term(1)));
        assert_eq!(log.term(Index(3), &disk), Some(Term(2)));
        assert_eq!(log.term(Index(4), &disk), Some(Term(2)));
        assert_eq!(log.term(Index(6), &disk), Some(Term(3)));
        assert_eq!(log.term(Index(7), &disk), None, "beyond the log");
        assert_eq!(log.entry(Index(5), &disk), Some(e(5, 3)));
        assert_eq!(log.entry(Index(1), &disk), Some(e(1, 1)));
        assert_eq!(log.entry(Index(7), &disk), None);
        assert_eq!(log.entry(Index(0), &disk), None, "index 0 holds no entry");
        assert_eq!(log.term(Index(0), &disk), Some(Term(0)));
    }

    #[test]
    fn untrusted_huge_indices_find_nothing() {
        let (disk, mut log) = durable(&[1, 1]);
        log.push(e(3, 2)).unwrap();
        for i in [4, 1 << 32, (1 << 32) + 3, u64::MAX - 1, u64::MAX] {
            assert_eq!(log.term(Index(i), &disk), None, "{i}");
            assert_eq!(log.entry(Index(i), &disk), None, "{i}");
        }
        let (disk, log) = durable(&[1, 1]);
        assert_eq!(
            log.term(Index(3), &disk),
            None,
            "empty tail, one past the log"
        );
        assert_eq!(log.entry(Index(3), &disk), None);
    }

    #[test]
    fn the_unstable_tail_wraps_around_its_ring() {
        // Fill, acknowledge part, refill: the deque's storage wraps; lookups must not care.
        let (disk, mut log) = durable(&[]);
        for i in 1..=3 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(handed(&mut log, 1), [1, 2, 3]);
        for i in 4..=6 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(handed(&mut log, 2), [4, 5, 6]);
        for i in 7..=8 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(
            log.push(e(9, 1)),
            Err(e(9, 1)),
            "a full tail hands the entry back"
        );
        assert_eq!(log.room(), 0);
        log.acknowledge(2);
        assert_eq!(log.stable_last(), Index(6));
        for i in 9..=14 {
            log.push(e(i, 2)).unwrap();
        }
        for i in 7..=14u64 {
            let t = if i <= 8 { 1 } else { 2 };
            assert_eq!(log.term(Index(i), &disk), Some(Term(t)), "index {i}");
            assert_eq!(log.entry(Index(i), &disk).map(|x| x.index), Some(Index(i)));
        }
        // Borrowed runs across the wrap: as many as asked, from where asked.
        let ix = |r: Entries<'_, u32>| r.iter().map(|x| x.index.0).collect::<Vec<_>>();
        assert_eq!(ix(log.entries_from(Index(7), 3)), [7, 8, 9]);
        assert_eq!(ix(log.entries_from(Index(8), 4)), [8, 9, 10, 11]);
        assert_eq!(ix(log.entries_from(Index(10), 2)), [10, 11]);
        assert_eq!(
            ix(log.entries_from(Index(7), 100)),
            (7..=14).collect::<Vec<_>>()
        );
        assert_eq!(ix(log.entries_from(Index(15), 3)), Vec::<u64>::new());
        assert_eq!(
            ix(log.entries_from(Index(6), 3)),
            Vec::<u64>::new(),
            "durable: not in the tail"
        );
    }

    #[test]
    fn persist_records_move_entries_out_of_the_tail_in_token_order() {
        let (_, mut log) = durable(&[1]);
        for i in 2..=4 {
            log.push(e(i, 1)).unwrap();
        }
        assert!(log.has_unhanded());
        assert_eq!(handed(&mut log, 1), [2, 3, 4]);
        for i in 5..=7 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(handed(&mut log, 2), [5, 6, 7]);
        assert!(!log.has_unhanded());
        // Nothing is durable before its acknowledgement; an unknown older token is harmless.
        log.acknowledge(0);
        assert_eq!(log.stable_last(), Index(1));
        log.acknowledge(1);
        assert_eq!(log.stable_last(), Index(4));
        assert_eq!(log.room(), 5);
        // Acknowledging token 2 acknowledges everything up to it, once.
        log.acknowledge(2);
        log.acknowledge(2);
        assert_eq!(log.stable_last(), Index(7));
        assert_eq!(log.room(), 8);
    }

    #[test]
    fn a_log_initialised_again_forgets_its_outstanding_persists() {
        // A node initialised again in place (`Node::init`) numbers its persists from 1 again:
        // records of the persists it had out before must not survive, or the new ones would
        // never be acknowledged (or be taken for the old ones).
        let (_, mut log) = durable(&[1]);
        for i in 2..=3 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(handed(&mut log, 5), [2, 3]);
        log.reinit(SnapshotId::ZERO, Index(1), Term(1));
        assert!(log.record_room());
        log.push(e(2, 2)).unwrap();
        assert_eq!(handed(&mut log, 1), [2]);
        log.acknowledge(1);
        assert_eq!(log.stable_last(), Index(2));
        assert_eq!(log.room(), 8);
    }

    #[test]
    fn an_empty_persist_record_makes_nothing_durable() {
        // A hard-state-only persist records the last handed index; acknowledging it moves
        // nothing.
        let (_, mut log) = durable(&[1, 1]);
        assert_eq!(handed(&mut log, 1), Vec::<u64>::new());
        log.push(e(3, 2)).unwrap();
        log.acknowledge(1);
        assert_eq!(log.stable_last(), Index(2));
        assert_eq!(log.last_index(), Index(3));
    }

    #[test]
    fn the_record_window_is_bounded() {
        let (_, mut log) = durable(&[]);
        for t in 1..=PERSIST_WINDOW as u64 {
            assert!(log.record_room());
            let _ = handed(&mut log, t);
        }
        assert!(!log.record_room());
        log.acknowledge(1);
        assert!(log.record_room());
    }

    #[test]
    fn truncating_the_unstable_tail_clips_outstanding_records() {
        let (disk, mut log) = durable(&[1, 1]);
        for i in 3..=5 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(handed(&mut log, 1), [3, 4, 5]);
        log.push(e(6, 1)).unwrap();
        // A new leader overwrites from 4: the write of token 1 can only make 3 durable.
        log.truncate_from(Index(4), &disk);
        assert_eq!(log.last_index(), Index(3));
        assert_eq!(log.last_term(), Term(1));
        assert!(!log.has_unhanded());
        log.push(e(4, 2)).unwrap();
        assert!(log.has_unhanded(), "the replacement is handed out again");
        log.acknowledge(1);
        assert_eq!(log.stable_last(), Index(3));
        assert_eq!(log.term(Index(4), &disk), Some(Term(2)));
        assert_eq!(handed(&mut log, 2), [4]);
        log.acknowledge(2);
        assert_eq!(log.stable_last(), Index(4));
    }

    #[test]
    fn truncating_deep_in_a_long_tail_keeps_exactly_the_entries_before() {
        for (durable_len, from) in [(2u64, 6u64), (1, 4), (3, 9), (0, 5)] {
            let terms: std::vec::Vec<u64> = (0..durable_len).map(|_| 1).collect();
            let (disk, mut log) = durable(&terms);
            for i in durable_len + 1..=durable_len + 8 {
                log.push(e(i, 2)).unwrap();
            }
            log.truncate_from(Index(from), &disk);
            assert_eq!(
                log.last_index(),
                Index(from - 1),
                "durable {durable_len}, from {from}"
            );
            assert_eq!(log.stable_last(), Index(durable_len));
            assert_eq!(log.room(), 8 - (from - 1 - durable_len) as usize);
        }
    }

    #[test]
    fn truncating_into_the_durable_part_drops_the_whole_tail() {
        let (disk, mut log) = durable(&[1, 1, 2, 2]);
        log.push(e(5, 2)).unwrap();
        assert_eq!(handed(&mut log, 1), [5]);
        log.truncate_from(Index(3), &disk);
        assert_eq!(log.last_index(), Index(2));
        assert_eq!(log.stable_last(), Index(2));
        assert_eq!(
            log.last_term(),
            Term(1),
            "term of the new last entry, read from storage"
        );
        // The runner's storage still holds 3..=5 until it executes the next persist; the log
        // must not read them.
        assert_eq!(log.term(Index(3), &disk), None);
        assert_eq!(log.entry(Index(3), &disk), None);
        log.acknowledge(1);
        assert_eq!(
            log.stable_last(),
            Index(2),
            "the overwritten write makes nothing durable"
        );
    }

    #[test]
    fn truncating_at_the_last_durable_entry_drops_it_and_the_tail() {
        // `from == stable_last`: the boundary between the two cases.
        let (disk, mut log) = durable(&[1, 1, 2]);
        log.push(e(4, 2)).unwrap();
        log.truncate_from(Index(3), &disk);
        assert_eq!(log.stable_last(), Index(2));
        assert_eq!(log.last_index(), Index(2));
        assert_eq!(log.last_term(), Term(1));
        assert_eq!(log.room(), 8);
        log.push(e(3, 3)).unwrap();
        assert_eq!(
            log.term(Index(3), &disk),
            Some(Term(3)),
            "from the tail, not storage"
        );
        // One past the last durable entry: only the tail goes.
        let (disk, mut log) = durable(&[1, 1, 2]);
        log.push(e(4, 2)).unwrap();
        log.push(e(5, 2)).unwrap();
        log.truncate_from(Index(4), &disk);
        assert_eq!(log.stable_last(), Index(3));
        assert_eq!(log.last_index(), Index(3));
        assert_eq!(log.last_term(), Term(2));
    }

    #[test]
    fn truncation_outside_the_log_is_ignored() {
        let (disk, mut log) = durable(&[1, 1, 1, 1]);
        log.compact(sid(2, 1));
        log.truncate_from(Index(5), &disk);
        assert_eq!(log.last_index(), Index(4));
        log.truncate_from(Index(2), &disk);
        assert_eq!(
            log.last_index(),
            Index(4),
            "at or below the base: nothing to remove"
        );
        assert_eq!(log.stable_last(), Index(4));
    }

    #[test]
    fn truncating_the_whole_tail_takes_the_base_term() {
        let (disk, mut log) = durable(&[3, 3]);
        log.push(e(3, 4)).unwrap();
        log.truncate_from(Index(3), &disk);
        assert_eq!(log.last_term(), Term(3));
        let (disk, mut log) = durable(&[3, 3]);
        log.truncate_from(Index(1), &disk);
        assert_eq!(log.last_index(), Index(0));
        assert_eq!(log.last_term(), Term(0));
    }

    #[test]
    fn compaction_moves_the_base_forward_only() {
        let (disk, mut log) = durable(&[1, 1, 2, 2, 3]);
        log.compact(sid(3, 2));
        assert_eq!(log.snapshot(), sid(3, 2));
        assert_eq!(log.first_index(), Index(4));
        // Storage still answers below the base (it deletes lazily); the log does not.
        assert_eq!(log.term(Index(2), &disk), None);
        assert_eq!(log.term(Index(1), &disk), None);
        assert_eq!(log.entry(Index(2), &disk), None);
        assert_eq!(log.entry(Index(3), &disk), None, "the base holds no entry");
        assert_eq!(
            log.term(Index(3), &disk),
            Some(Term(2)),
            "the base's term is known"
        );
        assert_eq!(log.term(Index(4), &disk), Some(Term(2)));
        // An older or equal compaction changes nothing.
        log.compact(sid(2, 1));
        assert_eq!(log.snapshot(), sid(3, 2));
        log.compact(sid(3, 9));
        assert_eq!(log.snapshot(), sid(3, 2));
        log.compact(sid(5, 3));
        assert_eq!(log.first_index(), Index(6));
        assert_eq!(log.term(Index(5), &disk), Some(Term(3)));
        assert_eq!(log.term(Index(4), &disk), None);
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_the_log() {
        let (disk, mut log) = durable(&[1, 1]);
        for i in 3..=5 {
            log.push(e(i, 2)).unwrap();
        }
        assert_eq!(handed(&mut log, 1), [3, 4, 5]);
        log.reset_to(sid(10, 4));
        assert_eq!(log.last_index(), Index(10));
        assert_eq!(log.last_term(), Term(4));
        assert_eq!(log.stable_last(), Index(10));
        assert_eq!(log.first_index(), Index(11));
        assert_eq!(log.term(Index(10), &disk), Some(Term(4)));
        assert_eq!(log.term(Index(4), &disk), None);
        assert!(!log.has_unhanded());
        // The old write, acknowledged late, must not move anything.
        log.acknowledge(1);
        assert_eq!(log.stable_last(), Index(10));
        log.push(e(11, 4)).unwrap();
        assert_eq!(handed(&mut log, 2), [11]);
        log.acknowledge(2);
        assert_eq!(log.stable_last(), Index(11));
    }

    #[test]
    fn a_late_acknowledgement_after_a_reset_below_it_moves_nothing_twice() {
        // Records clipped to the new base: acknowledging them pops no entry of the new tail.
        let (_, mut log) = durable(&[]);
        for i in 1..=3 {
            log.push(e(i, 1)).unwrap();
        }
        assert_eq!(handed(&mut log, 1), [1, 2, 3]);
        log.push(e(4, 1)).unwrap();
        log.reset_to(sid(2, 1));
        log.push(e(3, 5)).unwrap();
        log.acknowledge(1);
        assert_eq!(log.stable_last(), Index(2));
        assert_eq!(log.last_index(), Index(3));
        assert!(log.has_unhanded());
    }

    #[test]
    fn up_to_date_compares_term_then_index() {
        let (_, log) = durable(&[1, 2, 2]);
        assert!(log.is_up_to_date(Index(3), Term(2)));
        assert!(log.is_up_to_date(Index(4), Term(2)));
        assert!(!log.is_up_to_date(Index(2), Term(2)));
        assert!(log.is_up_to_date(Index(1), Term(3)));
        assert!(!log.is_up_to_date(Index(9), Term(1)));
    }

    #[test]
    fn conflict_search_finds_the_last_index_of_a_term_at_most() {
        let (disk, mut log) = durable(&[1, 1, 2, 2, 4]);
        log.push(e(6, 5)).unwrap();
        assert_eq!(
            log.find_conflict_by_term(Index(6), Term(5), &disk),
            (Index(6), Term(5))
        );
        assert_eq!(
            log.find_conflict_by_term(Index(6), Term(3), &disk),
            (Index(4), Term(2))
        );
        assert_eq!(
            log.find_conflict_by_term(Index(9), Term(2), &disk),
            (Index(4), Term(2))
        );
        assert_eq!(
            log.find_conflict_by_term(Index(3), Term(1), &disk),
            (Index(2), Term(1))
        );
        assert_eq!(
            log.find_conflict_by_term(Index(6), Term(0), &disk),
            (Index(0), Term(0))
        );
        // Below the base the search stops with an unknown term.
        log.compact(sid(3, 2));
        assert_eq!(
            log.find_conflict_by_term(Index(6), Term(2), &disk),
            (Index(4), Term(2))
        );
        assert_eq!(
            log.find_conflict_by_term(Index(6), Term(1), &disk),
            (Index(2), Term(0))
        );
        assert_eq!(
            log.find_conflict_by_term(Index(2), Term(1), &disk),
            (Index(2), Term(0))
        );
    }
}
