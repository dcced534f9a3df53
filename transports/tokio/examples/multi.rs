//! A sharded key-value store on `raftlet_tokio::multi`: three hosts in this process (on
//! loopback, each with its own data directory) run 100 Raft groups, one per shard. Keys are
//! routed to shards by hash; each shard's state machine is a map that snapshots itself. The
//! example writes 1,000 keys, kills the host leading the most shards, reads every key back
//! through the new leaders, restarts the killed host from its shared log and snapshots, and
//! waits until it serves as a replica again.
//!
//! `cargo run --release -p raftlet-tokio --example multi`

use raftlet::{Index, NodeId};
use raftlet_tokio::multi::{GroupId, GroupMachine, HostConfig, HostError, HostHandle, start_host};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SHARDS: u64 = 100;

/// A command of one shard.
#[derive(Serialize, Deserialize)]
enum Cmd {
    Set(String, String),
    Get(String),
}

/// Every shard's map.
#[derive(Default)]
struct Shards(HashMap<GroupId, BTreeMap<String, String>>);

impl GroupMachine for Shards {
    fn apply(&mut self, group: GroupId, _index: Index, command: &[u8]) -> Vec<u8> {
        let map = self.0.entry(group).or_default();
        let answer = match postcard::from_bytes(command) {
            Ok(Cmd::Set(k, v)) => map.insert(k, v),
            Ok(Cmd::Get(k)) => map.get(&k).cloned(),
            Err(_) => None,
        };
        postcard::to_allocvec(&answer).expect("an option of a string")
    }
    fn snapshot(&self, group: GroupId) -> Vec<u8> {
        postcard::to_allocvec(&self.0.get(&group)).expect("a map")
    }
    fn restore(&mut self, group: GroupId, data: &[u8]) -> Result<(), String> {
        let map: Option<BTreeMap<String, String>> =
            postcard::from_bytes(data).map_err(|e| e.to_string())?;
        self.0.insert(group, map.unwrap_or_default());
        Ok(())
    }
    fn removed(&mut self, group: GroupId) {
        self.0.remove(&group);
    }
}

fn shard_of(key: &str) -> GroupId {
    key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) % SHARDS
}

/// Sends `cmd` to its shard's leader, following `NotLeader` answers and retrying while the
/// shard elects one; returns the state machine's answer.
async fn call(hosts: &[Option<HostHandle>], key: &str, cmd: &Cmd) -> Option<String> {
    let bytes = postcard::to_allocvec(cmd).expect("a command");
    let mut at = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let Some(h) = &hosts[at % hosts.len()] else {
            at += 1;
            continue;
        };
        match h.propose(shard_of(key), bytes.clone()).await {
            Ok(answer) => return postcard::from_bytes(&answer).expect("an answer"),
            Err(HostError::NotLeader(Some(l))) if hosts[l.0 as usize - 1].is_some() => {
                at = l.0 as usize - 1;
            }
            Err(_) => {
                at += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    panic!("no answer for {key}");
}

fn config(id: u64, dir: &std::path::Path, members: &[(NodeId, SocketAddr)]) -> HostConfig {
    let dir = dir.join(format!("host-{id}"));
    let mut c = HostConfig::of_members(NodeId(id), dir, members).expect("a member");
    // Small, so that this short run snapshots and compacts.
    c.snapshot_every = 5;
    c.log_retention = 2;
    c
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    // Every process and its address (a free port on loopback each).
    let members: Vec<(NodeId, SocketAddr)> = voters
        .iter()
        .map(|&v| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
            (v, l.local_addr().expect("an address"))
        })
        .collect();
    let mut hosts: Vec<Option<HostHandle>> = Vec::new();
    for id in 1..=3 {
        let h = start_host(config(id, dir.path(), &members), Shards::default())
            .await
            .expect("a host");
        for g in 0..SHARDS {
            h.create_group(g, &voters).await.expect("a new shard");
        }
        hosts.push(Some(h));
    }
    println!("3 hosts, {SHARDS} shards of 3 replicas each, one connection per pair of hosts");

    let t0 = Instant::now();
    for i in 0..1_000 {
        let k = format!("key-{i}");
        call(&hosts, &k, &Cmd::Set(k.clone(), format!("value-{i}"))).await;
    }
    println!("1,000 keys written in {:.2?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut leading = Vec::new();
    for h in hosts.iter().flatten() {
        let s = h.status().await.expect("status");
        println!(
            "host {}: leads {} shards, {} awake, {} snapshots taken, {} log entries held",
            h.id(),
            s.leading,
            s.awake,
            s.snapshots,
            s.log_entries
        );
        leading.push(s.leading);
    }

    let victim = (0..3).max_by_key(|&i| leading[i]).expect("three hosts");
    hosts[victim].take().expect("running").kill();
    println!("host {} killed", victim + 1);
    let t0 = Instant::now();
    for i in 0..1_000 {
        let k = format!("key-{i}");
        let v = call(&hosts, &k, &Cmd::Get(k.clone())).await;
        assert_eq!(v.as_deref(), Some(format!("value-{i}").as_str()), "{k}");
    }
    println!(
        "every key read back through the new leaders in {:.2?}",
        t0.elapsed()
    );

    let h = start_host(
        config(victim as u64 + 1, dir.path(), &members),
        Shards::default(),
    )
    .await
    .expect("a restarted host");
    let s = h.status().await.expect("status");
    println!(
        "host {} restarted: {} shards recovered from its shared log",
        h.id(),
        s.groups
    );
    hosts[victim] = Some(h);
    call(&hosts, "key-0", &Cmd::Set("key-0".into(), "changed".into())).await;
    let t0 = Instant::now();
    loop {
        let mut awake = 0;
        for h in hosts.iter().flatten() {
            awake += h.status().await.expect("status").awake;
        }
        if awake == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "every shard caught up and quiet again after {:.2?}",
        t0.elapsed()
    );
    for h in hosts.iter().flatten() {
        h.shutdown().await;
    }
}
