//! The keeper daemon as a process: register, orphan detection by pidfd, attach and its
//! permission checks, unregister, limits.

mod common;

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{
    Keeper, PATIENCE, PROMPT, StopKeeperAt, dup, memfd, open_fuse, read_all, registration,
    wait_until,
};
use fuse_keeper::{ConnState, KeeperError, same_open_file};

fn refused(r: Result<impl std::fmt::Debug, KeeperError>) -> i32 {
    match r {
        Err(KeeperError::Refused { errno, .. }) => errno,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A state store the keeper holds must be a memfd sealed against shrinking: any other fd is
/// refused at REGISTER (issue 14: a holder shrinking the store killed its server with SIGBUS;
/// a file on a stalled FUSE mount as the state could stall the keeper).
#[test]
fn a_state_that_is_not_a_sealed_memfd_is_refused() {
    let keeper = Keeper::start();
    let dev = open_fuse();
    let reg = registration("unsealed");
    let unsealed = common::unsealed_memfd(b"state");
    assert_eq!(refused(keeper.client().register(&reg, dev.as_fd(), unsealed.as_fd())), libc::EBADF);
    let file: std::os::fd::OwnedFd = std::fs::File::open("/etc/hostname").unwrap().into();
    assert_eq!(refused(keeper.client().register(&reg, dev.as_fd(), file.as_fd())), libc::EBADF);
    assert!(keeper.entry("unsealed").is_none());
    keeper.client().register(&reg, dev.as_fd(), memfd(b"state").as_fd()).unwrap();
    assert!(keeper.entry("unsealed").is_some());
}

#[test]
fn held_fds_are_kept_released_paged_back_to_the_server_and_dropped_with_the_entry() {
    let keeper = Keeper::start();
    let (dev, state) = (open_fuse(), memfd(b"s"));
    let mut client = keeper.client();
    client.register(&registration("holder"), dev.as_fd(), state.as_fd()).unwrap();
    let before = keeper.settled_fds();
    let files: Vec<_> = (1..=20u64).map(|i| (i, memfd(format!("held {i}").as_bytes()))).collect();
    for (key, fd) in &files {
        client.hold("holder", *key, fd.as_fd()).unwrap();
    }
    // Holding under a key again replaces what was held there.
    client.hold("holder", 3, files[2].1.as_fd()).unwrap();
    assert_eq!(keeper.settled_fds(), before + 20 + 2, "20 held fds (and a probe: socket, pidfd)");
    client.release("holder", 5).unwrap();
    assert_eq!(refused(client.release("holder", 5)), libc::ENOENT);
    // Back in key order, across pages of 16, each the very file that was held.
    let held = client.held("holder").unwrap();
    let keys: Vec<u64> = held.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, (1..=20).filter(|&k| k != 5).collect::<Vec<_>>());
    for (key, fd) in &held {
        assert_eq!(read_all(fd), format!("held {key}").as_bytes());
    }
    drop(held);
    // The entry goes, and its held fds with it.
    client.unregister("holder").unwrap();
    assert_eq!(
        keeper.settled_fds(),
        before + 4 - 3,
        "the entry (device, state, pidfd) and its held fds gone; two more probes"
    );
}

#[test]
fn register_shows_serving_with_our_pid() {
    let keeper = Keeper::start();
    let (dev, state) = (open_fuse(), memfd(b"s"));
    let mut client = keeper.client();
    client.register(&registration("mine"), dev.as_fd(), state.as_fd()).unwrap();
    let e = keeper.entry("mine").expect("listed");
    assert_eq!(e.state, ConnState::Serving);
    assert_eq!(e.server_pid, Some(std::process::id()));
    assert_eq!(e.owner_uid, rustix::process::getuid().as_raw());
    assert_eq!(e.mountpoint, std::path::Path::new("/nonexistent/keeper-test"));
    assert_eq!(e.orphaned_for, None);

    // The same (uid, tag) again: EEXIST while the server lives.
    let again = client.register(&registration("mine"), dev.as_fd(), state.as_fd());
    assert_eq!(refused(again), libc::EEXIST);
    // A live server cannot be attached to.
    assert_eq!(refused(keeper.client().attach("mine")), libc::EBUSY);
    // Devices from the server are accepted; indexes are unique.
    client.add_device("mine", 1, open_fuse().as_fd()).unwrap();
    // From another connection of the same process too (a reconnecting server).
    keeper.client().add_device("mine", 3, open_fuse().as_fd()).unwrap();
    assert_eq!(refused(client.add_device("mine", 1, open_fuse().as_fd())), libc::EEXIST);
    // A state fd is not a device.
    assert_eq!(refused(client.add_device("mine", 2, state.as_fd())), libc::EBADF);
    // Unregister drops it.
    client.unregister("mine").unwrap();
    assert!(keeper.entry("mine").is_none());
    assert_eq!(refused(client.unregister("mine")), libc::ENOENT);
}

#[test]
fn register_checks_fd_types() {
    let keeper = Keeper::start();
    let mut client = keeper.client();
    let (dev, state) = (open_fuse(), memfd(b"s"));
    let bad_dev = client.register(&registration("t"), state.as_fd(), state.as_fd());
    assert_eq!(refused(bad_dev), libc::EBADF);
    let bad_state = client.register(&registration("t"), dev.as_fd(), dev.as_fd());
    assert_eq!(refused(bad_state), libc::EBADF);
    let mut relative = registration("t");
    relative.mountpoint = "relative".into();
    assert_eq!(refused(client.register(&relative, dev.as_fd(), state.as_fd())), libc::EINVAL);
    assert!(keeper.list().is_empty());
}

#[test]
fn unknown_tag_attaches_to_nothing() {
    let keeper = Keeper::start();
    assert!(keeper.client().attach("nothing-here").unwrap().is_none());
}

#[test]
fn killed_server_is_orphaned_at_once_and_attach_returns_its_fds() {
    let keeper = Keeper::start();
    let (dev0, dev1) = (open_fuse(), open_fuse());
    let mut server = keeper.registrant("crash", &[], dup(&dev0), Some(dup(&dev1)));
    assert_eq!(keeper.entry("crash").unwrap().server_pid, Some(server.pid()));

    // Taken before the kill: the keeper sees the death after this.
    let killed = Instant::now();
    server.kill();
    // The keeper learns of the death from a pidfd, not from a later client or a sweep.
    let orphaned = wait_until(PROMPT, || {
        keeper.entry("crash").is_some_and(|e| e.state == ConnState::Orphaned)
    });
    assert!(orphaned, "not orphaned within {PROMPT:?}: {:?}", keeper.entry("crash"));
    let info = keeper.entry("crash").unwrap();
    assert_eq!(info.server_pid, None);
    assert!(info.orphaned_for.is_some_and(|d| d <= killed.elapsed()));

    let attached = keeper.client().attach("crash").unwrap().expect("held");
    assert_eq!(attached.negotiation, b"negotiation:crash");
    assert_eq!(attached.mountpoint, std::path::Path::new("/nonexistent"));
    assert_eq!(read_all(&attached.state), b"state:crash");
    assert_eq!(attached.devices.len(), 2);
    assert!(same_open_file(attached.devices[0].as_fd(), dev0.as_fd()).unwrap());
    assert!(same_open_file(attached.devices[1].as_fd(), dev1.as_fd()).unwrap());
    assert!(!same_open_file(attached.devices[0].as_fd(), dev1.as_fd()).unwrap());

    // We are its server now.
    let e = keeper.entry("crash").unwrap();
    assert_eq!((e.state, e.server_pid), (ConnState::Serving, Some(std::process::id())));
    assert_eq!(refused(keeper.client().attach("crash")), libc::EBUSY);
    keeper.client().unregister("crash").unwrap();
}

#[test]
fn dead_server_tag_cannot_be_registered_again() {
    let keeper = Keeper::start();
    let mut server = keeper.registrant("dead", &[], open_fuse(), None);
    server.kill();
    assert!(keeper.wait_state("dead", ConnState::Orphaned, PATIENCE));
    let (dev, state) = (open_fuse(), memfd(b""));
    let mut reg = registration("dead");
    reg.mountpoint = "/nonexistent".into();
    assert_eq!(refused(keeper.client().register(&reg, dev.as_fd(), state.as_fd())), libc::EEXIST);
}

/// Run the `attach TAG` helper as uid/gid 65534.
fn attach_as_nobody(keeper: &Keeper, tag: &str) -> (String, Option<i32>) {
    let out = keeper.helper(&[], "attach", &[tag]).uid(65534).gid(65534).output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

#[test]
fn attach_by_another_uid_is_refused_and_logged() {
    let keeper = Keeper::start();
    let mut server = keeper.registrant("secret", &[], open_fuse(), None);
    server.kill();
    assert!(keeper.wait_state("secret", ConnState::Orphaned, PATIENCE));

    let (stdout, code) = attach_as_nobody(&keeper, "secret");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains(&format!("errno={}", libc::EACCES)), "{stdout}");
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("helper pid");
    let line = format!("refused attach of tag secret by pid {pid} uid 65534 gid 65534");
    assert!(wait_until(PATIENCE, || keeper.log_text().contains(&line)));

    // Nobody may not abort or unmount it either; the entry is still held.
    let out = keeper.command(&["abort", "secret"]).uid(65534).gid(65534).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(keeper.entry("secret").unwrap().state, ConnState::Orphaned);
    // And it cannot see it.
    let out = keeper.command(&["ls", "--json"]).uid(65534).gid(65534).output().unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(json.trim(), r#"{"schema_version":1,"connections":[]}"#);
    // An unknown tag for nobody: "mount fresh".
    assert_eq!(attach_as_nobody(&keeper, "other").1, Some(3));
}

#[test]
fn rescue_uid_may_attach_and_root_only_with_the_flag() {
    let keeper = Keeper::start();
    let mut server = keeper.registrant("rescued", &["--rescue-uid", "65534"], open_fuse(), None);
    server.kill();
    assert!(keeper.wait_state("rescued", ConnState::Orphaned, PATIENCE));
    // Root (the owner here) is not the rescue uid and gets no bypass by default.
    assert_eq!(refused(keeper.client().attach("rescued")), libc::EACCES);
    let (stdout, code) = attach_as_nobody(&keeper, "rescued");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("attached devices=1"), "{stdout}");

    let keeper = Keeper::start_with(&["--root-may-attach"]);
    let mut server = keeper.registrant("rescued", &["--rescue-uid", "65534"], open_fuse(), None);
    server.kill();
    assert!(keeper.wait_state("rescued", ConnState::Orphaned, PATIENCE));
    assert!(keeper.client().attach("rescued").unwrap().is_some());
}

#[test]
fn add_device_only_from_the_server() {
    let keeper = Keeper::start();
    let _server = keeper.registrant("theirs", &[], open_fuse(), None);
    let r = keeper.client().add_device("theirs", 1, open_fuse().as_fd());
    assert_eq!(refused(r), libc::EPERM);
    assert_eq!(refused(keeper.client().unregister("theirs")), libc::EPERM);
}

#[test]
fn ls_prints_table_and_json() {
    let keeper = Keeper::start();
    let server = keeper.registrant("shown", &[], open_fuse(), None);
    let out = keeper.command(&["ls"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TAG"), "{text}");
    assert!(text.contains("shown") && text.contains("serving"), "{text}");
    assert!(text.contains(&server.pid().to_string()), "{text}");
    let out = keeper.command(&["ls", "--json"]).output().unwrap();
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.starts_with(r#"{"schema_version":1,"connections":[{"tag":"shown""#), "{json}");
    assert!(
        json.contains(
            r#""recoveries":0,"handovers":0,"last_recovery_us":null,"standby_pid":null,"note":null}"#
        ),
        "{json}"
    );
    assert!(json.contains(&format!("\"server_pid\":{}", server.pid())), "{json}");
    assert!(json.contains("\"state\":\"serving\""), "{json}");

    let out = keeper.command(&["ls", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = keeper.command(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// NOTE (issue 16: `fuse-keeper ls` shows what a wrapper runs and how often it restarted it):
/// listed by `ls` and `ls --json`, replaced by the next, cleared by an empty one, kept while the
/// connection is orphaned, gone with the connection; too long or with control characters:
/// EINVAL and the note unchanged.
#[test]
fn a_note_is_listed_replaced_and_goes_with_its_connection() {
    let keeper = Keeper::start();
    let (dev, state) = (open_fuse(), memfd(b"s"));
    let mut client = keeper.client();
    client.register(&registration("noted"), dev.as_fd(), state.as_fd()).unwrap();
    let note = || keeper.entry("noted").expect("listed").note;
    assert_eq!(note(), None);
    client.note("noted", "wrapped: sshfs, 0 restarts").unwrap();
    assert_eq!(note().as_deref(), Some("wrapped: sshfs, 0 restarts"));
    // From another connection of the owner uid (not the server's): replaced.
    keeper.client().note("noted", "wrapped: sshfs, 3 restarts · ü").unwrap();
    assert_eq!(note().as_deref(), Some("wrapped: sshfs, 3 restarts · ü"));
    let out = keeper.command(&["ls"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().ends_with("  NOTE"), "{text}");
    assert!(lines.next().unwrap().ends_with("  wrapped: sshfs, 3 restarts · ü"), "{text}");
    let out = keeper.command(&["ls", "--json"]).output().unwrap();
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(
        json.contains(r#""standby_pid":null,"note":"wrapped: sshfs, 3 restarts · ü"}"#),
        "{json}"
    );

    // Refused, and the note unchanged.
    let long = "x".repeat(fuse_keeper::protocol::MAX_NOTE + 1);
    for bad in [long.as_str(), "two\nlines", "\x1b]0;title\x07", "tab\there", "\u{202e}gnp.exe"] {
        assert_eq!(refused(client.note("noted", bad)), libc::EINVAL, "{bad:?}");
    }
    let longest = "é".repeat(fuse_keeper::protocol::MAX_NOTE / 2);
    client.note("noted", &longest).unwrap();
    assert_eq!(note().as_deref(), Some(longest.as_str()));
    assert_eq!(refused(client.note("unknown", "x")), libc::ENOENT);
    // Cleared by an empty note: `-` and null.
    client.note("noted", "").unwrap();
    assert_eq!(note(), None);
    let out = keeper.command(&["ls", "--json"]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains(r#""note":null}"#));

    // Gone with the connection: registered again, the tag starts without one.
    client.note("noted", "before").unwrap();
    client.unregister("noted").unwrap();
    assert_eq!(refused(client.note("noted", "x")), libc::ENOENT);
    client.register(&registration("noted"), dev.as_fd(), state.as_fd()).unwrap();
    assert_eq!(note(), None);

    // Kept while orphaned (the next server replaces it), gone with an UMOUNT.
    let mut server = keeper.registrant("orphan", &[], open_fuse(), None);
    client.note("orphan", "served by the helper").unwrap();
    server.kill();
    assert!(keeper.wait_state("orphan", ConnState::Orphaned, PATIENCE));
    assert_eq!(keeper.entry("orphan").unwrap().note.as_deref(), Some("served by the helper"));
    client.note("orphan", "orphaned").unwrap();
    client.umount("orphan").unwrap();
    assert!(keeper.entry("orphan").is_none());
    assert_eq!(refused(client.note("orphan", "x")), libc::ENOENT);
}

#[test]
fn second_keeper_on_the_same_socket_refuses() {
    let keeper = Keeper::start();
    let out = keeper.command(&["serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert!(keeper.client().list().is_ok());
}

#[test]
fn the_socket_file_appears_only_once_the_keeper_accepts_connections() {
    // A client that sees the socket file and connects at once must not be refused: a socket
    // bound but not yet listening refuses. The test switch holds the keeper 300 ms between
    // bind and listen, so a socket file published at bind would be seen and refused.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("keeper.sock");
    let child = std::process::Command::new(common::BIN)
        .arg("serve")
        .env("FUSE_KEEPER_SOCKET", &socket)
        .env("FUSE_KEEPER_TEST_LISTEN_DELAY_MS", "300")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut keeper = common::Proc { child };
    let deadline = Instant::now() + PATIENCE;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket file");
        assert!(keeper.is_running(), "the keeper exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Err(e) = fuse_keeper::KeeperClient::connect(&socket) {
        panic!("the socket file exists but connect failed: {e}");
    }
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["keeper.sock"], "only the socket is left in the directory");
}

#[test]
fn sigterm_stops_the_keeper_cleanly() {
    let mut keeper = Keeper::start();
    let pid = rustix::process::Pid::from_raw(keeper.proc.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = keeper.proc.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!keeper.socket.exists(), "socket file left behind");
}

#[test]
fn spawn_detached_starts_a_keeper_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("k.sock");
    let guard = StopKeeperAt(socket.clone());
    fuse_keeper::spawn_detached(std::path::Path::new(common::BIN), &socket).unwrap();
    let mut client = fuse_keeper::KeeperClient::connect(&socket).unwrap();
    // Its pid is the peer of our connection.
    let pid = rustix::net::sockopt::socket_peercred(client.as_fd()).unwrap().pid;
    assert!(client.list().unwrap().is_empty());
    let session = rustix::process::getsid(Some(pid)).unwrap();
    assert_ne!(Some(session), rustix::process::getsid(None).ok(), "not in its own session");
    let parent = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).unwrap();
    let ppid = parent.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap();
    assert_ne!(ppid, std::process::id().to_string(), "still our child");
    drop(guard);
    assert!(wait_until(PATIENCE, || !socket.exists()));
    assert!(std::fs::metadata(dir.path().join("k.sock.log")).is_ok());
}

/// This binary re-run as a helper process (common::run_helper); does nothing when run as a test.
#[test]
#[ignore = "a helper process that other tests start"]
fn keeper_test_helper() {
    common::run_helper();
}
