//! Attacks by an unprivileged local user (uid 65534) on a root passthroughfs with
//! `allow_other`, on real mounts: each is refused (docs/SECURITY.md).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use common::Mounted;

const NOBODY: u32 = 65534;

/// `sh -c SCRIPT` as uid/gid 65534 (std drops root's supplementary groups with the uid).
fn as_nobody(script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run sh as nobody")
}

/// A character device node like /dev/null (1:3), mode 0666, at `path`.
fn make_dev_null(path: &std::path::Path) {
    use rustix::fs::{FileType, Mode, makedev, mknodat};
    mknodat(
        rustix::fs::CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        makedev(1, 3),
    )
    .expect("mknod");
}

fn mode_of(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// Attack 6: the retry-as-root path for a SETATTR that only clears setuid/setgid (what the
/// kernel sends before a write by a non-owner) let anyone clear those bits on root's files.
#[test]
fn a_user_who_may_not_write_a_setuid_file_cannot_clear_its_setuid_bit() {
    for args in ["allow_other", "allow_other,nopassthrough"] {
        let (m, keeper) = recoverable_mount(args);
        fs::write(m.src("suid"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(m.src("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        let out = as_nobody(&format!("chmod 0755 '{}'", m.mnt("suid").display()));
        assert!(!out.status.success(), "{args:?}: nobody's chmod of root's 4755 file succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not permitted"), "{args:?}: {stderr}");
        assert_eq!(mode_of(&m.src("suid")), 0o4755, "{args:?}: the mode changed");
        assert_ls_answers_at_once(&keeper);

        // A writer who is not the owner still gets what the kernel asks for it: its write
        // drops setuid/setgid (file_remove_privs), as on the source filesystem.
        fs::write(m.src("shared"), b"x").unwrap();
        fs::set_permissions(m.src("shared"), fs::Permissions::from_mode(0o6777)).unwrap();
        let out = as_nobody(&format!("echo more >> '{}'", m.mnt("shared").display()));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(mode_of(&m.src("shared")), 0o0777, "{args:?}: setuid/setgid survived a write");
        assert_eq!(fs::read(m.src("shared")).unwrap(), b"xmore\n");
    }
}

/// Attack 7: without `nosuid` a setuid-root binary on the source runs as root for any user of
/// an `allow_other` mount; without `nodev` a device node on the source opens the device.
/// libfuse mounts `nosuid,nodev` unless asked otherwise; so do we.
#[test]
fn mounts_are_nosuid_and_nodev_unless_asked() {
    let (m, keeper) = recoverable_mount("allow_other");
    let entry = fuse_transport::mount_entry(&m.mountpoint).unwrap().expect("mounted");
    let flags: Vec<&str> = entry.mount_options.split(',').collect();
    assert!(flags.contains(&"nosuid") && flags.contains(&"nodev"), "{}", entry.mount_options);

    // A setuid-root copy of id(1) and a device node, made by root on the source.
    fs::copy("/usr/bin/id", m.src("id")).unwrap();
    fs::set_permissions(m.src("id"), fs::Permissions::from_mode(0o4755)).unwrap();
    make_dev_null(&m.src("null"));

    let out = as_nobody(&format!("'{}' -u", m.mnt("id").display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "65534", "setuid honoured");
    let err = fs::File::open(m.mnt("null")).expect_err("a device opened through a nodev mount");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert_ls_answers_at_once(&keeper);
    drop((keeper, m));

    // Asked for, both work (root's choice).
    let (m, _keeper) = recoverable_mount("allow_other,suid,dev");
    fs::copy("/usr/bin/id", m.src("id")).unwrap();
    fs::set_permissions(m.src("id"), fs::Permissions::from_mode(0o4755)).unwrap();
    let out = as_nobody(&format!("'{}' -u", m.mnt("id").display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "-o suid: setuid honoured");
    make_dev_null(&m.src("null"));
    fs::File::open(m.mnt("null")).expect("-o dev: the device opens");
}

/// A recoverable passthroughfs command line on `m` against `keeper`, with `-o OPTIONS`.
fn recoverable(m: &Mounted, keeper: &common::Keeper, options: &str) -> Command {
    m.server_command(&keeper.socket, options)
}

/// Root's `fuse-keeper ls` answers within a second while an attack is in place (issue 14:
/// nothing an attacker does may stall the keeper for everyone).
fn assert_ls_answers_at_once(keeper: &common::Keeper) {
    let asked = std::time::Instant::now();
    let out = Command::new(common::workspace_bin("fuse-keeper"))
        .arg("ls")
        .env("FUSE_KEEPER_SOCKET", &keeper.socket)
        .output()
        .unwrap();
    let took = asked.elapsed();
    assert!(out.status.success(), "ls: {}", String::from_utf8_lossy(&out.stderr));
    assert!(took < std::time::Duration::from_secs(1), "root's ls took {took:?}");
}

/// Starts `m`'s server as root, recoverable (tag `victim`) under a keeper of its own, with
/// `-o OPTIONS`: the node-wide setup the attacks are made against. Returns the keeper, whose
/// `ls` root asks while an attack is in place.
fn serve_recoverable(m: &mut Mounted, options: &str) -> common::Keeper {
    let keeper = common::Keeper::start(m.dir.path());
    let options = format!("{options},tag=victim,nokeeper_start");
    m.server = Some(recoverable(m, &keeper, &options).spawn().expect("spawn passthroughfs"));
    m.wait_mounted();
    keeper.wait_serving(m.pid());
    keeper
}

/// [`serve_recoverable`] on new directories.
fn recoverable_mount(options: &str) -> (Mounted, common::Keeper) {
    let mut m = Mounted::dirs();
    let keeper = serve_recoverable(&mut m, options);
    (m, keeper)
}

/// Waits until the keeper lists a connection in state `state`.
fn wait_listed_state(keeper: &common::Keeper, state: &str) {
    let want = format!("\"state\":\"{state}\"");
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while !keeper.ls_json().contains(&want) {
        assert!(std::time::Instant::now() < deadline, "never {state}: {}", keeper.ls_json());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Attack 1, the poisoned tag: uid 65534 registers tag `data` naming root as the rescue uid
/// (with a state store it wrote) and dies, leaving the entry orphaned. Root's server for tag
/// `data`, started afterwards, must not attach it (it would serve nobody's connection from
/// nobody's store, reopening as root whatever file handles that store names): it mounts
/// fresh, and root's own ATTACH of the tag finds nothing.
#[test]
fn a_tag_another_user_registered_for_root_is_never_attached_by_root() {
    let mut attacker = Mounted::dirs();
    let keeper = common::Keeper::start(attacker.dir.path());
    for dir in [&attacker.source, &attacker.mountpoint] {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    fs::write(attacker.src("bait"), b"nobody's").unwrap();
    let mut cmd = recoverable(&attacker, &keeper, "tag=data,rescue_uid=0,nokeeper_start");
    attacker.server = Some(cmd.uid(NOBODY).gid(NOBODY).spawn().unwrap());
    attacker.wait_mounted();
    keeper.wait_serving(attacker.pid());
    attacker.signal(rustix::process::Signal::KILL);
    attacker.wait_exit(common::PATIENCE).expect("the attacker's server reaped");
    wait_listed_state(&keeper, "orphaned");
    let ls = keeper.ls_json();
    assert!(ls.contains("\"owner_uid\":65534,\"rescue_uid\":0"), "{ls}");

    assert_ls_answers_at_once(&keeper);
    // Root's ATTACH of the tag: nothing to attach.
    let mut client = fuse_keeper_client::KeeperClient::connect(&keeper.socket).unwrap();
    assert!(client.attach("data").unwrap().is_none(), "root was handed nobody's connection");

    // Root's server with the same tag mounts fresh on its own mountpoint and serves its own
    // source.
    let mut victim = Mounted::dirs();
    fs::write(victim.src("mine"), b"root's").unwrap();
    victim.server = Some(recoverable(&victim, &keeper, "tag=data,nokeeper_start").spawn().unwrap());
    victim.wait_mounted();
    keeper.wait_serving(victim.pid());
    assert_eq!(fs::read(victim.mnt("mine")).unwrap(), b"root's");
    assert!(!victim.mnt("bait").exists());
    let ls = keeper.ls_json();
    assert_eq!(ls.matches("\"tag\":\"data\"").count(), 2, "{ls}");
    assert!(ls.contains("\"owner_uid\":0,\"rescue_uid\":0"), "{ls}");
    assert!(!keeper.log().contains("attached"), "{}", keeper.log());
    assert_ls_answers_at_once(&keeper);
}

/// The library's own check: a connection the keeper holds under our tag but registered for
/// another mountpoint is refused, not served (it used to be served with a warning).
#[test]
fn a_server_refuses_a_connection_registered_for_another_mountpoint() {
    let mut m = Mounted::dirs();
    let keeper = common::Keeper::start(m.dir.path());
    fs::write(m.src("f"), b"kept").unwrap();
    m.server = Some(recoverable(&m, &keeper, "tag=moved,nokeeper_start").spawn().unwrap());
    m.wait_mounted();
    keeper.wait_serving(m.pid());
    m.signal(rustix::process::Signal::KILL);
    m.wait_exit(common::PATIENCE).expect("reaped");
    wait_listed_state(&keeper, "orphaned");

    // The same tag for another mountpoint (a Mounted, so that it is cleaned up whatever it
    // does; its server must exit by itself, with the reason).
    let mut refused = Mounted::dirs();
    let log = refused.dir.path().join("refused.log");
    let mut cmd = recoverable(&refused, &keeper, "tag=moved,nokeeper_start");
    refused.server = Some(cmd.stderr(fs::File::create(&log).unwrap()).spawn().unwrap());
    let status = refused.wait_exit(common::PATIENCE);
    let stderr = fs::read_to_string(&log).unwrap();
    let status = status.unwrap_or_else(|| panic!("it serves a connection mounted elsewhere"));
    assert!(!status.success(), "a server served a connection mounted elsewhere: {stderr}");
    assert!(stderr.contains("is mounted at") && stderr.contains("not at"), "{stderr}");
    assert!(!refused.is_mounted());
    assert_ls_answers_at_once(&keeper);

    // The connection still waits for its own mountpoint's server, which attaches.
    wait_listed_state(&keeper, "orphaned");
    m.server = Some(recoverable(&m, &keeper, "tag=moved,nokeeper_start").spawn().unwrap());
    keeper.wait_serving(m.pid());
    assert_eq!(fs::read(m.mnt("f")).unwrap(), b"kept");
}

/// Suspected attack (issue 14): without `default_permissions`, a path the kernel has cached is
/// walked without asking the server, so a user could open a file under another user's 0700
/// directory once that user had looked it up. A root server with `allow_other` has the
/// kernel check permissions; `nodefault_permissions` turns that off (and shows the attack).
#[test]
fn a_cached_path_under_another_users_private_directory_stays_closed() {
    for (options, closed) in [("allow_other", true), ("allow_other,nodefault_permissions", false)] {
        let (m, keeper) = recoverable_mount(options);
        fs::create_dir(m.src("private")).unwrap();
        fs::write(m.src("private/f"), b"secret").unwrap();
        fs::set_permissions(m.src("private/f"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(m.src("private"), fs::Permissions::from_mode(0o700)).unwrap();
        let path = m.mnt("private/f");
        // Root, the owner, reads it: the kernel caches both names.
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        let out = as_nobody(&format!("cat '{}'", path.display()));
        if closed {
            assert!(!out.status.success(), "{options}: nobody read a file under a 0700 dir");
            assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
            let out = as_nobody(&format!("stat '{}'", path.display()));
            assert!(!out.status.success(), "{options}: nobody stat'ed under a 0700 dir");
            assert_ls_answers_at_once(&keeper);
        } else {
            assert_eq!(out.stdout, b"secret", "{options}: the attack this test guards against");
        }
    }
}

/// An ext4 image mounted through a loop device on `dir/fs`, with half its blocks reserved for
/// root and a world-writable sticky `src` directory; lazily unmounted when dropped.
struct ReservedFs {
    fs: std::path::PathBuf,
}

impl ReservedFs {
    fn new(dir: &std::path::Path) -> ReservedFs {
        let image = dir.join("ext4.img");
        let fs = dir.join("fs");
        fs::create_dir(&fs).unwrap();
        std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(Command::new("mkfs.ext4").args(["-q", "-m", "50"]).arg(&image));
        run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&fs));
        let reserved = ReservedFs { fs };
        fs::create_dir(reserved.fs.join("src")).unwrap();
        fs::set_permissions(reserved.fs.join("src"), fs::Permissions::from_mode(0o1777)).unwrap();
        reserved
    }

    /// (free blocks, blocks available to others than root).
    fn blocks(&self) -> (u64, u64) {
        let st = rustix::fs::statvfs(&self.fs).unwrap();
        (st.f_bfree, st.f_bavail)
    }
}

impl Drop for ReservedFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.fs).status();
    }
}

/// Suspected attack (issue 14): writes through kernel passthrough were done with the
/// credentials recorded when the server registered the backing file (root's), and server-side
/// writes with whatever identity the worker thread had last: a user could fill the blocks
/// ext4 reserves for root (and write past its quota). Filling a filesystem through the mount
/// as uid 65534 must leave root's reserve as writing on it directly does.
#[test]
fn a_user_cannot_write_into_the_blocks_reserved_for_root() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let ext4 = ReservedFs::new(dir.path());
    let fill = |path: &std::path::Path| {
        let out = as_nobody(&format!("dd if=/dev/zero of='{}' bs=64k 2>&1", path.display()));
        assert!(!out.status.success(), "dd did not run out of space");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("No space left"), "{said}");
    };
    // On the filesystem itself: what the reserve leaves root.
    fill(&ext4.fs.join("src/direct"));
    let (direct_free, direct_avail) = ext4.blocks();
    fs::remove_file(ext4.fs.join("src/direct")).unwrap();
    assert!(direct_free > 1000, "the reserve: {direct_free} blocks");
    for mode in ["allow_other", "allow_other,nopassthrough"] {
        let mnt = dir.path().join("mnt");
        let _ = fs::create_dir(&mnt);
        let m = Mounted {
            dir: tempfile::tempdir().unwrap(),
            source: ext4.fs.join("src"),
            mountpoint: mnt.clone(),
            server: None,
        };
        let mut m = m;
        let keeper = serve_recoverable(&mut m, mode);
        fill(&m.mnt("fill"));
        assert_ls_answers_at_once(&keeper);
        let (free, avail) = ext4.blocks();
        assert!(
            free + 64 >= direct_free,
            "{mode}: uid 65534 left {free} free blocks (avail {avail}); writing directly \
             leaves {direct_free} (avail {direct_avail})"
        );
        fs::remove_file(m.src("fill")).unwrap();
        drop(m);
    }
}

/// A FUSE mount at `at` made by root as if uid 65534 had mounted it with `allow_other` (what
/// fusermount3 does for a user when /etc/fuse.conf has `user_allow_other`), whose INIT nobody
/// answers: every request into it waits until the connection is aborted. Aborted through
/// fusectl and detached when dropped.
struct StalledUserMount {
    path: std::path::PathBuf,
    _device: std::os::fd::OwnedFd,
}

impl StalledUserMount {
    fn new(at: &std::path::Path) -> StalledUserMount {
        use std::os::fd::AsRawFd;
        let device = fuse_transport::open_device().expect("open /dev/fuse");
        let data = std::ffi::CString::new(format!(
            "fd={},rootmode=40000,user_id={NOBODY},group_id={NOBODY},allow_other",
            device.as_raw_fd()
        ))
        .unwrap();
        let flags = rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV;
        rustix::mount::mount("stalled", at, "fuse.stalled", flags, data.as_c_str())
            .expect("mount the stalled FUSE filesystem");
        StalledUserMount { path: at.to_owned(), _device: device }
    }
}

impl Drop for StalledUserMount {
    fn drop(&mut self) {
        let _ = fuse_transport::force_unmount(&self.path);
    }
}

/// The suspected attack where it holds: where users may mount with `allow_other`, uid 65534's
/// stalled FUSE mounts inside the source took a worker with each request into them (the root
/// server passes the kernel's `allow_other` check), until none was left for anyone. A lookup
/// into another user's FUSE mount is refused (EACCES) without a request to it, its name is
/// still listed, and root is served throughout.
#[test]
fn another_users_stalled_allow_other_fuse_mount_inside_the_source_stalls_nothing() {
    let (m, keeper) = recoverable_mount("allow_other,threads=2");
    fs::write(m.src("f"), b"data").unwrap();
    let mut stalled = Vec::new();
    for name in ["n1", "n2", "n3"] {
        fs::create_dir(m.src(name)).unwrap();
        stalled.push(StalledUserMount::new(&m.src(name)));
    }
    for name in ["n1", "n2", "n3"] {
        let path = m.mnt(&format!("{name}/x"));
        let out = common::within(common::PROMPT, "a read under a stalled mount", move || {
            as_nobody(&format!("cat '{}'", path.display()))
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("Permission denied"), "{stderr}");
    }
    let dir = m.mountpoint.clone();
    let listed: Vec<String> = common::within(common::PROMPT, "listing beside them", move || {
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
    });
    for name in ["f", "n1", "n2", "n3"] {
        assert!(listed.iter().any(|l| l == name), "{name} not listed: {listed:?}");
    }
    let path = m.mnt("f");
    let read = common::within(common::PROMPT, "root's read beside the stalled mounts", move || {
        fs::read(path).unwrap()
    });
    assert_eq!(read, b"data");
    assert_ls_answers_at_once(&keeper);
    // The user's mounts are untouched: still there at their own paths.
    for mount in &stalled {
        assert!(fuse_transport::is_fuse_mount(&mount.path));
    }
}

/// Suspected attacks (issue 14) with a FUSE mount of uid 65534's own inside a world-writable
/// directory of the source, its server stopped (SIGSTOP): (1) listing the directory through
/// the mount failed for everyone (READDIRPLUS failed whole when one entry could not be
/// stat'ed: that mount refuses all but its owner); (2) requests under it could hold every
/// worker, stalling the mount for all. Each name is still listed, and root's requests are
/// served while uid 65534 piles requests on its stalled mount (the server, running as root,
/// is refused by a mount without `allow_other` at once, before any request reaches it).
#[test]
fn another_users_stalled_fuse_mount_inside_the_source_stalls_nothing() {
    let (m, keeper) = recoverable_mount("allow_other,threads=2");
    fs::set_permissions(&m.source, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(m.src("f"), b"data").unwrap();
    let inner_src = m.dir.path().join("inner");
    fs::create_dir(&inner_src).unwrap();
    std::os::unix::fs::chown(&inner_src, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut inner = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let at = m.src(name);
        fs::create_dir(&at).unwrap();
        std::os::unix::fs::chown(&at, Some(NOBODY), Some(NOBODY)).unwrap();
        let mut mounted = Mounted {
            dir: tempfile::tempdir().unwrap(),
            source: inner_src.clone(),
            mountpoint: at,
            server: None,
        };
        mounted.spawn(&[], Some(NOBODY));
        mounted.signal(rustix::process::Signal::STOP);
        inner.push(mounted);
    }
    let listed: Vec<String> = fs::read_dir(&m.mountpoint)
        .expect("the directory lists")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for name in ["f", "n1", "n2", "n3"] {
        assert!(listed.iter().any(|l| l == name), "{name} not listed: {listed:?}");
    }
    let mut waiting = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let path = m.mnt(&format!("{name}/x"));
        let child = Command::new("cat")
            .arg(path)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        waiting.push(child);
    }
    let read = {
        let path = m.mnt("f");
        common::within(common::PROMPT, "root's read beside the stalled mounts", move || {
            fs::read(path).unwrap()
        })
    };
    assert_eq!(read, b"data");
    assert_ls_answers_at_once(&keeper);
    for mounted in &inner {
        mounted.signal(rustix::process::Signal::CONT);
    }
    for mut child in waiting {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(inner);
}
