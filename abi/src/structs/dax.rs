//! DAX window mapping requests (virtiofs, 7.31).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// SETUPMAPPING request (7.31).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_setupmapping_in {
    /// An already open file handle.
    pub fh: u64,
    /// Offset into the file to start the mapping.
    pub foffset: u64,
    /// Length of the mapping.
    pub len: u64,
    /// `FUSE_SETUPMAPPING_FLAG_*`.
    pub flags: u64,
    /// Offset in the DAX memory window.
    pub moffset: u64,
}
const _: () = assert!(size_of::<fuse_setupmapping_in>() == 40);

/// REMOVEMAPPING request header; `count` `fuse_removemapping_one` follow (7.31).
///
/// Note the C struct is 4 bytes with no trailing padding; the entries
/// follow immediately.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_removemapping_in {
    /// Number of `fuse_removemapping_one` entries following.
    pub count: u32,
}
const _: () = assert!(size_of::<fuse_removemapping_in>() == 4);

/// One range of a REMOVEMAPPING request (7.31).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_removemapping_one {
    /// Offset into the DAX window to start unmapping.
    pub moffset: u64,
    /// Length of the mapping.
    pub len: u64,
}
const _: () = assert!(size_of::<fuse_removemapping_one>() == 16);

/// `FUSE_REMOVEMAPPING_MAX_ENTRY`: entries per REMOVEMAPPING request for a
/// given page size (the C macro uses the kernel's `PAGE_SIZE`).
#[allow(non_snake_case)]
pub const fn FUSE_REMOVEMAPPING_MAX_ENTRY(page_size: usize) -> usize {
    page_size / size_of::<fuse_removemapping_one>()
}
