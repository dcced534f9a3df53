//! Raft's safety properties, checked after every simulated event.
//!
//! * Election safety: at most one leader per term.
//! * Log matching: every (index, term) pair names one entry with one predecessor term, on every
//!   node, ever (checked incrementally as each node's log changes).
//! * Leader append-only: a leader never removes entries from its log during its term.
//! * Leader completeness: a new leader of term T holds every entry known committed before T.
//! * State-machine safety: every applied entry equals the globally committed entry at its index;
//!   applies are in order, none skipped, none repeated (per incarnation of a node).
//! * Commit index never decreases (per incarnation; it is volatile state).
//! * One vote per term per node, across restarts (observed on the wire).
//! * Committed means durable on a quorum: the last committed entry is on a majority of disks
//!   (of both halves of a joint configuration) of the configuration in effect at it, or of a
//!   later configuration some node adopted (a leader counts with the latest configuration in
//!   its log, which may be newer than the entry).
//! * Membership: every committed membership change follows from the configuration before it;
//!   a snapshot carries the membership in effect at its index.
//! * Snapshots: every snapshot a state machine is restored from or installs is exactly the
//!   committed prefix up to its index (same last term, same hash chain); after it, applies
//!   continue at the next index (no entry applied twice or skipped across an install).
//! * Persist-before-send: a vote grant or append acknowledgement leaves a node only when the
//!   state it acknowledges is in that node's durable storage.

use crate::common::SimNode;
use crate::common::SimSnapshot;
use crate::common::store::MemStore;
use raftlet::{
    AppendResult, Body, ConfChange, Entry, EntryData, Index, Membership, Message, NodeId, Role,
    Storage, Term,
};
use std::collections::{HashMap, HashSet};

/// A membership as the simulated application stores it: bit masks of voters, outgoing voters
/// and learners (node ids 1..=8), and the auto-leave flag.
pub fn encode_membership(m: &Membership<5>) -> u64 {
    let mask = |ids: &[NodeId]| ids.iter().fold(0u64, |a, id| a | 1 << (id.0 - 1));
    mask(m.voters())
        | mask(m.outgoing()) << 8
        | mask(m.learners()) << 16
        | u64::from(m.auto_leave()) << 24
}

pub fn decode_membership(x: u64) -> Membership<5> {
    let ids = |mask: u64| -> Vec<NodeId> {
        (0..8)
            .filter(|b| mask >> b & 1 == 1)
            .map(|b| NodeId(b + 1))
            .collect()
    };
    Membership::from_parts(
        &ids(x & 0xFF),
        &ids(x >> 8 & 0xFF),
        &ids(x >> 16 & 0xFF),
        x >> 24 & 1 == 1,
    )
    .expect("a stored membership decodes")
}

/// A stable key of a membership change (for hashing and comparing entries).
pub fn conf_key(c: &ConfChange) -> u64 {
    let mut k = 0x4D45_4D42u64 ^ u64::from(c.is_leave_joint());
    for ch in c.changes() {
        let code = match ch {
            raftlet::Change::AddVoter(_) => 1,
            raftlet::Change::AddLearner(_) => 2,
            raftlet::Change::Remove(_) => 3,
        };
        k = k.wrapping_mul(31).wrapping_add(code * 64 + ch.node().0);
    }
    k | 1 << 63
}

/// The state-machine hash after applying `e` to a state whose hash is `h`.
pub fn chain(h: u64, e: &Entry<u64>) -> u64 {
    let p = match &e.data {
        EntryData::Normal(p) => p.wrapping_add(1),
        EntryData::Noop => 0,
        EntryData::Membership(c) => conf_key(c),
    };
    let mut x = h
        ^ e.index.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ e.term.0.rotate_left(17)
        ^ p.rotate_left(31);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 27)
}

#[derive(Default)]
struct NodeView {
    /// The index the node's log starts after (its snapshot base), and its term.
    base: Index,
    base_term: Term,
    /// Verified terms of the node's log after `base`, index base+1+k at [k].
    terms: Vec<Term>,
    last_commit: Index,
    applied_last: Index,
    applied_payloads: HashSet<u64>,
    /// The term in which this incarnation was last seen leading.
    leading_term: Option<Term>,
}

pub struct Oracle {
    leaders: HashMap<Term, NodeId>,
    canonical: HashMap<(Index, Term), (Term, Option<u64>)>,
    /// The globally committed prefix, with the (upper bound of the) term it was committed in.
    committed: Vec<(Entry<u64>, Term)>,
    /// State-machine hash after each committed index: `prefix[i]` covers `1..=i`.
    prefix: Vec<u64>,
    votes: HashMap<(NodeId, Term), NodeId>,
    views: Vec<NodeView>,
    /// The membership after each committed membership entry (the initial one at index 0).
    committed_confs: Vec<(Index, Membership<5>)>,
    /// Every (index, membership) some node has used.
    seen_confs: Vec<(Index, Membership<5>)>,
    violation: Option<String>,
    pub checks: u64,
}

fn payload(e: &Entry<u64>) -> Option<u64> {
    match &e.data {
        EntryData::Normal(p) => Some(*p),
        EntryData::Noop => None,
        EntryData::Membership(c) => Some(conf_key(c)),
    }
}

fn normal(e: &Entry<u64>) -> Option<u64> {
    match e.data {
        EntryData::Normal(p) => Some(p),
        _ => None,
    }
}

impl Oracle {
    pub fn new(n: usize, initial: Membership<5>) -> Self {
        Self {
            committed_confs: vec![(Index(0), initial.clone())],
            seen_confs: vec![(Index(0), initial)],
            leaders: HashMap::new(),
            canonical: HashMap::new(),
            committed: Vec::new(),
            prefix: vec![0],
            votes: HashMap::new(),
            views: (0..n).map(|_| NodeView::default()).collect(),
            violation: None,
            checks: 0,
        }
    }

    fn fail(&mut self, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(msg);
        }
    }

    pub fn take_violation(&mut self) -> Option<String> {
        self.violation.take()
    }

    /// The membership in effect at `index` of the committed prefix.
    pub fn membership_at(&self, index: Index) -> &Membership<5> {
        &self
            .committed_confs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .expect("the initial membership is at 0")
            .1
    }

    /// The membership of the newest committed configuration.
    pub fn committed_membership(&self) -> (Index, &Membership<5>) {
        let (i, m) = self.committed_confs.last().expect("initial");
        (*i, m)
    }

    fn push_committed(&mut self, e: Entry<u64>, term: Term) {
        if let EntryData::Membership(c) = &e.data {
            let before = self.committed_confs.last().expect("initial").1.clone();
            match before.apply(c) {
                Ok(next) => self.committed_confs.push((e.index, next)),
                Err(err) => self.fail(format!(
                    "committed membership change {c:?} at {} cannot follow {before:?}: {err}",
                    e.index
                )),
            }
        }
        let h = chain(*self.prefix.last().unwrap(), &e);
        self.prefix.push(h);
        self.committed.push((e, term));
    }

    /// A state machine was restored from (or installed) `snap`: it must be exactly the committed
    /// prefix, and applies continue right after it.
    pub fn on_restore(&mut self, id: NodeId, snap: &SimSnapshot) -> Option<String> {
        let i = snap.id.index.0 as usize;
        let v = &mut self.views[id.0 as usize - 1];
        v.applied_last = snap.id.index;
        v.applied_payloads.clear();
        if i == 0 {
            return None;
        }
        if i > self.committed.len() {
            return Some(format!(
                "{id} restored snapshot {:?} beyond the committed prefix {}",
                snap.id,
                self.committed.len()
            ));
        }
        if self.committed[i - 1].0.term != snap.id.term || self.prefix[i] != snap.hash {
            return Some(format!(
                "{id} restored snapshot {:?} that is not the committed prefix",
                snap.id
            ));
        }
        let m = decode_membership(snap.conf);
        if &m != self.membership_at(snap.id.index) {
            return Some(format!(
                "{id} restored snapshot {:?} with membership {m:?}, but {:?} is in effect there",
                snap.id,
                self.membership_at(snap.id.index)
            ));
        }
        let v = &mut self.views[id.0 as usize - 1];
        for (e, _) in &self.committed[..i] {
            if let Some(p) = normal(e) {
                v.applied_payloads.insert(p);
            }
        }
        None
    }

    /// Checks that the newest committed entry is in a quorum of the durable images.
    pub fn check_committed_durable(&mut self, disks: &[&MemStore]) -> Option<String> {
        let (e, _) = self.committed.last()?;
        // A durable snapshot at or past the entry covers it (snapshots are of committed state).
        let has = |id: NodeId| {
            disks
                .get(id.0 as usize - 1)
                .is_some_and(|d| d.term(e.index) == Some(e.term) || d.snapshot().index > e.index)
        };
        let at = self.membership_at(e.index).clone();
        let later = self
            .seen_confs
            .iter()
            .filter(|(i, _)| *i > e.index)
            .map(|(_, m)| m);
        let quorum = |m: &Membership<5>| {
            let half = |ids: &[NodeId]| {
                ids.is_empty() || ids.iter().filter(|id| has(**id)).count() > ids.len() / 2
            };
            half(m.voters()) && half(m.outgoing())
        };
        if quorum(&at) || later.clone().any(quorum) {
            return None;
        }
        let holders: Vec<u64> = (1..=disks.len() as u64)
            .filter(|&i| has(NodeId(i)))
            .collect();
        Some(format!(
            "committed entry {e:?} is durable only on {holders:?}, not on a quorum of {at:?} or of a later configuration"
        ))
    }

    /// How many terms had a leader.
    pub fn leader_terms(&self) -> u64 {
        self.leaders.len() as u64
    }

    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    pub fn applied_payload(&self, id: NodeId, p: u64) -> bool {
        self.views[id.0 as usize - 1].applied_payloads.contains(&p)
    }

    pub fn on_crash(&mut self, id: NodeId) {
        self.views[id.0 as usize - 1] = NodeView::default();
    }

    /// Checks a message as it leaves a node whose durable storage is `durable`.
    pub fn on_send<E>(&mut self, msg: &Message<u64, E>, durable: &MemStore) {
        match &msg.body {
            Body::VoteResponse {
                pre_vote: false,
                granted: true,
            } => {
                let hs = durable.hard_state();
                if hs.term < msg.term || (hs.term == msg.term && hs.vote != Some(msg.to)) {
                    self.fail(format!(
                        "persist-before-send: {} granted its vote in term {} to {} but its durable hard state is {:?}",
                        msg.from, msg.term, msg.to, hs
                    ));
                }
                if let Some(prev) = self.votes.insert((msg.from, msg.term), msg.to)
                    && prev != msg.to
                {
                    self.fail(format!(
                        "double vote: {} voted for {} and {} in term {}",
                        msg.from, prev, msg.to, msg.term
                    ));
                }
            }
            Body::AppendResponse(AppendResult::Accepted { match_index })
                if durable.last_index() < *match_index || durable.hard_state().term < msg.term =>
            {
                self.fail(format!(
                    "persist-before-send: {} acknowledged index {} in term {} with durable last index {} and term {}",
                    msg.from,
                    match_index,
                    msg.term,
                    durable.last_index(),
                    durable.hard_state().term
                ));
            }
            _ => {}
        }
    }

    /// An entry handed to node `id`'s state machine, while the node was at `node_term`.
    pub fn on_apply(&mut self, id: NodeId, e: &Entry<u64>, node_term: Term) {
        let v = &mut self.views[id.0 as usize - 1];
        if e.index != v.applied_last.next() {
            let last = v.applied_last;
            self.fail(format!(
                "apply order: {id} applied {} after {}",
                e.index, last
            ));
            return;
        }
        v.applied_last = e.index;
        if let Some(p) = normal(e)
            && !v.applied_payloads.insert(p)
        {
            self.fail(format!("{id} applied payload {p} twice"));
        }
        let i = e.index.0 as usize;
        if i <= self.committed.len() {
            let (c, _) = &self.committed[i - 1];
            if c != e {
                let c = c.clone();
                self.fail(format!(
                    "state-machine safety: {id} applied {e:?} but {c:?} is committed at that index"
                ));
            }
        } else if i == self.committed.len() + 1 {
            self.push_committed(e.clone(), node_term);
        } else {
            self.fail(format!(
                "{id} applied {} beyond the known committed prefix {}",
                i,
                self.committed.len()
            ));
        }
    }

    /// Checks the node's current state; returns a violation description, if any.
    pub fn check_node(&mut self, node: &SimNode, durable: &MemStore) -> Option<String> {
        self.checks += 1;
        let id = node.id();
        let term = node.term();
        let is_leader = node.role() == Role::Leader;

        let conf = (node.membership_index(), node.membership().clone());
        if !self.seen_confs.contains(&conf) {
            self.seen_confs.push(conf);
        }

        // Election safety (one leader per term: never two leaders elected by two majorities).
        if is_leader
            && let Some(other) = self.leaders.insert(term, id)
            && other != id
        {
            return Some(format!(
                "election safety: {other} and {id} both led term {term}"
            ));
        }

        // Log: verify what changed since the last check.
        let ix = id.0 as usize - 1;
        let start = node.log_start();
        if self.views[ix].base != start.index || self.views[ix].base_term != start.term {
            // Compacted or reset to a snapshot: the base must be a committed entry.
            let b = start.index.0 as usize;
            if b > 0 && (b > self.committed.len() || self.committed[b - 1].0.term != start.term) {
                return Some(format!(
                    "{id}'s log starts after {start:?}, which is not committed"
                ));
            }
            let v = &mut self.views[ix];
            let keep = (start.index.0.saturating_sub(v.base.0) as usize).min(v.terms.len());
            if start.index >= v.base
                && v.terms
                    .get(keep.wrapping_sub(1))
                    .is_none_or(|t| keep == 0 || *t == start.term)
            {
                v.terms.drain(..keep);
            } else {
                v.terms.clear();
            }
            v.base = start.index;
            v.base_term = start.term;
        }
        let base = self.views[ix].base.0 as usize;
        let last = node.last_index().0 as usize;
        let mut truncated = false;
        {
            let v = &mut self.views[ix];
            if base + v.terms.len() > last {
                v.terms.truncate(last.saturating_sub(base));
                truncated = true;
            }
            while let Some(&t) = v.terms.last() {
                if node.term_at(Index((base + v.terms.len()) as u64), durable) == Some(t) {
                    break;
                }
                v.terms.pop();
                truncated = true;
            }
        }
        if truncated && is_leader && self.views[ix].leading_term == Some(term) {
            return Some(format!(
                "leader append-only: leader {id} of term {term} truncated its log"
            ));
        }
        while base + self.views[ix].terms.len() < last {
            let i = Index((base + self.views[ix].terms.len()) as u64 + 1);
            let Some(e) = node.entry_at(i, durable) else {
                return Some(format!("{id} cannot read its own entry {i} (last {last})"));
            };
            let prev_term = self.views[ix]
                .terms
                .last()
                .copied()
                .unwrap_or(self.views[ix].base_term);
            if e.index != i || e.term < prev_term || e.term > term {
                return Some(format!(
                    "{id} holds an impossible entry {e:?} at {i} (prev term {prev_term}, node term {term})"
                ));
            }
            match self.canonical.get(&(i, e.term)) {
                Some(&(pt, p)) if pt != prev_term || p != payload(&e) => {
                    return Some(format!(
                        "log matching: {id} has {e:?} after term {prev_term}, but ({i}, {}) was first seen after term {pt} with payload {p:?}",
                        e.term
                    ));
                }
                Some(_) => {}
                None => {
                    self.canonical.insert((i, e.term), (prev_term, payload(&e)));
                }
            }
            self.views[ix].terms.push(e.term);
        }

        // Commit index: monotonic, within the log, and consistent with the global prefix.
        let commit = node.commit_index();
        let v = &mut self.views[ix];
        if commit < v.last_commit {
            return Some(format!(
                "{id} commit index went back from {} to {commit}",
                v.last_commit
            ));
        }
        v.last_commit = commit;
        if commit > node.last_index() {
            return Some(format!(
                "{id} commit {commit} beyond its last index {}",
                node.last_index()
            ));
        }
        let c = commit.0 as usize;
        let known = c.min(self.committed.len());
        if known > base {
            let (ce, _) = &self.committed[known - 1];
            if self.views[ix].terms.get(known - 1 - base) != Some(&ce.term) {
                return Some(format!(
                    "state-machine safety: {id} (commit {commit}) disagrees with the committed entry {ce:?}"
                ));
            }
        }
        for i in self.committed.len() + 1..=c {
            let Some(e) = node.entry_at(Index(i as u64), durable) else {
                return Some(format!(
                    "{id} committed {i} but cannot read it (its log starts after {})",
                    node.log_start().index
                ));
            };
            self.push_committed(e, term);
        }

        // Leader completeness, once per term of leadership.
        if is_leader && self.views[ix].leading_term != Some(term) {
            self.views[ix].leading_term = Some(term);
            for (ce, ct) in &self.committed[base.min(self.committed.len())..] {
                if *ct < term && node.term_at(ce.index, durable) != Some(ce.term) {
                    return Some(format!(
                        "leader completeness: {id} leads term {term} without committed entry {ce:?} (committed by term {ct})"
                    ));
                }
            }
        }
        None
    }
}
