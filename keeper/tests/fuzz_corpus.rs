//! Replays the fuzz corpus (`fuzz/corpus/decode_message/`, kept in the repository) through the
//! decoders on the stable toolchain, with the fuzz target's checks: no panic, and whatever
//! decodes encodes back to the same bytes. Each file is one byte of received-fd count, then
//! the message. The corpus must hold a valid message of every kind the decoder knows (taken
//! from `Kind::from_u16`, so a new kind fails this test until the seeds cover it).

use std::collections::BTreeSet;
use std::path::PathBuf;

use fuse_keeper::protocol::{
    Header, Kind, decode_reply, decode_request, encode_reply, encode_request,
};

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

/// Every kind the decoders know, by number.
fn every_kind() -> BTreeSet<u16> {
    (0..=u16::MAX).filter(|&v| Kind::from_u16(v).is_some_and(|k| k as u16 == v)).collect()
}

#[test]
fn every_corpus_file_decodes_or_fails_cleanly_and_round_trips() {
    let files = corpus();
    let every = every_kind();
    assert!(files.len() >= every.len(), "corpus has only {} files", files.len());
    let mut kinds = BTreeSet::new();
    for (path, data) in &files {
        let Some((&fds, msg)) = data.split_first() else { continue };
        let fds = usize::from(fds);
        if let Ok(req) = decode_request(msg, fds) {
            assert_eq!(encode_request(&req), msg, "{}: {req:?}", path.display());
            assert_eq!(req.fd_count(), fds, "{}", path.display());
            kinds.insert(req.kind() as u16);
            assert!(decode_reply(msg, fds).is_err(), "{}: also a reply", path.display());
        }
        if let Ok(reply) = decode_reply(msg, fds) {
            let (bytes, count) = encode_reply(&reply);
            assert_eq!(bytes, msg, "{}: {reply:?}", path.display());
            assert_eq!(count, fds, "{}", path.display());
            let (header, _) = Header::decode(msg, fds).unwrap();
            kinds.insert(header.kind);
        }
    }
    assert_eq!(kinds, every, "kinds with a valid message in the corpus");
}

/// The derivation above must not come out empty (the corpus test would then pass with no
/// valid message at all): every kind of the protocol as of the handover change is in it. A
/// kind added later only adds to the set.
#[test]
fn every_kind_includes_the_known_ones() {
    let known: BTreeSet<u16> = (1..=9).chain(0x8000..=0x8004).collect();
    assert!(every_kind().is_superset(&known), "{:x?}", every_kind());
}
