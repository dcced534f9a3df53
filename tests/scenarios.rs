//! Classic Raft situations, scripted on the simulated cluster. Every event still runs through
//! the safety oracles, so each scenario also asserts that nothing unsafe happened on the way.

mod common;

use common::{Faults, Sim};
use raftlet::{NodeId, ProposeError, Role, Term};

use common::script::{ANY, commit_one, elect_any, step_now};

/// Raft §5.2: when the leader crashes, the others elect a new one at a higher term, which
/// commits new entries; the old leader restarts from its durable state and catches up.
#[test]
fn leader_crash_and_reelection() {
    let mut sim = Sim::new(1, 3, Faults::none());
    let l1 = elect_any(&mut sim);
    let t1 = sim.node(l1).term();
    let before = commit_one(&mut sim, l1, &[1, 2, 3]);
    sim.crash(l1);
    assert!(
        sim.run_until(ANY, |s| s.leader().is_some_and(|l| l != l1)),
        "no new leader"
    );
    let l2 = sim.leader().unwrap();
    assert!(sim.node(l2).term() > t1);
    let others: Vec<u64> = sim
        .ids()
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != l1.0)
        .collect();
    let after = commit_one(&mut sim, l2, &others);
    sim.restart(l1);
    assert!(
        sim.run_until(ANY, |s| s.applied_on(&[l1.0], before)
            && s.applied_on(&[l1.0], after)),
        "restarted node did not catch up"
    );
    assert_eq!(sim.node(l1).role(), Role::Follower);
    assert_eq!(sim.node(l1).leader(), Some(l2));
}

/// A leader cut off from the majority cannot commit, steps down (check-quorum), and when the
/// partition heals its uncommitted tail is replaced by the new leader's log without disrupting
/// the new leader (pre-vote).
#[test]
fn stale_leader_rejoins_and_its_divergent_tail_is_truncated() {
    let mut sim = Sim::new(2, 5, Faults::none());
    let old = elect_any(&mut sim);
    commit_one(&mut sim, old, &[1, 2, 3, 4, 5]);
    let old_commit = sim.node(old).commit_index();
    sim.partition(&[old]);
    // The old leader still accepts proposals: they can never commit.
    let mut lost = Vec::new();
    for _ in 0..3 {
        sim.propose(old)
            .expect("still leader right after the partition");
        lost.push(sim.last_payload());
    }
    let divergent_at = sim.node(old).last_index();
    assert!(sim.run_until(ANY, |s| s.leader().is_some_and(|l| l != old)));
    let new = sim.leader().unwrap();
    let new_term = sim.node(new).term();
    let rest: Vec<u64> = sim
        .ids()
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != old.0)
        .collect();
    for _ in 0..4 {
        commit_one(&mut sim, new, &rest);
    }
    assert_eq!(
        sim.node(old).commit_index(),
        old_commit,
        "a minority leader committed"
    );
    assert!(
        sim.run_until(ANY, |s| s.node(old).role() != Role::Leader),
        "check-quorum did not depose the isolated leader"
    );
    assert_eq!(sim.node(old).commit_index(), old_commit);
    sim.heal();
    let marker = commit_one(&mut sim, new, &[1, 2, 3, 4, 5]);
    assert!(sim.applied_on(&[old.0], marker));
    assert_eq!(
        sim.leader(),
        Some(new),
        "the rejoining node disrupted the leader"
    );
    assert_eq!(
        sim.node(new).term(),
        new_term,
        "the rejoining node inflated the term"
    );
    let store = &sim.slots[old.0 as usize - 1].disk.durable;
    let new_store = &sim.slots[new.0 as usize - 1].disk.durable;
    assert_eq!(
        sim.node(old).entry_at(divergent_at, store),
        sim.node(new).entry_at(divergent_at, new_store),
        "the divergent tail was not replaced"
    );
    for p in lost {
        for id in sim.ids() {
            assert!(
                !sim.oracle.applied_payload(id, p),
                "uncommitted payload {p} was applied on {id}"
            );
        }
    }
}

/// A leader with only a minority (2 of 5) keeps accepting proposals but never commits them.
#[test]
fn minority_partition_cannot_commit() {
    let mut sim = Sim::with_config(3, 5, Faults::none(), |c| c.check_quorum = false);
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3, 4, 5]);
    let follower = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    sim.partition(&[leader, follower]);
    let commit = sim.node(leader).commit_index();
    sim.propose(leader).unwrap();
    let p = sim.last_payload();
    sim.run(5_000);
    // Without check-quorum the old leader may still think it leads; either way nothing commits.
    assert_eq!(sim.node(leader).commit_index(), commit);
    assert_eq!(sim.node(follower).commit_index(), commit);
    assert!(!sim.oracle.applied_payload(leader, p));
}

/// Thesis §9.6: with pre-vote, a node cut off for many election timeouts does not raise its
/// term, and rejoining does not depose the leader. Without pre-vote (and without check-quorum)
/// the same node inflates its term and forces an election when it rejoins.
#[test]
fn pre_vote_prevents_term_inflation() {
    fn run(pre_vote: bool) -> (u64, u64, bool) {
        let mut sim = Sim::with_config(4, 3, Faults::none(), |c| {
            c.pre_vote = pre_vote;
            c.check_quorum = false;
        });
        let leader = elect_any(&mut sim);
        let term = sim.node(leader).term();
        let loner = sim.ids().into_iter().find(|&i| i != leader).unwrap();
        sim.partition(&[loner]);
        sim.run(20_000); // ~ 60 election timeouts
        let loner_term = sim.node(loner).term();
        assert!(
            sim.node(loner).stats().campaigns > 5,
            "the loner should keep trying"
        );
        sim.heal();
        sim.run(3_000);
        let disrupted = sim.leader() != Some(leader) || sim.node(leader).term() != term;
        (term.0, loner_term.0, disrupted)
    }
    let (term, loner_term, disrupted) = run(true);
    assert_eq!(
        loner_term, term,
        "pre-vote: the isolated node raised its term"
    );
    assert!(!disrupted, "pre-vote: rejoining disrupted the leader");
    let (term, loner_term, disrupted) = run(false);
    assert!(
        loner_term > term + 5,
        "without pre-vote the term should inflate ({term} -> {loner_term})"
    );
    assert!(
        disrupted,
        "without pre-vote a rejoining node with a higher term forces an election"
    );
}

/// A follower refuses proposals with a typed error that names the leader and hands the
/// payload back.
#[test]
fn follower_refuses_proposals_naming_the_leader() {
    let mut sim = Sim::new(5, 3, Faults::none());
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3]);
    let follower = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    let next = sim.last_payload() + 1;
    match sim.propose(follower) {
        Err(ProposeError::NotLeader {
            leader: named,
            data,
        }) => {
            assert_eq!(named, Some(leader));
            assert_eq!(data, next, "the payload is handed back");
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

/// Back-pressure: a leader whose disk stalls fills its unstable log, then refuses proposals
/// with `Full` (handing them back) instead of dropping or panicking; once the disk catches up
/// everything accepted commits.
#[test]
fn stalled_disk_is_back_pressure_not_loss() {
    let mut sim = Sim::new(6, 3, Faults::none());
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3]);
    sim.stalled_disks.insert(leader);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        match sim.propose(leader) {
            Ok(_) => accepted.push(sim.last_payload()),
            Err(ProposeError::Full(_)) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
        sim.run(5);
    }
    assert!(refused > 0, "a stalled disk must push back");
    assert!(
        accepted.len() >= 31,
        "the unstable log (32 entries) should fill first: {}",
        accepted.len()
    );
    // A quorum of followers is durable, but the leader counts itself only once durable and
    // followers never apply beyond their own durable index: nothing from the stalled window
    // is applied on the leader.
    assert!(
        !sim.oracle
            .applied_payload(leader, *accepted.last().unwrap())
    );
    sim.stalled_disks.clear();
    let last = *accepted.last().unwrap();
    assert!(sim.run_until(ANY, |s| s.applied_on(&[1, 2, 3], last)));
    for p in accepted {
        assert!(sim.applied_on(&[1, 2, 3], p), "accepted payload {p} lost");
    }
}

/// A leader counts itself toward commit only up to its durable index: with one follower down
/// and its own disk stalled, the one durable follower is no quorum, so nothing commits; once
/// the disk catches up, everything does.
#[test]
fn leader_counts_itself_only_once_durable() {
    let mut sim = Sim::new(8, 3, Faults::none());
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3]);
    let down = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    sim.crash(down);
    let commit = sim.node(leader).commit_index();
    sim.stalled_disks.insert(leader);
    sim.propose(leader).unwrap();
    let p = sim.last_payload();
    sim.run(2_000);
    assert_eq!(
        sim.node(leader).commit_index(),
        commit,
        "committed on one durable copy plus a volatile one"
    );
    sim.stalled_disks.clear();
    let up: Vec<u64> = sim
        .ids()
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != down.0)
        .collect();
    assert!(sim.run_until(ANY, |s| s.applied_on(&up, p)));
}

/// Linearizable reads: a leader deposed by a partition (without check-quorum, so it still
/// believes it leads) must fail a read instead of serving stale state, while the new leader and
/// a follower serve reads that include every acknowledged write.
#[test]
fn deposed_leader_in_minority_fails_reads_instead_of_serving_stale_data() {
    let mut sim = Sim::with_config(9, 5, Faults::none(), |c| c.check_quorum = false);
    let old = elect_any(&mut sim);
    commit_one(&mut sim, old, &[1, 2, 3, 4, 5]);
    let buddy = sim.ids().into_iter().find(|&i| i != old).unwrap();
    sim.partition(&[old, buddy]);
    assert!(sim.run_until(ANY, |s| s.leader().is_some_and(|l| l != old && l != buddy)));
    let new = sim.leader().unwrap();
    let majority: Vec<u64> = sim
        .ids()
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != old.0 && i != buddy.0)
        .collect();
    commit_one(&mut sim, new, &majority);
    assert_eq!(
        sim.node(old).role(),
        Role::Leader,
        "the old leader still believes it leads"
    );
    let stale = sim.read(old).expect("the old leader takes the read");
    sim.run(5_000);
    assert!(
        !sim.reads.contains_key(&stale),
        "the read must end (fail), not hang"
    );
    assert!(
        sim.stats.reads_failed >= 1 && sim.stats.reads_served == 0,
        "{:?}",
        sim.stats
    );
    // On the majority side reads are served and see the acknowledged write.
    sim.read(new).expect("new leader reads");
    let follower = NodeId(majority.iter().copied().find(|&i| i != new.0).unwrap());
    sim.read(follower).expect("follower reads");
    assert!(sim.run_until(ANY, |s| s.reads.is_empty()));
    assert_eq!(sim.stats.reads_served, 2);
}

/// Many reads asked while a confirmation round is in flight share the next round.
#[test]
fn reads_are_batched_into_shared_rounds() {
    let mut sim = Sim::new(10, 3, Faults::none());
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3]);
    let before: u64 = sim
        .ids()
        .iter()
        .map(|f| sim.sent_count(leader.0, f.0, "ReadConfirm"))
        .sum();
    for _ in 0..12 {
        sim.read(leader).expect("read taken");
    }
    assert!(sim.run_until(ANY, |s| s.reads.is_empty()));
    let rounds: u64 = sim
        .ids()
        .iter()
        .map(|f| sim.sent_count(leader.0, f.0, "ReadConfirm"))
        .sum::<u64>()
        - before;
    assert_eq!(sim.stats.reads_served, 12);
    assert!(
        rounds <= 2 * 2,
        "12 reads took {rounds} confirmation messages (2 followers)"
    );
}

/// An unconfirmed round is re-sent at every tick to the followers that have not answered it,
/// never to one that has: a leader of five that hears from one follower retries the other three.
#[test]
fn a_round_is_resent_only_to_followers_that_have_not_answered() {
    let mut sim = Sim::with_config(37, 5, Faults::none(), |c| c.check_quorum = false);
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3, 4, 5]);
    let friend = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    sim.partition(&[leader, friend]);
    let count = |sim: &Sim, f: NodeId| sim.sent_count(leader.0, f.0, "ReadConfirm");
    let before: Vec<u64> = sim.ids().iter().map(|&f| count(&sim, f)).collect();
    sim.read(leader).expect("read taken");
    let start = sim.now;
    sim.run_until(ANY, |s| s.now > start + 6 * common::TICK);
    for (k, &f) in sim.ids().iter().enumerate() {
        let sent = count(&sim, f) - before[k];
        if f == leader {
            continue;
        } else if f == friend {
            assert_eq!(sent, 1, "the round re-sent to a follower that answered it");
        } else {
            assert!(
                sent >= 4,
                "node {f}: the round sent {sent} times in 6 ticks"
            );
        }
    }
    assert_eq!(sim.node(leader).role(), Role::Leader);
}

/// Raft §5.4.2, Figure 8 (the script is in `common::script`, shared with the canary test).
#[test]
fn figure_8_no_commit_of_old_term_entries_by_counting() {
    common::script::figure_8();
}

/// Leadership transfer under load (thesis §3.10): the leader stops taking proposals (typed
/// error, payload handed back), brings the target up to date, and the target takes over at
/// once, despite the followers' leader lease; nothing acknowledged is lost.
#[test]
fn leadership_transfer_under_load() {
    let mut sim = Sim::new(
        12,
        3,
        Faults {
            loss: 0.05,
            ..Faults::none()
        },
    );
    let old = elect_any(&mut sim);
    let target = sim.ids().into_iter().find(|&i| i != old).unwrap();
    // Load: keep proposing while the transfer runs.
    for _ in 0..30 {
        let _ = sim.propose(old);
        sim.run(3);
    }
    let term = sim.node(old).term();
    {
        let slot = &mut sim.slots[old.0 as usize - 1];
        slot.node
            .as_mut()
            .unwrap()
            .transfer_leadership(target, &slot.disk.durable)
            .unwrap();
    }
    sim.drain(old);
    match sim.propose(old) {
        Err(ProposeError::Transferring(p)) => assert_eq!(p, sim.last_payload() + 1),
        other => assert!(
            sim.node(old).role() != Role::Leader
                || matches!(other, Err(ProposeError::NotLeader { .. })),
            "{other:?}"
        ),
    }
    let t0 = sim.now;
    assert!(
        sim.run_until(ANY, |s| s.leader() == Some(target)),
        "the target did not take over"
    );
    // A transfer is a few message delays, not an election timeout (10-20 ticks): the target
    // was not elected by disrupting the leader, it was handed over.
    assert!(
        sim.now - t0 < 5 * common::TICK,
        "took {} time units",
        sim.now - t0
    );
    assert!(sim.node(target).term() > term);
    let p = commit_one(&mut sim, target, &[1, 2, 3]);
    assert!(sim.applied_on(&[old.0], p));
}

/// Transfers to anything but another voter are refused; a transfer to a node that cannot take
/// over is abandoned after an election timeout and the leader takes proposals again.
#[test]
fn leadership_transfer_errors_and_abandonment() {
    let mut sim = Sim::with_config(13, 3, Faults::none(), |c| c.check_quorum = false);
    let leader = elect_any(&mut sim);
    let down = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    let slot = &mut sim.slots[leader.0 as usize - 1];
    let node = slot.node.as_mut().unwrap();
    assert_eq!(
        node.transfer_leadership(leader, &slot.disk.durable),
        Err(raftlet::TransferError::NotAVoter)
    );
    assert_eq!(
        node.transfer_leadership(NodeId(9), &slot.disk.durable),
        Err(raftlet::TransferError::NotAVoter)
    );
    sim.crash(down);
    let slot = &mut sim.slots[leader.0 as usize - 1];
    slot.node
        .as_mut()
        .unwrap()
        .transfer_leadership(down, &slot.disk.durable)
        .unwrap();
    assert_eq!(sim.node(leader).transferring_to(), Some(down));
    assert!(
        sim.run_until(ANY, |s| s.node(leader).transferring_to().is_none()),
        "never abandoned"
    );
    assert_eq!(sim.leader(), Some(leader));
    let alive: Vec<u64> = sim
        .ids()
        .iter()
        .map(|i| i.0)
        .filter(|&i| i != down.0)
        .collect();
    commit_one(&mut sim, leader, &alive);
    let follower = sim
        .ids()
        .into_iter()
        .find(|&i| i != leader && i != down)
        .unwrap();
    let slot = &mut sim.slots[follower.0 as usize - 1];
    assert_eq!(
        slot.node
            .as_mut()
            .unwrap()
            .transfer_leadership(leader, &slot.disk.durable),
        Err(raftlet::TransferError::NotLeader)
    );
}

/// Regression (bug 1 of the etcd-test port): a client that keeps retrying a transfer to an
/// unreachable target must not keep the leader refusing proposals forever. A repeat of the
/// pending transfer is ignored; the transfer is abandoned one election timeout after the
/// first request, whatever the retries.
#[test]
fn a_repeated_transfer_does_not_restart_its_deadline() {
    let mut sim = Sim::with_config(13, 3, Faults::none(), |c| c.check_quorum = false);
    let leader = elect_any(&mut sim);
    let down = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    sim.crash(down);
    let transfer = |sim: &mut Sim| {
        let slot = &mut sim.slots[leader.0 as usize - 1];
        slot.node
            .as_mut()
            .unwrap()
            .transfer_leadership(down, &slot.disk.durable)
    };
    transfer(&mut sim).unwrap();
    // The election timeout is 10 ticks of about 10 time units; retry every few events for
    // far longer than that.
    let mut abandoned = false;
    for _ in 0..400 {
        sim.run(5);
        if sim.node(leader).transferring_to().is_none() {
            abandoned = true;
            break;
        }
        assert_eq!(
            transfer(&mut sim),
            Ok(()),
            "a repeat is accepted (and ignored)"
        );
    }
    assert!(abandoned, "retries kept the transfer alive");
    assert_eq!(sim.leader(), Some(leader));
    sim.propose(leader).expect("proposals are accepted again");
}

/// `TimeoutNow` (thesis §3.10) makes a node campaign only if it is a follower that can
/// campaign (a voter) and the message comes from the leader it follows: one from another
/// follower, one to the leader itself and one to a learner change nothing.
#[test]
fn timeout_now_is_obeyed_only_by_a_voting_follower_from_its_leader() {
    fn timeout_now(sim: &mut Sim, from: NodeId, to: NodeId) {
        let term = sim.node(to).term();
        step_now(sim, from, to, term, raftlet::Body::TimeoutNow);
    }
    // Three voters and a learner (node 4).
    let mut sim = Sim::with_members(21, 4, 3, Faults::none(), |c| c.check_quorum = false);
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3]);
    sim.change_membership(
        leader,
        raftlet::ConfChange::single(raftlet::Change::AddLearner(NodeId(4))),
    )
    .expect("leader adds a learner");
    commit_one(&mut sim, leader, &[1, 2, 3, 4]);
    assert!(sim.node(NodeId(4)).membership().is_learner(NodeId(4)));
    let term = sim.node(leader).term();
    let voters: Vec<NodeId> = sim.ids().into_iter().filter(|i| i.0 <= 3).collect();
    let follower = voters.iter().copied().find(|&i| i != leader).unwrap();
    let other = voters
        .iter()
        .copied()
        .find(|&i| i != leader && i != follower)
        .unwrap();
    let learner = NodeId(4);

    timeout_now(&mut sim, other, follower);
    assert_eq!(
        sim.node(follower).role(),
        Role::Follower,
        "obeyed a non-leader"
    );
    timeout_now(&mut sim, follower, leader);
    assert_eq!(
        sim.node(leader).role(),
        Role::Leader,
        "the leader campaigned"
    );
    timeout_now(&mut sim, leader, learner);
    assert_eq!(
        sim.node(learner).role(),
        Role::Follower,
        "a learner campaigned"
    );
    for id in [leader, follower, other, learner] {
        assert_eq!(sim.node(id).term(), term, "node {id} changed its term");
    }
    // The real thing: from the leader to a voting follower.
    timeout_now(&mut sim, leader, follower);
    assert_eq!(sim.node(follower).role(), Role::Candidate);
    assert_eq!(sim.node(follower).term(), Term(term.0 + 1));
}

/// Raft §5.2: a candidate that loses the election to a leader of its own term becomes its
/// follower and keeps its vote (for itself) for that term: forgetting it would let it vote a
/// second time in the same term.
#[test]
fn a_candidate_that_loses_keeps_its_vote_for_the_term() {
    let mut sim = common::script::manual(3);
    // Both campaign in term 1 before any vote request is delivered: each votes for itself, the
    // third node's vote decides.
    sim.campaign(NodeId(1));
    sim.campaign(NodeId(2));
    let leader = elect_any(&mut sim);
    let loser = if leader == NodeId(1) {
        NodeId(2)
    } else {
        NodeId(1)
    };
    commit_one(&mut sim, leader, &[1, 2, 3]);
    let hs = sim.node(loser).hard_state();
    assert_eq!(sim.node(loser).role(), Role::Follower);
    assert_eq!(hs.term, sim.node(leader).term());
    assert_eq!(
        hs.vote,
        Some(loser),
        "the loser forgot its vote of this term"
    );
}

/// Raft §5.2: one vote per term. A node that voted for one candidate refuses another of the
/// same term, even though it knows no leader yet.
#[test]
fn one_vote_per_term() {
    let mut sim = common::script::manual(3);
    let ask = |sim: &mut Sim, candidate: u64| {
        let body = raftlet::Body::VoteRequest {
            pre_vote: false,
            last_index: raftlet::Index(0),
            last_term: Term(0),
        };
        step_now(sim, NodeId(candidate), NodeId(2), Term(1), body);
        // Let the vote become durable (and its grant leave).
        sim.run(20);
    };
    ask(&mut sim, 1);
    assert_eq!(sim.node(NodeId(2)).hard_state().vote, Some(NodeId(1)));
    assert_eq!(sim.node(NodeId(2)).leader(), None);
    ask(&mut sim, 3);
    let hs = sim.node(NodeId(2)).hard_state();
    assert_eq!(
        (hs.term, hs.vote),
        (Term(1), Some(NodeId(1))),
        "voted twice in term 1"
    );
}

/// Thesis §9.6: a pre-vote is granted without a vote of this term only for a *later* term. A
/// node that follows a leader of term `T` refuses a pre-vote for `T` itself (from a node one
/// term behind), however up to date the asker's log.
#[test]
fn a_pre_vote_for_the_current_term_needs_the_vote() {
    let mut sim = common::script::manual(3);
    common::script::campaign_until_leader(&mut sim, 1);
    commit_one(&mut sim, NodeId(1), &[1, 2, 3]);
    let term = sim.node(NodeId(2)).term();
    assert_eq!(sim.node(NodeId(2)).leader(), Some(NodeId(1)));
    let (last_index, last_term) = {
        let n = sim.node(NodeId(3));
        (n.last_index(), n.term())
    };
    let body = raftlet::Body::VoteRequest {
        pre_vote: true,
        last_index,
        last_term,
    };
    step_now(&mut sim, NodeId(3), NodeId(2), term, body);
    let answers: Vec<_> = sim
        .in_flight_messages()
        .filter(|m| m.from == NodeId(2) && m.to == NodeId(3))
        .filter_map(|m| match m.body {
            raftlet::Body::VoteResponse { pre_vote, granted } => Some((pre_vote, granted)),
            _ => None,
        })
        .collect();
    assert_eq!(answers, [(true, false)], "the pre-vote was not refused");
}

/// A pre-candidate counts only answers to its pre-vote: refusals of a real vote of its term (left
/// over from an earlier candidacy) do not end its pre-election.
#[test]
fn a_pre_candidate_ignores_real_vote_refusals() {
    let mut sim = Sim::with_config(7, 3, Faults::none(), |c| {
        c.election_ticks = 1000;
        c.pre_vote = true;
        c.check_quorum = false;
    });
    sim.campaign(NodeId(1));
    assert_eq!(sim.node(NodeId(1)).role(), Role::PreCandidate);
    let term = sim.node(NodeId(1)).term();
    for voter in [2, 3] {
        let body = raftlet::Body::VoteResponse {
            pre_vote: false,
            granted: false,
        };
        step_now(&mut sim, NodeId(voter), NodeId(1), term, body);
    }
    assert_eq!(
        sim.node(NodeId(1)).role(),
        Role::PreCandidate,
        "real refusals ended the pre-election"
    );
    // Its real pre-vote answers still decide.
    assert!(
        sim.run_until(ANY, |s| s.leader() == Some(NodeId(1))),
        "the pre-candidate never won"
    );
}

/// Check-quorum counts each voter by its own progress: a leader of five that hears from one
/// follower (two of five, itself included) steps down, once, and counts it.
#[test]
fn check_quorum_counts_each_voter_by_its_own_activity() {
    let mut sim = Sim::with_config(31, 5, Faults::none(), |c| c.check_quorum = true);
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3, 4, 5]);
    let friend = sim.ids().into_iter().find(|&i| i != leader).unwrap();
    let lost = sim.node(leader).stats().quorum_lost;
    sim.partition(&[leader, friend]);
    assert!(
        sim.run_until(ANY, |s| s.node(leader).role() != Role::Leader),
        "a leader that hears from one follower of four kept leading"
    );
    assert_eq!(sim.node(leader).stats().quorum_lost, lost + 1);
}

/// A leader that steps down because it lost its quorum (check-quorum), in the same term, fails
/// its pending linearizable reads at once: it can no longer confirm them, and no later
/// acknowledgement may complete them.
#[test]
fn a_leader_that_loses_its_quorum_fails_its_pending_reads() {
    let mut sim = Sim::with_config(29, 3, Faults::none(), |c| c.check_quorum = true);
    let leader = elect_any(&mut sim);
    commit_one(&mut sim, leader, &[1, 2, 3]);
    let term = sim.node(leader).term();
    sim.partition(&[leader]);
    let rid = sim.read(leader).expect("the leader takes the read");
    assert!(sim.reads.contains_key(&rid));
    let failed = sim.stats.reads_failed;
    assert!(
        sim.run_until(ANY, |s| s.node(leader).role() != Role::Leader),
        "the cut-off leader never stepped down"
    );
    assert_eq!(
        sim.node(leader).term(),
        term,
        "stepped down in its own term"
    );
    assert!(
        !sim.reads.contains_key(&rid),
        "the read is still pending after the leader stepped down"
    );
    assert_eq!(sim.stats.reads_failed, failed + 1);
}

/// Lease reads (off by default): a leader that a quorum confirmed within the lease serves a read
/// at once, without a round; cut off from the others, it stops doing so once its lease (shorter
/// than the followers' election timeout by the drift bound) has run out, and the read then
/// needs a quorum it cannot reach.
#[test]
fn lease_reads_skip_the_round_only_while_the_lease_lasts() {
    let mut sim = Sim::with_config(17, 3, Faults::none(), |c| {
        c.lease_reads = true;
        c.max_clock_drift_percent = 20;
    });
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    // A heartbeat round establishes the lease.
    let t = sim.now;
    sim.run_until(ANY, |s| s.now > t + 3 * common::TICK);
    let served = sim.stats.reads_served;
    sim.read(l).expect("read taken");
    assert_eq!(
        sim.stats.reads_served,
        served + 1,
        "a read within the lease waited for a round"
    );
    assert_eq!(sim.node(l).stats().lease_reads, 1);
    // Cut off, the leader keeps serving only until the lease expires:
    // floor((10 - 1) * 80 / 100) = 7 ticks after the last confirmed round.
    sim.partition(&[l]);
    let cut = sim.now;
    sim.run_until(ANY, |s| s.now > cut + 8 * common::TICK);
    let served = sim.stats.reads_served;
    if sim.node(l).role() == Role::Leader {
        sim.read(l).expect("read taken");
        assert_eq!(
            sim.stats.reads_served, served,
            "a read served after the lease ran out"
        );
    }
    assert_eq!(sim.node(l).stats().lease_reads, 1);
    // Healed, the read is confirmed by a round (if the node still leads) or fails: it never
    // hangs, and the oracle checks whatever it returns.
    sim.heal();
    assert!(sim.run_until(ANY, |s| s.reads.is_empty()));
}

/// A round confirmed while a leadership transfer runs does not give the leader a read lease:
/// the target may be elected through the followers' leases at any moment. When the transfer is
/// abandoned, the next read still needs a round.
#[test]
fn no_read_lease_from_a_round_confirmed_during_a_transfer() {
    let mut sim = Sim::with_config(17, 3, Faults::none(), |c| {
        c.lease_reads = true;
        c.max_clock_drift_percent = 20;
    });
    let l = elect_any(&mut sim);
    commit_one(&mut sim, l, &[1, 2, 3]);
    let target = sim.ids().into_iter().find(|&i| i != l).unwrap();
    // The target is down: the transfer never completes and is abandoned after an election
    // timeout (10 ticks).
    sim.crash(target);
    let slot = &mut sim.slots[l.0 as usize - 1];
    slot.node
        .as_mut()
        .unwrap()
        .transfer_leadership(target, &slot.disk.durable)
        .unwrap();
    let start = sim.now;
    // Late in the transfer, a read's round is confirmed by the third node.
    sim.run_until(ANY, |s| s.now > start + 7 * common::TICK);
    assert_eq!(sim.node(l).transferring_to(), Some(target));
    let rid = sim.read(l).expect("read taken");
    assert!(
        sim.run_until(ANY, |s| !s.reads.contains_key(&rid)),
        "the read was never answered"
    );
    assert_eq!(
        sim.node(l).transferring_to(),
        Some(target),
        "transfer over too soon"
    );
    assert!(
        sim.run_until(ANY, |s| s.node(l).transferring_to().is_none()),
        "never abandoned"
    );
    let leased = sim.node(l).stats().lease_reads;
    let rid = sim.read(l).expect("read taken");
    assert_eq!(
        sim.node(l).stats().lease_reads,
        leased,
        "served from a lease of the transfer"
    );
    assert!(sim.reads.contains_key(&rid), "served without a round");
}

/// A leader whose clock runs slow does not serve lease reads past what the drift bound allows
/// (the `LeaseIgnoresDrift` canary fails this scenario; see `tests/canaries.rs`).
#[test]
fn a_slow_leader_clock_does_not_stretch_its_read_lease() {
    common::script::lease_and_a_slow_clock();
}
