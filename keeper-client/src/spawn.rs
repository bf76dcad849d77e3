//! Starting a keeper that outlives its caller, and finding its binary.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{KeeperClient, SOCKET_ENV};

/// Environment variable naming the keeper binary.
pub const BIN_ENV: &str = "FUSE_KEEPER_BIN";
/// How long [`spawn_detached`] waits for the socket.
pub const SPAWN_WAIT: Duration = Duration::from_secs(2);

/// Start `keeper_bin serve` with `FUSE_KEEPER_SOCKET=socket` so that it outlives the caller: its
/// own session, not the caller's child, umask 022 whatever the caller's, stdin on /dev/null,
/// stdout and stderr appended to `<socket>.log` (or /dev/null if that cannot be opened). The
/// socket's directory is created if missing (0755 for root, 0700 otherwise) and must not be
/// writable by other users; the log is opened without following a symlink and must be a regular
/// file; either failing is an error and no keeper is started. Returns once the socket accepts
/// connections, or fails after 2 s.
pub fn spawn_detached(keeper_bin: &Path, socket: &Path) -> io::Result<()> {
    // The directory is created with an explicit mode and checked as the daemon checks it: the
    // log must not land in (nor the keeper start in) a directory others can write.
    crate::socket_dir::prepare_socket_dir(socket)?;
    let mut log_name = socket.as_os_str().to_owned();
    log_name.push(".log");
    let (stdout, stderr) = match open_log(Path::new(&log_name))? {
        Some(f) => (Stdio::from(f.try_clone()?), Stdio::from(f)),
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = Command::new(keeper_bin);
    cmd.arg("serve").env(SOCKET_ENV, socket).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    crate::sys::detach_on_spawn(&mut cmd);
    // The child is the intermediate of a double fork: it exits at once.
    let status = cmd.spawn()?.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "detaching {} failed: {status}",
            keeper_bin.display()
        )));
    }
    let deadline = Instant::now() + SPAWN_WAIT;
    loop {
        match KeeperClient::connect(socket) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("keeper did not start listening within 2 s: {e}"),
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The log file `path` opened for appending (created 0600), never through a symlink
/// (`O_NOFOLLOW`) and only if it is a regular file: a symlink or another kind of file there is an
/// error (someone aims the keeper's output at something else). `None` if it cannot be opened for
/// another reason (then the keeper logs nowhere).
fn open_log(path: &Path) -> io::Result<Option<std::fs::File>> {
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing the keeper log {}: it is a symlink", path.display()),
            ));
        }
        // A FIFO without a reader (O_NONBLOCK makes its open fail instead of waiting).
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(not_regular(path)),
        Err(_) => return Ok(None),
    };
    if !file.metadata()?.is_file() {
        return Err(not_regular(path));
    }
    Ok(Some(file))
}

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refusing the keeper log {}: not a regular file", path.display()),
    )
}

fn is_executable(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The keeper binary: `$FUSE_KEEPER_BIN`, else `fuse-keeper` next to the current executable
/// (or, for an executable in cargo's `examples/` or `deps/`, in the directory above), else the
/// first `fuse-keeper` in `PATH`.
pub fn find_keeper_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) =
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        // Beside the server; or, for cargo's examples and tests (target/PROFILE/examples,
        // target/PROFILE/deps), beside them in target/PROFILE.
        let cargo_dir = dir
            .file_name()
            .filter(|name| *name == "examples" || *name == "deps")
            .and_then(|_| dir.parent())
            .map(|d| d.join("fuse-keeper"));
        if let Some(p) =
            std::iter::once(dir.join("fuse-keeper")).chain(cargo_dir).find(|p| is_executable(p))
        {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("fuse-keeper")).find(|p| is_executable(p))
}
