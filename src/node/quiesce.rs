//! Quiescence (`Config::quiesce`): an idle group stops ticking and heartbeating, as
//! CockroachDB's ranges do, so a process can host thousands of groups that cost nothing while
//! idle.
//!
//! # Protocol
//! * A leader quiesces at a heartbeat tick when nothing is in flight: every member (learners
//!   included) matches its last index and is not being sent a snapshot, the last index is
//!   committed and durable on its own disk; no read, confirmation round, transfer, joint
//!   configuration, snapshot install of its own or pending no-op. It
//!   sends [`Body::Quiesce`] (carrying its commit index) to every member instead of the
//!   heartbeat, drops its read lease, and from then on ignores ticks.
//! * A follower that receives `Quiesce` from its leader and holds every entry it names adopts
//!   the commit index and quiesces (its election timer restarted, so a woken follower waits a
//!   full timeout before campaigning, and refuses votes meanwhile under check-quorum). One
//!   that cannot (it lacks entries, has a read pending, is installing) takes it as a heartbeat
//!   and stays awake: it will campaign when its timer runs out, and that request wakes the leader.
//! * Any work wakes a node: a proposal, a read, a membership change, a transfer, a campaign,
//!   and any valid message of its term or a later one, except that a quiescent leader sleeps on
//!   through an acknowledgement (append, heartbeat or read round) that leaves it quiescable: those
//!   are late answers to what it sent before it quiesced. A woken leader restarts its
//!   check-quorum window (with no follower counted active yet) and heartbeats at once, which
//!   wakes its followers.
//! * A quiescent follower learns of its leader's failure from the runner: `report_peer_down`
//!   naming its leader wakes it and makes it forget that leader (so it grants votes at once),
//!   and it campaigns when its election timer runs out. A runner
//!   that skips quiescent nodes' ticks must report failed peer processes; stale messages (of an
//!   earlier term), refused messages and reports about other peers do not wake a node.
//!
//! # Why it is safe
//! Ticks drive only timeouts, and no safety property of Raft depends on a timeout firing; they
//! bound how long progress waits. The one exception is the read lease, whose safety rests on
//! counting time: a quiescent leader counts none, so it drops its lease when it quiesces and
//! serves no lease read until a confirmation round after waking renews it; followers, whose
//! refusal to vote protects that lease, restart their timers when they quiesce and wake, so they
//! refuse votes for at least the full election timeout the lease assumes. The simulator runs
//! with quiescence on and off under every fault, and with a runner that skips quiescent nodes.

use super::{FollowerInstall, Node, RoleState};
use crate::message::Body;
use crate::types::{Index, NodeId};

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
    /// Whether this node is quiescent: it ignores [`tick`](Self::tick) until an input wakes it
    /// (see `Config::quiesce`). A runner that hosts many groups stops ticking quiescent nodes
    /// and checks again after every input it gives them.
    #[must_use]
    pub fn is_quiescent(&self) -> bool {
        self.quiescent
    }

    /// Leader: nothing is in flight, so the group may stop ticking.
    pub(super) fn can_quiesce(&self) -> bool {
        let RoleState::Leader(progress) = &self.role else {
            return false;
        };
        let last = self.log.last_index();
        self.cfg.quiesce
            && self.commit == last
            && self.log.stable_last() == last
            && !self.noop_pending
            && self.transfer.is_none()
            && self.hs.pending_install.is_none()
            && !self.configs.current.is_joint()
            && self.reads_idle()
            && progress
                .iter()
                .all(|p| p.matched == last && p.state != crate::progress::FlowState::Snapshot)
    }

    /// Leader, at a heartbeat tick: quiesce if nothing is in flight. Returns whether it did.
    pub(super) fn maybe_quiesce(&mut self) -> bool {
        if !self.can_quiesce() {
            return false;
        }
        let RoleState::Leader(progress) = &self.role else {
            return false;
        };
        let commit = self.commit;
        for i in 0..progress.len() {
            let RoleState::Leader(progress) = &self.role else {
                return false;
            };
            let to = progress[i].id;
            self.send(to, self.hs.term, Body::Quiesce { commit });
        }
        debug!("{} quiesces at term {}", self.cfg.id, self.hs.term);
        self.quiescent = true;
        self.stats.quiesced += 1;
        self.drop_lease();
        true
    }

    /// Follower: the leader's `Quiesce` (already accepted as from this term's leader).
    pub(super) fn handle_quiesce(&mut self, from: NodeId, commit: Index) {
        let holds_all = self.log.last_index() >= commit;
        self.adopt_commit(commit);
        let busy = !self.reads_idle()
            || matches!(
                self.install,
                FollowerInstall::Round(_) | FollowerInstall::Stream(_)
            );
        if holds_all && !busy && self.cfg.quiesce {
            self.quiescent = true;
            self.stats.quiesced += 1;
            self.reset_election_timer();
        } else {
            self.send(from, self.hs.term, Body::HeartbeatResponse);
        }
    }

    /// Wakes a quiescent node (any input that means work). A leader restarts its check-quorum
    /// window and heartbeats now, which wakes its followers.
    #[inline]
    pub(super) fn unquiesce(&mut self) {
        self.wake_up(true);
    }

    #[inline]
    fn wake_up(&mut self, heartbeat: bool) {
        if self.quiescent {
            self.wake_up_now(heartbeat);
        }
    }

    #[cold]
    fn wake_up_now(&mut self, heartbeat: bool) {
        self.quiescent = false;
        self.stats.woken += 1;
        debug!("{} wakes at term {}", self.cfg.id, self.hs.term);
        if let RoleState::Leader(progress) = &mut self.role {
            for p in progress.iter_mut() {
                p.recent_active = false;
            }
            self.election_elapsed = 0;
            self.heartbeat_elapsed = 0;
            if heartbeat {
                self.bcast_heartbeat();
                self.renew_lease();
            }
        }
    }

    /// Whether message `body` of term `term` wakes this node: valid messages of its term or a
    /// later one do, except the leader's `Quiesce` on a follower and, on a quiescent leader,
    /// acknowledgements of its own term (handled first, see [`Self::settle`]).
    #[inline]
    pub(super) fn wakes<C, X>(&self, term: crate::types::Term, body: &Body<C, X>) -> bool {
        if !self.quiescent || term < self.hs.term {
            return false;
        }
        if term > self.hs.term {
            return true;
        }
        match self.role {
            RoleState::Leader(_) => !matches!(
                body,
                Body::AppendResponse(_) | Body::HeartbeatResponse | Body::ReadConfirmAck { .. }
            ),
            _ => !matches!(body, Body::Quiesce { .. }),
        }
    }

    /// Wakes for a message of term `term`: one of a later term changes the role or the term
    /// first, so a leader sends no heartbeat of its old term.
    #[inline]
    pub(super) fn unquiesce_for(&mut self, term: crate::types::Term) {
        self.wake_up(term <= self.hs.term);
    }

    /// After a message handled while quiescent: a leader that is no longer quiescable wakes.
    #[inline]
    pub(super) fn settle(&mut self) {
        if self.quiescent && matches!(self.role, RoleState::Leader(_)) && !self.can_quiesce() {
            self.unquiesce();
        }
    }

    /// The runner knows that `peer`'s process failed (a process-level liveness check, not a
    /// lost connection). A follower whose leader it is stops waiting for that leader: it wakes if
    /// quiescent and forgets the leader, so that it grants votes at once and campaigns when its
    /// election timer runs out (or when the runner asks it to). Under lease reads an awake
    /// follower keeps the leader (and refuses votes) until its timer runs out: a lease may rest
    /// on that refusal, and a liveness check can be wrong. A quiescent one forgets it even then:
    /// it acknowledged no read round since it quiesced (a round's message would have woken it),
    /// so no lease rests on its refusal. On a leader it is
    /// [`report_unreachable`](Self::report_unreachable).
    pub fn report_peer_down(&mut self, peer: NodeId) {
        self.wake = true;
        if matches!(self.role, RoleState::Follower) && self.leader == Some(peer) {
            if self.quiescent {
                self.unquiesce();
                self.leader = None;
            } else if !self.cfg.lease_reads {
                self.leader = None;
            }
        }
        self.report_unreachable(peer);
    }
}
