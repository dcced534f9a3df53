//! The read-only view of durable storage that the node needs.
//!
//! The node never writes storage: it emits [`Action::Persist`](crate::Action::Persist) and the
//! runner writes. It reads storage only at indices it knows are durable (acknowledged through
//! [`Node::persisted`](crate::Node::persisted)), so a runner may execute persists asynchronously
//! and still hand the node a view that contains writes not yet acknowledged.

use crate::membership::ConfChange;
use crate::types::{Entry, EntryData, HardState, Index, SnapshotId, Term};

/// Durable state as the runner's storage holds it.
///
/// Implementations must answer for every index the node has been told is durable; a missing
/// answer is treated as "not available" (the node skips the work that needed it and counts it in
/// [`Stats::storage_misses`](crate::Stats::storage_misses)), never as a reason to panic.
pub trait Storage<P> {
    /// The persisted hard state (`HardState::default()` for a fresh node).
    fn hard_state(&self) -> HardState;
    /// Index of the last persisted entry (0 for an empty log).
    fn last_index(&self) -> Index;
    /// Term of the entry at `index`. `Index(0)` must answer `Some(Term(0))`.
    fn term(&self, index: Index) -> Option<Term>;
    /// A copy of the entry at `index`.
    fn entry(&self, index: Index) -> Option<Entry<P>>;
    /// The snapshot the stored log starts after (the last [`Action::Compact`](crate::Action::Compact)
    /// or installed snapshot recorded); `term(snapshot().index)` must answer its term.
    fn snapshot(&self) -> SnapshotId {
        SnapshotId::ZERO
    }
    /// Calls `f` with every membership-change entry stored after index `after`, in index order.
    /// Used once, when a node starts, to find the configuration in use (the latest in the
    /// log). The default reads every entry; a store that indexes membership entries as it
    /// writes them can answer without reading the log.
    fn membership_changes(&self, after: Index, f: &mut dyn FnMut(Index, &ConfChange)) {
        let mut i = after.next();
        while i <= self.last_index() {
            if let Some(Entry {
                data: EntryData::Membership(change),
                ..
            }) = self.entry(i)
            {
                f(i, &change);
            }
            i = i.next();
        }
    }
}
