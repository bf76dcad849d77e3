//! Writes the seed corpus of `decode_message`: one valid message of every kind (requests and
//! replies), each prefixed by its fd count, into the directory given as the only argument.
//! `cargo run --release --bin seed_corpus -- corpus/decode_message`

use std::path::PathBuf;

use fuse_keeper::ConnState;
use fuse_keeper::protocol::{ListEntry, Register, Reply, Request, encode_reply, encode_request};

fn main() {
    let dir = PathBuf::from(std::env::args_os().nth(1).expect("usage: seed_corpus DIR"));
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let requests = [
        Request::Register(Register {
            tag: "web".into(),
            rescue_uid: 1000,
            mountpoint: "/mnt/web".into(),
            conn_id: 57,
            recovery_timeout_ms: 30_000,
            negotiation: vec![7; 24],
        }),
        Request::AddDevice { tag: "web".into(), index: 3 },
        Request::Attach { tag: "web".into() },
        Request::Unregister { tag: "web".into() },
        Request::List { skip: 2 },
        Request::Abort { target: "/mnt/web".into() },
        Request::Umount { target: "web".into() },
    ];
    let entry = ListEntry {
        tag: "web".into(),
        owner_uid: 0,
        rescue_uid: 1000,
        mountpoint: "/mnt/web".into(),
        conn_id: 57,
        state: ConnState::Orphaned,
        server_pid: 0,
        waiting: 3,
        orphaned_ms: 1500,
    };
    let replies = [
        Reply::Ok,
        Reply::Error { errno: 13, message: "refused".into() },
        Reply::Attached {
            mountpoint: "/mnt/web".into(),
            conn_id: 57,
            negotiation: vec![7; 24],
            device_count: 2,
        },
        Reply::List { total: 1, entries: vec![entry] },
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for req in &requests {
        let mut bytes = vec![req.fd_count() as u8];
        bytes.extend(encode_request(req));
        seeds.push((format!("request-{:?}", req.kind()), bytes));
    }
    for reply in &replies {
        let (msg, fds) = encode_reply(reply);
        let mut bytes = vec![fds as u8];
        bytes.extend(msg);
        seeds.push((format!("reply-{}", u16::from_le_bytes([bytes[7], bytes[8]])), bytes));
    }
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    }
}
