//! Where a keeper's socket may live: the rules both the keeper (before it listens) and
//! [`crate::spawn_detached`] (before it starts one) apply to the socket's directory.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// The mode of a socket directory the keeper (or [`crate::spawn_detached`]) creates: 0755 when
/// running as root (root's keeper serves every uid), 0700 otherwise.
fn dir_mode() -> u32 {
    if rustix::process::geteuid().is_root() { 0o755 } else { 0o700 }
}

/// Create the directory of the socket `path` if it is missing, with mode 0755 as root and 0700
/// otherwise whatever the umask (created, then chmod'ed through an fd opened without following
/// symlinks), and check that it is safe to publish a socket in ([`check_socket_dir`]).
pub fn prepare_socket_dir(path: &Path) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return check_socket_dir(Path::new("."));
    };
    if std::fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Missing ancestors too get no more than dir_mode, whatever the umask.
            std::fs::DirBuilder::new().recursive(true).mode(dir_mode()).create(parent)?;
        }
        match std::fs::DirBuilder::new().mode(dir_mode()).create(dir) {
            Ok(()) => {
                let fd = rustix::fs::open(
                    dir,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir_mode()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    check_socket_dir(dir)
}

/// Whoever can create, rename or remove names in the socket's directory can put their own
/// socket in its place and receive the servers' device fds. So the directory, and every
/// directory above it, must be owned by root or by the keeper's own uid and must not be group-
/// or other-writable unless it has the sticky bit (as `/tmp` has; then only a name's owner may
/// replace it). The directory itself must be a real directory, not a symlink.
pub fn check_socket_dir(dir: &Path) -> io::Result<()> {
    let me = rustix::process::geteuid().as_raw();
    let refuse = |what: &Path, why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to serve in {}: {} {why} (another user could replace the socket)",
                dir.display(),
                what.display()
            ),
        )
    };
    let m = std::fs::symlink_metadata(dir)?;
    if m.file_type().is_symlink() {
        return Err(refuse(dir, "is a symlink".into()));
    }
    let canonical = std::fs::canonicalize(dir)?;
    for d in canonical.ancestors() {
        let m = std::fs::symlink_metadata(d)?;
        if !m.is_dir() {
            return Err(refuse(d, "is not a directory".into()));
        }
        if m.uid() != 0 && m.uid() != me {
            return Err(refuse(d, format!("is owned by uid {}", m.uid())));
        }
        let mode = m.mode() & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(refuse(
                d,
                format!("is writable by others (mode {mode:o}) without the sticky bit"),
            ));
        }
    }
    Ok(())
}
