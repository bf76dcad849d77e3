//! The listening socket: path rules, stale sockets, permissions; or the one systemd passes
//! (socket activation).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::DaemonError;
use crate::client::KeeperClient;
use crate::socket_dir::prepare_socket_dir;

/// The bound socket and the (dev, ino) of its file, to remove only our own at exit (`None`:
/// the socket is not ours to remove, as when systemd passed it).
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

/// The environment of systemd's socket activation (`sd_listen_fds(3)`).
const LISTEN_ENV: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// The first fd a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The socket systemd passed, if the keeper is socket-activated: `LISTEN_PID` is this process
/// and `LISTEN_FDS` is 1 or more. Fd 3 must then be a listening `AF_UNIX` `SOCK_SEQPACKET`
/// socket (anything else is [`DaemonError::Activation`]); the keeper serves on it (made
/// non-blocking) instead of binding, and never removes its path, which belongs to systemd.
/// `LISTEN_*` are removed from the environment either way, so that nothing the keeper starts
/// takes them for its own. Must run before the daemon starts any thread.
pub fn activated(configured: &Path) -> Result<Option<Listener>, DaemonError> {
    let bad = |why: String| DaemonError::Activation(why);
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    if pid.is_none() && fds.is_none() {
        return Ok(None);
    }
    for name in LISTEN_ENV {
        #[allow(unsafe_code)]
        // SAFETY: the daemon has started no thread yet (`serve` calls this first: the event
        // loop and the closer's threads come later), so nothing reads the environment while
        // it changes.
        unsafe {
            std::env::remove_var(name)
        };
    }
    if pid.as_deref().map(str::trim).and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    {
        tracing::info!(listen_pid = pid.as_deref(), "LISTEN_PID is not this process: binding");
        return Ok(None);
    }
    let count = match fds.as_deref().map(str::trim).map(str::parse::<u32>) {
        Some(Ok(0)) => return Ok(None),
        Some(Ok(count)) => count,
        _ => {
            return Err(bad(format!(
                "LISTEN_FDS={:?} is not a number of fds",
                fds.unwrap_or_default()
            )));
        }
    };
    if count > 1 {
        tracing::warn!(count, "socket-activated with several fds: serving on fd 3 only");
    }
    // Before anything here opens an fd (which would be given number 3 if it is free).
    if std::fs::symlink_metadata("/proc/self/fd/3").is_err() {
        return Err(bad("fd 3 is not open (is /proc mounted?)".into()));
    }
    #[allow(unsafe_code)]
    // SAFETY: fd 3 is open (just checked, and no other thread exists that could close it) and
    // the LISTEN_FDS protocol hands it to this process: nothing else in the keeper owns it.
    // It stays in ManuallyDrop until it is checked, so a wrong fd 3 is reported, never closed.
    let fd3 = std::mem::ManuallyDrop::new(unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(LISTEN_FDS_START)
    });
    let fd: &OwnedFd = &fd3;
    let not = |what: String| {
        bad(format!("fd 3 is not a listening AF_UNIX SOCK_SEQPACKET socket: {what}"))
    };
    let domain = rustix::net::sockopt::socket_domain(fd).map_err(|e| {
        // What it is instead, as /proc names it (a file, a pipe).
        let target = std::fs::read_link("/proc/self/fd/3")
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        not(format!("it is {target} ({e})"))
    })?;
    if domain != AddressFamily::UNIX {
        return Err(not(format!("its family is {domain:?}")));
    }
    let kind = rustix::net::sockopt::socket_type(fd).map_err(|e| not(e.to_string()))?;
    if kind != SocketType::SEQPACKET {
        return Err(not(format!("its type is {kind:?} (ListenSequentialPacket= makes one)")));
    }
    if !rustix::net::sockopt::socket_acceptconn(fd).map_err(|e| not(e.to_string()))? {
        return Err(not("it is not listening".into()));
    }
    rustix::io::ioctl_fionbio(fd, true).map_err(|e| bad(format!("fd 3: FIONBIO: {e}")))?;
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| bad(format!("fd 3: FD_CLOEXEC: {e}")))?;
    let address =
        rustix::net::getsockname(fd).ok().and_then(|a| SocketAddrUnix::try_from(a).ok()).and_then(
            |a| a.path_bytes().map(|p| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p))),
        );
    match &address {
        Some(path) if path != configured => tracing::warn!(
            socket = %path.display(),
            configured = %configured.display(),
            "socket-activated on another path than the keeper's socket: clients must be \
             given it (FUSE_KEEPER_SOCKET, keeper=)"
        ),
        _ => {}
    }
    tracing::info!(
        socket = %address.as_deref().unwrap_or(configured).display(),
        "listening (socket-activated: fd 3)"
    );
    Ok(Some(Listener { fd: std::mem::ManuallyDrop::into_inner(fd3), identity: None }))
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
