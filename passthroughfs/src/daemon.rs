//! Going to the background as libfuse does: fork, a new session, stdio to /dev/null; the
//! parent exits only once the child reports the mount ready (or failed).

use std::io::{Read, Write};

/// The child's end of the readiness pipe.
pub struct Ready(Option<std::fs::File>);

impl Ready {
    /// For a foreground run: reporting does nothing.
    pub fn foreground() -> Self {
        Ready(None)
    }

    /// Tells the waiting parent the mount is up, and detaches stdio.
    pub fn ok(mut self) -> std::io::Result<()> {
        if let Some(mut pipe) = self.0.take() {
            pipe.write_all(&[0])?;
            let null =
                rustix::fs::open("/dev/null", rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty())?;
            for target in 0..=2 {
                // SAFETY: dup2 onto the standard fds 0-2, which this process owns for its
                // whole life; no Rust object owns them, so nothing closes them behind us.
                if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Says the start failed, once: the waiting parent prints `passthroughfs: MESSAGE` and
    /// exits 1; in the foreground this prints it on stderr.
    pub fn failed(mut self, message: &str) {
        match self.0.take() {
            Some(mut pipe) => {
                let _ = pipe.write_all(&[1]);
                let _ = pipe.write_all(message.as_bytes());
            }
            None => eprintln!("passthroughfs: {message}"),
        }
    }
}

/// Forks. Returns in the child (a new session leader); the parent waits for the child's
/// report and exits with it.
///
/// # Safety
///
/// No other thread may exist in the process: the child of a fork is a copy of the calling
/// thread alone, and a lock another thread held (the allocator's, stdio's) would never be
/// released in it. Call it first thing in `main`.
pub unsafe fn daemonize() -> std::io::Result<Ready> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the caller guarantees there is no other thread, so the child is a full copy of
    // a single-threaded process and may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        drop(write);
        let mut pipe = std::fs::File::from(read);
        let mut report = Vec::new();
        let _ = pipe.read_to_end(&mut report);
        match report.split_first() {
            Some((0, _)) => std::process::exit(0),
            Some((_, message)) => {
                eprintln!("passthroughfs: {}", String::from_utf8_lossy(message));
                std::process::exit(1)
            }
            None => {
                eprintln!("passthroughfs: the server exited before mounting");
                std::process::exit(1)
            }
        }
    }
    drop(read);
    rustix::process::setsid()?;
    Ok(Ready(Some(std::fs::File::from(write))))
}
