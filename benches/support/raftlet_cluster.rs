//! A lean, single-threaded, in-memory 3-node raftlet cluster: messages wait in a queue, the
//! entries of appends beside them in one arena (copied out of the sender when its send is
//! polled, as a transport copies them into a frame; the arena is reused once the queue is
//! empty), storage is a pre-reserved `Vec`, every persist is acknowledged at once. The
//! benchmarks take no snapshots, so no message carries chunk bytes. Shared by the
//! throughput benchmark, the instruction-count benchmark and the zero-allocation test, so all
//! measure the same runner.
//!
//! It drives raftlet as its documentation says a runner does: after every input (a delivered
//! message, a proposal) it drains `poll_action` and executes every action.
#![allow(dead_code, unreachable_pub)]

use raftlet::{
    Action, Config, Entry, EntryData, HardState, Index, Node, NodeId, Queued, Role, Storage, Term,
};
use std::collections::VecDeque;
use std::ops::Range;

/// Entries per append message: the same as the `DefaultNode` profile.
pub const BATCH: usize = raftlet::DEFAULT_BATCH;
/// The benchmark profile: 3 voters, 1024 unstable entries, 8 entries per message, 8 appends in
/// flight per follower, 64 queued sends.
pub type BenchNode<P> = Node<P, 3, 1024, BATCH, 8, 64>;

pub struct Store<P> {
    pub hs: HardState,
    pub log: Vec<Entry<P>>,
}

impl<P: Clone> Storage<P> for Store<P> {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.log.len() as u64)
    }
    fn term(&self, i: Index) -> Option<Term> {
        if i.0 == 0 {
            Some(Term(0))
        } else {
            self.log.get(i.0 as usize - 1).map(|e| e.term)
        }
    }
    fn entry(&self, i: Index) -> Option<Entry<P>> {
        i.0.checked_sub(1)
            .and_then(|k| self.log.get(k as usize))
            .cloned()
    }
}

pub struct Cluster<P> {
    pub nodes: Vec<Box<BenchNode<P>>>,
    pub stores: Vec<Store<P>>,
    /// Messages in flight, as the sender queued them; an append's entries are `arena[run]`.
    pub net: VecDeque<(Queued, Range<usize>)>,
    pub arena: Vec<Entry<P>>,
    /// Normal entries applied, per node.
    pub applied: [u64; 3],
    pub leader: usize,
    /// Messages stepped, appends among them, and the entries those appends carried.
    pub stepped: u64,
    pub appends: u64,
    pub append_entries: u64,
    /// The most entries one append carried.
    pub max_append: usize,
}

impl<P: Clone> Cluster<P> {
    /// Three nodes whose logs can grow to `capacity` entries without reallocating.
    pub fn new(capacity: usize) -> Self {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let stores: Vec<Store<P>> = (0..3)
            .map(|_| Store {
                hs: HardState::default(),
                log: Vec::with_capacity(capacity),
            })
            .collect();
        let nodes = ids
            .iter()
            .zip(&stores)
            .map(|(&id, s)| {
                let mut c = Config::new(id, &ids).unwrap();
                c.election_ticks = 10;
                c.heartbeat_ticks = 3;
                Box::new(BenchNode::new(c, s).unwrap())
            })
            .collect();
        Self {
            nodes,
            stores,
            net: VecDeque::with_capacity(4096),
            arena: Vec::with_capacity(4096),
            applied: [0; 3],
            leader: 0,
            stepped: 0,
            appends: 0,
            append_entries: 0,
            max_append: 0,
        }
    }

    /// Elects node 1 and lets the no-op of its term commit everywhere.
    pub fn elect(&mut self) {
        self.nodes[0].campaign(&self.stores[0]);
        self.run();
        assert_eq!(self.nodes[0].role(), Role::Leader);
        self.leader = 0;
    }

    /// Executes every action of node `i`.
    fn drain(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let store = &mut self.stores[i];
        while let Some(a) = node.poll_action() {
            match a {
                Action::Send(out) => {
                    // As a transport copies them into a frame: the stored ones from the store,
                    // the rest from the node, each as slices.
                    let start = self.arena.len();
                    if let Some((first, last)) = out.stored() {
                        self.arena
                            .extend_from_slice(&store.log[first.0 as usize - 1..last.0 as usize]);
                    }
                    let (a, b) = out.tail().as_slices();
                    for run in [a, b] {
                        if !run.is_empty() {
                            self.arena.extend_from_slice(run);
                        }
                    }
                    self.net
                        .push_back((*out.message(), start..self.arena.len()));
                }
                Action::Persist(p) => {
                    let token = p.token;
                    if let Some(hs) = p.hard_state {
                        store.hs = *hs;
                    }
                    if let Some(first) = p.entries.first() {
                        store.log.truncate(first.index.0 as usize - 1);
                    }
                    // As a store appends a batch (raft-rs' `MemStorage::append` does the same);
                    // the second slice only where the node's ring wrapped.
                    let (a, b) = p.entries.as_slices();
                    store.log.extend_from_slice(a);
                    if !b.is_empty() {
                        store.log.extend_from_slice(b);
                    }
                    node.persisted(token, store).unwrap();
                }
                Action::Apply { first, last } => {
                    for e in &store.log[first.0 as usize - 1..last.0 as usize] {
                        if matches!(e.data, EntryData::Normal(_)) {
                            self.applied[i] += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs until no node has anything to do and no message is in flight.
    pub fn run(&mut self) {
        for i in 0..3 {
            self.drain(i);
        }
        // A message is the only input its receiver had: drain that node after stepping it.
        while let Some((m, run)) = self.net.pop_front() {
            let to = m.to.0 as usize - 1;
            self.stepped += 1;
            if matches!(m.body, raftlet::Body::Append { .. }) {
                self.appends += 1;
                self.append_entries += run.len() as u64;
                self.max_append = self.max_append.max(run.len());
            }
            // No snapshots in the benchmarks: no chunk bytes. The entries were copied for this
            // delivery, as a transport decodes a frame: the receiver takes what it appends.
            let _ =
                self.nodes[to].step_parts_taking(&m, &mut self.arena[run], None, &self.stores[to]);
            self.drain(to);
        }
        self.arena.clear();
    }

    /// Proposes a batch at the leader.
    pub fn propose(&mut self, batch: impl IntoIterator<Item = P>) {
        let l = self.leader;
        for p in batch {
            self.nodes[l]
                .propose(p, &self.stores[l])
                .unwrap_or_else(|_| panic!("proposal refused"));
        }
    }

    /// Proposes a batch at the leader as one call ([`Node::propose_batch`]): the batch leaves in
    /// full appends.
    pub fn propose_batch<I: ExactSizeIterator<Item = P>>(&mut self, batch: I) {
        let l = self.leader;
        if self.nodes[l].propose_batch(batch, &self.stores[l]).is_err() {
            panic!("batch refused");
        }
    }

    /// One tick on every node (heartbeats).
    pub fn tick(&mut self) {
        for i in 0..3 {
            self.nodes[i].tick(&self.stores[i]);
        }
    }
}
