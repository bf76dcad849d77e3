//! `FUSE_INIT` request and reply.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `FUSE_INIT` request, full 7.36+ layout.
///
/// Kernels older than 7.36 send only the first 16 bytes (`major` to
/// `flags`); `flags2` is only meaningful when `flags` has `FUSE_INIT_EXT`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_init_in {
    /// Kernel's major protocol version.
    pub major: u32,
    /// Kernel's minor protocol version.
    pub minor: u32,
    /// Maximum readahead in bytes (7.6).
    pub max_readahead: u32,
    /// Capability flags, bits 0..31 (`FUSE_ASYNC_READ`, ...).
    pub flags: u32,
    /// Capability flags, bits 32..63 shifted down by 32 (7.36).
    pub flags2: u32,
    /// Reserved (7.36).
    pub unused: [u32; 11],
}
const _: () = assert!(size_of::<fuse_init_in>() == 64);

/// `FUSE_INIT` reply, full 7.45 layout.
///
/// For peers with minor < 5 send `FUSE_COMPAT_INIT_OUT_SIZE` bytes, for
/// minor < 23 send `FUSE_COMPAT_22_INIT_OUT_SIZE` bytes.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_init_out {
    /// Server's major protocol version.
    pub major: u32,
    /// Server's minor protocol version.
    pub minor: u32,
    /// Maximum readahead in bytes (7.6).
    pub max_readahead: u32,
    /// Accepted capability flags, bits 0..31 (7.5).
    pub flags: u32,
    /// Maximum number of pending background requests (7.13).
    pub max_background: u16,
    /// Background request count at which the kernel signals congestion (7.13).
    pub congestion_threshold: u16,
    /// Maximum WRITE payload size (7.5).
    pub max_write: u32,
    /// Timestamp granularity in nanoseconds (7.23).
    pub time_gran: u32,
    /// Maximum pages per request, with `FUSE_MAX_PAGES` (7.28).
    pub max_pages: u16,
    /// log2 of DAX mapping alignment, with `FUSE_MAP_ALIGNMENT` (7.31).
    pub map_alignment: u16,
    /// Accepted capability flags, bits 32..63 shifted down by 32 (7.36).
    pub flags2: u32,
    /// Maximum filesystem stacking depth for passthrough (7.40).
    pub max_stack_depth: u32,
    /// Request timeout in seconds, with `FUSE_REQUEST_TIMEOUT` (7.43).
    pub request_timeout: u16,
    /// Reserved.
    pub unused: [u16; 11],
}
const _: () = assert!(size_of::<fuse_init_out>() == 64);
