//! Attacks on a root keeper by a hostile uid (65534), against real FUSE mounts: each test
//! mounts the attack, checks that it is refused, and checks that while it is in place root's
//! `fuse-keeper ls` answers within 1 s. The attacker is a thread that drops to uid 65534 with a
//! per-thread `setresuid` (the keeper sees the credentials of the thread that connected), or a
//! child process run as 65534.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Keeper, PATIENCE, StopKeeperAt, connect_raw, wait_until};
use fuse_keeper::protocol::{self, MAX_MESSAGE, Reply, Request, decode_reply, encode_request};

const NOBODY: u32 = 65534;

/// The bound the issue sets on root's `fuse-keeper ls` while an attack is in place.
const LS_BOUND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Run `f` on a thread whose real, effective and saved uid and gid are `uid` (the raw syscalls
/// change the calling thread only), and return its result.
fn as_uid<T: Send + 'static>(uid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let id = rustix::process::Gid::from_raw(uid);
        rustix::thread::set_thread_res_gid(id, id, id).expect("setresgid");
        let id = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(id, id, id).expect("setresuid");
        f()
    })
    .join()
    .expect("the attacker thread")
}

/// A raw connection to `keeper` made by uid `uid`.
fn connect_as(keeper: &Keeper, uid: u32) -> OwnedFd {
    let path = keeper.socket.clone();
    as_uid(uid, move || connect_raw(&path)).expect("connect as another uid")
}

fn exchange(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Reply {
    protocol::send_message(sock.as_fd(), bytes, fds).expect("send");
    let r = protocol::recv_message(sock.as_fd(), MAX_MESSAGE, 17).expect("recv").expect("a reply");
    decode_reply(&r.bytes, r.fds.len()).expect("a well-formed reply")
}

fn errno_of(reply: Reply) -> i32 {
    match reply {
        Reply::Error { errno, .. } => errno,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

/// Root's `fuse-keeper ls` against `keeper`: it must exit successfully within [`LS_BOUND`]
/// (measured from the spawn; killed and the test failed otherwise). Returns its stdout.
fn ls_answers_promptly(keeper: &Keeper, what: &str) -> Vec<u8> {
    let started = Instant::now();
    let mut child = keeper
        .command(&["ls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fuse-keeper ls");
    let done = wait_until(LS_BOUND, || matches!(child.try_wait(), Ok(Some(_))));
    let elapsed = started.elapsed();
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: root's `fuse-keeper ls` did not answer within {LS_BOUND:?}");
    }
    let out = child.wait_with_output().expect("ls output");
    assert!(out.status.success(), "{what}: ls failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(elapsed < LS_BOUND, "{what}: ls took {elapsed:?}");
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// 10. Test-only subcommands in the production binary

#[test]
fn production_binary_has_no_test_subcommands() {
    let keeper = Keeper::start();
    let help = keeper.command(&["--help"]).output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("\n  ls "), "{text}");
    for hidden in ["register-test", "attach-test"] {
        assert!(!text.contains(hidden), "--help lists {hidden}: {text}");
        // Refused as an unknown command (usage error), as root and as nobody.
        let out = keeper.command(&[hidden, "tag"]).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{hidden} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unrecognized subcommand"), "{hidden}: {stderr}");
        let out = keeper.command(&[hidden, "tag"]).uid(NOBODY).gid(NOBODY).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{hidden} accepted for nobody");
        ls_answers_promptly(&keeper, hidden);
    }
    // Nothing was registered by them.
    assert!(keeper.list().is_empty());
}

/// This binary re-run as a helper process (common::run_helper); does nothing when run as a test.
#[test]
#[ignore = "a helper process that other tests start"]
fn keeper_test_helper() {
    common::run_helper();
}

// ---------------------------------------------------------------------------------------------
// 9. Terminal injection through `fuse-keeper ls`

/// A REGISTER request of `tag` at `mountpoint`, rescued by its owner.
fn register_request(tag: &str, mountpoint: &[u8], rescue_uid: u32) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    encode_request(&Request::Register(protocol::Register {
        tag: tag.into(),
        rescue_uid,
        mountpoint: std::ffi::OsStr::from_bytes(mountpoint).into(),
        conn_id: 0,
        recovery_timeout_ms: 0,
        negotiation: Vec::new(),
        flags: 0,
    }))
}

/// True if `out` holds a byte that a terminal may act on: C0 controls other than the line
/// ends, DEL, or a UTF-8 encoded C1 control (U+0080..U+009F, bytes C2 80..C2 9F).
fn has_raw_control(out: &[u8]) -> bool {
    out.iter().any(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
        || out.windows(2).any(|w| w[0] == 0xc2 && (0x80..0xa0).contains(&w[1]))
}

#[test]
fn ls_escapes_registrant_chosen_tags_and_mountpoints() {
    let keeper = Keeper::start();
    let attacker = connect_as(&keeper, NOBODY);
    let (dev, state) = (common::open_fuse(), common::memfd(b""));
    let fds = [dev.as_fd(), state.as_fd()];
    // Control characters in a tag are refused outright.
    for tag in ["evil\x1b[2J", "line\nbreak", "c1\u{9b}2J"] {
        let reply = exchange(&attacker, &register_request(tag, b"/nonexistent/x", NOBODY), &fds);
        assert_eq!(errno_of(reply), libc::EINVAL, "tag {tag:?}");
    }
    // A mountpoint may hold any byte but NUL: it is registered, and shown escaped.
    let mountpoint = b"/nonexistent/\x1b[2J\x1b]0;owned\x07\nfake-tag  0  0  /  serving\\\xff";
    let reply = exchange(&attacker, &register_request("evil\u{202e}txt", mountpoint, NOBODY), &fds);
    assert!(matches!(reply, Reply::Ok), "{reply:?}");

    let out = ls_answers_promptly(&keeper, "an escape-laden mountpoint is registered");
    let text = String::from_utf8(out.clone()).expect("ls prints UTF-8");
    assert!(!has_raw_control(&out), "raw control bytes reach the terminal: {text:?}");
    assert_eq!(text.lines().count(), 2, "one header and one entry: {text}");
    assert!(
        text.contains(
            "/nonexistent/\\x1b[2J\\x1b]0;owned\\x07\\nfake-tag  0  0  /  serving\\\\\\xff"
        ),
        "{text}"
    );
    assert!(text.contains("evil\\u{202e}txt"), "{text}");

    let json = keeper.command(&["ls", "--json"]).output().unwrap();
    assert!(json.status.success());
    assert!(!has_raw_control(json.stdout.trim_ascii_end()), "{:?}", json.stdout);
    let json = String::from_utf8(json.stdout).unwrap();
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(json.contains("\\u001b[2J\\u001b]0;owned\\u0007\\nfake-tag"), "{json}");
    assert!(json.contains("\"tag\":\"evil\\u202etxt\""), "{json}");

    // Nor does the keeper's log carry them raw.
    let log = keeper.log_text();
    assert!(log.contains("registered"), "{log}");
    assert!(!has_raw_control(log.as_bytes()), "raw control bytes in the log: {log:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. Socket takeover through the socket's directory or the log file

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn keeper_started_on_demand_under_umask_0_makes_its_directory_0755() {
    let base = common::reachable_tempdir();
    let socket = base.path().join("run/fuse-keeper/keeper.sock");
    let stop = StopKeeperAt(socket.clone());
    // The spawning process runs with umask 0, as passthroughfs does.
    let out = common::helper_command(&[], "spawn", &[socket.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    for dir in [base.path().join("run"), base.path().join("run/fuse-keeper")] {
        assert_eq!(mode_of(&dir), 0o755, "{}", dir.display());
    }
    assert_eq!(mode_of(&socket), 0o666, "root's socket");
    assert_eq!(mode_of(&base.path().join("run/fuse-keeper/keeper.sock.log")), 0o600);
    // Nobody cannot put a name of its own there.
    let squat = socket.with_file_name("squat");
    let created = as_uid(NOBODY, move || std::fs::File::create(&squat).map(drop));
    assert_eq!(created.unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
    let mut cmd = Command::new(common::BIN);
    cmd.arg("ls").env("FUSE_KEEPER_SOCKET", &socket);
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(out.status.success() && started.elapsed() < LS_BOUND, "{:?}", started.elapsed());
    drop(stop);
}

#[test]
fn keeper_refuses_a_socket_directory_others_can_write() {
    let keeper = Keeper::start();
    let base = common::reachable_tempdir();
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let theirs = base.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    for (dir, why) in [(&open, "writable by others"), (&theirs, "owned by uid 65534")] {
        let socket = dir.join("keeper.sock");
        let _stop = StopKeeperAt(socket.clone());
        let mut serve = Command::new(common::BIN)
            .arg("serve")
            .env("FUSE_KEEPER_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A keeper that serves there does not exit: stopped, and the test fails.
        let exited = wait_until(PATIENCE, || matches!(serve.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = serve.kill();
        }
        let out = serve.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(exited && !out.status.success(), "served in {}: {stderr}", dir.display());
        assert!(stderr.contains("refusing to serve in") && stderr.contains(why), "{stderr}");
        assert!(!socket.exists());
        // Starting one on demand there is refused too, before any log is opened.
        let out =
            common::helper_command(&[], "spawn", &[socket.to_str().unwrap()]).output().unwrap();
        assert!(!out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("refusing to serve in"), "{stdout}");
        assert!(!dir.join("keeper.sock.log").exists());
        ls_answers_promptly(&keeper, why);
    }
    // A sticky world-writable directory (/tmp's mode) is fine: only a name's owner may
    // replace it.
    let sticky = base.path().join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let socket = sticky.join("keeper.sock");
    let _stop = StopKeeperAt(socket.clone());
    let out = common::helper_command(&[], "spawn", &[socket.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_keeper_log_is_not_opened_through_a_symlink() {
    let keeper = Keeper::start();
    let base = common::reachable_tempdir();
    let victim = base.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let socket = base.path().join("keeper.sock");
    std::os::unix::fs::symlink(&victim, base.path().join("keeper.sock.log")).unwrap();
    let _stop = StopKeeperAt(socket.clone());
    let out = common::helper_command(&[], "spawn", &[socket.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "spawned with a symlinked log: {stdout}");
    assert!(stdout.contains("is a symlink"), "{stdout}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(mode_of(&victim), 0o644);
    assert!(!socket.exists());
    // A FIFO in its place is refused as well (and opening it does not block).
    std::fs::remove_file(base.path().join("keeper.sock.log")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        base.path().join("keeper.sock.log"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let out = common::helper_command(&[], "spawn", &[socket.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && stdout.contains("not a regular file"), "{stdout}");
    ls_answers_promptly(&keeper, "a symlinked log");
}

// ---------------------------------------------------------------------------------------------
// Mounts for the attacks

/// A FUSE mount at `path` mounted by root for `uid` (`user_id=`), whose INIT is never answered;
/// aborted and detached when dropped. The device fd is returned beside it.
struct UserFuse {
    path: PathBuf,
    conn_id: u32,
}

impl UserFuse {
    fn new(path: &Path, uid: u32) -> (UserFuse, OwnedFd) {
        let dev = common::open_fuse();
        let data = format!(
            "fd={},rootmode=40000,user_id={uid},group_id={uid}",
            std::os::fd::AsRawFd::as_raw_fd(&dev)
        );
        rustix::mount::mount(
            "attack-test",
            path,
            "fuse.attack-test",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            std::ffi::CString::new(data).unwrap().as_c_str(),
        )
        .expect("mount fuse");
        let conn_id = fuse_transport::connection_id(path).expect("connection id");
        (UserFuse { path: path.to_owned(), conn_id }, dev)
    }

    fn is_mounted(&self) -> bool {
        fuse_transport::is_fuse_mount(&self.path)
    }
}

impl Drop for UserFuse {
    fn drop(&mut self) {
        let _ = fuse_transport::force_unmount(&self.path);
    }
}

/// A root-owned tmpfs mounted at `path` (a stand-in for a system mount such as /boot), detached
/// when dropped.
struct Victim(PathBuf);

impl Victim {
    fn new(path: &Path) -> Victim {
        std::fs::create_dir(path).unwrap();
        rustix::mount::mount(
            "victim",
            path,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"mode=0755",
        )
        .expect("mount tmpfs");
        std::fs::write(path.join("kernel"), b"precious").unwrap();
        Victim(path.to_owned())
    }

    fn is_mounted(&self) -> bool {
        std::fs::read(self.0.join("kernel")).is_ok_and(|c| c == b"precious")
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Unmounting something else through `..` or a symlink

#[test]
fn mountpoints_with_dot_dot_or_symlinks_cannot_aim_teardown_elsewhere() {
    let keeper = Keeper::start();
    let base = common::reachable_tempdir();
    let b = base.path();
    // base/boot: the victim. base/home: the attacker's home, with its own FUSE mount at
    // home/boot and home/l -> base/sub, so that home/l/../boot is home/boot as text (what
    // mountinfo shows) but base/boot as a path walk (what umount2 follows).
    let victim = Victim::new(&b.join("boot"));
    std::fs::create_dir(b.join("sub")).unwrap();
    let home = b.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::create_dir(home.join("boot")).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(home.join("boot"), Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::symlink(b.join("sub"), home.join("l")).unwrap();
    let (theirs, dev) = UserFuse::new(&home.join("boot"), NOBODY);
    let state = common::memfd(b"");
    let fds = [dev.as_fd(), state.as_fd()];
    let attacker = connect_as(&keeper, NOBODY);
    let path = |s: &str| format!("{}/{s}", b.display()).into_bytes();
    let register = |tag: &str, mountpoint: &[u8]| {
        let request = register_request_for(tag, mountpoint, NOBODY, theirs.conn_id);
        exchange(&attacker, &request, &fds)
    };
    for (tag, bad) in [
        ("dotdot", path("home/l/../boot")),
        ("dot", path("home/./boot")),
        ("empty", path("home//boot")),
        ("trailing", path("home/boot/")),
        ("relative", b"home/boot".to_vec()),
    ] {
        let reply = register(tag, &bad);
        let Reply::Error { errno, message } = reply else { panic!("{tag}: registered") };
        assert_eq!(errno, libc::EINVAL, "{tag}: {message}");
        assert!(message.contains("absolute"), "{tag}: {message}");
    }
    // A symlink anywhere in the path: refused too, saying which component.
    std::fs::create_dir(b.join("sub/boot")).unwrap();
    let Reply::Error { errno, message } = register("link", &path("home/l/boot")) else {
        panic!("registered through a symlink")
    };
    assert_eq!(errno, libc::EINVAL, "{message}");
    assert!(message.contains("symlink") && message.contains("home/l"), "{message}");
    assert!(keeper.list().is_empty());

    // ABORT/UMOUNT of those paths as targets: nothing the keeper holds, and not (as text) a
    // FUSE mount: ENOENT, for the attacker and for root alike.
    let root = connect_raw(&keeper.socket).unwrap();
    for target in [path("home/l/../boot"), path("home/l/boot"), path("boot")] {
        let target = String::from_utf8(target).unwrap();
        for kind in
            [Request::Abort { target: target.clone() }, Request::Umount { target: target.clone() }]
        {
            let reply = exchange(&attacker, &encode_request(&kind), &[]);
            assert!(matches!(errno_of(reply), libc::ENOENT | libc::EPERM), "{target}");
        }
        let reply =
            exchange(&root, &encode_request(&Request::Umount { target: target.clone() }), &[]);
        assert_eq!(errno_of(reply), libc::ENOENT, "{target}");
    }
    assert!(victim.is_mounted(), "the victim was unmounted");
    ls_answers_promptly(&keeper, "the attacker's registrations were refused");

    // Its real mountpoint registers; its UMOUNT detaches its own mount, and only that.
    let reply = register("own", &path("home/boot"));
    assert!(matches!(reply, Reply::Ok), "{reply:?}");
    let reply =
        exchange(&attacker, &encode_request(&Request::Umount { target: "own".into() }), &[]);
    assert!(matches!(reply, Reply::Ok), "{reply:?}");
    assert!(!theirs.is_mounted(), "its own mount was not detached");
    assert!(victim.is_mounted(), "the victim was unmounted");
    assert!(keeper.log_text().contains("connection torn down"), "{}", keeper.log_text());
}

/// [`register_request`] with a connection number.
fn register_request_for(tag: &str, mountpoint: &[u8], rescue_uid: u32, conn_id: u32) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    encode_request(&Request::Register(protocol::Register {
        tag: tag.into(),
        rescue_uid,
        mountpoint: std::ffi::OsStr::from_bytes(mountpoint).into(),
        conn_id,
        recovery_timeout_ms: 0,
        negotiation: Vec::new(),
        flags: 0,
    }))
}

// ---------------------------------------------------------------------------------------------
// 3. Freezing the keeper with a stalled FUSE mount

/// A FUSE mount (root's) whose server answers INIT, the LOOKUP of `f` (a regular file, its
/// attributes valid for no time) and its OPEN, and then nothing: no GETATTR (an `fstat` of the
/// file waits), no FLUSH (every `close` of it waits), no LOOKUP of anything else (a path walk
/// under it waits). Aborted and detached when dropped, which releases every waiter.
struct Stalled {
    mount: UserFuse,
    _dir: tempfile::TempDir,
    server: Option<std::thread::JoinHandle<()>>,
    /// The opened file (closed only after the abort: its close waits for a FLUSH answer).
    file: Option<OwnedFd>,
}

impl Stalled {
    fn file(&self) -> BorrowedFd<'_> {
        self.file.as_ref().unwrap().as_fd()
    }

    fn new() -> Stalled {
        let dir = common::reachable_tempdir();
        let path = dir.path().join("stalled");
        std::fs::create_dir(&path).unwrap();
        let (mount, dev) = UserFuse::new(&path, 0);
        let server = std::thread::spawn(move || serve_then_stall(dev));
        let file = std::fs::File::open(path.join("f")).expect("open the file on the mount");
        Stalled { mount, _dir: dir, server: Some(server), file: Some(file.into()) }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = fuse_transport::abort_connection(self.mount.conn_id);
        self.file = None;
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

fn serve_then_stall(dev: OwnedFd) {
    use fuse_abi::{fuse_entry_out, fuse_in_header, fuse_init_out, fuse_opcode, fuse_open_out};
    use zerocopy::{FromBytes, IntoBytes};
    let mut buf = vec![0u8; 1 << 20];
    let reply = |unique: u64, payload: &[u8]| {
        let header =
            fuse_abi::fuse_out_header { len: (16 + payload.len()) as u32, error: 0, unique };
        let iov = [std::io::IoSlice::new(header.as_bytes()), std::io::IoSlice::new(payload)];
        let _ = fuse_transport::write_reply(dev.as_fd(), &iov);
    };
    // Until the connection is aborted (the read fails).
    while let Ok(Some(n)) = fuse_transport::read_request(dev.as_fd(), &mut buf) {
        let Ok((h, body)) = fuse_in_header::read_from_prefix(&buf[..n]) else { continue };
        match fuse_opcode::try_from(h.opcode) {
            Ok(fuse_opcode::FUSE_INIT) => {
                let init = fuse_init_out {
                    major: 7,
                    minor: 31,
                    max_readahead: 65536,
                    max_write: 65536,
                    time_gran: 1,
                    ..Default::default()
                };
                reply(h.unique, init.as_bytes());
            }
            Ok(fuse_opcode::FUSE_LOOKUP) if h.nodeid == 1 && body.starts_with(b"f\0") => {
                let mut entry =
                    fuse_entry_out { nodeid: 2, entry_valid: 86400, ..Default::default() };
                entry.attr.ino = 2;
                entry.attr.mode = libc::S_IFREG | 0o644;
                entry.attr.nlink = 1;
                reply(h.unique, entry.as_bytes());
            }
            Ok(fuse_opcode::FUSE_OPEN) if h.nodeid == 2 => {
                reply(h.unique, fuse_open_out { fh: 1, ..Default::default() }.as_bytes());
            }
            // Everything else is left unanswered.
            _ => {}
        }
    }
}

/// A message the decoder refuses, with fds.
fn garbage() -> Vec<u8> {
    b"not a keeper message at all".to_vec()
}

/// Runs root's `fuse-keeper ls` from a helper process started before this process held any fd
/// on the stalled mount (this process cannot start programs then: exec would close that fd, and
/// the close waits for a FLUSH answer).
struct LsRunner {
    proc: common::Proc,
    stdin: std::process::ChildStdin,
    answers: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

impl LsRunner {
    fn new(keeper: &Keeper) -> LsRunner {
        let mut cmd = keeper.helper(&[], "ls-runner", &[]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut proc = common::Proc { child: cmd.spawn().expect("spawn the ls runner") };
        let stdin = proc.child.stdin.take().unwrap();
        let stderr = proc.child.stderr.take().unwrap();
        use std::io::BufRead;
        LsRunner { proc, stdin, answers: std::io::BufReader::new(stderr).lines() }
    }

    /// As [`ls_answers_promptly`]: root's `ls` exits 0 within [`LS_BOUND`], measured here
    /// around the whole round trip.
    fn answers_promptly(&mut self, what: &str) {
        use std::io::Write;
        let started = Instant::now();
        writeln!(self.stdin, "ls").expect("ask the ls runner");
        let line = loop {
            let line = self.answers.next().expect("the ls runner answers").unwrap();
            if line.starts_with("ls ") {
                break line;
            }
        };
        let elapsed = started.elapsed();
        assert!(line.starts_with("ls 0 "), "{what}: ls failed: {line}");
        assert!(elapsed < LS_BOUND, "{what}: ls took {elapsed:?} ({line})");
    }
}

#[test]
fn a_stalled_fuse_mount_cannot_freeze_the_keeper() {
    let keeper = Keeper::start();
    // Started while this process may still start programs (see LsRunner).
    let mut ls = LsRunner::new(&keeper);
    let mut others = keeper.registrant("others", &[], common::open_fuse(), None);
    let stalled = Stalled::new();
    let mnt = stalled.mount.path.clone();
    let attacker = connect_as(&keeper, NOBODY);
    let dev = common::open_fuse();
    let f = stalled.file();
    // The file on the stalled mount as the device, as the state, as a clone, on garbage: each is
    // refused (a state must be a sealed memfd: F_GET_SEALS answers without asking the FUSE
    // server), and each close the keeper makes of it waits for a FLUSH that never comes.
    let register = |tag: &str| register_request_for(tag, b"/nonexistent/stalled", NOBODY, 0);
    let add = encode_request(&Request::AddDevice { tag: "none".into(), index: 1 });
    let unregister = encode_request(&Request::Unregister { tag: "as-state".into() });
    for round in 0..4 {
        let what = format!("round {round}");
        assert_eq!(errno_of(exchange(&attacker, &register("as-device"), &[f, f])), libc::EBADF);
        assert_eq!(errno_of(exchange(&attacker, &add, &[f])), libc::ENOENT);
        assert_eq!(errno_of(exchange(&attacker, &garbage(), &[f])), libc::EPROTO);
        let reply = exchange(&attacker, &register("as-state"), &[dev.as_fd(), f]);
        assert_eq!(errno_of(reply), libc::EBADF, "{what}");
        assert_eq!(errno_of(exchange(&attacker, &unregister, &[])), libc::ENOENT, "{what}");
        ls.answers_promptly(&what);
    }
    // Far more stuck closes than one uid may have pending: refused (EAGAIN) once there is no
    // room, never blocking; every message is answered.
    let sixteen = [f; 16];
    let mut refused = 0;
    for _ in 0..16 {
        match exchange(&attacker, &garbage(), &sixteen) {
            Reply::Error { errno: libc::EAGAIN, .. } => refused += 1,
            Reply::Error { errno: libc::EPROTO, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(refused > 0, "the closer queue never filled");
    ls.answers_promptly("with the closer saturated");

    // Paths under the stalled mount, where a lookup would wait: as ABORT/UMOUNT targets and as
    // a REGISTER mountpoint, answered at once.
    for target in [mnt.join("f/x"), mnt.join("sub/deeper"), mnt.join("f")] {
        let target = target.to_str().unwrap().to_owned();
        let kinds = [Request::Abort { target: target.clone() }, Request::Umount { target }];
        for kind in kinds {
            let reply = exchange(&attacker, &encode_request(&kind), &[]);
            assert_eq!(errno_of(reply), libc::ENOENT);
            let root = connect_raw(&keeper.socket).unwrap();
            assert_eq!(errno_of(exchange(&root, &encode_request(&kind), &[])), libc::ENOENT);
        }
    }
    let under = mnt.join("sub/mnt");
    let request = register_request_for("under", under.as_os_str().as_encoded_bytes(), NOBODY, 0);
    let state = common::memfd(b"");
    let reply = exchange(&attacker, &request, &[dev.as_fd(), state.as_fd()]);
    assert!(matches!(reply, Reply::Ok), "{reply:?}");
    ls.answers_promptly("paths under the stalled mount");

    // Others still register (fds that close at once: no closer room needed) and attach.
    let (dev, state) = (common::open_fuse(), common::memfd(b""));
    let mut root = keeper.client();
    let reg = fuse_keeper::Registration {
        tag: "root's".into(),
        rescue_uid: 0,
        mountpoint: "/nonexistent/root".into(),
        conn_id: 0,
        recovery_timeout: None,
        negotiation: Vec::new(),
        fail_on_timeout: false,
    };
    root.register(&reg, dev.as_fd(), state.as_fd()).expect("root registers");
    others.kill();
    assert!(keeper.wait_state("others", fuse_keeper::ConnState::Orphaned, PATIENCE));
    assert!(keeper.client().attach("others").unwrap().is_some());
    ls.answers_promptly("after others registered and attached");
    drop(ls.proc);
    // Aborting the stalled connection releases every stuck close.
    drop(stalled);
    let settled = wait_until(PATIENCE, || {
        common::fd_count(keeper.proc.pid()) < 64 && keeper.client().list().is_ok()
    });
    assert!(settled, "keeper fds after the abort: {}", common::fd_count(keeper.proc.pid()));
}

// ---------------------------------------------------------------------------------------------
// 8. Cheap exhaustion

/// A REGISTER of `tag` by `sock` with `dev` and `state`: its reply.
fn register_on(sock: &OwnedFd, tag: &str, dev: &OwnedFd, state: &OwnedFd) -> Reply {
    exchange(sock, &register_request(tag, b"/nonexistent", 0), &[dev.as_fd(), state.as_fd()])
}

/// A sealed memfd with `bytes` of data written (allocated, not sparse).
fn filled_memfd(bytes: usize) -> OwnedFd {
    common::memfd(&vec![0x5a; bytes])
}

/// The `register-as` helper (common::run_helper) run in a user namespace that `creator` (65534
/// through setpriv, or root) makes with `unshare --user`, whose uid and gid maps root then
/// writes as `map` (lines "inside outside count"; the creator must be 0 inside, so that the
/// helper it then starts may change uids); it registers each `TAG:UID` (a uid inside) in
/// turn. Returns the helper (killed when dropped) and its `TAG ok` / `TAG errno=N` lines.
fn register_from_user_namespace(
    keeper: &Keeper,
    creator: u32,
    map: &str,
    regs: &[&str],
) -> (common::Proc, Vec<String>) {
    use std::io::{BufRead, Write};
    let dir = common::reachable_tempdir();
    let fifo = dir.path().join("go");
    let mode = rustix::fs::Mode::from_raw_mode(0o666);
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, mode, 0)
        .expect("mkfifo");
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The shell waits for the maps before it starts the helper: a program started in a user
    // namespace with no map has no capabilities there.
    let script = format!("read _ < '{}'; exec \"$0\" \"$@\"", fifo.display());
    let mut wrapper = match creator {
        0 => vec![],
        NOBODY => vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
        other => panic!("no wrapper for uid {other}"),
    };
    wrapper.extend(["unshare", "--user", "sh", "-c", &script]);
    let mut cmd = keeper.helper(&wrapper, "register-as", regs);
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    cmd.stdin(Stdio::from(OwnedFd::from(theirs))).stdout(Stdio::piped());
    let mut helper = common::Proc { child: cmd.spawn().expect("spawn the helper") };
    common::hand_fds(&ours, &[common::open_fuse()]);
    let pid = helper.pid();
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    let entered = wait_until(PATIENCE, || {
        std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|ns| ns != own)
    });
    assert!(entered, "the helper did not enter a user namespace of its own");
    std::fs::write(format!("/proc/{pid}/uid_map"), map).expect("write uid_map");
    std::fs::write(format!("/proc/{pid}/gid_map"), map).expect("write gid_map");
    let mut go = None;
    let opened = wait_until(PATIENCE, || {
        // ENXIO until the shell opens the fifo to read.
        go =
            std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo).ok();
        go.is_some()
    });
    assert!(opened, "the helper's shell never waited on the fifo");
    go.unwrap().write_all(b"go\n").unwrap();
    let stdout = helper.child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("the helper's output");
        if line == "done" {
            return (helper, lines);
        }
        if regs
            .iter()
            .any(|r| r.split(':').next().is_some_and(|t| line.starts_with(&format!("{t} "))))
        {
            lines.push(line);
        }
    }
    panic!("the helper exited before it was done: {lines:?}\nkeeper log:\n{}", keeper.log_text());
}

#[test]
fn the_uids_of_a_users_container_share_that_users_quota() {
    let keeper = Keeper::start_with(&["--max-tags-per-uid", "3"]);
    // uid 65534's container: 0 inside is 65534, 1.. inside are 200001.. (a subuid range).
    let map = "0 65534 1\n1 200001 9\n";
    let regs = ["a:1", "b:2", "c:3", "d:4"];
    let (_helper, lines) = register_from_user_namespace(&keeper, NOBODY, map, &regs);
    let quota = format!("errno={}", libc::EDQUOT);
    assert_eq!(lines, ["a ok", "b ok", "c ok", &format!("d {quota}")]);
    let owners: Vec<u32> = keeper.list().iter().map(|e| e.owner_uid).collect();
    assert!(owners.contains(&200001) && owners.contains(&200003), "{owners:?}");
    // 65534 itself is the same principal: its quota is used up too.
    let (dev, state) = (common::open_fuse(), common::memfd(b""));
    let refused = register_on(&connect_as(&keeper, NOBODY), "e", &dev, &state);
    let Reply::Error { errno, message } = refused else { panic!("{refused:?}") };
    assert_eq!(errno, libc::EDQUOT);
    assert!(message.contains("(uid 65534 holds them)"), "{message}");
    // Another user, and root, are not touched by it.
    assert!(matches!(register_on(&connect_as(&keeper, 65533), "f", &dev, &state), Reply::Ok));
    let root = connect_raw(&keeper.socket).unwrap();
    assert!(matches!(register_on(&root, "g", &dev, &state), Reply::Ok));
    ls_answers_promptly(&keeper, "a container's uids used up their owner's quota");
}

#[test]
fn the_uids_of_a_user_namespace_root_made_share_one_quota() {
    let keeper = Keeper::start_with(&["--max-tags-per-uid", "3"]);
    // A root runtime's container: 1.. inside are 300001.. outside, owned by root.
    let map = "0 0 1\n1 300001 9\n";
    let regs = ["a:1", "b:2", "c:3", "d:4"];
    let (_helper, lines) = register_from_user_namespace(&keeper, 0, map, &regs);
    assert_eq!(lines, ["a ok", "b ok", "c ok", &format!("d errno={}", libc::EDQUOT)]);
    let owners: Vec<u32> = keeper.list().iter().map(|e| e.owner_uid).collect();
    assert!(owners.contains(&300001) && owners.contains(&300003), "{owners:?}");
    // The container is not charged to root: 65534 and root still register.
    let (dev, state) = (common::open_fuse(), common::memfd(b""));
    assert!(matches!(register_on(&connect_as(&keeper, NOBODY), "e", &dev, &state), Reply::Ok));
    let root = connect_raw(&keeper.socket).unwrap();
    assert!(matches!(register_on(&root, "f", &dev, &state), Reply::Ok));
    ls_answers_promptly(&keeper, "a root-made namespace used up its quota");
}

#[test]
fn state_memory_is_bounded_per_uid_counting_pages_written_after_registering() {
    const MIB: usize = 1 << 20;
    let keeper = Keeper::start_with(&["--max-state-bytes-per-uid", "8M"]);
    let dev = common::open_fuse();
    let nobody = connect_as(&keeper, NOBODY);
    let first = filled_memfd(3 * MIB);
    assert!(matches!(register_on(&nobody, "a", &dev, &first), Reply::Ok));
    // A sparse state costs nothing at REGISTER; the attacker keeps its fd and writes later.
    let sparse = common::memfd(b"");
    assert!(matches!(register_on(&nobody, "b", &dev, &sparse), Reply::Ok));
    rustix::io::pwrite(&sparse, &vec![0x5a; 4 * MIB], 0).unwrap();
    // 3 + 4 held now, + 2 > 8 MiB.
    let refused = register_on(&nobody, "c", &dev, &filled_memfd(2 * MIB));
    let Reply::Error { errno, message } = refused else { panic!("{refused:?}") };
    assert_eq!(errno, libc::EDQUOT);
    assert!(message.contains("would be 9437184 bytes, above the 8388608 allowed"), "{message}");
    // 1 MiB more fits.
    assert!(matches!(register_on(&nobody, "d", &dev, &filled_memfd(MIB)), Reply::Ok));
    // Root is not bound by it; another uid has its own 8 MiB.
    let root = connect_raw(&keeper.socket).unwrap();
    for tag in ["r1", "r2", "r3"] {
        assert!(matches!(register_on(&root, tag, &dev, &filled_memfd(3 * MIB)), Reply::Ok));
    }
    let other = connect_as(&keeper, 65533);
    assert!(matches!(register_on(&other, "o", &dev, &filled_memfd(7 * MIB)), Reply::Ok));
    // Freeing an entry frees its memory for the quota.
    let unregister = encode_request(&Request::Unregister { tag: "b".into() });
    assert!(matches!(exchange(&nobody, &unregister, &[]), Reply::Ok));
    assert!(matches!(register_on(&nobody, "c", &dev, &filled_memfd(2 * MIB)), Reply::Ok));
    ls_answers_promptly(&keeper, "state memory quotas are used up");
}

/// REGISTERs `tag` and more tags with a suffix until one is refused; returns how many were
/// accepted and the refusal's message.
fn register_until_refused(
    sock: &OwnedFd,
    tag: &str,
    dev: &OwnedFd,
    state: &OwnedFd,
) -> (usize, String) {
    for i in 0.. {
        match register_on(sock, &format!("{tag}{i}"), dev, state) {
            Reply::Ok => {}
            Reply::Error { errno, message } => {
                assert_eq!(errno, libc::EDQUOT, "{message}");
                return (i, message);
            }
            other => panic!("{other:?}"),
        }
    }
    unreachable!()
}

#[test]
fn users_together_cannot_take_the_fds_kept_for_root() {
    // 2048 fds: 1536 for entries, 1152 of them for users other than root; 300 per uid here.
    let keeper = Keeper::start_wrapped(
        &["prlimit", "--nofile=2048:2048", "--"],
        &["--max-fds-per-uid", "300"],
    );
    // Answered in the event loop, which logs its limits before it starts.
    keeper.client().list().unwrap();
    let started = keeper.log_text();
    assert!(
        started.contains("entry_fds=1536 entry_fds_not_root=1152 entry_fds_per_uid=300"),
        "{started}"
    );
    let (dev, state) = (common::open_fuse(), common::memfd(b""));
    // Each entry is 3 fds (state, device, pidfd): 100 per uid.
    for uid in [60000, 60001, 60002] {
        let (n, why) = register_until_refused(&connect_as(&keeper, uid), "t", &dev, &state);
        assert_eq!(n, 100, "uid {uid}: {why}");
        assert!(why.contains("at most 300 fds per uid (uid"), "{why}");
    }
    // The fourth fills what users may hold together (1152 - 900 = 252 fds, 84 entries).
    let (n, why) = register_until_refused(&connect_as(&keeper, 60003), "t", &dev, &state);
    assert_eq!(n, 84, "{why}");
    assert!(why.contains("users other than root hold 1152 fds"), "{why}");
    // Every other user is refused now, within its own quota...
    let late = connect_as(&keeper, NOBODY);
    assert_eq!(errno_of(register_on(&late, "late", &dev, &state)), libc::EDQUOT);
    ls_answers_promptly(&keeper, "users hold every fd not kept for root");
    // ...and root still registers, up to the keeper's own bound: (1536 - 1152) / 3.
    let (n, why) =
        register_until_refused(&connect_raw(&keeper.socket).unwrap(), "root", &dev, &state);
    assert_eq!(n, 128, "{why}");
    assert!(why.contains("connections hold 1536 fds of the 1536"), "{why}");
    assert!(keeper.client().list().is_ok(), "the keeper still answers with its entry fds used");
}

#[test]
fn extra_devices_count_against_the_fd_quota() {
    let keeper = Keeper::start_with(&["--max-fds-per-uid", "30"]);
    let (dev, state) = (common::open_fuse(), common::memfd(b""));
    let sock = connect_as(&keeper, NOBODY);
    assert!(matches!(register_on(&sock, "multi", &dev, &state), Reply::Ok));
    let add = |index: u32| {
        let request = encode_request(&Request::AddDevice { tag: "multi".into(), index });
        exchange(&sock, &request, &[dev.as_fd()])
    };
    // 3 fds, then 15 more devices: 18.
    for index in 1..16 {
        assert!(matches!(add(index), Reply::Ok), "device {index}");
    }
    // Four more entries: 30.
    let (n, why) = register_until_refused(&sock, "t", &dev, &state);
    assert_eq!(n, 4, "{why}");
    assert!(why.contains("uid 65534 holds 30"), "{why}");
    let unregister = encode_request(&Request::Unregister { tag: "t0".into() });
    assert!(matches!(exchange(&sock, &unregister, &[]), Reply::Ok));
    // 27 held: three more devices fit, a fourth does not.
    let add_to_t1 = |index: u32| {
        let request = encode_request(&Request::AddDevice { tag: "t1".into(), index });
        exchange(&sock, &request, &[dev.as_fd()])
    };
    for index in 1..4 {
        assert!(matches!(add_to_t1(index), Reply::Ok), "device {index}");
    }
    let refused = add_to_t1(4);
    let Reply::Error { errno, message } = refused else { panic!("{refused:?}") };
    assert_eq!(errno, libc::EDQUOT);
    assert!(message.contains("at most 30 fds per uid"), "{message}");
    ls_answers_promptly(&keeper, "a uid's fds are used up");
}

/// uid 65534 cannot give root's connection a liveness page of its own (refused), and its
/// DIED for root's server (whose page the test makes say every thread died) is no standby's:
/// ignored and not answered, the connection still served by root; `ls` answers meanwhile.
#[test]
fn another_uid_cannot_set_a_liveness_page_or_declare_the_server_dead() {
    use fuse_keeper::protocol::liveness::{
        FUTEX_OWNER_DIED, FUTEX_WAITERS, LIVENESS_FIRST_SLOT, LIVENESS_LEN, LIVENESS_MAGIC,
    };
    let keeper = Keeper::start();
    let mut dead = vec![0u8; LIVENESS_LEN];
    dead[..4].copy_from_slice(&LIVENESS_MAGIC.to_le_bytes());
    let at = LIVENESS_FIRST_SLOT * 4;
    dead[at..at + 4].copy_from_slice(&(FUTEX_WAITERS | FUTEX_OWNER_DIED).to_le_bytes());
    let page = common::memfd(&dead);
    // Root's server: another process, whose page says it died.
    let server = keeper.registrant("rootlv", &["--liveness"], common::open_fuse(), Some(page));
    let liveness = encode_request(&Request::Liveness { tag: "rootlv".into() });
    let attacker = connect_as(&keeper, NOBODY);
    let theirs = common::memfd(&dead);
    let errno = errno_of(exchange(&attacker, &liveness, &[theirs.as_fd()]));
    assert!(errno == libc::EPERM || errno == libc::ENOENT, "errno {errno}");
    let died = encode_request(&Request::Died { tag: "rootlv".into(), server_pid: server.pid() });
    protocol::send_message(attacker.as_fd(), &died, &[]).unwrap();
    ls_answers_promptly(&keeper, "a DIED from another uid");
    keeper.settled_fds();
    let e = keeper.entry("rootlv").unwrap();
    assert_eq!((e.state, e.server_pid), (fuse_keeper::ConnState::Serving, Some(server.pid())));
    let mut fds = [rustix::event::PollFd::new(&attacker, rustix::event::PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut fds, Some(&zero)).unwrap(), 0, "a DIED was answered");
    assert!(keeper.log_text().contains("DIED from a client that is no parked standby: ignored"));
}
