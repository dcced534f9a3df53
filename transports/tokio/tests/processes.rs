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
}

impl Procs {
    fn spawn(&mut self, k: usize) {
        let peers: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let child = Command::new(env!("CARGO_BIN_EXE_raftlet-kv"))
            .args([
                "serve",
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
}

/// A second `serve` on a data directory a live node uses is refused, and says why; the live
/// node is untouched.
#[test]
fn a_second_node_on_a_used_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_addr(), free_addr());
    let serve = |addr: SocketAddr| {
        Command::new(env!("CARGO_BIN_EXE_raftlet-kv"))
            .args(["serve", "--id", "1", "--peers", &format!("1={addr}")])
            .arg("--data")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn raftlet-kv serve")
    };
    let mut first = serve(a);
    std::thread::sleep(Duration::from_millis(500));
    let second = serve(b).wait_with_output().expect("second node ends");
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
