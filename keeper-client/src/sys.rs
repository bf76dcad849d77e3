//! The client crate's only `unsafe` code: `kcmp`, which rustix lacks, and the `pre_exec` hook
//! that detaches a spawned keeper.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `KCMP_FILE` from `<linux/kcmp.h>`.
const KCMP_FILE: libc::c_int = 0;

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
