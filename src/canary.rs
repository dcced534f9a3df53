//! Deliberately broken variants of the core, switched on one at a time by the `canary` test
//! (feature `_canary`, never for production). They exist to prove that the simulator's oracles
//! catch real bugs: "zero failures" means something only if broken builds fail.
//!
//! Without the feature, [`on`] is a constant `false` and every canary check compiles away.

/// A deliberately broken behaviour.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Canary {
    /// Everything correct.
    None = 0,
    /// A vote grant leaves before the vote is durable.
    VoteNotPersisted,
    /// An append acknowledgement leaves before the entries are durable.
    AckBeforePersist,
    /// A leader commits an entry of an earlier term by counting replicas (Raft figure 8).
    CommitOldTerm,
    /// A follower keeps a conflicting tail instead of truncating it.
    NoTruncate,
    /// A leader serves a read without a quorum confirming its leadership.
    ReadWithoutQuorum,
    /// A leader counts its own entries toward commit before they are durable.
    LeaderCountsVolatile,
    /// A follower adopts the leader's commit index without clamping it to what it verified.
    CommitNotClamped,
    /// A leader fires `InstallComplete` again for a duplicated `Installed` reply.
    InstallEventTwice,
    /// A leader's read lease ignores clock drift and lasts two election timeouts.
    LeaseIgnoresDrift,
}

#[cfg(feature = "_canary")]
static ACTIVE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Switches the process-wide canary (feature `_canary` only).
#[cfg(feature = "_canary")]
pub fn set(canary: Canary) {
    ACTIVE.store(canary as u8, core::sync::atomic::Ordering::SeqCst);
}

/// Whether `canary` is switched on.
#[cfg(feature = "_canary")]
#[must_use]
pub fn on(canary: Canary) -> bool {
    ACTIVE.load(core::sync::atomic::Ordering::Relaxed) == canary as u8
}

/// Whether `canary` is switched on: never, without the `_canary` feature.
#[cfg(not(feature = "_canary"))]
#[must_use]
#[inline(always)]
pub const fn on(_canary: Canary) -> bool {
    false
}

/// The lease of [`Canary::LeaseIgnoresDrift`]: two election timeouts, whatever the drift. Kept
/// here, outside the mutated code (`.cargo/mutants.toml` excludes this file): its arithmetic
/// runs only with the feature, so no default test could notice a mutant of it.
#[must_use]
pub const fn stretched_lease(election_ticks: u32) -> u64 {
    election_ticks as u64 * 2
}

/// The test of [`Canary::NoTruncate`] for an entry of an append: new only past the log's end
/// (a conflicting entry inside the log is kept). Here for the reason of [`stretched_lease`].
#[must_use]
pub fn new_past_the_end(index: crate::types::Index, last: crate::types::Index) -> bool {
    index > last
}
