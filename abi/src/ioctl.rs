//! `/dev/fuse` device ioctl request numbers.
//!
//! The values use the generic Linux `_IOC` encoding
//! (`dir << 30 | size << 16 | type << 8 | nr`, with `_IOC_WRITE = 1` and
//! `_IOC_READ = 2`), which is what x86, x86-64, arm, arm64, riscv, s390 and
//! loongarch use. Architectures with a different `_IOC` layout (alpha, mips,
//! powerpc, sparc) are not covered. The values are `u32`; widen them to the
//! platform's `c_ulong` (or `Ioctl` type) when calling `ioctl(2)`.

use crate::fuse_backing_map;

/// `_IOC_NONE`: no data transfer.
const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`: userspace writes data to the kernel.
const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: userspace reads data from the kernel.
const IOC_READ: u32 = 2;

/// Generic Linux `_IOC(dir, type, nr, size)`.
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < (1 << 14), "ioctl argument too large");
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | (nr as u32)
}

/// Magic number (`type` field) of the FUSE device ioctls.
pub const FUSE_DEV_IOC_MAGIC: u8 = 229;

/// `_IOR(229, 0, uint32_t)`: clone a `/dev/fuse` fd onto an existing session.
pub const FUSE_DEV_IOC_CLONE: u32 = ioc(IOC_READ, FUSE_DEV_IOC_MAGIC, 0, size_of::<u32>());

/// `_IOW(229, 1, struct fuse_backing_map)`: register a passthrough backing file (7.40).
pub const FUSE_DEV_IOC_BACKING_OPEN: u32 =
    ioc(IOC_WRITE, FUSE_DEV_IOC_MAGIC, 1, size_of::<fuse_backing_map>());

/// `_IOW(229, 2, uint32_t)`: unregister a passthrough backing id (7.40).
pub const FUSE_DEV_IOC_BACKING_CLOSE: u32 = ioc(IOC_WRITE, FUSE_DEV_IOC_MAGIC, 2, size_of::<u32>());

/// `_IO(229, 3)`: request synchronous `FUSE_INIT` during mount (Linux 6.18).
pub const FUSE_DEV_IOC_SYNC_INIT: u32 = ioc(IOC_NONE, FUSE_DEV_IOC_MAGIC, 3, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ioctl_numbers() {
        assert_eq!(FUSE_DEV_IOC_CLONE, 0x8004_e500);
        assert_eq!(FUSE_DEV_IOC_BACKING_OPEN, 0x4010_e501);
        assert_eq!(FUSE_DEV_IOC_BACKING_CLOSE, 0x4004_e502);
        assert_eq!(FUSE_DEV_IOC_SYNC_INIT, 0x0000_e503);
    }
}
