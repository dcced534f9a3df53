//! Zero allocations in the steady state: with a payload that lives inline (here `u64`), a
//! 3-node cluster that proposes, replicates, persists, commits, applies and heartbeats makes no
//! heap allocation at all once started. The runner's own buffers are reserved up front, so any
//! allocation counted here is the core's.
#![allow(unsafe_code)] // the counting global allocator

#[path = "../benches/support/raftlet_cluster.rs"]
mod cluster;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local!(static COUNT_HERE: Cell<bool> = const { Cell::new(false) });

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT_HERE.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNT_HERE.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_makes_no_heap_allocation() {
    let rounds = 2_000u64;
    let mut c = cluster::Cluster::<u64>::new(100_000);
    c.elect();
    c.propose(0..10);
    c.run();
    COUNT_HERE.with(|f| f.set(true));
    // Control: the counter sees an allocation made here.
    drop(std::hint::black_box(Box::new(7u8)));
    assert_eq!(
        ALLOCS.swap(0, Ordering::Relaxed),
        1,
        "the counting allocator does not count"
    );
    for r in 0..rounds {
        c.propose((0..16).map(|k| r * 16 + k));
        c.run();
        if r % 3 == 0 {
            c.tick(); // heartbeats and their responses
            c.run();
        }
    }
    COUNT_HERE.with(|f| f.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(
        c.applied,
        [10 + rounds * 16; 3],
        "every entry applied on every node"
    );
    assert_eq!(
        allocs, 0,
        "{allocs} heap allocations in {rounds} rounds of steady state"
    );
}
