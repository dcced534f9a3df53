//! Bounds on what the network may make a node hold: connections per port and per source
//! address, memory for frames being received, time a client connection may sit idle.
//!
//! Every accepted connection holds a [`Permit`] (one slot of the port and one of its source
//! address, returned when the connection ends). Before a frame's body is read, the connection
//! reserves its length from the node's memory budget; the reservation is returned when the
//! frame has been handled. A connection that cannot get a slot is closed at once; one whose
//! frame does not fit the budget is closed. Buffers grow only as bytes arrive, never on a
//! length prefix alone (see the transport's frame reader in `net.rs`).
//!
//! Invariants: `active ≤ max_connections`, each source's count `≤ max_per_source`, reserved
//! memory `≤ memory_budget`; a permit or reservation dropped on any path (error, timeout,
//! task abort) returns what it held.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bounds. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once on the port (peers and clients together).
    pub max_connections: usize,
    /// Connections held at once from one source address.
    pub max_per_source: usize,
    /// Bytes of large frames (over 64 KiB) being received, all connections together.
    pub memory_budget: usize,
    /// A client connection with no request for this long is closed.
    pub client_idle: Duration,
}

impl Default for Limits {
    /// 512 connections, 128 per source, 32 MiB of large frames in flight (frames up to
    /// 64 KiB take none: at most 64 KiB each, per counted connection), clients idle for 60 s.
    /// (512 leaves a node under the common limit of 1,024 descriptors room for its log,
    /// snapshots and outbound connections.)
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_per_source: 128,
            memory_budget: 32 << 20,
            client_idle: Duration::from_secs(60),
        }
    }
}

/// Shared by every connection of a port.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    active: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    memory: AtomicUsize,
    refused: AtomicU64,
}

impl Limiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            active: AtomicUsize::new(0),
            per_source: Mutex::new(HashMap::new()),
            memory: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for a connection from `source`, or `None` (counted) if the port or the source
    /// is full.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Permit> {
        let mut per = self.per_source.lock().expect("limiter lock");
        let n = per.entry(source).or_insert(0);
        if *n >= self.limits.max_per_source
            || self.active.load(Ordering::Relaxed) >= self.limits.max_connections
        {
            if *n == 0 {
                per.remove(&source);
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        self.active.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            limiter: self.clone(),
            source,
        })
    }

    /// Connections held now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Bytes reserved now.
    pub fn memory(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    /// Connections refused for want of a slot, and frames refused for want of memory.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// One connection's slot; returned when dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    source: IpAddr,
}

impl Permit {
    /// Reserves `bytes` of the memory budget for a frame, or `None` (counted).
    pub fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let l = &self.limiter;
        let mut now = l.memory.load(Ordering::Relaxed);
        loop {
            if now + bytes > l.limits.memory_budget {
                l.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match l.memory.compare_exchange_weak(
                now,
                now + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        limiter: l.clone(),
                        bytes,
                    });
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// How long a client connection may sit idle.
    pub fn client_idle(&self) -> Duration {
        self.limiter.limits.client_idle
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per = self.limiter.per_source.lock().expect("limiter lock");
        if let Some(n) = per.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.source);
            }
        }
        self.limiter.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bytes of the memory budget held for one frame; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    limiter: Arc<Limiter>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.limiter.memory.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_memory_are_bounded_and_returned() {
        let l = Limiter::new(Limits {
            max_connections: 3,
            max_per_source: 2,
            memory_budget: 100,
            client_idle: Duration::from_secs(1),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        let p2 = l.admit(a).unwrap();
        assert!(l.admit(a).is_none(), "per source");
        let p3 = l.admit(b).unwrap();
        assert!(l.admit(b).is_none(), "per port");
        assert_eq!(l.active(), 3);
        drop(p2);
        let p4 = l.admit(a).expect("a returned slot is free again");
        let r1 = p1.reserve(60).unwrap();
        assert!(p3.reserve(41).is_none());
        let r2 = p3.reserve(40).unwrap();
        assert_eq!(l.memory(), 100);
        drop(r1);
        assert_eq!(l.memory(), 40);
        drop((r2, p1, p3, p4));
        assert_eq!((l.active(), l.memory()), (0, 0));
        assert!(l.per_source.lock().unwrap().is_empty());
        assert_eq!(l.refused(), 3);
    }
}
