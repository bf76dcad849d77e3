//! The journal of in-flight non-idempotent requests, in the state store.
//!
//! One record per request between its intent and its reply: words [unique, state, intent,
//! counted nodeid, opened fh], payload
//! [reply length u32, pad u32, reply bytes]. The reply bytes are written while the state
//! says "intent", then the state word flips to "done" in one store: a reader after a crash
//! sees either the intent alone or the whole reply.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use fuse_server::journal::{Journal, JournalRecord};

use crate::store::{HashIndex, Store, Table, TableSpec};

/// Largest reply journaled: header + entry_out + open_out, with room to spare.
const MAX_REPLY: usize = 248;
const INTENT: u64 = 1;
const DONE: u64 = 2;
const UNIQUE: usize = 0;
const STATE: usize = 1;
const INTENT_WORD: usize = 2;
const COUNTED: usize = 3;
const OPENED: usize = 4;

/// The store table a journal needs; include it in the filesystem's store layout.
pub const JOURNAL: TableSpec = TableSpec {
    name: "journal",
    words: 5,
    bytes: 8 + MAX_REPLY as u32,
    capacity: 1 << 14,
    indexed: true,
    index_scheme: 0,
};

/// A [`Journal`] kept in a [`Store`]'s `journal` table.
pub struct StoreJournal {
    table: Table,
    index: HashIndex,
    /// Serializes index changes (one writer at a time).
    lock: Mutex<()>,
}

fn hash(unique: u64) -> u64 {
    let h = unique.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 31)
}

impl StoreJournal {
    /// The journal in `store`'s `journal` table, if its layout has one (its index rebuilt
    /// first if it was built under another scheme: the store is input).
    pub fn open(store: &Store) -> Option<StoreJournal> {
        let i = store.find_table(JOURNAL.name)?;
        if !store.index_is_current(i) {
            let rebuilt = store.rebuild_index(i, |table, slot| {
                Some(hash(table.word(slot, UNIQUE).load(Ordering::Acquire)))
            });
            if let Err(error) = rebuilt {
                tracing::warn!(%error, "the journal's index cannot be rebuilt");
                return None;
            }
        }
        let (table, index) = store.table(i);
        Some(StoreJournal { table, index: index?, lock: Mutex::new(()) })
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Journal for StoreJournal {
    fn begin(&self, unique: u64, intent: u64) -> Option<u64> {
        let _guard = self.locked();
        let slot = self.table.insert(&[unique, INTENT, intent, 0, 0], &[]).ok()?;
        if !self.index.insert(hash(unique), slot) {
            self.table.remove(slot);
            return None;
        }
        Some(slot)
    }

    fn counted(&self, entry: u64, nodeid: u64) {
        self.table.word(entry, COUNTED).store(nodeid, Ordering::Release);
    }

    fn opened(&self, entry: u64, fh: u64) {
        self.table.word(entry, OPENED).store(fh, Ordering::Release);
    }

    fn record(&self, entry: u64, reply: &[u8]) {
        if reply.len() > MAX_REPLY {
            // Too large to journal (no such non-idempotent reply exists): the entry stays an
            // intent and a resend is settled.
            return;
        }
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(reply.len() as u32).to_le_bytes());
        self.table.write_payload(entry, 0, &head);
        self.table.write_payload(entry, 8, reply);
        self.table.word(entry, STATE).store(DONE, Ordering::Release);
    }

    fn end(&self, entry: u64) {
        let _guard = self.locked();
        let unique = self.table.word(entry, UNIQUE).load(Ordering::Relaxed);
        self.index.remove(hash(unique), entry);
        self.table.remove(entry);
    }

    fn find(&self, unique: u64) -> Option<JournalRecord> {
        let _guard = self.locked();
        let slot = self.index.find(hash(unique), |slot| {
            self.table.is_valid(slot)
                && self.table.word(slot, UNIQUE).load(Ordering::Relaxed) == unique
        })?;
        let word = |i| self.table.word(slot, i).load(Ordering::Acquire);
        let mut record = JournalRecord {
            entry: slot,
            intent: word(INTENT_WORD),
            reply: None,
            counted: word(COUNTED),
            opened: word(OPENED),
        };
        if word(STATE) != DONE {
            return Some(record);
        }
        let mut payload = vec![0u8; 8 + MAX_REPLY];
        self.table.read(slot, &mut payload);
        let len = (u32::from_le_bytes(payload[..4].try_into().unwrap_or_default()) as usize)
            .min(MAX_REPLY);
        record.reply = Some(payload[8..8 + len].to_vec());
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_then_reply_then_gone() {
        let store = Store::create("j", &[JOURNAL]).unwrap();
        let j = StoreJournal::open(&store).unwrap();
        let e = j.begin(42, 7).unwrap();
        assert_eq!(
            j.find(42),
            Some(JournalRecord { entry: e, intent: 7, reply: None, counted: 0, opened: 0 }),
            "an intent alone"
        );
        j.counted(e, 9);
        j.opened(e, 3);
        assert_eq!((j.find(42).unwrap().counted, j.find(42).unwrap().opened), (9, 3));
        j.record(e, b"0123456789abcdefREPLY");
        // A restarted server sees the reply.
        let again = Store::open(store.fd().try_clone_to_owned().unwrap(), &[JOURNAL]).unwrap();
        let j2 = StoreJournal::open(&again).unwrap();
        let found = j2.find(42).unwrap();
        assert_eq!((found.entry, found.intent), (e, 7));
        assert_eq!(found.reply.as_deref(), Some(&b"0123456789abcdefREPLY"[..]));
        assert_eq!(j2.find(43), None);
        j2.end(e);
        assert_eq!(j.find(42), None);
    }

    #[test]
    fn stores_without_a_journal_table_have_none() {
        let store = Store::create("j", &[]).unwrap();
        assert!(StoreJournal::open(&store).is_none());
    }
}
