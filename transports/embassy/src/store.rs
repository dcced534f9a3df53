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
    /// Makes a persist durable (see the trait docs).
    async fn persist<const B: usize>(&mut self, p: &Persist<P, B>) -> Result<(), Self::Error>;
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

impl<P: Clone, const N: usize> Store<P> for RamStore<P, N> {
    type Error = StoreFull;

    async fn persist<const B: usize>(&mut self, p: &Persist<P, B>) -> Result<(), StoreFull> {
        let keep = p.entries.first().map(|e| {
            e.index
                .0
                .saturating_sub(p.snapshot.map_or(self.base, |s| s).index.0 + 1)
                as usize
        });
        if keep.is_some_and(|k| k.min(self.log.len()) + p.entries.len() > N) {
            return Err(StoreFull);
        }
        if let Some(hs) = p.hard_state {
            self.hs = hs;
        }
        if let Some(s) = p.snapshot {
            self.log.clear();
            self.base = s;
        }
        if let Some(keep) = keep {
            self.log.truncate(keep);
            for e in &p.entries {
                let _ = self.log.push(e.clone());
            }
        }
        Ok(())
    }

    async fn compact(&mut self, through: SnapshotId) -> Result<(), StoreFull> {
        if through.index > self.base.index {
            let n = ((through.index.0 - self.base.index.0) as usize).min(self.log.len());
            let rest = self.log.len() - n;
            for k in 0..rest {
                self.log.swap(k, k + n);
            }
            self.log.truncate(rest);
            self.base = through;
        }
        Ok(())
    }
}
