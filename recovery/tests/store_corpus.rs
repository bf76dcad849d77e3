//! Replays the state store fuzz corpus (`fuzz/corpus/store_open/`, kept in the repository)
//! on the stable toolchain: every input opens and reads without a panic, and the corpus holds
//! inputs that open as a store and have records read (so the replay is not vacuous).

use std::path::PathBuf;

use fuse_recovery::store::Store;
use fuse_recovery::store::untrusted::{SPECS, open_and_read_all};

#[test]
fn every_store_corpus_input_is_read_without_a_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/store_open");
    let mut files = 0;
    let mut with_records = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        if open_and_read_all(&bytes) > 0 {
            with_records += 1;
        }
    }
    assert!(files >= 1, "empty corpus");
    assert!(with_records >= 1, "no corpus input opens as a store with records");
}

/// The seed the corpus starts from: a real store of the fuzzed layout with records in every
/// table, read back whole.
#[test]
fn a_store_with_records_reads_back() {
    let store = Store::create("seed", &SPECS).unwrap();
    for (i, spec) in SPECS.iter().enumerate() {
        let (table, _) = store.table(i);
        table.insert(&[1, 2][..spec.words.min(2) as usize], b"record").unwrap();
    }
    let size = rustix::fs::fstat(store.fd()).unwrap().st_size as usize;
    let mut bytes = vec![0u8; size];
    rustix::io::pread(store.fd(), &mut bytes, 0).unwrap();
    assert_eq!(open_and_read_all(&bytes), SPECS.len());
}
