//! File handles: `name_to_handle_at` and `open_by_handle_at`, which rustix lacks.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Largest file handle the kernel hands out (MAX_HANDLE_SZ).
pub const MAX_HANDLE: usize = 128;

/// A file handle: stable identity of an inode that survives the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHandle {
    pub kind: i32,
    pub len: u32,
    pub bytes: [u8; MAX_HANDLE],
}

#[repr(C)]
struct RawHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE],
}

/// The file handle of the inode `fd` (an `O_PATH` fd) refers to.
pub fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    let mut raw =
        RawHandle { handle_bytes: MAX_HANDLE as u32, handle_type: 0, f_handle: [0; MAX_HANDLE] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a file_handle header followed by MAX_HANDLE bytes, as handle_bytes
    // says; the path is a valid empty C string; `mount_id` is a valid int to write.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            (&raw mut raw).cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if raw.handle_bytes as usize > MAX_HANDLE {
        return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    Ok(FileHandle { kind: raw.handle_type, len: raw.handle_bytes, bytes: raw.f_handle })
}

/// Opens the inode `handle` names, on the filesystem `mount_fd` is on. Needs
/// CAP_DAC_READ_SEARCH.
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: i32,
) -> io::Result<OwnedFd> {
    if handle.len as usize > MAX_HANDLE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut raw =
        RawHandle { handle_bytes: handle.len, handle_type: handle.kind, f_handle: handle.bytes };
    // SAFETY: `raw` is a complete file_handle with handle_bytes <= its buffer (checked).
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            (&raw mut raw).cast::<libc::file_handle>(),
            flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_by_handle_at returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
