//! A [`Store`] on NOR flash (any `embedded-storage-async` [`NorFlash`]), safe across power
//! loss at any point.
//!
//! # Layout
//! The flash region is cut into erase sectors: sectors 0 and 1 hold **state records** (the hard
//! state and the log's start), sectors `2..2 + S` are a **ring of log sectors**.
//! * A state record is `magic, sequence, length, CRC-32, payload`, padded to the write size.
//!   Records are appended to the current state sector; when it is full, the other one is erased
//!   and written next. The valid record with the highest sequence wins.
//! * A log sector starts with a header (`magic`, sector sequence); records follow, each
//!   `length, marker, CRC-32, payload` (postcard of a batch of entries, or of a reset to an
//!   installed snapshot), padded to the write size. Erased flash (`0xFF`) ends a sector.
//!
//! # Power loss
//! A record is valid only if its CRC matches, so a record torn by a power loss is never read.
//! After a restart, writing resumes in a fresh sector (flash cannot be rewritten in place
//! without an erase). A damaged record before the last sector's end is reported as corruption,
//! not skipped. A state record is written after the log records it refers to (a reset record
//! before the state that moves the log's start past it), so every prefix of a persist that
//! reached the flash recovers to a consistent state; a persist is durable when its future
//! completes (NOR flash programs synchronously).
//!
//! # Space
//! Sectors are reused oldest first. One can be erased when everything in it is compacted (or
//! precedes a reset). If the next sector still holds live entries, `persist` fails with
//! [`FlashError::Full`]: compact (take snapshots) more often, or give the store more sectors.
//! The entries since the log's start are also kept in RAM (`N` of them), from which the node
//! reads.

use crate::store::{RamStore, Store};
use embedded_storage_async::nor_flash::NorFlash;
use raftlet::{Entry, HardState, Index, Persist, SnapshotId, Storage, Term};
use serde::{Deserialize, Serialize};

const STATE_MAGIC: u32 = 0x5354_4154;
const SECTOR_MAGIC: u32 = 0x5345_4354;
const RECORD_MARKER: u16 = 0xA55A;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why the flash store failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FlashError<E> {
    /// The flash driver failed.
    Flash(E),
    /// No log sector can be reused yet, or the RAM copy of the log is full: compact first.
    Full,
    /// A record does not fit in a sector (or in the record buffer `REC`).
    TooLarge,
    /// The region is too small for two state sectors and `S` log sectors.
    TooSmall,
    /// A record before the end of the log fails its checks.
    Corrupt,
    /// The store was made with [`FlashStore::unopened`] and not [`recover`](FlashStore::recover)ed
    /// yet: writing now could destroy what the flash holds.
    NotOpened,
}

/// Entries per log record (a persist's entries are written in records of at most this many).
pub const RECORD_ENTRIES: usize = raftlet::TINY_BATCH;

/// Record kinds: a batch of entries, or a reset to an installed snapshot.
const KIND_ENTRIES: u8 = 0;
const KIND_RESET: u8 = 1;

#[derive(Serialize, Deserialize, Clone, Copy)]
struct StateRec {
    seq: u32,
    hs: HardState,
    base: SnapshotId,
}

#[derive(Clone, Copy, Debug, Default)]
struct SectorInfo {
    /// 0: erased (or never used).
    seq: u32,
    /// The highest entry index written in it.
    max_index: Index,
}

/// A [`Store`] on NOR flash. `N`: entries kept in RAM since the log's start; `S`: log sectors;
/// `REC`: the largest encoded record (a batch of entries), for the encoding buffer.
pub struct FlashStore<F, P, const N: usize, const S: usize, const REC: usize> {
    flash: F,
    /// What the flash holds, in RAM (the node reads from here).
    mem: RamStore<P, N>,
    sectors: [SectorInfo; S],
    /// Log sectors whose sequence is below this precede the newest reset: all obsolete.
    reset_seq: u32,
    cur: usize,
    off: u32,
    next_seq: u32,
    state_seq: u32,
    state_sector: u32,
    state_off: u32,
    buf: [u8; REC],
    /// `recover` ran and succeeded.
    opened: bool,
}

fn align(n: usize, to: usize) -> usize {
    n.div_ceil(to.max(1)) * to.max(1)
}

impl<F: NorFlash, P, const N: usize, const S: usize, const REC: usize> FlashStore<F, P, N, S, REC>
where
    P: Clone + Serialize + for<'de> Deserialize<'de>,
{
    const SECTOR: u32 = F::ERASE_SIZE as u32;

    fn header_len() -> usize {
        align(12, F::WRITE_SIZE)
    }
    fn log_sector(i: usize) -> u32 {
        (2 + i as u32) * Self::SECTOR
    }

    /// Opens the store on `flash` (the whole device or partition), recovering what a previous
    /// run persisted. An erased region is an empty store.
    ///
    /// # Errors
    /// [`FlashError`]: driver errors, a region too small, corruption before the log's end.
    pub async fn open(flash: F) -> Result<Self, FlashError<F::Error>> {
        let mut me = Self::unopened(flash);
        me.recover().await?;
        Ok(me)
    }

    /// The store on `flash` before recovery: empty, refusing every write
    /// ([`FlashError::NotOpened`]) until [`recover`](Self::recover) has run. With `recover`,
    /// the way to open a store where it lives (say a `static`) rather than on the stack:
    /// [`open`](Self::open) builds the whole store inside its future and returns it by value.
    pub fn unopened(flash: F) -> Self {
        Self {
            mem: RamStore::new(),
            sectors: [SectorInfo::default(); S],
            reset_seq: 0,
            cur: 0,
            off: Self::SECTOR,
            next_seq: 1,
            state_seq: 0,
            state_sector: 0,
            state_off: Self::SECTOR,
            buf: [0; REC],
            flash,
            opened: false,
        }
    }

    /// Recovers, in place, what a previous run persisted (an erased region is an empty store),
    /// on a store from [`unopened`](Self::unopened). Does nothing on a store already recovered.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn recover(&mut self) -> Result<(), FlashError<F::Error>> {
        if self.opened {
            return Ok(());
        }
        if self.flash.capacity() < (S + 2) * F::ERASE_SIZE || S < 2 || REC + 16 > F::ERASE_SIZE {
            return Err(FlashError::TooSmall);
        }
        self.recover_state().await?;
        self.recover_log().await?;
        self.opened = true;
        Ok(())
    }

    async fn read(&mut self, at: u32, len: usize) -> Result<(), FlashError<F::Error>> {
        let len = align(len, F::READ_SIZE);
        if len > REC {
            return Err(FlashError::TooLarge);
        }
        self.flash
            .read(at, &mut self.buf[..len])
            .await
            .map_err(FlashError::Flash)
    }

    /// Reads the three words of a state record header at `at` (magic, sequence, length);
    /// `None` if that flash is erased.
    async fn header(&mut self, at: u32) -> Result<Option<(u32, u32, u32)>, FlashError<F::Error>> {
        self.read(at, 12).await?;
        let b = &self.buf;
        let w = |k: usize| u32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
        if b[..12].iter().all(|&x| x == 0xFF) {
            return Ok(None);
        }
        Ok(Some((w(0), w(4), w(8))))
    }

    async fn recover_state(&mut self) -> Result<(), FlashError<F::Error>> {
        let mut best: Option<(StateRec, u32)> = None;
        for sector in 0..2u32 {
            let mut at = sector * Self::SECTOR;
            let end = at + Self::SECTOR;
            while at + 12 <= end {
                let Some((magic, seq, len)) = self.header(at).await? else {
                    break;
                };
                let len = len as usize;
                // Untrusted lengths (a torn header) are checked before any arithmetic.
                if magic != STATE_MAGIC || len > REC - 16 {
                    break; // torn or never written: what follows is not ours
                }
                let total = align(16 + len, F::WRITE_SIZE) as u32;
                if at + total > end {
                    break;
                }
                self.read(at, 16 + len).await?;
                let crc = u32::from_le_bytes(self.buf[12..16].try_into().expect("4"));
                let payload = &self.buf[16..16 + len];
                if CRC.checksum(payload) == crc
                    && let Ok(rec) = postcard::from_bytes::<StateRec>(payload)
                    && rec.seq == seq
                    && best.is_none_or(|(b, _)| rec.seq > b.seq)
                {
                    best = Some((rec, sector));
                }
                at += total;
            }
        }
        if let Some((rec, sector)) = best {
            self.mem.set_hard_state(rec.hs);
            self.mem.reset(rec.base);
            self.state_seq = rec.seq;
            self.state_sector = sector;
            // The next record goes to the other sector (after erasing it): what follows the
            // newest record here may be a torn one, which flash cannot be written over.
            self.state_off = Self::SECTOR;
        }
        Ok(())
    }

    async fn recover_log(&mut self) -> Result<(), FlashError<F::Error>> {
        for i in 0..S {
            let at = Self::log_sector(i);
            self.read(at, 12).await?;
            let word = |k: usize| u32::from_le_bytes(self.buf[k..k + 4].try_into().expect("4"));
            let (magic, seq, check) = (word(0), word(4), word(8));
            // A header torn by a power loss fails the check: the sector counts as free.
            let valid = magic == SECTOR_MAGIC && seq != 0 && seq != u32::MAX && check == !seq;
            self.sectors[i] = SectorInfo {
                seq: if valid { seq } else { 0 },
                max_index: Index(0),
            };
        }
        let mut order: heapless::Vec<usize, S> =
            (0..S).filter(|&i| self.sectors[i].seq > 0).collect();
        order.sort_unstable_by_key(|&i| self.sectors[i].seq);
        let newest = order.last().copied();
        for &i in &order {
            let seq = self.sectors[i].seq;
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            let mut at = Self::log_sector(i) + Self::header_len() as u32;
            let end = Self::log_sector(i) + Self::SECTOR;
            while at + 8 <= end {
                self.read(at, 8).await?;
                let len = u16::from_le_bytes([self.buf[0], self.buf[1]]) as usize;
                let marker = u16::from_le_bytes([self.buf[2], self.buf[3]]);
                if len == 0xFFFF && marker == 0xFFFF {
                    break; // erased: the end of this sector's records
                }
                let total = align(8 + len, F::WRITE_SIZE) as u32;
                let valid = marker == RECORD_MARKER && 8 + len <= REC && at + total <= end && {
                    self.read(at, 8 + len).await?;
                    let crc = u32::from_le_bytes(self.buf[4..8].try_into().expect("4"));
                    CRC.checksum(&self.buf[8..8 + len]) == crc
                };
                if !valid {
                    if Some(i) == newest {
                        break; // torn by a power loss: never acknowledged
                    }
                    return Err(FlashError::Corrupt);
                }
                let payload_end = 8 + len;
                match self.buf.get(8).copied() {
                    Some(KIND_RESET) => {
                        let (id, _) =
                            postcard::take_from_bytes::<SnapshotId>(&self.buf[9..payload_end])
                                .map_err(|_| FlashError::Corrupt)?;
                        self.reset_seq = seq;
                        let base = self.mem.snapshot();
                        self.mem
                            .reset(if id.index > base.index { id } else { base });
                    }
                    Some(KIND_ENTRIES) => {
                        // Entries one at a time: no batch-sized buffer on the stack.
                        let mut rest = 9..payload_end;
                        while rest.start < rest.end {
                            let (e, tail) =
                                postcard::take_from_bytes::<Entry<P>>(&self.buf[rest.clone()])
                                    .map_err(|_| FlashError::Corrupt)?;
                            rest.start = rest.end - tail.len();
                            let i_max = &mut self.sectors[i].max_index;
                            *i_max = (*i_max).max(e.index);
                            self.mem.replay(e).map_err(|()| FlashError::Corrupt)?;
                        }
                    }
                    _ => return Err(FlashError::Corrupt),
                }
                at += total;
            }
        }
        // Resume in a fresh sector: the newest may end in a torn record.
        self.cur = newest.unwrap_or(S - 1);
        self.off = Self::SECTOR;
        Ok(())
    }

    /// Whether log sector `i` may be erased: unused, or everything in it is obsolete.
    fn reclaimable(&self, i: usize) -> bool {
        let s = self.sectors[i];
        s.seq == 0 || s.seq < self.reset_seq || s.max_index <= self.mem.snapshot().index
    }

    /// Writes `len` encoded bytes of `self.buf` (record header included) to the log.
    async fn append(&mut self, len: usize, max_index: Index) -> Result<(), FlashError<F::Error>> {
        let total = align(len, F::WRITE_SIZE);
        if total > REC || Self::header_len() + total > F::ERASE_SIZE {
            return Err(FlashError::TooLarge);
        }
        if self.off as usize + total > F::ERASE_SIZE {
            let next = (self.cur + 1) % S;
            if !self.reclaimable(next) {
                return Err(FlashError::Full);
            }
            let at = Self::log_sector(next);
            if self.sectors[next].seq != 0 {
                // Invalidate the header first (clearing bits needs no erase): an erase cut
                // short by a power loss then leaves a sector that reads as free, not one whose
                // half-erased records look like corruption.
                let zeros = [0u8; 64];
                self.flash
                    .write(at, &zeros[..Self::header_len()])
                    .await
                    .map_err(FlashError::Flash)?;
                self.sectors[next].seq = 0;
            }
            self.flash
                .erase(at, at + Self::SECTOR)
                .await
                .map_err(FlashError::Flash)?;
            let mut head = [0xFFu8; 64];
            head[0..4].copy_from_slice(&SECTOR_MAGIC.to_le_bytes());
            head[4..8].copy_from_slice(&self.next_seq.to_le_bytes());
            head[8..12].copy_from_slice(&(!self.next_seq).to_le_bytes());
            self.flash
                .write(at, &head[..Self::header_len()])
                .await
                .map_err(FlashError::Flash)?;
            self.sectors[next] = SectorInfo {
                seq: self.next_seq,
                max_index: Index(0),
            };
            self.next_seq += 1;
            self.cur = next;
            self.off = Self::header_len() as u32;
        }
        for b in &mut self.buf[len..total] {
            *b = 0xFF;
        }
        let at = Self::log_sector(self.cur) + self.off;
        self.flash
            .write(at, &self.buf[..total])
            .await
            .map_err(FlashError::Flash)?;
        self.off += total as u32;
        let s = &mut self.sectors[self.cur];
        s.max_index = s.max_index.max(max_index);
        Ok(())
    }

    /// Seals the payload of `n` bytes at `buf[8..]` with its record header; returns the length.
    fn seal(&mut self, n: usize) -> usize {
        let crc = CRC.checksum(&self.buf[8..8 + n]);
        self.buf[0..2].copy_from_slice(&(n as u16).to_le_bytes());
        self.buf[2..4].copy_from_slice(&RECORD_MARKER.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        8 + n
    }

    fn encode_reset(&mut self, id: SnapshotId) -> Result<usize, FlashError<F::Error>> {
        self.buf[8] = KIND_RESET;
        let n = postcard::to_slice(&id, &mut self.buf[9..])
            .map_err(|_| FlashError::TooLarge)?
            .len();
        Ok(self.seal(1 + n))
    }

    fn encode_entries(&mut self, entries: &[Entry<P>]) -> Result<usize, FlashError<F::Error>> {
        self.buf[8] = KIND_ENTRIES;
        let mut at = 9;
        for e in entries {
            let n = postcard::to_slice(e, &mut self.buf[at..])
                .map_err(|_| FlashError::TooLarge)?
                .len();
            at += n;
        }
        Ok(self.seal(at - 8))
    }

    async fn write_state(&mut self) -> Result<(), FlashError<F::Error>> {
        let rec = StateRec {
            seq: self.state_seq + 1,
            hs: self.mem.hard_state(),
            base: self.mem.snapshot(),
        };
        let mut payload = [0u8; 64];
        let n = postcard::to_slice(&rec, &mut payload)
            .map_err(|_| FlashError::TooLarge)?
            .len();
        let total = align(16 + n, F::WRITE_SIZE);
        if self.state_off as usize + total > F::ERASE_SIZE {
            // The current sector is full: the other one takes the next records.
            self.state_sector ^= 1;
            let at = self.state_sector * Self::SECTOR;
            self.flash
                .erase(at, at + Self::SECTOR)
                .await
                .map_err(FlashError::Flash)?;
            self.state_off = 0;
        }
        self.buf[..total].fill(0xFF);
        self.buf[0..4].copy_from_slice(&STATE_MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&rec.seq.to_le_bytes());
        self.buf[8..12].copy_from_slice(&(n as u32).to_le_bytes());
        self.buf[12..16].copy_from_slice(&CRC.checksum(&payload[..n]).to_le_bytes());
        self.buf[16..16 + n].copy_from_slice(&payload[..n]);
        let at = self.state_sector * Self::SECTOR + self.state_off;
        self.flash
            .write(at, &self.buf[..total])
            .await
            .map_err(FlashError::Flash)?;
        self.state_off += total as u32;
        self.state_seq = rec.seq;
        Ok(())
    }

    /// The flash driver back.
    pub fn into_inner(self) -> F {
        self.flash
    }
}

impl<F, P: Clone, const N: usize, const S: usize, const REC: usize> Storage<P>
    for FlashStore<F, P, N, S, REC>
{
    fn hard_state(&self) -> HardState {
        self.mem.hard_state()
    }
    fn last_index(&self) -> Index {
        self.mem.last_index()
    }
    fn term(&self, index: Index) -> Option<Term> {
        self.mem.term(index)
    }
    fn entry(&self, index: Index) -> Option<Entry<P>> {
        self.mem.entry(index)
    }
    fn snapshot(&self) -> SnapshotId {
        self.mem.snapshot()
    }
}

impl<F: NorFlash, P, const N: usize, const S: usize, const REC: usize> Store<P>
    for FlashStore<F, P, N, S, REC>
where
    P: Clone + Serialize + for<'de> Deserialize<'de>,
{
    type Error = FlashError<F::Error>;

    fn fits(&self, p: &Persist<'_, P>) -> bool {
        self.mem.has_room(p)
    }

    async fn persist(&mut self, p: &Persist<'_, P>) -> Result<(), Self::Error> {
        if !self.opened {
            return Err(FlashError::NotOpened);
        }
        if !self.mem.has_room(p) {
            return Err(FlashError::Full);
        }
        if let Some(&id) = p.snapshot {
            // The reset goes to the log before the state that moves the start past it.
            let n = self.encode_reset(id)?;
            self.append(n, Index(0)).await?;
            self.reset_seq = self.sectors[self.cur].seq;
            self.mem.reset(id);
        }
        let hs_changed = p.hard_state.is_some_and(|hs| *hs != self.mem.hard_state());
        if let Some(&hs) = p.hard_state {
            self.mem.set_hard_state(hs);
        }
        if hs_changed || p.snapshot.is_some() {
            self.write_state().await?;
        }
        // A persist hands out every new entry at once: records of at most RECORD_ENTRIES
        // entries keep each within the record buffer.
        let (a, b) = p.entries.as_slices();
        for run in a.chunks(RECORD_ENTRIES).chain(b.chunks(RECORD_ENTRIES)) {
            let Some(last) = run.last() else { continue };
            let n = self.encode_entries(run)?;
            self.append(n, last.index).await?;
            for e in run {
                let _ = self.mem.replay(e.clone());
            }
        }
        Ok(())
    }

    async fn compact(&mut self, through: SnapshotId) -> Result<(), Self::Error> {
        if !self.opened {
            return Err(FlashError::NotOpened);
        }
        if through.index <= self.mem.snapshot().index {
            return Ok(());
        }
        self.mem.compact_to(through);
        self.write_state().await
    }
}

impl<F, P: Clone, const N: usize, const S: usize, const REC: usize> FlashStore<F, P, N, S, REC> {
    /// Entries kept in RAM.
    pub fn len(&self) -> usize {
        self.mem.len()
    }
    /// Whether the log after its start is empty.
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }
}
