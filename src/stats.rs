//! Counters of everything the node dropped, refused or ignored. Raft tolerates lost messages;
//! these counters make the losses visible.

/// Monotonic counters. Read them with [`Node::stats`](crate::Node::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Messages dropped because the outgoing queue was full.
    pub dropped_sends: u64,
    /// Messages ignored because they were addressed to another node or came from a non-member.
    pub unknown_peer: u64,
    /// Messages ignored because their term was stale.
    pub stale_term: u64,
    /// Messages ignored because their content was impossible (non-contiguous entries, an index
    /// beyond the log, a second leader in one term, ...).
    pub malformed: u64,
    /// Vote requests ignored because a leader was recently heard from (check-quorum lease).
    pub ignored_in_lease: u64,
    /// Appends dropped because the unstable log had no room.
    pub log_full: u64,
    /// Proposals refused (not leader, or no room).
    pub proposals_refused: u64,
    /// Reads from [`Storage`](crate::Storage) that returned nothing where an answer was expected.
    pub storage_misses: u64,
    /// Elections (and pre-elections) started by this node.
    pub campaigns: u64,
    /// Times this node stepped down because check-quorum failed.
    pub quorum_lost: u64,
    /// Snapshot messages refused because the peer uses the other snapshot mode.
    pub snapshot_mode_mismatch: u64,
    /// Linearizable reads this leader served within its lease, without a confirmation round.
    pub lease_reads: u64,
    /// Times this node quiesced (`Config::quiesce`).
    pub quiesced: u64,
    /// Times an input woke this node from quiescence.
    pub woken: u64,
}

impl Stats {
    /// Every counter at 0.
    pub(crate) const ZERO: Self = Self {
        dropped_sends: 0,
        unknown_peer: 0,
        stale_term: 0,
        malformed: 0,
        ignored_in_lease: 0,
        log_full: 0,
        proposals_refused: 0,
        storage_misses: 0,
        campaigns: 0,
        quorum_lost: 0,
        snapshot_mode_mismatch: 0,
        lease_reads: 0,
        quiesced: 0,
        woken: 0,
    };
}
