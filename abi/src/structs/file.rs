//! Open-file operations: open/create, read/write, release/flush, fsync,
//! locks, bmap, poll, fallocate, lseek and copy_file_range.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::fuse_file_lock;

/// OPEN and OPENDIR request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_open_in {
    /// `open(2)` flags.
    pub flags: u32,
    /// `FUSE_OPEN_*` flags (7.33).
    pub open_flags: u32,
}
const _: () = assert!(size_of::<fuse_open_in>() == 8);

/// CREATE and TMPFILE request; for CREATE the name follows (7.3).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_create_in {
    /// `open(2)` flags.
    pub flags: u32,
    /// File mode.
    pub mode: u32,
    /// Caller's umask (7.12).
    pub umask: u32,
    /// `FUSE_OPEN_*` flags (7.33).
    pub open_flags: u32,
}
const _: () = assert!(size_of::<fuse_create_in>() == 16);

/// Reply to OPEN, OPENDIR, and (after `fuse_entry_out`) CREATE.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_open_out {
    /// File handle chosen by the server.
    pub fh: u64,
    /// `FOPEN_*` flags.
    pub open_flags: u32,
    /// Backing file id, with `FOPEN_PASSTHROUGH` (7.40).
    pub backing_id: i32,
}
const _: () = assert!(size_of::<fuse_open_out>() == 16);

/// RELEASE and RELEASEDIR request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_release_in {
    /// File handle.
    pub fh: u64,
    /// `open(2)` flags.
    pub flags: u32,
    /// `FUSE_RELEASE_*` flags (7.8).
    pub release_flags: u32,
    /// Lock owner (7.8).
    pub lock_owner: u64,
}
const _: () = assert!(size_of::<fuse_release_in>() == 24);

/// FLUSH request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_flush_in {
    /// File handle.
    pub fh: u64,
    /// Unused.
    pub unused: u32,
    /// Padding.
    pub padding: u32,
    /// Lock owner.
    pub lock_owner: u64,
}
const _: () = assert!(size_of::<fuse_flush_in>() == 24);

/// READ, READDIR and READDIRPLUS request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_read_in {
    /// File handle.
    pub fh: u64,
    /// Offset to read from.
    pub offset: u64,
    /// Number of bytes to read.
    pub size: u32,
    /// `FUSE_READ_*` flags.
    pub read_flags: u32,
    /// Lock owner, with `FUSE_READ_LOCKOWNER` (7.9).
    pub lock_owner: u64,
    /// `open(2)` flags (7.9).
    pub flags: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_read_in>() == 40);

/// WRITE request; the data follows.
///
/// Peers with minor < 9 send only `FUSE_COMPAT_WRITE_IN_SIZE` bytes.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_write_in {
    /// File handle.
    pub fh: u64,
    /// Offset to write at.
    pub offset: u64,
    /// Number of bytes to write.
    pub size: u32,
    /// `FUSE_WRITE_*` flags.
    pub write_flags: u32,
    /// Lock owner, with `FUSE_WRITE_LOCKOWNER` (7.9).
    pub lock_owner: u64,
    /// `open(2)` flags (7.9).
    pub flags: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_write_in>() == 40);

/// Reply to WRITE and COPY_FILE_RANGE.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_write_out {
    /// Number of bytes written.
    pub size: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_write_out>() == 8);

/// FSYNC and FSYNCDIR request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_fsync_in {
    /// File handle.
    pub fh: u64,
    /// `FUSE_FSYNC_*` flags.
    pub fsync_flags: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_fsync_in>() == 16);

/// GETLK, SETLK and SETLKW request (7.7).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_lk_in {
    /// File handle.
    pub fh: u64,
    /// Lock owner.
    pub owner: u64,
    /// The lock.
    pub lk: fuse_file_lock,
    /// `FUSE_LK_*` flags (7.9).
    pub lk_flags: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_lk_in>() == 48);

/// Reply to GETLK (7.7).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_lk_out {
    /// The conflicting lock, or `F_UNLCK`.
    pub lk: fuse_file_lock,
}
const _: () = assert!(size_of::<fuse_lk_out>() == 24);

/// BMAP request (7.8).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_bmap_in {
    /// File block number.
    pub block: u64,
    /// Block size.
    pub blocksize: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_bmap_in>() == 16);

/// Reply to BMAP (7.8).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_bmap_out {
    /// Device block number.
    pub block: u64,
}
const _: () = assert!(size_of::<fuse_bmap_out>() == 8);

/// POLL request (7.11).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_poll_in {
    /// File handle.
    pub fh: u64,
    /// Kernel poll handle, for `FUSE_NOTIFY_POLL`.
    pub kh: u64,
    /// `FUSE_POLL_*` flags.
    pub flags: u32,
    /// Requested poll events (7.21).
    pub events: u32,
}
const _: () = assert!(size_of::<fuse_poll_in>() == 24);

/// Reply to POLL (7.11).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_poll_out {
    /// Ready poll events.
    pub revents: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_poll_out>() == 8);

/// FALLOCATE request (7.19).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_fallocate_in {
    /// File handle.
    pub fh: u64,
    /// Start offset.
    pub offset: u64,
    /// Length of the range.
    pub length: u64,
    /// `FALLOC_FL_*` mode.
    pub mode: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_fallocate_in>() == 32);

/// LSEEK request (7.24).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_lseek_in {
    /// File handle.
    pub fh: u64,
    /// Start offset.
    pub offset: u64,
    /// `SEEK_DATA` or `SEEK_HOLE` (or another `SEEK_*`).
    pub whence: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_lseek_in>() == 24);

/// Reply to LSEEK (7.24).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_lseek_out {
    /// Resulting offset.
    pub offset: u64,
}
const _: () = assert!(size_of::<fuse_lseek_out>() == 8);

/// COPY_FILE_RANGE and COPY_FILE_RANGE_64 request (7.28).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_copy_file_range_in {
    /// Source file handle (source node is `fuse_in_header::nodeid`).
    pub fh_in: u64,
    /// Source offset.
    pub off_in: u64,
    /// Destination node id.
    pub nodeid_out: u64,
    /// Destination file handle.
    pub fh_out: u64,
    /// Destination offset.
    pub off_out: u64,
    /// Number of bytes to copy.
    pub len: u64,
    /// `copy_file_range(2)` flags.
    pub flags: u64,
}
const _: () = assert!(size_of::<fuse_copy_file_range_in>() == 56);

/// Reply to COPY_FILE_RANGE_64 (7.45).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_copy_file_range_out {
    /// Number of bytes copied.
    pub bytes_copied: u64,
}
const _: () = assert!(size_of::<fuse_copy_file_range_out>() == 8);
