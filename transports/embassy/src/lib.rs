//! # raftlet-embassy
//!
//! Runs a [`raftlet`] node on an embassy executor: `#![no_std]`, no allocator anywhere
//! in the dependency graph, every queue fixed-capacity.
//!
//! * [`runner`]: [`runner::new`] splits a node into a [`runner::Handle`] (propose, status,
//!   snapshot) and a [`runner::Runner`] whose `run()` future is the node's task. It waits with
//!   `embassy_futures::select` on the next tick, a request and an incoming frame, and executes
//!   the node's actions in the order of the core's action contract.
//! * What differs per board is three small traits: a [`link::Link`] that sends and receives
//!   frames ([`link::CobsLink`] makes one from any `embedded-io-async` byte link, such as a
//!   UART: COBS framing with a CRC-32 per frame), a [`store::Store`] that says exactly what must
//!   be durable when its futures complete ([`store::RamStore`] for tests), and a
//!   [`runner::Clock`].
//! * The application is an [`runner::App`]: apply, snapshots, and the notify-mode hook that
//!   fetches a snapshot by its own means.
//!
//! With the `defmt` feature the public types implement `defmt::Format` and the core logs
//! through defmt.
#![no_std]
#![forbid(unsafe_code)]

pub mod flash;
pub mod link;
pub mod runner;
pub mod store;

pub use flash::FlashStore;
pub use link::{CobsLink, Link};
pub use runner::{App, Clock, Handle, Resources, Runner, Status};
pub use store::{RamStore, Store};
