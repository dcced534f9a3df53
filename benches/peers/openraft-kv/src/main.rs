//! `openraft-kv`: the peer `benches/compare-openraft.sh` measures raftlet-kv against.
//!
//! A replicated key-value server on openraft 0.9 (the newest stable release, storage v2), built
//! the way openraft's own examples build one (`raft-kv-memstore`: a `BTreeMap` state machine,
//! `Raft::client_write` for writes, `Raft::initialize` on one node), with what a benchmark of
//! durable consensus needs and the example leaves out, done at openraft's best:
//!
//! * **Durable log**: entries go to an append-only file, preallocated with zeros (as
//!   raftlet's segments are, so that `fdatasync` writes no inode); `append` writes them and
//!   hands the `fdatasync` to a thread that calls openraft's `LogFlushed` callback once they
//!   are durable, so openraft never waits for the disk inside its core task. That thread
//!   syncs once for every append queued behind it (group commit, as raftlet does).
//! * **Durable vote**: written to a temporary file, synced, renamed, directory synced, before
//!   `save_vote` returns (the same as raftlet's hard state).
//! * **Snapshots**: every 10,000 entries (raftlet-kv's setting), written to a file and synced.
//! * **Network**: one TCP connection per replication stream, length-prefixed postcard frames
//!   (lighter than the example's HTTP + JSON, which would handicap openraft).
//! * **Clients**: raftlet-kv's client protocol (first byte `C`, then postcard frames of
//!   `Envelope` / `Reply`), so that `raftlet-kv bench` drives both systems the same way.
//!
//! ```text
//! openraft-kv --id N --peers 1=host:port,2=host:port,3=host:port --data DIR [--no-fsync]
//! ```
//!
//! `--no-fsync` acknowledges appends without syncing them: not durable, an upper bound of what
//! openraft does on this machine when the disk costs nothing.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, ServerState,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use raftlet_tokio::kv::{Envelope, NodeStatus, Reply, Request};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A command in the log.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum KvReq {
    /// Set a key.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
}

/// The answer to a command.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct KvResp;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = KvReq,
        R = KvResp,
);

type NodeId = u64;
type Raft = openraft::Raft<TypeConfig>;
type SErr = StorageError<NodeId>;

/// Preallocated bytes of a log file.
const PREALLOCATE: u64 = 256 << 20;
/// Snapshot every this many entries (raftlet-kv's `snapshot_every`).
const SNAPSHOT_EVERY: u64 = 10_000;

fn io_err(e: std::io::Error) -> SErr {
    StorageIOError::write_logs(&e).into()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

// ----- the durable log ---------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Entry<TypeConfig>),
    Truncate(u64),
    Purge(LogId<NodeId>),
}

struct LogInner {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    file: Arc<File>,
    buf: Vec<u8>,
    dir: PathBuf,
}

impl LogInner {
    fn record(&mut self, r: &Record) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf = postcard::to_extend(r, std::mem::take(&mut self.buf)).expect("serializes");
        let len = (self.buf.len() - start - 4) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.file).write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Syncs the log file for every callback queued, once per batch.
struct Syncer {
    jobs: std::sync::mpsc::Sender<(Arc<File>, LogFlushed<TypeConfig>)>,
}

impl Syncer {
    fn start(syncs: Arc<AtomicU64>) -> Self {
        let (jobs, rx) = std::sync::mpsc::channel::<(Arc<File>, LogFlushed<TypeConfig>)>();
        std::thread::spawn(move || {
            while let Ok((file, cb)) = rx.recv() {
                let mut batch = vec![cb];
                while let Ok((_, more)) = rx.try_recv() {
                    batch.push(more);
                }
                let r = file.sync_data();
                syncs.fetch_add(1, Ordering::Relaxed);
                for cb in batch {
                    cb.log_io_completed(
                        r.as_ref()
                            .map(|_| ())
                            .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
                    );
                }
            }
        });
        Self { jobs }
    }
}

#[derive(Clone)]
struct LogStore {
    inner: Arc<Mutex<LogInner>>,
    syncer: Arc<Syncer>,
    /// `--no-fsync`: acknowledge appends once written, without `fdatasync` (an upper bound
    /// for openraft, not a durable configuration).
    no_fsync: bool,
}

impl LogStore {
    fn open(dir: &Path, syncs: Arc<AtomicU64>, no_fsync: bool) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut at = 0u64;
        if let Ok(bytes) = fs::read(&path) {
            let mut p = 0usize;
            while p + 4 <= bytes.len() {
                let len = u32::from_le_bytes(bytes[p..p + 4].try_into().expect("4")) as usize;
                let Some(body) = bytes.get(p + 4..p + 4 + len).filter(|_| len > 0) else {
                    break;
                };
                let Ok(r) = postcard::from_bytes::<Record>(body) else {
                    break;
                };
                match r {
                    Record::Entry(e) => {
                        entries.insert(e.log_id.index, e);
                    }
                    Record::Truncate(i) => {
                        entries.split_off(&i);
                    }
                    Record::Purge(id) => {
                        entries = entries.split_off(&(id.index + 1));
                        last_purged = Some(id);
                    }
                }
                p += 4 + len;
            }
            at = p as u64;
        } else {
            // Preallocate, so that appends never change the file's size.
            let mut f = File::create(&path)?;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..PREALLOCATE / (1 << 20) {
                f.write_all(&zeros)?;
            }
            f.sync_all()?;
            File::open(dir)?.sync_all()?;
        }
        let vote = fs::read(dir.join("vote"))
            .ok()
            .and_then(|b| postcard::from_bytes(&b).ok());
        let mut file = OpenOptions::new().write(true).open(&path)?;
        file.seek(SeekFrom::Start(at))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(LogInner {
                entries,
                last_purged,
                vote,
                committed: None,
                file: Arc::new(file),
                buf: Vec::with_capacity(64 << 10),
                dir: dir.to_path_buf(),
            })),
            syncer: Arc::new(Syncer::start(syncs)),
            no_fsync,
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let inner = self.inner.lock().unwrap();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        let dir = {
            let mut inner = self.inner.lock().unwrap();
            inner.vote = Some(*vote);
            inner.dir.clone()
        };
        let bytes = postcard::to_allocvec(vote).expect("serializes");
        write_atomic(&dir.join("vote"), &bytes).map_err(io_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        Ok(self.inner.lock().unwrap().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        self.inner.lock().unwrap().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(self.inner.lock().unwrap().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let file = {
            let mut inner = self.inner.lock().unwrap();
            for e in entries {
                inner.record(&Record::Entry(e.clone()));
                inner.entries.insert(e.log_id.index, e);
            }
            inner.flush().map_err(io_err)?;
            inner.file.clone()
        };
        if self.no_fsync {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        self.syncer
            .jobs
            .send((file, callback))
            .map_err(|_| io_err(std::io::Error::other("the sync thread stopped")))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let mut inner = self.inner.lock().unwrap();
        inner.entries.split_off(&log_id.index);
        inner.record(&Record::Truncate(log_id.index));
        inner.flush().map_err(io_err)?;
        inner.file.sync_data().map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let mut inner = self.inner.lock().unwrap();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        inner.record(&Record::Purge(log_id));
        inner.flush().map_err(io_err)
    }
}

// ----- the state machine -------------------------------------------------------------------

#[derive(Serialize, Deserialize, Default, Clone)]
struct SmData {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    data: BTreeMap<ByteBuf, ByteBuf>,
}

struct SmInner {
    sm: SmData,
    current: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshots: u64,
    dir: PathBuf,
}

#[derive(Clone)]
struct SmStore {
    inner: Arc<Mutex<SmInner>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let (meta, bytes, dir) = {
            let mut inner = self.inner.lock().unwrap();
            let bytes = postcard::to_allocvec(&inner.sm).expect("serializes");
            inner.snapshots += 1;
            let last = inner.sm.last_applied;
            let meta = SnapshotMeta {
                last_log_id: last,
                last_membership: inner.sm.last_membership.clone(),
                snapshot_id: format!("{}-{}", last.map_or(0, |l| l.index), inner.snapshots),
            };
            inner.current = Some((meta.clone(), bytes.clone()));
            (meta, bytes, inner.dir.clone())
        };
        write_atomic(&dir.join("snapshot"), &bytes).map_err(io_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SErr> {
        let inner = self.inner.lock().unwrap();
        Ok((inner.sm.last_applied, inner.sm.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<KvResp>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for e in entries {
            inner.sm.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(KvReq::Put { key, value }) => {
                    inner
                        .sm
                        .data
                        .insert(ByteBuf::from(key), ByteBuf::from(value));
                }
                EntryPayload::Membership(m) => {
                    inner.sm.last_membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            out.push(KvResp);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let bytes = snapshot.into_inner();
        let sm: SmData = postcard::from_bytes(&bytes)
            .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
        let dir = {
            let mut inner = self.inner.lock().unwrap();
            inner.sm = sm;
            inner.current = Some((meta.clone(), bytes.clone()));
            inner.dir.clone()
        };
        write_atomic(&dir.join("snapshot"), &bytes).map_err(io_err)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.current.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

// ----- the network ---------------------------------------------------------------------------

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 64 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(())
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame).await
}

#[derive(Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

struct NetFactory;

struct NetClient {
    target: NodeId,
    addr: String,
    conn: Option<BufReader<TcpStream>>,
    buf: Vec<u8>,
}

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = NetClient;
    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> NetClient {
        NetClient {
            target,
            addr: node.addr.clone(),
            conn: None,
            buf: Vec::new(),
        }
    }
}

impl NetClient {
    async fn call<T: for<'de> Deserialize<'de>>(&mut self, rpc: &Rpc) -> std::io::Result<T> {
        if self.conn.is_none() {
            let mut s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            s.write_all(b"R").await?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected");
        let body = postcard::to_allocvec(rpc).expect("serializes");
        let r = async {
            write_frame(conn, &body).await?;
            read_frame(conn, &mut self.buf).await?;
            postcard::from_bytes(&self.buf).map_err(|e| std::io::Error::other(e.to_string()))
        }
        .await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for NetClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let r: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = self
            .call(&Rpc::Append(rpc))
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let r: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
            self.call(&Rpc::Snapshot(rpc))
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let r: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            self.call(&Rpc::Vote(rpc))
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

// ----- the server ----------------------------------------------------------------------------

struct Server {
    id: NodeId,
    raft: Raft,
    syncs: Arc<AtomicU64>,
}

async fn serve_peer(server: Arc<Server>, stream: TcpStream) -> std::io::Result<()> {
    let mut s = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        read_frame(&mut s, &mut buf).await?;
        let rpc: Rpc =
            postcard::from_bytes(&buf).map_err(|e| std::io::Error::other(e.to_string()))?;
        let out = match rpc {
            Rpc::Append(r) => postcard::to_allocvec(&server.raft.append_entries(r).await),
            Rpc::Vote(r) => postcard::to_allocvec(&server.raft.vote(r).await),
            Rpc::Snapshot(r) => postcard::to_allocvec(&server.raft.install_snapshot(r).await),
        }
        .expect("serializes");
        write_frame(&mut s, &out).await?;
    }
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "Leader",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        _ => "Follower",
    }
}

async fn serve_client(server: Arc<Server>, stream: TcpStream) -> std::io::Result<()> {
    let mut s = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        read_frame(&mut s, &mut buf).await?;
        let reply = match postcard::from_bytes::<Envelope>(&buf) {
            Err(_) => Reply::NotApplied("undecodable request".into()),
            Ok(env) => match env.request {
                Request::Put { key, value } => {
                    match server.raft.client_write(KvReq::Put { key, value }).await {
                        Ok(_) => Reply::Applied,
                        Err(RaftError::APIError(e)) => Reply::NotApplied(e.to_string()),
                        Err(e) => Reply::Unknown(e.to_string()),
                    }
                }
                Request::Status => {
                    let m = server.raft.metrics().borrow().clone();
                    let role = role_name(m.state);
                    Reply::Status(format!(
                        "node {} {role} term {} leader {} applied {} syncs {}",
                        server.id,
                        m.current_term,
                        m.current_leader.map_or("none".into(), |l| l.to_string()),
                        m.last_applied.map_or(0, |l| l.index),
                        server.syncs.load(Ordering::Relaxed)
                    ))
                }
                Request::NodeStatus => {
                    let m = server.raft.metrics().borrow().clone();
                    let role = role_name(m.state);
                    Reply::Node(Box::new(NodeStatus {
                        id: server.id,
                        role: role.into(),
                        term: m.current_term,
                        leader: m.current_leader,
                        commit: m.last_applied.map_or(0, |l| l.index),
                        applied: m.last_applied.map_or(0, |l| l.index),
                        last_index: m.last_log_index.unwrap_or(0),
                        log_start: m.purged.map_or(0, |l| l.index),
                        voters: Vec::new(),
                        learners: Vec::new(),
                        joint: false,
                        syncs: server.syncs.load(Ordering::Relaxed),
                        metrics: Default::default(),
                        peers: Vec::new(),
                    }))
                }
                _ => Reply::NotApplied("not supported by the openraft peer".into()),
            },
        };
        write_frame(&mut s, &postcard::to_allocvec(&reply).expect("serializes")).await?;
    }
}

fn usage() -> ! {
    eprintln!("usage: openraft-kv --id N --peers 1=host:port,2=host:port,... --data DIR");
    std::process::exit(64)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|k| args.get(k + 1))
            .cloned()
    };
    let (Some(id), Some(peers), Some(data)) = (
        opt("--id").and_then(|s| s.parse::<u64>().ok()),
        opt("--peers"),
        opt("--data"),
    ) else {
        usage()
    };
    let peers: BTreeMap<NodeId, BasicNode> = peers
        .split(',')
        .map(|p| {
            let (i, a) = p.split_once('=').unwrap_or_else(|| usage());
            (i.parse().unwrap_or_else(|_| usage()), BasicNode::new(a))
        })
        .collect();
    let listen: SocketAddr = peers
        .get(&id)
        .unwrap_or_else(|| usage())
        .addr
        .parse()
        .unwrap_or_else(|_| usage());
    let dir = PathBuf::from(data);
    let syncs = Arc::new(AtomicU64::new(0));
    let no_fsync = args.iter().any(|a| a == "--no-fsync");
    let log = LogStore::open(&dir, syncs.clone(), no_fsync).expect("opening the log");
    let sm = SmStore {
        inner: Arc::new(Mutex::new(SmInner {
            sm: SmData::default(),
            current: None,
            snapshots: 0,
            dir: dir.clone(),
        })),
    };
    // raftlet-kv's timing: heartbeat every 100 ms, election after 0.5-1 s.
    let config = openraft::Config {
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        ..Default::default()
    }
    .validate()
    .expect("a valid configuration");
    let raft = Raft::new(id, Arc::new(config), NetFactory, log, sm)
        .await
        .expect("raft starts");
    let server = Arc::new(Server {
        id,
        raft: raft.clone(),
        syncs,
    });
    let listener = TcpListener::bind(listen).await.expect("bind");
    eprintln!("openraft-kv node {id} serving on {listen}");
    if id == *peers.keys().next().expect("a peer") {
        let raft = raft.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if let Err(e) = raft.initialize(peers).await {
                eprintln!("initialize: {e}");
            }
        });
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut kind = [0u8; 1];
            if stream.read_exact(&mut kind).await.is_err() {
                return;
            }
            let _ = match kind[0] {
                b'R' => serve_peer(server, stream).await,
                b'C' => serve_client(server, stream).await,
                _ => Ok(()),
            };
        });
    }
}
