//! Bytes from a hostile peer, decoded and stepped into a live node (a follower of a 3-node
//! cluster with some history, or its leader): never a panic, and the node's own invariants hold.
//! The input is a sequence of length-prefixed frames; the first byte picks the node's role (and
//! whether it steps by borrowing or by taking the entries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlet::wire::frame::LengthPrefixedReader;
use raftlet::wire::{Codec, max_frame_len};
use raftlet::{Action, Config, Entry, EntryData, HardState, Index, Node, NodeId, Storage, Term};

type N = Node<u64, 5, 32, 4, 4, 32>;
const MAX: usize = max_frame_len::<u64, 4>();
const CODEC: Codec = Codec::new(0xC1, MAX);

#[derive(Default)]
struct Mem {
    hs: HardState,
    log: Vec<Entry<u64>>,
}
impl Storage<u64> for Mem {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.log.len() as u64)
    }
    fn term(&self, i: Index) -> Option<Term> {
        if i.0 == 0 { Some(Term(0)) } else { self.log.get(i.0 as usize - 1).map(|e| e.term) }
    }
    fn entry(&self, i: Index) -> Option<Entry<u64>> {
        i.0.checked_sub(1).and_then(|k| self.log.get(k as usize)).cloned()
    }
}

fn drain(node: &mut N, store: &mut Mem) {
    while let Some(a) = node.poll_action() {
        match a {
            Action::Send(_) => {}
            Action::Persist(p) => {
                let token = p.token;
                if let Some(hs) = p.hard_state {
                    store.hs = *hs;
                }
                if let Some(first) = p.entries.first() {
                    store.log.truncate(first.index.0 as usize - 1);
                }
                store.log.extend(p.entries.iter().cloned());
                node.persisted(token, store).expect("in-order ack");
            }
            Action::Apply { last, .. } => {
                assert!(last <= node.commit_index() && last.0 as usize <= store.log.len());
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&role, frames)) = data.split_first() else { return };
    // Node 1 with a log of 6 entries over terms 1-2.
    let mut store = Mem { hs: HardState { term: Term(2), vote: Some(NodeId(1)), pending_install: None }, log: Vec::new() };
    for i in 1..=6u64 {
        let term = Term(if i < 4 { 1 } else { 2 });
        store.log.push(Entry { term, index: Index(i), data: EntryData::Normal(i) });
    }
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let mut config = Config::new(NodeId(1), &voters).unwrap();
    config.pre_vote = role & 1 == 0;
    let mut node = N::new(config, &store).unwrap();
    if role & 2 == 2 {
        // Make it leader: campaign and grant itself the other votes.
        config_leader(&mut node, &mut store);
    }
    drain(&mut node, &mut store);
    let mut reader = LengthPrefixedReader::<MAX>::new();
    let mut input = frames;
    let (mut term, mut commit) = (node.term(), node.commit_index());
    while let Some(r) = reader.feed(&mut input) {
        let Ok(frame) = r else { continue };
        let Ok(mut msg) = CODEC.decode::<u64, heapless::Vec<raftlet::Entry<u64>, 4>>(frame) else { continue };
        // Both ways of stepping: the role byte's third bit has the node take appended entries.
        let _ = if role & 4 == 4 { node.step_taking(&mut msg, &store) } else { node.step(&msg, &store) };
        drain(&mut node, &mut store);
        node.tick(&store);
        drain(&mut node, &mut store);
        assert!(node.term() >= term && node.commit_index() >= commit);
        assert!(node.commit_index() <= node.last_index());
        (term, commit) = (node.term(), node.commit_index());
    }
});

fn config_leader(node: &mut N, store: &mut Mem) {
    use raftlet::{Body, Message};
    node.campaign(store);
    drain(node, store);
    let t = node.term();
    for from in [2, 3] {
        let body = Body::VoteResponse { pre_vote: true, granted: true };
        let m: Message<u64, &[raftlet::Entry<u64>]> = Message { from: NodeId(from), to: NodeId(1), term: Term(t.0 + 1), body };
        let _ = node.step(&m, store);
        drain(node, store);
    }
    let t = node.term();
    for from in [2, 3] {
        let body = Body::VoteResponse { pre_vote: false, granted: true };
        let m: Message<u64, &[raftlet::Entry<u64>]> = Message { from: NodeId(from), to: NodeId(1), term: t, body };
        let _ = node.step(&m, store);
        drain(node, store);
    }
}
