//! A closed-loop load generator for the key-value client protocol ([`crate::kv`]).
//!
//! `clients` connections each send one `Put` at a time to the leader and wait for its reply
//! before sending the next (closed loop: the offered load is what the cluster sustains).
//! Latency is measured per request, from just before the request is written to just after the
//! reply is read, and every sample of the measured window is kept, so the percentiles are
//! exact. A warm-up (not measured) precedes the window.
//!
//! The same generator drives any server that speaks the protocol (the openraft peer under
//! `benches/peers/` does), so that two systems are compared by one client.

use crate::kv::{Client, Reply, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The node to write to (the leader: a follower forwards every write, which measures the
    /// forwarding too).
    pub addr: SocketAddr,
    /// Concurrent closed-loop clients, one connection each.
    pub clients: usize,
    /// The measured window.
    pub duration: Duration,
    /// The unmeasured warm-up before it.
    pub warmup: Duration,
    /// Bytes per value (keys are 16 bytes).
    pub value_bytes: usize,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Bound on one request.
    pub timeout: Duration,
    /// TLS for the connections (a client certificate), if the cluster uses it.
    pub tls: Option<crate::tls::Tls>,
}

impl LoadConfig {
    /// 32 clients, 10 s measured after 1 s of warm-up, 16-byte values, progress on.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            clients: 32,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            value_bytes: 16,
            progress: true,
            timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Clients.
    pub clients: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Writes acknowledged (`Applied`) inside the window.
    pub writes: u64,
    /// Requests that failed inside the window (any reply but `Applied`, a timeout, a lost
    /// connection).
    pub errors: u64,
    /// Latency percentiles of the acknowledged writes, microseconds: p50, p90, p99, p99.9,
    /// max.
    pub p50_us: u64,
    /// p90.
    pub p90_us: u64,
    /// p99.
    pub p99_us: u64,
    /// p99.9.
    pub p999_us: u64,
    /// The slowest.
    pub max_us: u64,
}

impl LoadReport {
    /// Acknowledged writes per second.
    pub fn writes_per_sec(&self) -> f64 {
        self.writes as f64 / self.seconds
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"clients\":{},\"value_bytes\":{},\"seconds\":{:.3},\"writes\":{},\"errors\":{},\"writes_per_sec\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
            self.clients,
            self.value_bytes,
            self.seconds,
            self.writes,
            self.errors,
            self.writes_per_sec(),
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        )
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1e3;
        write!(
            f,
            "{} clients, {}-byte values, {:.1} s: {} writes, {:.0} writes/s, {} errors; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.clients,
            self.value_bytes,
            self.seconds,
            self.writes,
            self.writes_per_sec(),
            self.errors,
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us)
        )
    }
}

/// The sample at quantile `q` of `sorted` (nearest rank); 0 for no samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Why a run could not start.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for LoadError {}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
}

/// Runs the load described by `config`.
///
/// # Errors
/// No client could connect.
pub async fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
    });
    let mut clients = Vec::with_capacity(config.clients);
    for _ in 0..config.clients {
        let c = Client::connect_with(config.addr, config.tls.as_ref())
            .await
            .map_err(|e| LoadError(format!("cannot connect to {}: {e}", config.addr)))?;
        clients.push(c);
    }
    let value = vec![b'v'; config.value_bytes];
    let mut tasks = Vec::new();
    for (k, mut client) in clients.into_iter().enumerate() {
        let shared = shared.clone();
        let value = value.clone();
        let timeout = config.timeout;
        let tls = config.tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut seq = 0u64;
            while !shared.stop.load(Ordering::Relaxed) {
                let key = format!("{k:04}-{seq:011}").into_bytes();
                seq += 1;
                let t = Instant::now();
                let r = client
                    .call(
                        Request::Put {
                            key,
                            value: value.clone(),
                        },
                        timeout,
                    )
                    .await;
                let us = t.elapsed().as_micros() as u64;
                let ok = matches!(r, Ok(Reply::Applied));
                if shared.measuring.load(Ordering::Relaxed) {
                    if ok {
                        samples.push(us);
                        shared.done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors += 1;
                    }
                }
                if r.is_err() {
                    // The connection is in an unknown state: open another.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    match Client::connect_with(client.peer(), tls.as_ref()).await {
                        Ok(c) => client = c,
                        Err(_) => continue,
                    }
                }
            }
            (samples, errors)
        }));
    }
    tokio::time::sleep(config.warmup).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < config.duration {
        let left = config.duration.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if config.progress {
            let done = shared.done.load(Ordering::Relaxed);
            eprintln!(
                "  [{:5.1} s] {:>9} writes, {:>8} writes/s in the last second",
                start.elapsed().as_secs_f64(),
                done,
                done - last
            );
            last = done;
        }
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((s, e)) = t.await {
            all.extend(s);
            errors += e;
        }
    }
    all.sort_unstable();
    Ok(LoadReport {
        clients: config.clients,
        value_bytes: config.value_bytes,
        seconds,
        writes: all.len() as u64,
        errors,
        p50_us: quantile(&all, 0.50),
        p90_us: quantile(&all, 0.90),
        p99_us: quantile(&all, 0.99),
        p999_us: quantile(&all, 0.999),
        max_us: all.last().copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), 0);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&[7], 0.999), 7);
    }
}
