//! Three `raftlet-kv serve` processes on loopback. A client streams writes through any node;
//! the leader is killed with SIGKILL in the middle of the stream. Afterwards every write the
//! client saw acknowledged is present on the new leader (linearizable reads), and once the
//! killed node is restarted from its data directory, all three converge to the same store.

use raftlet_tokio::kv::{self, Client, Reply, Request};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Procs {
    addrs: Vec<SocketAddr>,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
    /// Start node 0 with this limit on open files (`ulimit -n`).
    fd_limit: Option<u32>,
}

impl Procs {
    fn spawn(&mut self, k: usize) {
        let peers: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let mut cmd = match self.fd_limit.filter(|_| k == 0) {
            None => Command::new(env!("CARGO_BIN_EXE_raftlet-kv")),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_raftlet-kv"));
                c
            }
        };
        let child = cmd
            .args([
                "serve",
                "--insecure",
                "--id",
                &(k + 1).to_string(),
                "--peers",
                &peers.join(","),
            ])
            .arg("--data")
            .arg(self.dir.path().join(format!("n{}", k + 1)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn raftlet-kv serve");
        self.children[k] = Some(child);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn ask(addr: SocketAddr, request: Request) -> Option<Reply> {
    let env = kv::Envelope { hops: 0, request };
    kv::call(addr, &env, Duration::from_secs(2)).await.ok()
}

/// The index (0-based) of the node that reports itself leader.
async fn leader(p: &Procs, except: Option<usize>) -> usize {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        for (k, a) in p.addrs.iter().enumerate() {
            if Some(k) == except {
                continue;
            }
            if let Some(Reply::Status(s)) = ask(*a, Request::Status).await
                && s.contains(" Leader ")
            {
                return k;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_sigkill_of_the_leader() {
    let mut p = Procs {
        addrs: (0..3).map(|_| free_addr()).collect(),
        dir: tempfile::tempdir().unwrap(),
        children: vec![None, None, None],
        fd_limit: None,
    };
    for k in 0..3 {
        p.spawn(k);
    }
    let l = leader(&p, None).await;
    // Clients write through a follower (forwarded) and through the leader, one key at a time,
    // remembering what was acknowledged.
    let targets = [p.addrs[(l + 1) % 3], p.addrs[l]];
    let mut acked = Vec::new();
    let (mut unknown, mut refused) = (0, 0);
    let mut killed = false;
    let t0 = Instant::now();
    let mut k = 0u32;
    while acked.len() < 400 && t0.elapsed() < Duration::from_secs(60) {
        if acked.len() == 150 && !killed {
            // SIGKILL the leader in the middle of the stream.
            let mut c = p.children[l].take().unwrap();
            c.kill().unwrap();
            c.wait().unwrap();
            killed = true;
        }
        let alive: Vec<SocketAddr> = targets
            .iter()
            .copied()
            .filter(|a| !killed || *a != p.addrs[l])
            .collect();
        let addr = alive[k as usize % alive.len()];
        let key = format!("k{k:05}");
        let req = Request::Put {
            key: key.clone().into_bytes(),
            value: format!("v{k}").into_bytes(),
        };
        let reply = match Client::connect(addr).await {
            Ok(mut c) => c.call(req, Duration::from_secs(5)).await.ok(),
            Err(_) => Some(Reply::NotApplied("connect".into())),
        };
        match reply {
            Some(Reply::Applied) => acked.push((key, format!("v{k}"))),
            Some(Reply::NotApplied(_)) => refused += 1,
            _ => unknown += 1,
        }
        k += 1;
    }
    assert!(
        killed && acked.len() >= 400,
        "only {} acknowledged ({unknown} unknown, {refused} refused)",
        acked.len()
    );
    // Every acknowledged write is on the new leader, read linearizably.
    let l2 = leader(&p, Some(l)).await;
    assert_ne!(l2, l);
    let mut client = Client::connect(p.addrs[l2]).await.unwrap();
    for (key, value) in &acked {
        let got = client
            .call(
                Request::Get {
                    key: key.clone().into_bytes(),
                    stale: false,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(got, Reply::Value(Some(value.clone().into_bytes())), "{key}");
    }
    // The killed node restarts from its data directory; all three converge.
    p.spawn(l);
    let t1 = Instant::now();
    loop {
        // A final write through the new leader marks the end of the history.
        let _ = ask(
            p.addrs[l2],
            Request::Put {
                key: b"end".to_vec(),
                value: b"1".to_vec(),
            },
        )
        .await;
        let mut digests = Vec::new();
        for a in &p.addrs {
            digests.push(ask(*a, Request::Digest).await);
        }
        if digests[0].is_some() && digests.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "no convergence: {digests:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `status` given one address shows every member: the others are found through it.
    let out = Command::new(env!("CARGO_BIN_EXE_raftlet-kv"))
        .args(["status", "--json", "--addr", &p.addrs[l2].to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().expect("every member answered"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3], "{v}");
}

/// A second `serve` on a data directory a live node uses is refused, and says why; the live
/// node is untouched.
#[test]
fn a_second_node_on_a_used_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_addr(), free_addr());
    let serve = |addr: SocketAddr| {
        Command::new(env!("CARGO_BIN_EXE_raftlet-kv"))
            .args([
                "serve",
                "--insecure",
                "--id",
                "1",
                "--peers",
                &format!("1={addr}"),
            ])
            .arg("--data")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn raftlet-kv serve")
    };
    let mut first = serve(a);
    std::thread::sleep(Duration::from_millis(500));
    // Bounded: without the lock the second node would run for ever.
    let mut second = serve(b);
    let t0 = Instant::now();
    while second.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            let _ = first.kill();
            panic!("a second node on a used data directory kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = second.wait_with_output().expect("second node ends");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(stderr.contains("in use by another node"), "{stderr}");
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first node stopped"
    );
    let _ = first.kill();
    let _ = first.wait();
    // Once the first is gone (killed: no clean release), the directory can be used again.
    let mut third = serve(b);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        third.try_wait().unwrap().is_none(),
        "a node on a free directory stopped"
    );
    let _ = third.kill();
    let _ = third.wait();
}

/// The soft limit on open files of this process.
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|x| x.starts_with("Max open files"))
                .and_then(|x| x.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// A flood of hostile connections on one node's port (the node limited to 1,024 open files,
/// a common default), from 6 source addresses: silent ones,
/// clients that announce a 1 MiB request and trickle it, and would-be peers that never finish
/// the handshake. The port's slots fill up (new connections are refused until hostile ones
/// time out), but the node stays up, its established peers and clients are served: the
/// cluster elects, commits through that node and reads from it, and its memory stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_slow_connections_leaves_a_node_serving_in_bounded_memory() {
    use tokio::io::AsyncWriteExt;
    let mut p = Procs {
        addrs: (0..3).map(|_| free_addr()).collect(),
        dir: tempfile::tempdir().unwrap(),
        children: vec![None, None, None],
        fd_limit: Some(1024),
    };
    for k in 0..3 {
        p.spawn(k);
    }
    let l = leader(&p, None).await;
    let target = p.addrs[0];
    let pid = p.children[0].as_ref().unwrap().id();
    let rss_before = rss_kib(pid);
    // A client connected before the flood.
    let mut client = Client::connect(target).await.unwrap();
    // As many hostile connections as this process may open, up to 1,000.
    let n = 1000.min(open_file_limit().saturating_sub(200));
    let flood_started = Instant::now();
    let mut flood = Vec::new();
    let mut opened = 0;
    for i in 0..n {
        let source = format!("127.0.1.{}:0", 1 + i % 6).parse().unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(source).unwrap();
        let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_secs(1), sock.connect(target)).await
        else {
            continue;
        };
        opened += 1;
        match i % 3 {
            // Silent.
            0 => {}
            // A client announcing 1 MiB, then a trickle.
            1 => {
                let mut head = vec![b'C'];
                head.extend_from_slice(&(1u32 << 20).to_le_bytes());
                head.extend_from_slice(&[7u8; 100]);
                let _ = s.write_all(&head).await;
            }
            // A would-be peer: the kind byte and half a hello.
            _ => {
                let _ = s.write_all(&[b'P', 40, 0]).await;
            }
        }
        flood.push(s);
    }
    assert!(opened >= n / 2, "only {opened} of {n} connections opened");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The flooded node commits and serves.
    let put = |k: u32| Request::Put {
        key: format!("f{k}").into_bytes(),
        value: b"v".to_vec(),
    };
    for k in 0..20 {
        let r = client.call(put(k), Duration::from_secs(5)).await;
        assert!(
            matches!(r, Ok(Reply::Applied)),
            "put {k}: {r:?} (leader {l})"
        );
    }
    // An election under the flood: kill the leader (or, if the flooded node leads, another
    // node); the flooded node takes part and the cluster commits again.
    let victim = if l == 0 { 1 } else { l };
    let mut c = p.children[victim].take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    let l2 = leader(&p, Some(victim)).await;
    assert_ne!(l2, victim);
    for k in 20..40 {
        let r = client.call(put(k), Duration::from_secs(10)).await.ok();
        assert_eq!(r, Some(Reply::Applied), "put {k}");
    }
    let get = Request::Get {
        key: b"f39".to_vec(),
        stale: false,
    };
    let got = client.call(get, Duration::from_secs(5)).await.ok();
    assert_eq!(got, Some(Reply::Value(Some(b"v".to_vec()))));
    // Once the silent and half-handshake connections have timed out (5 s), new connections
    // get in again, although the flood's sockets stay open on our side.
    let since = flood_started.elapsed();
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(since)).await;
    let mut fresh = Client::connect(target).await.unwrap();
    let r = fresh.call(put(99), Duration::from_secs(10)).await;
    assert!(
        matches!(r, Ok(Reply::Applied)),
        "a new connection after the handshake timeout: {r:?}"
    );
    let rss = rss_kib(pid);
    eprintln!(
        "flood: {opened} hostile connections; node RSS {} KiB before, {rss} KiB during",
        rss_before
    );
    assert!(rss < 64 << 10, "RSS {rss} KiB under the flood");
    assert!(
        p.children[0]
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "the flooded node exited"
    );
    drop(flood);
}
