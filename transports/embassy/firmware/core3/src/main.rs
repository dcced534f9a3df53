//! Three raftlet nodes in one microcontroller (the core alone, no runner): messages pass
//! through a queue in RAM, storage is a fixed array per node, persists are acknowledged at once.
//! The cluster elects a leader, commits `ENTRIES` commands, and every node must apply the same
//! commands in the same order. The firmware reports over semihosting (QEMU prints it on the
//! host) and exits with status 0 only if the check passed: RAM and stack figures, and whether
//! the cluster converged.
//!
//! Logging: the core logs through `defmt` (its `defmt` feature) and so does this firmware; the
//! frames go out on semihosting stdout, which `ci/firmware.sh` pipes into `defmt-print`. The
//! plain-text report goes to semihosting stderr.
//!
//! Stack high-water: cortex-m-rt paints the stack with `STACK_PAINT_VALUE` at reset
//! (`paint-stack`); at the end the firmware finds the deepest word no longer painted.
#![no_std]
#![no_main]

#[path = "../../stack.rs"]
mod stack;
/// The name the stack guard's fault report starts with.
const FIRMWARE: &str = "core3";
use stack::stack_high_water;
// Links cortex-m for its single-core critical section (semihosting output needs one).
use cortex_m as _;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, heprintln};
// The defmt global logger: frames over semihosting stdout.
use defmt_semihosting as _;
use raftlet::{
    Action, Config, Entry, EntryData, HardState, Index, NodeId, Role, SnapshotId, Storage, Term,
    TinyMessage, TinyNode,
};

/// Commands the cluster commits.
const ENTRIES: u32 = 100;
/// Entries each node's storage holds (the commands, the leaders' no-ops, and margin).
const STORE: usize = 112;
/// Messages in flight at once.
const NET: usize = 32;

struct Store {
    hs: HardState,
    log: heapless::Vec<Entry<u32>, STORE>,
}

impl Storage<u32> for Store {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn last_index(&self) -> Index {
        Index(self.log.len() as u64)
    }
    fn term(&self, i: Index) -> Option<Term> {
        if i.0 == 0 {
            return Some(Term(0));
        }
        self.log.get(i.0 as usize - 1).map(|e| e.term)
    }
    fn entry(&self, i: Index) -> Option<Entry<u32>> {
        i.0.checked_sub(1)
            .and_then(|k| self.log.get(k as usize))
            .cloned()
    }
    fn snapshot(&self) -> SnapshotId {
        SnapshotId::ZERO
    }
}

/// What one node's state machine has applied: a count and an FNV-1a hash of the commands.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Applied {
    count: u32,
    hash: u32,
}

fn drain(
    node: &mut TinyNode<u32>,
    store: &mut Store,
    net: &mut heapless::Deque<TinyMessage<u32>, NET>,
    applied: &mut Applied,
) {
    while let Some(action) = node.poll_action() {
        match action {
            Action::Send(out) => {
                // A full network drops, as a lossy bus would; Raft resends.
                if let Ok(m) = out.to_message(&*store) {
                    let _ = net.push_back(m);
                }
            }
            Action::Persist(p) => {
                let token = p.token;
                if let Some(hs) = p.hard_state {
                    store.hs = *hs;
                }
                if let Some(first) = p.entries.first() {
                    store.log.truncate(first.index.0 as usize - 1);
                }
                for e in p.entries {
                    store
                        .log
                        .push(e.clone())
                        .expect("storage sized for the run");
                }
                node.persisted(token, &*store).expect("in-order token");
            }
            Action::Apply { first, last } => {
                for i in first.0..=last.0 {
                    let e = store.entry(Index(i)).expect("committed entries are stored");
                    if let EntryData::Normal(cmd) = e.data {
                        applied.count += 1;
                        for b in cmd.to_le_bytes() {
                            applied.hash = (applied.hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Initialises node `k` of the cluster in place (`Node::init`): the node already lives in its
/// static, vacant, so this takes a small constant amount of stack.
fn init(node: &mut TinyNode<u32>, k: usize, store: &Store) {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let mut c = Config::new(ids[k], &ids).expect("config");
    c.seed = 0x5EED + k as u64;
    node.init(c, store).expect("node");
}

const fn store() -> Store {
    Store {
        hs: HardState {
            term: Term(0),
            vote: None,
            pending_install: None,
        },
        log: heapless::Vec::new(),
    }
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "overflow-test")]
    {
        heprintln!("core3: overflowing the stack on purpose");
        let depth = stack::overflow_on_purpose();
        heprintln!(
            "core3: recursed {} frames and nothing faulted: no stack guard",
            depth
        );
        debug::exit(debug::EXIT_FAILURE);
    }
    let (nodes, stores, net) = setup();
    run(nodes, stores, net)
}

type Net = heapless::Deque<TinyMessage<u32>, NET>;

/// The nodes, vacant (`const fn`) until `Node::init` fills each where it lies; the stores and
/// the message queue, empty. All `const`-initialised statics: nothing is built on the stack and
/// moved (`cortex_m::singleton!` builds its value on the stack first; writing
/// `TinyNode::vacant()` into an uninitialised static at run time copies it through the stack,
/// 2 KB more of it). The price: the vacant nodes' image is in `.data` (13.8 KB of flash).
static mut NODES: [TinyNode<u32>; 3] = [const { TinyNode::vacant() }; 3];
static mut STORES: [Store; 3] = [const { store() }; 3];
static mut NET_QUEUE: Net = heapless::Deque::new();

/// Hands out the statics, with the nodes initialised.
#[inline(never)]
fn setup() -> (
    [&'static mut TinyNode<u32>; 3],
    [&'static mut Store; 3],
    &'static mut Net,
) {
    // SAFETY: `setup` runs once, before anything else touches these statics; the references
    // it hands out are the only ones.
    let (nodes, stores, net) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(NODES),
            &mut *core::ptr::addr_of_mut!(STORES),
            &mut *core::ptr::addr_of_mut!(NET_QUEUE),
        )
    };
    let [n0, n1, n2] = nodes.each_mut();
    let [s0, s1, s2] = stores.each_mut();
    init(n0, 0, s0);
    init(n1, 1, s1);
    init(n2, 2, s2);
    ([n0, n1, n2], [s0, s1, s2], net)
}

/// Runs the cluster until every node applied `ENTRIES` commands, checks and reports.
#[inline(never)]
fn run(
    nodes: [&'static mut TinyNode<u32>; 3],
    stores: [&'static mut Store; 3],
    net: &'static mut Net,
) -> ! {
    let mut applied = [Applied {
        count: 0,
        hash: 0x811c_9dc5,
    }; 3];
    let mut proposed = 0u32;
    let mut rounds = 0u32;
    let clock = InstrClock::start();
    // Set when the first command is proposed: the steady state, election excluded.
    let mut first_proposal: Option<u64> = None;
    while rounds < 20_000 && applied.iter().any(|a| a.count < ENTRIES) {
        rounds += 1;
        for k in 0..3 {
            nodes[k].tick(&*stores[k]);
            drain(nodes[k], stores[k], net, &mut applied[k]);
        }
        for _ in 0..net.len() {
            let Some(m) = net.pop_front() else { break };
            let k = m.to.0 as usize - 1;
            let _ = nodes[k].step(&m, &*stores[k]);
            drain(nodes[k], stores[k], net, &mut applied[k]);
        }
        if let Some(k) = nodes.iter().position(|n| n.role() == Role::Leader) {
            if first_proposal.is_none() {
                first_proposal = Some(clock.ticks());
            }
            while proposed < ENTRIES && nodes[k].propose(proposed, &*stores[k]).is_ok() {
                proposed += 1;
                drain(nodes[k], stores[k], net, &mut applied[k]);
            }
        }
    }
    let end = clock.ticks();
    defmt::info!("core3: {} commands proposed in {} rounds", proposed, rounds);
    if let Some((instructions, ticks)) = clock.calibrate() {
        let per_entry = |t: u64| t * instructions / ticks / u64::from(ENTRIES);
        heprintln!(
            "core3: {} instructions per committed entry from the first proposal on, {} for the \
             whole run with the election (QEMU -icount: virtual time counts instructions)",
            per_entry(end - first_proposal.unwrap_or(end)),
            per_entry(end)
        );
    }
    let same = applied.iter().all(|a| *a == applied[0]);
    let ok = same && applied[0].count == ENTRIES;
    heprintln!(
        "core3: {} rounds, applied {}/{}/{} commands, hashes {:08x}/{:08x}/{:08x}: {}",
        rounds,
        applied[0].count,
        applied[1].count,
        applied[2].count,
        applied[0].hash,
        applied[1].hash,
        applied[2].hash,
        if ok { "converged" } else { "FAILED" }
    );
    heprintln!(
        "core3: size_of TinyNode<u32> {} B, message {} B, 3 stores {} B",
        core::mem::size_of::<TinyNode<u32>>(),
        core::mem::size_of::<TinyMessage<u32>>(),
        3 * core::mem::size_of::<Store>()
    );
    heprintln!("core3: stack high-water {} B", stack_high_water());
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}

/// SysTick wraps (every 2^24 counts).
static WRAPS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

#[cortex_m_rt::exception]
fn SysTick() {
    // The only writer (thumbv6m has no atomic add).
    let w = WRAPS.load(core::sync::atomic::Ordering::Relaxed);
    WRAPS.store(w.wrapping_add(1), core::sync::atomic::Ordering::Relaxed);
}

/// Counts instructions under QEMU's `-icount shift=0`, where virtual time advances one
/// nanosecond per instruction and SysTick counts virtual time: SysTick counts, converted with
/// a calibration loop of a known number of instructions.
struct InstrClock;

impl InstrClock {
    fn start() -> Self {
        // SAFETY: the only user of SysTick in this firmware.
        let mut p = unsafe { cortex_m::Peripherals::steal() };
        p.SYST
            .set_clock_source(cortex_m::peripheral::syst::SystClkSource::Core);
        p.SYST.set_reload(0x00FF_FFFF);
        p.SYST.clear_current();
        p.SYST.enable_interrupt();
        p.SYST.enable_counter();
        Self
    }
    /// SysTick counts since `start`.
    fn ticks(&self) -> u64 {
        loop {
            let w = WRAPS.load(core::sync::atomic::Ordering::Relaxed);
            let cvr = cortex_m::peripheral::SYST::get_current();
            if WRAPS.load(core::sync::atomic::Ordering::Relaxed) == w {
                return u64::from(w) * (1 << 24) + u64::from(0x00FF_FFFF - cvr);
            }
        }
    }
    /// `(instructions, SysTick counts)` of a loop of 2,000,000 instructions (`subs`, `bne`):
    /// the conversion from counts to instructions (integers: no float formatting linked in).
    fn calibrate(&self) -> Option<(u64, u64)> {
        let t0 = self.ticks();
        let mut n: u32 = 1_000_000;
        // SAFETY: a register-only countdown loop.
        unsafe {
            core::arch::asm!("2:", "subs {0}, #1", "bne 2b", inout(reg) n, options(nomem, nostack));
        }
        core::hint::black_box(n);
        let dt = self.ticks() - t0;
        (dt > 0).then_some((2_000_000, dt))
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    heprintln!("core3: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
