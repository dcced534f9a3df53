//! Where a node keeps what must survive a reset: the [`Store`] trait, and [`RamStore`], a
//! fixed-capacity store in RAM for tests, examples and boards with battery-backed RAM.

use raftlet::{Entry, HardState, Index, Persist, SnapshotId, Storage, Term};

/// Durable storage of one node: what the core reads ([`Storage`]) plus the two writes it asks
/// for.
///
/// # What must be durable, and when
/// * [`persist`](Self::persist): when the future completes with `Ok`, the hard state (if any),
///   the log reset to a snapshot (if any: the whole stored log is discarded and now starts
///   after it) and the entries (which replace every stored entry at or after the first one's
///   index) must all survive a power loss. On flash: the pages are programmed (erase-before-
///   write, wear levelling and write ordering are the implementation's business) and the
///   record that commits them is written last, so that a reset in the middle leaves the old
///   state readable. Until it completes the node reads none of it.
/// * [`compact`](Self::compact): when it completes, `through` is the durable start of the
///   log; the entries it covers may be erased whenever convenient.
///
/// The runner acknowledges a persist to the node only after `persist` returns `Ok`; the node
/// sends no vote or acknowledgement that depends on it before that.
#[allow(async_fn_in_trait)]
pub trait Store<P>: Storage<P> {
    /// Why a write failed. The runner stops: a node that cannot persist must not go on.
    type Error;
    /// Whether `p` fits now. `false` is back-pressure, not a failure: the runner hands the
    /// persist back to the node ([`Node::defer_persist`](raftlet::Node::defer_persist)), asks
    /// the application for a snapshot, whose compaction makes room, and retries; meanwhile the
    /// node keeps running and proposals are refused with
    /// [`ProposeError::Full`](raftlet::ProposeError::Full). Only an error from
    /// [`persist`](Self::persist) stops the runner.
    fn fits(&self, p: &Persist<'_, P>) -> bool;
    /// Makes a persist durable (see the trait docs). The runner calls it only with a persist
    /// that [`fits`](Self::fits).
    async fn persist(&mut self, p: &Persist<'_, P>) -> Result<(), Self::Error>;
    /// Makes `through` the durable start of the log.
    async fn compact(&mut self, through: SnapshotId) -> Result<(), Self::Error>;
}

/// [`RamStore`] is full: more entries than its capacity since the last compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoreFull;

/// A store in RAM with room for `N` entries after the log's start. It is as durable as the RAM
/// that holds it: enough for tests (a simulated crash drops the node, not the store) and for
/// boards that keep RAM across resets.
#[derive(Debug, Clone)]
pub struct RamStore<P, const N: usize> {
    hs: HardState,
    base: SnapshotId,
    log: heapless::Vec<Entry<P>, N>,
}

impl<P, const N: usize> Default for RamStore<P, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P, const N: usize> RamStore<P, N> {
    /// An empty store.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            hs: HardState {
                term: Term(0),
                vote: None,
                pending_install: None,
            },
            base: SnapshotId::ZERO,
            log: heapless::Vec::new(),
        }
    }

    fn pos(&self, index: Index) -> Option<usize> {
        index
            .0
            .checked_sub(self.base.index.0 + 1)
            .map(|k| k as usize)
    }
}

impl<P: Clone, const N: usize> Storage<P> for RamStore<P, N> {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.base.index.0 + self.log.len() as u64)
    }
    fn term(&self, index: Index) -> Option<Term> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.log.get(self.pos(index)?).map(|e| e.term)
    }
    fn entry(&self, index: Index) -> Option<Entry<P>> {
        self.log.get(self.pos(index)?).cloned()
    }
    fn snapshot(&self) -> SnapshotId {
        self.base
    }
}

impl<P: Clone, const N: usize> RamStore<P, N> {
    /// Whether the entries of `p` fit (checked before anything is written).
    pub(crate) fn has_room(&self, p: &Persist<'_, P>) -> bool {
        let base = p.snapshot.copied().unwrap_or(self.base);
        p.entries.first().is_none_or(|e| {
            let keep = e.index.0.saturating_sub(base.index.0 + 1) as usize;
            keep.min(self.log.len()) + p.entries.len() <= N
        })
    }

    /// Applies a persist that [`has_room`](Self::has_room).
    pub(crate) fn apply(&mut self, p: &Persist<'_, P>) {
        if let Some(hs) = p.hard_state {
            self.hs = *hs;
        }
        if let Some(&s) = p.snapshot {
            self.reset(s);
        }
        for e in p.entries {
            let _ = self.replay(e.clone());
        }
    }

    /// Discards the log: it now starts after `id`.
    pub(crate) fn reset(&mut self, id: SnapshotId) {
        self.log.clear();
        self.base = id;
    }

    /// Stores `e`, replacing the entries at and after its index; entries the log's start
    /// covers are skipped. `Err` if it would leave a gap or there is no room.
    pub(crate) fn replay(&mut self, e: Entry<P>) -> Result<(), ()> {
        if e.index <= self.base.index {
            return Ok(());
        }
        let keep = (e.index.0 - self.base.index.0 - 1) as usize;
        if keep > self.log.len() {
            return Err(());
        }
        self.log.truncate(keep);
        self.log.push(e).map_err(|_| ())
    }

    /// Moves the log's start to `through` (if later), dropping what it covers.
    pub(crate) fn compact_to(&mut self, through: SnapshotId) {
        if through.index > self.base.index {
            let n = ((through.index.0 - self.base.index.0) as usize).min(self.log.len());
            let rest = self.log.len() - n;
            for k in 0..rest {
                self.log.swap(k, k + n);
            }
            self.log.truncate(rest);
            self.base = through;
        }
    }

    pub(crate) fn set_hard_state(&mut self, hs: HardState) {
        self.hs = hs;
    }

    /// Entries held after the log's start.
    pub fn len(&self) -> usize {
        self.log.len()
    }

    /// Whether no entry follows the log's start.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

impl<P: Clone, const N: usize> Store<P> for RamStore<P, N> {
    type Error = StoreFull;

    fn fits(&self, p: &Persist<'_, P>) -> bool {
        self.has_room(p)
    }

    async fn persist(&mut self, p: &Persist<'_, P>) -> Result<(), StoreFull> {
        if !self.has_room(p) {
            return Err(StoreFull);
        }
        self.apply(p);
        Ok(())
    }

    async fn compact(&mut self, through: SnapshotId) -> Result<(), StoreFull> {
        self.compact_to(through);
        Ok(())
    }
}
