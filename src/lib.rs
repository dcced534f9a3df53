//! # raftlet
//!
//! A sans-IO Raft consensus core: no sockets, no clocks, no threads, no allocator. It runs the
//! same inside a tokio service and inside microcontroller firmware.
//!
//! Time, messages, proposals and durability acknowledgements come in through method calls;
//! everything the node wants done comes out as [`Action`]s that the caller (the *runner*)
//! executes: send a message, persist state, apply committed entries. Every buffer has a fixed
//! capacity chosen with const generics; a full buffer is back-pressure (a typed error that hands
//! the caller's data back) or, for network sends that Raft tolerates losing, a counted drop.
//! Election jitter comes from a seed in the [`Config`], so the same inputs give the same actions,
//! bit for bit.
//!
//! ## Usage: the driving loop
//!
//! A runner owns the node and its storage. After every input it drains
//! [`Node::poll_action`] and executes each action as the [action contract](action) says:
//!
//! ```
//! use raftlet::{Action, Config, Entry, HardState, Index, NodeId, Storage, Term, TinyNode};
//!
//! // Minimal in-memory storage (a real runner writes to disk or flash and fsyncs).
//! #[derive(Default)]
//! struct Mem { hs: HardState, log: Vec<Entry<u32>> }
//! impl Storage<u32> for Mem {
//!     fn hard_state(&self) -> HardState { self.hs }
//!     fn last_index(&self) -> Index { Index(self.log.len() as u64) }
//!     fn term(&self, i: Index) -> Option<Term> {
//!         if i.0 == 0 { Some(Term(0)) } else { self.log.get(i.0 as usize - 1).map(|e| e.term) }
//!     }
//!     fn entry(&self, i: Index) -> Option<Entry<u32>> {
//!         i.0.checked_sub(1).and_then(|k| self.log.get(k as usize)).cloned()
//!     }
//! }
//!
//! let mut store = Mem::default();
//! let config = Config::new(NodeId(1), &[NodeId(1)]).unwrap();
//! let mut node: TinyNode<u32> = TinyNode::new(config, &store).unwrap();
//! let mut applied = Vec::new();
//!
//! // One input, then drain: the runner's whole job.
//! fn drain(node: &mut TinyNode<u32>, store: &mut Mem, applied: &mut Vec<u32>) {
//!     while let Some(action) = node.poll_action() {
//!         match action {
//!             Action::Send(out) => {
//!                 // Encode it for the transport (`raftlet::wire::Codec::encode_outgoing`), or
//!                 // copy it: `out.to_message::<Vec<Entry<u32>>, _>(store)`.
//!                 let _ = out.to();
//!             }
//!             Action::Persist(p) => {
//!                 let token = p.token;
//!                 if let Some(hs) = p.hard_state { store.hs = *hs; }
//!                 if let Some(first) = p.entries.first() {
//!                     store.log.truncate(first.index.0 as usize - 1);
//!                 }
//!                 store.log.extend(p.entries.iter().cloned());
//!                 // ... fsync here, then acknowledge:
//!                 node.persisted(token, store).unwrap();
//!             }
//!             Action::Apply { first, last } => {
//!                 for i in first.0..=last.0 {
//!                     if let raftlet::EntryData::Normal(x) = store.entry(Index(i)).unwrap().data {
//!                         applied.push(x);
//!                     }
//!                 }
//!             }
//!             // Snapshot actions (compaction, installs) only follow snapshot calls; see the
//!             // README for both snapshot modes.
//!             _ => {}
//!         }
//!     }
//! }
//!
//! // A single-node cluster elects itself after an election timeout...
//! while node.role() != raftlet::Role::Leader {
//!     node.tick(&store);
//!     drain(&mut node, &mut store, &mut applied);
//! }
//! // ...and commits and applies what it is asked to.
//! node.propose(42, &store).unwrap();
//! drain(&mut node, &mut store, &mut applied);
//! assert_eq!(applied, [42]);
//! ```
//!
//! ## Obligations of a runner
//! * Drain `poll_action` after every input.
//! * Persist in token order and acknowledge with [`Node::persisted`] only once durable. The
//!   node withholds every vote grant and append acknowledgement until then, so sends may go out
//!   the moment they are polled.
//! * Hand the same storage view to every call; it must answer for every index the node was
//!   told is durable.
//!
//! ## Implementation notes
//! Pre-vote and check-quorum (on by default), probe / replicate flow control with an inflight
//! window, fast log back-off with conflict hints, commit only of the leader's own term
//! (Raft §5.4.2), a no-op entry at the start of every term.
//!
//! ## Features
//! | feature | effect |
//! |---|---|
//! | `std` | implies `alloc`; nothing in the core needs it |
//! | `alloc` | serde support for alloc-backed payloads |
//! | `defmt` | `defmt::Format` on public types and defmt logging (exclusive with `log`) |
//! | `log` | logging through the `log` facade |
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod fmt;

pub mod action;
#[doc(hidden)]
pub mod canary;
mod config;
mod error;
mod log;
mod membership;
mod message;
mod node;
mod profile;
mod progress;
mod rng;
mod stats;
mod storage;
mod time;
mod types;
pub mod wire;

pub use action::{Action, Entries, MissingCargo, Outgoing, OutgoingEntries, Persist, PersistToken};
pub use config::{Config, ConfigError};
pub use error::{
    InstallError, MembershipError, PersistError, ProposeError, ReadError, SnapshotError, StepError,
    TransferError,
};
pub use log::PERSIST_WINDOW;
pub use membership::{Change, ConfChange, ConfChangeError, MAX_CONF_CHANGES, Membership};
pub use message::{AppendResult, Body, InstallRequest, InstallResult, Message, Queued, Span};
pub use node::{DEFAULT_READS, Node};
pub use profile::Profile;
pub use progress::{FlowState, PeerProgress};
pub use stats::Stats;
pub use storage::Storage;
pub use time::{Duration, Instant};
pub use types::{
    Entry, EntryData, HardState, Index, InstallOutcome, NodeId, ReadId, Role, SnapshotId,
    SnapshotMeta, SnapshotMode, Term,
};

/// Entries per append message in the default profile (8 appends of 8 in flight per follower).
/// Messages carry only what they hold (entries stay in the node's log until a send is polled),
/// so the number bounds a frame's size, not what every message costs.
pub const DEFAULT_BATCH: usize = 8;

/// Members (voters and learners) of a membership in the default profile.
pub const DEFAULT_MEMBERS: usize = 7;

/// The profile for hosted runners: up to 7 members, 256 unstable entries, 8 entries per
/// message, 8 appends in flight per follower, 64 queued sends, 16 pending reads.
pub type DefaultNode<P> = Node<P, DEFAULT_MEMBERS, 256, DEFAULT_BATCH, 8, 64, DEFAULT_READS>;
/// Owned messages of [`DefaultNode`] without an allocator: entries in a `heapless::Vec` of
/// [`DEFAULT_BATCH`] (a runner with `alloc` may use `Vec<Entry<P>>`, which is smaller).
pub type DefaultMessage<P> = Message<P, heapless::Vec<Entry<P>, DEFAULT_BATCH>>;

/// Entries per append message in the tiny profile.
pub const TINY_BATCH: usize = 4;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The profile for microcontrollers: up to 5 voters, 16 unstable entries, 4 entries per
/// message, 2 appends in flight per follower, 8 queued sends, 4 pending reads.
pub type TinyNode<P> = Node<P, 5, 16, TINY_BATCH, 2, 8, 4>;
/// Owned messages of [`TinyNode`]: entries in a `heapless::Vec` of [`TINY_BATCH`].
pub type TinyMessage<P> = Message<P, heapless::Vec<Entry<P>, TINY_BATCH>>;
