//! Real FUSE mounts (root): the keeper holds a connection whose server was SIGKILLed, aborts it
//! when the recovery timeout passes, and `fuse-keeper umount` never hangs.

mod common;

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use common::{Keeper, Mount, PATIENCE, PROMPT, stat_in_thread, wait_until};
use fuse_keeper::ConnState;

fn assert_aborted_error(e: &std::io::Error) {
    assert!(
        matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
        "stat failed with {e:?}, expected ENOTCONN or ECONNABORTED"
    );
}

#[test]
fn recovery_timeout_aborts_and_unmounts() {
    let keeper = Keeper::start();
    let (mount, dev) = Mount::new();
    let conn = mount.conn_id.to_string();
    let mountpoint = mount.path.to_str().unwrap();
    // Long enough that the stat below is asked well before it passes, on a loaded machine too.
    const TIMEOUT: Duration = Duration::from_secs(5);
    let timeout_ms = TIMEOUT.as_millis().to_string();
    let opts = ["--mountpoint", mountpoint, "--conn-id", &conn, "--timeout-ms", &timeout_ms];
    // The helper and the keeper are now the only holders of the device.
    let mut server = keeper.registrant("timed", &opts, dev, None);

    // Taken before the kill: the keeper's timeout starts once it sees the death, after this.
    let killed = Instant::now();
    server.kill();
    assert!(keeper.wait_state("timed", ConnState::Orphaned, PATIENCE));
    assert!(mount.is_mounted());
    let stat = stat_in_thread(&mount.path);
    // Held by the keeper: the stat waits (for INIT) until the timeout instead of failing with
    // ENOTCONN at once.
    let result = stat.recv_timeout(PATIENCE).expect("stat still blocked long after the timeout");
    let waited = killed.elapsed();
    assert_aborted_error(&result.expect_err("stat succeeded on an aborted mount"));
    assert!(waited >= TIMEOUT, "aborted before the timeout: {waited:?}");
    assert!(wait_until(PATIENCE, || !mount.is_mounted()), "still mounted");
    assert!(keeper.entry("timed").is_none());
    let log = keeper.log_text();
    assert!(log.contains("recovery timeout passed"), "{log}");
}

#[test]
fn umount_of_an_orphaned_connection_is_prompt() {
    let keeper = Keeper::start();
    let (mount, dev) = Mount::new();
    let conn = mount.conn_id.to_string();
    let opts = ["--mountpoint", mount.path.to_str().unwrap(), "--conn-id", &conn];
    let mut server = keeper.registrant("stuck", &opts, dev, None);
    server.kill();
    assert!(keeper.wait_state("stuck", ConnState::Orphaned, PATIENCE));
    let stat = stat_in_thread(&mount.path);
    assert!(matches!(
        stat.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout)
    ));

    let start = Instant::now();
    let out = keeper.command(&["umount", "stuck"]).output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took < PROMPT, "umount took {took:?}");
    assert!(!mount.is_mounted());
    assert!(keeper.entry("stuck").is_none());
    // The blocked application is released.
    let result = stat.recv_timeout(PATIENCE).expect("stat still blocked");
    assert_aborted_error(&result.expect_err("stat succeeded"));
}

#[test]
fn umount_of_a_live_server_detaches_only() {
    let keeper = Keeper::start();
    let (mount, dev) = Mount::new();
    let conn = mount.conn_id.to_string();
    let opts = ["--mountpoint", mount.path.to_str().unwrap(), "--conn-id", &conn];
    let mut server = keeper.registrant("live", &opts, dev, None);
    let start = Instant::now();
    let out = keeper.command(&["umount", mount.path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() < PROMPT, "umount took {:?}", start.elapsed());
    assert!(!mount.is_mounted());
    assert!(keeper.entry("live").is_none());
    assert!(server.is_running());
}

#[test]
fn abort_by_tag_releases_waiters() {
    let keeper = Keeper::start();
    let (mount, dev) = Mount::new();
    let conn = mount.conn_id.to_string();
    let opts = ["--mountpoint", mount.path.to_str().unwrap(), "--conn-id", &conn];
    let _server = keeper.registrant("abortme", &opts, dev, None);
    let stat = stat_in_thread(&mount.path);
    assert!(matches!(
        stat.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout)
    ));
    keeper.client().abort("abortme").unwrap();
    let result = stat.recv_timeout(PATIENCE).expect("stat still blocked");
    assert_aborted_error(&result.expect_err("stat succeeded"));
    assert!(!mount.is_mounted());
}

#[test]
fn registrant_cannot_aim_the_keeper_at_another_connection() {
    let keeper = Keeper::start();
    let (victim, victim_dev) = Mount::new();
    // A registration naming the victim's mountpoint with a wrong connection number.
    let wrong = (victim.conn_id + 1000).to_string();
    let opts = ["--mountpoint", victim.path.to_str().unwrap(), "--conn-id", &wrong];
    let _server = keeper.registrant("liar", &opts, common::open_fuse(), None);
    keeper.client().abort("liar").unwrap();
    assert!(victim.is_mounted(), "the keeper unmounted a connection it was lied to about");
    drop(victim_dev);
}

#[test]
fn umount_without_a_keeper_falls_back_to_force_unmount() {
    let (mount, _dev) = Mount::new();
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = std::process::Command::new(common::BIN)
        .args(["umount", mount.path.to_str().unwrap()])
        .env("FUSE_KEEPER_SOCKET", dir.path().join("none.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() < PROMPT, "umount took {:?}", start.elapsed());
    assert!(!mount.is_mounted());
    // Not a mountpoint and no keeper: an error, not a usage error.
    let out = std::process::Command::new(common::BIN)
        .args(["umount", "no-such-tag"])
        .env("FUSE_KEEPER_SOCKET", dir.path().join("none.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn root_may_umount_a_mount_the_keeper_does_not_hold() {
    let keeper = Keeper::start();
    let (mount, _dev) = Mount::new();
    keeper.client().umount(mount.path.to_str().unwrap()).unwrap();
    assert!(!mount.is_mounted());
    let err = keeper.client().umount("/nonexistent/path").unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT));
}

/// This binary re-run as a helper process (common::run_helper); does nothing when run as a test.
#[test]
#[ignore = "a helper process that other tests start"]
fn keeper_test_helper() {
    common::run_helper();
}
