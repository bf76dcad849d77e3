//! The one place the wrapper needs `unsafe`: what the stock server's process does between
//! fork and exec. (Letting go of the fds it inherited on its own mount is
//! `fuse_transport::close_fds_on`.)

use std::os::unix::process::CommandExt;

/// Has the child keep `fd` across exec (its end of the socket: created close-on-exec so no
/// other child inherits it) and die with SIGKILL when the thread that started it ends (the
/// supervisor thread, which lives as long as the wrapper: a wrapper killed with SIGKILL
/// leaves no stock server behind).
pub fn inherit_and_die_with_parent(cmd: &mut std::process::Command, fd: i32) {
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (fcntl, prctl), touching no memory shared with other
    // threads and allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = rustix::fd::BorrowedFd::borrow_raw(fd);
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
}
