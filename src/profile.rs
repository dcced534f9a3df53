//! [`Profile`]: one type that names a node's payload and capacities (its docs say why and how).
//!
//! Invariant: for `Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>` every associated type is the
//! concrete type the node's own methods take and return.

use crate::config::Config;
use crate::membership::Membership;
use crate::message::Message;
use crate::node::Node;
use crate::types::{Entry, SnapshotMeta};

/// A node type, and the types its payload and capacities size. Implemented by every [`Node`].
///
/// A [`Node`] takes its payload type and five capacities as generic parameters
/// (`Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>`), and the types around it take some of them
/// again: a [`Membership`] and a [`SnapshotMeta`] are sized by `PEERS`, an owned message's
/// entries by `BATCH`. Generic code that repeated all of them had a dozen parameters (the
/// embassy runner had 14; it now takes `Runner<'a, M, N, L, S, C, A, Q, FRAME>`). Stable Rust cannot size an array by a trait's associated constant in
/// generic code, so a profile cannot be a set of constants that a node is built from; instead
/// the node type *is* the profile, and this trait names, as associated types, every type that
/// its parameters size. Generic code takes one parameter `N: Profile` and writes
/// `N::Membership`, `N::SnapshotMeta`, `N::Payload`; an `impl` block on `Node<P, PEERS, ..>`
/// with the constants as its own parameters reaches the node's methods.
///
/// ```
/// use raftlet::{Membership, Node, NodeId, Profile, SnapshotId, SnapshotMeta, TinyNode};
///
/// /// A runner-like type: one parameter for the node, whatever its capacities.
/// struct Driver<'a, N: Profile> {
///     node: &'a mut N,
///     last_snapshot: Option<N::SnapshotMeta>,
/// }
///
/// // The methods: an `impl` on the concrete node, the constants its own parameters.
/// impl<P, const PEERS: usize, const LOG: usize, const BATCH: usize, const INFLIGHT: usize,
///     const OUT: usize, const READS: usize> Driver<'_, Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>>
/// where
///     P: Clone,
/// {
///     fn snapshot_taken(&mut self, meta: SnapshotMeta<PEERS>) -> Option<NodeId> {
///         // `N::SnapshotMeta` is `SnapshotMeta<PEERS>` here: the compiler knows it.
///         let voter = meta.membership.voters().first().copied();
///         self.last_snapshot = Some(meta);
///         let _ = self.node.term();
///         voter
///     }
/// }
///
/// type Board = TinyNode<u32>; // the one type a firmware names
/// let mut node = Board::vacant();
/// let mut driver: Driver<'_, Board> = Driver { node: &mut node, last_snapshot: None };
/// let meta = SnapshotMeta { id: SnapshotId::ZERO, membership: Membership::new(&[NodeId(1)]).unwrap() };
/// assert_eq!(driver.snapshot_taken(meta), Some(NodeId(1)));
/// assert_eq!(<Board as Profile>::PEERS, 5);
/// ```
///
/// For `Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>` every associated type is the concrete type
/// the node's own methods take and return, so the compiler normalises
/// `<Node<..> as Profile>::Membership` to `Membership<PEERS>` and the two are interchangeable.
pub trait Profile {
    /// What an entry carries (and a snapshot chunk's bytes).
    type Payload;
    /// Members (voters and learners) of a membership.
    const PEERS: usize;
    /// Unstable entries the node holds before they are persisted and applied.
    const LOG: usize;
    /// Entries per append message.
    const BATCH: usize;
    /// Appends in flight per follower.
    const INFLIGHT: usize;
    /// Queued sends.
    const OUT: usize;
    /// Pending linearizable reads.
    const READS: usize;
    /// `Membership<PEERS>`.
    type Membership;
    /// `SnapshotMeta<PEERS>`: a snapshot's id and the membership at it.
    type SnapshotMeta;
    /// `Config<PEERS>`: what the node is built from.
    type Config;
    /// The entries of an owned message without an allocator: `heapless::Vec<Entry<P>, BATCH>`.
    type Entries;
    /// An owned message of this node, entries in [`Entries`](Self::Entries).
    type Message;
}

impl<
    P,
    const PEERS: usize,
    const LOG: usize,
    const BATCH: usize,
    const INFLIGHT: usize,
    const OUT: usize,
    const READS: usize,
> Profile for Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>
{
    type Payload = P;
    const PEERS: usize = PEERS;
    const LOG: usize = LOG;
    const BATCH: usize = BATCH;
    const INFLIGHT: usize = INFLIGHT;
    const OUT: usize = OUT;
    const READS: usize = READS;
    type Membership = Membership<PEERS>;
    type SnapshotMeta = SnapshotMeta<PEERS>;
    type Config = Config<PEERS>;
    type Entries = heapless::Vec<Entry<P>, BATCH>;
    type Message = Message<P, heapless::Vec<Entry<P>, BATCH>>;
}
