//! The numbers the kernel and a filesystem pass each other, each its own type, so that a
//! nodeid cannot be given where a file handle or an offset is meant.

use std::fmt;

/// A node id: the number the filesystem gives an inode in an [`Entry`](crate::Entry), which the
/// kernel passes back on every request about that inode until it forgets it (FORGET). The
/// root is always [`NodeId::ROOT`]; 0 is never a node (an entry with nodeid 0 is negative).
///
/// A recoverable filesystem must give the same inode the same nodeid across a restart of its
/// server: the kernel still holds the old ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The root directory's node id (`FUSE_ROOT_ID`), which the kernel never looks up.
    pub const ROOT: NodeId = NodeId(fuse_abi::FUSE_ROOT_ID);

    /// The number on the wire.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A file handle: the number a filesystem returns from `open`, `opendir` or `create`
/// ([`Opened::fh`](crate::Opened::fh)), which the kernel passes back on every request made
/// through that open file until its RELEASE. Its meaning is the filesystem's own (an index, a
/// pointer, 0 for a stateless filesystem); handles with bit 63 set ([`crate::KEEPER_FH`]) are
/// reserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct FileHandle(pub u64);

impl FileHandle {
    /// The number on the wire.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileHandle({:#x})", self.0)
    }
}

/// A request's id (`unique` in `fuse_in_header`). The kernel sets bit 63
/// (`FUSE_UNIQUE_RESEND`) on a request it queues again after FUSE_NOTIFY_RESEND: the one a dead
/// server had read and not answered.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(transparent)]
pub struct Unique(pub u64);

impl Unique {
    /// The number on the wire.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether the kernel resent this request after a server died (bit 63).
    pub const fn is_resent(self) -> bool {
        self.0 & fuse_abi::FUSE_UNIQUE_RESEND != 0
    }

    /// The id the request had when it was first sent (bit 63 clear).
    pub const fn original(self) -> Unique {
        Unique(self.0 & !fuse_abi::FUSE_UNIQUE_RESEND)
    }
}

impl fmt::Debug for Unique {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unique({:#x})", self.0)
    }
}
