//! What the node asks its runner to do, and the rules for doing it (the action contract).
//!
//! # The contract
//!
//! A runner drains [`Node::poll_action`](crate::Node::poll_action) after **every** input
//! (`tick`, `step`, `propose`, `persisted`, `campaign`) and executes each action as follows:
//!
//! * [`Action::Send`]: deliver the message to `message.to`, or drop it. There is no ordering or
//!   durability prerequisite: the node never emits a message that acknowledges state that is not
//!   yet durable. Vote grants and append acknowledgements are withheld inside the node until the
//!   runner has acknowledged the [`Persist`] they depend on. A runner may therefore send every
//!   message the moment it gets it, in any order, or lose it.
//! * [`Action::Persist`]: write durably, **in token order**: first the hard state, if any, then
//!   the entries, which replace every stored entry at or after `entries[0].index` (a new leader
//!   may overwrite an uncommitted tail). Once the write is durable (fsync'd), call
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
use crate::message::Message;
use crate::types::{Entry, HardState, Index, InstallOutcome, NodeId, ReadId, SnapshotId};
use serde::{Deserialize, Serialize};

/// Identifies one [`Persist`]; acknowledge it with [`Node::persisted`](crate::Node::persisted).
/// Tokens increase by one per persist, starting at 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PersistToken(pub u64);

/// A durable write the runner must perform, then acknowledge. Not `#[non_exhaustive]`, for
/// the reason given on [`Action`]: a new field is state the runner must write.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Persist<P, const BATCH: usize> {
    /// Acknowledge with this token once durable.
    pub token: PersistToken,
    /// A new hard state to store (replacing the old one atomically), if it changed.
    pub hard_state: Option<HardState>,
    /// `Some(id)`: the node adopted a snapshot installed from the leader. Discard the whole
    /// stored log (before storing `entries`, if any); the log now starts after `id`, and
    /// [`Storage::snapshot`](crate::Storage::snapshot) must answer `id` from now on.
    pub snapshot: Option<SnapshotId>,
    /// Entries to store. Stored entries at or after `entries[0].index` are removed first.
    pub entries: heapless::Vec<Entry<P>, BATCH>,
}

/// One thing the runner must do. See the [module docs](self) for the contract.
///
/// Deliberately not `#[non_exhaustive]`: a new action is something every runner must execute,
/// so adding one is a breaking change that fails their build, rather than a variant their
/// `_ => {}` arm would silently skip.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action<P, const BATCH: usize> {
    /// Send a message to a peer (loss is tolerated).
    Send(Message<P, BATCH>),
    /// Persist state, then acknowledge.
    Persist(Persist<P, BATCH>),
    /// Apply committed entries `first..=last`, in order.
    Apply {
        /// First entry to apply.
        first: Index,
        /// Last entry to apply.
        last: Index,
    },
    /// Entries up to `through.index` are no longer needed: record `through` durably as the
    /// log's snapshot ([`Storage::snapshot`](crate::Storage::snapshot)), then delete them
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
    /// [`Node::snapshot_chunk`](crate::Node::snapshot_chunk) for follower `to`.
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
        data: P,
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
