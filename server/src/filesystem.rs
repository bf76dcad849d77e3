//! The `Filesystem` trait: one method per FUSE operation, each returning its result.
//!
//! Methods return values instead of writing replies themselves, so the dispatcher sees every
//! entry and handle handed to the kernel (the place where recovery records them). Every method
//! has a default: libfuse's answer when a filesystem leaves the operation out (ENOSYS for most,
//! success for OPEN, OPENDIR, RELEASE and RELEASEDIR, a stub for STATFS).

use std::ffi::OsStr;
use std::time::Duration;

use fuse_abi::{fuse_attr, fuse_kstatfs};
use fuse_proto::{Errno, dirent::DirentBuf};

use crate::channel::Context;
use crate::ids::{FileHandle, NodeId};

/// Result of a filesystem operation: a value or the errno the application will see.
pub type Result<T> = std::result::Result<T, Errno>;

/// Proof that a lookup of a node has been counted for an entry about to go to the kernel.
///
/// Each [`Entry`] the kernel receives adds one to its node's lookup count, which the kernel
/// gives back with FORGET (`Filesystem::forget`); a filesystem that frees or reuses a node while
/// the kernel still counts it breaks every later request about it. An `Entry` can only be made
/// from a `Counted`, and a `Counted` only by [`Context::counted`], which the filesystem calls
/// where it counts: forgetting to count does not compile. A filesystem whose nodes live as long
/// as the mount (a fixed tree) calls it too, and needs no counts.
///
/// `Counted` is not `Clone`: one count, one entry.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a counted lookup must go into the Entry it was taken for"]
pub struct Counted {
    pub(crate) nodeid: NodeId,
}

impl Counted {
    /// The node whose lookup was counted.
    pub fn nodeid(&self) -> NodeId {
        self.nodeid
    }
}

/// A directory entry handed to the kernel (LOOKUP, MKDIR, CREATE, READDIRPLUS...). Each one
/// the kernel receives adds one to the nodeid's lookup count, to be dropped by FORGET; an entry
/// that does not reach the kernel (the call fails after making it, a READDIRPLUS reply is full)
/// must be forgotten by the filesystem itself ([`DirFiller::add_plus`] gives it back).
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// The counted lookup: the entry's node id.
    pub counted: Counted,
    /// With the nodeid, what the kernel uses to tell an inode from an earlier one that had the
    /// same nodeid (NFS export); 0 if nodeids are never reused.
    pub generation: u64,
    /// The inode's attributes (`st_ino` is `attr.ino`, which need not be the nodeid).
    pub attr: fuse_attr,
    /// How long the kernel may trust that the name refers to this node without asking again.
    pub entry_valid: Duration,
    /// How long the kernel may trust `attr` without a GETATTR.
    pub attr_valid: Duration,
}

impl Entry {
    /// An entry without a node (nodeid 0), which counts nothing. As a LOOKUP answer it is
    /// negative: the kernel remembers for `entry_valid` that the name does not exist (as
    /// libfuse's `e.ino = 0`). In READDIRPLUS it lists a name without attributes; the kernel
    /// looks it up when it is used.
    pub fn negative(attr: fuse_attr, entry_valid: Duration) -> Entry {
        Entry {
            counted: Counted { nodeid: NodeId(0) },
            generation: 0,
            attr,
            entry_valid,
            attr_valid: Duration::ZERO,
        }
    }

    /// The entry's node id (0 for a negative entry).
    pub fn nodeid(&self) -> NodeId {
        self.counted.nodeid
    }
}

/// Attributes with their cache lifetime (GETATTR, SETATTR).
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    /// The inode's attributes.
    pub attr: fuse_attr,
    /// How long the kernel may trust them without asking again.
    pub valid: Duration,
}

/// An open file or directory: the handle the kernel passes back on every later request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// The filesystem's handle for this open (0 for a filesystem that keeps none).
    pub fh: FileHandle,
    /// FOPEN_* flags: `FOPEN_DIRECT_IO`, `FOPEN_KEEP_CACHE`, `FOPEN_PASSTHROUGH`...
    pub open_flags: u32,
    /// Kernel passthrough: the backing id from `Context::backing_open`, with FOPEN_PASSTHROUGH.
    pub backing_id: i32,
}

/// Filesystem statistics (STATFS).
pub type Statfs = fuse_kstatfs;

/// A time to set: a given instant or the server's current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The server's clock when it applies the change (`UTIME_NOW`).
    Now,
    /// Seconds and nanoseconds since the epoch.
    At {
        /// Seconds since 1970-01-01 UTC.
        sec: i64,
        /// Nanoseconds within the second (below 10^9).
        nsec: u32,
    },
}

/// The changes a SETATTR asks for; `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (chmod); the file type bits are the kernel's to keep.
    pub mode: Option<u32>,
    /// New owner (chown).
    pub uid: Option<u32>,
    /// New group (chown).
    pub gid: Option<u32>,
    /// New size (truncate, ftruncate, or O_TRUNC without atomic truncation).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// New change time (only sent by the kernel in writeback mode).
    pub ctime: Option<SetTime>,
    /// The open file the change comes through (ftruncate, fchmod...), if any.
    pub fh: Option<FileHandle>,
    /// FATTR_KILL_SUIDGID: the kernel asks to clear setuid/setgid with this change.
    pub kill_suidgid: bool,
}

/// A POSIX record lock as the kernel describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lock {
    /// First byte of the range.
    pub start: u64,
    /// Last byte of the range, inclusive (`u64::MAX`: to the end of the file, and beyond).
    pub end: u64,
    /// F_RDLCK, F_WRLCK or F_UNLCK.
    pub typ: u32,
    /// The process holding (GETLK answer) or asking for the lock.
    pub pid: u32,
}

/// What an IOCTL returns: the ioctl's result and the bytes copied back to the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoctlOut {
    /// The ioctl's return value as the caller sees it.
    pub result: i32,
    /// The bytes copied to the caller's buffer (at most the `out_size` asked for).
    pub data: Vec<u8>,
}

/// The arguments of a CREATE or TMPFILE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateArgs {
    /// File type and permission bits, already masked by the kernel unless FUSE_DONT_MASK.
    pub mode: u32,
    /// The caller's umask.
    pub umask: u32,
    /// open(2) flags.
    pub flags: i32,
}

/// The arguments of a RENAME (rename(2), renameat2(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rename<'a> {
    /// The directory holding the name to move.
    pub parent: NodeId,
    /// The name to move.
    pub name: &'a OsStr,
    /// The directory to move it into (may be `parent`).
    pub newparent: NodeId,
    /// Its name there.
    pub newname: &'a OsStr,
    /// RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (0 for rename(2)).
    pub flags: u32,
}

/// The arguments of a LINK (link(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link<'a> {
    /// The existing node to give another name.
    pub nodeid: NodeId,
    /// The directory of the new name.
    pub newparent: NodeId,
    /// The new name.
    pub newname: &'a OsStr,
}

/// The arguments of a COPY_FILE_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRange {
    /// The node copied from.
    pub ino_in: NodeId,
    /// The open file copied from.
    pub fh_in: FileHandle,
    /// Where in it the copy starts.
    pub off_in: u64,
    /// The node copied to.
    pub ino_out: NodeId,
    /// The open file copied to.
    pub fh_out: FileHandle,
    /// Where in it the copy lands.
    pub off_out: u64,
    /// How many bytes to copy.
    pub len: u64,
    /// copy_file_range(2)'s flags (0 today).
    pub flags: u64,
}

/// A READDIR / READDIRPLUS reply being filled.
pub struct DirFiller<'r, 'b> {
    pub(crate) buf: &'r mut DirentBuf<'b>,
    pub(crate) plus: bool,
    pub(crate) entries: &'r mut Vec<NodeId>,
}

impl DirFiller<'_, '_> {
    /// True for READDIRPLUS: entries carry attributes and count as lookups.
    pub fn is_plus(&self) -> bool {
        self.plus
    }

    /// The size the kernel asked for: the most bytes of records this reply may hold (a
    /// filesystem that lists from another server asks that one for as much).
    pub fn size(&self) -> usize {
        self.buf.limit()
    }

    /// Adds a name: inode number `ino` (the `d_ino` applications see), the offset of the entry
    /// after it, its type (`DT_*`), and its name. False when the reply is full (the entry was
    /// not added; the kernel asks again from its offset). In a READDIRPLUS reply the name goes
    /// without attributes and counts nothing (as [`Entry::negative`]): the kernel looks it up
    /// when it is used, so a filesystem may list every directory with `add` alone.
    pub fn add(&mut self, ino: u64, next_offset: u64, typ: u32, name: &OsStr) -> bool {
        if self.plus {
            let attr = fuse_attr { ino, mode: typ << 12, ..fuse_attr::default() };
            let bare = crate::dispatch::entry_out(&Entry::negative(attr, Duration::ZERO));
            return self.buf.push_plus(&bare, next_offset, typ, name);
        }
        self.buf.push(ino, next_offset, typ, name)
    }

    /// Adds a READDIRPLUS record. When the reply is full the entry is given back (`Err`) and
    /// does not reach the kernel: its count is the filesystem's to drop, as for any entry it
    /// made and did not return. A negative entry ([`Entry::negative`]) lists the name without
    /// attributes and counts nothing.
    // The entry comes back by value only when the reply is full, once per reply; boxing it
    // would allocate for every record.
    #[allow(clippy::result_large_err)]
    pub fn add_plus(
        &mut self,
        entry: Entry,
        next_offset: u64,
        typ: u32,
        name: &OsStr,
    ) -> std::result::Result<(), Entry> {
        let out = crate::dispatch::entry_out(&entry);
        if !self.buf.push_plus(&out, next_offset, typ, name) {
            return Err(entry);
        }
        if entry.nodeid() != NodeId(0) {
            self.entries.push(entry.nodeid());
        }
        Ok(())
    }
}

/// A FUSE filesystem: one method per request the kernel sends, each returning its answer.
///
/// `ctx` says who asks (uid, gid, pid of the calling process) and gives access to the
/// channel. Methods run on several worker threads at once. Every method has a default, the one
/// libfuse gives an operation a filesystem leaves out, so a read-only filesystem implements
/// `lookup`, `getattr`, `read` and `readdir` and nothing else (see `examples/hello.rs`).
///
/// Errors are errno values ([`Errno`]); `?` converts `std::io::Error` and `rustix::io::Errno`.
/// An ENOSYS answer makes the kernel stop sending some operations for the rest of the mount
/// (FLUSH, FSYNC, ACCESS, XATTR calls, ...) and fail others each time.
///
/// Lookup counts: every [`Entry`] returned (from `lookup`, `mknod`, `mkdir`, `symlink`,
/// `link`, `create`, `tmpfile`, and each READDIRPLUS record) adds one to its node's count, and
/// `forget` takes counts away; a node must stay valid while its count is above zero. The
/// library calls `lookup` itself when it settles a request resent after a crash, and `forget`
/// for what it does not pass on.
#[allow(unused_variables)]
pub trait Filesystem: Send + Sync + 'static {
    /// The session is up (fresh or resumed); `negotiated_flags` are the agreed INIT flags.
    fn init(&self, negotiated_flags: u64) {}
    /// The session's [`Notifier`](crate::Notifier), given once before `init`: for a file
    /// system that must tell the kernel of changes outside any request. Default: dropped.
    fn notifier(&self, notifier: crate::Notifier) {}
    /// The kernel is tearing the connection down (DESTROY at unmount).
    fn destroy(&self) {}

    /// Looks up `name` in directory `parent`: its entry, counted; ENOENT (or a negative entry)
    /// if there is no such name.
    fn lookup(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    /// Drops `nlookup` from the nodeid's lookup count (FORGET, BATCH_FORGET); at zero the
    /// kernel holds no reference to the node any more. No reply.
    fn forget(&self, nodeid: NodeId, nlookup: u64) {}
    /// The attributes of `nodeid` (stat(2)); `fh` is the open file asked through (fstat), if
    /// the kernel says which.
    fn getattr(&self, ctx: &Context<'_>, nodeid: NodeId, fh: Option<FileHandle>) -> Result<Attr> {
        Err(Errno::ENOSYS)
    }
    /// Changes attributes (chmod, chown, truncate, utimens) and returns them as they are now.
    fn setattr(&self, ctx: &Context<'_>, nodeid: NodeId, set: &SetAttr) -> Result<Attr> {
        Err(Errno::ENOSYS)
    }
    /// The target of symlink `nodeid`, as bytes.
    fn readlink(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<Vec<u8>> {
        Err(Errno::ENOSYS)
    }
    /// Makes symlink `name` in `parent` pointing at `target`; its entry, counted.
    fn symlink(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    /// Makes a node (regular file, FIFO, socket, device: type bits in `mode`, device number in
    /// `rdev`) named `name` in `parent`; its entry, counted. `mode` is already masked by
    /// `umask` unless FUSE_DONT_MASK was negotiated.
    fn mknod(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    /// Makes directory `name` in `parent`; its entry, counted. `mode` as for `mknod`.
    fn mkdir(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    /// Removes the non-directory `name` from `parent`. The node itself lives on while the
    /// kernel counts it (an open file that was unlinked is still read and written).
    fn unlink(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// Removes the empty directory `name` from `parent` (ENOTEMPTY if it is not empty).
    fn rmdir(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// Moves a name (rename(2), renameat2(2) with [`Rename::flags`]).
    fn rename(&self, ctx: &Context<'_>, args: &Rename<'_>) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// Gives node `args.nodeid` the new name `args.newname` in `args.newparent`; the node's
    /// entry, counted.
    fn link(&self, ctx: &Context<'_>, args: &Link<'_>) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    /// Opens `nodeid` with open(2) `flags` (without O_CREAT, O_EXCL, O_NOCTTY; O_TRUNC only
    /// when FUSE_ATOMIC_O_TRUNC was negotiated). Default: success with handle 0, as libfuse's
    /// (a stateless filesystem needs no `open`).
    fn open(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        Ok(Opened::default())
    }
    /// The uid that a file, directory, node or symlink made for this caller belongs to: how a
    /// resent MKDIR, MKNOD, SYMLINK or CREATE tells its own entry (made before the crash) from
    /// one another user made under the same name while the server was down (in a sticky
    /// directory such as /tmp, the classic O_EXCL race), which must not be handed to the
    /// caller. Default: the caller's uid (a filesystem that creates as the caller). A server
    /// that creates everything as itself answers its own uid; one that cannot know (a relay to
    /// a server that maps owners, such as sshfs's) answers `None`, and then any entry of the
    /// right type under the name is taken for the request's own.
    fn creator_uid(&self, ctx: &Context<'_>) -> Option<u32> {
        Some(ctx.uid)
    }
    /// Whether the directory `entry`, found under `name` in `parent` when a MKDIR resent
    /// after a crash is settled, is taken for that MKDIR's (true: answered with it). A
    /// filesystem whose MKDIR takes more than one step (the directory, then a file of its own
    /// in it, as gocryptfs's `gocryptfs.diriv`) may find it half made: it may then remove it,
    /// if it holds nothing else, and answer false, and the MKDIR is executed again (the
    /// settling forgets the lookup of `entry` either way it goes). Called after
    /// [`Filesystem::creator_uid`]'s check. Default: true.
    fn keep_resent_mkdir(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        entry: &Entry,
    ) -> bool {
        true
    }
    /// Whether `entry`, found under LINK's new name when a LINK resent after a crash is
    /// settled, is the inode `nodeid` the LINK was for (then the LINK had taken effect).
    /// Default: the same nodeid, as for any filesystem that gives an inode one nodeid under
    /// all its names. A filesystem that gives each name its own nodeid says how it tells.
    fn same_inode(&self, ctx: &Context<'_>, nodeid: NodeId, entry: &Entry) -> bool {
        entry.nodeid() == nodeid
    }
    /// Opens, for a resent CREATE that had taken effect before a crash, the file that CREATE
    /// made (`flags` without O_CREAT, O_EXCL, O_TRUNC). Creating a file grants its creator the
    /// access asked for whatever the new file's mode (`open(O_CREAT | O_RDWR, 0)` succeeds),
    /// so a filesystem that checks permissions in `open` should not refuse its owner here for
    /// the mode bits. Default: `open`.
    fn reopen_created(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        self.open(ctx, nodeid, flags)
    }
    /// Reads from open file `fh` at `offset` into `buf` (its length is the size asked for);
    /// returns the bytes read. Fewer than asked means end of file, unless the file was opened
    /// with FOPEN_DIRECT_IO.
    fn read(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        Err(Errno::ENOSYS)
    }
    /// Writes `data` to open file `fh` at `offset`; returns the bytes written. `write_flags`:
    /// FUSE_WRITE_* (FUSE_WRITE_CACHE for a writeback flush, FUSE_WRITE_KILL_SUIDGID);
    /// `flags`: the file's open flags (O_APPEND: `offset` is where the kernel thinks the end
    /// is; in writeback mode the kernel appends itself and `offset` is where the bytes go).
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        flags: i32,
    ) -> Result<u32> {
        Err(Errno::ENOSYS)
    }
    /// A close(2) of one file descriptor of open file `fh` (there may be others, from dup or
    /// fork); `lock_owner` identifies the closer's POSIX locks. Default: ENOSYS, after which
    /// the kernel sends no more FLUSHes and close succeeds.
    fn flush(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        lock_owner: u64,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// The last reference to open file `fh` is gone; `flags` are its open flags. The answer
    /// reaches no application. Default: success.
    fn release(&self, ctx: &Context<'_>, nodeid: NodeId, fh: FileHandle, flags: i32) -> Result<()> {
        Ok(())
    }
    /// fsync(2) (`datasync`: fdatasync(2)) of open file `fh`. Default: ENOSYS, after which the
    /// kernel sends no more FSYNCs and fsync succeeds.
    fn fsync(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        datasync: bool,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// Opens directory `nodeid` for listing. Default: success with handle 0.
    fn opendir(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        Ok(Opened::default())
    }
    /// Fills entries after `offset` (0 = from the start); each entry's offset is the cookie of
    /// the entry that follows it. Also serves READDIRPLUS (`out.is_plus()`), whose records are
    /// entries, counted.
    fn readdir(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        out: &mut DirFiller<'_, '_>,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// The last reference to directory handle `fh` is gone. Default: success.
    fn releasedir(&self, ctx: &Context<'_>, nodeid: NodeId, fh: FileHandle) -> Result<()> {
        Ok(())
    }
    /// fsync(2) of an open directory. Default: ENOSYS (the kernel then stops asking).
    fn fsyncdir(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        datasync: bool,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// statfs(2) of the filesystem `nodeid` is on. Default: libfuse's (block size 512, names
    /// up to 255 bytes, every count 0).
    fn statfs(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<Statfs> {
        Ok(Statfs { bsize: 512, namelen: 255, ..Statfs::default() })
    }
    /// Sets extended attribute `name` to `value`; `flags`: XATTR_CREATE, XATTR_REPLACE.
    fn setxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// With an empty `buf`, returns the value's size; otherwise fills `buf` (ERANGE if short).
    /// ENODATA if there is no such attribute.
    fn getxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        buf: &mut [u8],
    ) -> Result<usize> {
        Err(Errno::ENOSYS)
    }
    /// As `getxattr`, for the NUL-separated list of names.
    fn listxattr(&self, ctx: &Context<'_>, nodeid: NodeId, buf: &mut [u8]) -> Result<usize> {
        Err(Errno::ENOSYS)
    }
    /// Removes extended attribute `name` (ENODATA if there is none).
    fn removexattr(&self, ctx: &Context<'_>, nodeid: NodeId, name: &OsStr) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// access(2): may the caller `mask` (R_OK, W_OK, X_OK; F_OK = 0) the node? Not sent with
    /// `default_permissions`. Default: ENOSYS, which the kernel takes as "allowed" from then
    /// on.
    fn access(&self, ctx: &Context<'_>, nodeid: NodeId, mask: u32) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// Creates and opens regular file `name` in `parent` (open(2) with O_CREAT): its entry,
    /// counted, and the open handle. Default: ENOSYS, after which the kernel sends MKNOD and
    /// OPEN instead.
    fn create(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        Err(Errno::ENOSYS)
    }
    /// F_GETLK: a lock that would conflict with `lock`, or `lock` with type F_UNLCK if none.
    fn getlk(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        owner: u64,
        lock: Lock,
    ) -> Result<Lock> {
        Err(Errno::ENOSYS)
    }
    /// F_SETLK (`sleep`: F_SETLKW, wait for the lock) for lock owner `owner`. Default:
    /// ENOSYS, after which the kernel keeps POSIX locks itself, local to this node.
    fn setlk(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        owner: u64,
        lock: Lock,
        sleep: bool,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// BSD flock: `op` is LOCK_SH, LOCK_EX or LOCK_UN, with LOCK_NB unless `sleep`. Only sent
    /// when FUSE_FLOCK_LOCKS was negotiated.
    fn flock(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        owner: u64,
        op: i32,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// FIBMAP for block devices behind the filesystem (fuseblk): the device block holding
    /// file block `block` of size `blocksize`.
    fn bmap(&self, ctx: &Context<'_>, nodeid: NodeId, blocksize: u32, block: u64) -> Result<u64> {
        Err(Errno::ENOSYS)
    }
    /// ioctl(2) `cmd` on open file `fh`, with `arg` and the caller's `input` bytes; at most
    /// `out_size` bytes go back.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        flags: u32,
        cmd: u32,
        arg: u64,
        input: &[u8],
        out_size: u32,
    ) -> Result<IoctlOut> {
        Err(Errno::ENOSYS)
    }
    /// poll(2) on open file `fh`: returns the ready events (`POLLIN`...) among `events`; `kh`
    /// is the kernel's handle for a later wake-up notification.
    fn poll(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        kh: u64,
        flags: u32,
        events: u32,
    ) -> Result<u32> {
        Err(Errno::ENOSYS)
    }
    /// fallocate(2) `mode` (FALLOC_FL_*) on the range `offset..offset + length` of open file
    /// `fh`.
    fn fallocate(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// lseek(2) with SEEK_DATA or SEEK_HOLE (`whence`); returns the offset found. Default:
    /// ENOSYS, after which the kernel answers as for a file without holes.
    fn lseek(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        whence: u32,
    ) -> Result<u64> {
        Err(Errno::ENOSYS)
    }
    /// copy_file_range(2) between two open files of this filesystem; returns the bytes
    /// copied. Default: ENOSYS, after which the kernel copies through READ and WRITE.
    fn copy_file_range(&self, ctx: &Context<'_>, range: &CopyRange) -> Result<u64> {
        Err(Errno::ENOSYS)
    }
    /// open(2) with O_TMPFILE in directory `parent`: a new file with no name, its entry,
    /// counted, and its open handle.
    fn tmpfile(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        Err(Errno::ENOSYS)
    }
    /// syncfs(2) of the filesystem `nodeid` is on.
    fn syncfs(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<()> {
        Err(Errno::ENOSYS)
    }
}
