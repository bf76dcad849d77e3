//! Payloads of unsolicited notifications (`fuse_notify_code`) and of the
//! NOTIFY_REPLY request.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `FUSE_NOTIFY_POLL` payload (7.11).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_poll_wakeup_out {
    /// Kernel poll handle from `fuse_poll_in::kh`.
    pub kh: u64,
}
const _: () = assert!(size_of::<fuse_notify_poll_wakeup_out>() == 8);

/// `FUSE_NOTIFY_INVAL_INODE` payload (7.12).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_inval_inode_out {
    /// Inode id.
    pub ino: u64,
    /// Start of the range to invalidate; negative means attributes only.
    pub off: i64,
    /// Length of the range; 0 or less means to the end of file.
    pub len: i64,
}
const _: () = assert!(size_of::<fuse_notify_inval_inode_out>() == 24);

/// `FUSE_NOTIFY_INVAL_ENTRY` payload; the name follows (7.12).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_inval_entry_out {
    /// Parent directory node id.
    pub parent: u64,
    /// Length of the name.
    pub namelen: u32,
    /// `FUSE_EXPIRE_ONLY` (7.38).
    pub flags: u32,
}
const _: () = assert!(size_of::<fuse_notify_inval_entry_out>() == 16);

/// `FUSE_NOTIFY_DELETE` payload; the name follows (7.18).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_delete_out {
    /// Parent directory node id.
    pub parent: u64,
    /// Node id of the deleted child.
    pub child: u64,
    /// Length of the name.
    pub namelen: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_notify_delete_out>() == 24);

/// `FUSE_NOTIFY_STORE` payload; `size` data bytes follow (7.15).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_store_out {
    /// Inode id.
    pub nodeid: u64,
    /// File offset to store at.
    pub offset: u64,
    /// Number of bytes.
    pub size: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_notify_store_out>() == 24);

/// `FUSE_NOTIFY_RETRIEVE` payload (7.15).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_retrieve_out {
    /// Id echoed in the `FUSE_NOTIFY_REPLY` request's `unique`.
    pub notify_unique: u64,
    /// Inode id.
    pub nodeid: u64,
    /// File offset to retrieve from.
    pub offset: u64,
    /// Number of bytes.
    pub size: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_notify_retrieve_out>() == 32);

/// `FUSE_NOTIFY_REPLY` request body; matches the size of `fuse_write_in` (7.15).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_retrieve_in {
    /// Unused.
    pub dummy1: u64,
    /// File offset of the returned data.
    pub offset: u64,
    /// Number of bytes returned.
    pub size: u32,
    /// Unused.
    pub dummy2: u32,
    /// Unused.
    pub dummy3: u64,
    /// Unused.
    pub dummy4: u64,
}
const _: () = assert!(size_of::<fuse_notify_retrieve_in>() == 40);

/// `FUSE_NOTIFY_PRUNE` payload; `count` `u64` node ids follow (7.45).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_notify_prune_out {
    /// Number of node ids following.
    pub count: u32,
    /// Padding.
    pub padding: u32,
    /// Spare.
    pub spare: u64,
}
const _: () = assert!(size_of::<fuse_notify_prune_out>() == 16);
