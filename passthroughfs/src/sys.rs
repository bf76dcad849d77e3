//! File handles (`name_to_handle_at`, `open_by_handle_at`) and `getxattrat`, which rustix
//! lacks.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// `getxattrat(2)` (Linux 6.13): 464 in every architecture's syscall table.
const SYS_GETXATTRAT: libc::c_long = 464;

/// `struct xattr_args` of getxattrat.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// `/proc/self/fd` of this process, opened once: a magic link of an `O_PATH` fd is then one
/// path component away, instead of four (`/proc`, `self`, its pid's `fd`, the number).
fn proc_fd_dir() -> Option<BorrowedFd<'static>> {
    static DIR: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let flags =
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        rustix::fs::open("/proc/self/fd", flags, rustix::fs::Mode::empty()).ok()
    })
    .as_ref()
    .map(|fd| fd.as_fd())
}

static NO_GETXATTRAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The extended attribute `name` of the inode `fd` (an `O_PATH` fd) refers to, into `buf`
/// (a size query when empty): `getxattrat(/proc/self/fd, "N")`, which follows the magic link
/// `N` to the inode. `None` when that is unavailable (a kernel before 6.13, no /proc): use
/// the `/proc/self/fd/N` path. (getxattrat on the `O_PATH` fd itself with `AT_EMPTY_PATH` is
/// refused, EBADF, as fgetxattr is.)
pub fn getxattr_fd(
    fd: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    buf: &mut [u8],
) -> Option<io::Result<usize>> {
    use std::sync::atomic::Ordering;
    if NO_GETXATTRAT.load(Ordering::Relaxed) {
        return None;
    }
    let dir = proc_fd_dir()?;
    let mut number = [0u8; 16];
    let digits = fd.as_raw_fd().to_string();
    number[..digits.len()].copy_from_slice(digits.as_bytes());
    let mut args = XattrArgs {
        value: if buf.is_empty() { 0 } else { buf.as_mut_ptr() as u64 },
        size: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        flags: 0,
    };
    // SAFETY: `number` is a NUL-terminated decimal (at most 11 digits in 16 bytes), `name` a
    // C string; `args` points to `buf`, writable for `args.size` bytes (or is null with size
    // 0, a size query), and its own size is the last argument. The kernel reads `args` and
    // writes at most `args.size` bytes of `buf`.
    let rc = unsafe {
        libc::syscall(
            SYS_GETXATTRAT,
            dir.as_raw_fd(),
            number.as_ptr(),
            0 as libc::c_uint,
            name.as_ptr(),
            &raw mut args,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    if rc >= 0 {
        return Some(Ok(rc as usize));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOSYS) {
        NO_GETXATTRAT.store(true, Ordering::Relaxed);
        return None;
    }
    Some(Err(err))
}

/// Gives the calling thread a filesystem context of its own (`unshare(CLONE_FS)`): its own
/// umask (and current and root directory, copies of the process's), so that a umask it sets
/// is not every worker's.
pub(crate) fn unshare_fs() -> io::Result<()> {
    // SAFETY: only CLONE_FS: the thread's cwd, root and umask become its own copies. No fd
    // table is unshared (the hazard `unshare_unsafe` warns of is CLONE_FILES), and nothing in
    // this process relies on threads sharing a cwd or umask.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }?;
    Ok(())
}

/// `mount_setattr(2)` (Linux 5.12): 442 in every architecture's syscall table.
const SYS_MOUNT_SETATTR: libc::c_long = 442;

/// `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR__ATIME`: the access-time policy bits, cleared before one is set.
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;

/// A detached copy of the mount at `path`, rooted there (`open_tree(OPEN_TREE_CLONE)`, as a
/// bind mount that is attached nowhere), with the access-time policy `atime`
/// (`MOUNT_ATTR_RELATIME`, `_NOATIME` or `_STRICTATIME`) and `MOUNT_ATTR_NODIRATIME` if
/// `nodiratime`. Files opened under it follow that policy whatever the original mount's.
/// Needs CAP_SYS_ADMIN.
pub fn clone_with_atime(
    path: &std::path::Path,
    atime: u64,
    nodiratime: bool,
) -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    let tree = rustix::mount::open_tree(rustix::fs::CWD, path, flags)?;
    let nodiratime_bit = 0x80;
    let mut attr = MountAttr {
        attr_set: atime | if nodiratime { nodiratime_bit } else { 0 },
        attr_clr: MOUNT_ATTR_ATIME_MASK | nodiratime_bit,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `tree` is an open fd, the path a valid empty C string, `attr` a complete
    // mount_attr whose size is the last argument; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &raw mut attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// `MOUNT_ATTR_RELATIME`, `MOUNT_ATTR_NOATIME`, `MOUNT_ATTR_STRICTATIME`.
pub const MOUNT_ATTR_RELATIME: u64 = 0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
