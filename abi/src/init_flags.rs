//! `FUSE_INIT` / `CUSE_INIT` capability flags.
//!
//! Bits 0..31 travel in `fuse_init_in::flags` / `fuse_init_out::flags`;
//! bits 32..63 are shifted down by 32 into the `flags2` fields (7.36+,
//! only when `FUSE_INIT_EXT` is set).

/// Asynchronous read requests.
pub const FUSE_ASYNC_READ: u64 = 1 << 0;
/// Remote locking for POSIX file locks (7.7).
pub const FUSE_POSIX_LOCKS: u64 = 1 << 1;
/// Kernel sends file handle for fstat, etc. (not yet supported).
pub const FUSE_FILE_OPS: u64 = 1 << 2;
/// Filesystem handles the `O_TRUNC` open flag.
pub const FUSE_ATOMIC_O_TRUNC: u64 = 1 << 3;
/// Filesystem handles lookups of "." and "..".
pub const FUSE_EXPORT_SUPPORT: u64 = 1 << 4;
/// Filesystem can handle writes larger than 4 KiB.
pub const FUSE_BIG_WRITES: u64 = 1 << 5;
/// Don't apply umask to file mode on create operations (7.12).
pub const FUSE_DONT_MASK: u64 = 1 << 6;
/// Kernel supports splice write on the device (7.14).
pub const FUSE_SPLICE_WRITE: u64 = 1 << 7;
/// Kernel supports splice move on the device (7.14).
pub const FUSE_SPLICE_MOVE: u64 = 1 << 8;
/// Kernel supports splice read on the device (7.14).
pub const FUSE_SPLICE_READ: u64 = 1 << 9;
/// Remote locking for BSD style file locks (7.17).
pub const FUSE_FLOCK_LOCKS: u64 = 1 << 10;
/// Kernel supports ioctl on directories (7.18).
pub const FUSE_HAS_IOCTL_DIR: u64 = 1 << 11;
/// Automatically invalidate cached pages (7.20).
pub const FUSE_AUTO_INVAL_DATA: u64 = 1 << 12;
/// Do READDIRPLUS (READDIR+LOOKUP in one) (7.21).
pub const FUSE_DO_READDIRPLUS: u64 = 1 << 13;
/// Adaptive readdirplus (7.21).
pub const FUSE_READDIRPLUS_AUTO: u64 = 1 << 14;
/// Asynchronous direct I/O submission (7.22).
pub const FUSE_ASYNC_DIO: u64 = 1 << 15;
/// Use writeback cache for buffered writes (7.23).
pub const FUSE_WRITEBACK_CACHE: u64 = 1 << 16;
/// Kernel supports zero-message opens (7.23).
pub const FUSE_NO_OPEN_SUPPORT: u64 = 1 << 17;
/// Allow parallel lookups and readdir (7.25).
pub const FUSE_PARALLEL_DIROPS: u64 = 1 << 18;
/// Filesystem handles killing suid/sgid/cap on write/chown/trunc (7.26).
pub const FUSE_HANDLE_KILLPRIV: u64 = 1 << 19;
/// Filesystem supports POSIX ACLs (7.26).
pub const FUSE_POSIX_ACL: u64 = 1 << 20;
/// Reading the device after abort returns `ECONNABORTED` (7.27).
pub const FUSE_ABORT_ERROR: u64 = 1 << 21;
/// `fuse_init_out::max_pages` contains the max number of request pages (7.28).
pub const FUSE_MAX_PAGES: u64 = 1 << 22;
/// Cache READLINK responses (7.28).
pub const FUSE_CACHE_SYMLINKS: u64 = 1 << 23;
/// Kernel supports zero-message opendir (7.29).
pub const FUSE_NO_OPENDIR_SUPPORT: u64 = 1 << 24;
/// Only invalidate cached pages on explicit request (7.30).
pub const FUSE_EXPLICIT_INVAL_DATA: u64 = 1 << 25;
/// `fuse_init_out::map_alignment` holds log2 of the DAX mapping alignment (7.31).
pub const FUSE_MAP_ALIGNMENT: u64 = 1 << 26;
/// Kernel supports auto-mounting directory submounts (7.32).
pub const FUSE_SUBMOUNTS: u64 = 1 << 27;
/// Filesystem kills suid/sgid/cap like the VFS does (7.33).
pub const FUSE_HANDLE_KILLPRIV_V2: u64 = 1 << 28;
/// Server supports the extended `fuse_setxattr_in` (7.33).
pub const FUSE_SETXATTR_EXT: u64 = 1 << 29;
/// Extended `fuse_init_in` request; `flags2` fields are valid (7.36).
pub const FUSE_INIT_EXT: u64 = 1 << 30;
/// Reserved, do not use (7.36).
pub const FUSE_INIT_RESERVED: u64 = 1 << 31;
/// Add security context to create, mkdir, symlink and mknod (7.36).
pub const FUSE_SECURITY_CTX: u64 = 1 << 32;
/// Use per-inode DAX (7.36).
pub const FUSE_HAS_INODE_DAX: u64 = 1 << 33;
/// Add supplementary group info to create, mkdir, symlink and mknod (7.38).
pub const FUSE_CREATE_SUPP_GROUP: u64 = 1 << 34;
/// Kernel supports expiry-only entry invalidation (7.38).
pub const FUSE_HAS_EXPIRE_ONLY: u64 = 1 << 35;
/// Allow shared mmap in `FOPEN_DIRECT_IO` mode (7.39).
pub const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
/// Passthrough read/write I/O to backing files (7.40).
pub const FUSE_PASSTHROUGH: u64 = 1 << 37;
/// Explicitly disable export support (7.40).
pub const FUSE_NO_EXPORT_SUPPORT: u64 = 1 << 38;
/// Kernel supports resending pending requests (7.40); see [`crate::FUSE_UNIQUE_RESEND`].
pub const FUSE_HAS_RESEND: u64 = 1 << 39;
/// Obsolete alias for [`FUSE_DIRECT_IO_ALLOW_MMAP`].
pub const FUSE_DIRECT_IO_RELAX: u64 = FUSE_DIRECT_IO_ALLOW_MMAP;
/// Allow creation of idmapped mounts (7.41).
pub const FUSE_ALLOW_IDMAP: u64 = 1 << 40;
/// Client supports FUSE over io_uring (7.42).
pub const FUSE_OVER_IO_URING: u64 = 1 << 41;
/// Kernel supports request timeouts; see `fuse_init_out::request_timeout` (7.43).
pub const FUSE_REQUEST_TIMEOUT: u64 = 1 << 42;

/// CUSE INIT flag: use unrestricted ioctl.
pub const CUSE_UNRESTRICTED_IOCTL: u32 = 1 << 0;
