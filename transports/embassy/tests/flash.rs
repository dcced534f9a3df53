//! The flash store on a simulated NOR flash that enforces NOR semantics (program only erased
//! bytes, erase whole sectors) and loses power after any number of programmed bytes. After a
//! power loss at every point of a workload, the store reopens without error, never serves a
//! torn record, keeps every completed persist, and goes on writing without programming a byte
//! twice.

use embassy_futures::block_on;
use embedded_storage_async::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use raftlet::{
    Entry, EntryData, HardState, Index, NodeId, Persist, PersistToken, SnapshotId, Storage, Term,
};
use raftlet_embassy::flash::{FlashError, FlashStore};
use raftlet_embassy::store::Store;

type P = heapless::Vec<u8, 16>;
const SECTOR: usize = 512;
const LOG_SECTORS: usize = 6;
type Fs = FlashStore<SimFlash, P, 64, LOG_SECTORS, 256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimError {
    PowerLost,
}
impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// NOR flash in RAM: programming clears bits of erased bytes only, erasing works by sector,
/// and the power goes after `budget` more bytes programmed or erased.
#[derive(Clone)]
struct SimFlash {
    mem: Vec<u8>,
    budget: Option<usize>,
    dead: bool,
    /// Writes that needed a bit set back to 1 (programming over programmed data): a store bug.
    overwrites: usize,
    programmed: usize,
}

impl SimFlash {
    fn new() -> Self {
        Self {
            mem: vec![0xFF; SECTOR * (LOG_SECTORS + 2)],
            budget: None,
            dead: false,
            overwrites: 0,
            programmed: 0,
        }
    }
    fn spend(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => {
                self.dead = true;
                false
            }
            Some(b) => {
                *b -= 1;
                true
            }
            None => true,
        }
    }
    /// The flash as found after a power cycle.
    fn reboot(&self) -> Self {
        Self {
            budget: None,
            dead: false,
            ..self.clone()
        }
    }
}

impl ErrorType for SimFlash {
    type Error = SimError;
}
impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if self.dead {
            return Err(SimError::PowerLost);
        }
        let o = offset as usize;
        bytes.copy_from_slice(&self.mem[o..o + bytes.len()]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.mem.len()
    }
}
impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        assert!(
            (from as usize).is_multiple_of(SECTOR) && (to as usize).is_multiple_of(SECTOR),
            "unaligned erase"
        );
        // From the end backwards: a cut-short erase leaves the sector's header intact, the
        // hardest case for recovery.
        for k in (from as usize..to as usize).rev() {
            if self.dead || !self.spend() {
                return Err(SimError::PowerLost);
            }
            self.mem[k] = 0xFF;
        }
        Ok(())
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        assert!(
            offset.is_multiple_of(4) && bytes.len().is_multiple_of(4),
            "unaligned write"
        );
        for (k, &b) in bytes.iter().enumerate() {
            if self.dead || !self.spend() {
                return Err(SimError::PowerLost);
            }
            let cell = &mut self.mem[offset as usize + k];
            // NOR flash only clears bits: asking to set one is a write over programmed data.
            if *cell & b != b {
                self.overwrites += 1;
            }
            *cell &= b;
            self.programmed += 1;
        }
        Ok(())
    }
}

/// What the store must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    hs: HardState,
    base: SnapshotId,
    log: Vec<(u64, u64, Vec<u8>)>,
}

fn contents(s: &Fs) -> Model {
    Model {
        hs: s.hard_state(),
        base: s.snapshot(),
        log: (s.snapshot().index.0 + 1..=s.last_index().0)
            .map(|i| {
                let e = s.entry(Index(i)).unwrap();
                let data = match e.data {
                    EntryData::Normal(p) => p.to_vec(),
                    _ => vec![],
                };
                (i, e.term.0, data)
            })
            .collect(),
    }
}

/// A persist as a node hands it out, owned by the test.
struct Owned {
    token: PersistToken,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotId>,
    entries: heapless::Vec<Entry<P>, 4>,
}

impl Owned {
    fn view(&self) -> Persist<'_, P> {
        Persist {
            token: self.token,
            hard_state: self.hard_state.as_ref(),
            snapshot: self.snapshot.as_ref(),
            entries: self.entries.as_slice().into(),
        }
    }
}

#[allow(clippy::large_enum_variant)]
enum Op {
    Persist(Owned),
    Compact(SnapshotId),
}

/// A workload: terms, votes, batches, a tail rewrite, compactions, a reset to a snapshot.
fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    let mut token = 0;
    let mut persist =
        |hs: Option<(u64, u64)>, snapshot: Option<SnapshotId>, first: u64, n: u64, term: u64| {
            token += 1;
            let mut entries = heapless::Vec::new();
            for i in first..first + n {
                let data = P::from_slice(&[i as u8; 9][..(i % 9 + 1) as usize]).unwrap();
                entries
                    .push(Entry {
                        term: Term(term),
                        index: Index(i),
                        data: EntryData::Normal(data),
                    })
                    .unwrap();
            }
            Op::Persist(Owned {
                token: PersistToken(token),
                hard_state: hs.map(|(t, v)| HardState {
                    term: Term(t),
                    vote: Some(NodeId(v)),
                    pending_install: None,
                }),
                snapshot,
                entries,
            })
        };
    let mut next = 1;
    for round in 0..60u64 {
        let term = 1 + round / 4;
        ops.push(persist(
            (round % 4 == 0).then_some((term, 1 + round % 3)),
            None,
            next,
            4,
            term,
        ));
        next += 4;
        if round == 5 || round == 37 {
            // A new leader overwrites an uncommitted tail.
            next -= 3;
            ops.push(persist(Some((term + 1, 2)), None, next, 2, term + 1));
            next += 2;
        }
        if round % 3 == 2 {
            let upto = next - 3;
            ops.push(Op::Compact(SnapshotId {
                index: Index(upto),
                term: Term(term),
            }));
        }
    }
    // Installing a snapshot from a leader replaces the whole log.
    let snap = SnapshotId {
        index: Index(next + 20),
        term: Term(9),
    };
    ops.push(persist(Some((9, 3)), Some(snap), snap.index.0 + 1, 3, 9));
    for k in 0..6 {
        ops.push(persist(None, None, snap.index.0 + 4 + k * 4, 4, 9));
        if k % 2 == 1 {
            ops.push(Op::Compact(SnapshotId {
                index: Index(snap.index.0 + 2 + k * 4),
                term: Term(9),
            }));
        }
    }
    ops
}

fn apply(s: &mut Fs, op: &Op) -> Result<(), FlashError<SimError>> {
    block_on(async {
        match op {
            Op::Persist(p) => s.persist(&p.view()).await,
            Op::Compact(id) => s.compact(*id).await,
        }
    })
}

#[test]
fn a_store_round_trips_and_reuses_its_sectors() {
    let mut s = block_on(Fs::open(SimFlash::new())).unwrap();
    let mut models = Vec::new();
    for op in &workload() {
        apply(&mut s, op).unwrap();
        models.push(contents(&s));
    }
    let flash = s.into_inner();
    assert_eq!(flash.overwrites, 0);
    assert!(
        flash.programmed > SECTOR * LOG_SECTORS,
        "the ring was not wrapped: {}",
        flash.programmed
    );
    let s = block_on(Fs::open(flash.reboot())).unwrap();
    assert_eq!(contents(&s), *models.last().unwrap());
}

/// A store opened in place (`unopened`, then `recover`) holds what `open` would, and one not
/// recovered yet refuses to write over the flash it has not read.
#[test]
fn a_store_recovered_in_place_is_the_store_open_returns() {
    let mut s = block_on(Fs::open(SimFlash::new())).unwrap();
    for op in &workload() {
        apply(&mut s, op).unwrap();
    }
    let want = contents(&s);
    let flash = s.into_inner();
    let mut fresh = Fs::unopened(flash.reboot());
    let first = workload().into_iter().next().unwrap();
    assert_eq!(apply(&mut fresh, &first), Err(FlashError::NotOpened));
    block_on(fresh.recover()).unwrap();
    assert_eq!(contents(&fresh), want);
    // Recovering again changes nothing.
    block_on(fresh.recover()).unwrap();
    assert_eq!(contents(&fresh), want);
}

#[test]
fn power_loss_at_any_byte_keeps_every_completed_persist() {
    let ops = workload();
    // How many bytes the whole workload programs and erases.
    let mut total = SimFlash::new();
    total.budget = Some(usize::MAX);
    let mut s = block_on(Fs::open(total)).unwrap();
    let mut models = vec![contents(&s)];
    for op in &ops {
        apply(&mut s, op).unwrap();
        models.push(contents(&s));
    }
    let spent = usize::MAX - s.into_inner().budget.unwrap();
    let mut cuts = 0;
    for budget in (0..spent).step_by(7) {
        let mut flash = SimFlash::new();
        flash.budget = Some(budget);
        let mut s = block_on(Fs::open(flash)).unwrap();
        let mut done = 0;
        for op in &ops {
            if apply(&mut s, op).is_err() {
                break;
            }
            done += 1;
        }
        if done == ops.len() {
            continue;
        }
        cuts += 1;
        let image = s.into_inner();
        assert_eq!(
            image.overwrites, 0,
            "programmed a byte twice (budget {budget})"
        );
        let mut s = block_on(Fs::open(image.reboot())).unwrap_or_else(|e| {
            panic!("power loss at byte {budget} (op {done}): reopen failed: {e:?}")
        });
        let got = contents(&s);
        let (before, after) = (&models[done], &models[done + 1]);
        assert!(
            got.hs == before.hs || got.hs == after.hs,
            "budget {budget}: hard state {:?}",
            got.hs
        );
        assert!(
            got.base == before.base || got.base == after.base,
            "budget {budget}: base {:?}",
            got.base
        );
        // A persist is written in steps (reset, state, entries): every prefix may be found.
        let reset_only =
            matches!(&ops[done], Op::Persist(p) if p.snapshot.is_some()) && got.log.is_empty();
        assert!(
            got.log == before.log || got.log == after.log || reset_only,
            "budget {budget}, op {done}: the log is neither before nor after the interrupted op"
        );
        // It goes on: the interrupted operation again, and everything after it.
        for op in &ops[done..] {
            apply(&mut s, op).unwrap_or_else(|e| panic!("budget {budget}: after recovery: {e:?}"));
        }
        assert_eq!(contents(&s), *models.last().unwrap());
        assert_eq!(s.into_inner().overwrites, 0);
    }
    assert!(cuts > 100, "only {cuts} power cuts");
}

#[test]
fn a_full_ring_is_back_pressure_until_compaction() {
    let mut s = block_on(Fs::open(SimFlash::new())).unwrap();
    let mut i = 1;
    let full = loop {
        let mut entries = heapless::Vec::<Entry<P>, 4>::new();
        for k in 0..4 {
            entries
                .push(Entry {
                    term: Term(1),
                    index: Index(i + k),
                    data: EntryData::Normal(P::from_slice(&[7; 16]).unwrap()),
                })
                .unwrap();
        }
        let p = Owned {
            token: PersistToken(i),
            hard_state: None,
            snapshot: None,
            entries,
        };
        match block_on(s.persist(&p.view())) {
            Ok(()) => i += 4,
            Err(e) => break e,
        }
        assert!(i < 1000, "never full");
    };
    assert_eq!(full, FlashError::Full);
    let before = contents(&s);
    block_on(s.compact(SnapshotId {
        index: Index(i - 1),
        term: Term(1),
    }))
    .unwrap();
    let mut entries = heapless::Vec::<Entry<P>, 4>::new();
    entries
        .push(Entry {
            term: Term(1),
            index: Index(i),
            data: EntryData::Noop,
        })
        .unwrap();
    block_on(
        s.persist(
            &Owned {
                token: PersistToken(i),
                hard_state: None,
                snapshot: None,
                entries,
            }
            .view(),
        ),
    )
    .unwrap();
    assert_eq!(s.last_index(), Index(i));
    assert!(before.log.len() > 4);
}
