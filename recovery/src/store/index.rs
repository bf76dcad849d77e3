//! An open-addressing hash index (key hash -> slot) in the store, for tables looked up by
//! key. Every change is one word store, so a crash leaves the index usable: at worst a
//! record published just before the crash is not yet indexed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::map::SharedMap;

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = u64::MAX;
const SLOT_BITS: u64 = (1 << 48) - 1;

/// Entries are `hash_high16 << 48 | (slot + 1)`. Linear probing; removal leaves a tombstone
/// only where a probe may need to pass it (`clear`).
/// Callers serialize changes (one writer at a time).
#[derive(Debug, Clone)]
pub struct HashIndex {
    map: Arc<SharedMap>,
    offset: usize,
    mask: u64,
}

impl HashIndex {
    pub(super) fn new(map: Arc<SharedMap>, offset: usize, capacity: u64) -> Self {
        HashIndex { map, offset, mask: capacity - 1 }
    }

    fn entry(&self, i: u64) -> &std::sync::atomic::AtomicU64 {
        self.map.word(self.offset + (i & self.mask) as usize * 8)
    }

    fn tag(hash: u64) -> u64 {
        hash & !SLOT_BITS
    }

    /// The slot whose key hashes to `hash` and for which `is_match` holds.
    pub fn find(&self, hash: u64, mut is_match: impl FnMut(u64) -> bool) -> Option<u64> {
        for probe in 0..=self.mask {
            let e = self.entry(hash.wrapping_add(probe)).load(Ordering::Acquire);
            if e == EMPTY {
                return None;
            }
            if e != TOMBSTONE && e & !SLOT_BITS == Self::tag(hash) {
                // Slot bits 0 (slot "-1") is no entry this code writes: a damaged index.
                if let Some(slot) = (e & SLOT_BITS).checked_sub(1)
                    && is_match(slot)
                {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Indexes `slot` under `hash`. False if the index is full.
    pub fn insert(&self, hash: u64, slot: u64) -> bool {
        for probe in 0..=self.mask {
            let entry = self.entry(hash.wrapping_add(probe));
            let e = entry.load(Ordering::Acquire);
            if e == EMPTY || e == TOMBSTONE {
                entry.store(Self::tag(hash) | (slot + 1), Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Empties entry `at`. A probe ends at an empty entry, so the entry becomes a tombstone
    /// unless the next one is empty: then no probe needs it, nor the tombstones just before
    /// it, and they all become empty again. (Tombstones never cleared would, over a long
    /// mount's millions of lookups and forgets, leave no empty entry, and every miss would
    /// probe the whole index.) Each store leaves a valid index, so a crash between them
    /// only leaves tombstones.
    fn clear(&self, at: u64) {
        if self.entry(at.wrapping_add(1)).load(Ordering::Acquire) != EMPTY {
            self.entry(at).store(TOMBSTONE, Ordering::Release);
            return;
        }
        self.entry(at).store(EMPTY, Ordering::Release);
        for back in 1..=self.mask {
            let entry = self.entry(at.wrapping_sub(back));
            if entry.load(Ordering::Acquire) != TOMBSTONE {
                return;
            }
            entry.store(EMPTY, Ordering::Release);
        }
    }

    /// Entries that are tombstones (for tests).
    #[cfg(test)]
    pub fn tombstones(&self) -> usize {
        (0..=self.mask).filter(|&i| self.entry(i).load(Ordering::Relaxed) == TOMBSTONE).count()
    }

    /// Removes `slot`'s entry under `hash`.
    pub fn remove(&self, hash: u64, slot: u64) {
        let wanted = Self::tag(hash) | (slot + 1);
        for probe in 0..=self.mask {
            let entry = self.entry(hash.wrapping_add(probe));
            let e = entry.load(Ordering::Acquire);
            if e == EMPTY {
                return;
            }
            if e == wanted {
                self.clear(hash.wrapping_add(probe));
                return;
            }
        }
    }
}
