//! Decoding FUSE requests from the kernel's bytes and encoding replies.
//!
//! This layer does no I/O. [`decode`] turns one request read from `/dev/fuse` into a
//! [`Request`] holding an [`Operation`] that borrows names and data from the read buffer;
//! the [`reply`] module writes reply payloads into a reusable buffer. Malformed input is an
//! [`DecodeError`], never a panic: the kernel's bytes are untrusted here like any other.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod cursor;
mod decode;
pub mod dirent;
mod errno;
mod operation;
pub mod reply;

pub use decode::{DecodeError, Negotiated, Request, decode, peek_header};
pub use errno::Errno;
pub use operation::{ForgetOne, Forgets, Operation, SetattrIn};
