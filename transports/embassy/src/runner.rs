//! The runner, in the embassy style: [`new`] splits a node into a [`Handle`] (propose, status)
//! and a [`Runner`] whose [`run`](Runner::run) future is spawned as a task.
//!
//! `run` waits, with `embassy_futures::select`, on the next tick of the [`Clock`], a request
//! from the handle and a frame from the [`Link`] (in that order of priority, so that a busy
//! link cannot starve the timer). After each, it drains the node's actions:
//! * `Send`: encoded into the runner's frame buffer and handed to the link (a failed send is
//!   counted; Raft tolerates the loss);
//! * `Persist`: [`Store::persist`], then `persisted`: nothing that depends on it leaves before.
//!   A persist that does not [fit](Store::fits) is handed back to the node
//!   ([`Node::defer_persist`](raftlet::Node::defer_persist)), which holds its entries, while the
//!   runner asks the app for a snapshot to make room; proposals are refused with `Full`
//!   meanwhile;
//! * `Apply`: committed entries, read from the store, go to [`App::apply`] in order (an entry
//!   missing from the store stops the runner: [`RunError::MissingEntry`]);
//! * `Compact`: [`Store::compact`];
//! * snapshot installs: [`App::fetch_snapshot`] (notify mode), or [`App::read_chunk`],
//!   [`App::write_chunk`] and [`App::restore`] (stream mode); [`App::install_complete`] when
//!   an installation is over.
//!
//! Everything is fixed-capacity: the request queue holds `Q` requests, the frame buffers
//! `FRAME` bytes, the node its own const-generic capacities. Nothing allocates.

use crate::link::Link;
use crate::store::Store;
use core::cell::Cell;
use embassy_futures::select::{Either3, select3};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Channel;
use raftlet::wire::Codec;
use raftlet::{
    Action, Duration, Entry, EntryData, Index, InstallError, InstallOutcome, Instant, Membership,
    Node, NodeId, Profile, ProposeError, ReadError, ReadId, Role, SnapshotId, SnapshotMeta,
    SnapshotMode, Term,
};
use serde::{Deserialize, Serialize};

/// Time, as the runner needs it.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// Microseconds since some origin; never goes back.
    fn now_us(&self) -> u64;
    /// Completes once `now_us() >= at`. Must be cancel-safe (the runner drops it when a frame
    /// or a request comes first).
    async fn wait_until(&mut self, at: u64);
}

/// The application on a node of type `N` (e.g. `App<TinyNode<Payload>>`): its entries carry
/// `N::Payload`, its snapshots are described by `N::SnapshotMeta`.
#[allow(async_fn_in_trait)]
pub trait App<N: Profile> {
    /// Whether this application takes snapshots ([`take_snapshot`](Self::take_snapshot)). The
    /// runner asks only an application that says so, so the log of one that does not is never
    /// compacted and every follower can always catch up from it.
    const TAKES_SNAPSHOTS: bool = false;
    /// The snapshot transfer this application implements: `Some(SnapshotMode::Notify)` with
    /// [`fetch_snapshot`](Self::fetch_snapshot), `Some(SnapshotMode::Stream)` with
    /// [`read_chunk`](Self::read_chunk), [`write_chunk`](Self::write_chunk) and
    /// [`restore`](Self::restore). An application that takes snapshots must transfer them in
    /// the node's configured mode, or [`new`] refuses to build the runner
    /// ([`BuildError::NoSnapshotTransfer`]): a follower behind the compacted log would never
    /// catch up.
    const TRANSFER: Option<SnapshotMode> = None;
    /// Applies a committed entry. Entries come in index order, each once per start (after a
    /// restart, from the application's snapshot on).
    fn apply(&mut self, entry: &Entry<N::Payload>);
    /// Asked after applying: take a snapshot now? (Default: never.)
    fn snapshot_due(&self, applied: Index) -> bool {
        let _ = applied;
        false
    }
    /// Store the state machine, durably, as snapshot `meta` (its id and the membership at
    /// it). `false`: it could not; the log is not compacted.
    async fn take_snapshot(&mut self, meta: &N::SnapshotMeta) -> bool {
        let _ = meta;
        false
    }
    /// Notify mode: fetch, by the application's own means, a snapshot that reaches at least
    /// `first_available.index - 1`, restore the state machine from it, and return its meta.
    async fn fetch_snapshot(
        &mut self,
        leader: NodeId,
        first_available: SnapshotId,
    ) -> Result<N::SnapshotMeta, InstallError> {
        let _ = (leader, first_available);
        Err(InstallError::Unavailable)
    }
    /// Stream mode, leader: chunk `seq` of `snapshot`, and the checksum of the whole snapshot
    /// if it is the last chunk. `None`: no such snapshot (the follower asks again later).
    async fn read_chunk(
        &mut self,
        snapshot: SnapshotId,
        seq: u32,
    ) -> Option<(N::Payload, Option<u64>)> {
        let _ = (snapshot, seq);
        None
    }
    /// Stream mode, follower: stage chunk `seq` (0 starts over).
    async fn write_chunk(&mut self, snapshot: SnapshotId, seq: u32, data: N::Payload) {
        let _ = (snapshot, seq, data);
    }
    /// Stream mode, follower: verify the staged snapshot against `checksum`, restore it, and
    /// return its meta.
    async fn restore(
        &mut self,
        snapshot: SnapshotId,
        checksum: u64,
    ) -> Result<N::SnapshotMeta, InstallError> {
        let _ = (snapshot, checksum);
        Err(InstallError::Failed)
    }
    /// An installation is over (`peer` is this node on the follower side).
    fn install_complete(&mut self, peer: NodeId, outcome: InstallOutcome) {
        let _ = (peer, outcome);
    }
}

/// A node's state as [`Handle::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// Applied index.
    pub applied: Index,
    /// Last log index.
    pub last_index: Index,
    /// Frames received and stepped.
    pub frames_in: u32,
    /// Frames dropped: damaged, undecodable, or for another node.
    pub frames_bad: u32,
    /// Frames the link failed to send.
    pub send_errors: u32,
    /// Persists that found the store full and waited for a snapshot to make room.
    pub store_full: u32,
    /// Proposals refused because persists were waiting for room in the store.
    pub proposals_refused_full: u32,
}

enum Request<P> {
    /// A proposal and its number (replies carry it back).
    Propose(u32, P),
    /// A linearizable read and its number.
    Read(u32),
    Snapshot,
}

/// The queues a [`Handle`] and its [`Runner`] share; put it in a `static` (or on the stack of
/// a test). `Q` requests can wait.
pub struct Resources<M: RawMutex, P, const Q: usize> {
    requests: Channel<M, Request<P>, Q>,
    replies: Channel<M, (u32, Result<Index, ProposeError<P>>), 1>,
    read_replies: Channel<M, (u32, Result<Index, ReadError>), 1>,
    one_at_a_time: embassy_sync::mutex::Mutex<M, ()>,
    next_proposal: embassy_sync::blocking_mutex::Mutex<M, Cell<u32>>,
    status: embassy_sync::blocking_mutex::Mutex<M, Cell<Option<Status>>>,
}

impl<M: RawMutex, P, const Q: usize> Resources<M, P, Q> {
    /// Empty queues.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            requests: Channel::new(),
            replies: Channel::new(),
            read_replies: Channel::new(),
            one_at_a_time: embassy_sync::mutex::Mutex::new(()),
            next_proposal: embassy_sync::blocking_mutex::Mutex::new(Cell::new(0)),
            status: embassy_sync::blocking_mutex::Mutex::new(Cell::new(None)),
        }
    }
}

impl<M: RawMutex, P, const Q: usize> Default for Resources<M, P, Q> {
    fn default() -> Self {
        Self::new()
    }
}

/// Talks to a running node.
pub struct Handle<'a, M: RawMutex, P, const Q: usize> {
    res: &'a Resources<M, P, Q>,
}

impl<M: RawMutex, P, const Q: usize> Clone for Handle<'_, M, P, Q> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M: RawMutex, P, const Q: usize> Copy for Handle<'_, M, P, Q> {}

impl<M: RawMutex, P, const Q: usize> Handle<'_, M, P, Q> {
    /// Numbers requests, so that a reply is matched to the request it answers.
    fn next_number(&self) -> u32 {
        self.res.next_proposal.lock(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        })
    }

    /// Proposes `data`; returns the index it will commit at (if leadership holds), or the
    /// node's refusal with the data handed back. Callers take turns. Cancel-safe: the reply
    /// to a proposal whose caller gave up is recognised by its number and discarded.
    ///
    /// # Errors
    /// [`ProposeError`]: not the leader (naming it when known), full, transferring.
    pub async fn propose(&self, data: P) -> Result<Index, ProposeError<P>> {
        let _turn = self.res.one_at_a_time.lock().await;
        let n = self.next_number();
        self.res.requests.send(Request::Propose(n, data)).await;
        loop {
            let (m, r) = self.res.replies.receive().await;
            if m == n {
                return r;
            }
        }
    }

    /// A linearizable read (ReadIndex, on the leader or forwarded by a follower): when it
    /// returns `Ok(index)`, the [`App`] has applied every entry up to `index`, which includes
    /// every write acknowledged before the call; answer the read from the application's state
    /// then. Callers take turns with proposals.
    ///
    /// # Errors
    /// [`ReadError`]: no leader, leadership lost, an install in progress, too many reads, or
    /// no confirmation in time. Never hangs.
    pub async fn read(&self) -> Result<Index, ReadError> {
        let _turn = self.res.one_at_a_time.lock().await;
        let n = self.next_number();
        self.res.requests.send(Request::Read(n)).await;
        loop {
            let (m, r) = self.res.read_replies.receive().await;
            if m == n {
                return r;
            }
        }
    }

    /// Asks the runner to take a snapshot now (through [`App::take_snapshot`]).
    pub async fn snapshot(&self) {
        self.res.requests.send(Request::Snapshot).await;
    }

    /// The node's state after its last input (`None` before the runner first ran).
    pub fn status(&self) -> Option<Status> {
        self.res.status.lock(Cell::get)
    }
}

/// Drives one node of type `N` (a [`Profile`]: e.g. `TinyNode<Payload>`, which names the
/// payload and every capacity) over link `L`, with store `S`, clock `C` and application `A`;
/// `Q` requests can wait and frames have up to `FRAME` bytes. See the [module docs](self).
pub struct Runner<'a, M: RawMutex, N: Profile, L, S, C, A, const Q: usize, const FRAME: usize> {
    res: &'a Resources<M, N::Payload, Q>,
    node: &'a mut N,
    link: L,
    store: &'a mut S,
    clock: C,
    app: A,
    codec: Codec,
    buf: [u8; FRAME],
    /// The membership after the last applied entry (stored with snapshots).
    membership: N::Membership,
    last_snapshot: Index,
    status: Status,
}

/// Why [`new`] refused to build a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BuildError {
    /// The application takes snapshots ([`App::TAKES_SNAPSHOTS`]) but does not transfer them in
    /// the node's snapshot mode ([`App::TRANSFER`]): once the log is compacted, a lagging
    /// follower could never catch up.
    NoSnapshotTransfer {
        /// The node's configured mode.
        mode: SnapshotMode,
    },
}

/// Splits a node into its [`Handle`] and its [`Runner`]. The node ticks every `tick_us`
/// microseconds of `clock`; frames are encoded and checked with `codec`. `membership` is the
/// membership the node was configured with (the one at its snapshot).
///
/// The runner borrows the node and the store, the two large parts, rather than owning them
/// (as embassy-net borrows its `StackResources`): they can live in `static`s, the node built
/// where it lies (`TinyNode::vacant()` in a `static`, then [`Node::init`]), so building a
/// runner takes no stack for them. [`Runner::into_parts`] hands the store back.
///
/// # Errors
/// [`BuildError::NoSnapshotTransfer`] (see [`App::TRANSFER`]).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn new<
    'a,
    M: RawMutex,
    P,
    L,
    S,
    C: Clock,
    A,
    const Q: usize,
    const FRAME: usize,
    const PEERS: usize,
    const LOG: usize,
    const BATCH: usize,
    const INFLIGHT: usize,
    const OUT: usize,
    const READS: usize,
>(
    res: &'a Resources<M, P, Q>,
    node: &'a mut Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>,
    membership: Membership<PEERS>,
    link: L,
    store: &'a mut S,
    clock: C,
    app: A,
    codec: Codec,
    tick_us: u64,
) -> Result<
    (
        Handle<'a, M, P, Q>,
        Runner<'a, M, Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>, L, S, C, A, Q, FRAME>,
    ),
    BuildError,
>
where
    A: App<Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>>,
    S: Store<P>,
    P: Clone,
{
    let mode = node.snapshot_mode();
    if A::TAKES_SNAPSHOTS && A::TRANSFER != Some(mode) {
        return Err(BuildError::NoSnapshotTransfer { mode });
    }
    // Time is the node's own: `handle_timeout` runs the ticks that are due (at most two election
    // timeouts' worth after a stall, dropping a read lease it can no longer trust) and
    // `poll_timeout` says when to wake next.
    node.set_tick_interval(Duration::from_micros(tick_us.max(1)));
    node.handle_timeout(Instant::from_micros(clock.now_us()), &*store);
    let status = Status {
        id: node.id(),
        role: node.role(),
        term: node.term(),
        leader: node.leader(),
        commit: node.commit_index(),
        applied: node.applied_index(),
        last_index: node.last_index(),
        frames_in: 0,
        frames_bad: 0,
        send_errors: 0,
        store_full: 0,
        proposals_refused_full: 0,
    };
    let last_snapshot = node.latest_snapshot().index;
    Ok((
        Handle { res },
        Runner {
            res,
            node,
            link,
            store,
            clock,
            app,
            codec,
            buf: [0; FRAME],
            membership,
            last_snapshot,
            status,
        },
    ))
}

/// Sends reply `n`: one left that nobody collected (its caller gave up) makes room for it.
fn answer<M: RawMutex, T>(replies: &Channel<M, (u32, T), 1>, n: u32, reply: T) {
    replies.clear();
    let _ = replies.try_send((n, reply));
}

/// Why the runner stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunError<E> {
    /// The store failed to persist: the node must not go on.
    Store(E),
    /// A committed entry the node asked to apply is not in the store: the state machine would
    /// diverge from the others' if the runner skipped it.
    MissingEntry(Index),
}

impl<
    'a,
    M: RawMutex,
    P,
    L: Link,
    S: Store<P>,
    C: Clock,
    A: App<Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>>,
    const Q: usize,
    const FRAME: usize,
    const PEERS: usize,
    const LOG: usize,
    const BATCH: usize,
    const INFLIGHT: usize,
    const OUT: usize,
    const READS: usize,
> Runner<'a, M, Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS>, L, S, C, A, Q, FRAME>
where
    P: Clone + Serialize + for<'de> Deserialize<'de>,
{
    /// Runs the node until the store fails. Dropping this future (a simulated crash, or a
    /// board shutting the task down) leaves the runner usable: its store keeps what was
    /// persisted.
    ///
    /// # Errors
    /// [`RunError::Store`].
    pub async fn run(&mut self) -> RunError<S::Error> {
        loop {
            if let Err(e) = self.make_room().await {
                return e;
            }
            if let Err(e) = self.drain().await {
                return e;
            }
            self.publish();
            let at = self.node.poll_timeout().map_or(0, Instant::as_micros);
            let event = select3(
                self.clock.wait_until(at),
                self.res.requests.receive(),
                self.link.recv(&mut self.buf),
            )
            .await;
            match event {
                Either3::First(()) => self.tick(),
                Either3::Second(Request::Propose(n, data)) => {
                    // Back-pressure from a full store: refuse until the snapshot made room.
                    let r = if !self.node.persists_held() {
                        self.node.propose(data, &*self.store)
                    } else {
                        self.status.proposals_refused_full += 1;
                        Err(ProposeError::Full(data))
                    };
                    answer(&self.res.replies, n, r);
                }
                Either3::Second(Request::Read(n)) => {
                    if let Err(e) = self.node.read_index(ReadId(u64::from(n)), &*self.store) {
                        self.answer_read(n, Err(e));
                    }
                }
                Either3::Second(Request::Snapshot) => {
                    self.snapshot().await;
                }
                Either3::Third(Ok(n)) => self.step(n),
                Either3::Third(Err(_)) => self.status.frames_bad += 1,
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::from_micros(self.clock.now_us());
        self.node.handle_timeout(now, &*self.store);
    }

    fn step(&mut self, n: usize) {
        match self
            .codec
            .decode::<P, heapless::Vec<Entry<P>, BATCH>>(&self.buf[..n])
        {
            Ok(msg) if msg.to == self.node.id() => {
                self.status.frames_in += 1;
                let _ = self.node.step(&msg, &*self.store);
            }
            // On a shared bus, frames for the others are expected: not an error.
            Ok(_) => {}
            Err(_) => self.status.frames_bad += 1,
        }
    }

    fn publish(&mut self) {
        let n = &self.node;
        self.status.role = n.role();
        self.status.term = n.term();
        self.status.leader = n.leader();
        self.status.commit = n.commit_index();
        self.status.applied = n.applied_index();
        self.status.last_index = n.last_index();
        let s = self.status;
        self.res.status.lock(|c| c.set(Some(s)));
    }

    async fn drain(&mut self) -> Result<(), RunError<S::Error>> {
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send(out) => {
                    match self
                        .codec
                        .encode_outgoing(&out, &*self.store, &mut self.buf)
                    {
                        Ok(n) => {
                            if self.link.send(out.to(), &self.buf[..n]).await.is_err() {
                                self.status.send_errors += 1;
                            }
                        }
                        Err(_) => self.status.send_errors += 1,
                    }
                }
                Action::Persist(p) => {
                    let token = p.token;
                    if self.store.fits(&p) {
                        self.store.persist(&p).await.map_err(RunError::Store)?;
                        let _ = self.node.persisted(token, &*self.store);
                    } else {
                        // The node takes it back and holds every persist until a snapshot's
                        // compaction makes room (`make_room`): nothing is lost or reordered.
                        self.status.store_full += 1;
                        let _ = self.node.defer_persist(token);
                    }
                }
                Action::Apply { first, last } => {
                    for i in first.0..=last.0 {
                        let Some(e) = self.store.entry(Index(i)) else {
                            return Err(RunError::MissingEntry(Index(i)));
                        };
                        if let EntryData::Membership(c) = &e.data
                            && let Ok(m) = self.membership.apply(c)
                        {
                            self.membership = m;
                        }
                        self.app.apply(&e);
                    }
                    if self.app.snapshot_due(last) {
                        self.snapshot().await;
                    }
                }
                Action::Compact { through } => {
                    self.store.compact(through).await.map_err(RunError::Store)?;
                }
                Action::InstallSnapshotFromLeader {
                    leader,
                    first_available,
                } => {
                    let r = self.app.fetch_snapshot(leader, first_available).await;
                    self.adopt(r);
                }
                Action::ReadSnapshotChunk { to, snapshot, seq } => {
                    if let Some((data, checksum)) = self.app.read_chunk(snapshot, seq).await {
                        let _ = self.node.snapshot_chunk(to, snapshot, seq, data, checksum);
                    }
                }
                Action::WriteSnapshotChunk {
                    snapshot,
                    seq,
                    data,
                } => self.app.write_chunk(snapshot, seq, data.clone()).await,
                Action::RestoreSnapshot { snapshot, checksum } => {
                    let r = self.app.restore(snapshot, checksum).await;
                    self.adopt(r);
                }
                Action::InstallComplete { peer, outcome } => {
                    self.app.install_complete(peer, outcome);
                }
                Action::ReadReady { id, index } => self.answer_read(id.0 as u32, Ok(index)),
                Action::ReadFailed { id, reason } => self.answer_read(id.0 as u32, Err(reason)),
            }
        }
        Ok(())
    }

    /// Persists held back for room: the node hands them out again, and what fits now is
    /// written and acknowledged; if it still does not fit, the application is asked for a
    /// snapshot, whose compaction frees the applied prefix of the store. The node runs on meanwhile (ticks, messages,
    /// reads); an application that cannot snapshot leaves the node waiting, never stopped.
    async fn make_room(&mut self) -> Result<(), RunError<S::Error>> {
        if !self.node.persists_held() {
            return Ok(());
        }
        for attempt in 0..2 {
            // The held persist goes out again; if it still does not fit, it is held again.
            self.node.resume_persists();
            self.drain().await?;
            if !self.node.persists_held() || attempt == 1 {
                break;
            }
            self.snapshot().await;
            // The snapshot's compaction is an action: execute it before retrying.
            self.drain().await?;
        }
        Ok(())
    }

    fn answer_read(&mut self, n: u32, r: Result<Index, ReadError>) {
        answer(&self.res.read_replies, n, r);
    }

    fn adopt(&mut self, r: Result<SnapshotMeta<PEERS>, InstallError>) {
        if let Ok(meta) = &r {
            self.membership = meta.membership.clone();
            self.last_snapshot = meta.id.index;
        }
        let _ = self.node.snapshot_installed(r, &*self.store);
    }

    /// Snapshots the applied state through the application and lets the node compact.
    async fn snapshot(&mut self) {
        if !A::TAKES_SNAPSHOTS {
            return;
        }
        let applied = self.node.applied_index();
        if applied <= self.last_snapshot {
            return;
        }
        let Some(term) = self.node.term_at(applied, &*self.store) else {
            return;
        };
        let meta = SnapshotMeta {
            id: SnapshotId {
                index: applied,
                term,
            },
            membership: self.membership.clone(),
        };
        if self.app.take_snapshot(&meta).await {
            self.last_snapshot = applied;
            let _ = self.node.snapshot_taken(meta.id, &*self.store);
        }
    }

    /// The node (for inspection).
    pub fn node(&self) -> &Node<P, PEERS, LOG, BATCH, INFLIGHT, OUT, READS> {
        self.node
    }
    /// The store.
    pub fn store(&self) -> &S {
        self.store
    }
    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }
    /// Takes the runner apart, handing back the borrowed store (to restart the node from it,
    /// as after a reset).
    pub fn into_parts(self) -> (L, &'a mut S, C, A) {
        (self.link, self.store, self.clock, self.app)
    }
}
