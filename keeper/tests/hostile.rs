//! Hostile clients (issue 5, point 4), against a real keeper process on a real socket:
//! malformed, truncated and oversized messages; fd floods; too many tags for one uid; another
//! uid registering or attaching an existing tag; attach to a live server by a uid that is not
//! entitled; clients that connect and never speak; clients that die mid-exchange; and a soak of
//! 10,000 such attempts after which the keeper's fd count is back to its baseline and its RSS
//! has barely moved. Other uids are played by threads that drop to that uid with a per-thread
//! `setresuid` (the raw syscall changes only the calling thread): the keeper sees the uid and
//! gid of the thread that called `connect()`.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{
    Keeper, PATIENCE, connect_raw, dup, fd_count, memfd, open_fuse, read_all, wait_until,
};
use fuse_keeper::protocol::{
    self, HEADER_LEN, Header, Kind, MAX_MESSAGE, MAX_PAYLOAD, Register, Reply, Request,
    decode_reply, encode_request,
};
use fuse_keeper::{ConnState, same_open_file};
use rustix::process::{Pid, Signal};

const NOBODY: u32 = 65534;
/// A second unprivileged uid.
const OTHER: u32 = 65533;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A connection of this process as root.
fn connect(keeper: &Keeper) -> OwnedFd {
    connect_raw(&keeper.socket).expect("connect")
}

/// A connection whose peer credentials are `uid`/`uid` (made on a thread that dropped to them).
fn connect_as(keeper: &Keeper, uid: u32) -> std::io::Result<OwnedFd> {
    let path = keeper.socket.clone();
    std::thread::spawn(move || {
        rustix::thread::set_thread_res_gid(
            rustix::process::Gid::from_raw(uid),
            rustix::process::Gid::from_raw(uid),
            rustix::process::Gid::from_raw(uid),
        )?;
        rustix::thread::set_thread_res_uid(
            rustix::process::Uid::from_raw(uid),
            rustix::process::Uid::from_raw(uid),
            rustix::process::Uid::from_raw(uid),
        )?;
        connect_raw(&path)
    })
    .join()
    .expect("connecting thread")
}

fn send(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    protocol::send_message(sock.as_fd(), bytes, fds).expect("send");
}

/// The next message from the keeper: `None` at end of stream (the keeper closed us).
fn receive(sock: &OwnedFd) -> Option<(Reply, Vec<OwnedFd>)> {
    let r = protocol::recv_message(sock.as_fd(), MAX_MESSAGE, 17).expect("recv")?;
    Some((decode_reply(&r.bytes, r.fds.len()).expect("a well-formed reply"), r.fds))
}

/// How a connection that may be refused for want of room fares with a LIST.
#[derive(Debug, PartialEq)]
enum Fate {
    Served,
    /// An EMFILE ERROR, then end of stream.
    Refused,
    /// Closed before the request could be sent or its answer read (EPIPE, ECONNRESET, EOF).
    Closed,
}

fn try_list(sock: &OwnedFd) -> Fate {
    let list = encode_request(&Request::List { skip: 0 });
    if protocol::send_message(sock.as_fd(), &list, &[]).is_err() {
        return Fate::Closed;
    }
    match protocol::recv_message(sock.as_fd(), MAX_MESSAGE, 17) {
        Ok(Some(r)) => match decode_reply(&r.bytes, r.fds.len()).expect("a reply") {
            Reply::List { .. } => Fate::Served,
            reply => {
                assert_eq!(errno_of(reply), libc::EMFILE);
                // The end of stream, or ECONNRESET when the keeper closed without reading the
                // LIST (a close with unread data resets the stream).
                match protocol::recv_message(sock.as_fd(), MAX_MESSAGE, 17) {
                    Ok(None) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {}
                    other => panic!("a refused client is closed, not {other:?}"),
                }
                Fate::Refused
            }
        },
        Ok(None) => Fate::Closed,
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}");
            Fate::Closed
        }
    }
}

/// The keeper has not closed `sock` (nothing to read, no end of stream), without waiting.
fn still_open(sock: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(rustix::net::recv(sock, &mut byte, flags), Err(rustix::io::Errno::AGAIN))
}

fn exchange(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Reply {
    send(sock, bytes, fds);
    receive(sock).expect("a reply, not end of stream").0
}

fn errno_of(reply: Reply) -> i32 {
    match reply {
        Reply::Error { errno, .. } => errno,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

fn with_header(kind: u16, payload: &[u8], fd_count: u16) -> Vec<u8> {
    let mut m = Header { kind, payload_len: payload.len() as u32, fd_count }.encode().to_vec();
    m.extend_from_slice(payload);
    m
}

fn register_request(tag: &str) -> Request {
    Request::Register(Register {
        tag: tag.into(),
        rescue_uid: 0,
        mountpoint: "/nonexistent/hostile".into(),
        conn_id: 0,
        recovery_timeout_ms: 0,
        negotiation: b"init".to_vec(),
        flags: 0,
    })
}

/// One request of every kind, with fds of the right count and type.
fn every_request() -> Vec<Request> {
    vec![
        register_request("t"),
        Request::AddDevice { tag: "t".into(), index: 1 },
        Request::Attach { tag: "t".into() },
        Request::Unregister { tag: "t".into() },
        Request::List { skip: 0 },
        Request::Abort { target: "t".into() },
        Request::Umount { target: "/nonexistent/hostile".into() },
        Request::Note { tag: "t".into(), note: "a note".into() },
        Request::ListNotes { skip: 0 },
    ]
}

fn list_ok(sock: &OwnedFd) -> Vec<protocol::ListEntry> {
    match exchange(sock, &encode_request(&Request::List { skip: 0 }), &[]) {
        Reply::List { entries, .. } => entries,
        other => panic!("LIST answered {other:?}"),
    }
}

fn keeper_fds(keeper: &Keeper) -> usize {
    fd_count(keeper.proc.pid())
}

fn settled_fds(keeper: &Keeper) -> usize {
    keeper.settled_fds()
}

/// Resident set of process `pid`, in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Wait until the keeper holds exactly `baseline` fds (clients we closed are processed
/// asynchronously), and fail with the numbers if it does not.
fn assert_fds_back_to(keeper: &Keeper, baseline: usize, what: &str) {
    let back = wait_until(PATIENCE, || keeper_fds(keeper) == baseline);
    assert!(back, "{what}: keeper holds {} fds, baseline {baseline}", keeper_fds(keeper));
}

fn assert_log(keeper: &Keeper, line: &str) {
    let found = wait_until(PATIENCE, || keeper.log_text().contains(line));
    assert!(found, "keeper log lacks {line:?}:\n{}", keeper.log_text());
}

/// SIGSTOPs the keeper; SIGCONT when dropped (also on a failed assertion), so that messages
/// can be queued and their senders die before the keeper reads them.
struct Stopped(Pid);

impl Stopped {
    fn new(keeper: &Keeper) -> Stopped {
        let pid = Pid::from_raw(keeper.proc.pid() as i32).unwrap();
        rustix::process::kill_process(pid, Signal::STOP).unwrap();
        let stopped = wait_until(PATIENCE, || {
            std::fs::read_to_string(format!("/proc/{}/stat", keeper.proc.pid())).is_ok_and(|s| {
                s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T'))
            })
        });
        assert!(stopped, "keeper did not stop");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, Signal::CONT);
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed, truncated, oversized

#[test]
fn malformed_messages_get_errors_and_the_connection_survives() {
    let keeper = Keeper::start();
    let sock = connect(&keeper);
    list_ok(&sock);
    let baseline = settled_fds(&keeper);
    let field = |kind: Kind, build: &dyn Fn(&mut protocol::Writer)| {
        let mut w = protocol::Writer::new();
        build(&mut w);
        with_header(kind as u16, &w.into_bytes(), 0)
    };
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        (
            "empty tag",
            field(Kind::Attach, &|w| {
                w.bytes(b"");
            }),
            libc::EINVAL,
        ),
        (
            "tag starting with /",
            field(Kind::Attach, &|w| {
                w.bytes(b"/x");
            }),
            libc::EINVAL,
        ),
        (
            "tag with a newline",
            field(Kind::Unregister, &|w| {
                w.bytes(b"a\nb");
            }),
            libc::EINVAL,
        ),
        (
            "tag with ESC",
            field(Kind::Attach, &|w| {
                w.bytes(b"\x1b[2J");
            }),
            libc::EINVAL,
        ),
        (
            "tag not UTF-8",
            field(Kind::Attach, &|w| {
                w.bytes(&[0xff, 0xfe]);
            }),
            libc::EINVAL,
        ),
        (
            "target with NUL",
            field(Kind::Abort, &|w| {
                w.bytes(b"/a\0b");
            }),
            libc::EINVAL,
        ),
        (
            "empty target",
            field(Kind::Umount, &|w| {
                w.bytes(b"");
            }),
            libc::EINVAL,
        ),
        (
            "trailing bytes",
            field(Kind::List, &|w| {
                w.u32(0).u32(0);
            }),
            libc::EPROTO,
        ),
        (
            "index 16",
            field(Kind::AddDevice, &|w| {
                w.bytes(b"t").u32(16);
            }),
            libc::EINVAL,
        ),
        (
            "bad magic",
            b"XXXX\x01\x00\x05\x00\x04\x00\x00\x00\x00\x00\x00\x00\0\0\0\0".to_vec(),
            libc::EPROTO,
        ),
        (
            "version 2",
            {
                let mut m = encode_request(&Request::List { skip: 0 });
                m[4] = 2;
                m
            },
            libc::EPROTO,
        ),
        (
            "reserved field set",
            {
                let mut m = encode_request(&Request::List { skip: 0 });
                m[14] = 1;
                m
            },
            libc::EPROTO,
        ),
        (
            "payload_len too big",
            with_header(Kind::List as u16, &[0; 4], 0)[..18].to_vec(),
            libc::EPROTO,
        ),
        (
            "payload_len u32::MAX",
            {
                let mut m = encode_request(&Request::List { skip: 0 });
                m[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
                m
            },
            libc::EPROTO,
        ),
        ("unknown kind 0", with_header(0, &[], 0), libc::EOPNOTSUPP),
        ("unknown kind 22", with_header(22, &[], 0), libc::EOPNOTSUPP),
        ("unknown kind 0x7fff", with_header(0x7fff, &[], 0), libc::EOPNOTSUPP),
        ("unknown kind 0xffff", with_header(0xffff, &[], 0), libc::EOPNOTSUPP),
        ("a reply kind (ATTACHED)", with_header(Kind::Attached as u16, &[], 0), libc::EOPNOTSUPP),
        ("a reply kind (ERROR)", with_header(Kind::Error as u16, &[0; 8], 0), libc::EOPNOTSUPP),
        ("one byte", vec![0x46], libc::EPROTO),
        ("all 0xff header", vec![0xff; HEADER_LEN], libc::EPROTO),
    ];
    for (what, bytes, errno) in &cases {
        assert_eq!(errno_of(exchange(&sock, bytes, &[])), *errno, "{what}");
    }
    // Pseudo-random garbage of many lengths (a fixed xorshift sequence, so failures repeat).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in 1..400usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let errno = errno_of(exchange(&sock, &bytes, &[]));
        assert!([libc::EPROTO, libc::EINVAL, libc::EBADF, libc::EOPNOTSUPP].contains(&errno));
    }
    // The same connection is still served, nothing was registered, nothing leaked.
    assert!(list_ok(&sock).is_empty());
    drop(sock);
    assert_fds_back_to(&keeper, baseline - 2, "after garbage");
    assert!(keeper.proc.pid() > 0 && keeper.client().list().is_ok());
}

#[test]
fn truncated_messages_of_every_kind_are_refused_and_their_fds_closed() {
    let keeper = Keeper::start();
    let sock = connect(&keeper);
    list_ok(&sock);
    let baseline = settled_fds(&keeper);
    let (dev, state) = (open_fuse(), memfd(b"state"));
    for req in every_request() {
        let msg = encode_request(&req);
        let fds: Vec<BorrowedFd<'_>> =
            [dev.as_fd(), state.as_fd()].into_iter().take(req.fd_count()).collect();
        for len in 1..msg.len() {
            // As a client that stopped writing would leave it: the header promises more.
            let reply = exchange(&sock, &msg[..len], &fds);
            assert_eq!(errno_of(reply), libc::EPROTO, "{req:?} cut at {len}");
            // With the header rewritten to agree: a field is cut short.
            if len >= HEADER_LEN {
                let mut cut = msg[..len].to_vec();
                cut[8..12].copy_from_slice(&((len - HEADER_LEN) as u32).to_le_bytes());
                let errno = errno_of(exchange(&sock, &cut, &fds));
                assert_eq!(errno, libc::EPROTO, "{req:?} consistently cut at {len}");
            }
        }
    }
    assert!(list_ok(&sock).is_empty(), "a truncated REGISTER registered something");
    assert_fds_back_to(&keeper, baseline, "fds of truncated messages were kept");
}

#[test]
fn oversized_messages_and_fields_are_refused() {
    let keeper = Keeper::start();
    let sock = connect(&keeper);
    list_ok(&sock);
    let baseline = settled_fds(&keeper);
    // Whole messages over 64 KiB: one byte over, and much larger.
    for size in [MAX_MESSAGE + 1, 100_000, 150_000] {
        let mut msg = with_header(Kind::List as u16, &[], 0);
        msg.resize(size, 0);
        msg[8..12].copy_from_slice(&((size - HEADER_LEN) as u32).to_le_bytes());
        assert_eq!(errno_of(exchange(&sock, &msg, &[])), libc::EMSGSIZE, "{size} bytes");
    }
    // Exactly the largest payload is read whole and judged on its fields.
    let mut w = protocol::Writer::new();
    w.bytes(&vec![b'a'; MAX_PAYLOAD - 4]);
    let max = with_header(Kind::Attach as u16, &w.into_bytes(), 0);
    assert_eq!(max.len(), MAX_MESSAGE);
    assert_eq!(errno_of(exchange(&sock, &max, &[])), libc::EINVAL);
    // Fields over their bounds, and length prefixes far beyond the message.
    let (dev, state) = (open_fuse(), memfd(b""));
    let long_tag = Request::Attach { tag: "x".repeat(256) };
    assert_eq!(errno_of(exchange(&sock, &encode_request(&long_tag), &[])), libc::EINVAL);
    let mut reg = match register_request("big") {
        Request::Register(r) => r,
        _ => unreachable!(),
    };
    reg.negotiation = vec![0; 4097];
    let msg = encode_request(&Request::Register(reg.clone()));
    let both = [dev.as_fd(), state.as_fd()];
    assert_eq!(errno_of(exchange(&sock, &msg, &both)), libc::EINVAL);
    reg.negotiation.clear();
    reg.mountpoint = format!("/{}", "m".repeat(4096)).into();
    let msg = encode_request(&Request::Register(reg));
    assert_eq!(errno_of(exchange(&sock, &msg, &both)), libc::EINVAL);
    let target = Request::Umount { target: format!("/{}", "u".repeat(4096)) };
    assert_eq!(errno_of(exchange(&sock, &encode_request(&target), &[])), libc::EINVAL);
    for claimed in [4097u32, 65_536, u32::MAX] {
        let mut payload = claimed.to_le_bytes().to_vec();
        payload.extend_from_slice(b"abc");
        let msg = with_header(Kind::Attach as u16, &payload, 0);
        assert_eq!(errno_of(exchange(&sock, &msg, &[])), libc::EINVAL, "length {claimed}");
    }
    assert!(list_ok(&sock).is_empty());
    // Fds whose close may wait (sockets, pipes) are closed by the closer threads.
    assert_fds_back_to(&keeper, baseline, "fds sent with the messages");
}

// ---------------------------------------------------------------------------------------------
// fd floods

#[test]
fn more_fds_than_allowed_are_refused_and_all_closed() {
    let keeper = Keeper::start();
    let sock = connect(&keeper);
    list_ok(&sock);
    let baseline = settled_fds(&keeper);
    // 253 is the kernel's most per message (SCM_MAX_FD).
    let files: Vec<OwnedFd> = (0..253).map(|_| memfd(b"x")).collect();
    let all: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
    for n in [17, 18, 64, 253] {
        for req in every_request() {
            let mut msg = encode_request(&req);
            msg[12..14].copy_from_slice(&(n as u16).to_le_bytes());
            let errno = errno_of(exchange(&sock, &msg, &all[..n]));
            assert_eq!(errno, libc::EBADF, "{n} fds with {:?}", req.kind());
        }
    }
    assert_fds_back_to(&keeper, baseline, "fds of refused messages are still open");
    assert!(list_ok(&sock).is_empty());
}

#[test]
fn fds_on_kinds_that_take_none_or_fewer_are_closed() {
    let keeper = Keeper::start();
    let sock = connect(&keeper);
    list_ok(&sock);
    let baseline = settled_fds(&keeper);
    let devices: Vec<OwnedFd> = (0..16).map(|_| open_fuse()).collect();
    let fds: Vec<BorrowedFd<'_>> = devices.iter().map(AsFd::as_fd).collect();
    for req in every_request() {
        for extra in 1..=(16 - req.fd_count()) {
            let n = req.fd_count() + extra;
            let mut msg = encode_request(&req);
            msg[12..14].copy_from_slice(&(n as u16).to_le_bytes());
            let errno = errno_of(exchange(&sock, &msg, &fds[..n]));
            assert_eq!(errno, libc::EBADF, "{n} fds with {:?}", req.kind());
        }
        // The header claiming fds that did not come, and fds the header does not mention.
        if req.fd_count() == 0 {
            let mut msg = encode_request(&req);
            msg[12] = 1;
            assert_eq!(errno_of(exchange(&sock, &msg, &[])), libc::EBADF);
            let msg = encode_request(&req);
            assert_eq!(errno_of(exchange(&sock, &msg, &fds[..3])), libc::EBADF);
        }
    }
    // Fds of the wrong type where fds are due: a memfd, a socket, a pipe as the device.
    let (rx, _tx) = rustix::pipe::pipe().unwrap();
    let state = memfd(b"");
    let reg = encode_request(&register_request("t"));
    for wrong in [state.as_fd(), sock.as_fd(), rx.as_fd()] {
        assert_eq!(errno_of(exchange(&sock, &reg, &[wrong, state.as_fd()])), libc::EBADF);
    }
    for wrong in [fds[1], sock.as_fd(), rx.as_fd()] {
        assert_eq!(errno_of(exchange(&sock, &reg, &[fds[0], wrong])), libc::EBADF);
    }
    // ADD_DEVICE with no entry: the device fd is closed too.
    let add = encode_request(&Request::AddDevice { tag: "t".into(), index: 1 });
    assert_eq!(errno_of(exchange(&sock, &add, &fds[..1])), libc::ENOENT);
    assert!(list_ok(&sock).is_empty());
    // Fds whose close may wait (sockets, pipes) are closed by the closer threads.
    assert_fds_back_to(&keeper, baseline, "fds sent with the messages");
}

#[test]
fn many_messages_with_fds_leak_nothing() {
    let keeper = Keeper::start();
    let sock = connect(&keeper);
    list_ok(&sock);
    let baseline = settled_fds(&keeper);
    let files: Vec<OwnedFd> = (0..16).map(|_| memfd(b"x")).collect();
    let fds: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
    let list = encode_request(&Request::List { skip: 0 });
    let mut flagged = list.clone();
    flagged[12] = 16;
    // One at a time, 16 fds each.
    for _ in 0..2000 {
        assert_eq!(errno_of(exchange(&sock, &flagged, &fds)), libc::EBADF);
    }
    // Fds whose close may wait (sockets, pipes) are closed by the closer threads.
    assert_fds_back_to(&keeper, baseline, "fds sent with the messages");
    // Many in flight at once on several connections that then close without reading.
    for _ in 0..20 {
        let burst = connect(&keeper);
        for _ in 0..50 {
            send(&burst, &flagged, &fds);
        }
        drop(burst);
    }
    drop(sock);
    assert_fds_back_to(&keeper, baseline - 2, "after bursts of fds");
    assert!(keeper.client().list().unwrap().is_empty());
}

/// Out of fds (a keeper started with RLIMIT_NOFILE 64): clients past what the table holds are
/// answered EMFILE and closed, the keeper does not spin on its listener, and it serves again
/// once fds are free.
#[test]
fn keeper_out_of_fds_refuses_clients_and_recovers() {
    let keeper = Keeper::start_wrapped(&["prlimit", "--nofile=64:64", "--"], &[]);
    let pid = keeper.proc.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.contains(" 64 ")));
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        let sock = connect(&keeper);
        match try_list(&sock) {
            Fate::Served => held.push(sock),
            Fate::Refused | Fate::Closed => refused += 1,
        }
    }
    assert!(refused > 0 && !held.is_empty(), "held {}, refused {refused}", held.len());
    // Without a request pending, a refused client reads the EMFILE ERROR.
    let (reply, _) = receive(&connect(&keeper)).expect("an EMFILE ERROR");
    assert_eq!(errno_of(reply), libc::EMFILE);
    assert_log(&keeper, "out of file descriptors: refusing clients");
    // Not spinning: while refusals are pending and the table is full, the keeper sleeps.
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        fields[0] + fields[1]
    };
    let waiting: Vec<OwnedFd> = (0..5).map(|_| connect(&keeper)).collect();
    let before = cpu();
    std::thread::sleep(Duration::from_millis(500));
    let ticks = cpu() - before;
    assert!(ticks < 20, "keeper burnt {ticks} ticks in 500 ms while out of fds");
    drop(waiting);
    drop(held);
    assert!(wait_until(PATIENCE, || keeper.client().list().is_ok()));
    assert!(keeper.client().list().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Tags and uids

#[test]
fn too_many_tags_for_one_uid_is_edquot_and_other_uids_are_unaffected() {
    let keeper = Keeper::start_with(&["--max-tags-per-uid", "32"]);
    let (dev, state) = (open_fuse(), memfd(b""));
    let both = [dev.as_fd(), state.as_fd()];
    let sock = connect_as(&keeper, NOBODY).unwrap();
    for i in 0..32 {
        let reply = exchange(&sock, &encode_request(&register_request(&format!("t{i}"))), &both);
        assert!(matches!(reply, Reply::Ok), "tag {i}: {reply:?}");
    }
    let full = keeper_fds(&keeper);
    let reply = exchange(&sock, &encode_request(&register_request("t32")), &both);
    assert_eq!(errno_of(reply), libc::EDQUOT);
    assert_eq!(keeper_fds(&keeper), full, "the refused REGISTER's fds were kept");
    // Another uid has its own quota: the same tag names, 32 of them, then EDQUOT too.
    let other = connect_as(&keeper, OTHER).unwrap();
    for i in 0..32 {
        let reply = exchange(&other, &encode_request(&register_request(&format!("t{i}"))), &both);
        assert!(matches!(reply, Reply::Ok), "the other uid's tag {i}: {reply:?}");
    }
    let reply = exchange(&other, &encode_request(&register_request("t32")), &both);
    assert_eq!(errno_of(reply), libc::EDQUOT);
    // Root is not bound by the per-uid quota.
    let root = connect(&keeper);
    for i in 0..40 {
        let reply = exchange(&root, &encode_request(&register_request(&format!("t{i}"))), &both);
        assert!(matches!(reply, Reply::Ok), "root's tag {i}: {reply:?}");
    }
    let listed = keeper.list();
    assert_eq!(listed.iter().filter(|e| e.owner_uid == NOBODY).count(), 32);
    assert_eq!(listed.iter().filter(|e| e.owner_uid == OTHER).count(), 32);
    assert_eq!(listed.iter().filter(|e| e.owner_uid == 0).count(), 40);
    // Freeing one of nobody's slots lets nobody register again (and only nobody).
    let unregister = encode_request(&Request::Unregister { tag: "t0".into() });
    assert!(matches!(exchange(&sock, &unregister, &[]), Reply::Ok));
    assert_eq!(
        errno_of(exchange(&other, &encode_request(&register_request("x")), &both)),
        libc::EDQUOT
    );
    let reply = exchange(&sock, &encode_request(&register_request("t32")), &both);
    assert!(matches!(reply, Reply::Ok), "{reply:?}");
}

#[test]
fn default_tag_quota_is_libfuse_mount_max_and_root_is_not_bound_by_it() {
    // 16384 fds: 12288 for entries (3 each); the fds of 1000 entries for one uid.
    let keeper = Keeper::start_wrapped(
        &["prlimit", "--nofile=16384:16384", "--"],
        &["--max-fds-per-uid", "3000"],
    );
    let (dev, state) = (open_fuse(), memfd(b""));
    let both = [dev.as_fd(), state.as_fd()];
    let quota = fuse_keeper::daemon::DEFAULT_MAX_TAGS_PER_UID;
    assert_eq!(quota, 1000, "fuse.conf's default mount_max");
    let sock = connect_as(&keeper, NOBODY).unwrap();
    for i in 0..quota {
        let reply = exchange(&sock, &encode_request(&register_request(&format!("m{i}"))), &both);
        assert!(matches!(reply, Reply::Ok), "tag {i}: {reply:?}");
    }
    let reply = exchange(&sock, &encode_request(&register_request("one-more")), &both);
    assert_eq!(errno_of(reply), libc::EDQUOT);
    // A dense node's root servers own thousands of mounts.
    let root = connect(&keeper);
    for i in 0..3000 {
        let reply = exchange(&root, &encode_request(&register_request(&format!("m{i}"))), &both);
        assert!(matches!(reply, Reply::Ok), "root's tag {i}: {reply:?}");
    }
    assert_eq!(keeper.list().len(), quota + 3000);
}

#[test]
fn another_uid_cannot_take_or_touch_an_existing_tag() {
    let keeper = Keeper::start();
    let dev0 = open_fuse();
    let mut server = keeper.registrant("shared", &[], dup(&dev0), None);
    let me = std::process::id();
    let nobody = connect_as(&keeper, NOBODY).unwrap();
    // Everything but REGISTER on root's tag is refused, and each refusal is logged.
    let attach = encode_request(&Request::Attach { tag: "shared".into() });
    assert_eq!(errno_of(exchange(&nobody, &attach, &[])), libc::EACCES);
    assert_log(
        &keeper,
        &format!("refused attach of tag shared by pid {me} uid {NOBODY} gid {NOBODY}"),
    );
    let unregister = encode_request(&Request::Unregister { tag: "shared".into() });
    assert_eq!(errno_of(exchange(&nobody, &unregister, &[])), libc::EPERM);
    assert_log(
        &keeper,
        &format!("refused unregister of tag shared by pid {me} uid {NOBODY} gid {NOBODY}"),
    );
    let add = encode_request(&Request::AddDevice { tag: "shared".into(), index: 1 });
    assert_eq!(errno_of(exchange(&nobody, &add, &[open_fuse().as_fd()])), libc::EPERM);
    assert_log(
        &keeper,
        &format!("refused add_device of tag shared by pid {me} uid {NOBODY} gid {NOBODY}"),
    );
    for (kind, name) in [(Kind::Abort, "abort"), (Kind::Umount, "umount")] {
        let mut w = protocol::Writer::new();
        w.bytes(b"shared");
        let msg = with_header(kind as u16, &w.into_bytes(), 0);
        assert_eq!(errno_of(exchange(&nobody, &msg, &[])), libc::EACCES, "{name}");
        assert_log(
            &keeper,
            &format!("refused {name} of tag shared by pid {me} uid {NOBODY} gid {NOBODY}"),
        );
    }
    // REGISTER of the same name makes a second entry, owned by nobody; root's is untouched.
    let (dev1, state1) = (open_fuse(), memfd(b"nobody's"));
    let reg = encode_request(&register_request("shared"));
    assert!(matches!(exchange(&nobody, &reg, &[dev1.as_fd(), state1.as_fd()]), Reply::Ok));
    // And again: EEXIST for nobody's own key.
    assert_eq!(errno_of(exchange(&nobody, &reg, &[dev1.as_fd(), state1.as_fd()])), libc::EEXIST);
    let entries = keeper.list();
    let shared: Vec<_> = entries.iter().filter(|e| e.tag == "shared").collect();
    assert_eq!(shared.len(), 2, "{entries:?}");
    let root_entry = shared.iter().find(|e| e.owner_uid == 0).expect("root's entry");
    assert_eq!(root_entry.server_pid, Some(server.pid()));
    assert_eq!(root_entry.state, ConnState::Serving);
    // Nobody's UNREGISTER drops nobody's entry only.
    assert!(matches!(exchange(&nobody, &unregister, &[]), Reply::Ok));
    let shared: Vec<_> = keeper.list().into_iter().filter(|e| e.tag == "shared").collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].owner_uid, 0);
    // Root's connection is intact: orphan it and attach it, and get root's very device back.
    server.kill();
    assert!(keeper.wait_state("shared", ConnState::Orphaned, PATIENCE));
    assert_eq!(errno_of(exchange(&nobody, &attach, &[])), libc::EACCES);
    let attached = keeper.client().attach("shared").unwrap().expect("root's entry");
    assert_eq!(attached.negotiation, b"negotiation:shared");
    assert_eq!(read_all(&attached.state), b"state:shared");
    assert!(same_open_file(attached.devices[0].as_fd(), dev0.as_fd()).unwrap());
}

/// NOTE is for a connection's owner uid, its rescue uid and root: another uid can neither set
/// nor clear one (EPERM, the note unchanged), its NOTE of a tag it also registered goes to its
/// own entry only, and however many notes it sends (to its own entry, or refused) the keeper
/// keeps one bounded note per entry: its memory does not grow.
#[test]
fn another_uid_cannot_note_a_connection_and_notes_do_not_grow_the_keeper() {
    let keeper = Keeper::start();
    let pid = keeper.proc.pid();
    let _server = keeper.registrant("victim", &[], open_fuse(), None);
    let _rescued = keeper.registrant("rescued", &["--rescue-uid", "65534"], open_fuse(), None);
    let note = |tag: &str, text: &str| {
        encode_request(&Request::Note { tag: tag.into(), note: text.into() })
    };
    let note_of = |tag: &str, owner: u32| {
        keeper.list().into_iter().find(|e| e.tag == tag && e.owner_uid == owner).unwrap().note
    };
    let root = connect(&keeper);
    assert!(matches!(exchange(&root, &note("victim", "root's word"), &[]), Reply::Ok));
    let nobody = connect_as(&keeper, NOBODY).unwrap();
    for text in ["owned", ""] {
        assert_eq!(errno_of(exchange(&nobody, &note("victim", text), &[])), libc::EPERM);
    }
    assert_eq!(note_of("victim", 0).as_deref(), Some("root's word"));
    // A tag the keeper does not hold: ENOENT; a malformed note: EINVAL, before any lookup.
    assert_eq!(errno_of(exchange(&nobody, &note("nope", "x"), &[])), libc::ENOENT);
    assert_eq!(errno_of(exchange(&nobody, &note("victim", "\x1b[2J"), &[])), libc::EINVAL);
    assert_eq!(errno_of(exchange(&nobody, &note("victim", &"x".repeat(129)), &[])), libc::EINVAL);
    // The rescue uid of root's entry may note it.
    assert!(matches!(exchange(&nobody, &note("rescued", "nobody's word"), &[]), Reply::Ok));
    assert_eq!(note_of("rescued", 0).as_deref(), Some("nobody's word"));
    // Nobody's own entry of the same tag takes nobody's note; root's is untouched.
    let (dev, state) = (open_fuse(), memfd(b"nobody's"));
    let reg = encode_request(&register_request("victim"));
    assert!(matches!(exchange(&nobody, &reg, &[dev.as_fd(), state.as_fd()]), Reply::Ok));
    assert!(matches!(exchange(&nobody, &note("victim", "mine"), &[]), Reply::Ok));
    assert_eq!(note_of("victim", NOBODY).as_deref(), Some("mine"));
    assert_eq!(note_of("victim", 0).as_deref(), Some("root's word"));
    // Nobody lists its own entry's note and the one it rescues, never another's.
    let Reply::ListNotes { entries, .. } =
        exchange(&nobody, &encode_request(&Request::ListNotes { skip: 0 }), &[])
    else {
        panic!("LIST_NOTES");
    };
    let mut seen: Vec<_> = entries.iter().map(|e| (e.tag.as_str(), e.note.as_deref())).collect();
    seen.sort();
    assert_eq!(seen, [("rescued", Some("nobody's word")), ("victim", Some("mine"))]);
    // A flood of the longest notes, accepted and refused: one note per entry is kept.
    let warm = |n: usize| {
        for i in 0..n {
            let text = format!("{i:0128}");
            assert!(matches!(exchange(&nobody, &note("victim", &text), &[]), Reply::Ok));
            let refused = exchange(&nobody, &note("shared-nothing", &text), &[]);
            assert_eq!(errno_of(refused), libc::ENOENT);
            let _ = exchange(&nobody, &note("rescued", &text), &[]);
        }
    };
    warm(500);
    let rss_before = rss_kib(pid);
    warm(10_000);
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 1024,
        "keeper RSS grew from {rss_before} KiB to {rss_after} KiB over 30,000 notes"
    );
    assert_eq!(note_of("victim", NOBODY), Some(format!("{:0128}", 9_999)));
    assert_eq!(note_of("victim", 0).as_deref(), Some("root's word"));
}

#[test]
fn attach_to_a_live_server_by_a_uid_not_entitled_is_refused_and_logged() {
    let keeper = Keeper::start();
    let _root = keeper.registrant("live", &[], open_fuse(), None);
    let _for_1000 =
        keeper.registrant("rescued-by-1000", &["--rescue-uid", "1000"], open_fuse(), None);
    let me = std::process::id();
    let attach = |tag: &str| encode_request(&Request::Attach { tag: tag.into() });
    // Not entitled: EACCES (not EBUSY: a stranger does not learn whether the server is alive).
    let nobody = connect_as(&keeper, NOBODY).unwrap();
    for tag in ["live", "rescued-by-1000"] {
        assert_eq!(errno_of(exchange(&nobody, &attach(tag), &[])), libc::EACCES, "{tag}");
        assert_log(
            &keeper,
            &format!("refused attach of tag {tag} by pid {me} uid {NOBODY} gid {NOBODY}"),
        );
    }
    // Root owns "rescued-by-1000" but is not its rescue uid: refused too, and logged.
    let sock = connect(&keeper);
    assert_eq!(errno_of(exchange(&sock, &attach("rescued-by-1000"), &[])), libc::EACCES);
    assert_log(&keeper, &format!("refused attach of tag rescued-by-1000 by pid {me} uid 0 gid 0"));
    // Entitled, but the server lives: EBUSY.
    assert_eq!(errno_of(exchange(&sock, &attach("live"), &[])), libc::EBUSY);
    let uid_1000 = connect_as(&keeper, 1000).unwrap();
    assert_eq!(errno_of(exchange(&uid_1000, &attach("rescued-by-1000"), &[])), libc::EBUSY);
    // Both still served by their registrants.
    for e in keeper.list() {
        assert_eq!(e.state, ConnState::Serving, "{e:?}");
        assert_ne!(e.server_pid, Some(me), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Silent clients and client limits

#[test]
fn silent_clients_are_closed_after_the_timeout_and_others_are_served_meanwhile() {
    // Long enough that even a loaded machine opens the flood well inside it.
    const TIMEOUT: Duration = Duration::from_secs(5);
    let timeout_ms = TIMEOUT.as_millis().to_string();
    let keeper = Keeper::start_with(&[
        "--first-request-timeout-ms",
        &timeout_ms,
        "--max-clients-per-uid",
        "16",
    ]);
    let baseline = settled_fds(&keeper);
    let started = Instant::now();
    // Root (not bound per uid) opens 300 connections and never speaks.
    let silent: Vec<OwnedFd> = (0..300).map(|_| connect(&keeper)).collect();
    // Nobody opens its 16 and says nothing; the 17th is refused at once.
    let silent_nobody: Vec<OwnedFd> =
        (0..16).map(|_| connect_as(&keeper, NOBODY).unwrap()).collect();
    let extra = connect_as(&keeper, NOBODY).unwrap();
    let (reply, _) = receive(&extra).expect("an EMFILE ERROR");
    assert_eq!(errno_of(reply), libc::EMFILE);
    assert!(receive(&extra).is_none(), "refused client not closed");
    // A garbage-only client is not a speaker either.
    let garbage = connect(&keeper);
    assert_eq!(errno_of(exchange(&garbage, b"junk", &[])), libc::EPROTO);
    // Meanwhile others are served at once, and one that has spoken will be kept.
    let speaker = connect(&keeper);
    list_ok(&speaker);
    assert!(keeper.client().list().unwrap().is_empty());
    // Served while the silent clients still wait for their timeout (not after it).
    assert!(
        silent.iter().chain(&silent_nobody).all(still_open),
        "a speaker was served only once the silent clients had been closed"
    );
    let accepted = wait_until(TIMEOUT.saturating_sub(started.elapsed()), || {
        keeper_fds(&keeper) >= baseline + 2 * (300 + 16 + 2)
    });
    assert!(accepted, "silent clients not accepted: {} fds", keeper_fds(&keeper));
    assert!(started.elapsed() < TIMEOUT, "the flood took longer than the timeout to open");
    // Every silent one reads end of stream once the timeout has passed (not before).
    for sock in silent.iter().chain(&silent_nobody).chain([&garbage]) {
        assert!(receive(sock).is_none(), "a silent client was not closed");
    }
    assert!(started.elapsed() >= TIMEOUT, "silent clients closed before their timeout");
    list_ok(&speaker);
    drop((silent, silent_nobody, garbage));
    assert_fds_back_to(&keeper, baseline + 2, "after the silent clients");
    // Nobody may connect again now.
    list_ok(&connect_as(&keeper, NOBODY).unwrap());
    assert_log(&keeper, "closed a client that sent no request");
}

#[test]
fn clients_past_the_global_bound_are_refused_until_one_leaves() {
    let keeper = Keeper::start_with(&["--max-clients", "8"]);
    // The harness's own connections may still count until the keeper has handled their
    // hangups: retry until 8 new ones are all served.
    let mut socks: Vec<OwnedFd> = Vec::new();
    let all_served = wait_until(PATIENCE, || {
        // The last round's connections are closed before the next round connects.
        socks.clear();
        socks.extend((0..8).map(|_| connect(&keeper)));
        socks.iter().all(|s| try_list(s) == Fate::Served)
    });
    assert!(all_served, "8 clients were never served together");
    let ninth = connect(&keeper);
    let (reply, _) = receive(&ninth).expect("an EMFILE ERROR");
    assert_eq!(errno_of(reply), libc::EMFILE);
    assert!(receive(&ninth).is_none());
    socks.pop();
    assert!(wait_until(PATIENCE, || try_list(&connect(&keeper)) == Fate::Served));
    assert_log(&keeper, "refused a client: too many clients (8 connections)");
}

// ---------------------------------------------------------------------------------------------
// Clients that die mid-exchange

/// True once a thread of `pid` sits in recvmsg (syscall 47 on x86_64) on an fd other than its
/// stdin (where the registrant helper gets its devices): it has sent its request and waits.
fn waits_in_recvmsg(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("syscall")).is_ok_and(|s| {
            let mut words = s.split_whitespace();
            words.next() == Some("47") && words.next().is_some_and(|fd| fd != "0x0")
        })
    })
}

/// The registrant helper (under `wrapper`) connects, sends REGISTER `tag` with `opts` and a dup
/// of `dev`, and waits for the reply that the stopped keeper cannot send; it is killed (and
/// reaped) with its message still queued, then the keeper goes on.
fn register_in_flight_then_die(
    keeper: &Keeper,
    wrapper: &[&str],
    tag: &str,
    opts: &[&str],
    dev: &OwnedFd,
) {
    let stopped = Stopped::new(keeper);
    let mut helper = keeper.registrant_unwaited_under(wrapper, tag, opts, dup(dev), None);
    assert!(
        wait_until(PATIENCE, || waits_in_recvmsg(helper.pid())),
        "helper never sent its REGISTER"
    );
    helper.kill();
    helper.child.wait().unwrap();
    drop(stopped);
}

#[test]
fn registrant_that_dies_with_its_register_in_flight_leaves_an_orphan_to_attach() {
    let keeper = Keeper::start();
    let baseline = settled_fds(&keeper);
    let dev = open_fuse();
    register_in_flight_then_die(&keeper, &[], "in-flight", &[], &dev);
    // The keeper holds it, orphaned, and the rescue uid gets the very device back.
    assert!(keeper.wait_state("in-flight", ConnState::Orphaned, PATIENCE));
    let attached = keeper.client().attach("in-flight").unwrap().expect("held");
    assert!(same_open_file(attached.devices[0].as_fd(), dev.as_fd()).unwrap());
    assert_eq!(read_all(&attached.state), b"state:in-flight");
    keeper.client().unregister("in-flight").unwrap();
    drop(attached);
    assert_fds_back_to(&keeper, baseline, "after the in-flight registration");
}

/// A registrant whose REGISTER the keeper reads after it died cannot have its user namespace
/// read any more (its pid may be another process's by then): the rescue uid it named is not
/// taken verbatim (uid 65534 naming rescue uid 0 made root its rescuer) but is its own uid.
#[test]
fn a_registrant_dead_before_its_register_is_read_rescues_only_itself() {
    let keeper = Keeper::start();
    let dev = open_fuse();
    let as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    register_in_flight_then_die(&keeper, &as_nobody, "gone", &["--rescue-uid", "0"], &dev);
    assert!(keeper.wait_state("gone", ConnState::Orphaned, PATIENCE));
    let entry = keeper.entry("gone").unwrap();
    assert_eq!((entry.owner_uid, entry.rescue_uid), (NOBODY, NOBODY), "{entry:?}");
    assert!(keeper.client().attach("gone").unwrap().is_none(), "root attached nobody's entry");
}

#[test]
fn client_that_dies_between_request_and_reply_changes_nothing() {
    let keeper = Keeper::start();
    let dev = open_fuse();
    let mut server = keeper.registrant("orphan", &[], dup(&dev), None);
    server.kill();
    assert!(keeper.wait_state("orphan", ConnState::Orphaned, PATIENCE));
    let baseline = settled_fds(&keeper);
    {
        let _stopped = Stopped::new(&keeper);
        // ATTACH, then gone before the ATTACHED reply (with its fds) could be sent.
        let sock = connect(&keeper);
        send(&sock, &encode_request(&Request::Attach { tag: "orphan".into() }), &[]);
        drop(sock);
        // Requests with fds in flight, then gone.
        let files: Vec<OwnedFd> = (0..16).map(|_| memfd(b"x")).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
        let sock = connect(&keeper);
        let mut flagged = encode_request(&Request::List { skip: 0 });
        flagged[12] = 16;
        for _ in 0..20 {
            send(&sock, &flagged, &fds);
        }
        drop(sock);
        // A REGISTER of another tag by a socket that is closed before the keeper reads it.
        let sock = connect(&keeper);
        let reg = encode_request(&register_request("closed-early"));
        send(&sock, &reg, &[open_fuse().as_fd(), memfd(b"").as_fd()]);
        drop(sock);
    }
    // The orphan was not handed to the vanished client: still orphaned, still attachable.
    assert!(wait_until(PATIENCE, || keeper.entry("closed-early").is_some()));
    let e = keeper.entry("orphan").unwrap();
    assert_eq!((e.state, e.server_pid), (ConnState::Orphaned, None));
    // The registration from a closed socket of a live process is held like any other; this
    // process is its server and may drop it.
    assert_eq!(keeper.entry("closed-early").unwrap().server_pid, Some(std::process::id()));
    keeper.client().unregister("closed-early").unwrap();
    assert_fds_back_to(&keeper, baseline, "after clients that vanished");
    let attached = keeper.client().attach("orphan").unwrap().expect("still held");
    assert!(same_open_file(attached.devices[0].as_fd(), dev.as_fd()).unwrap());
}

#[test]
fn server_that_dies_after_register_before_add_device_is_held_with_what_it_gave() {
    let keeper = Keeper::start();
    let dev0 = open_fuse();
    // Register, then die before handing over its clone.
    let mut server = keeper.registrant("half", &[], dup(&dev0), None);
    server.kill();
    assert!(keeper.wait_state("half", ConnState::Orphaned, PATIENCE));
    let mut client = keeper.client();
    let attached = client.attach("half").unwrap().expect("held");
    assert_eq!(attached.devices.len(), 1);
    assert!(same_open_file(attached.devices[0].as_fd(), dev0.as_fd()).unwrap());
    // The new server completes the exchange the old one did not.
    client.add_device("half", 1, open_fuse().as_fd()).unwrap();
    client.unregister("half").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Socket permissions

#[test]
fn root_keeper_socket_is_0666_and_any_uid_may_connect() {
    use std::os::unix::fs::PermissionsExt;
    let keeper = Keeper::start();
    let mode = std::fs::metadata(&keeper.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    // Anyone may connect; what they may do is decided per request.
    let nobody = connect_as(&keeper, NOBODY).unwrap();
    assert!(list_ok(&nobody).is_empty());
}

#[test]
fn user_keeper_socket_is_0600_and_other_uids_cannot_connect() {
    use std::os::unix::fs::PermissionsExt;
    let keeper = Keeper::start_as(NOBODY, &[]);
    let mode = std::fs::metadata(&keeper.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(list_ok(&connect_as(&keeper, NOBODY).unwrap()).is_empty());
    let denied = connect_as(&keeper, 1000).map(drop).map_err(|e| e.raw_os_error());
    assert_eq!(denied, Err(Some(rustix::io::Errno::ACCESS.raw_os_error())));
}

// ---------------------------------------------------------------------------------------------
// The soak

/// One hostile attempt of kind `i % 16`; returns the socket if it is to be left open (for the
/// keeper's first-request timeout to close).
fn hostile_attempt(keeper: &Keeper, i: usize, dev: &OwnedFd, state: &OwnedFd) -> Option<OwnedFd> {
    let sock = if i % 16 == 9 || i % 16 == 10 {
        connect_as(keeper, NOBODY).unwrap()
    } else if i % 16 == 8 {
        connect_as(keeper, OTHER).unwrap()
    } else {
        connect(keeper)
    };
    let both = [dev.as_fd(), state.as_fd()];
    let list = encode_request(&Request::List { skip: 0 });
    let attach = encode_request(&Request::Attach { tag: "legit".into() });
    match i % 16 {
        // Garbage, a bad header, an unknown kind.
        0 => assert_eq!(errno_of(exchange(&sock, &i.to_le_bytes(), &[])), libc::EPROTO),
        1 => {
            let mut m = list.clone();
            m[0] ^= 0xff;
            assert_eq!(errno_of(exchange(&sock, &m, &[])), libc::EPROTO);
        }
        2 => assert_eq!(
            errno_of(exchange(&sock, &with_header(0x4242, &[], 0), &[])),
            libc::EOPNOTSUPP
        ),
        // Truncated REGISTER with its fds.
        3 => {
            let reg = encode_request(&register_request("legit"));
            let cut = reg.len() - 1 - i % 20;
            assert_eq!(errno_of(exchange(&sock, &reg[..cut], &both)), libc::EPROTO);
        }
        // Oversized.
        4 => {
            let mut m = with_header(Kind::List as u16, &[], 0);
            m.resize(MAX_MESSAGE + 1 + i % 1000, 0);
            assert_eq!(errno_of(exchange(&sock, &m, &[])), libc::EMSGSIZE);
        }
        // Too many fds, fds on a kind that takes none, wrong fd types.
        5 => {
            let files: Vec<OwnedFd> = (0..17).map(|_| dup(state)).collect();
            let fds: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
            assert_eq!(errno_of(exchange(&sock, &list, &fds)), libc::EBADF);
        }
        6 => {
            let mut m = attach.clone();
            m[12] = 2;
            assert_eq!(errno_of(exchange(&sock, &m, &both)), libc::EBADF);
        }
        7 => {
            let reg = encode_request(&register_request("wrong-fds"));
            assert_eq!(errno_of(exchange(&sock, &reg, &[state.as_fd(), dev.as_fd()])), libc::EBADF);
        }
        // Quota: this keeper allows one tag per uid, and OTHER holds "full".
        8 => {
            let reg = encode_request(&register_request(&format!("extra{i}")));
            assert_eq!(errno_of(exchange(&sock, &reg, &both)), libc::EDQUOT);
        }
        // Another uid: attach, unregister and abort of root's tag; its own register of the
        // same name, then its unregister.
        9 => {
            assert_eq!(errno_of(exchange(&sock, &attach, &[])), libc::EACCES);
            let abort = encode_request(&Request::Abort { target: "legit".into() });
            assert_eq!(errno_of(exchange(&sock, &abort, &[])), libc::EACCES);
        }
        10 => {
            let reg = encode_request(&register_request("legit"));
            assert!(matches!(exchange(&sock, &reg, &both), Reply::Ok));
            let unreg = encode_request(&Request::Unregister { tag: "legit".into() });
            assert!(matches!(exchange(&sock, &unreg, &[]), Reply::Ok));
        }
        // Root, not the live server: busy; unregister by a non-server: EPERM.
        11 => {
            assert_eq!(errno_of(exchange(&sock, &attach, &[])), libc::EBUSY);
            let unreg = encode_request(&Request::Unregister { tag: "legit".into() });
            assert_eq!(errno_of(exchange(&sock, &unreg, &[])), libc::EPERM);
        }
        // Connects and never speaks (closed by its timeout, or by us).
        12 => {}
        // Dies between request and reply.
        13 => send(&sock, &attach, &[]),
        // Dies with fds in flight.
        14 => {
            let mut m = list.clone();
            m[12] = 2;
            send(&sock, &m, &both);
        }
        // A well-behaved request among them.
        _ => assert_eq!(list_ok(&sock).len(), 2),
    }
    // Every eighth silent client is left open for the keeper's timeout to close.
    (i % 128 == 12).then_some(sock)
}

#[test]
fn soak_10000_hostile_attempts_leak_no_fd_and_no_memory() {
    // A silent client is closed a second after it connected: long enough that a loaded
    // machine's attempt that means to speak has spoken by then.
    let keeper =
        Keeper::start_with(&["--max-tags-per-uid", "1", "--first-request-timeout-ms", "1000"]);
    let pid = keeper.proc.pid();
    let legit_dev = open_fuse();
    let server = keeper.registrant("legit", &[], dup(&legit_dev), None);
    let (dev, state) = (open_fuse(), memfd(b"hostile"));
    let full = connect_as(&keeper, OTHER).unwrap();
    let reg = encode_request(&register_request("full"));
    assert!(matches!(exchange(&full, &reg, &[dev.as_fd(), state.as_fd()]), Reply::Ok));
    // Rounds of every kind first, so that the keeper's lazily grown buffers (allocator arenas,
    // hash tables, the log writer) exist before the baseline.
    let kept: Vec<OwnedFd> =
        (0..512).filter_map(|i| hostile_attempt(&keeper, i, &dev, &state)).collect();
    for sock in &kept {
        assert!(receive(sock).is_none(), "a silent client was not closed");
    }
    drop(kept);
    let fds_before = settled_fds(&keeper);
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let kept: Vec<OwnedFd> =
        (0..10_000).filter_map(|i| hostile_attempt(&keeper, i, &dev, &state)).collect();
    let elapsed = started.elapsed();
    // The silent ones left open are closed by the keeper a second after they connected.
    assert!(!kept.is_empty());
    for sock in &kept {
        assert!(receive(sock).is_none(), "a silent client was not closed");
    }
    drop(kept);
    assert_fds_back_to(&keeper, fds_before, "after the soak");
    let rss_after = rss_kib(pid);
    eprintln!(
        "soak: 10000 attempts in {:.1} s; keeper fds {fds_before} -> {}; VmRSS {rss_before} KiB \
         -> {rss_after} KiB",
        elapsed.as_secs_f64(),
        keeper_fds(&keeper)
    );
    // 1 MiB over 10,000 attempts is under 105 bytes each: a leak of anything per attempt (a
    // received message buffer is 64 KiB, a client record with its peer well over 100 bytes)
    // would show far beyond it.
    assert!(
        rss_after < rss_before + 1024,
        "keeper RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Still serving, still holding the registrations made before the soak.
    let mut entries = keeper.list();
    entries.sort_by(|a, b| a.tag.cmp(&b.tag));
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!((entries[0].tag.as_str(), entries[0].owner_uid), ("full", OTHER));
    entries.remove(0);
    assert_eq!(entries[0].tag, "legit");
    assert_eq!(entries[0].server_pid, Some(server.pid()));
    assert_eq!(entries[0].state, ConnState::Serving);
    assert!(keeper.proc.pid() == pid);
}

// ---------------------------------------------------------------------------------------------
// Peers the keeper cannot name

/// A keeper in its own pid namespace sees every client of the host as pid 0 (`SO_PEERCRED`
/// cannot name it): it still serves them, identifies a server by its pidfd, and logs refusals
/// with pid 0.
#[test]
fn peers_outside_the_keepers_pid_namespace_are_served_as_pid_0() {
    let keeper = Keeper::start_wrapped(&["unshare", "--pid", "--fork", "--kill-child", "--"], &[]);
    let (dev, state) = (open_fuse(), memfd(b""));
    let sock = connect(&keeper);
    let reg = encode_request(&register_request("outside"));
    assert!(matches!(exchange(&sock, &reg, &[dev.as_fd(), state.as_fd()]), Reply::Ok));
    let e = keeper.entry("outside").expect("registered");
    assert_eq!((e.state, e.server_pid), (ConnState::Serving, None));
    let nobody = connect_as(&keeper, NOBODY).unwrap();
    let attach = encode_request(&Request::Attach { tag: "outside".into() });
    assert_eq!(errno_of(exchange(&nobody, &attach, &[])), libc::EACCES);
    assert_log(
        &keeper,
        &format!("refused attach of tag outside by pid 0 uid {NOBODY} gid {NOBODY}"),
    );
    // Its server (this process, by pidfd) may unregister it; another connection of ours too.
    let unregister = encode_request(&Request::Unregister { tag: "outside".into() });
    assert!(matches!(exchange(&connect(&keeper), &unregister, &[]), Reply::Ok));
    assert!(list_ok(&sock).is_empty());
}

/// This binary re-run as a helper process (common::run_helper); does nothing when run as a test.
#[test]
#[ignore = "a helper process that other tests start"]
fn keeper_test_helper() {
    common::run_helper();
}
