//! The wrapper's nodeids and file handles, and their translation to the stock server's.
//!
//! The kernel only ever sees the wrapper's own nodeids and file handles. Those live in the
//! state store, so they outlive the wrapper's process: an inode record (nodeid = slot + 2,
//! the root is 1 and has none) holds the inode's type, the inode number the kernel was
//! given, a generation, the kernel's lookup count and the slot of a (parent, name) it was
//! last looked up or created by; a handle record holds the inode, the open flags and the
//! opener's ids. Records of a name are never changed: a rename publishes a new one and
//! switches the inode's `Name` word in one store, so a wrapper killed at any instant leaves
//! whole names.
//!
//! The stock server's nodeids and handles are only good for one life of that server (one
//! epoch of [`crate::upstream::Conn`]); they are kept in this process's memory, by epoch.
//! After a restart an inode is found again lazily, on first use, by a LOOKUP of its
//! recorded name in its parent (found again the same way, up to the root); it must be of
//! the recorded type (and, when the server gives real inode numbers, have the recorded
//! one), or it is ESTALE for that inode alone. A handle is reopened on first use with its
//! original flags less O_CREAT, O_EXCL and O_TRUNC.
//!
//! Lookup counts: each entry the server answers with counts one lookup at the server, and
//! the wrapper counts them per epoch; when the kernel forgets an inode for good the wrapper
//! forgets all of them to the server at once. A restarted server has counted none, and is
//! never sent a FORGET for the dead one's.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fuse_abi::{fuse_attr, fuse_entry_out};
use fuse_proto::Errno;
use fuse_recovery::store::{NoWords, Record, Records, Store, StoreError, TableSpec, Word};
use zerocopy::byteorder::little_endian::{U16, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire;

/// The root's nodeid, the same for the kernel and every server.
pub const ROOT: u64 = fuse_abi::FUSE_ROOT_ID;
const FIRST: u64 = ROOT + 1;

/// An inode's record: written once.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct StoredNode {
    /// The inode number the kernel is given (`attr.ino` of every reply is set to it).
    ino: u64,
    /// The generation the kernel is given with the nodeid.
    generation: u64,
    /// The file type bits (`S_IFMT`).
    kind: u32,
    /// 1 when `ino` is the server's own inode number (checked when the inode is found
    /// again), 0 when it was the wrapper's nodeid (the server's was its nodeid, which a
    /// restarted server numbers anew).
    server_ino: u32,
}

#[derive(Debug, Clone, Copy)]
enum NodeWord {
    /// The kernel's lookup count.
    Nlookup,
    /// Slot + 1 of the inode's record in the names table (0: none, the root).
    Name,
}

impl Word for NodeWord {
    const COUNT: u32 = 2;
    fn index(self) -> usize {
        self as usize
    }
}

impl Record for StoredNode {
    const NAME: &'static str = "wrap_inodes";
    const CAPACITY: u64 = 1 << 22;
    type Word = NodeWord;
}

const MAX_NAME: usize = 255;

/// A (parent, name), little-endian and unaligned (265 bytes).
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

    /// The (parent, name), `None` if the record holds no valid name (the store is input:
    /// a name with `/` or NUL, `.`, `..` or empty is none).
    fn get(&self) -> Option<(u64, Vec<u8>)> {
        let name = self.name.get(..usize::from(self.len.get()))?;
        (wire::valid_name(name) && name != b"." && name != b"..")
            .then(|| (self.parent.get(), name.to_vec()))
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

impl StoredNames {
    fn new(parent: u64, name: &[u8], before: Option<(u64, &[u8])>) -> StoredNames {
        StoredNames {
            current: StoredName::new(parent, name),
            before: before.map_or_else(StoredName::new_zeroed, |(p, n)| StoredName::new(p, n)),
        }
    }
}

impl Record for StoredNames {
    const NAME: &'static str = "wrap_names";
    const CAPACITY: u64 = 1 << 22;
    type Word = NoWords;
}

/// An open file or directory: written once.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct StoredHandle {
    nodeid: u64,
    /// The generation in the fh's high half: a RELEASE resent after the slot was reused
    /// names no handle.
    generation: u32,
    /// The open flags as the kernel sent them.
    flags: i32,
    dir: u32,
    uid: u32,
    gid: u32,
    _pad: u32,
}

impl Record for StoredHandle {
    const NAME: &'static str = "wrap_handles";
    const CAPACITY: u64 = 1 << 20;
    type Word = NoWords;
}

/// The store tables of the wrapper's nodeids, names and handles.
pub const TABLES: [TableSpec; 3] = [StoredNode::SPEC, StoredNames::SPEC, StoredHandle::SPEC];

/// What the wrapper knows of one of its inodes.
#[derive(Debug, Clone)]
pub struct Node {
    /// The file type bits.
    pub kind: u32,
    /// The inode number the kernel is given.
    pub ino: u64,
    /// Whether `ino` is the server's (so must match when found again).
    pub server_ino: bool,
    /// The generation.
    pub generation: u64,
    /// Its recorded (parent, name), `None` for the root.
    pub name: Option<(u64, Vec<u8>)>,
    /// The name it had before a rename in progress (tried when `name` is not there).
    pub before: Option<(u64, Vec<u8>)>,
}

/// An open handle's record.
#[derive(Debug, Clone, Copy)]
pub struct Handle {
    /// The inode it is open on.
    pub nodeid: u64,
    /// Its open flags.
    pub flags: i32,
    /// A directory handle (OPENDIR).
    pub dir: bool,
    /// The opener's uid and gid (a reopen is made as them).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
}

/// One server life's translations.
#[derive(Default)]
struct Epoch {
    epoch: u64,
    /// Wrapper nodeid -> (server nodeid, lookups the server counted).
    server: HashMap<u64, (u64, u64)>,
    /// Server nodeid -> wrapper nodeid.
    ours: HashMap<u64, u64>,
    /// Wrapper fh -> server fh.
    fhs: HashMap<u64, u64>,
}

struct Inner {
    epoch: Epoch,
    /// (parent, name) -> nodeid, of every recorded name.
    by_name: HashMap<(u64, Box<[u8]>), u64>,
    /// Server inode number -> nodeids, of the inodes recorded with the server's numbers: a
    /// restarted server's entry for an inode the wrapper knows under another name (a hard
    /// link) may be one of them, as a lookup by that one's own name tells.
    by_ino: HashMap<u64, Vec<u64>>,
    next_generation: u64,
}

/// The tables (see the module documentation).
pub struct Nodes {
    nodes: Records<StoredNode>,
    names: Records<StoredNames>,
    handles: Records<StoredHandle>,
    inner: Mutex<Inner>,
    /// The server lookups to forget (server nodeid, count), sent outside the lock.
    _store: Arc<Store>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes").finish_non_exhaustive()
    }
}

/// What binding a server entry to a wrapper inode gave.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The wrapper's nodeid.
    pub nodeid: u64,
    /// Its generation.
    pub generation: u64,
    /// The inode number to give the kernel.
    pub ino: u64,
}

/// A recorded (parent nodeid, name).
type Named = (u64, Vec<u8>);

/// A server lookup count to hand back (FORGET), the server's nodeid and how many.
pub type Forget = (u64, u64);

impl Nodes {
    /// The tables of `store`, and an index of the names recorded in them.
    pub fn open(store: Arc<Store>) -> Result<Nodes, StoreError> {
        let nodes = Records::<StoredNode>::open(&store)?;
        let names = Records::<StoredNames>::open(&store)?;
        let handles = Records::<StoredHandle>::open(&store)?;
        let mut by_name = HashMap::new();
        let mut by_ino: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut max_generation = 0;
        for slot in 0..nodes.high_water() {
            let Some(node) = nodes.get(slot) else { continue };
            max_generation = max_generation.max(node.generation);
            let name = nodes.word(slot, NodeWord::Name).load(Ordering::Acquire);
            let record = name.checked_sub(1).and_then(|n| names.get(n));
            if let Some((parent, name)) = record.and_then(|n| n.current.get()) {
                // Two inodes under one name: one was being renamed there when the wrapper
                // died. That one keeps the key (and, renaming, is adopted by neither name).
                let renaming = record.is_some_and(|n| n.before.get().is_some());
                let key = (parent, name.into_boxed_slice());
                if renaming || !by_name.contains_key(&key) {
                    by_name.insert(key, slot + FIRST);
                }
            }
            if node.server_ino != 0 {
                by_ino.entry(node.ino).or_default().push(slot + FIRST);
            }
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() << 20);
        Ok(Nodes {
            nodes,
            names,
            handles,
            inner: Mutex::new(Inner {
                epoch: Epoch::default(),
                by_name,
                by_ino,
                next_generation: seed.max(max_generation + 1),
            }),
            _store: store,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The translations of `epoch`, cleared when a newer server is first used. `None` for an
    /// older epoch than the one in use (its server is dead).
    fn epoch(inner: &mut Inner, epoch: u64) -> Option<&mut Epoch> {
        if inner.epoch.epoch < epoch {
            inner.epoch = Epoch { epoch, ..Epoch::default() };
        }
        (inner.epoch.epoch == epoch).then_some(&mut inner.epoch)
    }

    fn slot(nodeid: u64) -> Option<u64> {
        nodeid.checked_sub(FIRST)
    }

    /// The recorded name of the inode in `slot`, and the one before a rename in progress.
    fn names_of(&self, slot: u64) -> (Option<Named>, Option<Named>) {
        let word = self.nodes.word(slot, NodeWord::Name).load(Ordering::Acquire);
        let names = word.checked_sub(1).and_then(|n| self.names.get(n));
        (names.and_then(|n| n.current.get()), names.and_then(|n| n.before.get()))
    }

    /// The wrapper's record of `nodeid`.
    pub fn node(&self, nodeid: u64) -> Result<Node, Errno> {
        if nodeid == ROOT {
            return Ok(Node {
                kind: libc::S_IFDIR,
                ino: ROOT,
                server_ino: false,
                generation: 0,
                name: None,
                before: None,
            });
        }
        let slot = Self::slot(nodeid).ok_or(Errno::ESTALE)?;
        let stored = self.nodes.get(slot).ok_or(Errno::ESTALE)?;
        let name = self.nodes.word(slot, NodeWord::Name).load(Ordering::Acquire);
        let names = name.checked_sub(1).and_then(|n| self.names.get(n));
        Ok(Node {
            kind: stored.kind,
            ino: stored.ino,
            server_ino: stored.server_ino != 0,
            generation: stored.generation,
            name: names.and_then(|n| n.current.get()),
            before: names.and_then(|n| n.before.get()),
        })
    }

    /// The server's nodeid for `nodeid` in `epoch`, if it has been found in that life.
    pub fn server_node(&self, epoch: u64, nodeid: u64) -> Option<u64> {
        if nodeid == ROOT {
            return Some(ROOT);
        }
        let mut inner = self.lock();
        Self::epoch(&mut inner, epoch)?.server.get(&nodeid).map(|s| s.0)
    }

    /// The wrapper inode `epoch`'s server nodeid `s` is bound to, if `epoch` is the one in
    /// use (the root is the root).
    pub fn ours(&self, epoch: u64, s: u64) -> Option<u64> {
        if s == ROOT {
            return Some(ROOT);
        }
        let inner = self.lock();
        (inner.epoch.epoch == epoch).then(|| inner.epoch.ours.get(&s).copied()).flatten()
    }

    /// Whether `epoch`'s server nodeid `s` is bound to a wrapper inode.
    pub fn knows_server(&self, epoch: u64, s: u64) -> bool {
        let mut inner = self.lock();
        Self::epoch(&mut inner, epoch).is_some_and(|e| e.ours.contains_key(&s))
    }

    /// The inodes recorded with the server's inode number `ino` and of `kind`, that have a
    /// name and that `epoch`'s server has not found yet: those a restarted server's entry
    /// for `ino` may be (a hard link found first under another name). Only a lookup by
    /// their own names tells: the file system reuses the numbers of deleted inodes.
    pub fn unfound_with_ino(&self, epoch: u64, ino: u64, kind: u32) -> Vec<u64> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if !Self::current(inner, epoch) {
            return Vec::new();
        }
        let Some(list) = inner.by_ino.get(&ino) else {
            return Vec::new();
        };
        list.iter()
            .copied()
            .filter(|&w| {
                !inner.epoch.server.contains_key(&w)
                    && Self::slot(w).is_some_and(|slot| {
                        self.nodes.get(slot).is_some_and(|n| n.kind == kind)
                            && self.nodes.word(slot, NodeWord::Name).load(Ordering::Acquire) != 0
                    })
            })
            .collect()
    }

    /// The inode recorded under (`parent`, `name`), if any.
    pub fn named(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.lock().by_name.get(&(parent, Box::<[u8]>::from(name.as_bytes()))).copied()
    }

    /// Records that `nodeid`, found again in `epoch` by a LOOKUP that answered `entry`, is
    /// the server's `entry.nodeid`. Errors (ESTALE) when it is not the same inode, and then
    /// gives back the server lookup to forget.
    pub fn rebind(
        &self,
        epoch: u64,
        nodeid: u64,
        entry: &fuse_entry_out,
    ) -> Result<(), (Errno, Option<Forget>)> {
        let node = self.node(nodeid).map_err(|e| (e, Some((entry.nodeid, 1))))?;
        let stale = Err((Errno::ESTALE, Some((entry.nodeid, 1))));
        if wire::kind(&entry.attr) != node.kind || (node.server_ino && entry.attr.ino != node.ino) {
            return stale;
        }
        let mut inner = self.lock();
        let Some(e) = Self::epoch(&mut inner, epoch) else {
            return Err((Errno::ESTALE, None));
        };
        match e.ours.get(&entry.nodeid) {
            Some(&w) if w == nodeid => {
                e.server.entry(nodeid).or_insert((entry.nodeid, 0)).1 += 1;
                Ok(())
            }
            Some(_) => stale,
            None => {
                e.ours.insert(entry.nodeid, nodeid);
                e.server.insert(nodeid, (entry.nodeid, 1));
                Ok(())
            }
        }
    }

    /// Binds an entry the server answered in `epoch` for (`parent`, `name`) to a wrapper
    /// inode, counting one kernel lookup of it: the inode it already is in this epoch, an
    /// inode recorded under that name that this server has not found yet (the server was
    /// restarted and this is its first lookup of it), or a new one. `name` None: an entry
    /// whose name is not known here (kept under its old one).
    pub fn bind(
        &self,
        epoch: u64,
        parent: u64,
        name: Option<&OsStr>,
        entry: &fuse_entry_out,
    ) -> Result<Bound, Errno> {
        let s = entry.nodeid;
        if s == ROOT || s == 0 {
            // The root is never an entry of a directory; 0 is no entry.
            return Err(Errno::EIO);
        }
        let kind = wire::kind(&entry.attr);
        let mut guard = self.lock();
        let inner = &mut *guard;
        if !Self::current(inner, epoch) {
            // The server that answered is dead: its count died with it.
            return Err(Errno::EAGAIN);
        }
        let name = name.map(|n| n.as_bytes()).filter(|n| wire::valid_name(n));
        let existing = inner.epoch.ours.get(&s).copied().or_else(|| {
            let name = name?;
            let w = *inner.by_name.get(&(parent, Box::<[u8]>::from(name)))?;
            let slot = Self::slot(w)?;
            let stored = self.nodes.get(slot)?;
            // The index is only a way in: the inode's own record must hold the name (a
            // nodeid is a reused slot, and so is the parent's).
            let (current, before) = self.names_of(slot);
            let named = |n: &Option<Named>| {
                n.as_ref().is_some_and(|(p, n)| *p == parent && n.as_slice() == name)
            };
            // An inode with a rename in progress (a wrapper killed before its answer) is
            // not taken by either name: which one it has is the settling's to find.
            let fits = !inner.epoch.server.contains_key(&w)
                && stored.kind == kind
                && (stored.server_ino == 0 || stored.ino == entry.attr.ino)
                && named(&current)
                && before.is_none();
            fits.then_some(w)
        });
        if let Some(w) = existing {
            let slot = Self::slot(w).ok_or(Errno::EIO)?;
            let stored = self.nodes.get(slot).ok_or(Errno::EIO)?;
            inner.epoch.server.entry(w).or_insert((s, 0)).1 += 1;
            inner.epoch.ours.insert(s, w);
            self.nodes.word(slot, NodeWord::Nlookup).fetch_add(1, Ordering::AcqRel);
            if let Some(name) = name {
                self.rename_locked(inner, w, parent, name)?;
            }
            return Ok(Bound { nodeid: w, generation: stored.generation, ino: stored.ino });
        }
        let name = name.ok_or(Errno::EIO)?;
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let name_slot = self
            .names
            .insert(&StoredNames::new(parent, name, None), &[])
            .map_err(|_| Errno::ENOSPC)?;
        // The inode number: the server's, unless it is the server's nodeid (libfuse's
        // high-level API without use_ino), which a restarted server would number anew.
        let server_ino = entry.attr.ino != s;
        let mut record =
            StoredNode { ino: entry.attr.ino, generation, kind, server_ino: server_ino.into() };
        let slot = match self
            .nodes
            .insert(&record, &[(NodeWord::Name, name_slot + 1), (NodeWord::Nlookup, 1)])
        {
            Ok(slot) => slot,
            Err(_) => {
                self.names.remove(name_slot);
                return Err(Errno::ENOSPC);
            }
        };
        let w = slot + FIRST;
        if !server_ino {
            // The record is written once: the nodeid is known only now, so the record is
            // written again before anyone can read it (it is not yet in any map).
            record.ino = w;
            self.nodes.rewrite(slot, &record);
        }
        inner.epoch.server.insert(w, (s, 1));
        inner.epoch.ours.insert(s, w);
        inner.by_name.insert((parent, name.into()), w);
        if server_ino {
            inner.by_ino.entry(record.ino).or_default().push(w);
        }
        Ok(Bound { nodeid: w, generation, ino: record.ino })
    }

    /// Whether `epoch` is the one in use, moving to it when it is newer.
    fn current(inner: &mut Inner, epoch: u64) -> bool {
        Self::epoch(inner, epoch).is_some()
    }

    /// Records a rename done at the server: the inode recorded under the old name is now
    /// under the new one (and, for an exchange, the one under the new name under the old).
    pub fn renamed(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        exchange: bool,
    ) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let old_key = (parent, Box::<[u8]>::from(name.as_bytes()));
        let new_key = (newparent, Box::<[u8]>::from(newname.as_bytes()));
        // Both names are indexed anew: the moved inode under the new one, for an exchange
        // the other under the old; an inode renamed over loses its name.
        let moved = inner.by_name.remove(&old_key);
        let other = inner.by_name.remove(&new_key);
        if let Some(w) = moved {
            let _ = self.rename_locked(inner, w, newparent, newname.as_bytes());
        }
        match other {
            Some(w) if exchange => {
                let _ = self.rename_locked(inner, w, parent, name.as_bytes());
            }
            Some(w) if Some(w) != moved => self.drop_name(w, newparent, newname.as_bytes()),
            _ => {}
        }
    }

    /// Records a new name of `nodeid` (a rename, or a lookup under another name).
    pub fn rename(&self, nodeid: u64, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let mut inner = self.lock();
        self.rename_locked(&mut inner, nodeid, parent, name.as_bytes())
    }

    fn rename_locked(
        &self,
        inner: &mut Inner,
        nodeid: u64,
        parent: u64,
        name: &[u8],
    ) -> Result<(), Errno> {
        self.set_name(inner, nodeid, parent, name, false)
    }

    /// Sets the recorded name of `nodeid`; with `keep_before`, the current one stays as the
    /// fallback (a rename about to be sent). One store switches the inode to the new record.
    fn set_name(
        &self,
        inner: &mut Inner,
        nodeid: u64,
        parent: u64,
        name: &[u8],
        keep_before: bool,
    ) -> Result<(), Errno> {
        let slot = Self::slot(nodeid).ok_or(Errno::EINVAL)?;
        let word = self.nodes.word(slot, NodeWord::Name);
        let old = word.load(Ordering::Acquire);
        let old_names = old.checked_sub(1).and_then(|n| self.names.get(n));
        let old_name = old_names.and_then(|n| n.current.get());
        let unchanged = old_name.as_ref().is_some_and(|(p, n)| *p == parent && n == name);
        if unchanged && (keep_before || old_names.is_some_and(|n| n.before.get().is_none())) {
            inner.by_name.insert((parent, name.into()), nodeid);
            return Ok(());
        }
        let before =
            if keep_before { old_name.as_ref().map(|(p, n)| (*p, n.as_slice())) } else { None };
        let record = StoredNames::new(parent, name, before);
        let new = self.names.insert(&record, &[]).map_err(|_| Errno::ENOSPC)?;
        word.store(new + 1, Ordering::Release);
        if let Some(old) = old.checked_sub(1) {
            self.names.remove(old);
        }
        if let Some((p, n)) = old_name {
            let key = (p, n.into_boxed_slice());
            if inner.by_name.get(&key) == Some(&nodeid) {
                inner.by_name.remove(&key);
            }
        }
        inner.by_name.insert((parent, name.into()), nodeid);
        Ok(())
    }

    /// Before a RENAME is sent: the inode recorded under the old name is recorded under the
    /// new one, the old kept as its fallback (a wrapper killed before the answer leaves an
    /// inode findable under either). Returns that inode, for [`Nodes::rename_failed`].
    pub fn rename_begin(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
    ) -> Option<u64> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let old_key = (parent, Box::<[u8]>::from(name.as_bytes()));
        let new_key = (newparent, Box::<[u8]>::from(newname.as_bytes()));
        let w = *inner.by_name.get(&old_key)?;
        let target = inner.by_name.get(&new_key).copied();
        self.set_name(inner, w, newparent, newname.as_bytes(), true).ok()?;
        // Until the answer, the index stays as it was: the old name is the inode's key, the
        // new one the key of whatever it names.
        inner.by_name.insert(old_key, w);
        match target {
            Some(t) => inner.by_name.insert(new_key, t),
            None => inner.by_name.remove(&new_key),
        };
        Some(w)
    }

    /// A RENAME begun with [`Nodes::rename_begin`] failed: the inode's name is the old one.
    pub fn rename_failed(&self, nodeid: u64, parent: u64, name: &OsStr) {
        let mut guard = self.lock();
        let _ = self.set_name(&mut guard, nodeid, parent, name.as_bytes(), false);
    }

    /// The name (`parent`, `name`) is gone (unlink, rmdir, or a LOOKUP that did not find
    /// it): the inode recorded under it has no name any more, so a restarted server cannot
    /// be asked for it (ESTALE for it alone), and no new inode under that name is taken
    /// for it.
    pub fn unlinked(&self, parent: u64, name: &OsStr) {
        let mut inner = self.lock();
        if let Some(w) = inner.by_name.remove(&(parent, Box::<[u8]>::from(name.as_bytes()))) {
            self.drop_name(w, parent, name.as_bytes());
        }
    }

    /// `nodeid` loses its recorded name if that is (`parent`, `name`) (one store).
    fn drop_name(&self, nodeid: u64, parent: u64, name: &[u8]) {
        let Some(slot) = Self::slot(nodeid) else { return };
        if self.names_of(slot).0.is_some_and(|(p, n)| p == parent && n == name) {
            let word = self.nodes.word(slot, NodeWord::Name);
            if let Some(old) = word.swap(0, Ordering::AcqRel).checked_sub(1) {
                self.names.remove(old);
            }
        }
    }

    /// The kernel forgets `n` lookups of `nodeid`. When none is left the inode's records go
    /// and the lookups of it by the server of `epoch` (the live one, `None` while there is
    /// none) are given back, to be sent to that server as FORGET: never another life's, which
    /// that server never counted.
    pub fn forget(&self, nodeid: u64, n: u64, epoch: Option<u64>) -> Option<Forget> {
        let slot = Self::slot(nodeid)?;
        let mut inner = self.lock();
        let stored = self.nodes.get(slot)?;
        let count = self.nodes.word(slot, NodeWord::Nlookup);
        let left = count.load(Ordering::Acquire).saturating_sub(n);
        count.store(left, Ordering::Release);
        if left > 0 {
            return None;
        }
        let name = self.nodes.word(slot, NodeWord::Name).load(Ordering::Acquire);
        if let Some((p, n)) =
            name.checked_sub(1).and_then(|slot| self.names.get(slot)).and_then(|n| n.current.get())
        {
            let key = (p, n.into_boxed_slice());
            if inner.by_name.get(&key) == Some(&nodeid) {
                inner.by_name.remove(&key);
            }
        }
        if stored.server_ino != 0
            && let Some(list) = inner.by_ino.get_mut(&stored.ino)
        {
            list.retain(|&w| w != nodeid);
            if list.is_empty() {
                inner.by_ino.remove(&stored.ino);
            }
        }
        self.nodes.remove(slot);
        if let Some(name_slot) = name.checked_sub(1) {
            self.names.remove(name_slot);
        }
        let live = epoch.is_some_and(|epoch| Self::current(&mut inner, epoch));
        let e = &mut inner.epoch;
        let (s, c) = e.server.remove(&nodeid)?;
        e.ours.remove(&s);
        live.then_some((s, c))
    }

    /// The server lookups of the current epoch of an entry the kernel will not be given
    /// (a READDIRPLUS entry that did not fit): nothing of ours counted it.
    pub fn server_forget(&self, s: u64) -> Forget {
        (s, 1)
    }

    /// A new handle on `nodeid` open at the server as `server_fh` in `epoch`; the fh to give
    /// the kernel.
    pub fn open_handle(&self, epoch: u64, handle: Handle, server_fh: u64) -> Result<u64, Errno> {
        let mut inner = self.lock();
        // 31 bits: bit 63 of an fh is the keeper's (fuse_server::KEEPER_FH).
        let generation = (inner.next_generation & 0x7fff_ffff) as u32;
        inner.next_generation += 1;
        let record = StoredHandle {
            nodeid: handle.nodeid,
            generation,
            flags: handle.flags,
            dir: handle.dir.into(),
            uid: handle.uid,
            gid: handle.gid,
            _pad: 0,
        };
        let slot = self.handles.insert(&record, &[]).map_err(|_| Errno::new(libc::ENFILE))?;
        let fh = u64::from(generation) << 32 | (slot + 1);
        if let Some(e) = Self::epoch(&mut inner, epoch) {
            e.fhs.insert(fh, server_fh);
        }
        Ok(fh)
    }

    /// The record of the handle `fh` (EBADF if it names none: a stale fh).
    pub fn handle(&self, fh: u64) -> Result<Handle, Errno> {
        let slot = (fh & 0xffff_ffff).checked_sub(1).ok_or(Errno::EBADF)?;
        let record = self.handles.get(slot).ok_or(Errno::EBADF)?;
        if u64::from(record.generation) != fh >> 32 {
            return Err(Errno::EBADF);
        }
        Ok(Handle {
            nodeid: record.nodeid,
            flags: record.flags,
            dir: record.dir != 0,
            uid: record.uid,
            gid: record.gid,
        })
    }

    /// The server's fh for `fh` in `epoch`, if this server has opened it.
    pub fn server_fh(&self, epoch: u64, fh: u64) -> Option<u64> {
        let mut inner = self.lock();
        Self::epoch(&mut inner, epoch)?.fhs.get(&fh).copied()
    }

    /// Records that `fh` is open at the server as `server_fh` in `epoch` (reopened). If
    /// another thread reopened it first, theirs is kept and `Err(theirs)` returned (the
    /// caller releases its own).
    pub fn set_server_fh(&self, epoch: u64, fh: u64, server_fh: u64) -> Result<(), Option<u64>> {
        let mut inner = self.lock();
        let e = Self::epoch(&mut inner, epoch).ok_or(None)?;
        if let Some(&theirs) = e.fhs.get(&fh) {
            return Err(Some(theirs));
        }
        e.fhs.insert(fh, server_fh);
        Ok(())
    }

    /// Drops the handle `fh`; gives back its server fh in `epoch` (to release there), if
    /// that server opened it.
    pub fn close_handle(&self, epoch: u64, fh: u64) -> Option<u64> {
        let slot = (fh & 0xffff_ffff).checked_sub(1)?;
        let mut inner = self.lock();
        let record = self.handles.get(slot)?;
        if u64::from(record.generation) != fh >> 32 {
            return None;
        }
        self.handles.remove(slot);
        Self::epoch(&mut inner, epoch)?.fhs.remove(&fh)
    }

    /// The attributes as the kernel is to see them: the inode number the kernel was given.
    pub fn present(&self, nodeid: u64, ino: u64, attr: &mut fuse_attr) {
        if nodeid != ROOT {
            attr.ino = ino;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> (Arc<Store>, Nodes) {
        let store = Arc::new(Store::create("wrap-nodes-test", &TABLES).unwrap());
        (store.clone(), Nodes::open(store).unwrap())
    }

    /// A server entry numbered as libfuse's high-level API numbers it (ino = nodeid, as
    /// sshfs does), of type `kind`.
    fn entry(s: u64, kind: u32) -> fuse_entry_out {
        let mut out = fuse_entry_out::new_zeroed();
        out.nodeid = s;
        out.attr.ino = s;
        out.attr.mode = kind | 0o644;
        out
    }

    fn name(n: &str) -> Option<&OsStr> {
        Some(OsStr::new(n))
    }

    #[test]
    fn a_restarted_server_entry_takes_the_inode_recorded_under_its_name() {
        let (_store, nodes) = nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap();
        // Epoch 2 numbers anew; its entries for d and d/f are the inodes already known.
        assert_eq!(nodes.bind(2, ROOT, name("d"), &entry(3, libc::S_IFDIR)).unwrap().nodeid, d);
        let again = nodes.bind(2, d, name("f"), &entry(4, libc::S_IFREG)).unwrap();
        assert_eq!((again.nodeid, again.generation), (f.nodeid, f.generation));
        // Not one of another type.
        let (_store, nodes) = self::nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap().nodeid;
        assert_ne!(nodes.bind(2, d, name("f"), &entry(4, libc::S_IFLNK)).unwrap().nodeid, f);
    }

    #[test]
    fn a_renamed_then_unlinked_inode_is_never_taken_for_a_new_one() {
        // The create-rename-link-unlink of tests/peers/meta-workload.py: the inode created as
        // f, renamed to g, then unlinked (the kernel may still hold it, with no link left)
        // must not be what a restarted server's new d/f or d/g is bound to.
        let (_store, nodes) = nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap().nodeid;
        let w = nodes.rename_begin(d, OsStr::new("f"), d, OsStr::new("g"));
        assert_eq!(w, Some(f));
        nodes.renamed(d, OsStr::new("f"), d, OsStr::new("g"), false);
        assert_eq!(nodes.node(f).unwrap().name, Some((d, b"g".to_vec())));
        nodes.unlinked(d, OsStr::new("g"));
        assert_eq!(nodes.node(f).unwrap().name, None, "an unlinked inode keeps no name");
        for n in ["f", "g"] {
            assert_ne!(nodes.bind(2, d, name(n), &entry(20, libc::S_IFREG)).unwrap().nodeid, f);
        }
    }

    #[test]
    fn an_inode_renamed_over_loses_its_name_and_the_moved_one_takes_it() {
        let (_store, nodes) = nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap().nodeid;
        let g = nodes.bind(1, d, name("g"), &entry(9, libc::S_IFREG)).unwrap().nodeid;
        nodes.rename_begin(d, OsStr::new("f"), d, OsStr::new("g"));
        // In progress: each name is still its own inode's key.
        assert_eq!(nodes.node(f).unwrap().before, Some((d, b"f".to_vec())));
        nodes.renamed(d, OsStr::new("f"), d, OsStr::new("g"), false);
        assert_eq!(nodes.node(g).unwrap().name, None);
        let f_record = nodes.node(f).unwrap();
        assert_eq!((f_record.name, f_record.before), (Some((d, b"g".to_vec())), None));
        assert_eq!(nodes.bind(2, d, name("g"), &entry(30, libc::S_IFREG)).unwrap().nodeid, f);
    }

    #[test]
    fn a_failed_rename_leaves_both_names_as_they_were() {
        let (_store, nodes) = nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap().nodeid;
        let g = nodes.bind(1, d, name("g"), &entry(9, libc::S_IFREG)).unwrap().nodeid;
        nodes.rename_begin(d, OsStr::new("f"), d, OsStr::new("g"));
        nodes.rename_failed(f, d, OsStr::new("f"));
        assert_eq!(nodes.bind(2, d, name("f"), &entry(30, libc::S_IFREG)).unwrap().nodeid, f);
        assert_eq!(nodes.bind(2, d, name("g"), &entry(31, libc::S_IFREG)).unwrap().nodeid, g);
    }

    #[test]
    fn a_reused_slot_is_not_taken_by_a_stale_name() {
        // d/f, renamed to d/g and unlinked, is forgotten; its nodeid (a store slot) goes to
        // another file, x; d/f made anew by a restarted server must not become x.
        let (_store, nodes) = nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap().nodeid;
        nodes.rename_begin(d, OsStr::new("f"), d, OsStr::new("g"));
        nodes.renamed(d, OsStr::new("f"), d, OsStr::new("g"), false);
        nodes.unlinked(d, OsStr::new("g"));
        assert_eq!(nodes.forget(f, 1, Some(1)), Some((8, 1)));
        let x = nodes.bind(1, ROOT, name("x"), &entry(9, libc::S_IFREG)).unwrap().nodeid;
        assert_eq!(x, f, "the test needs the slot reused");
        assert_ne!(nodes.bind(2, d, name("f"), &entry(40, libc::S_IFREG)).unwrap().nodeid, x);
    }

    #[test]
    fn the_store_reopened_indexes_a_rename_in_progress_under_neither_name() {
        // The wrapper killed between rename_begin and the answer: the next one finds the
        // inode by either name when it is used, but adopts it for neither.
        let (store, nodes) = nodes();
        let d = nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid;
        let f = nodes.bind(1, d, name("f"), &entry(8, libc::S_IFREG)).unwrap().nodeid;
        let g = nodes.bind(1, d, name("g"), &entry(9, libc::S_IFREG)).unwrap().nodeid;
        nodes.rename_begin(d, OsStr::new("f"), d, OsStr::new("g"));
        drop(nodes);
        let nodes = Nodes::open(store).unwrap();
        let record = nodes.node(f).unwrap();
        assert_eq!(
            (record.name, record.before),
            (Some((d, b"g".to_vec())), Some((d, b"f".to_vec())))
        );
        assert_eq!(nodes.bind(1, ROOT, name("d"), &entry(7, libc::S_IFDIR)).unwrap().nodeid, d);
        let at_g = nodes.bind(1, d, name("g"), &entry(50, libc::S_IFREG)).unwrap().nodeid;
        assert!(at_g != f && at_g != g, "neither inode is taken while the rename is unsettled");
    }
}
