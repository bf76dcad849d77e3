//! Writes the seed corpus of `decode_message`: at least one valid message of every kind
//! (requests and replies), each prefixed by its fd count, into the directory given as the only
//! argument. `cargo run --release --bin seed_corpus -- corpus/decode_message`
//!
//! The kinds are taken from the decoder (`Kind::from_u16` over every u16), and `seeds` matches
//! on `Kind` without a wildcard, so a new kind does not compile until it has a seed. Every seed
//! is checked to decode as its kind and to re-encode to the same bytes before it is written.
//!
//! `seed_corpus store DIR` writes the seed of `store_open` instead, and
//! `seed_corpus decode_request DIR` those of `decode_request` (see `requests`).

use std::path::PathBuf;

use fuse_keeper_client::ConnState;
use fuse_keeper_client::protocol::{
    ATTR_OUT_LEN, EntryStats, Header, Kind, ListEntry, REGISTER_FAIL_ON_TIMEOUT, Register, Reply, Request,
    STATFS_OUT_LEN, StandIn, decode_reply, decode_request, encode_reply, encode_request,
};

/// A seed: its file-name suffix and the message.
enum Seed {
    Request(&'static str, Request),
    Reply(&'static str, Reply),
}

fn register(flags: u32) -> Request {
    Request::Register(Register {
        tag: "web".into(),
        rescue_uid: 1000,
        mountpoint: "/mnt/web".into(),
        conn_id: 57,
        recovery_timeout_ms: 30_000,
        negotiation: vec![7; 24],
        flags,
    })
}

fn entry(tag: &str, state: ConnState, server_pid: u32, orphaned_ms: u64) -> ListEntry {
    ListEntry {
        tag: tag.into(),
        owner_uid: 0,
        rescue_uid: 1000,
        mountpoint: format!("/mnt/{tag}").into(),
        conn_id: 57,
        state,
        server_pid,
        waiting: 3,
        orphaned_ms,
        stats: None,
        standby_pid: None,
        note: None,
    }
}

/// The seeds of one kind.
fn seeds(kind: Kind) -> Vec<Seed> {
    match kind {
        Kind::Register => vec![
            Seed::Request("flags-0", register(0)),
            Seed::Request("fail-on-timeout", register(REGISTER_FAIL_ON_TIMEOUT)),
        ],
        Kind::AddDevice => {
            vec![Seed::Request("", Request::AddDevice { tag: "web".into(), index: 3 })]
        }
        Kind::Attach => vec![Seed::Request("", Request::Attach { tag: "web".into() })],
        Kind::Unregister => vec![Seed::Request("", Request::Unregister { tag: "web".into() })],
        Kind::List => vec![Seed::Request("", Request::List { skip: 2 })],
        Kind::Abort => vec![Seed::Request("", Request::Abort { target: "/mnt/web".into() })],
        Kind::Umount => vec![Seed::Request("", Request::Umount { target: "web".into() })],
        Kind::Handover => vec![Seed::Request("", Request::Handover { tag: "web".into() })],
        Kind::HandoverDone => vec![
            Seed::Request("agreed", Request::HandoverDone { tag: "web".into(), errno: 0 }),
            Seed::Request("refused", Request::HandoverDone { tag: "web".into(), errno: 16 }),
        ],
        Kind::StandIn => vec![
            Seed::Request(
                "full",
                Request::StandIn(StandIn {
                    tag: "web".into(),
                    attr: vec![1; ATTR_OUT_LEN],
                    statfs: vec![2; STATFS_OUT_LEN],
                    xattrs: Some(vec![(b"security.selinux".to_vec(), b"system_u".to_vec())]),
                }),
            ),
            Seed::Request(
                "empty",
                Request::StandIn(StandIn { tag: "web".into(), ..StandIn::default() }),
            ),
        ],
        Kind::Ok => vec![Seed::Reply("", Reply::Ok)],
        Kind::Error => {
            vec![Seed::Reply("", Reply::Error { errno: 13, message: "refused".into() })]
        }
        Kind::Attached => vec![Seed::Reply(
            "",
            Reply::Attached {
                mountpoint: "/mnt/web".into(),
                conn_id: 57,
                negotiation: vec![7; 24],
                device_count: 2,
                owner_uid: 1000,
            },
        )],
        Kind::ListReply => vec![Seed::Reply(
            "",
            Reply::List {
                total: 5,
                entries: vec![
                    entry("a", ConnState::Serving, 4242, 0),
                    entry("o", ConnState::Orphaned, 0, 1500),
                    entry("h", ConnState::Attaching, 4242, 0),
                    entry("f", ConnState::Failing, 0, 90_000),
                ],
            },
        )],
        Kind::HandoverAsk => {
            vec![Seed::Reply("", Reply::HandoverAsk { tag: "web".into(), pid: 4243, uid: 1000 })]
        }
        Kind::Hold => vec![Seed::Request("", Request::Hold { tag: "web".into(), key: 17 })],
        Kind::Release => vec![Seed::Request("", Request::Release { tag: "web".into(), key: 17 })],
        Kind::Held => vec![Seed::Request("", Request::Held { tag: "web".into(), after: 0 })],
        Kind::ListStats => vec![Seed::Request("", Request::ListStats { skip: 1 })],
        Kind::Metrics => vec![Seed::Request("", Request::Metrics)],
        Kind::Standby => vec![Seed::Request("", Request::Standby { tag: "web".into() })],
        Kind::ListFull => vec![Seed::Request("", Request::ListFull { skip: 0 })],
        Kind::Note => vec![
            Seed::Request(
                "",
                Request::Note { tag: "web".into(), note: "wrapped: sshfs, 3 restarts".into() },
            ),
            Seed::Request("clear", Request::Note { tag: "web".into(), note: String::new() }),
        ],
        Kind::ListNotes => vec![Seed::Request("", Request::ListNotes { skip: 0 })],
        Kind::Liveness => vec![Seed::Request("", Request::Liveness { tag: "web".into() })],
        Kind::Died => {
            vec![Seed::Request("", Request::Died { tag: "web".into(), server_pid: 4242 })]
        }
        Kind::Watch => vec![Seed::Reply("", Reply::Watch { server_pid: 4242 })],
        Kind::ListNotesReply => vec![Seed::Reply(
            "",
            Reply::ListNotes {
                total: 2,
                entries: vec![
                    ListEntry {
                        stats: Some(EntryStats::default()),
                        standby_pid: Some(0),
                        note: Some("wrapped: sshfs, 3 restarts".into()),
                        ..entry("a", ConnState::Serving, 4242, 0)
                    },
                    ListEntry {
                        stats: Some(EntryStats::default()),
                        standby_pid: Some(4343),
                        note: Some(String::new()),
                        ..entry("o", ConnState::Orphaned, 0, 1500)
                    },
                ],
            },
        )],
        Kind::ListFullReply => vec![Seed::Reply(
            "",
            Reply::ListFull {
                total: 1,
                entries: vec![ListEntry {
                    stats: Some(EntryStats::default()),
                    standby_pid: Some(4343),
                    ..entry("a", ConnState::Serving, 4242, 0)
                }],
            },
        )],
        Kind::ListStatsReply => vec![Seed::Reply(
            "",
            Reply::ListStats {
                total: 2,
                entries: vec![
                    ListEntry {
                        stats: Some(EntryStats {
                            recoveries: 3,
                            handovers: 1,
                            last_recovery_us: Some(2_500),
                        }),
                        ..entry("a", ConnState::Serving, 4242, 0)
                    },
                    ListEntry {
                        stats: Some(EntryStats::default()),
                        ..entry("o", ConnState::Orphaned, 0, 1500)
                    },
                ],
            },
        )],
        Kind::MetricsReply => vec![Seed::Reply(
            "",
            Reply::Metrics {
                text: "# HELP fuse_keeper_recoveries_total Recoveries.\n\
                       # TYPE fuse_keeper_recoveries_total counter\n\
                       fuse_keeper_recoveries_total 3\n"
                    .into(),
            },
        )],
        Kind::HeldReply => vec![
            Seed::Reply("two", Reply::Held { keys: vec![17, 40], more: true }),
            Seed::Reply("none", Reply::Held { keys: Vec::new(), more: false }),
        ],
    }
}

/// The file name and contents (fd count, then the message) of `seed`, after checking that it
/// decodes as `kind` and re-encodes to the same bytes.
fn file(kind: Kind, seed: &Seed) -> (String, Vec<u8>) {
    let (direction, suffix, fds, msg) = match seed {
        Seed::Request(suffix, req) => {
            let msg = encode_request(req);
            let fds = req.fd_count();
            assert_eq!(decode_request(&msg, fds).as_ref(), Ok(req), "{kind:?} seed");
            ("request", suffix, fds, msg)
        }
        Seed::Reply(suffix, reply) => {
            let (msg, fds) = encode_reply(reply);
            assert_eq!(decode_reply(&msg, fds).as_ref(), Ok(reply), "{kind:?} seed");
            ("reply", suffix, fds, msg)
        }
    };
    let (header, _) = Header::decode(&msg, fds).expect("a seed's header decodes");
    assert_eq!(header.kind, kind as u16, "seed of {kind:?} has another kind");
    let mut bytes = vec![u8::try_from(fds).expect("at most 17 fds")];
    bytes.extend(msg);
    let name = if suffix.is_empty() {
        format!("seed-{direction}-{kind:?}")
    } else {
        format!("seed-{direction}-{kind:?}-{suffix}")
    };
    (name, bytes)
}

/// `seed_corpus store DIR`: the seed of the `store_open` target, a store of its layout with a
/// saved negotiation and a record in every table.
fn store_seed(dir: &std::path::Path) {
    use fuse_recovery::store::Store;
    use fuse_recovery::store::untrusted::SPECS;
    std::fs::create_dir_all(dir).expect("create the corpus directory");
    let store = Store::create("seed", &SPECS).expect("a store");
    store.set_negotiation(&[7; 144]).expect("a negotiation");
    for (i, spec) in SPECS.iter().enumerate() {
        let words = [3u64, 1, 2, 5, 8];
        store.table(i).0.insert(&words[..spec.words as usize], b"seed record").expect("insert");
    }
    let size = rustix::fs::fstat(store.fd()).expect("fstat").st_size as usize;
    let mut bytes = vec![0u8; size];
    rustix::io::pread(store.fd(), &mut bytes, 0).expect("read the store");
    // Trailing zeros are what a fresh store holds anyway.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    std::fs::write(dir.join("seed-store"), &bytes[..end]).expect("write the seed");
    println!("store seed of {end} bytes in {}", dir.display());
}

/// `seed_corpus decode_request DIR`: the seeds of the `decode_request` target, a valid request
/// of every opcode `fuse_proto::decode` knows, each prefixed by the negotiation byte (bit 0:
/// `setxattr_ext`). Some opcodes have more than one: SETXATTR without and with
/// FUSE_SETXATTR_EXT, INIT as kernels before 7.36 send it (16 bytes) and since (64), CREATE
/// with request extensions (a security context and supplementary groups) after its arguments,
/// BATCH_FORGET with three entries and with none. The opcodes are `fuse_opcode::ALL`, and
/// `seeds` matches on `fuse_opcode` without a wildcard, so a new opcode does not compile until
/// it has a seed; the three the decoder rejects (CUSE_INIT and the byte-swap detectors) get a
/// request each that must decode as `UnknownOpcode`. Every seed is decoded before it is
/// written.
mod requests {
    use std::path::Path;

    use fuse_abi::*;
    use fuse_proto::{DecodeError, Negotiated, decode};
    use zerocopy::IntoBytes;

    /// One seed request.
    struct Seed {
        /// The file name's suffix, after the opcode's name.
        suffix: &'static str,
        /// The negotiation it is decoded under.
        setxattr_ext: bool,
        nodeid: u64,
        /// What follows the header: the argument structs, names and data.
        args: Vec<u8>,
        /// Request extensions after the arguments (`total_extlen` counts them).
        ext: Vec<u8>,
        /// False for the opcodes `decode` rejects.
        decodes: bool,
    }

    fn seed(nodeid: u64, args: &[&[u8]]) -> Seed {
        Seed {
            suffix: "",
            setxattr_ext: false,
            nodeid,
            args: args.concat(),
            ext: Vec::new(),
            decodes: true,
        }
    }

    impl Seed {
        fn suffix(self, suffix: &'static str) -> Seed {
            Seed { suffix, ..self }
        }
    }

    /// `bytes` padded with zeros to a multiple of 8 (`FUSE_REC_ALIGN`), as extensions are.
    fn pad8(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.resize(bytes.len().next_multiple_of(8), 0);
        bytes
    }

    /// The extensions of a CREATE from a kernel that agreed FUSE_SECURITY_CTX and
    /// FUSE_CREATE_SUPP_GROUP: one security context, then one supplementary group.
    fn create_extensions() -> Vec<u8> {
        let (name, value) = (b"security.selinux\0", b"unconfined_u:object_r:user_tmp_t:s0\0");
        let ctx = fuse_secctx { size: value.len() as u32, padding: 0 };
        let body = [ctx.as_bytes(), name, value].concat();
        let size = (size_of::<fuse_secctx_header>() + body.len()).next_multiple_of(8) as u32;
        let header = fuse_secctx_header { size, nr_secctx: 1 };
        let mut ext = pad8([header.as_bytes(), &body].concat());
        let groups =
            pad8([fuse_supp_groups { nr_groups: 1 }.as_bytes(), 100u32.as_bytes()].concat());
        let header = fuse_ext_header {
            size: (size_of::<fuse_ext_header>() + groups.len()) as u32,
            r#type: fuse_ext_type::FUSE_EXT_GROUPS as u32,
        };
        ext.extend([header.as_bytes(), &groups].concat());
        ext
    }

    fn init(minor: u32, flags: u64) -> fuse_init_in {
        fuse_init_in {
            major: FUSE_KERNEL_VERSION,
            minor,
            max_readahead: 128 * 1024,
            flags: flags as u32,
            flags2: (flags >> 32) as u32,
            unused: [0; 11],
        }
    }

    fn lock(lk_flags: u32) -> fuse_lk_in {
        let lk = fuse_file_lock { start: 0, end: 4095, r#type: 1 /* F_WRLCK */, pid: 4242 };
        fuse_lk_in { fh: 7, owner: 99, lk, lk_flags, padding: 0 }
    }

    fn copy_file_range() -> fuse_copy_file_range_in {
        fuse_copy_file_range_in {
            fh_in: 7,
            off_in: 0,
            nodeid_out: 6,
            fh_out: 9,
            off_out: 4096,
            len: 65536,
            flags: 0,
        }
    }

    /// The seeds of one opcode.
    fn seeds(op: fuse_opcode) -> Vec<Seed> {
        use fuse_opcode::*;
        let read = fuse_read_in {
            fh: 7,
            offset: 8192,
            size: 4096,
            lock_owner: 99,
            flags: 2,
            ..Default::default()
        };
        let readdir = fuse_read_in { fh: 8, size: 4096, flags: 0o200000, ..Default::default() };
        let create = fuse_create_in { flags: 0o101, mode: 0o100644, umask: 0o022, open_flags: 0 };
        match op {
            FUSE_LOOKUP => vec![seed(1, &[b"hello.txt\0"])],
            FUSE_FORGET => vec![seed(5, &[fuse_forget_in { nlookup: 3 }.as_bytes()])],
            FUSE_GETATTR => {
                let arg = fuse_getattr_in { getattr_flags: FUSE_GETATTR_FH, dummy: 0, fh: 7 };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_SETATTR => {
                let arg = fuse_setattr_in {
                    valid: FATTR_MODE | FATTR_SIZE | FATTR_FH,
                    fh: 7,
                    size: 4096,
                    mode: 0o100600,
                    ..Default::default()
                };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_READLINK => vec![seed(6, &[])],
            FUSE_SYMLINK => vec![seed(1, &[b"link\0", b"hello.txt\0"])],
            FUSE_MKNOD => {
                let arg = fuse_mknod_in { mode: 0o010644, rdev: 0, umask: 0o022, padding: 0 };
                vec![seed(1, &[arg.as_bytes(), b"fifo\0"])]
            }
            FUSE_MKDIR => {
                vec![seed(1, &[fuse_mkdir_in { mode: 0o755, umask: 0o022 }.as_bytes(), b"dir\0"])]
            }
            FUSE_UNLINK => vec![seed(1, &[b"hello.txt\0"])],
            FUSE_RMDIR => vec![seed(1, &[b"dir\0"])],
            FUSE_RENAME => {
                vec![seed(1, &[fuse_rename_in { newdir: 3 }.as_bytes(), b"a\0", b"b\0"])]
            }
            FUSE_RENAME2 => {
                // RENAME_NOREPLACE
                let arg = fuse_rename2_in { newdir: 3, flags: 1, padding: 0 };
                vec![seed(1, &[arg.as_bytes(), b"a\0", b"b\0"])]
            }
            FUSE_LINK => vec![seed(1, &[fuse_link_in { oldnodeid: 5 }.as_bytes(), b"hardlink\0"])],
            FUSE_OPEN => {
                let arg = fuse_open_in { flags: 2, open_flags: FUSE_OPEN_KILL_SUIDGID };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_READ => vec![seed(5, &[read.as_bytes()])],
            FUSE_WRITE => {
                let arg = fuse_write_in {
                    fh: 7,
                    offset: 4096,
                    size: 11,
                    write_flags: FUSE_WRITE_LOCKOWNER,
                    lock_owner: 99,
                    flags: 2,
                    padding: 0,
                };
                vec![seed(5, &[arg.as_bytes(), b"hello world"])]
            }
            FUSE_STATFS => vec![seed(1, &[])],
            FUSE_RELEASE => {
                let arg = fuse_release_in {
                    fh: 7,
                    flags: 2,
                    release_flags: FUSE_RELEASE_FLUSH,
                    lock_owner: 99,
                };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_FSYNC => {
                let arg = fuse_fsync_in { fh: 7, fsync_flags: FUSE_FSYNC_FDATASYNC, padding: 0 };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_SETXATTR => {
                // XATTR_CREATE; without the extension only the first 8 bytes are sent.
                let arg = fuse_setxattr_in {
                    size: 5,
                    flags: 1,
                    setxattr_flags: FUSE_SETXATTR_ACL_KILL_SGID,
                    padding: 0,
                };
                let compat = &arg.as_bytes()[..FUSE_COMPAT_SETXATTR_IN_SIZE];
                vec![
                    seed(5, &[compat, b"user.test\0", b"value"]).suffix("compat"),
                    Seed {
                        setxattr_ext: true,
                        ..seed(5, &[arg.as_bytes(), b"user.test\0", b"value"]).suffix("ext")
                    },
                ]
            }
            FUSE_GETXATTR => {
                let arg = fuse_getxattr_in { size: 256, padding: 0 };
                vec![seed(5, &[arg.as_bytes(), b"user.test\0"])]
            }
            FUSE_LISTXATTR => vec![seed(5, &[fuse_getxattr_in { size: 0, padding: 0 }.as_bytes()])],
            FUSE_REMOVEXATTR => vec![seed(5, &[b"user.test\0"])],
            FUSE_FLUSH => {
                let arg = fuse_flush_in { fh: 7, unused: 0, padding: 0, lock_owner: 99 };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_INIT => {
                let flags = FUSE_ASYNC_READ
                    | FUSE_POSIX_LOCKS
                    | FUSE_BIG_WRITES
                    | FUSE_DO_READDIRPLUS
                    | FUSE_WRITEBACK_CACHE
                    | FUSE_SETXATTR_EXT
                    | FUSE_INIT_EXT
                    | FUSE_SECURITY_CTX
                    | FUSE_CREATE_SUPP_GROUP
                    | FUSE_HAS_RESEND;
                let old = init(35, FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_BIG_WRITES);
                vec![
                    seed(0, &[init(FUSE_KERNEL_MINOR_VERSION, flags).as_bytes()]).suffix("7.45"),
                    seed(0, &[&old.as_bytes()[..16]]).suffix("7.35"),
                ]
            }
            // O_RDONLY | O_DIRECTORY
            FUSE_OPENDIR => {
                vec![seed(1, &[fuse_open_in { flags: 0o200000, open_flags: 0 }.as_bytes()])]
            }
            FUSE_READDIR => vec![seed(1, &[readdir.as_bytes()])],
            FUSE_RELEASEDIR => {
                let arg =
                    fuse_release_in { fh: 8, flags: 0o200000, release_flags: 0, lock_owner: 0 };
                vec![seed(1, &[arg.as_bytes()])]
            }
            FUSE_FSYNCDIR => {
                vec![seed(1, &[fuse_fsync_in { fh: 8, fsync_flags: 0, padding: 0 }.as_bytes()])]
            }
            FUSE_GETLK => vec![seed(5, &[lock(0).as_bytes()])],
            FUSE_SETLK => vec![seed(5, &[lock(0).as_bytes()])],
            FUSE_SETLKW => vec![seed(5, &[lock(FUSE_LK_FLOCK).as_bytes()])],
            // R_OK | W_OK
            FUSE_ACCESS => vec![seed(5, &[fuse_access_in { mask: 6, padding: 0 }.as_bytes()])],
            FUSE_CREATE => vec![
                seed(1, &[create.as_bytes(), b"new.txt\0"]),
                Seed { ext: create_extensions(), ..seed(1, &[create.as_bytes(), b"new.txt\0"]) }
                    .suffix("extensions"),
            ],
            FUSE_INTERRUPT => vec![seed(0, &[fuse_interrupt_in { unique: 42 }.as_bytes()])],
            FUSE_BMAP => {
                vec![seed(5, &[fuse_bmap_in { block: 10, blocksize: 4096, padding: 0 }.as_bytes()])]
            }
            FUSE_DESTROY => vec![seed(0, &[])],
            FUSE_IOCTL => {
                let arg = fuse_ioctl_in {
                    fh: 7,
                    flags: 0,
                    cmd: 0x4004_6601,
                    arg: 0x7ffd_0000_1000,
                    in_size: 4,
                    out_size: 8,
                };
                vec![seed(5, &[arg.as_bytes(), 1u32.as_bytes()])]
            }
            FUSE_POLL => {
                // POLLIN
                let arg =
                    fuse_poll_in { fh: 7, kh: 3, flags: FUSE_POLL_SCHEDULE_NOTIFY, events: 1 };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_NOTIFY_REPLY => {
                let arg = fuse_notify_retrieve_in { offset: 0, size: 5, ..Default::default() };
                vec![seed(5, &[arg.as_bytes(), b"page!"])]
            }
            FUSE_BATCH_FORGET => {
                let one = |nodeid, nlookup| fuse_forget_one { nodeid, nlookup };
                let (a, b, c) = (one(5, 3), one(6, 1), one(7, 12));
                let three = fuse_batch_forget_in { count: 3, dummy: 0 };
                let none = fuse_batch_forget_in { count: 0, dummy: 0 };
                vec![
                    seed(0, &[three.as_bytes(), a.as_bytes(), b.as_bytes(), c.as_bytes()])
                        .suffix("three"),
                    seed(0, &[none.as_bytes()]).suffix("empty"),
                ]
            }
            FUSE_FALLOCATE => {
                // FALLOC_FL_KEEP_SIZE
                let arg =
                    fuse_fallocate_in { fh: 7, offset: 0, length: 1 << 20, mode: 1, padding: 0 };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_READDIRPLUS => vec![seed(1, &[readdir.as_bytes()])],
            FUSE_LSEEK => {
                // SEEK_DATA
                let arg = fuse_lseek_in { fh: 7, offset: 4096, whence: 3, padding: 0 };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_COPY_FILE_RANGE => vec![seed(5, &[copy_file_range().as_bytes()])],
            FUSE_COPY_FILE_RANGE_64 => vec![seed(5, &[copy_file_range().as_bytes()])],
            FUSE_SETUPMAPPING => {
                let arg = fuse_setupmapping_in {
                    fh: 7,
                    foffset: 0,
                    len: 2 << 20,
                    flags: FUSE_SETUPMAPPING_FLAG_READ,
                    moffset: 0,
                };
                vec![seed(5, &[arg.as_bytes()])]
            }
            FUSE_REMOVEMAPPING => {
                let one = fuse_removemapping_one { moffset: 0, len: 2 << 20 };
                vec![seed(5, &[fuse_removemapping_in { count: 1 }.as_bytes(), one.as_bytes()])]
            }
            FUSE_SYNCFS => vec![seed(1, &[fuse_syncfs_in { padding: 0 }.as_bytes()])],
            FUSE_TMPFILE => {
                // O_RDWR | O_TMPFILE; the VFS names a tmpfile "/".
                let arg = fuse_create_in { flags: 0o20200002, ..create };
                vec![seed(1, &[arg.as_bytes(), b"/\0"])]
            }
            FUSE_STATX => {
                // STATX_BASIC_STATS
                let arg = fuse_statx_in { sx_mask: 0x7ff, ..Default::default() };
                vec![seed(5, &[arg.as_bytes()])]
            }
            CUSE_INIT => {
                let arg =
                    cuse_init_in { major: 7, minor: 45, unused: 0, flags: CUSE_UNRESTRICTED_IOCTL };
                vec![Seed { decodes: false, ..seed(0, &[arg.as_bytes()]) }]
            }
            CUSE_INIT_BSWAP_RESERVED | FUSE_INIT_BSWAP_RESERVED => {
                vec![Seed { decodes: false, ..seed(0, &[init(45, 0).as_bytes()]) }]
            }
        }
    }

    /// The file name and contents (negotiation byte, then the request) of `seed`, after
    /// checking that it decodes as `op` (or is rejected, for the opcodes `decode` does not
    /// know).
    fn file(op: fuse_opcode, seed: &Seed) -> (String, Vec<u8>) {
        assert_eq!(seed.ext.len() % 8, 0, "{op:?}: extensions are 8-byte units");
        let len = size_of::<fuse_in_header>() + seed.args.len() + seed.ext.len();
        let header = fuse_in_header {
            len: len as u32,
            opcode: op as u32,
            unique: 2 * u64::from(op as u32),
            nodeid: seed.nodeid,
            uid: 1000,
            gid: 1000,
            pid: 4242,
            total_extlen: (seed.ext.len() / 8) as u16,
            padding: 0,
        };
        let request = [header.as_bytes(), &seed.args, &seed.ext].concat();
        let decoded = decode(&request, &Negotiated { setxattr_ext: seed.setxattr_ext });
        if seed.decodes {
            let req = decoded.unwrap_or_else(|e| panic!("{op:?} seed {:?}: {e}", seed.suffix));
            assert_eq!(req.opcode, op, "{op:?} seed decodes as {req:?}");
        } else {
            assert_eq!(decoded.unwrap_err(), DecodeError::UnknownOpcode(op as u32), "{op:?}");
        }
        let mut bytes = vec![u8::from(seed.setxattr_ext)];
        bytes.extend(request);
        let name = match (seed.decodes, seed.suffix) {
            (false, _) => format!("seed-{}-rejected", op.name()),
            (true, "") => format!("seed-{}", op.name()),
            (true, suffix) => format!("seed-{}-{suffix}", op.name()),
        };
        (name, bytes)
    }

    pub(crate) fn write(dir: &Path) {
        std::fs::create_dir_all(dir).expect("create the corpus directory");
        let mut written = 0;
        for &op in fuse_opcode::ALL {
            for seed in seeds(op) {
                let (name, bytes) = file(op, &seed);
                std::fs::write(dir.join(name), bytes).expect("write a seed");
                written += 1;
            }
        }
        println!("{written} seeds for {} opcodes in {}", fuse_opcode::ALL.len(), dir.display());
    }
}

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "store") {
        let dir = std::env::args_os().nth(2).expect("usage: seed_corpus store DIR");
        return store_seed(std::path::Path::new(&dir));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "decode_request") {
        let dir = std::env::args_os().nth(2).expect("usage: seed_corpus decode_request DIR");
        return requests::write(std::path::Path::new(&dir));
    }
    let dir = PathBuf::from(std::env::args_os().nth(1).expect("usage: seed_corpus DIR"));
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let kinds: Vec<Kind> = (0..=u16::MAX).filter_map(Kind::from_u16).collect();
    let mut written = 0;
    for &kind in &kinds {
        for seed in seeds(kind) {
            let (name, bytes) = file(kind, &seed);
            std::fs::write(dir.join(name), bytes).expect("write a seed");
            written += 1;
        }
    }
    println!("{written} seeds for {} kinds in {}", kinds.len(), dir.display());
}
