//! Syscalls on `/dev/fuse` fds: open, clone, read a request, write a reply, passthrough backing
//! files.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::{Error, Result, sys};

/// Path of the FUSE device.
pub const DEVICE_PATH: &str = "/dev/fuse";

/// `FUSE_MIN_READ_BUFFER` from fuse_kernel.h: the kernel refuses reads into smaller buffers.
pub use fuse_abi::FUSE_MIN_READ_BUFFER;

/// What became of a reply written with [`write_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The kernel took the whole reply.
    Written,
    /// ENOENT: the kernel no longer waits for this unique (the request was interrupted or
    /// aborted, or the unique is wrong, e.g. a resent request answered without bit 63).
    Gone,
    /// ENODEV/ECONNABORTED: the connection is gone.
    Disconnected,
}

/// `open("/dev/fuse", O_RDWR | O_CLOEXEC)`.
pub fn open_device() -> Result<OwnedFd> {
    rustix::fs::open(DEVICE_PATH, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::Open { path: PathBuf::from(DEVICE_PATH), error: e.into() })
}

/// Open a new `/dev/fuse` fd attached to the same connection as `master`
/// (`FUSE_DEV_IOC_CLONE`). The clone has its own queue of requests read but not answered; see
/// DESIGN.md kernel fact 1 about keeping it in custody before the first read.
pub fn clone_device(master: BorrowedFd<'_>) -> Result<OwnedFd> {
    let clone = open_device()?;
    sys::clone_ioctl(clone.as_fd(), master).map_err(Error::Clone)?;
    Ok(clone)
}

/// Read one request into `buf`.
///
/// `buf` must be at least [`FUSE_MIN_READ_BUFFER`] bytes and large enough for the negotiated
/// `max_write` plus headers (the kernel fails the read with EINVAL otherwise).
///
/// Returns `Ok(Some(n))` with the request's length, `Ok(None)` when the connection is gone
/// (ENODEV after unmount, ECONNABORTED after an abort through fusectl). EINTR and ENOENT (the
/// request was interrupted before it was read) are retried. EAGAIN, which only a nonblocking fd
/// returns, is an error ([`Error::is_would_block`]).
pub fn read_request(dev: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>> {
    read_until(dev, buf, || false)
}

/// [`read_request`], returning `Ok(None)` as soon as `stopped()` says so: it is asked before
/// every read and after every interrupted one.
pub(crate) fn read_until(
    dev: BorrowedFd<'_>,
    buf: &mut [u8],
    stopped: impl Fn() -> bool,
) -> Result<Option<usize>> {
    if buf.len() < FUSE_MIN_READ_BUFFER {
        return Err(Error::BufferTooSmall { len: buf.len(), min: FUSE_MIN_READ_BUFFER });
    }
    loop {
        if stopped() {
            return Ok(None);
        }
        match rustix::io::read(dev, &mut *buf) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR | Errno::NOENT) => continue,
            Err(Errno::NODEV | Errno::CONNABORTED) => return Ok(None),
            Err(e) => return Err(Error::Read(e.into())),
        }
    }
}

/// Write one reply (or notification) gathered from `iov` with a single `writev`.
///
/// ENOENT is [`WriteOutcome::Gone`], ENODEV/ECONNABORTED [`WriteOutcome::Disconnected`]; EINTR is
/// retried (nothing was written); a short write is [`Error::ShortWrite`].
pub fn write_reply(dev: BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> Result<WriteOutcome> {
    let len: usize = iov.iter().map(|s| s.len()).sum();
    loop {
        match rustix::io::writev(dev, iov) {
            Ok(written) if written == len => return Ok(WriteOutcome::Written),
            Ok(written) => return Err(Error::ShortWrite { written, len }),
            Err(Errno::INTR) => continue,
            Err(Errno::NOENT) => return Ok(WriteOutcome::Gone),
            Err(Errno::NODEV | Errno::CONNABORTED) => return Ok(WriteOutcome::Disconnected),
            Err(e) => {
                return Err(Error::Write { len, error: io::Error::from(e) });
            }
        }
    }
}

/// Register `file` as a passthrough backing file of the connection
/// (`FUSE_DEV_IOC_BACKING_OPEN`, flags 0). Needs CAP_SYS_ADMIN and a connection initialized with
/// `FUSE_PASSTHROUGH`. Returns the backing id (> 0) to put in `fuse_open_out.backing_id`.
pub fn backing_open(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> Result<u32> {
    let id = sys::backing_open_ioctl(dev, file).map_err(Error::BackingOpen)?;
    match u32::try_from(id) {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(Error::InvalidBackingId(id)),
    }
}

/// Release a backing id obtained from [`backing_open`] (`FUSE_DEV_IOC_BACKING_CLOSE`).
pub fn backing_close(dev: BorrowedFd<'_>, backing_id: u32) -> Result<()> {
    sys::backing_close_ioctl(dev, backing_id)
        .map_err(|error| Error::BackingClose { id: backing_id, error })
}

/// A zeroed buffer for requests or replies with every page already faulted in, so that the
/// kernel never faults a page of it while copying a request in or a reply out: with SIGKILL
/// pending such a fault fails the copy and the kernel ends that request with EIO (DESIGN.md,
/// kernel fact 12). `vec![0; n]` alone would map untouched zero pages. Base pages; see
/// [`prefaulted_buffer_of`].
pub fn prefaulted_buffer(len: usize) -> RequestBuffer {
    prefaulted_buffer_of(len, Pages::Base)
}

/// What a large buffer is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pages {
    /// The allocator's memory: 4 KiB pages.
    #[default]
    Base,
    /// A buffer of half a huge page (1 MiB) or more is a mapping of its own, rounded up to
    /// whole transparent huge pages (2 MiB) and asked to be made of them (`MADV_HUGEPAGE`;
    /// the kernel may still give base pages). A server's workers' buffers are most of its
    /// memory, and a process that dies frees a huge page at once but 4 KiB pages one by one:
    /// with base pages a SIGKILLed server is seen to exit (its pidfd, by the keeper) about 0.1
    /// ms later per MiB on a small VM, and that exit is on every recovery's path. The cost:
    /// a 1 MiB + 8 KiB request buffer takes 2 MiB.
    Huge,
}

/// [`prefaulted_buffer`], of `pages`.
pub fn prefaulted_buffer_of(len: usize, pages: Pages) -> RequestBuffer {
    let mut buf = zeroed_buffer(len, pages);
    let buf_slice: &mut [u8] = &mut buf;
    if crate::sys::populate_write(buf_slice).is_err() {
        for page in buf_slice.chunks_mut(4096) {
            // black_box: the store must happen although the page is known to be zero.
            page[0] = std::hint::black_box(0);
        }
    }
    // The partial pages at either end, which the populated range leaves out.
    if let Some(byte) = buf_slice.first_mut() {
        *byte = std::hint::black_box(0);
    }
    if let Some(byte) = buf_slice.last_mut() {
        *byte = std::hint::black_box(0);
    }
    buf
}

/// A zeroed buffer the server writes before the kernel reads it (READ data, replies): not
/// faulted in now. Of `pages` ([`Pages::Huge`]: its first use faults in a huge page at once).
pub fn zeroed_buffer(len: usize, pages: Pages) -> RequestBuffer {
    if pages == Pages::Huge
        && len >= crate::sys::HUGE_PAGE / 2
        && let Ok(map) = crate::sys::HugeMapping::new(len)
    {
        return RequestBuffer { len, mem: Memory::Huge(map) };
    }
    RequestBuffer { len, mem: Memory::Heap(vec![0u8; len]) }
}

/// What [`prefaulted_buffer`] and [`zeroed_buffer`] return: `len` bytes, used as a `[u8]`.
#[derive(Debug)]
pub struct RequestBuffer {
    len: usize,
    mem: Memory,
}

impl RequestBuffer {
    /// Bytes it could hold: its length at most, after [`BufferPool::take`].
    fn capacity(&self) -> usize {
        match &self.mem {
            Memory::Heap(v) => v.len(),
            Memory::Huge(m) => m.as_slice().len(),
        }
    }
}

/// Request buffers made ahead of time ([`BufferPool::fill`]) for the workers of a session
/// that starts later: a hot standby makes them before it waits, so that taking a connection
/// over allocates and faults in nothing. Clones share the buffers.
#[derive(Debug, Clone, Default)]
pub struct BufferPool(std::sync::Arc<std::sync::Mutex<Vec<RequestBuffer>>>);

impl BufferPool {
    /// Makes `count` more buffers of `len` bytes of `pages` ([`prefaulted_buffer_of`]).
    pub fn fill(&self, count: usize, len: usize, pages: Pages) {
        let made: Vec<_> = (0..count).map(|_| prefaulted_buffer_of(len, pages)).collect();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(made);
    }

    /// A buffer of `len` bytes: one of the pool's that is large enough (zero but for what a
    /// session that used it wrote: none did, pooled buffers are never given back), else a new
    /// one of `pages` ([`prefaulted_buffer_of`]).
    pub fn take(&self, len: usize, pages: Pages) -> RequestBuffer {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match pool.iter().position(|b| b.capacity() >= len) {
            Some(i) => {
                let mut buf = pool.swap_remove(i);
                if let Memory::Heap(v) = &mut buf.mem {
                    v.truncate(len);
                }
                buf.len = len;
                buf
            }
            None => {
                drop(pool);
                prefaulted_buffer_of(len, pages)
            }
        }
    }

    /// Buffers in the pool.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True if the pool holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
enum Memory {
    Heap(Vec<u8>),
    Huge(crate::sys::HugeMapping),
}

impl std::ops::Deref for RequestBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.mem {
            Memory::Heap(v) => v,
            Memory::Huge(m) => &m.as_slice()[..self.len],
        }
    }
}

impl std::ops::DerefMut for RequestBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.mem {
            Memory::Heap(v) => v,
            Memory::Huge(m) => &mut m.as_mut_slice()[..self.len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_of_their_length_and_large_ones_are_huge_aligned_mappings() {
        for len in [0, 1, 4095, 65536, (1 << 20) + 8192, 3 << 20] {
            let huge = [prefaulted_buffer_of(len, Pages::Huge), zeroed_buffer(len, Pages::Huge)];
            let base = [prefaulted_buffer(len), zeroed_buffer(len, Pages::Base)];
            for buf in &base {
                assert!(matches!(buf.mem, Memory::Heap(_)), "{len}");
            }
            for mut buf in huge.into_iter().chain(base) {
                assert_eq!(buf.len(), len);
                assert!(buf.iter().all(|&b| b == 0));
                if len >= 1 << 20 && matches!(buf.mem, Memory::Huge(_)) {
                    assert_eq!(buf.as_ptr() as usize % crate::sys::HUGE_PAGE, 0);
                    assert_eq!(buf.capacity() % crate::sys::HUGE_PAGE, 0);
                }
                if let Some(last) = buf.last_mut() {
                    *last = 7;
                }
            }
        }
    }

    #[test]
    fn a_pool_gives_its_buffers_to_lengths_they_hold_then_makes_new_ones() {
        let pool = BufferPool::default();
        pool.fill(2, 1 << 20, Pages::Huge);
        assert_eq!(pool.len(), 2);
        let a = pool.take((1 << 20) - 100, Pages::Base);
        assert_eq!(a.len(), (1 << 20) - 100);
        assert_eq!(pool.len(), 1);
        let big = pool.take(4 << 20, Pages::Base);
        assert_eq!((big.len(), pool.len()), (4 << 20, 1), "too large for the pool: made anew");
        let b = pool.take(10, Pages::Base);
        assert_eq!((b.len(), pool.len()), (10, 0));
        assert!(pool.is_empty());
        assert_eq!(pool.clone().take(5, Pages::Huge).len(), 5);
    }
}
