//! Work budgets for every test driver: a broken core must fail a test within seconds, naming
//! its seed and the command that replays it, never spin until CI's 90-minute limit.
//!
//! Two kinds of bound:
//! * **Counted** ([`Drain`], [`MAX_IN_FLIGHT`]): a drain that yields more actions than any
//!   correct node can produce for one input, or a network that holds more messages than any
//!   correct cluster sends, fails at once with the seed. These catch a node that keeps emitting
//!   (a persist that never advances, a send storm).
//! * **Wall clock** ([`watch`]): a loop *inside* the core (a search that never ends) cannot be
//!   counted from outside. A watchdog thread aborts the whole test process, after printing the
//!   label of every watch that overran (seed, test name and replay command), once a watch is
//!   older than its budget. `RAFTLET_WALL_BUDGET_SECS` sets the budget (default 30 s; a healthy
//!   seed takes milliseconds, the longest scenario well under a second in release, a few seconds
//!   unoptimised).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// No correct node yields more actions than this for one input: sends are bounded by its send
/// queue, persists by its persist window, applies and reads by its buffers.
pub const MAX_ACTIONS_PER_DRAIN: usize = 10_000;

/// No correct simulated cluster has this many messages in flight.
pub const MAX_IN_FLIGHT: usize = 100_000;

/// Counts the actions of one drain; panics with `label` once the budget is spent.
pub struct Drain<'a> {
    left: usize,
    label: &'a str,
}

impl<'a> Drain<'a> {
    pub fn new(label: &'a str) -> Self {
        Self {
            left: MAX_ACTIONS_PER_DRAIN,
            label,
        }
    }

    /// One more action taken.
    #[track_caller]
    pub fn spend(&mut self) {
        if self.left == 0 {
            panic!(
                "work budget: {} yielded more than {MAX_ACTIONS_PER_DRAIN} actions for one input \
                 (a node that never settles)",
                self.label
            );
        }
        self.left -= 1;
    }
}

/// Drains `poll` (a node's `poll_action`) into a vector, within the budget.
#[track_caller]
pub fn drain_all<T>(label: &str, mut poll: impl FnMut() -> Option<T>) -> Vec<T> {
    let mut b = Drain::new(label);
    let mut out = Vec::new();
    while let Some(a) = poll() {
        b.spend();
        out.push(a);
    }
    out
}

struct Armed {
    since: Instant,
    budget: Duration,
    label: String,
}

static WATCHES: Mutex<BTreeMap<u64, Armed>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static WATCHDOG: Once = Once::new();

/// A wall-clock budget, disarmed when dropped.
pub struct Watch(u64);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut w) = WATCHES.lock() {
            w.remove(&self.0);
        }
    }
}

/// The wall-clock budget of one seed or scenario.
pub fn wall_budget() -> Duration {
    let secs = std::env::var("RAFTLET_WALL_BUDGET_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Arms a watch: if it is still armed after [`wall_budget`], the process prints `label` and
/// exits with status 101 (the status of a failed test).
pub fn watch(label: String) -> Watch {
    WATCHDOG.call_once(|| {
        std::thread::Builder::new()
            .name("raftlet-watchdog".into())
            .spawn(watchdog)
            .expect("watchdog thread");
    });
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    let armed = Armed {
        since: Instant::now(),
        budget: wall_budget(),
        label,
    };
    WATCHES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, armed);
    Watch(key)
}

fn watchdog() {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let w = WATCHES.lock().unwrap_or_else(|e| e.into_inner());
        let over: Vec<&Armed> = w
            .values()
            .filter(|a| a.since.elapsed() > a.budget)
            .collect();
        if !over.is_empty() {
            // Straight to the stderr handle: `eprintln!` in a thread spawned by a test goes to
            // that test's captured output, which is never shown once the process exits.
            use std::io::Write as _;
            let mut err = std::io::stderr().lock();
            for a in over {
                let _ = writeln!(
                    err,
                    "work budget: {} still running after {:.0?} (budget {:?}; raise it with \
                     RAFTLET_WALL_BUDGET_SECS): the core is stuck in a loop",
                    a.label,
                    a.since.elapsed(),
                    a.budget
                );
            }
            let _ = err.flush();
            std::process::exit(101);
        }
    }
}

/// The label of a watch for the running test: its thread name (the test's name under the
/// libtest harness) and `what`.
pub fn here(what: &str) -> String {
    let t = std::thread::current();
    match t.name() {
        Some(name) if name != "main" => format!("test `{name}`, {what}"),
        _ => what.to_string(),
    }
}
