//! Many Raft groups on three simulated processes (`common::multi`): quiescence makes idle groups
//! silent, a tick's messages of all groups between two processes leave together (one group
//! frame each), and a process crash moves every group it led while the others stay undisturbed.
//! Each group's safety oracles run after each of its events.

mod common;

use common::multi::MultiSim;
use common::{Faults, TICK};
use raftlet::{NodeId, Role};

const ANY: u64 = 5_000_000;

/// Elects a leader in every group and commits one entry in each, applied on all replicas. A
/// proposal to a leader about to be deposed may rightly be lost: a group whose proposal is not
/// applied after a while gets another, at its leader then.
fn elect_and_commit(m: &mut MultiSim) {
    let n = m.groups.len();
    assert!(
        m.run_until(ANY, |m| (0..n).all(|g| m.leader(g).is_some())),
        "not every group elected a leader"
    );
    let mut proposed: Vec<Vec<u64>> = vec![Vec::new(); n];
    let applied = |m: &MultiSim, g: usize, ps: &[u64]| {
        ps.iter().any(|&p| m.groups[g].applied_on(&[1, 2, 3], p))
    };
    for _round in 0..20 {
        for (g, ps) in proposed.iter_mut().enumerate() {
            if !applied(m, g, ps)
                && let Some(p) = m.propose(g)
            {
                ps.push(p);
            }
        }
        let budget = 2_000 * n as u64;
        if m.run_until(budget, |m| (0..n).all(|g| applied(m, g, &proposed[g]))) {
            return;
        }
    }
    panic!("not every group committed");
}

/// 1,000 groups: once idle they all quiesce and the three processes then exchange nothing at
/// all; while awake, a tick's messages of every group to the same peer share one frame.
#[test]
fn a_thousand_idle_groups_send_nothing() {
    let mut m = MultiSim::new(1, 1_000, Faults::none(), |_| {});
    m.reset_traffic();
    let t0 = m.now;
    elect_and_commit(&mut m);
    let (frames, messages) = m.traffic();
    println!(
        "1,000 groups elected and committed one entry each in {} ticks: {messages} messages in {frames} frames",
        (m.now - t0) / TICK
    );
    assert!(
        frames * 20 < messages,
        "{messages} messages took {frames} frames"
    );
    let t1 = m.now;
    assert!(
        m.run_until(ANY, MultiSim::all_quiescent),
        "not all quiesced"
    );
    println!("all quiescent {} ticks later", (m.now - t1) / TICK);
    assert!(m.now - t1 <= 10 * TICK);
    m.reset_traffic();
    let t2 = m.now;
    m.run_to(t2 + 500 * TICK);
    assert_eq!(m.traffic(), (0, 0), "idle groups sent messages");
    assert!(m.all_quiescent());
}

/// A process that led a third of 300 groups crashes. Every group it led elects a new leader on
/// the other two processes, within its election timeouts of the failure being noticed; no
/// group led elsewhere changes leader or term; every group takes writes; the process restarts,
/// recovers every group from its disk, catches up, and everything quiesces again.
#[test]
fn a_process_crash_moves_every_group_it_led_and_no_other() {
    let mut m = MultiSim::new(2, 300, Faults::none(), |_| {});
    elect_and_commit(&mut m);
    assert!(m.run_until(ANY, MultiSim::all_quiescent));
    m.run_to(m.now + 100 * TICK);
    let victim = (1..=3)
        .map(NodeId)
        .max_by_key(|&p| m.led_by(p).len())
        .unwrap();
    let moved = m.led_by(victim);
    assert!(
        moved.len() >= 50,
        "only {} groups led by {victim}",
        moved.len()
    );
    let stayed: Vec<(usize, NodeId, raftlet::Term)> = (0..m.groups.len())
        .filter(|g| !moved.contains(g))
        .map(|g| {
            let l = m.leader(g).unwrap();
            (g, l, m.groups[g].node(l).term())
        })
        .collect();
    m.crash(victim);
    let t0 = m.now;
    let mut took = vec![None; m.groups.len()];
    assert!(
        m.run_until(ANY, |m| {
            for &g in &moved {
                if took[g].is_none() && m.leader(g).is_some_and(|l| l != victim) {
                    took[g] = Some(m.now - t0);
                }
            }
            moved.iter().all(|&g| took[g].is_some())
        }),
        "some group led by the crashed process has no new leader"
    );
    let mut times: Vec<u64> = moved.iter().map(|&g| took[g].unwrap() / TICK).collect();
    times.sort_unstable();
    println!(
        "{} groups moved: new leaders after {} / {} / {} ticks (median / p90 / max)",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 9 / 10],
        times[times.len() - 1]
    );
    // Timeouts of 10 to 19 ticks after the failure is noticed (a tick), a split vote at most
    // once in a while.
    assert!(times[times.len() / 2] <= 22, "{times:?}");
    assert!(times[times.len() - 1] <= 60, "{times:?}");
    for &(g, l, term) in &stayed {
        assert_eq!(m.leader(g), Some(l), "group {g} changed leader");
        assert_eq!(m.groups[g].node(l).term(), term, "group {g} changed term");
        assert_eq!(m.groups[g].node(l).role(), Role::Leader);
    }
    // Every group takes a write on the two live processes.
    let live: Vec<u64> = (1..=3).filter(|&p| p != victim.0).collect();
    let n = m.groups.len();
    let payloads: Vec<Option<u64>> = (0..n).map(|g| m.propose(g)).collect();
    assert!(m.run_until(ANY, |m| {
        payloads
            .iter()
            .enumerate()
            .all(|(g, p)| p.is_some_and(|p| m.groups[g].applied_on(&live, p)))
    }));
    m.restart(victim);
    assert!(
        m.run_until(ANY, |m| payloads.iter().enumerate().all(|(g, p)| {
            p.is_some_and(|p| m.groups[g].applied_on(&[1, 2, 3], p))
        })),
        "the restarted process did not catch up every group"
    );
    assert!(
        m.run_until(ANY, MultiSim::all_quiescent),
        "not all quiesced after the restart"
    );
}

/// 60 groups under message loss, duplication and delay, with process crashes, restarts and
/// partitions, and writes to random groups: every group's oracles hold throughout; once the
/// faults stop, every group elects a leader and commits a write on all three processes.
#[test]
fn groups_under_process_faults_keep_every_invariant() {
    for seed in 0..8u64 {
        let faults = Faults {
            loss: 0.05,
            duplicate: 0.05,
            max_delay: 15,
            max_disk_delay: 12,
            torn_writes: true,
            read: 0.005,
            ..Faults::none()
        };
        let mut m = MultiSim::new(100 + seed, 60, faults, |_| {});
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut down: Option<NodeId> = None;
        for _ in 0..300 {
            m.run(2_000);
            match rng.u8(0..10) {
                0 if down.is_none() => {
                    let p = NodeId(rng.u64(1..=3));
                    m.crash(p);
                    down = Some(p);
                }
                1 => {
                    if let Some(p) = down.take() {
                        m.restart(p);
                    }
                }
                2 => m.partition(&[NodeId(rng.u64(1..=3))]),
                3 | 4 => m.heal(),
                _ => {
                    for _ in 0..5 {
                        let g = rng.usize(0..m.groups.len());
                        let _ = m.propose(g);
                    }
                }
            }
        }
        m.heal();
        if let Some(p) = down {
            m.restart(p);
        }
        for g in &mut m.groups {
            g.faults = Faults::none();
        }
        let sum =
            |f: fn(&common::RunStats) -> u64| m.groups.iter().map(|g| f(&g.stats)).sum::<u64>();
        let (crashes, lost, quiet, reports, elections, events) = (
            sum(|s| s.crashes),
            sum(|s| s.lost),
            sum(|s| s.quiescent_ticks),
            sum(|s| s.liveness_reports),
            m.groups
                .iter()
                .map(|g| g.oracle.leader_terms())
                .sum::<u64>(),
            sum(|s| s.events),
        );
        println!(
            "seed {seed}: {events} events, {crashes} replica crashes, {lost} messages lost, \
             {elections} elections, {quiet} ticks skipped quiescent, {reports} liveness reports"
        );
        assert!(crashes >= 60 && lost > 0 && quiet > 0 && reports > 0 && elections > 60);
        elect_and_commit(&mut m);
        assert!(
            m.run_until(ANY, MultiSim::all_quiescent),
            "seed {seed}: not all quiesced"
        );
    }
}
