//! Leader election (Raft §5.2, §5.4.1), pre-vote (thesis §9.6) and check-quorum (thesis §6.2).
//!
//! Invariants:
//! * a node grants at most one (real) vote per term, and the grant leaves only once durable;
//! * a candidate counts its own vote only once its `(term, vote)` is durable;
//! * pre-votes change no term and no vote anywhere;
//! * a leader that has not heard from a quorum for an election timeout steps down.

use super::{Node, RoleState, VoteSet};
use crate::error::TransferError;
use crate::membership::VoteResult;
use crate::message::Body;
use crate::progress::Progress;
use crate::storage::Storage;
use crate::types::{Entry, EntryData, Index, NodeId, Term};

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
    /// Hands leadership to voter `to` (Raft thesis §3.10): the leader stops taking proposals,
    /// brings `to` up to date, then tells it to campaign at once. The transfer is abandoned
    /// after an election timeout if `to` has not taken over by then.
    ///
    /// # Errors
    /// [`TransferError::NotLeader`] on a non-leader, [`TransferError::NotAVoter`] for anything
    /// but another voter.
    pub fn transfer_leadership<S: Storage<P>>(
        &mut self,
        to: NodeId,
        storage: &S,
    ) -> Result<(), TransferError> {
        self.wake = true;
        let last = self.log.last_index();
        let RoleState::Leader(progress) = &self.role else {
            return Err(TransferError::NotLeader);
        };
        let Some(i) = progress.iter().position(|p| p.id == to) else {
            return Err(TransferError::NotAVoter);
        };
        // Only a voter of the incoming configuration may take over (a learner cannot campaign,
        // a node being removed should not lead).
        if !self.configs.current.voters().contains(&to) {
            return Err(TransferError::NotAVoter);
        }
        if self.transfer.is_some_and(|(pending, _)| pending == to) {
            // A repeat of the pending transfer (a client retrying) is ignored, as in etcd:
            // restarting its deadline would let a retrying client keep the leader refusing
            // proposals forever while the target is unreachable.
            return Ok(());
        }
        let caught_up = progress[i].matched == last;
        self.unquiesce();
        info!(
            "{} transfers leadership to {} at term {}",
            self.cfg.id, to, self.hs.term
        );
        self.transfer = Some((to, 0));
        // The target will be elected through the followers' leases: this one ends now.
        self.drop_lease();
        if caught_up {
            self.send(to, self.hs.term, Body::TimeoutNow);
        } else {
            self.send_append(i, true, storage);
        }
        Ok(())
    }

    /// Leader: follower `from` now matches `matched`; if it is the transfer target and caught
    /// up, it may take over.
    pub(super) fn transfer_progress(&mut self, from: NodeId, matched: crate::types::Index) {
        if self.transfer.is_some_and(|(to, _)| to == from) && matched == self.log.last_index() {
            self.send(from, self.hs.term, Body::TimeoutNow);
        }
    }

    /// Follower: the leader asks this node to take over now.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if matches!(self.role, RoleState::Follower)
            && self.leader == Some(from)
            && self.can_campaign()
        {
            info!("{} takes over leadership from {}", self.cfg.id, from);
            self.stats.campaigns += 1;
            self.become_candidate_with(true);
        }
    }

    pub(super) fn start_election<S: Storage<P>>(&mut self, storage: &S) {
        if !self.can_campaign() {
            // Learners and removed nodes never campaign.
            self.reset_election_timer();
            return;
        }
        self.stats.campaigns += 1;
        // A node that is not a voter of its configuration (it campaigns only because the change
        // that removed it may not be committed) always asks for pre-votes first: it is likely
        // the one with a stale log, and must not inflate the terms of the nodes that can win.
        if self.cfg.pre_vote || !self.is_voter() {
            self.become_pre_candidate(storage);
        } else {
            self.become_candidate();
        }
    }

    fn become_pre_candidate<S: Storage<P>>(&mut self, storage: &S) {
        let mut votes = VoteSet::default();
        votes.record(self.cfg.id, true);
        self.role = RoleState::PreCandidate(votes);
        self.leader = None;
        self.reset_election_timer();
        info!(
            "{} became PreCandidate at term {}",
            self.cfg.id, self.hs.term
        );
        self.request_votes(true);
        self.check_election_result(storage);
    }

    fn become_candidate(&mut self) {
        self.become_candidate_with(false);
    }

    fn become_candidate_with(&mut self, transfer: bool) {
        self.hs.term = self.hs.term.next();
        self.hs.vote = Some(self.cfg.id);
        self.hs_dirty = true;
        // The own vote is recorded by `after_durable` once the hard state is on disk.
        self.role = RoleState::Candidate(VoteSet::default());
        self.leader = None;
        self.reset_election_timer();
        info!("{} became Candidate at term {}", self.cfg.id, self.hs.term);
        if transfer {
            let body = Body::VoteRequestTransfer {
                last_index: self.log.last_index(),
                last_term: self.log.last_term(),
            };
            self.send_to_voters(self.hs.term, &body);
        } else {
            self.request_votes(false);
        }
    }

    fn request_votes(&mut self, pre_vote: bool) {
        let term = if pre_vote {
            self.hs.term.next()
        } else {
            self.hs.term
        };
        let body = Body::VoteRequest {
            pre_vote,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        self.send_to_voters(term, &body);
    }

    /// Sends `body` to every other voter, of both halves of a joint configuration.
    fn send_to_voters(&mut self, term: Term, body: &Body<(), crate::message::Span>) {
        let id = self.cfg.id;
        let voters: heapless::Vec<NodeId, PEERS> = self
            .configs
            .current
            .all_voters()
            .filter(|v| *v != id)
            .collect();
        for v in voters {
            self.send(v, term, *body);
        }
    }

    /// Moves to a higher term (forgetting the vote and the leader) without touching the role or
    /// the election timer.
    pub(crate) fn adopt_term(&mut self, term: Term) {
        if term > self.hs.term {
            self.fail_reads(crate::error::ReadError::LeadershipLost);
            self.reset_read_rounds();
            self.hs.term = term;
            self.hs.vote = None;
            self.hs_dirty = true;
            self.leader = None;
            self.release_withheld();
        }
    }

    /// Becomes a follower of `term` (leader unknown) without restarting the election timer.
    pub(crate) fn step_down_to(&mut self, term: Term) {
        let (elapsed, timeout) = (self.election_elapsed, self.election_timeout);
        self.become_follower(term, None);
        self.election_elapsed = elapsed;
        self.election_timeout = timeout;
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.adopt_term(term);
        if !matches!(self.role, RoleState::Follower) {
            info!("{} became Follower at term {}", self.cfg.id, self.hs.term);
            if matches!(self.role, RoleState::Leader(_)) {
                self.fail_reads(crate::error::ReadError::LeadershipLost);
                self.reset_read_rounds();
            }
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        self.noop_pending = false;
        self.transfer = None;
        self.reset_election_timer();
        self.release_withheld();
    }

    fn become_leader<S: Storage<P>>(&mut self, storage: &S) {
        let next = self.log.last_index().next();
        // Filled where it lies: a progress array built on the stack and then moved costs a
        // microcontroller a kilobyte of stack.
        self.role = RoleState::Leader(heapless::Vec::new());
        let (id, inflight) = (self.cfg.id, self.cfg.max_inflight);
        if let RoleState::Leader(progress) = &mut self.role {
            for m in self.configs.current.members() {
                if m != id {
                    let _ = progress.push(Progress::new(m, next, inflight));
                }
            }
        }
        self.leader = Some(self.cfg.id);
        self.transfer = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        info!("{} became Leader at term {}", self.cfg.id, self.hs.term);
        self.fail_reads(crate::error::ReadError::LeadershipLost);
        self.reset_read_rounds();
        self.reads.term_start = self.log.last_index().next();
        self.append_noop();
        self.bcast_append(storage);
    }

    /// Raft §8: a new leader commits an entry of its own term to learn (and commit) what is
    /// committed. With no room it retries once a persist is acknowledged.
    pub(super) fn append_noop(&mut self) {
        let entry = Entry {
            term: self.hs.term,
            index: self.log.last_index().next(),
            data: EntryData::Noop,
        };
        self.noop_pending = self.log.push(entry).is_err();
    }

    pub(super) fn check_election_result<S: Storage<P>>(&mut self, storage: &S) {
        let (pre, tally) = match &self.role {
            RoleState::PreCandidate(v) => (true, v.tally(&self.configs.current)),
            RoleState::Candidate(v) => (false, v.tally(&self.configs.current)),
            _ => return,
        };
        match (tally, pre) {
            (VoteResult::Won, true) => self.become_candidate(),
            // A candidate leads only once its term and vote are durable (`after_durable` counts
            // again then). Its requests left before that, and other voters may elect it first:
            // a leader whose term was lost in a crash would restart in the term before,
            // campaign for the same term again, win it again (its voters granted it that term)
            // and write different entries at indices it had used in its first tenure, breaking
            // log matching at any follower that took one of them (simulator, seed 57205).
            (VoteResult::Won, false) if self.hs_durable() => self.become_leader(storage),
            (VoteResult::Won, false) => {}
            (VoteResult::Lost, _) => self.become_follower(self.hs.term, None),
            (VoteResult::Pending, _) => {}
        }
    }

    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_index: Index,
        last_term: Term,
    ) {
        let can_vote = self.hs.vote == Some(from)
            || (self.hs.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.hs.term);
        let grant = can_vote && self.log.is_up_to_date(last_index, last_term);
        if !grant {
            self.send(
                from,
                self.hs.term,
                Body::VoteResponse {
                    pre_vote,
                    granted: false,
                },
            );
        } else if pre_vote {
            // A pre-vote grant answers with the term it was asked for and changes nothing here.
            self.send(
                from,
                term,
                Body::VoteResponse {
                    pre_vote: true,
                    granted: true,
                },
            );
        } else {
            self.election_elapsed = 0;
            if self.hs.vote != Some(from) {
                self.hs.vote = Some(from);
                self.hs_dirty = true;
            }
            debug!(
                "{} votes for {} at term {}",
                self.cfg.id, from, self.hs.term
            );
            self.pending_vote = Some((from, self.hs.term));
            self.release_withheld();
        }
    }

    pub(super) fn handle_vote_response<S: Storage<P>>(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
        storage: &S,
    ) {
        let current = self.hs.term;
        match &mut self.role {
            RoleState::PreCandidate(votes) if pre_vote => {
                // Grants carry the campaign term, rejections the voter's term.
                if granted && term != current.next() {
                    return;
                }
                votes.record(from, granted);
            }
            RoleState::Candidate(votes) if !pre_vote => votes.record(from, granted),
            _ => return,
        }
        self.check_election_result(storage);
    }

    pub(super) fn tick_leader<S: Storage<P>>(&mut self, storage: &S) {
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if let Some((to, elapsed)) = &mut self.transfer {
            *elapsed += 1;
            if *elapsed >= self.cfg.election_ticks {
                warn!(
                    "{} abandons its leadership transfer to {}",
                    self.cfg.id, *to
                );
                self.transfer = None;
            }
        }
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                let id = self.cfg.id;
                let RoleState::Leader(progress) = &mut self.role else {
                    return;
                };
                let active = self.configs.current.is_quorum(|v| {
                    v == id || progress.iter().any(|p| p.id == v && p.recent_active)
                });
                for p in progress.iter_mut() {
                    p.recent_active = false;
                }
                if !active {
                    self.stats.quorum_lost += 1;
                    warn!(
                        "{} lost its quorum at term {}: stepping down",
                        self.cfg.id, self.hs.term
                    );
                    self.become_follower(self.hs.term, None);
                    return;
                }
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            if self.maybe_quiesce() {
                return;
            }
            self.bcast_heartbeat();
            self.renew_lease();
        }
        self.tick_snapshots(storage);
    }
}
