//! Three `raftlet-multi host` processes on loopback with 1,000 groups: every group elects and
//! takes a write; the process leading the most groups is killed with SIGKILL and every group
//! it led elects a new leader among the other two; it restarts from its shared log with all
//! 1,000 groups, catches up, and every group takes another write. Groups removed on every
//! process stay removed across the restart.

use raftlet_tokio::multi::control::{ControlClient, Request, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GROUPS: u64 = 1_000;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Hosts {
    dir: tempfile::TempDir,
    raft: Vec<SocketAddr>,
    control: Vec<SocketAddr>,
    children: Vec<Option<Child>>,
}

impl Hosts {
    fn spawn(&mut self, id: u64) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftlet-multi"));
        cmd.arg("host")
            .args(["--id", &id.to_string()])
            .arg("--dir")
            .arg(self.dir.path().join(format!("host-{id}")))
            .args(["--listen", &self.raft[id as usize - 1].to_string()])
            .args(["--control", &self.control[id as usize - 1].to_string()])
            .args(["--tick-ms", "50"]);
        for p in (1..=3u64).filter(|&p| p != id) {
            cmd.args(["--peer", &format!("{p}={}", self.raft[p as usize - 1])]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn raftlet-multi host");
        self.children[id as usize - 1] = Some(child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for id in 1..=3 {
            self.kill(id);
        }
    }
}

async fn call(addr: SocketAddr, req: &Request) -> Option<Response> {
    let mut c = ControlClient::connect(addr).await.ok()?;
    c.call(req).await.ok()
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every live group's leader, when the `live` hosts agree on a live one for each of `groups`.
async fn leaders(h: &Hosts, live: &[u64], groups: &[u64]) -> Option<HashMap<u64, u64>> {
    let mut best: HashMap<u64, (Option<u64>, u64)> = HashMap::new();
    for &id in live {
        let Some(Response::Leaders(v)) = call(h.control[id as usize - 1], &Request::Leaders).await
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
    groups
        .iter()
        .map(|g| {
            let l = best
                .get(g)
                .and_then(|(l, _)| *l)
                .filter(|l| live.contains(l))?;
            Some((*g, l))
        })
        .collect()
}

async fn status(h: &Hosts, id: u64) -> Option<raftlet_tokio::multi::HostStatus> {
    match call(h.control[id as usize - 1], &Request::Status).await? {
        Response::Status(s) => Some(s),
        _ => None,
    }
}

/// Proposes `[tag]` to every group at its leader; every one must be applied.
async fn write_all(h: &Hosts, leaders: &HashMap<u64, u64>, tag: u8) {
    let mut conns: HashMap<u64, ControlClient> = HashMap::new();
    for (&g, &l) in leaders {
        let conn = match conns.entry(l) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                ControlClient::connect(h.control[l as usize - 1])
                    .await
                    .unwrap(),
            ),
        };
        let r = conn
            .call(&Request::Propose {
                group: g,
                command: vec![tag],
            })
            .await
            .unwrap();
        assert!(matches!(r, Response::Applied(_)), "group {g}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_groups_survive_a_killed_process() {
    let mut h = Hosts {
        dir: tempfile::tempdir().unwrap(),
        raft: (0..3).map(|_| free_addr()).collect(),
        control: (0..3).map(|_| free_addr()).collect(),
        children: vec![None, None, None],
    };
    for id in 1..=3 {
        h.spawn(id);
    }
    let all = [1u64, 2, 3];
    for id in all {
        wait_for("a host to listen", || status(&h, id)).await;
        let r = call(
            h.control[id as usize - 1],
            &Request::CreateGroups {
                from: 0,
                to: GROUPS,
                voters: vec![1, 2, 3],
            },
        )
        .await;
        assert!(matches!(r, Some(Response::Created)), "{r:?}");
    }
    let all_groups: Vec<u64> = (0..GROUPS).collect();
    let ls = wait_for("every group to elect", || leaders(&h, &all, &all_groups)).await;
    write_all(&h, &ls, 1).await;
    // The last ten groups are removed everywhere.
    const KEPT: u64 = GROUPS - 10;
    for id in all {
        let r = call(
            h.control[id as usize - 1],
            &Request::RemoveGroups {
                from: KEPT,
                to: GROUPS,
            },
        )
        .await;
        assert!(matches!(r, Some(Response::Removed)), "{r:?}");
    }
    let groups: Vec<u64> = (0..KEPT).collect();
    let ls: HashMap<u64, u64> = ls.into_iter().filter(|(g, _)| *g < KEPT).collect();

    let victim = (1..=3u64)
        .max_by_key(|&p| ls.values().filter(|&&l| l == p).count())
        .unwrap();
    let moved = ls.values().filter(|&&l| l == victim).count();
    assert!(moved > 0);
    h.kill(victim);
    let t0 = Instant::now();
    let live: Vec<u64> = all.iter().copied().filter(|&p| p != victim).collect();
    let ls2 = wait_for("new leaders", || leaders(&h, &live, &groups)).await;
    println!(
        "{moved} groups led by the killed process had new leaders {:?} after SIGKILL",
        t0.elapsed()
    );
    for g in &groups {
        if ls[g] != victim {
            assert_eq!(
                ls[g], ls2[g],
                "group {g}, led by a live process, changed leader"
            );
        }
    }
    write_all(&h, &ls2, 2).await;

    h.spawn(victim);
    let s = wait_for("the restarted host", || status(&h, victim)).await;
    assert_eq!(
        s.groups, KEPT as usize,
        "groups recovered from the shared log"
    );
    let r = call(
        h.control[victim as usize - 1],
        &Request::Propose {
            group: GROUPS - 1,
            command: vec![9],
        },
    )
    .await;
    assert!(
        matches!(&r, Some(Response::Failed(e)) if e.contains("NoGroup")),
        "a removed group came back: {r:?}"
    );
    let ls3 = wait_for("leaders after the restart", || leaders(&h, &all, &groups)).await;
    write_all(&h, &ls3, 3).await;
    wait_for("every group to quiesce", || async {
        for id in all {
            if status(&h, id).await?.awake > 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
    // Three writes applied on every replica: the restarted process replayed its log and caught
    // up (a group's state machine counts its commands; the third answered 3 at the leader, and
    // the log of each replica holds them). Compare the processes' leader views one last time.
    let again = leaders(&h, &all, &groups).await.expect("leaders");
    assert_eq!(again, ls3);
}
