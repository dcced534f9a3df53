//! Replication throughput of raftlet against tikv/raft-rs (crate `raft` 0.7, `MemStorage`) in
//! the same run, plus per-message costs of raftlet. `cargo bench --bench replication`.
//!
//! How the comparison is kept fair:
//! * both run the same workload: 3 voters in one thread, node 1 elected before timing starts,
//!   the leader proposes `N` entries of `P` bytes in batches of `B` proposals, and the clock
//!   stops when every node has applied every entry;
//! * both pass messages by value through an in-memory queue (no serialization, no network),
//!   and persist into in-memory storage acknowledged at once (raft-rs: the standard
//!   `Ready` / `advance` loop of its examples on `MemStorage`);
//! * both create every payload once per proposal (raftlet: `bytes::Bytes`, raft-rs: `Vec<u8>`,
//!   what its `propose` takes);
//! * raft-rs is configured to put up to 1 MiB and raftlet up to `DEFAULT_BATCH` (8) entries in one append, each
//!   with a window of in-flight appends (256 / 8), so neither is limited to one entry per
//!   message; both are release builds with the same profile;
//! * each row is the median of 5 runs.

#![allow(unreachable_pub)]

#[path = "support/raftlet_cluster.rs"]
mod cluster;

use bytes::Bytes;
use std::hint::black_box;
use std::time::{Duration, Instant};

// ----- raft-rs ---------------------------------------------------------------------------------

mod raftrs {
    use raft::prelude::*;
    use raft::storage::MemStorage;
    use std::collections::VecDeque;

    pub struct Cluster {
        nodes: Vec<RawNode<MemStorage>>,
        net: VecDeque<Message>,
        pub applied: [u64; 3],
    }

    impl Cluster {
        pub fn new() -> Self {
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            let nodes = (1..=3u64)
                .map(|id| {
                    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
                    let cfg = Config {
                        id,
                        election_tick: 10,
                        heartbeat_tick: 3,
                        max_size_per_msg: 1 << 20,
                        max_inflight_msgs: 256,
                        ..Default::default()
                    };
                    RawNode::new(&cfg, storage, &logger).unwrap()
                })
                .collect();
            let mut c = Self {
                nodes,
                net: VecDeque::new(),
                applied: [0; 3],
            };
            c.nodes[0].campaign().unwrap();
            c.run();
            assert_eq!(c.nodes[0].raft.state, raft::StateRole::Leader);
            c
        }

        fn apply(applied: &mut u64, entries: Vec<Entry>) {
            *applied += entries.iter().filter(|e| !e.data.is_empty()).count() as u64;
        }

        fn on_ready(&mut self, i: usize) {
            let node = &mut self.nodes[i];
            if !node.has_ready() {
                return;
            }
            let mut ready = node.ready();
            self.net.extend(ready.take_messages());
            Self::apply(&mut self.applied[i], ready.take_committed_entries());
            if !ready.entries().is_empty() {
                node.mut_store().wl().append(ready.entries()).unwrap();
            }
            if let Some(hs) = ready.hs() {
                node.mut_store().wl().set_hardstate(hs.clone());
            }
            self.net.extend(ready.take_persisted_messages());
            let mut light = node.advance(ready);
            if let Some(commit) = light.commit_index() {
                node.mut_store().wl().mut_hard_state().set_commit(commit);
            }
            self.net.extend(light.take_messages());
            Self::apply(&mut self.applied[i], light.take_committed_entries());
            node.advance_apply();
        }

        pub fn run(&mut self) {
            loop {
                for i in 0..3 {
                    self.on_ready(i);
                }
                if self.nodes.iter().any(RawNode::has_ready) {
                    continue;
                }
                let Some(m) = self.net.pop_front() else { break };
                let to = m.to as usize - 1;
                let _ = self.nodes[to].step(m);
            }
        }

        pub fn propose(&mut self, data: &[u8]) {
            self.nodes[0].propose(vec![], data.to_vec()).unwrap();
        }
    }
}

// ----- the workload ----------------------------------------------------------------------------

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn raftlet_run(n: u64, size: usize, batch: u64) -> Duration {
    let payload = vec![0xA5u8; size];
    let mut c = cluster::Cluster::<Bytes>::new(n as usize + 16);
    c.elect();
    let base = c.applied;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = batch.min(n - sent);
        c.propose((0..k).map(|_| Bytes::copy_from_slice(&payload)));
        sent += k;
        c.run();
    }
    let d = t.elapsed();
    assert!(
        c.applied.iter().zip(base).all(|(a, b)| a - b == n),
        "raftlet: not all applied"
    );
    d
}

fn raftrs_run(n: u64, size: usize, batch: u64) -> Duration {
    let payload = vec![0xA5u8; size];
    let mut c = raftrs::Cluster::new();
    let base = c.applied;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = batch.min(n - sent);
        for _ in 0..k {
            c.propose(&payload);
        }
        sent += k;
        c.run();
    }
    let d = t.elapsed();
    assert!(
        c.applied.iter().zip(base).all(|(a, b)| a - b == n),
        "raft-rs: not all applied"
    );
    d
}

fn throughput() {
    println!("replication throughput, 3 nodes in memory, entries applied on every node per second");
    println!(
        "{:>6} {:>6} {:>8} {:>14} {:>14} {:>16}",
        "bytes", "batch", "entries", "raftlet/s", "raft-rs/s", "raftlet/raft-rs"
    );
    for size in [16usize, 128, 1024] {
        for batch in [1u64, 64] {
            let n = if batch == 1 { 20_000 } else { 100_000 };
            let ours = median((0..5).map(|_| raftlet_run(n, size, batch)).collect());
            let theirs = median((0..5).map(|_| raftrs_run(n, size, batch)).collect());
            let (a, b) = (
                n as f64 / ours.as_secs_f64(),
                n as f64 / theirs.as_secs_f64(),
            );
            println!(
                "{size:>6} {batch:>6} {n:>8} {a:>14.0} {b:>14.0} {:>15.2}x",
                a / b
            );
        }
    }
}

// ----- per-message costs -----------------------------------------------------------------------

/// Best-of-5 nanoseconds per call of `f` over `iters` calls.
fn ns_per(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn per_message() {
    use raftlet::wire::{Codec, max_frame_len_for};
    use raftlet::{Body, Entry, EntryData, Index, Message, NodeId, Term};
    println!("\nper-message costs (raftlet, best of 5)");
    // A tick on an idle leader (heartbeats every third tick).
    let mut c = cluster::Cluster::<Bytes>::new(1024);
    c.elect();
    let tick = ns_per(100_000, |_| {
        c.nodes[0].tick(&c.stores[0]);
        while let Some(a) = c.nodes[0].poll_action() {
            black_box(a);
        }
    });
    println!("  tick on a leader (with its actions drained)      {tick:>8.0} ns");
    // A follower handling a one-entry append, and the leader handling its acknowledgement:
    // time one replication round trip per entry, then subtract the leader's proposal.
    let rounds = 20_000u64;
    let mut c = cluster::Cluster::<Bytes>::new(rounds as usize + 16);
    c.elect();
    let data = Bytes::from_static(&[7u8; 128]);
    let (mut follower, mut leader) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        c.propose([data.clone()]);
        let msgs: Vec<_> = {
            let mut out = Vec::new();
            while let Some(a) = c.nodes[0].poll_action() {
                match a {
                    raftlet::Action::Send(m) => out.push(m),
                    raftlet::Action::Persist(p) => {
                        c.stores[0].log.extend(p.entries);
                        c.nodes[0].persisted(p.token, &c.stores[0]).unwrap();
                    }
                    _ => {}
                }
            }
            out
        };
        let mut acks = Vec::new();
        for m in msgs {
            let to = m.to.0 as usize - 1;
            let t = Instant::now();
            let _ = c.nodes[to].step(m, &c.stores[to]);
            while let Some(a) = c.nodes[to].poll_action() {
                match a {
                    raftlet::Action::Send(r) => acks.push(r),
                    raftlet::Action::Persist(p) => {
                        c.stores[to].log.extend(p.entries);
                        c.nodes[to].persisted(p.token, &c.stores[to]).unwrap();
                    }
                    other => {
                        black_box(other);
                    }
                }
            }
            follower += t.elapsed();
        }
        for r in acks {
            let t = Instant::now();
            let _ = c.nodes[0].step(r, &c.stores[0]);
            leader += t.elapsed();
        }
        c.run();
    }
    println!(
        "  follower: one 128-byte append, persisted, acked   {:>8.0} ns",
        follower.as_nanos() as f64 / (2 * rounds) as f64
    );
    println!(
        "  leader: one append response                       {:>8.0} ns",
        leader.as_nanos() as f64 / (2 * rounds) as f64
    );
    // Encode + decode of a 64-entry append with 128-byte payloads.
    type P = heapless::Vec<u8, 128>;
    let mut entries = heapless::Vec::<Entry<P>, 64>::new();
    for i in 0..64 {
        let d = P::from_slice(&[0x5A; 128]).unwrap();
        entries
            .push(Entry {
                term: Term(42),
                index: Index(100_001 + i),
                data: EntryData::Normal(d),
            })
            .unwrap();
    }
    let msg: Message<P, 64> = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(42),
        body: Body::Append {
            prev_index: Index(100_000),
            prev_term: Term(42),
            commit: Index(99_999),
            entries,
        },
    };
    let max = max_frame_len_for(64, 130);
    let codec = Codec::new(1, max);
    let mut buf = vec![0u8; max];
    let codec_ns = ns_per(20_000, |_| {
        let n = codec.encode(black_box(&msg), &mut buf).unwrap();
        let back: Message<P, 64> = codec.decode(&buf[..n]).unwrap();
        black_box(back);
    });
    let n = codec.encode(&msg, &mut buf).unwrap();
    println!("  encode + decode, 64 x 128-byte append ({n} B)   {codec_ns:>8.0} ns");
}

fn main() {
    // `cargo test --benches` runs benches as tests: keep that quick.
    if std::env::args().any(|a| a == "--test") {
        println!("(skipped under cargo test)");
        return;
    }
    throughput();
    per_message();
}
