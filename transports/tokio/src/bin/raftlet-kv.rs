//! `raftlet-kv`: a replicated key-value service on raftlet and tokio.
//!
//! ```text
//! raftlet-kv demo                                   a 3-node cluster on loopback, start to finish
//! raftlet-kv serve --id N --peers 1=host:port,... --data DIR [--voters 1,2,3] [--listen ADDR]
//!                  [--in-memory]    (the log in memory, not durable: for experiments)
//! raftlet-kv put KEY VALUE --addr host:port         exit 0 applied, 2 not applied, 3 unknown
//! raftlet-kv get KEY --addr host:port [--stale]     value on stdout; exit 4 if there is none
//! raftlet-kv cas KEY EXPECTED NEW --addr host:port  EXPECTED "-" means "absent"; 2 on mismatch
//! raftlet-kv status --addr host:port
//! raftlet-kv digest --addr host:port                the node's store digest (stale)
//! raftlet-kv add-learner ID ADDR --addr host:port   record the address and add a learner
//! raftlet-kv promote ID --addr host:port            make a learner a voter
//! raftlet-kv remove ID --addr host:port
//! raftlet-kv bench --addr host:port[,host:port...] [--clients 32] [--duration 10] [--warmup 1]
//!                  [--value-bytes 16] [--json]  closed-loop writes to the leader among the addresses
//! ```
//! `--timeout SECS` (default 10) bounds every client call. `RAFTLET_LOG=info` logs to stderr.

use raftlet::{InstallOutcome, NodeId, Role};
use raftlet_tokio::kv::{self, Reply, Request};
use raftlet_tokio::runner::{self, Event, Handle, RunnerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const EXIT_NOT_APPLIED: u8 = 2;
const EXIT_UNKNOWN: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;
const EXIT_USAGE: u8 = 64;

struct StderrLog(log::LevelFilter);
impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{:<5} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

fn init_log() {
    let level = match std::env::var("RAFTLET_LOG").as_deref() {
        Ok("trace") => log::LevelFilter::Trace,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("info") => log::LevelFilter::Info,
        Ok("error") => log::LevelFilter::Error,
        Ok("off") => log::LevelFilter::Off,
        _ => log::LevelFilter::Warn,
    };
    let logger = Box::leak(Box::new(StderrLog(level)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Positional arguments and `--flag value` / `--switch` options.
struct Args {
    positional: Vec<String>,
    options: HashMap<String, String>,
}

impl Args {
    fn parse(raw: &[String]) -> Self {
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut it = raw.iter().peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let value = match it.peek() {
                    Some(v)
                        if !v.starts_with("--")
                            && !["stale", "json", "in-memory"].contains(&name) =>
                    {
                        it.next().cloned()
                    }
                    _ => None,
                };
                options.insert(name.to_string(), value.unwrap_or_default());
            } else {
                positional.push(a.clone());
            }
        }
        Self {
            positional,
            options,
        }
    }
    fn opt(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  raftlet-kv demo\n  raftlet-kv serve --id N --peers 1=host:port,2=host:port,... --data DIR [--voters 1,2,3] [--listen ADDR] [--in-memory]\n  raftlet-kv put KEY VALUE --addr host:port\n  raftlet-kv get KEY --addr host:port [--stale]\n  raftlet-kv cas KEY EXPECTED NEW --addr host:port   (EXPECTED - for absent)\n  raftlet-kv status|digest --addr host:port\n  raftlet-kv add-learner ID ADDR --addr host:port\n  raftlet-kv promote ID --addr host:port\n  raftlet-kv remove ID --addr host:port\n  raftlet-kv bench --addr host:port[,...] [--clients 32] [--duration 10] [--warmup 1] [--value-bytes 16] [--json]\noptions: --timeout SECS (default 10)\nexit codes: 0 done, 2 certainly not applied, 3 unknown, 4 no such key, 64 usage"
    );
    ExitCode::from(EXIT_USAGE)
}

fn main() -> ExitCode {
    init_log();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = raw.first().cloned() else {
        return usage();
    };
    let args = Args::parse(&raw[1..]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cmd.as_str() {
        "demo" => rt.block_on(demo()),
        "bench" => rt.block_on(bench(&args)),
        "serve" => rt.block_on(serve(&args)),
        "put" | "get" | "cas" | "status" | "digest" | "add-learner" | "promote" | "remove" => {
            rt.block_on(client(&cmd, &args))
        }
        _ => usage(),
    }
}

// ----- serve ----------------------------------------------------------------------------------

fn parse_peers(s: &str) -> Option<Vec<(NodeId, SocketAddr)>> {
    s.split(',')
        .map(|p| {
            let (id, addr) = p.split_once('=')?;
            Some((NodeId(id.trim().parse().ok()?), addr.trim().parse().ok()?))
        })
        .collect()
}

async fn serve(args: &Args) -> ExitCode {
    let (Some(id), Some(peers), Some(data)) = (
        args.opt("id").and_then(|s| s.parse::<u64>().ok()),
        args.opt("peers").and_then(parse_peers),
        args.opt("data"),
    ) else {
        return usage();
    };
    let id = NodeId(id);
    let voters: Vec<NodeId> = match args.opt("voters") {
        Some(v) => match v.split(',').map(|x| x.trim().parse().map(NodeId)).collect() {
            Ok(v) => v,
            Err(_) => return usage(),
        },
        None => peers.iter().map(|(i, _)| *i).collect(),
    };
    let listen = match args.opt("listen").map(str::parse) {
        Some(Ok(a)) => a,
        Some(Err(_)) => return usage(),
        None => match peers.iter().find(|(i, _)| *i == id) {
            Some((_, a)) => *a,
            None => return usage(),
        },
    };
    let mut config = RunnerConfig::new(id, data, voters);
    config.peers = peers.into_iter().filter(|(i, _)| *i != id).collect();
    let started = if args.options.contains_key("in-memory") {
        kv::start_on(config, listen, raftlet_tokio::memlog::MemLog::new())
            .await
            .map(|h| (h, Default::default()))
    } else {
        kv::start(config, listen).await
    };
    let (handle, recovery): (Handle, raftlet_tokio::storage::Recovery) = match started {
        Ok(x) => x,
        Err(e) => {
            eprintln!("node {id} cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
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
            eprintln!("node {id} stopped");
            return ExitCode::FAILURE;
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

async fn client(cmd: &str, args: &Args) -> ExitCode {
    let Some(addr) = args.opt("addr").and_then(|a| a.parse::<SocketAddr>().ok()) else {
        return usage();
    };
    let timeout = Duration::from_secs_f64(
        args.opt("timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(10.0),
    );
    let p = &args.positional;
    let bytes = |k: usize| p.get(k).map(|s| s.as_bytes().to_vec());
    let request = match (cmd, p.len()) {
        ("put", 2) => Request::Put {
            key: bytes(0).unwrap_or_default(),
            value: bytes(1).unwrap_or_default(),
        },
        ("get", 1) => Request::Get {
            key: bytes(0).unwrap_or_default(),
            stale: args.options.contains_key("stale"),
        },
        ("cas", 3) => Request::Cas {
            key: bytes(0).unwrap_or_default(),
            expect: (p[1] != "-").then(|| p[1].as_bytes().to_vec()),
            new: bytes(2).unwrap_or_default(),
        },
        ("status", 0) => Request::Status,
        ("digest", 0) => Request::Digest,
        ("add-learner", 2) => match (p[0].parse(), p[1].parse()) {
            (Ok(id), Ok(a)) => Request::AddLearner { id, addr: a },
            _ => return usage(),
        },
        ("promote", 1) => match p[0].parse() {
            Ok(id) => Request::Promote { id },
            Err(_) => return usage(),
        },
        ("remove", 1) => match p[0].parse() {
            Ok(id) => Request::Remove { id },
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let env = kv::Envelope { hops: 0, request };
    match kv::call(addr, &env, timeout).await {
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

// ----- bench ----------------------------------------------------------------------------------

/// Asks each address for its status until one says it leads.
async fn find_leader(addrs: &[SocketAddr], within: Duration) -> Option<SocketAddr> {
    let t = Instant::now();
    while t.elapsed() < within {
        for &a in addrs {
            let env = kv::Envelope {
                hops: 0,
                request: Request::Status,
            };
            if let Ok(Reply::Status(s)) = kv::call(a, &env, Duration::from_secs(1)).await
                && s.split_whitespace().nth(2) == Some("Leader")
            {
                return Some(a);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn bench(args: &Args) -> ExitCode {
    let addrs: Option<Vec<SocketAddr>> = args
        .opt("addr")
        .map(|a| a.split(',').map(|x| x.trim().parse().ok()).collect())
        .unwrap_or(None);
    let Some(addrs) = addrs.filter(|a| !a.is_empty()) else {
        return usage();
    };
    let num = |name: &str, default: f64| match args.opt(name) {
        None => Some(default),
        Some(v) => v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0),
    };
    let (Some(clients), Some(duration), Some(warmup), Some(value_bytes)) = (
        num("clients", 32.0),
        num("duration", 10.0),
        num("warmup", 1.0),
        num("value-bytes", 16.0),
    ) else {
        return usage();
    };
    let Some(leader) = find_leader(&addrs, Duration::from_secs(15)).await else {
        eprintln!("no leader among {addrs:?}");
        return ExitCode::FAILURE;
    };
    let mut config = raftlet_tokio::load::LoadConfig::new(leader);
    config.clients = (clients as usize).max(1);
    config.duration = Duration::from_secs_f64(duration);
    config.warmup = Duration::from_secs_f64(warmup);
    config.value_bytes = value_bytes as usize;
    eprintln!(
        "bench: {} closed-loop clients writing {}-byte values to the leader at {leader} for {:.0} s (after {:.0} s of warm-up)",
        config.clients, config.value_bytes, duration, warmup
    );
    match raftlet_tokio::load::run(&config).await {
        Ok(report) => {
            if args.options.contains_key("json") {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- demo -----------------------------------------------------------------------------------

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("address")
}

struct Cluster {
    dir: PathBuf,
    addrs: Vec<(NodeId, SocketAddr)>,
    nodes: HashMap<NodeId, Handle>,
    voters: Vec<NodeId>,
}

impl Cluster {
    fn config(&self, id: NodeId) -> RunnerConfig {
        let mut c = RunnerConfig::new(id, self.dir.join(format!("node-{id}")), self.voters.clone());
        c.peers = self
            .addrs
            .iter()
            .copied()
            .filter(|(i, _)| *i != id)
            .collect();
        c.snapshot_every = 0;
        c.log_retention = 100;
        c
    }

    async fn start(&mut self, id: NodeId) -> runner::Handle {
        let addr = self
            .addrs
            .iter()
            .find(|(i, _)| *i == id)
            .expect("address")
            .1;
        let mut tries = 0;
        let (h, rec) = loop {
            match kv::start(self.config(id), addr).await {
                Ok(x) => break x,
                Err(e) if tries < 50 => {
                    // The port of a killed node may take a moment to be free again.
                    tries += 1;
                    log::debug!("node {id}: {e}, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("node {id} cannot start: {e}"),
            }
        };
        if rec.records > 0 {
            println!(
                "  node {id} recovered {} records from {} segment(s){}",
                rec.records,
                rec.segments,
                rec.truncated_tail
                    .map_or(String::new(), |b| format!(", cut a torn tail of {b} bytes"))
            );
        }
        self.nodes.insert(id, h.clone());
        h
    }

    async fn leader(
        &self,
        newer_than: raftlet::Term,
        timeout: Duration,
    ) -> Option<(NodeId, raftlet::Term)> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            for h in self.nodes.values() {
                if let Some(s) = h.status().await
                    && s.role == Role::Leader
                    && s.term > newer_than
                {
                    return Some((s.id, s.term));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

fn bar(done: usize, total: usize) {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        // In a log, a line per quarter.
        if done * 4 / total.max(1) != (done - 1) * 4 / total.max(1) || done == total {
            println!("  {done}/{total} written");
        }
        return;
    }
    let width = 40;
    let filled = done * width / total.max(1);
    print!(
        "\r  [{}{}] {done}/{total}",
        "#".repeat(filled),
        "-".repeat(width - filled)
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Writes `n` keys `prefix-i` through `leader` with `concurrency` clients; returns the
/// latencies of the writes.
async fn write_keys(leader: &Handle, prefix: &str, n: usize, concurrency: usize) -> Vec<Duration> {
    let (tx, mut rx) = mpsc::channel::<Duration>(n);
    let per = n / concurrency;
    for c in 0..concurrency {
        let h = leader.clone();
        let tx = tx.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            for k in c * per..(c + 1) * per {
                let key = format!("{prefix}-{k:05}");
                let t = Instant::now();
                loop {
                    match h
                        .propose(kv::put(key.as_bytes(), format!("value {k}").as_bytes()))
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if e.is_certainly_not_applied() => {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Err(e) => panic!("write of {key}: {e}"),
                    }
                }
                let _ = tx.send(t.elapsed()).await;
            }
        });
    }
    drop(tx);
    let mut lat = Vec::with_capacity(n);
    while let Some(d) = rx.recv().await {
        lat.push(d);
        bar(lat.len(), per * concurrency);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!();
    }
    lat
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU time of this process so far (Linux; zero elsewhere).
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// 32 closed-loop TCP clients against the leader for 3 s; the figures of `benches/kv-load.sh`
/// (CPU here is the whole process: the three nodes and the clients).
async fn demo_load(cluster: &Cluster, leader: NodeId) -> String {
    let syncs = |c: &Cluster| {
        let nodes: Vec<(NodeId, Handle)> = c.nodes.iter().map(|(i, h)| (*i, h.clone())).collect();
        async move {
            let mut out = Vec::new();
            for (id, h) in nodes {
                out.push((id, h.status().await.map_or(0, |s| s.syncs)));
            }
            out
        }
    };
    let Some(addr) = cluster.nodes[&leader].addr() else {
        return "no address".into();
    };
    let before = syncs(cluster).await;
    let cpu0 = process_cpu();
    let mut config = raftlet_tokio::load::LoadConfig::new(addr);
    config.duration = Duration::from_secs(3);
    config.warmup = Duration::ZERO;
    config.progress = false;
    let report = match raftlet_tokio::load::run(&config).await {
        Ok(r) => r,
        Err(e) => return format!("load test failed: {e}"),
    };
    let cpu = process_cpu().saturating_sub(cpu0);
    let after = syncs(cluster).await;
    let w = report.writes.max(1) as f64;
    let (mut leader_syncs, mut follower_syncs, mut followers) = (0, 0, 0);
    for ((id, a), (_, b)) in after.iter().zip(&before) {
        if *id == leader {
            leader_syncs = a - b;
        } else {
            follower_syncs += a - b;
            followers += 1;
        }
    }
    format!(
        "{:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms (32 TCP clients, 16-byte values, 3 s); fdatasync per write: leader {:.3}, followers {:.3}; CPU per write {:.0} us (servers and clients together, one process)",
        report.writes_per_sec(),
        report.p50_us as f64 / 1e3,
        report.p99_us as f64 / 1e3,
        leader_syncs as f64 / w,
        follower_syncs as f64 / followers.max(1) as f64 / w,
        cpu.as_secs_f64() * 1e6 / w
    )
}

async fn demo() -> ExitCode {
    let t0 = Instant::now();
    let at = || format!("[{:6.2}s]", t0.elapsed().as_secs_f64());
    let dir = std::env::temp_dir().join(format!("raftlet-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ids: Vec<NodeId> = (1..=4).map(NodeId).collect();
    let mut cluster = Cluster {
        dir: dir.clone(),
        addrs: ids.iter().map(|&i| (i, free_addr())).collect(),
        nodes: HashMap::new(),
        voters: ids[..3].to_vec(),
    };
    println!(
        "raftlet-kv demo: a 3-node cluster on loopback; every node has its own data directory"
    );
    println!("and port, and fsyncs its log before acknowledging anything.");
    println!("  data in {}", dir.display());
    for &id in &ids[..3] {
        let h = cluster.start(id).await;
        println!("  node {id} listening on {}", h.addr().expect("TCP"));
    }
    let Some((leader, term)) = cluster
        .leader(raftlet::Term(0), Duration::from_secs(10))
        .await
    else {
        eprintln!("no leader elected");
        return ExitCode::FAILURE;
    };
    println!("{} node {leader} elected leader of term {term}", at());

    // 1. Writes, with latency and throughput.
    let n = 3200;
    let concurrency = 32;
    println!(
        "{} writing {n} keys through node {leader} ({concurrency} concurrent clients)",
        at()
    );
    let tw = Instant::now();
    let mut lat = write_keys(&cluster.nodes[&leader], "key", n, concurrency).await;
    let elapsed = tw.elapsed();
    lat.sort_unstable();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "{} {} writes committed in {:.2}s: {:.0} writes/s, commit latency p50 {:.1} ms, p99 {:.1} ms",
        at(),
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );

    // 1b. The load test's figures: closed-loop TCP clients, as `raftlet-kv bench` runs them.
    let load = demo_load(&cluster, leader).await;
    println!("{} {load}", at());

    // 2. Kill the leader; time the election.
    println!("{} killing the leader, node {leader}", at());
    let killed = cluster.nodes.remove(&leader).expect("leader handle");
    killed.kill();
    let tk = Instant::now();
    let Some((leader2, term2)) = cluster.leader(term, Duration::from_secs(10)).await else {
        eprintln!("no new leader elected");
        return ExitCode::FAILURE;
    };
    println!(
        "{} node {leader2} elected leader of term {term2}, {} ms after the kill",
        at(),
        tk.elapsed().as_millis()
    );
    let lat2 = write_keys(&cluster.nodes[&leader2], "after", 500, 16).await;
    println!("{} {} more writes through node {leader2}", at(), lat2.len());

    // 3. Restart the old leader from its data directory.
    println!("{} restarting node {leader} from its data directory", at());
    let h = cluster.start(leader).await;
    let target = cluster.nodes[&leader2]
        .status()
        .await
        .map_or(raftlet::Index(0), |s| s.commit);
    let tr = Instant::now();
    while h.status().await.is_none_or(|s| s.applied < target)
        && tr.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = h.status().await.expect("restarted node runs");
    println!(
        "{} node {leader} caught up: applied {} (commit {})",
        at(),
        s.applied,
        target
    );

    // 4. Compact every node.
    let mut sorted: Vec<_> = cluster.nodes.iter().collect();
    sorted.sort_by_key(|(id, _)| **id);
    for (id, h) in sorted {
        let snap = h.snapshot().await;
        let start = h
            .status()
            .await
            .map_or(raftlet::Index(0), |s| s.log_start.index);
        println!(
            "{} node {id} took a snapshot at {}; its log now starts after {start}",
            at(),
            snap.map_or("-".into(), |s| s.index.to_string())
        );
    }

    // 5. Add a fourth node; it must catch up by snapshot.
    let new = ids[3];
    let mut events = cluster.nodes[&leader2].subscribe();
    let h4 = cluster.start(new).await;
    let mut events4 = h4.subscribe();
    println!(
        "{} adding node {new} as a learner (the leader's log starts after its snapshot)",
        at()
    );
    let added = kv::execute(
        &cluster.nodes[&leader2],
        kv::Envelope {
            hops: 0,
            request: Request::AddLearner {
                id: new.0,
                addr: h4.addr().expect("TCP"),
            },
        },
    )
    .await;
    if added != Reply::Applied {
        eprintln!("adding node {new} failed: {added:?}");
        return ExitCode::FAILURE;
    }
    let mut seen = 0;
    let te = Instant::now();
    while seen < 2 && te.elapsed() < Duration::from_secs(20) {
        let ev = tokio::select! {
            Ok(e) = events.recv() => e,
            Ok(e) = events4.recv() => e,
            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        if let Event::InstallComplete {
            at: node,
            peer,
            outcome,
        } = ev
        {
            let side = if node == peer { "follower" } else { "leader" };
            let what = match outcome {
                InstallOutcome::Installed(id) => {
                    format!("installed snapshot {} (term {})", id.index, id.term)
                }
                InstallOutcome::Unavailable => "no snapshot available".into(),
            };
            println!(
                "{}   InstallComplete on node {node} ({side}) for node {peer}: {what}",
                at()
            );
            seen += 1;
        }
    }
    if seen < 2 {
        eprintln!("node {new} did not complete its snapshot install");
        return ExitCode::FAILURE;
    }
    let promoted = kv::execute(
        &cluster.nodes[&leader2],
        kv::Envelope {
            hops: 0,
            request: Request::Promote { id: new.0 },
        },
    )
    .await;
    let voters = cluster.nodes[&leader2]
        .status()
        .await
        .map(|s| s.membership.voters().to_vec())
        .unwrap_or_default();
    println!(
        "{} node {new} promoted to voter ({promoted:?}); voters now {voters:?}",
        at()
    );

    // 6. Every node holds the same data.
    let final_write = cluster.nodes[&leader2]
        .propose(kv::put(b"final", b"done"))
        .await;
    if final_write.is_err() {
        eprintln!("the final write failed: {final_write:?}");
        return ExitCode::FAILURE;
    }
    let target = cluster.nodes[&leader2]
        .status()
        .await
        .map_or(raftlet::Index(0), |s| s.commit);
    let mut digests = Vec::new();
    for id in &ids {
        let h = &cluster.nodes[id];
        let tc = Instant::now();
        while h.status().await.is_none_or(|s| s.applied < target)
            && tc.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let d = h
            .local_read(kv::digest())
            .await
            .ok()
            .and_then(|a| kv::answer(&a));
        match &d {
            Some(kv::KvAnswer::Digest { keys, hash }) => {
                println!("{}   node {id}: {keys} keys, digest {hash:016x}", at());
            }
            other => println!("{}   node {id}: {other:?}", at()),
        }
        digests.push(d);
    }
    let same = digests.windows(2).all(|w| w[0] == w[1]) && digests[0].is_some();
    let read = cluster.nodes[&new].read(kv::get(b"key-00042")).await;
    let value = match read.ok().and_then(|a| kv::answer(&a)) {
        Some(kv::KvAnswer::Value(Some(v))) => String::from_utf8_lossy(&v).into_owned(),
        other => format!("{other:?}"),
    };
    println!(
        "{} linearizable read of key-00042 on node {new}: {value:?}",
        at()
    );

    println!("\nsummary");
    println!(
        "  writes: {} + the load test's + {} + 1; every node holds the same data (equal digests): {}",
        lat.len(),
        lat2.len(),
        if same { "yes" } else { "NO" }
    );
    println!(
        "  in process: {:.0} writes/s, commit latency p50 {:.1} ms, p99 {:.1} ms ({concurrency} concurrent proposals through the leader's Handle, fsync per group commit)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!("  load test over TCP: {load}");
    println!(
        "  leader {leader} killed, node {leader2} took over; node {leader} restarted from disk and caught up"
    );
    println!("  node {new} joined by snapshot and became a voter");
    for h in cluster.nodes.values() {
        h.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
