//! The `Filesystem` trait: one method per FUSE operation, each returning its result.
//!
//! Methods return values instead of writing replies themselves, so the dispatcher sees every
//! entry and handle handed to the kernel (the place where recovery records them). Every method
//! has a default that answers ENOSYS (or, for the few the kernel needs, a harmless success).

use std::ffi::OsStr;
use std::time::Duration;

use fuse_abi::{fuse_attr, fuse_kstatfs};
use fuse_proto::{Errno, dirent::DirentBuf};

use crate::channel::Context;

/// Result of a filesystem operation: a value or the errno the application will see.
pub type Result<T> = std::result::Result<T, Errno>;

/// A directory entry handed to the kernel (LOOKUP, MKDIR, CREATE, READDIRPLUS...). Each one
/// the kernel receives adds one to the nodeid's lookup count, to be dropped by FORGET.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub nodeid: u64,
    pub generation: u64,
    pub attr: fuse_attr,
    pub entry_valid: Duration,
    pub attr_valid: Duration,
}

/// Attributes with their cache lifetime (GETATTR, SETATTR).
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub attr: fuse_attr,
    pub valid: Duration,
}

/// An open file or directory: the handle the kernel passes back on every later request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// FOPEN_* flags.
    pub open_flags: u32,
    /// Kernel passthrough: the backing id from `Context::backing_open`, with FOPEN_PASSTHROUGH.
    pub backing_id: i32,
}

/// Filesystem statistics (STATFS).
pub type Statfs = fuse_kstatfs;

/// A time to set: a given instant or the server's current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At { sec: i64, nsec: u32 },
}

/// The changes a SETATTR asks for; `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<SetTime>,
    /// The open file the change comes through (ftruncate, fchmod...), if any.
    pub fh: Option<u64>,
    /// FATTR_KILL_SUIDGID: the kernel asks to clear setuid/setgid with this change.
    pub kill_suidgid: bool,
}

/// A POSIX record lock as the kernel describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lock {
    pub start: u64,
    pub end: u64,
    /// F_RDLCK, F_WRLCK or F_UNLCK.
    pub typ: u32,
    pub pid: u32,
}

/// What an IOCTL returns: the ioctl's result and the bytes copied back to the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoctlOut {
    pub result: i32,
    pub data: Vec<u8>,
}

/// The arguments of a CREATE or TMPFILE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateArgs {
    /// File type and permission bits, already masked by the kernel unless FUSE_DONT_MASK.
    pub mode: u32,
    pub umask: u32,
    /// open(2) flags.
    pub flags: i32,
}

/// The arguments of a COPY_FILE_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRange {
    pub ino_in: u64,
    pub fh_in: u64,
    pub off_in: u64,
    pub ino_out: u64,
    pub fh_out: u64,
    pub off_out: u64,
    pub len: u64,
    pub flags: u64,
}

/// A READDIR / READDIRPLUS reply being filled.
pub struct DirFiller<'r, 'b> {
    pub(crate) buf: &'r mut DirentBuf<'b>,
    pub(crate) plus: bool,
    pub(crate) entries: &'r mut Vec<u64>,
}

impl DirFiller<'_, '_> {
    /// True for READDIRPLUS: entries carry attributes and count as lookups.
    pub fn is_plus(&self) -> bool {
        self.plus
    }

    /// Adds a READDIR record; false when the reply is full (the entry was not added).
    pub fn add(&mut self, ino: u64, next_offset: u64, typ: u32, name: &OsStr) -> bool {
        self.buf.push(ino, next_offset, typ, name)
    }

    /// Adds a READDIRPLUS record; false when the reply is full, and then the entry is not
    /// handed to the kernel, so its lookup must not be counted. An entry with nodeid 0 is
    /// sent without attributes and counts nothing.
    pub fn add_plus(&mut self, entry: &Entry, next_offset: u64, typ: u32, name: &OsStr) -> bool {
        let out = crate::dispatch::entry_out(entry);
        let added = self.buf.push_plus(&out, next_offset, typ, name);
        if added && entry.nodeid != 0 {
            self.entries.push(entry.nodeid);
        }
        added
    }
}

/// A FUSE filesystem. `ctx` says who asks (uid, gid, pid) and gives access to the channel.
#[allow(unused_variables)]
pub trait Filesystem: Send + Sync + 'static {
    /// The session is up (fresh or resumed); `negotiated_flags` are the agreed INIT flags.
    fn init(&self, negotiated_flags: u64) {}
    /// The kernel is tearing the connection down.
    fn destroy(&self) {}

    fn lookup(&self, ctx: &Context<'_>, parent: u64, name: &OsStr) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    /// Drops `nlookup` from the nodeid's lookup count. No reply.
    fn forget(&self, nodeid: u64, nlookup: u64) {}
    fn getattr(&self, ctx: &Context<'_>, nodeid: u64, fh: Option<u64>) -> Result<Attr> {
        Err(Errno::ENOSYS)
    }
    fn setattr(&self, ctx: &Context<'_>, nodeid: u64, set: &SetAttr) -> Result<Attr> {
        Err(Errno::ENOSYS)
    }
    fn readlink(&self, ctx: &Context<'_>, nodeid: u64) -> Result<Vec<u8>> {
        Err(Errno::ENOSYS)
    }
    fn symlink(
        &self,
        ctx: &Context<'_>,
        parent: u64,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    fn mknod(
        &self,
        ctx: &Context<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    fn mkdir(
        &self,
        ctx: &Context<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    fn unlink(&self, ctx: &Context<'_>, parent: u64, name: &OsStr) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn rmdir(&self, ctx: &Context<'_>, parent: u64, name: &OsStr) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// `flags`: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT.
    fn rename(
        &self,
        ctx: &Context<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn link(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        newparent: u64,
        newname: &OsStr,
    ) -> Result<Entry> {
        Err(Errno::ENOSYS)
    }
    fn open(&self, ctx: &Context<'_>, nodeid: u64, flags: i32) -> Result<Opened> {
        Err(Errno::ENOSYS)
    }
    /// The uid that a file, directory, node or symlink made for this caller belongs to: how a
    /// resent MKDIR, MKNOD, SYMLINK or CREATE tells its own entry (made before the crash) from
    /// one another user made under the same name while the server was down (in a sticky
    /// directory such as /tmp, the classic O_EXCL race), which must not be handed to the
    /// caller. Default: the caller's uid (a filesystem that creates as the caller). A server
    /// that creates everything as itself answers its own uid.
    fn creator_uid(&self, ctx: &Context<'_>) -> u32 {
        ctx.uid
    }
    /// Opens, for a resent CREATE that had taken effect before a crash, the file that CREATE
    /// made (`flags` without O_CREAT, O_EXCL, O_TRUNC). Creating a file grants its creator the
    /// access asked for whatever the new file's mode (`open(O_CREAT | O_RDWR, 0)` succeeds),
    /// so a filesystem that checks permissions in `open` should not refuse its owner here for
    /// the mode bits. Default: `open`.
    fn reopen_created(&self, ctx: &Context<'_>, nodeid: u64, flags: i32) -> Result<Opened> {
        self.open(ctx, nodeid, flags)
    }
    /// Reads into `buf` (its length is the size asked for); returns the bytes read.
    fn read(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        Err(Errno::ENOSYS)
    }
    /// `write_flags`: FUSE_WRITE_*; `flags`: the file's open flags. Returns bytes written.
    fn write(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        flags: i32,
    ) -> Result<u32> {
        Err(Errno::ENOSYS)
    }
    fn flush(&self, ctx: &Context<'_>, nodeid: u64, fh: u64, lock_owner: u64) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn release(&self, ctx: &Context<'_>, nodeid: u64, fh: u64, flags: i32) -> Result<()> {
        Ok(())
    }
    fn fsync(&self, ctx: &Context<'_>, nodeid: u64, fh: u64, datasync: bool) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn opendir(&self, ctx: &Context<'_>, nodeid: u64, flags: i32) -> Result<Opened> {
        Ok(Opened::default())
    }
    /// Fills entries after `offset` (0 = from the start); each entry's offset is the cookie of
    /// the entry that follows it. Also serves READDIRPLUS (`out.is_plus()`).
    fn readdir(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        offset: u64,
        out: &mut DirFiller<'_, '_>,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn releasedir(&self, ctx: &Context<'_>, nodeid: u64, fh: u64) -> Result<()> {
        Ok(())
    }
    fn fsyncdir(&self, ctx: &Context<'_>, nodeid: u64, fh: u64, datasync: bool) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn statfs(&self, ctx: &Context<'_>, nodeid: u64) -> Result<Statfs> {
        Ok(Statfs { bsize: 512, namelen: 255, ..Statfs::default() })
    }
    fn setxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// With an empty `buf`, returns the value's size; otherwise fills `buf` (ERANGE if short).
    fn getxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        name: &OsStr,
        buf: &mut [u8],
    ) -> Result<usize> {
        Err(Errno::ENOSYS)
    }
    /// As `getxattr`, for the NUL-separated list of names.
    fn listxattr(&self, ctx: &Context<'_>, nodeid: u64, buf: &mut [u8]) -> Result<usize> {
        Err(Errno::ENOSYS)
    }
    fn removexattr(&self, ctx: &Context<'_>, nodeid: u64, name: &OsStr) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn access(&self, ctx: &Context<'_>, nodeid: u64, mask: u32) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn create(
        &self,
        ctx: &Context<'_>,
        parent: u64,
        name: &OsStr,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        Err(Errno::ENOSYS)
    }
    fn getlk(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        owner: u64,
        lock: Lock,
    ) -> Result<Lock> {
        Err(Errno::ENOSYS)
    }
    fn setlk(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        owner: u64,
        lock: Lock,
        sleep: bool,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    /// BSD flock: `op` is LOCK_SH, LOCK_EX or LOCK_UN, with LOCK_NB unless `sleep`.
    fn flock(&self, ctx: &Context<'_>, nodeid: u64, fh: u64, owner: u64, op: i32) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn bmap(&self, ctx: &Context<'_>, nodeid: u64, blocksize: u32, block: u64) -> Result<u64> {
        Err(Errno::ENOSYS)
    }
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        flags: u32,
        cmd: u32,
        arg: u64,
        input: &[u8],
        out_size: u32,
    ) -> Result<IoctlOut> {
        Err(Errno::ENOSYS)
    }
    /// Returns the ready events.
    fn poll(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
    ) -> Result<u32> {
        Err(Errno::ENOSYS)
    }
    fn fallocate(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        Err(Errno::ENOSYS)
    }
    fn lseek(
        &self,
        ctx: &Context<'_>,
        nodeid: u64,
        fh: u64,
        offset: u64,
        whence: u32,
    ) -> Result<u64> {
        Err(Errno::ENOSYS)
    }
    /// Returns the bytes copied.
    fn copy_file_range(&self, ctx: &Context<'_>, range: &CopyRange) -> Result<u64> {
        Err(Errno::ENOSYS)
    }
    fn tmpfile(&self, ctx: &Context<'_>, parent: u64, args: CreateArgs) -> Result<(Entry, Opened)> {
        Err(Errno::ENOSYS)
    }
    fn syncfs(&self, ctx: &Context<'_>, nodeid: u64) -> Result<()> {
        Err(Errno::ENOSYS)
    }
}
