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
//! * Committed means durable on a quorum: the last committed entry is on a majority of disks.
//! * Persist-before-send: a vote grant or append acknowledgement leaves a node only when the
//!   state it acknowledges is in that node's durable storage.

use crate::common::SimNode;
use crate::common::store::MemStore;
use raftlet::{AppendResult, Body, Entry, Index, Message, NodeId, Role, Storage, Term};
use std::collections::{HashMap, HashSet};

#[derive(Default)]
struct NodeView {
    /// Verified terms of the node's log, index i at [i-1].
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
    votes: HashMap<(NodeId, Term), NodeId>,
    views: Vec<NodeView>,
    violation: Option<String>,
    pub checks: u64,
}

fn payload(e: &Entry<u64>) -> Option<u64> {
    match e.data {
        raftlet::EntryData::Normal(p) => Some(p),
        raftlet::EntryData::Noop => None,
    }
}

impl Oracle {
    pub fn new(n: usize) -> Self {
        Self {
            leaders: HashMap::new(),
            canonical: HashMap::new(),
            committed: Vec::new(),
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

    /// Checks that the newest committed entry is in a majority of the durable images.
    pub fn check_committed_durable<'a>(
        &mut self,
        disks: impl Iterator<Item = &'a MemStore>,
    ) -> Option<String> {
        let (e, _) = self.committed.last()?;
        let (mut have, mut n) = (0, 0);
        for d in disks {
            n += 1;
            if d.term(e.index) == Some(e.term) {
                have += 1;
            }
        }
        (have < n / 2 + 1)
            .then(|| format!("committed entry {e:?} is durable on only {have} of {n} nodes"))
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
    pub fn on_send<const B: usize>(&mut self, msg: &Message<u64, B>, durable: &MemStore) {
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
        if let Some(p) = payload(e)
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
            self.committed.push((e.clone(), node_term));
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

        // Election safety.
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
        let last = node.last_index().0 as usize;
        let mut truncated = false;
        {
            let v = &mut self.views[ix];
            if v.terms.len() > last {
                v.terms.truncate(last);
                truncated = true;
            }
            while let Some(&t) = v.terms.last() {
                if node.term_at(Index(v.terms.len() as u64), durable) == Some(t) {
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
        while self.views[ix].terms.len() < last {
            let i = Index(self.views[ix].terms.len() as u64 + 1);
            let Some(e) = node.entry_at(i, durable) else {
                return Some(format!("{id} cannot read its own entry {i} (last {last})"));
            };
            let prev_term = self.views[ix].terms.last().copied().unwrap_or(Term(0));
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
        if known > 0 {
            let (ce, _) = &self.committed[known - 1];
            if self.views[ix].terms.get(known - 1) != Some(&ce.term) {
                return Some(format!(
                    "state-machine safety: {id} (commit {commit}) disagrees with the committed entry {ce:?}"
                ));
            }
        }
        for i in self.committed.len() + 1..=c {
            let e = node.entry_at(Index(i as u64), durable)?;
            self.committed.push((e, term));
        }

        // Leader completeness, once per term of leadership.
        if is_leader && self.views[ix].leading_term != Some(term) {
            self.views[ix].leading_term = Some(term);
            for (ce, ct) in &self.committed {
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
