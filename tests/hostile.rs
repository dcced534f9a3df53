//! Property test: arbitrary (well-typed but hostile) messages, ticks and persist
//! acknowledgements never panic a node, and every node-local invariant holds throughout:
//! term and commit never go back, one vote per term, commit within the log, applies in order
//! and only of durable committed entries, vote grants and acknowledgements only of durable
//! state, and ignored messages change nothing.
//!
//! Raft does not defend against Byzantine peers: a forged leader of a higher term can feed a
//! node entries. What must hold is the node's own discipline, checked here.

mod common;

use common::store::MemStore;
use common::{BATCH, Faults, Sim, SimNode};
use proptest::prelude::*;
use raftlet::{
    Action, AppendResult, Body, Entry, EntryData, HardState, Index, Message, NodeId, Role,
    StepError, Storage, Term,
};

type Msg = common::Msg;
type Entries = heapless::Vec<Entry<u64>, BATCH>;

#[derive(Debug, Clone)]
enum Input {
    Step(Msg),
    /// A message aimed at the node's real state: its term raised to the node's, an append's
    /// `prev` pointed at an entry the node has, an acknowledgement within its log.
    Anchored(Msg, u64),
    Tick,
    /// Acknowledge the oldest outstanding persist (after writing it).
    Ack,
    Propose(u64),
    Campaign,
    Read(u64),
    Transfer(u64),
    /// Propose a membership change derived from the number.
    Conf(u64),
}

/// A membership change (or, every fifth, a leave of the joint configuration) from a number:
/// any kind, about nodes 1-6, so most are impossible from the node's membership.
fn conf_change(x: u64) -> raftlet::ConfChange {
    let id = NodeId(1 + (x >> 3) % 6);
    let change = match x % 5 {
        0 => return raftlet::ConfChange::leave_joint(),
        1 => raftlet::Change::AddVoter(id),
        2 => raftlet::Change::AddLearner(id),
        _ => raftlet::Change::Remove(id),
    };
    let c = raftlet::ConfChange::single(change);
    if x & 0x100 == 0 {
        return c;
    }
    c.with(raftlet::Change::Remove(NodeId(1 + (x >> 9) % 6)))
        .unwrap_or(c)
}

fn index() -> impl Strategy<Value = Index> {
    prop_oneof![4 => (0u64..12).prop_map(Index), 1 => any::<u64>().prop_map(Index)]
}
fn term() -> impl Strategy<Value = Term> {
    prop_oneof![4 => (0u64..8).prop_map(Term), 1 => any::<u64>().prop_map(Term)]
}

/// Whether entries are contiguous, and their (term, payload) pairs.
type RawEntries = (bool, Vec<(u64, u64)>);

fn entries() -> impl Strategy<Value = RawEntries> {
    // (contiguous?, [(term, payload)]) — contiguous ones are given indices after prev_index.
    (
        any::<bool>(),
        prop::collection::vec((0u64..8, any::<u64>()), 0..=BATCH),
    )
}

fn body() -> impl Strategy<Value = (Body<u64, Entries>, Option<RawEntries>)> {
    prop_oneof![
        (any::<bool>(), index(), term()).prop_map(|(pre_vote, last_index, last_term)| (
            Body::VoteRequest {
                pre_vote,
                last_index,
                last_term
            },
            None
        )),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre_vote, granted)| (Body::VoteResponse { pre_vote, granted }, None)),
        (index(), term(), index(), entries()).prop_map(|(prev_index, prev_term, commit, es)| (
            Body::Append {
                prev_index,
                prev_term,
                commit,
                entries: heapless::Vec::new()
            },
            Some(es)
        )),
        index().prop_map(|m| (
            Body::AppendResponse(AppendResult::Accepted { match_index: m }),
            None
        )),
        (index(), index(), term()).prop_map(|(rejected, hint_index, hint_term)| (
            Body::AppendResponse(AppendResult::Rejected {
                rejected,
                hint_index,
                hint_term
            }),
            None
        )),
        index().prop_map(|commit| (Body::Heartbeat { commit }, None)),
        index().prop_map(|commit| (Body::Commit { commit }, None)),
        index().prop_map(|commit| (Body::Quiesce { commit }, None)),
        Just((Body::HeartbeatResponse, None)),
        Just((Body::AppendResponse(AppendResult::InstallInProgress), None)),
        any::<u64>().prop_map(|ctx| (Body::ReadIndex { ctx }, None)),
        (any::<u64>(), prop::option::of(index()))
            .prop_map(|(ctx, index)| (Body::ReadIndexResponse { ctx, index }, None)),
        (0u64..4).prop_map(|seq| (Body::ReadConfirm { seq }, None)),
        (0u64..4).prop_map(|seq| (Body::ReadConfirmAck { seq }, None)),
        Just((Body::TimeoutNow, None)),
        (index(), term()).prop_map(|(last_index, last_term)| (
            Body::VoteRequestTransfer {
                last_index,
                last_term
            },
            None
        )),
        (0u64..4, index(), term()).prop_map(|(tag, index, term)| (
            Body::InstallSnapshot {
                tag,
                request: raftlet::InstallRequest::Notify {
                    first_available: raftlet::SnapshotId { index, term }
                }
            },
            None
        )),
        (
            0u64..4,
            index(),
            term(),
            0u32..4,
            any::<u64>(),
            any::<Option<u64>>()
        )
            .prop_map(|(tag, index, term, seq, data, checksum)| (
                Body::InstallSnapshot {
                    tag,
                    request: raftlet::InstallRequest::Chunk {
                        snapshot: raftlet::SnapshotId { index, term },
                        seq,
                        data,
                        checksum
                    }
                },
                None
            )),
        (0u64..4, index(), term(), 0u8..9).prop_map(|(tag, index, term, k)| {
            let id = raftlet::SnapshotId { index, term };
            let result = match k {
                0 => raftlet::InstallResult::InProgress,
                1 => raftlet::InstallResult::Installed(id),
                2 => raftlet::InstallResult::AlreadyInstalled(id),
                3 => raftlet::InstallResult::Unavailable,
                4 => raftlet::InstallResult::Failed,
                5 => raftlet::InstallResult::ModeMismatch,
                6 => raftlet::InstallResult::NextChunk(index.0 as u32),
                7 => raftlet::InstallResult::Expired,
                _ => raftlet::InstallResult::Reported {
                    outcome: raftlet::InstallOutcome::Installed(id),
                    term,
                },
            };
            (Body::InstallSnapshotResponse { tag, result }, None)
        }),
    ]
}

fn message() -> impl Strategy<Value = Msg> {
    (
        0u64..5,
        prop_oneof![9 => Just(1u64), 1 => 0u64..5],
        term(),
        body(),
    )
        .prop_map(|(from, to, term, (mut body, es))| {
            if let (
                Body::Append {
                    prev_index,
                    entries,
                    ..
                },
                Some((contiguous, es)),
            ) = (&mut body, es)
            {
                for (k, (t, p)) in es.into_iter().enumerate() {
                    let index = if contiguous {
                        Index(prev_index.0.wrapping_add(k as u64 + 1))
                    } else {
                        Index(p % 16)
                    };
                    // One entry in eight changes the membership.
                    let data = if p % 8 == 7 {
                        EntryData::Membership(conf_change(p >> 3))
                    } else {
                        EntryData::Normal(p)
                    };
                    let _ = entries.push(Entry {
                        term: Term(t),
                        index,
                        data,
                    });
                }
            }
            Message {
                from: NodeId(from),
                to: NodeId(to),
                term,
                body,
            }
        })
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => message().prop_map(Input::Step),
        6 => (message(), any::<u64>()).prop_map(|(m, k)| Input::Anchored(m, k)),
        3 => Just(Input::Tick),
        4 => Just(Input::Ack),
        1 => any::<u64>().prop_map(Input::Propose),
        1 => any::<u64>().prop_map(Input::Read),
        1 => (0u64..5).prop_map(Input::Transfer),
        1 => any::<u64>().prop_map(Input::Conf),
        1 => Just(Input::Campaign),
    ]
}

/// Node 1 in one of three starting states, with its durable storage.
fn start(state: u8) -> (SimNode, MemStore) {
    // State 3 is a fresh follower in notify mode (states 0-2 stream).
    let mut sim = Sim::with_config(u64::from(state), 3, Faults::none(), |c| {
        if state == 3 {
            c.snapshot_mode = raftlet::SnapshotMode::Notify;
        }
    });
    match state {
        0 | 3 => {}
        _ => {
            // Node 1 leads (state 1) or follows (state 2) a cluster with some history.
            for _ in 0..50 {
                sim.campaign(NodeId(1));
                if sim.run_until(500, |s| s.leader() == Some(NodeId(1))) {
                    break;
                }
            }
            for _ in 0..5 {
                let _ = sim.propose(NodeId(1));
                sim.run(50);
            }
            if state == 2 {
                // Depose node 1: cut it off until another leader is elected, then heal.
                sim.partition(&[NodeId(1)]);
                assert!(sim.run_until(20_000, |s| s.leader().is_some_and(|l| l != NodeId(1))));
                sim.heal();
                let _ = sim.propose(sim.leader().unwrap());
                assert!(sim.run_until(20_000, |s| {
                    s.node(NodeId(1)).leader().is_some_and(|l| l != NodeId(1))
                }));
            }
            sim.run(200);
        }
    }
    // Finish in-flight writes of node 1 so its durable image matches what it was told.
    sim.stalled_disks.clear();
    let slot = sim.slots.swap_remove(0);
    let mut disk = slot.disk;
    let mut node = slot.node.expect("node 1 up");
    while let Some(w) = disk.pending.pop_front() {
        disk.durable.write(w.hs, w.snapshot, &w.entries);
        node.persisted(w.token, &disk.durable).unwrap();
    }
    (node, disk.durable)
}

struct Harness {
    node: SimNode,
    store: MemStore,
    /// Persists not yet acknowledged: token, hard state, log reset, entries.
    #[allow(clippy::type_complexity)]
    pending: std::collections::VecDeque<(
        raftlet::PersistToken,
        Option<HardState>,
        Option<raftlet::SnapshotId>,
        Vec<Entry<u64>>,
    )>,
    applied: Index,
    votes: std::collections::HashMap<Term, NodeId>,
    last_term: Term,
    last_commit: Index,
}

impl Harness {
    fn snapshot(&self) -> (HardState, Index, Index, Role) {
        (
            self.node.hard_state(),
            self.node.commit_index(),
            self.node.last_index(),
            self.node.role(),
        )
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        let mut budget = common::budget::Drain::new("node");
        while let Some(a) = self.node.poll_action() {
            budget.spend();
            match a {
                Action::Send(out) => {
                    let m = out.message();
                    prop_assert_eq!(m.from, NodeId(1));
                    match m.body {
                        Body::VoteResponse {
                            pre_vote: false,
                            granted: true,
                        } => {
                            let hs = self.store.hard_state();
                            prop_assert!(
                                hs.term == m.term && hs.vote == Some(m.to),
                                "grant before durable: {:?}",
                                hs
                            );
                        }
                        Body::AppendResponse(AppendResult::Accepted { match_index }) => {
                            prop_assert!(
                                self.store.last_index() >= match_index,
                                "ack before durable"
                            );
                            prop_assert!(self.store.hard_state().term >= m.term);
                        }
                        _ => {}
                    }
                }
                Action::Persist(p) => self.pending.push_back((
                    p.token,
                    p.hard_state.copied(),
                    p.snapshot.copied(),
                    p.entries.iter().cloned().collect(),
                )),
                Action::Apply { first, last } => {
                    prop_assert_eq!(first, self.applied.next(), "apply out of order");
                    prop_assert!(last <= self.node.commit_index());
                    prop_assert!(
                        last <= self.store.last_index(),
                        "apply of a non-durable entry"
                    );
                    self.applied = last;
                }
                Action::Compact { through } => self.store.compact(through),
                Action::ReadReady { index, .. } => {
                    prop_assert!(
                        index <= self.applied,
                        "read served before its index was applied"
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let hs = self.node.hard_state();
        prop_assert!(hs.term >= self.last_term, "term went back");
        self.last_term = hs.term;
        if let Some(v) = hs.vote {
            let prev = *self.votes.entry(hs.term).or_insert(v);
            prop_assert_eq!(prev, v, "two votes in one term");
        }
        let commit = self.node.commit_index();
        prop_assert!(commit >= self.last_commit, "commit went back");
        self.last_commit = commit;
        prop_assert!(commit <= self.node.last_index());
        prop_assert!(self.node.durable_index() <= self.node.last_index());
        // The membership in use is the one the log says: the initial one, then every change
        // in the log applied in order (checks how truncations revert it).
        if self.node.log_start().index.0 == 0 {
            let mut m = raftlet::Membership::<5>::new(&[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
            for i in 1..=self.node.last_index().0 {
                if let Some(Entry {
                    data: EntryData::Membership(c),
                    ..
                }) = self.node.entry_at(Index(i), &self.store)
                {
                    let next = m.apply(&c);
                    prop_assert!(
                        next.is_ok(),
                        "the log holds an impossible change {:?} at {}",
                        c,
                        i
                    );
                    m = next.unwrap();
                }
            }
            prop_assert_eq!(&m, self.node.membership(), "membership is not the log's");
        }
        let mut prev = Term(0);
        for i in 1..=self.node.last_index().0 {
            let t = self.node.term_at(Index(i), &self.store);
            prop_assert!(t.is_some(), "node cannot read its own entry {}", i);
            let t = t.unwrap();
            prop_assert!(
                t >= prev && t <= hs.term,
                "impossible term {:?} at {}",
                t,
                i
            );
            prev = t;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_inputs_never_break_a_node(state in 0u8..4, inputs in prop::collection::vec(input(), 1..80)) {
        let _watch = common::budget::watch(common::budget::here(
            "one proptest case (proptest prints the failing input once the process survives; rerun with PROPTEST_CASES=1 and the persisted seed)",
        ));
        let (node, store) = start(state);
        let mut h = Harness {
            applied: node.applied_index(),
            last_term: node.term(),
            last_commit: node.commit_index(),
            node,
            store,
            pending: Default::default(),
            votes: Default::default(),
        };
        h.drain()?;
        for input in inputs {
            let input = match input {
                Input::Anchored(mut m, k) => {
                    m.from = NodeId(2 + k % 2);
                    m.to = NodeId(1);
                    m.term = Term(h.node.term().0 + k % 2);
                    let last = h.node.last_index().0;
                    match &mut m.body {
                        Body::Append { prev_index, prev_term, entries, .. } => {
                            *prev_index = Index(k % (last + 1));
                            *prev_term = h.node.term_at(*prev_index, &h.store).unwrap_or(Term(0));
                            for e in entries.iter_mut() {
                                e.term = Term(e.term.0.clamp(prev_term.0, m.term.0));
                            }
                        }
                        Body::AppendResponse(AppendResult::Accepted { match_index }) => {
                            *match_index = Index(k % (last + 1));
                        }
                        _ => {}
                    }
                    Input::Step(m)
                }
                other => other,
            };
            match input {
                Input::Anchored(..) => unreachable!(),
                Input::Step(mut m) => {
                    let before = h.snapshot();
                    let noise_before = (h.node.stats().stale_term, h.node.stats().ignored_in_lease);
                    // Both ways of stepping (by the term's parity): taking the appended entries
                    // out of the message, or borrowing them. A refused message keeps them all.
                    let sent = m.clone();
                    let r = if m.term.0 % 2 == 1 {
                        h.node.step_taking(&mut m, &h.store)
                    } else {
                        h.node.step(&m, &h.store)
                    };
                    // Routine noise (a stale term, a vote request in a lease) is `Ok`, counted.
                    let noise = (h.node.stats().stale_term, h.node.stats().ignored_in_lease) != noise_before;
                    match r {
                        Err(e) => {
                            prop_assert_eq!(before, h.snapshot(), "a refused message changed state");
                            prop_assert_eq!(&m, &sent, "a refused message lost entries");
                            prop_assert!(!noise, "refused and counted as noise");
                            prop_assert!(h.node.poll_action().is_none() || e != StepError::UnknownPeer);
                        }
                        Ok(()) if noise => prop_assert_eq!(before, h.snapshot(), "ignored noise changed state"),
                        Ok(()) => {}
                    }
                }
                Input::Tick => h.node.tick(&h.store),
                Input::Ack => {
                    if let Some((token, hs, snapshot, entries)) = h.pending.pop_front() {
                        h.store.write(hs, snapshot, &entries);
                        h.node.persisted(token, &h.store).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                        prop_assert!(h.node.persisted(token, &h.store).is_err(), "double ack accepted");
                    }
                }
                Input::Propose(p) => {
                    let r = h.node.propose(p, &h.store);
                    if let Err(e) = r {
                        prop_assert_eq!(e.into_data(), p, "payload not handed back");
                    }
                }
                Input::Campaign => h.node.campaign(&h.store),
                Input::Read(id) => {
                    let _ = h.node.read_index(raftlet::ReadId(id), &h.store);
                }
                Input::Transfer(to) => {
                    let _ = h.node.transfer_leadership(NodeId(to), &h.store);
                }
                Input::Conf(x) => {
                    let last = h.node.last_index();
                    if h.node.propose_conf_change(conf_change(x), &h.store).is_err() {
                        prop_assert_eq!(h.node.last_index(), last, "a refused change appended");
                    }
                }
            }
            h.drain()?;
            h.check()?;
        }
    }
}

#[test]
fn starting_states_are_what_the_property_test_assumes() {
    assert_eq!(start(0).0.role(), Role::Follower);
    let (leader, _) = start(1);
    assert_eq!(leader.role(), Role::Leader);
    assert!(leader.last_index().0 >= 5);
    let (follower, _) = start(2);
    assert_eq!(follower.role(), Role::Follower);
    assert!(follower.leader().is_some_and(|l| l != NodeId(1)));
}
