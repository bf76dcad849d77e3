//! Writes the seed corpus of `decode_message`: at least one valid message of every kind
//! (requests and replies), each prefixed by its fd count, into the directory given as the only
//! argument. `cargo run --release --bin seed_corpus -- corpus/decode_message`
//!
//! The kinds are taken from the decoder (`Kind::from_u16` over every u16), and `seeds` matches
//! on `Kind` without a wildcard, so a new kind does not compile until it has a seed. Every seed
//! is checked to decode as its kind and to re-encode to the same bytes before it is written.

use std::path::PathBuf;

use fuse_keeper_client::ConnState;
use fuse_keeper_client::protocol::{
    ATTR_OUT_LEN, Header, Kind, ListEntry, REGISTER_FAIL_ON_TIMEOUT, Register, Reply, Request,
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

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "store") {
        let dir = std::env::args_os().nth(2).expect("usage: seed_corpus store DIR");
        return store_seed(std::path::Path::new(&dir));
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
