//! Request extensions appended after the request body (security contexts
//! 7.36, extension headers and supplementary groups 7.38).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One security context; followed by the NUL-terminated name and the
/// context value (`size` bytes) (7.36).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_secctx {
    /// Size of the context value.
    pub size: u32,
    /// Padding.
    pub padding: u32,
}
const _: () = assert!(size_of::<fuse_secctx>() == 8);

/// Header of the security context extension; `nr_secctx` `fuse_secctx`
/// records follow (7.36).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_secctx_header {
    /// Total size of all contexts, including this header.
    pub size: u32,
    /// Number of contexts (at most `FUSE_MAX_NR_SECCTX`).
    pub nr_secctx: u32,
}
const _: () = assert!(size_of::<fuse_secctx_header>() == 8);

/// Generic extension header, compatible with `fuse_secctx_header` (7.38).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_ext_header {
    /// Total size of this extension including this header.
    pub size: u32,
    /// `fuse_ext_type` value (> `FUSE_MAX_NR_SECCTX`); C name `type`.
    pub r#type: u32,
}
const _: () = assert!(size_of::<fuse_ext_header>() == 8);

/// Fixed part of the supplementary groups extension (7.38).
///
/// In C this ends with the flexible array `uint32_t groups[]`; here the
/// struct is the 4-byte header only and `nr_groups` `u32` group ids follow.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_supp_groups {
    /// Number of group ids following.
    pub nr_groups: u32,
}
const _: () = assert!(size_of::<fuse_supp_groups>() == 4);
