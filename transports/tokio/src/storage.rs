//! A durable raft log on disk: an append-only segmented log with a CRC per record, and a state
//! file (hard state and the log's start) replaced atomically.
//!
//! # Layout of a data directory
//! * `state`: `magic, crc32, postcard(HardState, log start)`; replaced by write to `state.tmp`,
//!   fsync, rename, fsync of the directory.
//! * `log/seg-NNNNNNNNNN.log`: segments, replayed in sequence order. Each record is
//!   `tag (4) | length (4) | crc32 (4) | payload`, the payload being the postcard encoding of a
//!   `Record`: a batch of entries (which replaces every entry at or after its first index, as a
//!   `Persist` says), or a reset to an installed snapshot. The tag is a magic number mixed with
//!   the segment's sequence number, and the CRC covers the sequence number and the payload, so a
//!   record belongs to exactly one segment's life. Segments are preallocated: created full of
//!   zeros ([`LogOptions::segment_bytes`]) and fsync'd before the first record goes in, so that
//!   appending never changes a file's size and an `fdatasync` writes data blocks only, not the
//!   inode. A background thread prepares the next segment while the current one fills
//!   (`log/next.prep`, renamed into place when the log rolls), and a segment that compaction
//!   frees is **recycled** as the next spare instead of deleted: its blocks are already
//!   allocated, and its old records carry another sequence number. Whatever follows a segment's
//!   last record (zeros, or a recycled file's old records) is its free space.
//!
//! # Durability
//! [`DiskLog::write`] buffers records in memory; [`DiskLog::sync`] makes them durable (one
//! `write` of the buffer, then `fdatasync`). [`DiskLog::start_sync`] splits that in two: it
//! writes the buffer and returns the `fdatasync` as a [`SyncJob`] to run on another thread, so
//! the runner keeps stepping the node while the disk syncs (group commit: every record
//! written before the job was made is covered by it). The runner acknowledges a persist only
//! after its sync. A new state (hard state, compaction, reset) is durable when `write` or
//! `compact` returns.
//!
//! # Recovery
//! [`DiskLog::open`] replays every segment. Bytes that are not a record of the segment (another
//! tag) end its records: free space. A record of the segment that fails its checks at the end of
//! the last segment is a torn write: the segment is truncated there (those entries were never
//! acknowledged). A bad record followed by a valid one, a bad record of its own tag in an
//! earlier segment, or a batch that leaves a gap after the entries before it, is corruption of
//! acknowledged data: `open` fails with [`StorageError::Corrupt`] rather than serve a log with a
//! hole. Data directories written before records were tagged are refused with a message saying
//! so. A log without a state file is refused ([`StorageError::MissingState`]):
//! starting from an empty hard state could vote twice in a term.
//!
//! Entries after the log's start are also kept in memory (the node reads them through
//! [`Storage`]); compaction bounds them.

use raftlet::{ConfChange, Entry, EntryData, HardState, Index, Persist, SnapshotId, Storage, Term};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

/// The payload type of the tokio runner.
pub type Payload = Vec<u8>;
/// A log entry of the tokio runner.
pub type LogEntry = Entry<Payload>;

const RECORD_MAGIC: u32 = 0x5446_4152; // "RAFT" little-endian
/// The state file of data directories whose records are tagged with their segment (format 2).
const STATE_MAGIC: u32 = 0x3254_5453; // "STT2"
/// The state file of the first format (untagged records): refused.
const STATE_MAGIC_V1: u32 = 0x4554_5453; // "STTE"
const HEADER: usize = 12;
/// A record longer than this is corrupt (a batch of entries of at most a few MiB).
const MAX_RECORD: usize = 64 << 20;
/// Freed segments kept as spares at most; more are deleted.
const MAX_SPARES: usize = 2;
/// A segment is sealed and a new one started once it holds this many bytes (the default of
/// [`LogOptions::segment_bytes`]).
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// How a [`DiskLog`] lays out its segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is sealed once it holds this many bytes (a record is never split, so a
    /// segment can hold a little more).
    pub segment_bytes: u64,
    /// Create segments full of zeros (see the [module docs](self)); without it a segment
    /// grows as records are appended and every `fdatasync` also writes its inode.
    pub preallocate: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES,
            preallocate: true,
        }
    }
}

/// An `fdatasync` to run off the runner's task; see [`DiskLog::start_sync`].
pub type SyncJob = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// A persist as the tokio runner's node emits it.
pub type RunnerPersist<'a> = Persist<'a, Payload>;

/// A log the [runner](crate::runner) can keep: the core's [`Storage`] view, plus the writes,
/// syncs and compaction the runner executes. [`DiskLog`] is the durable default,
/// [`MemLog`](crate::memlog::MemLog) an in-memory one for tests and examples.
///
/// The contract the runner relies on:
/// * [`write`](Self::write) makes the persist's entries visible through [`Storage`] at once;
///   its hard state and snapshot reset are durable when it returns;
/// * every entry written before [`start_sync`](Self::start_sync) is durable once the job it
///   returns has returned `Ok` (`None`: nothing waits for a sync, all is durable already);
///   the runner runs jobs one at a time, in order, on a thread of its own, and acknowledges
///   persists only after their job;
/// * [`sync`](Self::sync) makes everything durable before it returns (used at shutdown).
pub trait LogStore: Storage<Payload> + Send + 'static {
    /// Executes a `Persist` (see the trait docs).
    ///
    /// # Errors
    /// I/O errors: the runner stops.
    fn write(&mut self, p: &RunnerPersist<'_>) -> io::Result<()>;
    /// Starts making every write so far durable.
    ///
    /// # Errors
    /// I/O errors: the runner stops.
    fn start_sync(&mut self) -> io::Result<Option<SyncJob>>;
    /// Makes every write so far durable now.
    ///
    /// # Errors
    /// I/O errors.
    fn sync(&mut self) -> io::Result<()>;
    /// Records `through` as the log's start durably; what it covers may be deleted.
    ///
    /// # Errors
    /// I/O errors: the runner stops.
    fn compact(&mut self, through: SnapshotId) -> io::Result<()>;
    /// The entry at `index`, without copying it (for applying).
    fn get(&self, index: Index) -> Option<&LogEntry>;
    /// Files the log occupies (for [`Status`](crate::runner::Status)).
    fn segment_count(&self) -> usize {
        0
    }
}

impl LogStore for DiskLog {
    fn write(&mut self, p: &RunnerPersist<'_>) -> io::Result<()> {
        DiskLog::write(self, p)
    }
    fn start_sync(&mut self) -> io::Result<Option<SyncJob>> {
        DiskLog::start_sync(self)
    }
    fn sync(&mut self) -> io::Result<()> {
        DiskLog::sync(self)
    }
    fn compact(&mut self, through: SnapshotId) -> io::Result<()> {
        DiskLog::compact(self, through)
    }
    fn get(&self, index: Index) -> Option<&LogEntry> {
        DiskLog::get(self, index)
    }
    fn segment_count(&self) -> usize {
        DiskLog::segment_count(self)
    }
}

/// One record of a segment, as read back.
#[derive(Deserialize, Debug)]
enum Record {
    /// Entries, contiguous; they replace every entry at or after the first one's index.
    Entries(Vec<LogEntry>),
    /// The log was replaced by an installed snapshot: nothing before this record counts.
    Reset(SnapshotId),
}

/// One record as written: the same encoding as [`Record`], borrowing the entries (a persist's
/// entries are serialized from the persist, not copied first).
#[derive(Serialize, Debug)]
enum RecordRef<'a> {
    /// See [`Record::Entries`].
    Entries(&'a [LogEntry]),
    /// See [`Record::Reset`].
    Reset(SnapshotId),
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct StateFile {
    hs: HardState,
    base: SnapshotId,
}

/// Why a data directory could not be opened or written.
#[derive(Debug)]
pub enum StorageError {
    /// An I/O error.
    Io(io::Error),
    /// Acknowledged data is damaged: a record that fails its checks before the end of the log.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The log has entries but the state file is missing.
    MissingState,
    /// Another process (or another log in this one) holds the directory: two nodes on one
    /// data directory would overwrite each other's log.
    Locked(PathBuf),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::Corrupt { file, offset, what } => {
                write!(
                    f,
                    "corrupt log: {} at offset {offset}: {what}",
                    file.display()
                )
            }
            Self::MissingState => f.write_str("the log has entries but no state file"),
            Self::Locked(dir) => write!(
                f,
                "{} is in use by another node (its lock file is held); one node per data directory",
                dir.display()
            ),
        }
    }
}
impl std::error::Error for StorageError {}
impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments replayed.
    pub segments: usize,
    /// Records replayed.
    pub records: usize,
    /// Bytes of a torn tail that were cut off, if any: the torn record as far as it was
    /// written (in a recycled segment, as far as its header claims: the old bytes under it
    /// cannot be told apart from it).
    pub truncated_tail: Option<u64>,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// The highest index a record of this segment wrote.
    max_index: Index,
    /// Bytes of records (where the next record goes).
    bytes: u64,
}

/// Prepares the next preallocated segment on a thread of its own.
#[derive(Debug)]
struct Preparer {
    /// Asks for `log/next.prep` of the given size.
    ask: std_mpsc::Sender<u64>,
    /// A prepared file is ready (or preparing it failed: then the roll creates one itself).
    ready: std_mpsc::Receiver<io::Result<()>>,
    /// A request is out and not yet collected.
    pending: bool,
    /// `log/next.prep` exists, complete and synced.
    have_spare: bool,
}

impl Preparer {
    fn start(dir: PathBuf) -> io::Result<Self> {
        let (ask, asks) = std_mpsc::channel::<u64>();
        let (done, ready) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("raftlet-log-prep".into())
            .spawn(move || {
                // Ends when the log is dropped (the sender goes away).
                while let Ok(bytes) = asks.recv() {
                    let r = create_zeroed(&dir.join("next.prep"), bytes);
                    if done.send(r).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            ask,
            ready,
            pending: false,
            have_spare: false,
        })
    }
}

/// Creates `path` full of zeros (`bytes` long) and makes it durable (the file; its name is
/// made durable by the rename that puts it in use).
fn create_zeroed(path: &Path, bytes: u64) -> io::Result<()> {
    let mut f = File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

/// The durable log of one node. See the [module docs](self).
#[derive(Debug)]
pub struct DiskLog {
    dir: PathBuf,
    options: LogOptions,
    state: StateFile,
    entries: VecDeque<LogEntry>,
    segments: Vec<Segment>,
    /// The segment being written, positioned after its last record.
    file: Arc<File>,
    /// Records not yet written to `file`.
    buf: Vec<u8>,
    /// Records were written since the last `fdatasync` (or are still in `buf`).
    dirty: bool,
    preparer: Option<Preparer>,
    /// Freed segments kept as spares (`log/spare-NNNNNNNNNN.prep`), taken before the
    /// preparer's zeroed file; see [`recycle`](Self::recycle).
    spares: Vec<PathBuf>,
    /// Freed segments recycled as spares since the log was opened.
    recycled: u64,
    /// `dir/lock`, locked exclusively while the log is open (released by the OS when the
    /// process ends, however it ends).
    _lock: File,
}

/// The tag of the records of segment `seq`.
fn record_tag(seq: u64) -> u32 {
    RECORD_MAGIC ^ (seq as u32)
}

/// The CRC of a record of segment `seq`: over the sequence number, then the payload.
fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends the record of segment `seq` to `out`, header first.
fn encode_record(r: &RecordRef<'_>, seq: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    *out = postcard::to_extend(r, std::mem::take(out)).expect("records serialize");
    let len = out.len() - start - HEADER;
    let crc = record_crc(seq, &out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&record_tag(seq).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a record of segment `seq` starts at `at` (its tag; the rest may still be damaged).
fn tagged(buf: &[u8], at: usize, seq: u64) -> bool {
    buf.get(at..at + 4) == Some(&record_tag(seq).to_le_bytes()[..])
}

/// Parses the record of segment `seq` at `at`; `None` if it is not a whole, valid record of
/// that segment.
fn parse_record(buf: &[u8], at: usize, seq: u64) -> Option<(Record, usize)> {
    let head = buf.get(at..at + HEADER)?;
    let word = |k: usize| u32::from_le_bytes(head[k..k + 4].try_into().expect("4 bytes"));
    if word(0) != record_tag(seq) {
        return None;
    }
    let len = word(4) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let payload = buf.get(at + HEADER..at + HEADER + len)?;
    if record_crc(seq, payload) != word(8) {
        return None;
    }
    let record = postcard::from_bytes(payload).ok()?;
    Some((record, HEADER + len))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates a new, empty segment at `path` (preallocated if the options say so) and makes its
/// name durable.
fn new_segment_file(dir: &Path, path: &Path, options: LogOptions) -> io::Result<()> {
    if options.preallocate {
        create_zeroed(path, options.segment_bytes)?;
    } else {
        File::create(path)?;
    }
    sync_dir(&dir.join("log"))
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join("log").join(format!("seg-{seq:010}.log"))
}

impl DiskLog {
    /// Opens (or creates) the log in `dir`, recovering as the [module docs](self) describe.
    ///
    /// # Errors
    /// I/O errors, corruption of acknowledged data, a missing state file.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Self, Recovery), StorageError> {
        Self::open_with(dir, LogOptions::default())
    }

    /// [`open`](Self::open) with the given segment layout.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with(
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<(Self, Recovery), StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("log"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StorageError::Locked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        // A segment being prepared when the process stopped: never in use, start over. Recycled
        // spares are whole segments of an earlier life: kept (if at least the segments' size).
        let _ = fs::remove_file(dir.join("log").join("next.prep"));
        let mut spares = Vec::new();
        for e in fs::read_dir(dir.join("log"))?.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("spare-") && name.ends_with(".prep") {
                if e.metadata()?.len() >= options.segment_bytes && options.preallocate {
                    spares.push(e.path());
                } else {
                    fs::remove_file(e.path())?;
                }
            }
        }
        spares.sort();
        let mut seqs: Vec<u64> = fs::read_dir(dir.join("log"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        seqs.sort_unstable();
        let state = match fs::read(dir.join("state")) {
            Ok(bytes) => Self::parse_state(&dir, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => StateFile {
                hs: HardState::default(),
                base: SnapshotId::ZERO,
            },
            Err(e) => return Err(e.into()),
        };
        let state_missing = !dir.join("state").exists();
        let mut recovery = Recovery::default();
        let mut log = VecDeque::new();
        let mut base = state.base;
        let mut segments = Vec::new();
        for (k, &seq) in seqs.iter().enumerate() {
            let path = segment_path(&dir, seq);
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let last_segment = k + 1 == seqs.len();
            let mut at = 0;
            let mut max_index = Index(0);
            while at < bytes.len() {
                let Some((record, len)) = parse_record(&bytes, at, seq) else {
                    if bytes[at..].iter().all(|&b| b == 0) {
                        // The free space of a preallocated segment.
                        break;
                    }
                    let later_valid =
                        (at + 1..bytes.len()).any(|p| parse_record(&bytes, p, seq).is_some());
                    if !tagged(&bytes, at, seq) && !later_valid {
                        // Not a record of this segment, and none follows: its free space
                        // (zeros, or the old records of a recycled file).
                        break;
                    }
                    if !last_segment || later_valid {
                        return Err(StorageError::Corrupt {
                            file: path,
                            offset: at as u64,
                            what: "a record fails its checks before the end of the log",
                        });
                    }
                    // A torn write at the tail: never acknowledged, cut it off. In a
                    // preallocated segment the cut bytes become zeros again (free space).
                    // What is reported is the torn record as far as it reaches: its header's
                    // length (a torn header claims at most its own) bounds it, so the old
                    // records of a recycled segment beyond it are not counted as torn.
                    let claimed = bytes
                        .get(at + 4..at + 8)
                        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")) as usize)
                        .filter(|&l| l <= MAX_RECORD)
                        .map_or(HEADER, |l| HEADER + l);
                    let record_end = (at + claimed).min(bytes.len());
                    let torn_end = bytes[..record_end]
                        .iter()
                        .rposition(|&b| b != 0)
                        .map_or(at, |p| p + 1)
                        .max(at);
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(at as u64)?;
                    f.set_len(bytes.len() as u64)?;
                    f.sync_all()?;
                    recovery.truncated_tail = Some((torn_end - at) as u64);
                    bytes[at..].fill(0);
                    break;
                };
                recovery.records += 1;
                match record {
                    Record::Reset(id) => {
                        log.clear();
                        if id.index > base.index {
                            base = id;
                        }
                    }
                    Record::Entries(batch) => {
                        let Some(first) = batch.first().map(|e| e.index) else {
                            at += len;
                            continue;
                        };
                        max_index = max_index.max(batch.last().map_or(first, |e| e.index));
                        let last = Index(base.index.0 + log.len() as u64);
                        if first > last.next() && first > base.index.next() {
                            return Err(StorageError::Corrupt {
                                file: path,
                                offset: at as u64,
                                what: "a batch leaves a gap after the entries before it",
                            });
                        }
                        for e in batch {
                            if e.index <= base.index {
                                continue;
                            }
                            let keep = (e.index.0 - base.index.0 - 1) as usize;
                            log.truncate(keep);
                            log.push_back(e);
                        }
                    }
                }
                at += len;
            }
            recovery.segments += 1;
            segments.push(Segment {
                seq,
                path,
                max_index,
                bytes: at as u64,
            });
        }
        if state_missing && (!log.is_empty() || base.index.0 > 0) {
            return Err(StorageError::MissingState);
        }
        let state = StateFile { base, ..state };
        if segments.is_empty() {
            let path = segment_path(&dir, 1);
            new_segment_file(&dir, &path, options)?;
            segments.push(Segment {
                seq: 1,
                path,
                max_index: Index(0),
                bytes: 0,
            });
        }
        let current = segments.last().expect("one segment");
        let mut file = OpenOptions::new().write(true).open(&current.path)?;
        file.seek(SeekFrom::Start(current.bytes))?;
        let preparer = if options.preallocate {
            Some(Preparer::start(dir.join("log"))?)
        } else {
            None
        };
        let mut disk = Self {
            dir,
            options,
            state,
            entries: log,
            segments,
            file: Arc::new(file),
            buf: Vec::with_capacity(64 << 10),
            dirty: false,
            preparer,
            spares,
            recycled: 0,
            _lock: lock,
        };
        if state_missing {
            disk.write_state()?;
        }
        Ok((disk, recovery))
    }

    fn parse_state(dir: &Path, bytes: &[u8]) -> Result<StateFile, StorageError> {
        let corrupt = |what| StorageError::Corrupt {
            file: dir.join("state"),
            offset: 0,
            what,
        };
        let magic = bytes
            .get(0..4)
            .map(|m| u32::from_le_bytes(m.try_into().expect("4")));
        if magic == Some(STATE_MAGIC_V1) {
            return Err(corrupt(
                "a data directory of the first format (untagged records), which this version does not read",
            ));
        }
        if bytes.len() < 8 || magic != Some(STATE_MAGIC) {
            return Err(corrupt("not a state file"));
        }
        let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4"));
        if crc32fast::hash(&bytes[8..]) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        postcard::from_bytes(&bytes[8..]).map_err(|_| corrupt("undecodable"))
    }

    fn write_state(&mut self) -> io::Result<()> {
        let body = postcard::to_allocvec(&self.state).expect("state serializes");
        let mut bytes = Vec::with_capacity(8 + body.len());
        bytes.extend_from_slice(&STATE_MAGIC.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        write_atomic(&self.dir.join("state"), &bytes)
    }

    fn append(&mut self, record: &RecordRef<'_>) -> io::Result<()> {
        let current = self.segments.last().expect("one segment");
        if current.bytes >= self.options.segment_bytes {
            self.roll()?;
        } else if current.bytes >= self.options.segment_bytes / 2 {
            self.want_spare();
        }
        let before = self.buf.len();
        let seq = self.segments.last().expect("one segment").seq;
        encode_record(record, seq, &mut self.buf);
        let current = self.segments.last_mut().expect("one segment");
        current.bytes += (self.buf.len() - before) as u64;
        if let RecordRef::Entries(batch) = record
            && let Some(last) = batch.last()
        {
            current.max_index = current.max_index.max(last.index);
        }
        self.dirty = true;
        Ok(())
    }

    /// Asks the preparer for the next segment, once, unless a recycled one is waiting.
    fn want_spare(&mut self) {
        let bytes = self.options.segment_bytes;
        if let Some(p) = &mut self.preparer
            && !p.pending
            && !p.have_spare
            && self.spares.is_empty()
        {
            p.pending = p.ask.send(bytes).is_ok();
        }
    }

    /// Writes the buffered records to the segment (no sync).
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            (&*self.file).write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Seals the current segment and starts the next.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let seq = self.segments.last().expect("one segment").seq + 1;
        let path = segment_path(&self.dir, seq);
        // A recycled segment first: its blocks are allocated, its old records free space.
        if let Some(spare) = self.spares.pop() {
            fs::rename(&spare, &path)?;
            sync_dir(&self.dir.join("log"))?;
            return self.start_segment(seq, path);
        }
        // Then the prepared segment if it is ready (waiting for it if it is being made).
        let spare = match &mut self.preparer {
            Some(p) if p.pending => {
                p.pending = false;
                p.have_spare = matches!(p.ready.recv(), Ok(Ok(())));
                p.have_spare
            }
            Some(p) => p.have_spare,
            None => false,
        };
        if spare {
            fs::rename(self.dir.join("log").join("next.prep"), &path)?;
            sync_dir(&self.dir.join("log"))?;
            if let Some(p) = &mut self.preparer {
                p.have_spare = false;
            }
        } else {
            new_segment_file(&self.dir, &path, self.options)?;
        }
        self.start_segment(seq, path)
    }

    /// Makes the (new, durable) segment file at `path` the current segment.
    fn start_segment(&mut self, seq: u64, path: PathBuf) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(&path)?;
        self.file = Arc::new(file);
        self.segments.push(Segment {
            seq,
            path,
            max_index: Index(0),
            bytes: 0,
        });
        Ok(())
    }

    /// Executes a `Persist` (hard state and snapshot reset durably at once; entries buffered
    /// until [`sync`](Self::sync)).
    ///
    /// # Errors
    /// I/O errors: the runner must not acknowledge the persist then.
    pub fn write(&mut self, p: &Persist<'_, Payload>) -> io::Result<()> {
        let mut state = self.state;
        if let Some(hs) = p.hard_state {
            state.hs = *hs;
        }
        if let Some(&id) = p.snapshot {
            // The reset is recorded in a new segment before the state file names the new
            // start, so that a replay never keeps entries from before it.
            self.roll()?;
            self.append(&RecordRef::Reset(id))?;
            self.sync()?;
            self.entries.clear();
            state.base = id;
        }
        if state != self.state {
            self.state = state;
            self.write_state()?;
        }
        if p.snapshot.is_some() {
            self.delete_segments_up_to(None)?;
        }
        if let Some(first) = p.entries.first() {
            let keep = first.index.0.saturating_sub(self.state.base.index.0 + 1) as usize;
            self.entries.truncate(keep);
            self.entries.extend(p.entries.iter().cloned());
            // A persist hands out every new entry at once (two slices of the node's ring):
            // records of at most DEFAULT_BATCH entries keep each one small.
            let (a, b) = p.entries.as_slices();
            for run in a
                .chunks(raftlet::DEFAULT_BATCH)
                .chain(b.chunks(raftlet::DEFAULT_BATCH))
            {
                self.append(&RecordRef::Entries(run))?;
            }
        }
        Ok(())
    }

    /// Makes every buffered write durable.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.flush()?;
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Writes the buffered records and returns the `fdatasync` that makes them durable, to be
    /// run on another thread; `None` if nothing waits for a sync. Every record written before
    /// this call is durable once the job returns `Ok`.
    ///
    /// # Errors
    /// I/O errors of the write.
    pub fn start_sync(&mut self) -> io::Result<Option<SyncJob>> {
        if !self.dirty {
            return Ok(None);
        }
        self.flush()?;
        self.dirty = false;
        let file = self.file.clone();
        Ok(Some(Box::new(move || file.sync_data())))
    }

    /// Whether writes wait for [`sync`](Self::sync).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Bytes of records in the segment being written (where the next record goes).
    pub fn segment_offset(&self) -> u64 {
        self.segments.last().expect("one segment").bytes
    }

    /// Records `through` as the log's start (durably) and deletes what it covers.
    ///
    /// # Errors
    /// I/O errors.
    pub fn compact(&mut self, through: SnapshotId) -> io::Result<()> {
        if through.index <= self.state.base.index {
            return Ok(());
        }
        let drop = ((through.index.0 - self.state.base.index.0) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.state.base = through;
        self.write_state()?;
        self.delete_segments_up_to(Some(through.index))
    }

    /// Deletes sealed segments that hold nothing after `upto` (all sealed ones for `None`).
    fn delete_segments_up_to(&mut self, upto: Option<Index>) -> io::Result<()> {
        let current = self.segments.pop().expect("one segment");
        let mut kept = Vec::with_capacity(self.segments.len() + 1);
        let mut deleted = false;
        for seg in std::mem::take(&mut self.segments) {
            if upto.is_none_or(|u| seg.max_index <= u) {
                if !self.recycle(&seg.path)? {
                    fs::remove_file(&seg.path)?;
                }
                deleted = true;
            } else {
                kept.push(seg);
            }
        }
        kept.push(current);
        self.segments = kept;
        if deleted {
            sync_dir(&self.dir.join("log"))?;
        }
        Ok(())
    }

    /// Keeps a freed segment as a spare (up to [`MAX_SPARES`]) if segments are preallocated and
    /// it has at least their size (a segment ends with the record that filled it): its blocks
    /// stay allocated, and its records, tagged with its old sequence number, are free space in
    /// its next life. Returns whether it did.
    fn recycle(&mut self, path: &Path) -> io::Result<bool> {
        if !self.options.preallocate
            || self.spares.len() >= MAX_SPARES
            || fs::metadata(path)?.len() < self.options.segment_bytes
        {
            return Ok(false);
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().replace("seg-", "spare-"))
            .unwrap_or_else(|| "spare".into());
        let spare = self.dir.join("log").join(format!("{name}.prep"));
        fs::rename(path, &spare)?;
        self.spares.insert(0, spare);
        self.recycled += 1;
        Ok(true)
    }

    /// How many freed segments were recycled as spares since the log was opened.
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// The number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pos(&self, index: Index) -> Option<usize> {
        index
            .0
            .checked_sub(self.state.base.index.0 + 1)
            .map(|k| k as usize)
    }
}

impl Storage<Payload> for DiskLog {
    fn hard_state(&self) -> HardState {
        self.state.hs
    }
    fn last_index(&self) -> Index {
        Index(self.state.base.index.0 + self.entries.len() as u64)
    }
    fn term(&self, index: Index) -> Option<Term> {
        if index == self.state.base.index {
            return Some(self.state.base.term);
        }
        self.entries.get(self.pos(index)?).map(|e| e.term)
    }
    fn entry(&self, index: Index) -> Option<LogEntry> {
        self.entries.get(self.pos(index)?).cloned()
    }
    fn snapshot(&self) -> SnapshotId {
        self.state.base
    }
    fn membership_changes(&self, after: Index, f: &mut dyn FnMut(Index, &ConfChange)) {
        for e in &self.entries {
            if let (true, EntryData::Membership(c)) = (e.index > after, &e.data) {
                f(e.index, c);
            }
        }
    }
}

impl DiskLog {
    /// The entry at `index` without copying it (for applying).
    pub fn get(&self, index: Index) -> Option<&LogEntry> {
        self.entries.get(self.pos(index)?)
    }

    /// The path of the segment being written.
    pub fn current_segment(&self) -> &Path {
        &self.segments.last().expect("one segment").path
    }
}
