//! The only module of this crate with `unsafe` code: the three `/dev/fuse` ioctls, keeping a
//! socket open across `exec` in a spawned `fusermount3`, populating request buffers, and the
//! signal that interrupts a worker's blocking read.
//!
//! Everything here is `pub(crate)` and typed: no caller can choose an ioctl number or an argument
//! type.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

use fuse_abi::{
    FUSE_DEV_IOC_BACKING_CLOSE, FUSE_DEV_IOC_BACKING_OPEN, FUSE_DEV_IOC_CLONE, fuse_backing_map,
};

/// The ABI's u32 ioctl number as rustix's platform `Opcode` type.
#[allow(clippy::unnecessary_cast)]
const fn op(number: u32) -> Opcode {
    number as Opcode
}

/// An ioctl whose argument is a pointer to a `T` the kernel reads, and whose result is the
/// syscall's return value. Private: only the typed wrappers below construct it.
struct PtrIoctl<'a, T> {
    opcode: Opcode,
    arg: &'a mut T,
}

// SAFETY: `as_ptr` returns a pointer to a live, exclusively borrowed `T` for the duration of the
// call; `output_from_ptr` does not dereference anything, it only returns the syscall's result.
// The opcode/`T` pairing is guaranteed by the private constructors (`clone_ioctl`,
// `backing_open_ioctl`, `backing_close_ioctl`), each using the argument type fuse_kernel.h
// declares for that ioctl.
unsafe impl<T> Ioctl for PtrIoctl<'_, T> {
    type Output = IoctlOutput;

    // The FUSE device ioctls only read their argument, but claiming mutation is the conservative
    // choice (it only affects which rustix backend entry point is used).
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        std::ptr::from_mut::<T>(self.arg).cast()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _extract_output: *mut core::ffi::c_void,
    ) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// `ioctl(new_dev, FUSE_DEV_IOC_CLONE, &master_fd)`.
/// Closes inherited fd `fd` (its close may wait for a FLUSH answer: call it from a thread
/// that can wait).
pub(crate) fn close_inherited(fd: i32) {
    // SAFETY: `fd` was inherited and no object of this process owns it (`close_fds_on`'s
    // caller opened nothing of its own on the mount yet), so nothing uses or closes it after.
    unsafe {
        libc::close(fd);
    }
}

pub(crate) fn clone_ioctl(new_dev: BorrowedFd<'_>, master: BorrowedFd<'_>) -> io::Result<()> {
    let mut master_fd: u32 =
        u32::try_from(master.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let req = PtrIoctl { opcode: op(FUSE_DEV_IOC_CLONE), arg: &mut master_fd };
    // SAFETY: FUSE_DEV_IOC_CLONE takes a pointer to a `uint32_t` holding the master's fd number;
    // `req.arg` points to such a u32, alive for the call.
    unsafe { rustix::ioctl::ioctl(new_dev, req) }?;
    Ok(())
}

/// `ioctl(dev, FUSE_DEV_IOC_BACKING_OPEN, &map)`: returns the backing id.
pub(crate) fn backing_open_ioctl(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> io::Result<i32> {
    let mut map = fuse_backing_map { fd: file.as_raw_fd(), flags: 0, padding: 0 };
    let req = PtrIoctl { opcode: op(FUSE_DEV_IOC_BACKING_OPEN), arg: &mut map };
    // SAFETY: FUSE_DEV_IOC_BACKING_OPEN takes a pointer to a `struct fuse_backing_map`, which
    // `fuse_backing_map` mirrors (`#[repr(C)]`, same fields); it is alive for the call. The fd in
    // it is borrowed, so it stays open during the call.
    let id = unsafe { rustix::ioctl::ioctl(dev, req) }?;
    Ok(id)
}

/// `ioctl(dev, FUSE_DEV_IOC_BACKING_CLOSE, &backing_id)`.
pub(crate) fn backing_close_ioctl(dev: BorrowedFd<'_>, backing_id: u32) -> io::Result<()> {
    let mut id = backing_id;
    let req = PtrIoctl { opcode: op(FUSE_DEV_IOC_BACKING_CLOSE), arg: &mut id };
    // SAFETY: FUSE_DEV_IOC_BACKING_CLOSE takes a pointer to a `uint32_t` backing id; `req.arg`
    // points to such a u32, alive for the call.
    unsafe { rustix::ioctl::ioctl(dev, req) }?;
    Ok(())
}

/// Arrange for `fd` (close-on-exec in this process) to be inherited by the program `cmd` runs:
/// the flag is cleared in the forked child only, so no other thread's children can inherit it.
///
/// The caller must keep `fd` open until `cmd.spawn()` has returned.
pub(crate) fn inherit_fd_in_child(cmd: &mut Command, fd: RawFd) {
    let clear_cloexec = move || -> io::Result<()> {
        // SAFETY: called in the forked child before exec; the caller keeps `fd` open across
        // `spawn()`, and the child is a copy of this process's fd table, so `fd` is open there.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        Ok(())
    };
    // SAFETY: the closure runs between fork and exec; it only makes the fcntl(F_SETFD) syscall
    // (async-signal-safe), does not allocate, lock or touch shared state.
    unsafe {
        cmd.pre_exec(clear_cloexec);
    }
}

/// Asks the kernel to fault in every whole page of `buf` for writing (MADV_POPULATE_WRITE):
/// one syscall instead of a page fault per page.
pub(crate) fn populate_write(buf: &mut [u8]) -> io::Result<()> {
    const PAGE: usize = 4096;
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + buf.len()) & !(PAGE - 1);
    if end <= first {
        return Ok(());
    }
    // SAFETY: [first, end) lies inside `buf`, which we borrow mutably, and is page aligned;
    // MADV_POPULATE_WRITE only faults pages in (their contents stay as they are) and never
    // changes the mapping.
    unsafe {
        rustix::mm::madvise(
            first as *mut core::ffi::c_void,
            end - first,
            rustix::mm::Advice::LinuxPopulateWrite,
        )
    }?;
    Ok(())
}

/// A thread that may be blocked in a read of `/dev/fuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThreadHandle(libc::pthread_t);

/// The calling thread.
pub(crate) fn current_thread() -> ThreadHandle {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    ThreadHandle(unsafe { libc::pthread_self() })
}

/// The signal that interrupts a blocking read (a real-time signal the C library does not use).
fn interrupt_signal() -> libc::c_int {
    // glibc keeps the first two real-time signals for itself; SIGRTMIN is above them.
    libc::SIGRTMIN() + 5
}

extern "C" fn on_interrupt(_: libc::c_int) {}

/// Installs a handler that does nothing for [`interrupt_signal`], without SA_RESTART: a
/// blocking read the signal lands in fails with EINTR instead of being restarted.
pub(crate) fn install_interrupt_handler() -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags) that we fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
    action.sa_flags = 0;
    // SAFETY: `action.sa_mask` is a valid sigset_t owned by us; sigemptyset only writes it.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: the handler is an async-signal-safe no-op that lives for the whole program;
    // `action` is fully initialized; the old action is not asked for.
    if unsafe { libc::sigaction(interrupt_signal(), &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends [`interrupt_signal`] to `thread`.
///
/// # Safety
///
/// `thread` must be a thread of this process that has not exited: the pthread_t of an exited
/// thread may name another thread, or freed memory.
pub(crate) unsafe fn interrupt(thread: ThreadHandle) -> io::Result<()> {
    // SAFETY: the caller guarantees `thread` is a live thread of this process.
    match unsafe { libc::pthread_kill(thread.0, interrupt_signal()) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_ioctl_numbers_match_rustix_encoding() {
        use rustix::ioctl::opcode;
        assert_eq!(op(FUSE_DEV_IOC_CLONE), opcode::read::<u32>(229, 0));
        assert_eq!(op(FUSE_DEV_IOC_BACKING_OPEN), opcode::write::<fuse_backing_map>(229, 1));
        assert_eq!(op(FUSE_DEV_IOC_BACKING_CLOSE), opcode::write::<u32>(229, 2));
    }
}

/// The size of a transparent huge page on x86-64 and arm64 (with 4 KiB base pages).
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// An anonymous private mapping of whole huge pages, aligned to [`HUGE_PAGE`], with
/// `MADV_HUGEPAGE` asked (the kernel may still give base pages). Unmapped when dropped.
#[derive(Debug)]
pub(crate) struct HugeMapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone (no other pointer to it escapes but the
// borrows `as_slice` and `as_mut_slice` hand out, tied to `&self` / `&mut self`).
unsafe impl Send for HugeMapping {}
// SAFETY: as above: shared access goes through `&self`, which only reads.
unsafe impl Sync for HugeMapping {}

impl HugeMapping {
    /// At least `len` bytes (rounded up to whole huge pages), zeroed.
    pub(crate) fn new(len: usize) -> io::Result<HugeMapping> {
        use rustix::mm::{Advice, MapFlags, ProtFlags};
        let len = len.max(1).next_multiple_of(HUGE_PAGE);
        let over = len + HUGE_PAGE;
        // SAFETY: a new anonymous mapping at an address the kernel chooses: it aliases nothing.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                over,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let start = (base as usize).next_multiple_of(HUGE_PAGE);
        let head = start - base as usize;
        let tail = over - head - len;
        // SAFETY: [base, start) and [start + len, base + over) are parts of the mapping just
        // made that nothing refers to; what stays is [start, start + len).
        unsafe {
            if head > 0 {
                rustix::mm::munmap(base, head)?;
            }
            if tail > 0 {
                rustix::mm::munmap((start + len) as *mut core::ffi::c_void, tail)?;
            }
        }
        // SAFETY: [start, start + len) is our mapping; MADV_HUGEPAGE changes only how the
        // kernel backs it.
        let _ = unsafe {
            rustix::mm::madvise(start as *mut core::ffi::c_void, len, Advice::LinuxHugepage)
        };
        let ptr = std::ptr::NonNull::new(start as *mut u8).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(HugeMapping { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is the start of `len` mapped, readable bytes that live as long as
        // `self`; anonymous memory is always initialized (zero until written).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugeMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`, no longer borrowed (we are dropped).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
