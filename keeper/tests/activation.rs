//! Socket activation: the keeper started as systemd starts it (the test binds and listens on
//! the seqpacket socket, passes it as fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set to the
//! keeper's own pid) serves on that socket, leaves its file to its owner, hands a restarted
//! keeper the clients queued while it was down, and refuses an fd 3 it cannot serve on with a
//! clear error.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{PATIENCE, memfd, open_fuse, wait_until};
use fuse_keeper::{KeeperClient, Registration};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// A socket as systemd's `ListenSequentialPacket=` makes it: bound to `path`, listening.
fn systemd_socket(path: &Path, kind: SocketType, listen: bool) -> OwnedFd {
    let fd = rustix::net::socket_with(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)
        .expect("socket");
    rustix::net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).expect("bind");
    if listen {
        rustix::net::listen(&fd, 128).expect("listen");
    }
    fd
}

/// `fuse-keeper serve` with `fd` as its fd 3 (none if `None`), `LISTEN_FDS=fds` and
/// `LISTEN_PID` its own pid (the shell's, which `exec`s the keeper), stderr in `log`.
fn activated(socket: &Path, fd: Option<OwnedFd>, fds: &str, log: &Path) -> Child {
    let (stdin, take) = match fd {
        Some(fd) => (Stdio::from(fd), "exec 3<&0 0</dev/null"),
        None => (Stdio::null(), "exec 3<&-"),
    };
    Command::new("sh")
        .arg("-c")
        .arg(format!("{take}; LISTEN_PID=$$ LISTEN_FDS=\"$1\" exec \"$0\" serve"))
        .arg(common::BIN)
        .arg(fds)
        .env("FUSE_KEEPER_SOCKET", socket)
        .env("RUST_LOG", "info")
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn the keeper")
}

/// A child killed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("keeper.sock");
    (dir, socket)
}

fn registration(tag: &str) -> Registration {
    Registration {
        tag: tag.into(),
        rescue_uid: 0,
        mountpoint: "/nonexistent/activation-test".into(),
        conn_id: 0,
        recovery_timeout: None,
        negotiation: b"init".to_vec(),
        fail_on_timeout: false,
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn require_root() {
    assert!(rustix::process::geteuid().is_root(), "these tests open /dev/fuse: run them as root");
    assert!(Path::new("/dev/fuse").exists(), "these tests need /dev/fuse");
}

/// Waits for `child` to exit and returns its status.
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the keeper did not exit within {PATIENCE:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_socket_activated_keeper_serves_on_fd_3_and_leaves_the_socket_file_to_systemd() {
    require_root();
    let (dir, socket) = dir();
    let listening = systemd_socket(&socket, SocketType::SEQPACKET, true);
    let bound = std::fs::metadata(&socket).unwrap().ino();
    let log = dir.path().join("keeper.log");
    let fd3 = listening.try_clone().unwrap();
    let mut keeper = Reaped(activated(&socket, Some(fd3), "1", &log));

    let mut client = KeeperClient::connect(&socket).unwrap();
    let (dev, state) = (open_fuse(), memfd(b"state"));
    client.register(&registration("activated"), dev.as_fd(), state.as_fd()).unwrap_or_else(|e| {
        panic!("register through the activated socket: {e}\nkeeper log:\n{}", log_of(&log))
    });
    let listed = KeeperClient::connect(&socket).unwrap().list().unwrap();
    assert!(listed.iter().any(|c| c.tag == "activated"), "{listed:?}");
    assert!(log_of(&log).contains("socket-activated"), "{}", log_of(&log));
    assert!(!log_of(&log).contains("on another path"), "{}", log_of(&log));

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(keeper.0.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(exit_of(&mut keeper.0).success(), "SIGTERM stops it cleanly");
    let after = std::fs::metadata(&socket).expect("the socket file is systemd's: still there");
    assert_eq!(after.ino(), bound, "the very socket the test bound, neither replaced nor removed");
}

#[test]
fn a_keeper_restarted_on_the_same_socket_serves_the_clients_queued_while_it_was_down() {
    require_root();
    let (dir, socket) = dir();
    let listening = systemd_socket(&socket, SocketType::SEQPACKET, true);
    let first_log = dir.path().join("first.log");
    let mut first =
        Reaped(activated(&socket, Some(listening.try_clone().unwrap()), "1", &first_log));
    assert!(
        wait_until(PATIENCE, || KeeperClient::connect(&socket).and_then(|mut c| c.list()).is_ok()),
        "the first keeper never answered: {}",
        log_of(&first_log)
    );
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    // Down, as between a crash and systemd's restart: the socket still accepts, and each
    // client's request waits in it.
    let queued: Vec<_> = (0..4)
        .map(|_| {
            let mut client = KeeperClient::connect(&socket).expect("the socket accepts while down");
            client.set_timeout(Some(PATIENCE)).unwrap();
            std::thread::spawn(move || client.list().map(|l| l.len()))
        })
        .collect();
    assert!(queued.iter().all(|t| !t.is_finished()), "answered with no keeper running");

    let second_log = dir.path().join("second.log");
    let _second =
        Reaped(activated(&socket, Some(listening.try_clone().unwrap()), "1", &second_log));
    for client in queued {
        let answer = client.join().unwrap();
        assert_eq!(answer.ok(), Some(0), "a queued client was lost: {}", log_of(&second_log));
    }
}

#[test]
fn an_fd_3_the_keeper_cannot_serve_on_is_a_clear_error() {
    require_root();
    let (dir, socket) = dir();
    let log = dir.path().join("keeper.log");
    let expect_refusal = |fd: Option<OwnedFd>, fds: &str, why: &str| {
        let mut keeper = Reaped(activated(&socket, fd, fds, &log));
        let status = exit_of(&mut keeper.0);
        let text = log_of(&log);
        assert!(!status.success(), "{why}: the keeper must not start: {text}");
        assert!(text.contains("socket activation: "), "{why}: {text}");
        assert!(text.contains(why), "{why}: {text}");
        assert!(!socket.exists(), "{why}: nothing was bound instead");
    };
    expect_refusal(None, "1", "fd 3 is not open");
    let elsewhere = dir.path().join("other.sock");
    expect_refusal(
        Some(systemd_socket(&elsewhere, SocketType::STREAM, true)),
        "1",
        "fd 3 is not a listening AF_UNIX SOCK_SEQPACKET socket: its type is",
    );
    std::fs::remove_file(&elsewhere).unwrap();
    expect_refusal(
        Some(systemd_socket(&elsewhere, SocketType::SEQPACKET, false)),
        "1",
        "it is not listening",
    );
    let file: OwnedFd = std::fs::File::open("/etc/hostname").unwrap().into();
    expect_refusal(Some(file), "1", "fd 3 is not a listening AF_UNIX SOCK_SEQPACKET socket");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    expect_refusal(Some(udp.into()), "1", "its family is");
    expect_refusal(None, "three", "LISTEN_FDS=\"three\" is not a number of fds");
}

#[test]
fn listen_variables_meant_for_another_process_are_ignored() {
    require_root();
    let (dir, socket) = dir();
    let log = dir.path().join("keeper.log");
    let _keeper = Reaped(
        Command::new(common::BIN)
            .arg("serve")
            .env("FUSE_KEEPER_SOCKET", &socket)
            .env("LISTEN_PID", "1")
            .env("LISTEN_FDS", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(PATIENCE, || KeeperClient::connect(&socket).and_then(|mut c| c.list()).is_ok()),
        "the keeper binds its own socket: {}",
        log_of(&log)
    );
    assert!(!log_of(&log).contains("socket-activated"), "{}", log_of(&log));
}
