//! `raftlet-kv`: a replicated key-value service on raftlet and tokio. `raftlet-kv --help` lists
//! the commands, `raftlet-kv COMMAND --help` explains one.
//!
//! Exit codes: 0 done, 1 no node could be reached (status) or the node failed, 2 certainly not
//! applied, 3 unknown (it may be applied), 4 no such key, 64 usage. `RAFTLET_LOG=info` logs to
//! stderr.

mod demo;

use clap::{Args, Parser, Subcommand};
use raftlet::NodeId;
use raftlet_tokio::kv::{self, NodeStatus, Reply, Request};
use raftlet_tokio::runner::{Handle, RunnerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const EXIT_FAILED: u8 = 1;
const EXIT_NOT_APPLIED: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;
const EXIT_USAGE: u8 = 64;

const EXIT_CODES: &str = "Exit codes: 0 done, 1 no node reachable or the node failed, 2 certainly not applied, \
3 unknown (may be applied), 4 no such key, 64 usage.";

/// A replicated key-value store on raftlet and tokio.
#[derive(Parser, Debug)]
#[command(name = "raftlet-kv", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A 3-node cluster on loopback, start to finish: writes, a load test, a leader killed and
    /// restarted, compaction, a fourth node joining by snapshot
    Demo,
    /// Run a node (one per process and data directory)
    Serve(ServeArgs),
    /// Set KEY to VALUE (retried on the next node or leader while certainly not applied)
    Put {
        /// The key
        key: String,
        /// The value
        value: String,
        #[command(flatten)]
        to: Target,
    },
    /// Print the value of KEY (linearizable unless --stale); exit 4 if there is none
    Get {
        /// The key
        key: String,
        /// Read the node's state as it is, without the linearizable read barrier
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        to: Target,
    },
    /// Set KEY to NEW if its value is EXPECTED ("-" means absent); exit 2 on a mismatch
    Cas {
        /// The key
        key: String,
        /// The value it must have ("-": absent)
        expected: String,
        /// The value to set
        new: String,
        #[command(flatten)]
        to: Target,
    },
    /// The status of the cluster: every node given and every member they know of (role,
    /// term, leader, commit, applied, lag)
    Status {
        /// One JSON array instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        to: Target,
    },
    /// The digest of a node's store (its state as it is)
    Digest {
        #[command(flatten)]
        to: Target,
    },
    /// Record a node's address and add it as a learner
    AddLearner {
        /// The new node's id
        id: u64,
        /// Its address
        #[arg(value_name = "NODE_ADDR")]
        node_addr: SocketAddr,
        #[command(flatten)]
        to: Target,
    },
    /// Make a learner a voter
    Promote {
        /// The learner
        id: u64,
        #[command(flatten)]
        to: Target,
    },
    /// Remove a node from the cluster
    Remove {
        /// The node
        id: u64,
        #[command(flatten)]
        to: Target,
    },
    /// Closed-loop load: clients writing to the leader among the addresses
    Bench(BenchArgs),
    /// Make a certificate authority, a certificate per node and a client certificate (PEM)
    Certs {
        /// Node ids, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u64>,
        /// Directory to write ca.pem, ca-key.pem, node-N.pem, node-N-key.pem, client.pem,
        /// client-key.pem into (created; existing files are not overwritten)
        #[arg(long)]
        out: PathBuf,
    },
}

/// TLS files: the cluster's CA, and this party's certificate and key.
#[derive(Args, Debug, Clone, Default)]
struct TlsArgs {
    /// The cluster's CA certificate (PEM); with --tls-cert and --tls-key: mutual TLS
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's or client's certificate (PEM)
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn load(&self) -> Result<Option<raftlet_tokio::tls::Tls>, String> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => raftlet_tokio::tls::Tls::from_files(ca, cert, key)
                .map(Some)
                .map_err(|e| format!("TLS: {e}")),
            _ => Ok(None),
        }
    }
}

/// Which nodes to ask, and for how long.
#[derive(Args, Debug)]
struct Target {
    /// Node addresses (host:port), comma-separated; the next is tried when one is unreachable
    #[arg(long, value_delimiter = ',', required = true)]
    addr: Vec<SocketAddr>,
    /// How long to keep trying (10s, 500ms, 1m; a bare number is seconds)
    #[arg(long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    timeout: Duration,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// This node's id
    #[arg(long)]
    id: u64,
    /// Every node's address, this one's included: 1=host:port,2=host:port,...
    #[arg(long, value_delimiter = ',', value_parser = parse_peer, required = true)]
    peers: Vec<(u64, SocketAddr)>,
    /// The data directory (locked while the node runs)
    #[arg(long)]
    data: PathBuf,
    /// The voters of a new cluster (default: every node in --peers)
    #[arg(long, value_delimiter = ',')]
    voters: Option<Vec<u64>>,
    /// Where to listen (default: this node's address in --peers)
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The cluster's id: nodes of other clusters are refused
    #[arg(long, default_value_t = 0x5241_4654)]
    cluster_id: u64,
    /// Keep the log in memory (not durable: for experiments and benchmarks)
    #[arg(long)]
    in_memory: bool,
    /// Worker threads of the server's tokio runtime: 1 (the default) runs the node, its
    /// connections and its clients on one thread, which costs the least CPU per write and the
    /// fewest wake-ups on a small machine; more spread client connections over more cores
    /// (the leader's fdatasync runs on a thread of its own)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// How long the leader may hold its own log writes unsynced while its followers commit
    /// them (10ms, 500us, ...; 0: sync at once, like a follower)
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    leader_sync_delay: Duration,
    /// Run a follower's fdatasync on the durability thread, as the leader's, instead of on
    /// the node's own task (which saves two thread wake-ups per sync)
    #[arg(long)]
    follower_sync_thread: bool,
    /// Serve Prometheus metrics (GET /metrics) on this address
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Take a snapshot (and compact the log) once this many entries, and at least as many bytes
    /// of commands as the last snapshot holds, have been applied since it; 0: never
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    #[command(flatten)]
    tls: TlsArgs,
    /// Run without TLS: anyone who can reach the port can act as a client or a peer (see the
    /// README's threat model). Required when no --tls-* files are given.
    #[arg(long, conflicts_with_all = ["tls_ca", "tls_cert", "tls_key"])]
    insecure: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Node addresses (host:port), comma-separated; the load goes to the leader among them
    #[arg(long, value_delimiter = ',', required = true)]
    addr: Vec<SocketAddr>,
    /// Concurrent closed-loop clients
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clients: u32,
    /// The measured window (10s, 1m, ...; a bare number is seconds)
    #[arg(long, default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    duration: Duration,
    /// Unmeasured warm-up before it
    #[arg(long, default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    warmup: Duration,
    /// Bytes per value
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    value_bytes: u32,
    /// One JSON object instead of a sentence
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

/// A duration: humantime (`10s`, `500ms`, `1m 30s`) or a bare, finite, non-negative number of
/// seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("{s:?} is not a duration (negative, NaN or too large)"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

fn parse_peer(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=host:port"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("{id:?} is not a node id"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|_| format!("{addr:?} is not host:port"))?;
    Ok((id, addr))
}

/// Logs go to stderr through `tracing` (the libraries' `log` records included), filtered by
/// `RAFTLET_LOG` (`warn` by default; `info`, `debug`, or directives such as
/// `raftlet_tokio=debug`).
fn init_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTLET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    init_log();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version go to stdout with 0; mistakes to stderr with 64.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut rt = match &cli.command {
        Command::Serve(args) if args.threads <= 1 => tokio::runtime::Builder::new_current_thread(),
        Command::Serve(args) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(args.threads));
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        match cli.command {
            Command::Demo => demo::demo().await,
            Command::Serve(args) => serve(args).await,
            Command::Bench(args) => bench(args).await,
            Command::Status { json, to } => status(&to, json).await,
            Command::Certs { nodes, out } => certs(&nodes, &out),
            other => client(other).await,
        }
    })
}

// ----- serve ----------------------------------------------------------------------------------

async fn serve(args: ServeArgs) -> ExitCode {
    let id = NodeId(args.id);
    let tls = match args.tls.load() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if tls.is_none() && !args.insecure {
        eprintln!(
            "error: no TLS: give --tls-ca, --tls-cert and --tls-key (raftlet-kv certs makes them), or --insecure to run unauthenticated"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let options = raftlet_tokio::net::NetOptions {
        tls,
        ..Default::default()
    };
    let voters: Vec<NodeId> = match &args.voters {
        Some(v) => v.iter().copied().map(NodeId).collect(),
        None => args.peers.iter().map(|(i, _)| NodeId(*i)).collect(),
    };
    let listen = match args
        .listen
        .or_else(|| args.peers.iter().find(|(i, _)| *i == args.id).map(|p| p.1))
    {
        Some(a) => a,
        None => {
            eprintln!("error: node {id} is not in --peers and no --listen was given");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut config = RunnerConfig::new(id, &args.data, voters);
    config.cluster = args.cluster_id;
    config.snapshot_every = args.snapshot_every;
    config.leader_sync_delay = args.leader_sync_delay;
    config.inline_follower_sync = !args.follower_sync_thread;
    config.peers = args
        .peers
        .iter()
        .filter(|(i, _)| *i != args.id)
        .map(|&(i, a)| (NodeId(i), a))
        .collect();
    let started = if args.in_memory {
        let log = raftlet_tokio::memlog::MemLog::new();
        kv::start_with_options(config, listen, log, options)
            .await
            .map(|h| (h, Default::default()))
    } else {
        match raftlet_tokio::storage::DiskLog::open(&args.data) {
            Ok((log, recovery)) => kv::start_with_options(config, listen, log, options)
                .await
                .map(|h| (h, recovery)),
            Err(e) => Err(raftlet_tokio::runner::StartError::Storage(e)),
        }
    };
    let (handle, recovery): (Handle, raftlet_tokio::storage::Recovery) = match started {
        Ok(x) => x,
        Err(e) => {
            eprintln!("node {id} cannot start: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if let Some(addr) = args.metrics_addr {
        match raftlet_tokio::metrics::serve(addr, handle.clone()).await {
            Ok(a) => eprintln!("node {id}: metrics on http://{a}/metrics"),
            Err(e) => {
                eprintln!("node {id}: cannot serve metrics on {addr}: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    eprintln!(
        "node {id} serving on {listen} (recovered {} segments, {} records{})",
        recovery.segments,
        recovery.records,
        recovery
            .truncated_tail
            .map_or(String::new(), |b| format!(", cut a torn tail of {b} bytes"))
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = wait_stopped(&handle) => {
            eprintln!("node {id} stopped: its log could not be written (see the error above)");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_stopped(h: &Handle) {
    while !h.is_stopped() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ----- client ---------------------------------------------------------------------------------

/// Sends `request` to the nodes of `to` until one answers with something other than
/// "certainly not applied", or the time is up. Only requests that certainly had no effect
/// are retried, so retrying is safe for writes.
async fn call_retrying(
    to: &Target,
    tls: Option<&raftlet_tokio::tls::Tls>,
    request: Request,
) -> Result<Reply, kv::CallError> {
    let deadline = Instant::now() + to.timeout;
    let mut k = 0;
    loop {
        let addr = to.addr[k % to.addr.len()];
        k += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let env = kv::Envelope {
            hops: 0,
            request: request.clone(),
        };
        let r = kv::call_with(addr, &env, left.max(Duration::from_millis(1)), tls).await;
        let retry = matches!(r, Ok(Reply::NotApplied(_)) | Err(kv::CallError::NotSent(_)));
        if !retry || Instant::now() + Duration::from_millis(100) >= deadline {
            return r;
        }
        if k % to.addr.len() == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn client(command: Command) -> ExitCode {
    let bytes = |s: &str| s.as_bytes().to_vec();
    let (request, to) = match command {
        Command::Put { key, value, to } => (
            Request::Put {
                key: bytes(&key),
                value: bytes(&value),
            },
            to,
        ),
        Command::Get { key, stale, to } => (
            Request::Get {
                key: bytes(&key),
                stale,
            },
            to,
        ),
        Command::Cas {
            key,
            expected,
            new,
            to,
        } => (
            Request::Cas {
                key: bytes(&key),
                expect: (expected != "-").then(|| bytes(&expected)),
                new: bytes(&new),
            },
            to,
        ),
        Command::Digest { to } => (Request::Digest, to),
        Command::AddLearner { id, node_addr, to } => (
            Request::AddLearner {
                id,
                addr: node_addr,
            },
            to,
        ),
        Command::Promote { id, to } => (Request::Promote { id }, to),
        Command::Remove { id, to } => (Request::Remove { id }, to),
        Command::Demo
        | Command::Serve(_)
        | Command::Bench(_)
        | Command::Status { .. }
        | Command::Certs { .. } => unreachable!("handled in main"),
    };
    let tls = match to.tls.load() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match call_retrying(&to, tls.as_ref(), request).await {
        Ok(Reply::Applied) => ExitCode::SUCCESS,
        Ok(Reply::Value(Some(v))) => {
            println!("{}", String::from_utf8_lossy(&v));
            ExitCode::SUCCESS
        }
        Ok(Reply::Value(None)) => ExitCode::from(EXIT_NOT_FOUND),
        Ok(Reply::Status(s)) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Ok(Reply::Node(n)) => {
            println!("{n:?}");
            ExitCode::SUCCESS
        }
        Ok(Reply::CasFailed { current }) => {
            eprintln!(
                "not applied: the value is {}",
                current.map_or("absent".into(), |c| format!(
                    "{:?}",
                    String::from_utf8_lossy(&c)
                ))
            );
            ExitCode::from(EXIT_NOT_APPLIED)
        }
        Ok(Reply::NotApplied(why)) => {
            eprintln!("not applied: {why}");
            ExitCode::from(EXIT_NOT_APPLIED)
        }
        Ok(Reply::Unknown(why)) => {
            eprintln!("unknown outcome: {why}");
            ExitCode::from(EXIT_UNKNOWN)
        }
        Err(e @ kv::CallError::NotSent(_)) => {
            eprintln!("not applied: {e}");
            ExitCode::from(EXIT_NOT_APPLIED)
        }
        Err(e) => {
            eprintln!("unknown outcome: {e}");
            ExitCode::from(EXIT_UNKNOWN)
        }
    }
}

// ----- status ---------------------------------------------------------------------------------

/// Asks every node of `to` (at once) for its status; prints a table or JSON.
async fn status(to: &Target, json: bool) -> ExitCode {
    let tls = match to.tls.load() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // Every node given, then every other member they name (a cluster-wide view from one
    // address).
    let mut nodes = ask_status(&to.addr, to.timeout, tls.as_ref()).await;
    let mut more: Vec<SocketAddr> = nodes
        .iter()
        .filter_map(|(_, n, _)| n.as_ref())
        .flat_map(|n| n.peers.iter().map(|p| p.1))
        .filter(|a| !to.addr.contains(a))
        .collect();
    more.sort_unstable();
    more.dedup();
    nodes.extend(ask_status(&more, to.timeout, tls.as_ref()).await);
    let top = nodes
        .iter()
        .filter_map(|(_, n, _)| n.as_ref().map(|n| n.commit))
        .max()
        .unwrap_or(0);
    if json {
        let items: Vec<serde_json::Value> = nodes
            .iter()
            .map(|(addr, n, err)| match n {
                Some(n) => serde_json::json!({
                    "addr": addr.to_string(), "id": n.id, "role": n.role, "term": n.term,
                    "leader": n.leader, "commit": n.commit, "applied": n.applied,
                    "last_index": n.last_index, "log_start": n.log_start,
                    "lag": top.saturating_sub(n.applied), "voters": n.voters,
                    "learners": n.learners, "joint": n.joint, "syncs": n.syncs,
                    "metrics": n.metrics,
                }),
                None => serde_json::json!({ "addr": addr.to_string(), "error": err }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        println!(
            "{:<22} {:>4}  {:<12} {:>6} {:>6} {:>10} {:>10} {:>10} {:>8}",
            "address", "node", "role", "term", "leader", "commit", "applied", "last", "lag"
        );
        for (addr, n, err) in &nodes {
            match n {
                Some(n) => println!(
                    "{:<22} {:>4}  {:<12} {:>6} {:>6} {:>10} {:>10} {:>10} {:>8}",
                    addr.to_string(),
                    n.id,
                    n.role,
                    n.term,
                    n.leader.map_or("-".into(), |l| l.to_string()),
                    n.commit,
                    n.applied,
                    n.last_index,
                    top.saturating_sub(n.applied)
                ),
                None => println!("{:<22} unreachable: {err}", addr.to_string()),
            }
        }
        if let Some(n) = nodes.iter().find_map(|(_, n, _)| n.as_ref()) {
            println!(
                "voters {:?}, learners {:?}{}",
                n.voters,
                n.learners,
                if n.joint {
                    " (joint configuration)"
                } else {
                    ""
                }
            );
        }
    }
    if nodes.iter().any(|(_, n, _)| n.is_some()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// Asks each of `addrs` (at once) for its status.
async fn ask_status(
    addrs: &[SocketAddr],
    timeout: Duration,
    tls: Option<&raftlet_tokio::tls::Tls>,
) -> Vec<(SocketAddr, Option<NodeStatus>, String)> {
    let asks = addrs.iter().map(|&addr| {
        let tls = tls.cloned();
        async move {
            let env = kv::Envelope {
                hops: 0,
                request: Request::NodeStatus,
            };
            let r = kv::call_with(addr, &env, timeout, tls.as_ref()).await;
            (addr, r)
        }
    });
    futures_join_all(asks)
        .await
        .into_iter()
        .map(|(addr, r)| match r {
            Ok(Reply::Node(n)) => (addr, Some(*n), String::new()),
            Ok(other) => (addr, None, format!("{other:?}")),
            Err(e) => (addr, None, e.to_string()),
        })
        .collect()
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let tasks: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("status task"));
    }
    out
}

// ----- bench ----------------------------------------------------------------------------------

/// Asks each address for its status until one says it leads.
async fn find_leader(
    addrs: &[SocketAddr],
    tls: Option<&raftlet_tokio::tls::Tls>,
    within: Duration,
) -> Option<SocketAddr> {
    let t = Instant::now();
    while t.elapsed() < within {
        for &a in addrs {
            let env = kv::Envelope {
                hops: 0,
                request: Request::Status,
            };
            if let Ok(Reply::Status(s)) = kv::call_with(a, &env, Duration::from_secs(1), tls).await
                && s.split_whitespace().nth(2) == Some("Leader")
            {
                return Some(a);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn bench(args: BenchArgs) -> ExitCode {
    let tls = match args.tls.load() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let Some(leader) = find_leader(&args.addr, tls.as_ref(), Duration::from_secs(15)).await else {
        eprintln!("no leader among {:?}", args.addr);
        return ExitCode::from(EXIT_FAILED);
    };
    let mut config = raftlet_tokio::load::LoadConfig::new(leader);
    config.clients = args.clients as usize;
    config.duration = args.duration;
    config.warmup = args.warmup;
    config.value_bytes = args.value_bytes as usize;
    config.tls = tls;
    eprintln!(
        "bench: {} closed-loop clients writing {}-byte values to the leader at {leader} for {:?} (after {:?} of warm-up)",
        config.clients, config.value_bytes, args.duration, args.warmup
    );
    match raftlet_tokio::load::run(&config).await {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

// ----- certs ----------------------------------------------------------------------------------

fn certs(nodes: &[u64], out: &std::path::Path) -> ExitCode {
    let g = match raftlet_tokio::tls::generate(nodes) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: making certificates: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut files = vec![
        ("ca.pem".to_string(), g.ca_cert),
        ("ca-key.pem".to_string(), g.ca_key),
        ("client.pem".to_string(), g.client.0),
        ("client-key.pem".to_string(), g.client.1),
    ];
    for (id, cert, key) in g.nodes {
        files.push((format!("node-{id}.pem"), cert));
        files.push((format!("node-{id}-key.pem"), key));
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("error: {}: {e}", out.display());
        return ExitCode::from(EXIT_FAILED);
    }
    for (name, pem) in &files {
        let path = out.join(name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, pem.as_bytes()));
        if let Err(e) = written {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(EXIT_FAILED);
        }
    }
    println!(
        "wrote {} files to {}: ca.pem for everyone, node-N.pem and node-N-key.pem for node N, client.pem and client-key.pem for clients; keep ca-key.pem offline",
        files.len(),
        out.display()
    );
    ExitCode::SUCCESS
}
