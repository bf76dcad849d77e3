//! The listening socket: path rules, stale sockets, permissions.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::DaemonError;
use crate::client::KeeperClient;

/// The bound socket and the (dev, ino) of its file, to remove only our own at exit.
pub struct Listener {
    pub fd: OwnedFd,
    pub identity: Option<(u64, u64)>,
}

/// Create, bind and listen on `path`. Its directory is created if missing (0755 for a root
/// keeper, 0700 otherwise, whatever the umask) and must be safe ([`check_socket_dir`]). A socket
/// file nobody answers on is stale and replaced; one a keeper answers on is an error. Root's
/// socket is made 0666 (access control is by SO_PEERCRED), others' 0600.
pub fn listen(path: &Path) -> Result<Listener, DaemonError> {
    let err = |source: io::Error| DaemonError::Listen { path: path.into(), source };
    let root = rustix::process::geteuid().is_root();
    prepare_socket_dir(path).map_err(err)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(DaemonError::NotASocket(path.into())),
        Ok(_) => {
            if KeeperClient::connect(path).is_ok() {
                return Err(DaemonError::AlreadyRunning(path.into()));
            }
            tracing::info!(path = %path.display(), "removing stale socket");
            std::fs::remove_file(path).map_err(err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| err(e.into()))?;
    // Bound and listening under a private name first, then linked to `path`: a client that
    // sees the socket file can connect (a bound socket refuses connections until listen), and
    // link, unlike rename, fails if another keeper took the path meanwhile.
    let staging = staging_path(path);
    let _ = std::fs::remove_file(&staging);
    let addr = SocketAddrUnix::new(&staging).map_err(|e| err(e.into()))?;
    rustix::net::bind(&fd, &addr).map_err(|e| err(e.into()))?;
    let mode = if root { 0o666 } else { 0o600 };
    if let Some(ms) =
        std::env::var("FUSE_KEEPER_TEST_LISTEN_DELAY_MS").ok().and_then(|v| v.parse().ok())
    {
        // Test switch: widens the bound-but-not-listening window (see keeper.rs tests).
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let published = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
        .and_then(|()| rustix::net::listen(&fd, 128).map_err(io::Error::from))
        .and_then(|()| std::fs::hard_link(&staging, path));
    let _ = std::fs::remove_file(&staging);
    match published {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(DaemonError::AlreadyRunning(path.into()));
        }
        result => result.map_err(err)?,
    }
    let identity = std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    tracing::info!(path = %path.display(), mode = format!("{mode:o}"), "listening");
    Ok(Listener { fd, identity })
}

/// `.k<pid>` beside `path` (the same directory, so a hard link works). Short, so that it fits
/// in a socket address whenever `path` does, unless `path`'s own name is shorter still.
fn staging_path(path: &Path) -> std::path::PathBuf {
    path.with_file_name(format!(".k{}", std::process::id()))
}

/// Remove the socket file at exit if it is still ours.
pub fn remove(path: &Path, identity: Option<(u64, u64)>) {
    let current = std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    if current.is_some() && current == identity {
        let _ = std::fs::remove_file(path);
    }
}

/// The mode of a socket directory the keeper (or [`crate::spawn_detached`]) creates: 0755 when
/// running as root (root's keeper serves every uid), 0700 otherwise.
fn dir_mode() -> u32 {
    if rustix::process::geteuid().is_root() { 0o755 } else { 0o700 }
}

/// Create the directory of the socket `path` if it is missing, with [`dir_mode`] whatever the
/// umask (created, then chmod'ed through an fd opened without following symlinks), and check
/// that it is safe to publish a socket in ([`check_socket_dir`]).
pub(crate) fn prepare_socket_dir(path: &Path) -> io::Result<()> {
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
pub(crate) fn check_socket_dir(dir: &Path) -> io::Result<()> {
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
