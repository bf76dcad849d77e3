//! Encode/decode round trips, and malformed input of every shape is an error, never a panic.

use std::path::PathBuf;

use super::*;

fn requests() -> Vec<Request> {
    vec![
        Request::Register(Register {
            tag: "web-cache".into(),
            rescue_uid: 1000,
            mountpoint: PathBuf::from("/mnt/a b"),
            conn_id: 57,
            recovery_timeout_ms: 30_000,
            negotiation: (0..=255).collect(),
            flags: REGISTER_FAIL_ON_TIMEOUT,
        }),
        Request::Register(Register {
            tag: "t".into(),
            rescue_uid: 0,
            mountpoint: PathBuf::from("/"),
            conn_id: 0,
            recovery_timeout_ms: 0,
            negotiation: Vec::new(),
            flags: 0,
        }),
        Request::AddDevice { tag: "web-cache".into(), index: 15 },
        Request::Attach { tag: "ünïcode".into() },
        Request::Unregister { tag: "x".into() },
        Request::List { skip: 3 },
        Request::ListStats { skip: 4 },
        Request::Metrics,
        Request::Abort { target: "/mnt/x".into() },
        Request::Umount { target: "tag".into() },
        Request::StandIn(StandIn {
            tag: "web-cache".into(),
            attr: vec![7; ATTR_OUT_LEN],
            statfs: vec![9; STATFS_OUT_LEN],
            xattrs: Some(vec![(b"system.posix_acl_access".to_vec(), vec![2; 28])]),
        }),
        Request::StandIn(StandIn {
            tag: "t".into(),
            xattrs: Some(Vec::new()),
            ..StandIn::default()
        }),
        Request::StandIn(StandIn { tag: "t".into(), ..StandIn::default() }),
        Request::Hold { tag: "t".into(), key: u64::MAX },
        Request::Release { tag: "t".into(), key: 3 },
        Request::Held { tag: "t".into(), after: 9 },
        Request::Standby { tag: "web-cache".into() },
        Request::ListFull { skip: 2 },
        Request::Note { tag: "web-cache".into(), note: "wrapped: sshfs, 3 restarts".into() },
        Request::Note { tag: "t".into(), note: String::new() },
        Request::Note { tag: "t".into(), note: "é".repeat(MAX_NOTE / 2) },
        Request::ListNotes { skip: 1 },
        Request::Liveness { tag: "web-cache".into() },
        Request::Died { tag: "web-cache".into(), server_pid: 4242 },
    ]
}

#[test]
fn a_note_too_long_or_with_control_or_invisible_characters_is_refused() {
    let bad = [
        "x".repeat(MAX_NOTE + 1),
        // One byte too many, counted in bytes, not characters.
        format!("{}e", "é".repeat(MAX_NOTE / 2)),
        "two\nlines".into(),
        "\x1b[2Jclear".into(),
        "bell\x07".into(),
        "nul\0".into(),
        "del\x7f".into(),
        "c1 \u{9b}".into(),
        "bidi \u{202e}txt".into(),
        "zero\u{200b}width".into(),
    ];
    for note in bad {
        assert_eq!(validate_note(&note).map_err(|e| e.errno()), Err(libc::EINVAL), "{note:?}");
        let msg = encode_request(&Request::Note { tag: "t".into(), note: note.clone() });
        let err = decode_request(&msg, 0).expect_err(&note);
        assert_eq!(err.errno(), libc::EINVAL, "{note:?}: {err}");
    }
    // Not UTF-8.
    let mut msg = encode_request(&Request::Note { tag: "t".into(), note: "ab".into() });
    let last = msg.len() - 1;
    msg[last] = 0xff;
    assert_eq!(decode_request(&msg, 0).map_err(|e| e.errno()), Err(libc::EINVAL));
    // A NOTE with fds is refused.
    let msg = encode_request(&Request::Note { tag: "t".into(), note: "ok".into() });
    assert!(decode_request(&msg, 1).is_err());
    assert_eq!(validate_note("wrapped: sshfs, 3 restarts · ünïcode"), Ok(()));
}

#[test]
fn a_stand_in_with_wrong_sizes_or_bad_names_is_refused() {
    let good = StandIn { tag: "t".into(), ..StandIn::default() };
    let bad = [
        StandIn { attr: vec![0; ATTR_OUT_LEN - 1], ..good.clone() },
        StandIn { statfs: vec![0; STATFS_OUT_LEN + 1], ..good.clone() },
        StandIn { xattrs: Some(vec![(Vec::new(), vec![1])]), ..good.clone() },
        StandIn { xattrs: Some(vec![(b"a\0b".to_vec(), vec![1])]), ..good.clone() },
        StandIn { xattrs: Some(vec![(vec![b'n'; 300], vec![1])]), ..good.clone() },
    ];
    for s in bad {
        let msg = encode_request(&Request::StandIn(s.clone()));
        assert!(decode_request(&msg, 0).is_err(), "{s:?}");
    }
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Ok,
        Reply::Error { errno: libc::EACCES, message: "no".into() },
        Reply::Attached {
            mountpoint: PathBuf::from("/mnt/x"),
            conn_id: 42,
            negotiation: vec![1, 2, 3],
            device_count: 16,
            owner_uid: 65534,
        },
        Reply::List { total: 0, entries: Vec::new() },
        Reply::Held { keys: vec![1, 2, 3], more: true },
        Reply::Held { keys: Vec::new(), more: false },
        Reply::Watch { server_pid: 4242 },
        Reply::List {
            total: 5,
            entries: vec![
                ListEntry {
                    tag: "a".into(),
                    owner_uid: 1,
                    rescue_uid: 2,
                    mountpoint: PathBuf::from("/m"),
                    conn_id: 3,
                    state: ConnState::Orphaned,
                    server_pid: 0,
                    waiting: u32::MAX,
                    orphaned_ms: 1234,
                    stats: None,
                    standby_pid: None,
                    note: None,
                },
                ListEntry {
                    tag: "b".into(),
                    owner_uid: 0,
                    rescue_uid: 0,
                    mountpoint: PathBuf::from("/n"),
                    conn_id: 4,
                    state: ConnState::Serving,
                    server_pid: 99,
                    waiting: 7,
                    orphaned_ms: 0,
                    stats: None,
                    standby_pid: None,
                    note: None,
                },
            ],
        },
        Reply::ListStats {
            total: 2,
            entries: vec![ListEntry {
                tag: "c".into(),
                owner_uid: 0,
                rescue_uid: 0,
                mountpoint: PathBuf::from("/o"),
                conn_id: 5,
                state: ConnState::Serving,
                server_pid: 98,
                waiting: 0,
                orphaned_ms: 0,
                stats: Some(EntryStats {
                    recoveries: 3,
                    handovers: 1,
                    last_recovery_us: Some(1500),
                }),
                standby_pid: None,
                note: None,
            }],
        },
        Reply::ListFull {
            total: 2,
            entries: vec![ListEntry {
                tag: "d".into(),
                owner_uid: 0,
                rescue_uid: 0,
                mountpoint: PathBuf::from("/p"),
                conn_id: 6,
                state: ConnState::Serving,
                server_pid: 98,
                waiting: 0,
                orphaned_ms: 0,
                stats: Some(EntryStats::default()),
                standby_pid: Some(4343),
                note: None,
            }],
        },
        Reply::ListNotes {
            total: 2,
            entries: vec![
                ListEntry {
                    tag: "e".into(),
                    owner_uid: 0,
                    rescue_uid: 0,
                    mountpoint: PathBuf::from("/q"),
                    conn_id: 7,
                    state: ConnState::Serving,
                    server_pid: 98,
                    waiting: 0,
                    orphaned_ms: 0,
                    stats: Some(EntryStats::default()),
                    standby_pid: Some(0),
                    note: Some("wrapped: sshfs, 3 restarts".into()),
                },
                ListEntry {
                    tag: "f".into(),
                    owner_uid: 0,
                    rescue_uid: 0,
                    mountpoint: PathBuf::from("/r"),
                    conn_id: 8,
                    state: ConnState::Orphaned,
                    server_pid: 0,
                    waiting: 0,
                    orphaned_ms: 5,
                    stats: Some(EntryStats::default()),
                    standby_pid: Some(0),
                    note: Some(String::new()),
                },
            ],
        },
        Reply::ListStats { total: 0, entries: Vec::new() },
        Reply::Metrics { text: "# TYPE x counter\nx_total 1\n".into() },
    ]
}

#[test]
fn requests_round_trip() {
    for req in requests() {
        let msg = encode_request(&req);
        assert_eq!(&msg[..4], b"FKKR");
        assert_eq!(decode_request(&msg, req.fd_count()), Ok(req.clone()), "{req:?}");
    }
}

#[test]
fn replies_round_trip() {
    for reply in replies() {
        let (msg, fds) = encode_reply(&reply);
        assert_eq!(decode_reply(&msg, fds), Ok(reply.clone()), "{reply:?}");
    }
}

#[test]
fn header_layout() {
    let msg = encode_request(&Request::List { skip: 0x0102_0304 });
    assert_eq!(
        msg,
        [
            0x46, 0x4B, 0x4B, 0x52, // magic "FKKR"
            1, 0, // version
            5, 0, // kind LIST
            4, 0, 0, 0, // payload_len
            0, 0, // fd_count
            0, 0, // reserved
            4, 3, 2, 1, // skip
        ]
    );
}

#[test]
fn every_prefix_is_an_error() {
    let mut messages: Vec<(Vec<u8>, usize, bool)> =
        requests().iter().map(|r| (encode_request(r), r.fd_count(), true)).collect();
    messages.extend(replies().iter().map(|r| {
        let (m, fds) = encode_reply(r);
        (m, fds, false)
    }));
    for (msg, fds, is_request) in messages {
        let decode = |bytes: &[u8]| {
            if is_request {
                decode_request(bytes, fds).map(drop)
            } else {
                decode_reply(bytes, fds).map(drop)
            }
        };
        for len in 0..msg.len() {
            // As received: the header disagrees with the length.
            assert!(decode(&msg[..len]).is_err(), "prefix {len} of {msg:?}");
            // With a header rewritten to agree: the fields themselves must be cut short.
            if len >= HEADER_LEN {
                let mut cut = msg[..len].to_vec();
                cut[8..12].copy_from_slice(&((len - HEADER_LEN) as u32).to_le_bytes());
                assert!(decode(&cut).is_err(), "consistent prefix {len} of {msg:?}");
            }
        }
        // Every single-byte corruption decodes or fails, and never panics.
        for i in 0..msg.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut bad = msg.clone();
                bad[i] = v;
                let _ = decode(&bad);
            }
        }
        assert!(decode(&msg).is_ok());
    }
}

fn with_header(kind: u16, payload: &[u8], fd_count: u16) -> Vec<u8> {
    let mut m = Header { kind, payload_len: payload.len() as u32, fd_count }.encode().to_vec();
    m.extend_from_slice(payload);
    m
}

#[test]
fn header_errors() {
    let good = encode_request(&Request::Attach { tag: "t".into() });
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(decode_request(&bad_magic, 0), Err(ProtocolError::BadMagic(_))));
    let mut bad_version = good.clone();
    bad_version[4] = 2;
    assert_eq!(decode_request(&bad_version, 0), Err(ProtocolError::BadVersion(2)));
    let mut reserved = good.clone();
    reserved[15] = 1;
    assert!(matches!(decode_request(&reserved, 0), Err(ProtocolError::Reserved(_))));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(decode_request(&long, 0), Err(ProtocolError::PayloadLength { .. })));
    assert!(matches!(decode_request(&good, 1), Err(ProtocolError::FdCount { .. })));
    for len in 0..HEADER_LEN {
        assert_eq!(decode_request(&good[..len], 0), Err(ProtocolError::ShortHeader(len)));
    }
    let too_many = with_header(Kind::Register as u16, &[], 18);
    assert!(matches!(decode_request(&too_many, 18), Err(ProtocolError::TooManyFds { .. })));
    let huge = with_header(Kind::List as u16, &vec![0; MAX_PAYLOAD + 1], 0);
    assert_eq!(decode_request(&huge, 0), Err(ProtocolError::TooLarge));
}

#[test]
fn kind_errors() {
    assert_eq!(decode_request(&with_header(99, &[], 0), 0), Err(ProtocolError::UnknownKind(99)));
    assert_eq!(
        decode_request(&with_header(Kind::Ok as u16, &[], 0), 0),
        Err(ProtocolError::UnexpectedKind(0x8000))
    );
    assert_eq!(
        decode_reply(&with_header(Kind::List as u16, &[0; 4], 0), 0),
        Err(ProtocolError::UnexpectedKind(5))
    );
    // REGISTER with the header agreeing on one fd: still the wrong count for the kind.
    let mut reg = encode_request(&requests()[0]);
    reg[12] = 1;
    assert!(matches!(decode_request(&reg, 1), Err(ProtocolError::FdCount { .. })));
    // Trailing bytes after the last field.
    let mut w = Writer::new();
    w.bytes(b"tag").u32(0);
    let msg = with_header(Kind::Attach as u16, &w.into_bytes(), 0);
    assert_eq!(decode_request(&msg, 0), Err(ProtocolError::Trailing(4)));
}

#[test]
fn field_bounds() {
    let long_tag = "x".repeat(MAX_TAG + 1);
    let msg = encode_request(&Request::Attach { tag: long_tag });
    assert!(matches!(decode_request(&msg, 0), Err(ProtocolError::TooLong { .. })));
    for tag in ["", "/abs", "a\nb"] {
        let msg = encode_request(&Request::Attach { tag: tag.into() });
        assert!(matches!(decode_request(&msg, 0), Err(ProtocolError::Invalid { .. })), "{tag:?}");
    }
    let mut reg = match requests().remove(0) {
        Request::Register(r) => r,
        _ => unreachable!(),
    };
    reg.negotiation = vec![0; MAX_NEGOTIATION + 1];
    let msg = encode_request(&Request::Register(reg.clone()));
    assert!(matches!(decode_request(&msg, 2), Err(ProtocolError::TooLong { .. })));
    reg.negotiation.clear();
    reg.mountpoint = PathBuf::from("relative");
    let msg = encode_request(&Request::Register(reg));
    assert!(matches!(decode_request(&msg, 2), Err(ProtocolError::Invalid { .. })));
    let msg = encode_request(&Request::AddDevice { tag: "t".into(), index: 16 });
    assert!(matches!(decode_request(&msg, 1), Err(ProtocolError::Invalid { .. })));
    // A blob length beyond the payload.
    let mut w = Writer::new();
    w.u32(200).u32(0);
    let msg = with_header(Kind::Attach as u16, &w.into_bytes(), 0);
    assert_eq!(decode_request(&msg, 0), Err(ProtocolError::Truncated("tag")));
}

#[test]
fn error_message_is_cut_on_a_char_boundary() {
    let message = "é".repeat(MAX_ERROR_MESSAGE);
    let (msg, fds) = encode_reply(&Reply::Error { errno: 1, message });
    match decode_reply(&msg, fds) {
        Ok(Reply::Error { message, .. }) => {
            assert!(message.len() <= MAX_ERROR_MESSAGE && message.chars().all(|c| c == 'é'))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn attached_fd_count_must_match() {
    let (msg, fds) = encode_reply(&replies()[2]);
    assert_eq!(fds, 17);
    let mut fewer = msg.clone();
    fewer[12] = 16;
    assert!(matches!(decode_reply(&fewer, 16), Err(ProtocolError::FdCount { .. })));
}
