//! One write-ahead log for every Raft group of a process: one `fdatasync` makes a batch of
//! every group's entries and hard states durable (TiKV's raft-engine idea, kept small).
//!
//! # Layout of a data directory
//! `wal-NNNNNNNNNN.log` segments, replayed in sequence order. Each segment is preallocated
//! ([`WalOptions::segment_bytes`], zeros, fsync'd before use) so that appending never changes
//! its size and an `fdatasync` writes data blocks only. A record is
//! `length (4) | crc32 (4) | payload`, the CRC covering the segment's sequence number and the
//! payload, the payload the postcard encoding of a `Record`: a group's entries (replacing every
//! entry at or after the first one's index, as a `Persist` says), hard state, log reset or
//! compaction, or a group's creation or removal. The first records of every segment are a
//! checkpoint of every live group (its epoch, members, hard state and log start), so a segment
//! is needed only for the entries it holds.
//!
//! # Epochs
//! Every creation of a group gets an epoch, greater than any other epoch live when it is
//! created. A group removed and created again under the same id is a new incarnation with a
//! new epoch, and whatever is kept outside this log for a group (its snapshot files) carries
//! the epoch, so that nothing of an earlier incarnation is taken for the current one.
//!
//! # Compaction
//! A group compacts on its own ([`SharedWal::compact`]). The oldest sealed segments are deleted
//! once every group whose entries they hold has compacted past them (or was removed): the
//! checkpoints in later segments carry everything else they said. Only a prefix of the segments
//! is ever deleted, so a group's removal never outlives its creation and entries.
//!
//! # Recovery
//! [`SharedWal::open`] replays every segment; a record that fails its checks ends its segment
//! (a torn write at the tail, or the zeros of preallocated space). Writing resumes after the
//! last good record of the last segment.
//!
//! # Durability
//! [`SharedWal::write`] and the other record writers buffer; [`SharedWal::start_sync`] writes
//! the buffer and returns the `fdatasync` as a job to run on another thread: every record
//! written before it is durable once the job returns `Ok`.

use crate::storage::{LogEntry, RunnerPersist, SyncJob};
use raftlet::{HardState, NodeId, SnapshotId, Storage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A group's id.
pub type GroupId = u64;

const HEADER: usize = 8;
const MAX_RECORD: usize = 64 << 20;

/// How the log lays out its segments.
#[derive(Clone, Copy, Debug)]
pub struct WalOptions {
    /// A segment is sealed and the next one started once it holds this many bytes (64 MiB).
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
        }
    }
}

/// One group's log as the node reads it ([`Storage`]): its hard state, its start, and its
/// entries after the start, all in memory; the shared log holds them durably.
pub type GroupLog = crate::memlog::MemLog;

/// A record as read back.
#[derive(Deserialize, Debug)]
enum Record {
    Create {
        group: GroupId,
        epoch: u64,
        voters: Vec<u64>,
    },
    Remove {
        group: GroupId,
    },
    Checkpoint {
        group: GroupId,
        epoch: u64,
        voters: Vec<u64>,
        hs: HardState,
        base: SnapshotId,
    },
    State {
        group: GroupId,
        hs: HardState,
    },
    Reset {
        group: GroupId,
        base: SnapshotId,
    },
    Compact {
        group: GroupId,
        base: SnapshotId,
    },
    Entries {
        group: GroupId,
        entries: Vec<LogEntry>,
    },
}

/// A record as written: the encoding of [`Record`], borrowing what it can.
#[derive(Serialize, Debug)]
enum RecordRef<'a> {
    Create {
        group: GroupId,
        epoch: u64,
        voters: &'a [u64],
    },
    Remove {
        group: GroupId,
    },
    Checkpoint {
        group: GroupId,
        epoch: u64,
        voters: &'a [u64],
        hs: HardState,
        base: SnapshotId,
    },
    State {
        group: GroupId,
        hs: HardState,
    },
    Reset {
        group: GroupId,
        base: SnapshotId,
    },
    Compact {
        group: GroupId,
        base: SnapshotId,
    },
    Entries {
        group: GroupId,
        entries: &'a [LogEntry],
    },
}

/// A group as recovered: its members and its log.
#[derive(Debug, Clone, Default)]
pub struct RecoveredGroup {
    /// The epoch of its creation (see the [module docs](self)).
    pub epoch: u64,
    /// The voters it was created with.
    pub voters: Vec<NodeId>,
    /// Its log.
    pub log: GroupLog,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// The highest entry index of each group in this segment.
    max_index: HashMap<GroupId, u64>,
}

/// The shared write-ahead log. See the [module docs](self).
#[derive(Debug)]
pub struct SharedWal {
    dir: PathBuf,
    opts: WalOptions,
    file: Arc<File>,
    /// Where the next buffered record goes in the current segment.
    offset: u64,
    buf: Vec<u8>,
    segments: Vec<Segment>,
    /// Bytes of the buffer not yet written.
    dirty: bool,
    /// Epoch and members of every live group (for checkpoints).
    voters: BTreeMap<GroupId, (u64, Vec<u64>)>,
    /// The next creation's epoch.
    next_epoch: u64,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:010}.log"))
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Reads the records of one segment; returns them, where the good records end, and where the
/// segment's last non-zero byte ends (what follows the good records up to there is a torn
/// write's remains).
fn read_segment(path: &Path, seq: u64) -> io::Result<(Vec<Record>, u64, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD || at + HEADER + len > bytes.len() {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len];
        if crc(seq, payload) != sum {
            break;
        }
        let Ok(r) = postcard::from_bytes::<Record>(payload) else {
            break;
        };
        records.push(r);
        at += HEADER + len;
    }
    let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Ok((records, at as u64, written.max(at) as u64))
}

impl SharedWal {
    /// Opens (or creates) the log in `dir` and recovers every group.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> io::Result<(Self, BTreeMap<GroupId, RecoveredGroup>)> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut seqs: Vec<u64> = fs::read_dir(&dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("wal-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        seqs.sort_unstable();
        let mut groups: BTreeMap<GroupId, RecoveredGroup> = BTreeMap::new();
        let mut segments = Vec::new();
        let (mut end, mut dirty_end) = (0, 0);
        for &seq in &seqs {
            let path = seg_path(&dir, seq);
            let (records, good, written) = read_segment(&path, seq)?;
            let mut max_index = HashMap::new();
            for r in records {
                Self::replay(&mut groups, &mut max_index, r);
            }
            segments.push(Segment {
                seq,
                path,
                max_index,
            });
            end = good;
            dirty_end = written;
        }
        let voters: BTreeMap<GroupId, (u64, Vec<u64>)> = groups
            .iter()
            .map(|(&g, r)| (g, (r.epoch, r.voters.iter().map(|v| v.0).collect())))
            .collect();
        let next_epoch = voters.values().map(|(e, _)| e + 1).max().unwrap_or(1);
        let mut wal = if let Some(last) = segments.last() {
            let file = OpenOptions::new().read(true).write(true).open(&last.path)?;
            Self {
                dir,
                opts,
                file: Arc::new(file),
                offset: end,
                buf: Vec::new(),
                segments,
                dirty: false,
                voters,
                next_epoch,
            }
        } else {
            let (file, path) = Self::new_segment(&dir, 1, opts.segment_bytes)?;
            Self {
                dir,
                opts,
                file: Arc::new(file),
                offset: 0,
                buf: Vec::new(),
                segments: vec![Segment {
                    seq: 1,
                    path,
                    max_index: HashMap::new(),
                }],
                dirty: false,
                voters,
                next_epoch,
            }
        };
        // Whatever follows the last good record is free space, or a torn write's remains: zero
        // those, so that records written there cannot be followed by a stale one on replay.
        wal.zero(dirty_end)?;
        Ok((wal, groups))
    }

    /// Zeroes the current segment from the write position up to `end`.
    fn zero(&mut self, end: u64) -> io::Result<()> {
        if self.offset < end {
            let mut f = &*self.file;
            f.seek(SeekFrom::Start(self.offset))?;
            let zeros = vec![0u8; (end - self.offset).min(1 << 20) as usize];
            let mut left = end - self.offset;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn replay(
        groups: &mut BTreeMap<GroupId, RecoveredGroup>,
        max_index: &mut HashMap<GroupId, u64>,
        r: Record,
    ) {
        let ids = |v: Vec<u64>| v.into_iter().map(NodeId).collect::<Vec<_>>();
        match r {
            Record::Create {
                group,
                epoch,
                voters,
            } => {
                groups.insert(
                    group,
                    RecoveredGroup {
                        epoch,
                        voters: ids(voters),
                        log: GroupLog::default(),
                    },
                );
            }
            Record::Remove { group } => {
                groups.remove(&group);
            }
            Record::Checkpoint {
                group,
                epoch,
                voters,
                hs,
                base,
            } => {
                let g = groups.entry(group).or_default();
                g.epoch = epoch;
                g.voters = ids(voters);
                g.log.set_hard_state(hs);
                if base.index > g.log.snapshot().index {
                    g.log.compact_to(base);
                    if g.log.snapshot() != base {
                        g.log.reset(base);
                    }
                }
            }
            // A group's records may outlive the segment that created it (it was deleted once
            // compacted): the checkpoint of a later segment names its members.
            Record::State { group, hs } => groups.entry(group).or_default().log.set_hard_state(hs),
            Record::Reset { group, base } => {
                groups.entry(group).or_default().log.reset(base);
            }
            Record::Compact { group, base } => {
                groups.entry(group).or_default().log.compact_to(base)
            }
            Record::Entries { group, entries } => {
                if let Some(last) = entries.last() {
                    let m = max_index.entry(group).or_default();
                    *m = (*m).max(last.index.0);
                }
                groups.entry(group).or_default().log.replace_from(entries);
            }
        }
    }

    fn new_segment(dir: &Path, seq: u64, bytes: u64) -> io::Result<(File, PathBuf)> {
        let path = seg_path(dir, seq);
        let tmp = dir.join("next.prep");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.set_len(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok((file, path))
    }

    fn append(&mut self, r: &RecordRef<'_>) -> io::Result<()> {
        let seq = self.segments.last().expect("a segment").seq;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; HEADER]);
        let buf = std::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(r, buf).map_err(io::Error::other)?;
        let len = self.buf.len() - start - HEADER;
        let sum = crc(seq, &self.buf[start + HEADER..]);
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
        self.dirty = true;
        if let RecordRef::Entries { group, entries } = r
            && let Some(last) = entries.last()
        {
            let m = self
                .segments
                .last_mut()
                .expect("a segment")
                .max_index
                .entry(*group)
                .or_default();
            *m = (*m).max(last.index.0);
        }
        Ok(())
    }

    /// Records a new group with its voters (empty log); returns its epoch.
    ///
    /// # Errors
    /// Encoding errors.
    pub fn create_group(&mut self, group: GroupId, voters: &[NodeId]) -> io::Result<u64> {
        let v: Vec<u64> = voters.iter().map(|n| n.0).collect();
        let epoch = self.next_epoch;
        self.append(&RecordRef::Create {
            group,
            epoch,
            voters: &v,
        })?;
        self.next_epoch += 1;
        self.voters.insert(group, (epoch, v));
        Ok(epoch)
    }

    /// Records that `group` was removed: its records are ignored from here on.
    ///
    /// # Errors
    /// Encoding errors.
    pub fn remove_group(&mut self, group: GroupId) -> io::Result<()> {
        self.voters.remove(&group);
        self.append(&RecordRef::Remove { group })
    }

    /// Executes group `group`'s persist: `log` reflects it at once, the records are buffered.
    ///
    /// # Errors
    /// Encoding errors.
    pub fn write(
        &mut self,
        group: GroupId,
        log: &mut GroupLog,
        p: &RunnerPersist<'_>,
    ) -> io::Result<()> {
        if let Some(hs) = p.hard_state {
            log.set_hard_state(*hs);
            self.append(&RecordRef::State { group, hs: *hs })?;
        }
        if let Some(&base) = p.snapshot {
            log.reset(base);
            self.append(&RecordRef::Reset { group, base })?;
        }
        if !p.entries.is_empty() {
            let (a, b) = p.entries.as_slices();
            log.replace_from(a.iter().chain(b).cloned());
            for run in [a, b] {
                if !run.is_empty() {
                    self.append(&RecordRef::Entries {
                        group,
                        entries: run,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Compacts `group`'s log through `through` (the application holds a snapshot of it).
    ///
    /// # Errors
    /// Encoding errors.
    pub fn compact(
        &mut self,
        group: GroupId,
        log: &mut GroupLog,
        through: SnapshotId,
    ) -> io::Result<()> {
        if through.index <= log.snapshot().index {
            return Ok(());
        }
        log.compact_to(through);
        self.append(&RecordRef::Compact {
            group,
            base: through,
        })
    }

    /// Whether buffered records wait for a sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the buffered records and returns the `fdatasync` that makes them durable, to run
    /// on another thread (`None` if nothing waits).
    ///
    /// # Errors
    /// I/O errors of the write.
    pub fn start_sync(&mut self) -> io::Result<Option<SyncJob>> {
        if !self.dirty {
            return Ok(None);
        }
        self.flush()?;
        let file = self.file.clone();
        Ok(Some(Box::new(move || file.sync_data())))
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut f = &*self.file;
        f.seek(SeekFrom::Start(self.offset))?;
        f.write_all(&self.buf)?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        self.dirty = false;
        Ok(())
    }

    /// Makes everything written durable now.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.flush()?;
        }
        self.file.sync_data()
    }

    /// Once the current segment is full: seals it (durably), starts the next one with a
    /// checkpoint of every live group (`logs`), and deletes the sealed segments no group needs.
    /// Returns whether it rolled. Call it between syncs, not while a sync job runs.
    ///
    /// # Errors
    /// I/O errors.
    pub fn maybe_roll<'a>(
        &mut self,
        logs: impl Fn(GroupId) -> Option<&'a GroupLog>,
    ) -> io::Result<bool> {
        if self.offset + self.buf.len() as u64 <= self.opts.segment_bytes {
            return Ok(false);
        }
        self.sync()?;
        let seq = self.segments.last().expect("a segment").seq + 1;
        let (file, path) = Self::new_segment(&self.dir, seq, self.opts.segment_bytes)?;
        self.file = Arc::new(file);
        self.offset = 0;
        self.segments.push(Segment {
            seq,
            path,
            max_index: HashMap::new(),
        });
        let voters = std::mem::take(&mut self.voters);
        for (&group, (epoch, v)) in &voters {
            if let Some(log) = logs(group) {
                self.append(&RecordRef::Checkpoint {
                    group,
                    epoch: *epoch,
                    voters: v,
                    hs: log.hard_state(),
                    base: log.snapshot(),
                })?;
            }
        }
        self.voters = voters;
        self.sync()?;
        // The oldest sealed segments, up to the first one a group still needs entries of: only
        // a prefix goes, so that no record (a removal above all) outlives the ones before it.
        let sealed = self.segments.len() - 1;
        let mut gone = 0;
        for s in &self.segments[..sealed] {
            let needed = s.max_index.iter().any(|(g, &max)| {
                self.voters.contains_key(g) && logs(*g).is_some_and(|l| l.snapshot().index.0 < max)
            });
            if needed {
                break;
            }
            fs::remove_file(&s.path)?;
            gone += 1;
        }
        self.segments.drain(..gone);
        Ok(true)
    }

    /// Segments on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}
