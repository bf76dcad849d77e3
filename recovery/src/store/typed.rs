//! Tables of typed records: a filesystem declares a [`Record`] type per table (its fixed payload
//! as a `#[repr(C)]` zerocopy struct, its mutable words as named variants), and reads and
//! writes records as those types instead of bytes at offsets and words by position.
//!
//! ```
//! use fuse_recovery::store::{Record, Records, Store};
//! use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//!
//! /// One open file: which inode, with which flags.
//! #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
//! #[repr(C)]
//! struct Open {
//!     nodeid: u64,
//!     flags: u32,
//!     _pad: u32,
//! }
//!
//! /// Its words: a counter that changes after the record is published.
//! #[derive(Clone, Copy)]
//! enum OpenWord {
//!     Reads,
//! }
//!
//! impl fuse_recovery::store::Word for OpenWord {
//!     const COUNT: u32 = 1;
//!     fn index(self) -> usize {
//!         self as usize
//!     }
//! }
//!
//! impl Record for Open {
//!     const NAME: &'static str = "opens";
//!     const CAPACITY: u64 = 1024;
//!     type Word = OpenWord;
//! }
//!
//! let store = Store::create("example", &[Open::SPEC]).unwrap();
//! let opens = Records::<Open>::open(&store).unwrap();
//! let slot = opens.insert(&Open { nodeid: 7, flags: 2, _pad: 0 }, &[(OpenWord::Reads, 1)]).unwrap();
//! assert_eq!(opens.get(slot).map(|o| o.nodeid), Some(7));
//! opens.word(slot, OpenWord::Reads).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//! ```

use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{HashIndex, Store, StoreError, Table, TableSpec};

/// The mutable words of a record: named, so that a word is never taken for another by its
/// position. Usually a fieldless enum whose discriminants are 0..COUNT.
pub trait Word: Copy {
    /// How many words a record has (at most [`MAX_WORDS`]).
    const COUNT: u32;
    /// The word's position in the record, below `COUNT`.
    fn index(self) -> usize;
}

/// Most words a typed record may have.
pub const MAX_WORDS: usize = 16;

/// A record without mutable words.
#[derive(Debug, Clone, Copy)]
pub enum NoWords {}

impl Word for NoWords {
    const COUNT: u32 = 0;
    fn index(self) -> usize {
        match self {}
    }
}

/// A record type of a table: the value itself is the payload, written once when the record is
/// published and read-only after; `Word` names its atomic words, which may change after.
pub trait Record: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {
    /// The table's name in the store (up to 23 bytes).
    const NAME: &'static str;
    /// Most records at once.
    const CAPACITY: u64;
    /// Keep a hash index (key hash -> slot) beside the table.
    const INDEXED: bool = false;
    /// The index's hash scheme ([`TableSpec::index_scheme`]): change it with the hash.
    const INDEX_SCHEME: u32 = 0;
    /// The record's mutable words.
    type Word: Word;
    /// The table's spec, for the store's layout (`Recoverable::TABLES`).
    const SPEC: TableSpec = TableSpec {
        name: Self::NAME,
        words: <Self::Word as Word>::COUNT,
        bytes: size_of::<Self>() as u32,
        capacity: Self::CAPACITY,
        indexed: Self::INDEXED,
        index_scheme: Self::INDEX_SCHEME,
    };
}

/// The table of `R` records in a store.
pub struct Records<R: Record> {
    table: Table,
    index: Option<HashIndex>,
    _record: PhantomData<fn() -> R>,
}

impl<R: Record> std::fmt::Debug for Records<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").field("table", &R::NAME).finish()
    }
}

impl<R: Record> Records<R> {
    /// The table of `R` in `store` ([`StoreError::NoTable`] if its layout has none: list
    /// `R::SPEC` in the store's tables).
    pub fn open(store: &Store) -> Result<Records<R>, StoreError> {
        const { assert!(<R::Word as Word>::COUNT as usize <= MAX_WORDS, "too many words") };
        let (table, index) = store.table_of(&R::SPEC)?;
        Ok(Records { table, index, _record: PhantomData })
    }

    /// [`Records::open`], first rebuilding the index if it was built under another scheme
    /// ([`StoreError::StaleIndex`]: a store from an older server): each record is indexed
    /// under `hash(record)`, the hash the caller uses for lookups. Also says whether it
    /// rebuilt (and how many records it indexed).
    pub fn open_reindexed(
        store: &Store,
        hash: impl Fn(&R) -> u64,
    ) -> Result<(Records<R>, Option<u64>), StoreError> {
        match Records::open(store) {
            Err(StoreError::StaleIndex(_)) => {
                let indexed = store.rebuild_index(store.position(&R::SPEC)?, |table, slot| {
                    let mut record = R::new_zeroed();
                    table.read(slot, record.as_mut_bytes()).then(|| hash(&record))
                })?;
                Ok((Records::open(store)?, Some(indexed)))
            }
            other => Ok((other?, None)),
        }
    }

    /// Publishes `record` with the given words (the others 0) and returns its slot.
    pub fn insert(&self, record: &R, words: &[(R::Word, u64)]) -> Result<u64, StoreError> {
        let mut all = [0u64; MAX_WORDS];
        for &(word, value) in words {
            all[word.index()] = value;
        }
        self.table.insert(&all[..<R::Word as Word>::COUNT as usize], record.as_bytes())
    }

    /// Publishes `record` at `slot` itself, for a table being filled again from records saved
    /// elsewhere, in ascending slot order, before any [`Records::insert`]. `None` if the slot
    /// is beyond the capacity or taken.
    pub fn insert_at(&self, slot: u64, record: &R, words: &[(R::Word, u64)]) -> Option<()> {
        let mut all = [0u64; MAX_WORDS];
        for &(word, value) in words {
            all[word.index()] = value;
        }
        self.table.insert_at(slot, &all[..<R::Word as Word>::COUNT as usize], record.as_bytes())
    }

    /// The record at `slot`, if one is published there.
    pub fn get(&self, slot: u64) -> Option<R> {
        let mut record = R::new_zeroed();
        self.table.read(slot, record.as_mut_bytes()).then_some(record)
    }

    /// The first `buf.len()` bytes of the record at `slot` (at most the record's size), if
    /// one is published there: for a search that compares a key at the record's start and
    /// need not copy the rest. False if none is.
    pub fn read_prefix(&self, slot: u64, buf: &mut [u8]) -> bool {
        self.table.read(slot, buf)
    }

    /// Overwrites the payload of the published record at `slot` with `record`. Only for a
    /// record no reader relies on meanwhile (a reader may see it half written): a payload
    /// is meant to be written once.
    pub fn rewrite(&self, slot: u64, record: &R) {
        self.table.write_payload(slot, 0, record.as_bytes());
    }

    /// Word `word` of the record at `slot`. Panics if `slot` is not below the capacity:
    /// callers pass slots they found valid ([`Records::is_valid`]).
    pub fn word(&self, slot: u64, word: R::Word) -> &AtomicU64 {
        self.table.word(slot, word.index())
    }

    /// Whether `slot` holds a record.
    pub fn is_valid(&self, slot: u64) -> bool {
        self.table.is_valid(slot)
    }

    /// Drops the record at `slot` (one store) and keeps the slot for reuse.
    pub fn remove(&self, slot: u64) {
        self.table.remove(slot);
    }

    /// One past the highest slot ever used: every record is in `0..high_water()`.
    pub fn high_water(&self) -> u64 {
        self.table.high_water()
    }

    /// The table's hash index, if `R::INDEXED`.
    pub fn index(&self) -> Option<&HashIndex> {
        self.index.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct Thing {
        id: u64,
        kind: u32,
        mode: u32,
    }

    #[derive(Clone, Copy)]
    enum ThingWord {
        Count,
        Parent,
    }

    impl Word for ThingWord {
        const COUNT: u32 = 2;
        fn index(self) -> usize {
            self as usize
        }
    }

    impl Record for Thing {
        const NAME: &'static str = "things";
        const CAPACITY: u64 = 8;
        const INDEXED: bool = true;
        type Word = ThingWord;
    }

    #[test]
    fn records_round_trip_with_named_words_and_reopen() {
        assert_eq!(
            Thing::SPEC,
            TableSpec {
                name: "things",
                words: 2,
                bytes: 16,
                capacity: 8,
                indexed: true,
                index_scheme: 0
            }
        );
        let store = Store::create("t", &[Thing::SPEC]).unwrap();
        let things = Records::<Thing>::open(&store).unwrap();
        assert!(things.index().is_some());
        let thing = Thing { id: 9, kind: 1, mode: 0o644 };
        let slot = things.insert(&thing, &[(ThingWord::Parent, 5)]).unwrap();
        assert_eq!(things.get(slot), Some(thing));
        assert_eq!(
            things.word(slot, ThingWord::Count).load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(
            things.word(slot, ThingWord::Parent).load(std::sync::atomic::Ordering::Relaxed),
            5
        );

        let again = Store::open(store.fd().try_clone_to_owned().unwrap(), &[Thing::SPEC]).unwrap();
        let things = Records::<Thing>::open(&again).unwrap();
        assert_eq!(things.get(slot), Some(thing));
        things.remove(slot);
        assert_eq!(things.get(slot), None);
    }

    #[test]
    fn a_table_the_layout_lacks_is_an_error() {
        let store = Store::create("t", &[]).unwrap();
        assert!(matches!(Records::<Thing>::open(&store), Err(StoreError::NoTable("things"))));
    }
}
