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
//!
//! Persists and applies are generated from the node's state when polled, not queued, so a full
//! send queue can never lose them; only sends are dropped (and counted) when the queue is full.

use crate::message::Message;
use crate::types::{Entry, HardState, Index};
use serde::{Deserialize, Serialize};

/// Identifies one [`Persist`]; acknowledge it with [`Node::persisted`](crate::Node::persisted).
/// Tokens increase by one per persist, starting at 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PersistToken(pub u64);

/// A durable write the runner must perform, then acknowledge.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Persist<P, const BATCH: usize> {
    /// Acknowledge with this token once durable.
    pub token: PersistToken,
    /// A new hard state to store (replacing the old one atomically), if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to store. Stored entries at or after `entries[0].index` are removed first.
    pub entries: heapless::Vec<Entry<P>, BATCH>,
}

/// One thing the runner must do. See the [module docs](self) for the contract.
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
}
