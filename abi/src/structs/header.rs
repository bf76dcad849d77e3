//! Request and reply headers.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Header of every request read from the device.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_in_header {
    /// Total request length including this header.
    pub len: u32,
    /// `fuse_opcode` value.
    pub opcode: u32,
    /// Request id, echoed in the reply; see `FUSE_UNIQUE_RESEND`.
    pub unique: u64,
    /// Target node id.
    pub nodeid: u64,
    /// Caller's user id.
    pub uid: u32,
    /// Caller's group id.
    pub gid: u32,
    /// Caller's process id.
    pub pid: u32,
    /// Length of request extensions in 8-byte units (7.38).
    pub total_extlen: u16,
    /// Padding.
    pub padding: u16,
}
const _: () = assert!(size_of::<fuse_in_header>() == 40);

/// Header of every reply or notification written to the device.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_out_header {
    /// Total reply length including this header.
    pub len: u32,
    /// Negative errno, 0, or a `fuse_notify_code` when `unique` is 0.
    pub error: i32,
    /// Id of the request being answered; 0 for notifications.
    pub unique: u64,
}
const _: () = assert!(size_of::<fuse_out_header>() == 16);
