//! Real TCP on loopback, in one process: a 3-node cluster commits, survives its leader being
//! killed, and a node restarted from its data directory rejoins with its data. Bad input on the
//! wire (garbage, oversized lengths, a wrong cluster id, an unknown node, a half-open
//! connection) leaves the node up and serving.

use raftlet::{NodeId, Role, Term};
use raftlet_tokio::kv::{self, Kv, KvAnswer};
use raftlet_tokio::runner::{self, Handle, RunnerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Cluster {
    dir: tempfile::TempDir,
    addrs: Vec<(NodeId, SocketAddr)>,
    nodes: HashMap<NodeId, Handle>,
    tweak: fn(&mut RunnerConfig),
}

impl Cluster {
    async fn new(n: u64) -> Self {
        Self::with(n, |_| {}).await
    }

    /// A cluster whose runners' configurations `tweak` adjusts.
    async fn with(n: u64, tweak: fn(&mut RunnerConfig)) -> Self {
        let mut c = Self {
            dir: tempfile::tempdir().unwrap(),
            addrs: (1..=n).map(|i| (NodeId(i), free_addr())).collect(),
            nodes: HashMap::new(),
            tweak,
        };
        for i in 1..=n {
            c.start(NodeId(i)).await;
        }
        c
    }

    async fn start(&mut self, id: NodeId) -> Handle {
        let voters: Vec<NodeId> = self.addrs.iter().map(|(i, _)| *i).collect();
        let mut cfg = RunnerConfig::new(id, self.dir.path().join(id.to_string()), voters);
        cfg.peers = self
            .addrs
            .iter()
            .copied()
            .filter(|(i, _)| *i != id)
            .collect();
        cfg.tick = Duration::from_millis(20);
        cfg.forward_timeout = Duration::from_secs(2);
        (self.tweak)(&mut cfg);
        let addr = self.addrs.iter().find(|(i, _)| *i == id).unwrap().1;
        let mut tries = 0;
        let h = loop {
            match runner::start(cfg.clone(), Kv::default(), addr, None).await {
                Ok((h, _)) => break h,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{id}: {e}"),
            }
        };
        self.nodes.insert(id, h.clone());
        h
    }

    async fn leader(&self, newer_than: Term) -> (NodeId, Term) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            for h in self.nodes.values() {
                if let Some(s) = h.status().await
                    && s.role == Role::Leader
                    && s.term > newer_than
                {
                    return (s.id, s.term);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no leader");
    }

    async fn put(&self, leader: NodeId, key: &str) {
        let answer = self.nodes[&leader]
            .propose(kv::put(key.as_bytes(), b"v"))
            .await
            .unwrap();
        assert_eq!(kv::answer(&answer), Some(KvAnswer::Done));
    }

    /// Waits until every running node has applied `leader`'s commit index, then compares
    /// their digests.
    async fn converged(&self, leader: NodeId) -> KvAnswer {
        let target = self.nodes[&leader].status().await.unwrap().commit;
        let mut digests = Vec::new();
        for h in self.nodes.values() {
            let t0 = Instant::now();
            while h.status().await.unwrap().applied < target {
                assert!(t0.elapsed() < Duration::from_secs(20), "{} lags", h.id());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            digests.push(kv::answer(&h.local_read(kv::digest()).await.unwrap()).unwrap());
        }
        assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
        digests.pop().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_commits_survives_its_leader_and_a_restarted_node_rejoins_with_its_data() {
    let mut c = Cluster::new(3).await;
    let (l1, t1) = c.leader(Term(0)).await;
    for k in 0..50 {
        c.put(l1, &format!("a{k}")).await;
    }
    assert_eq!(
        c.converged(l1).await,
        KvAnswer::Digest {
            keys: 50,
            hash: digest_of(&c, l1).await
        }
    );
    // Kill the leader: the others elect a new one and go on.
    // What the leader's own log holds durably (with its lazy sync, possibly less than its
    // commit index: the followers hold the rest).
    let durable = c.nodes[&l1].status().await.unwrap().durable;
    let h1 = c.nodes.remove(&l1).unwrap();
    h1.kill();
    let (l2, t2) = c.leader(t1).await;
    assert_ne!(l2, l1);
    assert!(t2 > t1);
    for k in 0..50 {
        c.put(l2, &format!("b{k}")).await;
    }
    // A linearizable read on the other follower sees the new leader's writes.
    let other = *c.nodes.keys().find(|&&i| i != l2).unwrap();
    let got = c.nodes[&other].read(kv::get(b"b49")).await.unwrap();
    assert_eq!(kv::answer(&got), Some(KvAnswer::Value(Some(b"v".to_vec()))));
    // The old leader restarts from its data directory: its log is there before it hears from
    // anyone (the state machine replays it once the commit index is known again), and it
    // catches up.
    let h1 = c.start(l1).await;
    let st = h1.status().await.unwrap();
    assert!(
        st.last_index >= durable,
        "{st:?} lost entries its log held durably before the kill"
    );
    assert!(st.term >= t1);
    let d = c.converged(l2).await;
    assert!(matches!(d, KvAnswer::Digest { keys: 100, .. }), "{d:?}");
    let local = h1.local_read(kv::get(b"a49")).await.unwrap();
    assert_eq!(
        kv::answer(&local),
        Some(KvAnswer::Value(Some(b"v".to_vec())))
    );
    for h in c.nodes.values() {
        h.shutdown().await;
    }
}

/// A leader that syncs lazily takes a snapshot of state its own log does not hold durably yet
/// (its followers do). Killed then, it loses the log's unsynced tail; it restarts from the
/// snapshot, which is ahead of its log's durable end, and rejoins with every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_leader_killed_with_a_snapshot_ahead_of_its_log_restarts_from_the_snapshot() {
    let mut c = Cluster::with(3, |cfg| {
        // Held until six writes wait; check-quorum rounds of 2 s (100 ticks of 20 ms).
        cfg.leader_sync_delay = Duration::from_secs(30);
        cfg.election_ticks = 100;
        cfg.snapshot_every = 0;
        cfg.log_retention = 0;
    })
    .await;
    let (l1, t1) = c.leader(Term(0)).await;
    let mut written = 0;
    let mut ahead = None;
    for _ in 0..50 {
        c.put(l1, &format!("a{written}")).await;
        written += 1;
        let Some(snap) = c.nodes[&l1].snapshot().await else {
            continue;
        };
        let st = c.nodes[&l1].status().await.unwrap();
        if st.durable < snap.index {
            ahead = Some((snap, st.durable));
            break;
        }
    }
    let (snap, durable) = ahead.expect("no snapshot got ahead of the leader's durable log");
    let h1 = c.nodes.remove(&l1).unwrap();
    h1.kill();
    let (l2, _) = c.leader(t1).await;
    c.put(l2, "after").await;
    written += 1;
    let h1 = c.start(l1).await;
    let st = h1.status().await.unwrap();
    assert!(
        st.log_start.index >= snap.index,
        "restarted from log start {:?}, not the snapshot {snap:?} (durable was {durable})",
        st.log_start
    );
    let d = c.converged(l2).await;
    assert!(
        matches!(d, KvAnswer::Digest { keys, .. } if keys == written),
        "{d:?}, {written} written"
    );
    for h in c.nodes.values() {
        h.shutdown().await;
    }
}

async fn digest_of(c: &Cluster, id: NodeId) -> u64 {
    match kv::answer(&c.nodes[&id].local_read(kv::digest()).await.unwrap()) {
        Some(KvAnswer::Digest { hash, .. }) => hash,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_wire_leaves_the_node_serving() {
    let c = Cluster::new(3).await;
    let (l, _) = c.leader(Term(0)).await;
    c.put(l, "before").await;
    let target = c.addrs.iter().find(|(i, _)| *i == l).unwrap().1;
    let hello = |cluster: u64, from: u64| {
        let body = postcard::to_allocvec(&(0x524C_4554u32, cluster, from)).unwrap();
        let mut f = b"P".to_vec();
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(&body);
        f
    };
    let other = c.addrs.iter().find(|(i, _)| *i != l).unwrap().0;
    let cluster_id = RunnerConfig::new(NodeId(1), ".", vec![NodeId(1)]).cluster;
    let mut attacks: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("wrong cluster", hello(cluster_id ^ 1, other.0)),
        ("unknown node", hello(cluster_id, 99)),
        ("oversized frame", {
            let mut f = hello(cluster_id, other.0);
            f.extend_from_slice(&u32::MAX.to_le_bytes());
            f.extend_from_slice(&[0; 64]);
            f
        }),
        ("undecodable frames", {
            let mut f = hello(cluster_id, other.0);
            for k in 0..20u8 {
                f.extend_from_slice(&8u32.to_le_bytes());
                f.extend_from_slice(&[k; 8]);
            }
            f
        }),
    ];
    // A frame of the right cluster but claiming to come from a third node is dropped too.
    let mut forged = hello(cluster_id, other.0);
    let codec = raftlet::wire::Codec::new(cluster_id, runner::MAX_FRAME);
    let msg: raftlet_tokio::net::Msg = raftlet::Message {
        from: NodeId(77),
        to: l,
        term: Term(1_000),
        body: raftlet::Body::Heartbeat {
            commit: raftlet::Index(0),
        },
    };
    let mut buf = vec![0u8; runner::MAX_FRAME + 4];
    let n = raftlet::wire::frame::encode_length_prefixed(&codec, &msg, &mut buf).unwrap();
    forged.extend_from_slice(&buf[..n]);
    attacks.push(("forged sender", forged));
    let refused_before = c.nodes[&l].status().await.unwrap().net.refused;
    for (what, bytes) in &attacks {
        let mut s = TcpStream::connect(target).await.unwrap();
        let _ = s.write_all(bytes).await;
        let _ = s.flush().await;
        let mut sink = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut sink)).await;
        let st = c.nodes[&l]
            .status()
            .await
            .unwrap_or_else(|| panic!("node died after {what}"));
        assert_eq!(st.role, Role::Leader, "{what} deposed the leader");
    }
    // Half-open connections: connect and say nothing (closed after the handshake timeout,
    // never blocking anyone).
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(target).await.unwrap());
    }
    let st = c.nodes[&l].status().await.unwrap();
    assert!(st.net.refused >= refused_before + 3, "{:?}", st.net);
    assert!(st.net.bad_frames >= 1, "{:?}", st.net);
    // Still serving: writes commit and every node converges.
    for k in 0..20 {
        c.put(l, &format!("after{k}")).await;
    }
    c.converged(l).await;
    assert_eq!(
        c.nodes[&l].status().await.unwrap().term,
        c.leader(Term(0)).await.1
    );
    drop(idle);
    for h in c.nodes.values() {
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_proposals_and_rides_out_the_death_of_the_leader() {
    let mut c = Cluster::new(3).await;
    let (l1, t1) = c.leader(Term(0)).await;
    let f = *c.nodes.keys().find(|&&i| i != l1).unwrap();
    // On a follower, propose goes to the leader and comes back with the answer; the local-only
    // call still says who leads.
    for k in 0..20 {
        let a = c.nodes[&f]
            .propose(kv::put(format!("f{k}").as_bytes(), b"v"))
            .await
            .unwrap();
        assert_eq!(kv::answer(&a), Some(KvAnswer::Done));
    }
    match c.nodes[&f].propose_local(kv::put(b"x", b"v")).await {
        Err(runner::ClientError::NotLeader { leader }) => assert_eq!(leader, Some(l1)),
        other => panic!("propose_local on a follower: {other:?}"),
    }
    // The leader dies. The follower still names it until an election: a proposal made now
    // must neither fail at once nor spin on the dead leader, but land on the next one.
    c.nodes.remove(&l1).unwrap().kill();
    // In process, a killed node's sockets close when its tasks next run; a crashed process's
    // close at once. (A request already sent to a node that dies is `Unknown`, rightly.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let a = c.nodes[&f]
        .propose(kv::put(b"after", b"v"))
        .await
        .expect("the proposal lands on the next leader");
    assert_eq!(kv::answer(&a), Some(KvAnswer::Done));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let (l2, t2) = c.leader(t1).await;
    assert!(t2 > t1 && l2 != l1);
    // Every acknowledged write is there.
    let got = c.nodes[&l2].read(kv::get(b"after")).await.unwrap();
    assert_eq!(kv::answer(&got), Some(KvAnswer::Value(Some(b"v".to_vec()))));
    let got = c.nodes[&l2].read(kv::get(b"f19")).await.unwrap();
    assert_eq!(kv::answer(&got), Some(KvAnswer::Value(Some(b"v".to_vec()))));
    // With no quorum left, a proposal gives up after the forward timeout (2 s here): the
    // leader took it, so its outcome is unknown.
    let other = *c.nodes.keys().find(|&&i| i != l2).unwrap();
    c.nodes.remove(&other).unwrap().kill();
    let t0 = Instant::now();
    let r = c.nodes[&l2].propose(kv::put(b"lost", b"v")).await;
    assert_eq!(r, Err(runner::ClientError::Unknown));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_and_serve_in_prometheus_format() {
    let c = Cluster::new(3).await;
    let (l, _) = c.leader(Term(0)).await;
    for k in 0..30 {
        c.put(l, &format!("m{k}")).await;
    }
    let s = c.nodes[&l].status().await.unwrap();
    let m = &s.metrics;
    assert!(m.proposals >= 30, "{m:?}");
    assert!(m.applied >= 30);
    assert_eq!(m.fsync.count, s.syncs, "one latency sample per sync");
    assert_eq!(m.fsync.counts.iter().sum::<u64>(), m.fsync.count);
    assert!(m.leader_changes >= 1);
    // Over HTTP, in the text format.
    let addr = raftlet_tokio::metrics::serve("127.0.0.1:0".parse().unwrap(), c.nodes[&l].clone())
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let value = |name: &str| -> f64 {
        let line = body
            .lines()
            .find(|x| x.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name} missing"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("raftlet_proposals_total") >= 30.0);
    assert_eq!(value("raftlet_is_leader"), 1.0);
    assert!(value("raftlet_fsync_seconds_count") >= 1.0);
    assert!(body.contains("raftlet_fsync_seconds_bucket{node=\"") && body.contains("le=\"+Inf\""));
    // Anything else is 404.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut other = String::new();
    s.read_to_string(&mut other).await.unwrap();
    assert!(other.starts_with("HTTP/1.1 404"));
}
