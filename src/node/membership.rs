//! Membership changes on the node (Raft §6, thesis ch. 4): the configuration in use, changes
//! through joint consensus, leaving the joint configuration, and what a leader does when its
//! configuration changes.
//!
//! Invariants:
//! * `configs.current` is the membership after the latest membership entry in the log,
//!   committed or not (or the snapshot's membership when none follows the snapshot), and
//!   `configs.previous` the one before it. A log holds at most one membership entry that is not
//!   committed cluster-wide (a leader appends one only once the one before is committed, and
//!   every log is a prefix of some leader's log), so a truncation removes at most `current`
//!   and `previous` is what remains. A truncation that would remove both is impossible in Raft
//!   and is refused as malformed;
//! * a leader appends a membership entry only once the latest one is committed and an entry of
//!   its own term is committed (the one-at-a-time rule, with the fix Ongaro posted to raft-dev
//!   in 2015 for changes that race a leader change);
//! * a leader tracks progress for every member but itself and counts only voters, in both
//!   halves of a joint configuration; it leaves a joint configuration marked `auto_leave` as
//!   soon as it is committed, and steps down once a configuration that does not make it a
//!   voter is committed (after handing leadership to an up-to-date voter when there is one);
//! * a node that is not a voter of its configuration never campaigns.

use super::{Node, RoleState};
use crate::error::{MembershipError, StepError};
use crate::membership::{ConfChange, Membership};
use crate::message::Body;
use crate::progress::Progress;
use crate::storage::Storage;
use crate::types::{Entry, EntryData, Index, NodeId};

/// The configuration in use and the one before it.
#[derive(Clone, Debug)]
pub(crate) struct Configs<const N: usize> {
    pub(crate) current: Membership<N>,
    /// The index of the entry `current` came from (or of the snapshot it came with).
    pub(crate) index: Index,
    pub(crate) previous: Membership<N>,
    previous_index: Index,
}

impl<const N: usize> Configs<N> {
    pub(crate) const fn empty() -> Self {
        Self {
            current: Membership::empty(),
            index: Index(0),
            previous: Membership::empty(),
            previous_index: Index(0),
        }
    }

    pub(crate) fn new(index: Index, membership: Membership<N>) -> Self {
        Self {
            previous: membership.clone(),
            current: membership,
            index,
            previous_index: index,
        }
    }

    pub(crate) fn push(&mut self, index: Index, membership: Membership<N>) {
        self.previous = core::mem::replace(&mut self.current, membership);
        self.previous_index = core::mem::replace(&mut self.index, index);
    }

    /// Forgets the configurations of entries at or after `from`; false if that would need a
    /// configuration older than `previous`.
    fn truncate(&mut self, from: Index) -> bool {
        if self.index < from {
            return true;
        }
        if self.previous_index >= from {
            return false;
        }
        self.current = self.previous.clone();
        self.index = self.previous_index;
        true
    }

    /// Replays the membership entries a storage holds after `after`, starting from `base`.
    pub(crate) fn replay<P, S: Storage<P>>(
        after: Index,
        base: Membership<N>,
        storage: &S,
    ) -> Option<Self> {
        let mut configs = Self::new(after, base);
        let mut ok = true;
        storage.membership_changes(
            after,
            &mut |index, change| match configs.current.apply(change) {
                Ok(next) if ok && index > configs.index => configs.push(index, next),
                _ => ok = false,
            },
        );
        ok.then_some(configs)
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
    /// Proposes a membership change. On the leader it is appended to the log and takes effect
    /// at once, on every node as it appends it. A change of the voters goes through a joint
    /// configuration, which the leader leaves by itself once it is committed (unless the change
    /// asked for an explicit [`leave_joint`](Self::leave_joint)). A leader that removes or
    /// demotes itself steps down once the change that does so is committed.
    ///
    /// A new member catches up like any lagging follower (entries, or a snapshot when the leader
    /// has compacted what it needs). Adding it as a learner first, and promoting it once its
    /// log has caught up, keeps the cluster's availability while it does.
    ///
    /// # Errors
    /// [`MembershipError`]: not the leader, a change still pending (at most one at a time), a
    /// leadership transfer in progress, a full log, or a change that is impossible from the
    /// current membership.
    pub fn propose_conf_change<S: Storage<P>>(
        &mut self,
        change: ConfChange,
        storage: &S,
    ) -> Result<Index, MembershipError> {
        self.wake = true;
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(MembershipError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(MembershipError::Transferring);
        }
        if self.commit < self.configs.index || self.commit < self.reads.term_start {
            return Err(MembershipError::Pending);
        }
        let next = self
            .configs
            .current
            .apply(&change)
            .map_err(MembershipError::Invalid)?;
        if self.noop_pending || self.log.room() == 0 {
            return Err(MembershipError::Full);
        }
        self.unquiesce();
        let index = self.append_conf(change, next);
        self.bcast_append(storage);
        Ok(index)
    }

    /// Proposes leaving the joint configuration in effect (for changes made with
    /// [`ConfChange::with_explicit_leave`]).
    ///
    /// # Errors
    /// As [`propose_conf_change`](Self::propose_conf_change);
    /// `Invalid(ConfChangeError::NotJoint)` when no joint configuration is in effect.
    pub fn leave_joint<S: Storage<P>>(&mut self, storage: &S) -> Result<Index, MembershipError> {
        self.wake = true;
        self.propose_conf_change(ConfChange::leave_joint(), storage)
    }

    /// The membership in use: the latest in the log, committed or not.
    pub fn membership(&self) -> &Membership<PEERS> {
        &self.configs.current
    }

    /// The index of the entry (or snapshot) the membership in use comes from.
    pub fn membership_index(&self) -> Index {
        self.configs.index
    }

    /// Whether this node is a voter of its configuration.
    pub(super) fn is_voter(&self) -> bool {
        self.configs.current.is_voter(self.cfg.id)
    }

    /// Whether this node may campaign: it is a voter, or it was one and the configuration that
    /// removed it may not be committed yet. Thesis §4.2.2: such a server "might still be needed
    /// until the C_new entry is committed"; a leader that removed itself and crashed before
    /// committing the removal holds the only copy of it, and the remaining voters, still in
    /// the joint configuration, cannot win without its vote, which its longer log refuses. It
    /// does not count its own vote (it is not in its configuration).
    pub(super) fn can_campaign(&self) -> bool {
        let id = self.cfg.id;
        self.configs.current.is_voter(id)
            || (self.commit < self.configs.index && self.configs.previous.is_voter(id))
    }

    /// Leader: appends a membership entry (room checked by the caller) and adopts it.
    fn append_conf(&mut self, change: ConfChange, next: Membership<PEERS>) -> Index {
        let index = self.log.last_index().next();
        info!(
            "{} appends membership change {:?} at {}",
            self.cfg.id, change, index
        );
        let _ = self.log.push(Entry {
            term: self.hs.term,
            index,
            data: EntryData::Membership(change),
        });
        self.configs.push(index, next);
        self.sync_progress();
        // A lease proves that a quorum of the old configuration heard from this leader; the
        // new configuration's quorums need not overlap it. The next round renews it.
        self.drop_lease();
        index
    }

    /// Leader: one progress per member but itself (new members start probing at the newest
    /// entry). The installs reported per follower are kept (a node removed and added again
    /// may still report an install this leader already reported: seed 1007497).
    pub(super) fn sync_progress(&mut self) {
        let id = self.cfg.id;
        let next = self.log.last_index();
        let max_inflight = self.cfg.max_inflight;
        let RoleState::Leader(progress) = &mut self.role else {
            return;
        };
        let current = &self.configs.current;
        progress.retain(|p| current.is_member(p.id));
        for m in current.members() {
            if m != id && !progress.iter().any(|p| p.id == m) {
                let _ = progress.push(Progress::new(m, next.max(Index(1)), max_inflight));
            }
        }
    }

    /// Leader, once its commit index advanced (or room freed up): leaves a committed joint
    /// configuration marked for automatic leave, and steps down once a configuration without
    /// it as a voter is committed.
    pub(super) fn membership_after_commit(&mut self) {
        if !matches!(self.role, RoleState::Leader(_)) || self.commit < self.configs.index {
            return;
        }
        if !self.is_voter() {
            self.hand_over_and_step_down();
            return;
        }
        let current = &self.configs.current;
        if current.is_joint()
            && current.auto_leave()
            && self.commit >= self.reads.term_start
            && !self.noop_pending
            && self.log.room() > 0
            && let Ok(next) = current.apply(&ConfChange::leave_joint())
        {
            self.append_conf(ConfChange::leave_joint(), next);
        }
    }

    /// A leader that is no longer a voter: tells the most up-to-date voter to campaign at once
    /// (if one holds the whole log), then steps down.
    fn hand_over_and_step_down(&mut self) {
        let last = self.log.last_index();
        let best = match &self.role {
            RoleState::Leader(progress) => progress
                .iter()
                .filter(|p| self.configs.current.voters().contains(&p.id) && p.matched == last)
                .map(|p| p.id)
                .next(),
            _ => None,
        };
        info!(
            "{} is no longer a voter at term {}: stepping down",
            self.cfg.id, self.hs.term
        );
        if let Some(to) = best {
            self.send(to, self.hs.term, Body::TimeoutNow);
        }
        self.become_follower(self.hs.term, None);
    }

    /// Follower: the configurations after an append that truncates the log from `conflict`
    /// (when `truncating`) and appends `new`; `Ok(None)` when they do not change. Checked
    /// before anything is modified.
    ///
    /// # Errors
    /// [`StepError::Malformed`] for a membership entry that cannot follow the one before it,
    /// or a truncation of two membership entries (impossible in Raft).
    #[inline]
    pub(super) fn configs_after_append(
        &self,
        conflict: Index,
        truncating: bool,
        new: &[Entry<P>],
    ) -> Result<Option<Configs<PEERS>>, StepError> {
        let changes = new
            .iter()
            .any(|e| matches!(e.data, EntryData::Membership(_)));
        // Dropping the configuration in use needs a truncation: without one, `conflict` is
        // past the last index, which the configuration's index never is.
        let drops_current = self.configs.index >= conflict;
        if !changes && !drops_current {
            return Ok(None);
        }
        self.configs_after_change(conflict, truncating, new)
    }

    /// `configs_after_append` for entries that change the configuration (rare: out of line).
    #[inline(never)]
    fn configs_after_change(
        &self,
        conflict: Index,
        truncating: bool,
        new: &[Entry<P>],
    ) -> Result<Option<Configs<PEERS>>, StepError> {
        let mut configs = self.configs.clone();
        if truncating && !configs.truncate(conflict) {
            return Err(StepError::Malformed);
        }
        for e in new {
            if let EntryData::Membership(change) = &e.data {
                let next = configs
                    .current
                    .apply(change)
                    .map_err(|_| StepError::Malformed)?;
                configs.push(e.index, next);
            }
        }
        Ok(Some(configs))
    }

    /// Whether `from` may send this message although it is not a member: leaders and
    /// candidates this node does not know yet (its log may lag the configuration that added
    /// them) must be heard, or it could never catch up or help elect them.
    pub(super) fn accepts_from<C, X>(&self, from: NodeId, body: &Body<C, X>) -> bool {
        // The kind first: it decides for most traffic without a lookup.
        matches!(
            body,
            Body::Append { .. }
                | Body::Heartbeat { .. }
                | Body::Commit { .. }
                | Body::Quiesce { .. }
                | Body::InstallSnapshot { .. }
                | Body::ReadConfirm { .. }
                | Body::TimeoutNow
                | Body::VoteRequest { .. }
                | Body::VoteRequestTransfer { .. }
        ) || self.configs.current.is_member(from)
    }
}
