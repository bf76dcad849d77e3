//! A table of fixed-size records in the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::map::SharedMap;
use super::{StoreError, TableSpec};

const FREE: u64 = 0;
const VALID: u64 = 1;

/// Fixed-size records addressed by slot number. Slots are claimed from a high-water mark kept
/// in the store, or reused from the slots this process freed. Callers serialize `insert`
/// with `read` of the same slot (a slot freed and reused while being read could tear).
#[derive(Debug)]
pub struct Table {
    map: Arc<SharedMap>,
    spec: TableSpec,
    region: usize,
    slot_size: usize,
    hwm: usize,
    free: Mutex<Vec<u64>>,
}

impl Table {
    pub(super) fn new(
        map: Arc<SharedMap>,
        spec: TableSpec,
        region: usize,
        slot_size: usize,
        hwm: usize,
    ) -> Self {
        Table { map, spec, region, slot_size, hwm, free: Mutex::new(Vec::new()) }
    }

    /// Most records the table holds.
    pub fn capacity(&self) -> u64 {
        self.spec.capacity
    }

    /// Slots ever claimed (valid or freed): scanning `0..high_water()` sees every record.
    pub fn high_water(&self) -> u64 {
        self.map.word(self.hwm).load(Ordering::Acquire).min(self.spec.capacity)
    }

    fn at(&self, slot: u64) -> usize {
        self.region + slot as usize * self.slot_size
    }

    fn state(&self, slot: u64) -> &AtomicU64 {
        self.map.word(self.at(slot))
    }

    /// Publishes a record and returns its slot. `words` and `bytes` may be shorter than the
    /// record; the rest is zero.
    pub fn insert(&self, words: &[u64], bytes: &[u8]) -> Result<u64, StoreError> {
        assert!(words.len() <= self.spec.words as usize && bytes.len() <= self.spec.bytes as usize);
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let slot = match reused {
            Some(slot) => slot,
            None => {
                let slot = self.map.word(self.hwm).fetch_add(1, Ordering::AcqRel);
                if slot >= self.spec.capacity {
                    self.map.word(self.hwm).fetch_sub(1, Ordering::AcqRel);
                    return Err(StoreError::Full(self.spec.name));
                }
                slot
            }
        };
        let at = self.at(slot);
        for i in 0..self.spec.words as usize {
            self.map
                .word(at + 8 + i * 8)
                .store(words.get(i).copied().unwrap_or(0), Ordering::Relaxed);
        }
        let payload = at + 8 + self.spec.words as usize * 8;
        self.map.write_bytes(payload, bytes);
        if bytes.len() < self.spec.bytes as usize {
            self.map.write_bytes(
                payload + bytes.len(),
                &vec![0; self.spec.bytes as usize - bytes.len()],
            );
        }
        self.state(slot).store(VALID, Ordering::Release);
        Ok(slot)
    }

    /// Whether `slot` holds a record.
    pub fn is_valid(&self, slot: u64) -> bool {
        slot < self.spec.capacity && self.state(slot).load(Ordering::Acquire) == VALID
    }

    /// Atomic word `i` of the record at `slot`.
    pub fn word(&self, slot: u64, i: usize) -> &AtomicU64 {
        assert!(slot < self.spec.capacity && i < self.spec.words as usize);
        self.map.word(self.at(slot) + 8 + i * 8)
    }

    /// Copies the record's payload into `buf` (at most `bytes` long); false if no record.
    pub fn read(&self, slot: u64, buf: &mut [u8]) -> bool {
        if !self.is_valid(slot) {
            return false;
        }
        let len = buf.len().min(self.spec.bytes as usize);
        self.map.read_bytes(self.at(slot) + 8 + self.spec.words as usize * 8, &mut buf[..len]);
        true
    }

    /// Overwrites payload bytes of a published record at `offset`. Only for bytes no reader
    /// looks at until a later store of an atomic word says they are complete (a journal
    /// entry's result, behind its state word).
    pub fn write_payload(&self, slot: u64, offset: usize, bytes: &[u8]) {
        assert!(slot < self.spec.capacity && offset + bytes.len() <= self.spec.bytes as usize);
        self.map.write_bytes(self.at(slot) + 8 + self.spec.words as usize * 8 + offset, bytes);
    }

    /// Drops the record at `slot` (one store) and keeps the slot for reuse.
    pub fn remove(&self, slot: u64) {
        if self.is_valid(slot) {
            self.state(slot).store(FREE, Ordering::Release);
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
        }
    }
}
