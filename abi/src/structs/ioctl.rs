//! IOCTL request/reply payloads and the device ioctl argument struct.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// IOCTL request; `in_size` bytes of input data follow (7.11).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_ioctl_in {
    /// File handle.
    pub fh: u64,
    /// `FUSE_IOCTL_*` flags.
    pub flags: u32,
    /// Ioctl command.
    pub cmd: u32,
    /// Ioctl argument (a user-space pointer value).
    pub arg: u64,
    /// Size of the input data.
    pub in_size: u32,
    /// Maximum size of the output data.
    pub out_size: u32,
}
const _: () = assert!(size_of::<fuse_ioctl_in>() == 32);

/// An iovec in an unrestricted ioctl retry reply (7.16).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_ioctl_iovec {
    /// Base address in the caller's address space.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}
const _: () = assert!(size_of::<fuse_ioctl_iovec>() == 16);

/// Reply to IOCTL; output data or retry iovecs follow (7.11).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_ioctl_out {
    /// Return value of the ioctl.
    pub result: i32,
    /// `FUSE_IOCTL_*` flags (e.g. `FUSE_IOCTL_RETRY`).
    pub flags: u32,
    /// Number of input iovecs, on retry.
    pub in_iovs: u32,
    /// Number of output iovecs, on retry.
    pub out_iovs: u32,
}
const _: () = assert!(size_of::<fuse_ioctl_out>() == 16);

/// Argument of `FUSE_DEV_IOC_BACKING_OPEN` (7.40).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct fuse_backing_map {
    /// File descriptor of the backing file.
    pub fd: i32,
    /// Flags (must be 0).
    pub flags: u32,
    /// Padding.
    pub padding: u64,
}
const _: () = assert!(size_of::<fuse_backing_map>() == 16);
