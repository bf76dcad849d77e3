//! The listening socket: path rules, stale sockets, permissions.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::DaemonError;
use crate::client::KeeperClient;
use crate::socket_dir::prepare_socket_dir;

/// The bound socket and the (dev, ino) of its file, to remove only our own at exit.
pub struct Listener {
    pub fd: OwnedFd,
    pub identity: Option<(u64, u64)>,
}

/// Create, bind and listen on `path`. Its directory is created if missing (0755 for a root
/// keeper, 0700 otherwise, whatever the umask) and must be safe ([`crate::socket_dir::check_socket_dir`]). A socket
/// file nobody answers on is stale and replaced; one a keeper answers on is an error. Root's
/// socket is made 0666 (access control is by SO_PEERCRED), others' 0600.
pub fn listen(path: &Path) -> Result<Listener, DaemonError> {
    let err = |error: io::Error| DaemonError::Listen { path: path.into(), error };
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
