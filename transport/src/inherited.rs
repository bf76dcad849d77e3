//! The fds a server inherited on its own mount ([`close_fds_on`]).

use std::collections::HashSet;
use std::path::Path;

use crate::mountinfo::{MountInfoEntry, find_top_mount, read_mountinfo};

/// The ids of the mounts (in `entries`, this process's mountinfo) of the FUSE file system
/// mounted at `mountpoint` (absolute): the topmost FUSE mount there and every bind mount of
/// the same file system, found by its device number.
pub(crate) fn mounts_of(entries: &[MountInfoEntry], mountpoint: &Path) -> HashSet<u64> {
    let Some(top) = find_top_mount(entries, mountpoint).filter(|e| e.is_fuse()) else {
        return HashSet::new();
    };
    entries
        .iter()
        .filter(|e| e.is_fuse() && (e.major, e.minor) == (top.major, top.minor))
        .map(|e| u64::from(e.mount_id))
        .collect()
}

/// The `mnt_id` line of an fd's `/proc/self/fdinfo` text.
fn fdinfo_mount(fdinfo: &str) -> Option<u64> {
    fdinfo.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok())
}

/// The mount id of the file at `fd` (None: not open).
fn fd_mount(fd: i32) -> Option<u64> {
    fdinfo_mount(&std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?)
}

/// Closes every fd above 2 this process inherited on the FUSE file system mounted at
/// `mountpoint` (absolute, as [`crate::resolve_mountpoint`] makes it): for a server of that
/// mount started by a process holding files on it (a shell re-attaching a crashed server,
/// a wrapper restarted by a program using its mount). Kept, such an fd pins the mount to its
/// own server: a lazy unmount never ends the connection while the server lives, and the
/// server never sees the end it waits for. A child the server starts would inherit it too,
/// and a server's exit closes its fds: closing a file on a FUSE mount may send FLUSH and wait
/// for its answer, which a dying server never gives. (Fds 0 to 2 on the mount are not
/// supported: the Rust runtime polls them before `main`, which waits for the server this
/// process is to be.) Call it before the process opens anything of its own on the mount.
///
/// Each fd is closed from a thread of its own, since the close waits for its FLUSH, which
/// only this process will answer once it serves; this returns once every such fd has left
/// the fd table, which `close` does before it flushes. Returns the fds closed.
pub fn close_fds_on(mountpoint: &Path) -> Vec<i32> {
    let ours = mounts_of(&read_mountinfo().unwrap_or_default(), mountpoint);
    if ours.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let fds: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    let mut closed = Vec::new();
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        let Some(mount) = fd_mount(fd).filter(|id| ours.contains(id)) else {
            continue;
        };
        let close = move || crate::sys::close_inherited(fd);
        if std::thread::Builder::new().name("close-inherited".into()).spawn(close).is_err() {
            continue;
        }
        while fd_mount(fd) == Some(mount) {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        closed.push(fd);
    }
    closed
}

/// Whether this process's working directory is on the FUSE file system mounted at
/// `mountpoint` (absolute): a server started from a shell in its own mount, which would pin
/// the mount as an inherited fd does ([`close_fds_on`]). Asks nothing of the file system:
/// the directory is opened `O_PATH` (no FUSE request for ".") and its mount read from
/// `/proc/self/fdinfo`.
pub fn cwd_on(mountpoint: &Path) -> bool {
    let ours = mounts_of(&read_mountinfo().unwrap_or_default(), mountpoint);
    if ours.is_empty() {
        return false;
    }
    let flags =
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::DIRECTORY;
    let Ok(cwd) = rustix::fs::open(".", flags, rustix::fs::Mode::empty()) else { return false };
    fd_mount(std::os::fd::AsRawFd::as_raw_fd(&cwd)).is_some_and(|id| ours.contains(&id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse_mountinfo;

    #[test]
    fn the_mounts_of_a_fuse_mountpoint_are_its_bind_mounts_too() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:31 / /mnt/a\\040b rw,nosuid,nodev shared:20 - fuse.wrap x rw,user_id=0
36 22 0:32 / /mnt/other rw shared:21 - fuse /dev/fuse rw
37 22 0:31 /sub /srv/bound rw shared:22 - fuse.wrap x rw
38 22 0:34 / /mnt/c rw shared:23 - tmpfs tmpfs rw
39 35 0:35 / /mnt/a\\040b rw shared:24 - fuse.sshfs y rw
";
        let ids = |info: &str, at: &str| mounts_of(&parse_mountinfo(info), Path::new(at));
        assert_eq!(ids(info, "/mnt/other"), [36].into_iter().collect());
        // The topmost FUSE mount at a point is the one served there.
        assert_eq!(ids(info, "/mnt/a b"), [39].into_iter().collect());
        let bound = info.replace("39 35 0:35", "39 35 0:31");
        assert_eq!(ids(&bound, "/mnt/a b"), [35, 37, 39].into_iter().collect());
        assert!(ids(info, "/mnt/c").is_empty(), "tmpfs is no FUSE mount");
        assert!(ids(info, "/mnt/none").is_empty());
    }

    #[test]
    fn an_fds_mount_is_its_mnt_id_line() {
        assert_eq!(fdinfo_mount("pos:\t0\nflags:\t0100000\nmnt_id:\t35\nino:\t7\n"), Some(35));
        assert_eq!(fdinfo_mount("pos:\t0\nflags:\t02\n"), None);
        let file = std::fs::File::open("/proc/self/mountinfo").unwrap();
        assert!(fd_mount(std::os::fd::AsRawFd::as_raw_fd(&file)).is_some());
        assert_eq!(fd_mount(-1), None);
    }
}
