//! A simulated cluster driven by the fuzzer: which in-flight message is delivered or lost next,
//! crashes (with torn writes), restarts, partitions, proposals, membership changes, reads and
//! snapshots, in both snapshot modes, with or without lease reads and applying before
//! durability, with every oracle of the test simulator checked after every event, and
//! liveness once the input ends. A violation panics: that is a finding.
#![no_main]

#[path = "../../tests/common/mod.rs"]
#[allow(dead_code, unreachable_pub)]
mod common;

use common::{Faults, Sim};
use libfuzzer_sys::fuzz_target;
use raftlet::{NodeId, SnapshotMode};

fuzz_target!(|data: &[u8]| {
    let Some((head, ops)) = data.split_first_chunk::<9>() else { return };
    let seed = u64::from_le_bytes(head[..8].try_into().unwrap());
    let flags = head[8];
    let n = if flags & 1 == 0 { 3 } else { 5 };
    // With 5 nodes, flag 32 starts the cluster with 3 voters and 2 nodes outside it.
    let voters = if n == 5 && flags & 32 != 0 { 3 } else { n };
    let faults = Faults { max_delay: 8, max_disk_delay: 4, torn_writes: flags & 2 != 0, ..Faults::none() };
    let mode = if flags & 4 == 0 { SnapshotMode::Stream } else { SnapshotMode::Notify };
    let mut sim = Sim::with_members(seed, n, voters, faults, |c| {
        c.snapshot_mode = mode;
        c.pre_vote = flags & 8 == 0;
        c.check_quorum = flags & 16 == 0;
        c.lease_reads = c.check_quorum && flags & 64 != 0;
        c.max_clock_drift_percent = 60;
        c.apply_before_durable = flags & 128 != 0;
    });
    for &op in ops.iter().take(4096) {
        let arg = usize::from(op >> 4);
        let node = NodeId((arg % n) as u64 + 1);
        match op & 15 {
            0..=4 => {
                for _ in 0..=arg {
                    sim.step();
                }
            }
            5 | 6 => sim.deliver_nth(arg),
            7 => sim.drop_nth(arg),
            8 => sim.crash(node),
            9 => sim.restart(node),
            10 => {
                let side: Vec<NodeId> = (1..=n as u64).filter(|i| arg & (1 << (i - 1)) != 0).map(NodeId).collect();
                sim.partition(&side);
            }
            11 => sim.heal(),
            12 => {
                let _ = sim.propose(sim.leader().unwrap_or(node));
            }
            13 => sim.random_membership_change(),
            14 => {
                let _ = sim.read(node);
            }
            _ => {
                if sim.is_up(node) {
                    let _ = sim.take_snapshot(node);
                }
            }
        }
    }
    if let Err(e) = sim.converge(30_000) {
        panic!("liveness: {e}");
    }
});
