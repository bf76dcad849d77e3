//! The liveness page (`fuse_keeper_client::protocol::liveness`, docs/keeper-protocol.md
//! LIVENESS): a serving server's threads each hold a slot of it as a robust futex, so that the
//! kernel marks the slot died the moment the thread leaves user space for good; a hot standby
//! waits on the slots and tells the keeper (DIED) as soon as every one died, which is before
//! the dead process's address space and files are torn down and its pidfd fires.
//!
//! The only `unsafe` here: mapping the page, naming a slot in the calling thread's robust
//! futex list (`set_robust_list(2)`), and the futex words as atomics.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use fuse_keeper_client::protocol::liveness::{
    FUTEX_WAITERS, LIVENESS_FIRST_SLOT, LIVENESS_FULL_WORD, LIVENESS_LEN, LIVENESS_MAGIC, Slot,
};
use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};

/// A `MAP_SHARED` mapping of a whole liveness page, read-write (the server's) or read-only
/// (a standby's). Only ever accessed as atomic 32-bit words.
#[derive(Debug)]
struct Page {
    base: NonNull<AtomicU32>,
}

// SAFETY: plain shared memory, owned by this value until it is dropped, only ever accessed
// through atomics.
unsafe impl Send for Page {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for Page {}

impl Page {
    fn map(fd: BorrowedFd<'_>, writable: bool) -> io::Result<Page> {
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a fresh mapping at an address the kernel chooses aliases no Rust object. The
        // page is sealed against shrinking (made so here, checked by the keeper before it
        // hands a page out), so no access of its LIVENESS_LEN bytes faults past its end.
        let ptr =
            unsafe { mmap(std::ptr::null_mut(), LIVENESS_LEN, prot, MapFlags::SHARED, fd, 0) }?;
        let base = NonNull::new(ptr.cast::<AtomicU32>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Page { base })
    }

    /// Word `i` (`i` < LIVENESS_LEN / 4).
    fn word(&self, i: usize) -> &AtomicU32 {
        assert!(i < LIVENESS_LEN / 4, "liveness word {i} out of the page");
        // SAFETY: in the mapping (checked), 4-byte aligned (the base is page aligned), alive as
        // long as `self`, and only ever accessed as atomics (a read-only mapping only loads,
        // and futex waits, which only read).
        unsafe { &*self.base.as_ptr().add(i) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no reference to it outlives `self`.
        let _ = unsafe { munmap(self.base.as_ptr().cast(), LIVENESS_LEN) };
    }
}

/// A serving server's liveness page: its threads hold slots of it ([`Liveness::hold`]) for as
/// long as they may touch the connection or the filesystem's source.
#[derive(Debug)]
pub struct Liveness {
    fd: OwnedFd,
    page: Page,
}

impl Liveness {
    /// A new page: a memfd of LIVENESS_LEN bytes sealed against shrinking, growing and
    /// further seals, mapped read-write, its magic written.
    pub fn create() -> io::Result<Arc<Liveness>> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let fd = rustix::fs::memfd_create(
            "fuse-liveness",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, LIVENESS_LEN as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let page = Page::map(fd.as_fd(), true)?;
        page.word(0).store(LIVENESS_MAGIC, Ordering::Release);
        Ok(Arc::new(Liveness { fd, page }))
    }

    /// The page's memfd, for LIVENESS.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The calling thread takes a free slot and names it in its robust futex list, until the
    /// guard is dropped (in this thread) or the thread dies. `None` if every slot is taken:
    /// the page is then marked full and proves nothing (standbys wait for the pidfd).
    pub fn hold(self: &Arc<Self>) -> Option<HeldSlot> {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let value = tid | FUTEX_WAITERS;
        let index = (LIVENESS_FIRST_SLOT..LIVENESS_LEN / 4).find(|&i| {
            self.page
                .word(i)
                .compare_exchange(0, value, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        let Some(index) = index else {
            self.page.word(LIVENESS_FULL_WORD).store(1, Ordering::Release);
            tracing::warn!("every liveness slot is taken: a standby waits for the pidfd");
            return None;
        };
        let word = self.page.word(index) as *const AtomicU32 as usize;
        let mut node = Box::new(RobustNode {
            head: RobustListHead {
                list: RobustList { next: std::ptr::null() },
                futex_offset: 0,
                list_op_pending: std::ptr::null(),
            },
            entry: RobustList { next: std::ptr::null() },
        });
        let entry = &raw const node.entry;
        node.head.list.next = entry;
        node.entry.next = &raw const node.head.list;
        node.head.futex_offset = word.wrapping_sub(entry as usize) as isize;
        let previous = robust_list();
        set_robust_list(&raw const node.head);
        Some(HeldSlot {
            liveness: self.clone(),
            index,
            node,
            previous,
            _not_send: std::marker::PhantomData,
        })
    }
}

/// A thread's slot of a [`Liveness`] page ([`Liveness::hold`]). Dropping it gives the slot
/// back and puts the thread's previous robust list back; it must be dropped by the thread
/// that took it (it is not `Send`).
#[derive(Debug)]
pub struct HeldSlot {
    liveness: Arc<Liveness>,
    index: usize,
    /// Named by the kernel's robust list pointer until dropped: boxed, so it does not move.
    node: Box<RobustNode>,
    previous: (usize, usize),
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        // The list first: once the slot is free, the kernel must not find it named any more.
        let (head, len) = self.previous;
        restore_robust_list(head, len);
        let _ = &self.node;
        self.liveness.page.word(self.index).store(0, Ordering::Release);
    }
}

/// `struct robust_list` (linux/futex.h).
#[repr(C)]
#[derive(Debug)]
struct RobustList {
    next: *const RobustList,
}

/// `struct robust_list_head` (linux/futex.h).
#[repr(C)]
#[derive(Debug)]
struct RobustListHead {
    list: RobustList,
    futex_offset: isize,
    list_op_pending: *const RobustList,
}

/// A one-entry robust list: the head, and the entry whose futex word is the thread's slot.
#[repr(C)]
#[derive(Debug)]
struct RobustNode {
    head: RobustListHead,
    entry: RobustList,
}

/// The calling thread's robust list (head, length), as the C library registered it.
fn robust_list() -> (usize, usize) {
    let mut head: usize = 0;
    let mut len: usize = 0;
    // SAFETY: get_robust_list(0, ...) writes one pointer and one size_t for the calling
    // thread into the two locals.
    let rc = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &raw mut head, &raw mut len) };
    if rc != 0 { (0, 0) } else { (head, len) }
}

/// Names `head` as the calling thread's robust list.
fn set_robust_list(head: *const RobustListHead) {
    // SAFETY: `head` points to a well-formed one-entry list that stays where it is until the
    // list is replaced (HeldSlot::drop) or the thread exits; the kernel only reads it there
    // and writes the futex word it names, a word of a live shared mapping of this process.
    let _ = unsafe {
        libc::syscall(libc::SYS_set_robust_list, head, std::mem::size_of::<RobustListHead>())
    };
}

/// Puts back a robust list [`robust_list`] returned (a null head registers none).
fn restore_robust_list(head: usize, len: usize) {
    // SAFETY: the list the C library registered for this thread, which it keeps for the
    // thread's life; the kernel validates the length.
    let _ = unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) };
}

/// How long one futex wait of [`wait_for_exit`] lasts before it looks at the page again.
/// A safety net only (a waiter woken passes the wake on), and how long a replaced watcher may
/// linger: long enough that a thousand parked standbys wake the machine rarely.
pub const RESCAN: std::time::Duration = std::time::Duration::from_secs(1);
const RESCAN_TIMESPEC: rustix::thread::futex::Timespec =
    rustix::thread::futex::Timespec { tv_sec: RESCAN.as_secs() as i64, tv_nsec: 0 };

/// How a standby's wait on a server's liveness page ended ([`wait_for_exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Every slot held is marked died: every thread of the server left user space for good.
    Died,
    /// The page proves nothing (not a liveness page, full, or no thread holds a slot): wait
    /// for the keeper's pidfd instead.
    Unproven,
    /// The caller set `cancelled` (a newer WATCH replaced this one).
    Cancelled,
}

/// Waits, a standby's thread, until the read-only liveness page `page` shows every thread of
/// its server died (futex waits on the slots still held), then calls `died` at once. Returns
/// at once, without calling it, if the page proves nothing.
///
/// The calling thread asks for the lowest real-time priority first (`SCHED_FIFO` 1, if the
/// process may: root, or an `RLIMIT_RTPRIO`): the kernel wakes it while the dead server's last
/// thread is still tearing the process down, often on the same CPU, and a thread of the
/// normal class would wait there until that teardown ends, which is what this wait is for
/// not waiting. It does a bounded amount of work once woken (a scan of the page, `died`), and
/// then drops to `SCHED_IDLE`, so that whatever it woke (the keeper) runs before the rest of
/// this thread does.
///
/// The kernel wakes one waiter of a dead thread's slot: a waiter woken passes the wake on
/// (FUTEX_WAKE of every other), and each wait also ends after [`RESCAN`] to look again, so
/// that several waiters on one page (a standby parked at two keepers, or one that parked
/// again) each see the death. `cancelled` is looked at then: once set, it returns
/// [`Waited::Cancelled`] without calling `died`.
pub fn wait_for_exit(
    page: &OwnedFd,
    cancelled: &std::sync::atomic::AtomicBool,
    died: impl FnOnce(),
) -> io::Result<Waited> {
    // Checked here too, not only by the keeper: a page that could shrink under the mapping
    // would kill this process with SIGBUS.
    let sealed = rustix::fs::fcntl_get_seals(page)
        .is_ok_and(|seals| seals.contains(rustix::fs::SealFlags::SHRINK));
    let size = rustix::fs::fstat(page)?.st_size;
    if !sealed || usize::try_from(size).ok() != Some(LIVENESS_LEN) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a liveness page (sealed against shrinking: {sealed}, {size} bytes)"),
        ));
    }
    let page = Page::map(page.as_fd(), false)?;
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's (pid 0) policy from a valid sched_param; it reads the
    // struct and touches no memory of ours. Refused (EPERM) without the privilege: ignored.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
    if page.word(0).load(Ordering::Acquire) != LIVENESS_MAGIC {
        return Ok(Waited::Unproven);
    }
    loop {
        if cancelled.load(Ordering::Acquire) {
            return Ok(Waited::Cancelled);
        }
        if page.word(LIVENESS_FULL_WORD).load(Ordering::Acquire) != 0 {
            return Ok(Waited::Unproven);
        }
        let mut died_seen = false;
        let mut held = None;
        for i in LIVENESS_FIRST_SLOT..LIVENESS_LEN / 4 {
            let value = page.word(i).load(Ordering::Acquire);
            match Slot::of(value) {
                Slot::Free => {}
                Slot::Died => died_seen = true,
                Slot::Held(_) => {
                    held = Some((i, value));
                    break;
                }
            }
        }
        match held {
            Some((i, value)) => {
                // Shared (not private): the dying thread's kernel wakes it through its own
                // mapping of the same memfd. EAGAIN (changed meanwhile), EINTR, ETIMEDOUT:
                // look again.
                let word = page.word(i);
                let flags = rustix::thread::futex::Flags::empty();
                let _ = rustix::thread::futex::wait(word, flags, value, Some(&RESCAN_TIMESPEC));
                if word.load(Ordering::Acquire) != value {
                    let _ = rustix::thread::futex::wake(word, flags, u32::MAX);
                }
            }
            None if died_seen => {
                died();
                let idle = libc::sched_param { sched_priority: 0 };
                // SAFETY: as above, for the calling thread.
                let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const idle) };
                return Ok(Waited::Died);
            }
            None => return Ok(Waited::Unproven),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_keeper_client::protocol::liveness::LIVENESS_SLOTS;

    /// Slot `i`'s state as the page says now.
    fn slot(liveness: &Liveness, i: usize) -> Slot {
        Slot::of(liveness.page.word(i).load(Ordering::Acquire))
    }

    /// A read-only open of the page, as the keeper hands it to a standby.
    fn read_only(liveness: &Liveness) -> OwnedFd {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", liveness.fd().as_raw_fd());
        rustix::fs::open(path, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap()
    }

    /// Runs `wait_for_exit` in a thread of its own (it changes its thread's scheduling).
    fn wait_in_thread(page: OwnedFd) -> std::thread::JoinHandle<(Waited, bool)> {
        waiting_thread(page).1
    }

    /// As [`wait_in_thread`], with the thread's id.
    fn waiting_thread(page: OwnedFd) -> (i32, std::thread::JoinHandle<(Waited, bool)>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
            let mut called = false;
            let never = std::sync::atomic::AtomicBool::new(false);
            let waited = wait_for_exit(&page, &never, || called = true).unwrap();
            (waited, called)
        });
        (rx.recv().unwrap(), handle)
    }

    /// Waits until thread `tid` of this process sleeps in a futex wait.
    fn until_in_futex_wait(tid: i32) {
        let wchan = format!("/proc/self/task/{tid}/wchan");
        while !std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("futex")) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_slot_given_back_is_free_and_one_whose_thread_died_holding_it_says_died() {
        let liveness = Liveness::create().unwrap();
        let l = liveness.clone();
        let given_back = std::thread::spawn(move || {
            let held = l.hold().unwrap();
            let index = held.index;
            assert_eq!(
                slot(&l, index),
                Slot::Held(rustix::thread::gettid().as_raw_nonzero().get() as u32)
            );
            drop(held);
            index
        })
        .join()
        .unwrap();
        assert_eq!(slot(&liveness, given_back), Slot::Free);
        let l = liveness.clone();
        // The thread ends without giving its slot back: the kernel marks it, in the thread's
        // exit, before join() returns (the join waits for the thread id the kernel clears
        // after it walked the robust list).
        let died = std::thread::spawn(move || {
            let held = l.hold().unwrap();
            let index = held.index;
            std::mem::forget(held);
            index
        })
        .join()
        .unwrap();
        assert_eq!(slot(&liveness, died), Slot::Died);
        // The first free slot was taken again.
        assert_eq!(died, given_back);
    }

    #[test]
    fn a_standby_waits_until_every_held_slot_died_then_is_told() {
        let liveness = Liveness::create().unwrap();
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let mut holders = Vec::new();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        for _ in 0..3 {
            let (l, gate, ready_tx) = (liveness.clone(), gate.clone(), ready_tx.clone());
            holders.push(std::thread::spawn(move || {
                let held = l.hold().unwrap();
                ready_tx.send(()).unwrap();
                let _ = gate.lock().unwrap().recv();
                std::mem::forget(held);
            }));
        }
        for _ in 0..3 {
            ready.recv().unwrap();
        }
        let waiter = wait_in_thread(read_only(&liveness));
        // Two of three die: still waiting.
        go.send(()).unwrap();
        go.send(()).unwrap();
        while holders.iter().filter(|h| h.is_finished()).count() < 2 {
            std::thread::yield_now();
        }
        assert!(!waiter.is_finished());
        go.send(()).unwrap();
        for h in holders {
            h.join().unwrap();
        }
        assert_eq!(waiter.join().unwrap(), (Waited::Died, true));
        let mut page = vec![0u8; LIVENESS_LEN];
        rustix::io::pread(liveness.fd(), &mut page, 0).unwrap();
        assert!(fuse_keeper_client::protocol::liveness::proves_exit(&page));
    }

    #[test]
    fn two_waiters_on_one_page_both_see_the_death_and_a_cancelled_one_stops() {
        let liveness = Liveness::create().unwrap();
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let l = liveness.clone();
        let holder = std::thread::spawn(move || {
            let held = l.hold().unwrap();
            ready_tx.send(()).unwrap();
            let _ = gate.recv();
            std::mem::forget(held);
        });
        ready.recv().unwrap();
        // The kernel wakes one waiter of the dead thread's slot; the other is woken by it.
        let (ta, a) = waiting_thread(read_only(&liveness));
        let (tb, b) = waiting_thread(read_only(&liveness));
        until_in_futex_wait(ta);
        until_in_futex_wait(tb);
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cancelled = {
            let (page, cancel) = (read_only(&liveness), cancel.clone());
            std::thread::spawn(move || wait_for_exit(&page, &cancel, || panic!("told")).unwrap())
        };
        cancel.store(true, Ordering::Release);
        assert_eq!(cancelled.join().unwrap(), Waited::Cancelled);
        go.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(a.join().unwrap(), (Waited::Died, true));
        assert_eq!(b.join().unwrap(), (Waited::Died, true));
    }

    #[test]
    fn a_page_with_no_slot_held_or_a_full_one_proves_nothing() {
        let liveness = Liveness::create().unwrap();
        assert_eq!(wait_in_thread(read_only(&liveness)).join().unwrap(), (Waited::Unproven, false));
        let l = liveness.clone();
        std::thread::spawn(move || {
            // One thread holding every slot (each hold names only the last in its list).
            for _ in 0..LIVENESS_SLOTS {
                std::mem::forget(l.hold().expect("a free slot"));
            }
            assert!(l.hold().is_none(), "the page is full");
        })
        .join()
        .unwrap();
        assert_eq!(wait_in_thread(read_only(&liveness)).join().unwrap(), (Waited::Unproven, false));
    }

    #[test]
    fn a_standby_maps_no_page_that_could_shrink_or_is_not_the_size() {
        let never = std::sync::atomic::AtomicBool::new(false);
        let unsealed = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&unsealed, LIVENESS_LEN as u64).unwrap();
        let err = wait_for_exit(&unsealed, &never, || panic!("told")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
        let short = rustix::fs::memfd_create("t", flags).unwrap();
        rustix::fs::ftruncate(&short, 100).unwrap();
        rustix::fs::fcntl_add_seals(&short, rustix::fs::SealFlags::SHRINK).unwrap();
        let err = wait_for_exit(&short, &never, || panic!("told")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_page_is_sealed_and_a_read_only_open_cannot_write_it() {
        let liveness = Liveness::create().unwrap();
        let seals = rustix::fs::fcntl_get_seals(liveness.fd()).unwrap();
        assert!(seals.contains(rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW));
        assert!(rustix::fs::ftruncate(liveness.fd(), 0).is_err());
        let ro = read_only(&liveness);
        assert_eq!(rustix::io::pwrite(&ro, &[0; 4], 0), Err(rustix::io::Errno::BADF));
        // SAFETY: a fresh mapping request; refused, so nothing is mapped.
        let rw = unsafe {
            mmap(
                std::ptr::null_mut(),
                LIVENESS_LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &ro,
                0,
            )
        };
        assert!(rw.is_err(), "a read-only open maps writable");
    }
}
