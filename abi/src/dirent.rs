//! Alignment and size helpers for `fuse_dirent` / `fuse_direntplus` records
//! (the `FUSE_REC_ALIGN`, `FUSE_DIRENT_*` and `FUSE_NAME_OFFSET*` macros).

use core::mem::offset_of;

use crate::{fuse_dirent, fuse_direntplus};

/// `FUSE_REC_ALIGN(x)`: round `x` up to the 8-byte record alignment.
pub const fn fuse_rec_align(x: usize) -> usize {
    (x + size_of::<u64>() - 1) & !(size_of::<u64>() - 1)
}

/// `FUSE_DIRENT_ALIGN(x)`: round `x` up to the 8-byte dirent alignment.
pub const fn fuse_dirent_align(x: usize) -> usize {
    fuse_rec_align(x)
}

/// `FUSE_REC_ALIGN(x)` under its header name; same as [`fuse_rec_align`].
#[allow(non_snake_case)]
pub const fn FUSE_REC_ALIGN(x: usize) -> usize {
    fuse_rec_align(x)
}

/// `FUSE_DIRENT_ALIGN(x)` under its header name; same as [`fuse_dirent_align`].
#[allow(non_snake_case)]
pub const fn FUSE_DIRENT_ALIGN(x: usize) -> usize {
    fuse_dirent_align(x)
}

/// `FUSE_NAME_OFFSET`: offset of the name within a `fuse_dirent` record (24).
pub const FUSE_NAME_OFFSET: usize = size_of::<fuse_dirent>();

/// `FUSE_NAME_OFFSET_DIRENTPLUS`: offset of the name within a
/// `fuse_direntplus` record (152).
pub const FUSE_NAME_OFFSET_DIRENTPLUS: usize =
    offset_of!(fuse_direntplus, dirent) + FUSE_NAME_OFFSET;

/// `FUSE_DIRENT_SIZE(d)`: padded size of a `fuse_dirent` record whose name
/// is `namelen` bytes long (takes `namelen` instead of a struct pointer).
#[allow(non_snake_case)]
pub const fn FUSE_DIRENT_SIZE(namelen: usize) -> usize {
    fuse_dirent_align(FUSE_NAME_OFFSET + namelen)
}

/// `FUSE_DIRENTPLUS_SIZE(d)`: padded size of a `fuse_direntplus` record whose
/// name is `namelen` bytes long (takes `namelen` instead of a struct pointer).
#[allow(non_snake_case)]
pub const fn FUSE_DIRENTPLUS_SIZE(namelen: usize) -> usize {
    fuse_dirent_align(FUSE_NAME_OFFSET_DIRENTPLUS + namelen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirent_sizes() {
        assert_eq!(FUSE_NAME_OFFSET, 24);
        assert_eq!(FUSE_NAME_OFFSET_DIRENTPLUS, 152);
        assert_eq!(fuse_dirent_align(0), 0);
        assert_eq!(fuse_dirent_align(1), 8);
        assert_eq!(fuse_dirent_align(8), 8);
        assert_eq!(fuse_dirent_align(9), 16);
        assert_eq!(FUSE_DIRENT_SIZE(1), 32);
        assert_eq!(FUSE_DIRENT_SIZE(8), 32);
        assert_eq!(FUSE_DIRENT_SIZE(9), 40);
        assert_eq!(FUSE_DIRENTPLUS_SIZE(3), 160);
        assert_eq!(FUSE_REC_ALIGN(13), 16);
        assert_eq!(FUSE_DIRENT_ALIGN(17), 24);
    }
}
