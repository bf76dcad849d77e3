//! A raw errno carried from the syscall to the reply.

use std::fmt;
use std::io;

/// A positive Linux errno value. The reply carries it negated in `fuse_out_header.error`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc_errno::EPERM);
    pub const ENOENT: Errno = Errno(libc_errno::ENOENT);
    pub const EIO: Errno = Errno(libc_errno::EIO);
    pub const EBADF: Errno = Errno(libc_errno::EBADF);
    pub const EAGAIN: Errno = Errno(libc_errno::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc_errno::ENOMEM);
    pub const EACCES: Errno = Errno(libc_errno::EACCES);
    pub const EEXIST: Errno = Errno(libc_errno::EEXIST);
    pub const EXDEV: Errno = Errno(libc_errno::EXDEV);
    pub const ENOTDIR: Errno = Errno(libc_errno::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc_errno::EISDIR);
    pub const EINVAL: Errno = Errno(libc_errno::EINVAL);
    pub const ENOSPC: Errno = Errno(libc_errno::ENOSPC);
    pub const EROFS: Errno = Errno(libc_errno::EROFS);
    pub const ERANGE: Errno = Errno(libc_errno::ERANGE);
    pub const ENOSYS: Errno = Errno(libc_errno::ENOSYS);
    pub const ENOTEMPTY: Errno = Errno(libc_errno::ENOTEMPTY);
    pub const ENODATA: Errno = Errno(libc_errno::ENODATA);
    pub const ENOTSUP: Errno = Errno(libc_errno::EOPNOTSUPP);
    pub const ESTALE: Errno = Errno(libc_errno::ESTALE);
    pub const ENAMETOOLONG: Errno = Errno(libc_errno::ENAMETOOLONG);
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
    fn non_os_errors_and_bad_values_become_eio() {
        assert_eq!(Errno::from(io::Error::other("x")), Errno::EIO);
        assert_eq!(Errno::new(0), Errno::EIO);
        assert_eq!(Errno::new(-3), Errno::EIO);
    }
}
