//! The node's API contract outside the simulator: configuration and restart errors, counted
//! send drops, time given as `Instant`s, persist acknowledgement errors, and exact behaviours
//! driven message by message (membership edge cases, read rounds and leases) that the random
//! simulation reaches too rarely to pin down.

mod common;

use common::store::MemStore;
use raftlet::{
    Action, Body, Change, ConfChange, Config, ConfigError, Duration, Entry, EntryData, HardState,
    Index, Instant, Node, NodeId, PersistError, PersistToken, Role, Storage as _, Term,
};

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

type Small = Node<u64, 5, 8, 4, 2, 2>;

#[test]
fn bad_configurations_are_typed_errors() {
    let store = MemStore::default();
    let new = |c: Config<5>| Small::new(c, &store).err();
    assert_eq!(
        Config::<2>::new(NodeId(1), &ids(3)).err(),
        Some(ConfigError::TooManyVoters)
    );
    assert_eq!(
        new(Config::new(NodeId(0), &ids(3)).unwrap()),
        Some(ConfigError::ZeroId)
    );
    assert_eq!(
        Config::<5>::new(NodeId(1), &[NodeId(1), NodeId(2), NodeId(2)]).err(),
        Some(ConfigError::DuplicateVoter(NodeId(2)))
    );
    assert_eq!(
        Config::<5>::new(NodeId(1), &[]).err(),
        Some(ConfigError::NoVoters)
    );
    // A voter with the reserved id 0, not only this node's own id.
    assert_eq!(
        Config::<5>::new(NodeId(1), &[NodeId(1), NodeId(0)]).err(),
        Some(ConfigError::ZeroId)
    );
    // The largest election timeout whose doubled jitter range still fits a u32 is taken; one
    // more is refused.
    let mut c = Config::new(NodeId(1), &ids(3)).unwrap();
    c.election_ticks = u32::MAX / 2;
    assert_eq!(new(c.clone()), None);
    c.election_ticks += 1;
    assert_eq!(new(c), Some(ConfigError::BadTimeouts));
    let mut c = Config::new(NodeId(1), &ids(3)).unwrap();
    c.lease_reads = true;
    c.check_quorum = false;
    assert_eq!(new(c), Some(ConfigError::BadLease));
    let mut c = Config::new(NodeId(1), &ids(3)).unwrap();
    c.heartbeat_ticks = 10;
    assert_eq!(new(c), Some(ConfigError::BadTimeouts));
    let mut c = Config::new(NodeId(1), &ids(3)).unwrap();
    c.max_inflight = 0;
    assert_eq!(new(c), Some(ConfigError::ZeroInflight));
    let mut c = Config::new(NodeId(1), &ids(3)).unwrap();
    c.applied = Index(3);
    assert_eq!(new(c), Some(ConfigError::AppliedBeyondLog));
    // A zero batch or inflight capacity, each alone, is refused (zero peers, log or send
    // queue does not compile).
    let c = || Config::new(NodeId(1), &ids(3)).unwrap();
    for refused in [
        Node::<u64, 5, 8, 0, 2, 2>::new(c(), &store).err(),
        Node::<u64, 5, 8, 4, 0, 2>::new(c(), &store).err(),
    ] {
        assert_eq!(refused, Some(ConfigError::ZeroCapacity));
    }
}

#[test]
fn contradictory_storage_is_refused_on_restart() {
    let config = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    // A membership change that cannot follow the membership before it (removes a non-member).
    let mut store = MemStore {
        hs: HardState {
            term: Term(2),
            vote: Some(NodeId(7)),
            pending_install: None,
        },
        ..MemStore::default()
    };
    store.log.push(Entry {
        term: Term(1),
        index: Index(1),
        data: EntryData::Membership(ConfChange::single(Change::Remove(NodeId(9)))),
    });
    assert_eq!(
        Small::new(config.clone(), &store).err(),
        Some(ConfigError::InconsistentStorage)
    );
    store.log.clear();
    // An entry from a term later than the stored term.
    store.hs = HardState {
        term: Term(1),
        vote: None,
        pending_install: None,
    };
    store.log.push(Entry {
        term: Term(3),
        index: Index(1),
        data: EntryData::Noop,
    });
    assert_eq!(
        Small::new(config.clone(), &store).err(),
        Some(ConfigError::InconsistentStorage)
    );
    // A consistent one restarts with the stored term and log.
    store.hs.term = Term(3);
    let node = Small::new(config, &store).unwrap();
    assert_eq!(
        (node.term(), node.last_index(), node.last_term()),
        (Term(3), Index(1), Term(3))
    );
    assert_eq!(node.role(), Role::Follower);
}

/// On restart, the application's snapshot (`Config::snapshot`) is adopted again with a log
/// reset only when the stored log does not hold it (it lies past the log, or the log's entry
/// at its index has another term); one at the stored log's base with another term
/// contradicts the store.
#[test]
fn an_application_snapshot_resets_the_log_on_restart_only_if_the_log_lacks_it() {
    let mut store = MemStore::default();
    store.hs.term = Term(2);
    for i in 1..=3 {
        store.log.push(Entry {
            term: Term(1),
            index: Index(i),
            data: EntryData::Noop,
        });
    }
    let restart = |store: &MemStore, index, term| {
        let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
        c.snapshot = raftlet::SnapshotId {
            index: Index(index),
            term: Term(term),
        };
        c.applied = Index(index);
        Small::new(c, store)
    };
    for (index, term, reset) in [(2, 1, false), (3, 1, false), (3, 2, true), (4, 2, true)] {
        let mut node = restart(&store, index, term).unwrap();
        let app = raftlet::SnapshotId {
            index: Index(index),
            term: Term(term),
        };
        let mut persisted_reset = None;
        while let Some(a) = node.poll_action() {
            if let Action::Persist(p) = a {
                persisted_reset = persisted_reset.or(p.snapshot.copied());
            }
        }
        assert_eq!(
            (persisted_reset, node.hard_state().pending_install),
            if reset {
                (Some(app), Some(app))
            } else {
                (None, None)
            },
            "the application's snapshot at {index} of term {term}"
        );
    }
    store.snapshot = raftlet::SnapshotId {
        index: Index(3),
        term: Term(1),
    };
    store.log.clear();
    assert!(restart(&store, 3, 1).is_ok());
    assert_eq!(
        restart(&store, 3, 2).err(),
        Some(ConfigError::InconsistentStorage)
    );
}

/// A store whose index of membership changes (`Storage::membership_changes`, which a store may
/// keep on its own) reports what it is told, over an ordinary log.
struct IndexedChanges {
    log: MemStore,
    changes: Vec<(Index, ConfChange)>,
}

impl raftlet::Storage<u64> for IndexedChanges {
    fn hard_state(&self) -> HardState {
        self.log.hard_state()
    }
    fn last_index(&self) -> Index {
        self.log.last_index()
    }
    fn term(&self, index: Index) -> Option<raftlet::Term> {
        self.log.term(index)
    }
    fn entry(&self, index: Index) -> Option<Entry<u64>> {
        self.log.entry(index)
    }
    fn membership_changes(&self, after: Index, f: &mut dyn FnMut(Index, &ConfChange)) {
        for (i, c) in &self.changes {
            if *i > after || i.0 == 0 {
                f(*i, c);
            }
        }
    }
}

/// On restart the node replays the stored membership changes in index order; a store that
/// reports one twice, out of order, or at the index the replay starts from contradicts itself
/// and is refused, as is one whose change cannot follow the membership before it.
#[test]
fn membership_changes_out_of_order_are_refused_on_restart() {
    let config = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    let learner = |id| ConfChange::single(Change::AddLearner(NodeId(id)));
    let mut log = MemStore {
        hs: HardState {
            term: Term(1),
            vote: None,
            pending_install: None,
        },
        ..MemStore::default()
    };
    for (i, id) in [(1, 4), (2, 5)] {
        log.log.push(Entry {
            term: Term(1),
            index: Index(i),
            data: EntryData::Membership(learner(id)),
        });
    }
    let build = |changes: Vec<(u64, ConfChange)>| {
        let store = IndexedChanges {
            log: log.clone(),
            changes: changes.into_iter().map(|(i, c)| (Index(i), c)).collect(),
        };
        Small::new(config.clone(), &store).map(|n| n.membership().learners().to_vec())
    };
    assert_eq!(
        build(vec![(1, learner(4)), (2, learner(5))]),
        Ok(vec![NodeId(4), NodeId(5)]),
        "in order: both learners"
    );
    for (what, changes) in [
        ("twice at one index", vec![(1, learner(4)), (1, learner(5))]),
        ("out of order", vec![(2, learner(4)), (1, learner(5))]),
        ("at the replay's start", vec![(0, learner(4))]),
        (
            "after a change that cannot apply",
            vec![
                (1, ConfChange::single(Change::Remove(NodeId(9)))),
                (2, learner(5)),
            ],
        ),
    ] {
        assert_eq!(
            build(changes),
            Err(ConfigError::InconsistentStorage),
            "{what}"
        );
    }
}

#[test]
fn a_full_send_queue_drops_and_counts() {
    // Five voters, room for two queued sends: a campaign's four vote requests do not all fit.
    let store = MemStore::default();
    let mut node = Small::new(Config::new(NodeId(1), &ids(5)).unwrap(), &store).unwrap();
    node.campaign(&store);
    let mut sends = 0;
    let mut persists = 0;
    let mut budget = common::budget::Drain::new("node");
    while let Some(a) = node.poll_action() {
        budget.spend();
        match a {
            Action::Send(m) => {
                assert!(matches!(
                    m.message().body,
                    Body::VoteRequest { pre_vote: true, .. }
                ));
                sends += 1;
            }
            Action::Persist(_) => persists += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sends, 2);
    assert_eq!(node.stats().dropped_sends, 2);
    assert_eq!(persists, 0, "a pre-vote changes no durable state");
}

#[test]
fn persist_acknowledgements_are_checked() {
    let mut store = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(1)).unwrap();
    c.pre_vote = false;
    let mut node = Small::new(c, &store).unwrap();
    assert_eq!(
        node.persisted(PersistToken(1), &store),
        Err(PersistError::UnknownToken)
    );
    node.campaign(&store);
    let Some(Action::Persist(p)) = node.poll_action() else {
        panic!("expected the candidate's hard state")
    };
    assert_eq!(
        p.hard_state.copied(),
        Some(HardState {
            term: Term(1),
            vote: Some(NodeId(1)),
            pending_install: None
        })
    );
    let token = p.token;
    store.persist(&p);
    // Not durable yet: a single-node candidate cannot count its own vote.
    assert_eq!(node.role(), Role::Candidate);
    assert_eq!(
        node.persisted(PersistToken(0), &store),
        Err(PersistError::UnknownToken)
    );
    assert_eq!(
        node.persisted(PersistToken(2), &store),
        Err(PersistError::UnknownToken)
    );
    assert_eq!(node.persisted(token, &store), Ok(()));
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(
        node.persisted(token, &store),
        Err(PersistError::AlreadyAcknowledged)
    );
}

#[test]
fn time_as_instants() {
    let store = MemStore::default();
    let mut node = Small::new(Config::new(NodeId(1), &ids(3)).unwrap(), &store).unwrap();
    node.set_tick_interval(Duration::from_millis(10));
    assert_eq!(node.poll_timeout(), None);
    node.handle_timeout(Instant::from_millis(1000), &store);
    assert_eq!(
        node.poll_timeout(),
        Some(Instant::from_millis(1010)),
        "the first call anchors the clock"
    );
    // 10 ticks per 100 ms; the election timeout is 10..20 ticks: within 200 ms it campaigns.
    node.handle_timeout(Instant::from_millis(1095), &store);
    assert_eq!(node.poll_timeout(), Some(Instant::from_millis(1100)));
    node.handle_timeout(Instant::from_millis(1200), &store);
    assert_eq!(node.stats().campaigns, 1);
    // A suspended process jumping far ahead runs at most two election timeouts' worth of ticks.
    node.handle_timeout(Instant::from_millis(1_000_000), &store);
    assert!(node.stats().campaigns <= 3);
    assert_eq!(node.poll_timeout(), Some(Instant::from_millis(1_000_010)));
}

/// Drains `node`, persisting at once; returns the messages it sent.
fn drain_persisting(node: &mut Big, store: &mut MemStore) -> Vec<Msg4> {
    drain_reads(node, store).0
}

/// As [`drain_persisting`], also returning the reads served (`ReadReady`).
fn drain_reads(node: &mut Big, store: &mut MemStore) -> (Vec<Msg4>, Vec<(raftlet::ReadId, Index)>) {
    let seen = drain_installs(node, store);
    (seen.sent, seen.ready)
}

/// The newest confirmation round among `sent`.
fn round(sent: &[Msg4]) -> Option<u64> {
    sent.iter()
        .filter_map(|m| match m.body {
            Body::ReadConfirm { seq } => Some(seq),
            _ => None,
        })
        .max()
}

type Big = Node<u64, 5, 32, 4, 8, 64>;
/// Owned messages of `Big`.
type Msg4 = raftlet::Message<u64, heapless::Vec<raftlet::Entry<u64>, 4>>;
/// The body of a `Msg4`.
type Body4 = Body<u64, heapless::Vec<Entry<u64>, 4>>;

/// An append from node 2 at term 1 carrying term-1 entries `prev + 1 ..= prev + n`.
fn term1_append(prev: u64, n: u64, commit: u64) -> Msg4 {
    let entries = (prev + 1..=prev + n)
        .map(|i| Entry {
            term: Term(1),
            index: Index(i),
            data: EntryData::Normal(i),
        })
        .collect();
    raftlet::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        body: Body::Append {
            prev_index: Index(prev),
            prev_term: Term(u64::from(prev > 0)),
            commit: Index(commit),
            entries,
        },
    }
}

/// A heartbeat from node `from` to node 1 at `term`.
fn heartbeat(from: u64, term: Term) -> Msg4 {
    raftlet::Message {
        from: NodeId(from),
        to: NodeId(1),
        term,
        body: Body::Heartbeat { commit: Index(0) },
    }
}

/// Steps `body` from node `from` into `node` (node 1) at the node's current term.
fn deliver<const LOG: usize, const BATCH: usize, const INFLIGHT: usize, const OUT: usize>(
    node: &mut Node<u64, 5, LOG, BATCH, INFLIGHT, OUT>,
    store: &MemStore,
    from: u64,
    body: Body<u64, heapless::Vec<Entry<u64>, 4>>,
) {
    let m: Msg4 = raftlet::Message {
        from: NodeId(from),
        to: NodeId(1),
        term: node.term(),
        body,
    };
    node.step(&m, store).unwrap();
}

/// Vote grants for the current term from each of `from`.
fn grant_votes<const LOG: usize, const BATCH: usize, const INFLIGHT: usize, const OUT: usize>(
    node: &mut Node<u64, 5, LOG, BATCH, INFLIGHT, OUT>,
    store: &MemStore,
    from: impl IntoIterator<Item = u64>,
) {
    for f in from {
        deliver(
            node,
            store,
            f,
            Body::VoteResponse {
                pre_vote: false,
                granted: true,
            },
        );
    }
}

/// An append acknowledgement up to `index`.
fn accepted(index: Index) -> Body<u64, heapless::Vec<Entry<u64>, 4>> {
    Body::AppendResponse(raftlet::AppendResult::Accepted { match_index: index })
}

/// A leader of a 3-node cluster (node 1), its no-op durable and acknowledged by both followers.
fn lone_leader() -> (Big, MemStore) {
    lone_leader_with(|_| {})
}

/// As [`lone_leader`], its configuration tweaked first.
fn lone_leader_with(tweak: impl Fn(&mut Config<5>)) -> (Big, MemStore) {
    let (mut node, mut store) = new_leader_with(tweak);
    // Both followers acknowledge the no-op: they move to replicate state.
    for from in [2, 3] {
        let last = node.last_index();
        deliver(&mut node, &store, from, accepted(last));
        assert_eq!(
            node.peer_progress(NodeId(from)).map(|p| p.state),
            Some(raftlet::FlowState::Replicate)
        );
    }
    drain_persisting(&mut node, &mut store);
    (node, store)
}

/// A leader of a 3-node cluster (node 1), its no-op durable but not yet acknowledged.
fn new_leader() -> (Big, MemStore) {
    new_leader_with(|_| {})
}

/// Node 1 of `voters` voters, pre-vote off, its configuration tweaked, campaigning: its vote
/// requests and the persist of its new term wait to be polled.
fn campaigning<const LOG: usize, const BATCH: usize, const INFLIGHT: usize, const OUT: usize>(
    voters: u64,
    tweak: impl Fn(&mut Config<5>),
) -> (Node<u64, 5, LOG, BATCH, INFLIGHT, OUT>, MemStore) {
    let store = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(voters)).unwrap();
    c.pre_vote = false;
    tweak(&mut c);
    let mut node = Node::new(c, &store).unwrap();
    node.campaign(&store);
    (node, store)
}

/// As [`new_leader`], its configuration tweaked first.
fn new_leader_with(tweak: impl Fn(&mut Config<5>)) -> (Big, MemStore) {
    let (mut node, mut store): (Big, _) = campaigning(3, tweak);
    drain_persisting(&mut node, &mut store);
    let grant: Msg4 = raftlet::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: node.term(),
        body: Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    node.step(&grant, &store).unwrap();
    assert_eq!(node.role(), Role::Leader);
    drain_persisting(&mut node, &mut store);
    (node, store)
}

/// A candidate that a majority elected before its own term and vote were durable waits for
/// them before it leads: were it to crash first, it would come back in the term before, could be
/// elected for the same term again, and would write different entries at indices its first
/// tenure used (the simulator's seed 57205).
#[test]
fn a_candidate_leads_only_once_its_term_is_durable() {
    let (mut node, mut store): (Big, _) = campaigning(3, |_| {});
    // The vote requests leave; the persist of the new term is held back.
    let mut token = None;
    let mut requests = 0;
    while let Some(a) = node.poll_action() {
        match a {
            raftlet::Action::Persist(p) => {
                assert!(p.hard_state.is_some());
                token = Some(p.token);
            }
            raftlet::Action::Send(out) => {
                requests += usize::from(matches!(out.message().body, Body::VoteRequest { .. }));
            }
            _ => {}
        }
    }
    assert_eq!(requests, 2);
    let term = node.term();
    grant_votes(&mut node, &store, [2, 3]);
    assert_eq!(
        node.role(),
        Role::Candidate,
        "elected, but its term is not durable"
    );
    let sent = {
        let mut sent = 0;
        while let Some(a) = node.poll_action() {
            sent += usize::from(matches!(a, raftlet::Action::Send(_)));
        }
        sent
    };
    assert_eq!(sent, 0, "no append before the term is durable");
    store.hs = raftlet::HardState {
        term,
        vote: Some(NodeId(1)),
        ..Default::default()
    };
    node.persisted(token.unwrap(), &store).unwrap();
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(node.term(), term);
    let appends = drain_persisting(&mut node, &mut store)
        .iter()
        .filter(|m| matches!(m.body, Body::Append { .. }))
        .count();
    assert_eq!(appends, 2, "the new leader's no-op goes to both followers");
}

/// A leader whose send queue fills exactly with the appends of a proposal drops nothing: it
/// sends each follower what its window allows and stops there, without a last attempt that
/// would find the queue full and count a drop.
#[test]
fn appends_that_fill_the_send_queue_exactly_drop_nothing() {
    // Room for two queued sends: a proposal's two appends fill it.
    type TwoSends = Node<u64, 5, 32, 4, 8, 2>;
    let (mut node, mut store): (TwoSends, _) = campaigning(3, |_| {});
    let drain = |node: &mut TwoSends, store: &mut MemStore| {
        while let Some(a) = node.poll_action() {
            if let Action::Persist(p) = a {
                let token = p.token;
                store.persist(&p);
                node.persisted(token, store).unwrap();
            }
        }
    };
    drain(&mut node, &mut store);
    deliver(
        &mut node,
        &store,
        2,
        Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    );
    assert_eq!(node.role(), Role::Leader);
    drain(&mut node, &mut store);
    for from in [2, 3] {
        let last = node.last_index();
        deliver(&mut node, &store, from, accepted(last));
        drain(&mut node, &mut store);
    }
    let dropped = node.stats().dropped_sends;
    node.propose(7, &store).unwrap();
    assert_eq!(node.stats().dropped_sends, dropped, "no send dropped");
    let mut appends = 0;
    while let Some(a) = node.poll_action() {
        match a {
            Action::Send(out) => {
                appends += usize::from(matches!(out.message().body, Body::Append { .. }))
            }
            Action::Persist(p) => {
                let token = p.token;
                store.persist(&p);
                node.persisted(token, &store).unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(appends, 2, "one append to each follower");
}

/// A membership change on a leader whose unstable log is full is refused as `Full`, like a
/// proposal, and changes nothing.
#[test]
fn a_membership_change_on_a_full_log_is_refused() {
    let (mut node, store) = lone_leader();
    // Nothing is persisted from here on: the unstable log fills up.
    let mut n = 0u64;
    while node.propose(1000 + n, &store).is_ok() {
        n += 1;
    }
    assert!(n > 0);
    let (last, membership) = (node.last_index(), node.membership().clone());
    assert_eq!(
        node.propose_conf_change(ConfChange::single(Change::AddLearner(NodeId(4))), &store),
        Err(raftlet::MembershipError::Full)
    );
    assert_eq!(node.last_index(), last);
    assert_eq!(node.membership(), &membership);
}

/// A leader leaves a committed joint configuration by itself, but only with room in its
/// unstable log for the leave entry: while the log is full the joint configuration stays (the
/// configuration in use must always be an entry of the log), and it leaves once room frees up.
#[test]
fn a_joint_configuration_is_left_only_with_room_in_the_log() {
    let (mut node, mut store) = lone_leader();
    let joint = node
        .propose_conf_change(ConfChange::single(Change::AddVoter(NodeId(4))), &store)
        .unwrap();
    assert!(node.membership().is_joint());
    // The joint entry is durable on the leader; then the unstable log fills up.
    drain_persisting(&mut node, &mut store);
    let mut n = 0u64;
    while node.propose(2000 + n, &store).is_ok() {
        n += 1;
    }
    assert!(n > 0);
    let last = node.last_index();
    // Followers 2 and 3 hold the joint entry: a quorum of both halves commits it.
    for from in [2, 3] {
        deliver(&mut node, &store, from, accepted(joint));
    }
    assert_eq!(node.commit_index(), joint);
    assert!(
        node.membership().is_joint(),
        "left the joint configuration without room"
    );
    assert_eq!(node.membership_index(), joint);
    assert_eq!(node.last_index(), last);
    // Follower 2 acknowledges every entry (its window frees; nothing commits: node 4 and
    // follower 3 lack them, and the joint configuration needs 3 of 1..=4). Room frees up (the
    // entries become durable on the leader): the leader leaves by itself, and sends the leave
    // entry to follower 2 at once.
    deliver(&mut node, &store, 2, accepted(last));
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(node.commit_index(), joint);
    assert!(!node.membership().is_joint());
    assert_eq!(node.membership_index(), last.next());
    assert_eq!(node.last_index(), last.next());
    assert!(
        sent.iter().any(|m| m.to == NodeId(2)
            && matches!(&m.body, Body::Append { entries, .. }
                if entries.iter().any(|e| e.index == last.next()))),
        "{sent:?}"
    );
}

/// A leader whose follower acknowledged an entry before it was durable on the leader commits
/// it when its own write completes, and tells the follower at once.
#[test]
fn a_leaders_own_durability_commits_and_is_announced_at_once() {
    let (mut node, mut store) = lone_leader();
    node.propose(7, &store).unwrap();
    let last = node.last_index();
    let mut token = None;
    while let Some(a) = node.poll_action() {
        if let Action::Persist(p) = a {
            store.persist(&p);
            token = Some(p.token);
        }
    }
    // One follower has it: with the leader's own copy not yet durable, no quorum.
    deliver(&mut node, &store, 2, accepted(last));
    assert!(
        node.commit_index() < last,
        "the leader's entry is not durable"
    );
    drain_persisting(&mut node, &mut store);
    node.persisted(token.unwrap(), &store).unwrap();
    assert_eq!(node.commit_index(), last);
    let sent = drain_persisting(&mut node, &mut store);
    let told: Vec<NodeId> = sent
        .iter()
        .filter(|m| matches!(m.body, Body::Commit { commit } if commit == last))
        .map(|m| m.to)
        .collect();
    assert_eq!(told, [NodeId(2)], "{sent:?}");
}

/// Polls every action of `node` without acknowledging persists: writes each persist to
/// `store` and returns the newest token and the applies asked for.
fn drain_writing(
    node: &mut Big,
    store: &mut MemStore,
) -> (Option<PersistToken>, Vec<(Index, Index)>) {
    let (mut token, mut applies) = (None, Vec::new());
    while let Some(a) = node.poll_action() {
        match a {
            Action::Persist(p) => {
                store.persist(&p);
                token = Some(p.token);
            }
            Action::Apply { first, last } => applies.push((first, last)),
            _ => {}
        }
    }
    (token, applies)
}

/// With `Config::apply_before_durable` a leader applies what its followers' acknowledgements
/// commit before its own persist of it is acknowledged; without it, the apply waits for that
/// persist. Either way a snapshot then taken compacts the log only up to the durable index.
#[test]
fn a_leader_applies_before_its_own_persist_only_when_configured() {
    for early in [false, true] {
        let (mut node, mut store) = lone_leader_with(|c| c.apply_before_durable = early);
        let durable = node.durable_index();
        node.propose(7, &store).unwrap();
        node.propose(8, &store).unwrap();
        let last = node.last_index();
        let (token, applies) = drain_writing(&mut node, &mut store);
        assert!(applies.is_empty(), "{applies:?}");
        for from in [2, 3] {
            deliver(&mut node, &store, from, accepted(last));
        }
        assert_eq!(node.commit_index(), last, "the followers are a quorum");
        assert_eq!(node.durable_index(), durable);
        let (_, applies) = drain_writing(&mut node, &mut store);
        if early {
            assert_eq!(applies, [(durable.next(), last)]);
            assert_eq!(node.applied_index(), last);
            // A snapshot at the applied index is accepted; the log is compacted only up to
            // what is durable here.
            let id = raftlet::SnapshotId {
                index: last,
                term: node.term(),
            };
            node.snapshot_taken(id, &store).unwrap();
            let mut compacted = None;
            while let Some(a) = node.poll_action() {
                if let Action::Compact { through } = a {
                    compacted = Some(through.index);
                }
            }
            assert!(compacted.is_none_or(|c| c <= durable), "{compacted:?}");
            assert!(node.log_start().index <= durable);
            assert_eq!(node.latest_snapshot(), id);
        } else {
            assert!(applies.is_empty(), "applied before durable: {applies:?}");
            assert_eq!(node.applied_index(), durable);
        }
        node.persisted(token.unwrap(), &store).unwrap();
        let (_, applies) = drain_writing(&mut node, &mut store);
        assert_eq!(node.durable_index(), last);
        assert_eq!(node.applied_index(), last);
        if early {
            assert!(applies.is_empty(), "applied twice: {applies:?}");
        } else {
            assert_eq!(applies, [(durable.next(), last)]);
        }
    }
}

/// A follower with `apply_before_durable` applies committed entries it has written and not
/// yet made durable; entries it was sent but not yet handed out to write wait.
#[test]
fn a_follower_applies_what_it_wrote_before_it_is_durable() {
    let store0 = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    c.apply_before_durable = true;
    let mut node: Big = Node::new(c, &store0).unwrap();
    let mut store = store0;
    node.step(&term1_append(0, 3, 2), &store).unwrap();
    let (token, applies) = drain_writing(&mut node, &mut store);
    assert!(token.is_some());
    assert_eq!(
        applies,
        [(Index(1), Index(2))],
        "commit 2 of 3 written entries"
    );
    assert_eq!(node.durable_index(), Index(0));
    // The acknowledgement still waits for durability.
    node.persisted(token.unwrap(), &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter().any(|m| matches!(
            m.body,
            Body::AppendResponse(raftlet::AppendResult::Accepted {
                match_index: Index(3)
            })
        )),
        "{sent:?}"
    );
}

/// `followers_form_quorum`: on a leader whose followers replicate and were heard from in the
/// current check-quorum round; not after a round in which they were not, not with only one of
/// two followers, not with a follower back in probe state, never on a follower.
#[test]
fn followers_form_a_quorum_only_when_replicating_and_heard_from() {
    let (mut node, mut store) = lone_leader();
    assert!(node.followers_form_quorum());
    // A check-quorum round ends (both were heard from in it: the leader stays), and the next
    // starts with nobody heard from.
    for _ in 0..10 {
        node.tick(&store);
        drain_persisting(&mut node, &mut store);
    }
    assert_eq!(node.role(), Role::Leader);
    assert!(!node.followers_form_quorum());
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    assert!(!node.followers_form_quorum(), "one follower of two");
    deliver(&mut node, &store, 3, accepted(last));
    assert!(node.followers_form_quorum());
    // An unreachable follower goes back to probe state.
    node.report_unreachable(NodeId(3));
    assert_eq!(
        node.peer_progress(NodeId(3)).map(|p| p.state),
        Some(raftlet::FlowState::Probe)
    );
    assert!(!node.followers_form_quorum(), "a follower in probe state");
    // Five voters: the followers heard from must be three of the four (a quorum of five
    // without the leader), whichever three.
    let (mut node, mut store): (Big, _) = campaigning(5, |_| {});
    drain_persisting(&mut node, &mut store);
    grant_votes(&mut node, &store, [2, 3]);
    assert_eq!(node.role(), Role::Leader);
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    for from in [2, 3, 4, 5] {
        deliver(&mut node, &store, from, accepted(last));
    }
    assert!(node.followers_form_quorum());
    for _ in 0..10 {
        node.tick(&store);
        drain_persisting(&mut node, &mut store);
    }
    assert_eq!(node.role(), Role::Leader);
    for (from, quorum) in [(2, false), (3, false), (5, true)] {
        deliver(&mut node, &store, from, accepted(last));
        assert_eq!(
            node.followers_form_quorum(),
            quorum,
            "after follower {from}"
        );
    }
    // A follower never has followers.
    let store = MemStore::default();
    let f: Big = Node::new(Config::<5>::new(NodeId(1), &ids(3)).unwrap(), &store).unwrap();
    assert!(!f.followers_form_quorum());
}

/// A leader that removed itself hands over to a voter that holds its whole log (`TimeoutNow`),
/// not to one that lags.
#[test]
fn a_leader_that_removes_itself_hands_over_to_an_up_to_date_voter() {
    let (mut node, mut store) = lone_leader();
    let joint = node
        .propose_conf_change(ConfChange::single(Change::Remove(NodeId(1))), &store)
        .unwrap();
    drain_persisting(&mut node, &mut store);
    for from in [2, 3] {
        deliver(&mut node, &store, from, accepted(joint));
    }
    // The joint configuration is committed; the leader appended the entry that leaves it.
    drain_persisting(&mut node, &mut store);
    let leave = node.last_index();
    assert!(leave > joint);
    assert!(!node.membership().is_voter(NodeId(1)));
    // One more entry, which only node 3 acknowledges: node 2 lags.
    let extra = node.propose(77, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    deliver(&mut node, &store, 2, accepted(leave));
    deliver(&mut node, &store, 3, accepted(extra));
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(
        node.role(),
        Role::Follower,
        "the removed leader stepped down"
    );
    let handed: Vec<NodeId> = sent
        .iter()
        .filter(|m| matches!(m.body, Body::TimeoutNow))
        .map(|m| m.to)
        .collect();
    assert_eq!(handed, [NodeId(3)]);
}

/// Only messages a leader or candidate sends may come from outside the membership (this node's
/// log may lag the change that added their sender); answers and requests to a leader from a
/// stranger are refused as `UnknownPeer`, counted, and change nothing.
#[test]
fn answers_from_strangers_are_refused() {
    let (mut node, store) = lone_leader();
    let term = node.term();
    let stranger = |body| -> Msg4 {
        raftlet::Message {
            from: NodeId(9),
            to: NodeId(1),
            term,
            body,
        }
    };
    let answers = [
        Body::AppendResponse(raftlet::AppendResult::Accepted {
            match_index: node.last_index(),
        }),
        Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
        Body::HeartbeatResponse,
        Body::ReadIndex { ctx: 1 },
        Body::ReadConfirmAck { seq: 1 },
    ];
    let before = node.stats().unknown_peer;
    for body in answers {
        assert_eq!(
            node.step(&stranger(body.clone()), &store),
            Err(raftlet::StepError::UnknownPeer),
            "{body:?}"
        );
    }
    assert_eq!(node.stats().unknown_peer, before + 5);
    assert_eq!(node.role(), Role::Leader);
    assert_eq!(
        node.poll_action().map(|_| ()),
        None,
        "a refused message queued something"
    );
    // A vote request from a stranger is heard (it may be a new member this log does not know).
    let ask = stranger(Body::VoteRequest {
        pre_vote: true,
        last_index: Index(0),
        last_term: Term(0),
    });
    assert_eq!(node.step(&ask, &store), Ok(()));
}

/// A linearizable read on the leader is confirmed by a quorum acknowledging its round; an
/// acknowledgement of a round the leader never sent confirms nothing.
#[test]
fn an_acknowledgement_of_a_future_round_confirms_no_read() {
    let (mut node, mut store) = lone_leader();
    node.read_index(raftlet::ReadId(1), &store).unwrap();
    let seq =
        round(&drain_persisting(&mut node, &mut store)).expect("a confirmation round went out");
    let mut ack = |node: &mut Big, seq| {
        deliver(node, &store, 2, Body::ReadConfirmAck { seq });
        let (_, ready) = drain_reads(node, &mut store);
        ready.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    assert_eq!(
        ack(&mut node, seq + 5),
        [],
        "a future round confirmed the read"
    );
    assert_eq!(ack(&mut node, seq), [raftlet::ReadId(1)]);
}

/// A read asked of a new leader before an entry of its term committed waits for that commit
/// (the leader's commit index may be stale until then), then goes through a round and is served.
#[test]
fn a_read_on_a_new_leader_waits_for_its_term_then_is_served() {
    let (mut node, mut store) = new_leader();
    node.read_index(raftlet::ReadId(1), &store).unwrap();
    assert_eq!(
        round(&drain_persisting(&mut node, &mut store)),
        None,
        "a round before the term's commit"
    );
    let noop = node.last_index();
    deliver(&mut node, &store, 2, accepted(noop));
    assert_eq!(node.commit_index(), noop);
    let (sent, mut ready) = drain_reads(&mut node, &mut store);
    let seq = round(&sent).expect("the commit started the read's round");
    deliver(&mut node, &store, 2, Body::ReadConfirmAck { seq });
    ready.extend(drain_reads(&mut node, &mut store).1);
    assert_eq!(ready, [(raftlet::ReadId(1), noop)]);
}

/// ReadIndex (thesis §6.4): a read's index is confirmed only by a round sent after the index was
/// taken. A new leader's read waits for its term's first commit; a round already in flight then
/// (a lease round) was sent before, so its acknowledgement does not confirm the read, and when
/// the noop commits together with a later entry, the read still goes through.
#[test]
fn a_read_needs_a_round_sent_after_its_index_was_taken() {
    let (mut node, mut store) = new_leader_with(|c| {
        c.check_quorum = true;
        c.lease_reads = true;
    });
    let step = |node: &mut Big, store: &mut MemStore, body| {
        deliver(node, store, 2, body);
        drain_reads(node, store)
    };
    // A heartbeat sends a lease round; nobody has acknowledged it yet.
    let mut first = None;
    for _ in 0..20 {
        if first.is_some() {
            break;
        }
        node.tick(&store);
        first = round(&drain_persisting(&mut node, &mut store));
    }
    let first = first.expect("a lease round went out");
    node.read_index(raftlet::ReadId(1), &store).unwrap();
    let noop = node.last_index();
    let entry = node.propose(5, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    // The noop and the entry commit at once (commit passes the term's first index).
    let (sent, ready) = step(
        &mut node,
        &mut store,
        Body::AppendResponse(raftlet::AppendResult::Accepted { match_index: entry }),
    );
    assert_eq!(node.commit_index(), entry);
    assert!(entry > noop);
    assert_eq!(ready, []);
    // The round sent before the read's index was taken confirms nothing for it.
    let (more, ready) = step(&mut node, &mut store, Body::ReadConfirmAck { seq: first });
    assert_eq!(ready, [], "confirmed by a round sent before its index");
    let next = round(&sent).or(round(&more)).expect("a round for the read");
    assert!(next > first);
    let (_, ready) = step(&mut node, &mut store, Body::ReadConfirmAck { seq: next });
    assert_eq!(ready, [(raftlet::ReadId(1), entry)]);
}

/// Read rounds start over with every leadership: a leader deposed with a lease round still
/// unanswered, and elected again later, numbers its rounds afresh (nothing of an earlier
/// leadership's rounds carries over).
#[test]
fn read_rounds_start_over_with_a_new_leadership() {
    let (mut node, mut store) = new_leader_with(|c| {
        c.check_quorum = true;
        c.lease_reads = true;
    });
    let msg = |node: &Big, from: u64, term: Term, body| -> Msg4 {
        let _ = node;
        raftlet::Message {
            from: NodeId(from),
            to: NodeId(1),
            term,
            body,
        }
    };
    // Ticks until a lease round goes out; returns its sequence number.
    let lease_round = |node: &mut Big, store: &mut MemStore| {
        for _ in 0..8 {
            node.tick(store);
            for m in drain_persisting(node, store) {
                if let Body::ReadConfirm { seq } = m.body {
                    return Some(seq);
                }
            }
        }
        None
    };
    // One lease round answered, the next one not.
    let first = lease_round(&mut node, &mut store).expect("no lease round");
    let answer = msg(&node, 2, node.term(), Body::ReadConfirmAck { seq: first });
    node.step(&answer, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    assert_eq!(lease_round(&mut node, &mut store), Some(first + 1));
    // Deposed by a leader of a later term before anyone answered that round.
    let t2 = Term(node.term().0 + 1);
    let append = msg(
        &node,
        2,
        t2,
        Body::Append {
            prev_index: node.last_index(),
            prev_term: node.last_term(),
            commit: Index(0),
            entries: heapless::Vec::new(),
        },
    );
    node.step(&append, &store).unwrap();
    assert_eq!(node.role(), Role::Follower);
    drain_persisting(&mut node, &mut store);
    // Elected again, at a later term.
    node.campaign(&store);
    drain_persisting(&mut node, &mut store);
    let grant = msg(
        &node,
        2,
        node.term(),
        Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    );
    node.step(&grant, &store).unwrap();
    assert_eq!(node.role(), Role::Leader);
    drain_persisting(&mut node, &mut store);
    let ack = msg(
        &node,
        2,
        node.term(),
        Body::AppendResponse(raftlet::AppendResult::Accepted {
            match_index: node.last_index(),
        }),
    );
    node.step(&ack, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    assert_eq!(
        lease_round(&mut node, &mut store),
        Some(1),
        "no fresh lease round in the new leadership"
    );
}

/// A leader (node 1 of 3; election timeout 10 ticks, drift 20 %) whose lease round node 2 has
/// just confirmed: its read lease runs for 7 ticks from now.
fn leased_leader() -> (Big, MemStore) {
    let (mut node, mut store) = new_leader_with(|c| {
        c.check_quorum = true;
        c.lease_reads = true;
        c.election_ticks = 10;
        c.max_clock_drift_percent = 20;
    });
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    // Tick until a lease round goes out; the tick it leaves at is tick 0 of the lease.
    let mut seq = None;
    for _ in 0..4 {
        node.tick(&store);
        for m in drain_persisting(&mut node, &mut store) {
            if let Body::ReadConfirm { seq: s } = m.body {
                seq = Some(s);
            }
        }
        if seq.is_some() {
            break;
        }
    }
    let seq = seq.expect("a lease round");
    deliver(&mut node, &store, 2, Body::ReadConfirmAck { seq });
    drain_persisting(&mut node, &mut store);
    (node, store)
}

/// Ticks `node` once and asks a read; whether the lease served it at once.
fn lease_read(node: &mut Big, store: &mut MemStore, id: u64) -> bool {
    node.tick(store);
    drain_persisting(node, store);
    let before = node.stats().lease_reads;
    node.read_index(raftlet::ReadId(id), store).unwrap();
    drain_persisting(node, store);
    node.stats().lease_reads > before
}

/// Thesis §6.4.1: a read lease lasts `floor((election_ticks - 1) * (100 - drift) / 100)` of the
/// leader's ticks from the sending of the round a quorum confirmed: 7 ticks for 10 and 20 %.
/// Reads are served from the lease up to its last tick, and need a round from then on.
#[test]
fn a_read_lease_lasts_exactly_its_bound() {
    let (mut node, mut store) = leased_leader();
    // Later rounds go unanswered: the lease is the one of that round.
    let served: Vec<u64> = (1..=8u64)
        .filter(|&tick| lease_read(&mut node, &mut store, tick))
        .collect();
    assert_eq!(
        served,
        [1, 2, 3, 4, 5, 6],
        "lease reads at these ticks after the round"
    );
    assert_eq!(node.role(), Role::Leader);
}

/// A membership change ends the read lease at once: the new configuration's quorums need not
/// overlap the one that confirmed it.
#[test]
fn a_membership_change_ends_the_read_lease() {
    let (mut node, mut store) = leased_leader();
    assert!(
        lease_read(&mut node, &mut store, 1),
        "no lease to begin with"
    );
    node.propose_conf_change(ConfChange::single(Change::AddVoter(NodeId(4))), &store)
        .unwrap();
    drain_persisting(&mut node, &mut store);
    assert!(
        !lease_read(&mut node, &mut store, 2),
        "a lease outlived the change"
    );
}

/// Without lease reads, heartbeats carry no confirmation rounds: rounds go out only for reads.
#[test]
fn no_read_rounds_without_reads_or_leases() {
    let (mut node, mut store) = lone_leader();
    let mut rounds = 0;
    for _ in 0..6 {
        node.tick(&store);
        rounds += drain_persisting(&mut node, &mut store)
            .iter()
            .filter(|m| matches!(m.body, Body::ReadConfirm { .. }))
            .count();
    }
    assert_eq!(rounds, 0);
    node.read_index(raftlet::ReadId(1), &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter()
            .any(|m| matches!(m.body, Body::ReadConfirm { .. }))
    );
}

/// A read the leader cannot confirm re-sends its round to the followers that have not answered
/// at every tick, and fails after two election timeouts (20 ticks): a local read with
/// `ReadFailed(Timeout)` on the 21st tick, a follower's forwarded one with an empty
/// `ReadIndexResponse`.
#[test]
fn an_unconfirmed_read_is_retried_then_times_out() {
    let (mut node, mut store) = new_leader_with(|c| {
        c.check_quorum = false;
        c.election_ticks = 10;
    });
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    node.read_index(raftlet::ReadId(1), &store).unwrap();
    deliver(&mut node, &store, 3, Body::ReadIndex { ctx: 9 });
    drain_persisting(&mut node, &mut store);
    let mut failed_at = None;
    let mut answered_at = None;
    for tick in 1..=22u32 {
        node.tick(&store);
        let mut resent = Vec::new();
        while let Some(a) = node.poll_action() {
            match a {
                Action::Send(m) => match m.message().body {
                    Body::ReadConfirm { .. } => resent.push(m.to()),
                    Body::ReadIndexResponse {
                        ctx: 9,
                        index: None,
                    } => {
                        answered_at = answered_at.or(Some(tick));
                    }
                    _ => {}
                },
                Action::ReadFailed {
                    id: raftlet::ReadId(1),
                    reason: raftlet::ReadError::Timeout,
                } => failed_at = failed_at.or(Some(tick)),
                Action::Persist(p) => {
                    let token = p.token;
                    store.persist(&p);
                    node.persisted(token, &store).unwrap();
                }
                _ => {}
            }
        }
        if tick <= 20 {
            resent.sort();
            assert_eq!(
                resent,
                [NodeId(2), NodeId(3)],
                "tick {tick}: the round re-sent"
            );
        }
    }
    assert_eq!((failed_at, answered_at), (Some(21), Some(21)));
}

/// A round a quorum confirmed is not re-sent to the follower that did not answer it.
#[test]
fn a_confirmed_round_is_not_resent() {
    let (mut node, mut store) = lone_leader();
    node.read_index(raftlet::ReadId(1), &store).unwrap();
    let seq = drain_persisting(&mut node, &mut store)
        .iter()
        .find_map(|m| match m.body {
            Body::ReadConfirm { seq } => Some(seq),
            _ => None,
        })
        .expect("a round");
    deliver(&mut node, &store, 2, Body::ReadConfirmAck { seq });
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    let resent = drain_persisting(&mut node, &mut store)
        .iter()
        .filter(|m| matches!(m.body, Body::ReadConfirm { .. }))
        .count();
    assert_eq!(resent, 0);
}

/// Messages that cannot be valid whatever the node's state are refused as `Malformed` before
/// anything changes: a log position from a term later than the message's, a conflict hint
/// past the rejected index, a snapshot of a later term or at index 0.
#[test]
fn impossible_messages_are_refused_as_malformed() {
    fn refused(
        node: &mut Big,
        store: &MemStore,
        term: Term,
        body: Body<u64, heapless::Vec<Entry<u64>, 4>>,
    ) {
        let (hs, last, role) = (node.hard_state(), node.last_index(), node.role());
        let malformed = node.stats().malformed;
        let m: Msg4 = raftlet::Message {
            from: NodeId(2),
            to: NodeId(1),
            term,
            body: body.clone(),
        };
        assert_eq!(
            node.step(&m, store),
            Err(raftlet::StepError::Malformed),
            "{body:?}"
        );
        assert_eq!(node.stats().malformed, malformed + 1);
        assert_eq!(
            (node.hard_state(), node.last_index(), node.role()),
            (hs, last, role)
        );
        assert_eq!(
            node.poll_action().map(|_| ()),
            None,
            "{body:?} queued something"
        );
    }
    let snapshot = |index, term| raftlet::SnapshotId {
        index: Index(index),
        term,
    };
    let (mut leader, store) = lone_leader();
    let term = leader.term();
    let later = Term(term.0 + 1);
    for body in [
        Body::VoteRequest {
            pre_vote: true,
            last_index: Index(5),
            last_term: later,
        },
        Body::VoteRequestTransfer {
            last_index: Index(5),
            last_term: later,
        },
        Body::AppendResponse(raftlet::AppendResult::Rejected {
            rejected: Index(1),
            hint_index: Index(2),
            hint_term: term,
        }),
        // An acknowledgement of entries the leader never had, a refusal of one it never sent.
        accepted(Index(leader.last_index().0 + 1)),
        Body::AppendResponse(raftlet::AppendResult::Rejected {
            rejected: Index(leader.last_index().0 + 1),
            hint_index: Index(1),
            hint_term: term,
        }),
    ] {
        refused(&mut leader, &store, term, body);
    }
    // Snapshot requests, to a follower that would act on them.
    let empty = MemStore::default();
    let mut follower = Big::new(Config::new(NodeId(1), &ids(3)).unwrap(), &empty).unwrap();
    let (term, later) = (Term(1), Term(2));
    for (index, t) in [(5, later), (0, term)] {
        let notify = raftlet::InstallRequest::Notify {
            first_available: snapshot(index, t),
        };
        let chunk = raftlet::InstallRequest::Chunk {
            snapshot: snapshot(index, t),
            seq: 0,
            data: 0,
            checksum: None,
        };
        for request in [notify, chunk] {
            refused(
                &mut follower,
                &empty,
                term,
                Body::InstallSnapshot { tag: 1, request },
            );
        }
    }
}

#[test]
fn a_batch_proposal_leaves_in_full_appends_all_or_nothing() {
    let (mut node, mut store) = lone_leader();
    let before = node.last_index();
    // 8 commands: two appends of 4 entries per follower, not eight appends of one.
    let (first, last) = node
        .propose_batch((100..108u32).map(u64::from), &store)
        .unwrap();
    assert_eq!((first, last), (before.next(), Index(before.0 + 8)));
    let sent = drain_persisting(&mut node, &mut store);
    let sizes: Vec<(u64, usize)> = sent
        .iter()
        .filter_map(|m| match &m.body {
            Body::Append { entries, .. } if !entries.is_empty() => Some((m.to.0, entries.len())),
            _ => None,
        })
        .collect();
    assert!(
        sizes.iter().all(|&(_, n)| n == 4) && sizes.len() == 4,
        "appends sent: {sizes:?}"
    );
    assert_eq!(
        raftlet::Storage::entry(&store, last).map(|e| e.data),
        Some(EntryData::Normal(107u64))
    );
    // Too long for the room left: nothing is taken, the iterator comes back untouched.
    let room = node.log_room();
    let long = vec![7u64; room + 1];
    match node.propose_batch(long.into_iter(), &store) {
        Err(raftlet::ProposeError::Full(back)) => assert_eq!(back.len(), room + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(node.last_index(), last);
    // An empty batch is a no-op.
    let (f, l) = node.propose_batch(std::iter::empty(), &store).unwrap();
    assert!(f > l);
    // Each refusal is counted once; the batch that was taken and the empty one are not.
    assert_eq!(node.stats().proposals_refused, 1);
    // A follower refuses, naming no leader it does not know.
    let store2 = MemStore::default();
    let mut follower = Big::new(Config::new(NodeId(2), &ids(3)).unwrap(), &store2).unwrap();
    assert!(matches!(
        follower.propose_batch([1u64].into_iter(), &store2),
        Err(raftlet::ProposeError::NotLeader { leader: None, .. })
    ));
    assert_eq!(follower.stats().proposals_refused, 1);
}

#[test]
fn observability_and_runner_reports() {
    // A follower's election deadline counts down with ticks; the timeout is randomized within
    // [election_ticks, 2 * election_ticks).
    let store = MemStore::default();
    let c = Config::<5>::new(NodeId(2), &ids(3)).unwrap();
    let ticks = c.election_ticks;
    let mut follower = Big::new(c, &store).unwrap();
    let timeout = follower.election_timeout_ticks();
    assert!((ticks..2 * ticks).contains(&timeout), "{timeout}");
    assert_eq!(follower.ticks_until_election(), Some(timeout));
    follower.tick(&store);
    assert_eq!(follower.ticks_until_election(), Some(timeout - 1));
    assert!(
        follower.peer_progress(NodeId(1)).is_none(),
        "no progress off a leader"
    );
    assert_eq!(follower.peers_progress().count(), 0);
    follower.send_heartbeats();
    assert!(
        follower.poll_action().is_none(),
        "heartbeats only from a leader"
    );

    let (mut node, mut store) = lone_leader();
    assert_eq!(node.ticks_until_election(), None);
    // Heartbeats now, to every follower, without a tick.
    node.send_heartbeats();
    let sent = drain_persisting(&mut node, &mut store);
    let mut to: Vec<u64> = sent
        .iter()
        .filter(|m| matches!(m.body, Body::Heartbeat { .. }))
        .map(|m| m.to.0)
        .collect();
    to.sort_unstable();
    assert_eq!(to, [2, 3]);
    // Replication state of every follower.
    let all: Vec<_> = node.peers_progress().collect();
    assert_eq!(all.len(), 2);
    let p = node.peer_progress(NodeId(2)).unwrap();
    assert_eq!(p.matched, node.last_index());
    assert_eq!(p.next, node.last_index().next());
    assert_eq!(p.state, raftlet::FlowState::Replicate);
    assert_eq!(p.inflight, 0);
    // Proposals in flight show up; an unreachable follower goes back to probe, and only it.
    node.propose(9, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    assert_eq!(node.peer_progress(NodeId(2)).unwrap().inflight, 1);
    node.report_unreachable(NodeId(2));
    let p = node.peer_progress(NodeId(2)).unwrap();
    assert_eq!(p.state, raftlet::FlowState::Probe);
    assert_eq!(p.next, p.matched.next(), "resent from the last known match");
    assert_eq!(
        node.peer_progress(NodeId(3)).unwrap().state,
        raftlet::FlowState::Replicate
    );
    node.report_unreachable(NodeId(9)); // not a member: nothing happens
}

/// Nodes built in place: a `DefaultNode` (about 21 KB) lives in a `static` and is initialised,
/// elected and made to commit in a thread whose whole stack is 16 KiB. A node-sized temporary
/// anywhere on that path overflows the stack and aborts the test process.
#[test]
fn a_default_node_is_built_in_place_on_a_stack_smaller_than_itself() {
    use raftlet::DefaultNode;
    use std::sync::Mutex;
    static NODE: Mutex<DefaultNode<u64>> = Mutex::new(DefaultNode::vacant());
    const STACK: usize = 16 * 1024;
    assert!(
        std::mem::size_of::<DefaultNode<u64>>() > STACK,
        "the node must be larger than the stack for this test to prove anything"
    );
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(|| {
            let mut store = MemStore::default();
            let mut node = NODE.lock().unwrap();
            let mut c = Config::new(NodeId(1), &ids(1)).unwrap();
            c.pre_vote = false;
            node.init(c, &store).unwrap();
            node.campaign(&store);
            let mut applied = 0;
            for round in 0..3 {
                let mut budget = common::budget::Drain::new("node");
                while let Some(a) = node.poll_action() {
                    budget.spend();
                    match a {
                        Action::Persist(p) => {
                            let token = p.token;
                            store.persist(&p);
                            node.persisted(token, &store).unwrap();
                        }
                        Action::Apply { first, last } => applied += last.0 - first.0 + 1,
                        _ => {}
                    }
                }
                if round == 0 {
                    assert_eq!(node.role(), Role::Leader);
                    node.propose(7, &store).unwrap();
                }
            }
            assert_eq!(applied, 2, "the no-op and the command");
        })
        .unwrap()
        .join()
        .expect("the in-place node ran on a small stack");
}

/// A vacant node has no member to talk to: inputs do nothing and it has no actions.
#[test]
fn a_vacant_node_does_nothing() {
    let store = MemStore::default();
    let mut node = Big::vacant();
    for _ in 0..1000 {
        node.tick(&store);
    }
    node.campaign(&store);
    let m: Msg4 = raftlet::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(5),
        body: Body::Heartbeat { commit: Index(0) },
    };
    assert_eq!(node.step(&m, &store), Err(raftlet::StepError::UnknownPeer));
    assert!(node.propose(1, &store).is_err());
    assert!(node.poll_action().is_none());
    assert_eq!(node.term(), Term(0));
    // Initialising it afterwards gives the node `new` would have built.
    let c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    node.init(c.clone(), &store).unwrap();
    let fresh = Big::new(c, &store).unwrap();
    assert_eq!(node.hard_state(), fresh.hard_state());
    assert_eq!(
        node.election_timeout_ticks(),
        fresh.election_timeout_ticks()
    );
    assert_eq!(node.voters(), fresh.voters());
}

/// A runner whose store is full hands the newest persist back: the node holds every persist
/// (proposals fill the unstable log and are then refused with `Full`), and after
/// `resume_persists` hands out the same hard state and entries again, plus what came since, under
/// the same token. Only the newest, unacknowledged persist can be deferred.
#[test]
fn a_deferred_persist_is_handed_out_again_whole() {
    let (mut node, mut store): (Small, _) = campaigning(1, |_| {});
    // The candidate's vote: defer it.
    let Some(Action::Persist(p)) = node.poll_action() else {
        panic!("expected the candidate's hard state")
    };
    let (token, hs) = (p.token, p.hard_state.copied());
    assert!(hs.is_some());
    assert_eq!(
        node.defer_persist(PersistToken(token.0 + 1)),
        Err(PersistError::UnknownToken),
        "a token never handed out"
    );
    assert!(!node.persists_held());
    node.defer_persist(token).unwrap();
    assert!(node.persists_held());
    assert!(
        node.poll_action().is_none(),
        "nothing is handed out while held"
    );
    assert_eq!(node.role(), Role::Candidate, "the vote is not durable");
    node.resume_persists();
    assert!(!node.persists_held());
    let Some(Action::Persist(p)) = node.poll_action() else {
        panic!("the deferred hard state goes out again")
    };
    assert_eq!(p.hard_state.copied(), hs);
    assert_eq!(p.token, token, "the same token");
    let token = p.token;
    store.persist(&p);
    node.persisted(token, &store).unwrap();
    assert_eq!(node.role(), Role::Leader);
    // The leader's no-op and three proposals, deferred; more proposals meanwhile.
    let mut budget = common::budget::Drain::new("node");
    let mut deferred = None;
    while let Some(a) = node.poll_action() {
        budget.spend();
        if let Action::Persist(p) = a {
            deferred = Some((p.token, p.entries.len()));
        }
    }
    let (token, n) = deferred.expect("the no-op's persist");
    assert_eq!(n, 1);
    node.defer_persist(token).unwrap();
    assert_eq!(
        node.persisted(token, &store),
        Err(PersistError::UnknownToken),
        "a deferred token cannot be acknowledged"
    );
    for k in 0..3 {
        node.propose(k, &store).unwrap();
    }
    assert!(node.poll_action().is_none());
    node.resume_persists();
    let Some(Action::Persist(p)) = node.poll_action() else {
        panic!("the held entries go out again")
    };
    let indices: Vec<u64> = p.entries.iter().map(|e| e.index.0).collect();
    assert_eq!(
        indices,
        [1, 2, 3, 4],
        "the no-op and the three commands, in one run"
    );
    let token = p.token;
    store.persist(&p);
    assert_eq!(
        node.defer_persist(PersistToken(1)),
        Err(PersistError::UnknownToken),
        "an old token"
    );
    node.persisted(token, &store).unwrap();
    assert_eq!(
        node.defer_persist(token),
        Err(PersistError::UnknownToken),
        "the newest token, acknowledged"
    );
    assert_eq!(node.durable_index(), Index(4));
    let mut budget = common::budget::Drain::new("node");
    let mut applied = 0;
    while let Some(a) = node.poll_action() {
        budget.spend();
        if let Action::Apply { first, last } = a {
            applied += last.0 - first.0 + 1;
        }
    }
    assert_eq!(applied, 4, "committed and applied once durable");
}

/// `step_parts` takes a message whose cargo travels beside it: an append's entries from a slice
/// (here the entries of a send polled from a leader, with no owned copy), and a chunk message
/// only with its bytes; without them it is refused before anything changes, not even the term.
#[test]
fn step_parts_takes_the_cargo_beside_the_message() {
    let (mut leader, mut lstore) = lone_leader();
    // Node 2 holds what the leader held when both followers acknowledged its no-op.
    let mut fstore = lstore.clone();
    let mut c = Config::<5>::new(NodeId(2), &ids(3)).unwrap();
    c.pre_vote = false;
    let mut follower = Big::new(c, &fstore).unwrap();
    leader.propose(7, &lstore).unwrap();
    // The leader's appends to node 2, delivered as (message, entries) pairs.
    let mut delivered = 0;
    let mut budget = common::budget::Drain::new("leader");
    while let Some(a) = leader.poll_action() {
        budget.spend();
        match a {
            Action::Send(out) if out.to() == NodeId(2) => {
                let entries: Vec<_> = out.entries(&lstore).map(Result::unwrap).collect();
                follower
                    .step_parts(out.message(), &entries, None, &fstore)
                    .unwrap();
                delivered += 1;
            }
            Action::Persist(p) => {
                let token = p.token;
                lstore.persist(&p);
                leader.persisted(token, &lstore).unwrap();
            }
            _ => {}
        }
    }
    assert!(delivered > 0);
    drain_persisting(&mut follower, &mut fstore);
    assert_eq!(
        follower.last_index(),
        leader.last_index(),
        "the entries arrived"
    );
    // A chunk message without its bytes: refused, and the term it carries is not adopted.
    let chunk: raftlet::Message<(), ()> = raftlet::Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(follower.term().0 + 5),
        body: Body::InstallSnapshot {
            tag: 1,
            request: raftlet::InstallRequest::Chunk {
                snapshot: raftlet::SnapshotId {
                    index: Index(50),
                    term: Term(1),
                },
                seq: 0,
                data: (),
                checksum: None,
            },
        },
    };
    let term = follower.term();
    assert_eq!(
        follower.step_parts(&chunk, &[], None, &fstore),
        Err(raftlet::StepError::Malformed)
    );
    assert_eq!(follower.term(), term);
}

/// An append that spans the durable index names its stored entries (`Outgoing::stored`) and
/// borrows the rest (`Outgoing::tail`); together they are exactly `Outgoing::entries`.
#[test]
fn an_append_names_its_stored_entries_and_lends_the_rest() {
    let (mut leader, mut store) = lone_leader();
    leader.propose(7, &store).unwrap();
    drain_persisting(&mut leader, &mut store);
    let durable = leader.last_index();
    leader.propose(8, &store).unwrap();
    let term = leader.term();
    // Node 2 lacks the entry the leader has just made durable: the leader probes back to it.
    deliver(
        &mut leader,
        &store,
        2,
        Body::AppendResponse(raftlet::AppendResult::Rejected {
            rejected: durable,
            hint_index: durable.prev(),
            hint_term: term,
        }),
    );
    let mut spanning = 0;
    let mut budget = common::budget::Drain::new("leader");
    // The persist of 8 is held back: it stays in the node's tail.
    while let Some(a) = leader.poll_action() {
        budget.spend();
        let Action::Send(out) = a else { continue };
        let Body::Append { prev_index, .. } = out.message().body else {
            assert_eq!((out.stored(), out.tail().len()), (None, 0));
            continue;
        };
        let via_entries: Vec<_> = out.entries(&store).map(Result::unwrap).collect();
        let mut via_parts = Vec::new();
        if let Some((first, last)) = out.stored() {
            assert_eq!(first, prev_index.next());
            assert!(last <= durable);
            let mut i = first;
            while i <= last {
                via_parts.push(store.entry(i).unwrap());
                i = i.next();
            }
        }
        via_parts.extend(out.tail().iter().cloned());
        assert_eq!(via_parts, via_entries);
        if out.to() == NodeId(2) && out.stored().is_some() && !out.tail().is_empty() {
            spanning += 1;
        }
    }
    assert_eq!(spanning, 1, "the probe to node 2 spans the durable index");
}

/// `step_taking` moves the entries a node appends out of the message (leaving `Noop` data with
/// their index and term) and touches none it does not append: entries it already holds, and
/// every entry of an append it refuses or cannot place.
#[test]
fn stepping_by_taking_moves_only_the_entries_appended() {
    let at = |i: u64, data| Entry {
        term: Term(1),
        index: Index(i),
        data,
    };
    let noop = |i: u64| at(i, EntryData::Noop);
    let normal = |i: u64| at(i, EntryData::Normal(i));
    // The entries an append message holds after the step.
    let carried = |m: &Msg4| match &m.body {
        Body::Append { entries, .. } => entries.to_vec(),
        _ => unreachable!(),
    };
    let (mut node, mut store) = follower_of_2(|_| {});
    let mut m = term1_append(0, 3, 0);
    node.step_taking(&mut m, &store).unwrap();
    assert_eq!(carried(&m), [noop(1), noop(2), noop(3)]);
    drain_persisting(&mut node, &mut store);
    for i in 1..=3 {
        assert_eq!(
            store.entry(Index(i)),
            Some(normal(i)),
            "the node took the data"
        );
    }
    // Entry 3 is held already: only 4 and 5 are taken.
    let mut m = term1_append(2, 3, 0);
    node.step_taking(&mut m, &store).unwrap();
    assert_eq!(carried(&m), [normal(3), noop(4), noop(5)]);
    drain_persisting(&mut node, &mut store);
    assert_eq!(store.entry(Index(5)), Some(normal(5)));
    // An append that does not match the log (nothing at 9) and a malformed one (a gap): nothing
    // taken.
    let mut m = term1_append(9, 2, 0);
    node.step_taking(&mut m, &store).unwrap();
    assert!(
        matches!(&m.body, Body::Append { entries, .. } if entries[..] == [normal(10), normal(11)])
    );
    let mut m = term1_append(5, 2, 0);
    if let Body::Append { entries, .. } = &mut m.body {
        entries[1].index = Index(8);
    }
    assert_eq!(
        node.step_taking(&mut m, &store),
        Err(raftlet::StepError::Malformed)
    );
    assert!(matches!(&m.body, Body::Append { entries, .. } if entries[0] == normal(6)));
    assert_eq!(node.last_index(), Index(5));
    // The same through `step_parts_taking`, entries beside the message, and a message that is
    // not an append.
    let m = term1_append(5, 1, 0);
    let mut beside = [normal(6)];
    node.step_parts_taking(&m, &mut beside, None, &store)
        .unwrap();
    assert_eq!(beside, [noop(6)]);
    node.step_taking(&mut heartbeat(2, Term(1)), &store)
        .unwrap();
    drain_persisting(&mut node, &mut store);
    assert_eq!(store.entry(Index(6)), Some(normal(6)));
}

/// A follower that holds every committed entry learns the commit index from a `Commit` notice,
/// which it does not answer; one whose acknowledgement is still on its way gets nothing until it
/// arrives. No empty append (and no acknowledgement of one) only to carry the commit index.
#[test]
fn commit_indices_travel_in_notices_that_need_no_answer() {
    let (mut leader, mut store) = lone_leader();
    let index = leader.propose(7, &store).unwrap();
    let sent = drain_persisting(&mut leader, &mut store);
    assert!(
        sent.iter()
            .all(|m| matches!(m.body, Body::Append { ref entries, .. } if entries.len() == 1))
    );
    let ack = |from: u64, term| -> Msg4 {
        raftlet::Message {
            from: NodeId(from),
            to: NodeId(1),
            term,
            body: Body::AppendResponse(raftlet::AppendResult::Accepted { match_index: index }),
        }
    };
    // Node 2 acknowledges: the entry commits. Node 2 gets a notice, node 3 (whose
    // acknowledgement is on its way) nothing.
    leader.step(&ack(2, leader.term()), &store).unwrap();
    assert_eq!(leader.commit_index(), index);
    let sent = drain_persisting(&mut leader, &mut store);
    let bodies: Vec<_> = sent.iter().map(|m| (m.to, m.body.clone())).collect();
    assert_eq!(bodies, [(NodeId(2), Body::Commit { commit: index })]);
    // Node 3's acknowledgement brings its notice.
    leader.step(&ack(3, leader.term()), &store).unwrap();
    let sent = drain_persisting(&mut leader, &mut store);
    let bodies: Vec<_> = sent.iter().map(|m| (m.to, m.body.clone())).collect();
    assert_eq!(bodies, [(NodeId(3), Body::Commit { commit: index })]);
    // A follower adopts the notice's commit index and answers nothing.
    let mut fstore = store.clone();
    let mut c = Config::<5>::new(NodeId(2), &ids(3)).unwrap();
    c.pre_vote = false;
    let mut follower = Big::new(c, &fstore).unwrap();
    let notice: Msg4 = raftlet::Message {
        from: NodeId(1),
        to: NodeId(2),
        term: leader.term(),
        body: Body::Commit { commit: index },
    };
    follower.step(&notice, &fstore).unwrap();
    assert_eq!(follower.commit_index(), index);
    assert_eq!(follower.leader(), Some(NodeId(1)));
    let replies = drain_persisting(&mut follower, &mut fstore);
    assert!(replies.is_empty(), "{replies:?}");
}

/// Every error a caller can meet explains itself: a non-empty message, different for each
/// variant of a type (a log line or a `?` into an application error must say what went wrong).
#[test]
fn every_error_has_its_own_message() {
    use raftlet::wire::frame::FrameError;
    use raftlet::wire::{DecodeError, EncodeError};
    use raftlet::{
        ConfChangeError, InstallError, MembershipError, ProposeError, ReadError, SnapshotError,
        StepError, TransferError,
    };
    fn distinct<const N: usize>(kind: &str, messages: [String; N]) {
        for (i, m) in messages.iter().enumerate() {
            assert!(
                !m.trim().is_empty(),
                "{kind}: variant {i} has an empty message"
            );
            assert!(
                !messages[..i].contains(m),
                "{kind}: variant {i} says the same as an earlier one: {m:?}"
            );
        }
    }
    distinct(
        "ProposeError",
        [
            ProposeError::NotLeader {
                leader: Some(NodeId(2)),
                data: 0u64,
            },
            ProposeError::Full(0),
            ProposeError::Transferring(0),
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "StepError",
        [StepError::UnknownPeer, StepError::Malformed].map(|e| e.to_string()),
    );
    distinct(
        "PersistError",
        [
            PersistError::UnknownToken,
            PersistError::AlreadyAcknowledged,
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "InstallError",
        [InstallError::Unavailable, InstallError::Failed].map(|e| format!("{e:?}")),
    );
    distinct(
        "SnapshotError",
        [
            SnapshotError::NotApplied,
            SnapshotError::Stale,
            SnapshotError::TermMismatch,
            SnapshotError::InstallInProgress,
            SnapshotError::NoInstall,
            SnapshotError::UnexpectedChunk,
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "ReadError",
        [
            ReadError::NoLeader,
            ReadError::LeadershipLost,
            ReadError::InstallInProgress,
            ReadError::Full,
            ReadError::Timeout,
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "MembershipError",
        [
            MembershipError::NotLeader { leader: None },
            MembershipError::Pending,
            MembershipError::Transferring,
            MembershipError::Full,
            MembershipError::Invalid(ConfChangeError::InJoint),
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "TransferError",
        [TransferError::NotLeader, TransferError::NotAVoter].map(|e| e.to_string()),
    );
    distinct(
        "ConfigError",
        [
            ConfigError::ZeroId,
            ConfigError::TooManyVoters,
            ConfigError::NoVoters,
            ConfigError::DuplicateVoter(NodeId(2)),
            ConfigError::BadLease,
            ConfigError::BadTimeouts,
            ConfigError::ZeroInflight,
            ConfigError::ZeroCapacity,
            ConfigError::AppliedBeyondLog,
            ConfigError::InconsistentStorage,
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "ConfChangeError",
        [
            ConfChangeError::ZeroId,
            ConfChangeError::Duplicate(NodeId(2)),
            ConfChangeError::TooManyChanges,
            ConfChangeError::TooManyMembers,
            ConfChangeError::NoVoters,
            ConfChangeError::AlreadyMember(NodeId(2)),
            ConfChangeError::NotAMember(NodeId(2)),
            ConfChangeError::InJoint,
            ConfChangeError::NotJoint,
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "FrameError",
        [FrameError::TooLong, FrameError::Corrupt].map(|e| e.to_string()),
    );
    distinct(
        "EncodeError",
        [
            EncodeError::BufferTooSmall,
            EncodeError::TooLong,
            EncodeError::Payload,
        ]
        .map(|e| e.to_string()),
    );
    distinct(
        "DecodeError",
        [
            DecodeError::Truncated,
            DecodeError::TooLong { len: 9, max: 8 },
            DecodeError::VersionMismatch { got: 9 },
            DecodeError::ClusterMismatch { got: 9 },
            DecodeError::UnknownKind { kind: 99 },
            DecodeError::Invalid,
            DecodeError::TrailingBytes { extra: 3 },
        ]
        .map(|e| e.to_string()),
    );
}

/// Pending reads are bounded by the node's `READS` capacity (16 unless named, 4 in the tiny
/// profile, 0 for a node that serves no reads): every read up to it is forwarded to the
/// leader, the next is refused as `Full` and sends nothing.
#[test]
fn pending_reads_are_bounded_by_the_reads_capacity() {
    fn fill<const READS: usize>() {
        let store = MemStore::default();
        let c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
        let mut node = Node::<u64, 5, 16, 4, 2, 8, READS>::new(c, &store).unwrap();
        node.step(&heartbeat(2, Term(1)), &store).unwrap();
        while node.poll_action().is_some() {}
        let mut forwarded = Vec::new();
        let mut read = |node: &mut Node<u64, 5, 16, 4, 2, 8, READS>, id| {
            let r = node.read_index(raftlet::ReadId(id), &store);
            while let Some(a) = node.poll_action() {
                if let Action::Send(m) = a
                    && let Body::ReadIndex { ctx } = m.message().body
                {
                    assert_eq!(m.to(), NodeId(2));
                    forwarded.push(ctx);
                }
            }
            r
        };
        for i in 0..READS as u64 {
            read(&mut node, i).unwrap();
        }
        let full = read(&mut node, 99);
        assert_eq!(full, Err(raftlet::ReadError::Full), "READS = {READS}");
        assert_eq!(forwarded, (0..READS as u64).collect::<Vec<_>>());
    }
    fill::<0>();
    fill::<4>();
    fill::<{ raftlet::DEFAULT_READS }>();
    assert_eq!(<raftlet::TinyNode<u64> as raftlet::Profile>::READS, 4);
    assert_eq!(<raftlet::DefaultNode<u64> as raftlet::Profile>::READS, 16);
}

/// The tiny profile's node fits in 4 KiB (on 64-bit hosts; smaller on 32-bit targets, where
/// the firmware prints its size).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_tiny_node_fits_in_4_kib() {
    let size = std::mem::size_of::<raftlet::TinyNode<u32>>();
    assert!(size <= 4096, "TinyNode<u32> is {size} bytes");
}

/// A follower of node 2 at term 1 (it heard a heartbeat), its election timer just restarted.
fn follower_of_2(tweak: impl Fn(&mut Config<5>)) -> (Big, MemStore) {
    let store = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    tweak(&mut c);
    let mut node = Big::new(c, &store).unwrap();
    node.step(&heartbeat(2, Term(1)), &store).unwrap();
    assert_eq!((node.term(), node.leader()), (Term(1), Some(NodeId(2))));
    while node.poll_action().is_some() {}
    (node, store)
}

/// Every message only a leader sends, arriving with a new term, makes its sender the known
/// leader at once and restarts the election timer with a newly drawn randomized timeout (as
/// etcd's `becomeFollower`), not only the elapsed count.
#[test]
fn a_leader_of_a_new_term_is_followed_with_a_new_election_timeout() {
    let bodies: [Body4; 5] = [
        Body::Append {
            prev_index: Index(0),
            prev_term: Term(0),
            commit: Index(0),
            entries: heapless::Vec::new(),
        },
        Body::Heartbeat { commit: Index(0) },
        Body::Commit { commit: Index(0) },
        Body::ReadConfirm { seq: 1 },
        notice(1, 1),
    ];
    for body in bodies {
        let store = MemStore::default();
        let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
        c.seed = 7;
        let mut node = Big::new(c, &store).unwrap();
        for _ in 0..3 {
            node.tick(&store);
        }
        let before = node.election_timeout_ticks();
        let m: Msg4 = raftlet::Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(1),
            body: body.clone(),
        };
        node.step(&m, &store).unwrap();
        assert_eq!(node.leader(), Some(NodeId(2)), "{body:?}");
        assert_eq!(node.term(), Term(1));
        // Seed 7 draws a different timeout next: a kept timeout would show here.
        assert_ne!(node.election_timeout_ticks(), before, "{body:?}");
        assert_eq!(
            node.ticks_until_election(),
            Some(node.election_timeout_ticks()),
            "{body:?}"
        );
    }
}

/// The check-quorum lease lasts exactly one (minimum) election timeout after the leader was
/// last heard: a real vote request of a higher term one tick before its end is ignored (and
/// counted), one at its end is answered.
#[test]
fn the_check_quorum_lease_lasts_exactly_one_election_timeout() {
    let request = |term| -> Msg4 {
        raftlet::Message {
            from: NodeId(3),
            to: NodeId(1),
            term: Term(term),
            body: Body::VoteRequest {
                pre_vote: false,
                last_index: Index(10),
                last_term: Term(1),
            },
        }
    };
    for (ticks_after, answered) in [(9, false), (10, true)] {
        let (mut node, store) = follower_of_2(|c| {
            c.election_ticks = 10;
            c.seed = 3;
        });
        assert!(
            node.election_timeout_ticks() > 10,
            "seed 3 must draw past 10"
        );
        for _ in 0..ticks_after {
            node.tick(&store);
        }
        while node.poll_action().is_some() {}
        assert_eq!(node.role(), Role::Follower);
        node.step(&request(2), &store).unwrap();
        let term = if answered { Term(2) } else { Term(1) };
        assert_eq!(node.term(), term, "{ticks_after} ticks after the leader");
        assert_eq!(node.stats().ignored_in_lease, u64::from(!answered));
    }
}

/// A node refuses a candidate of an older term, real, pre-vote or transfer alike, with its
/// current term (Raft figure 2), so the candidate moves on; each counts as a stale message.
#[test]
fn stale_candidates_are_refused_with_the_current_term() {
    let (mut node, mut store) = follower_of_2(|_| {});
    node.step(&heartbeat(2, Term(5)), &store).unwrap();
    drain_persisting(&mut node, &mut store);
    let stale = node.stats().stale_term;
    let requests: [(Body4, bool); 3] = [
        (
            Body::VoteRequest {
                pre_vote: false,
                last_index: Index(9),
                last_term: Term(3),
            },
            false,
        ),
        (
            Body::VoteRequest {
                pre_vote: true,
                last_index: Index(9),
                last_term: Term(3),
            },
            true,
        ),
        (
            Body::VoteRequestTransfer {
                last_index: Index(9),
                last_term: Term(3),
            },
            false,
        ),
    ];
    for (k, (body, pre_vote)) in requests.into_iter().enumerate() {
        let m: Msg4 = raftlet::Message {
            from: NodeId(3),
            to: NodeId(1),
            term: Term(3),
            body: body.clone(),
        };
        node.step(&m, &store).unwrap();
        let sent = drain_persisting(&mut node, &mut store);
        assert_eq!(
            sent,
            [raftlet::Message {
                from: NodeId(1),
                to: NodeId(3),
                term: Term(5),
                body: Body::VoteResponse {
                    pre_vote,
                    granted: false
                },
            }],
            "{body:?}"
        );
        assert_eq!(node.stats().stale_term, stale + k as u64 + 1);
        assert_eq!((node.term(), node.leader()), (Term(5), Some(NodeId(2))));
    }
}

/// Two leaders in one term cannot happen: a leader's message from another node at the term
/// of a known leader (or to the leader itself) is refused as malformed and counted, and the
/// known leader stays.
#[test]
fn a_second_leader_in_one_term_is_refused_as_malformed() {
    let hb = heartbeat;
    let (mut node, store) = follower_of_2(|_| {});
    assert_eq!(
        node.step(&hb(3, Term(1)), &store),
        Err(raftlet::StepError::Malformed)
    );
    assert_eq!(node.stats().malformed, 1);
    assert_eq!(node.leader(), Some(NodeId(2)));

    let (mut node, store) = new_leader();
    let term = node.term();
    assert_eq!(
        node.step(&hb(2, term), &store),
        Err(raftlet::StepError::Malformed)
    );
    assert_eq!(node.stats().malformed, 1);
    assert_eq!(node.role(), Role::Leader);
}

/// A leader whose send queue is full counts every append it cannot queue, and leaves that
/// follower's progress as it was (the append goes out later, from the same place).
#[test]
fn a_leader_with_a_full_send_queue_counts_the_appends_it_cannot_queue() {
    // Five voters, room for two queued sends.
    let store = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(5)).unwrap();
    c.pre_vote = false;
    let mut node = Small::new(c, &store).unwrap();
    node.campaign(&store);
    let mut store = store;
    let poll = |node: &mut Small, store: &mut MemStore| {
        let mut appends = Vec::new();
        while let Some(a) = node.poll_action() {
            match a {
                Action::Send(m) if matches!(m.message().body, Body::Append { .. }) => {
                    appends.push(m.to());
                }
                Action::Persist(p) => {
                    let token = p.token;
                    store.persist(&p);
                    node.persisted(token, store).unwrap();
                }
                _ => {}
            }
        }
        appends
    };
    poll(&mut node, &mut store);
    let dropped = node.stats().dropped_sends;
    let term = node.term();
    for from in [2, 3] {
        let grant: Msg4 = raftlet::Message {
            from: NodeId(from),
            to: NodeId(1),
            term,
            body: Body::VoteResponse {
                pre_vote: false,
                granted: true,
            },
        };
        node.step(&grant, &store).unwrap();
    }
    assert_eq!(node.role(), Role::Leader);
    // The no-op goes to four followers: two appends fit the queue, two are counted.
    assert_eq!(poll(&mut node, &mut store), [NodeId(2), NodeId(3)]);
    assert_eq!(node.stats().dropped_sends, dropped + 2);
    for id in [4, 5] {
        let p = node.peer_progress(NodeId(id)).unwrap();
        assert!(
            !p.paused,
            "follower {id} waits for an append that was never sent"
        );
    }
}

/// A storage that has lost one entry the node counts as durable.
struct Forgetful<'a> {
    inner: &'a MemStore,
    lost: Index,
}

impl raftlet::Storage<u64> for Forgetful<'_> {
    fn hard_state(&self) -> HardState {
        raftlet::Storage::<u64>::hard_state(self.inner)
    }
    fn last_index(&self) -> Index {
        raftlet::Storage::<u64>::last_index(self.inner)
    }
    fn term(&self, index: Index) -> Option<Term> {
        (index != self.lost)
            .then(|| raftlet::Storage::<u64>::term(self.inner, index))
            .flatten()
    }
    fn entry(&self, index: Index) -> Option<Entry<u64>> {
        (index != self.lost)
            .then(|| raftlet::Storage::<u64>::entry(self.inner, index))
            .flatten()
    }
}

/// An append the leader cannot build because its storage lost the entry before it is not
/// sent, and the miss is counted (`storage_misses`), not mistaken for a compaction (no
/// snapshot is started).
#[test]
fn an_append_over_a_lost_entry_is_counted_as_a_storage_miss() {
    let (mut node, mut store) = lone_leader();
    for v in 0..3 {
        node.propose(v, &store).unwrap();
    }
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    // Follower 2 rejects the appends: the leader probes from just after its match (the no-op),
    // which the storage has lost.
    let lost = node.peer_progress(NodeId(2)).unwrap().matched;
    assert!(lost.0 > 0 && lost < last);
    let reject = Body::AppendResponse(raftlet::AppendResult::Rejected {
        rejected: last,
        hint_index: lost,
        hint_term: Term(0),
    });
    let m: Msg4 = raftlet::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: node.term(),
        body: reject,
    };
    let forgetful = Forgetful {
        inner: &store,
        lost,
    };
    let misses = node.stats().storage_misses;
    node.step(&m, &forgetful).unwrap();
    assert_eq!(node.stats().storage_misses, misses + 1);
    let p = node.peer_progress(NodeId(2)).unwrap();
    assert_eq!(p.state, raftlet::FlowState::Probe);
    let mut sent = Vec::new();
    while let Some(a) = node.poll_action() {
        if let Action::Send(m) = a {
            sent.push(*m.message());
        }
    }
    assert!(
        sent.iter().all(|m| m.to != NodeId(2)),
        "nothing can go to follower 2: {sent:?}"
    );
}

/// An empty append in replicate state (here: a heartbeat answered while entries are in
/// flight) takes no slot of the inflight window: only appends that carry entries do.
#[test]
fn an_empty_append_takes_no_inflight_slot() {
    let (mut node, mut store) = lone_leader();
    node.propose(7, &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert!(sent.iter().any(|m| m.to == NodeId(2)
        && matches!(&m.body, Body::Append { entries, .. } if entries.len() == 1)));
    assert_eq!(node.peer_progress(NodeId(2)).unwrap().inflight, 1);
    deliver(&mut node, &store, 2, Body::HeartbeatResponse);
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter().any(|m| m.to == NodeId(2)
            && matches!(&m.body, Body::Append { entries, .. } if entries.is_empty())),
        "{sent:?}"
    );
    let p = node.peer_progress(NodeId(2)).unwrap();
    assert_eq!((p.state, p.inflight), (raftlet::FlowState::Replicate, 1));
}

/// A commit notice goes once to each follower that holds every committed entry, when it is
/// known to hold them: not to a follower still catching up (its acknowledgement brings the
/// notice), and not again for the same commit index.
#[test]
fn commit_notices_go_once_to_followers_that_hold_the_committed_entries() {
    let (mut node, mut store) = lone_leader();
    node.propose(7, &store).unwrap();
    node.propose(8, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    let notices = |sent: &[Msg4]| -> Vec<(NodeId, Index)> {
        sent.iter()
            .filter_map(|m| match m.body {
                Body::Commit { commit } => Some((m.to, commit)),
                _ => None,
            })
            .collect()
    };
    // Follower 2's acknowledgement commits the entry: 2 is told, 3 (its append in flight)
    // is not.
    deliver(&mut node, &store, 2, accepted(last));
    assert_eq!(node.commit_index(), last);
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(notices(&sent), [(NodeId(2), last)]);
    // A repeated acknowledgement brings no second notice.
    deliver(&mut node, &store, 2, accepted(last));
    assert_eq!(notices(&drain_persisting(&mut node, &mut store)), []);
    // Follower 3 acknowledges part of it: it does not hold every committed entry, so it is
    // not told (a notice is never beyond what the follower holds).
    deliver(&mut node, &store, 3, accepted(Index(last.0 - 1)));
    assert_eq!(notices(&drain_persisting(&mut node, &mut store)), []);
    // Follower 3 catches up: now it is told.
    deliver(&mut node, &store, 3, accepted(last));
    assert_eq!(
        notices(&drain_persisting(&mut node, &mut store)),
        [(NodeId(3), last)]
    );
}

/// A follower takes from an append only what its unstable log has room for: `LOG` entries
/// not yet acknowledged as durable. With 4 entries durable and 6 waiting for their persist,
/// an 8-entry log takes 2 of the next append's 4 (the leader sends the rest again).
#[test]
fn a_follower_takes_only_what_its_unstable_log_has_room_for() {
    let mut store = MemStore::default();
    let mut node = Small::new(Config::new(NodeId(1), &ids(3)).unwrap(), &store).unwrap();
    let append_from = |from: u64, term: u64, prev: u64, n: u64| -> Msg4 {
        let mut entries = heapless::Vec::new();
        for i in prev + 1..=prev + n {
            let e = Entry {
                term: Term(1),
                index: Index(i),
                data: EntryData::Normal(i),
            };
            entries.push(e).unwrap();
        }
        raftlet::Message {
            from: NodeId(from),
            to: NodeId(1),
            term: Term(term),
            body: Body::Append {
                prev_index: Index(prev),
                prev_term: Term(u64::from(prev > 0)),
                commit: Index(0),
                entries,
            },
        }
    };
    let append = |prev: u64, n: u64| append_from(2, 1, prev, n);
    // Entries 1..=4 made durable.
    node.step(&append(0, 4), &store).unwrap();
    while let Some(a) = node.poll_action() {
        if let Action::Persist(p) = a {
            let token = p.token;
            store.persist(&p);
            node.persisted(token, &store).unwrap();
        }
    }
    // Entries 5..=10 taken, their persists written and not acknowledged (not yet synced).
    fn write_unacknowledged(node: &mut Small, store: &mut MemStore) {
        while let Some(a) = node.poll_action() {
            if let Action::Persist(p) = a {
                store.persist(&p);
            }
        }
    }
    for (prev, n) in [(4, 4), (8, 2)] {
        node.step(&append(prev, n), &store).unwrap();
        write_unacknowledged(&mut node, &mut store);
    }
    assert_eq!(node.last_index(), Index(10));
    let full = node.stats().log_full;
    node.step(&append(10, 4), &store).unwrap();
    assert_eq!(node.last_index(), Index(12), "room for 2 of 4");
    assert_eq!(node.stats().log_full, full);
    // Now the log is full: the next append takes nothing, and counts it.
    node.step(&append(12, 2), &store).unwrap();
    assert_eq!(node.last_index(), Index(12));
    assert_eq!(node.stats().log_full, full + 1);
    // A new leader (node 3, term 2) resends 11..=14: the full log takes none of 13 and 14,
    // but acknowledges the 11 and 12 it holds, once they are durable.
    node.step(&append_from(3, 2, 10, 4), &store).unwrap();
    assert_eq!(node.last_index(), Index(12));
    assert_eq!(node.stats().log_full, full + 2);
    /// Makes every persist durable; returns what was sent, by recipient.
    fn sync(node: &mut Small, store: &mut MemStore) -> Vec<(NodeId, Body<(), raftlet::Span>)> {
        let mut sent = Vec::new();
        while let Some(a) = node.poll_action() {
            match a {
                Action::Persist(p) => {
                    let token = p.token;
                    store.persist(&p);
                    node.persisted(token, store).unwrap();
                }
                Action::Send(m) => sent.push((m.to(), m.message().body)),
                _ => {}
            }
        }
        sent
    }
    let accepted = |to, i| {
        (
            NodeId(to),
            Body::AppendResponse(raftlet::AppendResult::Accepted {
                match_index: Index(i),
            }),
        )
    };
    assert_eq!(sync(&mut node, &mut store), [accepted(3, 12)]);
    // Made durable, the log has room again; refilled (13..=20, waiting for their persist), it
    // takes nothing of the next append, which brings no entry it holds: no acknowledgement
    // (the leader knows the match already), only the count.
    for prev in [12, 16] {
        node.step(&append_from(3, 2, prev, 4), &store).unwrap();
        write_unacknowledged(&mut node, &mut store);
    }
    assert_eq!(node.last_index(), Index(20));
    node.step(&append_from(3, 2, 20, 2), &store).unwrap();
    assert_eq!(node.stats().log_full, full + 3);
    let mut sent = Vec::new();
    while let Some(a) = node.poll_action() {
        if let Action::Send(m) = a {
            sent.push(*m.message());
        }
    }
    assert_eq!(sent, [], "nothing to say to a leader that sent too much");
    // A newer leader (node 4, term 3) probes the full log at its end: it takes nothing, and
    // once durable acknowledges the match, so the leader need not wait for a heartbeat.
    node.step(&append_from(4, 3, 20, 2), &store).unwrap();
    assert_eq!(node.stats().log_full, full + 4);
    assert_eq!(sync(&mut node, &mut store), [accepted(4, 20)]);
}

/// A follower adopts the commit index an append carries, clamped to the entries it knows match
/// the leader's (through the append's last entry), and never moves it back.
#[test]
fn an_append_carries_the_commit_index_clamped_to_what_it_proves() {
    let store = MemStore::default();
    let mut node = Big::new(Config::new(NodeId(1), &ids(3)).unwrap(), &store).unwrap();
    let append = term1_append;
    node.step(&append(0, 3, 2), &store).unwrap();
    assert_eq!(node.commit_index(), Index(2));
    // Beyond the append's last entry: clamped to it.
    node.step(&append(3, 1, 9), &store).unwrap();
    assert_eq!(node.commit_index(), Index(4));
    // A delayed empty append with an older commit index moves nothing back.
    node.step(&append(4, 0, 1), &store).unwrap();
    assert_eq!(node.commit_index(), Index(4));
}

/// A leader (node 1) that compacted its log through its last entry (4 entries after the
/// no-op, which follower 2 holds) and so must send follower 3 a snapshot: follower 3 refused
/// an append, its log ending at the no-op. The leader's actions are not yet drained.
fn leader_sending_a_snapshot_to_3(tweak: impl Fn(&mut Config<5>)) -> (Big, MemStore) {
    let (mut node, mut store) = lone_leader_with(|c| {
        c.log_retention = 0;
        tweak(c);
    });
    for v in 0..4 {
        node.propose(v, &store).unwrap();
    }
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    let term = node.term();
    node.snapshot_taken(raftlet::SnapshotId { index: last, term }, &store)
        .unwrap();
    drain_persisting(&mut node, &mut store);
    let reject = Body::AppendResponse(raftlet::AppendResult::Rejected {
        rejected: Index(last.0 - 1),
        hint_index: Index(1),
        hint_term: Term(0),
    });
    deliver(&mut node, &store, 3, reject);
    (node, store)
}

/// A follower the leader is sending a snapshot to may catch up by other means (an earlier
/// append arriving late): an acknowledgement at or past the leader's snapshot returns it to
/// replicate state; one below it changes nothing.
#[test]
fn a_follower_in_snapshot_state_that_catches_up_returns_to_replication() {
    let (mut node, mut store) = leader_sending_a_snapshot_to_3(|_| {});
    let (last, term) = (node.last_index(), node.term());
    let state = |node: &Big| node.peer_progress(NodeId(3)).unwrap().state;
    assert_eq!(state(&node), raftlet::FlowState::Snapshot);
    drain_persisting(&mut node, &mut store);
    // The application may supply only the chunk asked for (chunk 0 of this snapshot).
    let taken = raftlet::SnapshotId { index: last, term };
    assert_eq!(
        node.snapshot_chunk(NodeId(3), taken, 1, 0, None),
        Err(raftlet::SnapshotError::UnexpectedChunk)
    );
    deliver(&mut node, &store, 3, accepted(Index(last.0 - 1)));
    assert_eq!(
        state(&node),
        raftlet::FlowState::Snapshot,
        "below the snapshot"
    );
    // ... and the transfer under way goes on: no new one is started.
    while let Some(a) = node.poll_action() {
        assert!(
            !matches!(a, Action::ReadSnapshotChunk { .. }),
            "a transfer started again: {a:?}"
        );
    }
    deliver(&mut node, &store, 3, accepted(last));
    assert_eq!(
        state(&node),
        raftlet::FlowState::Replicate,
        "at the snapshot"
    );
}

/// A refusal's hint places the next probe: with no term (`hint_term` 0) just after the hinted
/// index; with a term, just after the last leader entry at or below the hint whose term is at
/// most that term (the follower's conflicting run is skipped whole, etcd's `findConflictByTerm`).
#[test]
fn a_refusal_hint_places_the_next_probe() {
    for (hint_index, hint_term, next) in [(4, 0, 5), (5, 1, 3)] {
        // Node 1 holds entries 1 and 2 of a term-1 leader, leads term 2 (its no-op at 3, then
        // 4 and 5), follows another leader at term 3, and leads term 4 (its no-op at 6).
        let mut store = MemStore::default();
        let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
        c.pre_vote = false;
        let mut node = Big::new(c, &store).unwrap();
        node.step(&term1_append(0, 2, 0), &store).unwrap();
        drain_persisting(&mut node, &mut store);
        let grant = Body::VoteResponse {
            pre_vote: false,
            granted: true,
        };
        node.campaign(&store);
        drain_persisting(&mut node, &mut store);
        deliver(&mut node, &store, 2, grant.clone());
        assert_eq!((node.role(), node.term()), (Role::Leader, Term(2)));
        for v in 0..2 {
            node.propose(v, &store).unwrap();
        }
        drain_persisting(&mut node, &mut store);
        node.step(&heartbeat(2, Term(3)), &store).unwrap();
        drain_persisting(&mut node, &mut store);
        node.campaign(&store);
        drain_persisting(&mut node, &mut store);
        deliver(&mut node, &store, 2, grant);
        assert_eq!((node.role(), node.term()), (Role::Leader, Term(4)));
        drain_persisting(&mut node, &mut store);
        assert_eq!(node.last_index(), Index(6));
        // Follower 3 refuses the new leader's probe (the no-op, after entry 5).
        assert_eq!(node.peer_progress(NodeId(3)).unwrap().next, Index(6));
        let reject = Body::AppendResponse(raftlet::AppendResult::Rejected {
            rejected: Index(5),
            hint_index: Index(hint_index),
            hint_term: Term(hint_term),
        });
        deliver(&mut node, &store, 3, reject);
        let p = node.peer_progress(NodeId(3)).unwrap();
        assert_eq!(p.state, raftlet::FlowState::Probe);
        assert_eq!(p.next, Index(next), "hint ({hint_index}, {hint_term})");
    }
}

/// A duplicated acknowledgement from a replicating follower is news to nobody: it sends
/// nothing, not even a second `TimeoutNow` to the target of a leadership transfer that is
/// already caught up (the first went out when the transfer started).
#[test]
fn a_duplicate_acknowledgement_sends_nothing() {
    let (mut node, mut store) = lone_leader();
    let last = node.last_index();
    node.transfer_leadership(NodeId(2), &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    let timeout_now = |sent: &[Msg4]| {
        sent.iter()
            .filter(|m| matches!(m.body, Body::TimeoutNow))
            .count()
    };
    assert_eq!(timeout_now(&sent), 1);
    deliver(&mut node, &store, 2, accepted(last));
    assert_eq!(drain_persisting(&mut node, &mut store), []);
}

/// `snapshot_taken` refuses a snapshot past what was applied, and compacts only when the
/// retention leaves something below the snapshot to drop: a snapshot whose compaction point
/// is the log's base already emits no `Compact`.
#[test]
fn a_snapshot_is_taken_only_of_applied_state_and_compacts_only_forward() {
    let (mut node, mut store) = lone_leader_with(|c| c.log_retention = 100);
    let applied = node.last_index();
    let term = node.term();
    node.propose(7, &store).unwrap();
    let id = |index| raftlet::SnapshotId { index, term };
    assert_eq!(
        node.snapshot_taken(id(node.last_index()), &store),
        Err(raftlet::SnapshotError::NotApplied)
    );
    drain_persisting(&mut node, &mut store);
    // A retention of 100 entries keeps every entry of this short log: nothing to compact.
    node.snapshot_taken(id(applied), &store).unwrap();
    while let Some(a) = node.poll_action() {
        assert!(!matches!(a, Action::Compact { .. }), "{a:?}");
    }
}

/// A follower (node 1) of node 2 at term 1, holding term-1 entries 1..=3 with 2 committed,
/// its configuration tweaked first.
fn follower_committed_to_2(tweak: impl Fn(&mut Config<5>)) -> (Big, MemStore) {
    let mut store = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    tweak(&mut c);
    let mut node = Big::new(c, &store).unwrap();
    node.step(&term1_append(0, 3, 2), &store).unwrap();
    drain_persisting(&mut node, &mut store);
    assert_eq!(node.commit_index(), Index(2));
    (node, store)
}

/// Notify mode: the application's snapshot must reach the follower's commit index. One below
/// it is refused as stale (the round ends; the next notification starts another); one at it
/// is installed.
#[test]
fn a_fetched_snapshot_below_the_commit_index_is_stale() {
    let (mut node, mut store) =
        follower_committed_to_2(|c| c.snapshot_mode = raftlet::SnapshotMode::Notify);
    // A leader whose log starts at 1 (nothing compacted) needs nothing installed here: the
    // answer names the follower's commit point (it has no snapshot of its own to name).
    // So does one whose log starts just past the commit point.
    let have = raftlet::SnapshotId {
        index: Index(2),
        term: Term(1),
    };
    for first in [1, 3] {
        deliver(&mut node, &store, 2, notice(9, first));
        let sent = drain_persisting(&mut node, &mut store);
        assert_eq!(
            sent.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
            [Body::InstallSnapshotResponse {
                tag: 9,
                result: raftlet::InstallResult::AlreadyInstalled(have),
            }],
            "a leader's log starting at {first}"
        );
    }
    assert!(!node.is_installing());
    let meta = |index| raftlet::SnapshotMeta {
        id: raftlet::SnapshotId {
            index: Index(index),
            term: Term(1),
        },
        membership: raftlet::Membership::new(&ids(3)).unwrap(),
    };
    for (tag, index, outcome) in [(1, 1, Err(raftlet::SnapshotError::Stale)), (2, 2, Ok(()))] {
        deliver(&mut node, &store, 2, notice(tag, 10));
        drain_persisting(&mut node, &mut store);
        assert_eq!(
            node.snapshot_installed(Ok(meta(index)), &store),
            outcome,
            "a snapshot at {index}"
        );
    }
    // The install's result goes at once to the leader that asked, in its term.
    let term = node.term();
    let installed = |to, tag, index| raftlet::Message {
        from: NodeId(1),
        to: NodeId(to),
        term,
        body: Body::InstallSnapshotResponse {
            tag,
            result: raftlet::InstallResult::Installed(meta(index).id),
        },
    };
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(sent, [installed(2, 2, 2)]);
    // A round whose leader starts a new term (re-elected) before the application reports: the
    // result waits to be collected in the new term; nothing goes out in the old one.
    let notify = notice(3, 10);
    deliver(&mut node, &store, 2, notify);
    drain_persisting(&mut node, &mut store);
    node.step(&heartbeat(2, Term(2)), &store).unwrap();
    drain_persisting(&mut node, &mut store);
    node.snapshot_installed(Ok(meta(3)), &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter()
            .all(|m| !matches!(m.body, Body::InstallSnapshotResponse { .. })),
        "{sent:?}"
    );
}

/// Stream mode, follower: the application's report counts only for a transfer whose last chunk
/// arrived (one mid-transfer is refused as `NoInstall`), and a restored snapshot below the
/// commit index is a failure the leader hears about at once (it starts over).
#[test]
fn a_streamed_snapshot_is_reported_only_when_restoring_and_never_below_the_commit_index() {
    let (mut node, mut store) = follower_committed_to_2(|_| {});
    let snapshot = raftlet::SnapshotId {
        index: Index(10),
        term: Term(1),
    };
    let chunk = |seq, checksum| Body::InstallSnapshot {
        tag: 1,
        request: raftlet::InstallRequest::Chunk {
            snapshot,
            seq,
            data: 40 + u64::from(seq),
            checksum,
        },
    };
    let meta = |index| raftlet::SnapshotMeta {
        id: raftlet::SnapshotId {
            index: Index(index),
            term: Term(1),
        },
        membership: raftlet::Membership::new(&ids(3)).unwrap(),
    };
    // A chunk of a snapshot the committed log already covers is answered with the commit
    // point (the follower has no snapshot of its own to name).
    let old = raftlet::SnapshotId {
        index: Index(2),
        term: Term(1),
    };
    let old_chunk = Body::InstallSnapshot {
        tag: 0,
        request: raftlet::InstallRequest::Chunk {
            snapshot: old,
            seq: 0,
            data: 0,
            checksum: None,
        },
    };
    deliver(&mut node, &store, 2, old_chunk);
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(
        sent.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        [Body::InstallSnapshotResponse {
            tag: 0,
            result: raftlet::InstallResult::AlreadyInstalled(old),
        }]
    );
    deliver(&mut node, &store, 2, chunk(0, None));
    drain_persisting(&mut node, &mut store);
    // Within one transfer (one tag) the snapshot cannot change: such a chunk is malformed,
    // counted and not answered.
    let malformed = node.stats().malformed;
    let other = Body::InstallSnapshot {
        tag: 1,
        request: raftlet::InstallRequest::Chunk {
            snapshot: raftlet::SnapshotId {
                index: Index(11),
                term: Term(1),
            },
            seq: 1,
            data: 0,
            checksum: None,
        },
    };
    deliver(&mut node, &store, 2, other);
    assert_eq!(drain_persisting(&mut node, &mut store), []);
    assert_eq!(node.stats().malformed, malformed + 1);
    assert_eq!(
        node.snapshot_installed(Ok(meta(10)), &store),
        Err(raftlet::SnapshotError::NoInstall),
        "mid-transfer"
    );
    deliver(&mut node, &store, 2, chunk(1, Some(7)));
    let mut restore = None;
    while let Some(a) = node.poll_action() {
        if let Action::RestoreSnapshot { snapshot, checksum } = a {
            restore = Some((snapshot, checksum));
        }
    }
    assert_eq!(restore, Some((snapshot, 7)));
    // The application restored something below the commit index: a failure.
    node.snapshot_installed(Ok(meta(1)), &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(
        sent.iter()
            .map(|m| (m.to, m.body.clone()))
            .collect::<Vec<_>>(),
        [(
            NodeId(2),
            Body::InstallSnapshotResponse {
                tag: 1,
                result: raftlet::InstallResult::Failed
            }
        )]
    );
    assert_eq!(node.commit_index(), Index(2));
}

/// Notify mode, leader: a follower in snapshot state is notified again exactly every
/// `snapshot_resend_ticks` ticks while it has not answered.
#[test]
fn a_snapshot_notice_is_resent_exactly_every_resend_interval() {
    let (mut node, mut store) = leader_sending_a_snapshot_to_3(|c| {
        c.snapshot_mode = raftlet::SnapshotMode::Notify;
        c.snapshot_resend_ticks = 3;
    });
    let notices = |sent: &[Msg4]| {
        sent.iter()
            .filter(|m| m.to == NodeId(3) && matches!(m.body, Body::InstallSnapshot { .. }))
            .count()
    };
    assert_eq!(notices(&drain_persisting(&mut node, &mut store)), 1);
    let mut at = Vec::new();
    for tick in 1..=7 {
        node.tick(&store);
        // Follower 2 keeps the leader's quorum.
        deliver(&mut node, &store, 2, Body::HeartbeatResponse);
        if notices(&drain_persisting(&mut node, &mut store)) > 0 {
            at.push(tick);
        }
    }
    assert_eq!(at, [3, 6]);
}

/// An install outcome reported to a new leader may reach exactly its last entry; one past it
/// is malformed, counted, and changes nothing: the valid report of the same round that
/// follows is not taken for its duplicate, and ends the installation on the leader's side.
#[test]
fn a_malformed_install_report_changes_nothing() {
    let (mut node, store) = lone_leader();
    let last = node.last_index();
    let m = |index| -> Msg4 {
        raftlet::Message {
            from: NodeId(3),
            to: NodeId(1),
            term: node.term(),
            body: Body::InstallSnapshotResponse {
                tag: 5,
                result: raftlet::InstallResult::Reported {
                    outcome: raftlet::InstallOutcome::Installed(raftlet::SnapshotId {
                        index,
                        term: Term(1),
                    }),
                    term: Term(0),
                },
            },
        }
    };
    let (at, past) = (m(last), m(Index(last.0 + 1)));
    assert_eq!(node.step(&past, &store), Err(raftlet::StepError::Malformed));
    assert_eq!(node.stats().malformed, 1);
    assert_eq!(node.step(&at, &store), Ok(()));
    let mut events = Vec::new();
    while let Some(a) = node.poll_action() {
        if let Action::InstallComplete { peer, outcome } = a {
            events.push((peer, outcome));
        }
    }
    assert_eq!(
        events,
        [(
            NodeId(3),
            raftlet::InstallOutcome::Installed(raftlet::SnapshotId {
                index: last,
                term: Term(1)
            })
        )]
    );
}

/// Notify mode: a leader's notice (message tag `tag`) that its log starts at `first` (an
/// entry of term 1).
fn notice(tag: u64, first: u64) -> Body4 {
    Body::InstallSnapshot {
        tag,
        request: raftlet::InstallRequest::Notify {
            first_available: raftlet::SnapshotId {
                index: Index(first),
                term: Term(1),
            },
        },
    }
}

/// What a drain of `node` (persisting at once) sent, served and did about snapshot installs.
#[derive(Default, Debug)]
struct Installs {
    /// The messages sent.
    sent: Vec<Msg4>,
    /// Reads served (`ReadReady`).
    ready: Vec<(raftlet::ReadId, Index)>,
    /// `InstallComplete` events, as (peer, outcome).
    events: Vec<(NodeId, raftlet::InstallOutcome)>,
    /// `InstallSnapshotFromLeader` actions, as the leader named.
    fetches: Vec<NodeId>,
    /// `ReadSnapshotChunk` actions: to whom, which snapshot, which chunk.
    chunk_reads: Vec<(NodeId, raftlet::SnapshotId, u32)>,
}

fn drain_installs(node: &mut Big, store: &mut MemStore) -> Installs {
    let mut seen = Installs::default();
    let mut budget = common::budget::Drain::new("node");
    while let Some(a) = node.poll_action() {
        budget.spend();
        match a {
            Action::Send(m) => seen.sent.push(m.to_message(store).unwrap()),
            Action::Persist(p) => {
                let token = p.token;
                store.persist(&p);
                node.persisted(token, store).unwrap();
            }
            Action::ReadReady { id, index } => seen.ready.push((id, index)),
            Action::InstallComplete { peer, outcome } => seen.events.push((peer, outcome)),
            Action::InstallSnapshotFromLeader { leader, .. } => seen.fetches.push(leader),
            Action::ReadSnapshotChunk { to, snapshot, seq } => {
                seen.chunk_reads.push((to, snapshot, seq));
            }
            _ => {}
        }
    }
    seen
}

/// The tag of the newest snapshot notice or chunk among `sent` to node `to`.
fn install_tag(sent: &[Msg4], to: u64) -> Option<u64> {
    sent.iter()
        .filter(|m| m.to == NodeId(to))
        .filter_map(|m| match m.body {
            Body::InstallSnapshot { tag, .. } => Some(tag),
            _ => None,
        })
        .next_back()
}

/// An install outcome a follower reports to a new leader: the snapshot at `index` (of the
/// leader's term 1) installed for a leader of term 0, message tag `tag`.
fn reported(tag: u64, index: u64) -> Body4 {
    Body::InstallSnapshotResponse {
        tag,
        result: raftlet::InstallResult::Reported {
            outcome: raftlet::InstallOutcome::Installed(raftlet::SnapshotId {
                index: Index(index),
                term: Term(1),
            }),
            term: Term(0),
        },
    }
}

/// Notify mode, leader: install outcomes reported by followers (for a leader of an earlier
/// term) move a follower's match index forward only, and its next index only with it; an
/// install that does not reach the leader's log yet raises no event and keeps the follower in
/// snapshot state; one that does returns it to probing and raises the event, once per
/// follower and snapshot (a new snapshot of the same follower raises another).
#[test]
fn reported_installs_move_a_follower_forward_and_raise_one_event_each() {
    let (mut node, mut store) =
        leader_sending_a_snapshot_to_3(|c| c.snapshot_mode = raftlet::SnapshotMode::Notify);
    drain_installs(&mut node, &mut store);
    let last = node.last_index();
    assert_eq!(last, Index(5));
    let pr = |node: &Big, id| node.peer_progress(NodeId(id)).unwrap();
    assert_eq!(
        (pr(&node, 3).matched, pr(&node, 3).state),
        (Index(1), raftlet::FlowState::Snapshot)
    );
    let installed = |index| {
        raftlet::InstallOutcome::Installed(raftlet::SnapshotId {
            index: Index(index),
            term: Term(1),
        })
    };
    // Past the follower's match index, but short of the leader's log (which starts at 6).
    deliver(&mut node, &store, 3, reported(100, 3));
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.events, []);
    let p = pr(&node, 3);
    assert_eq!(
        (p.matched, p.next, p.state),
        (Index(3), Index(4), raftlet::FlowState::Snapshot)
    );
    // Exactly reaching the leader's log: the event, and probing from there.
    deliver(&mut node, &store, 3, reported(101, 5));
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.events, [(NodeId(3), installed(5))]);
    let p = pr(&node, 3);
    assert_eq!((p.matched, p.next), (Index(5), Index(6)));
    assert_ne!(p.state, raftlet::FlowState::Snapshot);
    // The same install reported again (a later term's leader cannot tell): no second event.
    deliver(&mut node, &store, 3, reported(102, 5));
    assert_eq!(drain_installs(&mut node, &mut store).events, []);
    // A report at a follower's match index does not pull its next index back: follower 2
    // has appends in flight past it.
    for v in 0..2 {
        node.propose(v, &store).unwrap();
    }
    drain_installs(&mut node, &mut store);
    assert_eq!(
        (pr(&node, 2).matched, pr(&node, 2).next),
        (Index(5), Index(8))
    );
    deliver(&mut node, &store, 2, reported(200, 5));
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.events, [(NodeId(2), installed(5))]);
    assert_eq!(
        (pr(&node, 2).matched, pr(&node, 2).next),
        (Index(5), Index(8))
    );
    // Follower 3 later installs a newer snapshot: another event.
    deliver(&mut node, &store, 3, reported(103, 7));
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.events, [(NodeId(3), installed(7))]);
    assert_eq!(pr(&node, 3).matched, Index(7));
}

/// Leader: an install result past the leader's log is malformed, counted, and changes
/// nothing (the follower stays in snapshot state, no event).
#[test]
fn an_install_result_past_the_leaders_log_is_malformed() {
    let (mut node, mut store) =
        leader_sending_a_snapshot_to_3(|c| c.snapshot_mode = raftlet::SnapshotMode::Notify);
    let seen = drain_installs(&mut node, &mut store);
    let tag = install_tag(&seen.sent, 3).unwrap();
    let (last, term) = (node.last_index(), node.term());
    let answer = |index: Index| -> Msg4 {
        raftlet::Message {
            from: NodeId(3),
            to: NodeId(1),
            term,
            body: Body::InstallSnapshotResponse {
                tag,
                result: raftlet::InstallResult::Installed(raftlet::SnapshotId { index, term }),
            },
        }
    };
    let malformed = node.stats().malformed;
    assert_eq!(
        node.step(&answer(Index(last.0 + 1)), &store),
        Err(raftlet::StepError::Malformed)
    );
    assert_eq!(node.stats().malformed, malformed + 1);
    assert_eq!(drain_installs(&mut node, &mut store).events, []);
    let p = node.peer_progress(NodeId(3)).unwrap();
    assert_eq!(
        (p.matched, p.state),
        (Index(1), raftlet::FlowState::Snapshot)
    );
    // At the last entry: installed.
    node.step(&answer(last), &store).unwrap();
    assert_eq!(drain_installs(&mut node, &mut store).events.len(), 1);
    assert_eq!(node.stats().malformed, malformed + 1);
}

/// Notify mode, leader: a follower that refuses an append because it is installing is sent a
/// notice (its round is polled) unless the leader already has a round running with it; in
/// stream mode such a refusal starts nothing.
#[test]
fn an_installing_follower_is_notified_only_if_no_round_runs() {
    let installing = Body::AppendResponse(raftlet::AppendResult::InstallInProgress);
    let (mut node, mut store) = leader_sending_a_snapshot_to_3(|c| {
        c.snapshot_mode = raftlet::SnapshotMode::Notify;
        c.snapshot_resend_ticks = 3;
    });
    let tag = install_tag(&drain_installs(&mut node, &mut store).sent, 3).unwrap();
    deliver(&mut node, &store, 3, installing.clone());
    assert_eq!(
        install_tag(&drain_installs(&mut node, &mut store).sent, 3),
        None
    );
    // Follower 2 replicates: the refusal starts a round with it.
    deliver(&mut node, &store, 2, installing.clone());
    let sent = drain_installs(&mut node, &mut store).sent;
    assert!(install_tag(&sent, 2).is_some_and(|t| t != tag), "{sent:?}");
    assert_eq!(
        node.peer_progress(NodeId(2)).unwrap().state,
        raftlet::FlowState::Snapshot
    );
    // Follower 2 holds the whole log, but it said its install runs: the leader keeps polling
    // it (a notice every resend interval) until it reports, and does not return it to
    // replication.
    let tag2 = install_tag(&sent, 2).unwrap();
    let in_progress = Body::InstallSnapshotResponse {
        tag: tag2,
        result: raftlet::InstallResult::InProgress,
    };
    deliver(&mut node, &store, 2, in_progress);
    drain_installs(&mut node, &mut store);
    let mut notices = 0;
    for _ in 0..3 {
        node.tick(&store);
        notices +=
            usize::from(install_tag(&drain_installs(&mut node, &mut store).sent, 2).is_some());
    }
    assert_eq!(notices, 1);
    assert_eq!(
        node.peer_progress(NodeId(2)).unwrap().state,
        raftlet::FlowState::Snapshot
    );
    // Stream mode: nothing starts.
    let (mut node, mut store) = lone_leader();
    deliver(&mut node, &store, 2, installing);
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(install_tag(&seen.sent, 2), None);
    assert_ne!(
        node.peer_progress(NodeId(2)).unwrap().state,
        raftlet::FlowState::Snapshot
    );
}

/// Notify mode: a follower whose install round is running may be elected (its log is kept
/// until the snapshot arrives). As leader it reports its own followers' installs, each once,
/// the fetch it announced as a follower is not announced again, and its own installation
/// completes when its application reports it.
#[test]
fn a_node_elected_during_its_install_round_reports_its_followers_installs() {
    let (mut node, mut store) = follower_committed_to_2(|c| {
        c.snapshot_mode = raftlet::SnapshotMode::Notify;
        c.pre_vote = false;
    });
    let notify = notice(9, 10);
    deliver(&mut node, &store, 2, notify);
    assert_eq!(drain_installs(&mut node, &mut store).fetches, [NodeId(2)]);
    assert!(node.is_installing());
    node.campaign(&store);
    drain_installs(&mut node, &mut store);
    let grant = Body::VoteResponse {
        pre_vote: false,
        granted: true,
    };
    deliver(&mut node, &store, 3, grant);
    assert_eq!(node.role(), Role::Leader);
    assert!(node.is_installing());
    assert_eq!(drain_installs(&mut node, &mut store).fetches, []);
    deliver(&mut node, &store, 3, reported(5, 1));
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.fetches, []);
    let installed = |index| {
        raftlet::InstallOutcome::Installed(raftlet::SnapshotId {
            index: Index(index),
            term: Term(1),
        })
    };
    assert_eq!(seen.events, [(NodeId(3), installed(1))]);
    // Its application installs the snapshot (committed by the old leader, so in its log): the
    // log is kept, it still leads, and its own installation is over at once, since no leader
    // will send it an append to prove the logs join.
    let last = node.last_index();
    let meta = raftlet::SnapshotMeta {
        id: raftlet::SnapshotId {
            index: Index(3),
            term: Term(1),
        },
        membership: raftlet::Membership::new(&ids(3)).unwrap(),
    };
    node.snapshot_installed(Ok(meta), &store).unwrap();
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.events, [(NodeId(1), installed(3))]);
    assert_eq!((node.role(), node.last_index()), (Role::Leader, last));
    assert_eq!(node.hard_state().pending_install, None);
    assert!(!node.is_installing());
    node.propose(5, &store).unwrap();
}

/// A node that starts with lease reads ignores vote requests of a higher term for its first
/// election timeout (a leader it has not heard of yet may hold a lease), from its first tick
/// to its last.
#[test]
fn a_starting_node_with_lease_reads_ignores_votes_for_one_election_timeout() {
    let mut store = MemStore::default();
    let mut c = Config::<5>::new(NodeId(1), &ids(3)).unwrap();
    c.lease_reads = true;
    let ticks = 10;
    c.election_ticks = ticks;
    let mut node = Big::new(c, &store).unwrap();
    let request = |term| -> Msg4 {
        raftlet::Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(term),
            body: Body::VoteRequest {
                pre_vote: false,
                last_index: Index(0),
                last_term: Term(0),
            },
        }
    };
    for tick in 1..ticks {
        node.tick(&store);
        node.step(&request(5), &store).unwrap();
        assert_eq!(drain_persisting(&mut node, &mut store), [], "tick {tick}");
        assert_eq!(node.stats().ignored_in_lease, u64::from(tick));
    }
    node.tick(&store);
    node.step(&request(5), &store).unwrap();
    assert_eq!(node.term(), Term(5));
    assert_eq!(node.hard_state().vote, Some(NodeId(2)));
}

/// A message addressed to another node, or claiming to come from this one, is refused.
#[test]
fn misaddressed_messages_are_refused() {
    let store = MemStore::default();
    let mut node = Big::new(Config::new(NodeId(1), &ids(3)).unwrap(), &store).unwrap();
    for (from, to) in [(2, 3), (1, 1), (1, 2)] {
        let mut m = heartbeat(from, Term(1));
        m.to = NodeId(to);
        assert_eq!(
            node.step(&m, &store),
            Err(raftlet::StepError::UnknownPeer),
            "from {from} to {to}"
        );
    }
    assert_eq!(node.stats().unknown_peer, 3);
    assert_eq!((node.term(), node.leader()), (Term(0), None));
}

/// An append of membership change `change` as entry `index` (of term `term`, as the message).
fn change_append(from: u64, term: u64, prev: (u64, u64), change: Change) -> Msg4 {
    raftlet::Message {
        from: NodeId(from),
        to: NodeId(1),
        term: Term(term),
        body: Body::Append {
            prev_index: Index(prev.0),
            prev_term: Term(prev.1),
            commit: Index(0),
            entries: [Entry {
                term: Term(term),
                index: Index(prev.0 + 1),
                data: EntryData::Membership(ConfChange::single(change)),
            }]
            .into_iter()
            .collect(),
        },
    }
}

/// An append of an earlier term is stale noise, whatever it would do to the log: it is not
/// checked against the log (where its membership change could not follow the log's), only
/// counted. An impossible append of a later term is refused before the term moves.
#[test]
fn appends_are_checked_against_the_log_only_in_their_leaders_term() {
    let store = MemStore::default();
    let mut node = Big::new(Config::new(NodeId(1), &ids(3)).unwrap(), &store).unwrap();
    let mut store = store;
    // A change of a later term that cannot follow the membership: refused, term unchanged.
    let impossible = change_append(2, 1, (0, 0), Change::Remove(NodeId(9)));
    assert_eq!(
        node.step(&impossible, &store),
        Err(raftlet::StepError::Malformed)
    );
    assert_eq!(node.stats().malformed, 1);
    assert_eq!((node.term(), node.leader()), (Term(0), None));
    node.step(&term1_append(0, 3, 2), &store).unwrap();
    drain_persisting(&mut node, &mut store);
    // The term-2 leader (node 3) appends entry 4, committing only up to 3.
    let term2: Msg4 = raftlet::Message {
        from: NodeId(3),
        to: NodeId(1),
        term: Term(2),
        body: Body::Append {
            prev_index: Index(3),
            prev_term: Term(1),
            commit: Index(3),
            entries: [Entry {
                term: Term(2),
                index: Index(4),
                data: EntryData::Normal(4),
            }]
            .into_iter()
            .collect(),
        },
    };
    node.step(&term2, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    // Node 2's term-1 append of another entry 4, an impossible change, arrives late.
    let stale = change_append(2, 1, (3, 1), Change::Remove(NodeId(9)));
    let stale_count = node.stats().stale_term;
    assert_eq!(node.step(&stale, &store), Ok(()));
    assert_eq!(
        (node.stats().malformed, node.stats().stale_term),
        (1, stale_count + 1)
    );
    assert_eq!((node.last_index(), node.last_term()), (Index(4), Term(2)));
}

/// Queued appends that are no longer the leader's word are dropped and counted when polled:
/// here the leader stepped down (check-quorum, same term) with an append to each follower in
/// its queue.
#[test]
fn a_deposed_leaders_queued_appends_are_dropped() {
    let (mut node, mut store) = lone_leader();
    node.propose(7, &store).unwrap();
    let term = node.term();
    // Two election timeouts of silence (the followers were active in the first).
    for _ in 0..20 {
        node.tick(&store);
    }
    assert_eq!((node.role(), node.term()), (Role::Follower, term));
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter().all(|m| !matches!(m.body, Body::Append { .. })),
        "{sent:?}"
    );
    assert_eq!(node.stats().dropped_sends, 2);
}

/// Stream mode: a queued chunk whose bytes were replaced by the next chunk's (the follower
/// asked for it meanwhile) is dropped and counted; the next chunk goes out.
#[test]
fn a_queued_chunk_superseded_by_the_next_is_dropped() {
    let (mut node, mut store) = leader_sending_a_snapshot_to_3(|_| {});
    let taken = raftlet::SnapshotId {
        index: node.last_index(),
        term: node.term(),
    };
    drain_persisting(&mut node, &mut store);
    node.snapshot_chunk(NodeId(3), taken, 0, 100, None).unwrap();
    let tag = install_tag(&drain_persisting(&mut node, &mut store), 3).unwrap();
    // Chunk 0 again (a re-send), then the follower asks for chunk 1 before it leaves.
    node.snapshot_chunk(NodeId(3), taken, 0, 100, None).unwrap();
    let next = Body::InstallSnapshotResponse {
        tag,
        result: raftlet::InstallResult::NextChunk(1),
    };
    deliver(&mut node, &store, 3, next);
    node.snapshot_chunk(NodeId(3), taken, 1, 101, Some(9))
        .unwrap();
    let dropped = node.stats().dropped_sends;
    let mut chunks = Vec::new();
    while let Some(a) = node.poll_action() {
        if let Action::Send(m) = a
            && let Some(data) = m.chunk()
        {
            chunks.push((m.message().to, *data));
        }
    }
    assert_eq!(chunks, [(NodeId(3), 101)]);
    assert_eq!(node.stats().dropped_sends, dropped + 1);
}

/// Stream mode: an application need not keep a snapshot that a newer one replaced. When the
/// chunk of a stalled transfer is never supplied because its snapshot is gone, the next
/// re-request after `snapshot_resend_ticks` starts the transfer over with the newest snapshot,
/// even to a follower that last said it was installing (seed 193); with no newer snapshot the
/// same chunk is asked for again.
#[test]
fn a_stalled_transfer_of_a_replaced_snapshot_starts_over_with_the_newest() {
    let (mut node, mut store) = leader_sending_a_snapshot_to_3(|_| {});
    let first = node.latest_snapshot();
    let seen = drain_installs(&mut node, &mut store);
    assert_eq!(seen.chunk_reads, [(NodeId(3), first, 0)]);
    // The only chunk goes out and the follower says it is installing; the leader polls the
    // install by asking for that chunk again (the same snapshot: none newer).
    node.snapshot_chunk(NodeId(3), first, 0, 1, Some(5))
        .unwrap();
    let tag = install_tag(&drain_persisting(&mut node, &mut store), 3).unwrap();
    let installing = Body::InstallSnapshotResponse {
        tag,
        result: raftlet::InstallResult::InProgress,
    };
    deliver(&mut node, &store, 3, installing);
    let mut asked = Vec::new();
    for _ in 0..3 {
        node.tick(&store);
        asked.extend(drain_installs(&mut node, &mut store).chunk_reads);
    }
    assert_eq!(asked, [(NodeId(3), first, 0)]);
    // A newer snapshot replaces it (and the application deletes the old one).
    for v in 10..13 {
        node.propose(v, &store).unwrap();
    }
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    let newer = raftlet::SnapshotId {
        index: last,
        term: node.term(),
    };
    node.snapshot_taken(newer, &store).unwrap();
    let mut asked = Vec::new();
    for _ in 0..3 {
        node.tick(&store);
        asked.extend(drain_installs(&mut node, &mut store).chunk_reads);
    }
    assert_eq!(asked, [(NodeId(3), newer, 0)]);
    // The new transfer proceeds: its chunk is taken, the old one's refused.
    assert_eq!(
        node.snapshot_chunk(NodeId(3), first, 0, 1, None),
        Err(raftlet::SnapshotError::UnexpectedChunk)
    );
    node.snapshot_chunk(NodeId(3), newer, 0, 2, Some(7))
        .unwrap();
}

/// The node reports its snapshot mode as configured, and its latest snapshot as taken.
#[test]
fn snapshot_getters_report_the_configuration_and_the_latest_snapshot() {
    let (mut node, mut store) = lone_leader_with(|c| {
        c.snapshot_mode = raftlet::SnapshotMode::Notify;
        c.log_retention = 100;
    });
    assert_eq!(node.snapshot_mode(), raftlet::SnapshotMode::Notify);
    assert_eq!(node.latest_snapshot(), raftlet::SnapshotId::ZERO);
    node.propose(7, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    let id = raftlet::SnapshotId {
        index: node.last_index(),
        term: node.term(),
    };
    node.snapshot_taken(id, &store).unwrap();
    assert_eq!(node.latest_snapshot(), id);
    let (stream, _) = lone_leader();
    assert_eq!(stream.snapshot_mode(), raftlet::SnapshotMode::Stream);
}

/// The leader's `Quiesce` notices in `sent`, as `(to, commit)`.
fn quiesce_notices(sent: &[Msg4]) -> Vec<(NodeId, Index)> {
    sent.iter()
        .filter_map(|m| match m.body {
            Body::Quiesce { commit } => Some((m.to, commit)),
            _ => None,
        })
        .collect()
}

/// A leader whose followers hold every entry quiesces at its next heartbeat tick: it sends
/// `Quiesce` instead of heartbeats, ignores ticks, and sleeps through late acknowledgements
/// and stale messages. A vote request of a later term wakes it without a heartbeat of its old
/// term; a proposal wakes it with heartbeats at once.
#[test]
fn a_quiescent_leader_sleeps_through_late_answers_and_wakes_for_work() {
    // Off by default: the same leader heartbeats forever.
    let (mut node, mut store) = lone_leader();
    for _ in 0..5 {
        node.tick(&store);
        assert!(quiesce_notices(&drain_persisting(&mut node, &mut store)).is_empty());
    }
    assert!(!node.is_quiescent());

    let (mut node, mut store) = lone_leader_with(|c| c.quiesce = true);
    let last = node.last_index();
    assert_eq!(node.commit_index(), last);
    node.tick(&store);
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(
        quiesce_notices(&sent),
        [(NodeId(2), last), (NodeId(3), last)]
    );
    assert_eq!(sent.len(), 2, "no heartbeat beside the notices: {sent:?}");
    assert!(node.is_quiescent());
    assert_eq!(node.stats().quiesced, 1);
    for _ in 0..100 {
        node.tick(&store);
    }
    assert!(drain_persisting(&mut node, &mut store).is_empty());
    assert_eq!(
        node.role(),
        Role::Leader,
        "check-quorum ran while quiescent"
    );
    // Late answers to what it sent before it quiesced change nothing.
    deliver(&mut node, &store, 2, accepted(last));
    deliver(&mut node, &store, 3, Body::HeartbeatResponse);
    deliver(&mut node, &store, 3, Body::ReadConfirmAck { seq: 0 });
    // A message of an earlier term is answered, and wakes nothing.
    let stale: Msg4 = raftlet::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(node.term().0 - 1),
        body: Body::Heartbeat { commit: Index(0) },
    };
    node.step(&stale, &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter().all(|m| m.body == Body::HeartbeatResponse),
        "{sent:?}"
    );
    assert!(node.is_quiescent());
    assert_eq!(node.stats().woken, 0);

    // A proposal wakes it: heartbeats go out with the append.
    node.propose(7, &store).unwrap();
    assert!(!node.is_quiescent());
    assert_eq!(node.stats().woken, 1);
    let sent = drain_persisting(&mut node, &mut store);
    let heartbeats = sent
        .iter()
        .filter(|m| matches!(m.body, Body::Heartbeat { .. }))
        .count();
    assert_eq!(heartbeats, 2, "{sent:?}");
    assert!(sent.iter().any(|m| matches!(m.body, Body::Append { .. })));
    // Not quiescable again until both followers hold the new entry.
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    assert!(quiesce_notices(&drain_persisting(&mut node, &mut store)).is_empty());
    deliver(&mut node, &store, 3, accepted(last));
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    assert_eq!(
        quiesce_notices(&drain_persisting(&mut node, &mut store)).len(),
        2
    );
    assert!(node.is_quiescent());

    // A vote request of a later term (ignored in the check-quorum lease) wakes it, with no
    // heartbeat of the term it may be about to leave.
    let vote: Msg4 = raftlet::Message {
        from: NodeId(3),
        to: NodeId(1),
        term: node.term().next(),
        body: Body::VoteRequest {
            pre_vote: true,
            last_index: last,
            last_term: node.term(),
        },
    };
    node.step(&vote, &store).unwrap();
    assert!(!node.is_quiescent());
    assert!(
        drain_persisting(&mut node, &mut store)
            .iter()
            .all(|m| !matches!(m.body, Body::Heartbeat { .. }))
    );
    // Awake, it ticks again: its next heartbeat tick quiesces it once more.
    node.tick(&store);
    assert_eq!(
        quiesce_notices(&drain_persisting(&mut node, &mut store)).len(),
        2
    );
}

/// A quiescent leader's check-quorum window starts over when it wakes, with no follower
/// counted active from before it slept: woken by work its followers never answer, it steps
/// down one election timeout later (not two).
#[test]
fn a_woken_leader_counts_only_followers_heard_since_it_woke() {
    let (mut node, mut store) = lone_leader_with(|c| c.quiesce = true);
    assert!(node.peers_progress().all(|p| p.recent_active));
    node.tick(&store);
    drain_persisting(&mut node, &mut store);
    assert!(node.is_quiescent());
    // Long asleep, then a proposal.
    for _ in 0..25 {
        node.tick(&store);
    }
    node.propose(7, &store).unwrap();
    assert!(!node.is_quiescent());
    assert!(
        node.peers_progress().all(|p| !p.recent_active),
        "followers counted active from before the leader slept"
    );
    drain_persisting(&mut node, &mut store);
    for _ in 0..9 {
        node.tick(&store);
    }
    assert_eq!(node.role(), Role::Leader);
    node.tick(&store);
    assert_eq!(node.role(), Role::Follower);
    assert_eq!(node.stats().quorum_lost, 1);
}

/// A follower quiesces on its leader's notice only when it holds every entry the notice names
/// and has nothing pending; otherwise it takes the notice as a heartbeat (and answers it). A
/// quiescent follower ignores ticks, and any message of its leader wakes it.
#[test]
fn a_follower_quiesces_only_holding_what_its_leader_names() {
    let (mut node, mut store) = follower_committed_to_2(|c| c.quiesce = true);
    let notice = |commit: u64| -> Msg4 {
        raftlet::Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(1),
            body: Body::Quiesce {
                commit: Index(commit),
            },
        }
    };
    // It holds entries up to 3: a notice naming 4 is a heartbeat.
    node.step(&notice(4), &store).unwrap();
    assert!(!node.is_quiescent());
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, Body::HeartbeatResponse);
    assert_eq!(
        node.commit_index(),
        Index(3),
        "the commit index was not adopted"
    );
    // One naming 3: it quiesces, silently, its election timer restarted.
    for _ in 0..5 {
        node.tick(&store);
    }
    node.step(&notice(3), &store).unwrap();
    assert!(node.is_quiescent());
    assert!(drain_persisting(&mut node, &mut store).is_empty());
    assert_eq!(
        node.ticks_until_election(),
        Some(node.election_timeout_ticks())
    );
    for _ in 0..1000 {
        node.tick(&store);
    }
    assert_eq!(
        node.role(),
        Role::Follower,
        "a quiescent follower campaigned"
    );
    assert_eq!(
        node.ticks_until_election(),
        Some(node.election_timeout_ticks())
    );
    // A heartbeat wakes it.
    node.step(&heartbeat(2, Term(1)), &store).unwrap();
    assert!(!node.is_quiescent());
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    assert_eq!(
        node.ticks_until_election(),
        Some(node.election_timeout_ticks() - 1)
    );

    // With a read pending it stays awake.
    node.step(&notice(3), &store).unwrap();
    assert!(node.is_quiescent());
    node.read_index(raftlet::ReadId(9), &store).unwrap();
    assert!(!node.is_quiescent(), "a read left it asleep");
    drain_persisting(&mut node, &mut store);
    node.step(&notice(3), &store).unwrap();
    assert!(!node.is_quiescent(), "quiesced with a read pending");

    // Without `quiesce` configured, a notice is a heartbeat.
    let (mut node, mut store) = follower_committed_to_2(|_| {});
    node.step(&notice(3), &store).unwrap();
    assert!(!node.is_quiescent());
    assert_eq!(
        drain_persisting(&mut node, &mut store)[0].body,
        Body::HeartbeatResponse
    );
}

/// Node 3 asks node 1 for a pre-vote for term 2, its log ending at index 3 of term 1.
fn pre_vote_of_3_at_term_2() -> Msg4 {
    raftlet::Message {
        from: NodeId(3),
        to: NodeId(1),
        term: Term(2),
        body: Body::VoteRequest {
            pre_vote: true,
            last_index: Index(3),
            last_term: Term(1),
        },
    }
}

/// The runner's report that a quiescent follower's leader's process failed wakes it and makes
/// it forget that leader, so it grants (pre-)votes at once; a report about another peer, or of
/// a lost connection to the leader, does nothing.
#[test]
fn a_report_of_its_leaders_failure_wakes_a_quiescent_follower() {
    let (mut node, mut store) = follower_committed_to_2(|c| c.quiesce = true);
    let notice: Msg4 = raftlet::Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        body: Body::Quiesce { commit: Index(3) },
    };
    node.step(&notice, &store).unwrap();
    assert!(node.is_quiescent());
    node.report_peer_down(NodeId(3));
    // A lost connection is not a failed process.
    node.report_unreachable(NodeId(2));
    assert!(node.is_quiescent());
    assert_eq!(node.leader(), Some(NodeId(2)));
    node.report_peer_down(NodeId(2));
    assert!(!node.is_quiescent());
    assert_eq!(node.leader(), None);
    assert_eq!(node.stats().woken, 1);
    node.step(&pre_vote_of_3_at_term_2(), &store).unwrap();
    let sent = drain_persisting(&mut node, &mut store);
    assert_eq!(
        sent.iter().map(|m| m.body.clone()).collect::<Vec<_>>(),
        [Body::VoteResponse {
            pre_vote: true,
            granted: true
        }]
    );
}

/// An awake follower told that its leader's process failed forgets the leader (and so grants
/// votes at once) unless lease reads are on: then it keeps refusing votes until its election
/// timer runs out, since a lease may rest on that refusal.
#[test]
fn a_report_of_its_leaders_failure_ends_the_check_quorum_lease_only_without_lease_reads() {
    for lease in [false, true] {
        let (mut node, mut store) = follower_committed_to_2(|c| {
            c.lease_reads = lease;
        });
        assert_eq!(node.leader(), Some(NodeId(2)));
        node.report_peer_down(NodeId(3));
        assert_eq!(node.leader(), Some(NodeId(2)));
        node.report_peer_down(NodeId(2));
        assert_eq!(node.leader(), if lease { Some(NodeId(2)) } else { None });
        node.step(&pre_vote_of_3_at_term_2(), &store).unwrap();
        let granted = drain_persisting(&mut node, &mut store)
            .iter()
            .any(|m| matches!(m.body, Body::VoteResponse { granted: true, .. }));
        assert_eq!(granted, !lease, "lease reads {lease}");
        assert_eq!(node.stats().ignored_in_lease, u64::from(lease));
    }
}

/// A quiescent leader sleeps through acknowledgements, but not through one that leaves it with
/// work: a follower answering that it is installing a snapshot (notify mode) wakes it, and it
/// starts the follower's round.
#[test]
fn an_acknowledgement_that_leaves_work_wakes_a_quiescent_leader() {
    let (mut node, mut store) = lone_leader_with(|c| {
        c.quiesce = true;
        c.snapshot_mode = raftlet::SnapshotMode::Notify;
    });
    node.tick(&store);
    drain_persisting(&mut node, &mut store);
    assert!(node.is_quiescent());
    deliver(
        &mut node,
        &store,
        2,
        Body::AppendResponse(raftlet::AppendResult::InstallInProgress),
    );
    assert!(!node.is_quiescent(), "slept through a follower's install");
    assert_eq!(
        node.peer_progress(NodeId(2)).map(|p| p.state),
        Some(raftlet::FlowState::Snapshot)
    );
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter()
            .any(|m| m.to == NodeId(2) && matches!(m.body, Body::InstallSnapshot { .. })),
        "{sent:?}"
    );
    // Not quiescable while it is: its next heartbeat tick heartbeats.
    node.tick(&store);
    assert!(quiesce_notices(&drain_persisting(&mut node, &mut store)).is_empty());
}

/// A leader told that a follower's process failed quiesces without waiting for it to catch up,
/// until it hears from that follower again.
#[test]
fn a_leader_quiesces_without_a_member_reported_down() {
    let (mut node, mut store) = lone_leader_with(|c| c.quiesce = true);
    node.propose(7, &store).unwrap();
    drain_persisting(&mut node, &mut store);
    let last = node.last_index();
    deliver(&mut node, &store, 2, accepted(last));
    drain_persisting(&mut node, &mut store);
    assert_eq!(node.commit_index(), last);
    // Follower 3 lags: no quiescence.
    node.tick(&store);
    assert!(quiesce_notices(&drain_persisting(&mut node, &mut store)).is_empty());
    // Reported down: the leader quiesces, its notice only to the follower that holds every
    // entry (a commit index past what a follower is known to hold must never reach it).
    node.report_peer_down(NodeId(3));
    node.tick(&store);
    assert_eq!(
        quiesce_notices(&drain_persisting(&mut node, &mut store)),
        [(NodeId(2), last)]
    );
    assert!(node.is_quiescent());
    // A campaign of the member reported down (restarted) wakes the leader and clears the
    // report: the leader heartbeats at its next heartbeat tick instead of quiescing.
    let pre_vote: Msg4 = raftlet::Message {
        from: NodeId(3),
        to: NodeId(1),
        term: node.term().next(),
        body: Body::VoteRequest {
            pre_vote: true,
            last_index: Index(1),
            last_term: node.term(),
        },
    };
    node.step(&pre_vote, &store).unwrap();
    assert!(!node.is_quiescent());
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    let sent = drain_persisting(&mut node, &mut store);
    assert!(quiesce_notices(&sent).is_empty(), "{sent:?}");
    assert!(sent.iter().any(|m| m.to == NodeId(3)));
    // Reported down again, then quiescent again.
    node.report_peer_down(NodeId(3));
    node.tick(&store);
    assert_eq!(
        quiesce_notices(&drain_persisting(&mut node, &mut store)).len(),
        1
    );
    assert!(node.is_quiescent());
    // The runner hears from its process again (a learner or a follower that cannot campaign
    // would not say so itself): the leader wakes and heartbeats it.
    node.report_peer_up(NodeId(2));
    assert!(
        node.is_quiescent(),
        "a report about a member never reported down woke it"
    );
    node.report_peer_up(NodeId(3));
    assert!(!node.is_quiescent());
    let sent = drain_persisting(&mut node, &mut store);
    assert!(
        sent.iter()
            .any(|m| m.to == NodeId(3) && matches!(m.body, Body::Heartbeat { .. })),
        "{sent:?}"
    );
    node.report_peer_down(NodeId(3));
    node.tick(&store);
    assert_eq!(
        quiesce_notices(&drain_persisting(&mut node, &mut store)).len(),
        1
    );
    assert!(node.is_quiescent());
    // Back: its first answer clears the report; awake again, the leader waits for it.
    node.send_heartbeats();
    drain_persisting(&mut node, &mut store);
    deliver(&mut node, &store, 3, Body::HeartbeatResponse);
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    assert!(quiesce_notices(&drain_persisting(&mut node, &mut store)).is_empty());
    assert!(!node.is_quiescent());
    deliver(&mut node, &store, 3, accepted(last));
    drain_persisting(&mut node, &mut store);
    node.tick(&store);
    assert_eq!(
        quiesce_notices(&drain_persisting(&mut node, &mut store)).len(),
        2
    );
}
