//! Cluster membership: voters, learners, joint configurations (Raft thesis ch. 4) and quorums.
//!
//! A [`Membership`] is the configuration a node uses: the voters, the voters of the outgoing
//! configuration while a joint configuration is in effect, and the learners (members that
//! receive the log but neither vote nor count toward any quorum). A [`ConfChange`] is what a
//! membership-change log entry carries: up to [`MAX_CONF_CHANGES`] changes applied together, or
//! (with no changes) the step that leaves a joint configuration.
//!
//! Invariants, kept by [`Membership::apply`] (the one way to derive a configuration from
//! another):
//! * there is at least one voter; no node is listed twice in one list; no node is both a voter
//!   of the incoming configuration and a learner;
//! * a configuration is joint exactly when `outgoing` is non-empty; a joint configuration only
//!   changes by leaving it, and a change that alters the voters always goes through one (so
//!   every quorum of the new voters overlaps every quorum of the old ones, thesis §4.3);
//! * a change that alters only learners takes effect directly (learners count in no quorum);
//! * at most `N` distinct members (voters of both halves and learners together).
//!
//! Quorums of a joint configuration need a majority of each half.

use crate::types::NodeId;
use core::fmt;
use serde::{Deserialize, Serialize};

/// How many changes one [`ConfChange`] (one log entry) can carry.
pub const MAX_CONF_CHANGES: usize = 3;

/// One change to the membership.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Change {
    /// Make the node a voter (a learner is promoted).
    AddVoter(NodeId),
    /// Make the node a learner (a voter is demoted).
    AddLearner(NodeId),
    /// Remove the node, voter or learner.
    Remove(NodeId),
}

impl Change {
    /// The node the change is about.
    #[must_use]
    pub const fn node(&self) -> NodeId {
        match *self {
            Self::AddVoter(id) | Self::AddLearner(id) | Self::Remove(id) => id,
        }
    }
    const fn code(&self) -> u8 {
        match self {
            Self::AddVoter(_) => 0,
            Self::AddLearner(_) => 1,
            Self::Remove(_) => 2,
        }
    }
    const fn from_code(code: u8, id: NodeId) -> Self {
        match code {
            0 => Self::AddVoter(id),
            1 => Self::AddLearner(id),
            _ => Self::Remove(id),
        }
    }
}

/// What a membership-change entry carries: up to [`MAX_CONF_CHANGES`] changes applied together
/// (through a joint configuration when the voters change), or no change at all, which leaves
/// the joint configuration in effect.
///
/// Stored compactly (32 bytes) because every log entry has room for one.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ConfChangeRepr", try_from = "ConfChangeRepr")]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConfChange {
    nodes: [NodeId; MAX_CONF_CHANGES],
    codes: [u8; MAX_CONF_CHANGES],
    len: u8,
    explicit_leave: bool,
}

/// The wire form of a [`ConfChange`]: the changes, and whether leaving the joint configuration
/// waits for an explicit request.
#[derive(Clone, Serialize, Deserialize)]
struct ConfChangeRepr {
    changes: heapless::Vec<Change, MAX_CONF_CHANGES>,
    explicit_leave: bool,
}

impl From<ConfChange> for ConfChangeRepr {
    fn from(c: ConfChange) -> Self {
        Self {
            changes: c.changes().collect(),
            explicit_leave: c.explicit_leave,
        }
    }
}

impl TryFrom<ConfChangeRepr> for ConfChange {
    type Error = ConfChangeError;
    fn try_from(r: ConfChangeRepr) -> Result<Self, ConfChangeError> {
        let mut c = Self::leave_joint();
        for change in r.changes {
            c = c.with(change)?;
        }
        c.explicit_leave = r.explicit_leave;
        Ok(c)
    }
}

impl fmt::Debug for ConfChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_leave_joint() {
            return f.write_str("LeaveJoint");
        }
        let mut l = f.debug_list();
        for c in self.changes() {
            l.entry(&c);
        }
        l.finish()?;
        if self.explicit_leave {
            f.write_str(" (explicit leave)")?;
        }
        Ok(())
    }
}

impl ConfChange {
    /// The change that leaves a joint configuration (no changes of its own).
    #[must_use]
    pub const fn leave_joint() -> Self {
        Self {
            nodes: [NodeId(0); MAX_CONF_CHANGES],
            codes: [0; MAX_CONF_CHANGES],
            len: 0,
            explicit_leave: false,
        }
    }

    /// A single change.
    #[must_use]
    pub const fn single(change: Change) -> Self {
        let mut c = Self::leave_joint();
        c.nodes[0] = change.node();
        c.codes[0] = change.code();
        c.len = 1;
        c
    }

    /// Adds one more change to apply together with the others.
    ///
    /// # Errors
    /// [`ConfChangeError::TooManyChanges`] beyond [`MAX_CONF_CHANGES`],
    /// [`ConfChangeError::Duplicate`] for a node already named in this change,
    /// [`ConfChangeError::ZeroId`] for node 0.
    pub fn with(mut self, change: Change) -> Result<Self, ConfChangeError> {
        let id = change.node();
        if id.0 == 0 {
            return Err(ConfChangeError::ZeroId);
        }
        if self.changes().any(|c| c.node() == id) {
            return Err(ConfChangeError::Duplicate(id));
        }
        let k = self.len as usize;
        if k >= MAX_CONF_CHANGES {
            return Err(ConfChangeError::TooManyChanges);
        }
        self.nodes[k] = id;
        self.codes[k] = change.code();
        self.len += 1;
        Ok(self)
    }

    /// Keeps the joint configuration this change enters until
    /// [`Node::leave_joint`](crate::Node::leave_joint) is called, instead of leaving it
    /// automatically once it is committed.
    #[must_use]
    pub const fn with_explicit_leave(mut self) -> Self {
        self.explicit_leave = true;
        self
    }

    /// The changes, in order.
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        (0..self.len as usize).map(|k| Change::from_code(self.codes[k], self.nodes[k]))
    }

    /// Whether this is the step that leaves a joint configuration.
    #[must_use]
    pub const fn is_leave_joint(&self) -> bool {
        self.len == 0
    }
}

/// Why a membership change (or a membership) was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfChangeError {
    /// Node 0 is reserved.
    ZeroId,
    /// A node named twice in one change or one list.
    Duplicate(NodeId),
    /// More than [`MAX_CONF_CHANGES`] changes in one step.
    TooManyChanges,
    /// More members than the node's `PEERS` capacity.
    TooManyMembers,
    /// The change would leave no voter.
    NoVoters,
    /// Adds a voter that already is one, or a learner that already is one.
    AlreadyMember(NodeId),
    /// Removes a node that is not a member.
    NotAMember(NodeId),
    /// A joint configuration is in effect: only leaving it is possible.
    InJoint,
    /// Asks to leave a joint configuration when none is in effect.
    NotJoint,
}

impl fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroId => f.write_str("node id 0 is reserved"),
            Self::Duplicate(id) => write!(f, "node {id} named twice"),
            Self::TooManyChanges => f.write_str("too many changes in one step"),
            Self::TooManyMembers => f.write_str("more members than the PEERS capacity"),
            Self::NoVoters => f.write_str("the change would leave no voter"),
            Self::AlreadyMember(id) => write!(f, "node {id} already has that role"),
            Self::NotAMember(id) => write!(f, "node {id} is not a member"),
            Self::InJoint => f.write_str("a joint configuration is in effect"),
            Self::NotJoint => f.write_str("no joint configuration to leave"),
        }
    }
}

impl core::error::Error for ConfChangeError {}

/// The outcome of counting votes (or acknowledgements) against a configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// A cluster configuration: voters, the outgoing voters of a joint configuration, learners.
///
/// There is always at least one voter; no node is both a voter and a learner (a voter being
/// demoted stays in `outgoing` until the joint configuration is left); a configuration changes
/// only through [`apply`](Self::apply), which sends every change of the voters through a joint
/// configuration. A quorum of a joint configuration is a majority of each half.
///
/// Decoding checks these invariants as [`from_parts`](Self::from_parts) does (a membership
/// arrives in a snapshot's meta, possibly from a peer): a decoded membership with a duplicate,
/// node 0, no voters or too many members is refused, and its lists come out sorted.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "MembershipRepr<N>")]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Membership<const N: usize> {
    voters: heapless::Vec<NodeId, N>,
    outgoing: heapless::Vec<NodeId, N>,
    learners: heapless::Vec<NodeId, N>,
    auto_leave: bool,
}

/// A [`Membership`] as decoded, before its invariants are checked (the same encoding).
#[derive(Deserialize)]
struct MembershipRepr<const N: usize> {
    voters: heapless::Vec<NodeId, N>,
    outgoing: heapless::Vec<NodeId, N>,
    learners: heapless::Vec<NodeId, N>,
    auto_leave: bool,
}

impl<const N: usize> TryFrom<MembershipRepr<N>> for Membership<N> {
    type Error = ConfChangeError;
    fn try_from(r: MembershipRepr<N>) -> Result<Self, ConfChangeError> {
        Self::from_parts(&r.voters, &r.outgoing, &r.learners, r.auto_leave)
    }
}

fn check_list(ids: &[NodeId]) -> Result<(), ConfChangeError> {
    for (i, a) in ids.iter().enumerate() {
        if a.0 == 0 {
            return Err(ConfChangeError::ZeroId);
        }
        if ids[i + 1..].contains(a) {
            return Err(ConfChangeError::Duplicate(*a));
        }
    }
    Ok(())
}

impl<const N: usize> Membership<N> {
    /// No members at all: the placeholder of a node not yet initialised
    /// ([`Node::vacant`](crate::Node::vacant)).
    pub(crate) const fn empty() -> Self {
        Self {
            voters: heapless::Vec::new(),
            outgoing: heapless::Vec::new(),
            learners: heapless::Vec::new(),
            auto_leave: false,
        }
    }

    /// A configuration of `voters` only.
    ///
    /// # Errors
    /// No voters, node 0, a duplicate, or more than `N` voters.
    pub fn new(voters: &[NodeId]) -> Result<Self, ConfChangeError> {
        Self::with_learners(voters, &[])
    }

    /// A configuration of `voters` and `learners`.
    ///
    /// # Errors
    /// No voters, node 0, a duplicate (also across the lists), or more than `N` members.
    pub fn with_learners(voters: &[NodeId], learners: &[NodeId]) -> Result<Self, ConfChangeError> {
        if voters.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        check_list(voters)?;
        check_list(learners)?;
        if let Some(l) = learners.iter().find(|l| voters.contains(l)) {
            return Err(ConfChangeError::Duplicate(*l));
        }
        let mut m = Self {
            voters: heapless::Vec::from_slice(voters)
                .map_err(|_| ConfChangeError::TooManyMembers)?,
            outgoing: heapless::Vec::new(),
            learners: heapless::Vec::from_slice(learners)
                .map_err(|_| ConfChangeError::TooManyMembers)?,
            auto_leave: false,
        };
        m.sort();
        if m.member_count() > N {
            return Err(ConfChangeError::TooManyMembers);
        }
        Ok(m)
    }

    /// A configuration from its parts, as an application that stores memberships in its own
    /// format rebuilds one: `outgoing` non-empty for a joint configuration (`auto_leave` says
    /// whether the leader leaves it by itself).
    ///
    /// # Errors
    /// As [`with_learners`](Self::with_learners), and for a duplicate within `outgoing`.
    pub fn from_parts(
        voters: &[NodeId],
        outgoing: &[NodeId],
        learners: &[NodeId],
        auto_leave: bool,
    ) -> Result<Self, ConfChangeError> {
        let mut m = Self::with_learners(voters, learners)?;
        check_list(outgoing)?;
        m.outgoing =
            heapless::Vec::from_slice(outgoing).map_err(|_| ConfChangeError::TooManyMembers)?;
        m.auto_leave = auto_leave && m.is_joint();
        m.sort();
        if m.member_count() > N {
            return Err(ConfChangeError::TooManyMembers);
        }
        Ok(m)
    }

    /// The voters (of the incoming configuration, while joint).
    #[must_use]
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }
    /// The voters of the outgoing configuration while a joint configuration is in effect;
    /// empty otherwise.
    #[must_use]
    pub fn outgoing(&self) -> &[NodeId] {
        &self.outgoing
    }
    /// The learners (a voter being demoted stays in `outgoing` until the joint configuration is
    /// left).
    #[must_use]
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }
    /// Whether a joint configuration is in effect.
    #[must_use]
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
    /// Whether the joint configuration in effect is left automatically once committed.
    #[must_use]
    pub fn auto_leave(&self) -> bool {
        self.auto_leave
    }
    /// Whether `id` votes (in either half of a joint configuration).
    #[must_use]
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }
    /// Whether `id` is a learner and not a voter.
    #[must_use]
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }
    /// Whether `id` is a member (voter or learner).
    #[must_use]
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }
    /// Every member once: voters, outgoing voters, learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        let out = self.outgoing.iter().filter(|id| !self.voters.contains(id));
        let learners = self.learners.iter().filter(|id| !self.is_voter(**id));
        self.voters.iter().chain(out).chain(learners).copied()
    }
    /// Every voter once (both halves of a joint configuration).
    pub fn all_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let out = self.outgoing.iter().filter(|id| !self.voters.contains(id));
        self.voters.iter().chain(out).copied()
    }
    fn member_count(&self) -> usize {
        self.members().count()
    }
    /// Lists are kept sorted: equal memberships compare equal.
    fn sort(&mut self) {
        insertion_sort(&mut self.voters, |a, b| a < b);
        insertion_sort(&mut self.outgoing, |a, b| a < b);
        insertion_sort(&mut self.learners, |a, b| a < b);
    }

    /// The configuration after `change`.
    ///
    /// # Errors
    /// Why the change is impossible from this configuration; see [`ConfChangeError`].
    pub fn apply(&self, change: &ConfChange) -> Result<Self, ConfChangeError> {
        if change.is_leave_joint() {
            if !self.is_joint() {
                return Err(ConfChangeError::NotJoint);
            }
            let mut next = self.clone();
            next.outgoing.clear();
            next.auto_leave = false;
            return Ok(next);
        }
        if self.is_joint() {
            return Err(ConfChangeError::InJoint);
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        for c in change.changes() {
            match c {
                Change::AddVoter(id) => {
                    if voters.contains(&id) {
                        return Err(ConfChangeError::AlreadyMember(id));
                    }
                    learners.retain(|l| *l != id);
                    voters
                        .push(id)
                        .map_err(|_| ConfChangeError::TooManyMembers)?;
                }
                Change::AddLearner(id) => {
                    if learners.contains(&id) {
                        return Err(ConfChangeError::AlreadyMember(id));
                    }
                    voters.retain(|v| *v != id);
                    learners
                        .push(id)
                        .map_err(|_| ConfChangeError::TooManyMembers)?;
                }
                Change::Remove(id) => {
                    if !voters.contains(&id) && !learners.contains(&id) {
                        return Err(ConfChangeError::NotAMember(id));
                    }
                    voters.retain(|v| *v != id);
                    learners.retain(|l| *l != id);
                }
            }
        }
        if voters.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        let same_voters =
            voters.len() == self.voters.len() && voters.iter().all(|v| self.voters.contains(v));
        let mut next = if same_voters {
            Self {
                voters,
                outgoing: heapless::Vec::new(),
                learners,
                auto_leave: false,
            }
        } else {
            Self {
                voters,
                outgoing: self.voters.clone(),
                learners,
                auto_leave: !change.explicit_leave,
            }
        };
        next.sort();
        if next.member_count() > N {
            return Err(ConfChangeError::TooManyMembers);
        }
        Ok(next)
    }

    /// The highest value a quorum has reached, given each voter's value (a matched index, an
    /// acknowledged round); with a joint configuration, the lower of the two halves'.
    pub(crate) fn quorum_min(&self, value: impl Fn(NodeId) -> u64) -> u64 {
        // Each voter's value looked up once, then counted (one copy of the lookup per caller).
        let half = |ids: &[NodeId]| {
            let mut m = [0u64; N];
            let n = ids.len().min(N);
            for (slot, &id) in m.iter_mut().zip(ids) {
                *slot = value(id);
            }
            majority_of_values(&mut m[..n])
        };
        let incoming = half(&self.voters);
        if self.outgoing.is_empty() {
            incoming
        } else {
            core::cmp::min(incoming, half(&self.outgoing))
        }
    }

    /// Counts answers: `answer(id)` is `Some(true)` for a grant, `Some(false)` for a refusal,
    /// `None` for no answer yet.
    pub(crate) fn vote_result(&self, answer: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let half = |ids: &[NodeId]| -> VoteResult {
            if ids.is_empty() {
                return VoteResult::Won;
            }
            let quorum = ids.len() / 2 + 1;
            let yes = ids.iter().filter(|&&id| answer(id) == Some(true)).count();
            let no = ids.iter().filter(|&&id| answer(id) == Some(false)).count();
            if yes >= quorum {
                VoteResult::Won
            } else if no > ids.len() - quorum {
                VoteResult::Lost
            } else {
                VoteResult::Pending
            }
        };
        match (half(&self.voters), half(&self.outgoing)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the voters for which `yes` holds form a quorum.
    pub(crate) fn is_quorum(&self, yes: impl Fn(NodeId) -> bool) -> bool {
        self.vote_result(|id| yes(id).then_some(true)) == VoteResult::Won
    }
}

/// The highest value a majority of `n` voters reached, given the `k`-th voter's value (the
/// `n / 2`-th from the top); `u64::MAX` for no voters (an empty half of a configuration
/// constrains nothing). Up to three without sorting.
#[inline(always)]
pub(crate) fn majority_of<const N: usize>(n: usize, value: impl Fn(usize) -> u64) -> u64 {
    match n {
        0 => u64::MAX,
        1 => value(0),
        2 => core::cmp::min(value(0), value(1)),
        3 => {
            let (a, b, c) = (value(0), value(1), value(2));
            core::cmp::max(
                core::cmp::min(a, b),
                core::cmp::min(core::cmp::max(a, b), c),
            )
        }
        _ => {
            let mut m = [0u64; N];
            let n = n.min(N);
            for (k, slot) in m[..n].iter_mut().enumerate() {
                *slot = value(k);
            }
            sorted_majority(&mut m[..n])
        }
    }
}

/// `majority_of` over the values themselves.
#[inline]
fn majority_of_values(values: &mut [u64]) -> u64 {
    match *values {
        [] => u64::MAX,
        [a] => a,
        [a, b] => core::cmp::min(a, b),
        [a, b, c] => core::cmp::max(
            core::cmp::min(a, b),
            core::cmp::min(core::cmp::max(a, b), c),
        ),
        _ => sorted_majority(values),
    }
}

/// Four voters or more: sorts the values high to low and takes the middle one (out of line:
/// one copy of the sort, whatever the caller).
#[inline(never)]
fn sorted_majority(values: &mut [u64]) -> u64 {
    insertion_sort(values, |a, b| a > b);
    values[values.len() / 2]
}

/// Sorts at most a configuration's worth of elements (`before(a, b)`: `a` goes first).
/// Insertion sort: for the handful of members a configuration holds it is as fast as the
/// standard library's sorts and a few dozen bytes of code, where `sort_unstable` pulled about
/// 10 KB into a Thumb image.
fn insertion_sort<T: Copy>(v: &mut [T], before: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && before(&x, &v[j - 1]) {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> heapless::Vec<NodeId, 8> {
        v.iter().map(|&i| NodeId(i)).collect()
    }
    fn m(v: &[u64]) -> Membership<5> {
        Membership::new(&ids(v)).unwrap()
    }
    fn one(c: Change) -> ConfChange {
        ConfChange::single(c)
    }

    #[test]
    fn insertion_sort_sorts() {
        let mut rng = crate::rng::SplitMix64::new(7);
        for len in 0..9 {
            for _ in 0..50 {
                let mut v: heapless::Vec<u64, 8> = (0..len).map(|_| rng.next_u64() % 5).collect();
                let mut want = v.clone();
                want.sort_unstable();
                insertion_sort(&mut v, |a, b| a < b);
                assert_eq!(v, want);
                want.reverse();
                insertion_sort(&mut v, |a, b| a > b);
                assert_eq!(v, want);
            }
        }
    }

    #[test]
    fn lists_are_sorted_whatever_order_they_were_given_in() {
        let c = m(&[3, 1, 2]);
        assert_eq!(c.voters(), &ids(&[1, 2, 3])[..]);
        assert_eq!(c, m(&[2, 3, 1]));
        let l = c
            .apply(&one(Change::AddLearner(NodeId(5))))
            .unwrap()
            .apply(&one(Change::AddLearner(NodeId(4))))
            .unwrap();
        assert_eq!(l.learners(), &ids(&[4, 5])[..]);
        // A voter added below the others is sorted in; the outgoing half keeps the old order.
        let j = m(&[2, 3, 4])
            .apply(&one(Change::AddVoter(NodeId(1))))
            .unwrap();
        assert_eq!(j.voters(), &ids(&[1, 2, 3, 4])[..]);
        assert_eq!(j.outgoing(), &ids(&[2, 3, 4])[..]);
        // Rebuilt from an application's own format, in any order.
        let p =
            Membership::<5>::from_parts(&ids(&[4, 1, 2, 3]), &ids(&[3, 1, 2]), &ids(&[5]), true)
                .unwrap();
        assert_eq!(p.voters(), &ids(&[1, 2, 3, 4])[..]);
        assert_eq!(p.outgoing(), &ids(&[1, 2, 3])[..]);
    }

    #[test]
    fn only_a_learner_is_a_learner() {
        let c = m(&[1, 2, 3])
            .apply(&one(Change::AddLearner(NodeId(4))))
            .unwrap();
        assert!(c.is_learner(NodeId(4)));
        assert!(!c.is_learner(NodeId(1)), "a voter");
        assert!(!c.is_learner(NodeId(9)), "not a member");
    }

    #[test]
    fn a_change_prints_what_it_changes() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{:?}", ConfChange::leave_joint()), "LeaveJoint");
        let c = one(Change::AddVoter(NodeId(4)))
            .with(Change::Remove(NodeId(1)))
            .unwrap();
        assert_eq!(format!("{c:?}"), "[AddVoter(4), Remove(1)]");
        assert_eq!(
            format!("{:?}", c.with_explicit_leave()),
            "[AddVoter(4), Remove(1)] (explicit leave)"
        );
    }

    #[test]
    fn adding_a_voter_goes_through_a_joint_configuration() {
        let c = m(&[1, 2, 3]);
        let j = c.apply(&one(Change::AddVoter(NodeId(4)))).unwrap();
        assert!(j.is_joint() && j.auto_leave());
        assert_eq!(j.voters(), &ids(&[1, 2, 3, 4])[..]);
        assert_eq!(j.outgoing(), &ids(&[1, 2, 3])[..]);
        assert_eq!(
            j.apply(&one(Change::Remove(NodeId(1)))),
            Err(ConfChangeError::InJoint)
        );
        let n = j.apply(&ConfChange::leave_joint()).unwrap();
        assert_eq!(n, m(&[1, 2, 3, 4]));
        assert_eq!(
            n.apply(&ConfChange::leave_joint()),
            Err(ConfChangeError::NotJoint)
        );
    }

    #[test]
    fn learner_changes_take_effect_directly_and_promotion_is_joint() {
        let c = m(&[1, 2, 3]);
        let l = c.apply(&one(Change::AddLearner(NodeId(4)))).unwrap();
        assert!(!l.is_joint());
        assert!(l.is_learner(NodeId(4)) && !l.is_voter(NodeId(4)));
        let p = l.apply(&one(Change::AddVoter(NodeId(4)))).unwrap();
        assert!(p.is_joint() && p.is_voter(NodeId(4)) && !p.is_learner(NodeId(4)));
        // Demotion: the demoted voter keeps voting in the outgoing half until the leave.
        let d = m(&[1, 2, 3])
            .apply(&one(Change::AddLearner(NodeId(3))))
            .unwrap();
        assert!(d.is_joint() && d.is_voter(NodeId(3)));
        let d = d.apply(&ConfChange::leave_joint()).unwrap();
        assert!(d.is_learner(NodeId(3)) && !d.is_voter(NodeId(3)));
        assert_eq!(d.members().count(), 3);
    }

    #[test]
    fn impossible_changes_are_typed_errors() {
        let c = m(&[1]);
        assert_eq!(
            c.apply(&one(Change::Remove(NodeId(1)))),
            Err(ConfChangeError::NoVoters)
        );
        assert_eq!(
            c.apply(&one(Change::Remove(NodeId(9)))),
            Err(ConfChangeError::NotAMember(NodeId(9)))
        );
        assert_eq!(
            c.apply(&one(Change::AddVoter(NodeId(1)))),
            Err(ConfChangeError::AlreadyMember(NodeId(1)))
        );
        let full = m(&[1, 2, 3, 4, 5]);
        assert_eq!(
            full.apply(&one(Change::AddLearner(NodeId(6)))),
            Err(ConfChangeError::TooManyMembers)
        );
        // A joint configuration counts both halves: replacing 5 by 6 needs 6 members.
        let swap = ConfChange::single(Change::AddVoter(NodeId(6)))
            .with(Change::Remove(NodeId(5)))
            .unwrap();
        assert_eq!(full.apply(&swap), Err(ConfChangeError::TooManyMembers));
        assert_eq!(
            ConfChange::single(Change::AddVoter(NodeId(6))).with(Change::Remove(NodeId(6))),
            Err(ConfChangeError::Duplicate(NodeId(6)))
        );
        let three = ConfChange::single(Change::AddVoter(NodeId(6)))
            .with(Change::AddVoter(NodeId(7)))
            .and_then(|c| c.with(Change::AddVoter(NodeId(8))))
            .unwrap();
        assert_eq!(
            three.with(Change::AddVoter(NodeId(9))),
            Err(ConfChangeError::TooManyChanges)
        );
        assert_eq!(Membership::<5>::new(&[]), Err(ConfChangeError::NoVoters));
        assert_eq!(
            Membership::<5>::with_learners(&ids(&[1]), &ids(&[1])),
            Err(ConfChangeError::Duplicate(NodeId(1)))
        );
    }

    #[test]
    fn a_quorum_value_is_what_a_majority_reached_for_every_size() {
        // The small sizes take a branch of their own; all must agree with counting.
        let mut rng = crate::rng::SplitMix64::new(11);
        for n in 1..=5u64 {
            let c: Membership<5> =
                Membership::new(&ids(&(1..=n).collect::<heapless::Vec<u64, 8>>())).unwrap();
            for _ in 0..200 {
                let v: heapless::Vec<u64, 8> = (0..=n).map(|_| rng.next_u64() % 4).collect();
                let value = |id: NodeId| v[id.0 as usize];
                let q = c.quorum_min(value);
                let reached = |x: u64| (1..=n).filter(|&i| v[i as usize] >= x).count() as u64;
                assert!(reached(q) > n / 2, "{v:?}: {q} is held by no majority");
                assert!(
                    reached(q + 1) <= n / 2,
                    "{v:?}: a majority holds more than {q}"
                );
                // The commit path's form, reading the values in order, agrees.
                assert_eq!(majority_of::<5>(n as usize, |k| v[k + 1]), q, "{v:?}");
            }
        }
    }

    #[test]
    fn joint_quorums_need_both_halves() {
        let j = m(&[1, 2, 3])
            .apply(
                &ConfChange::single(Change::AddVoter(NodeId(4)))
                    .with(Change::AddVoter(NodeId(5)))
                    .and_then(|c| c.with(Change::Remove(NodeId(1))))
                    .unwrap(),
            )
            .unwrap();
        // incoming {2,3,4,5}, outgoing {1,2,3}
        let matched = |id: NodeId| [0, 9, 8, 1, 7, 6][id.0 as usize];
        // incoming: 8,7,6,1 -> 3rd highest 6; outgoing: 9,8,1 -> 2nd highest 8
        assert_eq!(j.quorum_min(matched), 6);
        assert_eq!(m(&[1, 2, 3]).quorum_min(matched), 8);
        let yes = |set: &'static [u64]| move |id: NodeId| set.contains(&id.0);
        assert!(!j.is_quorum(yes(&[4, 5, 2])));
        assert!(j.is_quorum(yes(&[4, 5, 2, 3])));
        assert!(!j.is_quorum(yes(&[1, 2, 3])));
        assert_eq!(
            j.vote_result(|id| Some(id.0 != 1 && id.0 != 2)),
            VoteResult::Lost
        );
        assert_eq!(
            j.vote_result(|id| (id.0 == 2).then_some(true)),
            VoteResult::Pending
        );
    }

    #[test]
    fn a_decoded_membership_is_checked_like_a_built_one() {
        #[derive(Serialize)]
        struct Raw<'a> {
            voters: &'a [NodeId],
            outgoing: &'a [NodeId],
            learners: &'a [NodeId],
            auto_leave: bool,
        }
        let decode = |voters: &[u64], learners: &[u64]| {
            let (v, l) = (ids(voters), ids(learners));
            let raw = Raw {
                voters: &v,
                outgoing: &[],
                learners: &l,
                auto_leave: false,
            };
            let mut buf = [0u8; 64];
            let bytes = postcard::to_slice(&raw, &mut buf).unwrap();
            postcard::from_bytes::<Membership<5>>(bytes)
        };
        // The encoding is the membership's own: a valid one round-trips.
        let good = decode(&[1, 2, 3], &[4]).unwrap();
        let mut buf = [0u8; 64];
        let again = postcard::to_slice(&good, &mut buf).unwrap();
        assert_eq!(postcard::from_bytes::<Membership<5>>(again).unwrap(), good);
        // Out of order: sorted, equal to the built one.
        assert_eq!(decode(&[3, 1, 2], &[]).unwrap(), m(&[1, 2, 3]));
        // Broken invariants are refused.
        assert!(decode(&[1, 2, 2], &[]).is_err(), "a duplicate voter");
        assert!(
            decode(&[1, 2, 3], &[3]).is_err(),
            "a voter that is also a learner"
        );
        assert!(decode(&[], &[1]).is_err(), "no voters");
        assert!(decode(&[1, 0], &[]).is_err(), "node 0");
        assert!(
            decode(&[1, 2, 3], &[4, 5, 6]).is_err(),
            "six members in five places"
        );
    }

    #[test]
    fn an_election_is_lost_only_when_a_quorum_refused() {
        let answers = |no: &'static [u64]| move |id: NodeId| no.contains(&id.0).then_some(false);
        let five = m(&[1, 2, 3, 4, 5]);
        assert_eq!(five.vote_result(answers(&[1, 2])), VoteResult::Pending);
        assert_eq!(five.vote_result(answers(&[1, 2, 3])), VoteResult::Lost);
        let single = m(&[1]);
        assert_eq!(single.vote_result(answers(&[])), VoteResult::Pending);
        assert_eq!(single.vote_result(answers(&[1])), VoteResult::Lost);
    }

    #[test]
    fn removing_a_member_keeps_every_other() {
        let c = m(&[1, 2, 3])
            .apply(&one(Change::AddLearner(NodeId(4))))
            .unwrap()
            .apply(&one(Change::AddLearner(NodeId(5))))
            .unwrap();
        let without_learner = c.apply(&one(Change::Remove(NodeId(4)))).unwrap();
        assert_eq!(without_learner.learners(), &ids(&[5])[..]);
        assert_eq!(without_learner.voters(), &ids(&[1, 2, 3])[..]);
        let without_voter = c.apply(&one(Change::Remove(NodeId(3)))).unwrap();
        assert_eq!(without_voter.voters(), &ids(&[1, 2])[..]);
        assert_eq!(without_voter.learners(), &ids(&[4, 5])[..]);
    }
}
