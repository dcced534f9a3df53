//! Snapshots: log compaction, and bringing a follower that is behind the leader's compacted log
//! up to date, by streaming (chunks read through the leader's application) or by notification
//! (the follower's application fetches a snapshot itself, as in Apache Ratis), with the
//! `InstallComplete` event on both sides.
//!
//! Heads up: the binding contract is `docs/snapshot-install.md` of the project (summarised in the
//! README). Invariants kept here:
//! * a leader sends no appends to a follower in snapshot state, and re-sends a notification or
//!   re-requests a chunk at most once per `snapshot_resend_ticks`;
//! * every round (notify) or transfer (stream) carries a leader-chosen tag; a reply with another
//!   tag is stale and changes nothing, so duplicated or reordered replies never repeat an event;
//! * a follower starts at most one notify round at a time and announces it once; the round
//!   survives term and leader changes; its outcome is sent at once to the leader that asked,
//!   kept to answer that leader's re-sent request (if the reply was lost), and otherwise
//!   reported once to the first leader of a later term that contacts the follower (never lost
//!   to a leader change; duplicates are recognised by (term, tag));
//! * while a notify round runs, the follower refuses appends with `InstallInProgress`, which
//!   never moves the leader's next index, and refuses local snapshots;
//! * the leader emits `InstallComplete(Installed)` once, when the follower reports the install
//!   and no further round is needed, and `InstallComplete(Unavailable)` once per round;
//! * a follower whose snapshot ends exactly at `next - 1` gets appends, not another snapshot:
//!   the log's base always answers its own term, so `prev = base` is a valid append (Ratis' E6
//!   ping-pong cannot arise);
//! * the follower emits `InstallComplete(Installed)` once, at the first append it accepts after
//!   adopting the snapshot (the pending event is in the hard state, so it survives a restart),
//!   and `InstallComplete(Unavailable)` once per round.

use super::membership::Configs;
use super::{Node, RoleState};
use crate::action::Action;
use crate::error::{InstallError, SnapshotError, StepError};
use crate::membership::Membership;
use crate::message::{AppendResult, Body, InstallRequest, InstallResult};
use crate::progress::FlowState;
use crate::storage::Storage;
use crate::types::{Index, InstallOutcome, NodeId, SnapshotId, SnapshotMeta, SnapshotMode, Term};

/// The follower side of an installation from the leader. (An explicit tag: every poll looks
/// at the variant, which a niche-encoded layout made a dozen instructions.)
#[derive(Debug)]
#[repr(u8)]
pub(crate) enum FollowerInstall<P> {
    None,
    /// Notify mode.
    Round(Round),
    /// Stream mode.
    Stream(StreamRx<P>),
    /// The application finished; the outcome waits to be collected by a leader: the one whose
    /// request it answers (again, if the first reply was lost) or one of a later term.
    Done(Done),
}

#[derive(Debug)]
pub(crate) struct Round {
    leader: NodeId,
    first_available: SnapshotId,
    /// `InstallSnapshotFromLeader` not yet polled.
    announce_due: bool,
    /// The newest request of this round: (term, tag).
    last_request: (Term, u64),
}

#[derive(Debug)]
pub(crate) struct StreamRx<P> {
    term: Term,
    tag: u64,
    snapshot: SnapshotId,
    next_seq: u32,
    write_due: Option<(u32, P)>,
    restore_due: Option<u64>,
    /// Every chunk arrived; waiting for the application's restore.
    restoring: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    result: InstallResult,
    /// (term, tag) of the request the install answered.
    term: Term,
    tag: u64,
}

impl<P> FollowerInstall<P> {
    /// A notify round waiting for the application, or a stream transfer being restored:
    /// appends, local snapshots and linearizable reads wait.
    pub(crate) fn in_progress(&self) -> bool {
        match self {
            Self::Round(_) => true,
            Self::Stream(rx) => rx.restoring,
            Self::None | Self::Done(_) => false,
        }
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
    // ----- application calls ------------------------------------------------------------------

    /// The application took a snapshot of its state machine at `id` (an index it has applied).
    /// The node compacts its log up to `id.index`, keeping the newest `log_retention` entries,
    /// and emits [`Action::Compact`].
    ///
    /// # Errors
    /// [`SnapshotError`]: beyond the applied index, not newer than the current snapshot, a term
    /// that does not match the log, or a snapshot install from the leader in progress.
    pub fn snapshot_taken<S: Storage<P>>(
        &mut self,
        id: SnapshotId,
        storage: &S,
    ) -> Result<(), SnapshotError> {
        self.wake = true;
        if self.install.in_progress() {
            return Err(SnapshotError::InstallInProgress);
        }
        if id.index > self.apply_emitted {
            return Err(SnapshotError::NotApplied);
        }
        if id.index <= self.latest_snapshot.index {
            return Err(SnapshotError::Stale);
        }
        if self.log.term(id.index, storage) != Some(id.term) {
            return Err(SnapshotError::TermMismatch);
        }
        self.latest_snapshot = id;
        let keep_from = Index(
            self.log
                .last_index()
                .0
                .saturating_sub(self.cfg.log_retention),
        );
        // Never past the durable index (a snapshot may be ahead of it with
        // `apply_before_durable`): the log compacts only entries the runner holds durably.
        let upto = core::cmp::min(core::cmp::min(id.index, keep_from), self.log.stable_last());
        if upto > self.log.snapshot().index
            && let Some(term) = self.log.term(upto, storage)
        {
            let through = SnapshotId { index: upto, term };
            self.log.compact(through);
            self.snapshot_work = true;
            self.compact_due = Some(through);
            debug!("{} compacted its log through {}", self.cfg.id, upto);
        }
        Ok(())
    }

    /// The application's report on the install it was asked for
    /// ([`Action::InstallSnapshotFromLeader`] or [`Action::RestoreSnapshot`]): `Ok(meta)` once
    /// the state machine holds snapshot `meta.id` durably. `meta.membership` is the membership
    /// stored with the snapshot (the one in effect at its index): when the snapshot replaces
    /// the log, it becomes the configuration in use.
    ///
    /// # Errors
    /// [`SnapshotError::NoInstall`] when no install is waiting for a report;
    /// [`SnapshotError::Stale`] for a snapshot below the commit index (treated as a failure).
    pub fn snapshot_installed<S: Storage<P>>(
        &mut self,
        result: Result<SnapshotMeta<PEERS>, InstallError>,
        storage: &S,
    ) -> Result<(), SnapshotError> {
        self.wake = true;
        let install = core::mem::replace(&mut self.install, FollowerInstall::None);
        let (result, (term, tag), leader) = match install {
            FollowerInstall::Round(round) => {
                let result = match result {
                    // A snapshot older than what is committed here is of no use: fail the round
                    // quietly so the next notification starts another.
                    Ok(meta) if meta.id.index < self.commit => return Err(SnapshotError::Stale),
                    Ok(SnapshotMeta { id, membership }) => {
                        self.adopt_snapshot(id, membership, storage);
                        InstallResult::Installed(id)
                    }
                    Err(InstallError::Unavailable) => {
                        self.snapshot_work = true;
                        self.own_event_due = Some(InstallOutcome::Unavailable);
                        InstallResult::Unavailable
                    }
                    Err(InstallError::Failed) => return Ok(()),
                };
                (result, round.last_request, round.leader)
            }
            FollowerInstall::Stream(rx) if rx.restoring => match result {
                Ok(SnapshotMeta { id, membership }) if id.index >= self.commit => {
                    self.adopt_snapshot(id, membership, storage);
                    (
                        InstallResult::Installed(id),
                        (rx.term, rx.tag),
                        self.leader.unwrap_or(self.cfg.id),
                    )
                }
                _ => {
                    // Bad checksum or failed restore: the application discarded the partial
                    // snapshot; the leader starts over.
                    if rx.term == self.hs.term
                        && let Some(leader) = self.leader
                    {
                        let body = Body::InstallSnapshotResponse {
                            tag: rx.tag,
                            result: InstallResult::Failed,
                        };
                        self.send(leader, rx.term, body);
                    }
                    return Ok(());
                }
            },
            other => {
                self.install = other;
                return Err(SnapshotError::NoInstall);
            }
        };
        // Answer at once if the request came from the current leader; otherwise (or if this
        // answer is lost) the next request, or the first contact of a later leader, collects it.
        if term == self.hs.term && self.leader == Some(leader) && leader != self.cfg.id {
            self.send(leader, term, Body::InstallSnapshotResponse { tag, result });
        }
        self.install = FollowerInstall::Done(Done { result, term, tag });
        // A node elected while its install ran is its own leader: its log is the leader's, so
        // no append will come to prove that the two join. The installation is over for it now
        // (the outcome stays for a later leader to collect, should this node follow one).
        if matches!(self.role, RoleState::Leader(_)) {
            self.end_own_install();
        }
        Ok(())
    }

    /// Stream mode, leader: chunk `seq` of `snapshot` for follower `to`, as asked by
    /// [`Action::ReadSnapshotChunk`]. `checksum` (over the whole snapshot) marks the last chunk.
    ///
    /// # Errors
    /// [`SnapshotError::UnexpectedChunk`] if that chunk is not the one wanted (any more).
    pub fn snapshot_chunk(
        &mut self,
        to: NodeId,
        snapshot: SnapshotId,
        seq: u32,
        data: P,
        checksum: Option<u64>,
    ) -> Result<(), SnapshotError> {
        self.wake = true;
        let term = self.hs.term;
        let RoleState::Leader(progress) = &mut self.role else {
            return Err(SnapshotError::UnexpectedChunk);
        };
        let Some(pr) = progress.iter_mut().find(|p| p.id == to) else {
            return Err(SnapshotError::UnexpectedChunk);
        };
        if pr.state != FlowState::Snapshot || pr.transfer != Some((snapshot, seq)) {
            return Err(SnapshotError::UnexpectedChunk);
        }
        pr.resend_elapsed = 0;
        let tag = pr.tag;
        // The bytes wait in the follower's slot until the send is polled.
        let request = InstallRequest::Chunk {
            snapshot,
            seq,
            data: (),
            checksum,
        };
        match self.out_chunks.iter_mut().find(|(t, _, _)| *t == to) {
            Some(slot) => *slot = (to, seq, data),
            None => {
                let _ = self.out_chunks.push((to, seq, data));
            }
        }
        self.send(to, term, Body::InstallSnapshot { tag, request });
        Ok(())
    }

    // ----- follower ---------------------------------------------------------------------------

    /// Takes an installed snapshot as the state machine's new base (Raft §7). If the log holds
    /// the snapshot's last entry with the same term, the log is kept as it is: entries after the
    /// snapshot may already be acknowledged to the leader and counted toward commit, so they must
    /// not be dropped. Otherwise the whole log is replaced by the snapshot.
    fn adopt_snapshot<S: Storage<P>>(
        &mut self,
        id: SnapshotId,
        membership: Membership<PEERS>,
        storage: &S,
    ) {
        info!(
            "{} installed snapshot {} at term {}",
            self.cfg.id, id.index, id.term
        );
        if self.log.term(id.index, storage) != Some(id.term) {
            self.configs = Configs::new(id.index, membership);
            self.log.reset_to(id);
            self.reset_due = Some(id);
            self.compact_due = None;
            self.pending_ack = None;
        }
        self.latest_snapshot = id;
        self.commit = self.commit.max(id.index);
        // The state machine now stands at the snapshot; later entries are applied (again).
        self.apply_emitted = id.index;
        self.hs.pending_install = Some(id);
        self.hs_dirty = true;
    }

    /// The commit point, named as an install answer: the furthest this node holds. Its
    /// snapshot is never past it, and stands in only while a log reset to it is pending after
    /// a restart (the log cannot name the commit point's term yet).
    fn commit_point<S: Storage<P>>(&self, storage: &S) -> SnapshotId {
        match self.log.term(self.commit, storage) {
            Some(term) => SnapshotId {
                index: self.commit,
                term,
            },
            None => self.latest_snapshot,
        }
    }

    /// A leader's append was accepted: an installation, if one was adopted, is over.
    pub(super) fn install_joined_log(&mut self) {
        self.end_own_install();
        if matches!(self.install, FollowerInstall::Done(_)) {
            // The leader sends entries: it has the outcome.
            self.install = FollowerInstall::None;
        }
    }

    /// An adopted installation is over on this node: its event, once (the pending install
    /// leaves the hard state).
    fn end_own_install(&mut self) {
        if let Some(id) = self.hs.pending_install.take() {
            self.hs_dirty = true;
            self.snapshot_work = true;
            self.own_event_due = Some(InstallOutcome::Installed(id));
        }
    }

    /// First contact with a leader (append or heartbeat): an outcome that a leader of an
    /// earlier term never collected is reported to this one, once.
    pub(super) fn report_uncollected(&mut self, leader: NodeId) {
        if let FollowerInstall::Done(d) = self.install
            && self.hs.term > d.term
        {
            let outcome = match d.result {
                InstallResult::Installed(id) => InstallOutcome::Installed(id),
                _ => InstallOutcome::Unavailable,
            };
            let result = InstallResult::Reported {
                outcome,
                term: d.term,
            };
            self.send(
                leader,
                self.hs.term,
                Body::InstallSnapshotResponse { tag: d.tag, result },
            );
            self.install = FollowerInstall::None;
        }
    }

    /// A request while an outcome waits. Every copy of the request the install answered gets
    /// the outcome (copies may arrive duplicated and reordered: none may get another answer
    /// first); a request of a later term collects it; a new request of the same term means
    /// that leader has it already.
    fn collect_done(&mut self, from: NodeId, term: Term, tag: u64) -> bool {
        let FollowerInstall::Done(d) = self.install else {
            return false;
        };
        let same_request = term == d.term && tag == d.tag;
        if !same_request {
            self.install = FollowerInstall::None;
        }
        if same_request || term > d.term {
            let body = Body::InstallSnapshotResponse {
                tag,
                result: d.result,
            };
            self.send(from, term, body);
            return true;
        }
        false
    }

    pub(super) fn handle_install_request<S: Storage<P>>(
        &mut self,
        from: NodeId,
        term: Term,
        tag: u64,
        request: InstallRequest<P>,
        storage: &S,
    ) {
        let reply = |node: &mut Self, result| {
            node.send(from, term, Body::InstallSnapshotResponse { tag, result })
        };
        match (self.cfg.snapshot_mode, request) {
            (SnapshotMode::Notify, InstallRequest::Notify { first_available }) => {
                if let FollowerInstall::Round(r) = &mut self.install {
                    // Polling: any leader, any first_available (Ratis E4 asserted here).
                    r.last_request = (term, tag);
                    return reply(self, InstallResult::InProgress);
                }
                if self.collect_done(from, term, tag) {
                    return;
                }
                // The committed log already reaches the leader's log: nothing to install.
                let have = self.commit_point(storage);
                if have.index.next() >= first_available.index {
                    return reply(self, InstallResult::AlreadyInstalled(have));
                }
                // Pending linearizable reads fail: the state machine is about to be replaced.
                self.fail_reads(crate::error::ReadError::InstallInProgress);
                self.snapshot_work = true;
                self.install = FollowerInstall::Round(Round {
                    leader: from,
                    first_available,
                    announce_due: true,
                    last_request: (term, tag),
                });
                reply(self, InstallResult::InProgress);
            }
            (
                SnapshotMode::Stream,
                InstallRequest::Chunk {
                    snapshot,
                    seq,
                    data,
                    checksum,
                },
            ) => {
                if self.collect_done(from, term, tag) {
                    return;
                }
                if snapshot.index <= self.commit {
                    let have = self.commit_point(storage);
                    return reply(self, InstallResult::AlreadyInstalled(have));
                }
                if let FollowerInstall::Stream(rx) = &self.install
                    && (rx.term, rx.tag) > (term, tag)
                {
                    return reply(self, InstallResult::Expired);
                }
                let fresh = !matches!(&self.install, FollowerInstall::Stream(rx) if (rx.term, rx.tag) == (term, tag));
                if fresh {
                    self.install = FollowerInstall::Stream(StreamRx {
                        term,
                        tag,
                        snapshot,
                        next_seq: 0,
                        write_due: None,
                        restore_due: None,
                        restoring: false,
                    });
                }
                let FollowerInstall::Stream(rx) = &mut self.install else {
                    return;
                };
                if rx.snapshot != snapshot {
                    self.stats.malformed += 1;
                    return;
                }
                if rx.restoring {
                    return reply(self, InstallResult::InProgress);
                }
                if seq != rx.next_seq || rx.write_due.is_some() {
                    let want = rx.next_seq;
                    return reply(self, InstallResult::NextChunk(want));
                }
                self.snapshot_work = true;
                rx.write_due = Some((seq, data));
                rx.next_seq += 1;
                if let Some(c) = checksum {
                    self.snapshot_work = true;
                    rx.restore_due = Some(c);
                    rx.restoring = true;
                    self.fail_reads(crate::error::ReadError::InstallInProgress);
                } else {
                    let want = rx.next_seq;
                    reply(self, InstallResult::NextChunk(want));
                }
            }
            _ => {
                self.stats.snapshot_mode_mismatch += 1;
                warn!(
                    "{} got a snapshot request of the other mode from {}",
                    self.cfg.id, from
                );
                reply(self, InstallResult::ModeMismatch);
            }
        }
    }

    /// Appends are refused while a notify round runs (without moving the leader's next index).
    pub(super) fn refuse_append_while_installing(&mut self, from: NodeId) {
        self.send(
            from,
            self.hs.term,
            Body::AppendResponse(AppendResult::InstallInProgress),
        );
    }

    // ----- leader -----------------------------------------------------------------------------

    pub(super) fn new_tag(&mut self) -> u64 {
        self.next_tag = self.next_tag.wrapping_add(1);
        self.next_tag
    }

    /// Follower `i` needs entries this leader has compacted: start a round or a transfer.
    pub(super) fn start_snapshot<S: Storage<P>>(&mut self, i: usize, storage: &S) {
        let tag = self.new_tag();
        let snapshot = self.latest_snapshot;
        let mode = self.cfg.snapshot_mode;
        let RoleState::Leader(progress) = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(i) else {
            return;
        };
        debug!(
            "{} sends a snapshot to {} (next {})",
            self.cfg.id, pr.id, pr.next
        );
        pr.become_snapshot(tag);
        match mode {
            SnapshotMode::Notify => self.send_notify(i, storage),
            SnapshotMode::Stream => {
                pr.transfer = Some((snapshot, 0));
                self.snapshot_work = true;
                pr.chunk_due = true;
            }
        }
    }

    fn send_notify<S: Storage<P>>(&mut self, i: usize, storage: &S) {
        let first = self.log.first_index();
        let first_available = SnapshotId {
            index: first,
            term: self.log.term(first, storage).unwrap_or(self.hs.term),
        };
        let RoleState::Leader(progress) = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(i) else {
            return;
        };
        pr.resend_elapsed = 0;
        let (to, tag) = (pr.id, pr.tag);
        let term = self.hs.term;
        self.send(
            to,
            term,
            Body::InstallSnapshot {
                tag,
                request: InstallRequest::Notify { first_available },
            },
        );
    }

    /// Re-sends notifications and re-requests chunks that got no answer.
    pub(super) fn tick_snapshots<S: Storage<P>>(&mut self, storage: &S) {
        let every = self.cfg.snapshot_resend_ticks;
        let mode = self.cfg.snapshot_mode;
        let first = self.log.first_index();
        let RoleState::Leader(progress) = &mut self.role else {
            return;
        };
        for i in 0..progress.len() {
            let RoleState::Leader(progress) = &mut self.role else {
                return;
            };
            let pr = &mut progress[i];
            if pr.state != FlowState::Snapshot {
                continue;
            }
            if pr.matched >= first.prev() && !pr.installing {
                // The follower caught up meanwhile (its acknowledgements reach our log).
                pr.become_probe();
                continue;
            }
            pr.resend_elapsed += 1;
            if pr.resend_elapsed < every {
                continue;
            }
            pr.resend_elapsed = 0;
            match mode {
                SnapshotMode::Notify => self.send_notify(i, storage),
                // A stream of a snapshot that a newer one replaced, stalled: the application
                // may have deleted it (it is not bound to keep more than its newest), so the
                // round starts over with the newest. A follower still installing the old one
                // answers the new round's chunks as it answers re-sent ones.
                SnapshotMode::Stream
                    if pr.transfer.is_some_and(|(s, _)| s != self.latest_snapshot) =>
                {
                    self.start_snapshot(i, storage);
                }
                SnapshotMode::Stream => {
                    pr.chunk_due = pr.transfer.is_some();
                    self.snapshot_work |= pr.chunk_due;
                }
            }
        }
    }

    pub(super) fn handle_install_response<S: Storage<P>>(
        &mut self,
        from: NodeId,
        tag: u64,
        result: InstallResult,
        storage: &S,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        let first = self.log.first_index();
        let RoleState::Leader(progress) = &mut self.role else {
            return Ok(());
        };
        let Some(i) = progress.iter().position(|p| p.id == from) else {
            return Err(StepError::UnknownPeer);
        };
        let pr = &mut progress[i];
        pr.heard();
        if result == InstallResult::ModeMismatch {
            self.stats.snapshot_mode_mismatch += 1;
            return Ok(());
        }
        if let InstallResult::Reported { outcome, term } = result {
            // Refused before it is recorded: a malformed report changes nothing, so it cannot
            // make a valid report of the same round look like a duplicate.
            if matches!(outcome, InstallOutcome::Installed(id) if id.index > last) {
                self.stats.malformed += 1;
                return Err(StepError::Malformed);
            }
            if pr.reported == Some((term, tag)) {
                return Ok(()); // a duplicate
            }
            pr.reported = Some((term, tag));
            if let InstallOutcome::Installed(id) = outcome {
                if id.index > pr.matched {
                    pr.matched = id.index;
                    pr.next = id.index.next();
                }
                if id.index.next() < first {
                    return Ok(()); // not caught up: no event; a round follows
                }
                if pr.state == FlowState::Snapshot {
                    pr.become_probe();
                }
                if !first_report(&mut self.reported_installs, &self.configs.current, from, id) {
                    return Ok(()); // this node already reported it, in an earlier term
                }
            }
            self.snapshot_work = true;
            pr.event_due = Some(outcome);
            return Ok(());
        }
        if (pr.state != FlowState::Snapshot || pr.tag != tag)
            && !(crate::canary::on(crate::canary::Canary::InstallEventTwice)
                && matches!(result, InstallResult::Installed(_)))
        {
            return Ok(()); // stale, duplicated or reordered
        }
        pr.installing = result == InstallResult::InProgress;
        match result {
            InstallResult::InProgress
            | InstallResult::ModeMismatch
            | InstallResult::Reported { .. } => {}
            InstallResult::Installed(id) | InstallResult::AlreadyInstalled(id) => {
                if id.index > last {
                    self.stats.malformed += 1;
                    return Err(StepError::Malformed);
                }
                pr.matched = pr.matched.max(id.index);
                pr.next = pr.matched.next();
                if pr.next >= first {
                    if matches!(result, InstallResult::Installed(_))
                        && (first_report(
                            &mut self.reported_installs,
                            &self.configs.current,
                            from,
                            id,
                        ) || crate::canary::on(crate::canary::Canary::InstallEventTwice))
                    {
                        self.snapshot_work = true;
                        pr.event_due = Some(InstallOutcome::Installed(id));
                    }
                    pr.become_probe();
                    self.send_append(i, true, storage);
                } else {
                    // Compacted past the installed snapshot meanwhile: another (incremental)
                    // round, and no event yet.
                    self.start_snapshot(i, storage);
                }
            }
            InstallResult::Unavailable => {
                self.snapshot_work = true;
                pr.event_due = Some(InstallOutcome::Unavailable);
                // This round is over; the next notification starts another.
                pr.resend_elapsed = 0;
                let tag = self.new_tag();
                let RoleState::Leader(progress) = &mut self.role else {
                    return Ok(());
                };
                progress[i].tag = tag;
            }
            InstallResult::Failed | InstallResult::Expired => self.start_snapshot(i, storage),
            InstallResult::NextChunk(seq) => {
                if let Some((snapshot, _)) = pr.transfer {
                    pr.transfer = Some((snapshot, seq));
                    self.snapshot_work = true;
                    pr.chunk_due = true;
                    pr.resend_elapsed = 0;
                }
            }
        }
        Ok(())
    }

    /// The follower refused an append because it is installing: poll its round.
    pub(super) fn follower_is_installing<S: Storage<P>>(&mut self, i: usize, storage: &S) {
        let RoleState::Leader(progress) = &self.role else {
            return;
        };
        if self.cfg.snapshot_mode == SnapshotMode::Notify
            && progress[i].state != FlowState::Snapshot
        {
            self.start_snapshot(i, storage);
        }
    }

    // ----- actions ----------------------------------------------------------------------------

    /// Whether [`poll_snapshot_action`](Self::poll_snapshot_action) has something (it must
    /// answer `Some` whenever this is true).
    pub(super) fn has_snapshot_action(&self) -> bool {
        if self.compact_due.is_some() || self.own_event_due.is_some() {
            return true;
        }
        let follower = match &self.install {
            FollowerInstall::Round(r) => r.announce_due,
            FollowerInstall::Stream(rx) => rx.write_due.is_some() || rx.restore_due.is_some(),
            _ => false,
        };
        follower
            || match &self.role {
                RoleState::Leader(progress) => progress
                    .iter()
                    .any(|pr| pr.event_due.is_some() || (pr.chunk_due && pr.transfer.is_some())),
                _ => false,
            }
    }

    pub(super) fn poll_snapshot_action(&mut self) -> Option<Action<'_, P>> {
        if let Some(through) = self.compact_due.take() {
            return Some(Action::Compact { through });
        }
        match &mut self.install {
            FollowerInstall::Round(r) if r.announce_due => {
                r.announce_due = false;
                return Some(Action::InstallSnapshotFromLeader {
                    leader: r.leader,
                    first_available: r.first_available,
                });
            }
            FollowerInstall::Stream(rx) => {
                if let Some((seq, data)) = rx.write_due.take() {
                    let snapshot = rx.snapshot;
                    let data = self.in_chunk.insert(data);
                    return Some(Action::WriteSnapshotChunk {
                        snapshot,
                        seq,
                        data,
                    });
                }
                if let Some(checksum) = rx.restore_due.take() {
                    return Some(Action::RestoreSnapshot {
                        snapshot: rx.snapshot,
                        checksum,
                    });
                }
            }
            _ => {}
        }
        if let Some(outcome) = self.own_event_due.take() {
            return Some(Action::InstallComplete {
                peer: self.cfg.id,
                outcome,
            });
        }
        if let RoleState::Leader(progress) = &mut self.role {
            for pr in progress.iter_mut() {
                if let Some(outcome) = pr.event_due.take() {
                    return Some(Action::InstallComplete {
                        peer: pr.id,
                        outcome,
                    });
                }
                if pr.chunk_due {
                    pr.chunk_due = false;
                    if let Some((snapshot, seq)) = pr.transfer {
                        return Some(Action::ReadSnapshotChunk {
                            to: pr.id,
                            snapshot,
                            seq,
                        });
                    }
                }
            }
        }
        None
    }
}

/// Records that this node reports follower `peer`'s install of `id`; false if it already did
/// (a follower may report an outcome again to the same node in a later term: it cannot know
/// whether its first answer arrived).
/// When the record is full, the entry of a node that is no longer a member makes room (there
/// are fewer followers than `N`).
fn first_report<const N: usize>(
    reported: &mut heapless::Vec<(NodeId, SnapshotId), N>,
    members: &Membership<N>,
    peer: NodeId,
    id: SnapshotId,
) -> bool {
    match reported.iter_mut().find(|(p, _)| *p == peer) {
        Some((_, last)) if *last == id => false,
        Some((_, last)) => {
            *last = id;
            true
        }
        None => {
            if reported.is_full()
                && let Some(k) = reported.iter().position(|(p, _)| !members.is_member(*p))
            {
                reported.swap_remove(k);
            }
            let _ = reported.push((peer, id));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u64) -> SnapshotId {
        SnapshotId {
            index: Index(index),
            term: Term(1),
        }
    }

    /// Each follower's install is reported once per snapshot; a full record makes room by
    /// forgetting a node that left the membership, never a member.
    #[test]
    fn a_full_record_of_reported_installs_forgets_only_former_members() {
        let members = Membership::<3>::new(&[NodeId(1), NodeId(2)]).unwrap();
        let mut reported = heapless::Vec::<(NodeId, SnapshotId), 3>::new();
        assert!(first_report(&mut reported, &members, NodeId(1), id(4)));
        assert!(!first_report(&mut reported, &members, NodeId(1), id(4)));
        assert!(first_report(&mut reported, &members, NodeId(1), id(6)));
        // Node 5 reported before it left the membership.
        assert!(first_report(&mut reported, &members, NodeId(5), id(6)));
        assert!(first_report(&mut reported, &members, NodeId(2), id(6)));
        // Full: node 3 (joining) takes node 5's place.
        assert!(first_report(&mut reported, &members, NodeId(3), id(7)));
        assert!(!reported.iter().any(|(p, _)| *p == NodeId(5)));
        for (peer, index) in [(1, 6), (2, 6), (3, 7)] {
            assert!(
                !first_report(&mut reported, &members, NodeId(peer), id(index)),
                "node {peer}'s report was forgotten"
            );
        }
    }
}
