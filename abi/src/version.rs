//! Protocol version, well-known ids, buffer sizes and compat struct sizes.

/// Major version of the FUSE kernel protocol (`FUSE_KERNEL_VERSION`).
pub const FUSE_KERNEL_VERSION: u32 = 7;

/// Minor version of the FUSE kernel protocol described by this crate (7.45).
pub const FUSE_KERNEL_MINOR_VERSION: u32 = 45;

/// Node id of the root inode.
pub const FUSE_ROOT_ID: u64 = 1;

/// Minimum size of the buffer used to read requests from `/dev/fuse` (8 KiB).
pub const FUSE_MIN_READ_BUFFER: usize = 8192;

/// Size of `fuse_entry_out` before 7.9 (no `fuse_attr::blksize`/`flags`).
pub const FUSE_COMPAT_ENTRY_OUT_SIZE: usize = 120;

/// Size of `fuse_attr_out` before 7.9 (no `fuse_attr::blksize`/`flags`).
pub const FUSE_COMPAT_ATTR_OUT_SIZE: usize = 96;

/// Size of `fuse_mknod_in` before 7.12 (`mode` and `rdev` only).
pub const FUSE_COMPAT_MKNOD_IN_SIZE: usize = 8;

/// Size of `fuse_write_in` before 7.9 (no `lock_owner`/`flags`).
pub const FUSE_COMPAT_WRITE_IN_SIZE: usize = 24;

/// Size of `fuse_statfs_out` before 7.4 (no `frsize` and spare fields).
pub const FUSE_COMPAT_STATFS_SIZE: usize = 48;

/// Size of `fuse_setxattr_in` without `FUSE_SETXATTR_EXT` (before 7.33).
pub const FUSE_COMPAT_SETXATTR_IN_SIZE: usize = 8;

/// Size of `fuse_init_out` before 7.5 (`major` and `minor` only).
pub const FUSE_COMPAT_INIT_OUT_SIZE: usize = 8;

/// Size of `fuse_init_out` for minors 7.5 to 7.22 (up to `max_write`).
pub const FUSE_COMPAT_22_INIT_OUT_SIZE: usize = 24;

/// Maximum size of the device info string following `cuse_init_out`.
pub const CUSE_INIT_INFO_MAX: usize = 4096;

/// Old kernel default for the maximum pages per request (32).
///
/// Not part of `fuse.h`: this is the kernel-internal default used when the
/// server does not negotiate `FUSE_MAX_PAGES` (`fs/fuse/fuse_i.h`).
pub const FUSE_MAX_PAGES_PER_REQ: u32 = 32;

/// Kernel-internal default maximum pages per request (32); same value as
/// [`FUSE_MAX_PAGES_PER_REQ`]. Not part of `fuse.h` (`fs/fuse/fuse_i.h`).
pub const FUSE_DEFAULT_MAX_PAGES_PER_REQ: u32 = 32;

/// Kernel-internal default upper limit for `fuse_init_out::max_pages` (256),
/// tunable via `/proc/sys/fs/fuse/max_pages_limit`. Not part of `fuse.h`.
pub const FUSE_DEFAULT_MAX_PAGES_LIMIT: u32 = 256;
