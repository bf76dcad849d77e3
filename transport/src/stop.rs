//! Stopping the threads that read a connection without losing a request: each reader checks
//! the stop flag before every read, and a reader blocked in `read(2)` is woken by a signal
//! (the read fails with EINTR; a request the kernel already began to copy is delivered
//! whole, so none is lost). Requests nobody read stay queued in the kernel for the next
//! server.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::Result;
use crate::sys::{self, ThreadHandle};

/// A stop switch shared by a connection's reader threads. Cloning shares it.
#[derive(Clone, Default)]
pub struct ReadStop {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    stopped: AtomicBool,
    next: AtomicU64,
    /// The threads between [`ReadStop::reader`] and the drop of its guard.
    readers: Mutex<HashMap<u64, ThreadHandle>>,
}

/// A registered reader thread; dropping it (when the thread stops reading) deregisters it.
pub struct Reader {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        lock(&self.inner).remove(&self.id);
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, HashMap<u64, ThreadHandle>> {
    inner.readers.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReadStop {
    /// A new switch. Installs the process's interrupt signal handler the first time.
    pub fn new() -> std::io::Result<ReadStop> {
        static INSTALLED: OnceLock<Option<i32>> = OnceLock::new();
        let failed = INSTALLED.get_or_init(|| {
            sys::install_interrupt_handler().err().map(|e| e.raw_os_error().unwrap_or(0))
        });
        match failed {
            Some(errno) => Err(std::io::Error::from_raw_os_error(*errno)),
            None => Ok(ReadStop::default()),
        }
    }

    /// Registers the calling thread as a reader until the guard is dropped (by this thread).
    pub fn reader(&self) -> Reader {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner).insert(id, sys::current_thread());
        Reader { inner: self.inner.clone(), id }
    }

    /// Whether [`ReadStop::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Lets readers read again (after a stop, for a new set of readers).
    pub fn resume(&self) {
        self.inner.stopped.store(false, Ordering::Release);
    }

    /// Stops every reader: none reads again, and one blocked in a read is interrupted.
    /// Returns once every registered reader has dropped its guard (each finishes the request
    /// it is serving first).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        loop {
            {
                let readers = lock(&self.inner);
                if readers.is_empty() {
                    return;
                }
                for thread in readers.values() {
                    // The signal may land before the thread enters read(2) (then it is lost,
                    // hence the loop) or while it serves a request (harmless).
                    // SAFETY: a reader deregisters (under this lock, held here) before its
                    // thread exits, so every registered thread is alive.
                    #[allow(unsafe_code)]
                    let _ = unsafe { sys::interrupt(*thread) };
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// As [`crate::read_request`], but returns `Ok(None)` once `stop` is stopped (checked before
/// the read and when a read is interrupted) as well as when the connection is gone.
pub fn read_request_stoppable(
    dev: BorrowedFd<'_>,
    buf: &mut [u8],
    stop: &ReadStop,
) -> Result<Option<usize>> {
    crate::device::read_until(dev, buf, || stop.is_stopped())
}
