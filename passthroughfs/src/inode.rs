//! The inode table: nodeid -> source inode, with lookup counts, kept in the state store.
//!
//! Each inode the kernel knows is a record in the store's `inodes` table: its identity
//! (dev, ino, mnt_id), its type, its file handle, its lookup count and its kernel passthrough
//! backing id. The nodeid is the record's slot + 2 (1 is the root, which is not stored), so
//! finding a record by nodeid costs nothing, and a hash index in the store finds it by
//! identity. Open `O_PATH` fds live only in this process's cache; a restarted server starts
//! with an empty cache and reopens each inode by its file handle the first time the kernel
//! names it. Restoring is therefore constant time whatever the number of inodes, and an
//! inode that cannot be reopened fails alone, with ESTALE.
//!
//! An inode the kernel forgets keeps its record for a while (the last `remember` of them):
//! a file handle the kernel gave out (nodeid + generation, for NFS or `open_by_handle_at`)
//! finds it again through a LOOKUP of "." ([`InodeTable::revive`]). The generation is new
//! for each record, so a handle whose slot now holds another inode is stale to the kernel.
//! A new inode with the number of remembered ones whose file handles differ drops them: the
//! source reused a deleted file's number ([`InodeTable::lookup`]).
//!
//! Lock order: the table's mutex, then the forgotten list's; both leaves. The syscalls
//! under them are comparing file handles when a name leads to an inode number a forgotten or
//! evicted record also has, and registering a kernel passthrough backing file
//! ([`InodeTable::backing_acquire`]: one backing file per inode, registered once).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fuse_recovery::store::{
    HashIndex, NoWords, Record, Records, Store, StoreError, TableSpec, Word,
};
use fuse_server::Errno;
use zerocopy::byteorder::little_endian::{U16, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::sys::{FileHandle, MAX_HANDLE, name_to_handle, open_by_handle};

/// The identity of a source inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
    pub mnt_id: u64,
}

/// Inode numbers that share a run of index entries (a page of the index: 512 entries).
const RUN: u64 = 512;

impl InodeKey {
    /// The key's place and tag in the store's index (scheme 1, [`INDEX_SCHEME`]). The tag
    /// (high 16 bits) mixes the whole identity. The place keeps neighbouring inode numbers
    /// together: a run of [`RUN`] numbers of one (dev, mnt_id) fills consecutive entries
    /// at a place that mixes the run's number, so a burst of creates (which get
    /// neighbouring numbers from the source) writes one page of the index per `RUN` inodes,
    /// not a page per inode at random: a fresh mount's creates fault in ~1/RUN index pages
    /// each instead of ~1. Runs, not one long sequence, so that a probe never passes more
    /// than a run's worth of entries of other inodes.
    fn hash(&self) -> u64 {
        let tag = fmix(fnv(self.dev, self.ino, self.mnt_id)) & !((1 << 48) - 1);
        let run = fmix(fnv(self.dev, self.ino / RUN, self.mnt_id));
        tag | (run.wrapping_mul(RUN) & ((1 << 48) - 1)) | (self.ino % RUN)
    }

    /// The hash of index scheme 0 (servers from before schemes), for the tests of a store
    /// they wrote.
    #[cfg(test)]
    fn hash_scheme0(&self) -> u64 {
        let h = fnv(self.dev, self.ino, self.mnt_id);
        h ^ (h >> 29) ^ (h << 31)
    }
}

/// FNV-1a over three words.
fn fnv(a: u64, b: u64, c: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in [a, b, c] {
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A 64-bit finalizer (MurmurHash3's): every input bit moves every output bit, so that
/// neighbouring inode numbers get unrelated tags.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The inode index's hash scheme: 1 is [`InodeKey::hash`]'s runs of neighbouring inode
/// numbers (0 was one mix of the identity, placing each inode at random).
const INDEX_SCHEME: u32 = 1;

/// A source inode the kernel knows by nodeid, with its open `O_PATH` fd.
#[derive(Debug)]
pub struct Inode {
    pub nodeid: u64,
    /// `O_PATH | O_NOFOLLOW` fd of the inode.
    pub fd: OwnedFd,
    pub key: InodeKey,
    /// The file type bits (`S_IFMT`) of its mode.
    pub kind: u32,
    /// The generation the kernel is given with the nodeid (0 for the root and for records
    /// of servers from before file-handle support).
    pub generation: u32,
}

impl Inode {
    /// True for symbolic links, which most path-based calls cannot reach through /proc.
    pub fn is_symlink(&self) -> bool {
        self.kind == libc::S_IFLNK
    }
}

/// The root's nodeid (FUSE_ROOT_ID). The root is never forgotten and not stored.
pub const ROOT: u64 = fuse_abi::FUSE_ROOT_ID;
const FIRST: u64 = ROOT + 1;

/// An inode's record in the store: its identity, type and file handle (written once).
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Stored {
    dev: u64,
    ino: u64,
    mnt_id: u64,
    /// The file type bits (`S_IFMT`).
    kind: u32,
    handle_kind: i32,
    handle_len: u32,
    /// The generation the kernel was given with the nodeid (0 in records of older servers,
    /// which gave the kernel 0).
    generation: u32,
    handle: [u8; MAX_HANDLE],
}

impl Stored {
    fn key(&self) -> InodeKey {
        InodeKey { dev: self.dev, ino: self.ino, mnt_id: self.mnt_id }
    }

    fn handle(&self) -> FileHandle {
        FileHandle { kind: self.handle_kind, len: self.handle_len, bytes: self.handle }
    }
}

/// An inode record's words.
#[derive(Debug, Clone, Copy)]
enum InodeWord {
    /// The kernel's lookup count.
    Nlookup,
    /// The kernel passthrough backing id (high half) and its users (low half).
    Backing,
    /// The slot + 1 of the inode's record in the names table (0: no name known).
    Name,
}

impl Word for InodeWord {
    const COUNT: u32 = 3;
    fn index(self) -> usize {
        self as usize
    }
}

impl Record for Stored {
    const NAME: &'static str = "inodes";
    const CAPACITY: u64 = 1 << 22;
    const INDEXED: bool = true;
    const INDEX_SCHEME: u32 = INDEX_SCHEME;
    type Word = InodeWord;
}

/// The store table holding inodes.
pub const INODES: TableSpec = Stored::SPEC;

/// Longest name (NAME_MAX).
const MAX_NAME: usize = 255;

/// A (parent, name) as stored (265 bytes, little-endian, unaligned).
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct StoredName {
    parent: U64,
    len: U16,
    name: [u8; MAX_NAME],
}

impl StoredName {
    fn new(parent: u64, name: &[u8]) -> StoredName {
        let mut stored = StoredName::new_zeroed();
        stored.parent = U64::new(parent);
        stored.len = U16::new(name.len() as u16);
        stored.name[..name.len()].copy_from_slice(name);
        stored
    }

    /// The (parent, name); `None` for an empty or invalid one (the store is another
    /// process's word: a name with `/` or NUL, `.` or `..` is none).
    fn get(&self) -> Option<(u64, Vec<u8>)> {
        let name = self.name.get(..usize::from(self.len.get()))?;
        let valid = !name.is_empty() && !name.contains(&b'/') && !name.contains(&0);
        (valid && name != b"." && name != b"..").then(|| (self.parent.get(), name.to_vec()))
    }
}

/// A name record: the name, then the one it had before a rename in progress (length 0 if
/// none), tried when the first is not (yet, or any more) there.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct StoredNames {
    current: StoredName,
    before: StoredName,
}

impl Record for StoredNames {
    const NAME: &'static str = "names";
    const CAPACITY: u64 = 1 << 22;
    type Word = NoWords;
}

/// The store table holding, for a server that reopens inodes by name, a (parent, name) of
/// each inode. A record is never changed: a rename publishes a new one and then switches the
/// inode's `Name` word to it (one store), so a server killed at any instant leaves either
/// name, whole.
pub const NAMES: TableSpec = StoredNames::SPEC;

/// How deep a chain of parents reopening by name follows (a store's chain may loop).
const MAX_DEPTH: usize = 4096;

/// All inodes the kernel holds a reference to.
pub struct InodeTable {
    records: Records<Stored>,
    index: HashIndex,
    /// (parent, name) records, kept when `by_name`.
    names: Records<StoredNames>,
    /// Inodes are found again by name after a restart: this process cannot open file handles
    /// (no CAP_DAC_READ_SEARCH), or the source filesystem has none.
    by_name: bool,
    root: Arc<Inode>,
    /// An fd on the source filesystem for open_by_handle_at.
    mount_fd: OwnedFd,
    cache: Mutex<HashMap<u64, Arc<Inode>>>,
    /// Most `O_PATH` fds kept open; beyond it, unused ones are closed and reopened by file
    /// handle when next needed (the process's open-file limit would be reached otherwise).
    max_cached: usize,
    /// Records of inodes the kernel forgot, kept for its file handles.
    forgotten: Mutex<Forgotten>,
    /// How many forgotten inodes keep their records (0: none, the record goes at once).
    remember: usize,
    /// The next record's generation.
    next_gen: AtomicU32,
}

/// The forgotten inodes whose records are kept, oldest first; and the sweep over the records
/// an earlier server left (`sweep..inherited`), which finds the ones it had forgotten.
#[derive(Default)]
struct Forgotten {
    /// (slot, forget number): a slot forgotten again is listed again; only its latest entry
    /// counts.
    queue: VecDeque<(u64, u64)>,
    latest: HashMap<u64, u64>,
    count: u64,
    sweep: u64,
    inherited: u64,
}

impl Forgotten {
    fn push(&mut self, slot: u64) {
        self.count += 1;
        self.queue.push_back((slot, self.count));
        self.latest.insert(slot, self.count);
    }

    /// The oldest slot still forgotten as listed (forgotten again since: listed later).
    fn pop(&mut self) -> Option<Option<u64>> {
        let (slot, n) = self.queue.pop_front()?;
        if self.latest.get(&slot) != Some(&n) {
            return Some(None);
        }
        self.latest.remove(&slot);
        Some(Some(slot))
    }
}

/// What a search of the index for an inode found.
enum Found {
    Slot(u64),
    /// A record with the same identity whose fd is not open: the file handles must be
    /// compared.
    NeedHandle,
    Absent,
}

/// How many of an earlier server's records each FORGET sweeps.
const SWEEP: u64 = 16;

/// The first bytes of an inode file ([`InodeTable::save`]); the version is its last digit.
const FILE_MAGIC: &[u8; 8] = b"pfsinod1";

/// Why an inode file was not restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// The table already has records (a server attaching to a live mount has its own).
    #[error("the inode table is not empty")]
    NotEmpty,
    /// The file does not start as an inode file does.
    #[error("not an inode file (or of another version)")]
    NotAnInodeFile,
}

/// Little-endian reads from a byte string, `None` past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
}

/// One record of an inode file.
struct SavedEntry {
    slot: u64,
    record: Stored,
    name: Option<StoredName>,
}

impl SavedEntry {
    fn parse(input: &mut Cursor<'_>) -> Option<SavedEntry> {
        let mut record = Stored::new_zeroed();
        let slot = input.u64()?;
        (record.dev, record.ino, record.mnt_id) = (input.u64()?, input.u64()?, input.u64()?);
        record.kind = input.u32()?;
        record.handle_kind = input.u32()? as i32;
        record.handle_len = input.u32()?;
        record.generation = input.u32()?;
        let handle = input.take(usize::try_from(record.handle_len).ok()?)?;
        record.handle.get_mut(..handle.len())?.copy_from_slice(handle);
        let parent = input.u64()?;
        let len = input.u16()?;
        let name = input.take(usize::from(len))?;
        match record.kind {
            libc::S_IFREG
            | libc::S_IFDIR
            | libc::S_IFLNK
            | libc::S_IFIFO
            | libc::S_IFSOCK
            | libc::S_IFCHR
            | libc::S_IFBLK => {}
            _ => return None,
        }
        let name =
            (!name.is_empty() && name.len() <= MAX_NAME).then(|| StoredName::new(parent, name));
        Some(SavedEntry { slot, record, name })
    }
}

impl InodeTable {
    /// The table over `store`'s [`INODES`] table, with the names in its [`NAMES`] table;
    /// `root` is the source directory. With `by_name`, each inode's (parent, name) is kept so
    /// that a restarted server can find it again without file handles.
    pub fn new(
        store: &Store,
        root: OwnedFd,
        key: InodeKey,
        mount_fd: OwnedFd,
        by_name: bool,
    ) -> Result<Self, StoreError> {
        let (records, rebuilt) = Records::<Stored>::open_reindexed(store, |r| r.key().hash())?;
        if let Some(indexed) = rebuilt {
            tracing::info!(indexed, "inode index rebuilt under hash scheme {INDEX_SCHEME}");
        }
        let index = records.index().cloned().ok_or(StoreError::NoTable(INODES.name))?;
        let names = Records::<StoredNames>::open(store)?;
        let root =
            Arc::new(Inode { nodeid: ROOT, fd: root, key, kind: libc::S_IFDIR, generation: 0 });
        let forgotten = Forgotten { inherited: records.high_water(), ..Forgotten::default() };
        // Seeded from the clock, so that servers in turn do not repeat each other's.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u32);
        Ok(InodeTable {
            records,
            index,
            names,
            by_name,
            root,
            mount_fd,
            cache: Mutex::new(HashMap::new()),
            max_cached: usize::MAX,
            forgotten: Mutex::new(forgotten),
            remember: 0,
            next_gen: AtomicU32::new(seed),
        })
    }

    /// Keeps the records of the last `n` inodes the kernel forgot, so that its file handles
    /// of them still work ([`InodeTable::revive`]).
    pub fn remembering(mut self, n: usize) -> Self {
        self.remember = n;
        self
    }

    fn new_generation(&self) -> u32 {
        loop {
            let generation = self.next_gen.fetch_add(1, Ordering::Relaxed);
            if generation != 0 {
                return generation;
            }
        }
    }

    /// Keeps at most `max` inode fds open (at least 64). Only for a server that can reopen by
    /// file handle (CAP_DAC_READ_SEARCH).
    pub fn with_max_cached(mut self, max: usize) -> Self {
        self.max_cached = max.max(64);
        self
    }

    /// Closes the fds of about an eighth of the cached inodes that no request is using.
    fn evict(&self, cache: &mut HashMap<u64, Arc<Inode>>) {
        if cache.len() <= self.max_cached {
            return;
        }
        let target = cache.len() / 8 + 1;
        let unused: Vec<u64> = cache
            .iter()
            .filter(|(_, i)| Arc::strong_count(i) == 1)
            .map(|(&n, _)| n)
            .take(target)
            .collect();
        for nodeid in unused {
            cache.remove(&nodeid);
        }
    }

    fn handle_at(&self, slot: u64) -> Option<FileHandle> {
        Some(self.records.get(slot)?.handle())
    }

    fn slot(nodeid: u64) -> Option<u64> {
        nodeid.checked_sub(FIRST)
    }

    /// The identity in the record at `slot`: its first three words, read alone (every probe
    /// of the index whose tag matches compares one).
    fn key_at(&self, slot: u64) -> Option<InodeKey> {
        let mut words = [0u8; 24];
        if !self.records.read_prefix(slot, &mut words) {
            return None;
        }
        let word =
            |i: usize| u64::from_ne_bytes(words[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Some(InodeKey { dev: word(0), ino: word(1), mnt_id: word(2) })
    }

    /// The record of the inode with identity `key` and file handle `handle` (`None`: not
    /// computed yet). A record whose fd is cached is that inode (the open fd keeps its number
    /// from being reused); one whose fd was closed must also have the same file handle, or it
    /// is an older inode that had the same number.
    fn find(
        &self,
        cache: &HashMap<u64, Arc<Inode>>,
        key: &InodeKey,
        handle: Option<&Option<FileHandle>>,
    ) -> Found {
        let mut need_handle = false;
        let slot = self.index.find(key.hash(), |slot| {
            if self.key_at(slot) != Some(*key) {
                return false;
            }
            if cache.contains_key(&(slot + FIRST)) {
                return true;
            }
            match handle {
                Some(theirs) => theirs.is_some() && self.handle_at(slot) == *theirs,
                None => {
                    need_handle = true;
                    false
                }
            }
        });
        match slot {
            Some(slot) => Found::Slot(slot),
            None if need_handle => Found::NeedHandle,
            None => Found::Absent,
        }
    }

    /// The inode for `nodeid`, reopened by file handle if this process has not opened it yet;
    /// ESTALE if the kernel names one we do not hold or that cannot be reopened.
    pub fn get(&self, nodeid: u64) -> Result<Arc<Inode>, Errno> {
        self.get_at(nodeid, 0)
    }

    /// [`InodeTable::get`], `depth` parents down a reopening by name.
    fn get_at(&self, nodeid: u64, depth: usize) -> Result<Arc<Inode>, Errno> {
        if nodeid == ROOT {
            return Ok(self.root.clone());
        }
        let slot = Self::slot(nodeid).ok_or(Errno::ESTALE)?;
        let (record, names) = {
            let cache = self.lock();
            if let Some(inode) = cache.get(&nodeid) {
                return Ok(inode.clone());
            }
            let record = self.records.get(slot).ok_or(Errno::ESTALE)?;
            (record, if self.by_name { self.names_of(slot) } else { Vec::new() })
        };
        // Reopened without the lock: by name, each parent is got (and reopened) first.
        let inode = if self.by_name {
            self.find_by_name(nodeid, &record, &names, depth)?
        } else {
            self.verified(nodeid, &record, self.reopen_by_handle(nodeid, &record)?)?
        };
        let inode = Arc::new(inode);
        let mut cache = self.lock();
        // Another request may have reopened it meanwhile: one fd per inode.
        let inode = cache.entry(nodeid).or_insert(inode).clone();
        self.evict(&mut cache);
        Ok(inode)
    }

    /// The names recorded for the inode in `slot`: the current one, then the one it had
    /// before a rename that was under way.
    fn names_of(&self, slot: u64) -> Vec<(u64, Vec<u8>)> {
        let word = self.records.word(slot, InodeWord::Name).load(Ordering::Acquire);
        let Some(record) = word.checked_sub(1).and_then(|at| self.names.get(at)) else {
            return Vec::new();
        };
        [record.current, record.before].iter().filter_map(StoredName::get).collect()
    }

    /// The current name recorded for the inode in `slot`.
    fn name_of(&self, slot: u64) -> Option<(u64, Vec<u8>)> {
        self.names_of(slot).into_iter().next()
    }

    /// Records `name` in `parent` as where the inode `nodeid` is found again (when inodes are
    /// found by name; a no-op otherwise, and when it is already the recorded one).
    pub fn set_name(&self, nodeid: u64, parent: u64, name: &[u8]) {
        self.record_name(nodeid, parent, name, false);
    }

    /// Before a rename of `nodeid` to `name` in `parent`: records the new name, keeping the
    /// current one as the fallback, so that a server killed on either side of the rename
    /// finds the inode again.
    pub fn renaming(&self, nodeid: u64, parent: u64, name: &[u8]) {
        self.record_name(nodeid, parent, name, true);
    }

    fn record_name(&self, nodeid: u64, parent: u64, name: &[u8], keep_old: bool) {
        let Some(slot) = Self::slot(nodeid) else { return };
        if !self.by_name || name.is_empty() || name.len() > MAX_NAME {
            return;
        }
        let _guard = self.lock();
        if !self.records.is_valid(slot) {
            return;
        }
        let current = self.name_of(slot);
        if !keep_old && current.as_ref().is_some_and(|(p, n)| *p == parent && n == name) {
            return;
        }
        let mut record = StoredNames::new_zeroed();
        record.current = StoredName::new(parent, name);
        if keep_old && let Some((p, n)) = &current {
            record.before = StoredName::new(*p, n);
        }
        let Ok(at) = self.names.insert(&record, &[]) else {
            tracing::warn!(nodeid, "names table full: the inode keeps its old name");
            return;
        };
        let old = self.records.word(slot, InodeWord::Name).swap(at + 1, Ordering::AcqRel);
        if let Some(old) = old.checked_sub(1) {
            self.names.remove(old);
        }
    }

    /// Takes `fd` (held for the previous servers by the keeper) as the inode `nodeid`'s fd, if
    /// it is the inode the record describes; ESTALE otherwise.
    pub fn seed(&self, nodeid: u64, fd: OwnedFd) -> Result<Arc<Inode>, Errno> {
        let slot = Self::slot(nodeid).ok_or(Errno::ESTALE)?;
        let record = self.records.get(slot).ok_or(Errno::ESTALE)?;
        let inode = Arc::new(self.verified(nodeid, &record, fd)?);
        let mut cache = self.lock();
        Ok(cache.entry(nodeid).or_insert(inode).clone())
    }

    /// True if inodes are found again by name after a restart.
    pub fn by_name(&self) -> bool {
        self.by_name
    }

    /// The nodeid of the inode `fd` refers to, if the kernel knows it.
    pub fn nodeid_of(&self, fd: &OwnedFd, key: &InodeKey) -> Option<u64> {
        if *key == self.root.key {
            return Some(ROOT);
        }
        let mut handle = None;
        loop {
            let cache = self.lock();
            match self.find(&cache, key, handle.as_ref()) {
                Found::Slot(slot) => return Some(slot + FIRST),
                Found::NeedHandle => {
                    drop(cache);
                    handle = Some(name_to_handle(fd.as_fd()).ok());
                }
                Found::Absent => return None,
            }
        }
    }

    /// The inode `record` describes, found again through one of its recorded `names` (each
    /// parent found again first): the first that leads to that very inode.
    fn find_by_name(
        &self,
        nodeid: u64,
        record: &Stored,
        names: &[(u64, Vec<u8>)],
        depth: usize,
    ) -> Result<Inode, Errno> {
        use rustix::fs::{Mode, OFlags};
        if names.is_empty() || depth >= MAX_DEPTH {
            tracing::info!(nodeid, "no name known for the inode: cannot find it again");
            return Err(Errno::ESTALE);
        }
        for (parent, name) in names {
            let Ok(parent) = self.get_at(*parent, depth + 1) else { continue };
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let name = std::ffi::OsStr::from_bytes(name);
            let Ok(fd) = rustix::fs::openat(&parent.fd, name, flags, Mode::empty()) else {
                continue;
            };
            if let Ok(inode) = self.verified(nodeid, record, fd) {
                return Ok(inode);
            }
        }
        tracing::info!(nodeid, "the inode is not found again by its names (renamed or unlinked)");
        Err(Errno::ESTALE)
    }

    fn reopen_by_handle(&self, nodeid: u64, record: &Stored) -> Result<OwnedFd, Errno> {
        let handle = record.handle();
        crate::creds::as_root(|| {
            open_by_handle(
                self.mount_fd.as_fd(),
                &handle,
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?
        .map_err(|err| {
            tracing::warn!(nodeid, %err, "cannot reopen inode by its file handle");
            Errno::ESTALE
        })
    }

    /// The inode `record` describes, opened as `fd`: only if `fd` is that inode (same device,
    /// inode number and type).
    fn verified(&self, nodeid: u64, record: &Stored, fd: OwnedFd) -> Result<Inode, Errno> {
        let (key, kind) = (record.key(), record.kind);
        // The record is the store's word: the file its handle opens must be the inode it
        // describes (same device, inode number and type), or it is not served.
        let st = rustix::fs::statx(
            &fd,
            "",
            rustix::fs::AtFlags::EMPTY_PATH,
            rustix::fs::StatxFlags::TYPE | rustix::fs::StatxFlags::INO,
        )
        .map_err(|_| Errno::ESTALE)?;
        let dev = libc::makedev(st.stx_dev_major, st.stx_dev_minor);
        let found = (dev, st.stx_ino, u32::from(st.stx_mode) & libc::S_IFMT);
        if found != (key.dev, key.ino, kind) {
            tracing::warn!(nodeid, ?found, ?key, kind, "reopened another inode than recorded");
            return Err(Errno::ESTALE);
        }
        Ok(Inode { nodeid, fd, key, kind, generation: record.generation })
    }

    /// Counts one lookup of the inode `fd` (an `O_PATH` fd) refers to, adding it if new.
    /// Returns its nodeid and generation. When the inode is already known, `fd` is dropped or
    /// cached.
    pub fn lookup(&self, fd: OwnedFd, key: InodeKey, kind: u32) -> Result<(u64, u32), Errno> {
        if key == self.root.key {
            return Ok((ROOT, 0));
        }
        // The file handle is computed outside the lock, when it is needed: to tell a new
        // inode from a forgotten or evicted one with the same number, or for a new record.
        let mut handle = None;
        let handle = loop {
            let cache = self.lock();
            match self.find(&cache, &key, handle.as_ref()) {
                Found::Slot(slot) => return Ok(self.count(cache, slot, fd, key, kind)),
                Found::Absent if handle.is_some() => break handle.flatten(),
                Found::Absent | Found::NeedHandle => {
                    drop(cache);
                    handle = Some(name_to_handle(fd.as_fd()).ok());
                }
            }
        };
        let mut record = Stored::new_zeroed();
        (record.dev, record.ino, record.mnt_id, record.kind) = (key.dev, key.ino, key.mnt_id, kind);
        if let Some(h) = &handle {
            (record.handle_kind, record.handle_len, record.handle) = (h.kind, h.len, h.bytes);
        }
        record.generation = self.new_generation();
        let mut cache = self.lock();
        if let Found::Slot(slot) = self.find(&cache, &key, Some(&handle)) {
            return Ok(self.count(cache, slot, fd, key, kind));
        }
        if let Some(handle) = &handle {
            self.drop_superseded(&cache, &key, handle);
        }
        let slot = self.records.insert(&record, &[(InodeWord::Nlookup, 1)]).map_err(|err| {
            tracing::error!(%err, "inode table full");
            Errno::ENOSPC
        })?;
        if !self.index.insert(key.hash(), slot) {
            self.records.remove(slot);
            return Err(Errno::ENOSPC);
        }
        let nodeid = slot + FIRST;
        let generation = record.generation;
        cache.insert(nodeid, Arc::new(Inode { nodeid, fd, key, kind, generation }));
        self.evict(&mut cache);
        Ok((nodeid, generation))
    }

    /// Drops the remembered records (forgotten by the kernel, fd closed) of identity `key`
    /// whose file handle is not `handle`: earlier inodes that had the number of the new one,
    /// which the source reuses (ext4 gives a deleted file's number to the next new file).
    /// Their file handles can open nothing any more, and each would lengthen every later
    /// search for the number by a whole record read: a directory whose files are created and
    /// deleted over and over (a build, a mail spool) piled up to `remember` of them.
    fn drop_superseded(
        &self,
        cache: &HashMap<u64, Arc<Inode>>,
        key: &InodeKey,
        handle: &FileHandle,
    ) {
        let mut stale = Vec::new();
        self.index.find(key.hash(), |slot| {
            let superseded = self.key_at(slot) == Some(*key)
                && !cache.contains_key(&(slot + FIRST))
                && self.records.word(slot, InodeWord::Nlookup).load(Ordering::Acquire) == 0
                && self.handle_at(slot).is_some_and(|theirs| theirs.len > 0 && theirs != *handle);
            if superseded {
                stale.push(slot);
            }
            false
        });
        if stale.is_empty() {
            return;
        }
        let mut forgotten = self.forgotten_lock();
        for slot in stale {
            // Its place in the remembered queue is left to lapse (`Forgotten::pop`).
            forgotten.latest.remove(&slot);
            self.drop_record(slot, key);
        }
    }

    /// Counts one more lookup of the inode in `slot`, caching `fd` for it if none is, and
    /// releases the lock; `fd`, when not needed, is closed after that. Returns the nodeid
    /// and generation.
    fn count(
        &self,
        mut cache: MutexGuard<'_, HashMap<u64, Arc<Inode>>>,
        slot: u64,
        fd: OwnedFd,
        key: InodeKey,
        kind: u32,
    ) -> (u64, u32) {
        let nlookup = self.records.word(slot, InodeWord::Nlookup);
        nlookup.store(nlookup.load(Ordering::Relaxed) + 1, Ordering::Release);
        let nodeid = slot + FIRST;
        let (generation, spare) = match cache.entry(nodeid) {
            std::collections::hash_map::Entry::Vacant(entry) => {
                let generation = self.records.get(slot).map_or(0, |r| r.generation);
                entry.insert(Arc::new(Inode { nodeid, fd, key, kind, generation }));
                self.evict(&mut cache);
                (generation, None)
            }
            std::collections::hash_map::Entry::Occupied(entry) => {
                (entry.get().generation, Some(fd))
            }
        };
        drop(cache);
        drop(spare);
        (nodeid, generation)
    }

    /// Counts one lookup of the inode `nodeid`, which the kernel may have forgotten: for a
    /// LOOKUP of "." (the kernel resolving a file handle it gave out). ESTALE if its record
    /// is gone (forgotten longer ago than the last `remember` inodes) or its file cannot be
    /// reopened.
    pub fn revive(&self, nodeid: u64) -> Result<Arc<Inode>, Errno> {
        let inode = self.get(nodeid)?;
        if nodeid == ROOT {
            return Ok(inode);
        }
        let slot = Self::slot(nodeid).ok_or(Errno::ESTALE)?;
        let cache = self.lock();
        // Still the record `inode` was opened for: its fd is the one cached for the nodeid
        // (the fd keeps the record from being dropped, see `reclaim`).
        let same = cache.get(&nodeid).is_some_and(|cached| Arc::ptr_eq(cached, &inode));
        if !same || !self.records.is_valid(slot) {
            return Err(Errno::ESTALE);
        }
        let nlookup = self.records.word(slot, InodeWord::Nlookup);
        nlookup.store(nlookup.load(Ordering::Relaxed) + 1, Ordering::Release);
        Ok(inode)
    }

    /// Drops `n` lookups; the inode goes when none is left. The count is checked under the
    /// same lock that `lookup` increments it under, so a racing lookup always wins. The
    /// inode's fd is closed after the lock is released: for an unlinked file that close is
    /// the source filesystem's whole eviction of the inode, which must not stall every other
    /// request on the table.
    pub fn forget(&self, nodeid: u64, n: u64) {
        let Some(slot) = Self::slot(nodeid) else { return };
        let mut cache = self.lock();
        if self.key_at(slot).is_none() {
            return;
        }
        let nlookup = self.records.word(slot, InodeWord::Nlookup);
        let left = nlookup.load(Ordering::Relaxed).saturating_sub(n);
        nlookup.store(left, Ordering::Release);
        if left == 0 {
            let gone = cache.remove(&nodeid);
            let mut forgotten = self.forgotten_lock();
            self.retire(&cache, &mut forgotten, slot);
            self.sweep(&cache, &mut forgotten);
            drop(forgotten);
            drop(cache);
            drop(gone);
        }
    }

    /// Drops the record in `slot` if the kernel holds no lookup of it and no request is
    /// using its fd (a LOOKUP of "." reopened it and is about to count it).
    fn reclaim(&self, cache: &HashMap<u64, Arc<Inode>>, slot: u64) {
        let Some(key) = self.key_at(slot) else { return };
        let unused = self.records.word(slot, InodeWord::Nlookup).load(Ordering::Acquire) == 0
            && !cache.contains_key(&(slot + FIRST));
        if unused {
            self.drop_record(slot, &key);
        }
    }

    fn drop_record(&self, slot: u64, key: &InodeKey) {
        self.index.remove(key.hash(), slot);
        if let Some(name) =
            self.records.word(slot, InodeWord::Name).swap(0, Ordering::AcqRel).checked_sub(1)
        {
            self.names.remove(name);
        }
        self.records.remove(slot);
    }

    /// Looks at the next few records an earlier server left: those the kernel holds no lookup
    /// of (it forgot them while that server ran) are forgotten here too, remembered or
    /// dropped like the ones this server sees forgotten. A restart therefore costs nothing,
    /// and the records are found in O(1) per FORGET.
    fn sweep(&self, cache: &HashMap<u64, Arc<Inode>>, forgotten: &mut Forgotten) {
        let end = forgotten.inherited.min(forgotten.sweep + SWEEP);
        for slot in forgotten.sweep..end {
            let unused = self.records.is_valid(slot)
                && self.records.word(slot, InodeWord::Nlookup).load(Ordering::Acquire) == 0
                && !cache.contains_key(&(slot + FIRST))
                && !forgotten.latest.contains_key(&slot);
            if unused {
                self.retire(cache, forgotten, slot);
            }
        }
        forgotten.sweep = end;
    }

    /// The kernel holds no lookup of the inode in `slot` any more: its record is remembered
    /// as the latest forgotten (the oldest beyond `remember` dropped), or dropped at once.
    fn retire(&self, cache: &HashMap<u64, Arc<Inode>>, forgotten: &mut Forgotten, slot: u64) {
        if self.remember == 0 {
            self.reclaim(cache, slot);
            return;
        }
        forgotten.push(slot);
        while forgotten.queue.len() > self.remember {
            if let Some(Some(old)) = forgotten.pop() {
                self.reclaim(cache, old);
            }
        }
    }

    fn forgotten_lock(&self) -> MutexGuard<'_, Forgotten> {
        self.forgotten.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes every record to `out` (slot, identity, type, file handle, generation, current
    /// name), for [`InodeTable::restore`] by the server of a later mount. Returns how many.
    pub fn save(&self, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        let root = self.root.key;
        let mut head = Vec::with_capacity(32);
        head.extend_from_slice(FILE_MAGIC);
        head.extend_from_slice(&root.dev.to_le_bytes());
        head.extend_from_slice(&root.mnt_id.to_le_bytes());
        out.write_all(&head)?;
        let mut n = 0;
        let mut entry = Vec::with_capacity(512);
        for slot in 0..self.records.high_water() {
            let _guard = self.lock();
            let Some(record) = self.records.get(slot) else { continue };
            let name = if self.by_name { self.name_of(slot) } else { None };
            drop(_guard);
            entry.clear();
            for word in [slot, record.dev, record.ino, record.mnt_id] {
                entry.extend_from_slice(&word.to_le_bytes());
            }
            let handle_len = record.handle_len.min(MAX_HANDLE as u32);
            for word in [record.kind, record.handle_kind as u32, handle_len, record.generation] {
                entry.extend_from_slice(&word.to_le_bytes());
            }
            entry.extend_from_slice(&record.handle[..handle_len as usize]);
            let (parent, name) = name.unwrap_or((0, Vec::new()));
            entry.extend_from_slice(&parent.to_le_bytes());
            entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
            entry.extend_from_slice(&name);
            out.write_all(&entry)?;
            n += 1;
        }
        Ok(n)
    }

    /// Fills this table, which must be empty (a new mount's), with the records `bytes` (what
    /// [`InodeTable::save`] wrote) hold, as inodes the kernel has forgotten: a file handle an
    /// earlier mount gave out (an NFS client's) finds its inode again, under the same nodeid
    /// and generation. The file is input: a record that does not parse, names a slot out of
    /// range or twice, or is not on the source's mount as the file recorded it, is dropped,
    /// and a file that is not one is refused whole. Identities of the source's mount are
    /// carried over to its current device and mount ids (both change across a reboot).
    /// Returns how many records were restored.
    pub fn restore(&self, bytes: &[u8]) -> Result<u64, RestoreError> {
        if self.records.high_water() != 0 {
            return Err(RestoreError::NotEmpty);
        }
        let mut input = Cursor(bytes);
        if input.take(8) != Some(&FILE_MAGIC[..]) {
            return Err(RestoreError::NotAnInodeFile);
        }
        let (Some(dev), Some(mnt_id)) = (input.u64(), input.u64()) else {
            return Err(RestoreError::NotAnInodeFile);
        };
        let root = self.root.key;
        let mut restored = 0;
        let mut last = None;
        let cache = self.lock();
        let mut forgotten = self.forgotten_lock();
        while !input.0.is_empty() {
            let Some(entry) = SavedEntry::parse(&mut input) else {
                tracing::warn!(restored, "inode file cut short or damaged: the rest is dropped");
                break;
            };
            let on_source = entry.record.dev == dev && entry.record.mnt_id == mnt_id;
            let ascending = last.is_none_or(|l| entry.slot > l);
            if !on_source || !ascending || entry.slot >= INODES.capacity {
                continue;
            }
            let mut record = entry.record;
            (record.dev, record.mnt_id) = (root.dev, root.mnt_id);
            let key = record.key();
            if self.records.insert_at(entry.slot, &record, &[]).is_none() {
                continue;
            }
            last = Some(entry.slot);
            if !self.index.insert(key.hash(), entry.slot) {
                self.records.remove(entry.slot);
                continue;
            }
            if let Some((parent, name)) = entry.name.as_ref().and_then(StoredName::get) {
                let mut names = StoredNames::new_zeroed();
                names.current = StoredName::new(parent, &name);
                if let Ok(at) = self.names.insert(&names, &[]) {
                    self.records.word(entry.slot, InodeWord::Name).store(at + 1, Ordering::Release);
                }
            }
            self.retire(&cache, &mut forgotten, entry.slot);
            restored += 1;
        }
        Ok(restored)
    }

    /// Every inode record in `store` with its lookup count, read without changing anything
    /// (for inspection and tests; a live server may change them meanwhile).
    pub fn census(store: &Store) -> Vec<(InodeKey, u64)> {
        let Ok(records) = Records::<Stored>::open(store) else { return Vec::new() };
        (0..records.high_water())
            .filter_map(|slot| {
                let key = records.get(slot)?.key();
                Some((key, records.word(slot, InodeWord::Nlookup).load(Ordering::Acquire)))
            })
            .collect()
    }

    /// The lookup count of `nodeid` (0 if unknown).
    pub fn lookup_count(&self, nodeid: u64) -> u64 {
        match Self::slot(nodeid) {
            Some(slot) if self.records.is_valid(slot) => {
                self.records.word(slot, InodeWord::Nlookup).load(Ordering::Acquire)
            }
            _ => 0,
        }
    }

    /// Takes a use of the inode's kernel passthrough backing id, registering one with
    /// `open_backing` if the inode has none. None when no backing id can be had.
    pub fn backing_acquire(
        &self,
        inode: &Inode,
        open_backing: impl FnOnce() -> Option<i32>,
    ) -> Option<i32> {
        let slot = Self::slot(inode.nodeid)?;
        let _guard = self.lock();
        let word = self.records.word(slot, InodeWord::Backing);
        let (mut id, mut users) = split(word.load(Ordering::Acquire));
        if users == 0 {
            id = open_backing()?;
        }
        users += 1;
        word.store(join(id, users), Ordering::Release);
        Some(id)
    }

    /// Drops a use of the inode's backing id; returns the id to close when it was the last.
    /// Nothing for a nodeid with no record (a handle record naming one is stale or forged).
    pub fn backing_release(&self, nodeid: u64) -> Option<i32> {
        let slot = Self::slot(nodeid)?;
        let _guard = self.lock();
        if !self.records.is_valid(slot) {
            return None;
        }
        let word = self.records.word(slot, InodeWord::Backing);
        let (id, users) = split(word.load(Ordering::Acquire));
        let users = users.saturating_sub(1);
        word.store(join(if users == 0 { 0 } else { id }, users), Ordering::Release);
        (users == 0 && id > 0).then_some(id)
    }

    /// How many inodes this process has open (the root included). For diagnostics.
    pub fn cached(&self) -> usize {
        self.lock().len() + 1
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Inode>>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn split(word: u64) -> (i32, u32) {
    ((word >> 32) as i32, word as u32)
}

fn join(id: i32, users: u32) -> u64 {
    (u64::from(id as u32) << 32) | u64::from(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};

    /// Stores written by earlier servers (one handing over to this one) open with these
    /// layouts, byte for byte.
    #[test]
    fn the_inode_and_name_layouts_are_the_ones_earlier_servers_wrote() {
        assert_eq!(
            INODES,
            TableSpec {
                name: "inodes",
                words: 3,
                bytes: 168,
                capacity: 1 << 22,
                indexed: true,
                index_scheme: 1
            }
        );
        assert_eq!(
            NAMES,
            TableSpec {
                name: "names",
                words: 0,
                bytes: 530,
                capacity: 1 << 22,
                indexed: false,
                index_scheme: 0
            }
        );
        let mut stored = Stored::new_zeroed();
        (stored.dev, stored.ino, stored.mnt_id, stored.kind) = (1, 2, 3, libc::S_IFDIR);
        (stored.handle_kind, stored.handle_len) = (-2, 8);
        stored.handle[0] = 0xab;
        let bytes = stored.as_bytes();
        let le = |at: usize, n: usize| {
            u64::from_le_bytes({
                let mut w = [0u8; 8];
                w[..n].copy_from_slice(&bytes[at..at + n]);
                w
            })
        };
        assert_eq!((le(0, 8), le(8, 8), le(16, 8), le(24, 4)), (1, 2, 3, u64::from(libc::S_IFDIR)));
        assert_eq!((le(28, 4) as u32 as i32, le(32, 4), bytes[40]), (-2, 8, 0xab));
        let name = StoredName::new(7, b"file");
        let bytes = name.as_bytes();
        assert_eq!(&bytes[..8], &7u64.to_le_bytes());
        assert_eq!(&bytes[8..10], &4u16.to_le_bytes());
        assert_eq!(&bytes[10..14], b"file");
        assert_eq!(name.get(), Some((7, b"file".to_vec())));
        assert_eq!(StoredName::new(7, b"..").get(), None, "a stored .. is no name");
    }

    fn path_fd(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .unwrap()
    }

    fn key(fd: &OwnedFd) -> InodeKey {
        let st = rustix::fs::statx(
            fd,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
        )
        .unwrap();
        InodeKey {
            dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            mnt_id: st.stx_mnt_id,
        }
    }

    fn table(store: &Store, dir: &std::path::Path) -> InodeTable {
        table_by(store, dir, false)
    }

    fn table_by(store: &Store, dir: &std::path::Path, by_name: bool) -> InodeTable {
        let root = path_fd(dir);
        let k = key(&root);
        let mount_fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        InodeTable::new(store, root, k, mount_fd, by_name).unwrap()
    }

    /// A lookup of `dir/name` that records its name, as the filesystem's LOOKUP does.
    fn look(t: &InodeTable, parent: u64, dir: &std::path::Path, name: &str, kind: u32) -> u64 {
        let p = dir.join(name);
        let id = t.lookup(path_fd(&p), key(&path_fd(&p)), kind).unwrap().0;
        t.set_name(id, parent, name.as_bytes());
        id
    }

    #[test]
    fn a_new_process_without_file_handles_finds_inodes_again_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        for f in ["a/b/f", "a/b/moved", "a/b/half", "a/b/gone"] {
            std::fs::write(d.join(f), f).unwrap();
        }
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let t = table_by(&store, d, true);
        let a = look(&t, ROOT, d, "a", libc::S_IFDIR);
        let b = look(&t, a, &d.join("a"), "b", libc::S_IFDIR);
        let [f, moved, half, gone] =
            ["f", "moved", "half", "gone"].map(|n| look(&t, b, &d.join("a/b"), n, libc::S_IFREG));
        // A rename done, one the server died before doing, an unlink.
        t.renaming(moved, a, b"renamed");
        std::fs::rename(d.join("a/b/moved"), d.join("a/renamed")).unwrap();
        t.renaming(half, a, b"half2");
        std::fs::remove_file(d.join("a/b/gone")).unwrap();
        drop(t);
        // The next server: nothing cached, every inode found by its names, parents first.
        let t = table_by(&store, d, true);
        assert_eq!(t.get(f).unwrap().key, key(&path_fd(&d.join("a/b/f"))));
        assert_eq!(t.get(moved).unwrap().key, key(&path_fd(&d.join("a/renamed"))));
        assert_eq!(t.get(half).unwrap().key, key(&path_fd(&d.join("a/b/half"))), "the old name");
        assert_eq!(t.get(gone).unwrap_err(), Errno::ESTALE, "unlinked: not found");
        // A name that now holds another file is not taken for the inode.
        std::fs::remove_file(d.join("a/b/f")).unwrap();
        std::fs::write(d.join("a/b/f"), b"another").unwrap();
        let t = table_by(&store, d, true);
        assert_eq!(t.get(f).unwrap_err(), Errno::ESTALE, "another inode at the name");
        assert!(t.get(b).is_ok());
    }

    #[test]
    fn lookups_share_a_nodeid_count_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let t = table(&store, dir.path());
        let f = dir.path().join("f");
        let a = t.lookup(path_fd(&f), key(&path_fd(&f)), libc::S_IFREG).unwrap().0;
        let b = t.lookup(path_fd(&f), key(&path_fd(&f)), libc::S_IFREG).unwrap().0;
        assert_eq!(a, b);
        assert_ne!(a, ROOT);
        assert_eq!(t.lookup_count(a), 2);
        assert_eq!(
            t.lookup(path_fd(dir.path()), key(&path_fd(dir.path())), libc::S_IFDIR).unwrap(),
            (ROOT, 0)
        );
        t.forget(a, 1);
        assert!(t.get(a).is_ok());
        t.forget(a, 1);
        assert_eq!(t.get(a).unwrap_err(), Errno::ESTALE);
        t.forget(ROOT, 100);
        assert!(t.get(ROOT).is_ok(), "the root survives any forget");
    }

    /// File handles the kernel gave out outlive its inode cache: a forgotten inode keeps its
    /// record (the last `remember` of them) and a LOOKUP of "." counts it again, with the
    /// generation it had; once dropped, its slot's next inode has another generation, so
    /// the old handle is stale to the kernel instead of opening the new file.
    #[test]
    fn forgotten_inodes_are_remembered_for_file_handles_and_slots_get_new_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let t = table(&store, dir.path()).remembering(2);
        let ids: Vec<(u64, u32)> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                std::fs::write(&p, n).unwrap();
                t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap()
            })
            .collect();
        let gens: std::collections::HashSet<u32> = ids.iter().map(|&(_, g)| g).collect();
        assert_eq!(gens.len(), 3, "each record its own generation: {ids:?}");
        assert!(!gens.contains(&0), "0 is the generation of older servers' records");
        let [(a, gen_a), (b, _), (c, _)] = ids[..] else { unreachable!() };
        t.forget(a, 1);
        assert_eq!(t.lookup_count(a), 0);
        let again = t.revive(a).unwrap();
        assert_eq!((again.generation, again.key), (gen_a, key(&path_fd(&dir.path().join("a")))));
        assert_eq!(t.lookup_count(a), 1, "a LOOKUP of . counts a lookup");
        // Three forgotten with room for two: the oldest (b) is dropped.
        t.forget(b, 1);
        t.forget(c, 1);
        t.forget(a, 1);
        assert_eq!(t.revive(b).unwrap_err(), Errno::ESTALE, "b was forgotten longest ago");
        assert_eq!(t.lookup_count(c), 0);
        assert!(t.revive(c).is_ok() && t.revive(a).is_ok());
        // b's slot goes to the next new inode, under a new generation.
        let p = dir.path().join("d");
        std::fs::write(&p, b"d").unwrap();
        let (d, gen_d) = t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap();
        assert_eq!(d, b, "the freed slot is reused (the case under test)");
        assert!(!gens.contains(&gen_d), "a reused slot's generation is new");
        // A name that leads to a remembered inode finds its record, not a new one.
        t.forget(a, 1);
        let p = dir.path().join("a");
        assert_eq!(t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap(), (a, gen_a));
    }

    /// A new inode with the number of a remembered one (a source reusing the number of a
    /// deleted file) drops that record: its file handle is not the new inode's, and each
    /// such record would cost every later search for the number a record read. Records the
    /// kernel still holds, or with the new inode's handle, stay.
    #[test]
    fn a_new_inode_drops_the_remembered_records_of_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let t = table(&store, dir.path()).remembering(100);
        let [pa, pb, pc] = ["a", "b", "c"].map(|n| dir.path().join(n));
        for p in [&pa, &pb, &pc] {
            std::fs::write(p, b"x").unwrap();
        }
        let (a, gen_a) = t.lookup(path_fd(&pa), key(&path_fd(&pa)), libc::S_IFREG).unwrap();
        let (c, _) = t.lookup(path_fd(&pc), key(&path_fd(&pc)), libc::S_IFREG).unwrap();
        t.forget(a, 1);
        assert!(t.revive(a).is_ok(), "a is remembered");
        t.forget(a, 1);
        // b under a's number, as a reused inode number would be; c's number stays c's.
        let (b, gen_b) = t.lookup(path_fd(&pb), key(&path_fd(&pa)), libc::S_IFREG).unwrap();
        assert_eq!(b, a, "a's record was dropped and its slot reused at once");
        assert_ne!(gen_b, gen_a, "a new record in it");
        assert_eq!(t.lookup_count(b), 1);
        let slot = b - FIRST;
        assert_eq!(t.key_at(slot), t.records.get(slot).map(|r| r.key()), "key_at reads the key");
        assert_eq!(t.key_at(slot), Some(key(&path_fd(&pa))));
        let (b_again, _) = t.lookup(path_fd(&pb), key(&path_fd(&pa)), libc::S_IFREG).unwrap();
        assert_eq!(b_again, b, "the new inode's own record is found");
        // Held by the kernel (its fd open): that inode, whatever fd the lookup brings.
        let (other, _) = t.lookup(path_fd(&pa), key(&path_fd(&pc)), libc::S_IFREG).unwrap();
        assert_eq!(other, c);
        assert_eq!(t.lookup_count(c), 2, "c is still known");
    }

    /// Records an earlier server left with no lookup (it had forgotten them) are found by
    /// the next server's sweep, a few per FORGET, and remembered or dropped like its own.
    #[test]
    fn a_restarted_server_sweeps_the_forgotten_records_it_inherits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let old: Vec<u64> = {
            let t = table(&store, dir.path()).remembering(100);
            (0..40)
                .map(|i| {
                    let p = dir.path().join(format!("old{i}"));
                    std::fs::write(&p, b"x").unwrap();
                    let (id, _) = t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap();
                    t.forget(id, 1);
                    id
                })
                .collect()
        };
        assert_eq!(InodeTable::census(&store).len(), 40, "the first server remembers them");
        let again =
            Store::open(store.fd().try_clone_to_owned().unwrap(), &[INODES, NAMES]).unwrap();
        let t = table(&again, dir.path());
        let p = dir.path().join("new");
        std::fs::write(&p, b"y").unwrap();
        for _ in 0..40u64.div_ceil(SWEEP) {
            let (id, _) = t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap();
            t.forget(id, 1);
        }
        assert_eq!(InodeTable::census(&again), Vec::new(), "remembering none, it drops them");
        assert!(old.iter().all(|&id| t.get(id).is_err()));
    }

    /// An inode file round-trips into a new mount's empty table (same nodeids, generations,
    /// counts of 0), and is input: records out of range, repeated or out of order are
    /// dropped, a damaged file never panics, a non-empty table is not overwritten.
    #[test]
    fn inode_files_restore_a_new_tables_records_and_are_checked_as_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"x").unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let t = table_by(&store, dir.path(), true).remembering(10);
        let d = look(&t, ROOT, dir.path(), "d", libc::S_IFDIR);
        let f = look(&t, d, &dir.path().join("d"), "f", libc::S_IFREG);
        let gen_f = t.get(f).unwrap().generation;
        let mut saved = Vec::new();
        assert_eq!(t.save(&mut saved).unwrap(), 2);
        let fresh = || {
            let store = Store::create("t", &[INODES, NAMES]).unwrap();
            let t = table_by(&store, dir.path(), true).remembering(10);
            (store, t)
        };
        let (_s, t2) = fresh();
        assert_eq!(t2.restore(&saved), Ok(2));
        assert_eq!(t2.lookup_count(f), 0, "the new mount's kernel holds none");
        let again = t2.revive(f).unwrap();
        assert_eq!((again.generation, again.key), (gen_f, key(&path_fd(&dir.path().join("d/f")))));
        assert_eq!(t2.restore(&saved), Err(RestoreError::NotEmpty));
        let (_s, t3) = fresh();
        assert_eq!(
            t3.restore(b"pfsinod0 an older or another file"),
            Err(RestoreError::NotAnInodeFile)
        );
        // A record with a slot beyond the table: dropped; the one before stands.
        let mut bad = saved.clone();
        let second = 24 + (bad.len() - 24) / 2;
        bad[second..second + 8].copy_from_slice(&(INODES.capacity + 5).to_le_bytes());
        let (_s, t4) = fresh();
        assert_eq!(t4.restore(&bad), Ok(1));
        // Every truncation and many corruptions: no panic, never more than was saved.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for cut in 0..saved.len() {
            let mut damaged = saved[..cut].to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if !damaged.is_empty() {
                    let at = seed as usize % damaged.len();
                    damaged[at] ^= (seed >> 32) as u8;
                }
            }
            let (_s, t5) = fresh();
            let restored = t5.restore(&damaged).unwrap_or(0);
            assert!(restored <= 2);
        }
    }

    #[test]
    fn evicted_inodes_are_reopened_and_a_reused_number_is_a_new_inode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let t = table(&store, dir.path()).with_max_cached(64);
        let mut ids = Vec::new();
        for i in 0..300 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, b"x").unwrap();
            ids.push((
                p.clone(),
                t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap().0,
            ));
        }
        assert!(t.cached() <= 65, "at most 64 fds kept, {} cached", t.cached());
        for (p, id) in &ids {
            assert_eq!(t.get(*id).unwrap().key, key(&path_fd(p)), "reopened by handle");
        }
        // Delete a file whose fd was evicted; a new file comes with its inode number (as ext4
        // hands a freed number out again, though when is up to it and to other tests' files:
        // the key is the old one's here, the file and so its handle another). It must get a
        // new nodeid, not the old one's.
        let (p, old) = ids[0].clone();
        let old_key = t.get(old).unwrap().key;
        t.cache.lock().unwrap().remove(&old);
        std::fs::remove_file(&p).unwrap();
        let q = dir.path().join("g");
        std::fs::write(&q, b"y").unwrap();
        let id = t.lookup(path_fd(&q), old_key, libc::S_IFREG).unwrap().0;
        assert_ne!(id, old, "a reused inode number got the deleted inode's nodeid");
        assert_eq!(t.get(id).unwrap().key, old_key);
    }

    #[test]
    fn a_new_process_reopens_inodes_by_handle_with_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"x").unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let (d, f);
        {
            let t = table(&store, dir.path());
            let p = dir.path().join("d");
            d = t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFDIR).unwrap().0;
            let p = dir.path().join("d/f");
            f = t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap().0;
            t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap();
        }
        // A restarted server: the store reopened, nothing cached.
        let again =
            Store::open(store.fd().try_clone_to_owned().unwrap(), &[INODES, NAMES]).unwrap();
        let t = table(&again, dir.path());
        assert_eq!(t.cached(), 1);
        let inode = t.get(f).unwrap();
        assert_eq!(inode.key, key(&path_fd(&dir.path().join("d/f"))));
        assert_eq!(inode.kind, libc::S_IFREG);
        assert_eq!(t.lookup_count(f), 2);
        assert_eq!(t.get(d).unwrap().kind, libc::S_IFDIR);
        // Found again by identity: same nodeid, one more lookup.
        let p = dir.path().join("d/f");
        assert_eq!(t.lookup(path_fd(&p), key(&path_fd(&p)), libc::S_IFREG).unwrap().0, f);
        assert_eq!(t.lookup_count(f), 3);
        // An inode deleted while the server was down fails alone.
        std::fs::remove_file(&p).unwrap();
        t.forget(f, 3);
        assert_eq!(t.get(f).unwrap_err(), Errno::ESTALE);
        assert!(t.get(d).is_ok());
    }

    /// The store is input: a record whose file handle opens another inode than the one it
    /// describes (a forged or damaged record) is not served, and a nodeid or handle record
    /// naming a slot out of range is no inode, never a panic.
    #[test]
    fn a_record_whose_handle_opens_another_inode_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let (a, secret, d) = {
            let t = table(&store, dir.path());
            let id = |name: &str, kind| {
                let p = dir.path().join(name);
                t.lookup(path_fd(&p), key(&path_fd(&p)), kind).unwrap().0
            };
            (id("a", libc::S_IFREG), id("secret", libc::S_IFREG), id("d", libc::S_IFDIR))
        };
        let t = table(&store, dir.path());
        let slot = |nodeid: u64| InodeTable::slot(nodeid).unwrap();
        let theirs = t.records.get(slot(secret)).unwrap();
        // a's record now carries secret's file handle; d's record says it is a file.
        let mut forged = t.records.get(slot(a)).unwrap();
        (forged.handle_kind, forged.handle_len, forged.handle) =
            (theirs.handle_kind, theirs.handle_len, theirs.handle);
        t.records.rewrite(slot(a), &forged);
        let mut forged = t.records.get(slot(d)).unwrap();
        forged.kind = libc::S_IFREG;
        t.records.rewrite(slot(d), &forged);
        let again =
            Store::open(store.fd().try_clone_to_owned().unwrap(), &[INODES, NAMES]).unwrap();
        let t = table(&again, dir.path());
        assert_eq!(t.get(a).unwrap_err(), Errno::ESTALE, "secret served as a");
        assert_eq!(t.get(d).unwrap_err(), Errno::ESTALE, "a directory served as a file");
        assert_eq!(t.get(secret).unwrap().key, key(&path_fd(&dir.path().join("secret"))));
        for nodeid in [u64::MAX, INODES.capacity + FIRST, INODES.capacity + FIRST + 1] {
            assert_eq!(t.get(nodeid).unwrap_err(), Errno::ESTALE);
            assert_eq!(t.backing_release(nodeid), None);
            assert_eq!(t.lookup_count(nodeid), 0);
            t.forget(nodeid, 1);
        }
    }

    /// Scheme 1 keeps a burst of neighbouring inode numbers on a page or two of the index
    /// (what a fresh mount's creates touch), and still spreads their tags and other runs.
    #[test]
    fn neighbouring_inode_numbers_share_index_pages() {
        let mask = (1u64 << 23) - 1;
        let places = |dev: u64, inos: std::ops::Range<u64>| -> Vec<u64> {
            inos.map(|ino| InodeKey { dev, ino, mnt_id: 30 }.hash() & mask).collect()
        };
        let burst = places(2049, 5_000..6_000);
        let pages: std::collections::HashSet<u64> = burst.iter().map(|p| p / RUN).collect();
        assert!(pages.len() <= 3, "1,000 neighbours on {} pages", pages.len());
        let distinct: std::collections::HashSet<&u64> = burst.iter().collect();
        assert_eq!(distinct.len(), burst.len(), "no two neighbours on one entry");
        let tags: std::collections::HashSet<u64> = (5_000..6_000)
            .map(|ino| InodeKey { dev: 2049, ino, mnt_id: 30 }.hash() >> 48)
            .collect();
        assert!(tags.len() > 900, "tags mix the whole identity: {} of 1,000", tags.len());
        let other_dev = places(2050, 5_000..5_512);
        assert_ne!(other_dev[0] / RUN, burst[0] / RUN, "another device's run is elsewhere");
    }

    /// A store an older server wrote (index scheme 0: every inode placed by one mix) is
    /// reindexed when the next server opens it: the inodes it knew keep their nodeids.
    #[test]
    fn a_store_indexed_by_an_older_server_is_reindexed_and_keeps_its_nodeids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create("t", &[INODES, NAMES]).unwrap();
        let paths: Vec<std::path::PathBuf> = (0..300)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        let ids: Vec<u64> = {
            let t = table(&store, dir.path());
            paths
                .iter()
                .map(|p| t.lookup(path_fd(p), key(&path_fd(p)), libc::S_IFREG).unwrap().0)
                .collect()
        };
        // The index as an older server leaves it: every record under the scheme-0 hash.
        const OLD: TableSpec = TableSpec { index_scheme: 0, ..INODES };
        let old = Store::open(store.fd().try_clone_to_owned().unwrap(), &[OLD, NAMES]).unwrap();
        assert!(!old.index_is_current(0), "scheme 1 is not scheme 0");
        let indexed = old
            .rebuild_index(0, |table, slot| {
                let mut record = Stored::new_zeroed();
                table.read(slot, record.as_mut_bytes()).then(|| record.key().hash_scheme0())
            })
            .unwrap();
        assert_eq!(indexed, 300);
        drop(old);

        let again =
            Store::open(store.fd().try_clone_to_owned().unwrap(), &[INODES, NAMES]).unwrap();
        assert!(!again.index_is_current(0), "the older server's index is stale");
        let t = table(&again, dir.path());
        assert!(again.index_is_current(0), "rebuilt when the table opened");
        for (p, &id) in paths.iter().zip(&ids) {
            let (found, _) = t.lookup(path_fd(p), key(&path_fd(p)), libc::S_IFREG).unwrap();
            assert_eq!(found, id, "{} keeps its nodeid", p.display());
            assert_eq!(t.lookup_count(id), 2);
        }
    }
}
