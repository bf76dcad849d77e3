//! `#[repr(C)]` wire structs, named and laid out exactly as in `fuse.h`.
//!
//! Every struct derives zerocopy's `FromBytes`, `IntoBytes`, `KnownLayout`
//! and `Immutable` and carries a compile-time size assertion.

mod attr;
mod cuse;
mod dax;
mod dirent;
mod ext;
mod file;
mod header;
mod init;
mod ioctl;
mod node;
mod notify;
mod uring;

pub use attr::*;
pub use cuse::*;
pub use dax::*;
pub use dirent::*;
pub use ext::*;
pub use file::*;
pub use header::*;
pub use init::*;
pub use ioctl::*;
pub use node::*;
pub use notify::*;
pub use uring::*;
