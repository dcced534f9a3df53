//! What the node asks its runner to do, and the rules for doing it (the action contract).
//!
//! # The contract
//!
//! A runner drains [`Node::poll_action`](crate::Node::poll_action) after **every** input
//! (`tick`, `step`, `propose`, `persisted`, `campaign`) and executes each action as follows:
//!
//! * [`Action::Send`]: deliver the message ([`Outgoing`]: encode it with
//!   [`Codec::encode_outgoing`](crate::wire::Codec::encode_outgoing), or copy it with [`Outgoing::to_message`]) to its recipient, or drop
//!   it. The action borrows the node: read what you need before the next call. There is no ordering or
//!   durability prerequisite: the node never emits a message that acknowledges state that is not
//!   yet durable. Vote grants and append acknowledgements are withheld inside the node until the
//!   runner has acknowledged the [`Persist`] they depend on; a candidate's vote requests leave at
//!   once, but it becomes leader (and sends its first append) only once its new term and its own
//!   vote are durable, so no node ever leads one term twice. A runner may therefore send every
//!   message the moment it gets it, in any order, or lose it.
//! * [`Action::Persist`]: write durably, **in token order**: first the hard state, if any, then
//!   the entries, which replace every stored entry at or after the first one's index (a new
//!   leader may overwrite an uncommitted tail). A persist hands out every entry not yet handed
//!   out, as one contiguous run borrowed from the node's log ([`Entries`]): copy or write them
//!   before the next call. Once the write is durable (fsync'd), call
//!   [`Node::persisted`](crate::Node::persisted) with its token. The runner may do this later and
//!   keep feeding other inputs meanwhile; acknowledging token `k` acknowledges every token
//!   before it. Never acknowledge a write that is not durable: that is the one way a runner can
//!   break Raft's safety.
//! * [`Action::Apply`]: apply the entries `first..=last` to the state machine, in order, reading
//!   them from storage. They are committed and already durable locally.
//! * [`Action::Compact`]: record the new log start durably, then delete the covered entries
//!   whenever convenient (the node reads none of them any more).
//! * Snapshot installs: [`Action::ReadSnapshotChunk`] (leader, stream mode: answer with
//!   [`Node::snapshot_chunk`](crate::Node::snapshot_chunk)), [`Action::WriteSnapshotChunk`] and
//!   [`Action::RestoreSnapshot`] (follower, stream mode), [`Action::InstallSnapshotFromLeader`]
//!   (follower, notify mode); report installs with
//!   [`Node::snapshot_installed`](crate::Node::snapshot_installed). These may be executed
//!   asynchronously; the node keeps working meanwhile.
//! * [`Action::InstallComplete`]: an installation is over (drop checkpoints).
//! * [`Action::ReadReady`]: serve the read from the state machine now (every `Apply` it needs
//!   came before it); [`Action::ReadFailed`]: tell the client to retry.
//!
//! Persists and applies are generated from the node's state when polled, not queued, so a full
//! send queue can never lose them; only sends are dropped (and counted) when the queue is full.

use crate::error::ReadError;
use crate::message::{Body, Message, Queued, Span};
use crate::storage::Storage;
use crate::types::{Entry, HardState, Index, InstallOutcome, NodeId, ReadId, SnapshotId};
use serde::{Deserialize, Serialize};

/// Identifies one [`Persist`]; acknowledge it with [`Node::persisted`](crate::Node::persisted).
/// Tokens increase by one per persist, starting at 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PersistToken(pub u64);

/// A run of consecutive log entries borrowed from the node (two slices: the node keeps its
/// unstable entries in a ring).
#[derive(Debug)]
pub struct Entries<'a, P> {
    front: &'a [Entry<P>],
    back: &'a [Entry<P>],
}

impl<P> Clone for Entries<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Entries<'_, P> {}

impl<'a, P> Entries<'a, P> {
    pub(crate) const EMPTY: Self = Self {
        front: &[],
        back: &[],
    };

    pub(crate) fn new(front: &'a [Entry<P>], back: &'a [Entry<P>]) -> Self {
        if front.is_empty() {
            Self {
                front: back,
                back: &[],
            }
        } else {
            Self { front, back }
        }
    }
    /// How many entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.front.len() + self.back.len()
    }
    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.front.is_empty()
    }
    /// The first entry.
    #[must_use]
    pub fn first(&self) -> Option<&'a Entry<P>> {
        self.front.first()
    }
    /// The last entry.
    #[must_use]
    pub fn last(&self) -> Option<&'a Entry<P>> {
        self.back.last().or(self.front.last())
    }
    /// The entries in order, as (at most) two slices.
    #[must_use]
    pub fn as_slices(&self) -> (&'a [Entry<P>], &'a [Entry<P>]) {
        (self.front, self.back)
    }
    /// The entries in order.
    pub fn iter(
        &self,
    ) -> core::iter::Chain<core::slice::Iter<'a, Entry<P>>, core::slice::Iter<'a, Entry<P>>> {
        self.front.iter().chain(self.back.iter())
    }
}

impl<'a, P> IntoIterator for Entries<'a, P> {
    type Item = &'a Entry<P>;
    type IntoIter =
        core::iter::Chain<core::slice::Iter<'a, Entry<P>>, core::slice::Iter<'a, Entry<P>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<P: PartialEq> PartialEq for Entries<'_, P> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

#[cfg(feature = "defmt")]
impl<P: defmt::Format> defmt::Format for Entries<'_, P> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Entries({=usize})", self.len());
    }
}

/// A durable write the runner must perform, then acknowledge. It borrows the node: write (or
/// copy) it before the next call. Not `#[non_exhaustive]`, for the reason given on [`Action`]:
/// a new field is state the runner must write.
#[derive(PartialEq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Persist<'a, P> {
    /// Acknowledge with this token once durable.
    pub token: PersistToken,
    /// A new hard state to store (replacing the old one atomically), if it changed.
    pub hard_state: Option<&'a HardState>,
    /// `Some(id)`: the node adopted a snapshot installed from the leader. Discard the whole
    /// stored log (before storing `entries`, if any); the log now starts after `id`, and
    /// [`Storage::snapshot`] must answer `id` from now on.
    pub snapshot: Option<&'a SnapshotId>,
    /// Entries to store: every entry not handed out before, in one run. Stored entries at or
    /// after the first one's index are removed first.
    pub entries: Entries<'a, P>,
}

impl<P> Clone for Persist<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Persist<'_, P> {}

/// What an [`Outgoing`] message should carry but cannot be found: an entry the runner's
/// storage does not hold (it deleted entries the node still needed, or its view lags behind
/// the acknowledged persists), or a chunk's bytes (never, for a send polled from a node).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MissingCargo {
    /// Storage has no entry at this index.
    Entry(Index),
    /// A chunk message without its bytes.
    Chunk,
}

impl core::fmt::Display for MissingCargo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Entry(i) => write!(f, "storage has no entry {i}"),
            Self::Chunk => f.write_str("a chunk message without its bytes"),
        }
    }
}
impl core::error::Error for MissingCargo {}

/// A message to send, as [`Action::Send`] hands it out: the queued message (header, body, the
/// number of entries) and, borrowed from the node, what it carries. Entries at or below the
/// durable index are read from the runner's [`Storage`]; newer ones come from the node's log.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Outgoing<'a, P> {
    message: &'a Queued,
    stable_last: Index,
    tail: Entries<'a, P>,
    chunk: Option<&'a P>,
}

impl<P> Clone for Outgoing<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Outgoing<'_, P> {}

impl<P: PartialEq> PartialEq for Outgoing<'_, P> {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.tail == other.tail && self.chunk == other.chunk
    }
}

impl<'a, P> Outgoing<'a, P> {
    pub(crate) fn new(
        message: &'a Queued,
        stable_last: Index,
        tail: Entries<'a, P>,
        chunk: Option<&'a P>,
    ) -> Self {
        Self {
            message,
            stable_last,
            tail,
            chunk,
        }
    }
    /// The message without its cargo: header, body, and for an append the number of entries.
    #[must_use]
    pub fn message(&self) -> &'a Queued {
        self.message
    }
    /// The recipient.
    #[must_use]
    pub fn to(&self) -> NodeId {
        self.message.to
    }
    /// The bytes of a stream-mode snapshot chunk, if this message is one.
    #[must_use]
    pub fn chunk(&self) -> Option<&'a P> {
        self.chunk
    }
    /// The first and last index of the append's entries that the runner reads from its own
    /// storage (those at or below the durable index): `None` when the node holds them all (or
    /// the message is not an append). The rest are [`tail`](Self::tail). A runner that keeps
    /// its log in memory, or encodes straight into a frame, copies both as slices instead of
    /// cloning entry by entry through [`entries`](Self::entries).
    #[must_use]
    pub fn stored(&self) -> Option<(Index, Index)> {
        let Body::Append {
            prev_index,
            entries: Span { count },
            ..
        } = self.message.body
        else {
            return None;
        };
        let first = prev_index.next();
        let last = Index(prev_index.0.saturating_add(u64::from(count))).min(self.stable_last);
        (first <= last).then_some((first, last))
    }
    /// The append's entries that the node still holds (above the durable index), borrowed and
    /// in order: they follow the [`stored`](Self::stored) ones.
    #[must_use]
    pub fn tail(&self) -> Entries<'a, P> {
        self.tail
    }
    /// The append's entries (none for other messages), read from `storage` up to the durable
    /// index and cloned from the node's log above it.
    pub fn entries<'s, S: Storage<P>>(&self, storage: &'s S) -> OutgoingEntries<'a, 's, P, S> {
        let (first, count) = match self.message.body {
            Body::Append {
                prev_index,
                entries: Span { count },
                ..
            } => (prev_index.next(), count),
            _ => (Index(1), 0),
        };
        OutgoingEntries {
            at: first,
            end: Index(first.0.saturating_add(u64::from(count))),
            stable_last: self.stable_last,
            tail: self.tail.iter(),
            storage,
        }
    }
    /// An owned copy of the message, its entries collected into `E` (`Vec<Entry<P>>` on std,
    /// or `heapless::Vec<Entry<P>, N>` with `N` at least the node's entries per message: a
    /// heapless `Extend` panics when the vector is full).
    ///
    /// # Errors
    /// [`MissingCargo`]: `storage` lacks an entry the append carries.
    pub fn to_message<E, S>(&self, storage: &S) -> Result<Message<P, E>, MissingCargo>
    where
        P: Clone,
        E: Default + Extend<Entry<P>>,
        S: Storage<P>,
    {
        let mut entries = E::default();
        for e in self.entries(storage) {
            entries.extend(core::iter::once(e?));
        }
        let chunk = self.chunk;
        self.message.try_map(
            |()| chunk.cloned().ok_or(MissingCargo::Chunk),
            |_| Ok(entries),
        )
    }
}

/// The entries of an [`Outgoing`] append, in order; see [`Outgoing::entries`].
#[derive(Debug)]
pub struct OutgoingEntries<'a, 's, P, S> {
    at: Index,
    end: Index,
    stable_last: Index,
    tail: core::iter::Chain<core::slice::Iter<'a, Entry<P>>, core::slice::Iter<'a, Entry<P>>>,
    storage: &'s S,
}

impl<P: Clone, S: Storage<P>> Iterator for OutgoingEntries<'_, '_, P, S> {
    type Item = Result<Entry<P>, MissingCargo>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let at = self.at;
        self.at = at.next();
        if at <= self.stable_last {
            return Some(self.storage.entry(at).ok_or(MissingCargo::Entry(at)));
        }
        // The node's tail starts right after the durable index; skip to `at`.
        for e in self.tail.by_ref() {
            if e.index == at {
                return Some(Ok(e.clone()));
            }
        }
        Some(Err(MissingCargo::Entry(at)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end.0 - self.at.0) as usize;
        (n, Some(n))
    }
}

/// One thing the runner must do. See the [module docs](self) for the contract. Actions borrow
/// the node (the message or entries they carry stay in it): execute or copy an action before
/// the node's next call.
///
/// Deliberately not `#[non_exhaustive]`: a new action is something every runner must execute,
/// so adding one is a breaking change that fails their build, rather than a variant their
/// `_ => {}` arm would silently skip.
#[derive(PartialEq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action<'a, P> {
    /// Send a message to a peer (loss is tolerated).
    Send(Outgoing<'a, P>),
    /// Persist state, then acknowledge.
    Persist(Persist<'a, P>),
    /// Apply committed entries `first..=last`, in order.
    Apply {
        /// First entry to apply.
        first: Index,
        /// Last entry to apply.
        last: Index,
    },
    /// Entries up to `through.index` are no longer needed: record `through` durably as the
    /// log's snapshot ([`Storage::snapshot`]), then delete them
    /// whenever convenient. The node reads none of them from now on.
    Compact {
        /// The snapshot the log now starts after.
        through: SnapshotId,
    },
    /// Notify mode, follower: fetch a snapshot that reaches at least
    /// `first_available.index - 1` by your own means, install it into the state machine, and
    /// report with [`Node::snapshot_installed`](crate::Node::snapshot_installed). Emitted once
    /// per install round.
    InstallSnapshotFromLeader {
        /// The leader that asked.
        leader: NodeId,
        /// The leader's first log entry.
        first_available: SnapshotId,
    },
    /// Stream mode, leader: read chunk `seq` of `snapshot` and hand it to
    /// [`Node::snapshot_chunk`](crate::Node::snapshot_chunk) for follower `to`. If `snapshot`
    /// is gone because a newer one replaced it, do nothing: once the follower has waited
    /// `snapshot_resend_ticks`, the node starts the transfer over with its newest snapshot.
    ReadSnapshotChunk {
        /// The follower being brought up to date.
        to: NodeId,
        /// The snapshot being sent.
        snapshot: SnapshotId,
        /// The chunk wanted.
        seq: u32,
    },
    /// Stream mode, follower: store chunk `seq` of `snapshot` in a staging area (chunk 0 starts
    /// a new staging area, discarding any earlier partial one).
    WriteSnapshotChunk {
        /// The snapshot being received.
        snapshot: SnapshotId,
        /// The chunk number.
        seq: u32,
        /// The chunk.
        data: &'a P,
    },
    /// Stream mode, follower: every chunk is staged. Verify `checksum` over the whole staged
    /// snapshot; if it matches, restore the state machine from it and report
    /// `snapshot_installed(Ok(snapshot))`; otherwise discard the staging area (keeping the
    /// previous state intact) and report `Err(InstallError::Failed)`.
    RestoreSnapshot {
        /// The snapshot to restore.
        snapshot: SnapshotId,
        /// The checksum the leader's application computed over the snapshot.
        checksum: u64,
    },
    /// Installation is truly over, on the leader (`peer` = the follower) or on the follower
    /// (`peer` = itself). Incremental-snapshot state machines drop their checkpoints here.
    InstallComplete {
        /// Which follower's installation ended.
        peer: NodeId,
        /// How it ended.
        outcome: InstallOutcome,
    },
    /// A linearizable read may be served now: every entry up to `index` has been handed out
    /// for apply (by an earlier `Apply`), and the leadership that produced `index` was
    /// confirmed by a quorum after the read was asked.
    ReadReady {
        /// The id given to [`Node::read_index`](crate::Node::read_index).
        id: ReadId,
        /// The read index.
        index: Index,
    },
    /// A linearizable read cannot be served; ask again (elsewhere).
    ReadFailed {
        /// The id given to [`Node::read_index`](crate::Node::read_index).
        id: ReadId,
        /// Why.
        reason: ReadError,
    },
}

impl<P> Clone for Action<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Action<'_, P> {}

impl<'a, P> Action<'a, P> {
    /// The same action with no borrow of the node, for every action that carries nothing of it
    /// (all but [`Send`](Self::Send), [`Persist`](Self::Persist) and
    /// [`WriteSnapshotChunk`](Self::WriteSnapshotChunk), which are handed back): a runner can
    /// keep it while it calls the node again.
    ///
    /// # Errors
    /// The action itself, when it borrows the node.
    pub fn detach(self) -> Result<Action<'static, P>, Self> {
        Ok(match self {
            Self::Send(_) | Self::Persist(_) | Self::WriteSnapshotChunk { .. } => return Err(self),
            Self::Apply { first, last } => Action::Apply { first, last },
            Self::Compact { through } => Action::Compact { through },
            Self::InstallSnapshotFromLeader {
                leader,
                first_available,
            } => Action::InstallSnapshotFromLeader {
                leader,
                first_available,
            },
            Self::ReadSnapshotChunk { to, snapshot, seq } => {
                Action::ReadSnapshotChunk { to, snapshot, seq }
            }
            Self::RestoreSnapshot { snapshot, checksum } => {
                Action::RestoreSnapshot { snapshot, checksum }
            }
            Self::InstallComplete { peer, outcome } => Action::InstallComplete { peer, outcome },
            Self::ReadReady { id, index } => Action::ReadReady { id, index },
            Self::ReadFailed { id, reason } => Action::ReadFailed { id, reason },
        })
    }
}

impl<'a, P> From<&'a [Entry<P>]> for Entries<'a, P> {
    /// One slice as a run (for runners and tests that build a [`Persist`] themselves).
    fn from(entries: &'a [Entry<P>]) -> Self {
        Self::new(entries, &[])
    }
}

#[cfg(test)]
mod tests {
    //! The borrowed views on their own: runs of entries split across the node's ring, sends
    //! whose entries come partly from storage and partly from the node's log, owned copies, and
    //! actions detached from the node.
    use super::*;
    use crate::message::InstallRequest;
    use crate::types::{EntryData, Term};

    extern crate std;
    use std::vec::Vec;

    fn e(index: u64) -> Entry<u32> {
        Entry {
            term: Term(1),
            index: Index(index),
            data: EntryData::Normal(index as u32),
        }
    }

    /// Durable entries `1..=n`.
    struct Disk(u64);

    impl Storage<u32> for Disk {
        fn hard_state(&self) -> HardState {
            HardState::default()
        }
        fn last_index(&self) -> Index {
            Index(self.0)
        }
        fn term(&self, i: Index) -> Option<crate::types::Term> {
            (i.0 <= self.0).then_some(Term(u64::from(i.0 > 0)))
        }
        fn entry(&self, i: Index) -> Option<Entry<u32>> {
            (i.0 >= 1 && i.0 <= self.0).then(|| e(i.0))
        }
    }

    fn indices<'a>(it: impl Iterator<Item = &'a Entry<u32>>) -> Vec<u64> {
        it.map(|x| x.index.0).collect()
    }

    #[test]
    fn a_run_of_two_slices_reads_as_one() {
        let a = [e(4), e(5)];
        let b = [e(6)];
        let run = Entries::new(&a, &b);
        assert_eq!(run.len(), 3);
        assert!(!run.is_empty());
        assert_eq!(run.first().map(|x| x.index), Some(Index(4)));
        assert_eq!(run.last().map(|x| x.index), Some(Index(6)));
        assert_eq!(indices(run.iter()), [4, 5, 6]);
        assert_eq!(indices(run.into_iter()), [4, 5, 6]);
        let (front, back) = run.as_slices();
        assert_eq!((front.len(), back.len()), (2, 1));
        // A run whose first slice is empty starts in the second: first() still finds it.
        let moved = Entries::new(&[], &b);
        assert_eq!(moved.first().map(|x| x.index), Some(Index(6)));
        assert_eq!(moved.last().map(|x| x.index), Some(Index(6)));
        assert_eq!(moved.len(), 1);
        assert!(!moved.is_empty());
        let only_front = Entries::new(&a, &[]);
        assert_eq!(only_front.last().map(|x| x.index), Some(Index(5)));
        let empty: Entries<'_, u32> = Entries::EMPTY;
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert_eq!((empty.first(), empty.last()), (None, None));
        // Equal runs compare equal however they are split; different ones do not.
        let whole = [e(4), e(5), e(6)];
        assert_eq!(run, Entries::from(&whole[..]));
        assert_ne!(run, Entries::from(&whole[..2]));
        assert_ne!(run, Entries::from(&[e(4), e(5), e(7)][..]));
        let copy = run;
        assert_eq!(copy.clone(), run);
    }

    fn append(prev: u64, count: u32) -> Queued {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: Body::Append {
                prev_index: Index(prev),
                prev_term: Term(1),
                commit: Index(0),
                entries: Span { count },
            },
        }
    }

    #[test]
    fn a_send_reads_its_entries_from_storage_then_from_the_log() {
        // Entries 1..=3 are durable (storage), 4..=6 in the node's tail.
        let disk = Disk(3);
        let tail = [e(4), e(5), e(6)];
        let msg = append(1, 4);
        let out = Outgoing::new(&msg, Index(3), Entries::from(&tail[..]), None);
        assert_eq!(out.to(), NodeId(2));
        assert_eq!(out.chunk(), None);
        let it = out.entries(&disk);
        assert_eq!(it.size_hint(), (4, Some(4)));
        let got: Vec<u64> = out.entries(&disk).map(|x| x.unwrap().index.0).collect();
        assert_eq!(got, [2, 3, 4, 5]);
        let owned: Message<u32, Vec<Entry<u32>>> = out.to_message(&disk).unwrap();
        assert_eq!(owned.to, NodeId(2));
        match owned.body {
            Body::Append { entries, .. } => assert_eq!(indices(entries.iter()), [2, 3, 4, 5]),
            other => panic!("{other:?}"),
        }
        // The part of the tail the send starts at: entries before it are skipped.
        let later = append(4, 2);
        let out = Outgoing::new(&later, Index(3), Entries::from(&tail[..]), None);
        let got: Vec<u64> = out.entries(&disk).map(|x| x.unwrap().index.0).collect();
        assert_eq!(got, [5, 6]);
        // A storage that lost a durable entry, and a tail that ends early, are reported.
        let lost = Disk(1);
        let out = Outgoing::new(&msg, Index(3), Entries::from(&tail[..]), None);
        assert_eq!(
            out.entries(&lost).next(),
            Some(Err(MissingCargo::Entry(Index(2))))
        );
        assert_eq!(
            out.to_message::<Vec<Entry<u32>>, _>(&lost).unwrap_err(),
            MissingCargo::Entry(Index(2))
        );
        let past = append(3, 3);
        let short = Outgoing::new(&past, Index(3), Entries::from(&tail[..1]), None);
        let got: Vec<_> = short.entries(&disk).collect();
        assert_eq!(got[0].as_ref().map(|x| x.index), Ok(Index(4)));
        assert_eq!(got[1], Err(MissingCargo::Entry(Index(5))));
        // Other messages carry no entries.
        let hb: Queued = Message {
            body: Body::Heartbeat { commit: Index(1) },
            ..msg
        };
        let out = Outgoing::new(&hb, Index(3), Entries::EMPTY, None);
        assert_eq!(out.entries(&disk).count(), 0);
        assert_eq!(out.message(), &hb);
    }

    #[test]
    fn a_chunk_send_carries_its_bytes_or_says_it_has_none() {
        let disk = Disk(0);
        let chunk: Queued = Message {
            from: NodeId(1),
            to: NodeId(3),
            term: Term(2),
            body: Body::InstallSnapshot {
                tag: 7,
                request: InstallRequest::Chunk {
                    snapshot: crate::types::SnapshotId {
                        index: Index(9),
                        term: Term(2),
                    },
                    seq: 1,
                    data: (),
                    checksum: Some(5),
                },
            },
        };
        let bytes = 0xABCDu32;
        let out = Outgoing::new(&chunk, Index(0), Entries::EMPTY, Some(&bytes));
        assert_eq!(out.chunk(), Some(&bytes));
        let owned: Message<u32, Vec<Entry<u32>>> = out.to_message(&disk).unwrap();
        match owned.body {
            Body::InstallSnapshot {
                request: InstallRequest::Chunk { data, seq, .. },
                ..
            } => assert_eq!((data, seq), (bytes, 1)),
            other => panic!("{other:?}"),
        }
        let bare = Outgoing::<u32>::new(&chunk, Index(0), Entries::EMPTY, None);
        assert_eq!(
            bare.to_message::<Vec<Entry<u32>>, _>(&disk).unwrap_err(),
            MissingCargo::Chunk
        );
        assert_eq!(out, out.clone());
        assert_ne!(out, bare);
    }

    #[test]
    fn only_actions_that_borrow_nothing_detach() {
        let plain: Action<'_, u32> = Action::Apply {
            first: Index(1),
            last: Index(2),
        };
        assert_eq!(
            plain.detach(),
            Ok(Action::Apply {
                first: Index(1),
                last: Index(2)
            })
        );
        let data = 3u32;
        let chunk = Action::WriteSnapshotChunk {
            snapshot: crate::types::SnapshotId::ZERO,
            seq: 0,
            data: &data,
        };
        assert_eq!(chunk.detach(), Err(chunk));
        let hs = HardState::default();
        let persist: Action<'_, u32> = Action::Persist(Persist {
            token: PersistToken(1),
            hard_state: Some(&hs),
            snapshot: None,
            entries: Entries::EMPTY,
        });
        assert_eq!(persist.detach(), Err(persist));
        assert_eq!(persist.clone(), persist);
    }

    #[test]
    fn missing_cargo_says_what_is_missing() {
        assert_eq!(
            std::format!("{}", MissingCargo::Entry(Index(7))),
            "storage has no entry 7"
        );
        assert_eq!(
            std::format!("{}", MissingCargo::Chunk),
            "a chunk message without its bytes"
        );
    }
}
