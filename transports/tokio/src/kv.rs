//! A replicated key-value store on the runner: its state machine, its client protocol, the
//! server side of that protocol (any node accepts a request; writes go to the leader), and a
//! client.
//!
//! # Client protocol
//! A client connects to a node's port and sends one byte, `C`. Then, any number of times, it
//! sends a request and reads the reply, each a frame: a 4-byte little-endian length and the
//! postcard encoding of an [`Envelope`] (client to node) or a [`Reply`] (node to client).
//!
//! | reply | meaning | `raftlet-kv` exit code |
//! |---|---|---|
//! | `Applied`, `Value(..)`, `Status(..)` | done | 0 (4 for `get` of a missing key) |
//! | `CasFailed { current }` | the expected value did not match: nothing written | 2 |
//! | `NotApplied(why)` | refused before it was proposed (no leader, log full, ...): nothing written | 2 |
//! | `Unknown(why)` | proposed, outcome unknown (the leader was lost): it may or may not be applied | 3 |
//!
//! A client that cannot connect, or whose connection fails before the request is sent, knows
//! the request was not applied (exit 2). A timeout, or a connection lost after sending, is
//! unknown (exit 3). A node never answers `NotApplied` for a write that may still be applied.
//!
//! `get` is linearizable (ReadIndex, served by whichever node was asked); `get --stale` reads
//! the node's state as it is.

use crate::net::{ClientConnection, NetOptions, Network, Stream, Transport};
use crate::net::{read_frame, write_frame};
use crate::runner::{self, ClientError, Handle, RunnerConfig, StartError, StateMachine};
use crate::storage::{DiskLog, LogStore, Recovery};
use crate::tls::Tls;
use raftlet::{Change, ConfChange, Index, NodeId};
use serde::{Deserialize, Serialize};
use serde_bytes::{ByteBuf, Bytes};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The largest client frame.
pub const MAX_CLIENT_FRAME: usize = 1 << 20;

/// A command in the log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum KvCommand {
    /// Set a key.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Set a key if its value is `expect` (`None`: if it is absent).
    Cas {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value it must have.
        #[serde(with = "serde_bytes")]
        expect: Option<Vec<u8>>,
        /// The value to set.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// Record the address of a node (replicated, so every node can reach it).
    SetPeer {
        /// The node.
        id: u64,
        /// Its address.
        addr: SocketAddr,
    },
}

/// A state-machine answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum KvAnswer {
    /// Written.
    Done,
    /// A compare-and-set found another value.
    CasFailed {
        /// The value found.
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// A value read.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// A digest of the whole store.
    Digest {
        /// Number of keys.
        keys: u64,
        /// FNV-1a over every key and value, in key order.
        hash: u64,
    },
}

/// A query.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum KvQuery {
    /// The value of a key.
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A digest of the store (to compare nodes).
    Digest,
}

/// The key-value state machine. Node addresses are replicated state too (`SetPeer`): a
/// store given the node's transport ([`Kv::with_transport`]) tells it every address it
/// learns, from the log or from a snapshot.
#[derive(Default, Clone)]
pub struct Kv {
    state: KvState,
    transport: Option<Arc<dyn Transport>>,
}

/// What a snapshot of the store holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct KvState {
    data: Data,
    peers: BTreeMap<u64, SocketAddr>,
}

/// Shards of the key space (by CRC-32 of the key).
const SHARDS: usize = 256;

/// The keys and values, in shards shared copy-on-write: copying the store for a snapshot copies
/// 256 pointers, and a write after it copies only the one shard it touches (once per snapshot),
/// so a snapshot of a large store costs the node no stall while it is serialized elsewhere.
/// Serialized as one map, as a `BTreeMap` of the same pairs would be.
#[derive(Debug, Clone)]
struct Data {
    shards: Vec<Arc<BTreeMap<ByteBuf, ByteBuf>>>,
    len: usize,
}

impl Default for Data {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }
}

impl Data {
    fn shard(key: &[u8]) -> usize {
        crc32fast::hash(key) as usize % SHARDS
    }
    fn get(&self, key: &[u8]) -> Option<&ByteBuf> {
        self.shards[Self::shard(key)].get(Bytes::new(key))
    }
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let shard = Arc::make_mut(&mut self.shards[Self::shard(&key)]);
        if shard
            .insert(ByteBuf::from(key), ByteBuf::from(value))
            .is_none()
        {
            self.len += 1;
        }
    }
    fn len(&self) -> usize {
        self.len
    }
    /// Every pair, shard by shard, each in key order: the same order on every node.
    fn iter(&self) -> impl Iterator<Item = (&ByteBuf, &ByteBuf)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

impl Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = ser.serialize_map(Some(self.len))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let pairs = BTreeMap::<ByteBuf, ByteBuf>::deserialize(de)?;
        let mut data = Self::default();
        for (k, v) in pairs {
            data.insert(k.into_vec(), v.into_vec());
        }
        Ok(data)
    }
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("keys", &self.state.data.len())
            .field("peers", &self.state.peers)
            .finish()
    }
}

fn encode<T: Serialize>(t: &T) -> Vec<u8> {
    postcard::to_allocvec(t).expect("serializes")
}

/// The command that sets `key` to `value`.
pub fn put(key: &[u8], value: &[u8]) -> Vec<u8> {
    encode(&KvCommand::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    })
}

/// The query for `key`.
pub fn get(key: &[u8]) -> Vec<u8> {
    encode(&KvQuery::Get { key: key.to_vec() })
}

/// The digest query.
pub fn digest() -> Vec<u8> {
    encode(&KvQuery::Digest)
}

/// Decodes a state-machine answer.
pub fn answer(bytes: &[u8]) -> Option<KvAnswer> {
    postcard::from_bytes(bytes).ok()
}

impl Kv {
    /// A store that tells `transport` the node addresses it learns.
    pub fn with_transport(transport: impl Transport) -> Self {
        Self {
            state: KvState::default(),
            transport: Some(Arc::new(transport)),
        }
    }
    /// The number of keys.
    pub fn len(&self) -> usize {
        self.state.data.len()
    }
    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.state.data.len() == 0
    }
    fn announce(&self, id: u64, addr: SocketAddr) {
        if let Some(t) = &self.transport {
            t.set_address(NodeId(id), addr);
        }
    }
    fn digest(&self) -> KvAnswer {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in self.state.data.iter() {
            for b in k
                .iter()
                .chain([0xFFu8].iter())
                .chain(v.iter())
                .chain([0xFEu8].iter())
            {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        KvAnswer::Digest {
            keys: self.state.data.len() as u64,
            hash: h,
        }
    }
}

impl StateMachine for Kv {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Vec<u8> {
        let Ok(cmd) = postcard::from_bytes::<KvCommand>(command) else {
            // Every node refuses the same garbage the same way: determinism is kept.
            return encode(&KvAnswer::CasFailed { current: None });
        };
        let answer = match cmd {
            KvCommand::Put { key, value } => {
                self.state.data.insert(key, value);
                KvAnswer::Done
            }
            KvCommand::Cas { key, expect, new } => {
                let current = self.state.data.get(&key).map(|v| v.to_vec());
                if current == expect {
                    self.state.data.insert(key, new);
                    KvAnswer::Done
                } else {
                    KvAnswer::CasFailed { current }
                }
            }
            KvCommand::SetPeer { id, addr } => {
                self.state.peers.insert(id, addr);
                self.announce(id, addr);
                KvAnswer::Done
            }
        };
        encode(&answer)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let answer = match postcard::from_bytes::<KvQuery>(query) {
            Ok(KvQuery::Get { key }) => {
                KvAnswer::Value(self.state.data.get(&key).map(|v| v.to_vec()))
            }
            Ok(KvQuery::Digest) | Err(_) => self.digest(),
        };
        encode(&answer)
    }

    fn snapshot(&self) -> Vec<u8> {
        encode(&self.state)
    }

    fn capture(&self) -> Box<dyn FnOnce() -> Vec<u8> + Send> {
        // Shares the shards: the writes that follow copy the ones they touch.
        let state = self.state.clone();
        Box::new(move || encode(&state))
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.state = postcard::from_bytes(data).map_err(|e| e.to_string())?;
        for (&id, &addr) in &self.state.peers {
            self.announce(id, addr);
        }
        Ok(())
    }
}

// ----- the client protocol ------------------------------------------------------------------

/// A client request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Set a key.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Read a key: linearizable, or this node's state as it is (`stale`).
    Get {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Skip the linearizable read barrier.
        stale: bool,
    },
    /// Compare-and-set.
    Cas {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The expected value (`None`: absent).
        #[serde(with = "serde_bytes")]
        expect: Option<Vec<u8>>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
    /// The node's status, as text.
    Status,
    /// Record a node's address and add it as a learner.
    AddLearner {
        /// The node.
        id: u64,
        /// Its address.
        addr: SocketAddr,
    },
    /// Make a learner a voter.
    Promote {
        /// The node.
        id: u64,
    },
    /// Remove a node.
    Remove {
        /// The node.
        id: u64,
    },
    /// A digest of the node's store (stale read).
    Digest,
    /// The node's status, structured ([`Reply::Node`]).
    NodeStatus,
}

impl Request {
    fn is_write(&self) -> bool {
        !matches!(
            self,
            Self::Get { .. } | Self::Status | Self::Digest | Self::NodeStatus
        )
    }
}

/// A request as sent: forwarded requests count their hops, so that stale leader hints cannot
/// bounce a request around forever.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// How many nodes forwarded it.
    pub hops: u8,
    /// The request.
    pub request: Request,
}

/// A node's reply.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The write is applied.
    Applied,
    /// The value read (`None`: no such key).
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The compare-and-set did not match: nothing written.
    CasFailed {
        /// The value found.
        #[serde(with = "serde_bytes")]
        current: Option<Vec<u8>>,
    },
    /// Certainly not applied.
    NotApplied(String),
    /// May or may not be applied.
    Unknown(String),
    /// Status or digest, as text.
    Status(String),
    /// The node's status ([`Request::NodeStatus`]).
    Node(Box<NodeStatus>),
}

/// A node's status as the client protocol carries it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub id: u64,
    /// `Leader`, `Follower`, `Candidate`, `PreCandidate` or `Learner`.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Where the log starts (the last index its snapshot covers).
    pub log_start: u64,
    /// Voters.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// Whether a joint configuration is in use.
    pub joint: bool,
    /// `fdatasync` calls of its log so far.
    pub syncs: u64,
    /// Its counters.
    #[serde(default)]
    pub metrics: crate::metrics::Metrics,
    /// The addresses it knows of the other members (so that a client can ask them all).
    #[serde(default)]
    pub peers: Vec<(u64, SocketAddr)>,
}

/// Starts a key-value node with the defaults (a [`DiskLog`] in `config.dir`, TCP on `listen`,
/// node addresses replicated through the store) and serves its clients on the same port.
///
/// # Errors
/// [`StartError`].
pub async fn start(
    config: RunnerConfig,
    listen: SocketAddr,
) -> Result<(Handle, Recovery), StartError> {
    let (log, recovery) = DiskLog::open(&config.dir).map_err(StartError::Storage)?;
    Ok((start_on(config, listen, log).await?, recovery))
}

/// [`start`] on a log of the caller's choice (`raftlet-kv serve --in-memory` passes a
/// [`MemLog`](crate::memlog::MemLog): nothing survives a restart).
///
/// # Errors
/// [`StartError`].
pub async fn start_on<L: LogStore>(
    config: RunnerConfig,
    listen: SocketAddr,
    log: L,
) -> Result<Handle, StartError> {
    start_with_options(config, listen, log, NetOptions::default()).await
}

/// [`start_on`] with the transport's bounds and TLS of the caller's choice.
///
/// # Errors
/// [`StartError`].
pub async fn start_with_options<L: LogStore>(
    config: RunnerConfig,
    listen: SocketAddr,
    log: L,
    options: NetOptions,
) -> Result<Handle, StartError> {
    let (clients_tx, clients_rx) = mpsc::channel(64);
    let net = Network::bind_with(config.id, config.cluster, listen, Some(clients_tx), options)
        .await
        .map_err(StartError::Io)?;
    let handle = runner::start_with(config, Kv::with_transport(net.clone()), log, net)?;
    tokio::spawn(serve_clients(handle.clone(), clients_rx));
    Ok(handle)
}

/// Serves client connections handed over by the transport.
pub async fn serve_clients(handle: Handle, mut streams: mpsc::Receiver<ClientConnection>) {
    while let Some(conn) = streams.recv().await {
        tokio::spawn(serve_client(handle.clone(), conn));
    }
}

/// One client connection: requests one at a time, each bounded by the port's memory budget;
/// closed after the port's idle time without a request.
async fn serve_client(handle: Handle, conn: ClientConnection) {
    let ClientConnection { stream, permit } = conn;
    let mut stream = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(
            permit.client_idle(),
            read_frame(&mut stream, MAX_CLIENT_FRAME, &mut buf, Some(&permit)),
        )
        .await
        {
            Ok(Ok(true)) => {}
            _ => return,
        }
        let reply = match postcard::from_bytes::<Envelope>(&buf) {
            Ok(env) => execute(&handle, env).await,
            Err(_) => Reply::NotApplied("undecodable request".into()),
        };
        if write_frame(&mut stream, &encode(&reply)).await.is_err() || stream.flush().await.is_err()
        {
            return;
        }
    }
}

fn from_answer(bytes: &[u8]) -> Reply {
    match answer(bytes) {
        Some(KvAnswer::Done) => Reply::Applied,
        Some(KvAnswer::CasFailed { current }) => Reply::CasFailed { current },
        Some(KvAnswer::Value(v)) => Reply::Value(v),
        Some(KvAnswer::Digest { keys, hash }) => {
            Reply::Status(format!("keys {keys} digest {hash:016x}"))
        }
        None => Reply::Unknown("undecodable answer".into()),
    }
}

/// Executes a request on this node, forwarding writes to the leader.
pub async fn execute(handle: &Handle, env: Envelope) -> Reply {
    let request = env.request.clone();
    let result = match &request {
        Request::Put { key, value } => handle
            .propose(put(key, value))
            .await
            .map(|a| from_answer(&a)),
        Request::Cas { key, expect, new } => handle
            .propose(encode(&KvCommand::Cas {
                key: key.clone(),
                expect: expect.clone(),
                new: new.clone(),
            }))
            .await
            .map(|a| from_answer(&a)),
        Request::Get { key, stale: false } => handle.read(get(key)).await.map(|a| from_answer(&a)),
        Request::Get { key, stale: true } => {
            handle.local_read(get(key)).await.map(|a| from_answer(&a))
        }
        Request::Digest => handle.local_read(digest()).await.map(|a| from_answer(&a)),
        Request::Status => Ok(match handle.status().await {
            Some(s) => Reply::Status(format!(
                "node {} {:?} term {} leader {:?} commit {} applied {} last {} log-start {} syncs {} voters {:?} learners {:?}{}",
                s.id,
                s.role,
                s.term,
                s.leader,
                s.commit,
                s.applied,
                s.last_index,
                s.log_start.index,
                s.syncs,
                s.membership.voters(),
                s.membership.learners(),
                if s.membership.is_joint() {
                    " (joint)"
                } else {
                    ""
                }
            )),
            None => Reply::NotApplied("node stopped".into()),
        }),
        Request::NodeStatus => Ok(match handle.status().await {
            Some(s) => Reply::Node(Box::new(NodeStatus {
                id: s.id.0,
                role: format!("{:?}", s.role),
                term: s.term.0,
                leader: s.leader.map(|l| l.0),
                commit: s.commit.0,
                applied: s.applied.0,
                last_index: s.last_index.0,
                log_start: s.log_start.index.0,
                voters: s.membership.voters().iter().map(|v| v.0).collect(),
                learners: s.membership.learners().iter().map(|v| v.0).collect(),
                joint: s.membership.is_joint(),
                syncs: s.syncs,
                peers: s
                    .membership
                    .voters()
                    .iter()
                    .chain(s.membership.learners())
                    .filter(|m| **m != s.id)
                    .filter_map(|m| Some((m.0, handle.peer_address(*m)?)))
                    .collect(),
                metrics: s.metrics,
            })),
            None => Reply::NotApplied("node stopped".into()),
        }),
        Request::AddLearner { id, addr } => {
            let set = handle
                .propose(encode(&KvCommand::SetPeer {
                    id: *id,
                    addr: *addr,
                }))
                .await;
            match set {
                Ok(_) => handle
                    .change_membership(ConfChange::single(Change::AddLearner(NodeId(*id))))
                    .await
                    .map(|_| Reply::Applied),
                Err(e) => Err(e),
            }
        }
        Request::Promote { id } => handle
            .change_membership(ConfChange::single(Change::AddVoter(NodeId(*id))))
            .await
            .map(|_| Reply::Applied),
        Request::Remove { id } => handle
            .change_membership(ConfChange::single(Change::Remove(NodeId(*id))))
            .await
            .map(|_| Reply::Applied),
    };
    match result {
        Ok(reply) => reply,
        Err(ClientError::NotLeader { leader: Some(l) }) if request.is_write() && env.hops < 3 => {
            let Some(addr) = handle.peer_address(l) else {
                return Reply::NotApplied(format!("leader {l} has no known address"));
            };
            let fwd = Envelope {
                hops: env.hops + 1,
                request,
            };
            match call(addr, &fwd, Duration::from_secs(10)).await {
                Ok(reply) => reply,
                Err(CallError::NotSent(e)) => {
                    Reply::NotApplied(format!("leader {l} unreachable: {e}"))
                }
                Err(e) => Reply::Unknown(format!("forwarded to leader {l}: {e}")),
            }
        }
        Err(e) if e.is_certainly_not_applied() => Reply::NotApplied(e.to_string()),
        Err(e) => Reply::Unknown(e.to_string()),
    }
}

// ----- the client -----------------------------------------------------------------------------

/// Why a call got no reply.
#[derive(Debug)]
pub enum CallError {
    /// The request was not sent (cannot connect, or the connection failed before): certainly
    /// not applied.
    NotSent(std::io::Error),
    /// The connection failed after the request was sent: unknown.
    Lost(std::io::Error),
    /// No reply in time: unknown.
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(e) => write!(f, "not sent: {e}"),
            Self::Lost(e) => write!(f, "connection lost after sending: {e}"),
            Self::Timeout => f.write_str("timed out"),
        }
    }
}
impl std::error::Error for CallError {}

/// A connection to one node.
pub struct Client {
    stream: BufReader<Stream>,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the node at `addr` (plain TCP).
    ///
    /// # Errors
    /// The connection failed.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Self::connect_with(addr, None).await
    }

    /// Connects to the node at `addr`, over TLS with `tls` (the node's certificate must name
    /// [`tls::CLUSTER_NAME`](crate::tls::CLUSTER_NAME); ours, the client's, is checked by the
    /// node).
    ///
    /// # Errors
    /// The connection or the TLS handshake failed.
    pub async fn connect_with(addr: SocketAddr, tls: Option<&Tls>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut stream: Stream = match tls {
            None => Box::new(tcp),
            Some(t) => Box::new(
                t.connector()
                    .connect(crate::tls::cluster_server_name(), tcp)
                    .await?,
            ),
        };
        stream.write_all(b"C").await?;
        stream.flush().await?;
        Ok(Self {
            stream: BufReader::new(stream),
            addr,
            buf: Vec::new(),
        })
    }

    /// The node this client is connected to.
    pub fn peer(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` and waits up to `timeout` for the reply.
    ///
    /// # Errors
    /// [`CallError`], which tells a request that was never sent from one whose outcome is
    /// unknown.
    pub async fn call(&mut self, request: Request, timeout: Duration) -> Result<Reply, CallError> {
        let env = Envelope { hops: 0, request };
        self.call_envelope(&env, timeout).await
    }

    async fn call_envelope(
        &mut self,
        env: &Envelope,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let bytes = encode(env);
        let sent = async {
            write_frame(&mut self.stream, &bytes).await?;
            self.stream.flush().await
        };
        // A write that fails may still have reached the node: only a connection that never
        // carried the request is "not sent".
        sent.await.map_err(CallError::Lost)?;
        match tokio::time::timeout(
            timeout,
            read_frame(&mut self.stream, MAX_CLIENT_FRAME, &mut self.buf, None),
        )
        .await
        {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(e)) => Err(CallError::Lost(e)),
            Ok(Ok(false)) => Err(CallError::Lost(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(true)) => postcard::from_bytes(&self.buf)
                .map_err(|e| CallError::Lost(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Connects to `addr`, sends one request, returns the reply.
///
/// # Errors
/// [`CallError`].
pub async fn call(addr: SocketAddr, env: &Envelope, timeout: Duration) -> Result<Reply, CallError> {
    call_with(addr, env, timeout, None).await
}

/// [`call`] over TLS with `tls`, if given.
///
/// # Errors
/// [`CallError`].
pub async fn call_with(
    addr: SocketAddr,
    env: &Envelope,
    timeout: Duration,
    tls: Option<&Tls>,
) -> Result<Reply, CallError> {
    let mut client = match tokio::time::timeout(timeout, Client::connect_with(addr, tls)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(CallError::NotSent(e)),
        Err(_) => return Err(CallError::NotSent(std::io::ErrorKind::TimedOut.into())),
    };
    client.call_envelope(env, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kv: &Kv, key: &[u8]) -> Option<Vec<u8>> {
        match postcard::from_bytes::<KvAnswer>(&kv.query(&get(key))).unwrap() {
            KvAnswer::Value(v) => v,
            other => panic!("{other:?}"),
        }
    }

    /// A captured snapshot is the state at the moment of capture, however the store changes
    /// while it waits to be serialized; it reads back as the same store, and its bytes are a
    /// plain map of the pairs (what a `BTreeMap` of them encodes to).
    #[test]
    fn a_captured_snapshot_is_the_state_when_captured() {
        let mut kv = Kv::default();
        for i in 0..1_000u64 {
            kv.apply(Index(i + 1), &put(&i.to_le_bytes(), b"old"));
        }
        let job = kv.capture();
        for i in 0..1_000u64 {
            kv.apply(Index(i + 1_001), &put(&i.to_le_bytes(), b"new"));
        }
        kv.apply(Index(2_001), &put(b"later", b"x"));
        let bytes = job();
        let mut restored = Kv::default();
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.len(), 1_000);
        for i in 0..1_000u64 {
            assert_eq!(
                value(&restored, &i.to_le_bytes()).as_deref(),
                Some(&b"old"[..])
            );
            assert_eq!(value(&kv, &i.to_le_bytes()).as_deref(), Some(&b"new"[..]));
        }
        assert_eq!(value(&restored, b"later"), None);
        assert_eq!(kv.len(), 1_001);
        type Plain = (BTreeMap<ByteBuf, ByteBuf>, BTreeMap<u64, SocketAddr>);
        let (plain, _): Plain = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(plain.len(), 1_000);
        // Two stores with the same pairs have the same digest, whatever order they came in.
        let mut a = Kv::default();
        let mut b = Kv::default();
        for i in 0..100u64 {
            a.apply(Index(i + 1), &put(&i.to_le_bytes(), b"v"));
            b.apply(Index(i + 1), &put(&(99 - i).to_le_bytes(), b"v"));
        }
        assert_eq!(
            a.query(&encode(&KvQuery::Digest)),
            b.query(&encode(&KvQuery::Digest))
        );
    }
}
