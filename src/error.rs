//! Typed errors of the node's inputs. Each is small; the one that hands data back is generic.

use crate::types::NodeId;
use core::fmt;

/// A proposal was refused. The payload is handed back untouched.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProposeError<P> {
    /// This node is not the leader. `leader` names the leader if this node knows it.
    NotLeader {
        /// The current leader, if known: retry there.
        leader: Option<NodeId>,
        /// The refused payload.
        data: P,
    },
    /// The unstable log is full: wait for persists to be acknowledged, then retry.
    Full(P),
    /// Leadership is being transferred; retry at the new leader.
    Transferring(P),
}

impl<P> ProposeError<P> {
    /// Takes the refused payload back.
    pub fn into_data(self) -> P {
        match self {
            Self::NotLeader { data, .. } | Self::Full(data) | Self::Transferring(data) => data,
        }
    }
}

impl<P> fmt::Display for ProposeError<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader {
                leader: Some(l), ..
            } => write!(f, "not the leader (leader is {l})"),
            Self::NotLeader { leader: None, .. } => f.write_str("not the leader (leader unknown)"),
            Self::Full(_) => f.write_str("unstable log full"),
            Self::Transferring(_) => f.write_str("leadership transfer in progress"),
        }
    }
}

impl<P: fmt::Debug> core::error::Error for ProposeError<P> {}

/// Why an incoming message was refused as invalid. A refused message changes nothing.
///
/// Routine traffic is not an error: a message from a stale term (answered with the current
/// term where Raft says so), a vote request during a leader's check-quorum lease, or an append
/// that finds the unstable log full (back-pressure: the leader resends) returns `Ok` and is
/// counted in [`Stats`](crate::Stats) (`stale_term`, `ignored_in_lease`, `log_full`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StepError {
    /// Addressed to another node, or sent by a node that is not a member (or by itself).
    UnknownPeer,
    /// The content is impossible (see [`Stats::malformed`](crate::Stats::malformed)).
    Malformed,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownPeer => "message from or to an unknown node",
            Self::Malformed => "impossible message content",
        })
    }
}

impl core::error::Error for StepError {}

/// A persist acknowledgement was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PersistError {
    /// The token was never issued.
    UnknownToken,
    /// The token (or a later one) was already acknowledged.
    AlreadyAcknowledged,
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownToken => "persist token was never issued",
            Self::AlreadyAcknowledged => "persist token already acknowledged",
        })
    }
}

impl core::error::Error for PersistError {}

/// What an application reports when a snapshot install did not succeed
/// ([`Node::snapshot_installed`](crate::Node::snapshot_installed)).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum InstallError {
    /// Notify mode: no snapshot can be had (the install round ends with
    /// [`InstallOutcome::Unavailable`](crate::InstallOutcome::Unavailable) on both sides).
    Unavailable,
    /// The attempt failed (fetch error, bad checksum); the round ends quietly and the leader's
    /// next request starts another.
    Failed,
}

/// A snapshot call was refused; the node's state is unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SnapshotError {
    /// A local snapshot beyond what was handed out for apply.
    NotApplied,
    /// A local snapshot at or below the current one.
    Stale,
    /// The term given does not match the log's entry at that index.
    TermMismatch,
    /// A snapshot from a leader is being installed (local snapshots and reads are refused).
    InstallInProgress,
    /// No install is in progress to report on.
    NoInstall,
    /// A chunk that nobody asked for (no such transfer, or not the chunk wanted).
    UnexpectedChunk,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotApplied => "snapshot beyond the applied index",
            Self::Stale => "snapshot not newer than the current one",
            Self::TermMismatch => "snapshot term does not match the log",
            Self::InstallInProgress => "a snapshot install from the leader is in progress",
            Self::NoInstall => "no snapshot install in progress",
            Self::UnexpectedChunk => "snapshot chunk not requested",
        })
    }
}

impl core::error::Error for SnapshotError {}

/// Why a linearizable read was refused or failed. A read never hangs: it is served or fails.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReadError {
    /// No leader is known; ask again later or on another node.
    NoLeader,
    /// The term changed or this node stopped leading before the read was confirmed.
    LeadershipLost,
    /// This follower is installing a snapshot from the leader.
    InstallInProgress,
    /// Too many reads are pending (the node's `READS` capacity, see [`Node`](crate::Node)).
    Full,
    /// No quorum confirmed the read within two election timeouts.
    Timeout,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoLeader => "no leader known",
            Self::LeadershipLost => "leadership changed before the read was confirmed",
            Self::InstallInProgress => "a snapshot install is in progress",
            Self::Full => "too many pending reads",
            Self::Timeout => "read not confirmed in time",
        })
    }
}

impl core::error::Error for ReadError {}

/// A membership change was refused; nothing was appended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MembershipError {
    /// Only the leader changes the membership. `leader` names it if known.
    NotLeader {
        /// The current leader, if known: retry there.
        leader: Option<NodeId>,
    },
    /// The previous change is not committed yet, or this leader has not yet committed an entry
    /// of its own term (thesis §4.1 and the single-server-change fix): retry once it has.
    Pending,
    /// Leadership is being transferred.
    Transferring,
    /// The unstable log is full: retry once persists are acknowledged.
    Full,
    /// The change is impossible from the current membership.
    Invalid(crate::membership::ConfChangeError),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader (leader is {l})"),
            Self::NotLeader { leader: None } => f.write_str("not the leader (leader unknown)"),
            Self::Pending => f.write_str("a membership change is still pending"),
            Self::Transferring => f.write_str("leadership transfer in progress"),
            Self::Full => f.write_str("unstable log full"),
            Self::Invalid(e) => write!(f, "invalid membership change: {e}"),
        }
    }
}

impl core::error::Error for MembershipError {}

/// A leadership transfer was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransferError {
    /// Only the leader can transfer leadership.
    NotLeader,
    /// The target is not another voter of the cluster: a learner, a node being removed, an
    /// unknown node, or this node.
    NotAVoter,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotLeader => "not the leader",
            Self::NotAVoter => "the target is not another voter",
        })
    }
}

impl core::error::Error for TransferError {}
