//! Membership changes (Raft §6, thesis ch. 4), scripted on the simulated cluster: learners
//! that catch up and are promoted, several changes in one step through a joint configuration,
//! explicit and automatic leave, removal of the leader, one change at a time, a configuration
//! that survives restarts and travels with snapshots, and the removed leader that must still
//! campaign. Every event runs through the safety oracles as well.

mod common;

use common::script::{ANY, commit_one, elect_any};
use common::{Faults, Sim};
use raftlet::{Change, ConfChange, ConfChangeError, MembershipError, NodeId, Role, TransferError};

fn one(c: Change) -> ConfChange {
    ConfChange::single(c)
}

fn ids(v: &[u64]) -> Vec<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

/// Runs until `at` (which must lead) has committed its membership and that membership is not
/// joint.
fn settle(sim: &mut Sim, at: NodeId) {
    assert!(
        sim.run_until(ANY, |s| {
            let n = s.node(at);
            n.commit_index() >= n.membership_index() && !n.membership().is_joint()
        }),
        "the membership of {at} did not settle"
    );
}

/// A new node joins as a learner (it does not count in any quorum while it catches up), is
/// promoted once it holds the log, and then its vote and its acknowledgements count: the
/// cluster keeps committing and elects a leader with it after two original nodes are gone.
#[test]
fn a_new_node_catches_up_as_learner_then_votes() {
    let mut sim = Sim::with_members(21, 5, 3, Faults::none(), |_| {});
    let l = elect_any(&mut sim);
    for _ in 0..5 {
        commit_one(&mut sim, l, &[1, 2, 3]);
    }
    // Node 4 runs but is not a member: it neither campaigns nor gets anything.
    assert_eq!(sim.node(NodeId(4)).last_index().0, 0);
    assert_eq!(sim.node(NodeId(4)).stats().campaigns, 0);

    sim.change_membership(l, one(Change::AddLearner(NodeId(4))))
        .expect("leader adds a learner");
    assert!(
        !sim.node(l).membership().is_joint(),
        "learners need no joint step"
    );
    let p = commit_one(&mut sim, l, &[1, 2, 3, 4]);
    assert!(sim.applied_on(&[4], p), "the learner caught up");
    assert!(sim.node(NodeId(4)).membership().is_learner(NodeId(4)));
    // A learner cannot be handed leadership.
    let slot = &mut sim.slots[l.0 as usize - 1];
    assert_eq!(
        slot.node
            .as_mut()
            .unwrap()
            .transfer_leadership(NodeId(4), &slot.disk.durable),
        Err(TransferError::NotAVoter)
    );

    // Promote 4 and remove 3 in one step.
    let swap = one(Change::AddVoter(NodeId(4)))
        .with(Change::Remove(NodeId(3)))
        .unwrap();
    sim.change_membership(l, swap).expect("promotion accepted");
    assert!(sim.node(l).membership().is_joint());
    settle(&mut sim, l);
    assert_eq!(sim.node(l).membership().voters(), &ids(&[1, 2, 4])[..]);

    // With 2 down (and 3 removed), commits need 4's acknowledgement.
    let other = if l == NodeId(1) { NodeId(2) } else { NodeId(1) };
    sim.crash(other);
    let p = commit_one(&mut sim, l, &[l.0, 4]);
    assert!(sim.applied_on(&[4], p));
    // The leader goes too; with the other node back, 4 takes part in the election.
    sim.restart(other);
    sim.crash(l);
    assert!(
        sim.run_until(ANY, |s| s.leader().is_some_and(|x| x != l)),
        "no leader elected by the new configuration"
    );
    let l2 = sim.leader().unwrap();
    assert!(l2 == NodeId(4) || l2 == other);
    commit_one(&mut sim, l2, &[other.0, 4]);
}

/// Several changes in one step go through a joint configuration, which with an explicit leave
/// stays until asked; while it is in effect (or while any change is uncommitted) another change
/// is refused with a typed error.
#[test]
fn several_changes_in_one_step_and_an_explicit_leave() {
    let mut sim = Sim::with_members(22, 5, 3, Faults::none(), |_| {});
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    let removed = if l == NodeId(3) { NodeId(2) } else { NodeId(3) };
    let change = one(Change::AddVoter(NodeId(4)))
        .with(Change::AddVoter(NodeId(5)))
        .and_then(|c| c.with(Change::Remove(removed)))
        .unwrap()
        .with_explicit_leave();
    sim.change_membership(l, change).expect("accepted");
    // A second change while the first is not committed: refused, nothing appended.
    let last = sim.node(l).last_index();
    assert_eq!(
        sim.change_membership(l, one(Change::AddLearner(NodeId(5)))),
        Err(MembershipError::Pending)
    );
    assert_eq!(sim.node(l).last_index(), last);
    // Once committed, the joint configuration stays: it waits for an explicit leave.
    assert!(sim.run_until(ANY, |s| s.node(l).commit_index()
        >= s.node(l).membership_index()));
    sim.run(200);
    let m = sim.node(l).membership().clone();
    assert!(m.is_joint() && !m.auto_leave());
    assert_eq!(m.outgoing(), &ids(&[1, 2, 3])[..]);
    assert_eq!(
        sim.change_membership(l, one(Change::Remove(NodeId(1)))),
        Err(MembershipError::Invalid(ConfChangeError::InJoint))
    );
    // Both halves count while joint: commits need a majority of each.
    let incoming: Vec<u64> = m.voters().iter().map(|v| v.0).collect();
    commit_one(&mut sim, l, &incoming);
    let slot = &mut sim.slots[l.0 as usize - 1];
    slot.node
        .as_mut()
        .unwrap()
        .leave_joint(&slot.disk.durable)
        .expect("leave accepted");
    sim.drain(l);
    settle(&mut sim, l);
    let m = sim.node(l).membership().clone();
    assert!(!m.is_joint());
    assert!(!m.is_member(removed));
    assert_eq!(
        sim.change_membership(l, ConfChange::leave_joint()),
        Err(MembershipError::Invalid(ConfChangeError::NotJoint))
    );
    // Every member converges on the same configuration.
    let p = commit_one(&mut sim, l, &incoming);
    for id in &incoming {
        assert_eq!(sim.node(NodeId(*id)).membership(), &m);
    }
    assert!(sim.applied_on(&incoming, p));
}

/// A leader that removes itself keeps leading until the change is committed (without counting
/// itself), then steps down, handing over to an up-to-date voter; the others go on without it.
#[test]
fn removing_the_leader() {
    let mut sim = Sim::new(23, 3, Faults::none());
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    let t0 = sim.now;
    sim.change_membership(l, one(Change::Remove(l)))
        .expect("accepted");
    assert!(
        sim.run_until(ANY, |s| s.node(l).role() != Role::Leader),
        "the removed leader kept leading"
    );
    assert!(
        sim.node(l).commit_index() >= sim.node(l).membership_index(),
        "stepped down before its removal was committed"
    );
    assert!(!sim.node(l).membership().is_member(l));
    assert!(sim.run_until(ANY, |s| s.leader().is_some_and(|x| x != l)));
    let l2 = sim.leader().unwrap();
    // Handed over, not found by an election timeout (10-20 ticks).
    assert!(
        sim.now - t0 < 10 * common::TICK,
        "took {} time units",
        sim.now - t0
    );
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != l.0).collect();
    let p = commit_one(&mut sim, l2, &rest);
    sim.run(500);
    assert!(
        !sim.applied_on(&[l.0], p),
        "a removed node still gets entries"
    );
    // The removed node never campaigns.
    let campaigns = sim.node(l).stats().campaigns;
    sim.run(2000);
    assert_eq!(sim.node(l).stats().campaigns, campaigns);
}

/// Thesis §4.2.2: a leader that removed itself and crashed before its removal (`C_new`)
/// reached anyone holds the only copy of it, and the remaining voter, still in the joint
/// configuration, needs its vote, which its longer log refuses. The removed node must still
/// campaign (it counts no vote of its own), win, commit its removal and step down; then the
/// remaining voter leads. Before this was handled, the cluster never elected a leader again.
#[test]
fn a_removed_leader_that_crashed_before_committing_its_removal_still_campaigns() {
    let mut sim = Sim::with_members(24, 2, 1, Faults::none(), |_| {});
    let l = elect_any(&mut sim);
    assert_eq!(l, NodeId(1));
    commit_one(&mut sim, l, &[1]);
    let swap = one(Change::AddVoter(NodeId(2)))
        .with(Change::Remove(NodeId(1)))
        .unwrap();
    let joint_at = sim.change_membership(l, swap).expect("accepted");
    // The leader appends C_new (the automatic leave) as soon as the joint configuration
    // commits: cut it off at that moment, so that C_new never leaves it.
    assert!(sim.run_until(ANY, |s| s.node(l).membership_index() > joint_at));
    sim.partition(&[l]);
    let c_new = sim.node(l).membership_index();
    assert!(sim.run_until(ANY, |s| s.node(l).durable_index() >= c_new));
    assert!(!sim.node(l).membership().is_voter(l));
    assert!(sim.node(NodeId(2)).membership().is_joint());
    sim.crash(l);
    sim.restart(l);
    // Whatever was in flight toward node 2 is lost in the partition.
    assert!(sim.run_until(ANY, |s| s.in_flight() == 0));
    assert!(sim.node(NodeId(2)).membership().is_joint());
    sim.heal();
    assert!(
        sim.run_until(10 * ANY, |s| s.leader() == Some(NodeId(2))
            && s.node(NodeId(2)).membership().voters() == [NodeId(2)]
            && !s.node(NodeId(2)).membership().is_joint()),
        "the cluster never recovered a leader"
    );
    commit_one(&mut sim, NodeId(2), &[2]);
}

/// The configuration is the latest in the log: it survives restarts (replayed from the log
/// after the snapshot), and travels with snapshots to a node that catches up by one.
#[test]
fn membership_survives_restarts_and_travels_with_snapshots() {
    let mut sim = Sim::with_members(25, 5, 3, Faults::none(), |c| c.log_retention = 0);
    let l = elect_any(&mut sim);
    // A new leader changes nothing before an entry of its term is committed.
    assert_eq!(
        sim.change_membership(l, one(Change::AddLearner(NodeId(4)))),
        Err(MembershipError::Pending)
    );
    commit_one(&mut sim, l, &[1, 2, 3]);
    sim.change_membership(l, one(Change::AddLearner(NodeId(4))))
        .expect("accepted");
    commit_one(&mut sim, l, &[1, 2, 3, 4]);
    sim.change_membership(l, one(Change::AddVoter(NodeId(4))))
        .expect("accepted");
    settle(&mut sim, l);
    let m = sim.node(l).membership().clone();
    assert_eq!(m.voters(), &ids(&[1, 2, 3, 4])[..]);
    for _ in 0..5 {
        commit_one(&mut sim, l, &[1, 2, 3, 4]);
    }
    // Every node snapshots and compacts past the membership entries.
    for id in 1..=4 {
        assert!(sim.take_snapshot(NodeId(id)).is_some());
    }
    assert!(sim.node(l).log_start().index > sim.node(l).membership_index());
    // A restart rebuilds the membership from the application's snapshot.
    for id in 1..=4 {
        sim.crash(NodeId(id));
        sim.restart(NodeId(id));
        assert_eq!(sim.node(NodeId(id)).membership(), &m);
    }
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3, 4]);
    // Node 5 joins; the leader compacted everything it would need: it installs a snapshot and
    // takes the membership stored with it.
    sim.change_membership(l, one(Change::AddLearner(NodeId(5))))
        .expect("accepted");
    let p = commit_one(&mut sim, l, &[1, 2, 3, 4, 5]);
    assert!(sim.stats.installs > 0, "node 5 did not install a snapshot");
    assert!(sim.applied_on(&[5], p));
    assert!(sim.node(NodeId(5)).membership().is_learner(NodeId(5)));
    assert_eq!(sim.node(NodeId(5)).membership(), sim.node(l).membership());
}

/// Changes refused before anything is appended: on a follower (naming the leader), impossible
/// changes, and during a leadership transfer.
#[test]
fn refused_changes_are_typed_errors() {
    let mut sim = Sim::new(26, 3, Faults::none());
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    let f = sim.ids().into_iter().find(|&i| i != l).unwrap();
    assert_eq!(
        sim.change_membership(f, one(Change::AddLearner(NodeId(4)))),
        Err(MembershipError::NotLeader { leader: Some(l) })
    );
    for (change, err) in [
        (
            one(Change::Remove(NodeId(9))),
            ConfChangeError::NotAMember(NodeId(9)),
        ),
        (
            one(Change::AddVoter(NodeId(1))),
            ConfChangeError::AlreadyMember(NodeId(1)),
        ),
        (ConfChange::leave_joint(), ConfChangeError::NotJoint),
    ] {
        assert_eq!(
            sim.change_membership(l, change),
            Err(MembershipError::Invalid(err))
        );
    }
    let slot = &mut sim.slots[l.0 as usize - 1];
    slot.node
        .as_mut()
        .unwrap()
        .transfer_leadership(f, &slot.disk.durable)
        .unwrap();
    assert_eq!(
        sim.change_membership(l, one(Change::AddLearner(NodeId(4)))),
        Err(MembershipError::Transferring)
    );
}
