//! Identifier newtypes, log entries and the durable hard state.
//!
//! `Term`, `Index` and `NodeId` are distinct types so that a term can never be passed where an
//! index is expected (a classic Raft bug in code that uses bare `u64` everywhere).

use core::fmt;
use serde::{Deserialize, Serialize};

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

newtype!(
    /// A cluster member's identity. `NodeId(0)` is reserved and never a valid member.
    NodeId
);
newtype!(
    /// A Raft term. Terms only grow; `Term(0)` precedes every election.
    Term
);
newtype!(
    /// A log position. The first entry has index 1; `Index(0)` is the empty log.
    Index
);
newtype!(
    /// The caller's name for a linearizable read ([`Node::read_index`](crate::Node::read_index)).
    ReadId
);

impl Index {
    /// The next index (saturating: an untrusted `u64::MAX` never wraps to 0).
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
    /// The previous index, `Index(0)` stays `Index(0)`.
    #[must_use]
    pub const fn prev(self) -> Self {
        Self(self.0.saturating_sub(1))
    }
}

impl Term {
    /// The next term (saturating).
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// What an entry carries.
///
/// New variants are only ever appended (the wire format depends on the variant order).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EntryData<P> {
    /// Appended by every new leader at the start of its term (Raft §5.4.2, §8): committing it
    /// commits everything before it.
    Noop,
    /// An application command, applied to the state machine once committed.
    Normal(P),
    /// A membership change ([`Node::propose_conf_change`](crate::Node::propose_conf_change)).
    /// It takes effect on every node as soon as it is in the log (Raft §6), committed or not.
    /// An application that applies it keeps its own copy of the membership up to date with
    /// [`Membership::apply`](crate::Membership::apply), to store it with its snapshots.
    Membership(crate::membership::ConfChange),
}

/// One log entry.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry<P> {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
    /// The payload.
    pub data: EntryData<P>,
}

/// The state a node must persist before it acts on it (Raft figure 2, "persistent state").
///
/// The commit index is deliberately not part of it: it is volatile in Raft and is relearned from
/// the leader after a restart.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// A snapshot installed from a leader whose follower-side
    /// [`InstallComplete`](crate::Action::InstallComplete) has not been emitted yet. Persisted so
    /// that the event survives a restart between the install and the first accepted append.
    pub pending_install: Option<SnapshotId>,
}

/// Identifies a snapshot by the last log entry it covers.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotId {
    /// Index of the last entry the snapshot includes.
    pub index: Index,
    /// Term of that entry.
    pub term: Term,
}

impl SnapshotId {
    /// "No snapshot": the log starts at index 1.
    pub const ZERO: Self = Self {
        index: Index(0),
        term: Term(0),
    };
}

/// A snapshot as the application stores it: its id and the membership in effect at its index
/// (what an application reports with
/// [`Node::snapshot_installed`](crate::Node::snapshot_installed), and gives back in
/// [`Config`](crate::Config) after a restart).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotMeta<const N: usize> {
    /// The snapshot's last entry.
    pub id: SnapshotId,
    /// The membership after applying every entry up to `id.index`.
    pub membership: crate::membership::Membership<N>,
}

/// How a leader brings a follower that is behind its compacted log up to date. Cluster-wide:
/// a leader and a follower configured differently refuse each other's snapshot messages.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SnapshotMode {
    /// The leader streams its snapshot in chunks read through its application.
    #[default]
    Stream,
    /// The leader only tells the follower where its log starts; the follower's application
    /// fetches a snapshot by its own means (Apache Ratis' notify mode).
    Notify,
}

/// How an installation ended, as reported by [`Action::InstallComplete`](crate::Action::InstallComplete).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InstallOutcome {
    /// The follower installed this snapshot and its log now joins the leader's.
    Installed(SnapshotId),
    /// The follower's application reported that no snapshot is available.
    Unavailable,
}

/// The role a node currently plays.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// Follows a leader (possibly unknown).
    Follower,
    /// Asks for pre-votes without raising its term (thesis §9.6).
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}
