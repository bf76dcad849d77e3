//! A table of fixed-size records in the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::map::SharedMap;
use super::{StoreError, TableSpec};

const FREE: u64 = 0;
const VALID: u64 = 1;
/// Taken by an insert that has not published its record yet. A writer killed in between
/// leaves the slot claimed: one slot lost per such crash, never one used twice.
const CLAIMED: u64 = 2;

/// Fixed-size records addressed by slot number. Slots are claimed from a high-water mark kept
/// in the store, or reused from free slots: those this process freed, and those an earlier
/// process freed (found by a scan, see `claim`). Callers serialize `insert` with `read` of
/// the same slot (a slot freed and reused while being read could tear).
#[derive(Debug)]
pub struct Table {
    map: Arc<SharedMap>,
    spec: TableSpec,
    region: usize,
    slot_size: usize,
    hwm: usize,
    free: Mutex<FreeSlots>,
}

/// Slots known free; slots below `inherited` (the high-water mark when this table was
/// opened) were claimed by earlier processes and not yet scanned for free ones; `fresh`
/// counts slots taken from the high-water mark since the opening.
#[derive(Debug, Default)]
struct FreeSlots {
    slots: Vec<u64>,
    inherited: u64,
    fresh: u64,
}

impl Table {
    pub(super) fn new(
        map: Arc<SharedMap>,
        spec: TableSpec,
        region: usize,
        slot_size: usize,
        hwm: usize,
    ) -> Self {
        let mut table = Table { map, spec, region, slot_size, hwm, free: Mutex::default() };
        let inherited = table.high_water();
        table.free.get_mut().unwrap_or_else(|p| p.into_inner()).inherited = inherited;
        table
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
        let slot = self.claim()?;
        self.publish(slot, words, bytes);
        Ok(slot)
    }

    /// A slot for a new record, marked CLAIMED: one this process knows free, else a new one
    /// from the high-water mark. Slots that earlier processes freed are known to nobody: one
    /// scan of the inherited slots (`0..` the high-water mark at opening) lists them, when
    /// the table is full or once this process has taken a quarter as many new slots (so a
    /// restarted server's store grows by at most a quarter before reusing what its
    /// predecessors freed, and the scan costs O(1) per insert amortized). Slots above that
    /// mark that this process frees are on its list already. Every claim is a
    /// compare-and-swap from FREE, so a slot listed twice (two tables on one region), or by
    /// two processes at once (a handover), is still given to one insert only.
    fn claim(&self) -> Result<u64, StoreError> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            while let Some(slot) = free.slots.pop() {
                if self.try_claim(slot) {
                    return Ok(slot);
                }
            }
            let inherited = free.inherited;
            if inherited > 0
                && (self.high_water() >= self.spec.capacity || free.fresh * 4 >= inherited)
            {
                free.inherited = 0;
                free.slots = (0..inherited)
                    .rev()
                    .filter(|&slot| self.state(slot).load(Ordering::Acquire) == FREE)
                    .collect();
                continue;
            }
            let slot = self.map.word(self.hwm).fetch_add(1, Ordering::AcqRel);
            if slot >= self.spec.capacity {
                self.map.word(self.hwm).fetch_sub(1, Ordering::AcqRel);
                return Err(StoreError::Full(self.spec.name));
            }
            free.fresh += 1;
            if self.try_claim(slot) {
                return Ok(slot);
            }
        }
    }

    /// Publishes a record at `slot` itself, for a table being filled again from records
    /// saved elsewhere (their slots are names someone holds: nodeids). Slots must come in
    /// ascending order into a table no other insert uses yet; the slots skipped are kept
    /// for reuse. `None` if `slot` is beyond the capacity or already taken.
    pub fn insert_at(&self, slot: u64, words: &[u64], bytes: &[u8]) -> Option<()> {
        assert!(words.len() <= self.spec.words as usize && bytes.len() <= self.spec.bytes as usize);
        if slot >= self.spec.capacity {
            return None;
        }
        let hwm = self.map.word(self.hwm);
        let below = hwm.fetch_max(slot + 1, Ordering::AcqRel);
        if below < slot {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            free.slots.extend((below..slot).rev());
        }
        if !self.try_claim(slot) {
            return None;
        }
        self.publish(slot, words, bytes);
        Some(())
    }

    /// Fills the claimed `slot` with `words` and `bytes` (the rest zero) and marks it valid.
    fn publish(&self, slot: u64, words: &[u64], bytes: &[u8]) {
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
    }

    fn try_claim(&self, slot: u64) -> bool {
        self.state(slot)
            .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether `slot` holds a record.
    pub fn is_valid(&self, slot: u64) -> bool {
        slot < self.spec.capacity && self.state(slot).load(Ordering::Acquire) == VALID
    }

    /// Atomic word `i` of the record at `slot`. Panics if `slot` is not below the capacity or
    /// `i` not below the spec's word count: callers pass slots they found valid
    /// ([`Table::is_valid`] is false for any slot out of range, whatever the store says).
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
            self.free.lock().unwrap_or_else(|p| p.into_inner()).slots.push(slot);
        }
    }
}
