//! mount(8) and fstab: `mount -t fuse.passthroughfs`, `mount -a -T FSTAB` and, after a crash,
//! `mount -T FSTAB MOUNTPOINT` re-attaching, all through the real mount(8) and mount.fuse3,
//! against the test's own keeper (`-o keeper=`).
//!
//! The helper is installed with `scripts/install-mount-helper --bin BIN` (what a package
//! reuses) and removed after; the tests of this file take turns, as they share it.

mod common;

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{BIN, Keeper, Mounted, PATIENCE, within};

static SERIAL: Mutex<()> = Mutex::new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-mount-helper")
}

/// The mount helper installed for passthroughfs of this build, removed when dropped.
struct Helper {
    _turn: MutexGuard<'static, ()>,
}

impl Helper {
    fn install() -> Helper {
        let turn = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let out = Command::new("sh").arg(script()).args(["--bin", BIN]).output().unwrap();
        assert!(out.status.success(), "install-mount-helper: {}", text(&out.stderr));
        Helper { _turn: turn }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = Command::new("sh").arg(script()).args(["--uninstall", "--bin", BIN]).status();
    }
}

/// The servers mount(8) started (daemons, not our children): killed through pidfds when
/// dropped, after the mount's cleanup ([`Mounted`]'s abort and detach).
#[derive(Default)]
struct Daemons(Vec<OwnedFd>);

impl Daemons {
    fn track(&mut self, pid: u32) {
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
        if let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            self.0.push(fd);
        }
    }

    fn kill_last(&self) {
        let fd = self.0.last().expect("a server");
        rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL).unwrap();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for fd in &self.0 {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the real mount(8) with `args`.
fn mount(args: &[&str]) -> Output {
    Command::new("/usr/bin/mount").args(args).env_remove("RUST_LOG").output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 test path")
}

/// The pid of the server the keeper lists as serving, if one is.
fn serving_pid(keeper: &Keeper) -> Option<u32> {
    let ls = keeper.ls_json();
    let at = ls.find("\"server_pid\":")? + "\"server_pid\":".len();
    let digits: String = ls[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Waits until the keeper lists a server other than `old` serving.
fn wait_new_server(keeper: &Keeper, old: Option<u32>) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = serving_pid(keeper)
            && Some(pid) != old
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no new server: {}", keeper.ls_json());
        sleep(Duration::from_millis(10));
    }
}

/// The mountinfo line of the mount at `mountpoint`: (source, fstype, super options).
fn mountinfo(mountpoint: &Path) -> Option<(String, String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(4) == Some(&path(mountpoint)))
            .then(|| (fields[dash + 2].into(), fields[dash + 1].into(), fields[dash + 3].into()))
    })
}

#[test]
fn mount_t_fuse_passthroughfs_mounts_through_mount_fuse3_with_the_options() {
    let m = Mounted::dirs();
    let _helper = Helper::install();
    let keeper = Keeper::start(m.dir.path());
    let mut daemons = Daemons::default();
    let options = format!("tag=data,allow_other,keeper={}", keeper.socket.display());
    let (src, mnt) = (path(&m.source), path(&m.mountpoint));

    let out = mount(&["-t", "fuse.passthroughfs", src, mnt, "-o", &options]);
    assert!(out.status.success(), "mount: {}{}", text(&out.stdout), text(&out.stderr));
    daemons.track(wait_new_server(&keeper, None));
    let (source, fstype, supers) = mountinfo(&m.mountpoint).expect("mounted");
    assert_eq!((source.as_str(), fstype.as_str()), (src, "fuse.passthroughfs"));
    assert!(supers.split(',').any(|o| o == "allow_other"), "{supers}");
    assert!(keeper.ls_json().contains("\"tag\":\"data\""), "{}", keeper.ls_json());
    fs::write(m.mnt("f"), b"through mount(8)").unwrap();
    assert_eq!(fs::read(m.src("f")).unwrap(), b"through mount(8)");
    let out = Command::new("/usr/bin/umount").arg(mnt).output().unwrap();
    assert!(out.status.success(), "umount: {}", text(&out.stderr));

    // The helper run as mount(8) runs it, with an fstab line's options as given: those of
    // mount(8), fstab and systemd that reach the server are ignored.
    let fstab_options = format!(
        "rw,defaults,nofail,_netdev,noauto,x-systemd.automount,x-gvfs-hide,comment=x,{options}"
    );
    let out = Command::new("/sbin/mount.fuse3")
        .args([src, mnt, "-t", "fuse.passthroughfs", "-o", &fstab_options])
        .env("PATH", "/usr/local/sbin:/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount.fuse3: {}", text(&out.stderr));
    daemons.track(wait_new_server(&keeper, None));
    assert_eq!(fs::read(m.mnt("f")).unwrap(), b"through mount(8)");
    let out = Command::new("/usr/bin/umount").arg(mnt).output().unwrap();
    assert!(out.status.success(), "umount: {}", text(&out.stderr));

    // Anything else unknown still fails, and mount(8) says why.
    let bad = format!("{options},frobnicate");
    let out = mount(&["-t", "fuse.passthroughfs", src, mnt, "-o", &bad]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unexpected argument \"-o frobnicate\""), "{out:?}");
    assert!(!m.is_mounted());
}

#[test]
fn an_fstab_line_mounts_with_mount_a_and_after_a_crash_mount_of_its_target_reattaches() {
    let m = Mounted::dirs();
    let _helper = Helper::install();
    let keeper = Keeper::start(m.dir.path());
    let mut daemons = Daemons::default();
    let fstab = m.dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# test fstab\n{} {} fuse.passthroughfs tag=data,allow_other,nofail,keeper={} 0 0\n",
            m.source.display(),
            m.mountpoint.display(),
            keeper.socket.display()
        ),
    )
    .unwrap();
    let fstab = path(&fstab);

    let out = mount(&["-a", "-T", fstab]);
    assert!(out.status.success(), "mount -a: {}", text(&out.stderr));
    let first = wait_new_server(&keeper, None);
    daemons.track(first);
    assert!(m.is_mounted());
    // Idempotent while served: mount -a leaves a mounted line alone.
    let out = mount(&["-a", "-T", fstab]);
    assert!(out.status.success(), "second mount -a: {}", text(&out.stderr));
    assert_eq!(serving_pid(&keeper), Some(first));

    // An application holds a file open across the crash and the remount.
    let mut held =
        fs::OpenOptions::new().read(true).append(true).create(true).open(m.mnt("held")).unwrap();
    held.write_all(b"before,").unwrap();
    daemons.kill_last();
    let deadline = Instant::now() + PATIENCE;
    while serving_pid(&keeper).is_some() {
        assert!(Instant::now() < deadline, "the keeper never saw the server die");
        sleep(Duration::from_millis(10));
    }
    assert!(m.is_mounted(), "the keeper holds the mount while no server runs");
    let mut writer = held.try_clone().unwrap();
    let during = std::thread::spawn(move || writer.write_all(b"during,"));

    let out = mount(&["-T", fstab, path(&m.mountpoint)]);
    assert!(out.status.success(), "mount -T FSTAB MOUNTPOINT: {}", text(&out.stderr));
    let second = wait_new_server(&keeper, Some(first));
    daemons.track(second);
    within(PATIENCE, "the write during the crash", move || during.join().unwrap()).unwrap();
    held.write_all(b"after").unwrap();
    let mut content = String::new();
    held.rewind().unwrap();
    held.read_to_string(&mut content).unwrap();
    assert_eq!(content, "before,during,after", "what the application read back");
    assert_eq!(fs::read_to_string(m.src("held")).unwrap(), "before,during,after");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let here = format!(" {} ", m.mountpoint.display());
    assert_eq!(mounts.lines().filter(|l| l.contains(&here)).count(), 1, "re-attached, not stacked");
    drop(held);
    let out = Command::new("/usr/bin/umount").arg(path(&m.mountpoint)).output().unwrap();
    assert!(out.status.success(), "umount: {}", text(&out.stderr));
}
