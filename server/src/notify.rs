//! Telling a service manager how the server is doing: the `sd_notify(3)` protocol, without
//! libsystemd.
//!
//! systemd (for `Type=notify` units) passes a datagram socket's address in `$NOTIFY_SOCKET`: a
//! path, or `@name` for an abstract socket. A message is one datagram of newline-separated
//! `KEY=VALUE` assignments, such as `READY=1\nMAINPID=1234\nSTATUS=serving`.
//!
//! What every function here promises:
//!
//! - without `$NOTIFY_SOCKET` (not under a service manager) it does nothing and returns
//!   `Ok(false)`; `Ok(true)` means the datagram was sent (not that anyone read it);
//! - it never panics, and never blocks for long: the datagram is sent without waiting for
//!   room in the receiver's queue, and a full queue is an error (`WouldBlock`);
//! - every failure is returned as an `io::Error` (a malformed `$NOTIFY_SOCKET` is
//!   `InvalidInput`), never logged or swallowed: whether it matters is the caller's call;
//! - it leaves `$NOTIFY_SOCKET` set, so that a process started later (a server started by
//!   another) may notify too.
//!
//! A server built on this library calls [`serving`] once it answers requests, [`stopping`]
//! when it unmounts and exits, and, after handing its connection over to a new server of the
//! same service, [`main_pid_moved_to`] before exiting, so that systemd follows the new server
//! instead of declaring the service dead.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable a service manager sets to its notification socket's address.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=VALUE` assignments, for example `"READY=1"`) to
/// `$NOTIFY_SOCKET`. `Ok(false)`: the variable is unset or empty, nothing was sent.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => notify_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the notification socket at `socket`: an absolute path, or `@name` for
/// the abstract socket `name`. Anything else is `InvalidInput`, as is an empty `state`.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    if state.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty notification"));
    }
    let bytes = socket.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'@', name)) if !name.is_empty() => SocketAddr::from_abstract_name(name)?,
        Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{NOTIFY_SOCKET}={} is neither an absolute path nor @name",
                    socket.to_string_lossy()
                ),
            ));
        }
    };
    let sender = UnixDatagram::unbound()?;
    sender.set_nonblocking(true)?;
    let sent = sender.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "the notification was cut short"));
    }
    Ok(())
}

/// The message [`serving`] sends: `READY=1`, `MAINPID=` this process's pid, and
/// `STATUS=status` (a newline in `status` becomes a space: it would end the assignment).
pub fn serving_message(status: &str) -> String {
    format!("READY=1\nMAINPID={}\nSTATUS={}", std::process::id(), status.replace('\n', " "))
}

/// The server serves: `READY=1`, `MAINPID=` this process (which may not be the process the
/// service manager started: a server that went to the background, or one started by
/// `ExecReload=` to take the connection over), and `STATUS=status`, as one datagram.
pub fn serving(status: &str) -> io::Result<bool> {
    notify(&serving_message(status))
}

/// The server is stopping of its own accord (its mount was unmounted, or it was asked to stop):
/// `STOPPING=1`. Not to be sent by a server that handed its connection over: the service goes
/// on in the new server.
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// This process handed its connection over to process `pid`, which serves on: `MAINPID=pid`,
/// sent only if `pid` is in this process's control group (the same systemd service, as when
/// `ExecReload=` started it). A new server of another service (another unit, or one outside
/// systemd) is left alone: systemd would otherwise accept, from a root sender, a main pid
/// belonging to another unit. `Ok(false)` when nothing was sent. Call it before exiting: the
/// service manager must know its new main process before it sees the old one exit.
pub fn main_pid_moved_to(pid: u32) -> io::Result<bool> {
    if std::env::var_os(NOTIFY_SOCKET).is_none_or(|s| s.is_empty()) {
        return Ok(false);
    }
    let ours = std::fs::read("/proc/self/cgroup")?;
    let theirs = match std::fs::read(format!("/proc/{pid}/cgroup")) {
        Ok(theirs) => theirs,
        // Gone, or not in our pid namespace: not ours to name.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if ours != theirs {
        return Ok(false);
    }
    notify(&format!("MAINPID={pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::time::Duration;

    fn receiver() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        (dir, path, socket)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_gets_the_state_as_one_datagram() {
        let (_dir, path, socket) = receiver();
        notify_to(path.as_os_str(), &serving_message("attached")).unwrap();
        assert_eq!(
            recv(&socket),
            format!("READY=1\nMAINPID={}\nSTATUS=attached", std::process::id())
        );
        notify_to(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(recv(&socket), "STOPPING=1");
    }

    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        let name = format!("fuse-server-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        notify_to(&OsString::from(format!("@{name}")), "READY=1").unwrap();
        assert_eq!(recv(&socket), "READY=1");
    }

    #[test]
    fn a_newline_in_the_status_cannot_add_an_assignment() {
        assert_eq!(
            serving_message("a\nSTOPPING=1"),
            format!("READY=1\nMAINPID={}\nSTATUS=a STOPPING=1", std::process::id())
        );
    }

    #[test]
    fn bad_addresses_and_absent_receivers_are_errors_not_panics() {
        for bad in ["relative.sock", "@", ""] {
            let err = notify_to(OsStr::new(bad), "READY=1").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let (_dir, path, _socket) = receiver();
        assert_eq!(
            notify_to(path.as_os_str(), "").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let nobody = path.with_file_name("nobody.sock");
        assert_eq!(
            notify_to(nobody.as_os_str(), "READY=1").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let long = format!("/{}", "x".repeat(200));
        assert!(notify_to(OsStr::new(&long), "READY=1").is_err(), "a path too long for sun_path");
    }
}
