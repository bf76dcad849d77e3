//! FUSE-over-io_uring buffers and commands (7.42).

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Size of the `in_out` header area of `fuse_uring_req_header`.
pub const FUSE_URING_IN_OUT_HEADER_SZ: usize = 128;

/// Size of the per-opcode `op_in` area of `fuse_uring_req_header`.
pub const FUSE_URING_OP_IN_OUT_SZ: usize = 128;

/// Ring entry info, part of `fuse_uring_req_header` (7.42).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_uring_ent_in_out {
    /// Flags.
    pub flags: u64,
    /// Commit id to use when replying (see `fuse_uring_cmd_req`).
    pub commit_id: u64,
    /// Size of the user payload buffer.
    pub payload_sz: u32,
    /// Padding.
    pub padding: u32,
    /// Reserved.
    pub reserved: u64,
}
const _: () = assert!(size_of::<fuse_uring_ent_in_out>() == 32);

/// Header buffer of every FUSE-over-io_uring request (7.42).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct fuse_uring_req_header {
    /// `fuse_in_header` / `fuse_out_header` area (C `char[]`).
    pub in_out: [u8; FUSE_URING_IN_OUT_HEADER_SZ],
    /// Per-opcode header area (C `char[]`).
    pub op_in: [u8; FUSE_URING_OP_IN_OUT_SZ],
    /// Ring entry info.
    pub ring_ent_in_out: fuse_uring_ent_in_out,
}
const _: () = assert!(size_of::<fuse_uring_req_header>() == 288);

impl Default for fuse_uring_req_header {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// Command area (80-byte SQE `cmd`) of a FUSE-over-io_uring SQE (7.42).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_uring_cmd_req {
    /// Flags.
    pub flags: u64,
    /// Entry identifier for commits.
    pub commit_id: u64,
    /// Queue index the command is for.
    pub qid: u16,
    /// Padding.
    pub padding: [u8; 6],
}
const _: () = assert!(size_of::<fuse_uring_cmd_req>() == 24);
