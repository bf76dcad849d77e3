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
    Lookup {
        name: &'a OsStr,
    },
    Forget {
        nlookup: u64,
    },
    Getattr {
        arg: fuse_getattr_in,
    },
    Setattr {
        arg: SetattrIn,
    },
    Readlink,
    Symlink {
        name: &'a OsStr,
        target: &'a OsStr,
    },
    Mknod {
        arg: fuse_mknod_in,
        name: &'a OsStr,
    },
    Mkdir {
        arg: fuse_mkdir_in,
        name: &'a OsStr,
    },
    Unlink {
        name: &'a OsStr,
    },
    Rmdir {
        name: &'a OsStr,
    },
    /// RENAME and RENAME2 (RENAME has `flags == 0`).
    Rename {
        newdir: u64,
        flags: u32,
        name: &'a OsStr,
        newname: &'a OsStr,
    },
    Link {
        oldnodeid: u64,
        name: &'a OsStr,
    },
    Open {
        arg: fuse_open_in,
    },
    Read {
        arg: fuse_read_in,
    },
    Write {
        arg: fuse_write_in,
        data: &'a [u8],
    },
    Statfs,
    Release {
        arg: fuse_release_in,
    },
    Fsync {
        arg: fuse_fsync_in,
    },
    Setxattr {
        arg: fuse_setxattr_in,
        name: &'a OsStr,
        value: &'a [u8],
    },
    Getxattr {
        arg: fuse_getxattr_in,
        name: &'a OsStr,
    },
    Listxattr {
        arg: fuse_getxattr_in,
    },
    Removexattr {
        name: &'a OsStr,
    },
    Flush {
        arg: fuse_flush_in,
    },
    Init {
        arg: fuse_init_in,
    },
    Opendir {
        arg: fuse_open_in,
    },
    Readdir {
        arg: fuse_read_in,
    },
    Releasedir {
        arg: fuse_release_in,
    },
    Fsyncdir {
        arg: fuse_fsync_in,
    },
    Getlk {
        arg: fuse_lk_in,
    },
    /// SETLK (`sleep == false`) and SETLKW (`sleep == true`).
    Setlk {
        arg: fuse_lk_in,
        sleep: bool,
    },
    Access {
        arg: fuse_access_in,
    },
    Create {
        arg: fuse_create_in,
        name: &'a OsStr,
    },
    Interrupt {
        unique: u64,
    },
    Bmap {
        arg: fuse_bmap_in,
    },
    Destroy,
    Ioctl {
        arg: fuse_ioctl_in,
        data: &'a [u8],
    },
    Poll {
        arg: fuse_poll_in,
    },
    NotifyReply {
        arg: fuse_notify_retrieve_in,
        data: &'a [u8],
    },
    BatchForget {
        forgets: Forgets<'a>,
    },
    Fallocate {
        arg: fuse_fallocate_in,
    },
    Readdirplus {
        arg: fuse_read_in,
    },
    Lseek {
        arg: fuse_lseek_in,
    },
    /// COPY_FILE_RANGE (`wide == false`, replied with `fuse_write_out`) and
    /// COPY_FILE_RANGE_64 (`wide == true`, replied with `fuse_copy_file_range_out`).
    CopyFileRange {
        arg: fuse_copy_file_range_in,
        wide: bool,
    },
    SetupMapping,
    RemoveMapping,
    Syncfs {
        arg: fuse_syncfs_in,
    },
    Tmpfile {
        arg: fuse_create_in,
        name: &'a OsStr,
    },
    Statx {
        arg: fuse_statx_in,
    },
}

/// One entry of a BATCH_FORGET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgetOne {
    pub nodeid: u64,
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
