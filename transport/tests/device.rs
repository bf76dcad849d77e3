//! Real /dev/fuse tests as root: mount(2) with fd=, INIT, clone, abort, backing files, teardown.

mod common;

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use fuse_transport::{
    Error, WriteOutcome, abort_connection, backing_close, backing_open, clone_device,
    connection_id, ensure_fusectl, force_unmount, is_fuse_mount, mount_entry, open_device,
    read_request, waiting_requests, write_reply,
};

#[test]
fn mount_read_init_and_force_unmount() {
    require_root_and_dev_fuse();
    let guard = MountGuard::new();
    let dev = mount_with_deadline(&guard.path);

    assert!(is_fuse_mount(&guard.path));
    let entry = mount_entry(&guard.path).unwrap().expect("mountinfo entry");
    assert_eq!(entry.fstype, "fuse.transporttest");
    assert_eq!(entry.source, "fuse-transport-test");
    assert!(entry.mount_options.contains("nosuid"), "{}", entry.mount_options);
    assert!(entry.mount_options.contains("nodev"), "{}", entry.mount_options);
    assert!(entry.super_options.contains("user_id=0"), "{}", entry.super_options);
    let id = connection_id(&guard.path).expect("connection_id");
    assert_eq!(id, entry.minor);
    assert_eq!(entry.major, 0);

    let (n, buf) = read_with_deadline(&dev);
    let n = n.expect("connection alive");
    check_init(n, &buf);

    ensure_fusectl().expect("fusectl");
    waiting_requests(id).expect("waiting count readable");

    let path = guard.path.clone();
    with_deadline("force_unmount", DEADLINE, move || force_unmount(&path)).expect("force_unmount");
    assert!(mount_entry(&guard.path).unwrap().is_none(), "still in mountinfo");
    assert!(!is_fuse_mount(&guard.path));
    assert!(
        !fuse_transport::connection_dir(id).exists(),
        "fusectl directory of the connection remains"
    );
    // The connection is gone: a read reports it instead of failing or blocking.
    let (n, _) = read_with_deadline(&dev);
    assert_eq!(n, None);
    // Idempotent.
    force_unmount(&guard.path).expect("second force_unmount");
    fuse_transport::unmount_detached(&guard.path).expect("unmount of nothing");
}

#[test]
fn clone_before_init_answered() {
    require_root_and_dev_fuse();
    let guard = MountGuard::new();
    let dev = mount_with_deadline(&guard.path);

    let clone = clone_device(dev.as_fd()).expect("clone_device before INIT is answered");
    // The clone shares the connection's input queue: INIT can be read from it.
    let (n, buf) = read_with_deadline(&clone);
    check_init(n.expect("connection alive"), &buf);
    drop(guard);
    let (n, _) = read_with_deadline(&clone);
    assert_eq!(n, None, "clone sees the connection end");
}

#[test]
fn clone_of_unmounted_device_fails() {
    require_root_and_dev_fuse();
    let dev = open_device().expect("open /dev/fuse");
    let result =
        with_deadline("clone_device", DEADLINE, move || clone_device(dev.as_fd()).map(drop));
    assert!(matches!(result, Err(Error::Clone(_))), "{result:?}");
}

#[test]
fn read_request_rejects_small_buffer() {
    require_root_and_dev_fuse();
    let dev = open_device().expect("open /dev/fuse");
    let mut buf = [0u8; 4096];
    assert!(matches!(
        read_request(dev.as_fd(), &mut buf),
        Err(Error::BufferTooSmall { len: 4096, .. })
    ));
}

#[test]
fn abort_releases_blocked_stat() {
    require_root_and_dev_fuse();
    let guard = MountGuard::new();
    let dev = mount_with_deadline(&guard.path);
    let id = connection_id(&guard.path).expect("connection_id");
    let (n, buf) = read_with_deadline(&dev);
    check_init(n.expect("connection alive"), &buf);
    ensure_fusectl().expect("fusectl");

    // INIT is never answered: a stat of the mountpoint blocks in the kernel.
    let (tx, rx) = mpsc::channel();
    let path = guard.path.clone();
    thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&path));
    });
    let start = Instant::now();
    while waiting_requests(id).expect("waiting") == 0 {
        assert!(start.elapsed() < DEADLINE, "stat never reached the connection");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "stat returned although nobody answers"
    );

    abort_connection(id).expect("abort_connection");
    let result = rx.recv_timeout(DEADLINE).expect("blocked stat not released by the abort");
    let err = result.expect_err("stat on an aborted connection must fail");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ECONNABORTED | libc::ENOTCONN)),
        "unexpected error {err:?}"
    );
    // The server side sees the connection gone.
    let (n, _) = read_with_deadline(&dev);
    assert_eq!(n, None);
    // Aborting twice, or a connection that no longer exists, is fine.
    abort_connection(id).expect("second abort");

    let path = guard.path.clone();
    with_deadline("force_unmount", DEADLINE, move || force_unmount(&path)).expect("force_unmount");
    wait_until_unmounted(&guard.path);
    assert!(!fuse_transport::connection_dir(id).exists(), "connection still listed in fusectl");
}

/// FUSE_INIT_EXT (flags bit 30) and FUSE_PASSTHROUGH (bit 37, i.e. flags2 bit 5).
const FUSE_INIT_EXT: u64 = 1 << 30;
const FUSE_PASSTHROUGH: u64 = 1 << 37;

#[test]
fn init_reply_backing_files_and_stale_reply() {
    require_root_and_dev_fuse();
    let guard = MountGuard::new();
    let dev = mount_with_deadline(&guard.path);
    let (n, buf) = read_with_deadline(&dev);
    let (unique, minor, flags) = check_init(n.expect("connection alive"), &buf);
    assert!(
        flags & FUSE_PASSTHROUGH != 0,
        "kernel does not offer FUSE_PASSTHROUGH (CONFIG_FUSE_PASSTHROUGH?)"
    );
    let max_readahead = u32_at(&buf, IN_HEADER_LEN + 8);

    // Backing files need an initialized connection with passthrough.
    let file = tempfile::tempfile().expect("backing file");
    assert!(matches!(backing_open(dev.as_fd(), file.as_fd()), Err(Error::BackingOpen(_))));

    // fuse_out_header (16) + fuse_init_out (64).
    let reply_flags = FUSE_INIT_EXT | FUSE_PASSTHROUGH;
    let mut init_out = Vec::with_capacity(64);
    init_out.extend_from_slice(&7u32.to_le_bytes()); // major
    init_out.extend_from_slice(&minor.min(45).to_le_bytes()); // minor
    init_out.extend_from_slice(&max_readahead.to_le_bytes());
    init_out.extend_from_slice(&(reply_flags as u32).to_le_bytes()); // flags
    init_out.extend_from_slice(&16u16.to_le_bytes()); // max_background
    init_out.extend_from_slice(&12u16.to_le_bytes()); // congestion_threshold
    init_out.extend_from_slice(&131072u32.to_le_bytes()); // max_write
    init_out.extend_from_slice(&1u32.to_le_bytes()); // time_gran
    init_out.extend_from_slice(&0u16.to_le_bytes()); // max_pages
    init_out.extend_from_slice(&0u16.to_le_bytes()); // map_alignment
    init_out.extend_from_slice(&((reply_flags >> 32) as u32).to_le_bytes()); // flags2
    init_out.extend_from_slice(&1u32.to_le_bytes()); // max_stack_depth
    init_out.resize(64, 0); // request_timeout, unused
    let mut out_header = Vec::with_capacity(16);
    out_header.extend_from_slice(&(16u32 + 64).to_le_bytes());
    out_header.extend_from_slice(&0i32.to_le_bytes());
    out_header.extend_from_slice(&unique.to_le_bytes());
    let outcome = write_reply(dev.as_fd(), &[IoSlice::new(&out_header), IoSlice::new(&init_out)])
        .expect("INIT reply");
    assert_eq!(outcome, WriteOutcome::Written);

    // A reply to a unique nobody waits for.
    let mut stale = out_header.clone();
    stale[0..4].copy_from_slice(&16u32.to_le_bytes());
    stale[8..16].copy_from_slice(&(unique + 1000).to_le_bytes());
    assert_eq!(
        write_reply(dev.as_fd(), &[IoSlice::new(&stale)]).expect("stale reply"),
        WriteOutcome::Gone
    );

    let id = backing_open(dev.as_fd(), file.as_fd()).expect("backing_open");
    assert!(id > 0);
    let id2 = backing_open(dev.as_fd(), file.as_fd()).expect("second backing_open");
    assert_ne!(id, id2);
    backing_close(dev.as_fd(), id).expect("backing_close");
    backing_close(dev.as_fd(), id2).expect("backing_close");
    assert!(matches!(backing_close(dev.as_fd(), id), Err(Error::BackingClose { .. })));

    drop(guard);
    // After the abort, writes report the connection gone instead of failing.
    let outcome = write_reply(dev.as_fd(), &[IoSlice::new(&stale)]).expect("write after abort");
    assert_ne!(outcome, WriteOutcome::Written);
}

#[test]
fn force_unmount_takes_the_fuse_top_of_a_stack() {
    require_root_and_dev_fuse();
    let guard = MountGuard::new();
    // A tmpfs below, FUSE on top. (FUSE on FUSE would need a server answering the lower mount's
    // GETATTR: mount_with_fd stats the mountpoint for rootmode, like libfuse.)
    rustix::mount::mount(
        "fuse-transport-test-tmpfs",
        &guard.path,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("tmpfs below");
    let tmpfs = mount_entry(&guard.path).unwrap().expect("tmpfs mounted");
    let dev = mount_with_deadline(&guard.path);
    let entry = mount_entry(&guard.path).unwrap().expect("fuse mounted");
    assert!(entry.is_fuse());
    assert_eq!(connection_id(&guard.path).unwrap(), entry.minor);
    assert_eq!(entry.parent_id, tmpfs.mount_id, "FUSE stacked on the tmpfs");

    let path = guard.path.clone();
    with_deadline("force_unmount", DEADLINE, move || force_unmount(&path)).expect("force_unmount");
    // Only the FUSE mount went away; force_unmount stops at a non-FUSE mount.
    let now = mount_entry(&guard.path).unwrap().expect("tmpfs still there");
    assert_eq!(now.mount_id, tmpfs.mount_id);
    assert!(!is_fuse_mount(&guard.path));
    assert!(matches!(connection_id(&guard.path), Err(Error::NotFuseMount { .. })));
    let (n, buf) = read_with_deadline(&dev);
    if let Some(n) = n {
        // INIT may still be queued after the abort: it can be read, then the connection is gone.
        check_init(n, &buf);
        assert_eq!(read_with_deadline(&dev).0, None);
    }
    fuse_transport::unmount_detached(&guard.path).expect("unmount the tmpfs");
    wait_until_unmounted(&guard.path);
}
