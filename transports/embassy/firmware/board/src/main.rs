//! One board of a three-board raftlet cluster: a `raftlet-embassy` runner on a Stellaris
//! LM3S6965 (QEMU's `lm3s6965evb`, Cortex-M3), with
//! * its link: UART0 (a PL011) with `CobsLink`; the host relay of
//!   `examples/qemu_cluster.rs` joins the three boards' UARTs into one bus (every frame goes to
//!   every other board) and drops, damages and cuts frames on the way;
//! * its clock: SysTick, one interrupt per millisecond;
//! * its store: `FlashStore` on a NOR flash image that lives on the host, read and written
//!   through semihosting file I/O (`board-<id>.flash` in QEMU's working directory), so a board
//!   killed and started again finds its durable state where it left it, as after a power cut;
//! * its executor: the runner and a proposer joined into one future, polled whenever an
//!   interrupt (a received byte, a millisecond) wakes the core from `wfi`.
//!
//! The board's id is its semihosting command line (`-semihosting-config arg=<id>`). The leader
//! proposes `TARGET` commands, each `id << 24 | n`; every board folds the commands it applies
//! into an FNV-1a hash and reports on semihosting stderr every 20 commands, and the hash of
//! the first `TARGET`: the relay checks that every board reports the same one.
#![no_std]
#![no_main]

#[path = "../../stack.rs"]
mod stack;
/// The name the stack guard's fault report starts with.
const FIRMWARE: &str = "board";
use core::cell::UnsafeCell;
use core::convert::Infallible;
use core::future::{Future, poll_fn};
use core::mem::MaybeUninit;
use core::pin::pin;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use core::task::{Context, Poll, Waker};
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, heprintln, syscall};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embedded_storage_async::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use lm3s6965::interrupt;
use raftlet::wire::{Codec, max_frame_len};
use raftlet::{
    Config, Entry, EntryData, Index, InstallError, InstallOutcome, Membership, NodeId, Role,
    SnapshotId, SnapshotMeta, SnapshotMode, Term, TinyNode,
};
use raftlet_embassy::flash::FlashStore;
use raftlet_embassy::link::{CobsLink, encoded_len};
use raftlet_embassy::runner::{self, App, Clock, Handle, Resources, Runner};
use stack::{repaint_stack, stack_high_water};

/// Commands the cluster commits.
const TARGET: u32 = 100;
/// A command: the proposing board's id in the top byte, a sequence number below.
type Payload = u32;
/// The profile: the tiny one with this payload; the runner and the app take this one type.
type BoardNode = TinyNode<Payload>;
const FRAME: usize = max_frame_len::<Payload, { raftlet::TINY_BATCH }>();
const N: usize = FRAME + 4;
const E: usize = encoded_len(N);
/// Flash geometry: 1 KiB sectors, 2 of state and `LOG_SECTORS` of log.
const SECTOR: usize = 1024;
const LOG_SECTORS: usize = 8;
/// Entries the store keeps in RAM (from the log's start).
const RAM_ENTRIES: usize = 64;
const FLASH_SIZE: usize = (LOG_SECTORS + 2) * SECTOR;
type BoardStore = FlashStore<HostFlash, Payload, RAM_ENTRIES, LOG_SECTORS, 256>;

// ----- time: SysTick at 1 kHz ------------------------------------------------------------

/// QEMU clocks the LM3S6965's SysTick at 12 MHz.
const CORE_HZ: u32 = 12_000_000;
static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    // The only writer (thumbv6m has no atomic add).
    MILLIS.store(
        MILLIS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

struct SysTickClock;
impl Clock for SysTickClock {
    fn now_us(&self) -> u64 {
        u64::from(MILLIS.load(Ordering::Relaxed)) * 1000
    }
    async fn wait_until(&mut self, at: u64) {
        poll_fn(|_| {
            if self.now_us() >= at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

// ----- the UART: PL011 at 0x4000_C000, received bytes buffered by its interrupt ----------

const UART0: usize = 0x4000_C000;
const DR: usize = 0x000;
const FR: usize = 0x018;
const LCRH: usize = 0x02C;
const CTL: usize = 0x030;
const IM: usize = 0x038;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;

fn reg(off: usize) -> *mut u32 {
    (UART0 + off) as *mut u32
}

/// Bytes the interrupt took from the UART, for the link to read: one producer (the interrupt),
/// one consumer (the main loop).
struct Ring {
    buf: UnsafeCell<[u8; RING]>,
    head: AtomicUsize,
    tail: AtomicUsize,
    lost: AtomicU32,
}
const RING: usize = 2048;
// SAFETY: `head` is written only by the interrupt, `tail` only by the main loop; a slot is
// written before `head` moves past it and read before `tail` does.
unsafe impl Sync for Ring {}
static RX: Ring = Ring {
    buf: UnsafeCell::new([0; RING]),
    head: AtomicUsize::new(0),
    tail: AtomicUsize::new(0),
    lost: AtomicU32::new(0),
};

#[interrupt]
fn UART0() {
    // SAFETY: UART0's registers; reading DR takes the byte and, once the FIFO is empty,
    // clears the receive interrupt.
    unsafe {
        while reg(FR).read_volatile() & FR_RXFE == 0 {
            let b = reg(DR).read_volatile() as u8;
            let h = RX.head.load(Ordering::Relaxed);
            if h.wrapping_sub(RX.tail.load(Ordering::Acquire)) == RING {
                RX.lost
                    .store(RX.lost.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                continue;
            }
            (*RX.buf.get())[h % RING] = b;
            RX.head.store(h.wrapping_add(1), Ordering::Release);
        }
    }
}

struct UartRx;
struct UartTx;
impl embedded_io_async::ErrorType for UartRx {
    type Error = Infallible;
}
impl embedded_io_async::ErrorType for UartTx {
    type Error = Infallible;
}
impl embedded_io_async::Read for UartRx {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        poll_fn(|_| {
            let mut n = 0;
            let mut t = RX.tail.load(Ordering::Relaxed);
            let h = RX.head.load(Ordering::Acquire);
            while t != h && n < buf.len() {
                // SAFETY: slots between tail and head were written by the interrupt.
                buf[n] = unsafe { (*RX.buf.get())[t % RING] };
                t = t.wrapping_add(1);
                n += 1;
            }
            RX.tail.store(t, Ordering::Release);
            if n == 0 {
                Poll::Pending
            } else {
                Poll::Ready(Ok(n))
            }
        })
        .await
    }
}
impl embedded_io_async::Write for UartTx {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            // SAFETY: UART0's registers.
            unsafe {
                while reg(FR).read_volatile() & FR_TXFF != 0 {}
                reg(DR).write_volatile(u32::from(b));
            }
        }
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

fn uart_init() {
    // SAFETY: UART0's registers: FIFOs on, 8 bits; enabled for transmit and receive; the
    // receive interrupt unmasked in the UART and in the NVIC.
    unsafe {
        reg(CTL).write_volatile(0);
        reg(LCRH).write_volatile((1 << 4) | (3 << 5));
        reg(IM).write_volatile(1 << 4);
        reg(CTL).write_volatile(1 | (1 << 8) | (1 << 9));
        cortex_m::peripheral::NVIC::unmask(lm3s6965::Interrupt::UART0);
    }
}

// ----- the store's flash: an image on the host, through semihosting -----------------------

/// A file on the host, through semihosting (`SYS_OPEN`, `SYS_SEEK`, `SYS_READ`,
/// `SYS_WRITE`), named relative to QEMU's working directory.
struct HostFile {
    fd: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostFileError;
impl NorFlashError for HostFileError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

impl HostFile {
    /// Opens `name` (NUL-terminated) for reading and writing, creating it if `create`.
    fn open(name: &[u8], create: bool) -> Option<Self> {
        // SAFETY: semihosting SYS_OPEN with a NUL-terminated name and its length; mode 3 is
        // "r+b" (the file must exist), 7 "w+b" (created, or truncated).
        let mode = if create { 7 } else { 3 };
        let fd = unsafe { syscall!(OPEN, name.as_ptr(), mode, name.len() - 1) };
        (fd as isize >= 0).then_some(Self { fd })
    }
    fn seek(&mut self, at: u32) -> Result<(), HostFileError> {
        // SAFETY: semihosting SYS_SEEK on our open file.
        let r = unsafe { syscall!(SEEK, self.fd, at as usize) };
        if r == 0 { Ok(()) } else { Err(HostFileError) }
    }
    fn read_at(&mut self, at: u32, bytes: &mut [u8]) -> Result<(), HostFileError> {
        self.seek(at)?;
        // SAFETY: semihosting SYS_READ into `bytes`; it returns the count *not* read.
        let left = unsafe { syscall!(READ, self.fd, bytes.as_mut_ptr(), bytes.len()) };
        if left == 0 {
            Ok(())
        } else {
            Err(HostFileError)
        }
    }
    fn write_at(&mut self, at: u32, bytes: &[u8]) -> Result<(), HostFileError> {
        self.seek(at)?;
        // SAFETY: semihosting SYS_WRITE from `bytes`; it returns the count *not* written.
        let left = unsafe { syscall!(WRITE, self.fd, bytes.as_ptr(), bytes.len()) };
        if left == 0 {
            Ok(())
        } else {
            Err(HostFileError)
        }
    }
}

/// NOR flash kept in a host file (the relay creates it erased). Programming ANDs into the
/// bytes already there, as NOR flash clears bits, and an erase writes `0xFF`: the store sees
/// the semantics of real flash.
struct HostFlash(HostFile);

impl ErrorType for HostFlash {
    type Error = HostFileError;
}
impl ReadNorFlash for HostFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), HostFileError> {
        self.0.read_at(offset, bytes)
    }
    fn capacity(&self) -> usize {
        FLASH_SIZE
    }
}
impl NorFlash for HostFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), HostFileError> {
        let ones = [0xFFu8; 256];
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(ones.len());
            self.0.write_at(at, &ones[..n])?;
            at += n as u32;
        }
        Ok(())
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), HostFileError> {
        let mut old = [0u8; 64];
        let mut done = 0;
        while done < bytes.len() {
            let n = (bytes.len() - done).min(old.len());
            let at = offset + done as u32;
            self.0.read_at(at, &mut old[..n])?;
            for (o, b) in old[..n].iter_mut().zip(&bytes[done..done + n]) {
                *o &= *b;
            }
            self.0.write_at(at, &old[..n])?;
            done += n;
        }
        Ok(())
    }
}

// ----- the application -------------------------------------------------------------------

/// The state machine: how many commands were applied, and a hash of the first `TARGET`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    applied: u32,
    hash: u32,
}

impl State {
    const EMPTY: Self = Self {
        applied: 0,
        hash: 0x811C_9DC5,
    };
}

/// A snapshot as the boards keep it: `board-<id>.snap`, two slots of `SLOT` bytes written in
/// turn, the valid one with the higher sequence number wins (a torn write leaves the other).
/// Any board can read any other's: in notify mode a follower fetches the leader's snapshot
/// "by its own means", here from the host's directory (as a real system might from shared
/// storage).
#[derive(Clone, Copy)]
struct Snapshot {
    seq: u32,
    id: SnapshotId,
    state: State,
}

const SLOT: usize = 32;

impl Snapshot {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[0..4].copy_from_slice(&self.seq.to_le_bytes());
        b[4..12].copy_from_slice(&self.id.index.0.to_le_bytes());
        b[12..20].copy_from_slice(&self.id.term.0.to_le_bytes());
        b[20..24].copy_from_slice(&self.state.applied.to_le_bytes());
        b[24..28].copy_from_slice(&self.state.hash.to_le_bytes());
        let sum = fnv(&b[..28]);
        b[28..32].copy_from_slice(&sum.to_le_bytes());
        b
    }
    fn decode(b: &[u8; SLOT]) -> Option<Self> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let long = |i: usize| u64::from(word(i)) | (u64::from(word(i + 4)) << 32);
        (word(28) == fnv(&b[..28]) && word(0) != 0).then(|| Self {
            seq: word(0),
            id: SnapshotId {
                index: Index(long(4)),
                term: Term(long(12)),
            },
            state: State {
                applied: word(20),
                hash: word(24),
            },
        })
    }
    fn file(board: u64, create: bool) -> Option<HostFile> {
        let mut name = *b"board-0.snap\0";
        name[6] = b'0' + board as u8;
        HostFile::open(&name, create)
    }
    /// The newest valid snapshot of `board`, if it has one.
    fn load(board: u64) -> Option<Self> {
        let mut f = Self::file(board, false)?;
        let mut best: Option<Self> = None;
        for slot in 0..2 {
            let mut b = [0u8; SLOT];
            if f.read_at((slot * SLOT) as u32, &mut b).is_ok()
                && let Some(s) = Self::decode(&b)
                && best.is_none_or(|x| s.seq > x.seq)
            {
                best = Some(s);
            }
        }
        best
    }
    /// Writes this snapshot over the older slot of `board`'s file.
    fn save(&self, board: u64) -> bool {
        let Some(mut f) = Self::file(board, false).or_else(|| Self::file(board, true)) else {
            return false;
        };
        let slot = (self.seq % 2) as usize;
        f.write_at((slot * SLOT) as u32, &self.encode()).is_ok()
    }
}

fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn members() -> Membership<5> {
    Membership::new(&[NodeId(1), NodeId(2), NodeId(3)]).unwrap()
}

/// The application: folds every applied command into a hash, takes a snapshot every
/// `SNAPSHOT_EVERY` entries, and installs a leader's snapshot in notify mode.
struct Commands {
    id: u64,
    state: State,
    /// The sequence number of its newest snapshot, and the index it covers.
    snap_seq: u32,
    snap_index: Index,
}

impl Commands {
    /// The line the relay waits for: the hash of the first `TARGET` commands.
    fn report_target(&self) {
        heprintln!(
            "board {}: applied {} commands, hash {:08x}",
            self.id,
            TARGET,
            self.state.hash
        );
    }
}

/// Entries between snapshots (each compacts the log).
const SNAPSHOT_EVERY: u64 = 16;

impl App<BoardNode> for Commands {
    const TAKES_SNAPSHOTS: bool = true;
    const TRANSFER: Option<SnapshotMode> = Some(SnapshotMode::Notify);

    fn apply(&mut self, e: &Entry<Payload>) {
        if let EntryData::Normal(c) = e.data {
            let st = &mut self.state;
            if st.applied < TARGET {
                for b in c.to_le_bytes() {
                    st.hash = (st.hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
                }
            }
            st.applied += 1;
            if st.applied.is_multiple_of(10) {
                heprintln!(
                    "board {}: applied {} commands (running stack high-water {} B)",
                    self.id,
                    st.applied,
                    stack_high_water()
                );
            }
            if st.applied == TARGET {
                self.report_target();
            }
        }
    }

    fn snapshot_due(&self, applied: Index) -> bool {
        applied.0 >= self.snap_index.0 + SNAPSHOT_EVERY
    }

    async fn take_snapshot(&mut self, meta: &SnapshotMeta<5>) -> bool {
        let snap = Snapshot {
            seq: self.snap_seq + 1,
            id: meta.id,
            state: self.state,
        };
        if !snap.save(self.id) {
            return false;
        }
        self.snap_seq = snap.seq;
        self.snap_index = meta.id.index;
        true
    }

    async fn fetch_snapshot(
        &mut self,
        leader: NodeId,
        first_available: SnapshotId,
    ) -> Result<SnapshotMeta<5>, InstallError> {
        let Some(theirs) = Snapshot::load(leader.0) else {
            return Err(InstallError::Unavailable);
        };
        if theirs.id.index.0 + 1 < first_available.index.0 {
            return Err(InstallError::Unavailable);
        }
        // Durable first (a restart must find it), then adopted.
        let mine = Snapshot {
            seq: self.snap_seq + 1,
            ..theirs
        };
        if !mine.save(self.id) {
            return Err(InstallError::Failed);
        }
        self.snap_seq = mine.seq;
        self.snap_index = theirs.id.index;
        self.state = theirs.state;
        heprintln!(
            "board {}: installed board {}'s snapshot at index {}",
            self.id,
            leader.0,
            theirs.id.index.0
        );
        // A snapshot past the target carries the hash of the first `TARGET` commands: this
        // board will not apply the `TARGET`th itself.
        if self.state.applied >= TARGET {
            self.report_target();
        }
        Ok(SnapshotMeta {
            id: theirs.id,
            membership: members(),
        })
    }

    fn install_complete(&mut self, peer: NodeId, outcome: InstallOutcome) {
        heprintln!(
            "board {}: install complete, peer {}: {:?}",
            self.id,
            peer.0,
            outcome
        );
    }
}

// ----- the executor ----------------------------------------------------------------------

/// Polls `f` until it completes, sleeping in `wfi` between polls: every interrupt (a byte on
/// the UART, a millisecond of SysTick) polls it again. One future, no waker needed.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        cortex_m::asm::wfi();
    }
}

/// Waits `ms` milliseconds.
async fn sleep(ms: u32) {
    let mut clock = SysTickClock;
    let at = clock.now_us() + u64::from(ms) * 1000;
    clock.wait_until(at).await;
}

/// The board's id: its semihosting command line, a number from 1 to 3.
fn board_id() -> u64 {
    let mut buf = [0u8; 16];
    // SAFETY: semihosting SYS_GET_CMDLINE writes at most `buf.len()` bytes into `buf`.
    let r = unsafe { syscall!(GET_CMDLINE, buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return 0;
    }
    let mut id = 0u64;
    for &b in buf.iter().take_while(|b| b.is_ascii_digit()) {
        id = id * 10 + u64::from(b - b'0');
    }
    id
}

/// The board's runner type.
type BoardRunner = Runner<
    'static,
    CriticalSectionRawMutex,
    BoardNode,
    CobsLink<UartRx, UartTx, N, E>,
    BoardStore,
    SysTickClock,
    Commands,
    4,
    FRAME,
>;
type BoardHandle = Handle<'static, CriticalSectionRawMutex, Payload, 4>;

/// The request queues between the proposer and the runner.
static RES: Resources<CriticalSectionRawMutex, Payload, 4> = Resources::new();

/// Stops the board with a message (QEMU exits with a failure status).
fn fail(args: core::fmt::Arguments<'_>) -> ! {
    heprintln!("{}", args);
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Opens the board's store on its flash image in `slot`, recovering what an earlier run
/// persisted.
#[inline(never)]
fn open_store(id: u64, slot: &'static mut MaybeUninit<BoardStore>) -> &'static mut BoardStore {
    let mut name = *b"board-0.flash\0";
    name[6] = b'0' + id as u8;
    let Some(flash) = HostFile::open(&name, false).map(HostFlash) else {
        fail(format_args!("board {id}: cannot open its flash image"))
    };
    // Built where it lives, then recovered in place (`FlashStore::open` would build the whole
    // store inside its future and return it by value).
    let store = slot.write(FlashStore::unopened(flash));
    if let Err(e) = block_on(store.recover()) {
        fail(format_args!("board {id}: flash store: {e:?}"))
    }
    store
}

/// Builds the node from the store and the runner around it.
#[inline(never)]
fn build(
    id: u64,
    store: &'static mut BoardStore,
    node: &'static mut BoardNode,
    slot: &mut MaybeUninit<BoardRunner>,
) -> BoardHandle {
    let mut config = Config::with_membership(NodeId(id), members());
    config.election_ticks = 10; // ticks of 50 ms: 0.5 to 1 s
    config.heartbeat_ticks = 2;
    config.seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    config.snapshot_mode = SnapshotMode::Notify;
    // The state machine comes back from its newest snapshot, the log from flash.
    let snap = Snapshot::load(id);
    let mut app = Commands {
        id,
        state: State::EMPTY,
        snap_seq: 0,
        snap_index: Index(0),
    };
    if let Some(s) = snap {
        config.snapshot = s.id;
        config.applied = s.id.index;
        app.state = s.state;
        app.snap_seq = s.seq;
        app.snap_index = s.id.index;
        if app.state.applied >= TARGET {
            app.report_target();
        }
    }
    // Built where it lies, in its static.
    if let Err(e) = node.init(config, &*store) {
        fail(format_args!("board {id}: node: {e:?}"))
    }
    heprintln!(
        "board {}: up, log {} entries, term {}, snapshot at {}",
        id,
        node.last_index().0,
        node.term().0,
        app.snap_index.0
    );
    let (handle, runner) = match runner::new(
        &RES,
        node,
        members(),
        CobsLink::new(UartRx, UartTx),
        store,
        SysTickClock,
        app,
        Codec::new(0xB0A2D, FRAME),
        50_000,
    ) {
        Ok(built) => built,
        Err(e) => fail(format_args!("board {id}: runner: {e:?}")),
    };
    slot.write(runner);
    handle
}

/// The node, the store and the runner live here, not on the stack: the node is built in place
/// (`Node::init` on a vacant node), the store and the runner (which borrows both) are written
/// here by the frames that build them.
static mut NODE: BoardNode = BoardNode::vacant();
static mut STORE: MaybeUninit<BoardStore> = MaybeUninit::uninit();
static mut RUNNER: MaybeUninit<BoardRunner> = MaybeUninit::uninit();

/// Opens the store, builds the node and the runner: frames of their own, gone before the
/// runner runs.
#[inline(never)]
fn start(id: u64, slot: &mut MaybeUninit<BoardRunner>) -> BoardHandle {
    // SAFETY: the only references to STORE and NODE, taken once, at start-up.
    let (store, node) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(STORE),
            &mut *core::ptr::addr_of_mut!(NODE),
        )
    };
    build(id, open_store(id, store), node, slot)
}

#[entry]
fn main() -> ! {
    #[cfg(feature = "overflow-test")]
    {
        heprintln!("board: overflowing the stack on purpose");
        let depth = stack::overflow_on_purpose();
        heprintln!("board: recursed {depth} frames and nothing faulted: no stack guard");
        debug::exit(debug::EXIT_FAILURE);
    }
    let id = board_id();
    if !(1..=3).contains(&id) {
        fail(format_args!(
            "board: no id 1 to 3 on the semihosting command line"
        ));
    }
    let mut p = cortex_m::Peripherals::take().unwrap();
    p.SYST
        .set_clock_source(cortex_m::peripheral::syst::SystClkSource::Core);
    p.SYST.set_reload(CORE_HZ / 1000 - 1);
    p.SYST.clear_current();
    p.SYST.enable_interrupt();
    p.SYST.enable_counter();
    uart_init();

    // SAFETY: the only reference to RUNNER, taken once, before anything else could.
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(RUNNER) };
    let handle = start(id, slot);
    // SAFETY: `start` initialised it.
    let runner = unsafe { slot.assume_init_mut() };
    // Building took the deepest stack; what the board needs from now on is measured apart.
    heprintln!(
        "board {}: start-up stack high-water {} B",
        id,
        stack_high_water()
    );
    repaint_stack();

    let proposer = async {
        let mut n = 0u32;
        let mut led = 0u64;
        loop {
            sleep(50).await;
            let Some(s) = handle.status() else { continue };
            if s.role == Role::Leader && s.term.0 != led {
                led = s.term.0;
                heprintln!("board {}: leading in term {}", id, led);
            }
            // Propose while leading, a few entries ahead of the commit index at most.
            if s.role == Role::Leader
                && s.commit.0 < u64::from(TARGET) + 8
                && s.last_index.0 < s.commit.0 + 4
            {
                n += 1;
                let _ = handle.propose(((id as u32) << 24) | n).await;
            }
        }
    };
    let run = async {
        let e = runner.run().await;
        fail(format_args!("board {id}: runner stopped: {e:?}"));
    };
    block_on(embassy_futures::select::select(run, proposer));
    fail(format_args!("board {id}: stopped"))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    heprintln!("board: panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}
