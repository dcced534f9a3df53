//! Quiescence (`Config::quiesce`): an idle group stops ticking and heartbeating, as
//! CockroachDB's ranges do, so a process can host thousands of groups that cost nothing while
//! idle.
//!
//! # Protocol
//! * A leader quiesces at a heartbeat tick when nothing is in flight: every member (learners
//!   included) matches its last index, or was reported failed (`report_peer_down`) and not
//!   heard from since, and is not being sent a snapshot, the last index is
//!   committed and durable on its own disk; no read, confirmation round, transfer, joint
//!   configuration, snapshot install of its own or pending no-op. It
//!   sends [`Body::Quiesce`] (carrying its commit index, its last index) to every member that
//!   holds every entry instead of the heartbeat, drops its read lease, and from then on ignores
//!   ticks. A member reported down is sent nothing: the notice's commit index must never reach
//!   a follower past what it is known to hold, or it would commit entries it may not share.
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
//!   and it campaigns when its election timer runs out. A leader told a follower is down
//!   quiesces without it; told it is back (`report_peer_up`, or any message of it), the leader
//!   wakes and brings it up to date. A runner
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
            && progress.iter().all(|p| {
                (p.matched == last || p.down) && p.state != crate::progress::FlowState::Snapshot
            })
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
            // Only to the followers that hold every entry: a follower reported down may lag
            // (or hold another leader's entries past its match index), and a commit index
            // beyond what it is known to hold would make it commit them (found by the
            // simulator, seed 100000304 of tests/multiraft.rs). Those reported down hear
            // nothing: alive after all, they campaign, and that wakes this leader.
            let pr = &progress[i];
            if pr.matched == self.log.last_index() {
                let to = pr.id;
                self.send(to, self.hs.term, Body::Quiesce { commit });
            }
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

    /// The runner's liveness check hears from `peer`'s process again (after
    /// [`report_peer_down`](Self::report_peer_down)). A leader that quiesced without that
    /// follower wakes and heartbeats, so that the follower catches up: a restarted follower
    /// that cannot campaign (a learner, or one whose log says it is no voter) would otherwise
    /// never be contacted. Does nothing unless the peer was reported down.
    pub fn report_peer_up(&mut self, peer: NodeId) {
        if let Some(pr) = self.follower_mut(peer)
            && pr.down
        {
            pr.down = false;
            self.wake = true;
            self.unquiesce();
        }
    }

    /// Leader: a message came from `from` outside the replication exchange (a campaign): it is
    /// not down, so quiescence waits for it again (`report_peer_down`). Acknowledgements clear
    /// the report where they mark the follower active.
    pub(super) fn heard_from(&mut self, from: NodeId) {
        if let Some(pr) = self.follower_mut(from) {
            pr.down = false;
        }
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
    /// [`report_unreachable`](Self::report_unreachable), and quiescence stops waiting for that
    /// follower to catch up until it is heard from again (a group need not stay awake while a
    /// member's process is down).
    pub fn report_peer_down(&mut self, peer: NodeId) {
        self.wake = true;
        if let Some(pr) = self.follower_mut(peer) {
            pr.down = true;
        }
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
