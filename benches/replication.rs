//! Replication throughput of raftlet against tikv/raft-rs (crate `raft` 0.7, `MemStorage`) in
//! the same run, plus per-message costs of raftlet. `cargo bench --bench replication`.
//! Instruction counts of the same workloads: `benches/instructions` (see benches/README.md).
//!
//! How the comparison is kept fair:
//! * both run the same workload: 3 voters in one thread, node 1 elected before timing starts,
//!   the leader proposes `N` entries of `P` bytes, `B` at a time, and the clock stops when every
//!   node has applied every entry;
//! * each is driven the way its own documentation and examples drive it (see the module docs
//!   of `support/raftrs_cluster.rs` and `support/raftlet_cluster.rs`): raft-rs steps every
//!   message that arrived, then handles one `Ready` per node; raftlet drains its actions after
//!   every input, as its action contract says;
//! * both pass messages by value through an in-memory queue (no serialization, no network),
//!   and persist into in-memory storage acknowledged at once;
//! * the same flow control: at most 8 entries per append and 8 appends in flight per follower;
//! * both create every payload once per proposal, one allocation and copy each (raftlet:
//!   `Arc<[u8]>`, cloned by reference count; raft-rs: `Vec<u8>`, what its `propose` takes);
//! * at batch 64 there are two rows: 64 separate proposals (`propose` 64 times), and one
//!   proposal carrying 64 entries (raft-rs: a `MsgPropose` with 64 entries, raftlet:
//!   `propose_batch`);
//! * both are release builds with the same profile; each row is the median of 5 runs.

#![allow(unreachable_pub)]

#[path = "support/raftlet_cluster.rs"]
mod cluster;
#[path = "support/raftrs_cluster.rs"]
mod raftrs;

/// raftlet's payload in every workload here.
type Payload = std::sync::Arc<[u8]>;
use std::hint::black_box;
use std::time::{Duration, Instant};

// ----- the workload ----------------------------------------------------------------------------

/// How the leader is given its commands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Feed {
    /// `batch` separate proposals, then the cluster runs until quiet.
    Separate(u64),
    /// One proposal carrying `batch` commands, then the cluster runs until quiet.
    OneMessage(u64),
}

impl Feed {
    fn batch(self) -> u64 {
        match self {
            Self::Separate(b) | Self::OneMessage(b) => b,
        }
    }
    fn label(self) -> String {
        match self {
            Self::Separate(1) => "1".into(),
            Self::Separate(b) => format!("{b} separate"),
            Self::OneMessage(b) => format!("{b} in one"),
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Per committed entry: messages stepped, appends, entries per append.
type Shape = (f64, f64, f64);

fn shape(n: u64, stepped: u64, appends: u64, entries: u64) -> Shape {
    (
        stepped as f64 / n as f64,
        appends as f64 / n as f64,
        entries as f64 / appends.max(1) as f64,
    )
}

fn raftlet_run(n: u64, size: usize, feed: Feed) -> (Duration, Shape) {
    let payload = vec![0xA5u8; size];
    let mut c = cluster::Cluster::<Payload>::new(n as usize + 16);
    c.elect();
    let base = c.applied;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = feed.batch().min(n - sent);
        let batch = (0..k as usize).map(|_| Payload::from(&payload[..]));
        match feed {
            Feed::Separate(_) => c.propose(batch),
            Feed::OneMessage(_) => c.propose_batch(batch),
        }
        sent += k;
        c.run();
    }
    let d = t.elapsed();
    assert!(
        c.applied.iter().zip(base).all(|(a, b)| a - b == n),
        "raftlet: not all applied"
    );
    assert!(
        c.max_append <= 8,
        "raftlet sent {} entries in one append",
        c.max_append
    );
    (d, shape(n, c.stepped, c.appends, c.append_entries))
}

fn raftrs_run(n: u64, size: usize, feed: Feed) -> (Duration, Shape) {
    let payload = vec![0xA5u8; size];
    let mut c = raftrs::Cluster::new(size);
    let base = c.applied;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = feed.batch().min(n - sent);
        match feed {
            Feed::Separate(_) => (0..k).for_each(|_| c.propose(&payload)),
            Feed::OneMessage(_) => c.propose_batch(&payload, k),
        }
        sent += k;
        c.run();
    }
    let d = t.elapsed();
    assert!(
        c.applied.iter().zip(base).all(|(a, b)| a - b == n),
        "raft-rs: not all applied"
    );
    assert!(
        c.max_append <= 8,
        "raft-rs sent {} entries in one append",
        c.max_append
    );
    (d, shape(n, c.stepped, c.appends, c.append_entries))
}

fn throughput() {
    println!("replication throughput, 3 nodes in memory, entries applied on every node per second");
    println!("(msgs: messages stepped per entry; ent/app: entries per append; median of 5 runs)");
    println!(
        "{:>6} {:>12} {:>8} {:>12} {:>12} {:>9} {:>13} {:>13}",
        "bytes",
        "batch",
        "entries",
        "raftlet/s",
        "raft-rs/s",
        "ratio",
        "msgs ours/rs",
        "ent/app o/rs"
    );
    for size in [16usize, 128, 1024] {
        for feed in [Feed::Separate(1), Feed::Separate(64), Feed::OneMessage(64)] {
            let n = if feed.batch() == 1 { 20_000 } else { 100_000 };
            let ours: Vec<_> = (0..5).map(|_| raftlet_run(n, size, feed)).collect();
            let theirs: Vec<_> = (0..5).map(|_| raftrs_run(n, size, feed)).collect();
            let (so, st) = (ours[0].1, theirs[0].1);
            let ours = median(ours.into_iter().map(|r| r.0).collect());
            let theirs = median(theirs.into_iter().map(|r| r.0).collect());
            let (a, b) = (
                n as f64 / ours.as_secs_f64(),
                n as f64 / theirs.as_secs_f64(),
            );
            println!(
                "{size:>6} {:>12} {n:>8} {a:>12.0} {b:>12.0} {:>8.2}x {:>6.2}/{:<6.2} {:>6.2}/{:<6.2}",
                feed.label(),
                a / b,
                so.0,
                st.0,
                so.2,
                st.2,
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
    let mut c = cluster::Cluster::<Payload>::new(1024);
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
    let mut c = cluster::Cluster::<Payload>::new(rounds as usize + 16);
    c.elect();
    let data = Payload::from(&[7u8; 128][..]);
    let (mut follower, mut leader) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        c.propose([data.clone()]);
        type Owned = Message<Payload, Vec<Entry<Payload>>>;
        let msgs: Vec<Owned> = {
            let mut out = Vec::new();
            while let Some(a) = c.nodes[0].poll_action() {
                match a {
                    raftlet::Action::Send(m) => out.push(m.to_message(&c.stores[0]).unwrap()),
                    raftlet::Action::Persist(p) => {
                        let token = p.token;
                        c.stores[0].log.extend(p.entries.iter().cloned());
                        c.nodes[0].persisted(token, &c.stores[0]).unwrap();
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
            let _ = c.nodes[to].step(&m, &c.stores[to]);
            while let Some(a) = c.nodes[to].poll_action() {
                match a {
                    raftlet::Action::Send(r) => acks.push(
                        r.to_message::<Vec<Entry<Payload>>, _>(&c.stores[to])
                            .unwrap(),
                    ),
                    raftlet::Action::Persist(p) => {
                        let token = p.token;
                        c.stores[to].log.extend(p.entries.iter().cloned());
                        c.nodes[to].persisted(token, &c.stores[to]).unwrap();
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
            let _ = c.nodes[0].step(&r, &c.stores[0]);
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
    let msg: Message<P, heapless::Vec<Entry<P>, 64>> = Message {
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
        let back: Message<P, heapless::Vec<Entry<P>, 64>> = codec.decode(&buf[..n]).unwrap();
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
