//! The examples on real mounts: `hello` as root and as an ordinary user, and
//! `hello_recoverable` killed with SIGKILL and started again under a reader that must never see
//! an error. Cleanup never hangs: abort the connection through fusectl, detach the mount, kill
//! the processes by pid.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for something that must happen: only a hang takes this long.
const PATIENCE: Duration = Duration::from_secs(60);
const TEXT: &str = "Hello World!\n";
/// The unprivileged uid the user tests run as.
const NOBODY: u32 = 65534;

fn require_root_and_fuse() {
    assert!(rustix::process::geteuid().is_root(), "these tests mount filesystems: run as root");
    assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse");
}

/// target/PROFILE, where cargo puts the workspace's binaries (this test is in its deps/).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).expect("target/PROFILE/deps/TEST").to_path_buf()
}

/// An example's binary (cargo builds the package's examples for its tests).
fn example(name: &str) -> PathBuf {
    let path = profile_dir().join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes and the mount a test made, torn down whatever happens.
struct Scene {
    dir: tempfile::TempDir,
    mountpoint: PathBuf,
    children: Vec<Child>,
}

impl Scene {
    /// A world-traversable directory with an empty mountpoint owned by `owner`.
    fn new(owner: u32) -> Scene {
        require_root_and_fuse();
        let dir = tempfile::Builder::new().prefix("fuse-examples-").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        std::os::unix::fs::chown(&mountpoint, Some(owner), Some(owner)).unwrap();
        Scene { dir, mountpoint, children: Vec::new() }
    }

    /// A keeper of the test's own (the workspace's `fuse-keeper`), on a socket in the
    /// scene's directory, answering: its socket and child index.
    fn keeper(&mut self) -> (PathBuf, usize) {
        let socket = self.dir.path().join("keeper.sock");
        let bin = profile_dir().join("fuse-keeper");
        assert!(bin.exists(), "{} is not built (cargo build --workspace)", bin.display());
        let keeper = self.spawn(
            Command::new(&bin)
                .arg("serve")
                .env("FUSE_KEEPER_SOCKET", &socket)
                .stderr(Stdio::null()),
        );
        wait_until("the keeper listens", || {
            fuse_keeper_client::KeeperClient::connect(&socket).is_ok()
        });
        (socket, keeper)
    }

    fn mounted(&self) -> bool {
        fuse_transport::is_fuse_mount(&self.mountpoint)
    }

    /// Starts `cmd` and keeps it for the teardown; returns its index.
    fn spawn(&mut self, cmd: &mut Command) -> usize {
        self.children.push(cmd.stdin(Stdio::null()).spawn().expect("spawn"));
        self.children.len() - 1
    }

    /// Waits for the mount, failing at once if child `i` exits first.
    fn wait_mounted(&mut self, i: usize) {
        let deadline = Instant::now() + PATIENCE;
        while !self.mounted() {
            if let Some(status) = self.children[i].try_wait().unwrap() {
                panic!("the server exited before mounting: {status}");
            }
            assert!(Instant::now() < deadline, "no mount after {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, i: usize, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.children[i].id() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Child `i`'s exit status, waiting for it.
    fn wait(&mut self, i: usize) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.children[i].try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "child {i} did not exit after {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = fuse_transport::force_unmount(&self.mountpoint);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The mount's `user_id=` option, from mountinfo (the mount is never stat'ed).
fn mount_owner(mountpoint: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mp = mountpoint.to_str().unwrap();
    info.lines().filter(|line| line.split(' ').nth(4) == Some(mp)).find_map(|line| {
        line.split([',', ' ']).find_map(|opt| opt.strip_prefix("user_id=")?.parse().ok())
    })
}

/// What `hello` shows, read as `uid`: the directory's names, the file's text and size.
fn check_hello(mountpoint: &Path, uid: u32) {
    let script = format!(
        "ls -a {m} && cat {m}/hello.txt && stat -c %s {m}/hello.txt && \
         (echo x > {m}/hello.txt && echo WROTE || echo REFUSED)",
        m = mountpoint.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .uid(uid)
        .gid(uid)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out, format!(".\n..\nhello.txt\n{TEXT}{}\nREFUSED\n", TEXT.len()), "as uid {uid}");
}

#[test]
fn hello_serves_one_read_only_file_as_root_and_unmounts_on_sigterm() {
    let mut scene = Scene::new(0);
    let server = scene.spawn(Command::new(example("hello")).arg(&scene.mountpoint));
    scene.wait_mounted(server);
    assert_eq!(mount_owner(&scene.mountpoint), Some(0));
    check_hello(&scene.mountpoint, 0);
    // Without allow_other, nobody but the mount's owner gets in.
    let other = Command::new("ls")
        .arg(&scene.mountpoint)
        .uid(NOBODY)
        .gid(NOBODY)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!other.success(), "another user listed a mount without allow_other");
    scene.signal(server, rustix::process::Signal::TERM);
    let status = scene.wait(server);
    assert!(status.success(), "hello exited with {status} after SIGTERM");
    assert!(!scene.mounted(), "SIGTERM left the mount behind");
}

#[test]
fn hello_mounts_for_an_ordinary_user_through_fusermount3() {
    let mut scene = Scene::new(NOBODY);
    let mut cmd = Command::new(example("hello"));
    cmd.arg(&scene.mountpoint).uid(NOBODY).gid(NOBODY).env_remove("XDG_RUNTIME_DIR");
    let server = scene.spawn(&mut cmd);
    scene.wait_mounted(server);
    assert_eq!(mount_owner(&scene.mountpoint), Some(NOBODY), "mounted by fusermount3 for the user");
    check_hello(&scene.mountpoint, NOBODY);
    scene.signal(server, rustix::process::Signal::INT);
    let status = scene.wait(server);
    assert!(status.success(), "hello exited with {status} after SIGINT");
    assert!(!scene.mounted(), "SIGINT left the mount behind");
}

/// The FUSE connection number of the mount at `mountpoint`, from mountinfo.
fn conn_id(mountpoint: &Path) -> u32 {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mp = mountpoint.to_str().unwrap();
    let line = info.lines().find(|line| line.split(' ').nth(4) == Some(mp)).expect("mounted");
    let dev = line.split(' ').nth(2).unwrap();
    dev.split(':').nth(1).unwrap().parse().unwrap()
}

/// Requests the kernel holds for the connection that no server has answered (fusectl is
/// mounted first if it is not).
fn waiting(conn: u32) -> u32 {
    fuse_transport::ensure_fusectl().expect("fusectl");
    fuse_transport::waiting_requests(conn).expect("the connection's waiting count")
}

#[test]
fn hello_recoverable_is_killed_and_restarted_under_a_reader_that_sees_no_error() {
    let mut scene = Scene::new(0);
    let (socket, keeper) = scene.keeper();
    let mountpoint = scene.mountpoint.clone();
    let server_cmd = || {
        let mut cmd = Command::new(example("hello_recoverable"));
        cmd.arg(&mountpoint)
            .arg("hello-test")
            .env("FUSE_KEEPER_SOCKET", &socket)
            .stderr(Stdio::piped());
        cmd
    };
    let first = scene.spawn(&mut server_cmd());
    scene.wait_mounted(first);
    let conn = conn_id(&scene.mountpoint);

    // A reader opening and reading the file in a loop: every open reaches the server (no
    // FOPEN_KEEP_CACHE), so it waits while there is none.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let file = scene.mountpoint.join("hello.txt");
    let reader = {
        let (stop, reads) = (stop.clone(), reads.clone());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::SeqCst) {
                match std::fs::read_to_string(&file) {
                    Ok(text) if text == TEXT => reads.fetch_add(1, Ordering::SeqCst),
                    Ok(text) => return Err(format!("read {text:?}")),
                    Err(err) => return Err(format!("read failed: {err}")),
                };
            }
            Ok(())
        })
    };
    wait_until("the reader reads", || reads.load(Ordering::SeqCst) >= 10);

    scene.signal(first, rustix::process::Signal::KILL);
    let killed = scene.wait(first);
    assert!(!killed.success(), "the first server was killed: {killed}");
    // The reader's next request waits in the kernel, held for the next server.
    wait_until("a request waits for the next server", || waiting(conn) > 0);
    let before = reads.load(Ordering::SeqCst);
    assert!(scene.mounted(), "the mount outlives its server");

    let second = scene.spawn(&mut server_cmd());
    wait_until("the reader goes on", || reads.load(Ordering::SeqCst) >= before + 10);
    stop.store(true, Ordering::SeqCst);
    let read = reader.join().unwrap();
    assert_eq!(read, Ok(()), "the reader saw an error across the crash");
    assert_eq!(conn_id(&scene.mountpoint), conn, "the same connection, not a new mount");

    // The new server took the connection over (it did not mount again), and stops cleanly.
    scene.signal(second, rustix::process::Signal::TERM);
    let status = scene.wait(second);
    assert!(status.success(), "hello_recoverable exited with {status}");
    let mut log = String::new();
    std::io::Read::read_to_string(scene.children[second].stderr.as_mut().unwrap(), &mut log)
        .unwrap();
    assert!(log.contains("serving (Attached"), "the second server attached: {log}");
    assert!(!scene.mounted(), "SIGTERM unmounted");
    scene.signal(keeper, rustix::process::Signal::TERM);
}

/// What `ls -lR`-like listing shows of a tree: names, types, modes, owners, sizes, link
/// counts, symlink targets, file contents and user xattrs, in order.
fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for path in names {
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mut line =
                format!("{rel} {:o} {}:{} {} {}", m.mode(), m.uid(), m.gid(), m.nlink(), m.len());
            if m.file_type().is_symlink() {
                line += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
            } else if m.is_file() {
                line += &format!(" {:?}", std::fs::read(&path).unwrap());
                let mut value = [0u8; 64];
                if let Ok(n) = rustix::fs::getxattr(&path, "user.note", &mut value[..]) {
                    line += &format!(" user.note={:?}", &value[..n]);
                }
            } else if m.is_dir() {
                dirs.push(path);
            }
            out.push(line);
        }
    }
    out
}

/// memfs keeps everything in the state store: killed with SIGKILL and started again with the
/// same command line, the new server shows the same tree (files, directories, hard links,
/// symlinks, modes, owners, xattrs, a file unlinked while open), and a writer appending
/// across the kill loses nothing and doubles nothing.
#[test]
fn memfs_contents_survive_kill_9_of_its_server() {
    let mut scene = Scene::new(0);
    let (socket, _keeper) = scene.keeper();
    let mountpoint = scene.mountpoint.clone();
    let server_cmd = || {
        let mut cmd = Command::new(example("memfs"));
        cmd.args(["-o", "allow_other,tag=memfs-test,nokeeper_start", "memfs"])
            .arg(&mountpoint)
            .env("FUSE_KEEPER_SOCKET", &socket)
            .stderr(Stdio::piped());
        cmd
    };
    let first = scene.spawn(&mut server_cmd());
    scene.wait_mounted(first);
    let root = scene.mountpoint.clone();
    let m = |p: &str| root.join(p);
    std::fs::create_dir_all(m("a/b/c")).unwrap();
    std::fs::write(m("a/f"), vec![7u8; 10_000]).unwrap();
    std::fs::hard_link(m("a/f"), m("a/b/f2")).unwrap();
    std::os::unix::fs::symlink("../f", m("a/b/link")).unwrap();
    std::fs::write(m("a/b/c/small"), b"hello").unwrap();
    std::fs::set_permissions(m("a/b/c/small"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(m("a/b/c/small"), Some(NOBODY), Some(NOBODY)).unwrap();
    rustix::fs::setxattr(m("a/f"), "user.note", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
    let mut open_unlinked = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m("gone"))
        .unwrap();
    std::io::Write::write_all(&mut open_unlinked, b"still here").unwrap();
    std::fs::remove_file(m("gone")).unwrap();
    let before = snapshot(&root);

    // A writer appending numbered lines across the kill.
    let log = m("log");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|e| e.to_string())?;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                std::io::Write::write_all(&mut f, format!("{i}\n").as_bytes())
                    .map_err(|e| format!("line {i}: {e}"))?;
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
            Ok(i)
        })
    };
    wait_until("the writer writes", || written.load(Ordering::SeqCst) >= 100);
    scene.signal(first, rustix::process::Signal::KILL);
    let _ = scene.wait(first);
    let at_kill = written.load(Ordering::SeqCst);
    let second = scene.spawn(&mut server_cmd());
    wait_until("the writer goes on", || written.load(Ordering::SeqCst) >= at_kill + 100);
    stop.store(true, Ordering::SeqCst);
    let lines = writer.join().unwrap().expect("the writer saw no error");
    let text = std::fs::read_to_string(m("log")).unwrap();
    let got: Vec<u64> = text.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got, (0..lines).collect::<Vec<_>>(), "every line once, in order");
    std::fs::remove_file(m("log")).unwrap();

    assert_eq!(snapshot(&root), before, "the tree after the restart");
    let mut rest = String::new();
    std::io::Seek::seek(&mut open_unlinked, std::io::SeekFrom::Start(0)).unwrap();
    std::io::Read::read_to_string(&mut open_unlinked, &mut rest).unwrap();
    assert_eq!(rest, "still here", "a file unlinked while open, through its open fd");
    drop(open_unlinked);

    scene.signal(second, rustix::process::Signal::TERM);
    assert!(scene.wait(second).success(), "memfs stops cleanly on SIGTERM");
    let mut log = String::new();
    std::io::Read::read_to_string(scene.children[second].stderr.as_mut().unwrap(), &mut log)
        .unwrap();
    assert!(log.contains("serving (Attached"), "the second server attached: {log}");
}
