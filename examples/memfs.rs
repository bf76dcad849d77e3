//! A read-write in-memory filesystem whose every inode, directory entry, extended attribute
//! and data block lives in the recovery library's state store: a tmpfs that outlives its
//! server. With `-o tag=NAME` it registers with `fuse-keeper`; killed and started again with
//! the same command line, the new server finds everything in the store the keeper kept.
//!
//! ```sh
//! cargo run --example memfs -- -o allow_other,tag=scratch none /mnt/scratch
//! ```
//!
//! Permissions are the kernel's (`default_permissions`); the filesystem keeps POSIX's other
//! rules itself (ownership of new files, setgid directories, link counts, times). Each
//! operation orders its stores so that a server killed between any two leaves only what the
//! next server's check on attach (`Memfs::repair`) puts right: link and entry counts are
//! recomputed from the directory entries, and what nothing reaches any more is freed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuse_recovery::store::{NoWords, Record, Records, Store, TableSpec, Word};
use fuse_recovery::{Recoverable, RecoveryOptions};
use fuse_server::{
    Attr, Context, CreateArgs, DirFiller, Entry, Errno, FileHandle, Filesystem, Link, MountOptions,
    NoCustody, NodeId, Opened, Rename, Result, Session, SessionConfig, SetAttr, SetTime, Statfs,
    fuse_attr,
};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

const BLOCK: usize = 4096;
const MAX_NAME: usize = 255;
const MAX_VALUE: usize = 4096;
/// Where a symlink's target is kept: a data block at this index.
const TARGET_BLOCK: u64 = u64::MAX;
const TTL: Duration = Duration::from_secs(1);

/// An inode: its type and device number are fixed; everything else is a word.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Node {
    kind: u32,
    rdev: u32,
}

#[derive(Debug, Clone, Copy)]
enum N {
    Mode,
    Uid,
    Gid,
    Size,
    Nlink,
    /// The kernel's lookup count.
    Lookups,
    /// Open files (OPEN not yet RELEASEd).
    Opens,
    /// Directory entries in a directory.
    Entries,
    Atime,
    AtimeNs,
    Mtime,
    MtimeNs,
    Ctime,
    CtimeNs,
}

impl Word for N {
    const COUNT: u32 = 14;
    fn index(self) -> usize {
        self as usize
    }
}

impl Record for Node {
    const NAME: &'static str = "nodes";
    const CAPACITY: u64 = 1 << 18;
    type Word = N;
}

/// A name in a directory; the child it names is a word (a rename over it is one store).
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Dirent {
    parent: u64,
    len: u32,
    _pad: u32,
    name: [u8; 256],
}

#[derive(Debug, Clone, Copy)]
enum D {
    Child,
}

impl Word for D {
    const COUNT: u32 = 1;
    fn index(self) -> usize {
        self as usize
    }
}

impl Record for Dirent {
    const NAME: &'static str = "dirents";
    const CAPACITY: u64 = 1 << 18;
    const INDEXED: bool = true;
    type Word = D;
}

/// 4 KiB of a file (or a symlink's target).
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Block {
    node: u64,
    index: u64,
    data: [u8; BLOCK],
}

impl Record for Block {
    const NAME: &'static str = "blocks";
    const CAPACITY: u64 = 1 << 18;
    const INDEXED: bool = true;
    type Word = NoWords;
}

#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Xattr {
    node: u64,
    len: u32,
    value_len: u32,
    name: [u8; 256],
    value: [u8; MAX_VALUE],
}

impl Record for Xattr {
    const NAME: &'static str = "xattrs";
    const CAPACITY: u64 = 1 << 12;
    const INDEXED: bool = true;
    type Word = NoWords;
}

fn hash(a: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29) ^ (h << 31)
}

fn now() -> (u64, u64) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), u64::from(d.subsec_nanos()))
}

const S_IFMT: u32 = libc::S_IFMT;

/// The filesystem: its tables, and one lock that every operation holds.
struct Memfs {
    nodes: Records<Node>,
    dirents: Records<Dirent>,
    blocks: Records<Block>,
    xattrs: Records<Xattr>,
    lock: Mutex<()>,
}

impl Memfs {
    fn new(store: &Store) -> std::result::Result<Memfs, Box<dyn std::error::Error + Send + Sync>> {
        let fs = Memfs {
            nodes: Records::open(store)?,
            dirents: Records::open(store)?,
            blocks: Records::open(store)?,
            xattrs: Records::open(store)?,
            lock: Mutex::new(()),
        };
        if fs.nodes.high_water() == 0 {
            // A new store: the root, nodeid 1, is slot 0.
            let uid = rustix::process::getuid().as_raw();
            let gid = rustix::process::getgid().as_raw();
            fs.make(libc::S_IFDIR | 0o755, 0, uid, gid)?;
        } else {
            fs.repair();
        }
        Ok(fs)
    }

    fn locked(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot(nodeid: u64) -> Result<u64> {
        let slot = nodeid.checked_sub(1).ok_or(Errno::ESTALE)?;
        if slot < Node::CAPACITY { Ok(slot) } else { Err(Errno::ESTALE) }
    }

    fn node(&self, nodeid: u64) -> Result<Node> {
        self.nodes.get(Self::slot(nodeid)?).ok_or(Errno::ESTALE)
    }

    fn w(&self, nodeid: u64, word: N) -> &AtomicU64 {
        // Callers checked the node exists (`node`), so the slot is in range.
        self.nodes.word(nodeid - 1, word)
    }

    fn get(&self, nodeid: u64, word: N) -> u64 {
        self.w(nodeid, word).load(Ordering::Acquire)
    }

    fn set(&self, nodeid: u64, word: N, value: u64) {
        self.w(nodeid, word).store(value, Ordering::Release);
    }

    fn add(&self, nodeid: u64, word: N, delta: i64) {
        let v = self.get(nodeid, word) as i64 + delta;
        self.set(nodeid, word, v.max(0) as u64);
    }

    fn touch(&self, nodeid: u64, words: &[(N, N)]) {
        let (s, ns) = now();
        for &(sec, nsec) in words {
            self.set(nodeid, sec, s);
            self.set(nodeid, nsec, ns);
        }
    }

    /// A new node, with no name yet and no lookup counted.
    fn make(&self, mode: u32, rdev: u32, uid: u32, gid: u32) -> Result<u64> {
        let (s, ns) = now();
        let nlink = if mode & S_IFMT == libc::S_IFDIR { 2 } else { 1 };
        let words = [
            (N::Mode, u64::from(mode)),
            (N::Uid, u64::from(uid)),
            (N::Gid, u64::from(gid)),
            (N::Nlink, nlink),
            (N::Atime, s),
            (N::AtimeNs, ns),
            (N::Mtime, s),
            (N::MtimeNs, ns),
            (N::Ctime, s),
            (N::CtimeNs, ns),
        ];
        let slot = self
            .nodes
            .insert(&Node { kind: mode & S_IFMT, rdev }, &words)
            .map_err(|_| Errno::ENOSPC)?;
        Ok(slot + 1)
    }

    fn attr(&self, nodeid: u64) -> Result<fuse_attr> {
        let node = self.node(nodeid)?;
        let size = self.get(nodeid, N::Size);
        Ok(fuse_attr {
            ino: nodeid,
            size,
            blocks: size.div_ceil(512),
            atime: self.get(nodeid, N::Atime),
            mtime: self.get(nodeid, N::Mtime),
            ctime: self.get(nodeid, N::Ctime),
            atimensec: self.get(nodeid, N::AtimeNs) as u32,
            mtimensec: self.get(nodeid, N::MtimeNs) as u32,
            ctimensec: self.get(nodeid, N::CtimeNs) as u32,
            mode: self.get(nodeid, N::Mode) as u32,
            nlink: self.get(nodeid, N::Nlink) as u32,
            uid: self.get(nodeid, N::Uid) as u32,
            gid: self.get(nodeid, N::Gid) as u32,
            rdev: node.rdev,
            blksize: BLOCK as u32,
            ..fuse_attr::default()
        })
    }

    /// The entry of `nodeid`, counting a lookup.
    fn entry(&self, ctx: &Context<'_>, nodeid: u64) -> Result<Entry> {
        let attr = self.attr(nodeid)?;
        self.add(nodeid, N::Lookups, 1);
        Ok(Entry {
            counted: ctx.counted(NodeId(nodeid)),
            generation: 0,
            attr,
            entry_valid: TTL,
            attr_valid: TTL,
        })
    }

    fn find(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let index = self.dirents.index()?;
        index.find(hash(parent, name), |slot| {
            self.dirents
                .get(slot)
                .is_some_and(|d| d.parent == parent && d.name.get(..d.len as usize) == Some(name))
        })
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<(u64, u64)> {
        let name = name.as_bytes();
        if name.len() > MAX_NAME {
            return Err(Errno::ENAMETOOLONG);
        }
        let slot = self.find(parent, name).ok_or(Errno::ENOENT)?;
        Ok((slot, self.dirents.word(slot, D::Child).load(Ordering::Acquire)))
    }

    fn dir(&self, nodeid: u64) -> Result<()> {
        if self.node(nodeid)?.kind == libc::S_IFDIR { Ok(()) } else { Err(Errno::ENOTDIR) }
    }

    /// Adds the name `name` in `parent` for `child`.
    fn link_name(&self, parent: u64, name: &[u8], child: u64) -> Result<()> {
        let mut d = Dirent::new_zeroed();
        d.parent = parent;
        d.len = name.len() as u32;
        d.name[..name.len()].copy_from_slice(name);
        let slot = self.dirents.insert(&d, &[(D::Child, child)]).map_err(|_| Errno::ENOSPC)?;
        let index = self.dirents.index().ok_or(Errno::EIO)?;
        if !index.insert(hash(parent, name), slot) {
            self.dirents.remove(slot);
            return Err(Errno::ENOSPC);
        }
        self.add(parent, N::Entries, 1);
        self.touch(parent, &[(N::Mtime, N::MtimeNs), (N::Ctime, N::CtimeNs)]);
        Ok(())
    }

    fn unlink_name(&self, parent: u64, name: &[u8], slot: u64) {
        if let Some(index) = self.dirents.index() {
            index.remove(hash(parent, name), slot);
        }
        self.dirents.remove(slot);
        self.add(parent, N::Entries, -1);
        self.touch(parent, &[(N::Mtime, N::MtimeNs), (N::Ctime, N::CtimeNs)]);
    }

    /// Makes `mode` as `name` in `parent` for the caller: the new node's entry.
    fn create_node(
        &self,
        ctx: &Context<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<u64> {
        self.dir(parent)?;
        let bytes = name.as_bytes();
        if bytes.len() > MAX_NAME {
            return Err(Errno::ENAMETOOLONG);
        }
        if self.find(parent, bytes).is_some() {
            return Err(Errno::EEXIST);
        }
        let pmode = self.get(parent, N::Mode) as u32;
        let mut mode = mode;
        let gid = if pmode & libc::S_ISGID != 0 {
            if mode & S_IFMT == libc::S_IFDIR {
                mode |= libc::S_ISGID;
            }
            self.get(parent, N::Gid) as u32
        } else {
            ctx.gid
        };
        if mode & S_IFMT != libc::S_IFDIR
            && mode & libc::S_ISGID != 0
            && ctx.uid != 0
            && !in_group(ctx, gid)
        {
            mode &= !libc::S_ISGID;
        }
        let child = self.make(mode, rdev, ctx.uid, gid)?;
        if let Err(errno) = self.link_name(parent, bytes, child) {
            self.nodes.remove(child - 1);
            return Err(errno);
        }
        if mode & S_IFMT == libc::S_IFDIR {
            self.add(parent, N::Nlink, 1);
        }
        Ok(child)
    }

    /// Frees the node if nothing reaches it any more: no name, no lookup, no open file.
    fn maybe_free(&self, nodeid: u64) {
        if nodeid == 1 || self.node(nodeid).is_err() {
            return;
        }
        let linked = self.get(nodeid, N::Nlink) > 0;
        if linked || self.get(nodeid, N::Lookups) > 0 || self.get(nodeid, N::Opens) > 0 {
            return;
        }
        self.truncate_blocks(nodeid, 0);
        self.free_block(nodeid, TARGET_BLOCK);
        for slot in 0..self.xattrs.high_water() {
            if let Some(x) = self.xattrs.get(slot).filter(|x| x.node == nodeid) {
                self.remove_xattr_slot(&x, slot);
            }
        }
        self.nodes.remove(nodeid - 1);
    }

    fn block_slot(&self, nodeid: u64, index: u64) -> Option<u64> {
        let key = index.to_le_bytes();
        self.blocks.index()?.find(hash(nodeid, &key), |slot| {
            self.blocks.get(slot).is_some_and(|b| b.node == nodeid && b.index == index)
        })
    }

    fn free_block(&self, nodeid: u64, index: u64) {
        if let Some(slot) = self.block_slot(nodeid, index) {
            if let Some(i) = self.blocks.index() {
                i.remove(hash(nodeid, &index.to_le_bytes()), slot);
            }
            self.blocks.remove(slot);
        }
    }

    /// Writes `data` at `at` in block `index` of the node (creating it).
    fn write_block(&self, nodeid: u64, index: u64, at: usize, data: &[u8]) -> Result<()> {
        match self.block_slot(nodeid, index) {
            Some(slot) => {
                let mut b = self.blocks.get(slot).ok_or(Errno::EIO)?;
                b.data[at..at + data.len()].copy_from_slice(data);
                self.blocks.rewrite(slot, &b);
            }
            None => {
                let mut b = Block::new_zeroed();
                (b.node, b.index) = (nodeid, index);
                b.data[at..at + data.len()].copy_from_slice(data);
                let slot = self.blocks.insert(&b, &[]).map_err(|_| Errno::ENOSPC)?;
                let i = self.blocks.index().ok_or(Errno::EIO)?;
                if !i.insert(hash(nodeid, &index.to_le_bytes()), slot) {
                    self.blocks.remove(slot);
                    return Err(Errno::ENOSPC);
                }
            }
        }
        Ok(())
    }

    /// Zeroes `start..end` of the node's data (whole blocks freed).
    fn zero(&self, nodeid: u64, start: u64, end: u64) -> Result<()> {
        let mut at = start;
        while at < end {
            let index = at / BLOCK as u64;
            let off = (at % BLOCK as u64) as usize;
            let len = ((BLOCK - off) as u64).min(end - at) as usize;
            if off == 0 && len == BLOCK {
                self.free_block(nodeid, index);
            } else if self.block_slot(nodeid, index).is_some() {
                self.write_block(nodeid, index, off, &vec![0; len])?;
            }
            at += len as u64;
        }
        Ok(())
    }

    /// Drops the data at and beyond `size` (zeroing the rest of the last block).
    fn truncate_blocks(&self, nodeid: u64, size: u64) {
        let old = self.get(nodeid, N::Size);
        if size < old {
            let _ = self.zero(nodeid, size, old.next_multiple_of(BLOCK as u64));
        }
    }

    fn set_size(&self, nodeid: u64, size: u64) -> Result<()> {
        if size > i64::MAX as u64 {
            return Err(Errno::new(libc::EFBIG));
        }
        // The data goes first: a server killed between the two leaves the old size over
        // zeroes, which the resent request truncates again.
        self.truncate_blocks(nodeid, size);
        self.set(nodeid, N::Size, size);
        Ok(())
    }

    fn xattr_slot(&self, nodeid: u64, name: &[u8]) -> Option<u64> {
        self.xattrs.index()?.find(hash(nodeid, name), |slot| {
            self.xattrs
                .get(slot)
                .is_some_and(|x| x.node == nodeid && x.name.get(..x.len as usize) == Some(name))
        })
    }

    fn remove_xattr_slot(&self, x: &Xattr, slot: u64) {
        if let Some(i) = self.xattrs.index() {
            i.remove(hash(x.node, &x.name[..x.len as usize]), slot);
        }
        self.xattrs.remove(slot);
    }

    /// After an attach: what a server killed between two stores of one operation left
    /// inconsistent. Link and entry counts are recomputed from the directory entries; an
    /// entry naming no node goes, and so does one the index does not find (a name half added,
    /// killed between its record and its index entry, or half removed, between the two the
    /// other way: lookup could not find it while readdir listed it and rmdir counted it), and
    /// likewise a block or an extended attribute the index does not find; a node nothing
    /// reaches (no name, no lookup, no open file) goes, with its blocks and attributes; blocks
    /// past a file's size are dropped.
    fn repair(&self) {
        let mut links: HashMap<u64, u64> = HashMap::new();
        let mut entries: HashMap<u64, u64> = HashMap::new();
        let mut subdirs: HashMap<u64, u64> = HashMap::new();
        for slot in 0..self.dirents.high_water() {
            let Some(d) = self.dirents.get(slot) else { continue };
            let child = self.dirents.word(slot, D::Child).load(Ordering::Acquire);
            let name = &d.name[..(d.len as usize).min(MAX_NAME)];
            let indexed = self.find(d.parent, name) == Some(slot);
            if self.node(child).is_err() || self.node(d.parent).is_err() || !indexed {
                self.unlink_name(d.parent, name, slot);
                continue;
            }
            *links.entry(child).or_default() += 1;
            *entries.entry(d.parent).or_default() += 1;
            if self.node(child).is_ok_and(|n| n.kind == libc::S_IFDIR) {
                *subdirs.entry(d.parent).or_default() += 1;
            }
        }
        for slot in 0..self.nodes.high_water() {
            let Some(node) = self.nodes.get(slot) else { continue };
            let id = slot + 1;
            let nlink = if node.kind == libc::S_IFDIR {
                let named = id == 1 || links.contains_key(&id);
                if named { 2 + subdirs.get(&id).copied().unwrap_or(0) } else { 0 }
            } else {
                links.get(&id).copied().unwrap_or(0)
            };
            self.set(id, N::Nlink, nlink);
            self.set(id, N::Entries, entries.get(&id).copied().unwrap_or(0));
            self.maybe_free(id);
        }
        for slot in 0..self.blocks.high_water() {
            let Some(b) = self.blocks.get(slot) else { continue };
            // Not indexed: half added or half removed (as names are); a read would not find it.
            let gone = self.node(b.node).is_err() || self.block_slot(b.node, b.index) != Some(slot);
            let beyond = !gone
                && b.index != TARGET_BLOCK
                && b.index * BLOCK as u64 >= self.get(b.node, N::Size);
            if gone || beyond {
                if let Some(i) = self.blocks.index() {
                    i.remove(hash(b.node, &b.index.to_le_bytes()), slot);
                }
                self.blocks.remove(slot);
            }
        }
        for slot in 0..self.xattrs.high_water() {
            let broken = |x: &Xattr| {
                let name = &x.name[..(x.len as usize).min(x.name.len())];
                self.node(x.node).is_err() || self.xattr_slot(x.node, name) != Some(slot)
            };
            if let Some(x) = self.xattrs.get(slot).filter(broken) {
                self.remove_xattr_slot(&x, slot);
            }
        }
    }
}

/// Whether the caller is in group `gid` (its primary group or a supplementary one, from
/// /proc/PID/status: FUSE does not send them).
fn in_group(ctx: &Context<'_>, gid: u32) -> bool {
    if ctx.gid == gid {
        return true;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", ctx.pid)).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|g| g.parse() == Ok(gid)))
}

impl Filesystem for Memfs {
    fn lookup(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<Entry> {
        let _l = self.locked();
        self.dir(parent.0)?;
        let (_, child) = self.child(parent.0, name)?;
        self.entry(ctx, child)
    }

    fn forget(&self, nodeid: NodeId, nlookup: u64) {
        let _l = self.locked();
        if self.node(nodeid.0).is_ok() {
            self.add(nodeid.0, N::Lookups, -(nlookup as i64));
            self.maybe_free(nodeid.0);
        }
    }

    fn getattr(&self, _: &Context<'_>, nodeid: NodeId, _: Option<FileHandle>) -> Result<Attr> {
        let _l = self.locked();
        Ok(Attr { attr: self.attr(nodeid.0)?, valid: TTL })
    }

    fn setattr(&self, ctx: &Context<'_>, nodeid: NodeId, set: &SetAttr) -> Result<Attr> {
        let _l = self.locked();
        let id = nodeid.0;
        let node = self.node(id)?;
        if let Some(mode) = set.mode {
            let mut mode = mode & 0o7777;
            let gid = set.gid.unwrap_or(self.get(id, N::Gid) as u32);
            if ctx.uid != 0 && mode & libc::S_ISGID != 0 && !in_group(ctx, gid) {
                mode &= !libc::S_ISGID;
            }
            self.set(id, N::Mode, u64::from(node.kind | mode));
        }
        if set.uid.is_some() || set.gid.is_some() {
            if let Some(uid) = set.uid {
                self.set(id, N::Uid, u64::from(uid));
            }
            if let Some(gid) = set.gid {
                self.set(id, N::Gid, u64::from(gid));
            }
            // chown by anyone but root drops setuid, and setgid where group-executable.
            let mode = self.get(id, N::Mode) as u32;
            if node.kind != libc::S_IFDIR && set.mode.is_none() {
                let mut kill = libc::S_ISUID;
                if mode & libc::S_IXGRP != 0 {
                    kill |= libc::S_ISGID;
                }
                if ctx.uid != 0 || mode & libc::S_IXUSR != 0 {
                    self.set(id, N::Mode, u64::from(mode & !kill));
                }
            }
        }
        if let Some(size) = set.size {
            if node.kind == libc::S_IFDIR {
                return Err(Errno::EISDIR);
            }
            self.set_size(id, size)?;
            self.touch(id, &[(N::Mtime, N::MtimeNs)]);
        }
        if set.kill_suidgid {
            let mode = self.get(id, N::Mode) as u32;
            self.set(id, N::Mode, u64::from(mode & !(libc::S_ISUID | libc::S_ISGID)));
        }
        let time = |t: SetTime| match t {
            SetTime::Now => now(),
            SetTime::At { sec, nsec } => (sec as u64, u64::from(nsec)),
        };
        if let Some(t) = set.atime {
            let (s, ns) = time(t);
            self.set(id, N::Atime, s);
            self.set(id, N::AtimeNs, ns);
        }
        if let Some(t) = set.mtime {
            let (s, ns) = time(t);
            self.set(id, N::Mtime, s);
            self.set(id, N::MtimeNs, ns);
        }
        match set.ctime {
            Some(t) => {
                let (s, ns) = time(t);
                self.set(id, N::Ctime, s);
                self.set(id, N::CtimeNs, ns);
            }
            None => self.touch(id, &[(N::Ctime, N::CtimeNs)]),
        }
        Ok(Attr { attr: self.attr(id)?, valid: TTL })
    }

    fn readlink(&self, _: &Context<'_>, nodeid: NodeId) -> Result<Vec<u8>> {
        let _l = self.locked();
        if self.node(nodeid.0)?.kind != libc::S_IFLNK {
            return Err(Errno::EINVAL);
        }
        let len = self.get(nodeid.0, N::Size) as usize;
        let slot = self.block_slot(nodeid.0, TARGET_BLOCK).ok_or(Errno::EIO)?;
        let b = self.blocks.get(slot).ok_or(Errno::EIO)?;
        Ok(b.data[..len.min(BLOCK)].to_vec())
    }

    fn symlink(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<Entry> {
        let _l = self.locked();
        let target = target.as_bytes();
        if target.len() >= BLOCK {
            return Err(Errno::ENAMETOOLONG);
        }
        let child = self.create_node(ctx, parent.0, name, libc::S_IFLNK | 0o777, 0)?;
        self.write_block(child, TARGET_BLOCK, 0, target)?;
        self.set(child, N::Size, target.len() as u64);
        self.entry(ctx, child)
    }

    fn mknod(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        _umask: u32,
    ) -> Result<Entry> {
        let _l = self.locked();
        let child = self.create_node(ctx, parent.0, name, mode, rdev)?;
        self.entry(ctx, child)
    }

    fn mkdir(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        _umask: u32,
    ) -> Result<Entry> {
        let _l = self.locked();
        let child = self.create_node(ctx, parent.0, name, libc::S_IFDIR | (mode & 0o7777), 0)?;
        self.entry(ctx, child)
    }

    fn unlink(&self, _: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        let _l = self.locked();
        let (slot, child) = self.child(parent.0, name)?;
        if self.node(child)?.kind == libc::S_IFDIR {
            return Err(Errno::EISDIR);
        }
        // The name goes first: killed after it, the link count is recomputed on attach.
        self.unlink_name(parent.0, name.as_bytes(), slot);
        self.add(child, N::Nlink, -1);
        self.touch(child, &[(N::Ctime, N::CtimeNs)]);
        self.maybe_free(child);
        Ok(())
    }

    fn rmdir(&self, _: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        let _l = self.locked();
        let (slot, child) = self.child(parent.0, name)?;
        self.dir(child)?;
        if self.get(child, N::Entries) > 0 {
            return Err(Errno::ENOTEMPTY);
        }
        self.unlink_name(parent.0, name.as_bytes(), slot);
        self.add(parent.0, N::Nlink, -1);
        self.set(child, N::Nlink, 0);
        self.touch(child, &[(N::Ctime, N::CtimeNs)]);
        self.maybe_free(child);
        Ok(())
    }

    fn rename(&self, ctx: &Context<'_>, args: &Rename<'_>) -> Result<()> {
        let _l = self.locked();
        if args.flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(Errno::EINVAL);
        }
        let (from, parent, to) = (args.name.as_bytes(), args.parent.0, args.newparent.0);
        let (old_slot, moving) = self.child(parent, args.name)?;
        if args.newname.as_bytes().len() > MAX_NAME {
            return Err(Errno::ENAMETOOLONG);
        }
        self.dir(to)?;
        let is_dir = self.node(moving)?.kind == libc::S_IFDIR;
        let target = self.find(to, args.newname.as_bytes());
        let replaced = match target {
            Some(slot) => {
                if args.flags & libc::RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                let victim = self.dirents.word(slot, D::Child).load(Ordering::Acquire);
                if victim == moving {
                    // Two names of one inode: rename(2) leaves both (POSIX), unless this is a
                    // rename cut short by a kill between its two stores (the new name set,
                    // the old one not yet gone), resent: it is finished. A directory never
                    // has two names, so for one it is always that.
                    if is_dir || ctx.unique.is_resent() {
                        self.unlink_name(parent, from, old_slot);
                    }
                    return Ok(());
                }
                let victim_dir = self.node(victim)?.kind == libc::S_IFDIR;
                match (is_dir, victim_dir) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if self.get(victim, N::Entries) > 0 => {
                        return Err(Errno::ENOTEMPTY);
                    }
                    _ => {}
                }
                Some((slot, victim, victim_dir))
            }
            None => None,
        };
        // The new name first (one store when it replaces), then the old name goes.
        match replaced {
            Some((slot, _, _)) => {
                self.dirents.word(slot, D::Child).store(moving, Ordering::Release);
                self.touch(to, &[(N::Mtime, N::MtimeNs), (N::Ctime, N::CtimeNs)]);
            }
            None => self.link_name(to, args.newname.as_bytes(), moving)?,
        }
        self.unlink_name(parent, from, old_slot);
        if let Some((_, victim, victim_dir)) = replaced {
            if victim_dir {
                self.set(victim, N::Nlink, 0);
                self.add(to, N::Nlink, -1);
            } else {
                self.add(victim, N::Nlink, -1);
            }
            self.touch(victim, &[(N::Ctime, N::CtimeNs)]);
            self.maybe_free(victim);
        }
        if is_dir && parent != to {
            self.add(parent, N::Nlink, -1);
            self.add(to, N::Nlink, 1);
        }
        self.touch(moving, &[(N::Ctime, N::CtimeNs)]);
        Ok(())
    }

    fn link(&self, ctx: &Context<'_>, args: &Link<'_>) -> Result<Entry> {
        let _l = self.locked();
        let id = args.nodeid.0;
        if self.node(id)?.kind == libc::S_IFDIR {
            return Err(Errno::EPERM);
        }
        self.dir(args.newparent.0)?;
        let name = args.newname.as_bytes();
        if name.len() > MAX_NAME {
            return Err(Errno::ENAMETOOLONG);
        }
        if self.find(args.newparent.0, name).is_some() {
            return Err(Errno::EEXIST);
        }
        self.link_name(args.newparent.0, name, id)?;
        self.add(id, N::Nlink, 1);
        self.touch(id, &[(N::Ctime, N::CtimeNs)]);
        self.entry(ctx, id)
    }

    fn open(&self, _: &Context<'_>, nodeid: NodeId, _flags: i32) -> Result<Opened> {
        let _l = self.locked();
        self.node(nodeid.0)?;
        self.add(nodeid.0, N::Opens, 1);
        Ok(Opened::default())
    }

    fn create(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        let _l = self.locked();
        let child = self.create_node(ctx, parent.0, name, args.mode, 0)?;
        self.add(child, N::Opens, 1);
        Ok((self.entry(ctx, child)?, Opened::default()))
    }

    fn release(&self, _: &Context<'_>, nodeid: NodeId, _: FileHandle, _: i32) -> Result<()> {
        let _l = self.locked();
        if self.node(nodeid.0).is_ok() {
            self.add(nodeid.0, N::Opens, -1);
            self.maybe_free(nodeid.0);
        }
        Ok(())
    }

    fn read(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        _: FileHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let _l = self.locked();
        let id = nodeid.0;
        if self.node(id)?.kind == libc::S_IFDIR {
            return Err(Errno::EISDIR);
        }
        let size = self.get(id, N::Size);
        if offset >= size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - offset) as usize;
        let mut done = 0;
        while done < n {
            let at = offset + done as u64;
            let (index, off) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let len = (BLOCK - off).min(n - done);
            match self.block_slot(id, index).and_then(|s| self.blocks.get(s)) {
                Some(b) => buf[done..done + len].copy_from_slice(&b.data[off..off + len]),
                None => buf[done..done + len].fill(0),
            }
            done += len;
        }
        Ok(n)
    }

    fn write(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        _: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        _flags: i32,
    ) -> Result<u32> {
        let _l = self.locked();
        let id = nodeid.0;
        self.node(id)?;
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::new(libc::EFBIG))?;
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, off) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let len = (BLOCK - off).min(data.len() - done);
            self.write_block(id, index, off, &data[done..done + len])?;
            done += len;
        }
        if end > self.get(id, N::Size) {
            self.set(id, N::Size, end);
        }
        if write_flags & fuse_abi_kill_suidgid() != 0 {
            let mode = self.get(id, N::Mode) as u32;
            self.set(id, N::Mode, u64::from(mode & !(libc::S_ISUID | libc::S_ISGID)));
        }
        self.touch(id, &[(N::Mtime, N::MtimeNs), (N::Ctime, N::CtimeNs)]);
        Ok(data.len() as u32)
    }

    fn readdir(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        _: FileHandle,
        offset: u64,
        out: &mut DirFiller<'_, '_>,
    ) -> Result<()> {
        let _l = self.locked();
        let id = nodeid.0;
        self.dir(id)?;
        // Offsets: 1 after ".", 2 after "..", slot + 3 after the entry in dirent slot `slot`.
        if offset == 0 && !out.add(id, 1, libc::DT_DIR.into(), OsStr::new(".")) {
            return Ok(());
        }
        if offset <= 1 && !out.add(id, 2, libc::DT_DIR.into(), OsStr::new("..")) {
            return Ok(());
        }
        for slot in offset.saturating_sub(2)..self.dirents.high_water() {
            let Some(d) = self.dirents.get(slot).filter(|d| d.parent == id) else { continue };
            let child = self.dirents.word(slot, D::Child).load(Ordering::Acquire);
            let Ok(node) = self.node(child) else { continue };
            let name = OsStr::from_bytes(&d.name[..(d.len as usize).min(MAX_NAME)]);
            if !out.add(child, slot + 3, node.kind >> 12, name) {
                break;
            }
        }
        Ok(())
    }

    fn statfs(&self, _: &Context<'_>, _: NodeId) -> Result<Statfs> {
        let used = self.blocks.high_water();
        let files = self.nodes.high_water();
        Ok(Statfs {
            blocks: Block::CAPACITY,
            bfree: Block::CAPACITY - used.min(Block::CAPACITY),
            bavail: Block::CAPACITY - used.min(Block::CAPACITY),
            files: Node::CAPACITY,
            ffree: Node::CAPACITY - files.min(Node::CAPACITY),
            bsize: BLOCK as u32,
            frsize: BLOCK as u32,
            namelen: MAX_NAME as u32,
            ..Statfs::default()
        })
    }

    fn setxattr(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let _l = self.locked();
        let id = nodeid.0;
        self.node(id)?;
        let name = name.as_bytes();
        if name.len() > MAX_NAME {
            return Err(Errno::ERANGE);
        }
        if value.len() > MAX_VALUE {
            return Err(Errno::new(libc::E2BIG));
        }
        let existing = self.xattr_slot(id, name);
        match (existing, flags) {
            (Some(_), libc::XATTR_CREATE) => return Err(Errno::EEXIST),
            (None, libc::XATTR_REPLACE) => return Err(Errno::ENODATA),
            _ => {}
        }
        let mut x = Xattr::new_zeroed();
        (x.node, x.len, x.value_len) = (id, name.len() as u32, value.len() as u32);
        x.name[..name.len()].copy_from_slice(name);
        x.value[..value.len()].copy_from_slice(value);
        match existing {
            Some(slot) => self.xattrs.rewrite(slot, &x),
            None => {
                let slot = self.xattrs.insert(&x, &[]).map_err(|_| Errno::ENOSPC)?;
                let i = self.xattrs.index().ok_or(Errno::EIO)?;
                if !i.insert(hash(id, name), slot) {
                    self.xattrs.remove(slot);
                    return Err(Errno::ENOSPC);
                }
            }
        }
        self.touch(id, &[(N::Ctime, N::CtimeNs)]);
        Ok(())
    }

    fn getxattr(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        buf: &mut [u8],
    ) -> Result<usize> {
        let _l = self.locked();
        self.node(nodeid.0)?;
        let slot = self.xattr_slot(nodeid.0, name.as_bytes()).ok_or(Errno::ENODATA)?;
        let x = self.xattrs.get(slot).ok_or(Errno::ENODATA)?;
        let value = &x.value[..(x.value_len as usize).min(MAX_VALUE)];
        if buf.is_empty() {
            return Ok(value.len());
        }
        let out = buf.get_mut(..value.len()).ok_or(Errno::ERANGE)?;
        out.copy_from_slice(value);
        Ok(value.len())
    }

    fn listxattr(&self, _: &Context<'_>, nodeid: NodeId, buf: &mut [u8]) -> Result<usize> {
        let _l = self.locked();
        self.node(nodeid.0)?;
        let mut names = Vec::new();
        for slot in 0..self.xattrs.high_water() {
            if let Some(x) = self.xattrs.get(slot).filter(|x| x.node == nodeid.0) {
                names.extend_from_slice(&x.name[..(x.len as usize).min(MAX_NAME)]);
                names.push(0);
            }
        }
        if buf.is_empty() {
            return Ok(names.len());
        }
        buf.get_mut(..names.len()).ok_or(Errno::ERANGE)?.copy_from_slice(&names);
        Ok(names.len())
    }

    fn removexattr(&self, _: &Context<'_>, nodeid: NodeId, name: &OsStr) -> Result<()> {
        let _l = self.locked();
        self.node(nodeid.0)?;
        let slot = self.xattr_slot(nodeid.0, name.as_bytes()).ok_or(Errno::ENODATA)?;
        let x = self.xattrs.get(slot).ok_or(Errno::ENODATA)?;
        self.remove_xattr_slot(&x, slot);
        self.touch(nodeid.0, &[(N::Ctime, N::CtimeNs)]);
        Ok(())
    }

    fn fallocate(
        &self,
        _: &Context<'_>,
        nodeid: NodeId,
        _: FileHandle,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        let _l = self.locked();
        let id = nodeid.0;
        self.node(id)?;
        let end = offset.checked_add(length).ok_or(Errno::new(libc::EFBIG))?;
        let mode = mode as i32;
        let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        if mode
            & !(libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE)
            != 0
        {
            return Err(Errno::ENOTSUP);
        }
        if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
            let size = self.get(id, N::Size);
            self.zero(id, offset, end.min(size.next_multiple_of(BLOCK as u64)))?;
        }
        if !keep && end > self.get(id, N::Size) {
            self.set(id, N::Size, end);
        }
        self.touch(id, &[(N::Mtime, N::MtimeNs), (N::Ctime, N::CtimeNs)]);
        Ok(())
    }
}

/// FUSE_WRITE_KILL_SUIDGID: the kernel asks to clear setuid/setgid with this write.
const fn fuse_abi_kill_suidgid() -> u32 {
    1 << 2
}

/// The state store's tables.
const TABLES: [TableSpec; 5] =
    [Node::SPEC, Dirent::SPEC, Block::SPEC, Xattr::SPEC, fuse_recovery::journal::JOURNAL];

impl Recoverable for Memfs {
    const TABLES: &'static [TableSpec] = &TABLES;
}

/// `memfs [-f] [-o OPTIONS] SOURCE MOUNTPOINT`, as `mount.fuse3` and the test scripts call a
/// server: SOURCE is only the name `mount` and `df` show (as tmpfs's), `-f` is accepted (memfs
/// always stays in the foreground). Options: `allow_other`; `tag=NAME` (recoverable, with a
/// keeper), `keeper=SOCKET[:SOCKET...]`, `nokeeper_start`; `nopassthrough` is accepted and
/// means nothing (memfs never uses kernel passthrough), so passthroughfs's command lines work.
fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: memfs [-f] [-o allow_other,tag=NAME,keeper=SOCKET,nokeeper_start] SOURCE MOUNTPOINT";
    let mut tag = None;
    let mut sockets = Vec::new();
    let mut start_keeper = true;
    let mut mount = MountOptions {
        subtype: Some("memfs".into()),
        default_permissions: true,
        ..MountOptions::default()
    };
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-f" => {}
            "-o" => {
                for opt in args.next().ok_or(usage)?.split(',') {
                    match opt.split_once('=') {
                        Some(("tag", name)) => tag = Some(name.to_owned()),
                        Some(("keeper", list)) => {
                            sockets.extend(list.split(':').map(PathBuf::from))
                        }
                        None if opt == "allow_other" => mount.allow_other = true,
                        None if opt == "nokeeper_start" => start_keeper = false,
                        None if opt == "nopassthrough" => {}
                        _ => return Err(format!("memfs: unknown option {opt}\n{usage}").into()),
                    }
                }
            }
            _ => positional.push(arg),
        }
    }
    let [source, mountpoint] = <[String; 2]>::try_from(positional).map_err(|_| usage)?;
    let mountpoint = PathBuf::from(mountpoint);
    mount.fsname = Some(source);
    // Modes arrive masked with the caller's umask; the store is written as they come.
    rustix::process::umask(rustix::fs::Mode::empty());
    let _unmount = fuse_server::unmount_on_signal(&mountpoint)?;
    match tag {
        Some(tag) => {
            let mut options = RecoveryOptions::new(tag);
            options.start_keeper = start_keeper;
            if !sockets.is_empty() {
                options.sockets = sockets;
            }
            fuse_recovery::serve(
                &mountpoint,
                &mount,
                SessionConfig::default(),
                &options,
                |store| Memfs::new(&store),
                |started| eprintln!("memfs: serving ({started:?})"),
            )?;
        }
        None => {
            let store = Store::create("memfs", &TABLES)?;
            let fs = Memfs::new(&store).map_err(|e| e.to_string())?;
            let channel = fuse_server::mount(&mountpoint, &mount, Arc::new(NoCustody))?;
            Session::start(fs, channel, SessionConfig::default())?.run()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two halves a kill can leave of a name (`link_name`: the record, then its index
    /// entry; `unlink_name`: the index entry, then the record) are undone or finished by the
    /// next server's repair: neither is listed, counted or found, the intact name is.
    #[test]
    fn repair_drops_names_the_index_does_not_find() {
        let store = Store::create("memfs-test", &TABLES).unwrap();
        let fs = Memfs::new(&store).unwrap();
        let file = || fs.make(libc::S_IFREG | 0o644, 0, 0, 0).unwrap();
        let (kept, half_removed, half_added) = (file(), file(), file());
        fs.link_name(1, b"kept", kept).unwrap();
        fs.link_name(1, b"half-removed", half_removed).unwrap();
        let removed_slot = fs.find(1, b"half-removed").unwrap();
        fs.dirents.index().unwrap().remove(hash(1, b"half-removed"), removed_slot);
        let mut d = Dirent::new_zeroed();
        d.parent = 1;
        d.len = b"half-added".len() as u32;
        d.name[..d.len as usize].copy_from_slice(b"half-added");
        let added_slot = fs.dirents.insert(&d, &[(D::Child, half_added)]).unwrap();
        drop(fs);
        let fs = Memfs::new(&store).unwrap();
        assert!(fs.dirents.get(removed_slot).is_none(), "the half-removed name is gone");
        assert!(fs.dirents.get(added_slot).is_none(), "the half-added name is gone");
        assert!(fs.find(1, b"kept").is_some());
        assert_eq!(fs.get(1, N::Entries), 1, "the root counts only the intact name");
        assert_eq!(fs.get(kept, N::Nlink), 1);
        assert!(fs.node(half_removed).is_err() && fs.node(half_added).is_err(), "freed");
    }
}
