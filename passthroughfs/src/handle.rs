//! Open files and directories, by the handle (`fh`) the kernel passes back, kept in the state
//! store so that a restarted server can reopen them.
//!
//! A handle's record holds its inode's nodeid, its open flags and whether it uses the inode's
//! kernel passthrough backing id; fh = slot + 1. The open fd lives only in this process's
//! cache; after a restart the first request naming the fh reopens the inode with the
//! original flags (less O_CREAT, O_EXCL and O_TRUNC, which already did their work).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use fuse_recovery::store::{Store, Table, TableSpec};
use fuse_server::Errno;
use rustix::fs::Dir;

/// The store table holding handles.
pub const HANDLES: TableSpec =
    TableSpec { name: "handles", words: 0, bytes: 16, capacity: 1 << 20, indexed: false };

const IS_DIR: u32 = 1;
const BACKED: u32 = 2;

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
    records: Table,
    cache: Mutex<HashMap<u64, Arc<Handle>>>,
}

impl HandleTable {
    /// The table over table `i` of `store`.
    pub fn new(store: &Store, i: usize) -> Self {
        HandleTable { records: store.table(i).0, cache: Mutex::new(HashMap::new()) }
    }

    /// Records and caches `handle`; returns its fh (never 0).
    pub fn insert(&self, record: HandleRecord, handle: Handle) -> Result<u64, Errno> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&record.nodeid.to_le_bytes());
        bytes[8..12].copy_from_slice(&record.flags.to_le_bytes());
        let info =
            (if record.is_dir { IS_DIR } else { 0 }) | (if record.backed { BACKED } else { 0 });
        bytes[12..].copy_from_slice(&info.to_le_bytes());
        let mut cache = self.lock();
        let slot = self.records.insert(&[], &bytes).map_err(|_| Errno::new(libc::ENFILE))?;
        cache.insert(slot + 1, Arc::new(handle));
        Ok(slot + 1)
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

    /// The record of `fh`.
    pub fn record(&self, fh: u64) -> Option<HandleRecord> {
        let slot = fh.checked_sub(1)?;
        let mut b = [0u8; 16];
        if !self.records.read(slot, &mut b) {
            return None;
        }
        let info = u32::from_le_bytes(b[12..].try_into().unwrap_or_default());
        Some(HandleRecord {
            nodeid: u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            flags: i32::from_le_bytes(b[8..12].try_into().unwrap_or_default()),
            is_dir: info & IS_DIR != 0,
            backed: info & BACKED != 0,
        })
    }

    /// Every open handle recorded in `store`, by fh (for inspection and tests).
    pub fn census(store: &Store) -> Vec<(u64, HandleRecord)> {
        let Some(i) = store.find_table(HANDLES.name) else { return Vec::new() };
        let table = HandleTable::new(store, i);
        (0..table.records.high_water())
            .filter_map(|slot| table.record(slot + 1).map(|record| (slot + 1, record)))
            .collect()
    }

    /// Forgets `fh`; returns its record.
    pub fn remove(&self, fh: u64) -> Option<HandleRecord> {
        let record = self.record(fh)?;
        let mut cache = self.lock();
        let gone = cache.remove(&fh);
        self.records.remove(fh - 1);
        drop(cache);
        // The file is closed outside the lock.
        drop(gone);
        Some(record)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Handle>>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
