//! Multi-Raft on tokio: three hosts on loopback, each with 1,000 group replicas over one
//! connection per peer and one shared log. Idle groups quiesce and the hosts then exchange
//! only pings; a killed host's groups elect new leaders; the host restarts, recovers every
//! group from its shared log, and catches up. Plus the shared log's own recovery, compaction
//! and segment deletion.

use raftlet::{Change, ConfChange, Index, NodeId, SnapshotId, Storage, Term};
use raftlet_tokio::multi::{
    GroupId, GroupLog, GroupMachine, HostConfig, HostError, HostHandle, SharedWal, WalOptions,
    start_host,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Per group: the commands applied, in order.
#[derive(Clone, Default)]
struct Applied(Arc<Mutex<HashMap<GroupId, Commands>>>);

/// A group's applied commands and their indices.
type Commands = Vec<(Index, Vec<u8>)>;

impl GroupMachine for Applied {
    fn apply(&mut self, group: GroupId, index: Index, command: &[u8]) -> Vec<u8> {
        let mut m = self.0.lock().unwrap();
        let log = m.entry(group).or_default();
        log.push((index, command.to_vec()));
        (log.len() as u64).to_le_bytes().to_vec()
    }
    fn snapshot(&self, group: GroupId) -> Vec<u8> {
        let m = self.0.lock().unwrap();
        let cmds: Vec<(u64, Vec<u8>)> = m
            .get(&group)
            .map(|c| c.iter().map(|(i, c)| (i.0, c.clone())).collect())
            .unwrap_or_default();
        postcard::to_allocvec(&cmds).unwrap()
    }
    fn restore(&mut self, group: GroupId, data: &[u8]) -> Result<(), String> {
        let cmds: Vec<(u64, Vec<u8>)> = postcard::from_bytes(data).map_err(|e| e.to_string())?;
        let cmds = cmds.into_iter().map(|(i, c)| (Index(i), c)).collect();
        self.0.lock().unwrap().insert(group, cmds);
        Ok(())
    }
}

const VOTERS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

/// Host `id` of the processes at `addrs` (process `i + 1` at `addrs[i]`).
fn config(id: u64, dir: &Path, addrs: &[SocketAddr]) -> HostConfig {
    let members: Vec<(NodeId, SocketAddr)> = (1..).map(NodeId).zip(addrs.iter().copied()).collect();
    let mut c =
        HostConfig::of_members(NodeId(id), dir.join(format!("host-{id}")), &members).unwrap();
    c.tick = Duration::from_millis(50);
    c.liveness_timeout = Duration::from_millis(300);
    c
}

/// Every group's leader, when all live hosts agree on one (and it is live).
async fn agreed_leaders(hosts: &[&HostHandle], groups: u64) -> Option<Vec<NodeId>> {
    let mut seen: HashMap<GroupId, (Option<NodeId>, Term)> = HashMap::new();
    let live: Vec<NodeId> = hosts.iter().map(|h| h.id()).collect();
    for h in hosts {
        for (g, l, t) in h.leaders().await.ok()? {
            let e = seen.entry(g).or_insert((l, t));
            if (e.1 < t) || (e.1 == t && e.0.is_none()) {
                *e = (l, t);
            }
        }
    }
    (0..groups)
        .map(|g| {
            seen.get(&g)
                .and_then(|(l, _)| *l)
                .filter(|l| live.contains(l))
        })
        .collect()
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Snapshot files in a host's directory.
fn snap_files(host_dir: &Path) -> usize {
    std::fs::read_dir(host_dir.join("snap")).unwrap().count()
}

/// Waits until no host has an awake group.
async fn all_quiescent(hosts: &[&HostHandle], what: &str) {
    wait_for(what, Duration::from_secs(60), || async {
        for h in hosts {
            if h.status().await.ok()?.awake > 0 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Starts hosts 1 to 3 with `cfg(id)` and `apps`, and creates groups `0..groups` on each.
async fn start_three(
    cfg: impl Fn(u64) -> HostConfig,
    apps: &[Applied],
    groups: u64,
) -> Vec<HostHandle> {
    let mut hosts = Vec::new();
    for id in 1..=3u64 {
        let h = start_host(cfg(id), apps[id as usize - 1].clone())
            .await
            .unwrap();
        for g in 0..groups {
            h.create_group(g, &VOTERS).await.unwrap();
        }
        hosts.push(h);
    }
    hosts
}

/// Writes one command to every group through its leader, all at once; each must be applied.
async fn write_each(hosts: &[&HostHandle], leaders: &[NodeId], cmd: impl Fn(u64) -> Vec<u8>) {
    let mut joins = Vec::new();
    for (g, l) in leaders.iter().enumerate() {
        let h = (*hosts.iter().find(|h| h.id() == *l).unwrap()).clone();
        let cmd = cmd(g as u64);
        joins.push(tokio::spawn(
            async move { h.propose(g as GroupId, cmd).await },
        ));
    }
    for j in joins {
        j.await.unwrap().expect("write applied");
    }
}

async fn write_everywhere(hosts: &[&HostHandle], leaders: &[NodeId], tag: u8) {
    write_each(hosts, leaders, |g| vec![tag, g as u8]).await;
}

/// The command of round `r` to group `g`, padded to 128 bytes (so that a snapshot of 400 of
/// them takes two chunks).
fn round_cmd(r: u32, g: u64) -> Vec<u8> {
    let mut c = r.to_le_bytes().to_vec();
    c.push(g as u8);
    c.resize(128, 0xAB);
    c
}

/// Writes rounds `from..to` to every group, one round at a time.
async fn write_rounds(hosts: &[&HostHandle], leaders: &[NodeId], rounds: std::ops::Range<u32>) {
    for r in rounds {
        write_each(hosts, leaders, |g| round_cmd(r, g)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_groups_quiesce_fail_over_and_recover() {
    const GROUPS: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let apps: Vec<Applied> = (0..3).map(|_| Applied::default()).collect();
    let mut hosts = start_three(|id| config(id, dir.path(), &addrs), &apps, GROUPS).await;
    let all: Vec<&HostHandle> = hosts.iter().collect();
    let t0 = Instant::now();
    let leaders = wait_for("a leader in every group", Duration::from_secs(60), || {
        agreed_leaders(&all, GROUPS)
    })
    .await;
    println!("1,000 groups elected leaders in {:?}", t0.elapsed());
    write_everywhere(&all, &leaders, 1).await;

    // Idle: every replica quiesces, then only pings go between the hosts.
    all_quiescent(&all, "every group to quiesce").await;
    let before: Vec<_> = futures_status(&all).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<_> = futures_status(&all).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            a.messages_sent, b.messages_sent,
            "an idle host sent Raft messages"
        );
        assert_eq!(a.awake, 0);
        // Pings only: 2 peers, one per 50 ms tick, for about a second.
        assert!(
            a.frames_sent - b.frames_sent <= 2 * 24,
            "{} frames",
            a.frames_sent - b.frames_sent
        );
    }

    // The host leading the most groups is killed.
    let victim = (1..=3u64)
        .max_by_key(|&p| leaders.iter().filter(|l| l.0 == p).count())
        .unwrap();
    let moved = leaders.iter().filter(|l| l.0 == victim).count();
    hosts[victim as usize - 1].kill();
    let t_kill = Instant::now();
    let live: Vec<&HostHandle> = hosts.iter().filter(|h| h.id().0 != victim).collect();
    let new_leaders = wait_for("new leaders", Duration::from_secs(30), || {
        agreed_leaders(&live, GROUPS)
    })
    .await;
    println!(
        "{moved} groups led by the killed host had new leaders {:?} after the kill",
        t_kill.elapsed()
    );
    for (g, (old, new)) in leaders.iter().zip(&new_leaders).enumerate() {
        if old.0 != victim {
            assert_eq!(old, new, "group {g}, led by a live host, changed leader");
        }
    }
    write_everywhere(&live, &new_leaders, 2).await;

    // The killed host restarts from its shared log and catches up every group.
    let h = start_host(config(victim, dir.path(), &addrs), Applied::default())
        .await
        .unwrap();
    let status = h.status().await.unwrap();
    assert_eq!(status.groups, GROUPS as usize, "groups recovered");
    hosts[victim as usize - 1] = h;
    let all: Vec<&HostHandle> = hosts.iter().collect();
    all_quiescent(&all, "every group to quiesce again").await;
    let final_leaders = agreed_leaders(&all, GROUPS).await.expect("leaders");
    write_everywhere(&all, &final_leaders, 3).await;
    // Every replica applied the same commands in the same order (the restarted host's state
    // machine started empty and replayed its log).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for h in &hosts {
        h.shutdown().await;
    }
    let a = apps[(victim % 3) as usize].0.lock().unwrap();
    for g in 0..GROUPS {
        let cmds: Vec<&Vec<u8>> = a[&g].iter().map(|(_, c)| c).collect();
        assert_eq!(
            cmds,
            [&vec![1, g as u8], &vec![2, g as u8], &vec![3, g as u8]],
            "group {g}"
        );
    }
}

/// Groups snapshot and compact as they apply, the shared log deletes old segments, and a host
/// that was down while its peers compacted past its log is brought back by snapshots sent in
/// chunks; it restarts from its own snapshots first. Every replica ends with the same
/// commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_logs_and_bring_a_lagging_host_back() {
    const GROUPS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let cfg = |id: u64| {
        let mut c = config(id, dir.path(), &addrs);
        c.snapshot_every = 50;
        c.log_retention = 10;
        c.wal.segment_bytes = 128 << 10;
        c
    };
    let mut apps: Vec<Applied> = (0..3).map(|_| Applied::default()).collect();
    let mut hosts = start_three(cfg, &apps, GROUPS).await;
    let all: Vec<&HostHandle> = hosts.iter().collect();
    let leaders = wait_for("a leader in every group", Duration::from_secs(60), || {
        agreed_leaders(&all, GROUPS)
    })
    .await;
    write_rounds(&all, &leaders, 0..200).await;
    all_quiescent(&all, "every group to quiesce").await;
    for s in futures_status(&all).await {
        println!(
            "after 200 writes per group: {} snapshots, {} entries held, {} segments",
            s.snapshots, s.log_entries, s.wal_segments
        );
        assert!(s.snapshots >= 3 * GROUPS, "{} snapshots", s.snapshots);
        // At most a snapshot interval, the retained entries and a no-op per group.
        assert!(
            s.log_entries <= GROUPS * 61,
            "{} entries held",
            s.log_entries
        );
        // 200 writes of 20 groups fill many 128 KiB segments; the compacted ones are gone.
        assert!(s.wal_segments <= 4, "{} segments kept", s.wal_segments);
    }

    // Host 3 is killed; the others write on, snapshot and compact past its log.
    let victim = 3u64;
    hosts[victim as usize - 1].kill();
    let live: Vec<&HostHandle> = hosts.iter().filter(|h| h.id().0 != victim).collect();
    let leaders = wait_for("new leaders", Duration::from_secs(30), || {
        agreed_leaders(&live, GROUPS)
    })
    .await;
    write_rounds(&live, &leaders, 200..400).await;

    // It restarts from its own snapshots and log, and is sent its leaders' snapshots.
    apps[victim as usize - 1] = Applied::default();
    let h = start_host(cfg(victim), apps[victim as usize - 1].clone())
        .await
        .unwrap();
    {
        let restored = apps[victim as usize - 1].0.lock().unwrap();
        assert_eq!(restored.len(), GROUPS as usize, "groups restored at start");
        assert!(
            restored.values().all(|c| c.len() >= 150),
            "restored from a snapshot"
        );
    }
    hosts[victim as usize - 1] = h;
    let all: Vec<&HostHandle> = hosts.iter().collect();
    wait_for(
        "every group to catch up",
        Duration::from_secs(60),
        || async {
            let m = apps[victim as usize - 1].0.lock().unwrap();
            (0..GROUPS)
                .all(|g| m.get(&g).is_some_and(|c| c.len() == 400))
                .then_some(())
        },
    )
    .await;
    let s = hosts[victim as usize - 1].status().await.unwrap();
    println!("the restarted host installed {} snapshots", s.installs);
    assert!(s.installs >= 1, "no snapshot was installed");
    let sent: u64 = futures_status(&all)
        .await
        .iter()
        .map(|s| s.chunks_sent)
        .sum();
    // A snapshot of 400 commands of 128 bytes is two chunks.
    assert!(
        sent >= 2 * s.installs,
        "{sent} chunks for {} installs",
        s.installs
    );
    all_quiescent(&all, "every group to quiesce again").await;
    for h in &hosts {
        h.shutdown().await;
    }
    // Each snapshot saved, taken or installed, replaced the group's previous one: one file
    // per group is left on every host.
    for id in 1..=3 {
        let n = snap_files(&dir.path().join(format!("host-{id}")));
        assert_eq!(n, GROUPS as usize, "snapshot files of host {id}");
    }
    let expect = |g: u64| -> Vec<Vec<u8>> { (0..400u32).map(|r| round_cmd(r, g)).collect() };
    for (i, a) in apps.iter().enumerate() {
        let a = a.0.lock().unwrap();
        for g in 0..GROUPS {
            let cmds: Vec<Vec<u8>> = a[&g].iter().map(|(_, c)| c.clone()).collect();
            assert_eq!(cmds, expect(g), "host {} group {g}", i + 1);
        }
    }
}

/// A group removed and created again under the same id is a new incarnation: after a
/// restart it comes back with its own state, never with a snapshot of the removed one (whose
/// files are deleted), and the shared log records a new epoch for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_group_never_restores_its_predecessors_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cfg = || {
        let mut c = HostConfig::new(NodeId(1), dir.path().join("solo"), addr, Vec::new());
        c.tick = Duration::from_millis(20);
        c.snapshot_every = 10;
        c.log_retention = 2;
        c
    };
    let solo = [NodeId(1)];
    let app = Applied::default();
    let h = start_host(cfg(), app.clone()).await.unwrap();
    h.create_group(5, &solo).await.unwrap();
    let propose = |h: HostHandle, cmd: Vec<u8>| async move {
        wait_for("the write", Duration::from_secs(10), || {
            let (h, cmd) = (h.clone(), cmd.clone());
            async move { h.propose(5, cmd).await.ok() }
        })
        .await
    };
    for i in 0..35u8 {
        propose(h.clone(), vec![b'a', i]).await;
    }
    wait_for("a snapshot", Duration::from_secs(10), || async {
        (h.status().await.ok()?.snapshots >= 3).then_some(())
    })
    .await;
    h.remove_group(5).await.unwrap();
    // The removed group's snapshot file goes once the removal is durable.
    wait_for(
        "the removed group's files",
        Duration::from_secs(10),
        || async { (snap_files(&dir.path().join("solo")) == 0).then_some(()) },
    )
    .await;
    h.create_group(5, &solo).await.unwrap();
    for i in 0..3u8 {
        propose(h.clone(), vec![b'b', i]).await;
    }
    h.shutdown().await;
    let app = Applied::default();
    let h = start_host(cfg(), app.clone()).await.unwrap();
    assert_eq!(
        snap_files(&dir.path().join("solo")),
        0,
        "the removed group's files"
    );
    wait_for("the log replayed", Duration::from_secs(10), || async {
        (app.0.lock().unwrap().get(&5).map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    let cmds: Vec<Vec<u8>> = app.0.lock().unwrap()[&5]
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert_eq!(cmds, [vec![b'b', 0], vec![b'b', 1], vec![b'b', 2]]);
    h.shutdown().await;
    let (_, rec) = SharedWal::open(dir.path().join("solo"), WalOptions::default()).unwrap();
    assert!(rec[&5].epoch >= 2, "epoch {}", rec[&5].epoch);
    // With `snapshot_every` 0 a group never snapshots.
    let mut c = cfg();
    c.snapshot_every = 0;
    let h = start_host(c, Applied::default()).await.unwrap();
    for i in 0..15u8 {
        propose(h.clone(), vec![b'c', i]).await;
    }
    assert_eq!(h.status().await.unwrap().snapshots, 0);
    h.shutdown().await;
}

/// Runs `change` on group `group` at whichever live host leads it, retrying while leadership
/// or a previous change settles.
async fn change(hosts: &[&HostHandle], group: GroupId, change: ConfChange) {
    wait_for("a membership change", Duration::from_secs(30), || async {
        for h in hosts {
            match h.change_membership(group, change).await {
                Ok(()) => return Some(()),
                Err(HostError::NotLeader(_) | HostError::Membership(_)) => {}
                Err(e) => panic!("group {group}: {e}"),
            }
        }
        None
    })
    .await;
}

/// Membership changes per group: a fourth host joins every group as a learner (by snapshot, as
/// its leaders compacted), then takes the place of one voter in each (a joint change), the
/// replaced hosts drop their replicas, and the new host keeps its membership across a restart
/// (from its snapshots' membership and its log). It then counts as a voter: with one of the
/// others killed, every group still elects and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_moves_to_a_new_host_and_keeps_its_membership() {
    const GROUPS: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<SocketAddr> = (0..4).map(|_| free_addr()).collect();
    let cfg = |id: u64| {
        let mut c = config(id, dir.path(), &addrs);
        c.snapshot_every = 20;
        c.log_retention = 5;
        c
    };
    let mut apps: Vec<Applied> = (0..4).map(|_| Applied::default()).collect();
    let mut hosts = start_three(cfg, &apps, GROUPS).await;
    let all: Vec<&HostHandle> = hosts.iter().collect();
    let leaders = wait_for("a leader in every group", Duration::from_secs(60), || {
        agreed_leaders(&all, GROUPS)
    })
    .await;
    write_rounds(&all, &leaders, 0..50).await;
    // A follower refuses writes and changes and names the leader.
    let follower = all.iter().find(|h| h.id() != leaders[0]).unwrap();
    assert_eq!(
        follower.propose(0, b"x".to_vec()).await,
        Err(HostError::NotLeader(Some(leaders[0])))
    );
    let learner = ConfChange::single(Change::AddLearner(NodeId(4)));
    assert_eq!(
        follower.change_membership(0, learner).await,
        Err(HostError::NotLeader(Some(leaders[0])))
    );
    assert_eq!(follower.members(99).await, Err(HostError::NoGroup));

    // Host 4 is added to every group as a learner before it runs; the groups write on and
    // compact, so the snapshot it will be sent holds the membership with it as a learner.
    for g in 0..GROUPS {
        change(&all, g, ConfChange::single(Change::AddLearner(NodeId(4)))).await;
    }
    write_rounds(&all, &leaders, 50..75).await;
    // It joins: each group created with the current voters (a set it is not in).
    let h4 = start_host(cfg(4), apps[3].clone()).await.unwrap();
    for g in 0..GROUPS {
        h4.create_group(g, &VOTERS).await.unwrap();
    }
    let applied = |n: usize| {
        let m = apps[3].0.lock().unwrap();
        (0..GROUPS)
            .all(|g| m.get(&g).is_some_and(|c| c.len() == n))
            .then_some(())
    };
    wait_for("host 4 to catch up", Duration::from_secs(30), || async {
        applied(75)
    })
    .await;
    let s4 = h4.status().await.unwrap();
    assert_eq!(s4.installs, GROUPS, "host 4 caught up without snapshots");
    // More writes, so that host 4 takes snapshots of its own as a learner; after a restart it
    // is still one (its snapshots hold the membership it installed).
    write_rounds(&all, &leaders, 75..100).await;
    wait_for(
        "host 4's own snapshots",
        Duration::from_secs(30),
        || async { (h4.status().await.ok()?.snapshots >= GROUPS).then_some(()) },
    )
    .await;
    h4.kill();
    apps[3] = Applied::default();
    let h4 = start_host(cfg(4), apps[3].clone()).await.unwrap();
    for g in 0..GROUPS {
        let m = h4.members(g).await.unwrap();
        assert_eq!(
            m.learners(),
            [NodeId(4)],
            "group {g} after a restart as a learner"
        );
    }
    // Then it replaces a follower of each group (joint: 4 in, the follower out).
    let mut replaced = Vec::new();
    for (g, l) in leaders.iter().enumerate() {
        let out = VOTERS.iter().copied().find(|v| v != l).unwrap();
        let c = ConfChange::single(Change::AddVoter(NodeId(4)))
            .with(Change::Remove(out))
            .unwrap();
        change(&all, g as GroupId, c).await;
        replaced.push(out);
    }
    let expected = |g: usize| -> Vec<NodeId> {
        let mut v: Vec<NodeId> = VOTERS
            .iter()
            .copied()
            .chain([NodeId(4)])
            .filter(|&v| v != replaced[g])
            .collect();
        v.sort();
        v
    };
    let settled = || async {
        for g in 0..GROUPS as usize {
            let m = h4.members(g as GroupId).await.ok()?;
            let mut v = m.voters().to_vec();
            v.sort();
            if m.is_joint() || !m.learners().is_empty() || v != expected(g) {
                return None;
            }
        }
        Some(())
    };
    wait_for(
        "the joint configurations to be left",
        Duration::from_secs(30),
        settled,
    )
    .await;
    for (g, out) in replaced.iter().enumerate() {
        hosts[out.0 as usize - 1]
            .remove_group(g as GroupId)
            .await
            .unwrap();
    }
    hosts.push(h4);
    let all: Vec<&HostHandle> = hosts.iter().collect();
    let leaders = wait_for("leaders", Duration::from_secs(30), || {
        agreed_leaders(&all, GROUPS)
    })
    .await;
    write_rounds(&all, &leaders, 100..125).await;

    // Host 4 restarts: the membership comes back from its snapshot and log.
    hosts[3].kill();
    apps[3] = Applied::default();
    hosts[3] = start_host(cfg(4), apps[3].clone()).await.unwrap();
    let h4 = &hosts[3];
    for g in 0..GROUPS as usize {
        let m = h4.members(g as GroupId).await.unwrap();
        let mut v = m.voters().to_vec();
        v.sort();
        assert_eq!(v, expected(g), "group {g} after the restart");
    }
    // Host 2 is killed: every group it is still in needs host 4's vote and acknowledgements.
    hosts[1].kill();
    let live: Vec<&HostHandle> = hosts.iter().filter(|h| h.id() != NodeId(2)).collect();
    let leaders = wait_for("leaders without host 2", Duration::from_secs(30), || {
        agreed_leaders(&live, GROUPS)
    })
    .await;
    write_rounds(&live, &leaders, 125..135).await;
    wait_for(
        "host 4 to apply everything",
        Duration::from_secs(30),
        || async {
            let m = apps[3].0.lock().unwrap();
            (0..GROUPS)
                .all(|g| m.get(&g).is_some_and(|c| c.len() == 135))
                .then_some(())
        },
    )
    .await;
    let m = apps[3].0.lock().unwrap();
    for g in 0..GROUPS {
        let cmds: Vec<Vec<u8>> = m[&g].iter().map(|(_, c)| c.clone()).collect();
        let want: Vec<Vec<u8>> = (0..135u32).map(|r| round_cmd(r, g)).collect();
        assert_eq!(cmds, want, "group {g} on host 4");
    }
    drop(m);
    for h in &hosts {
        h.kill();
    }
}

/// A peer that is down costs a connection attempt at most every 200 ms, not one per frame:
/// pings go to it every tick (20 ms here) and are dropped meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peer_is_not_dialled_for_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (me, nobody) = (free_addr(), free_addr());
    let mut c = HostConfig::new(NodeId(1), dir.path(), me, vec![(NodeId(2), nobody)]);
    c.tick = Duration::from_millis(20);
    let h = start_host(c, Applied::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = h.status().await.unwrap();
    h.shutdown().await;
    println!(
        "{} connection attempts, {} frames dropped",
        s.connects, s.frames_dropped
    );
    assert!(
        s.frames_dropped >= 30,
        "{} frames dropped",
        s.frames_dropped
    );
    assert!(
        (2..=7).contains(&s.connects),
        "{} connection attempts",
        s.connects
    );
}

async fn futures_status(hosts: &[&HostHandle]) -> Vec<raftlet_tokio::multi::HostStatus> {
    let mut v = Vec::new();
    for h in hosts {
        v.push(h.status().await.unwrap());
    }
    v
}

fn entries(group_term: u64, from: u64, to: u64) -> Vec<raftlet::Entry<Vec<u8>>> {
    (from..=to)
        .map(|i| raftlet::Entry {
            term: Term(group_term),
            index: Index(i),
            data: raftlet::EntryData::Normal(i.to_le_bytes().to_vec()),
        })
        .collect()
}

/// Writes entries `from..=to` of `group` through a persist, as the host does.
fn persist(
    wal: &mut SharedWal,
    group: GroupId,
    log: &mut GroupLog,
    es: &[raftlet::Entry<Vec<u8>>],
    hs: Option<raftlet::HardState>,
) {
    let p = raftlet::Persist {
        token: raftlet::PersistToken(1),
        hard_state: hs.as_ref(),
        snapshot: None,
        entries: es.into(),
    };
    wal.write(group, log, &p).unwrap();
}

/// Group 0 writes 16 entries at a time, syncing, until the log rolls to a new segment.
fn fill_until_roll(wal: &mut SharedWal, logs: &mut HashMap<GroupId, GroupLog>) {
    for _ in 0..10_000 {
        let l0 = logs.get_mut(&0).unwrap();
        let next = l0.last_index().0 + 1;
        persist(wal, 0, l0, &entries(2, next, next + 15), None);
        wal.sync().unwrap();
        if wal.maybe_roll(|g| logs.get(&g)).unwrap() {
            return;
        }
    }
    panic!("the log never rolled");
}

/// The shared log recovers every group (entries, truncations, hard states), a torn tail is
/// dropped, compaction deletes the oldest segments only once every group is past them, and a
/// removed group stays removed.
#[test]
fn the_shared_log_recovers_compacts_and_forgets_removed_groups() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 16 << 10,
    };
    let (mut wal, rec) = SharedWal::open(dir.path(), opts).unwrap();
    assert!(rec.is_empty());
    let mut logs: HashMap<GroupId, GroupLog> = HashMap::new();
    for g in 0..3 {
        wal.create_group(g, &VOTERS).unwrap();
        logs.insert(g, GroupLog::default());
    }
    let hs = raftlet::HardState {
        term: Term(2),
        vote: Some(NodeId(1)),
        pending_install: None,
    };
    // Group 0: 1..=10, then 6..=8 again at term 2 (a truncation).
    persist(
        &mut wal,
        0,
        logs.get_mut(&0).unwrap(),
        &entries(1, 1, 10),
        Some(hs),
    );
    persist(
        &mut wal,
        0,
        logs.get_mut(&0).unwrap(),
        &entries(2, 6, 8),
        None,
    );
    persist(
        &mut wal,
        1,
        logs.get_mut(&1).unwrap(),
        &entries(1, 1, 4),
        None,
    );
    wal.remove_group(2).unwrap();
    logs.remove(&2);
    wal.sync().unwrap();
    drop(wal);
    let (mut wal, rec) = SharedWal::open(dir.path(), opts).unwrap();
    assert_eq!(rec.keys().copied().collect::<Vec<_>>(), [0, 1]);
    let g0 = &rec[&0].log;
    assert_eq!(rec[&0].voters, VOTERS);
    assert_eq!(g0.hard_state(), hs);
    assert_eq!(g0.last_index(), Index(8));
    assert_eq!(g0.term(Index(5)), Some(Term(1)));
    assert_eq!(g0.term(Index(6)), Some(Term(2)));
    assert_eq!(rec[&1].log.last_index(), Index(4));

    // Unsynced writes after the last sync are lost on a crash only if never written; a torn
    // record at the tail is dropped: cut the last segment inside its last record.
    let mut l1 = rec[&1].log.clone();
    persist(&mut wal, 1, &mut l1, &entries(1, 5, 5), None);
    wal.sync().unwrap();
    drop(wal);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()
        .unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut torn = bytes.clone();
    torn[end - 3..end].fill(0);
    std::fs::write(&seg, &torn).unwrap();
    let (mut wal, rec) = SharedWal::open(dir.path(), opts).unwrap();
    assert_eq!(
        rec[&1].log.last_index(),
        Index(4),
        "the torn record was kept"
    );
    let mut logs: HashMap<GroupId, GroupLog> = rec.into_iter().map(|(g, r)| (g, r.log)).collect();

    // Fill segments: group 0 keeps writing, group 1 holds its 4 entries in the first segment.
    let mut next = 9;
    for _ in 0..300 {
        let es = entries(2, next, next + 15);
        persist(&mut wal, 0, logs.get_mut(&0).unwrap(), &es, None);
        next += 16;
        wal.sync().unwrap();
        wal.maybe_roll(|g| logs.get(&g)).unwrap();
    }
    let many = wal.segment_count();
    assert!(many >= 3, "{many} segments");
    // Group 0 compacts everything; group 1 nothing: the first segment (group 1's entries) and
    // so every segment after it stay.
    let last0 = logs[&0].last_index();
    let mut l0 = logs.remove(&0).unwrap();
    wal.compact(
        0,
        &mut l0,
        SnapshotId {
            index: last0,
            term: Term(2),
        },
    )
    .unwrap();
    logs.insert(0, l0);
    fill_until_roll(&mut wal, &mut logs);
    assert!(
        wal.segment_count() > many,
        "a segment group 1 needs was deleted"
    );
    // Group 1 compacts too: the old segments go.
    let mut l1 = logs.remove(&1).unwrap();
    wal.compact(
        1,
        &mut l1,
        SnapshotId {
            index: Index(4),
            term: Term(1),
        },
    )
    .unwrap();
    logs.insert(1, l1);
    fill_until_roll(&mut wal, &mut logs);
    // Left: the segment of group 0's compaction (it holds entries written after it), the one
    // after, and the new one.
    assert_eq!(wal.segment_count(), 3, "{many} segments before");
    drop(wal);
    let (_, rec) = SharedWal::open(dir.path(), opts).unwrap();
    assert_eq!(
        rec.keys().copied().collect::<Vec<_>>(),
        [0, 1],
        "group 2 came back"
    );
    assert_eq!(rec[&0].voters, VOTERS);
    assert_eq!(rec[&0].log.snapshot().index, last0);
    assert_eq!(rec[&0].log.last_index(), logs[&0].last_index());
    assert_eq!(rec[&0].log.hard_state(), hs);
    assert_eq!(rec[&1].log.snapshot().index, Index(4));
    assert_eq!(rec[&1].log.last_index(), Index(4));
}

/// Offsets of the records in a segment file (the layout of `multi::wal`: length, CRC, payload).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push(at);
        at += 8 + len;
    }
    out
}

/// Every creation gets an epoch greater than every live one, also after a reopen (a group
/// removed and created again must never share an epoch with a predecessor whose snapshot
/// files may not be deleted yet).
#[test]
fn epochs_grow_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    let (mut wal, _) = SharedWal::open(dir.path(), opts).unwrap();
    let a = wal.create_group(1, &VOTERS).unwrap();
    let b = wal.create_group(2, &VOTERS).unwrap();
    assert!(b > a, "{a} then {b}");
    wal.sync().unwrap();
    drop(wal);
    let (mut wal, rec) = SharedWal::open(dir.path(), opts).unwrap();
    assert_eq!((rec[&1].epoch, rec[&2].epoch), (a, b));
    wal.remove_group(2).unwrap();
    let again = wal.create_group(2, &VOTERS).unwrap();
    assert!(again > b, "group 2 again at epoch {again}, before at {b}");
    let c = wal.create_group(3, &VOTERS).unwrap();
    assert!(c > again, "{again} then {c}");
}

/// A torn write may leave a complete record after a damaged one. Recovery drops both (nothing
/// after a bad record counts) and must zero what follows, or a record later written over the
/// damaged one, of the same length, would bring the stale record after it back on the next
/// recovery.
#[test]
fn records_after_a_torn_one_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default();
    let (mut wal, _) = SharedWal::open(dir.path(), opts).unwrap();
    wal.create_group(7, &VOTERS).unwrap();
    let mut log = GroupLog::default();
    persist(&mut wal, 7, &mut log, &entries(1, 1, 4), None);
    persist(&mut wal, 7, &mut log, &entries(1, 5, 5), None);
    persist(&mut wal, 7, &mut log, &entries(1, 6, 6), None);
    wal.sync().unwrap();
    drop(wal);
    let seg = dir.path().join("wal-0000000001.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let offs = record_offsets(&bytes);
    // The record of entry 5 is the second to last: damage its payload.
    let r5 = offs[offs.len() - 2];
    bytes[r5 + 10] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    let (mut wal, rec) = SharedWal::open(dir.path(), opts).unwrap();
    let mut log = rec[&7].log.clone();
    assert_eq!(log.last_index(), Index(4));
    // Entry 5 again, of term 2: a record of the same length, where the damaged one was.
    persist(&mut wal, 7, &mut log, &entries(2, 5, 5), None);
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = SharedWal::open(dir.path(), opts).unwrap();
    let log = &rec[&7].log;
    assert_eq!(log.last_index(), Index(5), "the stale entry 6 came back");
    assert_eq!(log.term(Index(5)), Some(Term(2)));
}
