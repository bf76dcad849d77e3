//! passthroughfs on real mounts: mounting, unmounting, signals, crashes, users.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Mounted, within};
use rustix::process::Signal;

#[test]
fn mounts_serves_and_exits_on_external_unmount() {
    let mut m = Mounted::start(&[]);
    fs::write(m.mnt("hello"), b"hello world").unwrap();
    assert_eq!(fs::read(m.src("hello")).unwrap(), b"hello world");
    fs::create_dir(m.mnt("dir")).unwrap();
    std::os::unix::fs::symlink("hello", m.mnt("dir/link")).unwrap();
    assert_eq!(fs::read_link(m.src("dir/link")).unwrap().to_str(), Some("hello"));
    let names: Vec<_> =
        fs::read_dir(&m.mountpoint).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2);

    fuse_transport::unmount_detached(&m.mountpoint).unwrap();
    let status = m.wait_exit(common::PATIENCE).expect("server exits after unmount");
    assert!(status.success(), "exit status {status}");
    assert!(!m.is_mounted());
}

#[test]
fn sigterm_and_sigint_unmount_and_exit_cleanly() {
    for signal in [Signal::TERM, Signal::INT] {
        let mut m = Mounted::start(&[]);
        m.signal(signal);
        let status = m.wait_exit(common::PATIENCE).expect("server exits on signal");
        assert!(status.success(), "{signal:?}: exit status {status}");
        assert!(!m.is_mounted(), "{signal:?} left the mount behind");
    }
}

#[test]
fn daemonizes_and_returns_once_mounted() {
    let m = Mounted::dirs();
    let status = Command::new(BIN).arg(&m.source).arg(&m.mountpoint).status().unwrap();
    assert!(status.success());
    assert!(m.is_mounted(), "the parent returned before the mount was up");
    fs::write(m.mnt("f"), b"x").unwrap();
    assert_eq!(fs::read(m.src("f")).unwrap(), b"x");
    // The daemon exits by itself once unmounted; the harness's cleanup would abort it anyway.
    fuse_transport::unmount_detached(&m.mountpoint).unwrap();
    assert!(!m.is_mounted());
}

#[test]
fn bad_arguments_fail_with_usage() {
    let out = Command::new(BIN).args(["-o", "nonsense", "/a", "/b"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    let m = Mounted::dirs();
    let out = Command::new(BIN)
        .arg("-f")
        .arg(m.dir.path().join("missing"))
        .arg(&m.mountpoint)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    assert!(!m.is_mounted());
}

#[test]
fn concurrent_processes_read_and_write_correctly() {
    for args in [&[][..], &["-o", "nopassthrough"][..]] {
        let m = Mounted::start(args);
        let n = 6;
        for i in 0..n {
            let data: Vec<u8> = (0..3 * 1024 * 1024 + 4321)
                .map(|b: u32| (b.wrapping_mul(31 + i) >> 3) as u8)
                .collect();
            fs::write(m.src(&format!("in{i}")), &data).unwrap();
        }
        // Each copy is its own process reading one file and writing another, concurrently.
        let children: Vec<_> = (0..n)
            .map(|i| {
                Command::new("cp")
                    .arg(m.mnt(&format!("in{i}")))
                    .arg(m.mnt(&format!("out{i}")))
                    .spawn()
                    .unwrap()
            })
            .collect();
        let readers: Vec<_> = (0..n)
            .map(|i| {
                Command::new("cat")
                    .arg(m.mnt(&format!("in{i}")))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children.into_iter().chain(readers) {
            assert!(child.wait().unwrap().success());
        }
        for i in 0..n {
            let original = fs::read(m.src(&format!("in{i}"))).unwrap();
            assert_eq!(
                fs::read(m.src(&format!("out{i}"))).unwrap(),
                original,
                "copy {i} ({args:?}) differs"
            );
            assert_eq!(fs::read(m.mnt(&format!("out{i}"))).unwrap(), original);
        }
    }
}

#[test]
fn files_belong_to_the_user_who_creates_them() {
    let m = Mounted::start(&["-o", "allow_other"]);
    fs::set_permissions(&m.source, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let path = m.mnt("mine");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo hi > '{}' && mkdir '{}'", path.display(), m.mnt("mydir").display()))
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["mine", "mydir"] {
        let meta = fs::metadata(m.src(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{name} in the source");
    }
    // And the caller's permissions apply: nobody cannot write into a root-only directory.
    fs::create_dir(m.src("rootonly")).unwrap();
    fs::set_permissions(m.src("rootonly"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo x > '{}' 2>/dev/null", m.mnt("rootonly/f").display()))
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(!status.success(), "nobody wrote into a 0755 root directory");
    assert!(!m.src("rootonly/f").exists());
}

#[test]
fn sigkill_without_another_holder_gives_enotconn_and_cleans_up() {
    let mut m = Mounted::start(&[]);
    fs::write(m.mnt("f"), b"data").unwrap();
    let mut open = fs::File::open(m.mnt("f")).unwrap();
    m.signal(Signal::KILL);
    let status = m.wait_exit(common::PATIENCE).expect("killed server is reaped");
    assert!(!status.success());
    let path = m.mnt("f");
    let err =
        within(common::PATIENCE, "stat on a dead mount", move || fs::metadata(path).unwrap_err());
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let mut buf = [0u8; 4];
    // Kernel passthrough reads go to the backing file; without it the read fails.
    let _ = open.read(&mut buf);
    let mountpoint = m.mountpoint.clone();
    within(common::PATIENCE, "force_unmount", move || {
        fuse_transport::force_unmount(&mountpoint).unwrap()
    });
    assert!(!m.is_mounted());
}

#[test]
fn unprivileged_user_mounts_through_fusermount3() {
    assert!(
        Command::new("sh").args(["-c", "command -v fusermount3"]).status().unwrap().success(),
        "fusermount3 is required (fuse3 package)"
    );
    let mode = fs::metadata("/dev/fuse").unwrap().mode() & 0o777;
    assert_eq!(
        mode, 0o666,
        "/dev/fuse must be 0666 for unprivileged mounts (.ci/install-deps sets it)"
    );
    let mut m = Mounted::dirs();
    for dir in [&m.source, &m.mountpoint] {
        rustix::fs::chown(
            dir,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .unwrap();
    }
    m.spawn(&[], Some(65534));
    // Without allow_other only the mounting user may enter: use the mount as nobody.
    let script = format!(
        "set -e; echo hello > '{m}/f'; test \"$(cat '{m}/f')\" = hello; mkdir '{m}/d'; mv '{m}/f' '{m}/d/g'; ls '{m}/d' | grep -qx g",
        m = m.mountpoint.display()
    );
    let status = Command::new("sh").arg("-c").arg(&script).uid(65534).gid(65534).status().unwrap();
    assert!(status.success(), "file operations as the mounting user failed");
    assert_eq!(fs::read(m.src("d/g")).unwrap(), b"hello\n");
    assert_eq!(fs::metadata(m.src("d/g")).unwrap().uid(), 65534);
    // fusermount3 -u as the user unmounts; the server exits by itself.
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mountpoint)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(status.success());
    let status = m.wait_exit(common::PATIENCE).expect("server exits after fusermount3 -u");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn writes_survive_through_both_io_paths() {
    for args in [&[][..], &["-o", "nopassthrough"][..], &["-o", "writeback"][..]] {
        let m = Mounted::start(args);
        let mut f = fs::OpenOptions::new().create(true).append(true).open(m.mnt("log")).unwrap();
        for i in 0..100 {
            writeln!(f, "line {i}").unwrap();
        }
        f.sync_all().unwrap();
        drop(f);
        let text = fs::read_to_string(m.src("log")).unwrap();
        assert_eq!(text.lines().count(), 100, "{args:?}");
        assert!(text.ends_with("line 99\n"));
    }
}

/// pjdfstest skips link_count_max on every FUSE mount: glibc's pathconf(_PC_LINK_MAX) maps the
/// statfs f_type to a limit and does not know FUSE's, so it answers the generic 127 whatever
/// the source filesystem allows. This shows it (docs/CONFORMANCE.md).
#[test]
fn link_max_is_unknowable_through_any_fuse_mount() {
    let m = Mounted::start(&[]);
    let getconf = |path: &std::path::Path| {
        let out = Command::new("getconf").arg("LINK_MAX").arg(path).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(getconf(&m.mountpoint), "127", "FUSE mounts report the unknown-filesystem default");
    let native = getconf(&m.source);
    assert_ne!(native, "127", "the source filesystem has a known limit ({native})");
}

#[test]
fn without_a_tag_no_keeper_is_involved() {
    let mut m = Mounted::dirs();
    let socket = m.dir.path().join("keeper.sock");
    let mut cmd = Command::new(BIN);
    cmd.arg("-f").arg(&m.source).arg(&m.mountpoint).env("FUSE_KEEPER_SOCKET", &socket);
    m.server = Some(cmd.spawn().unwrap());
    m.wait_mounted();
    fs::write(m.mnt("f"), b"x").unwrap();
    assert!(!socket.exists(), "a server without a tag started or asked for a keeper");
    m.signal(Signal::KILL);
    m.wait_exit(common::PATIENCE).unwrap();
    let path = m.mnt("f");
    let err = within(common::PATIENCE, "stat", move || fs::metadata(path).unwrap_err());
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "nobody held the connection: {err}");
}

#[test]
fn extended_attributes_read_back_with_size_queries_and_errors() {
    let m = Mounted::start(&[]);
    fs::write(m.src("x"), b"").unwrap();
    rustix::fs::setxattr(m.src("x"), "user.k", b"value", rustix::fs::XattrFlags::empty()).unwrap();
    let path = m.mnt("x");
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(&path, "user.k", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"value");
    assert_eq!(rustix::fs::getxattr_query(&path, "user.k").unwrap(), 5, "a size query");
    assert_eq!(rustix::fs::listxattr_query(&path).unwrap(), "user.k\0".len(), "a list size query");
    let mut list = [0u8; 64];
    let n = rustix::fs::listxattr(&path, &mut list).unwrap();
    assert_eq!(&list[..n], b"user.k\0");
    let mut small = [0u8; 2];
    assert_eq!(
        rustix::fs::getxattr(&path, "user.k", &mut small).unwrap_err(),
        rustix::io::Errno::RANGE
    );
    assert_eq!(
        rustix::fs::getxattr(&path, "user.missing", &mut buf).unwrap_err(),
        rustix::io::Errno::NODATA
    );
    let long = "user.".to_string() + &"n".repeat(251);
    assert_eq!(
        rustix::fs::getxattr(&path, long.as_str(), &mut buf).unwrap_err(),
        rustix::io::Errno::RANGE
    );
    // Through a directory too (the root's own fd is not an O_PATH of a file).
    rustix::fs::setxattr(&m.source, "user.d", b"dir", rustix::fs::XattrFlags::empty()).unwrap();
    let n = rustix::fs::getxattr(&m.mountpoint, "user.d", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"dir");
}

/// open(O_RDONLY | O_TRUNC) of a running program answers ETXTBSY and must not truncate it.
/// The VFS checks for a running program only after the filesystem's open; with
/// FUSE_ATOMIC_O_TRUNC that open truncated the source file, the program died of SIGBUS on its
/// next page fault, and (racing that death) the open sometimes even succeeded - pjdfstest's
/// open::etxtbsy failed ~0.6% of runs (22% with nopassthrough).
///
/// The program is `cat`, asked to echo a line after the refused open: it runs code again (a
/// truncation would have unmapped its pages: SIGBUS), and answering proves it did.
#[test]
fn truncating_open_of_a_running_program_is_refused_and_truncates_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    for args in [&[][..], &["-o", "nopassthrough"][..], &["-o", "writeback"][..]] {
        let m = Mounted::start(args);
        let program = fs::read("/usr/bin/cat").unwrap();
        fs::write(m.src("prog"), &program).unwrap();
        fs::set_permissions(m.src("prog"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // spawn returns once the exec has succeeded (the program holds the file's text).
        let mut child = Command::new(m.mnt("prog"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let err = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_TRUNC)
            .open(m.mnt("prog"))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ETXTBSY), "{args:?}: {err}");
        assert_eq!(
            fs::metadata(m.src("prog")).unwrap().len(),
            program.len() as u64,
            "{args:?}: the refused open truncated the program"
        );
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"still running\n").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "still running\n", "{args:?}: the program died");
        drop(stdin);
        let status = child.wait().unwrap();
        assert!(status.success(), "{args:?}: the program ended with {status}");
    }
}

/// What a user who does not own a file but may write it can do to its times, as on the
/// source filesystem: touch it and truncate it, but not set explicit times; and without write
/// permission not even touch it. With `-o writeback` the kernel sends a touch's or a
/// truncate's "now" mtime as an explicit time, which only an owner may set.
#[test]
fn a_writer_who_is_not_the_owner_may_touch_and_truncate_in_every_mode() {
    const SCRIPT: &str = r#"
import errno, os, sys
d = sys.argv[1]
def attempt(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
attempt("touch", lambda: os.utime(d + "/shared"))
attempt("truncate", lambda: os.truncate(d + "/shared", 2))
def ftruncate():
    fd = os.open(d + "/shared", os.O_WRONLY)
    try:
        os.ftruncate(fd, 1)
    finally:
        os.close(fd)
attempt("ftruncate", ftruncate)
attempt("explicit", lambda: os.utime(d + "/shared", (1000000000, 1000000000)))
attempt("touch-readonly", lambda: os.utime(d + "/private"))
"#;
    let run_as_nobody = |dir: &std::path::Path| {
        let out = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(dir)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let expected = "touch ok\ntruncate ok\nftruncate ok\nexplicit EPERM\ntouch-readonly EACCES\n";
    for args in [&["-o", "allow_other"][..], &["-o", "allow_other,writeback"][..]] {
        let m = Mounted::start(args);
        let setup = || {
            fs::write(m.src("shared"), b"data").unwrap();
            fs::set_permissions(m.src("shared"), PermissionsExt::from_mode(0o666)).unwrap();
            fs::write(m.src("private"), b"data").unwrap();
            fs::set_permissions(m.src("private"), PermissionsExt::from_mode(0o644)).unwrap();
        };
        setup();
        assert_eq!(run_as_nobody(&m.source), expected, "the source filesystem itself");
        setup();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        fs::File::options().write(true).open(m.src("shared")).unwrap().set_modified(old).unwrap();
        assert_eq!(run_as_nobody(&m.mountpoint), expected, "{args:?}");
        let meta = fs::metadata(m.src("shared")).unwrap();
        assert_eq!(meta.len(), 1, "{args:?}");
        assert!(meta.modified().unwrap() > old, "{args:?}: mtime not updated");
    }
}

/// A program whose mode lets others execute but not read it (0711) runs for them, as on the
/// source (the kernel loads it through an OPEN with `__FMODE_EXEC` that the caller could not
/// make read-only itself), and still cannot be read; a program without their execute bit does
/// not run; and the owner's class decides for the owner (0601: the owner may not execute).
/// With the kernel checking modes (`default_permissions`) and without.
#[test]
fn execute_only_programs_run_for_others_and_stay_unreadable() {
    for args in [
        &["-o", "allow_other"][..],
        &["-o", "allow_other,nopassthrough"][..],
        &["-o", "allow_other,default_permissions"][..],
        &["-o", "allow_other,writeback"][..],
    ] {
        let m = Mounted::start(args);
        fs::copy("/usr/bin/true", m.src("prog")).unwrap();
        // ETXTBSY while another test's forked child still holds the copy's write fd (until it
        // execs): the program is run again once it does.
        let run_as_nobody = |path: &std::path::Path| {
            let deadline = std::time::Instant::now() + common::PATIENCE;
            loop {
                match Command::new(path).uid(65534).gid(65534).status() {
                    Err(e)
                        if e.raw_os_error() == Some(libc::ETXTBSY)
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    result => return result.map(|s| s.success()),
                }
            }
        };
        let set_mode = |mode: u32| {
            fs::set_permissions(m.src("prog"), std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        };
        set_mode(0o711);
        let ran = |path: std::path::PathBuf| run_as_nobody(&path).map_err(|e| e.raw_os_error());
        assert_eq!(ran(m.src("prog")), Ok(true), "the source runs it");
        assert_eq!(ran(m.mnt("prog")), Ok(true), "{args:?}: 0711 for others");
        let read = Command::new("cat")
            .arg(m.mnt("prog"))
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!read.success(), "{args:?}: others read an execute-only program");
        set_mode(0o700);
        // Past attr_timeout the kernel sees the new mode; the server checks it in any case.
        let err = run_as_nobody(&m.mnt("prog")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{args:?}: 0700 for others");
        std::os::unix::fs::chown(m.src("prog"), Some(65534), Some(65534)).unwrap();
        set_mode(0o601);
        assert_eq!(
            run_as_nobody(&m.src("prog")).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EACCES)),
            "the source refuses its owner"
        );
        assert_eq!(
            run_as_nobody(&m.mnt("prog")).map_err(|e| e.raw_os_error()),
            Err(Some(libc::EACCES)),
            "{args:?}: 0601 for the owner"
        );
    }
}

/// The caller's umask applies as the kernel applies it on a local filesystem: not in a
/// directory with a default ACL (whose entries give the new file's mode), and in any other
/// directory. The source itself is the reference: the same creations, with the same umask,
/// made there directly and through the mount, by root and by another user, must give the same
/// modes (FUSE_DONT_MASK; without it the kernel masked every mode before the server saw it).
#[test]
fn new_files_get_the_modes_the_source_gives_with_or_without_a_default_acl() {
    for mode in ["", ",nopassthrough", ",writeback"] {
        let m = Mounted::start(&["-o", &format!("allow_other{mode}")]);
        for dir in ["acl", "plain"] {
            fs::create_dir(m.src(dir)).unwrap();
            fs::set_permissions(m.src(dir), std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
        }
        let acl = Command::new("setfacl")
            .args(["-d", "-m", "u::rwx,g::rwx,o::rwx"])
            .arg(m.src("acl"))
            .status()
            .expect("setfacl (the acl package) is needed");
        assert!(acl.success());
        let mode = |path: std::path::PathBuf| fs::symlink_metadata(path).unwrap().mode() & 0o7777;
        for uid in [0, 65534] {
            for dir in ["acl", "plain"] {
                for (base, at) in [("src", m.source.clone()), ("mnt", m.mountpoint.clone())] {
                    let d = at.join(dir);
                    let script = format!(
                        "umask 077 && touch {d}/f-{uid}-{base} && mkdir {d}/d-{uid}-{base} && \
                         mkfifo {d}/p-{uid}-{base}",
                        d = d.display()
                    );
                    let made = Command::new("sh").arg("-c").arg(&script).uid(uid).gid(uid).status();
                    assert!(made.unwrap().success(), "{script}");
                }
                for kind in ["f", "d", "p"] {
                    let native = mode(m.src(&format!("{dir}/{kind}-{uid}-src")));
                    let through = mode(m.src(&format!("{dir}/{kind}-{uid}-mnt")));
                    assert_eq!(
                        through, native,
                        "{kind} in {dir} by uid {uid}: {through:o} != {native:o}"
                    );
                }
            }
            // And the rule did apply: the default ACL's modes in one, the umask's in the other.
            assert_eq!(mode(m.src(&format!("acl/f-{uid}-mnt"))), 0o666);
            assert_eq!(mode(m.src(&format!("plain/f-{uid}-mnt"))), 0o600);
        }
    }
}

/// A symlink's own extended attributes, through the mount as on the source (xfstests
/// generic/062): trusted.* set, read, listed and removed on the link, not on its target, and
/// still after a rename through the mount; user.* refused (EPERM) as the source refuses it; a
/// name swapped behind the server's back for another file reaches nothing.
#[test]
fn extended_attributes_of_symlinks_are_the_links_own() {
    for mode in ["", ",nopassthrough", ",writeback"] {
        use rustix::fs::{XattrFlags, lgetxattr, listxattr, llistxattr, lremovexattr, lsetxattr};
        // Names cached for a minute: the kernel keeps asking about the nodeid it looked up.
        let m = Mounted::start(&["-o", &format!("entry_timeout=60,attr_timeout=60{mode}")]);
        fs::write(m.src("target"), b"t").unwrap();
        std::os::unix::fs::symlink("target", m.src("link")).unwrap();
        lsetxattr(m.src("link"), "trusted.from_source", b"1", XattrFlags::empty()).unwrap();
        let get = |path: std::path::PathBuf, name: &str| {
            let mut buf = [0u8; 64];
            lgetxattr(&path, name, &mut buf[..]).map(|n| buf[..n].to_vec())
        };
        assert_eq!(get(m.mnt("link"), "trusted.from_source").unwrap(), b"1");
        lsetxattr(m.mnt("link"), "trusted.through", b"2", XattrFlags::empty()).unwrap();
        assert_eq!(get(m.src("link"), "trusted.through").unwrap(), b"2", "set on the link itself");
        assert!(get(m.src("target"), "trusted.through").is_err(), "not on its target");
        let mut names = [0u8; 256];
        let n = llistxattr(m.mnt("link"), &mut names[..]).unwrap();
        let listed: Vec<&[u8]> = names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
        assert!(
            listed.contains(&&b"trusted.through"[..])
                && listed.contains(&&b"trusted.from_source"[..])
        );
        // The target's list through the followed path is the target's.
        let mut names = [0u8; 256];
        let n = listxattr(m.mnt("link"), &mut names[..]).unwrap();
        assert!(!names[..n].windows(7).any(|w| w == b"trusted"), "listxattr follows the link");

        fs::rename(m.mnt("link"), m.mnt("moved")).unwrap();
        assert_eq!(get(m.mnt("moved"), "trusted.through").unwrap(), b"2", "after a rename");
        lremovexattr(m.mnt("moved"), "trusted.from_source").unwrap();
        assert!(get(m.src("moved"), "trusted.from_source").is_err());
        let user = lsetxattr(m.mnt("moved"), "user.x", b"u", XattrFlags::empty()).unwrap_err();
        let native = lsetxattr(m.src("moved"), "user.x", b"u", XattrFlags::empty()).unwrap_err();
        assert_eq!(user, native, "user.* on a symlink: the source's answer");

        // Behind the server's back, the name now holds another symlink: its attributes are not
        // handed out for the one the kernel asked about.
        fs::rename(m.src("moved"), m.src("elsewhere")).unwrap();
        std::os::unix::fs::symlink("target", m.src("moved")).unwrap();
        lsetxattr(m.src("moved"), "trusted.other", b"3", XattrFlags::empty()).unwrap();
        let through = get(m.mnt("moved"), "trusted.other").map_err(|e| e.raw_os_error());
        assert_eq!(through, Err(libc::EOPNOTSUPP), "another link's attribute for this one");
    }
}

/// What a user's write, fallocate, punch hole, zero range, truncate or truncating open clears
/// (xfstests generic/683-685 and 688): setuid always, setgid when the group may execute or
/// the user is not in the file's group, a file's capabilities (security.capability) always,
/// and the operation itself succeeds. The source is the reference: the same cases made there
/// and through the mount, in every mode, must leave the same modes and capabilities, and the
/// mode the mount shows right after is the new one (a stat asking only for the mode, which
/// the kernel answers from its cache when it can).
#[test]
fn writes_by_other_users_clear_setuid_setgid_and_capabilities_as_the_source_does() {
    const OPS: [&str; 6] = ["write", "fallocate", "punch", "zero", "truncate", "otrunc"];
    const USER: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for case in sys.argv[1:]:
    path, op = case, case.rsplit("-", 1)[1]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC if op == "otrunc" else os.O_RDWR)
        modes = {"fallocate": 0, "punch": 3, "zero": 0x10}
        if op == "write":
            os.pwrite(fd, b"y", 10)
        elif op in modes:
            if libc.fallocate(fd, modes[op], ctypes.c_long(0), ctypes.c_long(8192)):
                raise OSError(ctypes.get_errno(), op)
        elif op == "truncate":
            os.ftruncate(fd, 100)
        os.close(fd)
        print("ok")
    except OSError as e:
        print(errno.errorcode[e.errno])
"#;
    // 20 bytes of VFS_CAP_REVISION_2: cap_net_bind_service permitted.
    const CAPS: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let cases = |dir: &std::path::Path| -> String {
        let mut files = Vec::new();
        for mode in [0o6666, 0o6766, 0o4666, 0o2666, 0o2676, 0o666] {
            for group in [0, 65534] {
                for op in OPS {
                    let caps = mode == 0o666;
                    let f = dir.join(format!("{mode:o}-{group}-{op}"));
                    fs::write(&f, vec![b'x'; 65536]).unwrap();
                    std::os::unix::fs::chown(&f, Some(0), Some(group)).unwrap();
                    fs::set_permissions(&f, PermissionsExt::from_mode(mode)).unwrap();
                    if caps {
                        rustix::fs::setxattr(
                            &f,
                            "security.capability",
                            &CAPS,
                            rustix::fs::XattrFlags::empty(),
                        )
                        .unwrap();
                    }
                    files.push(f);
                }
            }
        }
        let out = Command::new("python3")
            .arg("-c")
            .arg(USER)
            .args(&files)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8(out.stdout).unwrap();
        assert_eq!(said.lines().count(), files.len(), "{said}");
        let mut report = String::new();
        for (f, result) in files.iter().zip(said.lines()) {
            let st = rustix::fs::statx(
                rustix::fs::CWD,
                f,
                rustix::fs::AtFlags::empty(),
                rustix::fs::StatxFlags::MODE,
            )
            .unwrap();
            let caps = rustix::fs::getxattr(f, "security.capability", &mut [0u8; 64]).is_ok();
            let name = f.file_name().unwrap().to_string_lossy();
            let mode = st.stx_mode & 0o7777;
            report += &format!("{name}: {result}, mode {mode:o}, caps {caps}\n");
        }
        report
    };
    for mode in ["", ",nopassthrough", ",writeback"] {
        let m = Mounted::start(&["-o", &format!("allow_other{mode}")]);
        fs::create_dir(m.src("native")).unwrap();
        fs::create_dir(m.src("through")).unwrap();
        let native = cases(&m.src("native"));
        // The rules under test, as the source applies them.
        for line in [
            "6666-0-write: ok, mode 666, caps false",
            "6666-65534-fallocate: ok, mode 2666, caps false",
            "2676-65534-punch: ok, mode 676, caps false",
            "666-0-zero: ok, mode 666, caps false",
        ] {
            assert!(native.lines().any(|l| l == line), "not {line:?} on the source: {native}");
        }
        let through = cases(&m.mnt("through"));
        let differ: Vec<String> = native
            .lines()
            .zip(through.lines())
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("source {a} | mount {b}"))
            .collect();
        assert!(differ.is_empty(), "allow_other{mode}: {differ:#?}");
    }
}

/// POSIX ACLs through the mount do what they do on the source (FUSE_POSIX_ACL with the
/// kernel's permission checks): an ACL entry grants a user what the mode does not, or refuses
/// what it allows, on files and directories; a setfacl's new mode shows at once (xfstests
/// generic/375's stale mode); the owner's setfacl clears setgid when the owner is not in the
/// file's group (generic/375) and keeps it when it is; a default ACL is inherited whatever the
/// umask. Each line is compared with the same script run on the source itself, in every mode.
#[test]
fn posix_acls_grant_refuse_and_change_modes_as_on_the_source() {
    const SCRIPT: &str = r#"
cd "$1" || exit 1
U="setpriv --reuid=65534 --regid=65534 --clear-groups"
echo secret > grant; chmod 600 grant; setfacl -m u:65534:r grant
echo "grant: $($U cat grant 2>&1 | sed 's/.*: //')"
echo data > deny; chmod 644 deny; setfacl -m u:65534:- deny
echo "deny: $($U cat deny 2>&1 | sed 's/.*: //')"
mkdir dir; chmod 700 dir; setfacl -m u:65534:rx dir; echo in > dir/f; chmod 644 dir/f
echo "dir: $($U cat dir/f 2>&1 | sed 's/.*: //')"
echo x > mode; chmod 640 mode; setfacl -m g::rwx mode; echo "mode: $(stat -c %a mode)"
echo x > sgid; chown 65534:0 sgid; chmod 2755 sgid; $U setfacl -m u:0:r sgid
echo "sgid, owner not in the group: $(stat -c %a sgid)"
echo x > sgid2; chown 65534:65534 sgid2; chmod 2755 sgid2; $U setfacl -m u:0:r sgid2
echo "sgid, owner in the group: $(stat -c %a sgid2)"
mkdir def; setfacl -m u:65534:rwx,d:u:65534:rwx def; $U sh -c "umask 077; touch def/new"
echo "inherited: $(getfacl -cp def/new 2>&1 | tr '\n' ' ')"
"#;
    let run = |dir: &std::path::Path| -> String {
        let out = Command::new("sh").arg("-c").arg(SCRIPT).arg("sh").arg(dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // Without the kernel's checks (nodefault_permissions) the source checks as the caller,
    // and the mode a setfacl changes must show at once all the same.
    for mode in ["", ",nopassthrough", ",writeback", ",nodefault_permissions"] {
        let m = Mounted::start(&["-o", &format!("allow_other{mode}")]);
        for dir in ["native", "through"] {
            fs::create_dir(m.src(dir)).unwrap();
            fs::set_permissions(m.src(dir), PermissionsExt::from_mode(0o777)).unwrap();
        }
        let native = run(&m.src("native"));
        for line in ["grant: secret", "deny: Permission denied", "dir: in", "mode: 670"] {
            assert!(native.lines().any(|l| l == line), "not {line:?} on the source: {native}");
        }
        assert!(native.contains("owner not in the group: 755\n"), "{native}");
        assert!(native.contains("user:nobody:rwx"), "{native}");
        assert_eq!(run(&m.mnt("through")), native, "allow_other{mode}");
    }
}

/// `noatime` holds on the source (xfstests generic/003 and 120): reading a file (as its owner
/// and as another user), running a program and listing a directory through a noatime mount
/// leave the source's access times as they were, in every mode, after a restart of the reads
/// too; through a mount without it, the same accesses update them (the source's relatime:
/// the case under test).
#[test]
fn noatime_mounts_leave_the_sources_access_times_alone() {
    use rustix::fs::{AtFlags, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let old = Timespec { tv_sec: 1_000_000, tv_nsec: 0 };
    for mode in ["", ",nopassthrough", ",writeback"] {
        for noatime in [true, false] {
            let options = format!("allow_other{mode}{}", if noatime { ",noatime" } else { "" });
            let m = Mounted::start(&["-o", &options]);
            for f in ["by-root", "by-user"] {
                fs::write(m.src(f), b"data").unwrap();
                fs::set_permissions(m.src(f), PermissionsExt::from_mode(0o644)).unwrap();
            }
            fs::copy("/bin/true", m.src("program")).unwrap();
            fs::create_dir(m.src("dir")).unwrap();
            fs::write(m.src("dir/entry"), b"").unwrap();
            let all = ["by-root", "by-user", "program", "dir"];
            for f in all {
                let times = Timestamps { last_access: old, last_modification: UTIME_OMIT_TS };
                utimensat(rustix::fs::CWD, m.src(f), &times, AtFlags::empty()).unwrap();
            }
            fs::read(m.mnt("by-root")).unwrap();
            let user = Command::new("cat").arg(m.mnt("by-user")).uid(65534).gid(65534).output();
            assert_eq!(user.unwrap().stdout, b"data", "{options}");
            assert!(Command::new(m.mnt("program")).status().unwrap().success(), "{options}");
            assert_eq!(fs::read_dir(m.mnt("dir")).unwrap().count(), 1);
            for f in all {
                let atime = fs::metadata(m.src(f)).unwrap().atime();
                if noatime {
                    assert_eq!(atime, old.tv_sec, "{options}: {f}'s atime changed on the source");
                } else {
                    assert!(atime > old.tv_sec, "{options}: the source did not update {f}'s atime");
                }
            }
        }
    }
    const UTIME_OMIT_TS: Timespec = Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT };
}

/// A file holds as many extended attributes, and values as large, through the mount as on
/// the source, and the one too many fails with the source's error (xfstests generic/020
/// assumes 1,000 attributes and 64 KiB values for any FUSE filesystem; a passthrough holds
/// what its source holds: about 110 on ext4 with 4 KiB blocks).
#[test]
fn extended_attribute_limits_are_the_sources() {
    for mode in ["", ",nopassthrough", ",writeback"] {
        use rustix::fs::{XattrFlags, getxattr, setxattr};
        let m = Mounted::start(&["-o", &format!("attr_timeout=1{mode}")]);
        let fill = |file: std::path::PathBuf| -> (usize, Option<rustix::io::Errno>) {
            fs::write(&file, b"").unwrap();
            for n in 0..5000 {
                let (name, value) = (format!("user.attribute_{n}"), format!("value_{n}"));
                if let Err(errno) = setxattr(&file, &name, value.as_bytes(), XattrFlags::empty()) {
                    return (n, Some(errno));
                }
            }
            (5000, None)
        };
        let native = fill(m.src("native"));
        assert!(native.0 > 10 && native.1.is_some(), "the source's limit: {native:?}");
        assert_eq!(fill(m.mnt("through")), native, "attributes held through the mount");
        let sizes = |file: std::path::PathBuf| -> Vec<Result<usize, rustix::io::Errno>> {
            fs::write(&file, b"").unwrap();
            [1 << 10, 2 << 10, 3 << 10, 4000, 4 << 10, 8 << 10, 32 << 10, 65536]
                .into_iter()
                .map(|size| {
                    let value = vec![b'v'; size];
                    setxattr(&file, "user.long", &value, XattrFlags::empty())?;
                    let mut back = vec![0u8; 65536];
                    let n = getxattr(&file, "user.long", &mut back)?;
                    assert_eq!(&back[..n], &value[..], "the value read back");
                    Ok(n)
                })
                .collect()
        };
        let native = sizes(m.src("native-sizes"));
        assert!(native[0].is_ok(), "{native:?}");
        assert_eq!(sizes(m.mnt("through-sizes")), native, "value sizes through the mount");
    }
}

/// A write through a shared mapping changes the file's mtime as the mount shows it, asked
/// right after the writer exits and asking for nothing but the mtime (xfstests generic/080 and
/// 215). With kernel passthrough the mapping is the source file's: no request reaches the
/// server, so the attributes of a file open for writing are not cached.
#[test]
fn writes_through_a_mapping_change_the_mtime_the_mount_shows() {
    const WRITER: &str = r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 4096)
m[0:5] = b"MMAP!"
m.close()
os.close(fd)
"#;
    let mtime = |path: &std::path::Path| {
        let st = rustix::fs::statx(
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::MTIME,
        )
        .unwrap();
        (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec)
    };
    for mode in ["", ",nopassthrough", ",writeback"] {
        let m = Mounted::start(&["-o", &format!("attr_timeout=60{mode}")]);
        fs::write(m.src("mapped"), vec![b'x'; 4096]).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        fs::File::options().write(true).open(m.src("mapped")).unwrap().set_modified(old).unwrap();
        let before = mtime(&m.mnt("mapped"));
        assert_eq!(before.0, 1_000_000_000, "{mode}");
        let out = Command::new("python3").arg("-c").arg(WRITER).arg(m.mnt("mapped")).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(&fs::read(m.src("mapped")).unwrap()[..5], b"MMAP!", "{mode}");
        let after = mtime(&m.mnt("mapped"));
        assert!(after.0 > before.0, "{mode}: the mount shows the mtime from before the write");
        assert_eq!(after, mtime(&m.src("mapped")), "{mode}: the source's mtime");
    }
}

/// The same for a file the application creates through the mount and keeps open for
/// writing: the CREATE's entry carries no cached attributes (the invalidation an OPEN sends
/// cannot reach an inode the kernel does not know yet), so a change the kernel does not see,
/// as a write through a mapping is, shows at the next stat.
#[test]
fn a_file_created_for_writing_through_kernel_passthrough_has_no_cached_attributes() {
    const CREATOR: &str = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
os.utime(sys.argv[2], ns=(10**18, 10**18))
print(os.stat(sys.argv[1]).st_mtime_ns)
os.close(fd)
"#;
    let m = Mounted::start(&["-o", "attr_timeout=60,entry_timeout=60"]);
    let out = Command::new("python3")
        .arg("-c")
        .arg(CREATOR)
        .arg(m.mnt("created"))
        .arg(m.src("created"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1000000000000000000",
        "the mount shows the mtime the file was created with"
    );
}

/// A file others may write but not read (mode 0602) takes another user's write-only open
/// and write, and refuses their read, in every mode (xfstests generic/126 in writeback mode,
/// where the server opens write-only files read-write for the page cache).
#[test]
fn write_only_files_take_writes_from_users_who_may_not_read_them() {
    const USER: &str = r#"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"written by a user")
os.close(fd)
try:
    os.open(sys.argv[1], os.O_RDONLY)
    print("read allowed")
except OSError as e:
    print(errno.errorcode[e.errno])
"#;
    for mode in ["", ",nopassthrough", ",writeback"] {
        let m = Mounted::start(&["-o", &format!("allow_other{mode}")]);
        fs::write(m.src("drop-box"), b"old content, longer than the new").unwrap();
        fs::set_permissions(m.src("drop-box"), PermissionsExt::from_mode(0o602)).unwrap();
        let out = Command::new("python3")
            .arg("-c")
            .arg(USER)
            .arg(m.mnt("drop-box"))
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "allow_other{mode}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "EACCES", "allow_other{mode}");
        assert_eq!(fs::read(m.src("drop-box")).unwrap(), b"written by a user", "{mode}");
    }
}

/// `strictatime` holds on the source (xfstests generic/003): a read of a file read since its
/// last change (which the source's relatime leaves alone: the control, through a mount
/// without it) updates its access time, and its ctime stays; an `ro` mount updates none; in
/// every mode, kernel passthrough's reads included (the server works on a detached copy of
/// the source's mount with the mount's policy).
#[test]
fn strictatime_mounts_update_access_times_the_sources_relatime_would_not() {
    use rustix::fs::{AtFlags, Timespec, Timestamps, utimensat};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    // Modified two hours ago, read (as the source has it) a minute from now, after its
    // change (this very utimensat): relatime updates it on no read.
    let read_at = now + 60;
    let times = Timestamps {
        last_access: Timespec { tv_sec: read_at, tv_nsec: 0 },
        last_modification: Timespec { tv_sec: now - 7200, tv_nsec: 0 },
    };
    for mode in ["", ",nopassthrough", ",writeback"] {
        for (policy, updates) in [(",strictatime", true), ("", false), (",ro,strictatime", false)] {
            let options = format!("allow_other{mode}{policy}");
            let m = Mounted::dirs();
            fs::write(m.src("f"), b"data").unwrap();
            utimensat(rustix::fs::CWD, m.src("f"), &times, AtFlags::empty()).unwrap();
            let mut m = m;
            m.spawn(&["-o", &options], None);
            m.wait_mounted();
            let ctime = |m: &Mounted| {
                let meta = fs::metadata(m.src("f")).unwrap();
                (meta.ctime(), meta.ctime_nsec())
            };
            let ctime_before = ctime(&m);
            assert_eq!(fs::read(m.mnt("f")).unwrap(), b"data", "{options}");
            let atime = fs::metadata(m.src("f")).unwrap().atime();
            assert_eq!(ctime(&m), ctime_before, "{options}: the read changed the ctime");
            if updates {
                assert!(atime < read_at, "{options}: the read left the source's atime");
            } else {
                assert_eq!(atime, read_at, "{options}: the read changed the source's atime");
            }
        }
    }
}

/// Handles of files given out by one mount, as an NFS export's clients hold them across a
/// server reboot, against the server of a later mount of the same source.
fn open_handles(m: &Mounted, handles: &[String]) -> Vec<String> {
    let out = Command::new("python3")
        .args(["-c", common::HANDLES_APP, "open"])
        .arg(&m.mountpoint)
        .args(handles)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

/// With `inode_file=`, file handles outlive the mount (xfstests generic/477, 777): handles of
/// files, directories and connectable ones taken on one mount open the same files on the
/// next mount of the source, started right as the first is unmounted; a file removed in
/// between is ESTALE. An inode file cut short restores what it holds; one another user may
/// write, or that is no inode file, is not used (its handles are ESTALE) and the mount works.
#[test]
fn with_an_inode_file_file_handles_open_their_files_on_the_next_mount() {
    for mode in ["", ",nopassthrough", ",writeback"] {
        let mut m = Mounted::dirs();
        let inode_file = m.dir.path().join("inodes");
        let options = format!("allow_other,inode_file={}{mode}", inode_file.display());
        fs::create_dir_all(m.src("d/e")).unwrap();
        for (name, content) in
            [("d/f", "in d"), ("g", "at the root"), ("gone", "x"), ("d/e/h", "deep")]
        {
            fs::write(m.src(name), content).unwrap();
        }
        m.spawn(&["-o", &options], None);
        m.wait_mounted();
        let mut args: Vec<std::ffi::OsString> =
            ["d/f", "g", "gone", "d/e", "d"].map(|p| m.mnt(p).into()).to_vec();
        args.push(format!("connectable:{}", m.mnt("d/e/h").display()).into());
        let out = Command::new("python3")
            .args(["-c", common::HANDLES_APP, "encode"])
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let handles: Vec<String> =
            String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
        let remount = |m: &mut Mounted| {
            fuse_transport::unmount_detached(&m.mountpoint).unwrap();
            // The next server starts at once; it waits for this one to have saved.
            let old = m.server.take();
            m.spawn(&["-o", &options], None);
            if let Some(mut old) = old {
                old.wait().unwrap();
            }
            m.wait_mounted();
        };
        remount(&mut m);
        fs::remove_file(m.src("gone")).unwrap();
        let want = ["in d", "at the root", "ESTALE", "dir ['h']", "dir ['e', 'f']", "deep"];
        assert_eq!(open_handles(&m, &handles), want, "on the next mount");
        assert_eq!(fs::read(m.mnt("d/f")).unwrap(), b"in d", "names work beside the handles");
        remount(&mut m);
        assert_eq!(open_handles(&m, &handles), want, "on the mount after");
        // Cut short: the records before the cut are restored, the rest are not.
        fuse_transport::unmount_detached(&m.mountpoint).unwrap();
        m.server.take().unwrap().wait().unwrap();
        let saved = fs::read(&inode_file).unwrap();
        assert!(saved.len() > 100, "the server saved its table: {} bytes", saved.len());
        fs::write(&inode_file, &saved[..saved.len() / 2]).unwrap();
        fs::set_permissions(&inode_file, PermissionsExt::from_mode(0o600)).unwrap();
        m.spawn(&["-o", &options], None);
        m.wait_mounted();
        let got = open_handles(&m, &handles);
        let (kept, lost): (Vec<_>, Vec<_>) =
            (0..want.len()).filter(|&i| i != 2).partition(|&i| got[i] == want[i]);
        assert!(
            !kept.is_empty() && !lost.is_empty(),
            "half a file: some restored, some not: {got:?}"
        );
        assert!(lost.iter().all(|&i| got[i] == "ESTALE"), "{got:?}");
        // Writable by others, then not an inode file: not used, the mount serves.
        for (bytes, mode) in [(saved.clone(), 0o666), (b"garbage".to_vec(), 0o600)] {
            fuse_transport::unmount_detached(&m.mountpoint).unwrap();
            m.server.take().unwrap().wait().unwrap();
            fs::write(&inode_file, &bytes).unwrap();
            fs::set_permissions(&inode_file, PermissionsExt::from_mode(mode)).unwrap();
            m.spawn(&["-o", &options], None);
            m.wait_mounted();
            let got = open_handles(&m, &handles);
            assert!(got.iter().all(|g| g == "ESTALE"), "mode {mode:o}: {got:?}");
            assert_eq!(fs::read(m.mnt("g")).unwrap(), b"at the root");
        }
    }
}
