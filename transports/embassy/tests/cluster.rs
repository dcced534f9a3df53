//! Three nodes, each driven by the embassy runner, in one host process under
//! `embassy_futures::block_on` with a simulated clock, connected by a simulated serial bus that
//! loses whole frames and flips bits; every frame goes through `CobsLink` (COBS with a CRC-32).
//! Election, replication, a leader crash and recovery from its store, and a notify-mode
//! snapshot install with `InstallComplete` on both sides.

use embassy_futures::block_on;
use embassy_futures::join::join3;
use embassy_futures::select::{Either, select};
use embassy_futures::yield_now;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use raftlet::wire::{Codec, max_frame_len};
use raftlet::{
    Config, Entry, EntryData, Index, InstallError, InstallOutcome, Membership, Node, NodeId, Role,
    SnapshotId, SnapshotMeta, SnapshotMode,
};
use raftlet_embassy::link::{CobsLink, encoded_len};
use raftlet_embassy::runner::{self, App, Clock, Handle, Resources, Runner};
use raftlet_embassy::store::RamStore;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

type P = heapless::Vec<u8, 16>;
const BATCH: usize = 4;
type TNode = Node<P, 5, 16, BATCH, 2, 8>;
const FRAME: usize = max_frame_len::<P, BATCH>();
const N: usize = FRAME + 4;
const E: usize = encoded_len(N);
type Link = CobsLink<BusRx, BusTx, N, E>;
type Store = RamStore<P, 64>;
type R<'a> = Runner<'a, NoopRawMutex, TNode, Link, Store, SimClock, TestApp, 4, FRAME>;
type H<'a> = Handle<'a, NoopRawMutex, P, 4>;
const TICK_US: u64 = 10_000;

// ----- the simulated bus and clock -----------------------------------------------------------

struct Bus {
    inbound: Vec<RefCell<VecDeque<u8>>>,
    up: Vec<Cell<bool>>,
    rng: RefCell<fastrand::Rng>,
    loss: f64,
    flip: f64,
    frames: Cell<u64>,
    damaged: Cell<u64>,
}

impl Bus {
    fn new(n: usize, seed: u64, loss: f64, flip: f64) -> Rc<Self> {
        Rc::new(Self {
            inbound: (0..n).map(|_| RefCell::new(VecDeque::new())).collect(),
            up: (0..n).map(|_| Cell::new(true)).collect(),
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            loss,
            flip,
            frames: Cell::new(0),
            damaged: Cell::new(0),
        })
    }
    fn set_up(&self, k: usize, up: bool) {
        self.up[k].set(up);
        self.inbound[k].borrow_mut().clear();
    }
}

/// The byte-level transmit half of node `me` on the shared bus: every other node that is up
/// hears every frame, unless it is lost; some arrive with a flipped bit.
struct BusTx {
    bus: Rc<Bus>,
    me: usize,
}
struct BusRx {
    bus: Rc<Bus>,
    me: usize,
}

impl embedded_io_async::ErrorType for BusTx {
    type Error = Infallible;
}
impl embedded_io_async::ErrorType for BusRx {
    type Error = Infallible;
}

impl embedded_io_async::Write for BusTx {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let bus = &self.bus;
        if !bus.up[self.me].get() {
            return Ok(buf.len());
        }
        bus.frames.set(bus.frames.get() + 1);
        for k in 0..bus.inbound.len() {
            if k == self.me || !bus.up[k].get() {
                continue;
            }
            let mut rng = bus.rng.borrow_mut();
            if rng.f64() < bus.loss {
                continue;
            }
            let mut bytes = buf.to_vec();
            if rng.f64() < bus.flip {
                let at = rng.usize(0..bytes.len());
                bytes[at] ^= 1 << rng.u8(0..8);
                bus.damaged.set(bus.damaged.get() + 1);
            }
            bus.inbound[k].borrow_mut().extend(bytes);
        }
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl embedded_io_async::Read for BusRx {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        poll_fn(|_| {
            let mut q = self.bus.inbound[self.me].borrow_mut();
            if q.is_empty() {
                return Poll::Pending;
            }
            // A UART hands over a few bytes at a time.
            let n = q.len().min(buf.len()).min(7);
            for b in buf.iter_mut().take(n) {
                *b = q.pop_front().expect("n <= len");
            }
            Poll::Ready(Ok(n))
        })
        .await
    }
}

/// Simulated time: `block_on` polls busily, and the test's driver moves the time on.
#[derive(Clone)]
struct SimClock(Rc<Cell<u64>>);

impl Clock for SimClock {
    fn now_us(&self) -> u64 {
        self.0.get()
    }
    async fn wait_until(&mut self, at: u64) {
        poll_fn(|_| {
            if self.0.get() >= at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

// ----- the application ------------------------------------------------------------------------

/// Snapshots "somewhere else" (another node, object storage) where notify-mode fetches find them.
type Server = Rc<RefCell<Vec<(SnapshotMeta<5>, (Index, u64))>>>;

struct TestApp {
    applied: Index,
    hash: u64,
    snapshot_every: u64,
    events: Vec<(NodeId, InstallOutcome)>,
    server: Server,
}

impl TestApp {
    fn new(server: &Server, snapshot_every: u64) -> Self {
        Self {
            applied: Index(0),
            hash: 0,
            snapshot_every,
            events: Vec::new(),
            server: server.clone(),
        }
    }
}

impl App<TNode> for TestApp {
    const TAKES_SNAPSHOTS: bool = true;
    const TRANSFER: Option<SnapshotMode> = Some(SnapshotMode::Notify);
    fn apply(&mut self, e: &Entry<P>) {
        assert_eq!(
            e.index,
            self.applied.next(),
            "applies in order, none skipped"
        );
        self.applied = e.index;
        let p = match &e.data {
            EntryData::Normal(p) => p
                .iter()
                .fold(1u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b))),
            _ => 0,
        };
        self.hash =
            (self.hash ^ p ^ e.term.0.rotate_left(9) ^ e.index.0).wrapping_mul(0x100_0000_01b3);
    }
    fn snapshot_due(&self, applied: Index) -> bool {
        let last = self
            .server
            .borrow()
            .iter()
            .map(|(m, _)| m.id.index.0)
            .max()
            .unwrap_or(0);
        self.snapshot_every > 0 && applied.0 >= last.min(self.applied.0) + self.snapshot_every
    }
    async fn take_snapshot(&mut self, meta: &SnapshotMeta<5>) -> bool {
        assert_eq!(meta.id.index, self.applied);
        self.server
            .borrow_mut()
            .push((meta.clone(), (self.applied, self.hash)));
        true
    }
    async fn fetch_snapshot(
        &mut self,
        _leader: NodeId,
        first_available: SnapshotId,
    ) -> Result<SnapshotMeta<5>, InstallError> {
        let server = self.server.borrow();
        let Some((meta, (applied, hash))) = server
            .iter()
            .filter(|(m, _)| m.id.index.next() >= first_available.index)
            .max_by_key(|(m, _)| m.id.index)
        else {
            return Err(InstallError::Unavailable);
        };
        self.applied = *applied;
        self.hash = *hash;
        Ok(meta.clone())
    }
    fn install_complete(&mut self, peer: NodeId, outcome: InstallOutcome) {
        self.events.push((peer, outcome));
    }
}

// ----- the harness ------------------------------------------------------------------------------

struct World {
    bus: Rc<Bus>,
    clock: SimClock,
    server: Server,
    mode: SnapshotMode,
    snapshot_every: u64,
}

impl World {
    /// A bus losing and damaging `loss` of the frames, nodes in `mode` that snapshot every
    /// `snapshot_every` entries (0: never).
    fn new(seed: u64, loss: f64, mode: SnapshotMode, snapshot_every: u64) -> Self {
        Self {
            bus: Bus::new(3, seed, loss, loss),
            clock: SimClock(Rc::new(Cell::new(0))),
            server: Rc::new(RefCell::new(Vec::new())),
            mode,
            snapshot_every,
        }
    }

    fn node(&self, id: u64, store: &Store, app: &TestApp) -> TNode {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let mut c = Config::new(NodeId(id), &ids).unwrap();
        c.election_ticks = 10;
        c.heartbeat_ticks = 2;
        c.seed = id * 7919;
        c.snapshot_mode = self.mode;
        c.log_retention = 0;
        let snap = self
            .server
            .borrow()
            .iter()
            .filter(|(m, _)| m.id.index == app.applied)
            .map(|(m, _)| m.id)
            .next_back()
            .unwrap_or(SnapshotId::ZERO);
        c.snapshot = snap;
        c.applied = app.applied;
        TNode::new(c, store).unwrap()
    }

    /// Three fresh nodes.
    fn start_all<'a>(
        &self,
        res: &'a [Resources<NoopRawMutex, P, 4>; 3],
    ) -> Vec<(H<'a>, Option<R<'a>>)> {
        (1..=3)
            .map(|id| {
                let app = TestApp::new(&self.server, self.snapshot_every);
                // Tests leak their stores and nodes: a runner borrows them for its lifetime.
                let store = Box::leak(Box::new(Store::new()));
                let (h, r) = self.runner(&res[id - 1], id as u64, store, app);
                (h, Some(r))
            })
            .collect()
    }

    fn runner<'a>(
        &self,
        res: &'a Resources<NoopRawMutex, P, 4>,
        id: u64,
        store: &'a mut Store,
        app: TestApp,
    ) -> (H<'a>, R<'a>) {
        let node = Box::leak(Box::new(self.node(id, store, &app)));
        let k = id as usize - 1;
        let link = Link::new(
            BusRx {
                bus: self.bus.clone(),
                me: k,
            },
            BusTx {
                bus: self.bus.clone(),
                me: k,
            },
        );
        let membership = Membership::new(&[NodeId(1), NodeId(2), NodeId(3)]).unwrap();
        runner::new(
            res,
            node,
            membership,
            link,
            store,
            self.clock.clone(),
            app,
            Codec::new(7, FRAME),
            TICK_US,
        )
        .expect("the test app transfers snapshots in notify mode")
    }
}

fn payload(k: u32) -> P {
    P::from_slice(&k.to_le_bytes()).unwrap()
}

/// Runs one runner forever (or nothing, for a node that is down).
async fn go<'r, 'a>(r: Option<&'r mut R<'a>>) {
    match r {
        Some(r) => {
            let e = r.run().await;
            panic!("a runner stopped: {e:?}");
        }
        None => core::future::pending::<()>().await,
    }
}

/// Runs the given runners, and `driver` (which moves simulated time on as it waits), until the
/// driver is done.
fn run_until<F: Future<Output = ()>>(runners: [Option<&mut R<'_>>; 3], driver: F) {
    let [a, b, c] = runners;
    match block_on(select(join3(go(a), go(b), go(c)), driver)) {
        Either::First(_) => unreachable!("runners never finish"),
        Either::Second(()) => {}
    }
}

/// Moves time on by `us`.
async fn sleep(clock: &SimClock, us: u64) {
    let until = clock.0.get() + us;
    while clock.0.get() < until {
        yield_now().await;
        clock.0.set(clock.0.get() + 100);
    }
}

/// Waits (in simulated time, up to `max_us`) until `cond` holds.
async fn wait(clock: &SimClock, max_us: u64, mut cond: impl FnMut() -> bool) -> bool {
    let until = clock.0.get() + max_us;
    while clock.0.get() < until {
        if cond() {
            return true;
        }
        sleep(clock, 500).await;
    }
    cond()
}

fn leader(hs: &[&H<'_>]) -> Option<(usize, raftlet::Term)> {
    hs.iter()
        .enumerate()
        .filter_map(|(k, h)| {
            h.status()
                .filter(|s| s.role == Role::Leader)
                .map(|s| (k, s.term))
        })
        .max_by_key(|(_, t)| *t)
}

/// Proposes `n` payloads at the leader among `hs`, retrying on refusals.
async fn propose_n(clock: &SimClock, hs: &[&H<'_>], first: u32, n: u32) {
    let mut k = first;
    while k < first + n {
        if let Some((l, _)) = leader(hs) {
            match hs[l].propose(payload(k)).await {
                Ok(_) => k += 1,
                Err(_) => sleep(clock, 5_000).await,
            }
        } else {
            sleep(clock, 5_000).await;
        }
    }
}

#[test]
fn three_nodes_elect_replicate_and_survive_a_leader_crash_over_a_lossy_serial_bus() {
    let world = World::new(1, 0.05, SnapshotMode::Notify, 0);
    let res = Default::default();
    let mut parts = world.start_all(&res);
    let hs: Vec<H<'_>> = parts.iter().map(|(h, _)| *h).collect();
    let hrefs: Vec<&H<'_>> = hs.iter().collect();
    let clock = world.clock.clone();

    // Election and replication.
    {
        let [a, b, c] = &mut parts[..] else {
            unreachable!()
        };
        run_until([a.1.as_mut(), b.1.as_mut(), c.1.as_mut()], async {
            assert!(
                wait(&clock, 5_000_000, || leader(&hrefs).is_some()).await,
                "no leader"
            );
            propose_n(&clock, &hrefs, 0, 20).await;
            assert!(
                wait(&clock, 10_000_000, || hs.iter().all(|h| h
                    .status()
                    .unwrap()
                    .applied
                    .0
                    >= 21))
                .await,
                "not replicated: {:?}",
                hs.iter().map(|h| h.status()).collect::<Vec<_>>()
            );
        });
    }
    let (l, t) = leader(&hrefs).unwrap();
    // Linearizable reads, on the leader and forwarded by a follower: once one returns, that
    // node's application has applied every acknowledged write.
    {
        let [a, b, c] = &mut parts[..] else {
            unreachable!()
        };
        run_until([a.1.as_mut(), b.1.as_mut(), c.1.as_mut()], async {
            for k in [l, (l + 1) % 3] {
                let mut tries = 0;
                let index = loop {
                    match hs[k].read().await {
                        Ok(i) => break i,
                        Err(_) if tries < 20 => {
                            tries += 1;
                            sleep(&clock, 20_000).await;
                        }
                        Err(e) => panic!("read on {k} failed: {e:?}"),
                    }
                };
                assert!(
                    index.0 >= 21,
                    "read index {index} misses acknowledged writes"
                );
                assert!(hs[k].status().unwrap().applied >= index);
            }
        });
    }
    for (_, r) in &parts {
        assert_eq!(
            r.as_ref().unwrap().app().hash,
            parts[l].1.as_ref().unwrap().app().hash
        );
    }
    assert!(
        world.bus.damaged.get() > 0,
        "the bus damaged no frame: the CRC was not exercised"
    );

    // The leader crashes: its runner stops, its store (flash) keeps what was persisted.
    let (_, store, _, _) = parts[l].1.take().unwrap().into_parts();
    world.bus.set_up(l, false);
    {
        let mut rs: Vec<Option<&mut R<'_>>> = parts.iter_mut().map(|(_, r)| r.as_mut()).collect();
        let (x, y, z) = (rs.remove(0), rs.remove(0), rs.remove(0));
        run_until([x, y, z], async {
            assert!(
                wait(&clock, 10_000_000, || leader(&hrefs)
                    .is_some_and(|(k, tt)| k != l && tt > t))
                .await,
                "no new leader"
            );
            propose_n(&clock, &hrefs, 100, 10).await;
        });
    }
    let (l2, _) = leader(&hrefs).unwrap();
    assert_ne!(l2, l);

    // It restarts from its store, with a fresh state machine, and catches up.
    world.bus.set_up(l, true);
    let (_, r) = world.runner(&res[l], l as u64 + 1, store, TestApp::new(&world.server, 0));
    parts[l].1 = Some(r);
    {
        let [a, b, c] = &mut parts[..] else {
            unreachable!()
        };
        run_until([a.1.as_mut(), b.1.as_mut(), c.1.as_mut()], async {
            propose_n(&clock, &hrefs, 200, 5).await;
            let target = hs[leader(&hrefs).unwrap().0].status().unwrap().commit;
            assert!(
                wait(&clock, 10_000_000, || hs.iter().all(|h| h
                    .status()
                    .unwrap()
                    .applied
                    >= target))
                .await,
                "the restarted node did not catch up"
            );
        });
    }
    let hashes: Vec<u64> = parts
        .iter()
        .map(|(_, r)| r.as_ref().unwrap().app().hash)
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert_eq!(
        parts[l].1.as_ref().unwrap().app().applied,
        parts[l2].1.as_ref().unwrap().app().applied
    );
}

#[test]
fn a_lagging_node_installs_a_snapshot_in_notify_mode_with_install_complete_on_both_sides() {
    let world = World::new(2, 0.02, SnapshotMode::Notify, 8);
    let res = Default::default();
    let mut parts = world.start_all(&res);
    let hs: Vec<H<'_>> = parts.iter().map(|(h, _)| *h).collect();
    let hrefs: Vec<&H<'_>> = hs.iter().collect();
    let clock = world.clock.clone();
    // Node 3 is away while the others commit and compact.
    world.bus.set_up(2, false);
    {
        let [a, b, _] = &mut parts[..] else {
            unreachable!()
        };
        run_until([a.1.as_mut(), b.1.as_mut(), None], async {
            assert!(
                wait(&clock, 10_000_000, || leader(&hrefs[..2]).is_some()).await,
                "no leader"
            );
            propose_n(&clock, &hrefs[..2], 0, 30).await;
            assert!(
                wait(&clock, 10_000_000, || hs[..2].iter().all(|h| h
                    .status()
                    .unwrap()
                    .applied
                    .0
                    >= 31))
                .await
            );
        });
    }
    let (l, _) = leader(&hrefs[..2]).unwrap();
    assert!(
        parts[l].1.as_ref().unwrap().node().log_start().index.0 >= 24,
        "the leader did not compact"
    );
    // Node 3 comes back: the leader's log starts after what it has, so it is told where the log
    // starts, fetches a snapshot by itself, and both sides report the end of the install.
    world.bus.set_up(2, true);
    {
        let [a, b, c] = &mut parts[..] else {
            unreachable!()
        };
        run_until([a.1.as_mut(), b.1.as_mut(), c.1.as_mut()], async {
            assert!(
                wait(&clock, 20_000_000, || {
                    hs[2].status().is_some_and(|s| s.applied.0 >= 31)
                })
                .await,
                "node 3 did not catch up"
            );
            propose_n(&clock, &hrefs, 100, 3).await;
            let target = hs[l].status().unwrap().commit;
            assert!(
                wait(&clock, 10_000_000, || hs[2].status().unwrap().applied
                    >= target)
                .await
            );
            sleep(&clock, 200_000).await;
        });
    }
    let leader_app = parts[l].1.as_ref().unwrap().app();
    let follower_app = parts[2].1.as_ref().unwrap().app();
    let installed = |events: &[(NodeId, InstallOutcome)]| {
        events
            .iter()
            .filter(|(p, o)| *p == NodeId(3) && matches!(o, InstallOutcome::Installed(_)))
            .count()
    };
    assert_eq!(
        installed(&leader_app.events),
        1,
        "leader events: {:?}",
        leader_app.events
    );
    assert_eq!(
        installed(&follower_app.events),
        1,
        "follower events: {:?}",
        follower_app.events
    );
    assert_eq!(
        follower_app.hash, leader_app.hash,
        "the installed node diverged"
    );
}

/// A caller that gives up on a proposal (drops the future after the request left) must not
/// leave its reply for the next caller: replies carry the proposal's number.
#[test]
fn a_proposal_whose_caller_gave_up_does_not_answer_the_next_one() {
    use raftlet_embassy::link::NoLink;
    let clock = SimClock(Rc::new(Cell::new(0)));
    let res: Resources<NoopRawMutex, P, 4> = Resources::new();
    let mut store = Store::new();
    let mut c = Config::new(NodeId(1), &[NodeId(1)]).unwrap();
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.snapshot_mode = SnapshotMode::Notify; // the test app transfers snapshots in notify mode
    let mut node = TNode::new(c, &store).unwrap();
    let server: Server = Rc::new(RefCell::new(Vec::new()));
    let (h, mut r) = runner::new::<_, _, _, _, _, _, 4, FRAME, 5, 16, BATCH, 2, 8, 16>(
        &res,
        &mut node,
        Membership::new(&[NodeId(1)]).unwrap(),
        NoLink,
        &mut store,
        clock.clone(),
        TestApp::new(&server, 0),
        Codec::new(7, FRAME),
        TICK_US,
    )
    .unwrap();
    let run =
        |r: &mut Runner<'_, NoopRawMutex, TNode, NoLink, Store, SimClock, TestApp, 4, FRAME>,
         driver: std::pin::Pin<&mut dyn Future<Output = ()>>| {
            let _ = block_on(select(r.run(), driver));
        };
    run(
        &mut r,
        std::pin::pin!(async {
            assert!(
                wait(&clock, 2_000_000, || h
                    .status()
                    .is_some_and(|s| s.role == Role::Leader))
                .await
            );
        }),
    );
    let before = r.node().last_index().0;
    // The request of the first proposal leaves, then its caller gives up.
    assert!(embassy_futures::poll_once(h.propose(payload(1))).is_pending());
    // The runner handles it (and replies to nobody), then a second proposal is made.
    let mut second = None;
    run(
        &mut r,
        std::pin::pin!(async {
            sleep(&clock, 1_000).await;
            second = Some(h.propose(payload(2)).await);
        }),
    );
    // The first proposal went in at `before + 1`, the second at `before + 2`.
    assert_eq!(
        second,
        Some(Ok(Index(before + 2))),
        "the second caller got the first's reply"
    );
}

/// A board whose store fills (64 entries) and whose application never volunteers a snapshot
/// (`snapshot_due` is off): the runners do not halt. A persist that does not fit waits, the
/// runner asks the application for a snapshot whose compaction makes room, proposals are
/// refused with `Full` meanwhile, and all 150 commands are applied everywhere, identically.
#[test]
fn a_full_store_is_back_pressure_not_a_halt() {
    let world = World::new(3, 0.02, SnapshotMode::Notify, 0);
    let res = Default::default();
    let mut parts = world.start_all(&res);
    let hs: Vec<H<'_>> = parts.iter().map(|(h, _)| *h).collect();
    let hrefs: Vec<&H<'_>> = hs.iter().collect();
    let clock = world.clock.clone();
    {
        let [a, b, c] = &mut parts[..] else {
            unreachable!()
        };
        // `go` panics if a runner stops: the old runner stopped at the first full store.
        run_until([a.1.as_mut(), b.1.as_mut(), c.1.as_mut()], async {
            assert!(
                wait(&clock, 5_000_000, || leader(&hrefs).is_some()).await,
                "no leader"
            );
            propose_n(&clock, &hrefs, 0, 150).await;
            assert!(
                wait(&clock, 30_000_000, || hs.iter().all(|h| h
                    .status()
                    .unwrap()
                    .applied
                    .0
                    >= 151))
                .await,
                "not applied: {:?}",
                hs.iter().map(|h| h.status()).collect::<Vec<_>>()
            );
        });
    }
    let statuses: Vec<_> = hs.iter().map(|h| h.status().unwrap()).collect();
    assert!(
        statuses.iter().any(|s| s.store_full > 0),
        "the store never filled: {statuses:?}"
    );
    for (_, r) in &parts {
        let r = r.as_ref().unwrap();
        assert!(r.store().len() <= 64);
        assert_eq!(r.app().hash, parts[0].1.as_ref().unwrap().app().hash);
        assert!(!world.server.borrow().is_empty(), "no snapshot was taken");
    }
}

/// A store that loses the entry at index `lost` (a storage bug or a corrupted medium).
struct Lossy {
    inner: Store,
    lost: Index,
}

impl raftlet::Storage<P> for Lossy {
    fn hard_state(&self) -> raftlet::HardState {
        self.inner.hard_state()
    }
    fn last_index(&self) -> Index {
        self.inner.last_index()
    }
    fn term(&self, i: Index) -> Option<raftlet::Term> {
        self.inner.term(i)
    }
    fn entry(&self, i: Index) -> Option<Entry<P>> {
        if i == self.lost {
            None
        } else {
            self.inner.entry(i)
        }
    }
    fn snapshot(&self) -> SnapshotId {
        self.inner.snapshot()
    }
}

impl raftlet_embassy::store::Store<P> for Lossy {
    type Error = raftlet_embassy::store::StoreFull;
    fn fits(&self, p: &raftlet::Persist<'_, P>) -> bool {
        self.inner.fits(p)
    }
    async fn persist(&mut self, p: &raftlet::Persist<'_, P>) -> Result<(), Self::Error> {
        self.inner.persist(p).await
    }
    async fn compact(&mut self, through: SnapshotId) -> Result<(), Self::Error> {
        self.inner.compact(through).await
    }
}

/// A committed entry missing from the store at apply time stops the runner with
/// `MissingEntry`: skipping it would let this state machine diverge silently.
#[test]
fn a_gap_at_apply_time_stops_the_runner() {
    use raftlet_embassy::link::NoLink;
    let clock = SimClock(Rc::new(Cell::new(0)));
    let res: Resources<NoopRawMutex, P, 4> = Resources::new();
    // Index 1 is the leader's no-op, index 2 the first command: lose the command.
    let mut store = Lossy {
        inner: Store::new(),
        lost: Index(2),
    };
    let mut c = Config::new(NodeId(1), &[NodeId(1)]).unwrap();
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.snapshot_mode = SnapshotMode::Notify; // the test app transfers snapshots in notify mode
    let mut node = TNode::new(c, &store).unwrap();
    let server: Server = Rc::new(RefCell::new(Vec::new()));
    let (h, mut r) = runner::new::<_, _, _, _, _, _, 4, FRAME, 5, 16, BATCH, 2, 8, 16>(
        &res,
        &mut node,
        Membership::new(&[NodeId(1)]).unwrap(),
        NoLink,
        &mut store,
        clock.clone(),
        TestApp::new(&server, 0),
        Codec::new(7, FRAME),
        TICK_US,
    )
    .unwrap();
    let stopped = block_on(select(r.run(), async {
        assert!(
            wait(&clock, 2_000_000, || h
                .status()
                .is_some_and(|s| s.role == Role::Leader))
            .await
        );
        let _ = h.propose(payload(1)).await;
        sleep(&clock, 1_000_000).await;
    }));
    match stopped {
        Either::First(e) => {
            assert_eq!(e, raftlet_embassy::runner::RunError::MissingEntry(Index(2)))
        }
        Either::Second(()) => panic!("the runner skipped the missing entry"),
    }
    assert_eq!(
        r.app().applied,
        Index(1),
        "nothing after the gap was applied"
    );
}

/// An application that takes snapshots but cannot transfer them in the node's mode is refused
/// when the runner is built, not discovered at run time when a follower falls behind the
/// compacted log and never catches up.
#[test]
fn a_runner_whose_app_cannot_transfer_its_snapshots_is_refused() {
    use raftlet_embassy::link::NoLink;
    use raftlet_embassy::runner::BuildError;
    let world = World::new(4, 0.0, SnapshotMode::Stream, 8);
    let res: Resources<NoopRawMutex, P, 4> = Resources::new();
    let mut store = Store::new();
    let app = TestApp::new(&world.server, 8);
    let mut node = world.node(1, &store, &app);
    let built = runner::new::<_, _, _, _, _, _, 4, FRAME, 5, 16, BATCH, 2, 8, 16>(
        &res,
        &mut node,
        Membership::new(&[NodeId(1), NodeId(2), NodeId(3)]).unwrap(),
        NoLink,
        &mut store,
        world.clock.clone(),
        app,
        Codec::new(7, FRAME),
        TICK_US,
    );
    assert_eq!(
        built.err(),
        Some(BuildError::NoSnapshotTransfer {
            mode: SnapshotMode::Stream
        })
    );
}
