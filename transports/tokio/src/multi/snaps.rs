//! Snapshot files of a host's groups.
//!
//! # Layout
//! `snap/<group>-<epoch>-<index>-<term>.snap`, one file per snapshot kept:
//! `magic (4) | crc32 of the body (4) | body` (the single-group runner's snapshot file format,
//! `crate::snapshot`), the body being the postcard encoding of the
//! group's membership at that index and the state machine's bytes ([`encode`]); a leader
//! streams the body as it is. The epoch is the group's incarnation in the shared log
//! ([`super::wal`]): files of another incarnation of the same group id are never read.
//!
//! # Invariants
//! * A file is written atomically (temporary file, fsync, rename, fsync of the directory), so a
//!   name that exists holds a whole snapshot, and a snapshot is durable before anything that
//!   relies on it (the node's compaction, an install's report) happens.
//! * Saves and deletions run in the order they were asked, on one thread of their own
//!   ([`Saver`]): a deletion asked after a save removes what that save wrote.
//! * [`open`] keeps only the newest intact file of each live `(group, epoch)`, and deletes every
//!   other file, so after it no file of a removed group or older incarnation is left.
//!
//! A group keeps at most two files: the newest, and the one it replaces until the new one is
//! durable.

use super::host::GroupMembership;
use super::wal::GroupId;
use crate::snapshot::{seal, unseal};
use crate::storage::write_atomic;
use raftlet::{Index, SnapshotId, Term};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes per streamed chunk (well inside a 64 KiB group frame).
pub const CHUNK: usize = 32 << 10;

/// Which incarnation of which group.
pub type GroupKey = (GroupId, u64);

/// A snapshot's body: the membership at its index and the state machine's bytes.
pub fn encode(membership: &GroupMembership, data: &[u8]) -> Vec<u8> {
    postcard::to_allocvec(&(membership, data)).expect("a membership and bytes serialize")
}

/// The membership and the state machine's bytes of a body, if it is one.
pub fn decode(body: &[u8]) -> Option<(GroupMembership, Vec<u8>)> {
    postcard::from_bytes(body).ok()
}

fn name(key: GroupKey, id: SnapshotId) -> String {
    format!(
        "{:020}-{:020}-{:020}-{:020}.snap",
        key.0, key.1, id.index.0, id.term.0
    )
}

fn parse(name: &str) -> Option<(GroupKey, SnapshotId)> {
    let mut it = name.strip_suffix(".snap")?.split('-');
    let mut next = || it.next()?.parse::<u64>().ok();
    let (g, e, i, t) = (next()?, next()?, next()?, next()?);
    Some((
        (g, e),
        SnapshotId {
            index: Index(i),
            term: Term(t),
        },
    ))
}

/// The checksum a leader sends with a body's last chunk (CRC-32 of the whole body).
pub fn checksum(body: &[u8]) -> u64 {
    u64::from(crc32fast::hash(body))
}

/// Chunk `seq` of `body` ([`CHUNK`] bytes, the last one shorter) and, with the last one, the
/// body's [`checksum`]. `None` past the end.
pub fn chunk(body: &[u8], seq: u32) -> Option<(&[u8], Option<u64>)> {
    let start = (seq as usize).checked_mul(CHUNK)?;
    let rest = body.get(start..)?;
    if rest.is_empty() && seq > 0 {
        return None;
    }
    let part = &rest[..rest.len().min(CHUNK)];
    let last = part.len() == rest.len();
    Some((part, last.then(|| checksum(body))))
}

/// A body being received in chunks, in order.
#[derive(Debug, Default)]
pub struct Staging(Option<(SnapshotId, Vec<u8>)>);

impl Staging {
    /// Chunk `seq` of `snapshot`: chunk 0 starts over; a later one extends what was staged of
    /// the same snapshot, and otherwise leaves nothing staged (so that the install fails its
    /// checksum and the leader starts again).
    pub fn push(&mut self, snapshot: SnapshotId, seq: u32, data: &[u8]) {
        if seq == 0 {
            self.0 = Some((snapshot, data.to_vec()));
            return;
        }
        match &mut self.0 {
            Some((id, body)) if *id == snapshot => body.extend_from_slice(data),
            _ => self.0 = None,
        }
    }

    /// The staged body if it is all of `snapshot` (its [`checksum`] is `sum`); nothing stays
    /// staged either way.
    pub fn finish(&mut self, snapshot: SnapshotId, sum: u64) -> Option<Vec<u8>> {
        self.0
            .take()
            .filter(|(id, body)| *id == snapshot && checksum(body) == sum)
            .map(|(_, body)| body)
    }
}

/// The file's body if it is whole and intact.
fn read_body(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(unseal(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The snapshot directory of a host.
#[derive(Debug, Clone)]
pub struct SnapDir {
    dir: PathBuf,
}

/// What [`open`] found for one group.
#[derive(Debug)]
pub struct Found {
    /// The snapshot.
    pub id: SnapshotId,
    /// The membership at its index.
    pub membership: GroupMembership,
    /// The state machine's bytes.
    pub data: Vec<u8>,
}

/// Opens `dir/snap`: returns the newest intact snapshot of each live group incarnation
/// (`live`), and deletes every other file.
///
/// # Errors
/// I/O errors.
pub fn open(
    dir: &Path,
    live: &HashMap<GroupId, u64>,
) -> io::Result<(SnapDir, BTreeMap<GroupId, Found>)> {
    let dir = dir.join("snap");
    fs::create_dir_all(&dir)?;
    let mut files: BTreeMap<GroupKey, Vec<SnapshotId>> = BTreeMap::new();
    let mut stray = Vec::new();
    for e in fs::read_dir(&dir)? {
        let n = e?.file_name();
        let n = n.to_string_lossy();
        match parse(&n) {
            Some((key, id)) if live.get(&key.0) == Some(&key.1) => {
                files.entry(key).or_default().push(id);
            }
            _ => stray.push(dir.join(&*n)),
        }
    }
    let mut found = BTreeMap::new();
    for (key, mut ids) in files {
        ids.sort_unstable_by_key(|id| id.index);
        // Newest first: the first intact one is kept, every other goes.
        let mut kept = false;
        while let Some(id) = ids.pop() {
            let path = dir.join(name(key, id));
            if !kept && let Some((membership, data)) = read_body(&path)?.and_then(|b| decode(&b)) {
                found.insert(
                    key.0,
                    Found {
                        id,
                        membership,
                        data,
                    },
                );
                kept = true;
                continue;
            }
            if !kept {
                log::warn!("skipping damaged snapshot file {}", path.display());
            }
            stray.push(path);
        }
    }
    for p in &stray {
        fs::remove_file(p)?;
    }
    if !stray.is_empty() {
        fs::File::open(&dir)?.sync_all()?;
    }
    Ok((SnapDir { dir }, found))
}

impl SnapDir {
    /// The body of `key`'s snapshot `id`, if its file is there and intact.
    ///
    /// # Errors
    /// I/O errors.
    pub fn read(&self, key: GroupKey, id: SnapshotId) -> io::Result<Option<Vec<u8>>> {
        read_body(&self.dir.join(name(key, id)))
    }

    /// Saves `key`'s snapshot `id` (its [`encode`]d body) durably, then deletes its snapshot
    /// `replaces` (if any).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(
        &self,
        key: GroupKey,
        id: SnapshotId,
        body: &[u8],
        replaces: Option<SnapshotId>,
    ) -> io::Result<()> {
        write_atomic(&self.dir.join(name(key, id)), &seal(body))?;
        if let Some(old) = replaces.filter(|&o| o != id) {
            self.delete(key, old)?;
        }
        Ok(())
    }

    /// Deletes `key`'s snapshot `id` (gone already is fine).
    ///
    /// # Errors
    /// I/O errors.
    pub fn delete(&self, key: GroupKey, id: SnapshotId) -> io::Result<()> {
        match fs::remove_file(self.dir.join(name(key, id))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The bodies leaders are streaming, at most one per group, each read from its file once per
/// transfer and held until the transfer ends.
#[derive(Debug, Default)]
pub struct Sending(HashMap<GroupId, (SnapshotId, Arc<Vec<u8>>)>);

impl Sending {
    /// `key`'s snapshot `id`: the body held if it is that snapshot's, else read from `dir` and
    /// held instead. `None` if its file is gone (a newer snapshot replaced it).
    ///
    /// # Errors
    /// I/O errors.
    pub fn body(
        &mut self,
        dir: &SnapDir,
        key: GroupKey,
        id: SnapshotId,
    ) -> io::Result<Option<Arc<Vec<u8>>>> {
        if let Some((held, body)) = self.0.get(&key.0)
            && *held == id
        {
            return Ok(Some(body.clone()));
        }
        let Some(body) = dir.read(key, id)?.map(Arc::new) else {
            return Ok(None);
        };
        self.0.insert(key.0, (id, body.clone()));
        Ok(Some(body))
    }

    /// Group `group`'s transfer ended: its body is dropped.
    pub fn end(&mut self, group: GroupId) {
        if !self.0.is_empty() {
            self.0.remove(&group);
        }
    }

    /// Bodies held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a snapshot was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The host took it of its own state machine: the node may compact up to it.
    Taken,
    /// A leader sent it and the state machine restored it: the install may be reported.
    Installed,
}

/// A save or a deletion for the saver thread.
enum Job {
    Save {
        key: GroupKey,
        id: SnapshotId,
        body: Vec<u8>,
        replaces: Option<SnapshotId>,
        purpose: Purpose,
    },
    Delete {
        key: GroupKey,
        id: SnapshotId,
    },
}

/// A finished save.
#[derive(Debug)]
pub struct Saved {
    /// Whose.
    pub key: GroupKey,
    /// Which.
    pub id: SnapshotId,
    /// Why.
    pub purpose: Purpose,
    /// Whether it is durable.
    pub result: io::Result<()>,
}

/// One thread that saves and deletes snapshot files in the order asked, off the host's task,
/// and reports each save on a channel.
#[derive(Debug)]
pub struct Saver {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Saver {
    /// Starts the thread.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(
        dir: SnapDir,
        done: tokio::sync::mpsc::UnboundedSender<Saved>,
    ) -> io::Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("raftlet-snapshots".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Save {
                            key,
                            id,
                            body,
                            replaces,
                            purpose,
                        } => {
                            let result = dir.save(key, id, &body, replaces);
                            if done
                                .send(Saved {
                                    key,
                                    id,
                                    purpose,
                                    result,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                        Job::Delete { key, id } => {
                            if let Err(e) = dir.delete(key, id) {
                                log::warn!("deleting snapshot {key:?} {id:?}: {e}");
                            }
                        }
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Saves `key`'s snapshot `id` (its [`encode`]d body) and then deletes `replaces`; reports
    /// on the channel.
    pub fn save(
        &self,
        key: GroupKey,
        id: SnapshotId,
        body: Vec<u8>,
        replaces: Option<SnapshotId>,
        purpose: Purpose,
    ) {
        let _ = self.jobs.send(Job::Save {
            key,
            id,
            body,
            replaces,
            purpose,
        });
    }

    /// Deletes `key`'s snapshot `id` after every save asked before.
    pub fn delete(&self, key: GroupKey, id: SnapshotId) {
        let _ = self.jobs.send(Job::Delete { key, id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64, t: u64) -> SnapshotId {
        SnapshotId {
            index: Index(i),
            term: Term(t),
        }
    }

    #[test]
    fn chunks_cover_the_body_and_the_last_carries_its_checksum() {
        let body: Vec<u8> = (0..(2 * CHUNK + 100)).map(|i| i as u8).collect();
        let sum = checksum(&body);
        assert_eq!(chunk(&body, 0), Some((&body[..CHUNK], None)));
        assert_eq!(chunk(&body, 1), Some((&body[CHUNK..2 * CHUNK], None)));
        assert_eq!(chunk(&body, 2), Some((&body[2 * CHUNK..], Some(sum))));
        assert_eq!(chunk(&body, 3), None);
        assert_eq!(chunk(&body, u32::MAX), None);
        // A body of whole chunks: the last full one carries the checksum, nothing follows.
        let whole = &body[..2 * CHUNK];
        assert_eq!(
            chunk(whole, 1),
            Some((&whole[CHUNK..], Some(checksum(whole))))
        );
        assert_eq!(chunk(whole, 2), None);
        // An empty body is one empty chunk.
        assert_eq!(chunk(&[], 0), Some((&[][..], Some(checksum(&[])))));
        assert_eq!(chunk(&[], 1), None);
    }

    #[test]
    fn staging_keeps_one_snapshot_in_order() {
        let (a, b) = (id(10, 1), id(20, 1));
        let mut st = Staging::default();
        st.push(a, 0, b"ab");
        st.push(a, 1, b"cd");
        assert_eq!(st.finish(a, checksum(b"abcd")), Some(b"abcd".to_vec()));
        assert_eq!(
            st.finish(a, checksum(b"abcd")),
            None,
            "finished: nothing staged"
        );
        // Chunk 0 again starts over, even of the same snapshot.
        st.push(a, 0, b"ab");
        st.push(a, 1, b"cd");
        st.push(a, 0, b"xy");
        assert_eq!(st.finish(a, checksum(b"xy")), Some(b"xy".to_vec()));
        // A later chunk of another snapshot leaves nothing staged.
        st.push(a, 0, b"ab");
        st.push(b, 1, b"cd");
        assert_eq!(st.finish(b, checksum(b"cd")), None);
        assert_eq!(st.finish(a, checksum(b"ab")), None);
        // A wrong checksum, or another snapshot's, gives nothing and empties the staging.
        st.push(a, 0, b"ab");
        assert_eq!(st.finish(a, checksum(b"ba")), None);
        assert_eq!(st.finish(a, checksum(b"ab")), None);
        st.push(a, 0, b"ab");
        assert_eq!(st.finish(b, checksum(b"ab")), None);
        assert_eq!(st.finish(a, checksum(b"ab")), None);
    }

    #[test]
    fn deleting_a_missing_file_is_fine_and_other_errors_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, _) = open(tmp.path(), &HashMap::new()).unwrap();
        d.delete((1, 1), id(5, 1)).unwrap();
        // A directory where the file would be: not removable as a file.
        fs::create_dir(tmp.path().join("snap").join(name((1, 1), id(5, 1)))).unwrap();
        assert!(d.delete((1, 1), id(5, 1)).is_err());
    }

    #[test]
    fn a_body_is_read_once_per_transfer_and_only_for_its_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, _) = open(tmp.path(), &HashMap::new()).unwrap();
        let (s1, s2) = (id(10, 1), id(20, 1));
        d.save((1, 1), s1, b"one", None).unwrap();
        let mut sending = Sending::default();
        assert_eq!(
            sending.body(&d, (1, 1), s1).unwrap().unwrap().as_slice(),
            b"one"
        );
        // Held: the file may go meanwhile.
        d.save((1, 1), s2, b"two", Some(s1)).unwrap();
        assert_eq!(
            sending.body(&d, (1, 1), s1).unwrap().unwrap().as_slice(),
            b"one"
        );
        // Another snapshot of the group is read and replaces it.
        assert_eq!(
            sending.body(&d, (1, 1), s2).unwrap().unwrap().as_slice(),
            b"two"
        );
        assert_eq!(
            sending.body(&d, (1, 1), s1).unwrap(),
            None,
            "s1's file is gone"
        );
        assert_eq!(sending.len(), 1);
        sending.end(1);
        assert!(sending.is_empty());
        sending.end(1);
        d.delete((1, 1), s2).unwrap();
        assert_eq!(
            sending.body(&d, (1, 1), s2).unwrap(),
            None,
            "ended: read again"
        );
    }

    #[test]
    fn names_round_trip() {
        let n = name((7, 3), id(1200, 4));
        assert_eq!(parse(&n), Some(((7, 3), id(1200, 4))));
        assert_eq!(parse("7-3-1200.snap"), None);
        assert_eq!(parse("a-3-1200-4.snap"), None);
        assert_eq!(parse("7-3-1200-4.tmp"), None);
    }

    fn body(data: &[u8]) -> Vec<u8> {
        let m = GroupMembership::new(&[raftlet::NodeId(1), raftlet::NodeId(4)]).unwrap();
        encode(&m, data)
    }

    #[test]
    fn open_keeps_the_newest_intact_file_of_live_incarnations_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, found) = open(tmp.path(), &HashMap::new()).unwrap();
        assert!(found.is_empty());
        d.save((1, 1), id(10, 1), &body(b"ten"), None).unwrap();
        d.save((1, 1), id(20, 2), &body(b"twenty"), None).unwrap();
        // A newer file that is damaged: the older intact one is used.
        d.save((1, 1), id(30, 2), &body(b"thirty"), None).unwrap();
        let p = tmp.path().join("snap").join(name((1, 1), id(30, 2)));
        let mut b = fs::read(&p).unwrap();
        *b.last_mut().unwrap() ^= 1;
        fs::write(&p, b).unwrap();
        // An older incarnation of group 1, and a removed group 2.
        d.save((1, 0), id(50, 1), &body(b"old"), None).unwrap();
        d.save((2, 1), id(5, 1), &body(b"gone"), None).unwrap();
        // Intact bytes that are not a body.
        d.save((3, 1), id(9, 1), b"not a body", None).unwrap();
        fs::write(tmp.path().join("snap").join("junk.tmp"), b"x").unwrap();
        let live = HashMap::from([(1, 1), (3, 1)]);
        let (d, found) = open(tmp.path(), &live).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[&1].id, id(20, 2));
        assert_eq!(found[&1].data, b"twenty");
        assert_eq!(
            found[&1].membership.voters(),
            [raftlet::NodeId(1), raftlet::NodeId(4)]
        );
        let left: Vec<_> = fs::read_dir(tmp.path().join("snap"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![name((1, 1), id(20, 2))]);
        assert_eq!(d.read((1, 1), id(20, 2)).unwrap().unwrap(), body(b"twenty"));
        assert_eq!(d.read((1, 1), id(10, 1)).unwrap(), None);
    }

    #[test]
    fn saves_replace_and_deletions_follow_saves_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (d, _) = open(tmp.path(), &HashMap::new()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let saver = Saver::start(d.clone(), tx).unwrap();
        saver.save((4, 2), id(10, 1), b"a".to_vec(), None, Purpose::Taken);
        saver.save(
            (4, 2),
            id(20, 1),
            b"b".to_vec(),
            Some(id(10, 1)),
            Purpose::Installed,
        );
        saver.delete((4, 2), id(20, 1));
        let first = rx.blocking_recv().unwrap();
        assert_eq!((first.id, first.purpose), (id(10, 1), Purpose::Taken));
        let second = rx.blocking_recv().unwrap();
        assert_eq!((second.id, second.purpose), (id(20, 1), Purpose::Installed));
        assert!(second.result.is_ok());
        drop(saver);
        // The deletion ran after both saves: nothing is left.
        for _ in 0..100 {
            if fs::read_dir(tmp.path().join("snap")).unwrap().count() == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("files left after the deletion");
    }
}
