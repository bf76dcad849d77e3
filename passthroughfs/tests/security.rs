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
    for args in [&["-o", "allow_other"][..], &["-o", "allow_other,nopassthrough"][..]] {
        let m = Mounted::start(args);
        fs::write(m.src("suid"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(m.src("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        let out = as_nobody(&format!("chmod 0755 '{}'", m.mnt("suid").display()));
        assert!(!out.status.success(), "{args:?}: nobody's chmod of root's 4755 file succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not permitted"), "{args:?}: {stderr}");
        assert_eq!(mode_of(&m.src("suid")), 0o4755, "{args:?}: the mode changed");

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
    let m = Mounted::start(&["-o", "allow_other"]);
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
    drop(m);

    // Asked for, both work (root's choice).
    let m = Mounted::start(&["-o", "allow_other,suid,dev"]);
    fs::copy("/usr/bin/id", m.src("id")).unwrap();
    fs::set_permissions(m.src("id"), fs::Permissions::from_mode(0o4755)).unwrap();
    let out = as_nobody(&format!("'{}' -u", m.mnt("id").display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "-o suid: setuid honoured");
    make_dev_null(&m.src("null"));
    fs::File::open(m.mnt("null")).expect("-o dev: the device opens");
}
