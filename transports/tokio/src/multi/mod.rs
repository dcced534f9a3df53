//! Multi-Raft: any number of Raft groups in one process, sharing what they can.
//!
//! * **One connection per peer process**: every message of every group to a peer goes over one
//!   TCP connection, in group frames (wire version 2, `raftlet::wire::group`): what the groups
//!   send while one batch of input is handled leaves in one frame per peer, so the heartbeats
//!   of all groups with a leader here and a follower there travel together.
//! * **Quiescence**: groups run with `Config::quiesce`. The host ticks only groups that are
//!   awake; an idle group costs no CPU and sends nothing.
//! * **Process liveness**: hosts ping each other every tick; a peer heard from for no
//!   [`HostConfig::liveness_timeout`] is reported to every group (`report_peer_down`), which
//!   wakes the quiescent followers of groups it led, and in each such group the live voter with
//!   the lowest id campaigns half a liveness timeout later (every host applies that rule, so
//!   one does): failover takes one and a half liveness timeouts and one election round, not an
//!   election timeout more.
//! * **One log for all groups**: a [`wal::SharedWal`]; one `fdatasync` makes a batch of every
//!   group's writes durable, on a thread of its own while the host keeps stepping groups.
//! * **Group lifecycle**: groups are created and removed at run time
//!   ([`HostHandle::create_group`], [`HostHandle::remove_group`]); a host that restarts recovers
//!   every group from its newest snapshot and its log.
//! * **Snapshots per group** ([`snaps`]): a group snapshots its state machine every
//!   [`HostConfig::snapshot_every`] applied entries and compacts its log, in memory and in the
//!   shared log; a follower its leader's log no longer reaches is sent the snapshot in chunks.
//! * **Membership per group**: each group is created with its own voters and changed at run
//!   time ([`HostHandle::change_membership`]: learners, voters, several at once through a joint
//!   configuration), up to [`host::MEMBERS`] members; a host joins a running group by creating
//!   it with the group's current voters, and is brought up by its leader's log or snapshot.

pub mod control;
pub mod host;
pub mod snaps;
pub mod wal;

pub use host::{GroupMachine, HostConfig, HostError, HostHandle, HostStatus, start_host};
pub use wal::{GroupId, GroupLog, SharedWal, WalOptions};
