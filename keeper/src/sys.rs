//! The daemon's only `unsafe` code: calls that rustix lacks (`SO_PEERPIDFD`, an `SO_PEERCRED`
//! that accepts pid 0, the pidfd and nsfs ioctls that read a process's user namespace).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process that connected the peer socket.
const SO_PEERPIDFD: libc::c_int = 77;
/// `PIDFD_GET_USER_NAMESPACE` from `<linux/pidfd.h>` (Linux 6.11): `_IO(0xFF, 9)`.
const PIDFD_GET_USER_NAMESPACE: libc::c_ulong = 0xFF09;
/// `NS_GET_PARENT` from `<linux/nsfs.h>`: `_IO(0xb7, 0x2)`.
const NS_GET_PARENT: libc::c_ulong = 0xb702;
/// `NS_GET_OWNER_UID` from `<linux/nsfs.h>`: `_IO(0xb7, 0x4)`.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// An ioctl that takes no argument and returns a new fd (close-on-exec, as nsfs opens them).
fn ioctl_new_fd(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<OwnedFd> {
    // SAFETY: both ioctls used here take no argument (the third is ignored) and return a new
    // fd or -1; no memory of ours is passed.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel installed the fd `rc` in our table for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

/// The user namespace of the process behind `pidfd` (`PIDFD_GET_USER_NAMESPACE`): an nsfs fd.
/// ESRCH once the process has exited.
pub(crate) fn pidfd_user_ns(pidfd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    ioctl_new_fd(pidfd, PIDFD_GET_USER_NAMESPACE)
}

/// The parent of user namespace `ns` (`NS_GET_PARENT`); EPERM when the parent is outside the
/// caller's namespace (`ns` is the caller's own or is not below it).
pub(crate) fn user_ns_parent(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    ioctl_new_fd(ns, NS_GET_PARENT)
}

/// The uid that created user namespace `ns`, as the caller's namespace sees it
/// (`NS_GET_OWNER_UID`).
pub(crate) fn user_ns_owner(ns: BorrowedFd<'_>) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which is valid for it.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID, &raw mut uid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}

/// A pidfd of the peer of the connected unix socket `sock` (`SO_PEERPIDFD`), close-on-exec.
pub(crate) fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid for writes and `len` holds the size of `fd`; the kernel
    // writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if fd < 0 || len as usize != std::mem::size_of::<libc::c_int>() {
        return Err(io::Error::other("SO_PEERPIDFD returned no fd"));
    }
    // SAFETY: the kernel just installed `fd` (O_CLOEXEC) in our table and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The credentials of the process that connected the peer of `sock` (`SO_PEERCRED`): pid, uid,
/// gid. The pid is 0 when that process is outside the keeper's pid namespace (rustix's `UCred`
/// stores the pid as a non-zero type, so a zero from the kernel must not go through it).
pub(crate) fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` holds the size of `cred`; the
    // kernel writes at most `len` bytes, and every bit pattern is a valid `ucred`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED returned a short answer"));
    }
    Ok((u32::try_from(cred.pid).unwrap_or(0), cred.uid, cred.gid))
}
