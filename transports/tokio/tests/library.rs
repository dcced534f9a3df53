//! `raftlet-tokio` used as a library: a state machine of the test's own, the in-memory log,
//! and a transport of the test's own (channels between runners in one process). And the
//! durable pipeline on a slow disk: proposals keep being accepted and batched while a sync is
//! in flight, and nothing is acknowledged before the syncs that make it durable complete. And
//! the snapshot policy: a state larger than what was written since is not serialized again.

use raftlet::{Index, NodeId, Role, Storage};
use raftlet_tokio::memlog::MemLog;
use raftlet_tokio::net::{Msg, Transport};
use raftlet_tokio::runner::{self, Handle, RunnerConfig, StateMachine};
use raftlet_tokio::storage::{LogEntry, LogStore, Payload, RunnerPersist, SyncJob};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

// ----- a state machine of our own -----------------------------------------------------------

/// Adds the command's number to a total; answers with the entry's index and the new total.
#[derive(Default)]
struct Counter {
    total: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        let n = u64::from_le_bytes(command.try_into().unwrap_or([0; 8]));
        self.total += n;
        [index.0.to_le_bytes(), self.total.to_le_bytes()].concat()
    }
    fn query(&self, _: &[u8]) -> Vec<u8> {
        self.total.to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.total.to_le_bytes().to_vec()
    }
    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.total = u64::from_le_bytes(data.try_into().map_err(|_| "not 8 bytes")?);
        Ok(())
    }
}

fn answer(bytes: &[u8]) -> (u64, u64) {
    let word = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().unwrap());
    (word(0), word(8))
}

// ----- a transport of our own ------------------------------------------------------------------

/// Runners in one process, connected by channels.
#[derive(Default, Clone)]
struct Hub {
    inboxes: Arc<Mutex<HashMap<NodeId, mpsc::Sender<Msg>>>>,
}

struct ChannelNet {
    id: NodeId,
    hub: Hub,
    stopped: Arc<AtomicBool>,
    sent: AtomicU64,
}

impl Transport for ChannelNet {
    fn send(&self, msg: Msg) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let inboxes = self.hub.inboxes.lock().unwrap();
        if let Some(tx) = inboxes.get(&msg.to) {
            let _ = tx.try_send(msg);
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn start(&self, inbound: mpsc::Sender<Msg>) {
        self.hub.inboxes.lock().unwrap().insert(self.id, inbound);
    }
    fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.hub.inboxes.lock().unwrap().remove(&self.id);
    }
}

// ----- a slow disk ---------------------------------------------------------------------------

/// What one node's log saw.
#[derive(Default)]
struct Probe {
    /// The highest index written.
    written: AtomicU64,
    /// The highest index a completed sync covers.
    durable: AtomicU64,
    /// A sync job is running.
    in_flight: AtomicBool,
    /// Writes of entries made while a sync job was running.
    writes_while_syncing: AtomicU64,
    /// Sync jobs completed.
    syncs: AtomicU64,
    /// Persists with entries written.
    writes: AtomicU64,
    /// Extra time every sync takes from now on, in milliseconds (on top of the log's delay).
    extra_ms: AtomicU64,
    /// Sync jobs that ran on the runner's durability thread (the others ran inline).
    on_durability_thread: AtomicU64,
}

/// The in-memory log behind a disk whose every sync takes `delay`.
struct SlowLog {
    inner: MemLog,
    probe: Arc<Probe>,
    delay: Duration,
    dirty: bool,
}

impl raftlet::Storage<Payload> for SlowLog {
    fn hard_state(&self) -> raftlet::HardState {
        self.inner.hard_state()
    }
    fn last_index(&self) -> Index {
        self.inner.last_index()
    }
    fn term(&self, index: Index) -> Option<raftlet::Term> {
        self.inner.term(index)
    }
    fn entry(&self, index: Index) -> Option<LogEntry> {
        self.inner.entry(index)
    }
    fn snapshot(&self) -> raftlet::SnapshotId {
        self.inner.snapshot()
    }
    fn membership_changes(&self, after: Index, f: &mut dyn FnMut(Index, &raftlet::ConfChange)) {
        self.inner.membership_changes(after, f);
    }
}

impl LogStore for SlowLog {
    fn write(&mut self, p: &RunnerPersist) -> std::io::Result<()> {
        self.inner.write(p)?;
        if let Some(last) = p.entries.last() {
            self.probe.written.store(last.index.0, Ordering::SeqCst);
            self.probe.writes.fetch_add(1, Ordering::SeqCst);
            if self.probe.in_flight.load(Ordering::SeqCst) {
                self.probe
                    .writes_while_syncing
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.dirty = true;
        Ok(())
    }
    fn start_sync(&mut self) -> std::io::Result<Option<SyncJob>> {
        if !std::mem::take(&mut self.dirty) {
            return Ok(None);
        }
        let probe = self.probe.clone();
        let covers = self.inner.last_index().0;
        let delay = self.delay + Duration::from_millis(probe.extra_ms.load(Ordering::SeqCst));
        probe.in_flight.store(true, Ordering::SeqCst);
        Ok(Some(Box::new(move || {
            std::thread::sleep(delay);
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("raftlet-sync-"))
            {
                probe.on_durability_thread.fetch_add(1, Ordering::SeqCst);
            }
            probe.durable.fetch_max(covers, Ordering::SeqCst);
            probe.syncs.fetch_add(1, Ordering::SeqCst);
            probe.in_flight.store(false, Ordering::SeqCst);
            Ok(())
        })))
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.dirty = false;
        self.probe
            .durable
            .fetch_max(self.inner.last_index().0, Ordering::SeqCst);
        Ok(())
    }
    fn compact(&mut self, through: raftlet::SnapshotId) -> std::io::Result<()> {
        self.inner.compact(through)
    }
    fn get(&self, index: Index) -> Option<&LogEntry> {
        self.inner.get(index)
    }
}

// ----- the cluster ---------------------------------------------------------------------------

struct Node {
    handle: Handle,
    probe: Arc<Probe>,
    stopped: Arc<AtomicBool>,
}

fn start(n: u64, dir: &std::path::Path, sync_delay: Option<Duration>) -> (Hub, Vec<Node>) {
    start_tweaked(n, dir, sync_delay, |_| {})
}

/// [`start`], with each runner's configuration adjusted by `tweak`.
fn start_tweaked(
    n: u64,
    dir: &std::path::Path,
    sync_delay: Option<Duration>,
    tweak: impl Fn(&mut RunnerConfig),
) -> (Hub, Vec<Node>) {
    let hub = Hub::default();
    let voters: Vec<NodeId> = (1..=n).map(NodeId).collect();
    let mut nodes = Vec::new();
    for &id in &voters {
        let mut cfg = RunnerConfig::new(id, dir.join(id.to_string()), voters.clone());
        cfg.tick = Duration::from_millis(10);
        tweak(&mut cfg);
        let probe = Arc::new(Probe::default());
        let stopped = Arc::new(AtomicBool::new(false));
        let net = ChannelNet {
            id,
            hub: hub.clone(),
            stopped: stopped.clone(),
            sent: AtomicU64::new(0),
        };
        let handle = match sync_delay {
            None => runner::start_with(cfg, Counter::default(), MemLog::new(), net),
            Some(delay) => runner::start_with(
                cfg,
                Counter::default(),
                SlowLog {
                    inner: MemLog::new(),
                    probe: probe.clone(),
                    delay,
                    dirty: false,
                },
                net,
            ),
        }
        .unwrap();
        nodes.push(Node {
            handle,
            probe,
            stopped,
        });
    }
    (hub, nodes)
}

async fn leader(nodes: &[Node]) -> usize {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        for (k, n) in nodes.iter().enumerate() {
            if n.handle
                .status()
                .await
                .is_some_and(|s| s.role == Role::Leader)
            {
                return k;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_state_machine_memory_log_and_transport_replicate_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, nodes) = start(3, dir.path(), None);
    let l = leader(&nodes).await;
    let mut expected = 0;
    for k in 1..=100u64 {
        let a = nodes[l].handle.propose(k.to_le_bytes().to_vec()).await;
        expected += k;
        assert_eq!(answer(&a.unwrap()).1, expected);
    }
    // A follower refuses a proposal and names the leader.
    let f = (l + 1) % 3;
    match nodes[f].handle.propose(1u64.to_le_bytes().to_vec()).await {
        Err(runner::ClientError::NotLeader { leader }) => {
            assert_eq!(leader, Some(nodes[l].handle.id()));
        }
        other => panic!("a follower answered {other:?}"),
    }
    // Every node applies the same total; a linearizable read on a follower sees it.
    let read = nodes[f].handle.read(Vec::new()).await.unwrap();
    assert_eq!(u64::from_le_bytes(read.try_into().unwrap()), expected);
    // Killing a runner stops its transport (no task or registration is left behind).
    nodes[f].handle.kill();
    let t0 = Instant::now();
    while !nodes[f].stopped.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        nodes[f].stopped.load(Ordering::SeqCst),
        "transport still running"
    );
    assert!(
        !hub.inboxes
            .lock()
            .unwrap()
            .contains_key(&nodes[f].handle.id())
    );
    // The other two go on committing.
    let a = nodes[l].handle.propose(5u64.to_le_bytes().to_vec()).await;
    assert_eq!(answer(&a.unwrap()).1, expected + 5);
    for n in &nodes {
        n.handle.shutdown().await;
        assert!(n.stopped.load(Ordering::SeqCst));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_slow_disk_proposals_batch_behind_a_sync_and_no_ack_precedes_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(30);
    let (_hub, nodes) = start(3, dir.path(), Some(delay));
    let l = leader(&nodes).await;
    let nodes = Arc::new(nodes);
    let syncs_before = nodes[l].probe.syncs.load(Ordering::SeqCst);
    let proposals = 200;
    let mut tasks = Vec::new();
    for k in 0..proposals {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let a = nodes[l].handle.propose(1u64.to_le_bytes().to_vec()).await;
            let (index, _) = answer(&a.unwrap_or_else(|e| panic!("proposal {k}: {e}")));
            // At the moment of the acknowledgement, the syncs of a majority covering the entry
            // have completed (the leader's own need not be among them: it syncs lazily while
            // its followers form a quorum; see the next test).
            let quorum = nodes
                .iter()
                .filter(|n| n.probe.durable.load(Ordering::SeqCst) >= index)
                .count();
            assert!(quorum >= 2, "entry {index} acknowledged on {quorum} disks");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = &nodes[l].probe;
    let syncs = p.syncs.load(Ordering::SeqCst) - syncs_before;
    let during = p.writes_while_syncing.load(Ordering::SeqCst);
    assert!(
        during > 0,
        "no proposal was written while a sync was in flight"
    );
    assert!(
        syncs * 5 <= proposals,
        "{syncs} syncs for {proposals} proposals: not batched"
    );
    assert!(p.written.load(Ordering::SeqCst) >= proposals);
    for n in nodes.iter() {
        n.handle.shutdown().await;
    }
}

/// `proposals` concurrent proposals on a cluster whose followers sync inline
/// ([`RunnerConfig::inline_follower_sync`]) on disks whose syncs take `delay`: none is
/// acknowledged before a majority of disks hold it, the followers' syncs ran on their runners'
/// tasks (the leader's on its durability thread), and they still cover several writes each.
async fn followers_sync_inline(delay: Duration, proposals: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, nodes) = start_tweaked(3, dir.path(), Some(delay), |c| {
        c.inline_follower_sync = true;
        // One election only: a follower that led once would have synced on its thread.
        c.election_ticks = 100;
    });
    let l = leader(&nodes).await;
    let nodes = Arc::new(nodes);
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| n.probe.syncs.load(Ordering::SeqCst))
        .collect();
    let tasks: Vec<_> = (0..proposals)
        .map(|k| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let a = nodes[l].handle.propose(1u64.to_le_bytes().to_vec()).await;
                let (index, _) = answer(&a.unwrap_or_else(|e| panic!("proposal {k}: {e}")));
                let quorum = durable_on(&nodes, index);
                assert!(quorum >= 2, "entry {index} acknowledged on {quorum} disks");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for (k, n) in nodes.iter().enumerate() {
        let syncs = n.probe.syncs.load(Ordering::SeqCst) - before[k];
        let threaded = n.probe.on_durability_thread.load(Ordering::SeqCst);
        if k == l {
            assert!(
                threaded > 0,
                "the leader never synced on its durability thread"
            );
        } else {
            assert_eq!(threaded, 0, "follower {k} synced on its durability thread");
            // The runner counts its inline syncs as it counts the others (Status.syncs).
            let counted = n.handle.status().await.unwrap().syncs;
            assert_eq!(
                counted,
                n.probe.syncs.load(Ordering::SeqCst),
                "follower {k}: Status.syncs against the syncs its disk ran"
            );
            assert!(
                syncs > 0 && syncs * 3 <= proposals,
                "follower {k}: {syncs} syncs for {proposals} proposals"
            );
        }
    }
    let read = nodes[l].handle.read(Vec::new()).await.unwrap();
    assert_eq!(u64::from_le_bytes(read.try_into().unwrap()), proposals);
    for n in nodes.iter() {
        n.handle.shutdown().await;
    }
}

/// Inline follower syncs on a multi-thread runtime (`block_in_place`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_syncing_inline_ack_only_after_their_sync_on_a_multi_thread_runtime() {
    followers_sync_inline(Duration::from_millis(20), 200).await;
}

/// Inline follower syncs on a current-thread runtime, which they block (here all three nodes
/// share it).
#[tokio::test]
async fn followers_syncing_inline_ack_only_after_their_sync_on_a_current_thread_runtime() {
    followers_sync_inline(Duration::from_millis(5), 100).await;
}

/// 400 proposals at once on a leader whose log holds 256 unsynced entries: each waits for a
/// sync to make room (in the runner's queue, then in `propose`) rather than being refused, and
/// all are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_log_waits_for_room_instead_of_being_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, nodes) = start(3, dir.path(), Some(Duration::from_millis(5)));
    let l = leader(&nodes).await;
    let nodes = Arc::new(nodes);
    let proposals = 400u64;
    let tasks: Vec<_> = (0..proposals)
        .map(|k| {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let a = nodes[l].handle.propose(1u64.to_le_bytes().to_vec()).await;
                a.unwrap_or_else(|e| panic!("proposal {k}: {e}"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let read = nodes[l].handle.read(Vec::new()).await.unwrap();
    assert_eq!(u64::from_le_bytes(read.try_into().unwrap()), proposals);
    for n in nodes.iter() {
        n.handle.shutdown().await;
    }
}

/// How many disks hold `index` durably.
fn durable_on(nodes: &[Node], index: u64) -> usize {
    nodes
        .iter()
        .filter(|n| n.probe.durable.load(Ordering::SeqCst) >= index)
        .count()
}

/// Proposes `n` writes one after another on node `l`; each, once acknowledged, must be durable
/// on a majority of disks. Returns how many were acknowledged before the leader's own disk
/// held them, and how many syncs the leader ran meanwhile.
async fn one_by_one(nodes: &[Node], l: usize, n: u64) -> (u64, u64) {
    let syncs_before = nodes[l].probe.syncs.load(Ordering::SeqCst);
    let mut ahead_of_leader = 0;
    for k in 1..=n {
        let a = nodes[l].handle.propose(k.to_le_bytes().to_vec()).await;
        let (index, _) = answer(&a.unwrap());
        assert!(
            durable_on(nodes, index) >= 2,
            "entry {index} acknowledged on fewer than 2 disks"
        );
        if nodes[l].probe.durable.load(Ordering::SeqCst) < index {
            ahead_of_leader += 1;
        }
    }
    let syncs = nodes[l].probe.syncs.load(Ordering::SeqCst) - syncs_before;
    (ahead_of_leader, syncs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_applies_what_its_followers_commit_before_its_own_disk_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, nodes) = start(3, dir.path(), Some(Duration::ZERO));
    let l = leader(&nodes).await;
    // The leader's disk alone is slow: each of its syncs takes 100 ms, and it syncs at once.
    nodes[l].probe.extra_ms.store(100, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let (ahead, syncs) = one_by_one(&nodes, l, 40).await;
    // The followers commit each write; the leader applies and answers it without waiting for
    // its own disk (a sync for each write would take 4 s). It hands out at most
    // PERSIST_WINDOW (8) persists before one is acknowledged and applies only what it handed
    // out, so with one write per persist a write in eight waits for the leader's disk.
    assert!(
        ahead >= 30,
        "only {ahead} of 40 writes were acknowledged before the leader's disk held them ({syncs} syncs, {:?})",
        t0.elapsed()
    );
    for n in &nodes {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_syncs_lazily_while_its_followers_commit_and_at_once_when_they_cannot() {
    let dir = tempfile::tempdir().unwrap();
    // Disks that sync at once; a leader may hold its writes unsynced for 5 s (or until
    // LAZY_SYNC_PERSISTS of them wait). Check-quorum rounds of 1 s (100 ticks): the leader
    // counts its followers as heard from for a whole second.
    let (_hub, nodes) = start_tweaked(3, dir.path(), Some(Duration::ZERO), |c| {
        c.leader_sync_delay = Duration::from_secs(5);
        c.election_ticks = 100;
    });
    let l = leader(&nodes).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let (ahead, syncs) = one_by_one(&nodes, l, 36).await;
    // Well within the bound, and within a check-quorum round: the leader syncs once
    // LAZY_SYNC_PERSISTS writes wait, and does not hold them until the bound (its persist
    // window, 8, would stall every eighth write until then).
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "36 writes took {:?}",
        t0.elapsed()
    );
    // A leader that synced at once would sync 36 times, each before its followers answered.
    // This one syncs once every LAZY_SYNC_PERSISTS (6) writes.
    assert!(
        syncs <= 8,
        "{syncs} leader syncs for 36 writes one after another"
    );
    assert!(
        ahead >= 24,
        "only {ahead} of 36 writes acknowledged before the leader's sync"
    );
    // With one follower gone, the other and the leader are the only quorum: the leader's sync
    // is needed for every commit, and it comes at once once the leader has not heard from the
    // follower for a check-quorum round (1 s here), or at the latest when the lazy bound runs
    // out.
    let f = (l + 1) % 3;
    nodes[f].handle.kill();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let t0 = Instant::now();
    for k in 0..5u64 {
        let a = tokio::time::timeout(
            Duration::from_secs(4),
            nodes[l].handle.propose(k.to_le_bytes().to_vec()),
        )
        .await
        .expect("a write waited for the lazy bound with a follower down");
        let (index, _) = answer(&a.unwrap());
        let leader_durable = nodes[l].probe.durable.load(Ordering::SeqCst);
        assert!(
            leader_durable >= index,
            "entry {index} acknowledged with one follower down, the leader's disk holds {leader_durable}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "five writes took {:?} with a follower down",
        t0.elapsed()
    );
    for (k, n) in nodes.iter().enumerate() {
        if k != f {
            n.handle.shutdown().await;
        }
    }
}

/// A lazy leader's bound has a timer of its own: with nothing else going on (ticks of 1 s, so
/// no heartbeat answer either), a write it holds unsynced is synced about
/// `leader_sync_delay` (20 ms) after it was written, not at the leader's next input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_leader_syncs_when_its_bound_runs_out_with_nothing_else_going_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, nodes) = start_tweaked(3, dir.path(), Some(Duration::ZERO), |c| {
        c.leader_sync_delay = Duration::from_millis(20);
        c.tick = Duration::from_secs(1);
        c.election_ticks = 2;
        c.heartbeat_ticks = 1;
    });
    let l = leader(&nodes).await;
    let mut held = 0;
    for k in 0..5u64 {
        let a = nodes[l].handle.propose(k.to_le_bytes().to_vec()).await;
        let (index, _) = answer(&a.unwrap());
        let t0 = Instant::now();
        if nodes[l].probe.durable.load(Ordering::SeqCst) < index {
            held += 1;
        }
        // Without the timer the sync waits for the next tick: up to 1 s.
        while nodes[l].probe.durable.load(Ordering::SeqCst) < index {
            assert!(
                t0.elapsed() < Duration::from_millis(250),
                "write {k}: the leader's disk did not hold entry {index} 250 ms after its ack"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert!(
        held >= 3,
        "only {held} of 5 writes were held unsynced at their ack"
    );
    for n in &nodes {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_wait_for_a_leader_and_for_the_next_one_after_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (_hub, nodes) = start(3, dir.path(), None);
    let mut seen = Vec::new();
    for n in &nodes {
        seen.push(
            n.handle
                .wait_for_leader(Duration::from_secs(10))
                .await
                .unwrap(),
        );
    }
    // The leader each node first saw is a node of the cluster; the current one is among them
    // (an election that split votes may have put another first).
    let l = leader(&nodes).await;
    let lid = nodes[l].handle.id();
    assert!(seen.iter().all(|s| (1..=3).contains(&s.0)));
    assert!(seen.contains(&lid), "{seen:?} does not name {lid}");
    let (term, known) = nodes[l].handle.leader();
    assert_eq!(known, Some(lid));
    // Status serializes (serde), for printing or serving it.
    let status = nodes[l].handle.status().await.unwrap();
    let bytes = postcard::to_allocvec(&status).unwrap();
    let back: runner::Status = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(
        (back.id, back.role, back.term),
        (status.id, Role::Leader, term)
    );
    // The leader dies: the survivors report the next leader, at a later term.
    nodes[l].handle.kill();
    for (k, n) in nodes.iter().enumerate() {
        if k == l {
            continue;
        }
        let (t, next) = n
            .handle
            .wait_for_leader_after(term, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(t > term);
        assert_ne!(next, lid);
    }
    // A node that cannot see a quorum reports no leader in time.
    let dir2 = tempfile::tempdir().unwrap();
    let (_hub2, lonely) = start(3, dir2.path(), None);
    lonely[1].handle.kill();
    lonely[2].handle.kill();
    let (t0, _) = lonely[0].handle.leader();
    assert_eq!(
        lonely[0]
            .handle
            .wait_for_leader_after(t0, Duration::from_millis(300))
            .await,
        Err(runner::ClientError::NoLeader)
    );
}

/// A counter whose snapshot is `.1` bytes (its total, padded).
#[derive(Default)]
struct Padded(Counter, usize);

impl StateMachine for Padded {
    fn apply(&mut self, index: Index, command: &[u8]) -> Vec<u8> {
        self.0.apply(index, command)
    }
    fn query(&self, query: &[u8]) -> Vec<u8> {
        self.0.query(query)
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut data = self.0.snapshot();
        data.resize(self.1, 0);
        data
    }
    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.0.restore(data.get(..8).ok_or("short")?)
    }
}

/// A single-node runner over `Padded` snapshots of `size` bytes, a snapshot due every `every`
/// entries, led by its node; with its events (subscribed before anything was applied).
async fn padded_runner(
    dir: &std::path::Path,
    every: u64,
    size: usize,
) -> (Handle, tokio::sync::broadcast::Receiver<runner::Event>) {
    let id = NodeId(1);
    let mut cfg = RunnerConfig::new(id, dir.join("1"), vec![id]);
    cfg.tick = Duration::from_millis(10);
    cfg.snapshot_every = every;
    let net = ChannelNet {
        id,
        hub: Hub::default(),
        stopped: Arc::new(AtomicBool::new(false)),
        sent: AtomicU64::new(0),
    };
    let sm = Padded(Counter::default(), size);
    let handle = runner::start_with(cfg, sm, MemLog::new(), net).unwrap();
    let events = handle.subscribe();
    handle
        .wait_for_leader(Duration::from_secs(5))
        .await
        .unwrap();
    (handle, events)
}

/// The index of the next snapshot saved (each is saved off the runner's task: waited for by
/// its event), if one comes within 50 ms.
async fn next_snapshot(
    events: &mut tokio::sync::broadcast::Receiver<runner::Event>,
) -> Option<u64> {
    match tokio::time::timeout(Duration::from_millis(50), events.recv()).await {
        Ok(Ok(runner::Event::Snapshot { id })) => Some(id.index.0),
        _ => None,
    }
}

/// `padded_runner(every, size)` proposes `n` commands of 8 bytes (pausing 20 ms after every
/// 10, so that a snapshot being saved is usually done before the next one could be due), then
/// returns the indices of the snapshots taken: at least `min` of them are waited for, then
/// more until none has come for half a second.
async fn snapshots_of(every: u64, size: usize, n: u64, min: usize) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let (handle, mut events) = padded_runner(dir.path(), every, size).await;
    for k in 1..=n {
        handle.propose(k.to_le_bytes().to_vec()).await.unwrap();
        if k % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut taken = Vec::new();
    let t0 = Instant::now();
    let mut last = Instant::now();
    while (taken.len() < min && t0.elapsed() < Duration::from_secs(10))
        || last.elapsed() < Duration::from_millis(500)
    {
        if let Some(index) = next_snapshot(&mut events).await {
            taken.push(index);
            last = Instant::now();
        }
    }
    handle.shutdown().await;
    taken
}

/// Snapshots come every `snapshot_every` entries only while the commands since the last one add
/// up to its size: a state larger than what is written is not serialized again and again. They
/// are never more than `SNAPSHOT_SPACING_CAP` times `snapshot_every` entries apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_waits_for_as_many_bytes_of_commands_as_the_last_one_held() {
    assert_eq!(runner::SNAPSHOT_SPACING_CAP, 10);
    // 600-byte snapshots: the first after 10 entries, each next one at least 75 commands
    // (600 bytes) later.
    let taken = snapshots_of(10, 600, 200, 3).await;
    assert!(taken.len() >= 3, "snapshots at {taken:?}");
    assert!((10..=12).contains(&taken[0]), "snapshots at {taken:?}");
    for w in taken.windows(2) {
        assert!(
            w[1] - w[0] >= 75,
            "snapshots at {taken:?}: closer than 600 bytes"
        );
    }
    // Snapshots of 8 bytes: every 10 entries, as before.
    let taken = snapshots_of(10, 8, 60, 3).await;
    assert!(taken.len() >= 3, "snapshots at {taken:?}");
    // 1 MB snapshots: the cap, at least 100 entries apart, and due by the end.
    let taken = snapshots_of(10, 1 << 20, 250, 3).await;
    assert!(taken.len() >= 3, "snapshots at {taken:?}");
    for w in taken.windows(2) {
        assert!(
            w[1] - w[0] >= 100,
            "snapshots at {taken:?}: closer than the cap"
        );
    }
    // `snapshot_every` 0: none unless asked, however small the state.
    let taken = snapshots_of(0, 8, 30, 0).await;
    assert!(taken.is_empty(), "snapshots at {taken:?}");
}

/// A snapshot that came due while another was being saved is taken once that one is saved,
/// even if nothing is applied after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_due_during_a_save_is_taken_after_it() {
    // 8-byte snapshots, 30 commands proposed without a pause: the first snapshot (at 10) is
    // usually still being saved when the last command is applied; the one due then follows it.
    let dir = tempfile::tempdir().unwrap();
    let (handle, mut events) = padded_runner(dir.path(), 10, 8).await;
    for k in 1..=30u64 {
        handle.propose(k.to_le_bytes().to_vec()).await.unwrap();
    }
    // However the saves fell, no snapshot is due once the last one is saved: one comes at an
    // index above 31 - 10 (31: the no-op, then 30 commands). It need not be 31 itself: when
    // the first save ends at, say, 25 applied, the next comes at 25 and none is due at 31.
    // Without the check after a save, a first save still running at 31 leaves the last
    // snapshot at 10 or 11.
    let t0 = Instant::now();
    let mut taken = Vec::new();
    while !taken.iter().any(|&i| i > 21) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "snapshots at {taken:?}"
        );
        taken.extend(next_snapshot(&mut events).await);
    }
    handle.shutdown().await;
}
