//! What a node counts, and the Prometheus text format of it.
//!
//! The runner keeps [`Metrics`] (in [`Status::metrics`](crate::runner::Status::metrics), so
//! also in `raftlet-kv status --json`); [`serve`] answers `GET /metrics` on an address of its
//! own with [`render`]'s text (`raftlet-kv serve --metrics-addr`).

use crate::runner::{Handle, Status};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bounds of the fsync-latency buckets, microseconds (the last bucket is everything
/// above).
pub const FSYNC_BUCKETS_US: [u64; 12] = [
    50, 100, 200, 300, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
];

/// A latency histogram with the fixed buckets of [`FSYNC_BUCKETS_US`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Samples at or below each bound (not cumulative), then above the last bound.
    pub counts: [u64; FSYNC_BUCKETS_US.len() + 1],
    /// Samples.
    pub count: u64,
    /// Their sum, microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let k = FSYNC_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(FSYNC_BUCKETS_US.len());
        self.counts[k] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// A node's counters since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Proposals this node took as leader.
    pub proposals: u64,
    /// Proposals it refused (not the leader, log full, transfer under way, too large).
    pub proposals_refused: u64,
    /// Entries applied to the state machine.
    pub applied: u64,
    /// Elections this node started.
    pub elections: u64,
    /// Changes of the leader it knows.
    pub leader_changes: u64,
    /// Messages dropped: by the node (full queue) and by the transport.
    pub dropped_sends: u64,
    /// Inbound connections refused (limits, bad handshakes).
    pub connections_refused: u64,
    /// Log syncs (`fdatasync`), and how long each took.
    pub fsync: Histogram,
}

/// `status` in the Prometheus text exposition format (version 0.0.4).
pub fn render(status: &Status) -> String {
    let m = &status.metrics;
    let node = status.id.0;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP raftlet_{name} {help}");
        let _ = writeln!(out, "# TYPE raftlet_{name} {kind}");
        let _ = writeln!(out, "raftlet_{name}{{node=\"{node}\"}} {value}");
    };
    metric(
        "proposals_total",
        "counter",
        "Proposals taken as leader.",
        m.proposals,
    );
    metric(
        "proposals_refused_total",
        "counter",
        "Proposals refused before they were proposed.",
        m.proposals_refused,
    );
    metric(
        "applied_entries_total",
        "counter",
        "Entries applied.",
        m.applied,
    );
    metric(
        "elections_total",
        "counter",
        "Elections started.",
        m.elections,
    );
    metric(
        "leader_changes_total",
        "counter",
        "Changes of the known leader.",
        m.leader_changes,
    );
    metric(
        "dropped_sends_total",
        "counter",
        "Messages dropped (full queues, unknown addresses).",
        m.dropped_sends,
    );
    metric(
        "connections_refused_total",
        "counter",
        "Inbound connections refused.",
        m.connections_refused,
    );
    metric("term", "gauge", "Current term.", status.term.0);
    metric("commit_index", "gauge", "Commit index.", status.commit.0);
    metric("applied_index", "gauge", "Applied index.", status.applied.0);
    metric(
        "is_leader",
        "gauge",
        "1 on the leader.",
        u64::from(status.role == raftlet::Role::Leader),
    );
    let _ = writeln!(out, "# HELP raftlet_fsync_seconds Log sync latency.");
    let _ = writeln!(out, "# TYPE raftlet_fsync_seconds histogram");
    let mut cumulative = 0;
    for (k, &bound) in FSYNC_BUCKETS_US.iter().enumerate() {
        cumulative += m.fsync.counts[k];
        let _ = writeln!(
            out,
            "raftlet_fsync_seconds_bucket{{node=\"{node}\",le=\"{}\"}} {cumulative}",
            bound as f64 / 1e6
        );
    }
    let _ = writeln!(
        out,
        "raftlet_fsync_seconds_bucket{{node=\"{node}\",le=\"+Inf\"}} {}",
        m.fsync.count
    );
    let _ = writeln!(
        out,
        "raftlet_fsync_seconds_sum{{node=\"{node}\"}} {}",
        m.fsync.sum_us as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "raftlet_fsync_seconds_count{{node=\"{node}\"}} {}",
        m.fsync.count
    );
    out
}

/// Answers `GET /metrics` on `addr` with [`render`] of `handle`'s status, until the node
/// stops. One request per connection; anything else gets 404.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, handle: Handle) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while !handle.is_stopped() {
            let Ok(Ok((mut s, _))) =
                tokio::time::timeout(Duration::from_secs(1), listener.accept()).await
            else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut req))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let ok = req[..n].starts_with(b"GET /metrics ");
                let (code, body) = match (ok, handle.status().await) {
                    (true, Some(st)) => ("200 OK", render(&st)),
                    (true, None) => ("503 Service Unavailable", "stopped\n".into()),
                    (false, _) => ("404 Not Found", "GET /metrics\n".into()),
                };
                let head = format!(
                    "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_their_buckets() {
        let mut h = Histogram::default();
        for us in [10, 50, 51, 150, 100_000, 100_001, 5_000_000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.counts[0], 2); // <= 50
        assert_eq!(h.counts[1], 1); // <= 100
        assert_eq!(h.counts[2], 1); // <= 200
        assert_eq!(h.counts[11], 1); // <= 100 ms
        assert_eq!(h.counts[12], 2); // above
        assert_eq!(h.count, 7);
    }
}
