//! An ordinary user's recoverable mount (fusermount3, the user's own keeper): after its server
//! is SIGKILLed and started again by that user, an application's open files, current
//! directory and cached paths go on working. The restarted server cannot open file handles
//! (no CAP_DAC_READ_SEARCH): it finds each inode again by the (parent, name) it was looked up
//! by, kept current through renames (docs/ARCHITECTURE.md, inode.rs).

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Mounted, PATIENCE};

const NOBODY: u32 = 65534;

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// uid 65534's own keeper on `socket`, killed by pid when dropped.
struct UserKeeper(Child);

impl UserKeeper {
    fn start(socket: &Path) -> UserKeeper {
        let child = Command::new(common::workspace_bin("fuse-keeper"))
            .arg("serve")
            .env("FUSE_KEEPER_SOCKET", socket)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the user's keeper never listened");
            std::thread::sleep(Duration::from_millis(10));
        }
        UserKeeper(child)
    }
}

impl Drop for UserKeeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The application, as uid 65534: its current directory deep in the mount, a file open
/// read-write, a file it created and is writing, a file it unlinked while open, a directory
/// renamed; once told (a line on stdin), it uses all of them.
const APP: &str = r#"
import os, sys
mnt = sys.argv[1]
os.chdir(os.path.join(mnt, "d", "e"))
f = open("f", "r+")
assert f.read() == "before\n"
os.rename(os.path.join(mnt, "d", "old"), os.path.join(mnt, "d", "new"))
h = open("created", "w")
h.write("1\n")
h.flush()
u = open("unlinked", "w+")
u.write("u1\n")
u.flush()
os.unlink("unlinked")
ro = os.open("readonly", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o444)
os.write(ro, b"a")
print("ready", flush=True)
sys.stdin.readline()
f.seek(0, 2)
f.write("after\n")
f.flush()
os.fsync(f.fileno())
f.seek(0)
assert f.read() == "before\nafter\n", "the open file"
assert open("f").read() == "before\nafter\n", "a path relative to the current directory"
h.write("2\n")
h.close()
u.write("u2\n")
u.flush()
u.seek(0)
assert u.read() == "u1\nu2\n", "a file unlinked while open"
assert os.fstat(u.fileno()).st_nlink == 0
os.write(ro, b"b")
os.fsync(ro)
assert os.pread(ro, 2, 0) == b"ab", "a file open O_RDWR whose mode is 0444"
assert open("created").read() == "1\n2\n", "a file created before the crash, written after"
with open("g", "w") as g:
    g.write("new file\n")
assert sorted(os.listdir(".")) == ["created", "f", "g", "readonly"], os.listdir(".")
assert open("../new/x").read() == "x\n", "a renamed directory's file, through the parent"
assert os.stat(os.path.join(mnt, "d", "e", "f")).st_size == 13
print("ok", flush=True)
"#;

#[test]
fn an_ordinary_users_recoverable_mount_survives_sigkill_of_its_server() {
    let mut m = Mounted::dirs();
    let run = m.dir.path().join("run");
    fs::create_dir(&run).unwrap();
    chown_nobody(&run);
    for dir in ["d", "d/e", "d/old"] {
        fs::create_dir(m.src(dir)).unwrap();
    }
    fs::write(m.src("d/e/f"), b"before\n").unwrap();
    fs::write(m.src("d/old/x"), b"x\n").unwrap();
    for path in [m.source.clone(), m.mountpoint.clone()] {
        chown_nobody(&path);
    }
    for p in ["d", "d/e", "d/old", "d/e/f", "d/old/x"] {
        chown_nobody(&m.src(p));
    }
    let socket = run.join("keeper.sock");
    let _keeper = UserKeeper::start(&socket);
    let start_server = |m: &mut Mounted| {
        let child = m
            .server_command(&socket, "tag=mine,nokeeper_start")
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        m.server = Some(child);
        m.wait_mounted();
    };
    start_server(&mut m);

    let mut app = Command::new("python3")
        .args(["-c", APP])
        .arg(&m.mountpoint)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(app.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the application did not start");

    // SIGKILL, and the same user starts the same command line again.
    let mut server = m.server.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    start_server(&mut m);
    let log_deadline = Instant::now() + PATIENCE;
    // Serving again once a request by the mounting user is answered.
    loop {
        let listed =
            Command::new("ls").arg(&m.mountpoint).uid(NOBODY).gid(NOBODY).output().unwrap();
        if listed.status.success() {
            break;
        }
        assert!(Instant::now() < log_deadline, "the restarted server never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    app.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let status = app.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(app.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "the application failed after the restart: {rest}{err}");
    assert_eq!(rest, "ok\n");
    assert_eq!(fs::read(m.src("d/e/f")).unwrap(), b"before\nafter\n");
    assert_eq!(fs::read(m.src("d/e/g")).unwrap(), b"new file\n");
}

/// The same mechanism for a root server whose source's file handles do not open what the
/// kernel has let go of: a source that is itself a FUSE mount (a passthroughfs, without export
/// support). The kernel's caches are dropped while the server is down, so that a reopen by
/// file handle would find nothing.
#[test]
fn a_root_server_over_a_fuse_source_finds_inodes_again_by_name() {
    use std::io::{Read, Seek};
    let inner = Mounted::start(&[]);
    let mut m = Mounted::dirs();
    m.source = inner.mountpoint.clone();
    let keeper = common::Keeper::start(m.dir.path());
    let options = "tag=nested,nokeeper_start,nopassthrough";
    let start = |m: &mut Mounted| {
        m.server = Some(m.server_command(&keeper.socket, options).spawn().unwrap());
        m.wait_mounted();
        keeper.wait_serving(m.pid());
    };
    start(&mut m);
    fs::create_dir(m.mnt("d")).unwrap();
    let mut held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.mnt("d/f"))
        .unwrap();
    held.write_all(b"one\n").unwrap();
    fs::rename(m.mnt("d"), m.mnt("d2")).unwrap();
    let mut server = m.server.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    // Unused dentries and inodes go, the inner mount's included (its file handles then name
    // nothing its kernel holds).
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    start(&mut m);
    held.write_all(b"two\n").unwrap();
    held.sync_all().unwrap();
    held.rewind().unwrap();
    let mut text = String::new();
    held.read_to_string(&mut text).unwrap();
    assert_eq!(text, "one\ntwo\n");
    assert_eq!(fs::read(inner.src("d2/f")).unwrap(), b"one\ntwo\n");
}

/// A CREATE that an unprivileged server executed just before it died (`O_RDWR`, mode 0444: how
/// git writes its objects) is resent and settled as done; reopening the file for the caller
/// is refused by its mode, and the server, its owner, gives itself the access for the open
/// (root servers reopen as root). Before, the application got EACCES.
#[test]
fn a_resent_create_of_a_read_only_file_opens_on_an_ordinary_users_mount() {
    let mut m = Mounted::dirs();
    let run = m.dir.path().join("run");
    fs::create_dir(&run).unwrap();
    for path in [run.clone(), m.source.clone(), m.mountpoint.clone()] {
        chown_nobody(&path);
    }
    let socket = run.join("keeper.sock");
    let _keeper = UserKeeper::start(&socket);
    let server = |m: &Mounted, crash: Option<&str>| {
        let mut cmd = m.server_command(&socket, "tag=ro,nokeeper_start");
        if let Some(at) = crash {
            cmd.env("FUSE_CRASH_AT", at);
        }
        cmd.uid(NOBODY).gid(NOBODY).spawn().unwrap()
    };
    m.server = Some(server(&m, Some("CREATE:executed")));
    m.wait_mounted();
    let app = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, sys\n\
             fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o444)\n\
             os.write(fd, b'object')\n\
             os.close(fd)\n",
        )
        .arg(m.mnt("obj"))
        .uid(NOBODY)
        .gid(NOBODY)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server aborts itself once the CREATE is executed; the same user starts it again.
    let status = m.wait_exit(PATIENCE).expect("the server aborted at the crash point");
    assert!(!status.success());
    m.server = Some(server(&m, None));
    let out = app.wait_with_output().unwrap();
    assert!(out.status.success(), "the create failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(m.src("obj")).unwrap(), b"object");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(m.src("obj")).unwrap().permissions().mode() & 0o7777, 0o444);
}
