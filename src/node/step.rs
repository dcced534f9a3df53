//! Incoming messages: validation of untrusted content, the term rules of Raft §5.1 (with the
//! pre-vote and check-quorum exceptions of thesis §9.6 / §6.2), and dispatch by role.
//!
//! Nothing here mutates state before a message is known to be well formed and current.

use super::{Node, RoleState};
use crate::error::StepError;
use crate::message::{AppendResult, Body, InstallRequest, Message};
use crate::storage::Storage;
use crate::types::Entry;

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
    /// Structural checks that need no state: contiguous entries, terms that cannot exceed the
    /// message's term, hints that point backwards.
    pub(super) fn well_formed<C, X>(msg: &Message<C, X>, entries: &[Entry<P>]) -> bool {
        match &msg.body {
            Body::VoteRequest { last_term, .. } | Body::VoteRequestTransfer { last_term, .. } => {
                *last_term <= msg.term
            }
            Body::Append {
                prev_index,
                prev_term,
                ..
            } => {
                if *prev_term > msg.term {
                    return false;
                }
                let mut expect = *prev_index;
                let mut term = *prev_term;
                for e in entries {
                    let Some(next) = expect.0.checked_add(1) else {
                        return false;
                    };
                    if e.index.0 != next || e.term < term || e.term > msg.term {
                        return false;
                    }
                    expect = e.index;
                    term = e.term;
                }
                true
            }
            Body::AppendResponse(AppendResult::Rejected {
                rejected,
                hint_index,
                ..
            }) => hint_index <= rejected,
            Body::InstallSnapshot {
                request: InstallRequest::Notify { first_available },
                ..
            } => first_available.term <= msg.term && first_available.index.0 > 0,
            Body::InstallSnapshot {
                request: InstallRequest::Chunk { snapshot, .. },
                ..
            } => snapshot.term <= msg.term && snapshot.index.0 > 0,
            _ => true,
        }
    }

    /// Raft's term rules. `true` means: go on handling the message at the (possibly new) term;
    /// `false`: the message is routine noise (a stale term, a vote request during a leader's
    /// lease), counted in [`Stats`](crate::Stats) and answered if Raft says so, nothing more.
    pub(super) fn step_term<C, X>(&mut self, msg: &Message<C, X>) -> bool {
        let term = self.hs.term;
        if matches!(
            msg.body,
            Body::VoteRequest { .. } | Body::VoteRequestTransfer { .. }
        ) {
            // A member that campaigns is alive, whatever the runner reported.
            self.heard_from(msg.from);
        }
        if msg.term > term {
            match msg.body {
                Body::VoteRequest { .. } => {
                    // Check-quorum lease: while we hear from a leader, a higher-term candidate is
                    // a disruptive rejoining node, not a sign the leader is gone.
                    let in_lease = self.cfg.check_quorum
                        && (self.leader.is_some() || self.startup_quiet)
                        && self.election_elapsed < self.cfg.election_ticks;
                    if in_lease {
                        self.stats.ignored_in_lease += 1;
                        debug!(
                            "{} ignored a vote request from {} during lease",
                            self.cfg.id, msg.from
                        );
                        return false;
                    }
                    if let Body::VoteRequest {
                        pre_vote: false, ..
                    } = msg.body
                    {
                        if matches!(self.role, RoleState::Follower) {
                            // Raft figure 2: a follower restarts its election timer only when it
                            // hears the leader or grants a vote, not when it merely learns a
                            // higher term. Otherwise a candidate that cannot win (short log) and
                            // times out first (fast clock) keeps everyone else from ever
                            // campaigning: found by the simulator, seed 10815.
                            self.adopt_term(msg.term);
                        } else {
                            self.become_follower(msg.term, None);
                        }
                    }
                }
                // A granted pre-vote carries the term the candidate would campaign in.
                Body::VoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                Body::Append { .. }
                | Body::Heartbeat { .. }
                | Body::Commit { .. }
                | Body::Quiesce { .. }
                | Body::InstallSnapshot { .. }
                | Body::ReadConfirm { .. } => self.become_follower(msg.term, Some(msg.from)),
                // A reply from a later term: step down, but keep the election timer running
                // (Raft restarts it only on hearing a leader or granting a vote). Restarting it
                // here would hand the race for the next term to whichever node keeps refusing
                // us.
                _ => {
                    let campaigning = matches!(
                        self.role,
                        RoleState::PreCandidate(_) | RoleState::Candidate(_)
                    );
                    self.step_down_to(msg.term);
                    if campaigning && matches!(msg.body, Body::VoteResponse { granted: false, .. })
                    {
                        // Refused for asking in a stale term: ask again in the next one at the
                        // next tick. A candidate that learns terms only from refusals (the
                        // voter's configuration does not include it) would otherwise always ask
                        // one term too late (seed 1934).
                        self.election_elapsed = self.election_timeout;
                    }
                }
            }
        } else if msg.term < term {
            self.stats.stale_term += 1;
            match msg.body {
                // Tell a stale leader the current term, so it steps down (Raft figure 2: every
                // reply carries the term). Its own timers cannot be relied on: a leader whose
                // configuration does not include the nodes that moved on (a learner, a removed
                // node) hears no vote request from them and keeps its quorum.
                Body::Append { .. }
                | Body::Heartbeat { .. }
                | Body::Commit { .. }
                | Body::Quiesce { .. }
                | Body::InstallSnapshot { .. }
                | Body::ReadConfirm { .. } => {
                    self.send(msg.from, term, Body::HeartbeatResponse);
                }
                // Refuse a stale candidate with the current term (Raft figure 2), so it moves on:
                // a candidate whose configuration does not include the nodes ahead of it hears
                // from them in no other way (found by the simulator with membership changes).
                Body::VoteRequest { pre_vote, .. } => {
                    self.send(
                        msg.from,
                        term,
                        Body::VoteResponse {
                            pre_vote,
                            granted: false,
                        },
                    );
                }
                Body::VoteRequestTransfer { .. } => {
                    self.send(
                        msg.from,
                        term,
                        Body::VoteResponse {
                            pre_vote: false,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return false;
        }
        true
    }

    pub(super) fn dispatch<C, X, S: Storage<P>>(
        &mut self,
        msg: &Message<C, X>,
        cargo: super::Cargo<'_, P>,
        chunk: Option<&P>,
        plan: Option<super::replication::AppendPlan>,
        storage: &S,
    ) -> Result<(), StepError> {
        let (from, term) = (msg.from, msg.term);
        match msg.body {
            Body::VoteRequest {
                pre_vote,
                last_index,
                last_term,
            } => {
                self.handle_vote_request(from, term, pre_vote, last_index, last_term);
                Ok(())
            }
            Body::VoteResponse { pre_vote, granted } => {
                self.handle_vote_response(from, term, pre_vote, granted, storage);
                Ok(())
            }
            Body::Append {
                prev_index,
                prev_term,
                commit,
                ..
            } => {
                let plan = match plan {
                    Some(plan) => plan,
                    None => self.plan_append(prev_index, prev_term, cargo.as_slice(), storage)?,
                };
                self.accept_leader(from)?;
                self.report_uncollected(from);
                self.handle_append(from, prev_index, prev_term, commit, cargo, plan, storage)
            }
            Body::Heartbeat { commit } => {
                self.accept_leader(from)?;
                self.report_uncollected(from);
                self.handle_heartbeat(from, commit);
                Ok(())
            }
            Body::AppendResponse(result) => match self.role {
                RoleState::Leader(_) => self.handle_append_response(from, result, storage),
                _ => Ok(()),
            },
            Body::Commit { commit } => {
                self.accept_leader(from)?;
                self.report_uncollected(from);
                self.adopt_commit(commit);
                Ok(())
            }
            Body::Quiesce { commit } => {
                self.accept_leader(from)?;
                self.report_uncollected(from);
                self.handle_quiesce(from, commit);
                Ok(())
            }
            Body::HeartbeatResponse => match self.role {
                RoleState::Leader(_) => self.handle_heartbeat_response(from, storage),
                _ => Ok(()),
            },
            Body::InstallSnapshot { tag, ref request } => {
                // The chunk's bytes travel beside the message (`step_parts` refused and counted a
                // chunk message without them before anything changed, so the `else` below is
                // never taken).
                let request = match *request {
                    InstallRequest::Notify { first_available } => {
                        InstallRequest::Notify { first_available }
                    }
                    InstallRequest::Chunk {
                        snapshot,
                        seq,
                        checksum,
                        ..
                    } => {
                        let Some(data) = chunk else {
                            return Err(StepError::Malformed);
                        };
                        InstallRequest::Chunk {
                            snapshot,
                            seq,
                            data: data.clone(),
                            checksum,
                        }
                    }
                };
                self.accept_leader(from)?;
                self.handle_install_request(from, term, tag, request, storage);
                Ok(())
            }
            Body::InstallSnapshotResponse { tag, result } => match self.role {
                RoleState::Leader(_) => self.handle_install_response(from, tag, result, storage),
                _ => Ok(()),
            },
            Body::ReadIndex { ctx } => {
                self.handle_read_index(from, ctx);
                Ok(())
            }
            Body::ReadIndexResponse { ctx, index } => {
                self.handle_read_index_response(ctx, index);
                Ok(())
            }
            Body::ReadConfirm { seq } => {
                self.accept_leader(from)?;
                self.send(from, term, Body::ReadConfirmAck { seq });
                Ok(())
            }
            Body::ReadConfirmAck { seq } => {
                self.handle_read_confirm_ack(from, seq);
                Ok(())
            }
            Body::TimeoutNow => {
                self.handle_timeout_now(from);
                Ok(())
            }
            Body::VoteRequestTransfer {
                last_index,
                last_term,
            } => {
                self.handle_vote_request(from, term, false, last_index, last_term);
                Ok(())
            }
        }
    }

    /// An append or heartbeat at our term: its sender is the term's leader.
    fn accept_leader(&mut self, from: crate::types::NodeId) -> Result<(), StepError> {
        match self.role {
            RoleState::Leader(_) => {
                // Two leaders in one term cannot happen in Raft: the message is forged or broken.
                self.stats.malformed += 1;
                return Err(StepError::Malformed);
            }
            RoleState::PreCandidate(_) | RoleState::Candidate(_) => {
                self.become_follower(self.hs.term, Some(from));
            }
            RoleState::Follower => {
                if self.leader.is_some_and(|l| l != from) {
                    self.stats.malformed += 1;
                    return Err(StepError::Malformed);
                }
                self.leader = Some(from);
            }
        }
        self.election_elapsed = 0;
        Ok(())
    }
}
