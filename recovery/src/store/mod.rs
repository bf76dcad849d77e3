//! The state store: a memfd the keeper holds and the server maps, consistent after the
//! server dies at any instruction.
//!
//! Layout (little-endian, offsets in bytes):
//!
//! ```text
//! 0     magic u64 = "FUSESTOR"      8  version u32          12 table count u32
//! 16    total length u64            24 negotiation length u64 (atomic; 0 while being written)
//! 32    negotiation bytes [1024]
//! 1056  table directory: 8 entries of 64 bytes
//!         name [24] (NUL padded) | words u32 | bytes u32 | capacity u64 | offset u64 |
//!         high-water mark u64 (atomic) | index offset u64 (0: no index)
//! 1568  index schemes: 8 u64, one per table (version 2; a version-1 store has scheme 0)
//! 4096  the tables' slot regions, then their hash indexes, each page aligned
//! ```
//!
//! An index scheme names how a table's keys are hashed ([`TableSpec::index_scheme`]). A store
//! whose index was built under another scheme than the filesystem's (written by an older
//! server) has its index rebuilt from the records ([`Store::rebuild_index`]) before it is
//! used. A store with a non-zero scheme has version 2, which servers from before schemes
//! refuse (they would look keys up under their own hash and miss every one).
//!
//! A slot is a state word (0 free, 1 valid), `words` atomic u64s, then `bytes` payload bytes,
//! rounded up to 8. A record becomes visible by one store of its state word (release), after
//! its payload is complete; it disappears by one store too. A crash between two stores leaves
//! either the old record or none, never half of one. Counters that change after publication
//! are atomic words, updated by single stores.
//!
//! Opening a store maps it and reads the directory: no work per record. The file is sparse:
//! pages are allocated only when a slot on them is first written.
//!
//! The store is input, not trusted memory: another holder of the memfd (the keeper, the
//! owner's other processes) could write anything in it. Its size cannot change: it is sealed
//! against shrinking and growing when created, and a store without those seals is refused
//! (a shrunk file would kill the server with SIGBUS on its next access). The layout is checked
//! against the filesystem's specs on open; every access is bounds-checked and an out-of-range
//! slot reads as no record; what records say is checked by their users.

mod index;
#[allow(unsafe_code)]
mod map;
mod table;
mod typed;
#[doc(hidden)]
pub mod untrusted;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use index::HashIndex;
pub use table::Table;
pub use typed::{MAX_WORDS, NoWords, Record, Records, Word};

use map::SharedMap;

const MAGIC: u64 = u64::from_le_bytes(*b"FUSESTOR");
/// The version of a store whose indexes all have scheme 0 (also what servers from before
/// index schemes wrote and read).
const VERSION: u32 = 1;
/// The version of a store with a non-zero index scheme: servers from before schemes refuse it.
const VERSION_SCHEMES: u32 = 2;
const NEGOTIATION_LEN: usize = 24;
const NEGOTIATION: usize = 32;
/// Largest saved negotiation.
pub const MAX_NEGOTIATION: usize = 1024;
const DIRECTORY: usize = NEGOTIATION + MAX_NEGOTIATION;
const ENTRY: usize = 64;
/// Most tables one store holds.
pub const MAX_TABLES: usize = 8;
const PAGE: usize = 4096;
/// Table i's index scheme is the word at `SCHEMES + 8 * i`.
const SCHEMES: usize = DIRECTORY + MAX_TABLES * ENTRY;
const _: () = assert!(SCHEMES + MAX_TABLES * 8 <= PAGE);

/// What a filesystem declares about one of its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// Up to 23 bytes.
    pub name: &'static str,
    /// Atomic u64 words per record (changeable after publication).
    pub words: u32,
    /// Payload bytes per record (fixed once published).
    pub bytes: u32,
    /// Most records at once.
    pub capacity: u64,
    /// Keep a hash index (key hash -> slot) beside the table.
    pub indexed: bool,
    /// How the filesystem hashes this table's keys into the index: a number it changes
    /// whenever the hash changes, so that an index built under the old hash is rebuilt
    /// ([`Store::rebuild_index`]) instead of missing every key. 0 for a table without an
    /// index, and for the hash of filesystems from before schemes.
    pub index_scheme: u32,
}

/// Why a store cannot be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// memfd_create(2), sizing or sealing the new store failed.
    #[error("creating the store memfd: {0}")]
    Create(std::io::Error),
    /// fstat(2) or mmap(2) of the store failed.
    #[error("mapping the store: {0}")]
    Map(std::io::Error),
    /// The file is smaller than a page, or lacks a store's magic and version (also a store
    /// whose creator died before finishing it: the magic is written last).
    #[error("not a state store (bad magic or version)")]
    NotAStore,
    /// The store's size or table directory differs from the filesystem's specs (at create:
    /// more than [`MAX_TABLES`] specs, or a name longer than 23 bytes); the string says which.
    #[error("the store was written for other tables ({0})")]
    Layout(String),
    /// The store's layout has no table of this spec ([`Store::table_of`]).
    #[error("the store has no table {0}")]
    NoTable(&'static str),
    /// The named table has no free slot for an insert.
    #[error("table {0} is full")]
    Full(&'static str),
    /// The named table's index was built under another scheme than its spec's (by an
    /// older server, or a rebuild that did not finish): rebuild it ([`Store::rebuild_index`],
    /// [`Records::open_reindexed`]) before using it.
    #[error("the index of table {0} was built under another hash scheme")]
    StaleIndex(&'static str),
    /// A negotiation of more than [`MAX_NEGOTIATION`] bytes was to be saved.
    #[error("negotiation of {0} bytes exceeds {MAX_NEGOTIATION}")]
    NegotiationTooLarge(usize),
    /// The fd is not sealed against shrinking ([`SEALS`]): another holder could shrink it and
    /// kill the server that maps it with SIGBUS.
    #[error("the store is not sealed against resizing (a memfd from an earlier version?)")]
    Unsealed,
}

/// The seals every store carries: its size is fixed for good.
pub const SEALS: rustix::fs::SealFlags = rustix::fs::SealFlags::SHRINK
    .union(rustix::fs::SealFlags::GROW)
    .union(rustix::fs::SealFlags::SEAL);

/// A mapped state store.
#[derive(Debug)]
pub struct Store {
    fd: OwnedFd,
    map: Arc<SharedMap>,
    tables: Vec<(TableSpec, usize, Option<usize>)>,
}

/// The version a store of `specs` has: 2 if any table has a non-zero index scheme.
fn version_for<'a>(mut specs: impl Iterator<Item = &'a TableSpec>) -> u32 {
    if specs.any(|s| s.index_scheme != 0) { VERSION_SCHEMES } else { VERSION }
}

/// The directory word of table `i`'s high-water mark.
fn high_water_word(i: usize) -> usize {
    DIRECTORY + i * ENTRY + 48
}

fn slot_size(spec: &TableSpec) -> usize {
    (8 + spec.words as usize * 8 + spec.bytes as usize).next_multiple_of(8)
}

fn index_capacity(spec: &TableSpec) -> u64 {
    (spec.capacity * 2).next_power_of_two()
}

fn page(n: usize) -> usize {
    n.next_multiple_of(PAGE)
}

impl Store {
    /// A new store in a new memfd, laid out for `specs`.
    pub fn create(name: &str, specs: &[TableSpec]) -> Result<Store, StoreError> {
        if specs.len() > MAX_TABLES || specs.iter().any(|s| s.name.len() > 23) {
            return Err(StoreError::Layout("too many tables or a name too long".into()));
        }
        let (tables, offset) = Store::layout(specs);
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        let fd = rustix::fs::memfd_create(name, flags).map_err(|e| StoreError::Create(e.into()))?;
        rustix::fs::ftruncate(&fd, offset as u64).map_err(|e| StoreError::Create(e.into()))?;
        rustix::fs::fcntl_add_seals(&fd, SEALS).map_err(|e| StoreError::Create(e.into()))?;
        let map = Arc::new(SharedMap::new(fd.as_fd(), offset).map_err(StoreError::Map)?);
        let version = version_for(specs.iter());
        map.word(8).store(u64::from(version) | ((specs.len() as u64) << 32), Ordering::Relaxed);
        map.word(16).store(offset as u64, Ordering::Relaxed);
        for (i, (spec, region, index)) in tables.iter().enumerate() {
            let at = DIRECTORY + i * ENTRY;
            let mut name = [0u8; 24];
            name[..spec.name.len()].copy_from_slice(spec.name.as_bytes());
            map.write_bytes(at, &name);
            map.word(at + 24)
                .store(u64::from(spec.words) | (u64::from(spec.bytes) << 32), Ordering::Relaxed);
            map.word(at + 32).store(spec.capacity, Ordering::Relaxed);
            map.word(at + 40).store(*region as u64, Ordering::Relaxed);
            map.word(at + 56).store(index.map_or(0, |x| x as u64), Ordering::Relaxed);
            map.word(SCHEMES + i * 8).store(u64::from(spec.index_scheme), Ordering::Relaxed);
        }
        // The magic last: a store whose creator died half-way is not a store.
        map.word(0).store(MAGIC, Ordering::Release);
        Ok(Store { fd, map, tables })
    }

    /// Maps an existing store (from the keeper) and checks it has exactly `specs`' layout and
    /// is sealed against resizing. Costs the same whatever the number of records.
    pub fn open(fd: OwnedFd, specs: &[TableSpec]) -> Result<Store, StoreError> {
        // Seals first: once they hold, the size read next is the size for good.
        match rustix::fs::fcntl_get_seals(&fd) {
            Ok(seals) if seals.contains(rustix::fs::SealFlags::SHRINK) => {}
            _ => return Err(StoreError::Unsealed),
        }
        let size = rustix::fs::fstat(&fd).map_err(|e| StoreError::Map(e.into()))?.st_size;
        let size = usize::try_from(size).map_err(|_| StoreError::NotAStore)?;
        if size < PAGE {
            return Err(StoreError::NotAStore);
        }
        let map = Arc::new(SharedMap::new(fd.as_fd(), size).map_err(StoreError::Map)?);
        let head = map.word(8).load(Ordering::Relaxed);
        if map.word(0).load(Ordering::Acquire) != MAGIC
            || (head as u32 != VERSION && head as u32 != VERSION_SCHEMES)
        {
            return Err(StoreError::NotAStore);
        }
        if (head >> 32) as usize != specs.len()
            || map.word(16).load(Ordering::Relaxed) as usize != size
        {
            return Err(StoreError::Layout("table count or size differs".into()));
        }
        let (expected, _) = Store::layout(specs);
        let mut tables = Vec::new();
        for (i, (spec, region, index)) in expected.into_iter().enumerate() {
            let at = DIRECTORY + i * ENTRY;
            let mut name = [0u8; 24];
            map.read_bytes(at, &mut name);
            let stored_name = name.split(|&b| b == 0).next().unwrap_or(&[]);
            let sizes = map.word(at + 24).load(Ordering::Relaxed);
            let same = stored_name == spec.name.as_bytes()
                && sizes == u64::from(spec.words) | (u64::from(spec.bytes) << 32)
                && map.word(at + 32).load(Ordering::Relaxed) == spec.capacity
                && map.word(at + 40).load(Ordering::Relaxed) == region as u64
                && map.word(at + 56).load(Ordering::Relaxed) == index.map_or(0, |x| x as u64);
            if !same {
                return Err(StoreError::Layout(format!("table {} differs", spec.name)));
            }
            tables.push((spec, region, index));
        }
        Ok(Store { fd, map, tables })
    }

    /// Where each table's slots and index go, and the total size.
    fn layout(specs: &[TableSpec]) -> (Vec<(TableSpec, usize, Option<usize>)>, usize) {
        let mut offset = page(DIRECTORY + MAX_TABLES * ENTRY);
        let tables = specs
            .iter()
            .map(|spec| {
                let region = offset;
                offset = page(offset + slot_size(spec) * spec.capacity as usize);
                let index = spec.indexed.then(|| {
                    let at = offset;
                    offset = page(offset + index_capacity(spec) as usize * 8);
                    at
                });
                (*spec, region, index)
            })
            .collect();
        (tables, offset)
    }

    /// The memfd, to hand to the keeper.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Saves the INIT negotiation. A crash while saving leaves none (length 0), never a torn one.
    pub fn set_negotiation(&self, bytes: &[u8]) -> Result<(), StoreError> {
        if bytes.len() > MAX_NEGOTIATION {
            return Err(StoreError::NegotiationTooLarge(bytes.len()));
        }
        let len = self.map.word(NEGOTIATION_LEN);
        len.store(0, Ordering::Release);
        self.map.write_bytes(NEGOTIATION, bytes);
        len.store(bytes.len() as u64, Ordering::Release);
        Ok(())
    }

    /// The saved negotiation, if one was completely saved.
    pub fn negotiation(&self) -> Option<Vec<u8>> {
        let len = self.map.word(NEGOTIATION_LEN).load(Ordering::Acquire) as usize;
        if len == 0 || len > MAX_NEGOTIATION {
            return None;
        }
        let mut bytes = vec![0u8; len];
        self.map.read_bytes(NEGOTIATION, &mut bytes);
        Some(bytes)
    }

    /// The table of `spec` (the same name and layout), with its index if it has one: how a
    /// filesystem finds its tables, whatever their order in the layout.
    /// [`StoreError::StaleIndex`] if the index was built under another scheme than `spec`'s.
    pub fn table_of(&self, spec: &TableSpec) -> Result<(Table, Option<HashIndex>), StoreError> {
        let i = self.position(spec)?;
        if !self.index_is_current(i) {
            return Err(StoreError::StaleIndex(spec.name));
        }
        Ok(self.table(i))
    }

    pub(super) fn position(&self, spec: &TableSpec) -> Result<usize, StoreError> {
        self.tables.iter().position(|(s, _, _)| s == spec).ok_or(StoreError::NoTable(spec.name))
    }

    /// The number of the table named `name`, if the layout has one.
    pub fn find_table(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|(spec, _, _)| spec.name == name)
    }

    /// Whether table `i`'s index (if it has one) was built under its spec's scheme.
    pub fn index_is_current(&self, i: usize) -> bool {
        let (spec, _, index) = self.tables[i];
        index.is_none() || self.stored_scheme(i) == u64::from(spec.index_scheme)
    }

    fn stored_scheme(&self, i: usize) -> u64 {
        if self.map.word(8).load(Ordering::Acquire) as u32 == VERSION {
            0
        } else {
            self.map.word(SCHEMES + i * 8).load(Ordering::Acquire)
        }
    }

    /// Table number `i` of the layout, with its index if it has one and the index is current
    /// ([`Store::index_is_current`]; a stale one is `None` until rebuilt).
    pub fn table(&self, i: usize) -> (Table, Option<HashIndex>) {
        let (spec, region, index) = self.tables[i];
        let table =
            Table::new(self.map.clone(), spec, region, slot_size(&spec), high_water_word(i));
        let index = index
            .filter(|_| self.index_is_current(i))
            .map(|at| HashIndex::new(self.map.clone(), at, index_capacity(&spec)));
        (table, index)
    }

    /// Rebuilds the index of table number `i` under its spec's scheme from the records: every
    /// valid slot for which `hash_of(table, slot)` gives a hash is indexed under it (a slot
    /// it says `None` of is left out, as no record). Returns how many were indexed. For a
    /// store whose index is stale ([`StoreError::StaleIndex`]), before any other use of the
    /// table, by the only process writing the store (the one just attached).
    ///
    /// Killed at any point, it leaves a store the next server rebuilds again: the version
    /// is raised first (servers from before schemes then refuse the store), the old entries
    /// are dropped (the region's pages punched out of the memfd: no memory is touched for
    /// them), the records indexed, and the scheme word written last. Costs one read per slot
    /// below the table's high-water mark.
    pub fn rebuild_index(
        &self,
        i: usize,
        mut hash_of: impl FnMut(&Table, u64) -> Option<u64>,
    ) -> Result<u64, StoreError> {
        let (spec, _, index) = self.tables[i];
        let Some(at) = index else { return Err(StoreError::NoTable(spec.name)) };
        let count = self.tables.len() as u64;
        if version_for(self.tables.iter().map(|(s, _, _)| s)) == VERSION_SCHEMES {
            // Any scheme word of a version-1 store is 0: make it so before they count.
            if self.map.word(8).load(Ordering::Acquire) as u32 == VERSION {
                for t in 0..self.tables.len() {
                    self.map.word(SCHEMES + t * 8).store(0, Ordering::Release);
                }
            }
            self.map.word(8).store(u64::from(VERSION_SCHEMES) | (count << 32), Ordering::Release);
        }
        // The scheme word leaves the spec's value first: a rebuild killed half-way is stale.
        let unfinished = u64::from(spec.index_scheme) ^ (1 << 63);
        self.map.word(SCHEMES + i * 8).store(unfinished, Ordering::Release);
        let len = page(index_capacity(&spec) as usize * 8);
        let punched = rustix::fs::fallocate(
            &self.fd,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            at as u64,
            len as u64,
        );
        if punched.is_err() {
            for entry in (at..at + len).step_by(8) {
                let word = self.map.word(entry);
                if word.load(Ordering::Relaxed) != 0 {
                    word.store(0, Ordering::Release);
                }
            }
        }
        let (table, _) = self.table(i);
        let index = HashIndex::new(self.map.clone(), at, index_capacity(&spec));
        let mut indexed = 0;
        for slot in 0..table.high_water() {
            if !table.is_valid(slot) {
                continue;
            }
            if let Some(hash) = hash_of(&table, slot) {
                if !index.insert(hash, slot) {
                    return Err(StoreError::Full(spec.name));
                }
                indexed += 1;
            }
        }
        self.map.word(SCHEMES + i * 8).store(u64::from(spec.index_scheme), Ordering::Release);
        Ok(indexed)
    }
}

#[cfg(test)]
mod tests;
