//! The TCP transport: length-prefixed frames of the core's wire format, a handshake that names
//! the cluster and the sender, one bounded queue and one writer task per peer.
//!
//! * **Outbound**: [`Network::send`] puts a message in its peer's queue ([`PEER_QUEUE`]
//!   messages) and never waits: a full queue drops the message and counts it (Raft tolerates
//!   loss; a slow or dead peer never holds up the others). Each peer's writer connects, sends
//!   the handshake, then writes frames, batching what is queued; on an error it reconnects
//!   with exponential back-off (50 ms to 1 s), dropping what queued meanwhile.
//! * **Inbound**: every connection starts with one byte: `P` for a peer, `C` for a client
//!   (handed to the application), `F` for proposals a peer forwards to this node (the same
//!   handshake as `P`, then one request frame and one [`ForwardOutcome`] frame at a time; the
//!   sending side keeps a pool of such connections per peer). A peer then sends `Hello { magic, cluster, from }` as a
//!   length-prefixed postcard frame; a wrong magic, another cluster or a node missing from the
//!   address book is refused and logged. After that, frames of at most the codec's maximum
//!   length are decoded (typed errors from the core's codec: a bad frame is counted and
//!   skipped; an oversized length closes the connection, since the stream cannot be
//!   resynchronised) and handed to the runner. A connection that does not complete its
//!   handshake within [`HANDSHAKE_TIMEOUT`] is closed.

use crate::limits::{Limiter, Limits, Permit};
use crate::storage::Payload;
use crate::tls::{self, Tls};
use raftlet::NodeId;
use raftlet::wire::Codec;
use raftlet::wire::frame::encode_length_prefixed;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Messages of the tokio runner.
pub type Msg = raftlet::Message<Payload, Vec<raftlet::Entry<Payload>>>;

/// What the runner needs of a transport. [`Network`] (TCP) is the default; a test or an
/// application with its own network implements this (see `tests/library.rs`).
///
/// The runner calls [`start`](Self::start) once, then [`send`](Self::send) for every message
/// the node emits, and [`shutdown`](Self::shutdown) when it ends, whichever way it ends (a
/// clean shutdown, a storage error, [`Handle::kill`](crate::runner::Handle::kill)): after that
/// the transport must leave no task running.
pub trait Transport: Send + Sync + 'static {
    /// Delivers `msg` to `msg.to`, or drops it (Raft tolerates loss). Must never wait.
    fn send(&self, msg: Msg);
    /// Starts handing messages addressed to this node to `inbound`.
    fn start(&self, inbound: mpsc::Sender<Msg>);
    /// Stops every task of the transport.
    fn shutdown(&self);
    /// Counters (zeros if the transport keeps none).
    fn stats(&self) -> NetStats {
        NetStats::default()
    }
    /// The address peers and clients reach this node at, if it has one.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// Sets the address of `peer` (transports without addresses ignore it).
    fn set_address(&self, peer: NodeId, addr: SocketAddr) {
        let _ = (peer, addr);
    }
    /// The address known for `peer`.
    fn address(&self, peer: NodeId) -> Option<SocketAddr> {
        let _ = peer;
        None
    }
    /// Hands proposals other nodes forward to this one to `to` (called once, at start).
    /// Transports that cannot forward ignore it.
    fn serve_forwarded(&self, to: mpsc::Sender<Forwarded>) {
        let _ = to;
    }
    /// Sends `command` to `leader`'s runner to propose there and returns its outcome; `None`
    /// if this transport cannot forward (then a follower's `propose` answers `NotLeader`).
    fn forward(&self, leader: NodeId, command: Vec<u8>) -> Option<ForwardFuture> {
        let _ = (leader, command);
        None
    }
}

/// A proposal another node forwarded here, and where its outcome goes.
#[derive(Debug)]
pub struct Forwarded {
    /// The command.
    pub command: Vec<u8>,
    /// Its outcome.
    pub reply: tokio::sync::oneshot::Sender<ForwardOutcome>,
}

/// How a forwarded proposal ended on the node it was forwarded to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardOutcome {
    /// Applied there; the state machine's answer.
    Applied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// That node is not the leader (it names the one it knows): nothing was proposed.
    NotLeader(Option<u64>),
    /// Refused before it was proposed, or lost to a leader change: certainly not applied.
    NotApplied(String),
    /// Proposed, outcome unknown.
    Unknown,
}

/// Why a forward got no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardError {
    /// The request never left (no connection): certainly not applied.
    NotSent,
    /// The connection failed after the request was sent: unknown.
    Lost,
}

/// The future of [`Transport::forward`].
pub type ForwardFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ForwardOutcome, ForwardError>> + Send>,
>;

/// A byte stream: TCP, or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection of the transport, plain or TLS.
pub type Stream = Box<dyn Io>;

/// How a [`Network`] guards its port.
#[derive(Debug, Clone, Default)]
pub struct NetOptions {
    /// Bounds on inbound connections.
    pub limits: Limits,
    /// Mutual TLS for every connection, inbound and outbound ([`crate::tls`]); `None`: plain
    /// TCP, unauthenticated.
    pub tls: Option<Tls>,
}

/// A client connection (first byte `C`) handed to the application, with its slot of the
/// port's [`Limits`]: keep the permit as long as the connection, and reserve large frames
/// from it ([`Permit::reserve`]) so that they count against the memory budget.
pub struct ClientConnection {
    /// The connection, after its first byte (TLS if the node uses it).
    pub stream: Stream,
    /// Its slot.
    pub permit: Permit,
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

/// Logs at most one warning per second, counting the rest.
struct Throttle {
    last: Mutex<Option<std::time::Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    fn new() -> Self {
        Self {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }
    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        let mut last = self.last.lock().expect("throttle lock");
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(std::time::Instant::now());
        match self.suppressed.swap(0, Ordering::Relaxed) {
            0 => log::warn!("{msg}"),
            n => log::warn!("{msg} (and {n} similar warnings in the last second)"),
        }
    }
}

/// An idle forwarding connection, and a duplicate of its socket to peek at.
type PooledConn = (tokio::io::BufReader<Stream>, socket2::Socket);

/// Idle forwarding connections kept per peer.
const FORWARD_POOL: usize = 64;

/// Messages queued per peer before sends are dropped.
pub const PEER_QUEUE: usize = 1024;
/// Time a new connection has to identify itself.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const HELLO_MAGIC: u32 = 0x524C_4554; // "RLET"

#[derive(Serialize, Deserialize)]
struct Hello {
    magic: u32,
    cluster: u64,
    from: u64,
}

/// Counters of the transport.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// Messages dropped because a peer's queue was full or no address was known.
    pub dropped: u64,
    /// Connections refused at the handshake (unknown node, other cluster, garbage).
    pub refused: u64,
    /// Frames that failed to decode (skipped) or had an impossible length (connection closed).
    pub bad_frames: u64,
    /// Messages received and handed to the runner.
    pub received: u64,
}

struct Peer {
    addr: SocketAddr,
    tx: mpsc::Sender<Msg>,
    task: JoinHandle<()>,
}

struct Inner {
    id: NodeId,
    codec: Codec,
    peers: Mutex<HashMap<NodeId, Peer>>,
    dropped: AtomicU64,
    refused: AtomicU64,
    bad_frames: AtomicU64,
    received: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Bound by [`Network::bind`], taken by [`Transport::start`].
    listener: Mutex<Option<(TcpListener, Option<mpsc::Sender<ClientConnection>>)>>,
    local: Option<SocketAddr>,
    /// Set by [`Network::shutdown`]: inbound connections end.
    stop: tokio::sync::watch::Sender<bool>,
    /// Where proposals forwarded to this node go.
    forwarded: Mutex<Option<mpsc::Sender<Forwarded>>>,
    /// Idle connections for forwarding, per peer.
    forward_pool: Mutex<HashMap<NodeId, Vec<PooledConn>>>,
    /// TLS for every connection, if configured.
    tls: Option<Tls>,
    /// Slots and memory of inbound connections.
    limiter: Arc<Limiter>,
    /// Warnings about bad connections.
    throttle: Throttle,
}

/// The transport of one node. Cheap to clone.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

/// Reads one length-prefixed frame into `buf`. `Ok(false)` at a clean end of stream.
///
/// The buffer grows only as bytes arrive (a length prefix alone allocates nothing), and with
/// a `permit` the frame's length is first reserved from the node's memory budget
/// ([`crate::limits`]): a frame that does not fit is an `OutOfMemory` error, and the caller
/// closes the connection.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
    permit: Option<&Permit>,
) -> std::io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    // Frames up to KEEP_BUFFER cost at most that per connection, and connections are
    // counted: only larger ones take from the shared budget (so that a flood of large frames
    // cannot starve small requests), and must arrive within FRAME_DEADLINE.
    let held = match permit {
        Some(p) if len > KEEP_BUFFER => Some(p.reserve(len).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "the memory budget for frames in flight is spent",
            )
        })?),
        _ => None,
    };
    if buf.capacity() > KEEP_BUFFER {
        // Give back what an earlier large frame took.
        *buf = Vec::new();
    }
    buf.clear();
    let mut limited = (&mut *r).take(len as u64);
    let body = limited.read_to_end(buf);
    let n = if held.is_some() {
        tokio::time::timeout(FRAME_DEADLINE, body)
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
    } else {
        body.await?
    };
    if n < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(true)
}

/// A frame that takes from the memory budget must arrive whole within this time.
const FRAME_DEADLINE: Duration = Duration::from_secs(30);

/// A connection keeps a receive buffer of up to this many bytes between frames.
const KEEP_BUFFER: usize = 64 << 10;

/// Writes `bytes` as one length-prefixed frame, in one write.
pub(crate) async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame.extend_from_slice(bytes);
    w.write_all(&frame).await
}

impl Network {
    /// A transport for node `id` of cluster `cluster`, with frames of at most `max_frame`
    /// bytes.
    pub fn new(id: NodeId, cluster: u64, max_frame: usize) -> Self {
        Self::with_listener(id, cluster, max_frame, None, NetOptions::default())
    }

    /// A transport listening on `listen` (bound now, served once the runner starts it).
    /// Client connections (first byte `C`) go to `clients`, if given.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(
        id: NodeId,
        cluster: u64,
        listen: SocketAddr,
        clients: Option<mpsc::Sender<ClientConnection>>,
    ) -> std::io::Result<Self> {
        Self::bind_with(id, cluster, listen, clients, NetOptions::default()).await
    }

    /// [`bind`](Self::bind) with the given bounds on inbound connections and TLS.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind_with(
        id: NodeId,
        cluster: u64,
        listen: SocketAddr,
        clients: Option<mpsc::Sender<ClientConnection>>,
        options: NetOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        Ok(Self::with_listener(
            id,
            cluster,
            crate::runner::MAX_FRAME,
            Some((listener, clients)),
            options,
        ))
    }

    /// The bounds on inbound connections, and what they hold now.
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    fn with_listener(
        id: NodeId,
        cluster: u64,
        max_frame: usize,
        listener: Option<(TcpListener, Option<mpsc::Sender<ClientConnection>>)>,
        options: NetOptions,
    ) -> Self {
        let local = listener.as_ref().and_then(|(l, _)| l.local_addr().ok());
        Self {
            inner: Arc::new(Inner {
                id,
                codec: Codec::new(cluster, max_frame),
                peers: Mutex::new(HashMap::new()),
                dropped: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                bad_frames: AtomicU64::new(0),
                received: AtomicU64::new(0),
                tasks: Mutex::new(Vec::new()),
                listener: Mutex::new(listener),
                local,
                stop: tokio::sync::watch::Sender::new(false),
                forwarded: Mutex::new(None),
                forward_pool: Mutex::new(HashMap::new()),
                limiter: Limiter::new(options.limits),
                tls: options.tls,
                throttle: Throttle::new(),
            }),
        }
    }

    /// Sets (or changes) the address of `peer`.
    pub fn set_address(&self, peer: NodeId, addr: SocketAddr) {
        if peer == self.inner.id {
            return;
        }
        let mut peers = self.inner.peers.lock().expect("peers lock");
        if peers.get(&peer).is_some_and(|p| p.addr == addr) {
            return;
        }
        if let Some(old) = peers.remove(&peer) {
            old.task.abort();
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let task = tokio::spawn(peer_writer(self.inner.clone(), peer, addr, rx));
        peers.insert(peer, Peer { addr, tx, task });
    }

    /// The known address of `peer`.
    pub fn address(&self, peer: NodeId) -> Option<SocketAddr> {
        self.inner
            .peers
            .lock()
            .expect("peers lock")
            .get(&peer)
            .map(|p| p.addr)
    }

    /// Queues `msg` for its recipient, or drops and counts it.
    pub fn send(&self, msg: Msg) {
        let peers = self.inner.peers.lock().expect("peers lock");
        let sent = peers
            .get(&msg.to)
            .is_some_and(|p| p.tx.try_send(msg).is_ok());
        if !sent {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Accepts connections on `listener`: peer messages go to `inbound`, client connections
    /// (first byte `C`) to `clients`.
    pub fn serve(
        &self,
        listener: TcpListener,
        inbound: mpsc::Sender<Msg>,
        clients: Option<mpsc::Sender<ClientConnection>>,
    ) {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(10);
            loop {
                let (stream, from) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors (EMFILE) or a transient error: wait and go on;
                        // the node itself keeps working.
                        inner
                            .throttle
                            .warn(format_args!("{}: accept failed: {e}", inner.id));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                backoff = Duration::from_millis(10);
                let Some(permit) = inner.limiter.admit(from.ip()) else {
                    inner.refused.fetch_add(1, Ordering::Relaxed);
                    inner.throttle.warn(format_args!(
                        "{}: refused a connection from {from}: too many connections",
                        inner.id
                    ));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    inner.clone(),
                    stream,
                    permit,
                    inbound.clone(),
                    clients.clone(),
                ));
            }
        });
        self.inner.tasks.lock().expect("tasks lock").push(task);
    }

    /// Stops accepting, sending and receiving: every task of the transport ends.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        *self.inner.forwarded.lock().expect("forwarded lock") = None;
        self.inner.forward_pool.lock().expect("pool lock").clear();
        for t in self.inner.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        for (_, p) in self.inner.peers.lock().expect("peers lock").drain() {
            p.task.abort();
        }
    }

    /// The transport's counters.
    pub fn stats(&self) -> NetStats {
        NetStats {
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            refused: self.inner.refused.load(Ordering::Relaxed),
            bad_frames: self.inner.bad_frames.load(Ordering::Relaxed),
            received: self.inner.received.load(Ordering::Relaxed),
        }
    }
}

impl Transport for Network {
    fn send(&self, msg: Msg) {
        Network::send(self, msg);
    }
    fn start(&self, inbound: mpsc::Sender<Msg>) {
        let bound = self.inner.listener.lock().expect("listener lock").take();
        if let Some((listener, clients)) = bound {
            self.serve(listener, inbound, clients);
        }
    }
    fn shutdown(&self) {
        Network::shutdown(self);
    }
    fn stats(&self) -> NetStats {
        Network::stats(self)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local
    }
    fn set_address(&self, peer: NodeId, addr: SocketAddr) {
        Network::set_address(self, peer, addr);
    }
    fn address(&self, peer: NodeId) -> Option<SocketAddr> {
        Network::address(self, peer)
    }
    fn serve_forwarded(&self, to: mpsc::Sender<Forwarded>) {
        *self.inner.forwarded.lock().expect("forwarded lock") = Some(to);
    }
    fn forward(&self, leader: NodeId, command: Vec<u8>) -> Option<ForwardFuture> {
        let addr = self.address(leader)?;
        let inner = self.inner.clone();
        Some(Box::pin(forward_call(inner, leader, addr, command)))
    }
}

fn hello_bytes(inner: &Inner) -> Vec<u8> {
    postcard::to_allocvec(&Hello {
        magic: HELLO_MAGIC,
        cluster: inner.codec.cluster(),
        from: inner.id.0,
    })
    .expect("hello serializes")
}

/// Connects to node `to` at `addr`: TCP, then TLS checking that the server is node `to` if
/// the transport uses TLS. Also returns a duplicate of the socket, to peek at it later.
async fn dial(
    inner: &Inner,
    to: NodeId,
    addr: SocketAddr,
) -> std::io::Result<(Stream, socket2::Socket)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let probe = socket2::SockRef::from(&tcp).try_clone()?;
    let stream: Stream = match &inner.tls {
        None => Box::new(tcp),
        Some(t) => Box::new(
            tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                t.connector().connect(tls::server_name(to.0), tcp),
            )
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??,
        ),
    };
    Ok((stream, probe))
}

/// Whether an idle connection is still open and quiet (the peer has not closed it or sent
/// anything), without consuming a byte.
fn still_open(probe: &socket2::Socket) -> bool {
    let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match probe.peek(&mut b) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

/// One forwarded proposal over a pooled connection (`F`, hello, then request and reply frames).
async fn forward_call(
    inner: Arc<Inner>,
    to: NodeId,
    addr: SocketAddr,
    command: Vec<u8>,
) -> Result<ForwardOutcome, ForwardError> {
    // An idle connection the peer has closed (it restarted, or stopped) never carried this
    // request: skip it rather than report a lost request as "unknown".
    let pooled = loop {
        let Some(c) = inner
            .forward_pool
            .lock()
            .expect("pool lock")
            .get_mut(&to)
            .and_then(Vec::pop)
        else {
            break None;
        };
        if still_open(&c.1) {
            break Some(c);
        }
    };
    let (mut conn, probe) = match pooled {
        Some(c) => c,
        None => {
            let connect = async {
                let (mut s, probe) = dial(&inner, to, addr).await?;
                let mut hello = vec![b'F'];
                let body = hello_bytes(&inner);
                hello.extend_from_slice(&(body.len() as u32).to_le_bytes());
                hello.extend_from_slice(&body);
                s.write_all(&hello).await?;
                s.flush().await?;
                Ok::<_, std::io::Error>((tokio::io::BufReader::new(s), probe))
            };
            connect.await.map_err(|_| ForwardError::NotSent)?
        }
    };
    // From here a failure may come after the node received the request: unknown.
    let sent = async {
        write_frame(&mut conn, &command).await?;
        conn.flush().await
    };
    sent.await.map_err(|_| ForwardError::Lost)?;
    let mut buf = Vec::new();
    match read_frame(&mut conn, 1 << 20, &mut buf, None).await {
        Ok(true) => {}
        _ => return Err(ForwardError::Lost),
    }
    let outcome = postcard::from_bytes(&buf).map_err(|_| ForwardError::Lost)?;
    let mut pool = inner.forward_pool.lock().expect("pool lock");
    let idle = pool.entry(to).or_default();
    if idle.len() < FORWARD_POOL {
        idle.push((conn, probe));
    }
    Ok(outcome)
}

/// Serves proposals forwarded by `from` on one connection, one at a time.
async fn serve_forwards(inner: Arc<Inner>, from: NodeId, stream: Stream, permit: Permit) {
    let mut stream = tokio::io::BufReader::new(stream);
    let mut stop = inner.stop.subscribe();
    let mut buf = Vec::new();
    let max = crate::runner::MAX_COMMAND;
    loop {
        let frame = tokio::select! {
            r = read_frame(&mut stream, max, &mut buf, Some(&permit)) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if !matches!(frame, Ok(true)) {
            return;
        }
        let to = inner.forwarded.lock().expect("forwarded lock").clone();
        let outcome = match to {
            None => {
                ForwardOutcome::NotApplied("this node does not take forwarded proposals".into())
            }
            Some(to) => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                let command = std::mem::take(&mut buf);
                if to.send(Forwarded { command, reply }).await.is_err() {
                    ForwardOutcome::NotApplied("the node stopped".into())
                } else {
                    rx.await.unwrap_or(ForwardOutcome::Unknown)
                }
            }
        };
        let bytes = postcard::to_allocvec(&outcome).expect("outcomes serialize");
        let sent = async {
            write_frame(&mut stream, &bytes).await?;
            stream.flush().await
        };
        if sent.await.is_err() {
            log::debug!("{}: forwarding connection from {from} lost", inner.id);
            return;
        }
    }
}

async fn peer_writer(inner: Arc<Inner>, to: NodeId, addr: SocketAddr, mut rx: mpsc::Receiver<Msg>) {
    let mut backoff = Duration::from_millis(50);
    let mut buf = vec![0u8; inner.codec.max_frame() + 4];
    let hello = hello_bytes(&inner);
    loop {
        let stream = match dial(&inner, to, addr).await {
            Ok((s, _)) => s,
            Err(e) => {
                log::debug!("{}: cannot reach {to} at {addr}: {e}", inner.id);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // What queued while the peer was away is stale: drop it.
                while rx.try_recv().is_ok() {
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
        };
        let mut w = BufWriter::with_capacity(256 << 10, stream);
        let greeted = async {
            w.write_all(b"P").await?;
            write_frame(&mut w, &hello).await?;
            w.flush().await
        }
        .await;
        if greeted.is_err() {
            continue;
        }
        backoff = Duration::from_millis(50);
        log::debug!("{}: connected to {to} at {addr}", inner.id);
        let result: std::io::Result<()> = async {
            loop {
                let Some(msg) = rx.recv().await else {
                    return Ok(());
                };
                let mut next = Some(msg);
                while let Some(m) = next.take() {
                    match encode_length_prefixed(&inner.codec, &m, &mut buf) {
                        Ok(n) => w.write_all(&buf[..n]).await?,
                        Err(e) => {
                            log::warn!("{}: cannot encode a message to {to}: {e}", inner.id);
                            inner.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    next = rx.try_recv().ok();
                }
                w.flush().await?;
            }
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => log::debug!("{}: connection to {to} lost: {e}", inner.id),
        }
    }
}

async fn serve_connection(
    inner: Arc<Inner>,
    tcp: TcpStream,
    permit: Permit,
    inbound: mpsc::Sender<Msg>,
    clients: Option<mpsc::Sender<ClientConnection>>,
) {
    let peer_addr = tcp.peer_addr().ok();
    let refuse = |why: &str| {
        inner.refused.fetch_add(1, Ordering::Relaxed);
        inner.throttle.warn(format_args!(
            "{}: refused a connection from {peer_addr:?}: {why}",
            inner.id
        ));
    };
    // Peers stay connected while idle: keepalive finds the dead ones.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    let mut kind = [0u8; 1];
    let mut buf = Vec::new();
    // TLS first, if configured: the handshake checks the certificate against the cluster's CA.
    let handshake = async {
        let (mut stream, cert): (Stream, Option<rustls::pki_types::CertificateDer<'static>>) =
            match &inner.tls {
                None => (Box::new(tcp), None),
                Some(t) => {
                    let s = t.acceptor().accept(tcp).await?;
                    let cert = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned());
                    (Box::new(s), cert)
                }
            };
        stream.read_exact(&mut kind).await?;
        if kind[0] == b'P' || kind[0] == b'F' {
            read_frame(&mut stream, 64, &mut buf, None).await?;
        }
        Ok::<_, std::io::Error>((stream, cert))
    };
    let (stream, cert) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => return refuse("no handshake in time"),
        Ok(Err(e)) => return refuse(&format!("handshake failed: {e}")),
        Ok(Ok(x)) => x,
    };
    match kind[0] {
        b'C' => {
            if let Some(clients) = clients {
                let _ = clients.send(ClientConnection { stream, permit }).await;
            }
            return;
        }
        b'P' | b'F' => {}
        _ => return refuse("unknown connection kind"),
    }
    let Ok(hello) = postcard::from_bytes::<Hello>(&buf) else {
        return refuse("undecodable hello");
    };
    if hello.magic != HELLO_MAGIC {
        return refuse("not a raftlet peer");
    }
    if hello.cluster != inner.codec.cluster() {
        return refuse(&format!("cluster {} is not ours", hello.cluster));
    }
    let from = NodeId(hello.from);
    if !inner.peers.lock().expect("peers lock").contains_key(&from) {
        return refuse(&format!("node {from} is not in the address book"));
    }
    // With TLS, the certificate must name the node the hello claims.
    if inner.tls.is_some()
        && !cert
            .as_ref()
            .is_some_and(|c| tls::names(c, &tls::node_name(from.0)))
    {
        return refuse(&format!(
            "its certificate does not name node {from}, which it claims to be"
        ));
    }
    if kind[0] == b'F' {
        return serve_forwards(inner, from, stream, permit).await;
    }
    let max = inner.codec.max_frame();
    // Buffered from here on: one read takes every frame that has arrived.
    let mut stream = tokio::io::BufReader::with_capacity(64 << 10, stream);
    let mut stop = inner.stop.subscribe();
    loop {
        let frame = tokio::select! {
            r = read_frame(&mut stream, max, &mut buf, Some(&permit)) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match frame {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    inner.bad_frames.fetch_add(1, Ordering::Relaxed);
                    inner.throttle.warn(format_args!(
                        "{}: closing the connection from {from}: {e}",
                        inner.id
                    ));
                }
                return;
            }
        }
        match inner
            .codec
            .decode::<Payload, Vec<raftlet::Entry<Payload>>>(&buf)
        {
            Ok(msg) if msg.from == from && msg.to == inner.id => {
                inner.received.fetch_add(1, Ordering::Relaxed);
                if inbound.send(msg).await.is_err() {
                    return; // the runner stopped
                }
            }
            Ok(_) => {
                inner.bad_frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                inner.bad_frames.fetch_add(1, Ordering::Relaxed);
                inner.throttle.warn(format_args!(
                    "{}: skipped a bad frame from {from}: {e}",
                    inner.id
                ));
            }
        }
    }
}
