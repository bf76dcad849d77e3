//! Mounting through fusermount3: as root, and as the unprivileged user `nobody` (this test binary
//! re-executed with uid/gid 65534 runs `unprivileged_child`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use fuse_transport::{
    Error, MountOptions, connection_id, is_fuse_mount, mount, mount_entry, mount_fusermount,
    unmount_detached,
};

const NOBODY: u32 = 65534;
const CHILD_ENV: &str = "FUSE_TRANSPORT_TEST_UNPRIVILEGED_MOUNTPOINT";

fn require_fusermount3() {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| d.join("fusermount3").is_file())
    });
    assert!(found, "fusermount3 is not installed (apt-get install fuse3)");
}

#[test]
fn fusermount_as_root() {
    require_root_and_dev_fuse();
    require_fusermount3();
    let guard = MountGuard::new();
    let opts = MountOptions { fsname: Some("fusermount,test".into()), ..test_options() };
    let dev = mount_fusermount(&guard.path, &opts).expect("mount_fusermount");
    // Received with MSG_CMSG_CLOEXEC.
    let fd_flags = rustix::io::fcntl_getfd(&dev).unwrap();
    assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC));

    assert!(is_fuse_mount(&guard.path));
    let entry = mount_entry(&guard.path).unwrap().unwrap();
    assert_eq!(entry.fstype, "fuse.transporttest");
    assert_eq!(entry.source, "fusermount,test", "escaped comma in fsname");
    connection_id(&guard.path).expect("connection_id");
    let (n, buf) = read_with_deadline(&dev);
    check_init(n.expect("connection alive"), &buf);
    drop(guard);
    let (n, _) = read_with_deadline(&dev);
    assert_eq!(n, None);
}

#[test]
fn fusermount_failure_reports_stderr() {
    require_root_and_dev_fuse();
    require_fusermount3();
    let missing = Path::new("/nonexistent-fuse-transport-test/mnt");
    let err = mount_fusermount(missing, &MountOptions::default()).expect_err("must fail");
    match &err {
        Error::FusermountFailed { stderr, .. } => {
            assert!(!stderr.is_empty(), "stderr should be captured: {err}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("fusermount3"), "{err}");
}

/// Copy of this test binary that `nobody` can execute (the build directory may be under a
/// directory nobody cannot search, such as /root).
///
/// The copy is written by a `cp` process, never by this one: other tests of this binary fork
/// children, and a child forked while this process held the copy open for writing would keep
/// that fd until it execs, so that executing the copy failed with ETXTBSY.
fn binary_for_nobody(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let copy = dir.join("fusermount-test-bin");
    let status = Command::new("cp").arg(&exe).arg(&copy).status().expect("run cp");
    assert!(status.success(), "cp {} {}: {status}", exe.display(), copy.display());
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Needs `/dev/fuse` readable and writable by others (mode 0666, what distributions' udev rules
/// set): fusermount3 opens it with the caller's rights. `.ci/install-deps` sets it on this VM,
/// which creates it 0600.
#[test]
fn fusermount_as_nobody() {
    require_root_and_dev_fuse();
    require_fusermount3();
    let mode = std::fs::metadata("/dev/fuse").unwrap().permissions().mode();
    assert_eq!(
        mode & 0o006,
        0o006,
        "/dev/fuse is {mode:o}: unprivileged users cannot open it (chmod 0666 /dev/fuse)"
    );
    let guard = MountGuard::new();
    std::os::unix::fs::chown(&guard.path, Some(NOBODY), Some(NOBODY)).expect("chown mountpoint");
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = binary_for_nobody(bin_dir.path());

    let path = guard.path.clone();
    let output = with_deadline("unprivileged child", DEADLINE, move || {
        Command::new(bin)
            .args(["unprivileged_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run the test binary as nobody")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(
        stdout.contains("UNPRIVILEGED CHILD DONE"),
        "child did not run the test:\n{stdout}\n{stderr}"
    );
    wait_until_unmounted(&guard.path);
}

/// The child started by `fusermount_as_nobody` (ignored in a normal run: it needs the
/// mountpoint that test prepares).
#[test]
#[ignore = "run as nobody by fusermount_as_nobody"]
fn unprivileged_child() {
    let path = std::env::var_os(CHILD_ENV).expect("run by fusermount_as_nobody only");
    let path = PathBuf::from(path);
    assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
    // Not root: mount() goes through fusermount3.
    let dev = mount(&path, &test_options()).expect("mount as nobody");
    let entry = mount_entry(&path).unwrap().expect("mounted");
    assert_eq!(entry.fstype, "fuse.transporttest");
    assert!(entry.super_options.contains(&format!("user_id={NOBODY}")), "{}", entry.super_options);
    connection_id(&path).expect("connection_id");
    let (n, buf) = read_with_deadline(&dev);
    check_init(n.expect("connection alive"), &buf);
    // Not root: fusermount3 -u -z.
    unmount_detached(&path).expect("unmount as nobody");
    assert!(mount_entry(&path).unwrap().is_none(), "still mounted");
    unmount_detached(&path).expect("second unmount is a no-op");
    let (n, _) = read_with_deadline(&dev);
    assert_eq!(n, None);
    println!("UNPRIVILEGED CHILD DONE");
}
