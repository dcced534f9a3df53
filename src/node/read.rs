//! Linearizable reads by ReadIndex (Raft thesis §6.4).
//!
//! A read asked on the leader records the commit index, then waits for a round of
//! confirmations from a quorum that started after the read arrived (so the leader was still
//! leader when the read was asked), then for the state machine to reach the recorded index.
//! A follower forwards the read to the leader and serves it once its own state machine reaches
//! the index the leader returns.
//!
//! Invariants:
//! * a new leader serves no read before an entry of its own term is committed (its commit
//!   index may lag the cluster's until then);
//! * at most one confirmation round is in flight; every read that arrives meanwhile waits for
//!   the next one (batching: many reads share one round);
//! * `ReadReady { index }` is polled only after the `Apply` that reaches `index`;
//! * every read ends: served, or failed on a term change, a lost leadership, a snapshot install
//!   in progress, a full queue, or after two election timeouts without confirmation.

use super::{Node, RoleState};
use crate::error::ReadError;
use crate::message::Body;
use crate::storage::Storage;
use crate::types::{Index, NodeId, ReadId};

/// How many linearizable reads a node of the default profile keeps pending (its own and, on a
/// leader, its followers'): the default of [`Node`]'s `READS` parameter.
pub const DEFAULT_READS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    /// Leader: waiting for an entry of this term to commit.
    AwaitTermCommit,
    /// Leader: waiting for confirmation round `seq`; the read index is `index`.
    Unconfirmed {
        seq: u64,
        index: Index,
    },
    /// Follower: forwarded to the leader.
    Forwarded,
    /// Serve once applied up to the index.
    Confirmed(Index),
    Failed(ReadError),
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    id: ReadId,
    /// `Some(follower)` for a read a follower forwarded to this leader.
    origin: Option<NodeId>,
    state: ReadState,
    age: u32,
}

/// The pending reads and the leader's confirmation rounds.
#[derive(Debug)]
pub(crate) struct Reads<const N: usize> {
    queue: heapless::Vec<PendingRead, N>,
    /// Leader: the newest round sent, and the newest a quorum confirmed.
    seq_sent: u64,
    seq_confirmed: u64,
    /// Leader: the index of this term's first entry (reads wait until it commits).
    pub(crate) term_start: Index,
    /// Leader: the tick at which round `seq_sent` was sent.
    round_tick: u64,
    /// Leader, lease reads: reads are served without a round while `ticks < lease_until`.
    lease_until: u64,
}

impl<const N: usize> Reads<N> {
    pub(crate) const fn new() -> Self {
        Self {
            queue: heapless::Vec::new(),
            seq_sent: 0,
            seq_confirmed: 0,
            term_start: Index(0),
            round_tick: 0,
            lease_until: 0,
        }
    }

    /// No read is pending (none can be answered).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
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
    /// Asks for a linearizable read named `id`. It ends with [`Action::ReadReady`](crate::Action::ReadReady) (serve the
    /// read from the state machine then) or [`Action::ReadFailed`](crate::Action::ReadFailed).
    ///
    /// # Errors
    /// Refused at once with [`ReadError::NoLeader`], [`ReadError::InstallInProgress`] or
    /// [`ReadError::Full`].
    pub fn read_index<S: Storage<P>>(&mut self, id: ReadId, storage: &S) -> Result<(), ReadError> {
        self.wake = true;
        let _ = storage;
        if self.install.in_progress() {
            return Err(ReadError::InstallInProgress);
        }
        // A read waits on rounds and timeouts that need ticks.
        self.unquiesce();
        if matches!(self.role, RoleState::Leader(_)) {
            let state = self.new_leader_read_state();
            self.reads
                .queue
                .push(PendingRead {
                    id,
                    origin: None,
                    state,
                    age: 0,
                })
                .map_err(|_| ReadError::Full)?;
            self.maybe_start_read_round();
            return Ok(());
        }
        let leader = self.leader.ok_or(ReadError::NoLeader)?;
        self.reads
            .queue
            .push(PendingRead {
                id,
                origin: None,
                state: ReadState::Forwarded,
                age: 0,
            })
            .map_err(|_| ReadError::Full)?;
        self.send(leader, self.hs.term, Body::ReadIndex { ctx: id.0 });
        Ok(())
    }

    fn new_leader_read_state(&mut self) -> ReadState {
        if self.commit >= self.reads.term_start && self.lease_valid() {
            self.stats.lease_reads += 1;
            ReadState::Confirmed(self.commit)
        } else if self.commit >= self.reads.term_start {
            ReadState::Unconfirmed {
                seq: self.reads.seq_sent + 1,
                index: self.commit,
            }
        } else {
            ReadState::AwaitTermCommit
        }
    }

    /// Leader: starts the next confirmation round if reads wait for it and none is in flight.
    pub(super) fn maybe_start_read_round(&mut self) {
        if self.reads.seq_sent != self.reads.seq_confirmed {
            return; // a round is in flight
        }
        let next = self.reads.seq_sent + 1;
        let waiting = self
            .reads
            .queue
            .iter()
            .any(|r| matches!(r.state, ReadState::Unconfirmed { seq, .. } if seq == next));
        if waiting {
            self.start_round();
        }
    }

    /// Leader: sends confirmation round `seq_sent + 1` to every follower.
    fn start_round(&mut self) {
        let RoleState::Leader(progress) = &self.role else {
            return;
        };
        let next = self.reads.seq_sent + 1;
        self.reads.seq_sent = next;
        self.reads.round_tick = self.ticks;
        let peers: heapless::Vec<NodeId, PEERS> = progress.iter().map(|p| p.id).collect();
        for to in peers {
            self.send(to, self.hs.term, Body::ReadConfirm { seq: next });
        }
        self.confirm_reads();
    }

    /// Leader: a follower acknowledged round `seq`.
    pub(super) fn handle_read_confirm_ack(&mut self, from: NodeId, seq: u64) {
        let RoleState::Leader(progress) = &mut self.role else {
            return;
        };
        if let Some(pr) = progress.iter_mut().find(|p| p.id == from) {
            pr.heard();
            // An acknowledgement of a round not sent yet is not believed (a peer's bytes are
            // untrusted); old and repeated ones change nothing.
            if seq <= self.reads.seq_sent {
                pr.read_acked = pr.read_acked.max(seq);
            }
        }
        self.confirm_reads();
        self.maybe_start_read_round();
    }

    /// Leader: promotes reads whose round a quorum confirmed.
    fn confirm_reads(&mut self) {
        let RoleState::Leader(progress) = &self.role else {
            return;
        };
        let id = self.cfg.id;
        let sent = self.reads.seq_sent;
        let confirmed = if crate::canary::on(crate::canary::Canary::ReadWithoutQuorum) {
            sent
        } else {
            self.configs.current.quorum_min(|v| {
                if v == id {
                    sent
                } else {
                    progress
                        .iter()
                        .find(|p| p.id == v)
                        .map_or(0, |p| p.read_acked)
                }
            })
        };
        if confirmed <= self.reads.seq_confirmed {
            return;
        }
        self.reads.seq_confirmed = confirmed;
        if self.cfg.lease_reads && self.transfer.is_none() {
            self.reads.lease_until = self.reads.round_tick + self.lease_ticks();
        }
        let term = self.hs.term;
        let mut i = 0;
        while i < self.reads.queue.len() {
            let r = self.reads.queue[i];
            if let ReadState::Unconfirmed { seq, index } = r.state
                && seq <= confirmed
            {
                if let Some(follower) = r.origin {
                    self.reads.queue.remove(i);
                    self.send(
                        follower,
                        term,
                        Body::ReadIndexResponse {
                            ctx: r.id.0,
                            index: Some(index),
                        },
                    );
                    continue;
                }
                self.reads.queue[i].state = ReadState::Confirmed(index);
            }
            i += 1;
        }
    }

    /// Leader: an entry of this term committed; waiting reads take the commit index now.
    pub(super) fn reads_after_commit(&mut self) {
        if self.commit < self.reads.term_start {
            return;
        }
        let next = ReadState::Unconfirmed {
            seq: self.reads.seq_sent + 1,
            index: self.commit,
        };
        let mut any = false;
        for r in self.reads.queue.iter_mut() {
            if r.state == ReadState::AwaitTermCommit {
                r.state = next;
                any = true;
            }
        }
        if any {
            self.maybe_start_read_round();
        }
    }

    /// Leader: a follower forwarded a read.
    pub(super) fn handle_read_index(&mut self, from: NodeId, ctx: u64) {
        if !matches!(self.role, RoleState::Leader(_)) {
            self.send(
                from,
                self.hs.term,
                Body::ReadIndexResponse { ctx, index: None },
            );
            return;
        }
        let state = self.new_leader_read_state();
        if let ReadState::Confirmed(index) = state {
            // Within the lease: answer at once.
            let body = Body::ReadIndexResponse {
                ctx,
                index: Some(index),
            };
            self.send(from, self.hs.term, body);
            return;
        }
        let read = PendingRead {
            id: ReadId(ctx),
            origin: Some(from),
            state,
            age: 0,
        };
        if self.reads.queue.push(read).is_err() {
            self.send(
                from,
                self.hs.term,
                Body::ReadIndexResponse { ctx, index: None },
            );
            return;
        }
        self.maybe_start_read_round();
    }

    /// Follower: the leader answered a forwarded read.
    pub(super) fn handle_read_index_response(&mut self, ctx: u64, index: Option<Index>) {
        if let Some(r) = self
            .reads
            .queue
            .iter_mut()
            .find(|r| r.id.0 == ctx && r.state == ReadState::Forwarded)
        {
            r.state = match index {
                Some(i) => ReadState::Confirmed(i),
                None => ReadState::Failed(ReadError::LeadershipLost),
            };
        }
    }

    /// Fails every read of this node (forwarded reads of followers are dropped: they time out
    /// or fail on their side).
    pub(super) fn fail_reads(&mut self, reason: ReadError) {
        self.reads.queue.retain(|r| r.origin.is_none());
        for r in self.reads.queue.iter_mut() {
            if !matches!(r.state, ReadState::Failed(_)) {
                r.state = ReadState::Failed(reason);
            }
        }
    }

    /// A new term or a new role: the read rounds start over.
    pub(super) fn reset_read_rounds(&mut self) {
        self.reads.seq_sent = 0;
        self.reads.seq_confirmed = 0;
        self.drop_lease();
    }

    // ----- lease reads (thesis §6.4.1) -------------------------------------------------------
    //
    // A follower that hears from the leader refuses vote requests for `election_ticks` of its
    // own ticks (the check-quorum lease), from at least `election_ticks - 1` tick periods after
    // receipt. So no other leader can be elected before `(election_ticks - 1) * T_f` has passed
    // since a confirmation round was sent, for every follower `f` of a quorum that acknowledged
    // it. The leader, whose ticks last `T_l`, serves reads while fewer than
    // `L = floor((election_ticks - 1) * (100 - drift) / 100)` of its ticks have passed since it
    // sent the round: that is less than `L * T_l <= (election_ticks - 1) * T_f` as long as no
    // tick period is shorter than `(100 - drift) %` of another's. The lease ends at once on a
    // transfer (the target is elected through the followers' leases), a term or role change, or
    // a time jump `handle_timeout` could not tick through; a (re)started node refuses votes for
    // an election timeout, since it may have acknowledged a round just before it went down.

    /// Ticks a lease lasts from the sending of the round that established it.
    fn lease_ticks(&self) -> u64 {
        let e = u64::from(self.cfg.election_ticks.saturating_sub(1));
        let keep = 100 - u64::from(self.cfg.max_clock_drift_percent.min(100));
        if crate::canary::on(crate::canary::Canary::LeaseIgnoresDrift) {
            return crate::canary::stretched_lease(self.cfg.election_ticks);
        }
        e * keep / 100
    }

    /// Leader: whether reads may be served now without a round.
    fn lease_valid(&self) -> bool {
        self.cfg.lease_reads
            && self.transfer.is_none()
            && matches!(self.role, RoleState::Leader(_))
            && self.ticks < self.reads.lease_until
    }

    /// No read is pending and no confirmation round is in flight.
    pub(super) fn reads_idle(&self) -> bool {
        self.reads.queue.is_empty() && self.reads.seq_sent == self.reads.seq_confirmed
    }

    pub(super) fn drop_lease(&mut self) {
        self.reads.lease_until = 0;
    }

    /// Leader, at every heartbeat: a confirmation round keeps the lease alive.
    pub(super) fn renew_lease(&mut self) {
        if !self.cfg.lease_reads || self.transfer.is_some() {
            return;
        }
        if self.reads.seq_sent == self.reads.seq_confirmed {
            self.start_round();
        }
    }

    /// Per tick: age reads, fail the ones that waited too long, re-send an unconfirmed round.
    pub(super) fn tick_reads(&mut self) {
        let limit = self.cfg.election_ticks.saturating_mul(2);
        for r in self.reads.queue.iter_mut() {
            r.age = r.age.saturating_add(1);
            let waiting = !matches!(r.state, ReadState::Confirmed(_) | ReadState::Failed(_));
            if waiting && r.age > limit {
                r.state = ReadState::Failed(ReadError::Timeout);
            }
        }
        // Remote reads that failed are answered and dropped.
        let term = self.hs.term;
        let mut i = 0;
        while i < self.reads.queue.len() {
            let r = self.reads.queue[i];
            if let (Some(f), ReadState::Failed(_)) = (r.origin, r.state) {
                self.reads.queue.remove(i);
                self.send(
                    f,
                    term,
                    Body::ReadIndexResponse {
                        ctx: r.id.0,
                        index: None,
                    },
                );
                continue;
            }
            i += 1;
        }
        if let RoleState::Leader(progress) = &self.role
            && self.reads.seq_sent > self.reads.seq_confirmed
        {
            let seq = self.reads.seq_sent;
            let late: heapless::Vec<NodeId, PEERS> = progress
                .iter()
                .filter(|p| p.read_acked < seq)
                .map(|p| p.id)
                .collect();
            for to in late {
                self.send(to, term, Body::ReadConfirm { seq });
            }
        }
    }

    /// The next read to answer: served at an index, or failed.
    pub(super) fn poll_read_action(&mut self) -> Option<(ReadId, Result<Index, ReadError>)> {
        let applied = self.apply_emitted;
        let pos = self.reads.queue.iter().position(|r| match r.state {
            ReadState::Confirmed(i) => r.origin.is_none() && i <= applied,
            ReadState::Failed(_) => r.origin.is_none(),
            _ => false,
        })?;
        let r = self.reads.queue.remove(pos);
        Some(match r.state {
            ReadState::Confirmed(index) => (r.id, Ok(index)),
            ReadState::Failed(reason) => (r.id, Err(reason)),
            _ => return None,
        })
    }
}
