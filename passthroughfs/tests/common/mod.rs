//! Test harness: a real passthroughfs server on a real mount, cleaned up whatever happens.
//!
//! Cleanup never hangs: abort the connection through fusectl, detach the mount, then kill
//! the server by its pid and reap it.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_passthroughfs");

/// How long a test waits for something that must happen (a mount, an exit, a released
/// application): only a hang takes this long, however loaded the machine is.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The bound on an answer that must not wait for anything (a umount of a dead server's
/// mount): far above what a loaded 2-core machine takes, far below the hang it tells apart.
/// Never a speed target: speed is measured in bench/.
pub const PROMPT: Duration = Duration::from_secs(10);

/// Fails the test loudly unless it runs as root with /dev/fuse: CI always has both.
pub fn require_root_and_fuse() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests mount filesystems: run them as root"
    );
    assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse");
}

/// A source directory, a mountpoint, and the server serving one on the other.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    pub server: Option<Child>,
}

impl Mounted {
    /// Empty source and mountpoint directories, world-traversable, nothing mounted yet.
    pub fn dirs() -> Mounted {
        require_root_and_fuse();
        let dir = tempfile::Builder::new().prefix("pfs-test-").tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let source = dir.path().join("src");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&source).unwrap();
        std::fs::create_dir(&mountpoint).unwrap();
        Mounted { dir, source, mountpoint, server: None }
    }

    /// Starts `passthroughfs -f [args] SOURCE MOUNTPOINT` and waits for the mount.
    pub fn start(args: &[&str]) -> Mounted {
        let mut m = Mounted::dirs();
        m.spawn(args, None);
        m
    }

    /// Spawns the server in the foreground, as `uid` if given, and waits for the mount.
    pub fn spawn(&mut self, args: &[&str], uid: Option<u32>) {
        let mut cmd = Command::new(BIN);
        cmd.arg("-f").args(args).arg(&self.source).arg(&self.mountpoint);
        cmd.stdin(Stdio::null());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd.spawn().expect("spawn passthroughfs");
        self.server = Some(child);
        self.wait_mounted();
    }

    /// `passthroughfs -f -o OPTIONS SOURCE MOUNTPOINT` against the keeper at `socket`, stdin
    /// from /dev/null (not started).
    pub fn server_command(&self, socket: &Path, options: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["-f", "-o", options])
            .arg(&self.source)
            .arg(&self.mountpoint)
            .env("FUSE_KEEPER_SOCKET", socket)
            .stdin(Stdio::null());
        cmd
    }

    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("server").id()
    }

    pub fn wait_mounted(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while !fuse_transport::is_fuse_mount(&self.mountpoint) {
            if let Some(child) = self.server.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!("passthroughfs exited before mounting: {status}");
            }
            assert!(Instant::now() < deadline, "no mount after {PATIENCE:?}");
            sleep(Duration::from_millis(20));
        }
    }

    pub fn is_mounted(&self) -> bool {
        fuse_transport::is_fuse_mount(&self.mountpoint)
    }

    /// The number of the server's threads asleep in nanosleep(2) or clock_nanosleep(2): with
    /// `PASSTHROUGHFS_TEST_READ_DELAY_MS`, the reads it holds (its workers otherwise wait in
    /// read(2) on the device or in other calls).
    pub fn threads_sleeping(&self) -> usize {
        threads_in_syscall(self.pid(), &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep])
    }

    /// Waits until `n` of the server's threads hold a delayed read ([`Self::threads_sleeping`]).
    pub fn wait_reads_inside(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.threads_sleeping() < n {
            assert!(Instant::now() < deadline, "the server never held {n} reads");
            sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `timeout` for the server to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.server.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.server = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    pub fn mnt(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    pub fn src(&self, name: &str) -> PathBuf {
        self.source.join(name)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = fuse_transport::force_unmount(&self.mountpoint);
        }
        if let Some(mut child) = self.server.take()
            && self.wait_exit_of(&mut child, Duration::from_secs(2)).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Mounted {
    fn wait_exit_of(&self, child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `timeout` (the thread is
/// left behind; the mount's cleanup releases whatever it waits on).
pub fn within<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
}

/// How many threads of `pid` are blocked in one of `syscalls` (from /proc/PID/task/*/syscall).
pub fn threads_in_syscall(pid: u32, syscalls: &[libc::c_long]) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("syscall")).ok())
        .filter(|s| {
            s.split_whitespace()
                .next()
                .and_then(|nr| nr.parse::<libc::c_long>().ok())
                .is_some_and(|nr| syscalls.contains(&nr))
        })
        .count()
}

/// A binary of the workspace, built by `cargo build --workspace` next to this test's profile.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(name);
    assert!(bin.exists(), "{} missing: run `cargo build --workspace` first", bin.display());
    bin
}

/// A keeper daemon on a private socket, killed by pid when dropped.
pub struct Keeper {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Keeper {
    pub fn start(dir: &Path) -> Keeper {
        Keeper::start_with(dir, &[])
    }

    /// `fuse-keeper serve ARGS`.
    pub fn start_with(dir: &Path, args: &[&str]) -> Keeper {
        let socket = dir.join("keeper.sock");
        let log = dir.join("keeper.log");
        let child = Command::new(workspace_bin("fuse-keeper"))
            .arg("serve")
            .args(args)
            .env("FUSE_KEEPER_SOCKET", &socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "keeper did not create its socket");
            sleep(Duration::from_millis(10));
        }
        Keeper { child, socket, log }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn ls_json(&self) -> String {
        let out = Command::new(workspace_bin("fuse-keeper"))
            .args(["ls", "--json"])
            .env("FUSE_KEEPER_SOCKET", &self.socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "fuse-keeper ls: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Keeper {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The state store the keeper holds for its (one) mount, opened through /proc.
    pub fn state_store(&self) -> fuse_recovery::store::Store {
        let fds = PathBuf::from(format!("/proc/{}/fd", self.pid()));
        for fd in fs::read_dir(&fds).unwrap() {
            let path = fd.unwrap().path();
            let target = fs::read_link(&path).unwrap_or_default();
            if target.to_string_lossy().contains("memfd:fuse-recovery-state") {
                let file = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
                let tables = &passthroughfs::fs::STORE_TABLES;
                return fuse_recovery::store::Store::open(file.into(), tables).unwrap();
            }
        }
        panic!("the keeper holds no state store");
    }

    /// Waits until the keeper lists a connection served by `pid`.
    pub fn wait_serving(&self, pid: u32) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ls = self.ls_json();
            if ls.contains(&format!("\"server_pid\":{pid}")) {
                return;
            }
            assert!(Instant::now() < deadline, "server {pid} never served: {ls}");
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches `URL` over HTTP (or reads stdin for `-`) and parses it with prometheus_client's
/// parser: one line per sample, `NAME{LABEL=VALUE...} VALUE`, and `TYPE FAMILY TYPE` per family.
const SCRAPE: &str = r#"
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
src = sys.argv[1]
text = sys.stdin.read() if src == "-" else urllib.request.urlopen(src, timeout=60).read().decode()
for family in text_string_to_metric_families(text):
    print("TYPE", family.name, family.type)
    for s in family.samples:
        labels = "".join("{%s=%s}" % kv for kv in sorted(s.labels.items()))
        print(s.name + labels, repr(float(s.value)))
"#;

/// The samples of one scrape of `source` (a URL, or `-` for `stdin`), parsed by
/// prometheus_client (from PyPI: .ci/install-deps), by `NAME{LABEL=VALUE}`; family types
/// under `TYPE NAME`.
pub fn scrape(source: &str, stdin: Option<&str>) -> std::collections::HashMap<String, String> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", SCRAPE, source])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client from PyPI: .ci/install-deps)");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "scrape failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The value of `name` in a scrape, as a number.
pub fn sample(samples: &std::collections::HashMap<String, String>, name: &str) -> f64 {
    let v = samples.get(name).unwrap_or_else(|| panic!("no sample {name} in {samples:?}"));
    v.parse().unwrap()
}

/// Where a process serves its metrics, from the `serving metrics addr=URL` line of its log
/// (`log` reads it; it was given port 0), once it is there.
pub fn metrics_url(log: &dyn Fn() -> String) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = log();
        if let Some(at) = text.find("addr=http://") {
            let url = &text[at + 5..];
            return url[..url.find(char::is_whitespace).unwrap_or(url.len())].to_owned();
        }
        assert!(Instant::now() < deadline, "never said where its metrics are: {text}");
        sleep(Duration::from_millis(10));
    }
}

/// `name_to_handle_at` and `open_by_handle_at` (which Python's os module lacks), for a program
/// that holds file handles as a user of the mount would (an NFS server, a backup tool):
/// `encode PATH...` prints each path's handle (`connectable:PATH`: with its parent's, which
/// the kernel opens only once it has reconnected the file's path up to the mount's root);
/// `open MOUNT HANDLE...` opens each handle and prints the file's content, `dir` and the
/// names in a directory, or the errno's name.
pub const HANDLES_APP: &str = r#"
import ctypes, errno, os, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * 128)]
if sys.argv[1] == "encode":
    for path in sys.argv[2:]:
        fh, mnt = FH(), ctypes.c_int()
        fh.bytes = 128
        flags = 0
        if path.startswith("connectable:"):
            path, flags = path[len("connectable:"):], 2  # AT_HANDLE_CONNECTABLE
        if libc.name_to_handle_at(-100, path.encode(), ctypes.byref(fh), ctypes.byref(mnt), flags):
            sys.exit(f"name_to_handle_at {path}: {os.strerror(ctypes.get_errno())}")
        print(f"{fh.type}:{bytes(fh.f[:fh.bytes]).hex()}")
else:
    mount = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)
    for h in sys.argv[3:]:
        kind, raw = h.split(":")
        raw = bytes.fromhex(raw)
        fh = FH()
        fh.bytes, fh.type = len(raw), int(kind)
        ctypes.memmove(fh.f, raw, len(raw))
        fd = libc.open_by_handle_at(mount, ctypes.byref(fh), os.O_RDONLY)
        if fd < 0:
            print(errno.errorcode[ctypes.get_errno()])
        elif stat.S_ISDIR(os.fstat(fd).st_mode):
            print("dir", sorted(os.listdir(fd)))
        else:
            print(os.read(fd, 100).decode())
"#;
