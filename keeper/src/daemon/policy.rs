//! Checks and teardown: fd types, liveness of a server, whether the mount at an entry's
//! mountpoint really is its connection, abort and detach.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::FileType;

use super::registry::Entry;

/// `/dev/fuse` is character device 10:229.
const FUSE_MAJOR: u32 = 10;
const FUSE_MINOR: u32 = 229;

/// `statx` of `fd` itself with `AT_STATX_DONT_SYNC`: a file on a FUSE mount is answered from
/// the kernel's cache (or refused), never with a GETATTR that a stalled server would not answer.
fn statx_cached(fd: BorrowedFd<'_>, mask: rustix::fs::StatxFlags) -> Option<rustix::fs::Statx> {
    use rustix::fs::AtFlags;
    rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC, mask).ok()
}

/// True if `fd` is an open `/dev/fuse` (char 10:229). Never waits for a FUSE server.
pub fn is_fuse_device(fd: BorrowedFd<'_>) -> bool {
    statx_cached(fd, rustix::fs::StatxFlags::TYPE).is_some_and(|st| {
        FileType::from_raw_mode(st.stx_mode.into()) == FileType::CharacterDevice
            && st.stx_rdev_major == FUSE_MAJOR
            && st.stx_rdev_minor == FUSE_MINOR
    })
}

/// True if `fd` is a memfd (or other shmem file) sealed against shrinking: what a state store
/// is (`fuse_recovery::store`). A store another holder could shrink would kill the server that
/// maps it with SIGBUS; `F_GET_SEALS` answers only for shmem files, without touching any
/// filesystem, so a file on a stalled FUSE mount is refused without waiting.
pub fn is_sealed_memfd(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(rustix::fs::SealFlags::SHRINK))
}

/// Bytes of memory `fd` holds (allocated blocks, not its size: a state store is a large
/// sparse memfd). For the memfds the keeper checked ([`is_sealed_memfd`]) `fstat` never waits;
/// 0 if it fails.
pub fn allocated_bytes(fd: BorrowedFd<'_>) -> u64 {
    rustix::fs::fstat(fd).map_or(0, |st| u64::try_from(st.st_blocks).unwrap_or(0) * 512)
}

/// True if closing `fd` cannot wait for anybody: a `/dev/fuse` device (its release sends no
/// request) or a shmem file such as a memfd (`F_GET_SEALS` works only there; no flush). Any
/// other fd, a file on a FUSE mount in particular (close sends FLUSH and waits), is closed on
/// a closer thread.
pub fn closes_at_once(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok() || is_fuse_device(fd)
}

/// True while the process behind `pidfd` has not exited (a pidfd polls readable at exit).
pub fn is_alive(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(0) => true,
        Ok(_) => false,
        // Cannot tell: do not declare a live server dead.
        Err(_) => true,
    }
}

/// True if two pidfds name the same process: same pid, and (where pidfds have per-process
/// inodes, Linux >= 6.9) the same inode.
pub fn same_process(a: (u32, BorrowedFd<'_>), b: (u32, BorrowedFd<'_>)) -> bool {
    if a.0 != b.0 {
        return false;
    }
    match (rustix::fs::fstat(a.1), rustix::fs::fstat(b.1)) {
        (Ok(x), Ok(y)) => x.st_ino == y.st_ino && x.st_dev == y.st_dev,
        _ => false,
    }
}

/// True if `path` is absolute and normal: it starts with `/`, and is made of non-empty
/// components none of which is `.` or `..` (so no `//` and no trailing slash; `/` itself is
/// not a mountpoint anyone registers). Such a path names the same place as text (mountinfo) and
/// as a path walk, as long as no component is a symlink ([`open_mount_root`] checks that).
pub fn is_normal_absolute(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else { return false };
    !rest.is_empty() && rest.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// Why [`open_mount_root`] gave up.
#[derive(Debug)]
pub enum Walk {
    /// A component is a symlink.
    Symlink(PathBuf),
    /// Resolving further would look a name up inside a FUSE mount (at this prefix), whose server
    /// may never answer: not done.
    IntoFuse(PathBuf),
    /// Not absolute and normal ([`is_normal_absolute`]).
    NotNormal,
    /// Anything else (a component is missing, ...).
    Failed(std::io::Error),
}

impl std::fmt::Display for Walk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Walk::Symlink(p) => write!(f, "{p:?} is a symlink"),
            Walk::IntoFuse(p) => write!(f, "{p:?} is inside a FUSE mount: not resolved"),
            Walk::NotNormal => {
                f.write_str("not an absolute path without ., .. or empty components")
            }
            Walk::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// An `O_PATH` fd on what `path` names, opened one component at a time with `openat2`
/// (`RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: a symlink anywhere is an error, never
/// followed) and never looking a name up in a directory that is on a FUSE filesystem (per
/// `mounts`, found by the directory's mount id from `statx` with `AT_STATX_DONT_SYNC` and an
/// empty mask, which FUSE answers without a request): a lookup there would wait for a server
/// that may be stalled or gone. The last component may be a FUSE mount's root: reaching it
/// crosses the mount without a request, and an `O_PATH` open sends none either.
pub fn open_mount_root(
    path: &Path,
    mounts: &[fuse_transport::MountInfoEntry],
) -> Result<OwnedFd, Walk> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    if !is_normal_absolute(path.as_os_str().as_bytes()) {
        return Err(Walk::NotNormal);
    }
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut dir = rustix::fs::open("/", flags | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| Walk::Failed(e.into()))?;
    let mut prefix = PathBuf::from("/");
    for name in path.components().skip(1) {
        let on_fuse = mount_of(dir.as_fd())
            .is_none_or(|(id, _)| mounts.iter().any(|m| m.mount_id == id && m.is_fuse()));
        if on_fuse {
            return Err(Walk::IntoFuse(prefix));
        }
        prefix.push(name);
        dir = match rustix::fs::openat2(&dir, name.as_os_str(), flags, Mode::empty(), resolve) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP) => return Err(Walk::Symlink(prefix)),
            Err(e) => return Err(Walk::Failed(e.into())),
        };
    }
    Ok(dir)
}

/// The mount id (mountinfo's first field) of the mount `fd` is on and the device of its
/// filesystem (`MKDEV(major, minor)` as mountinfo shows it), from one `statx` with an empty
/// mask and `AT_STATX_DONT_SYNC` ([`statx_cached`]): no FUSE request, even on a stalled mount.
fn mount_of(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let st = statx_cached(fd, rustix::fs::StatxFlags::empty())?;
    let has_mnt_id = st.stx_mask & rustix::fs::StatxFlags::MNT_ID.bits() != 0;
    let mount_id = has_mnt_id.then(|| u32::try_from(st.stx_mnt_id).ok()).flatten()?;
    Some((mount_id, (st.stx_dev_major << 20) | st.stx_dev_minor))
}

/// An `O_PATH` fd on the root of FUSE connection `conn_id`'s mount at `mountpoint`, mounted for
/// `owner_uid` (`user_id=` option) unless the owner is root, else why not. The top mount at
/// `mountpoint` in this process's mountinfo (compared as text: the path is normal) must be that
/// connection, and the fd, opened without following symlinks ([`open_mount_root`]), must be on
/// that very mount (same mount id, device minor = `conn_id`). The keeper acts on a mount only
/// through this fd: a registrant cannot make it abort or unmount somebody else's connection by
/// naming it, nor by a symlink or `..` that mountinfo's text does not show.
pub fn verified_mount(
    mountpoint: &Path,
    conn_id: u32,
    owner_uid: u32,
) -> Result<(OwnedFd, fuse_transport::MountInfoEntry), String> {
    let mounts = fuse_transport::read_mountinfo().map_err(|e| e.to_string())?;
    let m = fuse_transport::find_top_mount(&mounts, mountpoint)
        .ok_or("nothing is mounted there (per mountinfo)")?;
    let user_ok =
        owner_uid == 0 || m.super_options.split(',').any(|o| o == format!("user_id={owner_uid}"));
    if !m.is_fuse() || m.kernel_dev() != conn_id || !user_ok {
        return Err(format!(
            "the mount there is not this connection ({} {}:{}, {})",
            m.fstype, m.major, m.minor, m.super_options
        ));
    }
    let fd = open_mount_root(mountpoint, &mounts).map_err(|e| e.to_string())?;
    if mount_of(fd.as_fd()) != Some((m.mount_id, conn_id)) {
        return Err("the path does not lead to the mount mountinfo shows there".into());
    }
    Ok((fd, m.clone()))
}

/// Detach the mount whose root `fd` is (`umount2("/proc/self/fd/N", MNT_DETACH)`: the magic
/// link leads to the fd's own mount, with no path lookup by name). Nothing mounted there any
/// more (EINVAL) is success.
fn unmount_fd(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rustix::mount::unmount(path.as_str(), rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Tear down what `entry` holds: if its mount is really its connection ([`verified_mount`]),
/// abort the connection through fusectl (when `abort`) and detach the mount through the fd
/// that was verified. The caller then drops the entry, closing its fds. Failures are logged,
/// never fatal.
pub fn teardown(entry: &Entry, abort: bool, reason: &str) {
    let (tag, uid, conn) = (&entry.tag, entry.owner_uid, entry.conn_id);
    let mountpoint = &entry.mountpoint;
    let fd = match verified_mount(mountpoint, conn, uid) {
        Ok((fd, _)) => fd,
        Err(why) => {
            tracing::info!(
                tag = %crate::text::escape(tag),
                uid, conn, mountpoint = ?mountpoint, reason,
                "not unmounting ({why}): only dropping the fds"
            );
            return;
        }
    };
    if abort && let Err(e) = fuse_transport::abort_connection(conn) {
        tracing::warn!(
            tag = %crate::text::escape(tag), uid, conn, "abort through fusectl failed: {e}"
        );
    }
    if let Err(e) = unmount_fd(fd.as_fd()) {
        tracing::warn!(
            tag = %crate::text::escape(tag), uid, mountpoint = ?mountpoint, "detach failed: {e}"
        );
    }
    tracing::info!(
        tag = %crate::text::escape(tag),
        uid, conn, mountpoint = ?mountpoint, abort, reason,
        "connection torn down"
    );
}

/// The FUSE mount at `mountpoint` that the keeper does not hold, per mountinfo alone (text
/// lookup, nothing is resolved): `None` if the top mount there is not FUSE or nothing is.
pub fn unknown_fuse_mount(mountpoint: &Path) -> Option<fuse_transport::MountInfoEntry> {
    let mounts = fuse_transport::read_mountinfo().ok()?;
    fuse_transport::find_top_mount(&mounts, mountpoint).filter(|m| m.is_fuse()).cloned()
}

/// Abort and detach the FUSE mount `m` at `mountpoint` that the keeper does not hold (root's
/// UMOUNT of an unknown target), through an fd verified as [`verified_mount`] does.
pub fn teardown_unknown(
    mountpoint: &Path,
    m: &fuse_transport::MountInfoEntry,
) -> Result<(), String> {
    let (fd, _) = verified_mount(mountpoint, m.kernel_dev(), 0)?;
    fuse_transport::abort_connection(m.kernel_dev()).map_err(|e| e.to_string())?;
    unmount_fd(fd.as_fd()).map_err(|e| format!("detach failed: {e}"))
}

/// The keeper's copy of an fd, to send (closed after sending).
pub fn dup(fd: impl AsFd) -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

/// `uid` as the process `pid` sees it, translated into the keeper's user namespace through
/// `/proc/PID/uid_map` (which the kernel shows relative to the reader's namespace). A server
/// in a container names its rescue uid in its own namespace; SO_PEERCRED shows the keeper
/// uids in the keeper's, so the registry must hold the keeper's view. Identity when the
/// process shares the keeper's user namespace, is outside its pid namespace (pid 0) or has
/// exited; an error if `uid` is not mapped.
pub fn uid_in_keeper_ns(pid: u32, uid: u32) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    // A registrant that has exited (its REGISTER read after it died) leaves nothing to
    // translate through: its uid is taken as given.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    if pid == 0 {
        return Ok(uid);
    }
    match ns(&format!("/proc/{pid}/ns/user")) {
        Ok(theirs) if theirs == ns("/proc/self/ns/user")? => return Ok(uid),
        Ok(_) => {}
        Err(e) if gone(&e) => return Ok(uid),
        Err(e) => return Err(e),
    }
    let map = match std::fs::read_to_string(format!("/proc/{pid}/uid_map")) {
        Ok(map) => map,
        Err(e) if gone(&e) => return Ok(uid),
        Err(e) => return Err(e),
    };
    map_id(&map, uid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("uid {uid} of pid {pid} has no mapping in the keeper's user namespace"),
        )
    })
}

/// Maps `id` through a uid_map/gid_map text: lines "inside outside count".
fn map_id(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|w| w.parse::<u64>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        let id = u64::from(id);
        (id >= inside && id - inside < count)
            .then(|| u32::try_from(outside + (id - inside)).ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::map_id;

    #[test]
    fn ids_map_through_the_lines_that_cover_them() {
        let map = "         0      65534          1\n      1000     100000      65536\n";
        assert_eq!(map_id(map, 0), Some(65534));
        assert_eq!(map_id(map, 1000), Some(100000));
        assert_eq!(map_id(map, 1001), Some(100001));
        assert_eq!(map_id(map, 500), None, "between the ranges");
        assert_eq!(map_id(map, 66536), None, "past the end");
        assert_eq!(map_id("0 0 4294967295\n", 7), Some(7), "the initial namespace");
        assert_eq!(map_id("garbage\n", 0), None);
    }
}
