//! Attribute payloads shared by several requests and replies.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Inode attributes, embedded in entry and attr replies.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_attr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Number of 512-byte blocks allocated.
    pub blocks: u64,
    /// Last access time, seconds.
    pub atime: u64,
    /// Last modification time, seconds.
    pub mtime: u64,
    /// Last status change time, seconds.
    pub ctime: u64,
    /// Nanoseconds part of `atime`.
    pub atimensec: u32,
    /// Nanoseconds part of `mtime`.
    pub mtimensec: u32,
    /// Nanoseconds part of `ctime`.
    pub ctimensec: u32,
    /// File type and mode.
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Device number for device files.
    pub rdev: u32,
    /// Preferred I/O block size (7.9).
    pub blksize: u32,
    /// `FUSE_ATTR_*` flags (7.32).
    pub flags: u32,
}
const _: () = assert!(size_of::<fuse_attr>() == 88);

/// Timestamp in `fuse_statx`, bit-compatible with `struct statx_timestamp` (7.39).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_sx_time {
    /// Seconds since the epoch.
    pub tv_sec: i64,
    /// Nanoseconds.
    pub tv_nsec: u32,
    /// Reserved.
    pub __reserved: i32,
}
const _: () = assert!(size_of::<fuse_sx_time>() == 16);

/// Extended attributes, bit-compatible with `struct statx` (7.39).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_statx {
    /// `STATX_*` mask of valid fields.
    pub mask: u32,
    /// Preferred I/O block size.
    pub blksize: u32,
    /// `STATX_ATTR_*` file attributes.
    pub attributes: u64,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// File type and mode.
    pub mode: u16,
    /// Spare.
    pub __spare0: [u16; 1],
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Number of 512-byte blocks allocated.
    pub blocks: u64,
    /// Mask of `attributes` bits supported.
    pub attributes_mask: u64,
    /// Last access time.
    pub atime: fuse_sx_time,
    /// Creation time.
    pub btime: fuse_sx_time,
    /// Last status change time.
    pub ctime: fuse_sx_time,
    /// Last modification time.
    pub mtime: fuse_sx_time,
    /// Device major number for device files.
    pub rdev_major: u32,
    /// Device minor number for device files.
    pub rdev_minor: u32,
    /// Major number of the containing device.
    pub dev_major: u32,
    /// Minor number of the containing device.
    pub dev_minor: u32,
    /// Spare.
    pub __spare2: [u64; 14],
}
const _: () = assert!(size_of::<fuse_statx>() == 256);

/// Filesystem statistics, payload of `fuse_statfs_out`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_kstatfs {
    /// Total data blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Maximum file name length.
    pub namelen: u32,
    /// Fragment size (7.4).
    pub frsize: u32,
    /// Padding.
    pub padding: u32,
    /// Spare.
    pub spare: [u32; 6],
}
const _: () = assert!(size_of::<fuse_kstatfs>() == 80);

/// A POSIX or BSD file lock (7.7).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_file_lock {
    /// Start offset.
    pub start: u64,
    /// End offset (inclusive).
    pub end: u64,
    /// Lock type (`F_RDLCK`, `F_WRLCK`, `F_UNLCK`); C name `type`.
    pub r#type: u32,
    /// Process (thread group) id of the lock owner.
    pub pid: u32,
}
const _: () = assert!(size_of::<fuse_file_lock>() == 24);
