//! Open files and directories, by the handle (`fh`) the kernel passes back, kept in the state
//! store so that a restarted server can reopen them.
//!
//! A handle's record holds its inode's nodeid, its open flags and whether it uses the inode's
//! kernel passthrough backing id, and a generation; fh = generation << 32 | (slot + 1). The
//! generation makes a stale fh unrecognizable once its slot holds another handle: a RELEASE
//! that a crashed server had executed but not answered comes back to the next server, and by
//! then the slot may have been freed and reused (a server reuses the slots it frees itself).
//! The open fd lives only in this process's
//! cache; after a restart the first request naming the fh reopens the inode with the
//! original flags (less O_CREAT, O_EXCL and O_TRUNC, which already did their work).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fuse_recovery::store::{NoWords, Record, Records, Store, StoreError, TableSpec};
use fuse_server::Errno;
use rustix::fs::Dir;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A handle's record in the store.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Stored {
    nodeid: u64,
    /// open(2) flags as the kernel sent them.
    flags: i32,
    /// IS_DIR, BACKED, and the generation from bit GEN_SHIFT.
    info: u32,
}

impl Record for Stored {
    const NAME: &'static str = "handles";
    const CAPACITY: u64 = 1 << 20;
    type Word = NoWords;
}

/// The store table holding handles.
pub const HANDLES: TableSpec = Stored::SPEC;

const IS_DIR: u32 = 1;
const BACKED: u32 = 2;
/// The generation is in the info word's bits 2-31 (0 in records of older servers, whose fh
/// had no generation either).
const GEN_SHIFT: u32 = 2;

fn join(slot: u64, generation: u32) -> u64 {
    u64::from(generation) << 32 | (slot + 1)
}

fn split(fh: u64) -> Option<(u64, u32)> {
    let slot = (fh & 0xffff_ffff).checked_sub(1)?;
    Some((slot, (fh >> 32) as u32))
}

/// What a handle's record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleRecord {
    pub nodeid: u64,
    /// open(2) flags as the kernel sent them.
    pub flags: i32,
    pub is_dir: bool,
    /// The handle holds a use of its inode's passthrough backing id.
    pub backed: bool,
}

/// An open file or directory.
#[derive(Debug)]
pub enum Handle {
    File { fd: OwnedFd, record: HandleRecord },
    Dir(Mutex<Dir>),
}

impl Handle {
    /// The file's fd; EBADF for a directory handle.
    pub fn file(&self) -> Result<&OwnedFd, Errno> {
        match self {
            Handle::File { fd, .. } => Ok(fd),
            Handle::Dir(_) => Err(Errno::EBADF),
        }
    }
}

/// The open handles.
pub struct HandleTable {
    records: Records<Stored>,
    cache: Mutex<HashMap<u64, Arc<Handle>>>,
    /// The next generation; seeded from the clock, so that servers in turn do not repeat
    /// each other's.
    next_gen: AtomicU32,
}

impl HandleTable {
    /// The table over `store`'s [`HANDLES`] table.
    pub fn new(store: &Store) -> Result<Self, StoreError> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        Ok(HandleTable {
            records: Records::open(store)?,
            cache: Mutex::new(HashMap::new()),
            next_gen: AtomicU32::new(seed),
        })
    }

    /// Records and caches `handle`; returns its fh (never 0).
    pub fn insert(&self, record: HandleRecord, handle: Handle) -> Result<u64, Errno> {
        let generation = self.next_gen.fetch_add(1, Ordering::Relaxed) & (u32::MAX >> GEN_SHIFT);
        let info = (if record.is_dir { IS_DIR } else { 0 })
            | (if record.backed { BACKED } else { 0 })
            | generation << GEN_SHIFT;
        let stored = Stored { nodeid: record.nodeid, flags: record.flags, info };
        let mut cache = self.lock();
        let slot = self.records.insert(&stored, &[]).map_err(|_| Errno::new(libc::ENFILE))?;
        let fh = join(slot, generation);
        cache.insert(fh, Arc::new(handle));
        Ok(fh)
    }

    /// The handle for `fh`, reopened with `reopen` if this process has not opened it yet;
    /// EBADF if unknown.
    pub fn get(
        &self,
        fh: u64,
        reopen: impl FnOnce(HandleRecord) -> Result<Handle, Errno>,
    ) -> Result<Arc<Handle>, Errno> {
        let mut cache = self.lock();
        if let Some(handle) = cache.get(&fh) {
            return Ok(handle.clone());
        }
        let record = self.record(fh).ok_or(Errno::EBADF)?;
        let handle = Arc::new(reopen(record)?);
        cache.insert(fh, handle.clone());
        Ok(handle)
    }

    /// The record of `fh`; None if its slot is free or holds a handle of another generation.
    pub fn record(&self, fh: u64) -> Option<HandleRecord> {
        let (slot, generation) = split(fh)?;
        self.record_at(slot).filter(|&(g, _)| g == generation).map(|(_, record)| record)
    }

    fn record_at(&self, slot: u64) -> Option<(u32, HandleRecord)> {
        let Stored { nodeid, flags, info } = self.records.get(slot)?;
        let record =
            HandleRecord { nodeid, flags, is_dir: info & IS_DIR != 0, backed: info & BACKED != 0 };
        Some((info >> GEN_SHIFT, record))
    }

    /// Every open handle recorded in `store`, by fh (for inspection and tests).
    pub fn census(store: &Store) -> Vec<(u64, HandleRecord)> {
        let Ok(table) = HandleTable::new(store) else { return Vec::new() };
        (0..table.records.high_water())
            .filter_map(|slot| {
                let (generation, record) = table.record_at(slot)?;
                Some((join(slot, generation), record))
            })
            .collect()
    }

    /// The inode of every open file handle (not a directory's), in this process or recorded
    /// by an earlier one: one pass over the records (as many as open handles), an inode as
    /// often as it is open.
    fn file_nodeids(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.records.high_water()).filter_map(|slot| {
            self.record_at(slot).filter(|(_, r)| !r.is_dir).map(|(_, r)| r.nodeid)
        })
    }

    /// True if any file handle is open (the pass ends at the first).
    pub fn any_file_open(&self) -> bool {
        self.file_nodeids().next().is_some()
    }

    /// The inodes with a file handle open, each once.
    pub fn open_files(&self) -> Vec<u64> {
        let mut nodeids: Vec<u64> = self.file_nodeids().collect();
        nodeids.sort_unstable();
        nodeids.dedup();
        nodeids
    }

    /// True if a file handle of inode `nodeid` is open.
    pub fn is_open(&self, nodeid: u64) -> bool {
        self.file_nodeids().any(|n| n == nodeid)
    }

    /// Forgets `fh`; returns its record.
    pub fn remove(&self, fh: u64) -> Option<HandleRecord> {
        let record = self.record(fh)?;
        let (slot, _) = split(fh)?;
        let mut cache = self.lock();
        let gone = cache.remove(&fh);
        self.records.remove(slot);
        drop(cache);
        // The file is closed outside the lock.
        drop(gone);
        Some(record)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Handle>>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Handle {
        Handle::File {
            fd: rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY,
                rustix::fs::Mode::empty(),
            )
            .unwrap(),
            record: RECORD,
        }
    }

    const RECORD: HandleRecord = HandleRecord { nodeid: 7, flags: 1, is_dir: false, backed: true };

    /// A store written by an earlier server (one handing over to this one) opens with this
    /// layout, byte for byte: nodeid, flags and info at offsets 0, 8 and 12.
    #[test]
    fn the_handles_layout_is_the_one_earlier_servers_wrote() {
        assert_eq!(
            HANDLES,
            TableSpec {
                name: "handles",
                words: 0,
                bytes: 16,
                capacity: 1 << 20,
                indexed: false,
                index_scheme: 0
            }
        );
        let stored =
            Stored { nodeid: 0x0102_0304_0506_0708, flags: 0x0a0b_0c0d, info: 0x1112_1314 };
        let mut old = Vec::new();
        old.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        old.extend_from_slice(&0x0a0b_0c0di32.to_le_bytes());
        old.extend_from_slice(&0x1112_1314u32.to_le_bytes());
        assert_eq!(stored.as_bytes(), &old[..]);
    }

    #[test]
    fn a_stale_fh_does_not_name_the_handle_that_reuses_its_slot() {
        let store = Store::create("t", &[HANDLES]).unwrap();
        let table = HandleTable::new(&store).unwrap();
        let old = table.insert(RECORD, file()).unwrap();
        assert_eq!(table.record(old), Some(RECORD));
        assert_eq!(table.remove(old), Some(RECORD));
        let new = table.insert(RECORD, file()).unwrap();
        assert_eq!(new & 0xffff_ffff, old & 0xffff_ffff, "the freed slot is reused");
        assert_ne!(new, old);
        // A resent RELEASE of the old fh finds nothing and leaves the new handle alone.
        assert_eq!(table.remove(old), None);
        assert_eq!(table.record(new), Some(RECORD));
        assert!(table.get(new, |_| unreachable!("cached")).is_ok());
        assert_eq!(table.get(old, |_| unreachable!("no such record")).unwrap_err(), Errno::EBADF);
        // A restarted server (same store, empty cache) knows the new fh and not the old one.
        let again = Store::open(store.fd().try_clone_to_owned().unwrap(), &[HANDLES]).unwrap();
        let table = HandleTable::new(&again).unwrap();
        assert_eq!(table.record(new), Some(RECORD));
        assert_eq!(table.record(old), None);
        assert_eq!(HandleTable::census(&again), vec![(new, RECORD)]);
    }

    /// Open files are told from the records, a directory's handle not among them, a file
    /// open twice once, and an earlier server's handles too.
    #[test]
    fn open_files_are_the_inodes_of_open_file_handles_only() {
        let store = Store::create("t", &[HANDLES]).unwrap();
        let table = HandleTable::new(&store).unwrap();
        let dir = HandleRecord { nodeid: 3, flags: 0, is_dir: true, backed: false };
        let dir_fh = table.insert(dir, file()).unwrap();
        assert!(!table.any_file_open(), "a directory's handle is no open file");
        assert_eq!(table.open_files(), Vec::<u64>::new());
        let first = table.insert(RECORD, file()).unwrap();
        table.insert(RECORD, file()).unwrap();
        table.insert(HandleRecord { nodeid: 9, ..RECORD }, file()).unwrap();
        assert!(table.any_file_open());
        assert_eq!(table.open_files(), vec![7, 9]);
        let again = Store::open(store.fd().try_clone_to_owned().unwrap(), &[HANDLES]).unwrap();
        let inherited = HandleTable::new(&again).unwrap();
        assert_eq!(inherited.open_files(), vec![7, 9], "recorded by an earlier server");
        table.remove(first);
        assert_eq!(table.open_files(), vec![7, 9], "7 is open once more");
        table.remove(dir_fh);
        assert!(table.any_file_open());
    }
}
