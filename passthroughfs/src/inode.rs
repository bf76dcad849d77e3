//! The inode table: nodeid -> open `O_PATH` fd of the source inode, with its lookup count.
//!
//! Nodeids are counters, never pointers, so they mean the same thing to any process that
//! holds the table. An inode is identified by (dev, ino, mnt_id); while the table holds its
//! `O_PATH` fd the inode cannot be freed, so its number cannot be reused under us.
//!
//! Lock order: the table's mutex is a leaf; no syscall runs under it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use fuse_server::Errno;

/// The identity of a source inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
    pub mnt_id: u64,
}

/// A source inode the kernel knows by nodeid.
#[derive(Debug)]
pub struct Inode {
    /// `O_PATH | O_NOFOLLOW` fd of the inode.
    pub fd: OwnedFd,
    pub key: InodeKey,
    /// The file type bits (`S_IFMT`) of its mode.
    pub kind: u32,
    /// The kernel passthrough backing file shared by all its open handles: the kernel refuses
    /// two different backing files for one inode.
    pub backing: Mutex<Backing>,
}

/// A backing id and how many open handles use it.
#[derive(Debug, Default)]
pub struct Backing {
    pub id: i32,
    pub users: u32,
}

impl Inode {
    /// An inode entry for the `O_PATH` fd `fd`.
    pub fn new(fd: OwnedFd, key: InodeKey, kind: u32) -> Self {
        Inode { fd, key, kind, backing: Mutex::new(Backing::default()) }
    }

    /// True for symbolic links, which most path-based calls cannot reach through /proc.
    pub fn is_symlink(&self) -> bool {
        self.kind == libc::S_IFLNK
    }
}

struct Slot {
    inode: Arc<Inode>,
    nlookup: u64,
}

struct Tables {
    by_id: HashMap<u64, Slot>,
    by_key: HashMap<InodeKey, u64>,
    next_id: u64,
}

/// All inodes the kernel holds a reference to.
pub struct InodeTable {
    tables: Mutex<Tables>,
}

/// The root's nodeid (FUSE_ROOT_ID). The root is never forgotten.
pub const ROOT: u64 = fuse_abi::FUSE_ROOT_ID;

impl InodeTable {
    /// A table holding just the root.
    pub fn new(root: Inode) -> Self {
        let mut by_key = HashMap::new();
        by_key.insert(root.key, ROOT);
        let mut by_id = HashMap::new();
        by_id.insert(ROOT, Slot { inode: Arc::new(root), nlookup: 1 });
        InodeTable { tables: Mutex::new(Tables { by_id, by_key, next_id: ROOT + 1 }) }
    }

    /// The inode for `nodeid`; ESTALE if the kernel names one we do not hold.
    pub fn get(&self, nodeid: u64) -> Result<Arc<Inode>, Errno> {
        self.lock().by_id.get(&nodeid).map(|slot| slot.inode.clone()).ok_or(Errno::ESTALE)
    }

    /// Counts one lookup of the inode `fd` refers to, adding it if new. Returns its nodeid.
    /// When the inode is already known, `fd` is dropped and the held one kept.
    pub fn lookup(&self, fd: OwnedFd, key: InodeKey, kind: u32) -> u64 {
        let mut t = self.lock();
        if let Some(&nodeid) = t.by_key.get(&key)
            && let Some(slot) = t.by_id.get_mut(&nodeid)
        {
            slot.nlookup += 1;
            return nodeid;
        }
        let nodeid = t.next_id;
        t.next_id += 1;
        t.by_key.insert(key, nodeid);
        t.by_id.insert(nodeid, Slot { inode: Arc::new(Inode::new(fd, key, kind)), nlookup: 1 });
        nodeid
    }

    /// Drops `n` lookups; the inode goes when none is left. The count is checked under the
    /// same lock that `lookup` increments it under, so a racing lookup always wins.
    pub fn forget(&self, nodeid: u64, n: u64) {
        if nodeid == ROOT {
            return;
        }
        let mut t = self.lock();
        let Some(slot) = t.by_id.get_mut(&nodeid) else {
            return;
        };
        slot.nlookup = slot.nlookup.saturating_sub(n);
        if slot.nlookup == 0 {
            let key = slot.inode.key;
            t.by_id.remove(&nodeid);
            if t.by_key.get(&key) == Some(&nodeid) {
                t.by_key.remove(&key);
            }
        }
    }

    /// The lookup count of `nodeid` (0 if unknown). For tests and diagnostics.
    pub fn lookup_count(&self, nodeid: u64) -> u64 {
        self.lock().by_id.get(&nodeid).map_or(0, |slot| slot.nlookup)
    }

    /// How many inodes are held, the root included.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Never true: the root is always held.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        rustix::fs::open("/", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap()
    }

    fn key(ino: u64) -> InodeKey {
        InodeKey { dev: 1, ino, mnt_id: 1 }
    }

    #[test]
    fn lookups_of_one_inode_share_a_nodeid_and_count() {
        let t = InodeTable::new(Inode::new(fd(), key(2), libc::S_IFDIR));
        let a = t.lookup(fd(), key(10), libc::S_IFREG);
        let b = t.lookup(fd(), key(10), libc::S_IFREG);
        assert_eq!(a, b);
        assert_ne!(a, ROOT);
        assert_eq!(t.lookup_count(a), 2);
        t.forget(a, 1);
        assert!(t.get(a).is_ok());
        t.forget(a, 1);
        assert_eq!(t.get(a).unwrap_err(), Errno::ESTALE);
        let c = t.lookup(fd(), key(10), libc::S_IFREG);
        assert_ne!(c, a, "a forgotten nodeid is never handed out again");
    }

    #[test]
    fn the_root_survives_any_forget() {
        let t = InodeTable::new(Inode::new(fd(), key(2), libc::S_IFDIR));
        t.forget(ROOT, 100);
        assert!(t.get(ROOT).is_ok());
        assert_eq!(
            t.lookup(fd(), key(2), libc::S_IFDIR),
            ROOT,
            "looking up the root's inode finds the root"
        );
    }
}
