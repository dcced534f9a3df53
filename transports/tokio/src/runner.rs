//! The runner: one task that owns a node, its disk log, its snapshots and the application's
//! state machine, and executes the node's actions in order, as the core's action contract
//! says.
//!
//! After every input (a tick, a message, a command from a [`Handle`]) the runner drains
//! `poll_action`:
//! * `Send`: queued on the peer's connection at once (the node withholds votes and
//!   acknowledgements until they are durable, so nothing sent promises more than the disk holds);
//! * `Persist`: the hard state and any snapshot reset are made durable at once; entries are
//!   written to the segment and made durable together with every other persist of the same
//!   round (group commit: one `fdatasync`), and only then acknowledged with `persisted`. A
//!   leader whose followers form a quorum without it holds its writes unsynced a while
//!   ([`RunnerConfig::leader_sync_delay`]): one sync then covers more of them. The
//!   `fdatasync` runs on a durability thread; a follower may run it on the runner's own task
//!   instead ([`RunnerConfig::inline_follower_sync`]);
//! * `Apply`: committed entries are applied in order once written (the node runs with
//!   `Config::apply_before_durable`: the state machine is rebuilt from its latest snapshot at
//!   start-up, so applying an entry that is durable on a quorum but not yet here is safe); each
//!   answers the proposal that is waiting on it (a different entry at its index means the
//!   proposal was lost);
//! * snapshots: `Compact` deletes covered segments; `ReadSnapshotChunk` answers from the
//!   snapshot file; `WriteSnapshotChunk` / `RestoreSnapshot` stage, verify and restore;
//!   `InstallSnapshotFromLeader` asks the state machine to fetch one;
//! * `ReadReady` / `ReadFailed`: answer linearizable reads.
//!
//! A storage error stops the runner (a node that cannot persist must not go on); waiting
//! callers get [`ClientError::Unknown`].

use crate::net::{
    ClientConnection, ForwardError, ForwardOutcome, Forwarded, Msg, NetStats, Network, Transport,
};
use crate::snapshot::{Meta, SnapshotStore};
use crate::storage::{DiskLog, LogStore, Payload, Recovery, StorageError, SyncJob};
use raftlet::{
    Action, ConfChange, Config, EntryData, Index, InstallError, InstallOutcome, Membership,
    MembershipError, NodeId, PersistToken, ProposeError, ReadError, ReadId, Role, SnapshotId,
    SnapshotMode, Term,
};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The node profile of the tokio runner ([`raftlet::DefaultNode`]): up to
/// [`raftlet::DEFAULT_MEMBERS`] members, 256 unstable entries, [`raftlet::DEFAULT_BATCH`] (8)
/// entries per message and per persist.
pub type TokioNode = raftlet::DefaultNode<Payload>;

/// The largest command or query, in bytes.
pub const MAX_COMMAND: usize = 60 << 10;

/// The largest frame between nodes ([`raftlet::DEFAULT_BATCH`] entries of the largest command,
/// or a snapshot chunk).
pub const MAX_FRAME: usize = raftlet::wire::max_frame_len_for(
    raftlet::DEFAULT_BATCH,
    if MAX_COMMAND > crate::snapshot::CHUNK {
        MAX_COMMAND + 4
    } else {
        crate::snapshot::CHUNK + 4
    },
);

/// The application: a deterministic state machine over the committed commands. It sees its
/// own commands and snapshots only: membership is the log's business, addresses the
/// transport's. It lives in memory and is restored from the runner's latest snapshot at
/// start-up: a command may be applied before this node's own log holds it durably (it is
/// durable on a quorum), so state kept durably outside the runner's snapshots could end up
/// ahead of the log after a crash.
pub trait StateMachine: Send + 'static {
    /// Applies the command committed at `index`; returns the answer for its proposer.
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8>;
    /// Answers a query against the current state.
    fn query(&self, query: &[u8]) -> Vec<u8>;
    /// The whole state, serialized.
    fn snapshot(&self) -> Vec<u8>;
    /// A snapshot taken now and serialized later, off the runner's task: the runner calls this
    /// at the applied index it snapshots, then runs the returned job on a blocking thread while
    /// it goes on applying. The default serializes at once ([`snapshot`](Self::snapshot)); a
    /// state machine with a cheap copy (shared, copy-on-write parts) captures that instead, so
    /// that a large state does not stall the node.
    fn capture(&self) -> Box<dyn FnOnce() -> Vec<u8> + Send> {
        let data = self.snapshot();
        Box::new(move || data)
    }
    /// Replaces the state by a snapshot's.
    ///
    /// # Errors
    /// A snapshot it cannot read: the install fails and the leader starts another.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
    /// Notify mode: fetch, by the application's own means, a snapshot that reaches at least
    /// `first_available.index - 1`. `None`: no snapshot is available.
    fn fetch_snapshot(
        &mut self,
        leader: NodeId,
        first_available: SnapshotId,
    ) -> Option<(Meta, Vec<u8>)> {
        let _ = (leader, first_available);
        None
    }
    /// An installation is over (`peer` is this node on the follower side): an incremental
    /// state machine drops its checkpoints here.
    fn install_complete(&mut self, peer: NodeId, outcome: InstallOutcome) {
        let _ = (peer, outcome);
    }
}

/// How a request ended when it did not succeed. The three outcomes a client must tell apart:
/// success, certainly not applied ([`ClientError::is_certainly_not_applied`]), unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Not the leader: nothing was proposed.
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Refused before it was proposed: the log is full, a transfer runs, the command is too
    /// large.
    Refused(String),
    /// It was proposed, but another leader's entry took its place: it is not applied and never
    /// will be.
    Lost,
    /// A read could not be confirmed.
    Read(ReadError),
    /// A membership change was refused.
    Membership(MembershipError),
    /// No leader was known within the time allowed: nothing was proposed.
    NoLeader,
    /// The runner stopped before the outcome was known: it may or may not be applied.
    Unknown,
}

impl ClientError {
    /// Whether the request certainly had no effect.
    pub fn is_certainly_not_applied(&self) -> bool {
        !matches!(self, Self::Unknown)
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotLeader { leader: Some(l) } => write!(f, "not the leader (leader is {l})"),
            Self::NotLeader { leader: None } => f.write_str("not the leader (leader unknown)"),
            Self::Refused(why) => write!(f, "refused: {why}"),
            Self::Lost => f.write_str("lost to a leader change (not applied)"),
            Self::Read(e) => write!(f, "read failed: {e}"),
            Self::Membership(e) => write!(f, "membership change refused: {e}"),
            Self::NoLeader => f.write_str("no leader known in time"),
            Self::Unknown => f.write_str("outcome unknown"),
        }
    }
}
impl std::error::Error for ClientError {}

/// Something worth telling observers about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node saw a new leader (or none) at a term.
    Leader {
        /// The term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// `InstallComplete` (on a leader about `peer`, on a follower about itself).
    InstallComplete {
        /// The node that emitted it.
        at: NodeId,
        /// The follower whose install ended.
        peer: NodeId,
        /// How it ended.
        outcome: InstallOutcome,
    },
    /// The node took a snapshot and compacted its log.
    Snapshot {
        /// The snapshot.
        id: SnapshotId,
    },
}

/// A node's state, as [`Handle::status`] reports it (serde: to print or serve it as JSON or
/// any other format).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// Applied index.
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// The log's durable end: what a crash keeps. A leader that syncs lazily
    /// ([`RunnerConfig::leader_sync_delay`]) may hold committed entries above it, durable on
    /// its followers.
    pub durable: Index,
    /// Where the log starts.
    pub log_start: SnapshotId,
    /// The membership in use.
    pub membership: Membership<{ raftlet::DEFAULT_MEMBERS }>,
    /// Sends dropped by the node (full queue) and by the transport.
    pub dropped_sends: u64,
    /// Transport counters.
    pub net: NetStats,
    /// Segment files of the log.
    pub segments: usize,
    /// `fdatasync` calls that made log entries durable (group commits).
    pub syncs: u64,
    /// Counters and the fsync latency histogram.
    pub metrics: crate::metrics::Metrics,
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This node.
    pub id: NodeId,
    /// The cluster id (in the handshake and in every frame).
    pub cluster: u64,
    /// The data directory.
    pub dir: PathBuf,
    /// Known peer addresses (more can be added later).
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// The voters of a new cluster (ignored once the node has a snapshot or a log). A node
    /// joining a running cluster passes a set it is not a voter of (for example the current
    /// voters).
    pub initial_voters: Vec<NodeId>,
    /// The length of a tick.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Take a snapshot once this many entries have been applied since the last one (0: only
    /// when asked), and the commands applied since then add up to at least the last snapshot's
    /// size, or [`SNAPSHOT_SPACING_CAP`] times this many entries have been applied. The size
    /// condition keeps the cost of serializing a growing state machine bounded per byte
    /// written (as Redis rewrites its append-only file once it has doubled): a fixed count
    /// alone serializes a store of `n` keys every `snapshot_every` writes, a cost that grows
    /// without bound with `n`. The price: the log since the last snapshot may hold about as
    /// many bytes of commands as the state, up to the cap in entries.
    pub snapshot_every: u64,
    /// Entries kept after a compaction for slow followers.
    pub log_retention: u64,
    /// How lagging followers catch up.
    pub snapshot_mode: SnapshotMode,
    /// How long [`Handle::propose`] keeps trying to reach a leader (forwarding, waiting out
    /// an election) before it gives up.
    pub forward_timeout: Duration,
    /// How long a leader may hold its own log writes unsynced while its followers form a
    /// quorum without it ([`Node::followers_form_quorum`](raftlet::Node::followers_form_quorum)):
    /// their acknowledgements commit entries, and the node applies committed entries once
    /// written ([`Config::apply_before_durable`](raftlet::Config::apply_before_durable)), so
    /// the leader's `fdatasync` leaves the write path and one sync covers this long's writes
    /// (thesis §10.2.1). A leader syncs at once when it has as many as
    /// [`LAZY_SYNC_PERSISTS`] writes unsynced, and whenever its followers alone are no quorum.
    /// The bound is what a write waits at most for the leader's sync when a follower fails
    /// before the leader notices. Zero: a leader syncs at once, like a follower.
    pub leader_sync_delay: Duration,
    /// A node that does not lead runs its log's `fdatasync` on the runner's own task
    /// (through `block_in_place` on a multi-thread runtime) instead of the durability thread.
    /// A follower has nothing to step while its disk syncs but the next appends, which wait in
    /// the inbound queue and are written together after it (group commit all the same); the
    /// inline sync saves two thread wake-ups per sync, which on a small machine is CPU the
    /// leader can use (measured in `benches/README.md`). A leader always syncs on the
    /// durability thread: it keeps replicating meanwhile. Off by default: it blocks the
    /// runtime thread it runs on, so it is for a runner that has its runtime to itself (as
    /// `raftlet-kv serve`), not for many runners sharing a one-thread runtime.
    pub inline_follower_sync: bool,
}

/// A leader that holds its writes unsynced ([`RunnerConfig::leader_sync_delay`]) syncs once
/// this many of them wait: the node hands out at most
/// [`PERSIST_WINDOW`](raftlet::PERSIST_WINDOW) persists before one is acknowledged, and
/// applies only what it has handed out.
pub const LAZY_SYNC_PERSISTS: u32 = raftlet::PERSIST_WINDOW as u32 - 2;

impl RunnerConfig {
    /// Defaults: ticks of 50 ms, election timeout 10 ticks (0.5-1 s), heartbeat every 2,
    /// a snapshot every 10,000 entries keeping 1,000, stream mode.
    pub fn new(id: NodeId, dir: impl Into<PathBuf>, initial_voters: Vec<NodeId>) -> Self {
        Self {
            id,
            cluster: 0x5241_4654,
            dir: dir.into(),
            peers: Vec::new(),
            initial_voters,
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 10_000,
            log_retention: 1_000,
            snapshot_mode: SnapshotMode::Stream,
            forward_timeout: Duration::from_secs(10),
            leader_sync_delay: Duration::from_millis(2),
            inline_follower_sync: false,
        }
    }
}

/// Why a runner could not start.
#[derive(Debug)]
pub enum StartError {
    /// The data directory.
    Storage(StorageError),
    /// The node refused its configuration or storage.
    Config(raftlet::ConfigError),
    /// The listening socket.
    Io(std::io::Error),
    /// The snapshot could not be restored.
    Restore(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Storage(e) => write!(f, "storage: {e}"),
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Io(e) => write!(f, "I/O: {e}"),
            Self::Restore(e) => write!(f, "restoring the snapshot: {e}"),
        }
    }
}
impl std::error::Error for StartError {}

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A proposal's outcome; a refused command comes back with the error (so that `propose` can
/// forward it without having copied it first).
type ProposeResult = Result<Vec<u8>, (ClientError, Option<Vec<u8>>)>;
type ProposeReply = oneshot::Sender<ProposeResult>;

enum Command {
    Propose(Vec<u8>, ProposeReply),
    Read(Vec<u8>, Reply<Vec<u8>>),
    LocalRead(Vec<u8>, oneshot::Sender<Vec<u8>>),
    Status(oneshot::Sender<Status>),
    Membership(ConfChange, Reply<Index>),
    Transfer(NodeId, Reply<()>),
    Snapshot(oneshot::Sender<Option<SnapshotId>>),
    SetAddress(NodeId, SocketAddr),
    Shutdown(oneshot::Sender<()>),
}

/// Talks to a running node. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    id: NodeId,
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    task: Arc<tokio::task::JoinHandle<()>>,
    net: Arc<dyn Transport>,
    leader: tokio::sync::watch::Receiver<(Term, Option<NodeId>)>,
    forward_timeout: Duration,
}

impl Handle {
    /// The leader this node knows now, with its term (`None`: an election is under way, or
    /// none was seen yet).
    pub fn leader(&self) -> (Term, Option<NodeId>) {
        *self.leader.borrow()
    }

    /// Waits until this node knows a leader, and returns it.
    ///
    /// # Errors
    /// [`ClientError::NoLeader`] after `timeout`; `Unknown` if the runner stopped.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClientError> {
        let mut rx = self.leader.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|(_, l)| l.is_some())).await {
            Ok(Ok(seen)) => Ok(seen.1.expect("waited for Some")),
            Ok(Err(_)) => Err(ClientError::Unknown),
            Err(_) => Err(ClientError::NoLeader),
        }
    }

    /// Waits until this node knows a leader at a term after `term` (for example after the
    /// leader it knew failed), and returns it with its term.
    ///
    /// # Errors
    /// [`ClientError::NoLeader`] after `timeout`; `Unknown` if the runner stopped.
    pub async fn wait_for_leader_after(
        &self,
        term: Term,
        timeout: Duration,
    ) -> Result<(Term, NodeId), ClientError> {
        let mut rx = self.leader.clone();
        let wait = rx.wait_for(|(t, l)| *t > term && l.is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(seen)) => Ok((seen.0, seen.1.expect("waited for Some"))),
            Ok(Err(_)) => Err(ClientError::Unknown),
            Err(_) => Err(ClientError::NoLeader),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return Err(ClientError::Unknown);
        }
        rx.await.unwrap_or(Err(ClientError::Unknown))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The address it listens on (peers and clients), if its transport has one.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.net.local_addr()
    }

    /// Proposes `command` on the leader, wherever it is, and returns the state machine's
    /// answer once applied there. On a follower the command is forwarded to the leader
    /// through the transport; during an election, or when the leader this node names cannot
    /// be reached, it waits for the next leader and tries again, for up to
    /// [`RunnerConfig::forward_timeout`].
    ///
    /// # Errors
    /// [`ClientError`]: `NoLeader` (none reachable in time) and `Refused` and `Lost` are
    /// certainly not applied; `Unknown` may be (a forwarded request whose reply was lost).
    /// `NotLeader` only from a transport that cannot forward.
    pub async fn propose(&self, mut command: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let deadline = tokio::time::Instant::now() + self.forward_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A leader that loses its quorum keeps the proposal pending: bounded by the
            // deadline, its outcome is then unknown.
            let local = tokio::time::timeout(left, self.propose_owned(command));
            let leader = match local.await {
                Err(_) => return Err(ClientError::Unknown),
                Ok(Err((ClientError::NotLeader { leader }, Some(back)))) => {
                    command = back;
                    leader
                }
                Ok(other) => return other.map_err(|(e, _)| e),
            };
            let (term, _) = self.leader();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let target = match leader {
                Some(l) if l != self.id => l,
                // No leader known yet: wait for one.
                None => {
                    self.wait_for_leader(left).await?;
                    continue;
                }
                // Stale news of ourselves: wait for a later term.
                Some(_) => {
                    self.wait_for_leader_after(term, left).await?;
                    continue;
                }
            };
            let Some(call) = self.net.forward(target, command.clone()) else {
                return Err(ClientError::NotLeader { leader });
            };
            match tokio::time::timeout(left, call).await {
                Err(_) => return Err(ClientError::Unknown),
                Ok(Err(ForwardError::Lost)) => return Err(ClientError::Unknown),
                Ok(Ok(ForwardOutcome::Applied(answer))) => return Ok(answer),
                Ok(Ok(ForwardOutcome::NotApplied(why))) => return Err(ClientError::Refused(why)),
                Ok(Ok(ForwardOutcome::Unknown)) => return Err(ClientError::Unknown),
                // Unreachable, or no longer the leader: nothing was proposed. Wait (a little
                // at a time, until the deadline) for news of a leader at a later term, then
                // try again.
                Ok(Err(ForwardError::NotSent) | Ok(ForwardOutcome::NotLeader(_))) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::NoLeader);
                    }
                    let step = left.min(Duration::from_millis(100));
                    let _ =
                        tokio::time::timeout(step, self.wait_for_leader_after(term, step)).await;
                }
            }
        }
    }

    /// Proposes `command` on this node only; returns the state machine's answer once it is
    /// applied here.
    ///
    /// # Errors
    /// [`ClientError`]: not the leader, refused, lost to a leader change, unknown.
    pub async fn propose_local(&self, command: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        self.propose_owned(command).await.map_err(|(e, _)| e)
    }

    /// [`propose_local`](Self::propose_local), handing a refused command back.
    async fn propose_owned(&self, command: Vec<u8>) -> ProposeResult {
        if command.len() > MAX_COMMAND {
            return Err((ClientError::Refused("command too large".into()), None));
        }
        propose_via(&self.tx, command).await
    }

    /// A linearizable read (ReadIndex, from any node): `query` is answered by the state
    /// machine once it reflects every write acknowledged before the call.
    ///
    /// # Errors
    /// [`ClientError::Read`] when it cannot be confirmed (retry), or `Unknown`.
    pub async fn read(&self, query: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        self.ask(|r| Command::Read(query, r)).await
    }

    /// A read of this node's state as it is (may be stale).
    ///
    /// # Errors
    /// `Unknown` if the runner stopped.
    pub async fn local_read(&self, query: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::LocalRead(query, tx)).await.is_err() {
            return Err(ClientError::Unknown);
        }
        rx.await.map_err(|_| ClientError::Unknown)
    }

    /// The node's state; `None` if it stopped.
    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Changes the membership; returns once the change is committed and applied here.
    ///
    /// # Errors
    /// [`ClientError::Membership`] (refused), `NotLeader`, `Lost`, `Unknown`.
    pub async fn change_membership(&self, change: ConfChange) -> Result<Index, ClientError> {
        self.ask(|r| Command::Membership(change, r)).await
    }

    /// Hands leadership to `to`.
    ///
    /// # Errors
    /// `Refused` with the core's reason, or `Unknown`.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), ClientError> {
        self.ask(|r| Command::Transfer(to, r)).await
    }

    /// Takes a snapshot now and compacts the log; returns it (`None` if nothing new was
    /// applied, or a snapshot was refused).
    pub async fn snapshot(&self) -> Option<SnapshotId> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Snapshot(tx)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Sets the address of a peer.
    pub async fn set_peer_address(&self, id: NodeId, addr: SocketAddr) {
        let _ = self.tx.send(Command::SetAddress(id, addr)).await;
    }

    /// The address this node knows for `peer`.
    pub fn peer_address(&self, peer: NodeId) -> Option<SocketAddr> {
        self.net.address(peer)
    }

    /// Events (leader changes, installs, snapshots).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stops the node gracefully: pending writes are made durable, connections close.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.net.shutdown();
    }

    /// Stops the node at once, as a crash would: nothing more is written (what was not yet
    /// durable may be lost, which the node never acknowledged).
    pub fn kill(&self) {
        self.task.abort();
        self.net.shutdown();
    }

    /// Whether the runner has stopped.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }
}

struct Runner<S, L> {
    node: TokioNode,
    log: L,
    snaps: SnapshotStore,
    sm: S,
    net: Arc<dyn Transport>,
    /// The membership after the last applied entry (stored with snapshots).
    membership: Membership<{ raftlet::DEFAULT_MEMBERS }>,
    snapshot_every: u64,
    last_snapshot: Index,
    /// Bytes of the last snapshot's data, and of the commands applied since it was taken.
    snapshot_bytes: u64,
    applied_bytes: u64,
    proposals: BTreeMap<Index, (Term, ProposeReply)>,
    conf_waiters: BTreeMap<Index, (Term, Reply<Index>)>,
    reads: HashMap<u64, (Vec<u8>, Reply<Vec<u8>>)>,
    next_read: u64,
    events: broadcast::Sender<Event>,
    seen_leader: (Term, Option<NodeId>),
    leader_watch: tokio::sync::watch::Sender<(Term, Option<NodeId>)>,
    syncs: u64,
    metrics: crate::metrics::Metrics,
    /// The newest persist written and not yet covered by a sync job.
    written: Option<PersistToken>,
    /// How many persists were written since the last sync job started.
    unsynced: u32,
    /// A leader holding its writes unsynced: until when ([`RunnerConfig::leader_sync_delay`]).
    lazy_until: Option<tokio::time::Instant>,
    leader_sync_delay: Duration,
    /// [`RunnerConfig::inline_follower_sync`].
    inline_follower_sync: bool,
    /// The persist the sync job in flight covers.
    syncing: Option<PersistToken>,
    /// Sync jobs to the durability thread.
    sync_jobs: SyncSender,
    /// The snapshot being saved, and who waits for it.
    saving: Option<SnapshotId>,
    snapshot_waiters: Vec<oneshot::Sender<Option<SnapshotId>>>,
    /// Saved snapshots come back here.
    saved_tx: mpsc::UnboundedSender<Saved>,
}

/// Results of sync jobs: the token they cover, and how long the sync took.
type Synced = (PersistToken, std::io::Result<()>, Duration);
/// Sync jobs, with the token each covers.
type SyncSender = std::sync::mpsc::Sender<(PersistToken, SyncJob)>;

/// Runs a sync job on the runner's own thread ([`RunnerConfig::inline_follower_sync`]):
/// through `block_in_place` on a multi-thread runtime, so that its other tasks move to another
/// worker meanwhile; directly on a current-thread runtime, which it blocks.
fn sync_here(job: SyncJob) -> std::io::Result<()> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(job),
        _ => job(),
    }
}

/// Starts the durability thread: it runs sync jobs in order and reports each. It ends when
/// the runner drops its sender (whatever way the runner ends).
fn durability_thread(id: NodeId) -> std::io::Result<(SyncSender, mpsc::UnboundedReceiver<Synced>)> {
    let (jobs, rx) = std::sync::mpsc::channel::<(PersistToken, SyncJob)>();
    let (done, synced) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name(format!("raftlet-sync-{}", id.0))
        .spawn(move || {
            while let Ok((token, job)) = rx.recv() {
                let t = std::time::Instant::now();
                let r = job();
                if done.send((token, r, t.elapsed())).is_err() {
                    return;
                }
            }
        })?;
    Ok((jobs, synced))
}

/// Starts a node with the defaults: its log a [`DiskLog`] in `config.dir`, its transport TCP
/// ([`Network`]) listening on `listen`, client connections (first byte `C`) handed to
/// `clients`, if given. Restores the state machine from the newest snapshot and runs until
/// shut down.
///
/// # Errors
/// [`StartError`].
pub async fn start<S: StateMachine>(
    config: RunnerConfig,
    sm: S,
    listen: SocketAddr,
    clients: Option<mpsc::Sender<ClientConnection>>,
) -> Result<(Handle, Recovery), StartError> {
    let net = Network::bind(config.id, config.cluster, listen, clients)
        .await
        .map_err(StartError::Io)?;
    let (log, recovery) = DiskLog::open(&config.dir).map_err(StartError::Storage)?;
    let handle = start_with(config, sm, log, net)?;
    Ok((handle, recovery))
}

/// Starts a node on the log and transport of the caller's choice (for example an in-memory
/// [`MemLog`](crate::memlog::MemLog) and a transport of its own); snapshots go to
/// `config.dir`. Must be called inside a tokio runtime.
///
/// # Errors
/// [`StartError`].
pub fn start_with<S: StateMachine, L: LogStore, T: Transport>(
    config: RunnerConfig,
    mut sm: S,
    log: L,
    transport: T,
) -> Result<Handle, StartError> {
    std::fs::create_dir_all(&config.dir).map_err(StartError::Io)?;
    let snaps = SnapshotStore::open(&config.dir).map_err(StartError::Io)?;
    let initial = Membership::new(&config.initial_voters)
        .map_err(|e| StartError::Config(raftlet::ConfigError::from(e)))?;
    let (snapshot, membership, snapshot_bytes) = match snaps.latest().map_err(StartError::Io)? {
        Some((meta, data)) => {
            sm.restore(&data).map_err(StartError::Restore)?;
            (meta.id, meta.membership, data.len() as u64)
        }
        None => (SnapshotId::ZERO, initial, 0),
    };
    let mut cfg = Config::with_membership(config.id, membership.clone());
    cfg.election_ticks = config.election_ticks;
    cfg.heartbeat_ticks = config.heartbeat_ticks;
    cfg.snapshot = snapshot;
    cfg.applied = snapshot.index;
    cfg.snapshot_mode = config.snapshot_mode;
    cfg.log_retention = config.log_retention;
    // The state machine is rebuilt from the latest snapshot at start-up (`applied` is its
    // index), so applying a committed entry before it is durable here is safe.
    cfg.apply_before_durable = true;
    cfg.seed = config.id.0 ^ u64::from(std::process::id()).rotate_left(32) ^ nanos();
    let node = TokioNode::new(cfg, &log).map_err(StartError::Config)?;
    let net: Arc<dyn Transport> = Arc::new(transport);
    for &(id, a) in &config.peers {
        net.set_address(id, a);
    }
    let (in_tx, in_rx) = mpsc::channel::<Msg>(4096);
    net.start(in_tx);
    let (fwd_tx, fwd_rx) = mpsc::channel::<Forwarded>(1024);
    net.serve_forwarded(fwd_tx);
    let (tx, rx) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(1024);
    let (sync_jobs, synced) = durability_thread(config.id).map_err(StartError::Io)?;
    let leader_watch = tokio::sync::watch::Sender::new((Term(0), None));
    let (saved_tx, saved_rx) = mpsc::unbounded_channel();
    let runner = Runner {
        node,
        log,
        snaps,
        sm,
        net: net.clone(),
        membership,
        snapshot_every: config.snapshot_every,
        last_snapshot: snapshot.index,
        snapshot_bytes,
        applied_bytes: 0,
        proposals: BTreeMap::new(),
        conf_waiters: BTreeMap::new(),
        reads: HashMap::new(),
        next_read: 1,
        events: events.clone(),
        seen_leader: (Term(0), None),
        leader_watch: leader_watch.clone(),
        syncs: 0,
        metrics: crate::metrics::Metrics::default(),
        written: None,
        unsynced: 0,
        lazy_until: None,
        leader_sync_delay: config.leader_sync_delay,
        inline_follower_sync: config.inline_follower_sync,
        syncing: None,
        sync_jobs,
        saving: None,
        snapshot_waiters: Vec::new(),
        saved_tx,
    };
    let id = config.id;
    let tick = config.tick;
    let stop = StopTransport(net.clone());
    let task = tokio::spawn(async move {
        // However the task ends (returns, fails, is aborted), the transport stops with it.
        let _stop = stop;
        if let Err(e) = runner.run(tick, in_rx, rx, synced, saved_rx).await {
            log::error!("{id}: the runner stopped: {e}");
        }
    });
    let handle = Handle {
        id,
        tx,
        events,
        task: Arc::new(task),
        net,
        leader: leader_watch.subscribe(),
        forward_timeout: config.forward_timeout,
    };
    tokio::spawn(serve_forwarded(
        handle.tx.downgrade(),
        leader_watch.subscribe(),
        fwd_rx,
    ));
    Ok(handle)
}

/// Sends a proposal to the runner behind `tx` and waits for its outcome.
async fn propose_via(tx: &mpsc::Sender<Command>, command: Vec<u8>) -> ProposeResult {
    let (done, rx) = oneshot::channel();
    if tx.send(Command::Propose(command, done)).await.is_err() {
        return Err((ClientError::Unknown, None));
    }
    rx.await.unwrap_or(Err((ClientError::Unknown, None)))
}

/// Proposes what other nodes forward here, each on a task of its own, until the runner ends.
/// Holds no strong command sender: dropping every [`Handle`] still ends the runner.
async fn serve_forwarded(
    commands: mpsc::WeakSender<Command>,
    mut leader: tokio::sync::watch::Receiver<(Term, Option<NodeId>)>,
    mut forwarded: mpsc::Receiver<Forwarded>,
) {
    loop {
        let f = tokio::select! {
            f = forwarded.recv() => f,
            // The runner dropped its end of the leader watch: it has ended.
            () = async { while leader.changed().await.is_ok() {} } => None,
        };
        let Some(Forwarded { command, reply }) = f else {
            return;
        };
        let Some(tx) = commands.upgrade() else {
            let _ = reply.send(ForwardOutcome::NotApplied("the node stopped".into()));
            return;
        };
        tokio::spawn(async move {
            let outcome = if command.len() > MAX_COMMAND {
                ForwardOutcome::NotApplied("command too large".into())
            } else {
                match propose_via(&tx, command).await {
                    Ok(answer) => ForwardOutcome::Applied(answer),
                    Err((ClientError::NotLeader { leader }, _)) => {
                        ForwardOutcome::NotLeader(leader.map(|l| l.0))
                    }
                    Err((e, _)) if e.is_certainly_not_applied() => {
                        ForwardOutcome::NotApplied(e.to_string())
                    }
                    Err(_) => ForwardOutcome::Unknown,
                }
            };
            let _ = reply.send(outcome);
        });
    }
}

/// Stops a transport when dropped.
struct StopTransport(Arc<dyn Transport>);

impl Drop for StopTransport {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Inputs taken in one round before the persists they produced are synced.
/// A snapshot saved (or not): its id and the size of its data.
type Saved = (SnapshotId, std::io::Result<u64>);

/// However large the state, snapshots are at most this many times
/// [`RunnerConfig::snapshot_every`] entries apart: the log held in memory stays bounded in
/// entries as well as in bytes.
pub const SNAPSHOT_SPACING_CAP: u64 = 10;

const ROUND: usize = 256;

impl<S: StateMachine, L: LogStore> Runner<S, L> {
    /// The loop: wait for an input, take every other input already queued (stepping each and
    /// draining its actions), then start one sync for all the persists of the round, unless
    /// one is in flight (then the next round's sync covers them). A finished sync
    /// acknowledges its persists, which lets the node send acknowledgements and apply.
    async fn run(
        mut self,
        tick: Duration,
        mut inbound: mpsc::Receiver<Msg>,
        mut commands: mpsc::Receiver<Command>,
        mut synced: mpsc::UnboundedReceiver<Synced>,
        mut saved: mpsc::UnboundedReceiver<Saved>,
    ) -> Result<(), std::io::Error> {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lazy = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(lazy);
        let mut armed = None;
        loop {
            if armed != self.lazy_until {
                armed = self.lazy_until;
                if let Some(at) = armed {
                    lazy.as_mut().reset(at);
                }
            }
            tokio::select! {
                // A lazy leader's bound ran out: the round's end syncs.
                () = &mut lazy, if armed.is_some() => armed = None,
                _ = ticker.tick() => {
                    self.node.tick(&self.log);
                    self.drain()?;
                }
                Some(done) = synced.recv() => self.synced(done)?,
                Some(done) = saved.recv() => self.saved(done)?,
                Some(mut msg) = inbound.recv() => {
                    // Decoded for this delivery: the node takes the entries it appends.
                    let _ = self.node.step_taking(&mut msg, &self.log);
                    self.drain()?;
                }
                // With the log full a command waits (in the channel, then in its sender's
                // `send`) for a sync to make room, rather than be refused.
                cmd = commands.recv(), if self.node.log_room() > 0 => {
                    let Some(cmd) = cmd else { return Ok(()) };
                    if self.command_or_stop(cmd)? {
                        return Ok(());
                    }
                }
            }
            // Take whatever else is queued before syncing.
            for _ in 0..ROUND {
                let mut took = false;
                if let Ok(mut msg) = inbound.try_recv() {
                    let _ = self.node.step_taking(&mut msg, &self.log);
                    self.drain()?;
                    took = true;
                }
                // Every queued command while the log has room, then one drain: one persist
                // and one append per follower for all of them. (With the log full, commands
                // wait for a sync to make room rather than be refused.)
                let mut commanded = false;
                while self.node.log_room() > 0 {
                    let Ok(cmd) = commands.try_recv() else { break };
                    if matches!(cmd, Command::Shutdown(_)) {
                        if self.command_or_stop(cmd)? {
                            return Ok(());
                        }
                    } else {
                        self.command(cmd)?;
                        commanded = true;
                    }
                }
                if commanded {
                    self.drain()?;
                    took = true;
                }
                if !took {
                    break;
                }
            }
            self.start_sync()?;
            self.note_leader();
        }
    }

    /// Executes a command and drains; `true` if it was the shutdown.
    fn command_or_stop(&mut self, cmd: Command) -> std::io::Result<bool> {
        if let Command::Shutdown(done) = cmd {
            self.drain()?;
            self.log.sync()?;
            let _ = done.send(());
            return Ok(true);
        }
        self.command(cmd)?;
        self.drain()?;
        Ok(false)
    }

    /// Starts a sync of every persist written since the last one, unless one is in flight or
    /// a lazy leader may wait ([`RunnerConfig::leader_sync_delay`]). Persists that need no
    /// sync (nothing new on disk) are acknowledged at once.
    fn start_sync(&mut self) -> std::io::Result<()> {
        while self.syncing.is_none() {
            if self.written.is_none() {
                return Ok(());
            }
            if self.may_wait_for_sync() {
                return Ok(());
            }
            let Some(token) = self.written.take() else {
                return Ok(());
            };
            self.unsynced = 0;
            self.lazy_until = None;
            match self.log.start_sync()? {
                Some(job) => {
                    self.syncs += 1;
                    self.syncing = Some(token);
                    if self.inline_follower_sync && self.node.role() != Role::Leader {
                        let t = std::time::Instant::now();
                        let result = sync_here(job);
                        self.synced((token, result, t.elapsed()))?;
                    } else {
                        self.sync_jobs
                            .send((token, job))
                            .map_err(|_| std::io::Error::other("the durability thread stopped"))?;
                    }
                }
                None => {
                    let _ = self.node.persisted(token, &self.log);
                    self.drain()?;
                }
            }
        }
        Ok(())
    }

    /// Whether this node may hold its written persists unsynced a while longer: it leads, its
    /// followers form a quorum without it, fewer than [`LAZY_SYNC_PERSISTS`] wait, its log has
    /// room for more (entries leave it once durable), and the bound has not run out (it starts
    /// with the first write held).
    fn may_wait_for_sync(&mut self) -> bool {
        if self.leader_sync_delay.is_zero()
            || self.unsynced >= LAZY_SYNC_PERSISTS
            || self.node.log_room() == 0
            || !self.node.followers_form_quorum()
        {
            return false;
        }
        let now = tokio::time::Instant::now();
        let until = *self.lazy_until.get_or_insert(now + self.leader_sync_delay);
        now < until
    }

    /// A sync job finished.
    fn synced(&mut self, (token, result, took): Synced) -> std::io::Result<()> {
        result?;
        self.metrics.fsync.record(took);
        debug_assert_eq!(self.syncing, Some(token));
        self.syncing = None;
        let _ = self.node.persisted(token, &self.log);
        self.drain()
    }

    fn note_leader(&mut self) {
        let now = (self.node.term(), self.node.leader());
        if now != self.seen_leader {
            if now.1.is_some() && now.1 != self.seen_leader.1 {
                self.metrics.leader_changes += 1;
            }
            self.seen_leader = now;
            self.leader_watch.send_replace(now);
            let _ = self.events.send(Event::Leader {
                term: now.0,
                leader: now.1,
            });
        }
    }

    fn command(&mut self, cmd: Command) -> std::io::Result<()> {
        match cmd {
            Command::Propose(data, reply) => match self.node.propose(data, &self.log) {
                Ok(index) => {
                    self.metrics.proposals += 1;
                    self.proposals.insert(index, (self.node.term(), reply));
                }
                Err(e) => {
                    self.metrics.proposals_refused += 1;
                    let err = match e {
                        ProposeError::NotLeader { leader, data } => {
                            (ClientError::NotLeader { leader }, Some(data))
                        }
                        ProposeError::Full(_) => (ClientError::Refused("log full".into()), None),
                        ProposeError::Transferring(_) => (
                            ClientError::Refused("leadership transfer in progress".into()),
                            None,
                        ),
                        other => (ClientError::Refused(other.to_string()), None),
                    };
                    let _ = reply.send(Err(err));
                }
            },
            Command::Read(query, reply) => {
                let id = self.next_read;
                self.next_read += 1;
                match self.node.read_index(ReadId(id), &self.log) {
                    Ok(()) => {
                        self.reads.insert(id, (query, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ClientError::Read(e)));
                    }
                }
            }
            Command::LocalRead(query, reply) => {
                let _ = reply.send(self.sm.query(&query));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Membership(change, reply) => {
                match self.node.propose_conf_change(change, &self.log) {
                    Ok(index) => {
                        self.conf_waiters.insert(index, (self.node.term(), reply));
                    }
                    Err(MembershipError::NotLeader { leader }) => {
                        let _ = reply.send(Err(ClientError::NotLeader { leader }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ClientError::Membership(e)));
                    }
                }
            }
            Command::Transfer(to, reply) => {
                let r = self
                    .node
                    .transfer_leadership(to, &self.log)
                    .map_err(|e| ClientError::Refused(e.to_string()));
                let _ = reply.send(r);
            }
            Command::Snapshot(reply) => {
                self.take_snapshot(Some(reply));
            }
            Command::SetAddress(id, addr) => self.net.set_address(id, addr),
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let n = &self.node;
        Status {
            id: n.id(),
            role: n.role(),
            term: n.term(),
            leader: n.leader(),
            commit: n.commit_index(),
            applied: n.applied_index(),
            last_index: n.last_index(),
            durable: n.durable_index(),
            log_start: n.log_start(),
            membership: n.membership().clone(),
            dropped_sends: n.stats().dropped_sends + self.net.stats().dropped,
            net: self.net.stats(),
            segments: self.log.segment_count(),
            syncs: self.syncs,
            metrics: {
                let mut m = self.metrics.clone();
                let st = n.stats();
                m.elections = st.campaigns;
                m.dropped_sends = st.dropped_sends + self.net.stats().dropped;
                m.connections_refused = self.net.stats().refused;
                m
            },
        }
    }

    /// Executes every action until there is none. Persists are written, not synced: see
    /// [`start_sync`](Self::start_sync).
    fn drain(&mut self) -> std::io::Result<()> {
        {
            while let Some(action) = self.node.poll_action() {
                match action {
                    Action::Send(out) => match out.to_message(&self.log) {
                        Ok(msg) => self.net.send(msg),
                        // The node reads durable entries from the log: a miss is a broken
                        // store, not a network matter.
                        Err(e) => return Err(std::io::Error::other(e)),
                    },
                    Action::Persist(p) => {
                        let token = p.token;
                        self.log.write(&p)?;
                        self.written = Some(token);
                        self.unsynced += 1;
                    }
                    Action::Apply { first, last } => self.apply(first, last)?,
                    Action::Compact { through } => self.log.compact(through)?,
                    Action::ReadSnapshotChunk { to, snapshot, seq } => {
                        if let Some((data, checksum)) = self.snaps.chunk(snapshot, seq)? {
                            let _ = self.node.snapshot_chunk(to, snapshot, seq, data, checksum);
                        }
                    }
                    Action::WriteSnapshotChunk {
                        snapshot,
                        seq,
                        data,
                    } => self.snaps.stage(snapshot, seq, data)?,
                    Action::RestoreSnapshot { snapshot, checksum } => {
                        let result = match self.snaps.finish_staging(snapshot, checksum)? {
                            Some((meta, data)) => self.restore(meta, &data),
                            None => {
                                log::warn!(
                                    "{}: snapshot {snapshot:?} failed its checksum",
                                    self.node.id()
                                );
                                Err(InstallError::Failed)
                            }
                        };
                        let _ = self.node.snapshot_installed(result, &self.log);
                    }
                    Action::InstallSnapshotFromLeader {
                        leader,
                        first_available,
                    } => {
                        let result = match self.sm.fetch_snapshot(leader, first_available) {
                            Some((meta, data)) => {
                                self.snaps.save(&meta, &data)?;
                                self.restore(meta, &data)
                            }
                            None => Err(InstallError::Unavailable),
                        };
                        let _ = self.node.snapshot_installed(result, &self.log);
                    }
                    Action::InstallComplete { peer, outcome } => {
                        log::info!(
                            "{}: install complete for {peer}: {outcome:?}",
                            self.node.id()
                        );
                        self.sm.install_complete(peer, outcome);
                        let _ = self.events.send(Event::InstallComplete {
                            at: self.node.id(),
                            peer,
                            outcome,
                        });
                    }
                    Action::ReadReady { id, .. } => {
                        if let Some((query, reply)) = self.reads.remove(&id.0) {
                            let _ = reply.send(Ok(self.sm.query(&query)));
                        }
                    }
                    Action::ReadFailed { id, reason } => {
                        if let Some((_, reply)) = self.reads.remove(&id.0) {
                            let _ = reply.send(Err(ClientError::Read(reason)));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn restore(
        &mut self,
        meta: Meta,
        data: &[u8],
    ) -> Result<raftlet::SnapshotMeta<{ raftlet::DEFAULT_MEMBERS }>, InstallError> {
        if let Err(e) = self.sm.restore(data) {
            log::warn!(
                "{}: cannot restore snapshot {:?}: {e}",
                self.node.id(),
                meta.id
            );
            return Err(InstallError::Failed);
        }
        self.membership = meta.membership.clone();
        self.last_snapshot = meta.id.index;
        self.snapshot_bytes = data.len() as u64;
        self.applied_bytes = 0;
        // Proposals the snapshot jumped over: their outcome is not known here.
        let later = self.proposals.split_off(&meta.id.index.next());
        for (_, (_, reply)) in std::mem::replace(&mut self.proposals, later) {
            let _ = reply.send(Err((ClientError::Unknown, None)));
        }
        let later = self.conf_waiters.split_off(&meta.id.index.next());
        for (_, (_, reply)) in std::mem::replace(&mut self.conf_waiters, later) {
            let _ = reply.send(Err(ClientError::Unknown));
        }
        Ok(meta)
    }

    fn apply(&mut self, first: Index, last: Index) -> std::io::Result<()> {
        self.metrics.applied += last.0 + 1 - first.0;
        for i in first.0..=last.0 {
            let index = Index(i);
            let Some(entry) = self.log.get(index) else {
                return Err(std::io::Error::other(format!(
                    "asked to apply {index}, which the log does not hold"
                )));
            };
            let term = entry.term;
            let answer = match &entry.data {
                EntryData::Normal(cmd) => {
                    self.applied_bytes += cmd.len() as u64;
                    Some(self.sm.apply(index, cmd))
                }
                EntryData::Membership(c) => {
                    match self.membership.apply(c) {
                        Ok(m) => self.membership = m,
                        Err(e) => log::error!(
                            "{}: committed change {c:?} does not apply: {e}",
                            self.node.id()
                        ),
                    }
                    None
                }
                EntryData::Noop => None,
            };
            if let Some((t, reply)) = self.proposals.remove(&index) {
                let r = match answer {
                    Some(a) if t == term => Ok(a),
                    _ => Err((ClientError::Lost, None)),
                };
                let _ = reply.send(r);
            }
            if let Some((t, reply)) = self.conf_waiters.remove(&index) {
                let ok = t == term && matches!(entry.data, EntryData::Membership(_));
                let _ = reply.send(if ok {
                    Ok(index)
                } else {
                    Err(ClientError::Lost)
                });
            }
        }
        self.snapshot_if_due();
        Ok(())
    }

    /// Takes a snapshot if [`RunnerConfig::snapshot_every`] says one is due at the applied
    /// index (and none is being saved: [`saved`](Self::saved) asks again).
    fn snapshot_if_due(&mut self) {
        let since = self
            .node
            .applied_index()
            .0
            .saturating_sub(self.last_snapshot.0);
        if self.snapshot_every > 0
            && self.saving.is_none()
            && since >= self.snapshot_every
            && (self.applied_bytes >= self.snapshot_bytes
                || since >= self.snapshot_every.saturating_mul(SNAPSHOT_SPACING_CAP))
        {
            self.take_snapshot(None);
        }
    }

    /// Snapshots the state machine at the applied index; the file is written and synced off
    /// the runner's task, and the node compacts once it is durable ([`Self::saved`]).
    /// `reply` (from [`Handle::snapshot`]) gets the snapshot once it is taken, or `None`.
    fn take_snapshot(&mut self, reply: Option<oneshot::Sender<Option<SnapshotId>>>) {
        if self.saving.is_some() {
            // One at a time: the caller gets the one being saved.
            self.snapshot_waiters.extend(reply);
            return;
        }
        let applied = self.node.applied_index();
        let term = self.log.term(applied);
        let (true, Some(term)) = (applied > self.last_snapshot, term) else {
            if let Some(r) = reply {
                let _ = r.send(None);
            }
            return;
        };
        let id = SnapshotId {
            index: applied,
            term,
        };
        let meta = Meta {
            id,
            membership: self.membership.clone(),
        };
        let capture = self.sm.capture();
        self.last_snapshot = applied;
        self.applied_bytes = 0;
        self.saving = Some(id);
        self.snapshot_waiters.extend(reply);
        let saver = self.snaps.saver();
        let done = self.saved_tx.clone();
        tokio::task::spawn_blocking(move || {
            let data = capture();
            let _ = done.send((id, saver.save(&meta, &data).map(|()| data.len() as u64)));
        });
    }

    /// A snapshot is durable: the node may compact up to it.
    fn saved(&mut self, (id, result): Saved) -> std::io::Result<()> {
        self.snapshot_bytes = result?;
        self.saving = None;
        let taken = match self.node.snapshot_taken(id, &self.log) {
            Ok(()) => {
                let _ = self.events.send(Event::Snapshot { id });
                Some(id)
            }
            Err(e) => {
                log::debug!("{}: snapshot {id:?} refused: {e}", self.node.id());
                None
            }
        };
        for w in self.snapshot_waiters.drain(..) {
            let _ = w.send(taken);
        }
        // One may have come due while this one was being saved.
        self.snapshot_if_due();
        self.drain()
    }
}
