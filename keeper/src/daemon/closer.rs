//! Closing fds off the event loop. `close(2)` of a file on a FUSE mount sends FLUSH and waits
//! for the server's answer, which a stalled (or hostile) server never sends: a client could
//! freeze the keeper by sending such an fd for it to drop. Fds whose close cannot wait (a
//! `/dev/fuse` device, a memfd or other shmem file) are closed at once; any other goes to a
//! closer thread. A stuck close holds one thread: another is started for the next fd, up to
//! [`MAX_THREADS`]; past that, fds wait in a queue of [`MAX_QUEUED`], and while it has no room
//! for a whole request's fds the loop receives requests without room for fds (the kernel then
//! drops them with no FLUSH) and refuses them.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::policy;
use super::principal::Principal;
use crate::protocol::MAX_REQUEST_FDS;

/// Closer threads at most: so many closes may be stuck at once before fds queue.
pub const MAX_THREADS: usize = 64;
/// Fds waiting for a closer thread at most.
pub const MAX_QUEUED: usize = 1024;
/// Fds of one principal (a uid, with the uids of its containers) waiting or being closed at
/// most: past it that principal's requests are received without room for fds (and refused),
/// while others still have room. Below [`MAX_THREADS`], so that one principal's stuck closes
/// cannot hold every thread.
pub const MAX_PER_PRINCIPAL: usize = 32;
/// An idle closer thread exits after this long.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    /// Each fd with the principal it is charged to.
    queue: VecDeque<(Principal, OwnedFd)>,
    /// Fds queued or being closed, per principal.
    pending: HashMap<Principal, usize>,
    threads: usize,
    idle: usize,
}

/// The closer threads and their queue.
#[derive(Debug, Default)]
pub struct Closer {
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Closer {
    /// True while there is no room for the fds of one more request of `who` (its own
    /// [`MAX_PER_PRINCIPAL`] or the queue's [`MAX_QUEUED`]): the loop must then receive its request
    /// without room for fds.
    pub fn saturated(&self, who: Principal) -> bool {
        let state = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        let of_who = state.pending.get(&who).copied().unwrap_or(0);
        state.queue.len() + MAX_REQUEST_FDS > MAX_QUEUED
            || of_who + MAX_REQUEST_FDS > MAX_PER_PRINCIPAL
    }

    /// Close `fds` without blocking the caller: at once those whose close cannot wait for a
    /// FUSE server, the others on a closer thread. Never blocks, never fails: past
    /// [`MAX_QUEUED`] (only fds of entries being dropped get there, since requests' fds are
    /// refused before, see [`Closer::saturated`]) the queue grows.
    pub fn close(&self, who: Principal, fds: impl IntoIterator<Item = OwnedFd>) {
        let mut spawn = 0;
        {
            let (lock, cond) = &*self.shared;
            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
            for fd in fds {
                if policy::closes_at_once(fd.as_fd()) {
                    drop(fd);
                    continue;
                }
                state.queue.push_back((who, fd));
                *state.pending.entry(who).or_default() += 1;
                cond.notify_one();
                // More fds queued than idle threads to take them: one more thread.
                if state.queue.len() > state.idle + spawn && state.threads + spawn < MAX_THREADS {
                    spawn += 1;
                }
            }
            state.threads += spawn;
        }
        for _ in 0..spawn {
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("closer".into())
                .stack_size(64 * 1024)
                .spawn(move || close_loop(&shared));
            if let Err(e) = started {
                tracing::warn!("cannot start a closer thread: {e}");
                let mut state = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
                state.threads -= 1;
            }
        }
    }
}

/// A closer thread: close queued fds until none has come for [`IDLE`].
fn close_loop(shared: &(Mutex<State>, Condvar)) {
    let (lock, cond) = shared;
    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some((who, fd)) = state.queue.pop_front() {
            drop(state);
            // May wait for a FUSE server's FLUSH answer: this thread only.
            drop(fd);
            state = lock.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = state.pending.get_mut(&who) {
                *n -= 1;
                if *n == 0 {
                    state.pending.remove(&who);
                }
            }
            continue;
        }
        state.idle += 1;
        let (next, timeout) = cond.wait_timeout(state, IDLE).unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if state.queue.is_empty() && timeout.timed_out() {
            state.threads -= 1;
            return;
        }
    }
}
