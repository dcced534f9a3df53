//! Messages exchanged between nodes.
//!
//! Every field of a message that arrives from the network is untrusted: the node validates it
//! before it changes any state (see `node::step`). Enum variants are only ever appended, so the
//! postcard encoding of existing variants stays stable.

use crate::types::{Entry, Index, InstallOutcome, NodeId, SnapshotId, Term};
use serde::{Deserialize, Serialize};

/// A message from one node to another.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message<P, const BATCH: usize> {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term the sender would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: Body<P, BATCH>,
}

/// The payload of a [`Message`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Body<P, const BATCH: usize> {
    /// Request a (pre-)vote (Raft §5.2, thesis §9.6).
    VoteRequest {
        /// A pre-vote does not change anyone's term or vote.
        pre_vote: bool,
        /// Index of the candidate's last log entry.
        last_index: Index,
        /// Term of the candidate's last log entry.
        last_term: Term,
    },
    /// Answer to a [`Body::VoteRequest`].
    VoteResponse {
        /// Answers a pre-vote request.
        pre_vote: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Replicate entries (Raft §5.3). Carries at most `BATCH` entries.
    Append {
        /// Index of the entry just before `entries`.
        prev_index: Index,
        /// Term of the entry at `prev_index`.
        prev_term: Term,
        /// The leader's commit index.
        commit: Index,
        /// Entries to append, contiguous from `prev_index + 1`.
        entries: heapless::Vec<Entry<P>, BATCH>,
    },
    /// Answer to a [`Body::Append`].
    AppendResponse(AppendResult),
    /// Leader liveness and commit propagation. `commit` is already clamped by the leader to what
    /// it knows the follower holds.
    Heartbeat {
        /// Commit index the follower may adopt.
        commit: Index,
    },
    /// Answer to a [`Body::Heartbeat`].
    HeartbeatResponse,
    /// Snapshot installation, leader to follower.
    InstallSnapshot {
        /// Names one notify round or one chunked transfer of this leader; echoed in replies so
        /// that duplicated or reordered replies are recognised.
        tag: u64,
        /// What the leader asks.
        request: InstallRequest<P>,
    },
    /// Snapshot installation, follower to leader.
    InstallSnapshotResponse {
        /// The `tag` of the request this answers.
        tag: u64,
        /// The follower's state.
        result: InstallResult,
    },
    /// A follower forwards a linearizable read to the leader.
    ReadIndex {
        /// The follower's read id.
        ctx: u64,
    },
    /// The leader's answer to [`Body::ReadIndex`]: the read may be served once the follower has
    /// applied `index`; `None` if the leader could not confirm it.
    ReadIndexResponse {
        /// The follower's read id.
        ctx: u64,
        /// The read index, if confirmed.
        index: Option<Index>,
    },
    /// The leader confirms it still leads (ReadIndex, Raft thesis §6.4): round `seq`.
    ReadConfirm {
        /// The round.
        seq: u64,
    },
    /// A follower acknowledges [`Body::ReadConfirm`] round `seq`.
    ReadConfirmAck {
        /// The round.
        seq: u64,
    },
    /// Leadership transfer: the leader tells an up-to-date follower to campaign now (thesis
    /// §3.10).
    TimeoutNow,
    /// A vote request of a leadership transfer: like a real vote request, but voters grant it
    /// even while they hear from the (transferring) leader.
    VoteRequestTransfer {
        /// Index of the candidate's last log entry.
        last_index: Index,
        /// Term of the candidate's last log entry.
        last_term: Term,
    },
}

/// A leader's snapshot request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InstallRequest<P> {
    /// Notify mode: the leader's log now starts at `first_available` (index and term of its
    /// first entry); fetch a snapshot that reaches at least `first_available.index - 1`.
    Notify {
        /// The leader's first log entry (for a fully compacted log: the next index and the
        /// current term).
        first_available: SnapshotId,
    },
    /// Stream mode: chunk `seq` of `snapshot`. The last chunk carries the checksum of the whole
    /// snapshot, which the follower's application verifies before restoring.
    Chunk {
        /// The snapshot being transferred.
        snapshot: SnapshotId,
        /// Chunk number, from 0.
        seq: u32,
        /// The chunk's bytes, in the payload type.
        data: P,
        /// `Some` on the last chunk only.
        checksum: Option<u64>,
    },
}

/// A follower's answer to an [`InstallRequest`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InstallResult {
    /// Notify mode: an install round is running; no result yet.
    InProgress,
    /// The follower installed (and adopted) this snapshot.
    Installed(SnapshotId),
    /// The follower already holds this snapshot (or, in stream mode, has committed past it).
    AlreadyInstalled(SnapshotId),
    /// Notify mode: the follower's application has no snapshot to install.
    Unavailable,
    /// The install failed (a bad checksum, an application error); the leader may retry.
    Failed,
    /// Leader and follower are configured with different snapshot modes.
    ModeMismatch,
    /// Stream mode: the follower expects chunk `0` of this transfer next.
    NextChunk(u32),
    /// Stream mode: the chunk belongs to a transfer the follower has moved past.
    Expired,
    /// Unsolicited: the outcome of an install that a leader of an earlier term drove (`term`,
    /// and `tag` of the message) and that no leader has collected yet. Sent once to the first
    /// leader of a later term that contacts the follower.
    Reported {
        /// How the install ended.
        outcome: InstallOutcome,
        /// The term of the leader whose request the install answered.
        term: Term,
    },
}

/// The outcome of an append on the follower.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AppendResult {
    /// The follower's log matches the leader's up to `match_index`, and that prefix is durable.
    Accepted {
        /// Highest index known to match the leader's log.
        match_index: Index,
    },
    /// `prev_index`/`prev_term` did not match.
    Rejected {
        /// The `prev_index` of the rejected append.
        rejected: Index,
        /// Conflict hint: the largest index `<= rejected` whose term is `<= hint_term`.
        hint_index: Index,
        /// The term of the follower's entry at `hint_index`.
        hint_term: Term,
    },
    /// The follower is installing a snapshot (notify mode) and takes no entries until it is
    /// done; the leader's next index for it does not move.
    InstallInProgress,
}

impl<P, const B: usize> Body<P, B> {
    /// A short, stable name for the message kind (for logs, traces and stats).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VoteRequest { pre_vote: true, .. } => "PreVoteRequest",
            Self::VoteRequest { .. } => "VoteRequest",
            Self::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            Self::VoteResponse { .. } => "VoteResponse",
            Self::Append { .. } => "Append",
            Self::AppendResponse(_) => "AppendResponse",
            Self::Heartbeat { .. } => "Heartbeat",
            Self::HeartbeatResponse => "HeartbeatResponse",
            Self::InstallSnapshot {
                request: InstallRequest::Notify { .. },
                ..
            } => "InstallSnapshotNotify",
            Self::InstallSnapshot { .. } => "InstallSnapshotChunk",
            Self::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
            Self::ReadIndex { .. } => "ReadIndex",
            Self::ReadIndexResponse { .. } => "ReadIndexResponse",
            Self::ReadConfirm { .. } => "ReadConfirm",
            Self::ReadConfirmAck { .. } => "ReadConfirmAck",
            Self::TimeoutNow => "TimeoutNow",
            Self::VoteRequestTransfer { .. } => "VoteRequestTransfer",
        }
    }
}
