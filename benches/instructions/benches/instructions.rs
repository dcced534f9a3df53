//! Instructions per committed entry, raftlet beside raft-rs, on the workloads of
//! `benches/replication.rs` (3 voters in one thread, 128-byte entries, in-memory messages and
//! storage), counted by callgrind through gungraun. Setup (building the cluster, electing node
//! 1) is not counted; each benchmark proposes `N` entries and runs until every node applied
//! them. Divide a benchmark's `Instructions` by `N` for the per-entry figure; `benches/README.md`
//! shows the table and the command.
//!
//! Both harnesses are the ones the timed benchmark uses (`benches/support/`); how each system
//! is driven, and why that is its fastest honest use, is in their module docs.

#[path = "../../support/raftlet_cluster.rs"]
mod cluster;
#[path = "../../support/raftrs_cluster.rs"]
mod raftrs;

use std::sync::Arc;
use gungraun::{library_benchmark, library_benchmark_group, main};
use std::hint::black_box;

/// Entries proposed per benchmark.
const N: u64 = 2_048;
/// Bytes per entry.
const SIZE: usize = 128;

/// raftlet's payload: created once per proposal (one allocation and copy, as raft-rs' `Vec<u8>`),
/// cloned by reference count. (`bytes::Bytes::copy_from_slice` costs a second allocation at its
/// first clone, when it is promoted to shared.)
type P = Arc<[u8]>;

fn raftlet_cluster() -> cluster::Cluster<P> {
    let mut c = cluster::Cluster::new(N as usize + 16);
    c.elect();
    c
}

fn raftrs_cluster() -> raftrs::Cluster {
    raftrs::Cluster::new(SIZE)
}

fn raftlet_feed(mut c: cluster::Cluster<P>, batch: u64, one_message: bool) -> cluster::Cluster<P> {
    let payload = [0xA5u8; SIZE];
    let mut sent = 0;
    while sent < N {
        let k = batch.min(N - sent);
        let entries = (0..k as usize).map(|_| P::from(&payload[..]));
        if one_message {
            c.propose_batch(entries);
        } else {
            c.propose(entries);
        }
        sent += k;
        c.run();
    }
    c
}

fn raftrs_feed(mut c: raftrs::Cluster, batch: u64, one_message: bool) -> raftrs::Cluster {
    let payload = [0xA5u8; SIZE];
    let mut sent = 0;
    while sent < N {
        let k = batch.min(N - sent);
        if one_message {
            c.propose_batch(&payload, k);
        } else {
            (0..k).for_each(|_| c.propose(&payload));
        }
        sent += k;
        c.run();
    }
    c
}

/// Not measured: checks that every node applied every entry, then drops the cluster (for both
/// systems: freeing the logs is not replication work).
fn raftlet_done(c: cluster::Cluster<P>) {
    assert_eq!(c.applied, [N; 3]);
}

fn raftrs_done(c: raftrs::Cluster) {
    assert_eq!(c.applied, [N; 3]);
}

#[library_benchmark]
#[bench::batch_1(setup = raftlet_cluster, teardown = raftlet_done)]
fn raftlet_batch_1(c: cluster::Cluster<P>) -> cluster::Cluster<P> {
    black_box(raftlet_feed(c, 1, false))
}

#[library_benchmark]
#[bench::batch_64_separate(setup = raftlet_cluster, teardown = raftlet_done)]
fn raftlet_batch_64_separate(c: cluster::Cluster<P>) -> cluster::Cluster<P> {
    black_box(raftlet_feed(c, 64, false))
}

#[library_benchmark]
#[bench::batch_64_in_one(setup = raftlet_cluster, teardown = raftlet_done)]
fn raftlet_batch_64_in_one(c: cluster::Cluster<P>) -> cluster::Cluster<P> {
    black_box(raftlet_feed(c, 64, true))
}

#[library_benchmark]
#[bench::batch_1(setup = raftrs_cluster, teardown = raftrs_done)]
fn raftrs_batch_1(c: raftrs::Cluster) -> raftrs::Cluster {
    black_box(raftrs_feed(c, 1, false))
}

#[library_benchmark]
#[bench::batch_64_separate(setup = raftrs_cluster, teardown = raftrs_done)]
fn raftrs_batch_64_separate(c: raftrs::Cluster) -> raftrs::Cluster {
    black_box(raftrs_feed(c, 64, false))
}

#[library_benchmark]
#[bench::batch_64_in_one(setup = raftrs_cluster, teardown = raftrs_done)]
fn raftrs_batch_64_in_one(c: raftrs::Cluster) -> raftrs::Cluster {
    black_box(raftrs_feed(c, 64, true))
}

library_benchmark_group!(
    name = replication;
    benchmarks = raftlet_batch_1, raftrs_batch_1, raftlet_batch_64_separate,
        raftrs_batch_64_separate, raftlet_batch_64_in_one, raftrs_batch_64_in_one
);

main!(library_benchmark_groups = replication);
