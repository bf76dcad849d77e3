//! fs.protected_symlinks, protected_regular and protected_fifos on the mount (xfstests
//! generic/597, 598). A test binary of its own: it turns those system-wide sysctls on for
//! its duration, and no other test may run beside it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::Mounted;

/// The sysctls set for the test, put back as they were when dropped.
struct Sysctls(Vec<(&'static str, String)>);

impl Sysctls {
    fn set(values: &[(&'static str, &str)]) -> Sysctls {
        let mut old = Vec::new();
        for (name, value) in values {
            let path = format!("/proc/sys/fs/{name}");
            old.push((*name, fs::read_to_string(&path).unwrap().trim().to_string()));
            fs::write(&path, value).unwrap();
        }
        Sysctls(old)
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (name, value) in &self.0 {
            let _ = fs::write(format!("/proc/sys/fs/{name}"), value);
        }
    }
}

/// What uid 1003 meets in a sticky world-writable directory of uid 1001 holding a symlink,
/// a file and a fifo of uid 1002 (each of which 1003 may otherwise use), and what their owner
/// meets: refused by the sysctls for the first, allowed for the second.
fn attempts(dir: &Path) -> String {
    const TRY: &str = r#"
import errno, os, sys
d = sys.argv[1]
for what, path, flags in [("follow", "link", os.O_RDONLY),
                          ("creat-regular", "file", os.O_WRONLY | os.O_CREAT),
                          ("creat-fifo", "fifo", os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK)]:
    try:
        os.close(os.open(os.path.join(d, path), flags, 0o666))
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
"#;
    let sticky = dir.join("sticky");
    fs::create_dir(&sticky).unwrap();
    std::os::unix::fs::chown(&sticky, Some(1001), Some(1001)).unwrap();
    fs::set_permissions(&sticky, PermissionsExt::from_mode(0o1777)).unwrap();
    fs::write(dir.join("target"), b"t").unwrap();
    fs::set_permissions(dir.join("target"), PermissionsExt::from_mode(0o666)).unwrap();
    let made = Command::new("sh")
        .arg("-c")
        .arg("ln -s ../target link && echo f > file && chmod 666 file && mkfifo -m 666 fifo")
        .current_dir(&sticky)
        .uid(1002)
        .gid(1002)
        .status()
        .unwrap();
    assert!(made.success());
    let mut said = String::new();
    for uid in [1003, 1002] {
        let out =
            Command::new("python3").arg("-c").arg(TRY).arg(&sticky).uid(uid).gid(uid).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        said += &format!("uid {uid}:\n{}", String::from_utf8_lossy(&out.stdout));
    }
    said
}

/// With the kernel's permission checks (default_permissions, on for a root server with
/// allow_other) the sysctls hold through the mount as on the source. Without them no FUSE
/// filesystem can have them: the kernel drops the sticky bit from the mode it caches
/// (fs/fuse/inode.c, fuse_change_attributes_common), so the VFS sees no sticky directory
/// (docs/CONFORMANCE.md).
#[test]
fn protected_symlinks_regular_files_and_fifos_hold_through_the_mount() {
    let _sysctls = Sysctls::set(&[
        ("protected_symlinks", "1"),
        ("protected_regular", "2"),
        ("protected_fifos", "2"),
    ]);
    for mode in ["", ",nopassthrough", ",writeback"] {
        let m = Mounted::start(&["-o", &format!("allow_other{mode}")]);
        for dir in ["native", "through"] {
            fs::create_dir(m.src(dir)).unwrap();
            fs::set_permissions(m.src(dir), PermissionsExt::from_mode(0o755)).unwrap();
        }
        let native = attempts(&m.src("native"));
        let refused = "uid 1003:\nfollow EACCES\ncreat-regular EACCES\ncreat-fifo EACCES\n";
        assert!(native.starts_with(refused), "the sysctls on the source: {native}");
        let allowed = "uid 1002:\nfollow ok\ncreat-regular ok\ncreat-fifo ok\n";
        assert!(native.ends_with(allowed), "the owner on the source: {native}");
        assert_eq!(attempts(&m.mnt("through")), native, "allow_other{mode}");
    }
}
