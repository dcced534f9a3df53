//! A simulated 3-node raftlet cluster: it elects a leader, replicates writes over a lossy
//! network, loses its leader, elects another, and brings the old leader back from its durable
//! log. Everything is seeded and deterministic, and every step is checked by the same safety
//! oracles as the test suite.
//!
//! `cargo run --example cluster [seed]`

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Faults, Sim, TICK};
use raftlet::NodeId;

fn ticks(units: u64) -> f64 {
    units as f64 / TICK as f64
}

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    let faults = Faults {
        loss: 0.05,
        duplicate: 0.02,
        max_delay: 4,
        ..Faults::none()
    };
    let mut sim = Sim::new(seed, 3, faults);
    println!(
        "raftlet demo: 3 simulated nodes, seed {seed}, 5% message loss, 2% duplication, reordering"
    );
    println!("(one tick = {TICK} time units; election timeout 10-20 ticks, heartbeat every 2)\n");

    let start = sim.now;
    assert!(sim.run_until(50_000, |s| s.leader().is_some()), "no leader");
    let leader = sim.leader().unwrap();
    println!(
        "[{:>6.1} ticks] node {leader} elected leader of term {} ({:.1} ticks after start)",
        ticks(sim.now),
        sim.node(leader).term(),
        ticks(sim.now - start)
    );

    let all = [1, 2, 3];
    let written = write(&mut sim, leader, 20, &all);
    println!(
        "[{:>6.1} ticks] {written} writes committed and applied on nodes {all:?}",
        ticks(sim.now)
    );

    println!(
        "[{:>6.1} ticks] crashing leader {leader} (its unsynced writes are lost)",
        ticks(sim.now)
    );
    sim.crash(leader);
    let crashed_at = sim.now;
    assert!(
        sim.run_until(50_000, |s| s.leader().is_some_and(|l| l != leader)),
        "no new leader"
    );
    let new_leader = sim.leader().unwrap();
    println!(
        "[{:>6.1} ticks] node {new_leader} elected leader of term {} ({:.1} ticks after the crash)",
        ticks(sim.now),
        sim.node(new_leader).term(),
        ticks(sim.now - crashed_at)
    );
    let alive: Vec<u64> = all.iter().copied().filter(|&i| i != leader.0).collect();
    let more = write(&mut sim, new_leader, 20, &alive);
    println!(
        "[{:>6.1} ticks] {more} more writes committed on nodes {alive:?}",
        ticks(sim.now)
    );

    sim.restart(leader);
    println!(
        "[{:>6.1} ticks] node {leader} restarted from its durable log",
        ticks(sim.now)
    );
    let last = sim.last_payload();
    assert!(
        sim.run_until(50_000, |s| s.applied_on(&all, last)),
        "restarted node did not catch up"
    );
    println!(
        "[{:>6.1} ticks] node {leader} caught up and applied every write again",
        ticks(sim.now)
    );

    let logs: Vec<_> = all
        .iter()
        .map(|&i| {
            let id = NodeId(i);
            (
                sim.node(id).commit_index(),
                sim.node(id).last_index(),
                sim.node(id).term(),
            )
        })
        .collect();
    println!("\nsummary");
    for (i, (commit, last, term)) in all.iter().zip(&logs) {
        println!("  node {i}: term {term}, commit index {commit}, last index {last}");
    }
    println!(
        "  {} events, {} messages delivered, {} lost, {} duplicated, {} safety checks passed",
        sim.stats.events,
        sim.stats.delivered,
        sim.stats.lost,
        sim.stats.duplicated,
        sim.oracle.checks
    );
    assert!(
        logs.windows(2).all(|w| w[0].0 == w[1].0),
        "commit indices differ"
    );
}

/// Proposes `n` writes at `leader` and waits until `on` have applied them all.
fn write(sim: &mut Sim, leader: NodeId, n: usize, on: &[u64]) -> usize {
    let mut done = 0;
    while done < n {
        if sim.propose(leader).is_ok() {
            done += 1;
        }
        sim.run(3);
    }
    let last = sim.last_payload();
    assert!(
        sim.run_until(50_000, |s| s.applied_on(on, last)),
        "writes did not commit"
    );
    done
}
