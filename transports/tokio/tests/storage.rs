//! Crash tests of the disk log: a log cut at every record boundary and at random offsets,
//! bit flips, a missing or damaged state file. Recovery never panics, never serves a torn
//! record, and refuses (with a clear error) damage it cannot attribute to a torn write.

use raftlet::{
    Entry, EntryData, HardState, Index, NodeId, Persist, PersistToken, SnapshotId, Storage, Term,
};
use raftlet_tokio::storage::{DiskLog, LogOptions, StorageError};
use std::fs;

/// Preallocated segments of 64 KiB (the fixture's records fit in one).
const SMALL: LogOptions = LogOptions {
    segment_bytes: 64 << 10,
    preallocate: true,
};

/// A persist as a node would hand it out, owned by the test.
struct P {
    token: PersistToken,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotId>,
    entries: Vec<Entry<Vec<u8>>>,
}

impl P {
    fn view(&self) -> Persist<'_, Vec<u8>> {
        Persist {
            token: self.token,
            hard_state: self.hard_state.as_ref(),
            snapshot: self.snapshot.as_ref(),
            entries: self.entries.as_slice().into(),
        }
    }
}

fn persist(token: u64, hs: Option<HardState>, first: u64, n: u64, term: u64) -> P {
    let mut entries = Vec::new();
    for i in first..first + n {
        entries.push(Entry {
            term: Term(term),
            index: Index(i),
            data: EntryData::Normal(format!("entry {i} of term {term}").into_bytes()),
        });
    }
    P {
        token: PersistToken(token),
        hard_state: hs,
        snapshot: None,
        entries,
    }
}

fn hs(term: u64) -> Option<HardState> {
    Some(HardState {
        term: Term(term),
        vote: Some(NodeId(1)),
        pending_install: None,
    })
}

/// Writes 10 records of 3 entries (the 7th rewrites a tail); returns the byte offsets of the
/// record boundaries of the segment and the expected (index, term) after each record.
fn build(dir: &std::path::Path) -> (Vec<u64>, Vec<Vec<(u64, u64)>>) {
    let (mut log, _) = DiskLog::open_with(dir, SMALL).unwrap();
    let mut bounds = vec![log.segment_offset()];
    let mut expected = vec![vec![]];
    let mut model: Vec<(u64, u64)> = Vec::new();
    for k in 0..10u64 {
        let (first, term) = if k == 6 {
            (10, 3)
        } else {
            (model.len() as u64 + 1, 1 + k / 6 * 2)
        };
        let p = persist(k + 1, hs(term), first, 3, term);
        log.write(&p.view()).unwrap();
        log.sync().unwrap();
        model.truncate(first as usize - 1);
        model.extend((first..first + 3).map(|i| (i, term)));
        bounds.push(log.segment_offset());
        expected.push(model.clone());
    }
    (bounds, expected)
}

/// A built log, and copies of its directory with the segment replaced.
struct Fixture {
    src: tempfile::TempDir,
    seg: std::path::PathBuf,
    /// The segment's records (without its free space).
    full: Vec<u8>,
    /// The segment's preallocated size.
    size: usize,
    bounds: Vec<u64>,
    expected: Vec<Vec<(u64, u64)>>,
}

impl Fixture {
    fn new() -> Self {
        let src = tempfile::tempdir().unwrap();
        let (bounds, expected) = build(src.path());
        let seg = fs::read_dir(src.path().join("log"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut full = fs::read(&seg).unwrap();
        let size = full.len();
        assert_eq!(size, 64 << 10, "segments are preallocated");
        assert!(
            full[*bounds.last().unwrap() as usize..]
                .iter()
                .all(|&b| b == 0),
            "free space is zeros"
        );
        full.truncate(*bounds.last().unwrap() as usize);
        Self {
            src,
            seg,
            full,
            size,
            bounds,
            expected,
        }
    }

    /// A copy of the data directory whose segment holds `bytes`.
    fn with_segment(&self, bytes: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(self.src.path(), dir.path());
        fs::write(
            dir.path().join("log").join(self.seg.file_name().unwrap()),
            bytes,
        )
        .unwrap();
        dir
    }

    /// The same, as a preallocated segment: `bytes`, then zeros up to the segment's size.
    fn with_padded(&self, bytes: &[u8]) -> tempfile::TempDir {
        let mut padded = bytes.to_vec();
        padded.resize(self.size, 0);
        self.with_segment(&padded)
    }

    /// The same, as a recycled segment: `bytes`, then what a file that served as segment 2
    /// before still holds after them (records written by the log itself, a reset to a snapshot
    /// among them, at other offsets), then zeros.
    fn with_recycled(&self, bytes: &[u8]) -> tempfile::TempDir {
        let old = old_segment();
        let mut recycled = bytes.to_vec();
        if recycled.len() < old.len() {
            recycled.extend_from_slice(&old[recycled.len()..]);
        }
        recycled.resize(self.size, 0);
        self.with_segment(&recycled)
    }

    /// Every form: a segment cut where `bytes` ends, one whose free space (zeros) follows it,
    /// and a recycled one.
    fn variants(&self, bytes: &[u8]) -> [tempfile::TempDir; 3] {
        [
            self.with_segment(bytes),
            self.with_padded(bytes),
            self.with_recycled(bytes),
        ]
    }
}

/// The records of a segment 2 as the log writes them (a reset to a snapshot at 40, then
/// batches), preceded by 5 bytes so that they sit at other offsets than the fixture's.
fn old_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DiskLog::open_with(dir.path(), SMALL).unwrap();
    let mut p = persist(1, hs(4), 41, 3, 4);
    p.snapshot = Some(SnapshotId {
        index: Index(40),
        term: Term(4),
    });
    log.write(&p.view()).unwrap();
    for k in 0..8 {
        log.write(&persist(2 + k, hs(4), 44 + 3 * k, 3, 4).view())
            .unwrap();
    }
    log.sync().unwrap();
    let end = log.segment_offset() as usize;
    drop(log);
    let seg = fs::read(dir.path().join("log").join("seg-0000000002.log")).unwrap();
    let mut old = vec![0x55u8; 5];
    old.extend_from_slice(&seg[..end]);
    old
}

fn contents(log: &DiskLog) -> Vec<(u64, u64)> {
    (log.snapshot().index.0 + 1..=log.last_index().0)
        .map(|i| (i, log.term(Index(i)).unwrap().0))
        .collect()
}

#[test]
fn a_log_cut_at_any_record_boundary_recovers_exactly_that_prefix() {
    let f = Fixture::new();
    for (k, &b) in f.bounds.iter().enumerate() {
        for dir in f.variants(&f.full[..b as usize]) {
            // In the recycled form, the old records after the cut are free space.
            let (log, rec) = DiskLog::open(dir.path()).unwrap();
            assert_eq!(contents(&log), f.expected[k], "cut after record {k}");
            assert_eq!(rec.truncated_tail, None);
        }
    }
}

#[test]
fn a_torn_tail_at_any_offset_is_cut_off_and_never_served() {
    let f = Fixture::new();
    let mut rng = fastrand_seed(7);
    for _ in 0..200 {
        let cut = (rng() % f.full.len() as u64) as usize;
        for (form, dir) in f.variants(&f.full[..cut]).into_iter().enumerate() {
            let recycled = form == 2;
            let (log, rec) = DiskLog::open(dir.path()).unwrap();
            // The whole records before the cut, nothing of the torn one.
            let whole = f.bounds.iter().rposition(|&b| b as usize <= cut).unwrap();
            assert_eq!(contents(&log), f.expected[whole], "cut at {cut}");
            // The torn bytes, up to the last that is not zero (zeros are free space). A record
            // cut inside its 4-byte tag is not recognisably one of this segment: free space,
            // overwritten by the next append, not reported.
            let start = f.bounds[whole] as usize;
            let torn = f.full[start..cut]
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |p| p as u64 + 1);
            let tagged = cut - start >= 4;
            if recycled {
                // The old records of the recycled file lie beyond the cut: the report counts
                // no more than the torn record's own length.
                assert_eq!(
                    rec.truncated_tail.is_some(),
                    tagged && torn > 0,
                    "cut at {cut}"
                );
                let record = f.bounds[whole + 1] - f.bounds[whole];
                assert!(
                    rec.truncated_tail.is_none_or(|b| b >= torn && b <= record),
                    "cut at {cut}: {:?} torn bytes reported, the record is {record}",
                    rec.truncated_tail
                );
            } else {
                assert_eq!(
                    rec.truncated_tail,
                    (tagged && torn > 0).then_some(torn),
                    "cut at {cut}"
                );
            }
            // The cut is persistent: reopening finds a clean log.
            drop(log);
            let (log, rec) = DiskLog::open(dir.path()).unwrap();
            assert_eq!(contents(&log), f.expected[whole]);
            assert_eq!(rec.truncated_tail, None);
        }
    }
}

#[test]
fn a_bit_flip_before_the_tail_is_an_error_and_in_the_last_record_a_torn_write() {
    let f = Fixture::new();
    let last_start = f.bounds[f.bounds.len() - 2] as usize;
    let mut rng = fastrand_seed(11);
    for _ in 0..200 {
        let at = (rng() % f.full.len() as u64) as usize;
        let bit = 1u8 << (rng() % 8);
        let mut bytes = f.full.clone();
        bytes[at] ^= bit;
        for dir in f.variants(&bytes) {
            match DiskLog::open(dir.path()) {
                Ok((log, rec)) => {
                    assert!(
                        at >= last_start,
                        "a flip at {at}, before the last record, was accepted"
                    );
                    assert_eq!(contents(&log), f.expected[f.expected.len() - 2]);
                    // A flip in the last record's tag makes it no record of the segment: free
                    // space, not a torn write.
                    assert!(rec.truncated_tail.is_some() || at < last_start + 4);
                }
                Err(StorageError::Corrupt { offset, .. }) => {
                    assert!(
                        at < last_start,
                        "a flip at {at} in the last record was refused"
                    );
                    assert!(offset as usize <= at);
                }
                Err(e) => panic!("unexpected error for a flip at {at}: {e}"),
            }
        }
    }
}

#[test]
fn a_missing_or_damaged_state_file_is_refused() {
    let f = Fixture::new();
    let dir = f.with_segment(&f.full);
    fs::remove_file(dir.path().join("state")).unwrap();
    assert!(matches!(
        DiskLog::open(dir.path()),
        Err(StorageError::MissingState)
    ));
    let dir = f.with_segment(&f.full);
    let mut state = fs::read(dir.path().join("state")).unwrap();
    let n = state.len();
    state[n - 1] ^= 1;
    fs::write(dir.path().join("state"), state).unwrap();
    assert!(matches!(
        DiskLog::open(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
    // A fresh directory is a fresh log.
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = DiskLog::open(dir.path()).unwrap();
    assert_eq!(log.last_index(), Index(0));
    assert_eq!(log.hard_state(), HardState::default());
}

#[test]
fn hard_state_compaction_and_resets_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DiskLog::open(dir.path()).unwrap();
    for k in 0..5 {
        log.write(&persist(k + 1, hs(2), k * 3 + 1, 3, 2).view())
            .unwrap();
    }
    log.sync().unwrap();
    log.compact(SnapshotId {
        index: Index(6),
        term: Term(2),
    })
    .unwrap();
    drop(log);
    let (log, _) = DiskLog::open(dir.path()).unwrap();
    assert_eq!(log.snapshot().index, Index(6));
    assert_eq!(contents(&log).first(), Some(&(7, 2)));
    assert_eq!(log.last_index(), Index(15));
    assert_eq!(log.hard_state().term, Term(2));
    drop(log);
    // A reset to an installed snapshot discards everything before it, for good.
    let (mut log, _) = DiskLog::open(dir.path()).unwrap();
    let mut p = persist(9, hs(4), 41, 2, 4);
    p.snapshot = Some(SnapshotId {
        index: Index(40),
        term: Term(4),
    });
    log.write(&p.view()).unwrap();
    log.sync().unwrap();
    drop(log);
    let (log, _) = DiskLog::open(dir.path()).unwrap();
    assert_eq!(
        log.snapshot(),
        SnapshotId {
            index: Index(40),
            term: Term(4)
        }
    );
    assert_eq!(contents(&log), vec![(41, 4), (42, 4)]);
    assert_eq!(
        log.segment_count(),
        1,
        "segments before the reset were deleted"
    );
}

#[test]
fn segments_roll_and_compaction_deletes_the_covered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DiskLog::open(dir.path()).unwrap();
    let big = vec![7u8; 200_000];
    let mut index = 1;
    let mut token = 1;
    while log.segment_count() < 4 {
        let mut p = persist(token, hs(1), index, 0, 1);
        for _ in 0..raftlet::DEFAULT_BATCH {
            p.entries.push(Entry {
                term: Term(1),
                index: Index(index),
                data: EntryData::Normal(big.clone()),
            });
            index += 1;
        }
        log.write(&p.view()).unwrap();
        token += 1;
    }
    log.sync().unwrap();
    let last = log.last_index();
    log.compact(SnapshotId {
        index: Index(last.0 - 10),
        term: Term(1),
    })
    .unwrap();
    assert!(
        log.segment_count() <= 2,
        "{} segments left",
        log.segment_count()
    );
    drop(log);
    let (log, rec) = DiskLog::open(dir.path()).unwrap();
    assert_eq!(log.last_index(), last);
    assert_eq!(log.snapshot().index, Index(last.0 - 10));
    assert!(rec.segments <= 2);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to.join("log")).unwrap();
    for name in ["state"] {
        if from.join(name).exists() {
            fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
    for e in fs::read_dir(from.join("log")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join("log").join(e.file_name())).unwrap();
    }
}

/// A tiny deterministic generator (splitmix64), so the test needs no extra crate.
fn fastrand_seed(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn a_data_directory_holds_one_open_log_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = DiskLog::open(dir.path()).unwrap();
    match DiskLog::open(dir.path()) {
        Err(StorageError::Locked(d)) => assert_eq!(d, dir.path()),
        other => panic!("a second open of a used directory: {other:?}"),
    }
    drop(log);
    DiskLog::open(dir.path()).expect("free again once the first is closed");
}

/// Compaction recycles a freed segment as the next spare instead of deleting it: no new file is
/// created while the log rolls on, the recycled file still holds its old records after the new
/// ones, and a reopen serves exactly the new log (the old records are another segment's).
#[test]
fn freed_segments_are_recycled_and_their_old_records_are_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DiskLog::open_with(dir.path(), SMALL).unwrap();
    let big = vec![7u8; 6_000];
    let mut index = 1;
    let mut write = |log: &mut DiskLog, n: u64| {
        for _ in 0..n {
            let mut p = persist(index, hs(1), index, 0, 1);
            p.entries.push(Entry {
                term: Term(1),
                index: Index(index),
                data: EntryData::Normal(big.clone()),
            });
            log.write(&p.view()).unwrap();
            log.sync().unwrap();
            index += 1;
        }
    };
    // Fill three segments, then compact everything but the current one away.
    while log.segment_count() < 3 {
        write(&mut log, 1);
    }
    let compact_to = Index(log.last_index().0 - 1);
    log.compact(SnapshotId {
        index: compact_to,
        term: Term(1),
    })
    .unwrap();
    assert_eq!(log.recycled(), 2, "both freed segments became spares");
    let files = |d: &std::path::Path| fs::read_dir(d.join("log")).unwrap().count();
    let before = files(dir.path());
    // Roll into the recycled file and write a little.
    let seg = log.segment_count();
    while log.segment_count() == seg {
        write(&mut log, 1);
    }
    write(&mut log, 1);
    assert_eq!(
        files(dir.path()),
        before,
        "the roll took the recycled spare: no file was created"
    );
    let last = log.last_index();
    let expected = contents(&log);
    drop(log);
    // The current segment is the recycled file: its old records are still there after the new.
    let newest = fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let bytes = fs::read(&newest).unwrap();
    let non_zero = bytes.iter().filter(|&&b| b != 0).count();
    assert!(
        non_zero > 3 * big.len(),
        "the recycled segment still holds old records ({non_zero} non-zero bytes)"
    );
    let (log, rec) = DiskLog::open_with(dir.path(), SMALL).unwrap();
    assert_eq!(log.last_index(), last);
    assert_eq!(contents(&log), expected);
    assert_eq!(
        rec.truncated_tail, None,
        "old records are free space, not a torn write"
    );
}
