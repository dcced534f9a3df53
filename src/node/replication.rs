//! Log replication (Raft §5.3), commitment (§5.4.2), flow control and proposals.
//!
//! Invariants:
//! * a follower never truncates at or below its commit index (a message asking for that is
//!   ignored as malformed);
//! * a leader never overwrites or truncates its own log;
//! * a leader commits only an entry of its own term, once a quorum (itself counted only up to
//!   its durable index) has it;
//! * a follower adopts a commit index only up to the last entry it knows matches the leader.

use super::{Node, RoleState};
use crate::error::{ProposeError, StepError};
use crate::message::{AppendResult, Body, QueuedSend, Span};
use crate::progress::FlowState;
use crate::storage::Storage;
use crate::types::{Entry, EntryData, Index, NodeId, Term};

/// What a follower does with an append (see `plan_append`). Small, so that it moves for free:
/// the configurations an append brings (rare) are computed again when it is applied.
pub(super) enum AppendPlan {
    /// A snapshot install runs: refuse without moving the leader's next index.
    Installing,
    /// `prev` is below the commit index: acknowledge the commit index.
    BelowCommit,
    /// `prev` does not match: reject with a hint.
    Mismatch,
    /// Append `room` entries from `first_new` (truncating a conflicting tail first), then
    /// adopt the configurations they bring if `configs` (checked valid already).
    Append {
        first_new: usize,
        room: usize,
        configs: bool,
    },
}

impl<
    P,
    const PEERS: usize,
    const LOG: usize,
    const BATCH: usize,
    const INFLIGHT: usize,
    const OUT: usize,
    const READS: usize,
> Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>
where
    P: Clone,
{
    /// Proposes a command. On the leader it is appended to the log and replicated; the returned
    /// index is where it will commit, unless leadership is lost first (then the entry may be
    /// overwritten: watch the applied entries, not this index alone).
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] (naming the leader when known) or [`ProposeError::Full`];
    /// either way the payload is handed back.
    pub fn propose<S: Storage<P>>(
        &mut self,
        data: P,
        storage: &S,
    ) -> Result<Index, ProposeError<P>> {
        self.wake = true;
        if let Err(refusal) = self.may_propose(1) {
            return Err(refusal.with(data));
        }
        self.unquiesce();
        let index = self.append_normal(data);
        self.send_new_entries(storage);
        Ok(index)
    }

    /// Proposes every command of `batch` as consecutive entries, then sends once: the batch
    /// leaves in appends of up to `BATCH` entries, not one append per command (the equivalent of
    /// etcd's and raft-rs' proposal message carrying many entries). All or nothing: if the
    /// batch does not fit in the unstable log, or this node may not propose now, nothing is
    /// taken and the iterator is handed back untouched in the error. Returns the index of the
    /// first and of the last entry (`first > last` for an empty batch).
    ///
    /// # Errors
    /// As [`propose`](Self::propose); [`ProposeError::Full`] also when the batch is longer than
    /// the room left.
    pub fn propose_batch<I, S>(
        &mut self,
        batch: I,
        storage: &S,
    ) -> Result<(Index, Index), ProposeError<I>>
    where
        I: ExactSizeIterator<Item = P>,
        S: Storage<P>,
    {
        self.wake = true;
        if let Err(refusal) = self.may_propose(batch.len()) {
            return Err(refusal.with(batch));
        }
        self.unquiesce();
        let first = self.log.last_index().next();
        for data in batch {
            if self.log.room() == 0 {
                // An iterator that yields more than its `len()` said: the rest is dropped
                // rather than overflowing (a broken ExactSizeIterator, not back-pressure).
                break;
            }
            self.append_normal(data);
        }
        self.send_new_entries(storage);
        Ok((first, self.log.last_index()))
    }

    /// Whether this node may take `n` proposals now.
    fn may_propose(&mut self, n: usize) -> Result<(), Refusal> {
        let refusal = if !matches!(self.role, RoleState::Leader(_)) {
            Refusal::NotLeader(self.leader)
        } else if self.transfer.is_some() {
            Refusal::Transferring
        } else if self.noop_pending || self.log.room() < n.max(1) {
            Refusal::Full
        } else {
            return Ok(());
        };
        self.stats.proposals_refused += 1;
        Err(refusal)
    }

    /// Appends a command at the end of the log (the caller checked the room).
    fn append_normal(&mut self, data: P) -> Index {
        let index = self.log.last_index().next();
        let entry = Entry {
            term: self.hs.term,
            index,
            data: EntryData::Normal(data),
        };
        let _ = self.log.push(entry);
        index
    }

    /// Sends everything the window allows to every follower.
    fn send_new_entries<S: Storage<P>>(&mut self, storage: &S) {
        for i in 0..self.peer_count() {
            self.send_appends(i, storage);
        }
    }

    fn peer_count(&self) -> usize {
        match &self.role {
            RoleState::Leader(p) => p.len(),
            _ => 0,
        }
    }

    fn peer_index(&self, id: NodeId) -> Option<usize> {
        match &self.role {
            RoleState::Leader(p) => p.iter().position(|pr| pr.id == id),
            _ => None,
        }
    }

    /// Sends follower `i` every append its window allows. Returns whether one was queued.
    pub(super) fn send_appends<S: Storage<P>>(&mut self, i: usize, storage: &S) -> bool {
        let mut any = false;
        // An append of fewer than `BATCH` entries carried everything up to the last index.
        while let Some(count) = self.send_append_counted(i, false, storage) {
            any = true;
            if count < BATCH as u32 {
                break;
            }
        }
        any
    }

    /// Sends one append to follower `i` if flow control allows (etcd's `maybeSendAppend`).
    /// Returns whether a message was queued.
    pub(super) fn send_append<S: Storage<P>>(
        &mut self,
        i: usize,
        allow_empty: bool,
        storage: &S,
    ) -> bool {
        self.send_append_counted(i, allow_empty, storage).is_some()
    }

    /// [`send_append`](Self::send_append), returning how many entries the append carries.
    fn send_append_counted<S: Storage<P>>(
        &mut self,
        i: usize,
        allow_empty: bool,
        storage: &S,
    ) -> Option<u32> {
        let RoleState::Leader(progress) = &mut self.role else {
            return None;
        };
        let pr = progress.get_mut(i)?;
        if pr.is_paused() {
            return None;
        }
        if self.out.is_full() {
            self.stats.dropped_sends += 1;
            return None;
        }
        // The entries stay in the log: the runner reads them when it polls the send.
        let last = self.log.last_index();
        let count = if pr.next > last {
            // Nothing new: `prev_index` is at least `last`, so not compacted.
            if !allow_empty {
                return None;
            }
            0
        } else {
            core::cmp::min(last.0 - pr.next.0 + 1, BATCH as u64) as u32
        };
        let prev_index = pr.next.prev();
        if prev_index < self.log.snapshot().index {
            // Compacted: the follower needs a snapshot.
            self.start_snapshot(i, storage);
            return None;
        }
        let Some(prev_term) = self.log.term(prev_index, storage) else {
            self.stats.storage_misses += 1;
            return None;
        };
        pr.sent((count > 0).then(|| Index(prev_index.0 + u64::from(count))));
        // The append leaves with the commit index of the moment it is polled, at least this.
        pr.commit_sent = pr.commit_sent.max(self.commit);
        let to = pr.id;
        let body = Body::Append {
            prev_index,
            prev_term,
            commit: self.commit,
            entries: Span { count },
        };
        let msg = QueuedSend {
            to,
            term: self.hs.term,
            body,
        };
        // Cannot fail: the queue had room above, and nothing was queued since.
        let _ = self.out.push_back(msg);
        Some(count)
    }

    /// Whatever the windows allow to every follower, and the commit index to each one that has
    /// nothing new to receive: a commit notice (no answer needed) to a follower that holds every
    /// committed entry; nothing to one whose acknowledgement of the committed entries is still
    /// to come (it brings the notice); an empty append to the others (probing, or to carry the
    /// commit index past entries the follower holds but the leader does not know of).
    pub(super) fn bcast_append<S: Storage<P>>(&mut self, storage: &S) {
        let last = self.log.last_index();
        for i in 0..self.peer_count() {
            if self.send_appends(i, storage) {
                continue;
            }
            let RoleState::Leader(progress) = &self.role else {
                return;
            };
            let pr = &progress[i];
            if pr.matched >= self.commit {
                self.notify_commit(i);
            } else if !(pr.state == FlowState::Replicate && pr.next > last) {
                self.send_append(i, true, storage);
            }
        }
    }

    /// A commit notice to follower `i` if it holds every committed entry and was not told the
    /// commit index yet.
    pub(super) fn notify_commit(&mut self, i: usize) {
        let (commit, term) = (self.commit, self.hs.term);
        let RoleState::Leader(progress) = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(i) else {
            return;
        };
        if pr.matched < commit || pr.commit_sent >= commit {
            return;
        }
        pr.commit_sent = commit;
        let to = pr.id;
        self.send(to, term, Body::Commit { commit });
    }

    pub(crate) fn bcast_heartbeat(&mut self) {
        let RoleState::Leader(progress) = &self.role else {
            return;
        };
        for i in 0..progress.len() {
            let RoleState::Leader(progress) = &self.role else {
                return;
            };
            let pr = &progress[i];
            // Never tell a follower to commit beyond what it is known to hold.
            let commit = core::cmp::min(pr.matched, self.commit);
            let to = pr.id;
            if let RoleState::Leader(progress) = &mut self.role {
                progress[i].commit_sent = progress[i].commit_sent.max(commit);
            }
            self.send(to, self.hs.term, Body::Heartbeat { commit });
        }
    }

    /// Raft §5.4.2: advance the commit index to the highest index a quorum holds, if that entry
    /// is from the current term. Returns whether it advanced.
    pub(super) fn maybe_commit<S: Storage<P>>(&mut self, storage: &S) -> bool {
        let RoleState::Leader(progress) = &self.role else {
            return false;
        };
        // No voter's match exceeds the leader's own last index: with every entry committed
        // there is nothing to count (the common case of the second acknowledgement).
        if self.commit >= self.log.last_index() {
            return false;
        }
        // Where a half of the configuration has two voters or more, its quorum needs a voter
        // besides the leader: with no follower matched past the commit index (the leader's
        // own persist, before any acknowledgement), there is nothing to count.
        let cfg = &self.configs.current;
        if cfg.voters().len().max(cfg.outgoing().len()) > 1
            && progress.iter().all(|p| p.matched <= self.commit)
        {
            return false;
        }
        let own = if crate::canary::on(crate::canary::Canary::LeaderCountsVolatile) {
            self.log.last_index()
        } else {
            self.log.stable_last()
        };
        let id = self.cfg.id;
        let candidate = if cfg.outgoing().is_empty()
            && cfg.learners().is_empty()
            && progress.len() + 1 == cfg.voters().len()
        {
            // The followers are the other voters exactly (the leader is one of them, or there
            // would be as many followers as voters): no lookups.
            debug_assert!(cfg.is_voter(id) && progress.iter().all(|p| cfg.is_voter(p.id)));
            Index(crate::membership::majority_of::<PEERS>(
                progress.len() + 1,
                |k| match k {
                    0 => own.0,
                    k => progress[k - 1].matched.0,
                },
            ))
        } else {
            Index(cfg.quorum_min(|v| {
                if v == id {
                    own.0
                } else {
                    progress
                        .iter()
                        .find(|p| p.id == v)
                        .map_or(0, |p| p.matched.0)
                }
            }))
        };
        if self.commit < candidate
            && (self.log.term(candidate, storage) == Some(self.hs.term)
                || crate::canary::on(crate::canary::Canary::CommitOldTerm)
                    && self.log.term(candidate, storage).is_some())
        {
            debug!(
                "{} committed up to {} at term {}",
                self.cfg.id, candidate, self.hs.term
            );
            self.commit = candidate;
            self.reads_after_commit();
            self.membership_after_commit();
            true
        } else {
            false
        }
    }

    /// What a follower will do with an append, decided before anything changes, so that an
    /// append refused as malformed changes nothing at all (not even the term or the role).
    ///
    /// # Errors
    /// [`StepError::Malformed`]: it would overwrite a committed entry, or carries a membership
    /// change that cannot follow the one before it.
    pub(super) fn plan_append<S: Storage<P>>(
        &self,
        prev_index: Index,
        prev_term: Term,
        entries: &[Entry<P>],
        storage: &S,
    ) -> Result<AppendPlan, StepError> {
        if self.install.in_progress() {
            return Ok(AppendPlan::Installing);
        }
        if prev_index < self.commit {
            return Ok(AppendPlan::BelowCommit);
        }
        if self.log.term(prev_index, storage) != Some(prev_term) {
            return Ok(AppendPlan::Mismatch);
        }
        // Skip the entries we already have; find the first that is new or conflicts. (The
        // common case, entries that all lie past our last index, needs no term lookups: they
        // are contiguous, checked by `well_formed`.)
        let no_truncate = crate::canary::on(crate::canary::Canary::NoTruncate);
        let first_new = if prev_index >= self.log.last_index() {
            0
        } else {
            entries
                .iter()
                .position(|e| {
                    if no_truncate {
                        crate::canary::new_past_the_end(e.index, self.log.last_index())
                    } else {
                        self.log.term(e.index, storage) != Some(e.term)
                    }
                })
                .unwrap_or(entries.len())
        };
        let Some(conflict) = entries.get(first_new).map(|e| e.index) else {
            return Ok(AppendPlan::Append {
                first_new,
                room: 0,
                configs: false,
            });
        };
        if conflict <= self.commit {
            // A leader asking to overwrite a committed entry: impossible in Raft.
            return Err(StepError::Malformed);
        }
        let kept = conflict.0.saturating_sub(self.log.stable_last().0 + 1) as usize;
        let room = LOG - core::cmp::min(kept, LOG);
        let truncating = conflict <= self.log.last_index();
        let end = entries.len().min(first_new + room);
        let configs = self
            .configs_after_append(conflict, truncating, &entries[first_new..end])?
            .is_some();
        Ok(AppendPlan::Append {
            first_new,
            room,
            configs,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_append<S: Storage<P>>(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        commit: Index,
        mut cargo: super::Cargo<'_, P>,
        plan: AppendPlan,
        storage: &S,
    ) -> Result<(), StepError> {
        let entries = cargo.as_slice();
        let (first_new, room, configs) = match plan {
            AppendPlan::Installing => {
                self.refuse_append_while_installing(from);
                return Ok(());
            }
            AppendPlan::BelowCommit => {
                // Everything up to our commit index already matches the leader (Log Matching).
                self.queue_ack(from, self.commit);
                return Ok(());
            }
            AppendPlan::Mismatch => {
                let hint = core::cmp::min(prev_index, self.log.last_index());
                let (hint_index, hint_term) =
                    self.log.find_conflict_by_term(hint, prev_term, storage);
                let result = AppendResult::Rejected {
                    rejected: prev_index,
                    hint_index,
                    hint_term,
                };
                self.send(from, self.hs.term, Body::AppendResponse(result));
                return Ok(());
            }
            AppendPlan::Append {
                first_new,
                room,
                configs,
            } => (first_new, room, configs),
        };
        let mut last_new = Index(prev_index.0 + first_new as u64);
        if let Some(conflict) = entries.get(first_new).map(|e| e.index) {
            if room == 0 {
                self.stats.log_full += 1;
                // What matches (through `prev_index` and the entries held already) is still
                // acknowledged once durable: a leader that probes a full follower learns its
                // match (an acknowledgement no higher than one already pending adds nothing).
                self.queue_ack(from, last_new);
                // Back-pressure, not an error: the leader resends once the runner has made
                // room by acknowledging persists.
                return Ok(());
            }
            let truncating = conflict <= self.log.last_index();
            // Planned and checked before anything changed; computed again only when the
            // entries change the configuration (rare), so that the plan stays small.
            let configs = if configs {
                let end = entries.len().min(first_new + room);
                self.configs_after_append(conflict, truncating, &entries[first_new..end])?
            } else {
                None
            };
            if truncating {
                debug!("{} truncates its log from {}", self.cfg.id, conflict);
                self.log.truncate_from(conflict, storage);
                if let Some((_, _, m)) = &mut self.pending_ack {
                    *m = core::cmp::min(*m, conflict.prev());
                }
            }
            let end = entries.len().min(first_new + room);
            for i in first_new..end {
                let e = cargo.take(i);
                last_new = e.index;
                if self.log.push(e).is_err() {
                    break;
                }
            }
            if let Some(configs) = configs {
                self.configs = configs;
            }
        }
        let new_commit = if crate::canary::on(crate::canary::Canary::CommitNotClamped) {
            commit
        } else {
            core::cmp::min(commit, last_new)
        };
        self.commit = self.commit.max(new_commit);
        self.install_joined_log();
        self.queue_ack(from, last_new);
        Ok(())
    }

    /// Queues an acknowledgement of `match_index` to the leader; it leaves once durable.
    fn queue_ack(&mut self, to: NodeId, match_index: Index) {
        let term = self.hs.term;
        let keep_old = matches!(self.pending_ack, Some((t, tt, m)) if t == to && tt == term && m >= match_index);
        if !keep_old {
            self.pending_ack = Some((to, term, match_index));
        }
        self.release_withheld();
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: Index) {
        self.adopt_commit(commit);
        self.send(from, self.hs.term, Body::HeartbeatResponse);
    }

    /// A heartbeat's or commit notice's commit index: the leader clamped it to the follower's
    /// match index, up to which this log equals the leader's (only this term's leader writes to
    /// it, and a message from a later term would have changed the term first).
    pub(super) fn adopt_commit(&mut self, commit: Index) {
        let commit = core::cmp::min(commit, self.log.last_index());
        self.commit = self.commit.max(commit);
    }

    pub(super) fn handle_append_response<S: Storage<P>>(
        &mut self,
        from: NodeId,
        result: AppendResult,
        storage: &S,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        let Some(i) = self.peer_index(from) else {
            return Err(StepError::UnknownPeer);
        };
        let RoleState::Leader(progress) = &mut self.role else {
            return Ok(());
        };
        let pr = &mut progress[i];
        match result {
            AppendResult::Accepted { match_index } => {
                if match_index > last {
                    self.stats.malformed += 1;
                    return Err(StepError::Malformed);
                }
                pr.heard();
                // An acknowledgement equal to the match index is news to a probing follower: it
                // proves where the logs join (etcd does the same). Without this a follower left
                // in probe after a snapshot install on an idle cluster got an empty append for
                // every heartbeat reply, for ever.
                let probe_confirmed = pr.state == FlowState::Probe && match_index == pr.matched;
                if !pr.maybe_update(match_index) && !probe_confirmed {
                    return Ok(());
                }
                match pr.state {
                    FlowState::Probe => pr.become_replicate(),
                    FlowState::Replicate => pr.inflights.free_le(match_index),
                    // Caught up by other means (etcd does the same).
                    FlowState::Snapshot if match_index >= self.log.snapshot().index => {
                        pr.become_replicate()
                    }
                    FlowState::Snapshot => {}
                }
                if self.maybe_commit(storage) {
                    self.bcast_append(storage);
                } else {
                    self.send_appends(i, storage);
                    // The committed entries it holds now may not have been announced to it.
                    self.notify_commit(i);
                }
                self.transfer_progress(from, match_index);
            }
            AppendResult::InstallInProgress => {
                pr.heard();
                pr.installing = true;
                self.follower_is_installing(i, storage);
            }
            AppendResult::Rejected {
                rejected,
                hint_index,
                hint_term,
            } => {
                if rejected > last {
                    self.stats.malformed += 1;
                    return Err(StepError::Malformed);
                }
                pr.heard();
                let next_probe = if hint_term.0 > 0 {
                    self.log
                        .find_conflict_by_term(hint_index, hint_term, storage)
                        .0
                } else {
                    hint_index
                };
                let RoleState::Leader(progress) = &mut self.role else {
                    return Ok(());
                };
                let pr = &mut progress[i];
                if pr.maybe_decrease_to(rejected, next_probe) {
                    if pr.state == FlowState::Replicate {
                        pr.become_probe();
                    }
                    self.send_append(i, true, storage);
                }
            }
        }
        Ok(())
    }

    pub(super) fn handle_heartbeat_response<S: Storage<P>>(
        &mut self,
        from: NodeId,
        storage: &S,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        let Some(i) = self.peer_index(from) else {
            return Err(StepError::UnknownPeer);
        };
        let RoleState::Leader(progress) = &mut self.role else {
            return Ok(());
        };
        let pr = &mut progress[i];
        pr.heard();
        pr.paused = false;
        if pr.state == FlowState::Replicate && pr.inflights.full() {
            pr.inflights.free_first();
        }
        // A probing follower gets an append even when it seems caught up: after a snapshot
        // install on an idle cluster, the append that proves its log joins ours may be lost.
        if pr.matched < last || pr.state == FlowState::Probe {
            self.send_append(i, true, storage);
        }
        Ok(())
    }
}

/// Why a proposal is refused, before the payload is attached.
enum Refusal {
    NotLeader(Option<NodeId>),
    Transferring,
    Full,
}

impl Refusal {
    fn with<T>(self, data: T) -> ProposeError<T> {
        match self {
            Self::NotLeader(leader) => ProposeError::NotLeader { leader, data },
            Self::Transferring => ProposeError::Transferring(data),
            Self::Full => ProposeError::Full(data),
        }
    }
}
