//! The store as input: what a restarted server reads of a store someone else may have written,
//! run on arbitrary bytes (the fuzz target `store_open` and the corpus replay test).

use std::sync::atomic::Ordering;

use fuse_server::{Journal, Negotiation, SessionConfig};
use zerocopy::FromBytes;

use super::{SEALS, Store, TableSpec};
use crate::journal::JOURNAL;

/// A small layout with every kind of table a filesystem has: an indexed one with words and
/// bytes (inodes), one without an index (handles), and the journal.
pub const SPECS: [TableSpec; 3] = [
    TableSpec { name: "inodes", words: 2, bytes: 64, capacity: 16, indexed: true, index_scheme: 0 },
    TableSpec {
        name: "handles",
        words: 0,
        bytes: 16,
        capacity: 8,
        indexed: false,
        index_scheme: 0,
    },
    TableSpec { capacity: 4, ..JOURNAL },
];

/// Writes `bytes` over the start of a new store of [`SPECS`] (what does not fit is dropped),
/// then does what a restarted server does with a store: opens it, reads the negotiation and
/// checks it, rebuilds an index built under another scheme, reads every record of every
/// table and looks keys up in the indexes and the journal. Returns how many records it read. It must never panic, hang or touch memory
/// outside the store, whatever `bytes` holds: that is what this promises and what the fuzz
/// target checks.
pub fn open_and_read_all(bytes: &[u8]) -> usize {
    let Ok(store) = Store::create("untrusted", &SPECS) else { return 0 };
    let size = rustix::fs::fstat(store.fd()).map_or(0, |st| st.st_size as usize);
    let len = bytes.len().min(size);
    if rustix::io::pwrite(store.fd(), &bytes[..len], 0).is_err() {
        return 0;
    }
    let Ok(fd) = store.fd().try_clone_to_owned() else { return 0 };
    drop(store);
    debug_assert!(rustix::fs::fcntl_get_seals(&fd).is_ok_and(|s| s.contains(SEALS)));
    let Ok(store) = Store::open(fd, &SPECS) else { return 0 };
    if let Some(saved) = store.negotiation()
        && let Ok(negotiation) = Negotiation::read_from_bytes(&saved)
    {
        let _ = negotiation.check_saved(&SessionConfig::default());
    }
    // Keys to look up: the input's own 8-byte words, so the fuzzer steers them too.
    let keys: Vec<u64> = bytes
        .chunks(8)
        .take(64)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    // An index the input says was built under another scheme is rebuilt, as a filesystem's
    // `Records::open_reindexed` does (keyed by the first word, as the journal's is).
    for (i, spec) in SPECS.iter().enumerate() {
        if spec.words > 0 && !store.index_is_current(i) {
            let _ = store
                .rebuild_index(i, |table, slot| Some(table.word(slot, 0).load(Ordering::Acquire)));
        }
    }
    let mut read = 0;
    let mut payload = vec![0u8; 8192];
    for (i, spec) in SPECS.iter().enumerate() {
        let (table, index) = store.table(i);
        for slot in 0..=table.high_water().saturating_add(1) {
            if table.read(slot, &mut payload) {
                read += 1;
                for w in 0..spec.words as usize {
                    let _ = table.word(slot, w).load(Ordering::Acquire);
                }
            }
        }
        if let Some(index) = index {
            for &hash in &keys {
                let _ = index.find(hash, |slot| table.is_valid(slot));
            }
        }
    }
    if let Some(journal) = crate::journal::StoreJournal::open(&store) {
        for &unique in &keys {
            let _ = journal.find(unique);
        }
    }
    read
}
