//! Exactly once across crashes: for every non-idempotent operation and every crash point
//! (after the intent is journaled, after execution, after the result is journaled), the
//! server aborts itself there, a new server takes over, and the application's syscall
//! returns what it would have returned with no crash, leaving the filesystem in the same
//! state.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Keeper, Mounted};
use passthroughfs::handle::HandleTable;
use passthroughfs::inode::InodeTable;

struct Case {
    opcode: &'static str,
    /// Prepares the source directory.
    setup: fn(&Path),
    /// Python statements run in a separate process; `m` is the mountpoint.
    action: &'static str,
    /// Checks the source directory afterwards.
    check: fn(&Path),
}

const CASES: &[Case] = &[
    Case {
        opcode: "MKDIR",
        setup: |_| {},
        action: "os.mkdir(m + '/d')",
        check: |s| assert!(s.join("d").is_dir()),
    },
    Case {
        opcode: "MKNOD",
        setup: |_| {},
        action: "os.mkfifo(m + '/p')",
        check: |s| assert!(fs::symlink_metadata(s.join("p")).unwrap().file_type().is_fifo()),
    },
    Case {
        opcode: "SYMLINK",
        setup: |_| {},
        action: "os.symlink('target', m + '/l')",
        check: |s| assert_eq!(fs::read_link(s.join("l")).unwrap(), Path::new("target")),
    },
    Case {
        opcode: "LINK",
        setup: |s| fs::write(s.join("f"), b"f").unwrap(),
        action: "os.link(m + '/f', m + '/f2')",
        check: |s| {
            assert_eq!(
                fs::metadata(s.join("f2")).unwrap().ino(),
                fs::metadata(s.join("f")).unwrap().ino()
            );
            assert_eq!(fs::metadata(s.join("f")).unwrap().nlink(), 2);
        },
    },
    Case {
        opcode: "RENAME2",
        setup: |s| fs::write(s.join("n1"), b"noreplace").unwrap(),
        action: "import ctypes; libc = ctypes.CDLL(None, use_errno=True); r = libc.renameat2(-100, (m + '/n1').encode(), -100, (m + '/n2').encode(), 1); assert r == 0, os.strerror(ctypes.get_errno())",
        check: |s| {
            assert!(!s.join("n1").exists());
            assert_eq!(fs::read(s.join("n2")).unwrap(), b"noreplace");
        },
    },
    Case {
        opcode: "CREATE",
        setup: |_| {},
        action: "fd = os.open(m + '/c', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640); os.write(fd, b'x'); os.close(fd)",
        check: |s| {
            assert_eq!(fs::read(s.join("c")).unwrap(), b"x");
            assert_eq!(fs::metadata(s.join("c")).unwrap().mode() & 0o777, 0o640);
        },
    },
    Case {
        opcode: "UNLINK",
        setup: |s| fs::write(s.join("u"), b"u").unwrap(),
        action: "os.unlink(m + '/u')",
        check: |s| assert!(!s.join("u").exists()),
    },
    Case {
        opcode: "RMDIR",
        setup: |s| fs::create_dir(s.join("r")).unwrap(),
        action: "os.rmdir(m + '/r')",
        check: |s| assert!(!s.join("r").exists()),
    },
    Case {
        opcode: "RENAME",
        setup: |s| fs::write(s.join("a"), b"moved").unwrap(),
        action: "os.rename(m + '/a', m + '/b')",
        check: |s| {
            assert!(!s.join("a").exists());
            assert_eq!(fs::read(s.join("b")).unwrap(), b"moved");
        },
    },
    Case {
        // By an unprivileged user, with mode 0: creating grants the access asked for, a
        // plain open of the same file would not (pjdfstest's ftruncate cases do this).
        opcode: "CREATE",
        setup: |s| fs::set_permissions(s, fs::Permissions::from_mode(0o777)).unwrap(),
        action: "os.setgid(65534); os.setuid(65534); fd = os.open(m + '/zero', os.O_CREAT | os.O_EXCL | os.O_RDWR, 0); os.write(fd, b'z'); os.lseek(fd, 0, 0); assert os.read(fd, 1) == b'z'; os.close(fd)",
        check: |s| {
            let meta = fs::metadata(s.join("zero")).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0, 65534, 65534));
            assert_eq!(fs::read(s.join("zero")).unwrap(), b"z");
        },
    },
    Case {
        opcode: "SETATTR",
        setup: |s| fs::write(s.join("t"), b"0123456789").unwrap(),
        action: "os.truncate(m + '/t', 3)",
        check: |s| assert_eq!(fs::read(s.join("t")).unwrap(), b"012"),
    },
    Case {
        opcode: "WRITE",
        setup: |s| fs::write(s.join("log"), b"first\n").unwrap(),
        action: "fd = os.open(m + '/log', os.O_WRONLY | os.O_APPEND); os.write(fd, b'second\\n'); os.close(fd)",
        check: |s| assert_eq!(fs::read_to_string(s.join("log")).unwrap(), "first\nsecond\n"),
    },
    Case {
        opcode: "FALLOCATE",
        setup: |s| fs::write(s.join("fa"), b"").unwrap(),
        action: "fd = os.open(m + '/fa', os.O_RDWR); os.posix_fallocate(fd, 0, 8192); os.close(fd)",
        check: |s| assert_eq!(fs::metadata(s.join("fa")).unwrap().len(), 8192),
    },
    Case {
        opcode: "SETXATTR",
        setup: |s| fs::write(s.join("x"), b"").unwrap(),
        action: "os.setxattr(m + '/x', 'user.k', b'v', os.XATTR_CREATE)",
        check: |s| {
            let out = Command::new("getfattr")
                .args(["--only-values", "-n", "user.k"])
                .arg(s.join("x"))
                .output()
                .unwrap();
            assert_eq!(out.stdout, b"v");
        },
    },
    Case {
        opcode: "REMOVEXATTR",
        setup: |s| {
            fs::write(s.join("x"), b"").unwrap();
            assert!(
                Command::new("setfattr")
                    .args(["-n", "user.k", "-v", "v"])
                    .arg(s.join("x"))
                    .status()
                    .unwrap()
                    .success()
            );
        },
        action: "os.removexattr(m + '/x', 'user.k')",
        check: |s| {
            let out =
                Command::new("getfattr").args(["-n", "user.k"]).arg(s.join("x")).output().unwrap();
            assert!(!out.status.success(), "the attribute is still there");
        },
    },
    Case {
        // The attribute is absent: the answer is ENODATA, crash or not (a settle that took
        // "it is gone" for "it was removed" would answer success).
        opcode: "REMOVEXATTR",
        setup: |s| fs::write(s.join("nx"), b"").unwrap(),
        action: "import ctypes; libc = ctypes.CDLL(None, use_errno=True); r = libc.removexattr((m + '/nx').encode(), b'user.none'); assert (r, ctypes.get_errno()) == (-1, 61), (r, os.strerror(ctypes.get_errno()))",
        check: |s| assert!(s.join("nx").exists()),
    },
    Case {
        // The attribute exists with the same value: XATTR_CREATE fails with EEXIST, crash or not.
        opcode: "SETXATTR",
        setup: |s| {
            fs::write(s.join("ex"), b"").unwrap();
            rustix::fs::setxattr(s.join("ex"), "user.k", b"v", rustix::fs::XattrFlags::CREATE)
                .unwrap();
        },
        action: "import ctypes; libc = ctypes.CDLL(None, use_errno=True); r = libc.setxattr((m + '/ex').encode(), b'user.k', b'v', 1, 1); assert (r, ctypes.get_errno()) == (-1, 17), (r, os.strerror(ctypes.get_errno()))",
        check: |s| {
            let mut value = [0u8; 8];
            let n = rustix::fs::getxattr(s.join("ex"), "user.k", &mut value).unwrap();
            assert_eq!(&value[..n], b"v");
        },
    },
    Case {
        opcode: "COPY_FILE_RANGE_64",
        setup: |s| {
            fs::write(s.join("in"), b"copied bytes").unwrap();
            fs::write(s.join("out"), b"").unwrap();
        },
        action: "i = os.open(m + '/in', os.O_RDONLY); o = os.open(m + '/out', os.O_WRONLY); n = os.copy_file_range(i, o, 100); assert n == 12, n",
        check: |s| assert_eq!(fs::read(s.join("out")).unwrap(), b"copied bytes"),
    },
    Case {
        opcode: "RENAME2",
        setup: |s| {
            fs::write(s.join("p1"), b"one").unwrap();
            fs::write(s.join("p2"), b"two").unwrap();
        },
        action: "import ctypes; libc = ctypes.CDLL(None, use_errno=True); r = libc.renameat2(-100, (m + '/p1').encode(), -100, (m + '/p2').encode(), 2); assert r == 0, os.strerror(ctypes.get_errno())",
        check: |s| {
            assert_eq!(fs::read(s.join("p1")).unwrap(), b"two", "exchanged exactly once");
            assert_eq!(fs::read(s.join("p2")).unwrap(), b"one");
        },
    },
    Case {
        opcode: "CREATE",
        setup: |_| {},
        action: "fd = os.open(m + '/plain', os.O_CREAT | os.O_WRONLY | os.O_TRUNC); os.write(fd, b'new'); os.close(fd)",
        check: |s| assert_eq!(fs::read(s.join("plain")).unwrap(), b"new"),
    },
    Case {
        opcode: "SETATTR",
        setup: |s| fs::write(s.join("mode"), b"").unwrap(),
        action: "os.chmod(m + '/mode', 0o604); os.chown(m + '/mode', 65534, 65534)",
        check: |s| {
            let meta = fs::metadata(s.join("mode")).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o604, 65534, 65534));
        },
    },
    Case {
        opcode: "FALLOCATE",
        setup: |s| fs::write(s.join("holes"), vec![b'a'; 16384]).unwrap(),
        action: "import ctypes; libc = ctypes.CDLL(None, use_errno=True); fd = os.open(m + '/holes', os.O_RDWR); r = libc.fallocate(fd, 3, ctypes.c_long(4096), ctypes.c_long(4096)); assert r == 0, os.strerror(ctypes.get_errno())",
        check: |s| {
            let data = fs::read(s.join("holes")).unwrap();
            assert_eq!(data.len(), 16384);
            assert!(
                data[4096..8192].iter().all(|&b| b == 0) && data[..4096].iter().all(|&b| b == b'a')
            );
        },
    },
    Case {
        opcode: "TMPFILE",
        setup: |_| {},
        action: "fd = os.open(m, os.O_TMPFILE | os.O_RDWR, 0o600); os.write(fd, b'tmp'); os.close(fd)",
        check: |s| assert_eq!(fs::read_dir(s).unwrap().count(), 0, "a tmpfile leaves no name"),
    },
];

/// `passthroughfs -f -o OPTIONS` of `m` against the keeper at `socket`, made to crash at
/// `crash` (`OPCODE:POINT`, the `FUSE_CRASH_AT` switch) if given.
fn server(m: &Mounted, socket: &Path, options: &str, crash: Option<&str>) -> std::process::Child {
    let mut cmd = m.server_command(socket, options);
    cmd.stderr(Stdio::null());
    if let Some(crash) = crash {
        cmd.env("FUSE_CRASH_AT", crash);
    }
    cmd.spawn().unwrap()
}

fn run_case(case: &Case, point: &str, extra: &str) {
    let mut m = Mounted::dirs();
    (case.setup)(&m.source);
    let keeper = Keeper::start(m.dir.path());
    // Server-side writes (no kernel passthrough) so WRITE reaches the server.
    let options = format!(
        "tag=once,nokeeper_start,nopassthrough,allow_other,entry_timeout=0,attr_timeout=0{extra}"
    );
    let options = options.as_str();
    let crash = format!("{}:{point}", case.opcode);
    m.server = Some(server(&m, &keeper.socket, options, Some(&crash)));
    m.wait_mounted();
    keeper.wait_serving(m.pid());
    let app = Command::new("python3")
        .arg("-c")
        .arg(format!("import os, sys\nm = sys.argv[1]\ntry:\n    {}\n    print('ok')\nexcept OSError as e:\n    print(e.strerror)", case.action.replace("; ", "\n    ")))
        .arg(&m.mountpoint)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = m
        .wait_exit(common::PATIENCE)
        .unwrap_or_else(|| panic!("{} {point}: the server did not crash", case.opcode));
    assert!(
        !status.success(),
        "{} {point}: the server exited cleanly instead of crashing",
        case.opcode
    );
    m.server = Some(server(&m, &keeper.socket, options, None));
    let out = app.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        said, "ok",
        "{} crashed {point}: the application did not get the result of a run with no crash",
        case.opcode
    );
    (case.check)(&m.source);
    counts_drain(&keeper, &format!("{} {point}", case.opcode));
}

/// Lookup counts and handles are exact: once the kernel has forgotten every inode (the
/// application is gone and the dentry cache is dropped), the state store holds no inode
/// record with a lookup count (forgotten ones are remembered for file handles, with none)
/// and no open handle. A count taken twice for one entry reply leaves a count behind for
/// ever; a handle opened twice for one CREATE leaves a handle.
fn counts_drain(keeper: &Keeper, what: &str) {
    let store = keeper.state_store();
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        let inodes: Vec<_> =
            InodeTable::census(&store).into_iter().filter(|&(_, n)| n > 0).collect();
        let handles = HandleTable::census(&store);
        if inodes.is_empty() && handles.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the kernel forgot everything, the store still holds inodes {inodes:?} \
             and handles {handles:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_non_idempotent_operation_has_one_effect_whatever_the_crash_point() {
    let mut failures = Vec::new();
    let only = std::env::var("EXACTLY_ONCE_CASE").ok();
    let mut run = 0;
    for case in CASES.iter().filter(|c| only.as_deref().is_none_or(|o| o == c.opcode)) {
        for point in ["before", "executed", "journaled"] {
            run += 1;
            if let Err(panic) = std::panic::catch_unwind(|| run_case(case, point, "")) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{} {point}: {message}", case.opcode));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        run,
        failures.join("\n")
    );
}

/// In writeback mode the kernel does O_APPEND itself: the append reaches the server as a
/// WRITE at the offset the kernel chose (sent when the file is closed, after a READ of the
/// page it covers in part, through the write-only file's handle), is not journaled, and
/// sent again after a crash writes the same bytes at the same place: once.
#[test]
fn an_append_in_writeback_mode_has_one_effect_whatever_the_crash_point() {
    let case = CASES.iter().find(|c| c.opcode == "WRITE").unwrap();
    for point in ["before", "executed", "journaled"] {
        run_case(case, point, ",writeback");
    }
}

/// Issue 14: a request whose server crashed before executing it, resent, must not be answered
/// with an entry another user made under its name meanwhile (in a sticky, world-writable
/// directory: the O_EXCL race O_EXCL exists to close). Executed again, it meets that entry as
/// it would have without a crash: EEXIST.
#[test]
fn a_name_another_user_took_while_the_server_was_down_is_not_the_resends() {
    use std::os::unix::process::CommandExt;
    let cases: [(&str, &str, &str); 3] = [
        ("MKDIR", "os.mkdir(m + '/tmp/x')", "mkdir"),
        (
            "CREATE",
            "os.close(os.open(m + '/tmp/x', os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))",
            "touch",
        ),
        ("SYMLINK", "os.symlink('target', m + '/tmp/x')", "ln -s elsewhere"),
    ];
    for (opcode, action, attacker) in cases {
        let mut m = Mounted::dirs();
        fs::create_dir(m.src("tmp")).unwrap();
        fs::set_permissions(m.src("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        let keeper = Keeper::start(m.dir.path());
        let options = "tag=race,nokeeper_start,allow_other,entry_timeout=0";
        let crash = format!("{opcode}:before");
        m.server = Some(server(&m, &keeper.socket, options, Some(&crash)));
        m.wait_mounted();
        keeper.wait_serving(m.pid());
        let app = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import os, sys\nm = sys.argv[1]\ntry:\n    {action}\n    print('ok')\nexcept OSError as e:\n    print(e.strerror)"
            ))
            .arg(&m.mountpoint)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        m.wait_exit(common::PATIENCE).unwrap_or_else(|| panic!("{opcode}: no crash"));
        // While no server runs, uid 65534 takes the name in the source.
        let target = m.src("tmp/x");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("{attacker} '{}'", target.display()))
            .uid(65534)
            .gid(65534)
            .status()
            .unwrap();
        assert!(status.success(), "{opcode}: the attacker could not take the name");
        m.server = Some(server(&m, &keeper.socket, options, None));
        let out = app.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(said, "File exists", "{opcode}: the resend was handed nobody's entry");
        assert_eq!(fs::symlink_metadata(&target).unwrap().uid(), 65534, "{opcode}");
        counts_drain(&keeper, opcode);
    }
}

/// `-o metrics=`: the restarted server counts the MKDIR the kernel resent and the journal's
/// settling of it (it had taken effect), and its requests by opcode, in what it serves at
/// `GET /metrics`.
#[test]
fn server_metrics_count_the_resent_request_and_how_it_was_settled() {
    let mut m = Mounted::dirs();
    let keeper = Keeper::start(m.dir.path());
    let options = "tag=once,nokeeper_start,nopassthrough,entry_timeout=0,attr_timeout=0,\
                   metrics=127.0.0.1:0";
    m.server = Some(server(&m, &keeper.socket, options, Some("MKDIR:executed")));
    m.wait_mounted();
    keeper.wait_serving(m.pid());
    let app = Command::new("python3")
        .args(["-c", "import os, sys; os.mkdir(sys.argv[1] + '/d'); print('ok')"])
        .arg(&m.mountpoint)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = m.wait_exit(common::PATIENCE).expect("the server crashed at MKDIR");
    assert!(!status.success());
    let log = m.dir.path().join("server2.log");
    let mut cmd = m.server_command(&keeper.socket, options);
    cmd.env("RUST_LOG", "info").stderr(fs::File::create(&log).unwrap());
    m.server = Some(cmd.spawn().unwrap());
    let out = app.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "MKDIR answered once");
    let url = common::metrics_url(&|| fs::read_to_string(&log).unwrap_or_default());
    let s = common::scrape(&url, None);
    for (sample, value) in [
        ("fuse_server_resent_requests_total", 1.0),
        ("fuse_server_journal_settled_total{outcome=took_effect}", 1.0),
        ("fuse_server_journal_settled_total{outcome=not_taken_effect}", 0.0),
        ("fuse_server_journal_settled_total{outcome=replayed}", 0.0),
        ("fuse_server_requests_total{opcode=MKDIR}", 1.0),
    ] {
        assert_eq!(common::sample(&s, sample), value, "{sample} in {s:?}");
    }
    assert!(m.source.join("d").is_dir());
}
