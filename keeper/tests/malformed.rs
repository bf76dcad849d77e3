//! Garbage on the socket: every malformed message gets an ERROR, its fds are closed, and the
//! keeper keeps serving.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use common::{Keeper, PATIENCE, fd_count, memfd, open_fuse, wait_until};
use fuse_keeper::protocol::{
    self, Header, Kind, MAX_MESSAGE, Reply, Request, decode_reply, encode_request,
};

fn raw_connect(keeper: &Keeper) -> OwnedFd {
    common::connect_raw(&keeper.socket).expect("connect to the keeper")
}

/// Send raw bytes with fds, return the decoded reply.
fn exchange(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Reply {
    protocol::send_message(sock.as_fd(), bytes, fds).unwrap();
    let r = protocol::recv_message(sock.as_fd(), MAX_MESSAGE, 17).unwrap().expect("a reply");
    decode_reply(&r.bytes, r.fds.len()).unwrap()
}

fn errno_of(reply: Reply) -> i32 {
    match reply {
        Reply::Error { errno, .. } => errno,
        other => panic!("expected ERROR, got {other:?}"),
    }
}

fn header(kind: u16, payload_len: u32, fd_count: u16) -> Vec<u8> {
    Header { kind, payload_len, fd_count }.encode().to_vec()
}

fn list_works(sock: &OwnedFd) {
    let reply = exchange(sock, &encode_request(&Request::List { skip: 0 }), &[]);
    assert!(matches!(reply, Reply::List { .. }), "{reply:?}");
}

#[test]
fn garbage_gets_errors_and_the_connection_survives() {
    let keeper = Keeper::start();
    let sock = raw_connect(&keeper);

    let mut bad_magic = encode_request(&Request::List { skip: 0 });
    bad_magic[..4].copy_from_slice(b"NOPE");
    assert_eq!(errno_of(exchange(&sock, &bad_magic, &[])), libc::EPROTO);

    assert_eq!(errno_of(exchange(&sock, b"short", &[])), libc::EPROTO);

    let mut wrong_len = header(Kind::List as u16, 10, 0);
    wrong_len.extend_from_slice(&[0; 4]);
    assert_eq!(errno_of(exchange(&sock, &wrong_len, &[])), libc::EPROTO);

    let mut bad_version = encode_request(&Request::List { skip: 0 });
    bad_version[4] = 9;
    assert_eq!(errno_of(exchange(&sock, &bad_version, &[])), libc::EPROTO);

    let unknown = header(0x1234, 0, 0);
    assert_eq!(errno_of(exchange(&sock, &unknown, &[])), libc::EOPNOTSUPP);

    let reply_kind = header(Kind::Ok as u16, 0, 0);
    assert_eq!(errno_of(exchange(&sock, &reply_kind, &[])), libc::EOPNOTSUPP);

    // A field cut short, and trailing bytes.
    let mut cut = header(Kind::Attach as u16, 6, 0);
    cut.extend_from_slice(&[100, 0, 0, 0, b'a', b'b']);
    assert_eq!(errno_of(exchange(&sock, &cut, &[])), libc::EPROTO);

    // Larger than 64 KiB.
    let mut huge = header(Kind::List as u16, 70_000, 0);
    huge.resize(16 + 70_000, 0);
    assert_eq!(errno_of(exchange(&sock, &huge, &[])), libc::EMSGSIZE);

    list_works(&sock);
}

#[test]
fn fds_of_refused_messages_are_closed() {
    let keeper = Keeper::start();
    let sock = raw_connect(&keeper);
    list_works(&sock);
    let before = keeper.settled_fds();
    let files: Vec<OwnedFd> = (0..17).map(|_| memfd(b"x")).collect();
    let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();

    // 17 fds: more than a request may carry (MSG_CTRUNC).
    let mut reg = encode_request(&Request::Attach { tag: "t".into() });
    reg[12] = 17;
    assert_eq!(errno_of(exchange(&sock, &reg, &borrowed)), libc::EBADF);

    // Header says 0 fds, 2 sent.
    let list = encode_request(&Request::List { skip: 0 });
    assert_eq!(errno_of(exchange(&sock, &list, &borrowed[..2])), libc::EBADF);

    // Unknown kind with fds.
    let mut unknown = header(77, 0, 3);
    unknown.truncate(16);
    assert_eq!(errno_of(exchange(&sock, &unknown, &borrowed[..3])), libc::EOPNOTSUPP);

    // REGISTER whose device is not /dev/fuse.
    let reg = encode_request(&Request::Register(protocol::Register {
        tag: "t".into(),
        rescue_uid: 0,
        mountpoint: "/x".into(),
        conn_id: 0,
        recovery_timeout_ms: 0,
        negotiation: Vec::new(),
        flags: 0,
    }));
    assert_eq!(errno_of(exchange(&sock, &reg, &borrowed[..2])), libc::EBADF);
    let dev = open_fuse();
    assert_eq!(errno_of(exchange(&sock, &reg, &[borrowed[0], dev.as_fd()])), libc::EBADF);

    assert!(
        wait_until(PATIENCE, || fd_count(keeper.proc.pid()) == before),
        "keeper leaked fds: {} before, {} after",
        before,
        fd_count(keeper.proc.pid())
    );
    list_works(&sock);
}

#[test]
fn keeper_survives_clients_that_vanish() {
    let keeper = Keeper::start();
    for _ in 0..20 {
        let sock = raw_connect(&keeper);
        // Half a request, then hang up; or an empty message (read as end of stream).
        protocol::send_message(sock.as_fd(), &header(Kind::List as u16, 4, 0), &[]).unwrap();
        drop(sock);
        let sock = raw_connect(&keeper);
        protocol::send_message(sock.as_fd(), &[], &[]).unwrap();
    }
    // Requests sent without reading the replies, then gone.
    let sock = raw_connect(&keeper);
    for _ in 0..200 {
        let list = encode_request(&Request::List { skip: 0 });
        if protocol::send_message(sock.as_fd(), &list, &[]).is_err() {
            break;
        }
    }
    drop(sock);
    let sock = raw_connect(&keeper);
    list_works(&sock);
    assert!(keeper.proc.child.id() > 0 && keeper.client().list().is_ok());
}
