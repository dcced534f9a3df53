//! Three boards on one RS-485 bus (a UART each, half duplex), as firmware wires
//! raftlet-embassy; run here on the host with the bus simulated in memory:
//!
//! ```sh
//! cargo run -p raftlet-embassy --example uart_cluster
//! ```
//!
//! On a board, `board::start` is what the firmware's `main` does; only the three adapters
//! change:
//! * the UART halves: an `embassy_stm32::usart::BufferedUartRx` / `BufferedUartTx` (or any
//!   `embedded-io-async` `Read` / `Write` whose `read` is cancel-safe, as buffered UARTs are);
//! * the clock: `embassy_time::Instant::now().as_micros()` and `Timer::at(..).await`;
//! * the store: a flash-backed [`Store`](raftlet_embassy::Store) (this example keeps the log in
//!   RAM, as a board with battery-backed SRAM could);
//! * `Resources` goes in a `static` with a `CriticalSectionRawMutex` when the handle is used
//!   from another task or interrupt priority, and `runner.run()` in an
//!   `#[embassy_executor::task]`.
//!
//! What was run: this example and the crate's tests, on x86-64. Nothing has run on a
//! microcontroller yet; the crate builds as `no_std` without an allocator (checked in CI).

use embassy_futures::{block_on, join::join, yield_now};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// The firmware side: generic over the UART, the clock and the store.
mod board {
    use embassy_sync::blocking_mutex::raw::RawMutex;
    use raftlet::wire::{Codec, max_frame_len};
    use raftlet::{Config, Entry, EntryData, Membership, NodeId, TinyNode};
    use raftlet_embassy::link::{CobsLink, encoded_len};
    use raftlet_embassy::runner::{self, App, Clock, Handle, Resources, Runner};
    use raftlet_embassy::store::RamStore;

    /// Commands of up to 24 bytes.
    pub type Payload = heapless::Vec<u8, 24>;
    /// The profile: the tiny one (5 members, 16 unstable entries, 4 entries per message), with
    /// this payload. Everything generic over a node (the runner, the app) takes this one type.
    pub type BoardNode = TinyNode<Payload>;
    /// The wire frame, the link buffers.
    pub const FRAME: usize = max_frame_len::<Payload, { raftlet::TINY_BATCH }>();
    const N: usize = FRAME + 4;
    const E: usize = encoded_len(N);
    /// Proposals waiting for the runner.
    pub const Q: usize = 4;
    /// The bus link of one board.
    pub type BusLink<RX, TX> = CobsLink<RX, TX, N, E>;
    /// The node's store: 64 entries between compactions.
    pub type BoardStore = RamStore<Payload, 64>;
    /// The runner of a board.
    pub type BoardRunner<'a, M, RX, TX, C> =
        Runner<'a, M, BoardNode, BusLink<RX, TX>, BoardStore, C, Counter, Q, FRAME>;

    /// The application: a counter of applied commands.
    #[derive(Default)]
    pub struct Counter {
        /// Sum of the first byte of every command.
        pub total: u64,
        /// Commands applied.
        pub applied: u32,
    }
    impl App<BoardNode> for Counter {
        fn apply(&mut self, e: &Entry<Payload>) {
            if let EntryData::Normal(p) = &e.data {
                self.total += u64::from(p.first().copied().unwrap_or(0));
                self.applied += 1;
            }
        }
    }

    /// Builds the node of board `id` of a three-board cluster where it lies (`node` is a
    /// `TinyNode::vacant()`, on a board a `static`), and its runner around it and `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn start<'a, M: RawMutex, RX, TX, C: Clock>(
        res: &'a Resources<M, Payload, Q>,
        id: u64,
        rx: RX,
        tx: TX,
        clock: C,
        node: &'a mut BoardNode,
        store: &'a mut BoardStore,
    ) -> (Handle<'a, M, Payload, Q>, BoardRunner<'a, M, RX, TX, C>)
    where
        RX: embedded_io_async::Read,
        TX: embedded_io_async::Write,
    {
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let mut config = Config::new(NodeId(id), &members).expect("three members fit");
        config.election_ticks = 10; // 10 ticks of 20 ms: 200-400 ms
        config.heartbeat_ticks = 2;
        config.seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15); // a board would mix in its unique ID
        node.init(config, &*store).expect("a consistent store");
        let membership = Membership::new(&members).expect("three members");
        runner::new(
            res,
            node,
            membership,
            CobsLink::new(rx, tx),
            store,
            clock,
            Counter::default(),
            Codec::new(0xB05, FRAME),
            20_000,
        )
        .expect("Counter takes no snapshots: any snapshot mode will do")
    }
}

// ----- the host's stand-ins for the hardware ----------------------------------------------------

/// An RS-485 bus: whatever one board transmits, the others receive.
#[derive(Default)]
struct Bus {
    rx: [RefCell<VecDeque<u8>>; 3],
}
struct Tx(Rc<Bus>, usize);
struct Rx(Rc<Bus>, usize);
impl embedded_io_async::ErrorType for Tx {
    type Error = core::convert::Infallible;
}
impl embedded_io_async::ErrorType for Rx {
    type Error = core::convert::Infallible;
}
impl embedded_io_async::Write for Tx {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for (k, q) in self.0.rx.iter().enumerate() {
            if k != self.1 {
                q.borrow_mut().extend(buf);
            }
        }
        Ok(buf.len())
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
impl embedded_io_async::Read for Rx {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        std::future::poll_fn(|_| {
            let mut q = self.0.rx[self.1].borrow_mut();
            if q.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = q.len().min(buf.len());
            for b in &mut buf[..n] {
                *b = q.pop_front().expect("n <= len");
            }
            std::task::Poll::Ready(Ok(n))
        })
        .await
    }
}
/// Simulated time (a board reads its timer).
#[derive(Clone)]
struct Time(Rc<Cell<u64>>);
impl raftlet_embassy::Clock for Time {
    fn now_us(&self) -> u64 {
        self.0.get()
    }
    async fn wait_until(&mut self, at: u64) {
        std::future::poll_fn(|_| {
            if self.0.get() >= at {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

fn main() {
    let bus = Rc::new(Bus::default());
    let time = Time(Rc::new(Cell::new(0)));
    let res: [raftlet_embassy::Resources<NoopRawMutex, board::Payload, { board::Q }>; 3] =
        Default::default();
    // The nodes and stores the runners borrow (on a board: `static`s).
    let mut nodes = [const { raftlet::TinyNode::<board::Payload>::vacant() }; 3];
    let mut stores: [board::BoardStore; 3] = Default::default();
    let mut boards: Vec<_> = nodes
        .iter_mut()
        .zip(stores.iter_mut())
        .enumerate()
        .map(|(k, (node, store))| {
            board::start(
                &res[k],
                k as u64 + 1,
                Rx(bus.clone(), k),
                Tx(bus.clone(), k),
                time.clone(),
                node,
                store,
            )
        })
        .collect();
    let handles: Vec<_> = boards.iter().map(|(h, _)| *h).collect();
    println!("raftlet-embassy: three boards on a simulated RS-485 bus, 20 ms ticks");
    {
        let [a, b, c] = &mut boards[..] else {
            unreachable!()
        };
        let runners = embassy_futures::join::join3(a.1.run(), b.1.run(), c.1.run());
        let app = async {
            // Wait for a leader, then send ten commands through it.
            let leader = loop {
                yield_now().await;
                time.0.set(time.0.get() + 100);
                if let Some(h) = handles
                    .iter()
                    .find(|h| h.status().is_some_and(|s| s.role == raftlet::Role::Leader))
                {
                    break *h;
                }
            };
            let s = leader.status().expect("running");
            println!(
                "[{:>5} ms] board {} elected leader of term {}",
                time.0.get() / 1000,
                s.id,
                s.term
            );
            for k in 1..=10u8 {
                while leader
                    .propose(board::Payload::from_slice(&[k]).expect("fits"))
                    .await
                    .is_err()
                {
                    time.0.set(time.0.get() + 1000);
                }
            }
            while handles
                .iter()
                .any(|h| h.status().is_none_or(|s| s.applied.0 < 11))
            {
                yield_now().await;
                time.0.set(time.0.get() + 100);
            }
            println!(
                "[{:>5} ms] 10 commands applied on all three boards",
                time.0.get() / 1000
            );
        };
        let _ = block_on(embassy_futures::select::select(
            runners,
            join(app, async {}),
        ));
    }
    for (h, r) in &boards {
        let s = h.status().expect("ran");
        println!(
            "  board {}: {:?}, commit {}, counter {} after {} commands, frames in {} bad {}",
            s.id,
            s.role,
            s.commit,
            r.app().total,
            r.app().applied,
            s.frames_in,
            s.frames_bad
        );
    }
    println!("\nRAM (x86-64 sizes; a 32-bit MCU needs somewhat less):");
    println!(
        "  the node (TinyNode, 5 members):                  {} bytes",
        std::mem::size_of::<raftlet::TinyNode<board::Payload>>()
    );
    println!(
        "  the store (64 entries):                          {} bytes",
        std::mem::size_of::<board::BoardStore>()
    );
    println!(
        "  the runner (link buffers, app; borrows the two): {} bytes",
        std::mem::size_of::<board::BoardRunner<'static, NoopRawMutex, Rx, Tx, Time>>()
    );
    println!(
        "  shared queues (Resources, {} proposals):           {} bytes",
        board::Q,
        std::mem::size_of::<raftlet_embassy::Resources<NoopRawMutex, board::Payload, { board::Q }>>(
        )
    );
    println!("  largest frame: {} bytes", board::FRAME);
}
