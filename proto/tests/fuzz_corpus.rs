//! Replays the request fuzz corpus (`fuzz/corpus/decode_request/`, kept in the repository)
//! through `decode` on the stable toolchain, with the fuzz target's checks
//! (`tests/decode_checks/`, which the fuzz target includes by path). Each file is one negotiation byte (bit 0:
//! `setxattr_ext`), then the request; it is decoded under that negotiation and the other one.
//! An error must be the one the header calls for, if it calls for one; a decoded request must
//! have the header's fields, an `Operation` of its opcode, and lie in the arguments as sent
//! (fixed structs, names with their NUL, data borrowed in place); only SETXATTR may decode
//! differently under the two negotiations. The corpus must hold a valid request of every
//! opcode the decoder knows (taken from `fuse_opcode::ALL`, so an opcode added to the ABI
//! fails this test until the corpus has one), SETXATTR under both negotiations, INIT in both
//! sizes and a request with extensions.

use std::collections::BTreeSet;
use std::path::PathBuf;

use fuse_abi::{fuse_in_header, fuse_opcode};
use fuse_proto::{DecodeError, Negotiated, decode, peek_header};
use zerocopy::IntoBytes;

mod decode_checks;

use decode_checks::{UNDECODED, check};

fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_request");
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

/// Every opcode the decoder knows: the ABI's, less `UNDECODED`.
fn every_opcode() -> BTreeSet<u32> {
    fuse_opcode::ALL.iter().filter(|op| !UNDECODED.contains(op)).map(|&op| op as u32).collect()
}

#[test]
fn every_corpus_file_decodes_or_fails_cleanly_and_lies_in_its_bytes() {
    let files = corpus();
    let every = every_opcode();
    assert!(files.len() >= every.len(), "corpus has only {} files", files.len());
    let mut opcodes = BTreeSet::new();
    let (mut setxattr, mut init_sizes, mut with_extensions) = (BTreeSet::new(), BTreeSet::new(), 0);
    for (path, data) in &files {
        let Some((&negotiation, bytes)) = data.split_first() else { continue };
        let negotiated = Negotiated { setxattr_ext: negotiation & 1 != 0 };
        let other = Negotiated { setxattr_ext: !negotiated.setxattr_ext };
        let first = check(bytes, &negotiated);
        let second = check(bytes, &other);
        let header = peek_header(bytes);
        let is_setxattr = header.is_some_and(|h| h.opcode == fuse_opcode::FUSE_SETXATTR as u32);
        if !is_setxattr {
            assert_eq!(first, second, "{}: the negotiation changed the request", path.display());
        }
        for (result, negotiated) in [(first, negotiated), (second, other)] {
            let Ok((opcode, _)) = result else { continue };
            let header = header.unwrap();
            opcodes.insert(opcode as u32);
            match opcode {
                fuse_opcode::FUSE_SETXATTR => _ = setxattr.insert(negotiated.setxattr_ext),
                fuse_opcode::FUSE_INIT => _ = init_sizes.insert(header.len >= 40 + 64),
                _ => {}
            }
            with_extensions += usize::from(header.total_extlen > 0);
        }
    }
    assert_eq!(opcodes, every, "opcodes with a valid request in the corpus");
    assert_eq!(setxattr.len(), 2, "SETXATTR decoded with setxattr_ext in {setxattr:?}");
    assert_eq!(init_sizes.len(), 2, "INIT of 64 bytes or more in {init_sizes:?}");
    assert!(with_extensions > 0, "no valid request with extensions");
}

/// The derivation above must not come out empty (the corpus test would then pass with no
/// valid request at all): every opcode of protocol 7.45 but the unused 7 and 19 is in it. An
/// opcode added later only adds to the set.
#[test]
fn every_opcode_includes_the_known_ones() {
    let known: BTreeSet<u32> = (1..=53).filter(|op| ![7, 19].contains(op)).collect();
    assert!(every_opcode().is_superset(&known), "{:?}", every_opcode());
}

/// The opcodes left out of `every_opcode` are the ones `decode` rejects.
#[test]
fn the_undecoded_opcodes_are_rejected() {
    for op in UNDECODED {
        let header = fuse_in_header { len: 40, opcode: op as u32, ..Default::default() };
        let result = decode(header.as_bytes(), &Negotiated::default());
        assert_eq!(result.unwrap_err(), DecodeError::UnknownOpcode(op as u32), "{op:?}");
    }
}
