//! Quiescence (`Config::quiesce`) on the simulated cluster: an idle group stops ticking and
//! sending, any work wakes it, and a failed leader is replaced once the runner reports it. The
//! safety oracles run after every event, as in every scenario; the randomized simulation also
//! runs two sevenths of its seeds with quiescence on under every fault.

mod common;

use common::script::{ANY, commit_one, elect_any};
use common::{Faults, Sim, TICK};
use raftlet::{NodeId, Role};

/// A 3-node cluster with quiescence on, run by a runner that skips quiescent nodes' ticks and
/// reports failed peers.
fn quiet_sim(seed: u64, tweak: impl Fn(&mut raftlet::Config<5>)) -> Sim {
    let mut sim = Sim::with_config(seed, 3, Faults::none(), |c| {
        c.quiesce = true;
        tweak(c);
    });
    sim.liveness = true;
    sim
}

fn all_quiescent(sim: &Sim) -> bool {
    sim.ids()
        .iter()
        .all(|&i| sim.is_up(i) && sim.node(i).is_quiescent())
}

fn sent_total(sim: &Sim) -> u64 {
    sim.sent.values().sum()
}

fn others(sim: &Sim, not: NodeId) -> Vec<u64> {
    sim.ids()
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != not.0)
        .collect()
}

/// Once every member holds every entry, the whole group quiesces within a few heartbeats, and
/// then sends nothing at all for as long as it stays idle.
#[test]
fn an_idle_group_quiesces_and_then_sends_nothing() {
    let mut sim = quiet_sim(1, |_| {});
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    let t0 = sim.now;
    assert!(
        sim.run_until(ANY, all_quiescent),
        "the group did not quiesce"
    );
    // Within a few heartbeat intervals (2 ticks) of the commit.
    assert!(
        sim.now - t0 <= 10 * TICK,
        "took {} time units",
        sim.now - t0
    );
    assert_eq!(sim.node(l).role(), Role::Leader);
    let (sent, skipped) = (sent_total(&sim), sim.stats.quiescent_ticks);
    // 3,000 events: ticks only, every one skipped.
    sim.run(3_000);
    assert_eq!(sent_total(&sim), sent, "a quiescent group sent messages");
    assert_eq!(sim.stats.quiescent_ticks - skipped, 3_000);
    assert!(all_quiescent(&sim));
    assert_eq!(sim.leader(), Some(l), "leadership changed while idle");
    for &i in &sim.ids() {
        assert!(sim.node(i).stats().quiesced >= 1);
    }
}

/// A proposal wakes the leader, which wakes its followers; the entry commits everywhere and the
/// group quiesces again. A read on a follower does the same.
#[test]
fn work_wakes_the_group_and_it_quiesces_again() {
    let mut sim = quiet_sim(2, |_| {});
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    assert!(sim.run_until(ANY, all_quiescent));
    sim.run(500);
    let p = commit_one(&mut sim, l, &[1, 2, 3]);
    assert!(sim.applied_on(&[1, 2, 3], p));
    assert!(
        sim.node(l).stats().woken >= 1,
        "the proposal did not wake the leader"
    );
    assert!(sim.run_until(ANY, all_quiescent), "did not quiesce again");
    assert_eq!(sim.leader(), Some(l));

    let f = NodeId(others(&sim, l)[0]);
    let woken = sim.node(l).stats().woken;
    let rid = sim.read(f).expect("a read is taken");
    assert!(
        !sim.node(f).is_quiescent(),
        "a read left the follower asleep"
    );
    let served = sim.stats.reads_served;
    assert!(
        sim.run_until(ANY, |s| s.stats.reads_served > served),
        "read {rid} was not served"
    );
    assert!(
        sim.node(l).stats().woken > woken,
        "the read did not wake the leader"
    );
    assert!(
        sim.run_until(ANY, all_quiescent),
        "did not quiesce after the read"
    );
}

/// The leader of a quiescent group crashes. Its followers are asleep and count no time: they
/// learn of the failure from the runner's liveness check, wake, and elect a new leader within
/// their election timeouts; the new leader commits and the group quiesces again.
#[test]
fn a_failed_leader_of_a_quiescent_group_is_replaced() {
    let mut took_all = Vec::new();
    for seed in 0..20 {
        let mut sim = quiet_sim(100 + seed, |_| {});
        let l = elect_any(&mut sim);
        commit_one(&mut sim, l, &[1, 2, 3]);
        assert!(sim.run_until(ANY, all_quiescent));
        sim.run(200);
        sim.crash(l);
        let t0 = sim.now;
        assert!(
            sim.run_until(ANY, |s| s.leader().is_some_and(|n| n != l)),
            "seed {seed}: no new leader"
        );
        let took = sim.now - t0;
        took_all.push(took);
        let l2 = sim.leader().unwrap();
        let rest = others(&sim, l);
        commit_one(&mut sim, l2, &rest);
        let live_quiescent = |s: &Sim| rest.iter().all(|&i| s.node(NodeId(i)).is_quiescent());
        // The runner reports the crashed member down, so the group quiesces without it (its
        // match index lags; it is sent no notice); once it is back, the leader hears of it,
        // wakes and brings it up to date, and all three quiesce.
        assert!(
            sim.run_until(ANY, live_quiescent),
            "seed {seed}: did not quiesce without the crashed member"
        );
        sim.restart(l);
        assert!(
            sim.run_until(ANY, all_quiescent),
            "seed {seed}: did not quiesce once the old leader returned"
        );
    }
    // Election timeouts are 10 to 19 ticks of 10 time units, plus a tick to notice the failure
    // and a round of pre-votes and votes: one timeout, or two after a split vote (both
    // followers drew their timeouts when they quiesced together).
    took_all.sort_unstable();
    let (median, max) = (took_all[took_all.len() / 2], took_all[took_all.len() - 1]);
    assert!(
        median <= 22 * TICK,
        "median {median} time units: {took_all:?}"
    );
    assert!(max <= 45 * TICK, "slowest {max} time units: {took_all:?}");
}

/// Without the runner's report a quiescent follower never notices its leader's failure: that
/// is the contract of `Config::quiesce`. A report naming the leader wakes it.
#[test]
fn a_quiescent_follower_needs_the_runners_report_to_notice_a_failure() {
    let mut sim = quiet_sim(3, |_| {});
    sim.liveness = false;
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    assert!(sim.run_until(ANY, all_quiescent));
    sim.crash(l);
    // Ticks reach the followers, and quiescent nodes ignore them.
    sim.run(3_000);
    assert_eq!(
        sim.leader(),
        None,
        "a quiescent follower campaigned by itself"
    );
    let rest = others(&sim, l);
    let f = NodeId(rest[0]);
    let slot = &mut sim.slots[f.0 as usize - 1];
    // A report about another peer changes nothing.
    slot.node
        .as_mut()
        .unwrap()
        .report_peer_down(NodeId(rest[1]));
    assert!(sim.node(f).is_quiescent());
    let slot = &mut sim.slots[f.0 as usize - 1];
    slot.node.as_mut().unwrap().report_peer_down(l);
    assert!(!sim.node(f).is_quiescent());
    assert!(
        sim.run_until(ANY, |s| s.leader().is_some()),
        "the woken follower did not lead"
    );
}

/// A quiescent leader counts no time, so it holds no read lease: the first read after it
/// quiesced is confirmed by a round, not served from a lease.
#[test]
fn a_quiescent_leader_holds_no_read_lease() {
    let mut sim = quiet_sim(4, |c| {
        c.lease_reads = true;
        c.max_clock_drift_percent = 20;
    });
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    // Awake, a leader of this configuration holds a lease.
    assert!(
        sim.run_until(ANY, |s| {
            !s.node(l).is_quiescent() && s.node(l).stats().lease_reads > 0
        }) || sim.node(l).is_quiescent()
    );
    assert!(sim.run_until(ANY, all_quiescent));
    sim.run(300);
    let before = sim.node(l).stats().lease_reads;
    let served = sim.stats.reads_served;
    sim.read(l).expect("read taken");
    assert!(sim.run_until(ANY, |s| s.stats.reads_served > served));
    assert_eq!(
        sim.node(l).stats().lease_reads,
        before,
        "a read after quiescence was served from a lease"
    );
}
