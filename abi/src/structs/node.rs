//! Inode and directory operations: lookup, attributes, node creation,
//! rename, link, xattrs, statfs, forget, interrupt and syncfs.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{fuse_attr, fuse_kstatfs, fuse_statx};

/// Reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE and TMPFILE.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_entry_out {
    /// Inode id.
    pub nodeid: u64,
    /// Inode generation: `nodeid:generation` is unique for the fs's lifetime.
    pub generation: u64,
    /// Cache timeout for the name, seconds.
    pub entry_valid: u64,
    /// Cache timeout for the attributes, seconds.
    pub attr_valid: u64,
    /// Nanoseconds part of `entry_valid`.
    pub entry_valid_nsec: u32,
    /// Nanoseconds part of `attr_valid`.
    pub attr_valid_nsec: u32,
    /// Inode attributes.
    pub attr: fuse_attr,
}
const _: () = assert!(size_of::<fuse_entry_out>() == 128);

/// FORGET request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_forget_in {
    /// Number of lookups to forget.
    pub nlookup: u64,
}
const _: () = assert!(size_of::<fuse_forget_in>() == 8);

/// One entry of a BATCH_FORGET request (7.16).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_forget_one {
    /// Inode id.
    pub nodeid: u64,
    /// Number of lookups to forget.
    pub nlookup: u64,
}
const _: () = assert!(size_of::<fuse_forget_one>() == 16);

/// BATCH_FORGET request header; `count` `fuse_forget_one` follow (7.16).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_batch_forget_in {
    /// Number of `fuse_forget_one` entries following.
    pub count: u32,
    /// Padding.
    pub dummy: u32,
}
const _: () = assert!(size_of::<fuse_batch_forget_in>() == 8);

/// GETATTR request (7.9).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_getattr_in {
    /// `FUSE_GETATTR_*` flags.
    pub getattr_flags: u32,
    /// Padding.
    pub dummy: u32,
    /// File handle, valid with `FUSE_GETATTR_FH`.
    pub fh: u64,
}
const _: () = assert!(size_of::<fuse_getattr_in>() == 16);

/// Reply to GETATTR and SETATTR.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_attr_out {
    /// Cache timeout for the attributes, seconds.
    pub attr_valid: u64,
    /// Nanoseconds part of `attr_valid`.
    pub attr_valid_nsec: u32,
    /// Padding.
    pub dummy: u32,
    /// Inode attributes.
    pub attr: fuse_attr,
}
const _: () = assert!(size_of::<fuse_attr_out>() == 104);

/// STATX request (7.39).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_statx_in {
    /// `FUSE_GETATTR_*` flags.
    pub getattr_flags: u32,
    /// Reserved.
    pub reserved: u32,
    /// File handle, valid with `FUSE_GETATTR_FH`.
    pub fh: u64,
    /// `AT_STATX_*` sync flags.
    pub sx_flags: u32,
    /// Requested `STATX_*` mask.
    pub sx_mask: u32,
}
const _: () = assert!(size_of::<fuse_statx_in>() == 24);

/// Reply to STATX (7.39).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_statx_out {
    /// Cache timeout for the attributes, seconds.
    pub attr_valid: u64,
    /// Nanoseconds part of `attr_valid`.
    pub attr_valid_nsec: u32,
    /// Flags.
    pub flags: u32,
    /// Spare.
    pub spare: [u64; 2],
    /// Extended attributes.
    pub stat: fuse_statx,
}
const _: () = assert!(size_of::<fuse_statx_out>() == 288);

/// MKNOD request; the name follows.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_mknod_in {
    /// File type and mode.
    pub mode: u32,
    /// Device number.
    pub rdev: u32,
    /// Caller's umask (7.12).
    pub umask: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_mknod_in>() == 16);

/// MKDIR request; the name follows.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_mkdir_in {
    /// Directory mode.
    pub mode: u32,
    /// Caller's umask (7.12).
    pub umask: u32,
}
const _: () = assert!(size_of::<fuse_mkdir_in>() == 8);

/// RENAME request; old and new names follow.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_rename_in {
    /// Node id of the new parent directory.
    pub newdir: u64,
}
const _: () = assert!(size_of::<fuse_rename_in>() == 8);

/// RENAME2 request; old and new names follow (7.23).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_rename2_in {
    /// Node id of the new parent directory.
    pub newdir: u64,
    /// `RENAME_*` flags.
    pub flags: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_rename2_in>() == 16);

/// LINK request; the new name follows.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_link_in {
    /// Node id of the existing inode.
    pub oldnodeid: u64,
}
const _: () = assert!(size_of::<fuse_link_in>() == 8);

/// SETATTR request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_setattr_in {
    /// `FATTR_*` mask of fields to set.
    pub valid: u32,
    /// Padding.
    pub padding: u32,
    /// File handle, with `FATTR_FH`.
    pub fh: u64,
    /// New size, with `FATTR_SIZE`.
    pub size: u64,
    /// Lock owner, with `FATTR_LOCKOWNER`.
    pub lock_owner: u64,
    /// New access time, seconds.
    pub atime: u64,
    /// New modification time, seconds.
    pub mtime: u64,
    /// New status change time, seconds (7.23).
    pub ctime: u64,
    /// Nanoseconds part of `atime`.
    pub atimensec: u32,
    /// Nanoseconds part of `mtime`.
    pub mtimensec: u32,
    /// Nanoseconds part of `ctime` (7.23).
    pub ctimensec: u32,
    /// New mode, with `FATTR_MODE`.
    pub mode: u32,
    /// Unused.
    pub unused4: u32,
    /// New owner, with `FATTR_UID`.
    pub uid: u32,
    /// New group, with `FATTR_GID`.
    pub gid: u32,
    /// Unused.
    pub unused5: u32,
}
const _: () = assert!(size_of::<fuse_setattr_in>() == 88);

/// ACCESS request (7.3).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_access_in {
    /// Access mask (`R_OK`, `W_OK`, `X_OK`).
    pub mask: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_access_in>() == 8);

/// Reply to STATFS.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_statfs_out {
    /// Filesystem statistics.
    pub st: fuse_kstatfs,
}
const _: () = assert!(size_of::<fuse_statfs_out>() == 80);

/// SETXATTR request; name and value follow.
///
/// Without `FUSE_SETXATTR_EXT` only the first `FUSE_COMPAT_SETXATTR_IN_SIZE`
/// bytes are sent.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_setxattr_in {
    /// Value size.
    pub size: u32,
    /// `XATTR_CREATE` / `XATTR_REPLACE`.
    pub flags: u32,
    /// `FUSE_SETXATTR_*` flags (7.33).
    pub setxattr_flags: u32,
    /// Padding (7.33).
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_setxattr_in>() == 16);

/// GETXATTR and LISTXATTR request; for GETXATTR the name follows.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_getxattr_in {
    /// Buffer size; 0 asks for the needed size.
    pub size: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_getxattr_in>() == 8);

/// Reply to GETXATTR/LISTXATTR with `size == 0`: the needed size.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_getxattr_out {
    /// Size of the value or list.
    pub size: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_getxattr_out>() == 8);

/// INTERRUPT request (7.7).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_interrupt_in {
    /// `unique` of the request to interrupt.
    pub unique: u64,
}
const _: () = assert!(size_of::<fuse_interrupt_in>() == 8);

/// SYNCFS request (7.34).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_syncfs_in {
    /// Padding.
    pub padding: u64,
}
const _: () = assert!(size_of::<fuse_syncfs_in>() == 8);
