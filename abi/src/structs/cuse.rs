//! `CUSE_INIT` request and reply (character devices in userspace).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `CUSE_INIT` request.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct cuse_init_in {
    /// Kernel's major protocol version.
    pub major: u32,
    /// Kernel's minor protocol version.
    pub minor: u32,
    /// Unused.
    pub unused: u32,
    /// `CUSE_*` flags.
    pub flags: u32,
}
const _: () = assert!(size_of::<cuse_init_in>() == 16);

/// `CUSE_INIT` reply; followed by up to `CUSE_INIT_INFO_MAX` bytes of device info.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct cuse_init_out {
    /// Server's major protocol version.
    pub major: u32,
    /// Server's minor protocol version.
    pub minor: u32,
    /// Unused.
    pub unused: u32,
    /// Accepted `CUSE_*` flags.
    pub flags: u32,
    /// Maximum READ size.
    pub max_read: u32,
    /// Maximum WRITE size.
    pub max_write: u32,
    /// Character device major number.
    pub dev_major: u32,
    /// Character device minor number.
    pub dev_minor: u32,
    /// Spare.
    pub spare: [u32; 10],
}
const _: () = assert!(size_of::<cuse_init_out>() == 72);
