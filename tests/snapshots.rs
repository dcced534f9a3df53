//! The snapshot-installation contract (`docs/snapshot-install.md`), scenario by scenario, in
//! both modes where a scenario applies, on the simulated cluster with every safety oracle on.
//!
//! The application model is an incremental state machine: every snapshot it installs is kept
//! as a "checkpoint" until its own `InstallComplete`, and only then deleted. Each scenario
//! asserts exact event counts.
//!
//! A "new node" here is a voter that is down from the start, with an empty disk, and joins
//! later: membership changes come with their own issue.

mod common;

use common::{Faults, Sim};
use raftlet::{
    Body, Config, Index, InstallOutcome, InstallRequest, Message, Node, NodeId, Role,
    SnapshotError, SnapshotId, SnapshotMeta, SnapshotMode, Term,
};

const ANY: u64 = 60_000;
const STALLED: u64 = 1_000_000_000;

fn cluster(mode: SnapshotMode, n: usize, faults: Faults) -> Sim {
    Sim::with_config(11, n, faults, |c| {
        c.snapshot_mode = mode;
        c.log_retention = 0;
    })
}

fn elect_among(sim: &mut Sim, ids: &[u64]) -> NodeId {
    assert!(
        sim.run_until(ANY, |s| s.leader().is_some_and(|l| ids.contains(&l.0))),
        "no leader among {ids:?}"
    );
    sim.leader().unwrap()
}

/// `k` writes at `leader`, applied on `on`; returns the last payload.
fn write(sim: &mut Sim, leader: NodeId, k: usize, on: &[u64]) -> u64 {
    let mut n = 0;
    while n < k {
        if sim.propose(leader).is_ok() {
            n += 1;
        }
        sim.run(2);
    }
    let p = sim.last_payload();
    assert!(
        sim.run_until(ANY, |s| s.applied_on(on, p)),
        "writes not applied on {on:?}"
    );
    p
}

/// A cluster whose last node was down from the start; the others write and snapshot.
/// Returns (leader, the leader's snapshot).
fn lagging_node_setup(sim: &mut Sim, n: u64, writes: usize) -> (NodeId, SnapshotId) {
    sim.crash(NodeId(n));
    let live: Vec<u64> = (1..n).collect();
    let leader = elect_among(sim, &live);
    write(sim, leader, writes, &live);
    let snap = sim.take_snapshot(leader).expect("leader snapshot");
    assert_eq!(
        sim.node(leader).log_start(),
        snap,
        "the leader compacted to its snapshot"
    );
    (leader, snap)
}

fn installed(id: SnapshotId) -> Vec<InstallOutcome> {
    vec![InstallOutcome::Installed(id)]
}

const BOTH: [SnapshotMode; 2] = [SnapshotMode::Stream, SnapshotMode::Notify];

/// Notify mode with fetches that never finish until a test says so: node 3 lags, the leader
/// (`old`) compacted to `snap`, and `other` is the remaining node.
fn slow_notify_install() -> (Sim, NodeId, NodeId, SnapshotId) {
    let faults = Faults {
        max_install_delay: STALLED,
        ..Faults::none()
    };
    let mut sim = cluster(SnapshotMode::Notify, 3, faults);
    let (old, snap) = lagging_node_setup(&mut sim, 3, 20);
    let other = if old == NodeId(1) {
        NodeId(2)
    } else {
        NodeId(1)
    };
    (sim, old, other, snap)
}

/// Scenario 1: a new node joins a cluster whose leader compacted its log; it installs the
/// snapshot and then replicates new entries. The follower whose snapshot ends exactly at
/// `next - 1` then gets appends, never another round (Ratis E6).
#[test]
fn s1_new_node_installs_then_replicates() {
    for mode in BOTH {
        let mut sim = cluster(mode, 3, Faults::none());
        let (leader, snap) = lagging_node_setup(&mut sim, 3, 20);
        sim.restart(NodeId(3));
        let p = sim.last_payload();
        assert!(
            sim.run_until(ANY, |s| s.applied_on(&[3], p)),
            "{mode:?}: node 3 did not catch up"
        );
        let p2 = write(&mut sim, leader, 5, &[1, 2, 3]);
        assert!(sim.applied_on(&[3], p2));
        assert_eq!(sim.node(NodeId(3)).log_start(), snap, "{mode:?}");
        assert_eq!(sim.stats.installs, 1, "{mode:?}");
        assert_eq!(
            sim.events(leader.0, 3),
            installed(snap),
            "{mode:?}: leader side"
        );
        assert_eq!(sim.events(3, 3), installed(snap), "{mode:?}: follower side");
        if mode == SnapshotMode::Notify {
            assert_eq!(sim.install_rounds.len(), 1);
        }
    }
}

/// Scenario 2: a follower that restarts behind the compaction point catches up.
#[test]
fn s2_restarted_follower_behind_compaction_catches_up() {
    for mode in BOTH {
        let mut sim = cluster(mode, 3, Faults::none());
        let leader = elect_among(&mut sim, &[1, 2, 3]);
        write(&mut sim, leader, 10, &[1, 2, 3]);
        let f = (1..=3).find(|&i| i != leader.0).unwrap();
        sim.crash(NodeId(f));
        let live: Vec<u64> = (1..=3).filter(|&i| i != f).collect();
        let p = write(&mut sim, leader, 20, &live);
        let snap = sim.take_snapshot(leader).unwrap();
        sim.restart(NodeId(f));
        assert!(sim.run_until(ANY, |s| s.applied_on(&[f], p)), "{mode:?}");
        write(&mut sim, leader, 3, &[1, 2, 3]);
        assert_eq!(sim.events(leader.0, f), installed(snap), "{mode:?}");
        assert_eq!(sim.events(f, f), installed(snap), "{mode:?}");
    }
}

/// Scenario 3: caught-up followers get no notification when the leader compacts; a new node
/// gets exactly one round.
#[test]
fn s3_only_lagging_nodes_are_notified() {
    let mut sim = cluster(SnapshotMode::Notify, 4, Faults::none());
    sim.crash(NodeId(4));
    let leader = elect_among(&mut sim, &[1, 2, 3]);
    write(&mut sim, leader, 20, &[1, 2, 3]);
    for id in 1..=3 {
        sim.take_snapshot(NodeId(id)).unwrap();
    }
    write(&mut sim, leader, 5, &[1, 2, 3]);
    sim.run(3_000);
    for f in (1..=3).filter(|&f| f != leader.0) {
        assert_eq!(
            sim.sent_count(leader.0, f, "InstallSnapshotNotify"),
            0,
            "caught-up follower {f} notified"
        );
    }
    assert!(sim.install_rounds.is_empty());
    sim.restart(NodeId(4));
    let p = sim.last_payload();
    assert!(sim.run_until(ANY, |s| s.applied_on(&[4], p)));
    sim.run(3_000);
    assert_eq!(
        sim.install_rounds.len(),
        1,
        "exactly one round for the new node"
    );
    assert_eq!(sim.install_rounds[0].0, NodeId(4));
}

/// Scenario 4: exactly one leader-side and one follower-side `InstallComplete(Installed)`,
/// the follower's on an idle cluster too; the checkpoint is kept until the follower's event
/// and deleted then.
#[test]
fn s4_one_event_per_side_idle_cluster_checkpoint_kept_until_event() {
    for mode in BOTH {
        let mut sim = cluster(mode, 3, Faults::none());
        let (leader, snap) = lagging_node_setup(&mut sim, 3, 20);
        sim.restart(NodeId(3));
        // Cut the leader's way to node 3 as soon as the application installed.
        assert!(
            sim.run_until(ANY, |s| !s.slots[2].checkpoints.is_empty()),
            "{mode:?}"
        );
        sim.cut.insert((leader, NodeId(3)));
        sim.run(2_000);
        assert!(
            sim.events(3, 3).is_empty(),
            "{mode:?}: follower event before any append"
        );
        assert_eq!(
            sim.slots[2].checkpoints,
            [snap],
            "{mode:?}: checkpoint must be kept until the event"
        );
        sim.heal();
        // No writes: the cluster is idle.
        assert!(
            sim.run_until(ANY, |s| !s.events(3, 3).is_empty()),
            "{mode:?}: no follower event when idle"
        );
        sim.run(2_000);
        assert_eq!(sim.events(leader.0, 3), installed(snap), "{mode:?}");
        assert_eq!(sim.events(3, 3), installed(snap), "{mode:?}");
        assert!(
            sim.slots[2].checkpoints.is_empty(),
            "{mode:?}: checkpoint not deleted at the event"
        );
    }
}

/// Regression (bug 2 of the etcd-test port): after a snapshot install on an idle cluster the
/// follower returns to replicate state, and the leader stops sending it an empty append for
/// every heartbeat reply.
#[test]
fn an_installed_follower_on_an_idle_cluster_returns_to_replicate() {
    for mode in BOTH {
        let mut sim = cluster(mode, 3, Faults::none());
        let (leader, snap) = lagging_node_setup(&mut sim, 3, 20);
        sim.restart(NodeId(3));
        assert!(
            sim.run_until(ANY, |s| s.events(leader.0, 3) == installed(snap)),
            "{mode:?}: no install"
        );
        assert!(
            sim.run_until(ANY, |s| s
                .node(leader)
                .peer_progress(NodeId(3))
                .is_some_and(|p| p.state == raftlet::FlowState::Replicate)),
            "{mode:?}: follower left in {:?}",
            sim.node(leader).peer_progress(NodeId(3))
        );
        let appends = sim.sent_count(leader.0, 3, "Append");
        let heartbeats = sim.sent_count(leader.0, 3, "Heartbeat");
        sim.run(4_000);
        let more_heartbeats = sim.sent_count(leader.0, 3, "Heartbeat") - heartbeats;
        assert!(
            more_heartbeats >= 50,
            "{mode:?}: only {more_heartbeats} heartbeats"
        );
        assert_eq!(
            sim.sent_count(leader.0, 3, "Append"),
            appends,
            "{mode:?}: an idle, caught-up follower got appends ({more_heartbeats} heartbeats)"
        );
    }
}

/// Scenario 5 (Ratis E1): the leader compacts again during a slow install; a second,
/// incremental round follows; only the final round produces `InstallComplete`, once per side,
/// and the first round's checkpoint is kept until then.
#[test]
fn s5_incremental_rounds_complete_once() {
    let mut sim = cluster(
        SnapshotMode::Notify,
        3,
        Faults {
            max_install_delay: STALLED,
            ..Faults::none()
        },
    );
    let (leader, first) = lagging_node_setup(&mut sim, 3, 20);
    sim.restart(NodeId(3));
    assert!(sim.run_until(ANY, |s| s.install_rounds.len() == 1));
    // While the fetch is slow, the leader moves on and compacts past it.
    write(&mut sim, leader, 20, &[1, 2]);
    let second = sim.take_snapshot(leader).unwrap();
    assert!(second.index > first.index.next());
    sim.slots[2].job.as_mut().unwrap().0 = sim.now; // the first fetch finishes (with `first`)
    assert!(
        sim.run_until(ANY, |s| s.install_rounds.len() == 2),
        "no incremental round"
    );
    assert_eq!(sim.install_rounds[1].1.index, second.index.next());
    sim.run(500);
    assert!(
        sim.install_events.is_empty(),
        "no event before the final round: {:?}",
        sim.install_events
    );
    assert_eq!(
        sim.slots[2].checkpoints,
        [first],
        "the first checkpoint is kept for the increment"
    );
    sim.slots[2].job.as_mut().unwrap().0 = sim.now;
    let p = sim.last_payload();
    assert!(sim.run_until(ANY, |s| s.applied_on(&[3], p)));
    sim.run(2_000);
    assert_eq!(sim.events(leader.0, 3), installed(second));
    assert_eq!(sim.events(3, 3), installed(second));
    assert!(sim.slots[2].checkpoints.is_empty());
    assert_eq!(sim.stats.installs, 2);
}

/// Scenario 6 (Ratis E2): `Unavailable` is reported on both sides once per round, not per poll,
/// even with half the messages duplicated.
#[test]
fn s6_unavailable_once_per_round_on_each_side() {
    let faults = Faults {
        install_unavailable: 1.0,
        duplicate: 0.5,
        ..Faults::none()
    };
    let mut sim = cluster(SnapshotMode::Notify, 3, faults);
    let (leader, _) = lagging_node_setup(&mut sim, 3, 20);
    sim.restart(NodeId(3));
    sim.run(6_000);
    let rounds = sim.install_rounds.len();
    let follower = sim.events(3, 3);
    let at_leader = sim.events(leader.0, 3);
    assert!(rounds >= 3, "the leader keeps trying: {rounds} rounds");
    assert!(
        follower
            .iter()
            .chain(&at_leader)
            .all(|o| *o == InstallOutcome::Unavailable)
    );
    // Each round ends with one report; the last may still be running or in flight.
    assert!(
        follower.len() == rounds || follower.len() + 1 == rounds,
        "{} events, {rounds} rounds",
        follower.len()
    );
    assert!(
        at_leader.len() == follower.len() || at_leader.len() + 1 == follower.len(),
        "leader {} vs follower {}",
        at_leader.len(),
        follower.len()
    );
}

/// Scenario 6b: with slow fetches, the leader polls many times per round, and still exactly one
/// `Unavailable` per round reaches each side.
#[test]
fn s6b_slow_unavailable_many_polls_one_event_per_round() {
    let faults = Faults {
        install_unavailable: 1.0,
        duplicate: 0.3,
        max_install_delay: 120,
        ..Faults::none()
    };
    let mut sim = cluster(SnapshotMode::Notify, 3, faults);
    let (leader, _) = lagging_node_setup(&mut sim, 3, 20);
    sim.restart(NodeId(3));
    sim.run(20_000);
    let rounds = sim.install_rounds.len();
    let follower = sim.events(3, 3).len();
    let at_leader = sim.events(leader.0, 3).len();
    assert!(rounds >= 3);
    assert!(
        follower == rounds || follower + 1 == rounds,
        "{follower} events, {rounds} rounds"
    );
    assert!(
        at_leader == follower || at_leader + 1 == follower,
        "leader {at_leader} vs follower {follower}"
    );
    let polls = sim.sent_count(leader.0, 3, "InstallSnapshotNotify");
    assert!(
        polls > 2 * rounds as u64,
        "{polls} polls for {rounds} rounds"
    );
}

/// Scenario 7 (Ratis E4): the leader changes mid-install, and the new leader's log starts
/// lower than the round's `first_available`; the follower answers `InProgress` (no assertion),
/// the new leader collects the result, and nobody is stuck.
#[test]
fn s7_leader_change_mid_install_new_leader_collects() {
    let (mut sim, old, other, snap) = slow_notify_install();
    assert_eq!(
        sim.node(other).log_start(),
        SnapshotId::ZERO,
        "the other node did not compact"
    );
    sim.restart(NodeId(3));
    assert!(sim.run_until(ANY, |s| s.install_rounds.len() == 1));
    sim.crash(old);
    assert!(
        sim.run_until(ANY, |s| s.leader() == Some(other)),
        "no new leader"
    );
    // The new leader's appends are refused while installing, so it polls the round.
    assert!(
        sim.run_until(ANY, |s| s.sent_count(other.0, 3, "InstallSnapshotNotify")
            >= 1)
    );
    assert!(sim.node(NodeId(3)).is_installing());
    sim.slots[2].job.as_mut().unwrap().0 = sim.now;
    let p = sim.last_payload();
    assert!(sim.run_until(ANY, |s| s.applied_on(&[3], p)));
    let p2 = write(&mut sim, other, 3, &[other.0, 3]);
    assert!(sim.applied_on(&[3], p2));
    sim.run(1_000);
    assert_eq!(
        sim.events(other.0, 3),
        installed(snap),
        "the new leader collects the result"
    );
    assert_eq!(sim.events(3, 3), installed(snap));
    assert!(sim.events(old.0, 3).is_empty());
    assert_eq!(
        sim.install_rounds.len(),
        1,
        "the round survived the leader change"
    );
}

/// Scenario 7b: the install finishes before the new leader's first poll; the result is kept for
/// it (it is of a later term) and delivered at its first notification.
#[test]
fn s7b_result_waits_for_the_next_leader() {
    let (mut sim, old, other, snap) = slow_notify_install();
    sim.take_snapshot(other).unwrap();
    // Two more entries that node 3's snapshot will not have: node 3 cannot win an election.
    write(&mut sim, old, 2, &[old.0, other.0]);
    sim.restart(NodeId(3));
    assert!(sim.run_until(ANY, |s| s.install_rounds.len() == 1));
    sim.crash(old);
    sim.partition(&[NodeId(3)]);
    sim.slots[2].job.as_mut().unwrap().0 = sim.now; // finishes while nobody can hear
    sim.run(10);
    assert!(!sim.node(NodeId(3)).is_installing());
    sim.heal();
    let new = elect_among(&mut sim, &[other.0]);
    let p = write(&mut sim, new, 2, &[other.0]);
    assert!(sim.run_until(ANY, |s| s.applied_on(&[3], p)));
    sim.run(1_000);
    assert_eq!(sim.events(other.0, 3), installed(snap));
    assert_eq!(sim.events(3, 3), installed(snap));
}

/// Scenario 8: a follower restart between the install and the first append still yields
/// exactly one follower event (the pending event is part of the hard state).
#[test]
fn s8_follower_restart_between_install_and_first_append() {
    for mode in BOTH {
        let mut sim = cluster(mode, 3, Faults::none());
        let (leader, snap) = lagging_node_setup(&mut sim, 3, 20);
        sim.restart(NodeId(3));
        assert!(sim.run_until(ANY, |s| !s.slots[2].checkpoints.is_empty()));
        sim.cut.insert((leader, NodeId(3)));
        assert!(
            sim.run_until(ANY, |s| s.slots[2].disk.pending.is_empty()),
            "install not made durable"
        );
        sim.crash(NodeId(3));
        sim.restart(NodeId(3));
        sim.heal();
        let p = write(&mut sim, leader, 2, &[1, 2, 3]);
        assert!(sim.applied_on(&[3], p));
        sim.run(1_000);
        assert_eq!(sim.events(3, 3), installed(snap), "{mode:?}");
        assert_eq!(sim.events(leader.0, 3), installed(snap), "{mode:?}");
    }
}

/// Scenario 9 (the part that exists before ReadIndex): while a notify round runs, the follower
/// refuses local snapshots with a typed error and takes no appends (without pushing the
/// leader's next index back); afterwards both work.
#[test]
fn s9_installing_follower_refuses_snapshots_and_appends() {
    let mut sim = cluster(
        SnapshotMode::Notify,
        3,
        Faults {
            max_install_delay: STALLED,
            ..Faults::none()
        },
    );
    let (leader, _) = lagging_node_setup(&mut sim, 3, 20);
    sim.restart(NodeId(3));
    assert!(sim.run_until(ANY, |s| s.install_rounds.len() == 1));
    let slot = &mut sim.slots[2];
    let store = &slot.disk.durable;
    let n = slot.node.as_mut().unwrap();
    assert_eq!(
        n.snapshot_taken(
            SnapshotId {
                index: Index(1),
                term: Term(1)
            },
            store
        ),
        Err(SnapshotError::InstallInProgress)
    );
    let last = sim.node(NodeId(3)).last_index();
    write(&mut sim, leader, 5, &[1, 2]);
    sim.run(1_000);
    assert_eq!(
        sim.node(NodeId(3)).last_index(),
        last,
        "appends accepted during the install"
    );
    assert_eq!(
        sim.install_rounds.len(),
        1,
        "refused appends must not start new rounds"
    );
    sim.slots[2].job.as_mut().unwrap().0 = sim.now;
    let p = write(&mut sim, leader, 2, &[1, 2, 3]);
    assert!(sim.applied_on(&[3], p));
    assert!(
        sim.take_snapshot(NodeId(3)).is_some(),
        "local snapshots work again"
    );
}

/// Scenario 10: stream mode with lost, duplicated and reordered chunks, failing restores (bad
/// checksums), and a leader change mid-stream: the follower installs, once, and both events
/// fire exactly once.
#[test]
fn s10_stream_survives_loss_duplication_reordering_bad_checksums_and_leader_change() {
    for seed in 0..32 {
        let faults = Faults {
            loss: 0.2,
            duplicate: 0.3,
            max_delay: 30,
            install_fail: 0.5,
            ..Faults::none()
        };
        let mut sim = Sim::with_config(seed, 3, faults, |c| c.snapshot_mode = SnapshotMode::Stream);
        let (old, _) = lagging_node_setup(&mut sim, 3, 20);
        let other = if old == NodeId(1) {
            NodeId(2)
        } else {
            NodeId(1)
        };
        sim.take_snapshot(other).unwrap();
        sim.restart(NodeId(3));
        assert!(
            sim.run_until(ANY, |s| !s.slots[2].staging.is_empty()),
            "seed {seed}: no chunk arrived"
        );
        sim.crash(old);
        let p = sim.last_payload();
        assert!(
            sim.run_until(ANY, |s| s.applied_on(&[3], p)),
            "seed {seed}: node 3 stuck"
        );
        sim.restart(old);
        let leader = elect_among(&mut sim, &[1, 2, 3]);
        write(&mut sim, leader, 3, &[1, 2, 3]);
        sim.run(2_000);
        let follower = sim.events(3, 3);
        let leaders: Vec<_> = [1, 2].iter().flat_map(|&l| sim.events(l, 3)).collect();
        if (follower.len() != 1 || leaders.len() != 1)
            && let Some(t) = &sim.trace
        {
            eprintln!("{t}");
        }
        assert_eq!(
            follower.len(),
            1,
            "seed {seed}: follower events {follower:?}"
        );
        assert_eq!(leaders.len(), 1, "seed {seed}: leader events {leaders:?}");
        assert_eq!(
            follower, leaders,
            "seed {seed}: both sides report the same snapshot"
        );
    }
}

/// `AlreadyInstalled` (Ratis E3): a follower whose snapshot already reaches the leader's log
/// answers so and no event fires on either side.
#[test]
fn already_installed_fires_no_event() {
    let mut sim = cluster(SnapshotMode::Notify, 3, Faults::none());
    let leader = elect_among(&mut sim, &[1, 2, 3]);
    write(&mut sim, leader, 10, &[1, 2, 3]);
    let f = (1..=3).find(|&i| i != leader.0).unwrap();
    let snap = sim.take_snapshot(NodeId(f)).unwrap();
    let first_available = SnapshotId {
        index: snap.index.next(),
        term: snap.term,
    };
    let term = sim.node(leader).term();
    let msg: common::Msg = Message {
        from: leader,
        to: NodeId(f),
        term,
        body: Body::InstallSnapshot {
            tag: 99,
            request: InstallRequest::Notify { first_available },
        },
    };
    let slot = &mut sim.slots[f as usize - 1];
    slot.node
        .as_mut()
        .unwrap()
        .step(&msg, &slot.disk.durable)
        .unwrap();
    sim.drain(NodeId(f));
    sim.run(1_000);
    assert!(sim.install_rounds.is_empty());
    assert!(sim.install_events.is_empty());
}

/// Ratis E5: a snapshot request from a stale term changes nothing (it never reaches the
/// install logic), so nothing it carries is adopted.
#[test]
fn stale_term_requests_change_nothing() {
    let store = common::store::MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
    c.snapshot_mode = SnapshotMode::Notify;
    let mut node: common::SimNode = Node::new(c, &store).unwrap();
    let up: common::Msg = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(5),
        body: Body::Heartbeat { commit: Index(0) },
    };
    node.step(&up, &store).unwrap();
    common::budget::drain_all("node", || node.poll_action().map(|a| format!("{a:?}")));
    let request = InstallRequest::Notify {
        first_available: SnapshotId {
            index: Index(50),
            term: Term(3),
        },
    };
    let stale: common::Msg = Message {
        from: NodeId(3),
        to: NodeId(1),
        term: Term(4),
        body: Body::InstallSnapshot { tag: 1, request },
    };
    let stale_before = node.stats().stale_term;
    assert_eq!(
        node.step(&stale, &store),
        Ok(()),
        "a stale term is routine, not an error"
    );
    assert_eq!(node.stats().stale_term, stale_before + 1);
    assert!(!node.is_installing());
    let mut acts = Vec::new();
    let mut budget = common::budget::Drain::new("node");
    while let Some(a) = node.poll_action() {
        budget.spend();
        acts.push((
            matches!(a, raftlet::Action::Send(m) if matches!(m.message().body, Body::HeartbeatResponse)),
            format!("{a:?}"),
        ));
    }
    assert!(acts.iter().all(|(ok, _)| *ok), "{acts:?}");
}

/// A leader and a follower in different modes refuse each other's snapshot messages and
/// change nothing.
#[test]
fn mode_mismatch_changes_nothing() {
    let mut sim = Sim::with_config(3, 3, Faults::none(), |c| {
        c.snapshot_mode = if c.id == NodeId(3) {
            SnapshotMode::Stream
        } else {
            SnapshotMode::Notify
        };
    });
    let (leader, _) = lagging_node_setup(&mut sim, 3, 20);
    sim.restart(NodeId(3));
    sim.run(3_000);
    assert!(sim.node(NodeId(3)).stats().snapshot_mode_mismatch > 0);
    assert!(sim.node(leader).stats().snapshot_mode_mismatch > 0);
    assert_eq!(sim.node(NodeId(3)).last_index(), Index(0));
    assert!(sim.install_rounds.is_empty() && sim.install_events.is_empty());
    assert_eq!(sim.node(leader).role(), Role::Leader);
}

/// The leader re-sends a notification at most once per `snapshot_resend_ticks` (no floods,
/// Ratis RATIS-1402 / RATIS-2244).
#[test]
fn notifications_are_rate_limited() {
    let mut sim = cluster(
        SnapshotMode::Notify,
        3,
        Faults {
            max_install_delay: STALLED,
            ..Faults::none()
        },
    );
    let (leader, _) = lagging_node_setup(&mut sim, 3, 20);
    sim.restart(NodeId(3));
    assert!(sim.run_until(ANY, |s| s.install_rounds.len() == 1));
    let (t0, n0) = (
        sim.now,
        sim.sent_count(leader.0, 3, "InstallSnapshotNotify"),
    );
    sim.run(20_000);
    let ticks = (sim.now - t0) / common::TICK;
    let sent = sim.sent_count(leader.0, 3, "InstallSnapshotNotify") - n0;
    let resend = u64::from(
        Config::<5>::new(NodeId(1), &[NodeId(1)])
            .unwrap()
            .snapshot_resend_ticks,
    );
    assert!(ticks > 100, "ran {ticks} ticks");
    assert!(
        sent <= ticks / resend + 2,
        "{sent} notifications in {ticks} ticks"
    );
    assert!(
        sent >= ticks / resend / 2,
        "polling stopped: {sent} in {ticks} ticks"
    );
}

/// Raft §7, and the bug the "committed entries are durable on a quorum" oracle once found
/// (seed 94 of an earlier simulator): a follower whose log already holds the installed
/// snapshot's last entry keeps the entries after it (they may be acknowledged to the leader
/// and counted toward commit); only a log that does not hold it is replaced.
#[test]
fn installing_an_older_snapshot_keeps_the_log_after_it() {
    use common::store::MemStore;
    use raftlet::{Action, Entry, EntryData, HardState, InstallResult};
    let mut store = MemStore {
        hs: HardState {
            term: Term(1),
            vote: None,
            pending_install: None,
        },
        ..MemStore::default()
    };
    for i in 1..=10 {
        store.log.push(Entry {
            term: Term(1),
            index: Index(i),
            data: EntryData::Normal(i),
        });
    }
    let mut c = Config::<5>::new(NodeId(1), &[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
    c.snapshot_mode = SnapshotMode::Notify;
    let mut node: common::SimNode = Node::new(c, &store).unwrap();
    // The leader's log starts at 9: this follower (commit 0) is asked to install.
    let request = InstallRequest::Notify {
        first_available: SnapshotId {
            index: Index(9),
            term: Term(1),
        },
    };
    let notify: common::Msg = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        body: Body::InstallSnapshot { tag: 1, request },
    };
    node.step(&notify, &store).unwrap();
    common::budget::drain_all("node", || node.poll_action().map(|a| format!("{a:?}")));
    assert!(node.is_installing());
    // The application installs a snapshot at 8, which this log holds (same term).
    node.snapshot_installed(
        Ok(SnapshotMeta {
            id: SnapshotId {
                index: Index(8),
                term: Term(1),
            },
            membership: node.membership().clone(),
        }),
        &store,
    )
    .unwrap();
    let mut reset = false;
    let mut answered = None;
    let mut budget = common::budget::Drain::new("node");
    while let Some(a) = node.poll_action() {
        budget.spend();
        match a {
            Action::Persist(p) => reset |= p.snapshot.is_some(),
            Action::Send(m) => {
                if let Body::InstallSnapshotResponse { result, .. } = m.message().body {
                    answered = Some(result);
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        answered,
        Some(InstallResult::Installed(SnapshotId {
            index: Index(8),
            term: Term(1)
        }))
    );
    assert!(
        !reset,
        "the log was replaced although it holds the snapshot's last entry"
    );
    assert_eq!(
        node.last_index(),
        Index(10),
        "entries after the snapshot were dropped"
    );
    assert_eq!(node.commit_index(), Index(8));
    // A snapshot this log does not hold replaces it.
    // (The first request of the new term collects the earlier outcome; the next starts a round.)
    for tag in [2, 3] {
        let request = InstallRequest::Notify {
            first_available: SnapshotId {
                index: Index(30),
                term: Term(2),
            },
        };
        let notify: common::Msg = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(2),
            body: Body::InstallSnapshot { tag, request },
        };
        node.step(&notify, &store).unwrap();
        common::budget::drain_all("node", || node.poll_action().map(|a| format!("{a:?}")));
    }
    assert!(node.is_installing());
    node.snapshot_installed(
        Ok(SnapshotMeta {
            id: SnapshotId {
                index: Index(29),
                term: Term(2),
            },
            membership: node.membership().clone(),
        }),
        &store,
    )
    .unwrap();
    let mut reset = None;
    let mut budget = common::budget::Drain::new("node");
    while let Some(a) = node.poll_action() {
        budget.spend();
        if let Action::Persist(p) = a {
            reset = reset.or(p.snapshot.copied());
        }
    }
    assert_eq!(
        reset,
        Some(SnapshotId {
            index: Index(29),
            term: Term(2)
        })
    );
    assert_eq!(node.last_index(), Index(29));
}
