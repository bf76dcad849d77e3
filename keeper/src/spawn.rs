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
/// own session, not the caller's child, stdin on /dev/null, stdout and stderr appended to
/// `<socket>.log` (or /dev/null if that cannot be opened). Returns once the socket accepts
/// connections, or fails after 2 s.
pub fn spawn_detached(keeper_bin: &Path, socket: &Path) -> io::Result<()> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: the daemon creates root's default directory itself.
        let _ = std::fs::create_dir_all(dir);
    }
    let mut log_name = socket.as_os_str().to_owned();
    log_name.push(".log");
    let log = OpenOptions::new().create(true).append(true).mode(0o600).open(&log_name);
    let (stdout, stderr) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
        Err(_) => (Stdio::null(), Stdio::null()),
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

fn is_executable(p: &Path) -> bool {
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The keeper binary: `$FUSE_KEEPER_BIN`, else `fuse-keeper` next to the current executable,
/// else the first `fuse-keeper` in `PATH`.
pub fn find_keeper_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("fuse-keeper")))
        .filter(|p| is_executable(p))
    {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("fuse-keeper")).find(|p| is_executable(p))
}
