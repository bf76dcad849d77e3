//! Helpers shared by the integration tests: they need root and a real /dev/fuse, and fail (not
//! skip) without them.

#![allow(dead_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fuse_transport::{
    MountOptions, force_unmount, mount_entry, mount_with_fd, open_device, read_request,
};

/// How long a test waits for what must happen (a request, an unmount): only a hang takes this
/// long, however loaded the machine is.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const FUSE_INIT: u32 = 26;
pub const IN_HEADER_LEN: usize = 40;
pub const BUF_LEN: usize = 1 << 20;

/// Panics unless the tests can really run.
pub fn require_root_and_dev_fuse() {
    assert!(rustix::process::geteuid().is_root(), "these integration tests must run as root");
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these integration tests need a real FUSE device"
    );
}

/// Run `f` on another thread and panic if it does not finish within `timeout` (the thread is
/// left behind; the mount guards' abort releases it).
pub fn with_deadline<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(e) => panic!("{what}: no result within {timeout:?} ({e})"),
    }
}

/// A temporary mountpoint, force-unmounted (fusectl abort + detach) when dropped.
pub struct MountGuard {
    pub path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl MountGuard {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fuse-transport-test-")
            .tempdir()
            .expect("create tempdir");
        Self { path: dir.path().to_owned(), dir: Some(dir) }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let path = self.path.clone();
        let done = {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                let _ = tx.send(force_unmount(&path));
            });
            rx.recv_timeout(DEADLINE)
        };
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("cleanup of {}: force_unmount failed: {e}", self.path.display())
            }
            Err(_) => eprintln!("cleanup of {}: force_unmount hung", self.path.display()),
        }
        // Only remove the directory once nothing is mounted on it any more.
        if matches!(mount_entry(&self.path), Ok(None)) {
            drop(self.dir.take());
        } else if let Some(dir) = self.dir.take() {
            eprintln!("leaving {} behind: still mounted", self.path.display());
            let _ = dir.keep();
        }
    }
}

pub fn test_options() -> MountOptions {
    MountOptions {
        fsname: Some("fuse-transport-test".into()),
        subtype: Some("transporttest".into()),
        extra: vec!["nosuid".into(), "nodev".into()],
        ..Default::default()
    }
}

/// open_device + mount_with_fd (on a thread: it stats the mountpoint, which would block on a
/// FUSE mount without a server).
pub fn mount_with_deadline(path: &Path) -> OwnedFd {
    let path = path.to_owned();
    with_deadline("mount_with_fd", DEADLINE, move || {
        let dev = open_device().expect("open /dev/fuse");
        mount_with_fd(dev.as_fd(), &path, &test_options()).expect("mount_with_fd");
        dev
    })
}

/// Read one request from `dev` (a dup of it, on a thread) within the deadline.
pub fn read_with_deadline(dev: &OwnedFd) -> (Option<usize>, Vec<u8>) {
    let dev = dev.try_clone().expect("dup device fd");
    with_deadline("read_request", DEADLINE, move || {
        let mut buf = vec![0u8; BUF_LEN];
        let n = read_request(dev.as_fd(), &mut buf).expect("read_request");
        buf.truncate(n.unwrap_or(0));
        (n, buf)
    })
}

pub fn u32_at(buf: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(buf[offset..offset + 4].try_into().unwrap())
}

pub fn u64_at(buf: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(buf[offset..offset + 8].try_into().unwrap())
}

/// Check that `buf` (of `n` bytes) is a FUSE_INIT request; returns (unique, minor, flags64).
pub fn check_init(n: usize, buf: &[u8]) -> (u64, u32, u64) {
    assert!(n >= IN_HEADER_LEN + 16, "request too short: {n} bytes");
    let len = u32_at(buf, 0);
    let opcode = u32_at(buf, 4);
    assert_eq!(opcode, FUSE_INIT, "first request must be FUSE_INIT");
    assert_eq!(len as usize, n, "in_header.len must equal the bytes read");
    let unique = u64_at(buf, 8);
    let major = u32_at(buf, IN_HEADER_LEN);
    let minor = u32_at(buf, IN_HEADER_LEN + 4);
    assert_eq!(major, 7, "FUSE protocol major");
    let flags = u64::from(u32_at(buf, IN_HEADER_LEN + 12));
    let mut flags64 = flags;
    if minor >= 36 {
        // fuse_init_in: major, minor, max_readahead, flags, flags2, unused[11] = 64 bytes.
        assert_eq!(n, IN_HEADER_LEN + 64, "fuse_init_in of protocol 7.36+");
        flags64 |= u64::from(u32_at(buf, IN_HEADER_LEN + 16)) << 32;
    }
    (unique, minor, flags64)
}

/// True while `path` is still listed in /proc/self/mountinfo; polls until the deadline.
pub fn wait_until_unmounted(path: &Path) {
    let start = Instant::now();
    while mount_entry(path).expect("mountinfo").is_some() {
        assert!(start.elapsed() < DEADLINE, "{} still mounted", path.display());
        thread::sleep(Duration::from_millis(20));
    }
}
