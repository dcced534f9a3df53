//! Messages exchanged between nodes.
//!
//! Every field of a message that arrives from the network is untrusted: the node validates it
//! before it changes any state (see `node::step`). Enum variants are only ever appended, so the
//! postcard encoding of existing variants stays stable.

use crate::types::{Entry, Index, NodeId, Term};
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
        }
    }
}
