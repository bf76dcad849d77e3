//! The smaller protocol enums: notification codes, extension types and
//! io_uring commands.

/// Unsolicited notification code, sent in `fuse_out_header::error` with
/// `fuse_out_header::unique == 0` (7.11).
#[repr(i32)]
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum fuse_notify_code {
    /// Wake up a poller; payload `fuse_notify_poll_wakeup_out` (7.11).
    FUSE_NOTIFY_POLL = 1,
    /// Invalidate inode data/attrs; payload `fuse_notify_inval_inode_out` (7.12).
    FUSE_NOTIFY_INVAL_INODE = 2,
    /// Invalidate a directory entry; payload `fuse_notify_inval_entry_out` (7.12).
    FUSE_NOTIFY_INVAL_ENTRY = 3,
    /// Store data in the page cache; payload `fuse_notify_store_out` (7.15).
    FUSE_NOTIFY_STORE = 4,
    /// Retrieve data from the page cache; payload `fuse_notify_retrieve_out` (7.15).
    FUSE_NOTIFY_RETRIEVE = 5,
    /// Delete a directory entry; payload `fuse_notify_delete_out` (7.18).
    FUSE_NOTIFY_DELETE = 6,
    /// Ask the kernel to resend pending requests; no payload (7.40).
    FUSE_NOTIFY_RESEND = 7,
    /// Increment the connection epoch, invalidating dentries; no payload (7.44).
    FUSE_NOTIFY_INC_EPOCH = 8,
    /// Prune unreferenced inodes; payload `fuse_notify_prune_out` + ids (7.45).
    FUSE_NOTIFY_PRUNE = 9,
}

impl fuse_notify_code {
    /// Every notification code defined by protocol 7.45.
    pub const ALL: &'static [fuse_notify_code] = &[
        Self::FUSE_NOTIFY_POLL,
        Self::FUSE_NOTIFY_INVAL_INODE,
        Self::FUSE_NOTIFY_INVAL_ENTRY,
        Self::FUSE_NOTIFY_STORE,
        Self::FUSE_NOTIFY_RETRIEVE,
        Self::FUSE_NOTIFY_DELETE,
        Self::FUSE_NOTIFY_RESEND,
        Self::FUSE_NOTIFY_INC_EPOCH,
        Self::FUSE_NOTIFY_PRUNE,
    ];
}

impl TryFrom<i32> for fuse_notify_code {
    type Error = i32;

    /// Converts a raw notification code; unknown values are returned as `Err`.
    fn try_from(value: i32) -> Result<Self, i32> {
        Ok(match value {
            1 => Self::FUSE_NOTIFY_POLL,
            2 => Self::FUSE_NOTIFY_INVAL_INODE,
            3 => Self::FUSE_NOTIFY_INVAL_ENTRY,
            4 => Self::FUSE_NOTIFY_STORE,
            5 => Self::FUSE_NOTIFY_RETRIEVE,
            6 => Self::FUSE_NOTIFY_DELETE,
            7 => Self::FUSE_NOTIFY_RESEND,
            8 => Self::FUSE_NOTIFY_INC_EPOCH,
            9 => Self::FUSE_NOTIFY_PRUNE,
            other => return Err(other),
        })
    }
}

impl From<fuse_notify_code> for i32 {
    fn from(code: fuse_notify_code) -> i32 {
        code as i32
    }
}

/// Request extension type, `fuse_ext_header::type` (7.38).
///
/// Values 0..=31 are reserved for `fuse_secctx_header` (its `nr_secctx`).
#[repr(u32)]
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum fuse_ext_type {
    /// Maximum value of `fuse_secctx_header::nr_secctx` (7.38).
    FUSE_MAX_NR_SECCTX = 31,
    /// Supplementary groups extension, `fuse_supp_groups` (7.38).
    FUSE_EXT_GROUPS = 32,
}

impl TryFrom<u32> for fuse_ext_type {
    type Error = u32;

    /// Converts a raw extension type; unknown values are returned as `Err`.
    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            31 => Ok(Self::FUSE_MAX_NR_SECCTX),
            32 => Ok(Self::FUSE_EXT_GROUPS),
            other => Err(other),
        }
    }
}

impl From<fuse_ext_type> for u32 {
    fn from(ty: fuse_ext_type) -> u32 {
        ty as u32
    }
}

/// Command in the SQE of a FUSE-over-io_uring request (7.42).
#[repr(u32)]
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum fuse_uring_cmd {
    /// Invalid command.
    FUSE_IO_URING_CMD_INVALID = 0,
    /// Register the request buffer and fetch a FUSE request.
    FUSE_IO_URING_CMD_REGISTER = 1,
    /// Commit a FUSE request result and fetch the next request.
    FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
}

impl TryFrom<u32> for fuse_uring_cmd {
    type Error = u32;

    /// Converts a raw io_uring command; unknown values are returned as `Err`.
    fn try_from(value: u32) -> Result<Self, u32> {
        match value {
            0 => Ok(Self::FUSE_IO_URING_CMD_INVALID),
            1 => Ok(Self::FUSE_IO_URING_CMD_REGISTER),
            2 => Ok(Self::FUSE_IO_URING_CMD_COMMIT_AND_FETCH),
            other => Err(other),
        }
    }
}

impl From<fuse_uring_cmd> for u32 {
    fn from(cmd: fuse_uring_cmd) -> u32 {
        cmd as u32
    }
}
