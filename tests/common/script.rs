//! Scripted situations shared by several test binaries.
#![allow(dead_code)]

use super::{Faults, Sim};
use raftlet::{Body, Entry, NodeId, Role};

pub const ANY: u64 = 20_000;

/// Steps `body`, from `from` at `term`, into node `to` at once (past the network), then
/// executes what it asked for.
pub fn step_now(
    sim: &mut Sim,
    from: NodeId,
    to: NodeId,
    term: raftlet::Term,
    body: Body<u64, Vec<Entry<u64>>>,
) {
    let msg = raftlet::Message {
        from,
        to,
        term,
        body,
    };
    let slot = &mut sim.slots[to.0 as usize - 1];
    let _ = slot
        .node
        .as_mut()
        .expect("node is up")
        .step(&msg, &slot.disk.durable);
    sim.drain(to);
}

pub fn elect_any(sim: &mut Sim) -> NodeId {
    assert!(
        sim.run_until(ANY, |s| s.leader().is_some()),
        "no leader elected"
    );
    sim.leader().unwrap()
}

/// Proposes at the leader and waits until `on` all applied it; returns the payload.
pub fn commit_one(sim: &mut Sim, leader: NodeId, on: &[u64]) -> u64 {
    sim.propose(leader).expect("leader accepts the proposal");
    let p = sim.last_payload();
    assert!(
        sim.run_until(ANY, |s| s.applied_on(on, p)),
        "payload {p} not applied on {on:?}"
    );
    p
}

/// A cluster where elections happen only when a test calls `campaign` (timeouts are huge).
pub fn manual(n: usize) -> Sim {
    Sim::with_config(7, n, Faults::none(), |c| {
        c.election_ticks = 1000;
        c.heartbeat_ticks = 1;
        c.pre_vote = false;
        c.check_quorum = false;
    })
}

pub fn campaign_until_leader(sim: &mut Sim, id: u64) {
    for _ in 0..20 {
        sim.campaign(NodeId(id));
        if sim.run_until(300, |s| {
            s.is_up(NodeId(id)) && s.node(NodeId(id)).role() == Role::Leader
        }) {
            return;
        }
    }
    panic!("{id} could not win an election");
}

/// Raft §5.4.2, Figure 8: a leader must not commit an entry from an earlier term by counting
/// replicas. Here leader S1 of a later term gets its old term-1 entries onto a majority (S1,
/// S2, S3) but not its own no-op, then crashes; S5, whose log ends in term 2, wins with S3
/// and S4 and overwrites those entries. Counting replicas would have committed (and applied)
/// them: the oracle then sees a committed entry replaced.
pub fn figure_8() {
    let mut sim = manual(5);
    // (a) S1 leads term 1; then only S2 gets its next entries.
    campaign_until_leader(&mut sim, 1);
    let first = commit_one(&mut sim, NodeId(1), &[1, 2, 3, 4, 5]);
    sim.topology(&[&[1, 2], &[3], &[4], &[5]]);
    for _ in 0..5 {
        sim.propose(NodeId(1)).unwrap();
    }
    assert!(sim.run_until(ANY, |s| s.node(NodeId(2)).durable_index()
        == s.node(NodeId(1)).last_index()));
    let old_last = sim.node(NodeId(1)).last_index();
    // (b) S1 crashes; S5 wins with S3 and S4 and appends its no-op, which reaches nobody.
    sim.crash(NodeId(1));
    sim.topology(&[&[3, 4, 5], &[2]]);
    campaign_until_leader(&mut sim, 5);
    sim.topology(&[&[3, 4], &[2], &[5]]);
    sim.run(50);
    // (c) S5 crashes; S1 restarts and wins with S2 and S3. It sends S3 its term-1 entries in a
    //     batch that stops short of its new no-op; then S1 crashes.
    sim.crash(NodeId(5));
    sim.restart(NodeId(1));
    sim.topology(&[&[1, 2, 3], &[4], &[5]]);
    campaign_until_leader(&mut sim, 1);
    assert!(
        sim.run_until(ANY, |s| s.node(NodeId(3)).last_index().0
            > super::BATCH as u64),
        "S3 did not receive the old entries"
    );
    assert!(sim.node(NodeId(3)).last_index() < old_last.next().next());
    // Stop S1's further appends to S3; let S3's acknowledgement reach S1.
    sim.cut.insert((NodeId(1), NodeId(3)));
    sim.cut.insert((NodeId(1), NodeId(2)));
    sim.run(200);
    sim.crash(NodeId(1));
    // (d) S5 restarts and wins with S3 and S4 (its last term 2 beats their term-1 tails), then
    //     commits its own log: index 2 becomes S5's term-2 no-op everywhere it reaches.
    sim.restart(NodeId(5));
    sim.topology(&[&[3, 4, 5], &[1], &[2]]);
    campaign_until_leader(&mut sim, 5);
    let p = commit_one(&mut sim, NodeId(5), &[3, 4, 5]);
    assert!(sim.applied_on(&[3, 4, 5], first));
    assert!(p > first);
}

/// Lease reads and a slow clock: a leader whose clock then runs at under a third of the
/// others' speed (ticks of 20 time units against 6; the drift bound, 75 %, covers it) holds a
/// read lease and is cut off. The other two wait out the lease they granted, elect a leader
/// and commit a write that its client sees acknowledged. A read asked at the old leader must
/// not be served from its lease: counted in its own slow ticks without the drift bound, the
/// lease would still run, and the read would return state older than the acknowledged write.
pub fn lease_and_a_slow_clock() {
    let mut sim = Sim::with_config(11, 3, Faults::none(), |c| {
        c.election_ticks = 10;
        c.heartbeat_ticks = 1;
        c.lease_reads = true;
        c.check_quorum = true;
        c.max_clock_drift_percent = 75;
    });
    let old = elect_any(&mut sim);
    commit_one(&mut sim, old, &[1, 2, 3]);
    // From now on the leader's clock runs slow.
    for slot in sim.slots.iter_mut() {
        slot.tick_period = if slot.id == old { 20 } else { 6 };
    }
    // A few heartbeat rounds: the leader holds a lease.
    sim.run(100);
    assert_eq!(sim.node(old).role(), Role::Leader);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&k| k != old.0).collect();
    sim.topology(&[&[old.0], &others]);
    let cut_at = sim.now;
    let new_leader = |s: &Sim| {
        others
            .iter()
            .map(|&k| NodeId(k))
            .find(|&id| s.node(id).role() == Role::Leader)
    };
    assert!(
        sim.run_until(ANY, |s| new_leader(s).is_some()),
        "the others elected no leader"
    );
    let leader = new_leader(&sim).unwrap();
    commit_one(&mut sim, leader, &[leader.0]);
    // The old leader's own clock counted too few ticks for its lease to run out without the
    // drift bound.
    assert!(
        sim.now - cut_at < 10 * 20,
        "the new leader committed after the old leader's unbounded lease would have run out ({} time units): the scenario proves nothing",
        sim.now - cut_at
    );
    assert_eq!(
        sim.node(old).role(),
        Role::Leader,
        "the old leader still believes it leads"
    );
    sim.read(old);
    sim.run(300);
}
