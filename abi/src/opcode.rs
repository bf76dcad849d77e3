//! Request opcodes (`enum fuse_opcode`).

/// Defines `fuse_opcode` and its conversions from one table, so the enum,
/// `TryFrom<u32>`, `name()` and `ALL` cannot drift apart.
macro_rules! opcodes {
    ($($(#[$doc:meta])* $variant:ident = $value:literal => $name:literal,)*) => {
        /// Request opcode, `fuse_in_header::opcode`.
        #[repr(u32)]
        #[allow(clippy::enum_variant_names)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum fuse_opcode {
            $($(#[$doc])* $variant = $value,)*
        }

        impl fuse_opcode {
            /// Every opcode defined by protocol 7.45, in header order.
            pub const ALL: &'static [fuse_opcode] = &[$(fuse_opcode::$variant,)*];

            /// Short name of the opcode: the header name without the `FUSE_`
            /// prefix (`"LOOKUP"`, `"INIT"`, ...); CUSE opcodes keep `CUSE_`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(fuse_opcode::$variant => $name,)*
                }
            }
        }

        impl TryFrom<u32> for fuse_opcode {
            type Error = u32;

            /// Converts a raw opcode; unknown values are returned as `Err`.
            fn try_from(value: u32) -> Result<Self, u32> {
                match value {
                    $($value => Ok(fuse_opcode::$variant),)*
                    other => Err(other),
                }
            }
        }
    };
}

opcodes! {
    /// Look up a directory entry by name.
    FUSE_LOOKUP = 1 => "LOOKUP",
    /// Drop lookup references to an inode (no reply).
    FUSE_FORGET = 2 => "FORGET",
    /// Get file attributes.
    FUSE_GETATTR = 3 => "GETATTR",
    /// Set file attributes (7.1).
    FUSE_SETATTR = 4 => "SETATTR",
    /// Read a symbolic link.
    FUSE_READLINK = 5 => "READLINK",
    /// Create a symbolic link (7.1).
    FUSE_SYMLINK = 6 => "SYMLINK",
    /// Create a file node (7.1).
    FUSE_MKNOD = 8 => "MKNOD",
    /// Create a directory (7.1).
    FUSE_MKDIR = 9 => "MKDIR",
    /// Remove a file (7.1).
    FUSE_UNLINK = 10 => "UNLINK",
    /// Remove a directory (7.1).
    FUSE_RMDIR = 11 => "RMDIR",
    /// Rename a file (7.1).
    FUSE_RENAME = 12 => "RENAME",
    /// Create a hard link (7.1).
    FUSE_LINK = 13 => "LINK",
    /// Open a file (7.1).
    FUSE_OPEN = 14 => "OPEN",
    /// Read data (7.1).
    FUSE_READ = 15 => "READ",
    /// Write data (7.1).
    FUSE_WRITE = 16 => "WRITE",
    /// Get filesystem statistics.
    FUSE_STATFS = 17 => "STATFS",
    /// Release an open file (7.1).
    FUSE_RELEASE = 18 => "RELEASE",
    /// Synchronize file contents (7.1).
    FUSE_FSYNC = 20 => "FSYNC",
    /// Set an extended attribute (7.1).
    FUSE_SETXATTR = 21 => "SETXATTR",
    /// Get an extended attribute (7.1).
    FUSE_GETXATTR = 22 => "GETXATTR",
    /// List extended attribute names (7.1).
    FUSE_LISTXATTR = 23 => "LISTXATTR",
    /// Remove an extended attribute (7.1).
    FUSE_REMOVEXATTR = 24 => "REMOVEXATTR",
    /// Flush on close of a file descriptor (7.1).
    FUSE_FLUSH = 25 => "FLUSH",
    /// Initialize the session / negotiate the protocol.
    FUSE_INIT = 26 => "INIT",
    /// Open a directory (7.1).
    FUSE_OPENDIR = 27 => "OPENDIR",
    /// Read directory entries (7.1).
    FUSE_READDIR = 28 => "READDIR",
    /// Release an open directory (7.1).
    FUSE_RELEASEDIR = 29 => "RELEASEDIR",
    /// Synchronize directory contents (7.2).
    FUSE_FSYNCDIR = 30 => "FSYNCDIR",
    /// Test for a POSIX lock (7.7).
    FUSE_GETLK = 31 => "GETLK",
    /// Acquire or release a POSIX lock (7.7).
    FUSE_SETLK = 32 => "SETLK",
    /// Acquire a POSIX lock, waiting (7.7).
    FUSE_SETLKW = 33 => "SETLKW",
    /// Check file access permissions (7.3).
    FUSE_ACCESS = 34 => "ACCESS",
    /// Create and open a file (7.3).
    FUSE_CREATE = 35 => "CREATE",
    /// Interrupt a pending request (7.7).
    FUSE_INTERRUPT = 36 => "INTERRUPT",
    /// Map a file block to a device block (7.8).
    FUSE_BMAP = 37 => "BMAP",
    /// Clean up the filesystem on unmount (7.8).
    FUSE_DESTROY = 38 => "DESTROY",
    /// Perform an ioctl (7.11).
    FUSE_IOCTL = 39 => "IOCTL",
    /// Poll for I/O readiness (7.11).
    FUSE_POLL = 40 => "POLL",
    /// Reply to a `FUSE_NOTIFY_RETRIEVE` notification (7.15).
    FUSE_NOTIFY_REPLY = 41 => "NOTIFY_REPLY",
    /// Drop lookup references to several inodes (no reply) (7.16).
    FUSE_BATCH_FORGET = 42 => "BATCH_FORGET",
    /// Allocate or punch file space (7.19).
    FUSE_FALLOCATE = 43 => "FALLOCATE",
    /// Read directory entries with attributes (7.21).
    FUSE_READDIRPLUS = 44 => "READDIRPLUS",
    /// Rename with flags (7.23).
    FUSE_RENAME2 = 45 => "RENAME2",
    /// Find next data or hole (7.24).
    FUSE_LSEEK = 46 => "LSEEK",
    /// Copy a range between files; 32-bit result (7.28).
    FUSE_COPY_FILE_RANGE = 47 => "COPY_FILE_RANGE",
    /// Set up a DAX mapping (7.31).
    FUSE_SETUPMAPPING = 48 => "SETUPMAPPING",
    /// Remove DAX mappings (7.31).
    FUSE_REMOVEMAPPING = 49 => "REMOVEMAPPING",
    /// Synchronize the whole filesystem (7.34).
    FUSE_SYNCFS = 50 => "SYNCFS",
    /// Create an unnamed temporary file (7.37).
    FUSE_TMPFILE = 51 => "TMPFILE",
    /// Get extended file attributes, statx(2) style (7.39).
    FUSE_STATX = 52 => "STATX",
    /// Copy a range between files; 64-bit result (7.45).
    FUSE_COPY_FILE_RANGE_64 = 53 => "COPY_FILE_RANGE_64",
    /// CUSE session initialization.
    CUSE_INIT = 4096 => "CUSE_INIT",
    /// Reserved: `CUSE_INIT << 8`, detects byte-swapped peers.
    CUSE_INIT_BSWAP_RESERVED = 1048576 => "CUSE_INIT_BSWAP_RESERVED",
    /// Reserved: `FUSE_INIT << 24`, detects byte-swapped peers.
    FUSE_INIT_BSWAP_RESERVED = 436207616 => "INIT_BSWAP_RESERVED",
}

impl From<fuse_opcode> for u32 {
    fn from(op: fuse_opcode) -> u32 {
        op as u32
    }
}

impl core::fmt::Display for fuse_opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
