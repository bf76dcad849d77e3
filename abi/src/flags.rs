//! Per-request flag bits and other scalar constants of the protocol.

// Bitmasks for `fuse_setattr_in::valid`.

/// `fuse_setattr_in::valid`: `mode` is set.
pub const FATTR_MODE: u32 = 1 << 0;
/// `fuse_setattr_in::valid`: `uid` is set.
pub const FATTR_UID: u32 = 1 << 1;
/// `fuse_setattr_in::valid`: `gid` is set.
pub const FATTR_GID: u32 = 1 << 2;
/// `fuse_setattr_in::valid`: `size` is set.
pub const FATTR_SIZE: u32 = 1 << 3;
/// `fuse_setattr_in::valid`: `atime`/`atimensec` are set.
pub const FATTR_ATIME: u32 = 1 << 4;
/// `fuse_setattr_in::valid`: `mtime`/`mtimensec` are set.
pub const FATTR_MTIME: u32 = 1 << 5;
/// `fuse_setattr_in::valid`: `fh` is set (7.3).
pub const FATTR_FH: u32 = 1 << 6;
/// `fuse_setattr_in::valid`: set atime to the current time (7.9).
pub const FATTR_ATIME_NOW: u32 = 1 << 7;
/// `fuse_setattr_in::valid`: set mtime to the current time (7.9).
pub const FATTR_MTIME_NOW: u32 = 1 << 8;
/// `fuse_setattr_in::valid`: `lock_owner` is set (7.9).
pub const FATTR_LOCKOWNER: u32 = 1 << 9;
/// `fuse_setattr_in::valid`: `ctime`/`ctimensec` are set (7.23).
pub const FATTR_CTIME: u32 = 1 << 10;
/// `fuse_setattr_in::valid`: kill suid and sgid bits (7.33).
pub const FATTR_KILL_SUIDGID: u32 = 1 << 11;

// Flags returned in `fuse_open_out::open_flags`.

/// Open reply flag: bypass the page cache for this open file (7.2).
pub const FOPEN_DIRECT_IO: u32 = 1 << 0;
/// Open reply flag: don't invalidate the data cache on open (7.2).
pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
/// Open reply flag: the file is not seekable (7.10).
pub const FOPEN_NONSEEKABLE: u32 = 1 << 2;
/// Open reply flag: allow caching this directory (7.28).
pub const FOPEN_CACHE_DIR: u32 = 1 << 3;
/// Open reply flag: the file is stream-like, no file position at all.
pub const FOPEN_STREAM: u32 = 1 << 4;
/// Open reply flag: don't flush data cache on close unless writeback caching (7.35).
pub const FOPEN_NOFLUSH: u32 = 1 << 5;
/// Open reply flag: allow concurrent direct writes on the same inode (7.38).
pub const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
/// Open reply flag: passthrough read/write I/O via `backing_id` (7.40).
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// `fuse_release_in::release_flags`: flush before release (7.8).
pub const FUSE_RELEASE_FLUSH: u32 = 1 << 0;
/// `fuse_release_in::release_flags`: release BSD flock locks (7.17).
pub const FUSE_RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;

/// `fuse_getattr_in::getattr_flags`: `fh` is valid (7.9).
pub const FUSE_GETATTR_FH: u32 = 1 << 0;

/// `fuse_lk_in::lk_flags`: BSD flock lock rather than POSIX lock (7.17).
pub const FUSE_LK_FLOCK: u32 = 1 << 0;

/// `fuse_write_in::write_flags`: delayed write from page cache, fh is guessed.
pub const FUSE_WRITE_CACHE: u32 = 1 << 0;
/// `fuse_write_in::write_flags`: `lock_owner` is valid (7.9).
pub const FUSE_WRITE_LOCKOWNER: u32 = 1 << 1;
/// `fuse_write_in::write_flags`: kill suid and sgid bits (7.31/7.33).
pub const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;
/// Obsolete alias for [`FUSE_WRITE_KILL_SUIDGID`]; kills suid/sgid only.
pub const FUSE_WRITE_KILL_PRIV: u32 = FUSE_WRITE_KILL_SUIDGID;

/// `fuse_read_in::read_flags`: `lock_owner` is valid (7.9).
pub const FUSE_READ_LOCKOWNER: u32 = 1 << 1;

/// Ioctl flag: 32-bit compat ioctl on a 64-bit machine (7.11).
pub const FUSE_IOCTL_COMPAT: u32 = 1 << 0;
/// Ioctl flag: not restricted to well-formed ioctls, retry allowed (7.11).
pub const FUSE_IOCTL_UNRESTRICTED: u32 = 1 << 1;
/// Ioctl reply flag: retry with new iovecs (7.11).
pub const FUSE_IOCTL_RETRY: u32 = 1 << 2;
/// Ioctl flag: 32-bit ioctl (7.16).
pub const FUSE_IOCTL_32BIT: u32 = 1 << 3;
/// Ioctl flag: the target is a directory (7.18).
pub const FUSE_IOCTL_DIR: u32 = 1 << 4;
/// Ioctl flag: x32 compat ioctl on a 64-bit machine, 64-bit `time_t` (7.30).
pub const FUSE_IOCTL_COMPAT_X32: u32 = 1 << 5;
/// Maximum of `in_iovs + out_iovs` in an ioctl retry reply.
pub const FUSE_IOCTL_MAX_IOV: u32 = 256;

/// `fuse_poll_in::flags`: request a poll wakeup notification (7.11).
pub const FUSE_POLL_SCHEDULE_NOTIFY: u32 = 1 << 0;

/// `fuse_fsync_in::fsync_flags`: sync data only, not metadata.
pub const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;

/// `fuse_attr::flags`: object is a submount root (7.32).
pub const FUSE_ATTR_SUBMOUNT: u32 = 1 << 0;
/// `fuse_attr::flags`: enable DAX for this file in per-inode DAX mode (7.36).
pub const FUSE_ATTR_DAX: u32 = 1 << 1;

/// `fuse_open_in::open_flags`/`fuse_create_in::open_flags`: kill suid and sgid if executable (7.33).
pub const FUSE_OPEN_KILL_SUIDGID: u32 = 1 << 0;

/// `fuse_setxattr_in::setxattr_flags`: clear SGID when `system.posix_acl_access` is set (7.33).
pub const FUSE_SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;

/// `fuse_notify_inval_entry_out::flags`: only expire the entry, don't drop it (7.38).
pub const FUSE_EXPIRE_ONLY: u32 = 1 << 0;

/// Bit in `fuse_in_header::unique` marking a resent request (7.40).
pub const FUSE_UNIQUE_RESEND: u64 = 1 << 63;

/// Value of `fuse_in_header::{uid,gid}` when an idmapped mount cannot map the id (7.41).
pub const FUSE_INVALID_UIDGID: u32 = u32::MAX;

/// `fuse_setupmapping_in::flags`: map for writing (7.31).
pub const FUSE_SETUPMAPPING_FLAG_WRITE: u64 = 1 << 0;
/// `fuse_setupmapping_in::flags`: map for reading (7.31).
pub const FUSE_SETUPMAPPING_FLAG_READ: u64 = 1 << 1;
