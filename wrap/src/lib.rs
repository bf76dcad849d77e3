//! `fuse-wrap`: an unmodified FUSE server (libfuse, go-fuse, fuser) behind a mount that
//! outlives it.
//!
//! The wrapper owns the mount and is a recoverable server of this project's library (its
//! nodeids, names and handles in the state store, its connection at the keeper). It runs the
//! stock server with `/dev/fd/N` for a mountpoint, N one end of a socket pair, and relays
//! every request to it ([`fs`]), translating nodeids and file handles ([`nodes`]). When the
//! stock server dies it is started again and brought back to where the old one was
//! ([`upstream`]); docs/WRAPPING.md has the whole design and its limits.

#![deny(unsafe_code)]

pub mod fs;
pub mod nodes;
#[allow(unsafe_code)]
mod sys;
pub mod upstream;
pub mod wire;

use fuse_abi::*;
use fuse_recovery::store::TableSpec;

pub use fs::Wrap;

/// The oldest protocol minor a stock server may speak (RENAME2 and READDIRPLUS, and the
/// request layouts the wrapper sends, are all older).
pub const MIN_SERVER_MINOR: u32 = 23;

/// The INIT flags the wrapper can relay, offered to a stock server before the kernel's
/// grant is known. No splice (a socket is no pipe), passthrough, io_uring, locks (the
/// kernel keeps them: the wrapper never asks for POSIX or flock locks), export support or
/// ACLs.
pub const RELAYED: u64 = FUSE_ASYNC_READ
    | FUSE_BIG_WRITES
    | FUSE_DONT_MASK
    | FUSE_AUTO_INVAL_DATA
    | FUSE_DO_READDIRPLUS
    | FUSE_READDIRPLUS_AUTO
    | FUSE_ASYNC_DIO
    | FUSE_WRITEBACK_CACHE
    | FUSE_PARALLEL_DIROPS
    | FUSE_MAX_PAGES
    | FUSE_CACHE_SYMLINKS
    | FUSE_SETXATTR_EXT
    | FUSE_INIT_EXT;

/// The flags offered to a stock server once the kernel granted `granted`.
pub fn offer_flags(granted: u64) -> u64 {
    RELAYED & (granted | FUSE_INIT_EXT)
}

/// The INIT request presented to a stock server.
pub fn offer(flags: u64, max_readahead: u32) -> fuse_init_in {
    fuse_init_in {
        major: FUSE_KERNEL_VERSION,
        minor: FUSE_KERNEL_MINOR_VERSION,
        max_readahead,
        flags: flags as u32,
        flags2: (flags >> 32) as u32,
        unused: [0; 11],
    }
}

/// The tables of the wrapper's state store.
pub const TABLES: [TableSpec; 4] =
    [nodes::TABLES[0], nodes::TABLES[1], nodes::TABLES[2], fuse_recovery::journal::JOURNAL];
