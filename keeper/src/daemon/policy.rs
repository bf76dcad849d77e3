//! Checks and teardown: fd types, liveness of a server, whether the mount at an entry's
//! mountpoint really is its connection, abort and detach.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::FileType;

use super::registry::Entry;

/// `/dev/fuse` is character device 10:229.
const FUSE_MAJOR: u32 = 10;
const FUSE_MINOR: u32 = 229;

/// True if `fd` is an open `/dev/fuse` (char 10:229).
pub fn is_fuse_device(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
            && rustix::fs::major(st.st_rdev) == FUSE_MAJOR
            && rustix::fs::minor(st.st_rdev) == FUSE_MINOR
    })
}

/// True if `fd` is a regular file (memfds are).
pub fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
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

/// True if the mount at `mountpoint` (per this process's mountinfo, without touching it) is FUSE
/// connection `conn_id`, mounted for `owner_uid` (`user_id=` option) unless the owner is root.
/// The keeper acts on a mount only then: a registrant cannot make it abort or unmount somebody
/// else's connection by naming it.
pub fn mount_matches(mountpoint: &Path, conn_id: u32, owner_uid: u32) -> bool {
    let Ok(Some(m)) = fuse_transport::mount_entry(mountpoint) else {
        return false;
    };
    let user_ok =
        owner_uid == 0 || m.super_options.split(',').any(|o| o == format!("user_id={owner_uid}"));
    m.is_fuse() && m.kernel_dev() == conn_id && user_ok
}

/// Tear down what `entry` holds: if its mount is really its connection, abort the connection
/// through fusectl (when `abort`) and detach the mount. The caller then drops the entry, closing
/// its fds. Failures are logged, never fatal.
pub fn teardown(entry: &Entry, abort: bool, reason: &str) {
    let (tag, uid, conn) = (&entry.tag, entry.owner_uid, entry.conn_id);
    let mountpoint = &entry.mountpoint;
    if !mount_matches(mountpoint, conn, uid) {
        tracing::info!(
            tag = %crate::text::escape(tag), uid, conn, mountpoint = ?mountpoint, reason,
            "mount is not this connection (or gone): only dropping the fds"
        );
        return;
    }
    if abort && let Err(e) = fuse_transport::abort_connection(conn) {
        tracing::warn!(
            tag = %crate::text::escape(tag), uid, conn, "abort through fusectl failed: {e}",
        );
    }
    if let Err(e) = fuse_transport::unmount_detached(mountpoint) {
        tracing::warn!(
            tag = %crate::text::escape(tag), uid, mountpoint = ?mountpoint, "detach failed: {e}",
        );
    }
    tracing::info!(
        tag = %crate::text::escape(tag), uid, conn, mountpoint = ?mountpoint, abort, reason,
        "connection torn down"
    );
}

/// Abort and detach a FUSE mount the keeper does not hold (root's UMOUNT of an unknown target).
pub fn teardown_unknown(mountpoint: &Path) -> Result<(), fuse_transport::Error> {
    let conn = fuse_transport::connection_id(mountpoint)?;
    fuse_transport::abort_connection(conn)?;
    fuse_transport::unmount_detached(mountpoint)
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
