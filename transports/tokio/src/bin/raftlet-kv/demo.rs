//! The demo: a 3-node cluster on loopback, start to finish (the README's main job).

use raftlet::{InstallOutcome, NodeId, Role};
use raftlet_tokio::kv::{self, Reply, Request};
use raftlet_tokio::runner::{self, Event, Handle, RunnerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
    if sorted.is_empty() {
        return Duration::ZERO;
    }
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

pub(crate) async fn demo() -> ExitCode {
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
