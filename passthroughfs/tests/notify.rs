//! What passthroughfs tells systemd (`$NOTIFY_SOCKET`, sd_notify's protocol) on real mounts:
//! the test binds the notification socket itself and reads the exact datagrams of a fresh
//! mount, of the restart after a `kill -9` (re-attached), of a planned handover (the new
//! server in the foreground and, as `ExecReload=` runs it, in the background) and of a clean
//! unmount. The keeper is the test's own, on a temporary socket.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Keeper, Mounted, PATIENCE};
use rustix::process::Signal;

/// The service manager's end: a datagram socket the servers send to.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn bind(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Manager { socket, path }
    }

    /// The next message; fails if none comes within PATIENCE.
    fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => String::from_utf8(buf[..n].to_vec()).expect("a UTF-8 notification"),
            Err(err) => panic!("no notification within {PATIENCE:?}: {err}"),
        }
    }

    /// Every message already queued (call it once the senders are done).
    fn rest(&self) -> Vec<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
        out
    }
}

struct Setup {
    m: Mounted,
    keeper: Keeper,
    manager: Manager,
}

const OPTIONS: &str = "tag=sd,nokeeper_start";

impl Setup {
    fn new() -> Setup {
        let m = Mounted::dirs();
        fs::write(m.src("f"), b"hello").unwrap();
        let keeper = Keeper::start(m.dir.path());
        let manager = Manager::bind(m.dir.path());
        Setup { m, keeper, manager }
    }

    /// `passthroughfs -f -o OPTIONS[,extra]` as systemd would start it.
    fn server(&self, extra: &str) -> Child {
        self.m
            .server_command(&self.keeper.socket, &format!("{OPTIONS}{extra}"))
            .env("NOTIFY_SOCKET", &self.manager.path)
            .spawn()
            .unwrap()
    }

    /// Starts the first server and checks its fresh mount's message.
    fn start_fresh(&mut self) {
        self.m.server = Some(self.server(""));
        let pid = self.m.pid();
        assert_eq!(self.manager.next(), format!("READY=1\nMAINPID={pid}\nSTATUS=serving"));
        assert!(self.m.is_mounted(), "READY=1 came before the mount");
        self.keeper.wait_serving(pid);
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "pid {} did not exit within {PATIENCE:?}", child.id());
        sleep(Duration::from_millis(10));
    }
}

/// A process this test did not spawn directly (a server that went to the background), killed
/// by its pid if still alive at the end.
struct Daemon(u32);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

#[test]
fn a_fresh_mount_says_serving_and_a_clean_unmount_says_stopping() {
    let mut s = Setup::new();
    s.start_fresh();
    assert_eq!(fs::read(s.m.mnt("f")).unwrap(), b"hello");
    s.m.signal(Signal::TERM);
    assert_eq!(s.manager.next(), "STOPPING=1");
    let status = s.m.wait_exit(PATIENCE).expect("the server exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!s.m.is_mounted(), "SIGTERM unmounts");
    assert_eq!(s.manager.rest(), Vec::<String>::new(), "nothing else was said");
}

#[test]
fn a_mount_without_a_tag_says_serving_and_stopping_too() {
    let mut m = Mounted::dirs();
    let manager = Manager::bind(m.dir.path());
    let mut cmd = Command::new(common::BIN);
    cmd.arg("-f").arg(&m.source).arg(&m.mountpoint).env("NOTIFY_SOCKET", &manager.path);
    m.server = Some(cmd.stdin(Stdio::null()).spawn().unwrap());
    let pid = m.pid();
    assert_eq!(manager.next(), format!("READY=1\nMAINPID={pid}\nSTATUS=serving"));
    m.signal(Signal::TERM);
    assert_eq!(manager.next(), "STOPPING=1");
    assert!(m.wait_exit(PATIENCE).expect("exits on SIGTERM").success());
}

#[test]
fn the_restart_after_kill_9_says_attached_and_the_open_file_reads() {
    let mut s = Setup::new();
    s.start_fresh();
    let mut open = fs::File::open(s.m.mnt("f")).unwrap();
    s.m.signal(Signal::KILL);
    s.m.wait_exit(PATIENCE).expect("the killed server is reaped");
    assert_eq!(s.manager.rest(), Vec::<String>::new(), "a killed server says nothing");

    s.m.server = Some(s.server(""));
    let pid = s.m.pid();
    assert_eq!(s.manager.next(), format!("READY=1\nMAINPID={pid}\nSTATUS=attached"));
    s.keeper.wait_serving(pid);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut open, &mut text).unwrap();
    assert_eq!(text, "hello", "a file open across the crash reads");
}

#[test]
fn a_handover_says_handed_over_and_the_old_server_names_its_successor_and_exits_0() {
    let mut s = Setup::new();
    s.start_fresh();
    let mut old = s.m.server.take().unwrap();
    s.m.server = Some(s.server(",handover"));
    let new = s.m.pid();
    let status = wait_exit(&mut old);
    assert!(status.success(), "the old server exits 0 after handing over: {status}");
    s.keeper.wait_serving(new);
    // Two senders, in either order: the new server serving, and the old one (in the same
    // control group as the new) naming it the main process before it exited.
    let mut said = vec![s.manager.next(), s.manager.next()];
    said.extend(s.manager.rest());
    said.sort();
    let mut expected =
        vec![format!("MAINPID={new}"), format!("READY=1\nMAINPID={new}\nSTATUS=handed over")];
    expected.sort();
    assert_eq!(said, expected, "no STOPPING=1: the service goes on");
    assert_eq!(fs::read(s.m.mnt("f")).unwrap(), b"hello", "the new server serves");
}

#[test]
fn a_handover_in_the_background_as_exec_reload_runs_it_names_the_daemon_as_main_pid() {
    let mut s = Setup::new();
    s.start_fresh();
    let old = s.m.pid();
    // ExecReload=passthroughfs -o OPTIONS -o handover SOURCE MOUNTPOINT: no -f.
    let mut reload = Command::new(common::BIN)
        .args(["-o", OPTIONS, "-o", "handover"])
        .arg(&s.m.source)
        .arg(&s.m.mountpoint)
        .env("FUSE_KEEPER_SOCKET", &s.keeper.socket)
        .env("NOTIFY_SOCKET", &s.manager.path)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let parent = reload.id();
    // The new server's serving message and the old server's MAINPID=, in either order.
    let said = [s.manager.next(), s.manager.next()];
    let serving = said.iter().find(|m| m.starts_with("READY=1")).expect("a READY=1").clone();
    let daemon: u32 = serving
        .strip_prefix("READY=1\nMAINPID=")
        .and_then(|rest| rest.strip_suffix("\nSTATUS=handed over"))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("not the new server's serving message: {serving:?}"));
    let _guard = Daemon(daemon);
    assert_ne!(daemon, parent, "the main pid is the server that serves, not its parent");
    assert!(wait_exit(&mut reload).success(), "the reload command exits 0 once it serves");
    assert!(s.m.wait_exit(PATIENCE).expect("the old server exits").success());
    let moved = said.iter().find(|m| !m.starts_with("READY=1")).unwrap();
    assert_eq!(moved, &format!("MAINPID={daemon}"), "from the old server {old}");
    s.keeper.wait_serving(daemon);
    assert_eq!(fs::read(s.m.mnt("f")).unwrap(), b"hello", "the new server serves");
    assert_eq!(s.manager.rest(), Vec::<String>::new());
}
