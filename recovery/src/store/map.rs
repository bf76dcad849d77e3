//! The shared mapping of the store's memfd: the only code here that touches raw memory.
//!
//! Every access is bounds-checked against the mapping, and atomic: words as `AtomicU64`, bytes
//! copied a word at a time where aligned and as `AtomicU8` elsewhere (relaxed; a record's
//! bytes are written before the Release store that publishes it and read after the Acquire
//! load that finds it). So no access is a data race
//! whoever else writes the memory (another thread, another process mapping the same memfd,
//! a hostile store), and no caller has a precondition to keep.

use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// A read-write `MAP_SHARED` mapping of a whole file.
#[derive(Debug)]
pub(crate) struct SharedMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, owned by this value until it is dropped.
unsafe impl Send for SharedMap {}
// SAFETY: every access to the memory is atomic (`word`, `byte`).
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
        // and this memory is only ever accessed through atomics (this word, or `byte`).
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    /// The byte at `offset`, as an atomic.
    fn byte(&self, offset: usize) -> &AtomicU8 {
        self.check(offset, 1);
        // SAFETY: in bounds (checked); any address is aligned for a byte; this memory is
        // only ever accessed through atomics (this byte, or `word`).
        unsafe { AtomicU8::from_ptr(self.base.as_ptr().add(offset)) }
    }

    /// Copies `src` into the store at `offset` (relaxed atomic stores: a word at a time where
    /// the store offset is 8-byte aligned, else a byte).
    pub(crate) fn write_bytes(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        let mut i = 0;
        while i < src.len() {
            let at = offset + i;
            if at.is_multiple_of(8) && src.len() - i >= 8 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&src[i..i + 8]);
                self.word(at).store(u64::from_ne_bytes(word), Ordering::Relaxed);
                i += 8;
            } else {
                self.byte(at).store(src[i], Ordering::Relaxed);
                i += 1;
            }
        }
    }

    /// Copies bytes at `offset` out of the store into `dst` (relaxed atomic loads, as
    /// `write_bytes` stores them).
    pub(crate) fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        let mut i = 0;
        while i < dst.len() {
            let at = offset + i;
            if at.is_multiple_of(8) && dst.len() - i >= 8 {
                let word = self.word(at).load(Ordering::Relaxed);
                dst[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
            } else {
                dst[i] = self.byte(at).load(Ordering::Relaxed);
                i += 1;
            }
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
