//! Directory entry records returned by READDIR and READDIRPLUS.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::fuse_entry_out;

/// Fixed part of a READDIR record.
///
/// In C this ends with the flexible array `char name[]`; here the struct is
/// the 24-byte header only. `namelen` name bytes follow, and the record is
/// padded to `FUSE_DIRENT_SIZE(namelen)`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_dirent {
    /// Inode number.
    pub ino: u64,
    /// Offset of the next entry (the cookie for the next READDIR).
    pub off: u64,
    /// Length of the name following this header.
    pub namelen: u32,
    /// File type (`DT_*`); C name `type`.
    pub r#type: u32,
}
const _: () = assert!(size_of::<fuse_dirent>() == 24);

/// Fixed part of a READDIRPLUS record (7.21).
///
/// The name (`dirent.namelen` bytes) follows, and the record is padded to
/// `FUSE_DIRENTPLUS_SIZE(namelen)`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_direntplus {
    /// Lookup result for the entry.
    pub entry_out: fuse_entry_out,
    /// Directory entry header.
    pub dirent: fuse_dirent,
}
const _: () = assert!(size_of::<fuse_direntplus>() == 152);
