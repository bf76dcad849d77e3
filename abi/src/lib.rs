//! The Linux FUSE kernel ABI, protocol 7.45 (`include/uapi/linux/fuse.h` as
//! shipped with Linux 6.18), as pure data.
//!
//! This crate contains no I/O and no `unsafe` code. It provides:
//!
//! * every `struct` of the header as a `#[repr(C)]` Rust struct with the
//!   header's name, field names, field types and padding fields; each derives
//!   the [`zerocopy`] traits `FromBytes`, `IntoBytes`, `KnownLayout` and
//!   `Immutable`, so it can be parsed from and serialized to the wire without
//!   `unsafe`, and each has a compile-time size assertion;
//! * the [`fuse_opcode`], [`fuse_notify_code`], [`fuse_ext_type`] and
//!   [`fuse_uring_cmd`] enums with checked conversions from raw integers;
//! * every `#define` constant of the header (flags, compat sizes, device ioctl
//!   request numbers) with the header's name.
//!
//! All multi-byte values are in the host's native byte order, as in the
//! kernel protocol.
//!
//! Structs whose C definition ends in a flexible array member
//! ([`fuse_dirent`], [`fuse_supp_groups`]) are only the fixed-size header; the
//! variable part follows in the byte stream.
//!
//! Deviations from the C header forced by Rust: fields named `type` are
//! spelled `r#type`; `char` arrays are `[u8; N]`; function-like macros are
//! `const fn`s taking the relevant length instead of a struct pointer.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![allow(non_camel_case_types)]

mod codes;
mod dirent;
mod flags;
mod init_flags;
mod ioctl;
mod opcode;
mod structs;
mod version;

pub use codes::{fuse_ext_type, fuse_notify_code, fuse_uring_cmd};
pub use dirent::*;
pub use flags::*;
pub use init_flags::*;
pub use ioctl::*;
pub use opcode::fuse_opcode;
pub use structs::*;
pub use version::*;

#[cfg(test)]
mod tests;
