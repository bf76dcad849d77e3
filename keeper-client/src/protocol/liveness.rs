//! The liveness page: how a server's threads tell a hot standby, through the kernel, that every
//! one of them has left user space for good, before the process is torn down and its pidfd
//! fires (docs/keeper-protocol.md, LIVENESS).
//!
//! A server makes a sealed memfd of [`LIVENESS_LEN`] bytes, writes [`LIVENESS_MAGIC`] in its
//! first word, and sends it to the keeper (LIVENESS). Each of its threads takes a free slot
//! (a word at [`LIVENESS_FIRST_SLOT`] or after, compare-and-swap from 0) by storing its thread
//! id with [`FUTEX_WAITERS`] set, and names that word in its robust futex list
//! (`set_robust_list(2)`); a thread that ends by itself stores 0 first. When a thread dies
//! holding its slot, the kernel, in `do_exit` before it frees the thread's address space,
//! stores [`FUTEX_WAITERS`]` | `[`FUTEX_OWNER_DIED`] there and wakes a waiter: a slot that
//! says so belongs to a thread that will never run user code again and is inside no syscall.
//! The page proves the process gone once no slot is held and at least one says died
//! ([`proves_exit`]).

/// Bytes of a liveness page.
pub const LIVENESS_LEN: usize = 4096;
/// First word of a liveness page: `"FKLV"` read as a little-endian u32.
pub const LIVENESS_MAGIC: u32 = 0x564C_4B46;
/// Second word: nonzero once a thread found no free slot (the page then proves nothing).
pub const LIVENESS_FULL_WORD: usize = 1;
/// Index of the first slot word; the slots run to the end of the page.
pub const LIVENESS_FIRST_SLOT: usize = 16;
/// How many slots a page has.
pub const LIVENESS_SLOTS: usize = LIVENESS_LEN / 4 - LIVENESS_FIRST_SLOT;
/// The futex word bit the kernel keeps when a robust futex's owner dies (linux/futex.h).
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
/// The futex word bit the kernel sets when a robust futex's owner dies (linux/futex.h).
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// The thread id bits of a futex word (linux/futex.h).
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// What one slot word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Not held: never taken, or given back by a thread that ended by itself.
    Free,
    /// Held by a live thread (its id).
    Held(u32),
    /// Its thread died holding it.
    Died,
}

impl Slot {
    /// The state of a slot whose word is `word`.
    pub fn of(word: u32) -> Slot {
        if word & FUTEX_OWNER_DIED != 0 {
            Slot::Died
        } else if word & FUTEX_TID_MASK != 0 {
            Slot::Held(word & FUTEX_TID_MASK)
        } else {
            Slot::Free
        }
    }
}

/// Whether `page` (a liveness page's bytes, as read) proves that every thread of its server
/// died: the magic is there, no thread overflowed the slots, no slot is held, and at least
/// one says died. Anything else (a short read, another layout, a live thread) proves nothing.
pub fn proves_exit(page: &[u8]) -> bool {
    if page.len() != LIVENESS_LEN {
        return false;
    }
    let word = |i: usize| {
        let mut b = [0; 4];
        b.copy_from_slice(&page[i * 4..i * 4 + 4]);
        u32::from_le_bytes(b)
    };
    if word(0) != LIVENESS_MAGIC || word(LIVENESS_FULL_WORD) != 0 {
        return false;
    }
    let mut died = false;
    for i in LIVENESS_FIRST_SLOT..LIVENESS_LEN / 4 {
        match Slot::of(word(i)) {
            Slot::Free => {}
            Slot::Held(_) => return false,
            Slot::Died => died = true,
        }
    }
    died
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(slots: &[u32]) -> Vec<u8> {
        let mut p = vec![0; LIVENESS_LEN];
        p[..4].copy_from_slice(&LIVENESS_MAGIC.to_le_bytes());
        for (i, w) in slots.iter().enumerate() {
            let at = (LIVENESS_FIRST_SLOT + i) * 4;
            p[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
        p
    }

    #[test]
    fn only_a_page_whose_slots_all_died_or_are_free_proves_an_exit() {
        let died = FUTEX_WAITERS | FUTEX_OWNER_DIED;
        assert!(proves_exit(&page(&[died, 0, died])));
        assert!(!proves_exit(&page(&[died, FUTEX_WAITERS | 1234, died])), "a live thread");
        assert!(!proves_exit(&page(&[0, 0])), "nothing died");
        assert!(!proves_exit(&page(&[])), "no slot ever held");
        let mut full = page(&[died]);
        full[4] = 1;
        assert!(!proves_exit(&full), "a thread found no slot");
        let mut other = page(&[died]);
        other[0] ^= 1;
        assert!(!proves_exit(&other), "not a liveness page");
        assert!(!proves_exit(&page(&[died])[..100]), "short");
        assert_eq!(Slot::of(FUTEX_WAITERS | 77), Slot::Held(77));
        assert_eq!(Slot::of(0), Slot::Free);
        assert_eq!(Slot::of(FUTEX_OWNER_DIED), Slot::Died);
    }
}
