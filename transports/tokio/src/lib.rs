//! # raftlet-tokio
//!
//! Runs [`raftlet`] nodes on tokio, as a library: the [`runner`] executes the core's actions
//! in the order its action contract requires, with group commit (every queued input is taken
//! before one `fdatasync`, which runs on a thread of its own while the node keeps working, or,
//! for a follower that opts in, on the runner's task: see
//! [`RunnerConfig::inline_follower_sync`](runner::RunnerConfig::inline_follower_sync)).
//! What it runs is pluggable: your [`StateMachine`], a log ([`storage::LogStore`]: the durable
//! segmented [`storage::DiskLog`] by default, [`memlog::MemLog`] for tests and examples) and a
//! transport ([`net::Transport`]: TCP by default). Also here: [snapshot files](snapshot), a
//! replicated [key-value service](kv) with its client, and a [load generator](load).
//!
//! Start with the defaults with [`runner::start`], or choose the parts with
//! [`runner::start_with`] (see `tests/library.rs` for a state machine, log and transport of a
//! test's own).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use raftlet::NodeId;
//! use raftlet_tokio::{kv::Kv, runner::{self, RunnerConfig}};
//!
//! let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
//! let mut config = RunnerConfig::new(NodeId(1), "data/1", voters);
//! config.peers = vec![
//!     (NodeId(2), "127.0.0.1:7002".parse()?),
//!     (NodeId(3), "127.0.0.1:7003".parse()?),
//! ];
//! let (node, _recovery) = runner::start(config, Kv::default(), "127.0.0.1:7001".parse()?, None).await?;
//! let answer = node.propose(raftlet_tokio::kv::put(b"x", b"1")).await?;
//! # let _ = answer;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod kv;
pub mod limits;
pub mod load;
pub mod memlog;
pub mod metrics;
pub mod multi;
pub mod net;
pub mod runner;
pub mod snapshot;
pub mod storage;
pub mod tls;

pub use runner::{ClientError, Event, Handle, RunnerConfig, StateMachine, Status, start};
