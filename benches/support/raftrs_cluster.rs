//! A 3-node tikv/raft-rs (crate `raft` 0.7) cluster in one thread, driven the way raft-rs'
//! own examples drive it (`examples/five_mem_node`, the `RawNode` docs): every message that
//! has arrived is stepped, then each node that has a `Ready` handles exactly one: send its
//! messages, apply committed entries, append entries and the hard state to `MemStorage`, send
//! the persisted messages, `advance`, then the light ready's commit, messages and entries, and
//! `advance_apply`. Messages pass by value through an in-memory queue (no serialization).
//!
//! Why this is raft-rs at its fastest honest use: one `Ready` covers everything stepped since
//! the last one, so entries and messages are batched per round rather than per message, and
//! `MemStorage` is what its examples and tests use. Flow control matches raftlet's default
//! profile: at most [`ENTRIES_PER_MSG`] entries per append (through `max_size_per_msg`, which
//! raft-rs counts in bytes) and [`INFLIGHT`] appends in flight per follower.
#![allow(dead_code, unreachable_pub)]

use raft::prelude::*;
use raft::storage::MemStorage;
use std::collections::VecDeque;

/// Entries per append, as raftlet's `DEFAULT_BATCH`.
pub const ENTRIES_PER_MSG: u64 = 8;
/// Appends in flight per follower, as raftlet's default profile.
pub const INFLIGHT: usize = 8;

pub struct Cluster {
    pub nodes: Vec<RawNode<MemStorage>>,
    net: VecDeque<Message>,
    /// Normal entries applied, per node.
    pub applied: [u64; 3],
    /// Messages stepped, appends among them, and the entries those appends carried.
    pub stepped: u64,
    pub appends: u64,
    pub append_entries: u64,
    /// The most entries one append carried.
    pub max_append: usize,
}

/// `max_size_per_msg` that lets exactly [`ENTRIES_PER_MSG`] entries of `payload` bytes into one
/// append: raft-rs adds entries while their encoded size stays within the limit, and an entry's
/// size depends on its index (a varint). Eight of the widest entries the benchmark makes
/// (index below 2^21, term 1) fit; nine of the narrowest (index below 128) do not.
/// `Cluster::max_append` checks it.
fn max_size_for(payload: usize) -> u64 {
    use protobuf::Message as _;
    let size = |index: u64| {
        let e = Entry {
            data: vec![0u8; payload].into(),
            index,
            term: 1,
            ..Default::default()
        };
        u64::from(e.compute_size())
    };
    let limit = ENTRIES_PER_MSG * size((1 << 21) - 1);
    assert!(limit < (ENTRIES_PER_MSG + 1) * size(1));
    limit
}

impl Cluster {
    /// Three voters, node 1 elected, its empty entry applied everywhere.
    pub fn new(payload: usize) -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = (1..=3u64)
            .map(|id| {
                let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
                let cfg = Config {
                    id,
                    election_tick: 10,
                    heartbeat_tick: 3,
                    max_size_per_msg: max_size_for(payload),
                    max_inflight_msgs: INFLIGHT,
                    ..Default::default()
                };
                RawNode::new(&cfg, storage, &logger).unwrap()
            })
            .collect();
        let mut c = Self {
            nodes,
            net: VecDeque::with_capacity(4096),
            applied: [0; 3],
            stepped: 0,
            appends: 0,
            append_entries: 0,
            max_append: 0,
        };
        c.nodes[0].campaign().unwrap();
        c.run();
        assert_eq!(c.nodes[0].raft.state, raft::StateRole::Leader);
        c
    }

    fn apply(applied: &mut u64, entries: Vec<Entry>) {
        *applied += entries.iter().filter(|e| !e.data.is_empty()).count() as u64;
    }

    /// Handles one `Ready` of node `i`, as the raft-rs examples do.
    fn on_ready(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.has_ready() {
            return;
        }
        let mut ready = node.ready();
        self.net.extend(ready.take_messages());
        Self::apply(&mut self.applied[i], ready.take_committed_entries());
        if !ready.entries().is_empty() {
            node.mut_store().wl().append(ready.entries()).unwrap();
        }
        if let Some(hs) = ready.hs() {
            node.mut_store().wl().set_hardstate(hs.clone());
        }
        self.net.extend(ready.take_persisted_messages());
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            node.mut_store().wl().mut_hard_state().set_commit(commit);
        }
        self.net.extend(light.take_messages());
        Self::apply(&mut self.applied[i], light.take_committed_entries());
        node.advance_apply();
    }

    /// Rounds until quiet: step every message in flight, then one `Ready` per node.
    pub fn run(&mut self) {
        loop {
            let arrived = self.net.len();
            for _ in 0..arrived {
                let m = self.net.pop_front().unwrap();
                let to = m.to as usize - 1;
                self.stepped += 1;
                if m.get_msg_type() == MessageType::MsgAppend {
                    self.appends += 1;
                    self.append_entries += m.entries.len() as u64;
                    self.max_append = self.max_append.max(m.entries.len());
                }
                let _ = self.nodes[to].step(m);
            }
            for i in 0..3 {
                self.on_ready(i);
            }
            if self.net.is_empty() && !self.nodes.iter().any(RawNode::has_ready) {
                break;
            }
        }
    }

    /// One proposal of one command (`RawNode::propose`).
    pub fn propose(&mut self, data: &[u8]) {
        self.nodes[0].propose(vec![], data.to_vec()).unwrap();
    }

    /// One proposal message carrying `k` commands (`MsgPropose` with `k` entries, as etcd's and
    /// raft-rs' own batching proposers send).
    pub fn propose_batch(&mut self, data: &[u8], k: u64) {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = 1;
        m.to = 1;
        m.entries = (0..k)
            .map(|_| Entry {
                data: data.to_vec().into(),
                ..Default::default()
            })
            .collect::<Vec<_>>()
            .into();
        self.nodes[0].step(m).unwrap();
    }
}
