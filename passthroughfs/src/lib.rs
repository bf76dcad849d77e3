//! passthroughfs: a FUSE filesystem that mirrors a source directory.
//!
//! Each request runs with the caller's credentials ([`creds`]), inodes are held as `O_PATH`
//! fds keyed by (dev, ino, mnt_id) ([`inode`]), and open regular files are handed to the
//! kernel as passthrough backing files when it allows, so reads and writes skip the server.

// `unsafe` only where libc is called directly: fork and dup2 (`daemon`), the file-handle
// and ioctl calls rustix lacks (`sys`).
#![deny(unsafe_code)]

pub mod creds;
#[allow(unsafe_code)]
pub mod daemon;
pub mod fs;
pub mod handle;
pub mod inode;
pub mod inode_file;
pub mod options;
#[allow(unsafe_code)]
mod sys;

pub use fs::{FsConfig, Passthrough};
pub use options::{Options, USAGE, UsageError};
