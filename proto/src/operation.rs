//! One decoded request: what the kernel asks for, with its arguments.

use std::ffi::OsStr;

use fuse_abi::{
    fuse_access_in, fuse_bmap_in, fuse_copy_file_range_in, fuse_create_in, fuse_fallocate_in,
    fuse_flush_in, fuse_forget_one, fuse_fsync_in, fuse_getattr_in, fuse_getxattr_in, fuse_init_in,
    fuse_ioctl_in, fuse_lk_in, fuse_lseek_in, fuse_mkdir_in, fuse_mknod_in,
    fuse_notify_retrieve_in, fuse_open_in, fuse_poll_in, fuse_read_in, fuse_release_in,
    fuse_setattr_in, fuse_setxattr_in, fuse_statx_in, fuse_syncfs_in, fuse_write_in,
};
use zerocopy::FromBytes;

/// The arguments of SETATTR, as the kernel sent them (`valid` says which fields count).
pub type SetattrIn = fuse_setattr_in;

/// A request's operation. Names and data borrow from the buffer the request was read into.
#[derive(Debug)]
pub enum Operation<'a> {
    /// LOOKUP: find `name` in the directory `nodeid`; replied with `fuse_entry_out`, which
    /// counts one lookup of the inode found.
    Lookup {
        /// The name to look up, without its NUL.
        name: &'a OsStr,
    },
    /// FORGET: the kernel drops `nlookup` of the lookups it holds on `nodeid`. No reply.
    Forget {
        /// How many lookups to give back (`fuse_forget_in.nlookup`).
        nlookup: u64,
    },
    /// GETATTR: the attributes of `nodeid`; replied with `fuse_attr_out`.
    Getattr {
        /// `fuse_getattr_in`: with `FUSE_GETATTR_FH` in `getattr_flags`, `fh` names the open
        /// file to stat.
        arg: fuse_getattr_in,
    },
    /// SETATTR: change the attributes of `nodeid` (chmod, chown, truncate, utimes);
    /// replied with `fuse_attr_out`.
    Setattr {
        /// The new values; only those whose `FATTR_*` bit is set in `valid` apply.
        arg: SetattrIn,
    },
    /// READLINK: the target of the symlink `nodeid`, replied as bytes without a NUL.
    Readlink,
    /// SYMLINK: create the symlink `name` in the directory `nodeid`; replied with
    /// `fuse_entry_out`.
    Symlink {
        /// The new link's name.
        name: &'a OsStr,
        /// What the link points to, stored as given.
        target: &'a OsStr,
    },
    /// MKNOD: create the file `name` (regular, device, FIFO or socket) in the directory
    /// `nodeid`; replied with `fuse_entry_out`.
    Mknod {
        /// `fuse_mknod_in`: `mode` (type and permission bits), `rdev` and the caller's
        /// `umask`.
        arg: fuse_mknod_in,
        /// The new file's name.
        name: &'a OsStr,
    },
    /// MKDIR: create the directory `name` in the directory `nodeid`; replied with
    /// `fuse_entry_out`.
    Mkdir {
        /// `fuse_mkdir_in`: permission bits in `mode` and the caller's `umask`.
        arg: fuse_mkdir_in,
        /// The new directory's name.
        name: &'a OsStr,
    },
    /// UNLINK: remove the non-directory `name` from the directory `nodeid`.
    Unlink {
        /// The name to remove.
        name: &'a OsStr,
    },
    /// RMDIR: remove the empty directory `name` from the directory `nodeid`.
    Rmdir {
        /// The name to remove.
        name: &'a OsStr,
    },
    /// RENAME and RENAME2 (RENAME has `flags == 0`): move `name` of the directory `nodeid`
    /// to `newname` of the directory `newdir`.
    Rename {
        /// The nodeid of the destination directory.
        newdir: u64,
        /// renameat2(2) flags: `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, `RENAME_WHITEOUT`.
        flags: u32,
        /// The source name, in `nodeid`.
        name: &'a OsStr,
        /// The destination name, in `newdir`.
        newname: &'a OsStr,
    },
    /// LINK: give the inode `oldnodeid` the new name `name` in the directory `nodeid`;
    /// replied with `fuse_entry_out`.
    Link {
        /// The nodeid of the existing inode.
        oldnodeid: u64,
        /// The new name.
        name: &'a OsStr,
    },
    /// OPEN: open the file `nodeid`; replied with `fuse_open_out` (its `fh` and `FOPEN_*`
    /// flags).
    Open {
        /// `fuse_open_in`: the open(2) `flags` (less `O_CREAT`, `O_EXCL`, `O_NOCTTY`, and
        /// `O_TRUNC` unless FUSE_ATOMIC_O_TRUNC) and `open_flags` (`FUSE_OPEN_KILL_SUIDGID`).
        arg: fuse_open_in,
    },
    /// READ: up to `arg.size` bytes of the file at `arg.offset`, replied as the bytes read.
    Read {
        /// `fuse_read_in`: `fh`, `offset` and `size` in bytes, `read_flags`, `lock_owner`
        /// and the file's open `flags`.
        arg: fuse_read_in,
    },
    /// WRITE: write `data` at `arg.offset`; replied with `fuse_write_out` (bytes written).
    Write {
        /// `fuse_write_in`: `fh`, `offset`, `size`, `write_flags` (`FUSE_WRITE_CACHE`,
        /// `FUSE_WRITE_LOCKOWNER`, `FUSE_WRITE_KILL_SUIDGID`), `lock_owner` and `flags`.
        arg: fuse_write_in,
        /// The bytes to write: exactly `arg.size` of them.
        data: &'a [u8],
    },
    /// STATFS: the statistics of the filesystem holding `nodeid`; replied with
    /// `fuse_statfs_out`.
    Statfs,
    /// RELEASE: the last reference to the open file `arg.fh` is gone. The reply carries
    /// nothing.
    Release {
        /// `fuse_release_in`: `fh`, the open `flags`, `release_flags`
        /// (`FUSE_RELEASE_FLUSH`, `FUSE_RELEASE_FLOCK_UNLOCK`) and `lock_owner`.
        arg: fuse_release_in,
    },
    /// FSYNC: flush the file `arg.fh` to stable storage.
    Fsync {
        /// `fuse_fsync_in`: `fh`, and `fsync_flags` bit 0 for fdatasync(2).
        arg: fuse_fsync_in,
    },
    /// SETXATTR: set the extended attribute `name` of `nodeid` to `value`.
    Setxattr {
        /// `fuse_setxattr_in`: the value's `size`, setxattr(2) `flags` (`XATTR_CREATE`,
        /// `XATTR_REPLACE`) and, with FUSE_SETXATTR_EXT, `setxattr_flags`
        /// (`FUSE_SETXATTR_ACL_KILL_SGID`); zero when not negotiated.
        arg: fuse_setxattr_in,
        /// The attribute's name, with its namespace prefix (`user.`, `security.`, ...).
        name: &'a OsStr,
        /// The new value: exactly `arg.size` bytes.
        value: &'a [u8],
    },
    /// GETXATTR: the value of the extended attribute `name` of `nodeid`.
    Getxattr {
        /// `fuse_getxattr_in`: `size` is the caller's buffer in bytes; 0 asks only for the
        /// value's size, replied with `fuse_getxattr_out`.
        arg: fuse_getxattr_in,
        /// The attribute's name, with its namespace prefix.
        name: &'a OsStr,
    },
    /// LISTXATTR: the NUL-separated names of the extended attributes of `nodeid`.
    Listxattr {
        /// `fuse_getxattr_in`: `size` is the caller's buffer in bytes; 0 asks only for the
        /// list's size, replied with `fuse_getxattr_out`.
        arg: fuse_getxattr_in,
    },
    /// REMOVEXATTR: remove the extended attribute `name` of `nodeid`.
    Removexattr {
        /// The attribute's name, with its namespace prefix.
        name: &'a OsStr,
    },
    /// FLUSH: a file descriptor of the open file `arg.fh` is being closed.
    Flush {
        /// `fuse_flush_in`: `fh` and the closing process's `lock_owner`.
        arg: fuse_flush_in,
    },
    /// INIT: the kernel's side of the negotiation, sent once per connection; replied with
    /// `fuse_init_out`.
    Init {
        /// `fuse_init_in`: the kernel's `major`.`minor`, `max_readahead` and offered
        /// `flags`/`flags2`. Kernels before 7.36 send only the first 16 bytes; the rest is
        /// then zero.
        arg: fuse_init_in,
    },
    /// OPENDIR: open the directory `nodeid`; replied with `fuse_open_out`.
    Opendir {
        /// `fuse_open_in`: the open(2) `flags`.
        arg: fuse_open_in,
    },
    /// READDIR: `fuse_dirent` records of the directory `arg.fh` from `arg.offset` on.
    Readdir {
        /// `fuse_read_in`: `fh`, `offset` (0, or the `off` of the last entry returned) and
        /// `size`, the most bytes of records the reply may hold.
        arg: fuse_read_in,
    },
    /// RELEASEDIR: the last reference to the open directory `arg.fh` is gone.
    Releasedir {
        /// `fuse_release_in`: `fh` and the open `flags`.
        arg: fuse_release_in,
    },
    /// FSYNCDIR: flush the directory `arg.fh` to stable storage.
    Fsyncdir {
        /// `fuse_fsync_in`: `fh`, and `fsync_flags` bit 0 for fdatasync(2).
        arg: fuse_fsync_in,
    },
    /// GETLK: the first POSIX lock that would conflict with `arg.lk`; replied with
    /// `fuse_lk_out` (type `F_UNLCK` when none).
    Getlk {
        /// `fuse_lk_in`: `fh`, `owner`, the lock `lk` (range, type, pid) and `lk_flags`
        /// (`FUSE_LK_FLOCK` for flock(2)).
        arg: fuse_lk_in,
    },
    /// SETLK (`sleep == false`) and SETLKW (`sleep == true`).
    Setlk {
        /// `fuse_lk_in`: `fh`, `owner`, the lock `lk` to take or release and `lk_flags`
        /// (`FUSE_LK_FLOCK` for flock(2)).
        arg: fuse_lk_in,
        /// SETLKW: wait for conflicting locks to go instead of failing at once.
        sleep: bool,
    },
    /// ACCESS: may the caller access `nodeid` with `arg.mask`? Replied with an empty
    /// success or an errno.
    Access {
        /// `fuse_access_in`: `mask` of `R_OK`, `W_OK`, `X_OK` (or `F_OK`, 0).
        arg: fuse_access_in,
    },
    /// CREATE: create and open the regular file `name` in the directory `nodeid`; replied
    /// with `fuse_entry_out` followed by `fuse_open_out`.
    Create {
        /// `fuse_create_in`: open(2) `flags`, `mode`, the caller's `umask` and
        /// `open_flags`.
        arg: fuse_create_in,
        /// The new file's name.
        name: &'a OsStr,
    },
    /// INTERRUPT: the caller waiting on request `unique` got a signal. Answered by that
    /// request's own reply, not by one of its own.
    Interrupt {
        /// The unique of the request to interrupt (`fuse_interrupt_in.unique`).
        unique: u64,
    },
    /// BMAP: the device block behind a file block (fuseblk); replied with `fuse_bmap_out`.
    Bmap {
        /// `fuse_bmap_in`: the file's `block` number and the `blocksize` in bytes.
        arg: fuse_bmap_in,
    },
    /// DESTROY: the kernel is shutting the connection down, at unmount.
    Destroy,
    /// IOCTL: an ioctl(2) on the open file `arg.fh`; replied with `fuse_ioctl_out` and the
    /// output bytes.
    Ioctl {
        /// `fuse_ioctl_in`: `fh`, `flags` (`FUSE_IOCTL_*`), `cmd`, the caller's `arg`
        /// pointer value, `in_size` and `out_size` in bytes.
        arg: fuse_ioctl_in,
        /// The input bytes: exactly `arg.in_size` of them.
        data: &'a [u8],
    },
    /// POLL: the poll(2) events ready on the open file `arg.fh`; replied with
    /// `fuse_poll_out`.
    Poll {
        /// `fuse_poll_in`: `fh`, the wakeup handle `kh`, `flags`
        /// (`FUSE_POLL_SCHEDULE_NOTIFY`) and the requested `events`.
        arg: fuse_poll_in,
    },
    /// NOTIFY_REPLY: the kernel's answer to a FUSE_NOTIFY_RETRIEVE the server sent; the
    /// header's unique is the retrieve's `notify_unique`. No reply.
    NotifyReply {
        /// `fuse_notify_retrieve_in`: the `offset` and `size` in bytes of the data returned.
        arg: fuse_notify_retrieve_in,
        /// The page-cache bytes retrieved.
        data: &'a [u8],
    },
    /// BATCH_FORGET: several FORGETs in one request. No reply.
    BatchForget {
        /// The (nodeid, nlookup) pairs.
        forgets: Forgets<'a>,
    },
    /// FALLOCATE: fallocate(2) on the open file `arg.fh`.
    Fallocate {
        /// `fuse_fallocate_in`: `fh`, `offset` and `length` in bytes, and the fallocate(2)
        /// `mode` (`FALLOC_FL_*`).
        arg: fuse_fallocate_in,
    },
    /// READDIRPLUS: like READDIR, but `fuse_direntplus` records, each counting one lookup.
    Readdirplus {
        /// `fuse_read_in`: `fh`, `offset` (0, or the `off` of the last entry returned) and
        /// `size`, the most bytes of records the reply may hold.
        arg: fuse_read_in,
    },
    /// LSEEK: lseek(2) with `SEEK_DATA` or `SEEK_HOLE` on the open file `arg.fh`; replied
    /// with `fuse_lseek_out`.
    Lseek {
        /// `fuse_lseek_in`: `fh`, `offset` in bytes and `whence`.
        arg: fuse_lseek_in,
    },
    /// COPY_FILE_RANGE (`wide == false`, replied with `fuse_write_out`) and
    /// COPY_FILE_RANGE_64 (`wide == true`, replied with `fuse_copy_file_range_out`).
    CopyFileRange {
        /// `fuse_copy_file_range_in`: source `fh_in` at `off_in` (of `nodeid`), destination
        /// `nodeid_out`/`fh_out` at `off_out`, `len` in bytes and `flags`.
        arg: fuse_copy_file_range_in,
        /// COPY_FILE_RANGE_64: the reply may count more than `u32::MAX` bytes.
        wide: bool,
    },
    /// SETUPMAPPING (DAX, virtiofs only); its arguments are not decoded.
    SetupMapping,
    /// REMOVEMAPPING (DAX, virtiofs only); its arguments are not decoded.
    RemoveMapping,
    /// SYNCFS: syncfs(2) on the filesystem holding `nodeid`.
    Syncfs {
        /// `fuse_syncfs_in`, which carries only padding.
        arg: fuse_syncfs_in,
    },
    /// TMPFILE: create an unnamed regular file (`O_TMPFILE`) in the directory `nodeid`;
    /// replied like CREATE.
    Tmpfile {
        /// `fuse_create_in`: open(2) `flags`, `mode`, the caller's `umask` and
        /// `open_flags`.
        arg: fuse_create_in,
        /// The name the kernel sends, which names nothing (the VFS calls a tmpfile `/`).
        name: &'a OsStr,
    },
    /// STATX: statx(2) of `nodeid`; replied with `fuse_statx_out`.
    Statx {
        /// `fuse_statx_in`: `getattr_flags` (`FUSE_GETATTR_FH` for `fh`), `sx_flags`
        /// (`AT_STATX_*`) and the requested `sx_mask` (`STATX_*`).
        arg: fuse_statx_in,
    },
}

/// One entry of a BATCH_FORGET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgetOne {
    /// The inode whose lookups are given back.
    pub nodeid: u64,
    /// How many lookups of it the kernel drops.
    pub nlookup: u64,
}

/// The entries of a BATCH_FORGET, read lazily from the request bytes (no alignment needed).
#[derive(Debug, Clone)]
pub struct Forgets<'a> {
    bytes: &'a [u8],
}

impl<'a> Forgets<'a> {
    /// `bytes` holds exactly `count` packed `fuse_forget_one`s.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Forgets { bytes }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.bytes.len() / size_of::<fuse_forget_one>()
    }

    /// True when the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for Forgets<'_> {
    type Item = ForgetOne;

    fn next(&mut self) -> Option<ForgetOne> {
        let (one, rest) = fuse_forget_one::read_from_prefix(self.bytes).ok()?;
        self.bytes = rest;
        Some(ForgetOne { nodeid: one.nodeid, nlookup: one.nlookup })
    }
}
