//! The shared mapping of the store's memfd: the only code here that touches raw memory.
//!
//! Every access is bounds-checked against the mapping. Words that change after a record is
//! published are only ever accessed as `AtomicU64`; bytes are written only before the record
//! is published and only read (copied out) after.

use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// A read-write `MAP_SHARED` mapping of a whole file.
#[derive(Debug)]
pub(crate) struct SharedMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all mutation goes through atomics or through
// `write_bytes`, whose callers own the bytes they write (a slot not yet published).
unsafe impl Send for SharedMap {}
// SAFETY: as above: concurrent access is to atomics, or to disjoint unpublished slots.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `fd` shared and read-write.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> std::io::Result<SharedMap> {
        if len == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty store"));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses aliases no Rust object.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd.as_fd(),
                0,
            )
        }?;
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(SharedMap { base, len })
    }

    fn check(&self, offset: usize, len: usize) {
        let end = offset.checked_add(len).expect("offset overflow");
        assert!(end <= self.len, "store access {offset}+{len} beyond {}", self.len);
    }

    /// The 8-byte aligned word at `offset`, as an atomic.
    pub(crate) fn word(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8);
        assert_eq!(offset % 8, 0, "unaligned store word");
        // SAFETY: in bounds (checked), 8-byte aligned (checked; the base is page aligned),
        // and this memory is only ever accessed atomically as a word at this offset.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    /// Copies `src` into the store at `offset`.
    pub(crate) fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: in bounds (checked); the destination is a byte range no other thread reads
        // or writes now (an unpublished slot or header field, by the callers' protocol), and
        // it cannot overlap `src`, which is ordinary process memory.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(offset), src.len())
        }
    }

    /// Copies bytes at `offset` out of the store into `dst`.
    pub(crate) fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        // SAFETY: in bounds (checked); the source bytes are published and no longer written.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference into it outlives
        // `self` (every accessor borrows `self`).
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}
