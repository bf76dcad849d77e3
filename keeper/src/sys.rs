//! The crate's only `unsafe` code: calls that rustix lacks (`SO_PEERPIDFD`, `kcmp`, an
//! `SO_PEERCRED` that accepts pid 0) and the `pre_exec` hook that detaches the spawned keeper.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process that connected the peer socket.
const SO_PEERPIDFD: libc::c_int = 77;
/// `KCMP_FILE` from `<linux/kcmp.h>`.
const KCMP_FILE: libc::c_int = 0;

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

/// True if `a` and `b` are the same open file description (`kcmp(KCMP_FILE)` within this
/// process): how tests and servers check that the keeper handed back the very fds it was given.
pub fn same_open_file(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    let pid = std::process::id() as libc::c_long;
    // SAFETY: kcmp only reads its integer arguments; the fds are borrowed for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE as libc::c_long,
            a.as_raw_fd() as libc::c_long,
            b.as_raw_fd() as libc::c_long,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc == 0) }
}

/// Make `cmd` start its program detached, with umask 022: in the forked child, `umask(022)`
/// (the caller's may be 0), `setsid()` (a new session and process group), then fork again and
/// let the intermediate exit, so that the program is not a session leader, is not the
/// caller's child (it is reparented to init or the nearest subreaper) and the caller only has
/// to reap the intermediate.
pub(crate) fn detach_on_spawn(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec and calls only async-signal-safe
    // functions (umask, setsid, fork, _exit); it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
}
