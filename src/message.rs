//! Messages exchanged between nodes.
//!
//! Every field of a message that arrives from the network is untrusted: the node validates it
//! before it changes any state (see `node::step`). Enum variants are only ever appended, so the
//! postcard encoding of existing variants stays stable.
//!
//! # Sized by what they carry
//! A message is generic over `P`, the type of a snapshot chunk's bytes, and `E`, the container
//! of an append's entries; nothing else in it depends on the payload. The node queues its own
//! messages as `Message<(), Span>` ([`Queued`]): the entries and chunk bytes stay out of line
//! (in the node's log and chunk slots), so a vote or an acknowledgement costs a few dozen bytes
//! to queue, not the room of a batch. The runner reads them when it polls the send
//! ([`Outgoing`](crate::action::Outgoing)) and encodes them straight into its frame, or builds an
//! owned message with the container of its choice (`heapless::Vec` without an allocator, `Vec`
//! on std). Inbound, [`Node::step`](crate::Node::step) takes any `E: AsRef<[Entry<P>]>` by
//! reference. The wire encoding does not depend on `E`: entries are a sequence either way.

use crate::types::{Index, InstallOutcome, NodeId, SnapshotId, Term};
use serde::{Deserialize, Serialize};

/// A message from one node to another.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message<P, E> {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term the sender would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: Body<P, E>,
}

/// The payload of a [`Message`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Body<P, E> {
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
    /// Replicate entries (Raft §5.3). Carries at most the sender's entries-per-message limit.
    Append {
        /// Index of the entry just before `entries`.
        prev_index: Index,
        /// Term of the entry at `prev_index`.
        prev_term: Term,
        /// The leader's commit index.
        commit: Index,
        /// Entries to append, contiguous from `prev_index + 1`.
        entries: E,
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
    /// The leader's commit index, already clamped to what the follower is known to hold (its
    /// match index). Unlike an empty append it needs no answer: a leader sends it to a follower
    /// that holds every committed entry, instead of an append that would only carry the commit
    /// index and be acknowledged for nothing.
    Commit {
        /// Commit index the follower may adopt.
        commit: Index,
    },
    /// Quiescence (`Config::quiesce`): the leader's last heartbeat before it stops ticking. Every
    /// member holds every entry and `commit` is the leader's last index; a follower that holds
    /// it too stops ticking (no answer), one that does not treats it as a heartbeat.
    Quiesce {
        /// Commit index the follower may adopt, the leader's last index.
        commit: Index,
    },
}

/// A leader's snapshot request.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
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

/// The entries of a queued append: how many follow `prev_index`. The node reads them from its
/// log when the runner polls the send.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Span {
    /// Entries `prev_index + 1 ..= prev_index + count`.
    pub count: u32,
}

/// A message without its cargo: entries ([`Span`]) and snapshot chunk bytes (`()`) out of
/// line, as [`Outgoing::message`](crate::action::Outgoing::message) hands it out. See
/// [`Outgoing`](crate::action::Outgoing) for the message with its cargo.
pub type Queued = Message<(), Span>;

/// A send in the node's outgoing queue: a [`Queued`] message without its sender, which is
/// always the node itself (64 bytes where a `Queued` takes 72). The sender is filled in when
/// the send is polled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueuedSend {
    pub(crate) to: NodeId,
    pub(crate) term: Term,
    pub(crate) body: Body<(), Span>,
}

// Every send the node queues, an acknowledgement or a vote as much as an append, takes at most
// 64 bytes (on 32-bit targets less).
const _: () = assert!(core::mem::size_of::<QueuedSend>() <= 64);

impl QueuedSend {
    /// The message, sent by `from`.
    pub(crate) const fn from(self, from: NodeId) -> Queued {
        Message {
            from,
            to: self.to,
            term: self.term,
            body: self.body,
        }
    }
}

impl<P, E> Message<P, E> {
    /// The same message with its chunk bytes and entries converted (by reference): e.g. a
    /// borrowed view for encoding, or an owned copy in another container.
    pub fn map<Q, F>(
        &self,
        chunk: impl FnOnce(&P) -> Q,
        entries: impl FnOnce(&E) -> F,
    ) -> Message<Q, F> {
        match self.try_map::<Q, F, core::convert::Infallible>(|p| Ok(chunk(p)), |e| Ok(entries(e)))
        {
            Ok(m) => m,
            Err(never) => match never {},
        }
    }

    /// As [`map`](Self::map), with conversions that may fail.
    ///
    /// # Errors
    /// The first error of a conversion.
    pub fn try_map<Q, F, X>(
        &self,
        chunk: impl FnOnce(&P) -> Result<Q, X>,
        entries: impl FnOnce(&E) -> Result<F, X>,
    ) -> Result<Message<Q, F>, X> {
        let body = match &self.body {
            Body::VoteRequest {
                pre_vote,
                last_index,
                last_term,
            } => Body::VoteRequest {
                pre_vote: *pre_vote,
                last_index: *last_index,
                last_term: *last_term,
            },
            Body::VoteResponse { pre_vote, granted } => Body::VoteResponse {
                pre_vote: *pre_vote,
                granted: *granted,
            },
            Body::Append {
                prev_index,
                prev_term,
                commit,
                entries: e,
            } => Body::Append {
                prev_index: *prev_index,
                prev_term: *prev_term,
                commit: *commit,
                entries: entries(e)?,
            },
            Body::AppendResponse(r) => Body::AppendResponse(*r),
            Body::Heartbeat { commit } => Body::Heartbeat { commit: *commit },
            Body::HeartbeatResponse => Body::HeartbeatResponse,
            Body::InstallSnapshot { tag, request } => Body::InstallSnapshot {
                tag: *tag,
                request: match request {
                    InstallRequest::Notify { first_available } => InstallRequest::Notify {
                        first_available: *first_available,
                    },
                    InstallRequest::Chunk {
                        snapshot,
                        seq,
                        data,
                        checksum,
                    } => InstallRequest::Chunk {
                        snapshot: *snapshot,
                        seq: *seq,
                        data: chunk(data)?,
                        checksum: *checksum,
                    },
                },
            },
            Body::InstallSnapshotResponse { tag, result } => Body::InstallSnapshotResponse {
                tag: *tag,
                result: *result,
            },
            Body::ReadIndex { ctx } => Body::ReadIndex { ctx: *ctx },
            Body::ReadIndexResponse { ctx, index } => Body::ReadIndexResponse {
                ctx: *ctx,
                index: *index,
            },
            Body::ReadConfirm { seq } => Body::ReadConfirm { seq: *seq },
            Body::ReadConfirmAck { seq } => Body::ReadConfirmAck { seq: *seq },
            Body::TimeoutNow => Body::TimeoutNow,
            Body::VoteRequestTransfer {
                last_index,
                last_term,
            } => Body::VoteRequestTransfer {
                last_index: *last_index,
                last_term: *last_term,
            },
            Body::Commit { commit } => Body::Commit { commit: *commit },
            Body::Quiesce { commit } => Body::Quiesce { commit: *commit },
        };
        Ok(Message {
            from: self.from,
            to: self.to,
            term: self.term,
            body,
        })
    }
}

impl<P, E> Body<P, E> {
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
            Self::Commit { .. } => "Commit",
            Self::Quiesce { .. } => "Quiesce",
        }
    }
}
