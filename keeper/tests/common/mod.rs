//! Test harness: a keeper process on a socket in a tempdir, helper processes, mounts; every
//! process is killed by pid and every mount force-unmounted in Drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use fuse_keeper::{ConnInfo, KeeperClient};

pub const BIN: &str = env!("CARGO_BIN_EXE_fuse-keeper");

/// How long a test waits for something that must happen (a state, a log line, a released
/// application): only a hang takes this long, however loaded the machine is.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The bound on an answer that must not wait for anything (a umount of a dead server's mount,
/// an orphaning noticed by a pidfd): far above what a loaded 2-core machine takes, far below
/// the hang it tells apart. Never a speed target: speed is measured in bench/.
pub const PROMPT: Duration = Duration::from_secs(10);

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL now (the zombie is reaped in Drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `fuse-keeper serve` on `<tempdir>/keeper.sock`, stderr in `<tempdir>/keeper.log`.
pub struct Keeper {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Connections kept open until the keeper is dropped (see [`Keeper::settled_fds`]).
    probes: std::cell::RefCell<Vec<KeeperClient>>,
}

impl Keeper {
    pub fn start() -> Keeper {
        Keeper::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Keeper {
        Keeper::spawn(&[], None, args)
    }

    /// `serve ARGS` run through `wrapper` (e.g. `prlimit --nofile=64:64 --`, which execs the
    /// keeper in its own process, so that the pid is still the keeper's).
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Keeper {
        Keeper::spawn(wrapper, None, args)
    }

    /// `serve ARGS` as `uid` (and gid `uid`), in a directory that uid owns.
    pub fn start_as(uid: u32, args: &[&str]) -> Keeper {
        Keeper::spawn(&[], Some(uid), args)
    }

    fn spawn(wrapper: &[&str], uid: Option<u32>, args: &[&str]) -> Keeper {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // Other uids (the 65534 helper) must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(uid) = uid {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        }
        let socket = dir.path().join("keeper.sock");
        let log = dir.path().join("keeper.log");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(BIN);
                cmd
            }
            None => Command::new(BIN),
        };
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .arg("serve")
            .args(args)
            .env("FUSE_KEEPER_SOCKET", &socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn fuse-keeper serve");
        let keeper = Keeper { proc: Proc { child }, dir, socket, log, probes: Default::default() };
        let up = wait_until(PATIENCE, || KeeperClient::connect(&keeper.socket).is_ok());
        assert!(up, "keeper did not listen; log:\n{}", keeper.log_text());
        keeper
    }

    pub fn client(&self) -> KeeperClient {
        KeeperClient::connect(&self.socket).expect("connect to keeper")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<ConnInfo> {
        self.client().list().expect("list")
    }

    pub fn entry(&self, tag: &str) -> Option<ConnInfo> {
        self.list().into_iter().find(|e| e.tag == tag)
    }

    /// `fuse-keeper ARGS` against this keeper.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("FUSE_KEEPER_SOCKET", &self.socket).stdin(Stdio::null());
        cmd
    }

    /// Start the hidden `register-test TAG OPTS` helper with `device` as its stdin (and
    /// `device1`, if any, as its stdout: device index 1); returns once it has registered.
    pub fn registrant(
        &self,
        tag: &str,
        opts: &[&str],
        device: OwnedFd,
        device1: Option<OwnedFd>,
    ) -> Proc {
        let mut cmd = self.command(&["register-test", tag]);
        cmd.args(opts).stdin(Stdio::from(device)).stderr(Stdio::piped());
        match device1 {
            Some(fd) => cmd.arg("--stdout-device").stdout(Stdio::from(fd)),
            None => cmd.stdout(Stdio::null()),
        };
        let mut proc = Proc { child: cmd.spawn().expect("spawn register-test") };
        let stderr = proc.child.stderr.take().unwrap();
        let line = first_line(stderr);
        assert!(
            line.starts_with("registered "),
            "register-test failed: {line}\nkeeper log:\n{}",
            self.log_text()
        );
        proc
    }

    /// The keeper's fd count once every connection closed before this call has been processed.
    ///
    /// Two LIST round trips on a new connection: the keeper handles every event one
    /// `epoll_wait` returned before it waits again, so once the second reply is here, the
    /// hangups queued before the first request are handled. The probe stays open (and counted)
    /// until the keeper is dropped, so that its own hangup never changes a later count.
    pub fn settled_fds(&self) -> usize {
        let mut probe = KeeperClient::connect(&self.socket).expect("connect to keeper");
        probe.list().expect("list");
        probe.list().expect("list");
        self.probes.borrow_mut().push(probe);
        fd_count(self.proc.pid())
    }

    /// Wait for `tag` to be listed in `state`.
    pub fn wait_state(&self, tag: &str, state: fuse_keeper::ConnState, within: Duration) -> bool {
        wait_until(within, || self.entry(tag).is_some_and(|e| e.state == state))
    }
}

fn first_line(stderr: ChildStderr) -> String {
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    if !line.starts_with("registered ") {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        line.push_str(&rest);
    }
    line
}

/// Poll `f` every millisecond until it holds or `within` has passed.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A fresh `/dev/fuse` fd (not mounted).
pub fn open_fuse() -> OwnedFd {
    fuse_transport::open_device().expect("open /dev/fuse")
}

/// A memfd holding `content`.
pub fn memfd(content: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("keeper-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&fd, content).unwrap();
    fd
}

/// The whole content of a file fd, read from offset 0.
pub fn read_all(fd: impl AsFd) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::io::pread(fd, &mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

pub fn dup(fd: impl AsFd) -> OwnedFd {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).unwrap()
}

/// A FUSE mount on a tempdir whose INIT is never answered (so any access blocks until the
/// connection is aborted); force-unmounted in Drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub conn_id: u32,
}

impl Mount {
    /// Mount (needs root): returns the mount and its device fd.
    pub fn new() -> (Mount, OwnedFd) {
        assert!(rustix::process::geteuid().is_root(), "mount tests need root");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let dev = open_fuse();
        let opts = fuse_transport::MountOptions {
            fsname: Some("keeper-test".into()),
            ..Default::default()
        };
        fuse_transport::mount_with_fd(dev.as_fd(), &path, &opts).expect("mount");
        let conn_id = fuse_transport::connection_id(&path).expect("connection id");
        (Mount { dir, path, conn_id }, dev)
    }

    pub fn is_mounted(&self) -> bool {
        fuse_transport::is_fuse_mount(&self.path)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = fuse_transport::force_unmount(&self.path);
    }
}

/// `stat` the path on another thread; the result arrives on the channel.
pub fn stat_in_thread(path: &Path) -> std::sync::mpsc::Receiver<std::io::Result<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&path).map(drop));
    });
    rx
}

/// Number of open fds of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A raw SEQPACKET connection to the keeper at `path`, with send and receive timeouts of
/// [`PATIENCE`] (for tests that write bytes the client library would never send).
pub fn connect_raw(path: &Path) -> std::io::Result<OwnedFd> {
    let sock = fuse_keeper::client::connect_socket(path)?;
    let timeout = Some(PATIENCE);
    for dir in [rustix::net::sockopt::Timeout::Recv, rustix::net::sockopt::Timeout::Send] {
        rustix::net::sockopt::set_socket_timeout(&sock, dir, timeout)?;
    }
    Ok(sock)
}
