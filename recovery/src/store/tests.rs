use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use super::*;

const SPECS: [TableSpec; 2] = [
    TableSpec {
        name: "things",
        words: 2,
        bytes: 256,
        capacity: 100_000,
        indexed: true,
        index_scheme: 0,
    },
    TableSpec { name: "other", words: 1, bytes: 8, capacity: 10, indexed: false, index_scheme: 0 },
];

fn reopen(store: &Store) -> Result<Store, StoreError> {
    Store::open(store.fd().try_clone_to_owned().unwrap(), &SPECS)
}

#[test]
fn records_round_trip_and_survive_reopening() {
    let store = Store::create("test", &SPECS).unwrap();
    let (things, index) = store.table(0);
    let index = index.unwrap();
    let a = things.insert(&[7, 8], b"hello").unwrap();
    let b = things.insert(&[9], b"world").unwrap();
    assert_ne!(a, b);
    assert!(index.insert(0xdead_beef_0000_0001, a));
    things.word(a, 1).store(42, Ordering::Relaxed);
    things.remove(b);

    let again = reopen(&store).unwrap();
    let (t, i) = again.table(0);
    let mut buf = [0u8; 5];
    assert!(t.read(a, &mut buf));
    assert_eq!(&buf, b"hello");
    assert_eq!(t.word(a, 0).load(Ordering::Relaxed), 7);
    assert_eq!(t.word(a, 1).load(Ordering::Relaxed), 42);
    assert!(!t.is_valid(b), "a removed record stays removed");
    assert_eq!(i.unwrap().find(0xdead_beef_0000_0001, |s| s == a), Some(a));
    assert_eq!(t.high_water(), 2);
}

#[test]
fn freed_slots_are_reused_and_full_tables_refuse() {
    let store = Store::create("test", &SPECS).unwrap();
    let (small, _) = store.table(1);
    let slots: Vec<u64> = (0..10).map(|i| small.insert(&[i], &[]).unwrap()).collect();
    assert!(matches!(small.insert(&[0], &[]), Err(StoreError::Full("other"))));
    small.remove(slots[3]);
    assert_eq!(small.insert(&[99], &[]).unwrap(), slots[3]);
}

/// The store as the next process opens it, after a writer inserted `n` records in table `i`
/// and removed the first `freed`; and the records' slots.
fn freed_by_an_earlier_writer(i: usize, n: u64, freed: usize) -> (Store, Vec<u64>) {
    let store = Store::create("test", &SPECS).unwrap();
    let (table, _) = store.table(i);
    let slots: Vec<u64> = (0..n).map(|v| table.insert(&[v], &[]).unwrap()).collect();
    for &slot in &slots[..freed] {
        table.remove(slot);
    }
    (reopen(&store).unwrap(), slots)
}

#[test]
fn slots_an_earlier_process_freed_are_reused_once_the_table_is_full() {
    // Seven slots free, but on nobody's list.
    let (store, slots) = freed_by_an_earlier_writer(1, 10, 7);
    let (small, _) = store.table(1);
    let mut reused: Vec<u64> = (0..7).map(|i| small.insert(&[100 + i], &[]).unwrap()).collect();
    reused.sort();
    assert_eq!(reused, slots[..7], "each freed slot reused once");
    assert!(matches!(small.insert(&[0], &[]), Err(StoreError::Full("other"))));
    for &slot in &slots[7..] {
        assert_eq!(small.word(slot, 0).load(Ordering::Relaxed), slot, "a live record kept");
    }
}

#[test]
fn a_restarted_writer_grows_the_table_by_at_most_a_quarter_before_reusing_freed_slots() {
    let (store, _) = freed_by_an_earlier_writer(0, 4000, 4000);
    let (things, _) = store.table(0);
    for i in 0..4000 {
        things.insert(&[i], &[]).unwrap();
    }
    assert!(
        things.high_water() <= 5000,
        "4,000 records after 4,000 were freed took {} slots",
        things.high_water()
    );
}

#[test]
fn two_writers_on_one_table_never_share_a_slot() {
    // Two tables on one region (two processes during a handover) both list the slots an
    // earlier process freed; each slot still goes to one insert only.
    let (store, slots) = freed_by_an_earlier_writer(1, 10, 10);
    let again = reopen(&store).unwrap();
    let ((a, _), (b, _)) = (store.table(1), again.table(1));
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(a.insert(&[1], &[]).unwrap());
        got.push(b.insert(&[2], &[]).unwrap());
    }
    got.sort();
    assert_eq!(got, slots, "ten inserts, ten different slots");
    assert!(matches!(a.insert(&[1], &[]), Err(StoreError::Full("other"))));
    assert!(matches!(b.insert(&[2], &[]), Err(StoreError::Full("other"))));
}

#[test]
fn negotiation_is_saved_whole() {
    let store = Store::create("test", &SPECS).unwrap();
    assert_eq!(store.negotiation(), None);
    store.set_negotiation(&[1, 2, 3]).unwrap();
    assert_eq!(reopen(&store).unwrap().negotiation(), Some(vec![1, 2, 3]));
    assert!(store.set_negotiation(&[0; MAX_NEGOTIATION + 1]).is_err());
}

#[test]
fn other_layouts_and_other_files_are_refused() {
    let store = Store::create("test", &SPECS).unwrap();
    let mut specs = SPECS;
    specs[1].bytes = 16;
    let fd = store.fd().try_clone_to_owned().unwrap();
    assert!(matches!(Store::open(fd, &specs), Err(StoreError::Layout(_))));
    let junk = sealed_memfd(8192);
    assert!(matches!(Store::open(junk, &SPECS), Err(StoreError::NotAStore)));
    let empty = sealed_memfd(0);
    assert!(matches!(Store::open(empty, &SPECS), Err(StoreError::NotAStore)));
}

/// A memfd of `len` zero bytes, sealed as stores are.
fn sealed_memfd(len: u64) -> OwnedFd {
    let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let fd = rustix::fs::memfd_create("junk", flags).unwrap();
    rustix::fs::ftruncate(&fd, len).unwrap();
    rustix::fs::fcntl_add_seals(&fd, super::SEALS).unwrap();
    fd
}

/// A store whose size another holder could change is refused: shrunk under the server, it
/// would kill it with SIGBUS. A store's own seals forbid resizing, whoever holds it.
#[test]
fn stores_are_sealed_against_resizing_and_unsealed_files_are_refused() {
    let store = Store::create("test", &SPECS).unwrap();
    let holder = store.fd().try_clone_to_owned().unwrap();
    assert_eq!(rustix::fs::ftruncate(&holder, 4096), Err(rustix::io::Errno::PERM));
    assert_eq!(rustix::fs::ftruncate(&holder, 1 << 30), Err(rustix::io::Errno::PERM));
    let seals = rustix::fs::fcntl_get_seals(&holder).unwrap();
    assert!(seals.contains(super::SEALS), "{seals:?}");
    assert!(reopen(&store).is_ok());

    // The same bytes in a memfd without seals: refused before anything is read.
    let copy = rustix::fs::memfd_create("copy", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let size = rustix::fs::fstat(&holder).unwrap().st_size as usize;
    let mut bytes = vec![0u8; size];
    rustix::io::pread(&holder, &mut bytes, 0).unwrap();
    rustix::io::write(&copy, &bytes).unwrap();
    assert!(matches!(Store::open(copy, &SPECS), Err(StoreError::Unsealed)));
    // Nor is a file that is not a memfd.
    let file: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    assert!(matches!(Store::open(file, &SPECS), Err(StoreError::Unsealed)));
}

#[test]
fn index_finds_colliding_hashes_by_key() {
    let store = Store::create("test", &SPECS).unwrap();
    let (_, index) = store.table(0);
    let index = index.unwrap();
    let h = 0xabcd_0000_0000_0005;
    assert!(index.insert(h, 1));
    assert!(index.insert(h, 2));
    assert_eq!(index.find(h, |s| s == 2), Some(2));
    index.remove(h, 1);
    assert_eq!(index.find(h, |s| s == 1), None);
    assert_eq!(index.find(h, |s| s == 2), Some(2), "found past the tombstone");
}

#[test]
fn removals_leave_no_tombstone_no_probe_needs() {
    let store = Store::create("test", &SPECS).unwrap();
    let (_, index) = store.table(0);
    let index = index.unwrap();
    // A long mount: a million lookups and forgets of different inodes, a few live at once.
    let mut live = std::collections::VecDeque::new();
    for i in 0..1_000_000u64 {
        let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert!(index.insert(hash, i % 1000));
        live.push_back((hash, i % 1000));
        if live.len() > 64 {
            let (hash, slot) = live.pop_front().unwrap();
            index.remove(hash, slot);
        }
    }
    for &(hash, slot) in &live {
        assert_eq!(index.find(hash, |s| s == slot), Some(slot), "a live entry is still found");
    }
    while let Some((hash, slot)) = live.pop_front() {
        index.remove(hash, slot);
    }
    assert_eq!(index.tombstones(), 0, "an empty index holds tombstones");
}

fn pattern(seq: u64) -> Vec<u8> {
    seq.to_le_bytes().iter().cycle().take(256).copied().collect()
}

/// Not a test on its own: the writer process of `a_killed_writer_leaves_only_whole_records`,
/// which runs it with `--ignored`.
#[test]
#[ignore = "helper process of a_killed_writer_leaves_only_whole_records"]
fn writer_child() {
    assert!(std::env::var_os("STORE_WRITER_CHILD").is_some(), "run by the crash test only");
    let store = Store::create("writer", &SPECS).unwrap();
    let (t, _) = store.table(0);
    use std::os::fd::AsRawFd;
    let mut live = Vec::new();
    for seq in 1u64.. {
        let slot = t.insert(&[seq, seq], &pattern(seq)).unwrap();
        live.push(slot);
        if seq == 1 {
            // Only once a record is whole: however late the parent's kill comes, and however
            // little this process ran before it, the store holds one.
            println!("\nwriter-fd={}", store.fd().as_fd().as_raw_fd());
        }
        if live.len() > 1000 || seq % 3 == 0 {
            t.remove(live.swap_remove((seq as usize * 7) % live.len()));
        }
    }
}

#[test]
fn a_killed_writer_leaves_only_whole_records() {
    for round in 0..5u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("STORE_WRITER_CHILD", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let fd_line = lines
            .find_map(|l| l.ok().and_then(|l| l.split("writer-fd=").nth(1).map(str::to_string)))
            .expect("child fd");
        std::thread::sleep(std::time::Duration::from_millis(20 + 37 * round));
        let path = format!("/proc/{}/fd/{}", child.id(), fd_line.trim());
        let fd: OwnedFd =
            std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap().into();
        child.kill().unwrap();
        child.wait().unwrap();
        let store = Store::open(fd, &SPECS).unwrap();
        let (t, _) = store.table(0);
        let mut valid = 0;
        for slot in 0..t.high_water() {
            let mut buf = [0u8; 256];
            if t.read(slot, &mut buf) {
                let seq = t.word(slot, 0).load(Ordering::Relaxed);
                assert_eq!(buf.to_vec(), pattern(seq), "slot {slot} is torn");
                valid += 1;
            }
        }
        assert!(valid > 0, "the writer wrote nothing in round {round}");
    }
}

/// A table filled again at given slots (saved nodeids): those slots hold the records, the
/// slots skipped are reused by later inserts, a slot taken or beyond the capacity is refused.
#[test]
fn records_published_at_given_slots_leave_the_skipped_ones_for_reuse() {
    let store = Store::create("test", &SPECS).unwrap();
    let (things, _) = store.table(0);
    assert_eq!(things.insert_at(3, &[1], b"three"), Some(()));
    assert_eq!(things.insert_at(6, &[2], b"six"), Some(()));
    assert_eq!(things.insert_at(6, &[2], b"again"), None, "taken");
    assert_eq!(things.insert_at(100_000, &[], b""), None, "beyond the capacity");
    let mut buf = [0u8; 5];
    assert!(things.read(3, &mut buf) && &buf == b"three");
    assert_eq!(things.word(6, 0).load(Ordering::Relaxed), 2);
    assert_eq!(things.high_water(), 7);
    let reused: std::collections::BTreeSet<u64> =
        (0..5).map(|_| things.insert(&[], b"new").unwrap()).collect();
    assert_eq!(reused, [0, 1, 2, 4, 5].into_iter().collect(), "the skipped slots first");
    assert_eq!(things.insert(&[], b"next").unwrap(), 7);
}

/// `SPECS` with the indexed table under another hash scheme, as a newer server declares it.
const RESCHEMED: [TableSpec; 2] = [TableSpec { index_scheme: 3, ..SPECS[0] }, SPECS[1]];

fn key_hash(key: u64) -> u64 {
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A store of `SPECS` (version 1, scheme 0) with `n` records keyed by word 0, indexed
/// under `key_hash(key) ^ 1` (the older scheme's hash).
fn indexed_by_an_older_server(n: u64) -> (Store, Vec<(u64, u64)>) {
    let store = Store::create("test", &SPECS).unwrap();
    let (things, index) = store.table(0);
    let index = index.unwrap();
    let records = (0..n)
        .map(|key| {
            let slot = things.insert(&[key * 7], b"r").unwrap();
            assert!(index.insert(key_hash(key * 7) ^ 1, slot));
            (key * 7, slot)
        })
        .collect();
    (store, records)
}

fn rehash(table: &Table, slot: u64) -> Option<u64> {
    Some(key_hash(table.word(slot, 0).load(Ordering::Acquire)))
}

#[test]
fn an_index_built_under_another_scheme_is_refused_until_rebuilt() {
    let (old, records) = indexed_by_an_older_server(500);
    assert_eq!(old.map.word(8).load(Ordering::Relaxed) as u32, VERSION, "no scheme: version 1");
    let store = Store::open(old.fd().try_clone_to_owned().unwrap(), &RESCHEMED).unwrap();
    assert!(!store.index_is_current(0));
    assert!(store.index_is_current(1), "a table without an index is always current");
    assert!(matches!(store.table_of(&RESCHEMED[0]), Err(StoreError::StaleIndex("things"))));
    assert!(store.table(0).1.is_none(), "a stale index is not handed out");

    assert_eq!(store.rebuild_index(0, rehash).unwrap(), 500);
    assert_eq!(
        store.map.word(8).load(Ordering::Relaxed) as u32,
        VERSION_SCHEMES,
        "a store with a scheme is version 2: servers from before schemes refuse it"
    );
    let (things, index) = store.table_of(&RESCHEMED[0]).unwrap();
    let index = index.unwrap();
    for &(key, slot) in &records {
        let is_key = |s| things.word(s, 0).load(Ordering::Acquire) == key;
        assert_eq!(index.find(key_hash(key), is_key), Some(slot), "found under the new hash");
        assert_eq!(index.find(key_hash(key) ^ 1, is_key), None, "the old entries are gone");
    }
    // Reopened by the same scheme: current, nothing to do. By the old one: stale again.
    assert!(reopen_with(&store, &RESCHEMED).index_is_current(0));
    assert!(!reopen_with(&store, &SPECS).index_is_current(0));
    // A new store with a scheme is version 2 and current from the start.
    let fresh = Store::create("test", &RESCHEMED).unwrap();
    assert_eq!(fresh.map.word(8).load(Ordering::Relaxed) as u32, VERSION_SCHEMES);
    assert!(fresh.index_is_current(0));
}

fn reopen_with(store: &Store, specs: &[TableSpec]) -> Store {
    Store::open(store.fd().try_clone_to_owned().unwrap(), specs).unwrap()
}

#[test]
fn a_rebuild_cut_short_leaves_the_index_stale_and_the_next_one_completes_it() {
    let (old, records) = indexed_by_an_older_server(300);
    let store = reopen_with(&old, &RESCHEMED);
    let mut seen = 0;
    let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.rebuild_index(0, |table, slot| {
            seen += 1;
            assert!(seen < 100, "the rebuild's process dies here");
            rehash(table, slot)
        })
    }));
    assert!(cut.is_err());
    let next = reopen_with(&old, &RESCHEMED);
    assert!(!next.index_is_current(0), "a rebuild that did not finish is stale");
    assert_eq!(next.rebuild_index(0, rehash).unwrap(), 300);
    let (things, index) = next.table_of(&RESCHEMED[0]).unwrap();
    let index = index.unwrap();
    for &(key, slot) in &records {
        let is_key = |s| things.word(s, 0).load(Ordering::Acquire) == key;
        assert_eq!(index.find(key_hash(key), is_key), Some(slot));
    }
}

#[test]
fn a_rebuild_skips_what_the_filesystem_does_not_index() {
    let (old, records) = indexed_by_an_older_server(1_000);
    let store = reopen_with(&old, &RESCHEMED);
    // Every other record is not the filesystem's to index (an unreadable one, say).
    let indexed = store
        .rebuild_index(0, |table, slot| (slot % 2 == 0).then(|| rehash(table, slot)).flatten())
        .unwrap();
    assert_eq!(indexed, 500);
    let (things, index) = store.table_of(&RESCHEMED[0]).unwrap();
    let index = index.unwrap();
    for &(key, slot) in &records {
        let is_key = |s| things.word(s, 0).load(Ordering::Acquire) == key;
        let expected = (slot % 2 == 0).then_some(slot);
        assert_eq!(index.find(key_hash(key), is_key), expected);
    }
}

#[test]
fn a_rebuild_gives_the_old_index_pages_back() {
    let (old, _) = indexed_by_an_older_server(20_000);
    let store = reopen_with(&old, &RESCHEMED);
    let at = store.tables[0].2.unwrap() as u64;
    let len = index_capacity(&SPECS[0]) * 8;
    let data = |from: u64| rustix::fs::seek(store.fd(), rustix::fs::SeekFrom::Data(from));
    assert!(data(at).is_ok_and(|d| d < at + len), "the old entries' pages are allocated");
    assert_eq!(store.rebuild_index(0, |_, _| None).unwrap(), 0);
    // No page of the index is left (SEEK_DATA finds none before its end).
    assert!(data(at).is_err_and(|e| e == rustix::io::Errno::NXIO) || data(at).unwrap() >= at + len);
    assert!(store.index_is_current(0));
}
