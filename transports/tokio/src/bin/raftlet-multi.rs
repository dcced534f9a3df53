//! `raftlet-multi`: many Raft groups per process (`raftlet_tokio::multi`).
//!
//! * `raftlet-multi host --id 1 --dir data/1 --listen 127.0.0.1:7101 --control 127.0.0.1:7201
//!   --peer 2=127.0.0.1:7102 --peer 3=127.0.0.1:7103`: runs one host process.
//! * `raftlet-multi bench`: starts three host processes on loopback, creates the groups, and
//!   measures: idle CPU and memory per group replica once every group is quiescent, writes/s and
//!   latency spread over many groups against all writes to one group, and the time until every
//!   group a killed process led has a new leader. See benches/README.md.

use clap::{Args, Parser, Subcommand};
use raftlet::{Index, NodeId};
use raftlet_tokio::multi::control::{ControlClient, Request, Response};
use raftlet_tokio::multi::{GroupId, GroupMachine, HostConfig, start_host};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Many Raft groups per process: run a host, or benchmark three")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one host process.
    Host(HostArgs),
    /// Start three host processes and measure them.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct HostArgs {
    #[arg(long)]
    id: u64,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    control: SocketAddr,
    /// `id=address` of every other host.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Tick length in milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// The comparison: one single-group runner (`raftlet_tokio::runner`, its own listener,
    /// log, fsync thread and timers) per group, group `g` listening at `--listen`'s port + `g`.
    #[arg(long)]
    runners: bool,
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// Groups of three replicas.
    #[arg(long, default_value_t = 10_000)]
    groups: u64,
    /// Groups the spread write load goes to.
    #[arg(long, default_value_t = 1_000)]
    write_groups: u64,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of each write load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of the idle CPU measurement.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Bytes per command.
    #[arg(long, default_value_t = 16)]
    value_bytes: usize,
    /// Where the hosts keep their logs (a fresh temporary directory if not given).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the results as JSON too.
    #[arg(long)]
    json: bool,
    /// Run one single-group runner per group instead of multi-group hosts (the comparison).
    #[arg(long)]
    runners: bool,
}

/// A state machine that counts commands per group.
#[derive(Default)]
struct Counter(HashMap<GroupId, u64>);

impl GroupMachine for Counter {
    fn apply(&mut self, group: GroupId, _index: Index, _command: &[u8]) -> Vec<u8> {
        let n = self.0.entry(group).or_default();
        *n += 1;
        n.to_le_bytes().to_vec()
    }
    fn removed(&mut self, group: GroupId) {
        self.0.remove(&group);
    }
    fn snapshot(&self, group: GroupId) -> Vec<u8> {
        self.0
            .get(&group)
            .copied()
            .unwrap_or(0)
            .to_le_bytes()
            .to_vec()
    }
    fn restore(&mut self, group: GroupId, data: &[u8]) -> Result<(), String> {
        let n = u64::from_le_bytes(data.try_into().map_err(|_| "not a count".to_string())?);
        self.0.insert(group, n);
        Ok(())
    }
}

fn run_host(a: HostArgs) -> Result<(), String> {
    let peers = a
        .peers
        .iter()
        .map(|p| {
            let (id, addr) = p.split_once('=').ok_or(format!("bad --peer {p}"))?;
            Ok((
                NodeId(id.parse().map_err(|e| format!("{e}"))?),
                addr.parse().map_err(|e| format!("{e}"))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // One thread runs the host, its connections and its clients: the host is one task, and
    // waking tasks across threads cost more than they save on a small machine (fsyncs run on
    // tokio's blocking threads either way).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if a.runners {
        return rt.block_on(runners::serve(a, peers));
    }
    rt.block_on(async move {
        let mut c = HostConfig::new(NodeId(a.id), a.dir, a.listen, peers);
        c.tick = Duration::from_millis(a.tick_ms);
        let host = start_host(c, Counter::default())
            .await
            .map_err(|e| e.to_string())?;
        let l = tokio::net::TcpListener::bind(a.control)
            .await
            .map_err(|e| e.to_string())?;
        raftlet_tokio::multi::control::serve(l, host).await;
        Ok(())
    })
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

struct Hosts {
    children: Vec<Option<Child>>,
    control: Vec<SocketAddr>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn call(addr: SocketAddr, req: &Request) -> Option<Response> {
    let mut c = ControlClient::connect(addr).await.ok()?;
    c.call(req).await.ok()
}

/// Every group's leader, when the live hosts agree on a live one for each.
async fn leaders(control: &[SocketAddr], live: &[u64], groups: u64) -> Option<Vec<u64>> {
    let mut best: HashMap<GroupId, (Option<u64>, u64)> = HashMap::new();
    for &id in live {
        let Some(Response::Leaders(v)) = call(control[id as usize - 1], &Request::Leaders).await
        else {
            return None;
        };
        for (g, l, t) in v {
            let e = best.entry(g).or_insert((l, t));
            if e.1 < t || (e.1 == t && e.0.is_none()) {
                *e = (l, t);
            }
        }
    }
    (0..groups)
        .map(|g| {
            best.get(&g)
                .and_then(|(l, _)| *l)
                .filter(|l| live.contains(l))
        })
        .collect()
}

async fn awake(control: &[SocketAddr], live: &[u64]) -> Option<usize> {
    let mut n = 0;
    for &id in live {
        let Some(Response::Status(s)) = call(control[id as usize - 1], &Request::Status).await
        else {
            return None;
        };
        n += s.awake;
    }
    Some(n)
}

struct LoadResult {
    writes: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

/// `clients` closed-loop clients propose to groups `0..groups` (uniformly at random), each to
/// the group's leader, for `secs` seconds after a one-second warm-up.
async fn load(
    control: &[SocketAddr],
    leaders: &[u64],
    groups: u64,
    clients: usize,
    secs: u64,
    value_bytes: usize,
) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let measure_from = Instant::now() + Duration::from_secs(1);
    let leaders = Arc::new(leaders.to_vec());
    let mut joins = Vec::new();
    for c in 0..clients {
        let control = control.to_vec();
        let leaders = leaders.clone();
        let stop = stop.clone();
        joins.push(tokio::spawn(async move {
            let mut conns: Vec<Option<ControlClient>> = Vec::new();
            for &a in &control {
                conns.push(ControlClient::connect(a).await.ok());
            }
            let mut known: HashMap<GroupId, u64> = HashMap::new();
            let mut rng = fastrand_lite(c as u64 + 1);
            let mut lat = Vec::new();
            let command = vec![0xAB; value_bytes];
            while !stop.load(Ordering::Relaxed) {
                let g = rng() % groups;
                let l = *known.get(&g).unwrap_or(&leaders[g as usize]);
                let Some(conn) = conns[l as usize - 1].as_mut() else {
                    break;
                };
                let t = Instant::now();
                let r = conn
                    .call(&Request::Propose {
                        group: g,
                        command: command.clone(),
                    })
                    .await;
                match r {
                    Ok(Response::Applied(_)) => {
                        if t >= measure_from {
                            lat.push(t.elapsed());
                        }
                    }
                    Ok(Response::NotLeader(Some(l))) => {
                        known.insert(g, l);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(_) => break,
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs + 1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for j in joins {
        all.extend(j.await.unwrap_or_default());
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    LoadResult {
        writes: all.len() as u64,
        secs: secs as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
    }
}

/// A tiny xorshift generator (the benchmark needs no more).
fn fastrand_lite(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

async fn wait<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> Result<T, String> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if t0.elapsed() > limit {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bench(a: BenchArgs) -> Result<(), String> {
    if a.runners && a.groups > 4_000 {
        return Err("--runners takes at most 4,000 groups (a port per group and process)".into());
    }
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("raftlet-multi-{}", std::process::id()));
            tmp.clone()
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // Runner-per-group hosts listen on a port per group from their base port up (below the
    // ephemeral range; at most 4,000 groups).
    let raft: Vec<SocketAddr> = if a.runners {
        (0..3u16)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 12_000 + i * 4_000)))
            .collect()
    } else {
        (0..3).map(|_| free_addr()).collect()
    };
    let control: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut hosts = Hosts {
        children: Vec::new(),
        control: control.clone(),
    };
    for id in 1..=3u64 {
        let mut cmd = Command::new(&exe);
        cmd.arg("host")
            .arg("--id")
            .arg(id.to_string())
            .arg("--dir")
            .arg(dir.join(format!("host-{id}")))
            .arg("--listen")
            .arg(raft[id as usize - 1].to_string())
            .arg("--control")
            .arg(control[id as usize - 1].to_string());
        for p in (1..=3u64).filter(|&p| p != id) {
            cmd.arg("--peer")
                .arg(format!("{p}={}", raft[p as usize - 1]));
        }
        if a.runners {
            cmd.arg("--runners");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        hosts
            .children
            .push(Some(cmd.spawn().map_err(|e| e.to_string())?));
    }
    let pids: Vec<u32> = hosts
        .children
        .iter()
        .map(|c| c.as_ref().map_or(0, Child::id))
        .collect();
    let hz = clock_ticks_per_sec();
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let all = [1u64, 2, 3];
    rt.block_on(async {
        wait("the hosts to listen", Duration::from_secs(30), || async {
            awake(&hosts.control, &all).await
        })
        .await?;
        let rss_empty: u64 = pids.iter().map(|&p| rss_kib(p)).sum();
        // Groups are created on the three hosts at once, in chunks.
        let t0 = Instant::now();
        let chunk = 500;
        let mut from = 0;
        while from < a.groups {
            let to = (from + chunk).min(a.groups);
            let mut joins = Vec::new();
            for &c in &hosts.control {
                joins.push(tokio::spawn(async move {
                    call(
                        c,
                        &Request::CreateGroups {
                            from,
                            to,
                            voters: vec![1, 2, 3],
                        },
                    )
                    .await
                }));
            }
            for j in joins {
                match j.await {
                    Ok(Some(Response::Created)) => {}
                    other => return Err(format!("creating groups: {other:?}")),
                }
            }
            from = to;
        }
        let ls = wait("every group to elect", Duration::from_secs(300), || {
            leaders(&hosts.control, &all, a.groups)
        })
        .await?;
        let elected = t0.elapsed();
        if !a.runners {
            wait("every group to quiesce", Duration::from_secs(300), || async {
                (awake(&hosts.control, &all).await? == 0).then_some(())
            })
            .await?;
        }
        let quiet = t0.elapsed();
        if a.runners {
            println!(
                "one runner per group: {} groups x 3 replicas created and elected in {:.1} s (runners do not quiesce)",
                a.groups,
                elected.as_secs_f64()
            );
        } else {
            println!(
                "multi-group hosts: {} groups x 3 replicas created and elected in {:.1} s, all quiescent after {:.1} s",
                a.groups,
                elected.as_secs_f64(),
                quiet.as_secs_f64()
            );
        }
        // Idle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu0: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
        let w0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(a.idle_secs)).await;
        let cpu1: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
        let idle_pct = (cpu1 - cpu0) as f64 / hz as f64 / w0.elapsed().as_secs_f64() * 100.0;
        let rss: u64 = pids.iter().map(|&p| rss_kib(p)).sum();
        let per_replica = (rss.saturating_sub(rss_empty)) as f64 * 1024.0 / (3 * a.groups) as f64;
        println!(
            "idle: the three processes used {idle_pct:.2} % of one core over {} s; resident memory {} MiB, {:.0} B per group replica beyond the empty hosts ({} MiB)",
            a.idle_secs,
            rss / 1024,
            per_replica,
            rss_empty / 1024
        );
        // Writes: spread, then one group.
        let spread = load(
            &hosts.control,
            &ls,
            a.write_groups.min(a.groups),
            a.clients,
            a.duration,
            a.value_bytes,
        )
        .await;
        let single = load(&hosts.control, &ls, 1, a.clients, a.duration, a.value_bytes).await;
        let row = |name: &str, r: &LoadResult| {
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
                r.writes as f64 / r.secs,
                r.p50_ms,
                r.p99_ms,
                r.p999_ms
            );
        };
        println!("\n| {} clients, {}-byte commands | writes/s | p50 ms | p99 ms | p99.9 ms |", a.clients, a.value_bytes);
        println!("|---|---:|---:|---:|---:|");
        row(&format!("spread over {} groups", a.write_groups.min(a.groups)), &spread);
        row("all to one group", &single);
        let ratio = (spread.writes as f64) / (single.writes.max(1) as f64);
        println!("spread / one group: {ratio:.2}x\n");
        // Failover: quiet again, then the process leading the most groups is killed.
        if !a.runners {
            wait("every group to quiesce", Duration::from_secs(120), || async {
                (awake(&hosts.control, &all).await? == 0).then_some(())
            })
            .await?;
        } else {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let ls = leaders(&hosts.control, &all, a.groups)
            .await
            .ok_or("no leaders")?;
        let victim = (1..=3u64)
            .max_by_key(|&p| ls.iter().filter(|&&l| l == p).count())
            .unwrap_or(1);
        let moved = ls.iter().filter(|&&l| l == victim).count();
        if let Some(mut c) = hosts.children[victim as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let t_kill = Instant::now();
        let live: Vec<u64> = all.iter().copied().filter(|&p| p != victim).collect();
        let mut last_moved = Duration::ZERO;
        let mut pending: Vec<usize> = (0..ls.len()).filter(|&g| ls[g] == victim).collect();
        while !pending.is_empty() {
            if t_kill.elapsed() > Duration::from_secs(120) {
                return Err(format!("{} groups without a leader after 120 s", pending.len()));
            }
            let mut best: HashMap<GroupId, Option<u64>> = HashMap::new();
            for &id in &live {
                if let Some(Response::Leaders(v)) = call(hosts.control[id as usize - 1], &Request::Leaders).await {
                    for (g, l, _) in v {
                        if l.is_some_and(|l| live.contains(&l)) {
                            best.insert(g, l);
                        }
                    }
                }
            }
            let now = t_kill.elapsed();
            pending.retain(|&g| {
                let done = best.get(&(g as u64)).is_some_and(Option::is_some);
                if done {
                    last_moved = now;
                }
                !done
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "failover: host {victim}, leading {moved} groups, killed; every one of them had a new leader {:.2} s later",
            last_moved.as_secs_f64()
        );
        if a.json {
            println!(
                "{{\"groups\":{},\"idle_cpu_pct\":{idle_pct:.3},\"bytes_per_replica\":{per_replica:.0},\"spread_writes_per_s\":{:.0},\"spread_p99_ms\":{:.3},\"single_writes_per_s\":{:.0},\"single_p99_ms\":{:.3},\"failover_s\":{:.3},\"moved\":{moved}}}",
                a.groups,
                spread.writes as f64 / spread.secs,
                spread.p99_ms,
                single.writes as f64 / single.secs,
                single.p99_ms,
                last_moved.as_secs_f64()
            );
        }
        Ok::<(), String>(())
    })?;
    drop(hosts);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The comparison: one single-group runner per group, behind the same client protocol.
mod runners {
    use super::{Counter, GroupMachine, HostArgs};
    use raftlet::{Index, NodeId};
    use raftlet_tokio::multi::HostStatus;
    use raftlet_tokio::multi::control::{Request, Response, read_msg, write_msg};
    use raftlet_tokio::runner::{self, ClientError, Handle, RunnerConfig, StateMachine};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::BufReader;

    struct One(Counter);

    impl StateMachine for One {
        fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
            self.0.apply(0, index, command)
        }
        fn query(&self, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0
                .0
                .get(&0)
                .copied()
                .unwrap_or(0)
                .to_le_bytes()
                .to_vec()
        }
        fn restore(&mut self, data: &[u8]) -> Result<(), String> {
            let n = u64::from_le_bytes(data.try_into().map_err(|_| "bad snapshot")?);
            self.0.0.insert(0, n);
            Ok(())
        }
    }

    fn port(base: SocketAddr, g: u64) -> SocketAddr {
        SocketAddr::new(base.ip(), base.port() + g as u16)
    }

    pub(super) async fn serve(a: HostArgs, peers: Vec<(NodeId, SocketAddr)>) -> Result<(), String> {
        let handles: Arc<Mutex<Vec<Handle>>> = Arc::default();
        let l = tokio::net::TcpListener::bind(a.control)
            .await
            .map_err(|e| e.to_string())?;
        let a = Arc::new(a);
        let peers = Arc::new(peers);
        while let Ok((stream, _)) = l.accept().await {
            let _ = stream.set_nodelay(true);
            let (handles, a, peers) = (handles.clone(), a.clone(), peers.clone());
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                while let Ok(Some(req)) = read_msg::<Request>(&mut r).await {
                    let resp = answer(&handles, &a, &peers, req).await;
                    if write_msg(&mut w, &resp).await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok(())
    }

    async fn answer(
        handles: &Mutex<Vec<Handle>>,
        a: &HostArgs,
        peers: &[(NodeId, SocketAddr)],
        req: Request,
    ) -> Response {
        match req {
            Request::Propose { group, command } => {
                let h = handles
                    .lock()
                    .expect("handles")
                    .get(group as usize)
                    .cloned();
                let Some(h) = h else {
                    return Response::Failed("no such group".into());
                };
                match h.propose_local(command).await {
                    Ok(r) => Response::Applied(r),
                    Err(ClientError::NotLeader { leader }) => {
                        Response::NotLeader(leader.map(|n| n.0))
                    }
                    Err(e) => Response::Failed(e.to_string()),
                }
            }
            Request::Leaders => Response::Leaders(
                handles
                    .lock()
                    .expect("handles")
                    .iter()
                    .enumerate()
                    .map(|(g, h)| {
                        let (t, l) = h.leader();
                        (g as u64, l.map(|n| n.0), t.0)
                    })
                    .collect(),
            ),
            Request::Status => {
                let n = handles.lock().expect("handles").len();
                Response::Status(HostStatus {
                    groups: n,
                    awake: n,
                    ..HostStatus::default()
                })
            }
            Request::CreateGroups { from, to, voters } => {
                for g in from..to {
                    let voters: Vec<NodeId> = voters.iter().copied().map(NodeId).collect();
                    let mut c =
                        RunnerConfig::new(NodeId(a.id), a.dir.join(format!("g{g}")), voters);
                    c.tick = Duration::from_millis(a.tick_ms);
                    c.peers = peers.iter().map(|&(p, base)| (p, port(base, g))).collect();
                    match runner::start(c, One(Counter::default()), port(a.listen, g), None).await {
                        Ok((h, _)) => handles.lock().expect("handles").push(h),
                        Err(e) => return Response::Failed(format!("group {g}: {e}")),
                    }
                }
                Response::Created
            }
            Request::RemoveGroups { .. } => Response::Failed("not supported".into()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Host(a) => run_host(a),
        Cmd::Bench(a) => bench(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftlet-multi: {e}");
            ExitCode::FAILURE
        }
    }
}
