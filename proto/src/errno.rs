//! A raw errno carried from the syscall to the reply.

use std::fmt;
use std::io;

/// A positive Linux errno value. The reply carries it negated in `fuse_out_header.error`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    /// Operation not permitted (1): the caller lacks the privilege, not just the permission bits.
    pub const EPERM: Errno = Errno(libc_errno::EPERM);
    /// No such file or directory (2).
    pub const ENOENT: Errno = Errno(libc_errno::ENOENT);
    /// Input/output error (5); also the answer to a request that does not decode.
    pub const EIO: Errno = Errno(libc_errno::EIO);
    /// Bad file descriptor (9): an unknown file handle, or one not open for the access asked.
    pub const EBADF: Errno = Errno(libc_errno::EBADF);
    /// Resource temporarily unavailable (11, also `EWOULDBLOCK`).
    pub const EAGAIN: Errno = Errno(libc_errno::EAGAIN);
    /// Out of memory (12).
    pub const ENOMEM: Errno = Errno(libc_errno::ENOMEM);
    /// Permission denied (13): the permission bits or an ACL refuse the caller.
    pub const EACCES: Errno = Errno(libc_errno::EACCES);
    /// File exists (17): the name is taken (MKDIR, CREATE with `O_EXCL`, `XATTR_CREATE`, ...).
    pub const EEXIST: Errno = Errno(libc_errno::EEXIST);
    /// Cross-device link (18): RENAME or LINK across filesystems.
    pub const EXDEV: Errno = Errno(libc_errno::EXDEV);
    /// Not a directory (20).
    pub const ENOTDIR: Errno = Errno(libc_errno::ENOTDIR);
    /// Is a directory (21).
    pub const EISDIR: Errno = Errno(libc_errno::EISDIR);
    /// Invalid argument (22).
    pub const EINVAL: Errno = Errno(libc_errno::EINVAL);
    /// No space left on device (28).
    pub const ENOSPC: Errno = Errno(libc_errno::ENOSPC);
    /// Read-only file system (30).
    pub const EROFS: Errno = Errno(libc_errno::EROFS);
    /// Result too large (34): an xattr value or list longer than the caller's buffer.
    pub const ERANGE: Errno = Errno(libc_errno::ERANGE);
    /// Function not implemented (38): the answer to an unknown opcode; for most optional
    /// opcodes (FLUSH, xattrs, ACCESS, CREATE, ...) the kernel then stops sending that opcode.
    pub const ENOSYS: Errno = Errno(libc_errno::ENOSYS);
    /// Directory not empty (39): RMDIR, or RENAME over a non-empty directory.
    pub const ENOTEMPTY: Errno = Errno(libc_errno::ENOTEMPTY);
    /// No data available (61): the extended attribute does not exist.
    pub const ENODATA: Errno = Errno(libc_errno::ENODATA);
    /// Operation not supported (95, `EOPNOTSUPP`, which is `ENOTSUP` on Linux).
    pub const ENOTSUP: Errno = Errno(libc_errno::EOPNOTSUPP);
    /// Stale file handle (116): the nodeid or file handle no longer names a file.
    pub const ESTALE: Errno = Errno(libc_errno::ESTALE);
    /// File name too long (36).
    pub const ENAMETOOLONG: Errno = Errno(libc_errno::ENAMETOOLONG);
    /// Inappropriate ioctl for device (25): an ioctl command the file does not know.
    pub const ENOTTY: Errno = Errno(libc_errno::ENOTTY);

    /// Wraps a positive errno value; zero or negative values become EIO.
    pub const fn new(value: i32) -> Errno {
        if value > 0 { Errno(value) } else { Errno(libc_errno::EIO) }
    }

    /// The positive errno value.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The errno of the calling thread's last failed libc call.
    pub fn last() -> Errno {
        Errno::from(io::Error::last_os_error())
    }
}

impl From<io::Error> for Errno {
    fn from(err: io::Error) -> Errno {
        Errno::new(err.raw_os_error().unwrap_or(libc_errno::EIO))
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(err: rustix::io::Errno) -> Errno {
        Errno::new(err.raw_os_error())
    }
}

impl From<Errno> for io::Error {
    fn from(err: Errno) -> io::Error {
        io::Error::from_raw_os_error(err.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, io::Error::from_raw_os_error(self.0))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&io::Error::from_raw_os_error(self.0), f)
    }
}

impl std::error::Error for Errno {}

/// The Linux errno numbers this crate names (asm-generic/errno-base.h, errno.h).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EBADF: i32 = 9;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
    pub const ENOTTY: i32 = 25;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ERANGE: i32 = 34;
    pub const ENAMETOOLONG: i32 = 36;
    pub const ENOSYS: i32 = 38;
    pub const ENOTEMPTY: i32 = 39;
    pub const ENODATA: i32 = 61;
    pub const EOPNOTSUPP: i32 = 95;
    pub const ESTALE: i32 = 116;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_io_error_keeps_the_raw_value() {
        let e = Errno::from(io::Error::from_raw_os_error(17));
        assert_eq!(e, Errno::EEXIST);
        assert_eq!(e.raw(), 17);
    }

    #[test]
    fn from_rustix_keeps_the_value() {
        assert_eq!(Errno::from(rustix::io::Errno::NOENT), Errno::ENOENT);
        assert_eq!(Errno::from(rustix::io::Errno::STALE).raw(), 116);
    }

    #[test]
    fn non_os_errors_and_bad_values_become_eio() {
        assert_eq!(Errno::from(io::Error::other("x")), Errno::EIO);
        assert_eq!(Errno::new(0), Errno::EIO);
        assert_eq!(Errno::new(-3), Errno::EIO);
    }
}
