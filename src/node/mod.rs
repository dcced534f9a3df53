//! The Raft node: a pure state machine driven by inputs, producing [`Action`]s.
//!
//! Heads up: read Raft §5 (and thesis §9.6 for pre-vote, §6.2 for check-quorum) before changing
//! this module. Elections live in `election.rs`, log replication in `replication.rs`; this file
//! holds the state, the public API and the durability gate.
//!
//! Invariants maintained here:
//! * a vote grant leaves the node only once the hard state that records it is durable;
//! * an append acknowledgement for `match_index = m` leaves only once the hard state of its term
//!   is durable and the log is durable up to `m` (`RaftLog::stable_last() >= m`);
//! * a leader counts itself toward commit only up to its durable index;
//! * `commit` never decreases; apply is emitted in order, once, only up to `min(commit, durable)`
//!   (with `Config::apply_before_durable`: `min(commit, written)`, the last index handed out in
//!   a persist; compaction still stops at the durable index);
//! * persists and applies are derived from state at poll time and are never dropped; only sends
//!   can be dropped (queue full), and each drop is counted.

mod cargo;
mod election;
mod membership;
mod quiesce;
mod read;
mod replication;
mod snapshot;
mod step;

pub use read::DEFAULT_READS;

pub(crate) use snapshot::FollowerInstall;

use crate::action::{Action, Entries, Outgoing, Persist, PersistToken};
use crate::config::{Config, ConfigError};
use crate::error::{PersistError, StepError};
use crate::log::RaftLog;
use crate::message::{Body, Message, Queued, QueuedSend, Span};
use crate::progress::{PeerProgress, Progress};
use crate::rng::SplitMix64;
use crate::stats::Stats;
use crate::storage::Storage;
use crate::time::{Duration, Instant};
use crate::types::{Entry, HardState, Index, InstallOutcome, NodeId, Role, SnapshotId, Term};
use cargo::Cargo;
use heapless::Deque;
use membership::Configs;

/// Votes received in one (pre-)election: the first answer of each voter counts, duplicates do not.
#[derive(Clone, Debug, Default)]
pub(crate) struct VoteSet<const N: usize> {
    votes: heapless::Vec<(NodeId, bool), N>,
}

impl<const N: usize> VoteSet<N> {
    fn record(&mut self, from: NodeId, granted: bool) {
        if !self.votes.iter().any(|(id, _)| *id == from) {
            let _ = self.votes.push((from, granted));
        }
    }
    fn tally<const M: usize>(
        &self,
        membership: &crate::membership::Membership<M>,
    ) -> crate::membership::VoteResult {
        membership.vote_result(|id| {
            self.votes
                .iter()
                .find(|(v, _)| *v == id)
                .map(|(_, granted)| *granted)
        })
    }
}

/// Role-specific state: only a leader has progress, only candidates have votes.
pub(crate) enum RoleState<const PEERS: usize, const INFLIGHT: usize> {
    Follower,
    PreCandidate(VoteSet<PEERS>),
    Candidate(VoteSet<PEERS>),
    Leader(heapless::Vec<Progress<INFLIGHT>, PEERS>),
}

/// A Raft node.
///
/// Capacities are const generics; use [`DefaultNode`](crate::DefaultNode) or
/// [`TinyNode`](crate::TinyNode) unless you need other sizes:
/// * `PEERS`: maximum number of voters, this node included;
/// * `LOG`: entries held in memory until the runner acknowledges them as durable (back-pressure:
///   [`ProposeError::Full`](crate::ProposeError::Full));
/// * `BATCH`: entries per append message (a persist hands out every new entry at once);
/// * `INFLIGHT`: append messages in flight per follower (the flow-control window);
/// * `OUT`: queued outgoing messages (a full queue drops and counts sends);
/// * `READS`: pending linearizable reads, the node's own and (on a leader) those its followers
///   forwarded ([`ReadError::Full`](crate::ReadError::Full) beyond them; 0
///   refuses every read), [`DEFAULT_READS`](crate::DEFAULT_READS) unless named.
///
/// # Methods by kind (after quinn-proto)
/// * **inputs** (`&mut self`, take the runner's [`Storage`]): [`tick`](Self::tick) or
///   [`handle_timeout`](Self::handle_timeout), [`step`](Self::step),
///   [`propose`](Self::propose), [`persisted`](Self::persisted), [`campaign`](Self::campaign);
/// * **output**: [`poll_action`](Self::poll_action), drained until `None` after every input,
///   and [`poll_timeout`](Self::poll_timeout) to know when to call `handle_timeout` next;
/// * **getters**: [`role`](Self::role), [`term`](Self::term), [`leader`](Self::leader),
///   [`commit_index`](Self::commit_index), [`stats`](Self::stats), ...
///
/// The [action contract](crate::action) says what executing each action means.
pub struct Node<
    P,
    const PEERS: usize,
    const LOG: usize,
    const BATCH: usize,
    const INFLIGHT: usize,
    const OUT: usize,
    const READS: usize = DEFAULT_READS,
> {
    pub(crate) cfg: crate::config::Settings,
    pub(crate) hs: HardState,
    pub(crate) role: RoleState<PEERS, INFLIGHT>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog<P, LOG>,
    pub(crate) commit: Index,
    pub(crate) apply_emitted: Index,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) election_timeout: u32,
    rng: SplitMix64,
    /// Queued sends: small, their entries and chunk bytes out of line.
    pub(crate) out: Deque<QueuedSend, OUT>,
    /// The send handed out by the last `poll_action` (its `Outgoing` borrows it).
    polled: Queued,
    /// Leader, stream mode: the bytes of the chunk queued for each follower `(to, seq, data)`.
    pub(crate) out_chunks: heapless::Vec<(NodeId, u32, P), PEERS>,
    /// Follower, stream mode: the chunk handed out by the last `WriteSnapshotChunk`.
    pub(crate) in_chunk: Option<P>,
    /// The log reset handed out by the last persist (`Persist` borrows it; the hard state it
    /// borrows from `hs`, which cannot change while the action is held).
    handed_reset: SnapshotId,
    /// The hard state changed since it was last handed out in a persist.
    pub(crate) hs_dirty: bool,
    /// Token of the newest persist that carried the hard state.
    hs_token: u64,
    next_token: u64,
    acked_token: u64,
    /// A vote grant `(candidate, term)` withheld until the hard state is durable.
    pub(crate) pending_vote: Option<(NodeId, Term)>,
    /// An append acknowledgement `(leader, term, match)` withheld until durable.
    pub(crate) pending_ack: Option<(NodeId, Term, Index)>,
    /// A new leader could not append its no-op (log full); it retries once room frees up.
    pub(crate) noop_pending: bool,
    clock: Option<Instant>,
    tick_interval: Duration,
    pub(crate) stats: Stats,
    /// The application's latest snapshot (local or installed).
    pub(crate) latest_snapshot: SnapshotId,
    /// A compaction to hand to the runner.
    pub(crate) compact_due: Option<SnapshotId>,
    /// A log reset to an installed snapshot, to go out with the next persist.
    pub(crate) reset_due: Option<SnapshotId>,
    /// Token of the newest persist that carried a log reset.
    reset_token: u64,
    /// The runner deferred a persist: none is handed out until it resumes them.
    persists_held: bool,
    /// An input came since `poll_action` last found nothing to do: every `&mut` input method
    /// sets it, so that polling a node that had no input returns at once.
    wake: bool,
    /// A snapshot action may be due: set wherever one becomes due (all in `snapshot.rs`),
    /// cleared by a poll that finds none, so that polls skip the search otherwise (debug builds
    /// check that a clear flag means nothing is due).
    pub(crate) snapshot_work: bool,
    /// Follower side of a snapshot install from the leader.
    pub(crate) install: FollowerInstall<P>,
    /// A follower-side `InstallComplete` waiting to be polled.
    pub(crate) own_event_due: Option<InstallOutcome>,
    /// Tags of this node's snapshot rounds and transfers as leader.
    pub(crate) next_tag: u64,
    /// Pending linearizable reads.
    pub(crate) reads: read::Reads<READS>,
    /// The last follower install this node reported as leader, per follower (kept across its
    /// terms: `InstallComplete` fires once per leader node and installation).
    pub(crate) reported_installs: heapless::Vec<(NodeId, SnapshotId), PEERS>,
    /// Leader: a leadership transfer to this node, and the ticks it has taken.
    pub(crate) transfer: Option<(NodeId, u32)>,
    /// The membership in use (the latest in the log) and the one before it.
    pub(crate) configs: Configs<PEERS>,
    /// Ticks since start (the clock of read leases).
    pub(crate) ticks: u64,
    /// Lease reads: after a (re)start, vote requests are refused for an election timeout, as
    /// if a leader had just been heard (it may have been, just before the restart).
    pub(crate) startup_quiet: bool,
    /// Quiescent (`Config::quiesce`): ticks are ignored until an input wakes the node.
    pub(crate) quiescent: bool,
}

impl<
    P,
    const PEERS: usize,
    const LOG: usize,
    const BATCH: usize,
    const INFLIGHT: usize,
    const OUT: usize,
    const READS: usize,
> Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>
where
    P: Clone,
{
    /// Creates a node from its configuration and whatever its storage holds: a fresh node
    /// (empty storage) and a restarted one are built the same way. The node starts as a follower
    /// with commit index `config.applied`.
    ///
    /// The node is returned by value, so building it takes stack for the whole node (and the
    /// copy into its place). Where that matters (a microcontroller, a small thread), keep a
    /// [`vacant`](Self::vacant) node where it will live and [`init`](Self::init) it there.
    ///
    /// # Errors
    /// An invalid configuration, a capacity of 0, or storage that contradicts itself.
    pub fn new<S: Storage<P>>(config: Config<PEERS>, storage: &S) -> Result<Self, ConfigError> {
        let mut node = Self::vacant();
        node.init(config, storage)?;
        Ok(node)
    }

    /// A node that does nothing until [`init`](Self::init) gives it a configuration: every
    /// input is ignored and it has no actions. A `const fn`, so a node can be a `static` (or a
    /// field of one), placed in `.bss` by the compiler, costing no stack to create:
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use raftlet::{Config, DefaultNode, NodeId, Storage};
    /// # #[derive(Default)] struct Mem;
    /// # impl Storage<u64> for Mem {
    /// #     fn hard_state(&self) -> raftlet::HardState { Default::default() }
    /// #     fn last_index(&self) -> raftlet::Index { raftlet::Index(0) }
    /// #     fn term(&self, i: raftlet::Index) -> Option<raftlet::Term> { (i.0 == 0).then_some(raftlet::Term(0)) }
    /// #     fn entry(&self, _: raftlet::Index) -> Option<raftlet::Entry<u64>> { None }
    /// # }
    /// static NODE: Mutex<DefaultNode<u64>> = Mutex::new(DefaultNode::vacant());
    ///
    /// let store = Mem::default();
    /// let config = Config::new(NodeId(1), &[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
    /// let mut node = NODE.lock().unwrap();
    /// node.init(config, &store).unwrap(); // in place: no node-sized temporary
    /// assert_eq!(node.id(), NodeId(1));
    /// ```
    #[must_use]
    pub const fn vacant() -> Self {
        Self {
            rng: SplitMix64::new(0),
            cfg: crate::config::Settings::VACANT,
            hs: HardState {
                term: Term(0),
                vote: None,
                pending_install: None,
            },
            role: RoleState::Follower,
            leader: None,
            log: RaftLog::new(SnapshotId::ZERO, Index(0), Term(0)),
            commit: Index(0),
            apply_emitted: Index(0),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: u32::MAX,
            out: Deque::new(),
            polled: Message {
                from: NodeId(0),
                to: NodeId(0),
                term: Term(0),
                body: Body::HeartbeatResponse,
            },
            out_chunks: heapless::Vec::new(),
            in_chunk: None,
            handed_reset: SnapshotId::ZERO,
            hs_dirty: false,
            hs_token: 0,
            next_token: 1,
            acked_token: 0,
            pending_vote: None,
            pending_ack: None,
            noop_pending: false,
            clock: None,
            tick_interval: Duration::from_millis(100),
            stats: Stats::ZERO,
            latest_snapshot: SnapshotId::ZERO,
            compact_due: None,
            reset_due: None,
            reset_token: 0,
            persists_held: false,
            wake: false,
            snapshot_work: true,
            install: FollowerInstall::None,
            own_event_due: None,
            next_tag: 0,
            reads: read::Reads::new(),
            reported_installs: heapless::Vec::new(),
            transfer: None,
            configs: Configs::empty(),
            ticks: 0,
            startup_quiet: false,
            quiescent: false,
        }
    }

    /// Makes this node what [`new`](Self::new) would build from `config` and `storage`, in
    /// place: the send queue and the unstable log are emptied where they lie, so initialising
    /// takes a small, constant amount of stack whatever the profile (a test builds a
    /// `DefaultNode` this way in a thread whose stack is smaller than the node). Whatever the
    /// node held before is forgotten. On an error the node is left unchanged.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn init<S: Storage<P>>(
        &mut self,
        mut config: Config<PEERS>,
        storage: &S,
    ) -> Result<(), ConfigError> {
        // A node without room for members, log entries or sends does not compile: heapless
        // refuses zero-sized queues, and this assertion zero members.
        const { assert!(PEERS > 0, "a node needs room for at least one member") };
        if BATCH == 0 || INFLIGHT == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        config.validate()?;
        config.max_inflight = config.max_inflight.min(INFLIGHT);
        let mut hs = storage.hard_state();
        let base = storage.snapshot();
        let last = storage.last_index();
        if last < base.index {
            return Err(ConfigError::InconsistentStorage);
        }
        let last_term = if last == base.index {
            base.term
        } else {
            storage.term(last).ok_or(ConfigError::InconsistentStorage)?
        };
        if last_term > hs.term {
            return Err(ConfigError::InconsistentStorage);
        }
        // The application may be ahead of the stored log only by a snapshot it installed just
        // before a crash that lost the log reset: adopt that snapshot again.
        let app = config.snapshot;
        // At the stored log's base, the application's snapshot is the same snapshot (so the
        // reset below, at or past the base, happens only past it).
        if app.index == base.index && app.term != base.term {
            return Err(ConfigError::InconsistentStorage);
        }
        let reset = app.index >= base.index
            && (app.index > last || storage.term(app.index).is_some_and(|t| t != app.term));
        if config.applied > last.max(app.index) {
            return Err(ConfigError::AppliedBeyondLog);
        }
        let applied = config.applied.max(app.index).max(base.index);
        if reset && hs.pending_install.is_none() {
            hs.pending_install = Some(app);
        }
        // The configuration in use is the latest in the log: replay the membership changes
        // stored after the application's snapshot (`config.membership` is the one at it).
        let configs = if reset {
            Configs::new(app.index, config.membership.clone())
        } else {
            let after = app.index.max(base.index);
            Configs::replay(after, config.membership.clone(), storage)
                .ok_or(ConfigError::InconsistentStorage)?
        };
        // Nothing can fail from here on. The two large buffers are cleared in place; every
        // other field is small.
        self.out.clear();
        self.out_chunks.clear();
        self.in_chunk = None;
        self.log.reinit(base, last, last_term);
        self.rng = SplitMix64::new(config.seed);
        self.startup_quiet = config.lease_reads;
        self.cfg = crate::config::Settings::of(&config);
        self.hs = hs;
        self.role = RoleState::Follower;
        self.leader = None;
        self.commit = applied;
        self.apply_emitted = applied;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.hs_dirty = false;
        self.hs_token = 0;
        self.next_token = 1;
        self.acked_token = 0;
        self.pending_vote = None;
        self.pending_ack = None;
        self.noop_pending = false;
        self.clock = None;
        self.tick_interval = Duration::from_millis(100);
        self.stats = Stats::ZERO;
        // The later of the two (equal when at the same index: checked above).
        self.latest_snapshot = app.max(base);
        self.compact_due = None;
        self.reset_due = None;
        self.reset_token = 0;
        self.persists_held = false;
        self.wake = true;
        self.snapshot_work = true;
        self.install = FollowerInstall::None;
        self.own_event_due = None;
        self.next_tag = 0;
        self.reads = read::Reads::new();
        self.reported_installs.clear();
        self.transfer = None;
        self.configs = configs;
        self.ticks = 0;
        self.quiescent = false;
        if reset {
            self.log.reset_to(app);
            self.reset_due = Some(app);
            self.hs_dirty = true;
        }
        self.reset_election_timer();
        info!(
            "{} started at term {} with last index {}",
            self.cfg.id, self.hs.term, last
        );
        Ok(())
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Advances logical time by one tick: election timeouts, heartbeats, check-quorum.
    pub fn tick<S: Storage<P>>(&mut self, storage: &S) {
        self.wake = true;
        if self.quiescent {
            return;
        }
        self.ticks += 1;
        if self.startup_quiet && self.election_elapsed >= self.cfg.election_ticks {
            self.startup_quiet = false;
        }
        self.tick_reads();
        if matches!(self.role, RoleState::Leader(_)) {
            self.tick_leader(storage);
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.election_elapsed >= self.election_timeout {
                self.start_election(storage);
            }
        }
    }

    /// Sets the wall-clock length of one tick for [`handle_timeout`](Self::handle_timeout)
    /// (default 100 ms). Has no effect on [`tick`](Self::tick).
    pub fn set_tick_interval(&mut self, interval: Duration) {
        self.tick_interval = if interval.as_micros() == 0 {
            Duration::from_micros(1)
        } else {
            interval
        };
    }

    /// Time given as [`Instant`]s: a thin adapter over [`tick`](Self::tick), the one model of
    /// time in the node. It runs every tick that is due at `now` (the first call only anchors
    /// the clock). `now` must not go backwards; if it jumps far
    /// ahead (a suspended process), at most `2 * election_ticks` ticks run.
    pub fn handle_timeout<S: Storage<P>>(&mut self, now: Instant, storage: &S) {
        self.wake = true;
        let step = self.tick_interval;
        let Some(mut next) = self.clock else {
            self.clock = Some(now.saturating_add(step));
            return;
        };
        let mut budget = self.cfg.election_ticks.saturating_mul(2);
        while next <= now && budget > 0 {
            self.tick(storage);
            next = next.saturating_add(step);
            budget -= 1;
        }
        if next <= now {
            // Time jumped further than the ticks run: this node's count of time fell behind,
            // so a read lease it holds can no longer be trusted.
            self.drop_lease();
            next = now.saturating_add(step);
        }
        self.clock = Some(next);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next (`None` until the
    /// first call anchors the clock: call it once at start-up).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.clock
    }

    /// Handles one message from a peer. Untrusted input is validated first: an error means the
    /// message was refused as invalid (and counted in [`Stats`]), with no change to the node's
    /// state. Routine noise (a stale term, a vote request during a lease, an append that finds
    /// the log full) is `Ok`, counted in [`Stats`]; a stale sender may be told the current term.
    ///
    /// The message is borrowed: a runner decodes a frame into any container of entries (`E`:
    /// a `heapless::Vec`, a `Vec`, a slice) and steps it from there.
    ///
    /// # Errors
    /// Why the message was ignored; see [`StepError`].
    pub fn step<E, S>(&mut self, msg: &Message<P, E>, storage: &S) -> Result<(), StepError>
    where
        E: AsRef<[Entry<P>]>,
        S: Storage<P>,
    {
        let entries: &[Entry<P>] = match &msg.body {
            Body::Append { entries, .. } => entries.as_ref(),
            _ => &[],
        };
        self.step_parts(msg, entries, Self::chunk_of(msg), storage)
    }

    /// [`step`](Self::step) for a message whose cargo travels beside it: an append's `entries`
    /// and a stream-mode chunk's bytes (`chunk`), whatever the message's own cargo types
    /// (`C`, `X`) hold. A runner that delivers in process hands a polled send over as
    /// [`Outgoing::message`](crate::Outgoing::message) plus its entries, with no owned copy.
    /// Entries given with a message that is not an append are ignored; a chunk message without
    /// `chunk` is refused as malformed.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn step_parts<C, X, S>(
        &mut self,
        msg: &Message<C, X>,
        entries: &[Entry<P>],
        chunk: Option<&P>,
        storage: &S,
    ) -> Result<(), StepError>
    where
        S: Storage<P>,
    {
        self.step_cargo(msg, Cargo::Borrowed(entries), chunk, storage)
    }

    /// [`step`](Self::step) that moves the entries it appends out of `msg` instead of cloning
    /// them: for a runner that decoded the message and has no further use for its entries
    /// (with a heap payload such as `Vec<u8>`, a clone is an allocation and a copy). Each entry
    /// the node appended is left in `msg` with its index and term and [`EntryData::Noop`](crate::EntryData::Noop)
    /// data; the others are untouched.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn step_taking<E, S>(
        &mut self,
        msg: &mut Message<P, E>,
        storage: &S,
    ) -> Result<(), StepError>
    where
        E: Default + AsMut<[Entry<P>]>,
        S: Storage<P>,
    {
        let Body::Append { entries, .. } = &mut msg.body else {
            return self.step_cargo(msg, Cargo::NONE, Self::chunk_of(msg), storage);
        };
        let mut entries = core::mem::take(entries);
        let result = self.step_cargo(msg, Cargo::Taken(entries.as_mut()), None, storage);
        if let Body::Append { entries: e, .. } = &mut msg.body {
            *e = entries;
        }
        result
    }

    /// [`step_parts`](Self::step_parts) that moves the entries it appends out of `entries`
    /// instead of cloning them, as [`step_taking`](Self::step_taking) does.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn step_parts_taking<C, X, S>(
        &mut self,
        msg: &Message<C, X>,
        entries: &mut [Entry<P>],
        chunk: Option<&P>,
        storage: &S,
    ) -> Result<(), StepError>
    where
        S: Storage<P>,
    {
        self.step_cargo(msg, Cargo::Taken(entries), chunk, storage)
    }

    /// A stream-mode chunk message's bytes.
    fn chunk_of<E>(msg: &Message<P, E>) -> Option<&P> {
        match &msg.body {
            Body::InstallSnapshot {
                request: crate::message::InstallRequest::Chunk { data, .. },
                ..
            } => Some(data),
            _ => None,
        }
    }

    fn step_cargo<C, X, S>(
        &mut self,
        msg: &Message<C, X>,
        cargo: Cargo<'_, P>,
        chunk: Option<&P>,
        storage: &S,
    ) -> Result<(), StepError>
    where
        S: Storage<P>,
    {
        self.wake = true;
        let cargo = if matches!(msg.body, Body::Append { .. }) {
            cargo
        } else {
            Cargo::NONE
        };
        let entries = cargo.as_slice();
        if msg.to != self.cfg.id
            || msg.from == self.cfg.id
            || msg.from.0 == 0
            || !self.accepts_from(msg.from, &msg.body)
        {
            self.stats.unknown_peer += 1;
            debug!(
                "{} ignored a message from unknown peer {}",
                self.cfg.id, msg.from
            );
            return Err(StepError::UnknownPeer);
        }
        let chunk_missing = chunk.is_none()
            && matches!(
                msg.body,
                Body::InstallSnapshot {
                    request: crate::message::InstallRequest::Chunk { .. },
                    ..
                }
            );
        if chunk_missing || !Self::well_formed(msg, entries) {
            self.stats.malformed += 1;
            debug!(
                "{} ignored a malformed {} from {}",
                self.cfg.id,
                msg.body.kind(),
                msg.from
            );
            return Err(StepError::Malformed);
        }
        // An append is checked against the log first: one refused as malformed must not even
        // move the term or the role.
        let plan = match &msg.body {
            Body::Append {
                prev_index,
                prev_term,
                ..
            } if msg.term >= self.hs.term => {
                match self.plan_append(*prev_index, *prev_term, entries, storage) {
                    Ok(plan) => Some(plan),
                    Err(e) => {
                        self.stats.malformed += 1;
                        debug!(
                            "{} ignored an impossible append from {}",
                            self.cfg.id, msg.from
                        );
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        if self.wakes(msg.term, &msg.body) {
            self.unquiesce_for(msg.term);
        }
        if !self.step_term(msg) {
            return Ok(());
        }
        let result = self.dispatch(msg, cargo, chunk, plan, storage);
        self.settle();
        result
    }

    /// Asks this node to start an election now (as if its election timeout fired). Does nothing
    /// on a leader.
    pub fn campaign<S: Storage<P>>(&mut self, storage: &S) {
        self.wake = true;
        if !matches!(self.role, RoleState::Leader(_)) {
            self.unquiesce();
            self.start_election(storage);
        }
    }

    /// The runner made every persist up to `token` durable.
    ///
    /// # Errors
    /// [`PersistError`] for a token that was never issued or already acknowledged; the node's
    /// state is unchanged.
    pub fn persisted<S: Storage<P>>(
        &mut self,
        token: PersistToken,
        storage: &S,
    ) -> Result<(), PersistError> {
        self.wake = true;
        let t = token.0;
        if t == 0 || t >= self.next_token {
            return Err(PersistError::UnknownToken);
        }
        if t <= self.acked_token {
            return Err(PersistError::AlreadyAcknowledged);
        }
        self.acked_token = t;
        self.log.acknowledge(t);
        self.release_withheld();
        self.after_durable(storage);
        Ok(())
    }

    /// The runner cannot write persist `token` now (its store is full): the node takes it back,
    /// as if it had never been handed out, and hands out no persist until
    /// [`resume_persists`](Self::resume_persists). Its hard state, log reset and entries go out
    /// again with the next persist, under the same token (which cannot be acknowledged before
    /// then). Meanwhile the
    /// node runs on: sends, applies and reads continue, and proposals are refused with
    /// [`ProposeError::Full`](crate::ProposeError::Full) once the unstable log is full.
    ///
    /// # Errors
    /// [`PersistError::UnknownToken`] unless `token` is the newest persist handed out and not
    /// acknowledged; nothing changes then.
    pub fn defer_persist(&mut self, token: PersistToken) -> Result<(), PersistError> {
        let t = token.0;
        // The newest hand-out still has its record in the log (acknowledging drops it).
        if t.saturating_add(1) != self.next_token || !self.log.unhand(t) {
            return Err(PersistError::UnknownToken);
        }
        if self.hs_token == t {
            self.hs_dirty = true;
        }
        if self.reset_token == t {
            self.reset_due = Some(self.handed_reset);
        }
        self.next_token = t;
        self.persists_held = true;
        Ok(())
    }

    /// Persists are handed out again (after [`defer_persist`](Self::defer_persist)).
    pub fn resume_persists(&mut self) {
        self.wake = true;
        self.persists_held = false;
    }

    /// Whether persists are held back by [`defer_persist`](Self::defer_persist).
    pub fn persists_held(&self) -> bool {
        self.persists_held
    }

    // ----- output -------------------------------------------------------------------------

    /// The next action to execute, or `None` when there is nothing to do. Drain it after every
    /// input. Order: queued sends, then the next persist, then the next apply. The action
    /// borrows the node (what it carries stays in the node's log): execute it, or copy what you
    /// need, before the next call.
    #[must_use]
    #[inline]
    pub fn poll_action(&mut self) -> Option<Action<'_, P>> {
        // A node that had no input since it last had nothing to do answers at once, and one
        // with no send queued goes straight to its local work (both checks are inlined into
        // the runner's loop).
        if !self.wake {
            return None;
        }
        if self.out.is_empty() {
            return self.local_action();
        }
        self.next_action()
    }

    /// `poll_action` past the wake check.
    fn next_action(&mut self) -> Option<Action<'_, P>> {
        if self.take_sendable() {
            return Some(Action::Send(self.outgoing()));
        }
        self.local_action()
    }

    /// Moves the next queued send that may still go out into `polled`; `false` when none is
    /// left. (The common case, a sendable head, stays small; skipping is out of line.)
    #[inline]
    fn take_sendable(&mut self) -> bool {
        let Some(m) = self.out.pop_front() else {
            return false;
        };
        self.polled = m.from(self.cfg.id);
        self.sendable() || self.skip_unsendable()
    }

    /// Drops the send in `polled` (counted) and every following one that may not go out.
    #[cold]
    #[inline(never)]
    fn skip_unsendable(&mut self) -> bool {
        loop {
            self.stats.dropped_sends += 1;
            let Some(m) = self.out.pop_front() else {
                return false;
            };
            self.polled = m.from(self.cfg.id);
            if self.sendable() {
                return true;
            }
        }
    }

    /// The next action that is not a send: a persist, a snapshot event, an apply, a read.
    #[inline]
    fn local_action(&mut self) -> Option<Action<'_, P>> {
        if (self.hs_dirty || self.reset_due.is_some() || self.log.has_unhanded())
            && self.log.record_room()
            && !self.persists_held
        {
            return Some(self.hand_out_persist());
        }
        debug_assert!(self.snapshot_work || !self.has_snapshot_action());
        if self.snapshot_work {
            return self.poll_snapshot_work();
        }
        if let Some(apply) = self.next_apply() {
            return Some(apply);
        }
        if !self.reads.is_empty() {
            return self.poll_reads();
        }
        self.wake = false;
        None
    }

    /// The next persist: the hard state if it changed, a log reset, every entry not handed out.
    #[inline(never)]
    fn hand_out_persist(&mut self) -> Action<'_, P> {
        let token = self.next_token;
        self.next_token += 1;
        let hard_state = if self.hs_dirty {
            self.hs_dirty = false;
            self.hs_token = token;
            true
        } else {
            false
        };
        let snapshot = match self.reset_due.take() {
            Some(id) => {
                self.reset_token = token;
                self.handed_reset = id;
                true
            }
            None => false,
        };
        let entries = self.log.hand_out(token);
        Action::Persist(Persist {
            token: PersistToken(token),
            hard_state: hard_state.then_some(&self.hs),
            snapshot: snapshot.then_some(&self.handed_reset),
            entries,
        })
    }

    /// `local_action` past the persist check, while a snapshot action may be due.
    #[inline(never)]
    fn poll_snapshot_work(&mut self) -> Option<Action<'_, P>> {
        if self.has_snapshot_action() {
            return self.poll_snapshot_action();
        }
        self.snapshot_work = false;
        // What follows the snapshot actions (`local_action`'s order).
        if let Some(apply) = self.next_apply() {
            return Some(apply);
        }
        self.poll_reads()
    }

    /// The committed entries that are durable here (or, with `apply_before_durable`, written)
    /// and not yet handed out to apply.
    #[inline(always)]
    fn next_apply<'a>(&mut self) -> Option<Action<'a, P>> {
        let here = if self.cfg.apply_before_durable {
            self.log.handed_last()
        } else {
            self.log.stable_last()
        };
        let applicable = core::cmp::min(self.commit, here);
        if applicable <= self.apply_emitted {
            return None;
        }
        let first = self.apply_emitted.next();
        self.apply_emitted = applicable;
        Some(Action::Apply {
            first,
            last: applicable,
        })
    }

    /// `local_action`'s last step: a read to answer, or nothing (the node sleeps until input).
    #[inline(never)]
    fn poll_reads(&mut self) -> Option<Action<'_, P>> {
        match self.poll_read_action() {
            Some((id, Ok(index))) => Some(Action::ReadReady { id, index }),
            Some((id, Err(reason))) => Some(Action::ReadFailed { id, reason }),
            None => {
                self.wake = false;
                None
            }
        }
    }

    /// Whether a queued message may still go out as it is. An append is sent only by the leader
    /// of its term, with its entries still in the log (a leader's log only grows, except by
    /// compaction); it carries the commit index of the moment it leaves. A chunk needs its bytes.
    fn sendable(&self) -> bool {
        let m = &self.polled;
        match m.body {
            Body::Append {
                prev_index,
                entries: Span { count },
                ..
            } => {
                m.term == self.hs.term
                    && matches!(self.role, RoleState::Leader(_))
                    && prev_index >= self.log.snapshot().index
                    && prev_index.0.saturating_add(u64::from(count)) <= self.log.last_index().0
            }
            Body::InstallSnapshot {
                request: crate::message::InstallRequest::Chunk { seq, .. },
                ..
            } => self
                .out_chunks
                .iter()
                .any(|(to, s, _)| *to == m.to && *s == seq),
            _ => true,
        }
    }

    /// The send in `polled`, with its cargo borrowed from the node.
    fn outgoing(&mut self) -> Outgoing<'_, P> {
        let stable_last = self.log.stable_last();
        let (tail, chunk) = match &mut self.polled.body {
            Body::Append {
                prev_index,
                commit,
                entries: Span { count },
                ..
            } => {
                *commit = self.commit;
                // The append's entries above the durable index, exactly (those at or below it
                // are read from storage).
                let from = prev_index.next().max(stable_last.next());
                let last = prev_index.0 + u64::from(*count);
                let from_tail = last.saturating_sub(from.0 - 1) as usize;
                (self.log.entries_from(from, from_tail), None)
            }
            Body::InstallSnapshot {
                request: crate::message::InstallRequest::Chunk { seq, .. },
                ..
            } => {
                let (to, seq) = (self.polled.to, *seq);
                let chunk = self
                    .out_chunks
                    .iter()
                    .find(|(t, s, _)| *t == to && *s == seq)
                    .map(|(_, _, data)| data);
                (Entries::EMPTY, chunk)
            }
            _ => (Entries::EMPTY, None),
        };
        Outgoing::new(&self.polled, stable_last, tail, chunk)
    }

    // ----- getters ------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    /// The voters of the membership in use (of its incoming half, while joint).
    pub fn voters(&self) -> &[NodeId] {
        self.configs.current.voters()
    }
    /// The current role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
    /// The current term.
    pub fn term(&self) -> Term {
        self.hs.term
    }
    /// The current hard state (which may not be durable yet).
    pub fn hard_state(&self) -> HardState {
        self.hs
    }
    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// The highest index known to be committed.
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    /// The highest index handed out for apply.
    pub fn applied_index(&self) -> Index {
        self.apply_emitted
    }
    /// Index of the last entry in the log (durable or not).
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    /// Term of the last entry in the log.
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }
    /// The highest index acknowledged as durable and still part of the log.
    pub fn durable_index(&self) -> Index {
        self.log.stable_last()
    }
    /// How many more entries the unstable log can take.
    pub fn log_room(&self) -> usize {
        self.log.room()
    }
    /// The term of the entry at `index` as this node sees its log.
    pub fn term_at<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Term> {
        self.log.term(index, storage)
    }
    /// A copy of the entry at `index` as this node sees its log.
    pub fn entry_at<S: Storage<P>>(&self, index: Index, storage: &S) -> Option<Entry<P>> {
        self.log.entry(index, storage)
    }
    /// The application's latest snapshot, as this node knows it.
    pub fn latest_snapshot(&self) -> SnapshotId {
        self.latest_snapshot
    }
    /// The snapshot the log starts after.
    pub fn log_start(&self) -> SnapshotId {
        self.log.snapshot()
    }
    /// Whether a snapshot install from the leader is in progress on this follower.
    pub fn is_installing(&self) -> bool {
        self.install.in_progress()
    }
    /// Leader: how replication to `peer` stands (`None` on a follower or candidate, or for a
    /// node that is not a member).
    pub fn peer_progress(&self, peer: NodeId) -> Option<PeerProgress> {
        match &self.role {
            RoleState::Leader(progress) => progress
                .iter()
                .find(|p| p.id == peer)
                .map(PeerProgress::from),
            _ => None,
        }
    }

    /// Leader: whether the voters other than this node that are replicating
    /// ([`FlowState::Replicate`](crate::FlowState::Replicate)) and were heard from in the current
    /// check-quorum round form a quorum by themselves (of both halves of a joint configuration).
    /// Entries can then commit on their acknowledgements alone, so with
    /// [`Config::apply_before_durable`](crate::Config::apply_before_durable) a runner may
    /// make this node's own writes durable lazily, within a bound of its choosing, instead of at
    /// once. `false` on a follower or candidate. Without check-quorum, a follower counts as
    /// heard from until it leaves replicate state, so a runner's bound is what limits the wait
    /// when one fails.
    pub fn followers_form_quorum(&self) -> bool {
        let RoleState::Leader(progress) = &self.role else {
            return false;
        };
        let id = self.cfg.id;
        self.configs.current.is_quorum(|v| {
            v != id
                && progress
                    .iter()
                    .any(|p| p.id == v && p.recent_active && p.state == crate::FlowState::Replicate)
        })
    }

    /// Leader: how replication stands for every other member, in membership order (empty on
    /// a follower or candidate).
    pub fn peers_progress(&self) -> impl Iterator<Item = PeerProgress> + '_ {
        let progress: &[Progress<INFLIGHT>] = match &self.role {
            RoleState::Leader(progress) => progress,
            _ => &[],
        };
        progress.iter().map(PeerProgress::from)
    }

    /// How this node brings lagging followers up to date (its configured snapshot mode).
    pub fn snapshot_mode(&self) -> crate::SnapshotMode {
        self.cfg.snapshot_mode
    }

    /// The current randomized election timeout, in ticks (drawn again at every election-timer
    /// restart, between `election_ticks` and `2 * election_ticks - 1`).
    pub fn election_timeout_ticks(&self) -> u32 {
        self.election_timeout
    }

    /// Ticks until this node campaigns if it hears from no leader (`None` on a leader).
    pub fn ticks_until_election(&self) -> Option<u32> {
        match self.role {
            RoleState::Leader(_) => None,
            _ => Some(self.election_timeout.saturating_sub(self.election_elapsed)),
        }
    }

    /// Leader: sends a heartbeat to every follower now, without waiting for the heartbeat tick
    /// (a runner that wants commits propagated or followers' liveness refreshed at once). Does
    /// nothing on other roles.
    pub fn send_heartbeats(&mut self) {
        self.wake = true;
        self.unquiesce();
        self.bcast_heartbeat();
    }

    /// Leader: the runner could not reach `peer` (a connection failed, a send queue overflowed).
    /// A follower in replicate state goes back to probe, so the appends presumed in flight are
    /// resent one at a time once it answers again, rather than after the window times out (etcd's
    /// `ReportUnreachable`). Does nothing on other roles, or for a peer not replicating.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        self.wake = true;
        if let Some(pr) = self.follower_mut(peer)
            && pr.state == crate::progress::FlowState::Replicate
        {
            pr.become_probe();
        }
    }

    /// Leader: the progress of follower `id` (`None` on other roles, or for a non-member).
    pub(crate) fn follower_mut(&mut self, id: NodeId) -> Option<&mut Progress<INFLIGHT>> {
        match &mut self.role {
            RoleState::Leader(progress) => progress.iter_mut().find(|p| p.id == id),
            _ => None,
        }
    }

    /// The target of a leadership transfer in progress on this leader.
    pub fn transferring_to(&self) -> Option<NodeId> {
        self.transfer.map(|(to, _)| to)
    }
    /// Counters of dropped, refused and ignored work.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- internals shared by election and replication -----------------------------------

    /// The hard state, and any log reset to an installed snapshot, are durable.
    pub(crate) fn hs_durable(&self) -> bool {
        !self.hs_dirty
            && self.reset_due.is_none()
            && self.acked_token >= self.hs_token
            && self.acked_token >= self.reset_token
    }

    pub(crate) fn send(&mut self, to: NodeId, term: Term, body: Body<(), Span>) {
        trace!("{} -> {} {} term {}", self.cfg.id, to, body.kind(), term);
        if self.out.push_back(QueuedSend { to, term, body }).is_err() {
            self.stats.dropped_sends += 1;
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self.cfg.election_ticks + self.rng.below(self.cfg.election_ticks);
    }

    /// Releases withheld vote grants and append acknowledgements whose state is now durable,
    /// and forgets those that a term change made moot.
    pub(crate) fn release_withheld(&mut self) {
        let durable = self.hs_durable();
        if let Some((to, term)) = self.pending_vote {
            // The grant stands only while the node is in that term with that vote.
            if (term, Some(to)) != (self.hs.term, self.hs.vote) {
                self.pending_vote = None;
            } else if durable || crate::canary::on(crate::canary::Canary::VoteNotPersisted) {
                self.pending_vote = None;
                self.send(
                    to,
                    term,
                    Body::VoteResponse {
                        pre_vote: false,
                        granted: true,
                    },
                );
            }
        }
        if let Some((to, term, m)) = self.pending_ack {
            if term != self.hs.term {
                self.pending_ack = None;
            } else if (durable && self.log.stable_last() >= m)
                || crate::canary::on(crate::canary::Canary::AckBeforePersist)
            {
                self.pending_ack = None;
                self.send(
                    to,
                    term,
                    Body::AppendResponse(crate::message::AppendResult::Accepted { match_index: m }),
                );
            }
        }
    }

    /// Work that waits for durability: a candidate's own vote, a leader's own match.
    fn after_durable<S: Storage<P>>(&mut self, storage: &S) {
        let id = self.cfg.id;
        let durable = self.hs_durable();
        if let RoleState::Candidate(votes) = &mut self.role {
            if durable {
                // Its own vote counts once it is durable (recorded once; the tally is the same
                // however often it is taken).
                votes.record(id, true);
                self.check_election_result(storage);
            }
        } else if matches!(self.role, RoleState::Leader(_)) {
            if self.noop_pending {
                self.append_noop();
            }
            // A leave of a joint configuration that found no room may go in now.
            let last = self.log.last_index();
            self.membership_after_commit();
            if self.maybe_commit(storage) || self.log.last_index() > last {
                self.bcast_append(storage);
            }
        }
    }
}
