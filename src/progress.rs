//! The leader's view of one follower: flow control (probe / replicate) and the inflight window.
//!
//! Invariants:
//! * `matched < next` always;
//! * in `Probe`, at most one append is outstanding (`paused` after sending it) until the follower
//!   answers or a heartbeat response arrives;
//! * in `Replicate`, appends are sent optimistically (`next` advances as they leave) and at most
//!   `inflights.limit` are unacknowledged; each slot records the last index of one message;
//! * in `Snapshot`, no append is sent: the follower is brought up to date by a snapshot round
//!   (notify) or transfer (stream) named by `tag`; replies with another tag are ignored.

use crate::types::{Index, InstallOutcome, NodeId, SnapshotId};

/// Flow-control state of one follower (etcd's `StateProbe` / `StateReplicate`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FlowState {
    /// The leader does not know where the follower's log matches: one append at a time.
    Probe,
    /// The follower's log matches up to `matched`: stream appends, bounded by the window.
    Replicate,
    /// The follower needs entries the leader has compacted: it is being sent a snapshot.
    Snapshot,
}

/// A leader's view of replication to one follower, for runners, dashboards and tests
/// ([`Node::peer_progress`](crate::Node::peer_progress)).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct PeerProgress {
    /// The follower.
    pub id: NodeId,
    /// The highest index known to match the leader's log on the follower (and be durable
    /// there).
    pub matched: Index,
    /// The next index the leader will send.
    pub next: Index,
    /// Flow control: probing, replicating, or installing a snapshot.
    pub state: FlowState,
    /// Appends sent and not yet acknowledged (replicate state).
    pub inflight: usize,
    /// Probe state: an append is outstanding, nothing more is sent until it is answered.
    pub paused: bool,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
}

impl<const I: usize> From<&Progress<I>> for PeerProgress {
    fn from(p: &Progress<I>) -> Self {
        Self {
            id: p.id,
            matched: p.matched,
            next: p.next,
            state: p.state,
            inflight: p.inflights.count,
            paused: p.paused,
            recent_active: p.recent_active,
        }
    }
}

/// A fixed-capacity ring of the last indices of in-flight appends.
#[derive(Clone, Debug)]
pub(crate) struct Inflights<const N: usize> {
    buf: [Index; N],
    start: usize,
    count: usize,
    limit: usize,
}

impl<const N: usize> Inflights<N> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: [Index(0); N],
            start: 0,
            count: 0,
            limit: limit.clamp(1, N.max(1)),
        }
    }
    pub(crate) fn full(&self) -> bool {
        self.count >= self.limit
    }
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }
    /// Records a message whose last entry is `last`. The caller checks `full()` first.
    pub(crate) fn add(&mut self, last: Index) {
        if self.full() || N == 0 {
            return;
        }
        let slot = (self.start + self.count) % N;
        self.buf[slot] = last;
        self.count += 1;
    }
    /// Frees every message whose last index is `<= to`.
    pub(crate) fn free_le(&mut self, to: Index) {
        while self.count > 0 && self.buf[self.start] <= to {
            self.start = (self.start + 1) % N;
            self.count -= 1;
        }
    }
    /// Frees the oldest message (used when a heartbeat response shows the follower is alive but
    /// the window is full: the messages that filled it may all have been lost).
    pub(crate) fn free_first(&mut self) {
        if self.count > 0 {
            self.start = (self.start + 1) % N;
            self.count -= 1;
        }
    }
    pub(crate) fn reset(&mut self) {
        self.start = 0;
        self.count = 0;
    }
}

/// What the leader tracks for one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress<const INFLIGHT: usize> {
    pub(crate) id: NodeId,
    pub(crate) matched: Index,
    pub(crate) next: Index,
    pub(crate) state: FlowState,
    /// Probe only: an append is outstanding.
    pub(crate) paused: bool,
    pub(crate) inflights: Inflights<INFLIGHT>,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The runner reported the follower's process failed (`report_peer_down`) and nothing was
    /// heard from it since: quiescence does not wait for it to catch up.
    pub(crate) down: bool,
    /// Snapshot state: the current round's (or transfer's) tag.
    pub(crate) tag: u64,
    /// Snapshot state: ticks since the last (re)send.
    pub(crate) resend_elapsed: u32,
    /// Stream mode: the snapshot being sent and the next chunk the follower wants.
    pub(crate) transfer: Option<(SnapshotId, u32)>,
    /// Stream mode: a chunk must be requested from the application.
    pub(crate) chunk_due: bool,
    /// A leader-side `InstallComplete` waiting to be polled.
    pub(crate) event_due: Option<InstallOutcome>,
    /// The (term, tag) of the last unsolicited install report taken from this follower.
    pub(crate) reported: Option<(crate::types::Term, u64)>,
    /// The follower said it is installing a snapshot (and has not reported a result since):
    /// keep polling it even if its log looks caught up.
    pub(crate) installing: bool,
    /// The highest read-confirmation round this follower acknowledged in this term.
    pub(crate) read_acked: u64,
    /// The highest commit index queued to this follower (in an append, heartbeat or commit
    /// notice), so that a notice is not repeated.
    pub(crate) commit_sent: Index,
}

impl<const I: usize> Progress<I> {
    /// A message came from the follower.
    pub(crate) fn heard(&mut self) {
        self.recent_active = true;
        self.down = false;
    }

    pub(crate) fn new(id: NodeId, next: Index, max_inflight: usize) -> Self {
        Self {
            id,
            matched: Index(0),
            next,
            state: FlowState::Probe,
            paused: false,
            inflights: Inflights::new(max_inflight),
            // A new leader assumes everyone is alive until the first check-quorum round.
            recent_active: true,
            down: false,
            tag: 0,
            resend_elapsed: 0,
            transfer: None,
            chunk_due: false,
            event_due: None,
            reported: None,
            installing: false,
            read_acked: 0,
            commit_sent: Index(0),
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            FlowState::Probe => self.paused,
            FlowState::Replicate => self.inflights.full(),
            FlowState::Snapshot => true,
        }
    }

    /// Starts a snapshot round or transfer named `tag`.
    pub(crate) fn become_snapshot(&mut self, tag: u64) {
        self.state = FlowState::Snapshot;
        self.tag = tag;
        self.resend_elapsed = 0;
        self.transfer = None;
        self.chunk_due = false;
        self.inflights.reset();
    }

    pub(crate) fn become_probe(&mut self) {
        self.transfer = None;
        self.chunk_due = false;
        self.state = FlowState::Probe;
        self.paused = false;
        self.next = self.matched.next();
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = FlowState::Replicate;
        self.paused = false;
        self.next = self.matched.next();
        self.inflights.reset();
    }

    /// The follower acknowledged `n`. Returns whether that was news.
    pub(crate) fn maybe_update(&mut self, n: Index) -> bool {
        let updated = n > self.matched;
        if updated {
            self.matched = n;
            self.paused = false;
        }
        if self.next <= n {
            self.next = n.next();
        }
        updated
    }

    /// The follower rejected an append whose `prev_index` was `rejected`; `hint` is the leader's
    /// best guess of the last matching index. Returns whether the rejection was news (stale or
    /// duplicated rejections are ignored, so reordering cannot push `next` below `matched + 1`).
    pub(crate) fn maybe_decrease_to(&mut self, rejected: Index, hint: Index) -> bool {
        match self.state {
            // Appends are not sent in snapshot state: a rejection is stale.
            FlowState::Snapshot => false,
            FlowState::Replicate => {
                if rejected <= self.matched {
                    return false;
                }
                self.next = self.matched.next();
                true
            }
            FlowState::Probe => {
                if self.next.prev() != rejected {
                    return false;
                }
                self.next =
                    core::cmp::max(core::cmp::min(rejected, hint.next()), self.matched.next());
                self.paused = false;
                true
            }
        }
    }

    /// Records that an append carrying entries up to `last` (or none) left.
    pub(crate) fn sent(&mut self, last: Option<Index>) {
        match self.state {
            FlowState::Replicate => {
                if let Some(last) = last {
                    self.next = last.next();
                    self.inflights.add(last);
                }
            }
            FlowState::Probe => self.paused = true,
            FlowState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_window() {
        let mut w = Inflights::<4>::new(3);
        for i in 1..=3 {
            assert!(!w.full());
            w.add(Index(i * 10));
        }
        assert!(w.full());
        // Adding to a full window changes nothing (callers check `full()` first).
        w.add(Index(99));
        assert_eq!(w.len(), 3);
        w.free_le(Index(30));
        assert_eq!(w.len(), 0, "99 was never recorded");
        for i in 1..=3 {
            w.add(Index(i * 10));
        }
        w.free_le(Index(15));
        assert_eq!(w.len(), 2);
        w.add(Index(40));
        assert!(w.full());
        w.free_first();
        assert_eq!(w.len(), 2);
        w.free_le(Index(100));
        assert_eq!(w.len(), 0);
        // A limit above the capacity is clamped to the capacity.
        assert_eq!(Inflights::<2>::new(usize::MAX).limit, 2);
    }

    #[test]
    fn free_first_frees_the_oldest_in_ring_order() {
        let mut w = Inflights::<4>::new(4);
        // On an empty window it does nothing.
        w.free_first();
        assert_eq!(w.len(), 0);
        // Many rounds, so the ring wraps: after freeing the oldest, the next oldest is what
        // `free_le` frees first.
        let mut next = 1u64;
        for _ in 0..10 {
            for _ in 0..3 {
                w.add(Index(next * 10));
                next += 1;
            }
            w.free_first();
            assert_eq!(w.len(), 2);
            // The two left are the newer ones: freeing up to the older of them frees one.
            w.free_le(Index((next - 2) * 10));
            assert_eq!(w.len(), 1);
            w.free_le(Index((next - 1) * 10));
            assert_eq!(w.len(), 0);
        }
    }

    #[test]
    fn an_old_or_repeated_acknowledgement_is_not_news() {
        let mut p = Progress::<4>::new(NodeId(2), Index(10), 4);
        assert!(p.maybe_update(Index(5)), "first ack");
        p.sent(None); // probe: an append is outstanding
        assert!(p.paused);
        assert!(!p.maybe_update(Index(5)), "a repeat is not news");
        assert!(p.paused, "and does not unpause the probe");
        assert!(!p.maybe_update(Index(3)), "nor is an older one");
        assert_eq!(p.matched, Index(5));
        assert!(p.maybe_update(Index(6)));
        assert!(!p.paused);
    }

    #[test]
    fn changing_state_empties_the_inflight_window() {
        let mut p = Progress::<4>::new(NodeId(2), Index(1), 4);
        p.become_replicate();
        for i in 1..=4 {
            p.sent(Some(Index(i)));
        }
        assert!(p.is_paused(), "window full");
        p.become_probe();
        p.become_replicate();
        assert!(!p.is_paused(), "the window was emptied");
        for i in 1..=4 {
            p.sent(Some(Index(i)));
        }
        p.become_snapshot(7);
        p.maybe_update(Index(4));
        p.become_replicate();
        assert!(!p.is_paused());
        assert_eq!(p.inflights.len(), 0);
    }

    #[test]
    fn probe_ignores_stale_rejections() {
        let mut p = Progress::<4>::new(NodeId(2), Index(10), 4);
        assert!(
            !p.maybe_decrease_to(Index(5), Index(3)),
            "stale: next-1 is 9"
        );
        assert!(p.maybe_decrease_to(Index(9), Index(3)));
        assert_eq!(p.next, Index(4));
        p.maybe_update(Index(6));
        assert_eq!(p.next, Index(7));
        assert!(!p.maybe_decrease_to(Index(3), Index(0)));
        p.become_replicate();
        assert!(
            !p.maybe_decrease_to(Index(6), Index(0)),
            "at or below match: stale"
        );
        assert!(p.maybe_decrease_to(Index(8), Index(0)));
        assert_eq!(p.next, Index(7));
    }
}
