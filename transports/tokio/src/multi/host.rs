//! The host: one tokio task that owns every group of the process, its shared log and its
//! connections. See the [module docs](super).
//!
//! # The loop
//! Each turn takes one input (a tick, the inbound frames that are queued, the commands that are
//! queued, or a finished sync), then drains every group the input touched: sends are encoded
//! into the frame being built for their peer process, persists go to the shared log's batch,
//! committed entries are applied. Then one frame per peer leaves, and, if no sync is running,
//! the batch's `fdatasync` starts on a blocking thread. When it ends, every persist of the batch
//! is acknowledged to its group (the action contract: nothing the core withholds until
//! durability leaves before that). A group's creation and removal are answered once their
//! records are durable.
//!
//! # Snapshots
//! Once a group has applied [`HostConfig::snapshot_every`] entries past its last snapshot, the
//! host asks the application for the group's state ([`GroupMachine::snapshot`]) and hands it to
//! the snapshot thread ([`super::snaps`]); when the file is durable the node is told
//! (`snapshot_taken`) and compacts its log, keeping [`HostConfig::log_retention`] entries, and
//! the shared log records the compaction. A follower that needs entries its leader no longer
//! holds is sent the leader's snapshot file in chunks (stream mode); it verifies the checksum,
//! restores the application ([`GroupMachine::restore`]), and reports the install only once its
//! own copy of the file is durable. A restarting host restores every group from its newest
//! snapshot and applies the log after it.
//!
//! On the host's task, and so in the way of every group: the application's `snapshot` and
//! `restore` calls, and reading a snapshot file when a follower needs it (once per transfer;
//! the body stays in memory until the transfer ends or the leader is deposed). Writing and
//! syncing files runs on the snapshot thread. The host suits groups with small states; a large
//! state machine makes `snapshot` cheap (copy-on-write) or runs one group per
//! [`runner`](crate::runner).
//!
//! # Frames
//! Length-prefixed (4 bytes, little endian) on TCP. A frame is a group frame
//! (`raftlet::wire::group`), or a ping: a `0` byte and the sender's process id as a varint
//! (version 0 is no wire version, so the two cannot be confused).

use super::snaps::{self, GroupKey, Purpose, Saved, Saver, Sending, SnapDir, Staging};
use super::wal::{GroupId, GroupLog, SharedWal, WalOptions};
use crate::net::read_frame;
use crate::storage::{LogStore, Payload};
use raftlet::wire::Codec;
use raftlet::wire::group::{self, GroupFrameReader};
use raftlet::{
    Action, ConfChange, Config, EntryData, Index, InstallError, Membership, MembershipError, Node,
    NodeId, ProposeError, Role, SnapshotId, SnapshotMeta, Storage, Term,
};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Members of a group at most (voters and learners, both sides of a joint configuration):
/// room for a three-voter group to move a replica (a fourth joins as a learner, then takes
/// one's place) or to grow to five voters.
pub const MEMBERS: usize = 5;

/// A group's membership.
pub type GroupMembership = Membership<MEMBERS>;

/// A group's replica: up to [`MEMBERS`] members, 64 unstable entries, 8 entries per append, 4
/// appends in flight, 32 queued sends, 2 pending reads.
pub type GroupNode = Node<Payload, MEMBERS, 64, 8, 4, 32, 2>;

/// The application: one state machine per group, or one for all keyed by group.
pub trait GroupMachine: Send + 'static {
    /// Applies group `group`'s committed command at `index`; the answer goes to its proposer.
    /// After a restart, the group is restored from its newest snapshot (if it has one) and
    /// every command after it is applied again.
    fn apply(&mut self, group: GroupId, index: Index, command: &[u8]) -> Vec<u8>;
    /// Group `group`'s state after every command applied to it so far, as bytes
    /// ([`HostConfig::snapshot_every`] says how often the host asks).
    fn snapshot(&self, group: GroupId) -> Vec<u8>;
    /// Replaces group `group`'s state by a snapshot's: one this host saved (at a restart, before
    /// any command of the group is applied) or one the group's leader sent.
    ///
    /// # Errors
    /// Bytes it cannot read: at a restart the host does not start; from a leader the install
    /// fails and the leader sends it again.
    fn restore(&mut self, group: GroupId, data: &[u8]) -> Result<(), String>;
    /// Group `group` was removed from this process.
    fn removed(&mut self, group: GroupId) {
        let _ = group;
    }
}

/// How a host runs.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// This process's id: its replicas' node id in every group.
    pub id: NodeId,
    /// The shared log's directory.
    pub dir: PathBuf,
    /// Where peers connect.
    pub listen: SocketAddr,
    /// The other processes.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Written into and expected in every frame.
    pub cluster: u64,
    /// One tick of every awake group (100 ms).
    pub tick: Duration,
    /// Election timeout of every group, in ticks (10).
    pub election_ticks: u32,
    /// Heartbeat interval of every group, in ticks (2).
    pub heartbeat_ticks: u32,
    /// A peer process heard from for no longer than this is reported failed to every group
    /// (600 ms). Pings go to every peer every tick.
    pub liveness_timeout: Duration,
    /// The shared log's layout.
    pub wal: WalOptions,
    /// The largest frame sent or accepted (64 KiB).
    pub max_frame: usize,
    /// A group takes a snapshot once it has applied this many entries since its last one
    /// (1,000; 0: never, and its log grows without end).
    pub snapshot_every: u64,
    /// Entries a group's log keeps behind a snapshot, so that a follower a little behind is
    /// sent entries rather than the snapshot (100).
    pub log_retention: u64,
}

impl HostConfig {
    /// A host with the defaults above.
    pub fn new(
        id: NodeId,
        dir: impl Into<PathBuf>,
        listen: SocketAddr,
        peers: Vec<(NodeId, SocketAddr)>,
    ) -> Self {
        Self {
            id,
            dir: dir.into(),
            listen,
            peers,
            cluster: 0x006d_756c_7469, // "multi"
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            liveness_timeout: Duration::from_millis(600),
            wal: WalOptions::default(),
            max_frame: 64 << 10,
            snapshot_every: 1_000,
            log_retention: 100,
        }
    }

    /// A host with the defaults above, as process `id` of `members` (every process of the
    /// cluster with its address, this one included: it listens on its own). `None` if `id` is
    /// not among them.
    pub fn of_members(
        id: NodeId,
        dir: impl Into<PathBuf>,
        members: &[(NodeId, SocketAddr)],
    ) -> Option<Self> {
        let &(_, listen) = members.iter().find(|(m, _)| *m == id)?;
        let peers = members.iter().copied().filter(|(m, _)| *m != id).collect();
        Some(Self::new(id, dir, listen, peers))
    }
}

/// Why a request to a host failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// This replica does not lead the group (the leader it knows, if any). Not applied.
    NotLeader(Option<NodeId>),
    /// No such group on this host. Not applied.
    NoGroup,
    /// The group exists already.
    Exists,
    /// The group's log has no room now (back-pressure). Not applied.
    Full,
    /// Leadership changed before the command was known applied: it may or may not be.
    LeadershipLost,
    /// The host stopped: a command may or may not be applied.
    Stopped,
    /// A bad request (a group with no voters, or more members than [`MEMBERS`]).
    Invalid,
    /// A membership change refused: another one is pending, a transfer is in progress, or the
    /// change is impossible from the current membership. Not applied.
    Membership(MembershipError),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for HostError {}

/// What a host reports about itself.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    /// Groups hosted.
    pub groups: usize,
    /// Groups awake (ticked); the others are quiescent.
    pub awake: usize,
    /// Groups this process leads.
    pub leading: usize,
    /// Frames sent to peers (pings included).
    pub frames_sent: u64,
    /// Raft messages sent to peers.
    pub messages_sent: u64,
    /// Frames dropped (a peer's queue full, or no connection).
    pub frames_dropped: u64,
    /// Connections to peers attempted (one per peer, then again after a failure, at most
    /// every 200 ms while it is down).
    pub connects: u64,
    /// `fdatasync`s of the shared log.
    pub syncs: u64,
    /// Persists acknowledged after a sync.
    pub persists: u64,
    /// Messages for a group this host does not have.
    pub unknown_group: u64,
    /// Frames refused as malformed.
    pub bad_frames: u64,
    /// Peers currently considered failed.
    pub peers_down: Vec<u64>,
    /// Segments of the shared log.
    pub wal_segments: usize,
    /// Log entries held by all groups together (in memory, and in the shared log).
    pub log_entries: u64,
    /// Snapshots taken and made durable.
    pub snapshots: u64,
    /// Snapshots installed from a leader.
    pub installs: u64,
    /// Snapshot chunks sent to followers.
    pub chunks_sent: u64,
}

enum Cmd {
    Create {
        group: GroupId,
        voters: Vec<NodeId>,
        reply: oneshot::Sender<Result<(), HostError>>,
    },
    Remove {
        group: GroupId,
        reply: oneshot::Sender<Result<(), HostError>>,
    },
    Propose {
        group: GroupId,
        command: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, HostError>>,
    },
    ChangeMembership {
        group: GroupId,
        change: ConfChange,
        reply: oneshot::Sender<Result<Vec<u8>, HostError>>,
    },
    Members {
        group: GroupId,
        reply: oneshot::Sender<Option<GroupMembership>>,
    },
    Leaders {
        reply: oneshot::Sender<Vec<(GroupId, Option<NodeId>, Term)>>,
    },
    Status {
        reply: oneshot::Sender<HostStatus>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A running host. Dropping the handle does not stop it: call [`shutdown`](Self::shutdown) or
/// [`kill`](Self::kill).
#[derive(Clone)]
pub struct HostHandle {
    id: NodeId,
    addr: SocketAddr,
    tx: mpsc::Sender<Cmd>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    stopped: Arc<AtomicBool>,
}

impl HostHandle {
    /// This process's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address peers connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, HostError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(cmd(tx))
            .await
            .map_err(|_| HostError::Stopped)?;
        rx.await.map_err(|_| HostError::Stopped)
    }

    /// Creates a replica of group `group` (voters: process ids) here; every voter's host must
    /// create it too. Answers once the creation is durable.
    ///
    /// To add this host to a group that runs elsewhere, create the group here with its current
    /// voters (a set this host is not in): the replica waits, and never campaigns, until the
    /// group's leader adds it ([`change_membership`](Self::change_membership)) and sends it the
    /// log or a snapshot.
    ///
    /// # Errors
    /// [`HostError::Exists`], [`HostError::Invalid`], [`HostError::Stopped`].
    pub async fn create_group(&self, group: GroupId, voters: &[NodeId]) -> Result<(), HostError> {
        let voters = voters.to_vec();
        self.ask(|reply| Cmd::Create {
            group,
            voters,
            reply,
        })
        .await?
    }

    /// Removes this host's replica of `group` (its log records are dropped from the shared log
    /// as it compacts). Answers once the removal is durable.
    ///
    /// # Errors
    /// [`HostError::NoGroup`], [`HostError::Stopped`].
    pub async fn remove_group(&self, group: GroupId) -> Result<(), HostError> {
        self.ask(|reply| Cmd::Remove { group, reply }).await?
    }

    /// Proposes `command` to group `group`, whose leader must be this host; answers with what
    /// the state machine returned once it is applied here.
    ///
    /// # Errors
    /// [`HostError`]; [`HostError::NotLeader`] names the leader to ask instead.
    pub async fn propose(&self, group: GroupId, command: Vec<u8>) -> Result<Vec<u8>, HostError> {
        self.ask(|reply| Cmd::Propose {
            group,
            command,
            reply,
        })
        .await?
    }

    /// Changes group `group`'s membership ([`ConfChange`]: add or remove voters and learners,
    /// several at once through a joint configuration that the leader leaves by itself); this
    /// host must lead the group. Answers once the change is applied here. A host that a change
    /// removes keeps its replica until it is told to [`remove_group`](Self::remove_group).
    ///
    /// # Errors
    /// [`HostError::NotLeader`], [`HostError::Membership`], [`HostError::Full`],
    /// [`HostError::LeadershipLost`] (it may or may not take effect), [`HostError::NoGroup`].
    pub async fn change_membership(
        &self,
        group: GroupId,
        change: ConfChange,
    ) -> Result<(), HostError> {
        self.ask(|reply| Cmd::ChangeMembership {
            group,
            change,
            reply,
        })
        .await?
        .map(|_| ())
    }

    /// Group `group`'s membership as this replica uses it (the latest in its log).
    ///
    /// # Errors
    /// [`HostError::NoGroup`], [`HostError::Stopped`].
    pub async fn members(&self, group: GroupId) -> Result<GroupMembership, HostError> {
        self.ask(|reply| Cmd::Members { group, reply })
            .await?
            .ok_or(HostError::NoGroup)
    }

    /// Every group's leader as this replica knows it, and its term.
    ///
    /// # Errors
    /// [`HostError::Stopped`].
    pub async fn leaders(&self) -> Result<Vec<(GroupId, Option<NodeId>, Term)>, HostError> {
        self.ask(|reply| Cmd::Leaders { reply }).await
    }

    /// What the host reports about itself.
    ///
    /// # Errors
    /// [`HostError::Stopped`].
    pub async fn status(&self) -> Result<HostStatus, HostError> {
        self.ask(|reply| Cmd::Status { reply }).await
    }

    /// Syncs the shared log and stops every task of the host.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Cmd::Shutdown { reply }).await;
        self.kill();
    }

    /// Stops every task of the host at once, as a crash would (nothing more is written).
    pub fn kill(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
    }

    /// Whether the host stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// Where a proposal's answer goes.
type Reply = oneshot::Sender<Result<Vec<u8>, HostError>>;

struct Group {
    node: Box<GroupNode>,
    log: GroupLog,
    /// Proposals waiting to be applied: their index, term and proposer.
    waiters: HashMap<Index, (Term, Reply)>,
    dirty: bool,
    /// The incarnation (see `wal`'s module docs).
    epoch: u64,
    /// The newest snapshot file written or being written (`ZERO`: none).
    snap: SnapshotId,
    /// A snapshot taken here is being saved.
    saving: bool,
    /// Chunks of a snapshot a leader is sending.
    staging: Staging,
    /// A snapshot restored from a leader, reported once its file is durable.
    installing: Option<SnapshotMeta<MEMBERS>>,
    /// The membership after the last applied entry (saved with snapshots).
    membership: GroupMembership,
}

/// A frame being built for one peer process: the length prefix, the header, the items.
struct PeerOut {
    id: NodeId,
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    used: usize,
    empty_len: usize,
    last_heard: Instant,
    down: bool,
}

/// What a sync acknowledges.
enum Pending {
    Persist(GroupId, raftlet::PersistToken),
    /// A group's creation, answered once its record is durable.
    Done(oneshot::Sender<Result<(), HostError>>),
    /// A group's removal: answered, and its snapshot file deleted, once its record is durable.
    Removed(GroupKey, SnapshotId, oneshot::Sender<Result<(), HostError>>),
}

struct Host<M: GroupMachine> {
    cfg: HostConfig,
    codec: Codec,
    machine: M,
    wal: SharedWal,
    groups: HashMap<GroupId, Group>,
    awake: HashSet<GroupId>,
    dirty: Vec<GroupId>,
    peers: Vec<PeerOut>,
    batch: Vec<Pending>,
    syncing: Option<Vec<Pending>>,
    sync_tx: mpsc::UnboundedSender<io::Result<()>>,
    status: HostStatus,
    dropped: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
    /// Ticks run.
    ticks: u64,
    /// Groups to campaign in, at a tick: the failed leader's successor is this host.
    campaigns: Vec<(GroupId, u64)>,
    snaps: SnapDir,
    saver: Saver,
    /// The snapshot body each group is streaming to a follower (read once, sent in chunks).
    sending: Sending,
}

const LENGTH_PREFIX: usize = 4;

/// Starts a host: recovers every group from the shared log in `cfg.dir`, listens, connects to
/// its peers.
///
/// # Errors
/// I/O errors of the log or the listening socket.
pub async fn start_host<M: GroupMachine>(cfg: HostConfig, machine: M) -> io::Result<HostHandle> {
    let (wal, recovered) = SharedWal::open(&cfg.dir, cfg.wal)?;
    let live = recovered
        .iter()
        .filter(|(_, r)| !r.voters.is_empty())
        .map(|(&g, r)| (g, r.epoch))
        .collect();
    let (snap_dir, mut found) = snaps::open(&cfg.dir, &live)?;
    let (saved_tx, saved_rx) = mpsc::unbounded_channel();
    let saver = Saver::start(snap_dir.clone(), saved_tx)?;
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let codec = Codec::new(cfg.cluster, cfg.max_frame);
    let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
    let stopped = Arc::new(AtomicBool::new(false));
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(4096);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>(4096);
    let (sync_tx, sync_rx) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicU64::new(0));
    let connects = Arc::new(AtomicU64::new(0));
    let now = Instant::now();
    let mut peers = Vec::new();
    for &(id, paddr) in &cfg.peers {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
        let t = tokio::spawn(peer_writer(paddr, rx, dropped.clone(), connects.clone()));
        tasks.lock().expect("tasks").push(t.abort_handle());
        let mut buf = vec![0u8; LENGTH_PREFIX + cfg.max_frame];
        let header = group::encode_header(&codec, &mut buf[LENGTH_PREFIX..])
            .map_err(|e| io::Error::other(format!("{e}")))?;
        peers.push(PeerOut {
            id,
            tx,
            buf,
            used: LENGTH_PREFIX + header,
            empty_len: LENGTH_PREFIX + header,
            last_heard: now,
            down: false,
        });
    }
    let acceptor = tokio::spawn(accept_loop(listener, in_tx, tasks.clone(), cfg.max_frame));
    tasks.lock().expect("tasks").push(acceptor.abort_handle());
    let mut host = Host {
        codec,
        machine,
        wal,
        groups: HashMap::new(),
        awake: HashSet::new(),
        dirty: Vec::new(),
        peers,
        batch: Vec::new(),
        syncing: None,
        sync_tx,
        status: HostStatus::default(),
        dropped,
        connects,
        ticks: 0,
        campaigns: Vec::new(),
        snaps: snap_dir,
        saver,
        sending: Sending::default(),
        cfg,
    };
    for (g, r) in recovered {
        if r.voters.is_empty() {
            continue; // records of a group whose creation was compacted away and never named
        }
        let created = GroupMembership::new(&r.voters)
            .map_err(|e| io::Error::other(format!("group {g}: {e}")))?;
        let (snap, membership) = match found.remove(&g) {
            Some(f) => {
                host.machine.restore(g, &f.data).map_err(|e| {
                    io::Error::other(format!("group {g}: restoring {:?}: {e}", f.id))
                })?;
                (f.id, f.membership)
            }
            None => (SnapshotId::ZERO, created),
        };
        // The log is compacted only behind a durable snapshot: a log that starts later than
        // the newest snapshot lost what it compacted (a damaged snapshot file).
        if r.log.snapshot().index > snap.index {
            return Err(io::Error::other(format!(
                "group {g}: its log starts after {:?}, its newest intact snapshot is {snap:?}",
                r.log.snapshot()
            )));
        }
        host.add_group(g, r.epoch, membership, r.log, snap)?;
    }
    let id = host.cfg.id;
    let main = tokio::spawn(async move {
        if let Err(e) = host.run(in_rx, cmd_rx, sync_rx, saved_rx).await {
            log::error!("host {id} stopped: {e}");
        }
    });
    tasks.lock().expect("tasks").push(main.abort_handle());
    Ok(HostHandle {
        id,
        addr,
        tx: cmd_tx,
        tasks,
        stopped,
    })
}

async fn accept_loop(
    listener: TcpListener,
    in_tx: mpsc::Sender<Vec<u8>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    max_frame: usize,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let t = tokio::spawn(peer_reader(stream, in_tx.clone(), max_frame));
        tasks.lock().expect("tasks").push(t.abort_handle());
    }
}

async fn peer_reader(stream: TcpStream, in_tx: mpsc::Sender<Vec<u8>>, max_frame: usize) {
    let mut r = BufReader::with_capacity(256 << 10, stream);
    loop {
        // A frame longer than the maximum ends the connection: not a peer of this cluster's
        // configuration.
        let mut frame = Vec::new();
        if !matches!(
            read_frame(&mut r, max_frame, &mut frame, None).await,
            Ok(true)
        ) {
            return;
        }
        if in_tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// How long a peer writer waits after a failed connection attempt before it tries again
/// (frames meanwhile are dropped, as Raft tolerates).
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

async fn peer_writer(
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    connects: Arc<AtomicU64>,
) {
    let mut conn: Option<TcpStream> = None;
    let mut failed_at: Option<tokio::time::Instant> = None;
    let mut out = Vec::with_capacity(256 << 10);
    while let Some(frame) = rx.recv().await {
        out.clear();
        out.extend_from_slice(&frame);
        let mut n = 1u64;
        while out.len() < (256 << 10) {
            match rx.try_recv() {
                Ok(f) => {
                    out.extend_from_slice(&f);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if conn.is_none() && failed_at.is_none_or(|t| t.elapsed() >= RECONNECT_AFTER) {
            connects.fetch_add(1, Ordering::Relaxed);
            let c =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await;
            if let Ok(Ok(c)) = c {
                let _ = c.set_nodelay(true);
                conn = Some(c);
                failed_at = None;
            } else {
                failed_at = Some(tokio::time::Instant::now());
            }
        }
        let Some(c) = conn.as_mut() else {
            dropped.fetch_add(n, Ordering::Relaxed);
            continue;
        };
        if c.write_all(&out).await.is_err() {
            conn = None;
            dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl<M: GroupMachine> Host<M> {
    fn group_config(&self, group: GroupId, membership: GroupMembership) -> Config<MEMBERS> {
        let mut c = Config::with_membership(self.cfg.id, membership);
        c.election_ticks = self.cfg.election_ticks;
        c.heartbeat_ticks = self.cfg.heartbeat_ticks;
        c.quiesce = true;
        c.max_inflight = 4;
        c.seed = (self.cfg.id.0 << 48) ^ group.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        c.log_retention = self.cfg.log_retention;
        c
    }

    /// Adds a replica: `snap` is the snapshot the application was restored from (`ZERO`: none)
    /// and `membership` the one at it (at the creation if none).
    fn add_group(
        &mut self,
        group: GroupId,
        epoch: u64,
        membership: GroupMembership,
        log: GroupLog,
        snap: SnapshotId,
    ) -> io::Result<()> {
        let mut c = self.group_config(group, membership.clone());
        c.snapshot = snap;
        c.applied = snap.index;
        let node =
            GroupNode::new(c, &log).map_err(|e| io::Error::other(format!("group {group}: {e}")))?;
        self.groups.insert(
            group,
            Group {
                node: Box::new(node),
                log,
                waiters: HashMap::new(),
                dirty: false,
                epoch,
                snap,
                saving: false,
                staging: Staging::default(),
                installing: None,
                membership,
            },
        );
        self.awake.insert(group);
        self.mark(group);
        Ok(())
    }

    fn mark(&mut self, group: GroupId) {
        if let Some(g) = self.groups.get_mut(&group)
            && !g.dirty
        {
            g.dirty = true;
            self.dirty.push(group);
        }
    }

    async fn run(
        &mut self,
        mut in_rx: mpsc::Receiver<Vec<u8>>,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut sync_rx: mpsc::UnboundedReceiver<io::Result<()>>,
        mut saved_rx: mpsc::UnboundedReceiver<Saved>,
    ) -> io::Result<()> {
        let mut ticker = tokio::time::interval(self.cfg.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                Some(done) = sync_rx.recv() => {
                    done?;
                    self.sync_done();
                }
                Some(saved) = saved_rx.recv() => self.on_saved(saved)?,
                _ = ticker.tick() => self.on_tick(),
                Some(frame) = in_rx.recv() => {
                    self.on_frame(&frame);
                    for _ in 0..1024 {
                        match in_rx.try_recv() {
                            Ok(f) => self.on_frame(&f),
                            Err(_) => break,
                        }
                    }
                }
                Some(cmd) = cmd_rx.recv() => {
                    if self.on_cmd(cmd)? {
                        return Ok(());
                    }
                    for _ in 0..1024 {
                        match cmd_rx.try_recv() {
                            Ok(c) => if self.on_cmd(c)? { return Ok(()); },
                            Err(_) => break,
                        }
                    }
                }
                else => return Ok(()),
            }
            self.drain()?;
            self.flush_peers();
            self.maybe_sync()?;
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let mut ping = vec![0u8; LENGTH_PREFIX + 11];
        let n = postcard::to_slice(&(0u8, self.cfg.id.0), &mut ping[LENGTH_PREFIX..])
            .map(|b| b.len())
            .unwrap_or(0);
        ping.truncate(LENGTH_PREFIX + n);
        ping[..LENGTH_PREFIX].copy_from_slice(&(n as u32).to_le_bytes());
        let mut failed = Vec::new();
        for p in &mut self.peers {
            if p.tx.try_send(ping.clone()).is_ok() {
                self.status.frames_sent += 1;
            } else {
                self.status.frames_dropped += 1;
            }
            if !p.down && now.duration_since(p.last_heard) > self.cfg.liveness_timeout {
                p.down = true;
                failed.push(p.id);
            }
        }
        for peer in failed {
            log::info!("host {}: peer {} failed", self.cfg.id, peer);
            let down: Vec<NodeId> = self.peers.iter().filter(|p| p.down).map(|p| p.id).collect();
            let delay = self.campaign_delay_ticks();
            let ids: Vec<GroupId> = self.groups.keys().copied().collect();
            for g in ids {
                if let Some(grp) = self.groups.get_mut(&g) {
                    grp.node.report_peer_down(peer);
                    // The groups the failed process led: the lowest live voter campaigns half
                    // a liveness timeout from now (by then the other hosts noticed the failure
                    // too, so no follower still refuses votes for the failed leader's sake)
                    // instead of waiting out an election timeout. Every host applies the same
                    // rule to the same failure, so one campaigns; should their views differ, the
                    // election timeouts settle it as usual. A group that elected a leader
                    // meanwhile is left alone.
                    let orphan = grp.node.role() == Role::Follower
                        && grp.node.leader().is_none_or(|l| l == peer);
                    let successor = grp
                        .node
                        .voters()
                        .iter()
                        .copied()
                        .filter(|v| !down.contains(v))
                        .min();
                    if orphan && successor == Some(self.cfg.id) {
                        self.campaigns.push((g, self.ticks + delay));
                    }
                    if !grp.node.is_quiescent() {
                        self.awake.insert(g);
                    }
                }
                self.mark(g);
            }
        }
        let due: Vec<GroupId> = self
            .campaigns
            .iter()
            .filter(|(_, at)| *at <= self.ticks)
            .map(|(g, _)| *g)
            .collect();
        self.campaigns.retain(|(_, at)| *at > self.ticks);
        for g in due {
            if let Some(grp) = self.groups.get_mut(&g)
                && grp.node.role() == Role::Follower
            {
                grp.node.campaign(&grp.log);
                self.awake.insert(g);
                self.mark(g);
            }
        }
        self.ticks += 1;
        let awake: Vec<GroupId> = self.awake.iter().copied().collect();
        for g in awake {
            if let Some(grp) = self.groups.get_mut(&g) {
                grp.node.tick(&grp.log);
            }
            self.mark(g);
        }
    }

    /// Ticks a successor waits after noticing its leader's process failed before it
    /// campaigns: half the liveness timeout (at least 2 ticks), by which time the other hosts,
    /// whose pings and ticks run on clocks of their own, noticed the failure too.
    fn campaign_delay_ticks(&self) -> u64 {
        let tick = self.cfg.tick.as_micros().max(1);
        let half = self.cfg.liveness_timeout.as_micros() / 2;
        (half.div_ceil(tick) as u64).max(2)
    }

    fn heard(&mut self, from: u64) {
        let Some(p) = self.peers.iter_mut().find(|p| p.id.0 == from) else {
            return;
        };
        p.last_heard = Instant::now();
        if p.down {
            p.down = false;
            let peer = p.id;
            log::info!("host {}: peer {} is back", self.cfg.id, peer);
            let ids: Vec<GroupId> = self.groups.keys().copied().collect();
            for g in ids {
                // Draining the group (this turn) puts it back among the awake ones if it woke.
                if let Some(grp) = self.groups.get_mut(&g) {
                    grp.node.report_peer_up(peer);
                }
                self.mark(g);
            }
        }
    }

    fn on_frame(&mut self, frame: &[u8]) {
        if frame.first() == Some(&0) {
            match postcard::from_bytes::<(u8, u64)>(frame) {
                Ok((_, from)) => self.heard(from),
                Err(_) => self.status.bad_frames += 1,
            }
            return;
        }
        let Ok(mut r) = GroupFrameReader::new(&self.codec, frame) else {
            self.status.bad_frames += 1;
            return;
        };
        let mut first = true;
        while let Some(item) = r.next::<Payload, Vec<raftlet::Entry<Payload>>>() {
            let Ok((g, mut msg)) = item else {
                self.status.bad_frames += 1;
                return;
            };
            if first {
                self.heard(msg.from.0);
                first = false;
            }
            let Some(grp) = self.groups.get_mut(&g) else {
                self.status.unknown_group += 1;
                continue;
            };
            let _ = grp.node.step_taking(&mut msg, &grp.log);
            self.mark(g);
        }
    }

    /// Returns whether the host is to stop.
    fn on_cmd(&mut self, cmd: Cmd) -> io::Result<bool> {
        match cmd {
            Cmd::Create {
                group,
                voters,
                reply,
            } => {
                if self.groups.contains_key(&group) {
                    let _ = reply.send(Err(HostError::Exists));
                } else if let Ok(m) = GroupMembership::new(&voters) {
                    let epoch = self.wal.create_group(group, &voters)?;
                    self.add_group(group, epoch, m, GroupLog::default(), SnapshotId::ZERO)?;
                    self.batch.push(Pending::Done(reply));
                } else {
                    let _ = reply.send(Err(HostError::Invalid));
                }
            }
            Cmd::Remove { group, reply } => match self.groups.remove(&group) {
                None => {
                    let _ = reply.send(Err(HostError::NoGroup));
                }
                Some(g) => {
                    self.wal.remove_group(group)?;
                    self.awake.remove(&group);
                    for (_, (_, w)) in g.waiters {
                        let _ = w.send(Err(HostError::LeadershipLost));
                    }
                    self.machine.removed(group);
                    self.sending.end(group);
                    self.batch
                        .push(Pending::Removed((group, g.epoch), g.snap, reply));
                }
            },
            Cmd::Propose {
                group,
                command,
                reply,
            } => self.submit(group, reply, |grp| {
                grp.node.propose(command, &grp.log).map_err(|e| match e {
                    ProposeError::NotLeader { leader, .. } => HostError::NotLeader(leader),
                    _ => HostError::Full,
                })
            }),
            Cmd::ChangeMembership {
                group,
                change,
                reply,
            } => self.submit(group, reply, |grp| {
                grp.node
                    .propose_conf_change(change, &grp.log)
                    .map_err(|e| match e {
                        MembershipError::NotLeader { leader } => HostError::NotLeader(leader),
                        MembershipError::Full => HostError::Full,
                        e => HostError::Membership(e),
                    })
            }),
            Cmd::Members { group, reply } => {
                let _ = reply.send(self.groups.get(&group).map(|g| g.node.membership().clone()));
            }
            Cmd::Leaders { reply } => {
                let _ = reply.send(
                    self.groups
                        .iter()
                        .map(|(&g, grp)| (g, grp.node.leader(), grp.node.term()))
                        .collect(),
                );
            }
            Cmd::Status { reply } => {
                let mut s = self.status.clone();
                s.groups = self.groups.len();
                s.awake = self.awake.len();
                s.leading = self
                    .groups
                    .values()
                    .filter(|g| g.node.role() == Role::Leader)
                    .count();
                s.frames_dropped += self.dropped.load(Ordering::Relaxed);
                s.connects = self.connects.load(Ordering::Relaxed);
                s.peers_down = self
                    .peers
                    .iter()
                    .filter(|p| p.down)
                    .map(|p| p.id.0)
                    .collect();
                s.wal_segments = self.wal.segment_count();
                s.log_entries = self
                    .groups
                    .values()
                    .map(|g| g.log.last_index().0 - g.log.snapshot().index.0)
                    .sum();
                let _ = reply.send(s);
            }
            Cmd::Shutdown { reply } => {
                self.wal.sync()?;
                let _ = reply.send(());
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends an entry to `group`'s log with `append`; `reply` is answered once it is applied
    /// here, or at once if it could not be appended.
    fn submit(
        &mut self,
        group: GroupId,
        reply: Reply,
        append: impl FnOnce(&mut Group) -> Result<Index, HostError>,
    ) {
        let Some(grp) = self.groups.get_mut(&group) else {
            let _ = reply.send(Err(HostError::NoGroup));
            return;
        };
        match append(grp) {
            Ok(index) => {
                grp.waiters.insert(index, (grp.node.term(), reply));
                self.mark(group);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Drains every group an input touched.
    fn drain(&mut self) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        for g in &dirty {
            self.drain_group(*g)?;
        }
        self.dirty = dirty;
        self.dirty.clear();
        Ok(())
    }

    fn drain_group(&mut self, g: GroupId) -> io::Result<()> {
        let Some(grp) = self.groups.get_mut(&g) else {
            return Ok(());
        };
        grp.dirty = false;
        let key = (g, grp.epoch);
        let Group {
            node,
            log,
            waiters,
            snap,
            saving,
            staging,
            installing,
            membership,
            ..
        } = grp;
        while let Some(action) = node.poll_action() {
            match action {
                Action::Send(out) => {
                    let to = out.to();
                    let Some(p) = self.peers.iter_mut().find(|p| p.id == to) else {
                        continue;
                    };
                    let mut attempt =
                        group::encode_outgoing_item(g, &out, &*log, &mut p.buf[p.used..]);
                    if attempt == Err(raftlet::wire::EncodeError::TooLong) && p.used > p.empty_len {
                        flush_peer(p, &mut self.status);
                        attempt = group::encode_outgoing_item(g, &out, &*log, &mut p.buf[p.used..]);
                    }
                    match attempt {
                        Ok(n) => {
                            p.used += n;
                            self.status.messages_sent += 1;
                        }
                        Err(_) => self.status.frames_dropped += 1,
                    }
                }
                Action::Persist(p) => {
                    self.wal.write(g, log, &p)?;
                    self.batch.push(Pending::Persist(g, p.token));
                }
                Action::Apply { first, last } => {
                    let mut i = first;
                    while i <= last {
                        if let Some(e) = log.get(i) {
                            let answer = match &e.data {
                                EntryData::Normal(cmd) => Some(self.machine.apply(g, i, cmd)),
                                EntryData::Membership(c) => {
                                    match membership.apply(c) {
                                        Ok(m) => *membership = m,
                                        Err(e) => log::warn!("group {g}: change at {i}: {e}"),
                                    }
                                    Some(Vec::new())
                                }
                                EntryData::Noop => None,
                            };
                            if let Some((term, w)) = waiters.remove(&i) {
                                let _ = w.send(if term == e.term {
                                    answer.ok_or(HostError::LeadershipLost)
                                } else {
                                    Err(HostError::LeadershipLost)
                                });
                            }
                        }
                        i = i.next();
                    }
                }
                Action::Compact { through } => self.wal.compact(g, log, through)?,
                Action::ReadSnapshotChunk { to, snapshot, seq } => {
                    // A snapshot replaced meanwhile: the node starts over with its newest.
                    let Some(body) = self.sending.body(&self.snaps, key, snapshot)? else {
                        continue;
                    };
                    if let Some((part, sum)) = snaps::chunk(&body, seq)
                        && node
                            .snapshot_chunk(to, snapshot, seq, part.to_vec(), sum)
                            .is_ok()
                    {
                        self.status.chunks_sent += 1;
                    }
                }
                Action::WriteSnapshotChunk {
                    snapshot,
                    seq,
                    data,
                } => staging.push(snapshot, seq, data),
                Action::RestoreSnapshot { snapshot, checksum } => {
                    let restored = match staging.finish(snapshot, checksum) {
                        None => Err("checksum".to_string()),
                        Some(body) => match snaps::decode(&body) {
                            None => Err("not a snapshot body".to_string()),
                            Some((m, data)) => self.machine.restore(g, &data).map(|()| (m, body)),
                        },
                    };
                    match restored {
                        // Reported once the file is durable (`on_saved`).
                        Ok((m, body)) => {
                            let replaces = (*snap != SnapshotId::ZERO).then_some(*snap);
                            self.saver
                                .save(key, snapshot, body, replaces, Purpose::Installed);
                            *snap = snapshot;
                            *membership = m.clone();
                            *installing = Some(SnapshotMeta {
                                id: snapshot,
                                membership: m,
                            });
                        }
                        Err(e) => {
                            log::warn!("group {g}: snapshot {snapshot:?} not restored: {e}");
                            let _ = node.snapshot_installed(Err(InstallError::Failed), &*log);
                        }
                    }
                }
                Action::InstallSnapshotFromLeader { .. } => {
                    // Notify mode is not used by the host's groups.
                    let _ = node.snapshot_installed(Err(InstallError::Unavailable), &*log);
                }
                Action::InstallComplete { .. } => {
                    self.sending.end(g);
                }
                _ => {}
            }
        }
        if node.role() != Role::Leader {
            if !waiters.is_empty() {
                for (_, (_, w)) in waiters.drain() {
                    let _ = w.send(Err(HostError::LeadershipLost));
                }
            }
            // A deposed leader streams no more.
            self.sending.end(g);
        }
        // A snapshot once enough has been applied since the last one: saved off this task,
        // the log compacted once it is durable (`on_saved`).
        let applied = node.applied_index();
        if self.cfg.snapshot_every > 0
            && !*saving
            && applied.0 >= snap.index.0 + self.cfg.snapshot_every
            && let Some(term) = log.term(applied)
        {
            let id = SnapshotId {
                index: applied,
                term,
            };
            let replaces = (*snap != SnapshotId::ZERO).then_some(*snap);
            let body = snaps::encode(membership, &self.machine.snapshot(g));
            self.saver.save(key, id, body, replaces, Purpose::Taken);
            *snap = id;
            *saving = true;
        }
        if node.is_quiescent() {
            self.awake.remove(&g);
        } else {
            self.awake.insert(g);
        }
        Ok(())
    }

    /// A snapshot file is durable: a taken one lets the node compact, an installed one is
    /// reported.
    fn on_saved(&mut self, s: Saved) -> io::Result<()> {
        s.result?;
        let (g, epoch) = s.key;
        let Some(grp) = self.groups.get_mut(&g).filter(|x| x.epoch == epoch) else {
            return Ok(()); // removed meanwhile
        };
        match s.purpose {
            Purpose::Taken => {
                grp.saving = false;
                match grp.node.snapshot_taken(s.id, &grp.log) {
                    Ok(()) => self.status.snapshots += 1,
                    Err(e) => log::debug!("group {g}: snapshot {:?} not taken: {e}", s.id),
                }
            }
            Purpose::Installed => {
                // Only the install this save is of (a later one keeps waiting for its own).
                if let Some(meta) = grp.installing.take_if(|m| m.id == s.id)
                    && grp.node.snapshot_installed(Ok(meta), &grp.log).is_ok()
                {
                    self.status.installs += 1;
                }
            }
        }
        self.mark(g);
        Ok(())
    }

    fn flush_peers(&mut self) {
        for p in &mut self.peers {
            if p.used > p.empty_len {
                flush_peer(p, &mut self.status);
            }
        }
    }

    fn maybe_sync(&mut self) -> io::Result<()> {
        if self.syncing.is_some() || self.batch.is_empty() {
            return Ok(());
        }
        let groups = &self.groups;
        if self.wal.maybe_roll(|g| groups.get(&g).map(|x| &x.log))? {
            // Rolling synced everything written.
            let batch = std::mem::take(&mut self.batch);
            self.acknowledge(batch);
            return Ok(());
        }
        match self.wal.start_sync()? {
            None => {
                let batch = std::mem::take(&mut self.batch);
                self.acknowledge(batch);
            }
            Some(job) => {
                self.syncing = Some(std::mem::take(&mut self.batch));
                let tx = self.sync_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = tx.send(job());
                });
                self.status.syncs += 1;
            }
        }
        Ok(())
    }

    fn sync_done(&mut self) {
        if let Some(batch) = self.syncing.take() {
            self.acknowledge(batch);
        }
    }

    fn acknowledge(&mut self, batch: Vec<Pending>) {
        for p in batch {
            match p {
                Pending::Persist(g, token) => {
                    if let Some(grp) = self.groups.get_mut(&g) {
                        let _ = grp.node.persisted(token, &grp.log);
                        self.status.persists += 1;
                        self.mark(g);
                    }
                }
                Pending::Done(reply) => {
                    let _ = reply.send(Ok(()));
                }
                Pending::Removed(key, snap, reply) => {
                    if snap != SnapshotId::ZERO {
                        self.saver.delete(key, snap);
                    }
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }
}

fn flush_peer(p: &mut PeerOut, status: &mut HostStatus) {
    let len = (p.used - LENGTH_PREFIX) as u32;
    p.buf[..LENGTH_PREFIX].copy_from_slice(&len.to_le_bytes());
    let frame = p.buf[..p.used].to_vec();
    p.used = p.empty_len;
    if p.tx.try_send(frame).is_ok() {
        status.frames_sent += 1;
    } else {
        status.frames_dropped += 1;
    }
}
