//! # raftlet-tokio
//!
//! Runs [raftlet](raftlet) nodes on tokio: a [runner](runner) that executes the core's actions
//! in the order its action contract requires, a [TCP transport](net), a durable
//! [segmented log](storage) with a CRC per record and fsync before every acknowledgement,
//! [snapshot files](snapshot), and a replicated [key-value service](kv) with its client.
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
pub mod load;
pub mod memlog;
pub mod net;
pub mod runner;
pub mod snapshot;
pub mod storage;

pub use runner::{ClientError, Event, Handle, RunnerConfig, StateMachine, Status, start};
