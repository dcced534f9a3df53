//! A no_std, no-alloc consumer of raftlet. It must not compile if `std` or `alloc` sneak in:
//! `std` brings a second `panic_impl` lang item (a duplicate with ours), and `alloc` needs a
//! `#[global_allocator]`, which this staticlib does not have.
#![no_std]

use core::panic::PanicInfo;
use raftlet::{Action, Config, Entry, HardState, Index, NodeId, Storage, Term, TinyNode};

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}

type Payload = heapless::Vec<u8, 32>;

/// A fixed-capacity in-RAM log, as a microcontroller without flash storage might keep.
struct RamLog {
    hs: HardState,
    log: heapless::Vec<Entry<Payload>, 64>,
}

impl Storage<Payload> for RamLog {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.log.len() as u64)
    }
    fn term(&self, i: Index) -> Option<Term> {
        if i.0 == 0 {
            Some(Term(0))
        } else {
            self.log.get(i.0 as usize - 1).map(|e| e.term)
        }
    }
    fn entry(&self, i: Index) -> Option<Entry<Payload>> {
        i.0.checked_sub(1)
            .and_then(|k| self.log.get(k as usize))
            .cloned()
    }
}

/// Runs a single-node cluster to a commit; returns the number of applied entries (so the
/// whole node is linked in, not optimised away).
#[unsafe(no_mangle)]
pub extern "C" fn raftlet_nostd_smoke() -> u32 {
    let mut store = RamLog {
        hs: HardState::default(),
        log: heapless::Vec::new(),
    };
    let Ok(config) = Config::new(NodeId(1), &[NodeId(1)]) else {
        return 0;
    };
    let Ok(mut node) = TinyNode::<Payload>::new(config, &store) else {
        return 0;
    };
    let mut applied = 0u32;
    for round in 0..64u32 {
        node.tick(&store);
        if round > 30 {
            let _ = node.propose(
                Payload::from_slice(&round.to_le_bytes()).unwrap_or_default(),
                &store,
            );
        }
        while let Some(action) = node.poll_action() {
            match action {
                Action::Send(_) => {}
                Action::Persist(p) => {
                    let token = p.token;
                    if let Some(hs) = p.hard_state {
                        store.hs = *hs;
                    }
                    if let Some(first) = p.entries.first() {
                        store.log.truncate(first.index.0 as usize - 1);
                    }
                    for e in p.entries {
                        let _ = store.log.push(e.clone());
                    }
                    let _ = node.persisted(token, &store);
                }
                Action::Apply { first, last } => applied += (last.0 - first.0 + 1) as u32,
                _ => {}
            }
        }
    }
    applied
}

// ----- raftlet-embassy: a runner with a link that delivers nothing, in RAM -----------------------

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use raftlet_embassy::link::NoLink;
use raftlet_embassy::runner::{self, App, Clock, Resources, Runner};
use raftlet_embassy::store::RamStore;

/// A clock that jumps a tick each time it is asked to wait.
struct StepClock(u64);
impl Clock for StepClock {
    fn now_us(&self) -> u64 {
        self.0
    }
    async fn wait_until(&mut self, at: u64) {
        if self.0 < at {
            self.0 = at;
        }
    }
}

/// Counts applied entries.
struct Count(u32);
impl App<TinyNode<Payload>> for Count {
    fn apply(&mut self, _: &Entry<Payload>) {
        self.0 += 1;
    }
}

/// Polls a single-node embassy runner until it has elected itself and committed a proposal;
/// returns the runner's applied count (so the whole runner is linked in).
#[unsafe(no_mangle)]
pub extern "C" fn raftlet_embassy_smoke() -> u32 {
    let res: Resources<NoopRawMutex, Payload, 2> = Resources::new();
    let mut store: RamStore<Payload, 64> = RamStore::new();
    let Ok(config) = Config::new(NodeId(1), &[NodeId(1)]) else {
        return 0;
    };
    let Ok(membership) = raftlet::Membership::new(&[NodeId(1)]) else {
        return 0;
    };
    let Ok(mut node) = TinyNode::<Payload>::new(config, &store) else {
        return 0;
    };
    const FRAME: usize = raftlet::wire::max_frame_len::<Payload, { raftlet::TINY_BATCH }>();
    let codec = raftlet::wire::Codec::new(1, FRAME);
    let built: Result<(_, Runner<'_, _, TinyNode<Payload>, _, _, _, _, 2, FRAME>), _> = runner::new(
        &res,
        &mut node,
        membership,
        NoLink,
        &mut store,
        StepClock(0),
        Count(0),
        codec,
        10_000,
    );
    let Ok((handle, mut runner)) = built else {
        return 0;
    };
    let mut applied = 0;
    for _ in 0..64 {
        let _ = embassy_futures::poll_once(runner.run());
        if let Some(s) = handle.status()
            && s.role == raftlet::Role::Leader
        {
            let _ = embassy_futures::poll_once(handle.propose(Payload::new()));
            applied = s.applied.0 as u32;
        }
    }
    applied + runner.app().0
}
