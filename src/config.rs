//! Node configuration and its validation.

use crate::membership::{ConfChangeError, Membership};
use crate::types::{Index, NodeId, SnapshotId, SnapshotMode};
use core::fmt;

/// What a node keeps of its [`Config`] after [`Node::init`](crate::Node::init): the settings
/// it reads while running. The membership, the applied index, the seed and the snapshot are
/// read once at start-up (the membership in use lives in the node's own configurations), so
/// a node does not carry a second, stale copy of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) id: NodeId,
    pub(crate) election_ticks: u32,
    pub(crate) heartbeat_ticks: u32,
    pub(crate) pre_vote: bool,
    pub(crate) check_quorum: bool,
    pub(crate) max_inflight: usize,
    pub(crate) lease_reads: bool,
    pub(crate) max_clock_drift_percent: u32,
    pub(crate) snapshot_mode: SnapshotMode,
    pub(crate) snapshot_resend_ticks: u32,
    pub(crate) log_retention: u64,
    pub(crate) quiesce: bool,
    pub(crate) apply_before_durable: bool,
}

impl Settings {
    /// The settings of a node that was never initialised (see `Node::vacant`): it ignores
    /// every input, so no value here is ever acted on.
    pub(crate) const VACANT: Self = Self {
        id: NodeId(0),
        election_ticks: 10,
        heartbeat_ticks: 1,
        pre_vote: true,
        check_quorum: true,
        max_inflight: 1,
        lease_reads: false,
        max_clock_drift_percent: 20,
        snapshot_mode: SnapshotMode::Stream,
        snapshot_resend_ticks: 3,
        log_retention: 0,
        quiesce: false,
        apply_before_durable: false,
    };

    /// The running settings of `config`.
    pub(crate) const fn of<const PEERS: usize>(config: &Config<PEERS>) -> Self {
        Self {
            id: config.id,
            election_ticks: config.election_ticks,
            heartbeat_ticks: config.heartbeat_ticks,
            pre_vote: config.pre_vote,
            check_quorum: config.check_quorum,
            max_inflight: config.max_inflight,
            lease_reads: config.lease_reads,
            max_clock_drift_percent: config.max_clock_drift_percent,
            snapshot_mode: config.snapshot_mode,
            snapshot_resend_ticks: config.snapshot_resend_ticks,
            log_retention: config.log_retention,
            quiesce: config.quiesce,
            apply_before_durable: config.apply_before_durable,
        }
    }
}

/// Configuration of one node. Build it with [`Config::new`], adjust the public fields, and hand it
/// to [`Node::new`](crate::Node::new), which validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Config<const PEERS: usize> {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The membership at [`snapshot`](Self::snapshot): for a new cluster, its initial members;
    /// after a restart, the membership stored with the application's snapshot. The node then
    /// applies every membership change in its stored log after the snapshot: the configuration
    /// in use is always the latest in the log (Raft §6). A node joining a running cluster may
    /// be given the cluster's current membership (or any membership that does not make it a
    /// voter): it learns the real one from the leader's log or snapshot.
    pub membership: Membership<PEERS>,
    /// Base election timeout in ticks. The effective timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)` after every reset, from `seed`.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`. Must be smaller than `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Pre-vote (thesis §9.6): a node first checks it could win before raising its term, so a
    /// partitioned node that rejoins does not disrupt the cluster.
    pub pre_vote: bool,
    /// Check-quorum: a leader that has not heard from a quorum within an election timeout steps
    /// down, and followers ignore vote requests while they hear from a leader ("leader lease").
    pub check_quorum: bool,
    /// How many append messages may be in flight to one follower in replicate state. At most the
    /// node's `INFLIGHT` capacity.
    pub max_inflight: usize,
    /// The index the application's state machine has already applied (0 for an in-memory state
    /// machine that is rebuilt from the log). Entries up to it are not emitted for apply again.
    pub applied: Index,
    /// Seed of the election-jitter generator. Give each node a different seed.
    pub seed: u64,
    /// Lease-based linearizable reads (thesis §6.4.1), off by default. A leader that heard
    /// from a quorum recently serves reads without a confirmation round, relying on followers
    /// refusing votes for an election timeout after hearing from it. Needs `check_quorum`, and
    /// must be set on every node: a restarted follower keeps the lease only if it has it on.
    /// Safe only while tick rates differ by less than
    /// [`max_clock_drift_percent`](Self::max_clock_drift_percent) and the runner ticks without
    /// pauses (see the README's "Linearizable reads").
    pub lease_reads: bool,
    /// The largest difference between two nodes' tick rates, in percent of the nominal rate,
    /// that lease reads tolerate. The lease is shortened by this much (default 20).
    pub max_clock_drift_percent: u32,
    /// The application's latest durable snapshot, which its state machine was restored from at
    /// start-up (`SnapshotId::ZERO` if none). If it is ahead of the stored log (a crash right
    /// after installing a snapshot), the node resets its log to it.
    pub snapshot: SnapshotId,
    /// How lagging followers are brought up to date (must be the same on every node).
    pub snapshot_mode: SnapshotMode,
    /// A leader re-sends a snapshot notification, or re-requests a lost chunk, at most once per
    /// this many ticks.
    pub snapshot_resend_ticks: u32,
    /// Compaction keeps at least this many of the newest entries, so that slightly slow
    /// followers catch up by appends rather than by snapshot.
    pub log_retention: u64,
    /// Quiescence, off by default: a leader whose followers hold every entry, with nothing else
    /// in flight, sends one [`Quiesce`](crate::Body::Quiesce) instead of its next heartbeat and
    /// stops ticking, and so do followers that hold what it says. Any work wakes the group (see
    /// [`Node::is_quiescent`](crate::Node::is_quiescent)). A runner that hosts many groups
    /// skips quiescent ones when it ticks, and must then report a failed peer process with
    /// [`Node::report_peer_down`](crate::Node::report_peer_down): a quiescent follower
    /// notices its leader's failure in no other way.
    pub quiesce: bool,
    /// Apply committed entries as soon as the runner has written them, off by default: an
    /// [`Action::Apply`](crate::Action::Apply) may then name entries whose persist is not yet
    /// acknowledged as durable here (they are durable on a quorum: that is what committed
    /// means). The runner's store must answer reads of entries it has written, and its state
    /// machine must be rebuilt from its latest durable snapshot after a crash (as
    /// [`applied`](Self::applied) 0 says), never be ahead of that snapshot on disk: a state
    /// machine that makes its applied index durable on its own could find it past the log's
    /// durable end after a crash.
    ///
    /// With it, a leader whose followers form a quorum without it
    /// ([`Node::followers_form_quorum`](crate::Node::followers_form_quorum)) need not make its
    /// own log durable before entries commit and apply: its runner may sync lazily (thesis
    /// §10.2.1: the leader writes its log in parallel with replication). Compaction still
    /// never passes the durable index.
    pub apply_before_durable: bool,
}

impl<const PEERS: usize> Config<PEERS> {
    /// A configuration with etcd-like defaults: election timeout 10 ticks, heartbeat every tick,
    /// pre-vote and check-quorum on, seed derived from the id.
    ///
    /// # Errors
    /// [`ConfigError::TooManyVoters`] when `voters` exceeds the `PEERS` capacity,
    /// [`ConfigError::ZeroId`] or [`ConfigError::DuplicateVoter`] for a bad list. Everything
    /// else is checked by [`Config::validate`].
    pub fn new(id: NodeId, voters: &[NodeId]) -> Result<Self, ConfigError> {
        let membership = Membership::new(voters).map_err(ConfigError::from)?;
        Ok(Self::with_membership(id, membership))
    }

    /// A configuration with the defaults of [`Config::new`] and any membership (learners,
    /// or one that does not include this node, for a node joining a running cluster).
    #[must_use]
    pub const fn with_membership(id: NodeId, membership: Membership<PEERS>) -> Self {
        Self {
            id,
            membership,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            max_inflight: usize::MAX,
            applied: Index(0),
            seed: id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
            snapshot: SnapshotId::ZERO,
            snapshot_mode: SnapshotMode::Stream,
            snapshot_resend_ticks: 3,
            log_retention: 0,
            quiesce: false,
            apply_before_durable: false,
            lease_reads: false,
            max_clock_drift_percent: 20,
        }
    }

    /// Checks the configuration for contradictions.
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.lease_reads && (!self.check_quorum || self.max_clock_drift_percent >= 100) {
            return Err(ConfigError::BadLease);
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::BadTimeouts);
        }
        if self.election_ticks > u32::MAX / 2 {
            return Err(ConfigError::BadTimeouts);
        }
        if self.max_inflight == 0 {
            return Err(ConfigError::ZeroInflight);
        }
        if self.snapshot_resend_ticks == 0 {
            return Err(ConfigError::BadTimeouts);
        }
        Ok(())
    }
}

/// Why a configuration or a restart state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A node id was 0.
    ZeroId,
    /// More members than the node's `PEERS` capacity.
    TooManyVoters,
    /// An empty membership.
    NoVoters,
    /// A voter appears twice.
    DuplicateVoter(NodeId),
    /// Lease reads without check-quorum, or with a clock drift of 100 % or more.
    BadLease,
    /// `heartbeat_ticks` is 0, or not below `election_ticks`, or `election_ticks` is absurd.
    BadTimeouts,
    /// `max_inflight` is 0.
    ZeroInflight,
    /// The `BATCH` or `INFLIGHT` capacity is 0 (a zero `PEERS`, `LOG` or `OUT` does not
    /// compile).
    ZeroCapacity,
    /// `applied` is beyond the last index in storage.
    AppliedBeyondLog,
    /// Storage contradicts itself: a last entry of a higher term than the hard state, a log
    /// that starts after the application's snapshot, or a membership change in the log that
    /// cannot follow the membership before it.
    InconsistentStorage,
}

impl From<ConfChangeError> for ConfigError {
    fn from(e: ConfChangeError) -> Self {
        match e {
            ConfChangeError::Duplicate(id) => Self::DuplicateVoter(id),
            ConfChangeError::ZeroId => Self::ZeroId,
            ConfChangeError::NoVoters => Self::NoVoters,
            _ => Self::TooManyVoters,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroId => f.write_str("node id 0 is reserved"),
            Self::TooManyVoters => f.write_str("more members than the PEERS capacity"),
            Self::NoVoters => f.write_str("a membership needs at least one voter"),
            Self::DuplicateVoter(id) => write!(f, "voter {id} listed twice"),
            Self::BadLease => f.write_str("lease reads need check_quorum and a drift below 100 %"),
            Self::BadTimeouts => f.write_str("need 0 < heartbeat_ticks < election_ticks"),
            Self::ZeroInflight => f.write_str("max_inflight must be at least 1"),
            Self::ZeroCapacity => f.write_str("every capacity must be at least 1"),
            Self::AppliedBeyondLog => f.write_str("applied index beyond the stored log"),
            Self::InconsistentStorage => f.write_str("storage state is inconsistent"),
        }
    }
}

impl core::error::Error for ConfigError {}
