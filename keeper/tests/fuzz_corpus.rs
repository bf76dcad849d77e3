//! Replays the fuzz corpus (`fuzz/corpus/decode_message/`, kept in the repository) through the
//! decoders on the stable toolchain, with the fuzz target's checks: no panic, and whatever
//! decodes encodes back to the same bytes. Each file is one byte of received-fd count, then
//! the message. The corpus must hold a valid message of every kind.

use std::collections::BTreeSet;
use std::path::PathBuf;

use fuse_keeper::protocol::{decode_reply, decode_request, encode_reply, encode_request};

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_message");
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_decodes_or_fails_cleanly_and_round_trips() {
    let files = corpus();
    assert!(files.len() >= 11, "corpus has only {} files", files.len());
    let mut kinds = BTreeSet::new();
    for (path, data) in &files {
        let Some((&fds, msg)) = data.split_first() else { continue };
        let fds = usize::from(fds);
        if let Ok(req) = decode_request(msg, fds) {
            assert_eq!(encode_request(&req), msg, "{}: {req:?}", path.display());
            assert_eq!(req.fd_count(), fds, "{}", path.display());
            kinds.insert(req.kind() as u16);
        }
        if let Ok(reply) = decode_reply(msg, fds) {
            let (bytes, count) = encode_reply(&reply);
            assert_eq!(bytes, msg, "{}: {reply:?}", path.display());
            assert_eq!(count, fds, "{}", path.display());
            kinds.insert(u16::from_le_bytes([msg[6], msg[7]]));
        }
    }
    let every: BTreeSet<u16> = [1, 2, 3, 4, 5, 6, 7, 0x8000, 0x8001, 0x8002, 0x8003].into();
    assert_eq!(kinds, every, "kinds with a valid message in the corpus");
}
