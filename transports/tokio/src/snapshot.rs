//! Snapshot files.
//!
//! `snap/<index>-<term>.snap` holds `magic | crc32 of the body | body`, the body being the
//! postcard encoding of the snapshot's [`Meta`] (id and membership) and the state machine's
//! bytes. Files are written atomically (temporary file, fsync, rename, fsync of the directory);
//! the newest two are kept. In stream mode the leader sends the body in chunks of
//! [`CHUNK`] bytes, with `crc32(body)` as the checksum; the follower stages them in
//! `snap/staging`, verifies the checksum, and only then turns them into a snapshot file.

use crate::storage::write_atomic;
use raftlet::{SnapshotId, SnapshotMeta};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The snapshot metadata of the tokio runner (its node has room for 7 members).
pub type Meta = SnapshotMeta<{ raftlet::DEFAULT_MEMBERS }>;

/// Bytes per streamed chunk.
pub const CHUNK: usize = 64 << 10;

const MAGIC: u32 = 0x5041_4E53; // "SNAP"

/// A snapshot file's bytes: `magic | crc32 of the body | body`.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + body.len());
    bytes.extend_from_slice(&MAGIC.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// The body of a snapshot file's bytes ([`seal`]) if they are whole and intact.
pub(crate) fn unseal(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    if bytes.len() < 8
        || u32::from_le_bytes(bytes[0..4].try_into().expect("4")) != MAGIC
        || u32::from_le_bytes(bytes[4..8].try_into().expect("4")) != crc32fast::hash(&bytes[8..])
    {
        return None;
    }
    bytes.drain(..8);
    Some(bytes)
}

/// The snapshots of one node.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    staging: Option<(SnapshotId, File)>,
    /// The body being streamed to followers (read once, sent in many chunks).
    sending: Option<(SnapshotId, Arc<Vec<u8>>)>,
}

fn encode_body(meta: &Meta, data: &[u8]) -> Vec<u8> {
    postcard::to_allocvec(&(meta, data)).expect("snapshots serialize")
}

fn decode_body(body: &[u8]) -> Option<(Meta, Vec<u8>)> {
    postcard::from_bytes::<(Meta, Vec<u8>)>(body).ok()
}

/// Snapshot file names in `dir`, oldest first.
fn names_in(dir: &std::path::Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    names.sort();
    Ok(names)
}

fn snap_path(dir: &std::path::Path, id: SnapshotId) -> PathBuf {
    dir.join(format!("{:020}-{:020}.snap", id.index.0, id.term.0))
}

/// Saves snapshots into a [`SnapshotStore`]'s directory; see [`SnapshotStore::saver`].
#[derive(Debug, Clone)]
pub struct Saver {
    dir: PathBuf,
}

impl Saver {
    /// Saves a snapshot durably and prunes all but the newest two.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, meta: &Meta, data: &[u8]) -> io::Result<()> {
        self.save_body(meta.id, &encode_body(meta, data))
    }

    fn save_body(&self, id: SnapshotId, body: &[u8]) -> io::Result<()> {
        write_atomic(&snap_path(&self.dir, id), &seal(body))?;
        let mut names = names_in(&self.dir)?;
        while names.len() > 2 {
            fs::remove_file(self.dir.join(names.remove(0)))?;
        }
        Ok(())
    }
}

impl SnapshotStore {
    /// Opens `dir/snap`, discarding any partial staging left by a crash.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into().join("snap");
        fs::create_dir_all(&dir)?;
        let _ = fs::remove_file(dir.join("staging"));
        Ok(Self {
            dir,
            staging: None,
            sending: None,
        })
    }

    /// Saves a snapshot durably and prunes all but the newest two.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, meta: &Meta, data: &[u8]) -> io::Result<()> {
        self.saver().save(meta, data)
    }

    /// Something that saves snapshots into this store from another thread (the runner saves
    /// the snapshots it takes off its own task).
    pub fn saver(&self) -> Saver {
        Saver {
            dir: self.dir.clone(),
        }
    }

    fn save_body(&self, id: SnapshotId, body: &[u8]) -> io::Result<()> {
        self.saver().save_body(id, body)
    }

    /// Snapshot file names, oldest first.
    fn names(&self) -> io::Result<Vec<String>> {
        names_in(&self.dir)
    }

    fn read_body(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(unseal(fs::read(self.dir.join(name))?))
    }

    /// The newest intact snapshot.
    ///
    /// # Errors
    /// I/O errors.
    pub fn latest(&self) -> io::Result<Option<(Meta, Vec<u8>)>> {
        for name in self.names()?.iter().rev() {
            if let Some(found) = self.read_body(name)?.and_then(|b| decode_body(&b)) {
                return Ok(Some(found));
            }
            log::warn!("skipping damaged snapshot file {name}");
        }
        Ok(None)
    }

    /// Chunk `seq` of snapshot `id`, and the checksum of the whole body if it is the last.
    /// `None` if the snapshot is gone or has no such chunk.
    ///
    /// # Errors
    /// I/O errors.
    pub fn chunk(
        &mut self,
        id: SnapshotId,
        seq: u32,
    ) -> io::Result<Option<(Vec<u8>, Option<u64>)>> {
        let body = match &self.sending {
            Some((sid, body)) if *sid == id => body.clone(),
            _ => {
                let name = format!("{:020}-{:020}.snap", id.index.0, id.term.0);
                let Ok(Some(body)) = self.read_body(&name) else {
                    return Ok(None);
                };
                let body = Arc::new(body);
                self.sending = Some((id, body.clone()));
                body
            }
        };
        let start = seq as usize * CHUNK;
        if start > body.len() || (start == body.len() && start > 0) {
            return Ok(None);
        }
        let end = (start + CHUNK).min(body.len());
        let last = end == body.len();
        Ok(Some((
            body[start..end].to_vec(),
            last.then(|| u64::from(crc32fast::hash(&body))),
        )))
    }

    /// Stages chunk `seq` of snapshot `id` (chunk 0 starts over).
    ///
    /// # Errors
    /// I/O errors.
    pub fn stage(&mut self, id: SnapshotId, seq: u32, data: &[u8]) -> io::Result<()> {
        if seq == 0 || self.staging.as_ref().is_none_or(|(sid, _)| *sid != id) {
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(self.dir.join("staging"))?;
            self.staging = Some((id, f));
        }
        let (_, f) = self.staging.as_mut().expect("staging open");
        f.write_all(data)
    }

    /// Verifies the staged snapshot against `checksum`; if it matches, saves it as a snapshot
    /// file and returns it. `None` (staging discarded) if it does not.
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish_staging(
        &mut self,
        id: SnapshotId,
        checksum: u64,
    ) -> io::Result<Option<(Meta, Vec<u8>)>> {
        let Some((sid, f)) = self.staging.take() else {
            return Ok(None);
        };
        drop(f);
        let path = self.dir.join("staging");
        let body = fs::read(&path)?;
        let _ = fs::remove_file(&path);
        if sid != id || u64::from(crc32fast::hash(&body)) != checksum {
            return Ok(None);
        }
        let Some((meta, data)) = decode_body(&body) else {
            return Ok(None);
        };
        if meta.id != id {
            return Ok(None);
        }
        self.save_body(id, &body)?;
        Ok(Some((meta, data)))
    }
}
