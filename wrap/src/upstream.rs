//! The stock server: its process, the socket it serves on, and the requests in flight to it.
//!
//! The server is started with `%m` in its argv replaced by `/dev/fd/N`, N its end of a
//! `SOCK_SEQPACKET` socket pair (one message per request or reply, as `/dev/fuse` reads and
//! writes them). A supervisor thread starts it, presents it FUSE_INIT, publishes the
//! connection ([`Conn`], one per life of the server: an *epoch*) and waits for the process
//! to exit; then it fails every request still waiting for a reply with [`Failure::Died`],
//! kills what is left of the server's process group, and starts it again (with backoff, up
//! to a restart limit). The replies are read by the threads of the requests in flight, one at
//! a time, each handing every reply to the request waiting for its unique (see `Pending`);
//! while none is in flight, the supervisor reads what the server sends (its notifications,
//! handed to [`Upstream::notifications`]' receiver). FORGETs wait up to a millisecond and go
//! out together, as one BATCH_FORGET ([`Conn::forget`]). A request that waits longer
//! than the watchdog's timeout kills the server, which then restarts like one that crashed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fuse_abi::{
    fuse_batch_forget_in, fuse_forget_in, fuse_forget_one, fuse_init_in, fuse_init_out, fuse_opcode,
};
use fuse_proto::Errno;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use rustix::process::{Pid, PidfdFlags, Signal};
use tracing::{debug, error, info, trace, warn};
use zerocopy::{FromZeros, IntoBytes};

use crate::wire::{self, Caller, OUT_HEADER};

/// How the stock server is run and restarted.
#[derive(Debug, Clone)]
pub struct StockCommand {
    /// The program and its arguments, `%m` already in place (see [`StockCommand::argv_for`]).
    pub argv: Vec<OsString>,
}

impl StockCommand {
    /// The argv with every `%m` replaced by `/dev/fd/{fd}`.
    pub fn argv_for(&self, fd: i32) -> Vec<OsString> {
        let dev = format!("/dev/fd/{fd}");
        self.argv
            .iter()
            .map(|arg| match arg.to_str() {
                Some(s) if s.contains("%m") => OsString::from(s.replace("%m", &dev)),
                _ => arg.clone(),
            })
            .collect()
    }
}

/// When to give up restarting, and the watchdog.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Most restarts within `window` before the wrapper gives up.
    pub limit: u32,
    /// The window `limit` counts in.
    pub window: Duration,
    /// A request unanswered this long kills the server (None: never).
    pub watchdog: Option<Duration>,
    /// How long the server may take to answer FUSE_INIT once started.
    pub init_timeout: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            limit: 20,
            window: Duration::from_secs(60),
            watchdog: Some(Duration::from_secs(60)),
            init_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a request to the stock server has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with an error.
    Errno(Errno),
    /// The server died (or was killed by the watchdog) before answering: whether it acted
    /// on the request is unknown.
    Died,
}

impl From<Errno> for Failure {
    fn from(errno: Errno) -> Failure {
        Failure::Errno(errno)
    }
}

/// A request waiting for its reply: the reply once it is in, and the condition its thread
/// waits on (always with [`Conn::pending`]'s lock).
struct Waiter {
    reply: Option<Result<Vec<u8>, Failure>>,
    ready: Arc<Condvar>,
}

/// The requests in flight to one server, and who reads its replies. There is no reader
/// thread: the thread of a request in flight reads the socket itself (one at a time, the
/// *reader*), handing every other request's reply to its thread, until its own comes; it then
/// passes the role on to a request still waiting. A reply so costs its thread one wakeup
/// (from the socket) rather than two (a reader thread's, then the condition variable's).
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// A thread is reading the socket.
    reading: bool,
    /// The socket ended (the server died): nobody reads it any more; the supervisor fails
    /// what is pending.
    ended: bool,
}

/// What the reader got from the socket.
enum Read {
    /// The reply to a request: its unique, and its payload or error.
    Reply(u64, Result<Vec<u8>, Failure>),
    /// Nothing for a request: a notification, or the socket's receive timeout (the
    /// watchdog's look).
    Nothing,
    /// The end of the socket (the server died), or a broken reply (the server is killed).
    Ended,
}

/// Requests that killed server after server (see `fs.rs`, `Deaths`), by opcode and a keyed
/// hash of their first bytes (not the server's nodeid, which each life numbers anew): the
/// same request again fails with EIO at once instead of killing another. Kept for the
/// wrapper's life, at most [`POISONED_MAX`].
#[derive(Default)]
pub struct Poisoned {
    any: AtomicBool,
    keys: Mutex<std::collections::HashSet<(u32, u64)>>,
    hasher: std::collections::hash_map::RandomState,
}

/// The most requests remembered as poisons.
pub const POISONED_MAX: usize = 1024;

/// The bytes of a request's arguments a poison is known by.
const POISON_PREFIX: usize = 512;

thread_local! {
    /// This thread's last request whose server died with it in flight.
    static LAST_DIED: std::cell::Cell<Option<(u32, u64)>> = const { std::cell::Cell::new(None) };
}

impl Poisoned {
    fn key(&self, opcode: fuse_opcode, parts: &[&[u8]]) -> (u32, u64) {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.hasher.build_hasher();
        let mut left = POISON_PREFIX;
        for part in parts {
            let take = part.len().min(left);
            h.write(&part[..take]);
            left -= take;
        }
        (opcode as u32, h.finish())
    }

    fn holds(&self, opcode: fuse_opcode, parts: &[&[u8]]) -> bool {
        let key = self.key(opcode, parts);
        lock(&self.keys).contains(&key)
    }

    /// Forgets which of this thread's requests died last (before a new attempt).
    pub fn clear_last_died(&self) {
        LAST_DIED.set(None);
    }

    /// Whether a request of this thread was in flight at a server's death since the last
    /// [`Poisoned::clear_last_died`] (one sent to no server killed none).
    pub fn last_died(&self) -> bool {
        LAST_DIED.get().is_some()
    }

    /// Remembers the last request of this thread that died with its server as a poison.
    pub fn remember_last_died(&self) {
        let Some(key) = LAST_DIED.take() else { return };
        let mut keys = lock(&self.keys);
        if keys.len() < POISONED_MAX {
            keys.insert(key);
            self.any.store(true, Ordering::Release);
        }
    }
}

/// A notification a stock server sent (a message with unique 0), in its own nodeids.
#[derive(Debug)]
pub struct Note {
    /// The life of the server that sent it.
    pub epoch: u64,
    /// The `fuse_notify_code` (the header's error field).
    pub code: i32,
    /// What follows the header.
    pub payload: Vec<u8>,
}

/// Notifications waiting to be forwarded, at most; more are dropped (a reader of replies
/// never waits for the kernel).
pub const NOTES_QUEUE: usize = 1024;

/// How long a FORGET may wait for others to go out with (the flusher's tick): the server
/// frees an unlinked file's last reference (its space) on FORGET, so this stays short.
pub const FORGET_DELAY: Duration = Duration::from_millis(1);

/// At most this many FORGETs wait; the one that makes it this many sends them all at once.
pub const FORGET_BATCH: usize = 256;

/// The FORGETs waiting to go to one server (see [`Conn::forget`]).
#[derive(Default)]
struct Forgets {
    list: Vec<fuse_forget_one>,
    /// The flusher is ticking: it was told of forgets since it last found none waiting.
    ticking: bool,
}

/// One life of the stock server: its socket, its INIT answer, and the requests in flight.
pub struct Conn {
    /// Which life of the server this is (1 for the first).
    pub epoch: u64,
    /// What the server answered to INIT.
    pub init: fuse_init_out,
    /// The INIT flags in force with this server (what it asked for, of what was offered).
    pub flags: u64,
    sock: OwnedFd,
    pid: Pid,
    pending: Mutex<Pending>,
    /// The reader's buffer (locked only by the thread that has the reader's role).
    buf: Mutex<Vec<u8>>,
    /// Where the server's notifications go (shared with [`Upstream`]).
    notes: Arc<Mutex<Option<SyncSender<Note>>>>,
    /// The requests known to kill the server (shared with [`Upstream`]).
    poison: Arc<Poisoned>,
    dead: AtomicBool,
    unique: AtomicU64,
    watchdog: Option<Duration>,
    forgets: Mutex<Forgets>,
    /// Wakes the flusher when forgets come after it stopped ticking, or the server died.
    forgets_tick: Condvar,
    /// A flusher thread runs (else every FORGET is sent at once).
    batching: AtomicBool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("epoch", &self.epoch).field("pid", &self.pid).finish()
    }
}

impl Conn {
    /// A connection on `sock` to the server `pid`, replies up to `max_reply` bytes; its
    /// epoch, INIT answer, notifications and poison for the caller to fill in. The first
    /// request's unique is 4 (INIT's was 2).
    fn new(sock: OwnedFd, pid: Pid, max_reply: usize) -> Conn {
        Conn {
            epoch: 0,
            init: fuse_init_out::new_zeroed(),
            flags: 0,
            sock,
            pid,
            pending: Mutex::new(Pending::default()),
            buf: Mutex::new(vec![0u8; max_reply]),
            notes: Arc::default(),
            poison: Arc::default(),
            dead: AtomicBool::new(false),
            unique: AtomicU64::new(4),
            watchdog: None,
            forgets: Mutex::default(),
            forgets_tick: Condvar::new(),
            batching: AtomicBool::new(true),
        }
    }

    /// The server's protocol minor in force (the lower of ours and its).
    pub fn minor(&self) -> u32 {
        self.init.minor
    }

    /// Whether the server asked for INIT flag `flag`.
    pub fn has(&self, flag: u64) -> bool {
        self.flags & flag != 0
    }

    /// The stock server's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// Sends one request and waits for its reply's payload. An error reply is
    /// [`Failure::Errno`]; a server that dies first, [`Failure::Died`].
    pub fn call(
        &self,
        opcode: fuse_opcode,
        nodeid: u64,
        caller: Caller,
        parts: &[&[u8]],
    ) -> Result<Vec<u8>, Failure> {
        if self.dead.load(Ordering::Acquire) {
            return Err(Failure::Died);
        }
        if self.poison.any.load(Ordering::Acquire) && self.poison.holds(opcode, parts) {
            debug!(?opcode, "a request that killed the stock server before: EIO");
            return Err(Failure::Errno(Errno::EIO));
        }
        let unique = self.unique.fetch_add(2, Ordering::Relaxed);
        let ready = Arc::new(Condvar::new());
        lock(&self.pending).waiters.insert(unique, Waiter { reply: None, ready: ready.clone() });
        // The connection may have died between the check and the insert: the supervisor
        // fails what is pending once, after setting `dead`.
        if self.dead.load(Ordering::Acquire) {
            lock(&self.pending).waiters.remove(&unique);
            return Err(Failure::Died);
        }
        let mut buf = Vec::new();
        wire::request(&mut buf, opcode, unique, nodeid, caller, parts);
        trace!(?opcode, nodeid, unique, epoch = self.epoch, "to the stock server");
        if let Err(err) = rustix::net::send(&self.sock, &buf, SendFlags::NOSIGNAL) {
            lock(&self.pending).waiters.remove(&unique);
            debug!(%err, "sending to the stock server");
            return Err(Failure::Died);
        }
        let started = Instant::now();
        let reply = self.wait_reply(unique, &ready, started);
        match &reply {
            Err(Failure::Errno(errno)) => {
                debug!(?opcode, nodeid, %errno, epoch = self.epoch, "the stock server answered an error");
            }
            Err(Failure::Died) => {
                LAST_DIED.set(Some(self.poison.key(opcode, parts)));
            }
            Ok(_) => {}
        }
        reply
    }

    /// Kills the server when the request sent at `started` has waited past the watchdog's
    /// limit (its death then fails the request); how long the caller may wait before it
    /// looks again (None: for ever).
    fn watch(&self, started: Instant) -> Option<Duration> {
        let limit = self.watchdog?;
        let waited = started.elapsed();
        if waited >= limit {
            warn!(
                pid = self.pid(),
                "the stock server has not answered a request for {:?}: killing it", limit
            );
            let _ = rustix::process::kill_process(self.pid, Signal::KILL);
            return None;
        }
        Some(limit - waited)
    }

    /// Waits for the reply to `unique`: reading the socket itself when no other thread is,
    /// else until the reader hands the reply over (or passes the reader's role on).
    fn wait_reply(
        &self,
        unique: u64,
        ready: &Condvar,
        started: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let mut pending = lock(&self.pending);
        loop {
            if let Some(reply) = pending.waiters.get_mut(&unique).and_then(|w| w.reply.take()) {
                pending.waiters.remove(&unique);
                return reply;
            }
            if !pending.reading && !pending.ended {
                pending.reading = true;
                drop(pending);
                pending = self.read_until(Some(unique), started);
                continue;
            }
            pending = match self.watch(started) {
                Some(left) => {
                    ready.wait_timeout(pending, left).unwrap_or_else(|p| p.into_inner()).0
                }
                None => ready.wait(pending).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    /// The reader's role: reads replies, handing each to its request, until the one to
    /// `unique` is in (or the socket ends; `None`: after one message, if one is waiting: never
    /// blocks); then gives the role up and wakes a request still waiting to take it. Returns
    /// with the lock held.
    fn read_until(
        &self,
        unique: Option<u64>,
        started: Instant,
    ) -> std::sync::MutexGuard<'_, Pending> {
        let mut buf = lock(&self.buf);
        loop {
            let got = self.read_reply(&mut buf, started, unique.is_some());
            let mut pending = lock(&self.pending);
            let mine = match got {
                Read::Reply(u, result) => match pending.waiters.get_mut(&u) {
                    Some(waiter) => {
                        waiter.reply = Some(result);
                        if Some(u) == unique {
                            true
                        } else {
                            waiter.ready.notify_one();
                            unique.is_none()
                        }
                    }
                    None => {
                        warn!(unique = u, "reply to no request in flight ignored");
                        unique.is_none()
                    }
                },
                Read::Nothing => unique.is_none(),
                Read::Ended => {
                    pending.ended = true;
                    true
                }
            };
            if !mine {
                continue;
            }
            pending.reading = false;
            if !pending.ended
                && let Some(next) = pending.waiters.values().find(|w| w.reply.is_none())
            {
                next.ready.notify_one();
            }
            return pending;
        }
    }

    /// While no request is in flight: reads the one message waiting there, if any (a
    /// notification), without blocking. False when a request is in flight: the message is
    /// for its thread to read (taking the reader's role from it would cost it two more
    /// context switches, the reply handed over through its condition variable).
    fn read_idle(&self) -> bool {
        let mut pending = lock(&self.pending);
        if pending.reading || pending.ended || !pending.waiters.is_empty() {
            return false;
        }
        pending.reading = true;
        drop(pending);
        drop(self.read_until(None, Instant::now()));
        true
    }

    /// A notification from the server: handed to [`Upstream::notifications`]' receiver (if
    /// any) without waiting; dropped when it is behind by [`NOTES_QUEUE`].
    fn notification(&self, code: i32, payload: &[u8]) {
        let notes = lock(&self.notes);
        let Some(tx) = notes.as_ref() else {
            debug!(code, "notification from the stock server ignored");
            return;
        };
        let note = Note { epoch: self.epoch, code, payload: payload.to_vec() };
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = tx.try_send(note) {
            warn!(code, "notification from the stock server dropped: the queue is full");
        }
    }

    /// One reply from the socket.
    fn read_reply(&self, buf: &mut [u8], started: Instant, wait: bool) -> Read {
        let Some(n) = self.recv_into(&mut buf[..], started, wait) else { return Read::Nothing };
        if n == 0 {
            return Read::Ended;
        }
        let Some(header) = wire::reply_header(&buf[..n.min(buf.len())]) else {
            self.broken(n, "a malformed reply");
            return Read::Ended;
        };
        // A reply may come in several messages: libfuse writes the data of a reply from an fd
        // (fuse-overlayfs's READ) apart from its header, and on a socket each write is a
        // message. The header's length says how much more to gather.
        let want = header.len as usize;
        if want > buf.len() {
            self.broken(want, "a reply longer than any request may get");
            return Read::Ended;
        }
        let mut have = n;
        while have < want {
            match self.recv_into(&mut buf[have..want], started, true) {
                Some(0) => return Read::Ended,
                Some(more) => have += more,
                None => continue,
            }
        }
        if have > want {
            self.broken(have, "a reply longer than its header says");
            return Read::Ended;
        }
        if header.unique == 0 {
            self.notification(header.error, &buf[OUT_HEADER..want]);
            return Read::Nothing;
        }
        let result = if header.error != 0 {
            Err(Failure::Errno(Errno::new(-header.error)))
        } else {
            Ok(buf[OUT_HEADER..want].to_vec())
        };
        Read::Reply(header.unique, result)
    }

    /// Sends a request that has no reply (FORGET, BATCH_FORGET); lost if the server is dead.
    pub fn send_only(&self, opcode: fuse_opcode, nodeid: u64, parts: &[&[u8]]) {
        if self.dead.load(Ordering::Acquire) {
            return;
        }
        let unique = self.unique.fetch_add(2, Ordering::Relaxed);
        let mut buf = Vec::new();
        wire::request(&mut buf, opcode, unique, nodeid, Caller::default(), parts);
        trace!(?opcode, nodeid, unique, epoch = self.epoch, "to the stock server, no reply");
        let _ = rustix::net::send(&self.sock, &buf, SendFlags::NOSIGNAL);
    }

    /// Gives `nlookup` lookups of the server's `nodeid` back to it. The FORGET waits (at
    /// most [`FORGET_DELAY`], or until [`FORGET_BATCH`] are waiting) and goes out with every
    /// other one waiting as one BATCH_FORGET: the server reads one message for the lot
    /// rather than one per FORGET (unlinking a file costs a LOOKUP, an UNLINK and a FORGET).
    /// Requests sent meanwhile may overtake it, as they may in a multi-threaded server
    /// anyway: the server's count only stays higher for that while, never lower than the
    /// kernel's. Lost, as a FORGET sent, if the server dies: its successor never counted
    /// those lookups.
    pub fn forget(&self, nodeid: u64, nlookup: u64) {
        if nlookup == 0 || self.dead.load(Ordering::Acquire) {
            return;
        }
        if !self.batching.load(Ordering::Acquire) {
            self.send_forgets(&[fuse_forget_one { nodeid, nlookup }]);
            return;
        }
        let full = {
            let mut forgets = lock(&self.forgets);
            forgets.list.push(fuse_forget_one { nodeid, nlookup });
            if !forgets.ticking {
                forgets.ticking = true;
                self.forgets_tick.notify_one();
            }
            if forgets.list.len() >= FORGET_BATCH {
                Some(std::mem::take(&mut forgets.list))
            } else {
                None
            }
        };
        if let Some(list) = full {
            self.send_forgets(&list);
        }
    }

    /// Sends the forgets waiting, if any.
    #[cfg(test)]
    fn flush_forgets(&self) {
        let list = std::mem::take(&mut lock(&self.forgets).list);
        self.send_forgets(&list);
    }

    /// One FORGET, or several as one BATCH_FORGET.
    fn send_forgets(&self, list: &[fuse_forget_one]) {
        match list {
            [] => {}
            [one] => self.send_only(
                fuse_opcode::FUSE_FORGET,
                one.nodeid,
                &[fuse_forget_in { nlookup: one.nlookup }.as_bytes()],
            ),
            many => {
                let count = many.len() as u32;
                let head = fuse_batch_forget_in { count, dummy: 0 };
                self.send_only(
                    fuse_opcode::FUSE_BATCH_FORGET,
                    0,
                    &[head.as_bytes(), many.as_bytes()],
                );
            }
        }
    }

    /// The flusher: while forgets come, sends those waiting every [`FORGET_DELAY`]; sleeps
    /// on `forgets_tick` from the first tick that found none until the next forget. Returns
    /// when the server has died.
    fn flush_ticks(&self) {
        let mut forgets = lock(&self.forgets);
        loop {
            while !forgets.ticking {
                if self.dead.load(Ordering::Acquire) {
                    return;
                }
                forgets = self.forgets_tick.wait(forgets).unwrap_or_else(|p| p.into_inner());
            }
            drop(forgets);
            std::thread::sleep(FORGET_DELAY);
            if self.dead.load(Ordering::Acquire) {
                return;
            }
            forgets = lock(&self.forgets);
            if forgets.list.is_empty() {
                forgets.ticking = false;
                continue;
            }
            let list = std::mem::take(&mut forgets.list);
            drop(forgets);
            self.send_forgets(&list);
            forgets = lock(&self.forgets);
        }
    }

    /// One message from the socket into `buf`: its length (more than `buf` holds when it
    /// did not fit), 0 at the end of the socket, `None` when the socket's receive timeout
    /// ran out (after the watchdog had its look at the request sent at `started`) or, without
    /// `wait`, when no message is there.
    fn recv_into(&self, buf: &mut [u8], started: Instant, wait: bool) -> Option<usize> {
        let flags = if wait { RecvFlags::TRUNC } else { RecvFlags::TRUNC | RecvFlags::DONTWAIT };
        loop {
            match rustix::net::recv(&self.sock, &mut *buf, flags) {
                Ok((n, _)) => return Some(n),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    self.watch(started);
                    return None;
                }
                Err(err) => {
                    debug!(%err, "reading the stock server's replies");
                    return Some(0);
                }
            }
        }
    }

    /// The server broke the protocol (`what`, `len` bytes): it is killed, and restarted.
    fn broken(&self, len: usize, what: &str) {
        error!(len, "the stock server sent {what}: killing it");
        let _ = rustix::process::kill_process(self.pid, Signal::KILL);
    }

    /// Fails every waiting request with [`Failure::Died`]; later calls fail at once.
    fn fail_pending(&self) {
        self.dead.store(true, Ordering::Release);
        {
            // Under the lock: the flusher looks at `dead` with it held before it waits.
            let _forgets = lock(&self.forgets);
            self.forgets_tick.notify_all();
        }
        let _ = rustix::net::shutdown(&self.sock, rustix::net::Shutdown::Both);
        let mut pending = lock(&self.pending);
        pending.ended = true;
        for waiter in pending.waiters.values_mut() {
            if waiter.reply.is_none() {
                waiter.reply = Some(Err(Failure::Died));
            }
            waiter.ready.notify_all();
        }
    }
}

/// `m` locked, whether or not a thread panicked holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct State {
    conn: Option<Arc<Conn>>,
    /// Epochs started so far.
    epoch: u64,
    /// Why the wrapper gave up restarting (then no connection will come).
    gave_up: Option<String>,
    stopping: bool,
    /// The INIT offered to the server (flags: what the kernel granted, once known).
    offer: fuse_init_in,
    restarts: u64,
    /// Why the very first start failed (no connection ever came).
    first_failure: Option<String>,
}

/// The stock server, restarted for as long as the policy allows.
pub struct Upstream {
    command: StockCommand,
    policy: RestartPolicy,
    state: Mutex<State>,
    changed: Condvar,
    /// The largest reply a request may get (READ of max_pages, a READDIR of its size).
    max_reply: usize,
    /// Where notifications go (see [`Upstream::notifications`]).
    notes: Arc<Mutex<Option<SyncSender<Note>>>>,
    /// The requests known to kill the server.
    poison: Arc<Poisoned>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("argv", &self.command.argv).finish()
    }
}

impl Upstream {
    /// The requests known to kill the server (see [`Poisoned`]).
    pub fn poisoned(&self) -> &Poisoned {
        &self.poison
    }

    /// The notifications the stock server sends from now on, in its nodeids (the receiver
    /// translates them); replaces an earlier receiver. Without one they are dropped.
    pub fn notifications(&self) -> Receiver<Note> {
        let (tx, rx) = std::sync::mpsc::sync_channel(NOTES_QUEUE);
        *lock(&self.notes) = Some(tx);
        rx
    }

    /// Starts the supervisor, which starts the server and presents it `offer`. Returns at
    /// once; [`Upstream::current`] waits for the connection.
    pub fn start(
        command: StockCommand,
        policy: RestartPolicy,
        offer: fuse_init_in,
        max_reply: usize,
    ) -> std::io::Result<Arc<Upstream>> {
        let up = Arc::new(Upstream {
            command,
            policy,
            state: Mutex::new(State {
                conn: None,
                epoch: 0,
                gave_up: None,
                stopping: false,
                offer,
                restarts: 0,
                first_failure: None,
            }),
            changed: Condvar::new(),
            max_reply,
            notes: Arc::default(),
            poison: Arc::default(),
        });
        let supervisor = up.clone();
        std::thread::Builder::new()
            .name("stock-server".into())
            .spawn(move || supervisor.supervise())?;
        Ok(up)
    }

    /// The live connection, waiting for the server to be (re)started; EIO once the wrapper
    /// has given up (or is stopping).
    pub fn current(&self) -> Result<Arc<Conn>, Errno> {
        let mut state = lock(&self.state);
        loop {
            if let Some(conn) = &state.conn {
                return Ok(conn.clone());
            }
            if state.gave_up.is_some() || state.stopping {
                return Err(Errno::EIO);
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The live server's connection, if one is up now (never waits).
    pub fn live(&self) -> Option<Arc<Conn>> {
        lock(&self.state).conn.clone()
    }

    /// A connection later than `epoch` (the caller's one died), as [`Upstream::current`].
    pub fn after(&self, epoch: u64) -> Result<Arc<Conn>, Errno> {
        let mut state = lock(&self.state);
        loop {
            if let Some(conn) = &state.conn
                && conn.epoch > epoch
            {
                return Ok(conn.clone());
            }
            if state.gave_up.is_some() || state.stopping {
                return Err(Errno::EIO);
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// As [`Upstream::after`], waiting at most `timeout`: `Ok(None)` if no later connection
    /// came meanwhile.
    pub fn after_within(&self, epoch: u64, timeout: Duration) -> Result<Option<Arc<Conn>>, Errno> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            if let Some(conn) = &state.conn
                && conn.epoch > epoch
            {
                return Ok(Some(conn.clone()));
            }
            if state.gave_up.is_some() || state.stopping {
                return Err(Errno::EIO);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The first server's connection, or why it did not start: its first life is not
    /// restarted into (a wrong argv should fail the command, not loop).
    pub fn first(&self) -> Result<Arc<Conn>, String> {
        let mut state = lock(&self.state);
        loop {
            if let Some(conn) = &state.conn {
                return Ok(conn.clone());
            }
            if let Some(why) = &state.gave_up {
                return Err(why.clone());
            }
            if let Some(why) = &state.first_failure {
                return Err(why.clone());
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Why the wrapper gave up restarting the server, if it did.
    pub fn gave_up(&self) -> Option<String> {
        lock(&self.state).gave_up.clone()
    }

    /// How many times the server has been restarted.
    pub fn restarts(&self) -> u64 {
        lock(&self.state).restarts
    }

    /// The INIT flags offered to the server from now on (what the kernel granted). When the
    /// live server asked for a flag outside them, it is restarted under the new offer.
    pub fn set_offer(&self, flags: u64) {
        let mut state = lock(&self.state);
        state.offer.flags = flags as u32;
        state.offer.flags2 = (flags >> 32) as u32;
        if let Some(conn) = &state.conn
            && conn.flags & !flags != 0
        {
            info!(
                extra = format_args!("{:#x}", conn.flags & !flags),
                "the stock server asked for INIT flags the kernel did not grant: restarting it"
            );
            let _ = rustix::process::kill_process(conn.pid, Signal::KILL);
        }
    }

    /// Stops restarting, and ends the server: its socket is shut down (a libfuse server
    /// exits on the end of its device), then, if it has not exited within `grace`, it is
    /// killed. Returns once the supervisor has reaped it.
    pub fn stop(&self, grace: Duration) {
        let conn = {
            let mut state = lock(&self.state);
            state.stopping = true;
            self.changed.notify_all();
            state.conn.clone()
        };
        if let Some(conn) = conn {
            let _ = rustix::net::shutdown(&conn.sock, rustix::net::Shutdown::Both);
            let deadline = Instant::now() + grace;
            let mut state = lock(&self.state);
            while state.conn.as_ref().is_some_and(|c| c.epoch == conn.epoch) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = rustix::process::kill_process(conn.pid, Signal::KILL);
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                } else {
                    state =
                        self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }

    fn supervise(self: Arc<Self>) {
        let mut starts: Vec<Instant> = Vec::new();
        let mut quick_failures = 0u32;
        loop {
            if lock(&self.state).stopping {
                return;
            }
            let now = Instant::now();
            starts.retain(|t| now.duration_since(*t) < self.policy.window);
            if starts.len() as u64 > u64::from(self.policy.limit) {
                let why = format!(
                    "the stock server was started {} times within {:?}: giving up",
                    starts.len(),
                    self.policy.window
                );
                error!("{why}; exiting: the keeper keeps the mount by its recovery_timeout policy");
                let mut state = lock(&self.state);
                state.gave_up = Some(why);
                self.changed.notify_all();
                // A wrapper that cannot serve leaves the connection to the keeper (waiting
                // for a server to attach, for as long as its policy says) rather than
                // answering EIO: the same as a server that died.
                std::process::exit(75);
            }
            starts.push(now);
            // run_once fails only before the server is initialised (it did not start,
            // died or hung before answering INIT); a server that served and then died is
            // restarted at once, with nothing between its death and its successor's start.
            match self.run_once() {
                Ok(()) => quick_failures = 0,
                Err(err) => {
                    warn!("stock server: {err}");
                    let mut state = lock(&self.state);
                    if state.epoch == 0 {
                        state.first_failure = Some(err);
                        state.stopping = true;
                        self.changed.notify_all();
                        return;
                    }
                    drop(state);
                    // A server that cannot start (a network that is down) is not restarted in
                    // a tight loop: 20 ms, doubling up to 5 s.
                    quick_failures += 1;
                    let backoff = Duration::from_millis(10u64 << quick_failures.min(9))
                        .min(Duration::from_secs(5));
                    std::thread::sleep(backoff);
                }
            }
            if lock(&self.state).stopping {
                return;
            }
            lock(&self.state).restarts += 1;
        }
    }

    /// One life of the server: start, INIT, serve until it exits.
    fn run_once(self: &Arc<Self>) -> Result<(), String> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        let fd = theirs.as_raw_fd();
        let argv = self.command.argv_for(fd);
        let Some((program, args)) = argv.split_first() else {
            return Err("no command".into());
        };
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).process_group(0);
        crate::sys::inherit_and_die_with_parent(&mut cmd, fd);
        let child =
            cmd.spawn().map_err(|e| format!("starting {}: {e}", program.to_string_lossy()))?;
        drop(theirs);
        let pid = Pid::from_child(&child);
        // The child is reaped through its pidfd below, never by `Child::wait`.
        drop(child);
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())
            .map_err(|e| format!("pidfd_open: {e}"))?;
        let result = self.init_and_serve(ours, pid, &pidfd);
        // Whatever it left behind in its process group (sshfs's ssh) goes with it.
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        info!(pid = pid.as_raw_nonzero().get(), ?status, "stock server ended");
        result
    }

    fn init_and_serve(
        self: &Arc<Self>,
        sock: OwnedFd,
        pid: Pid,
        pidfd: &OwnedFd,
    ) -> Result<(), String> {
        let offer = lock(&self.state).offer;
        let mut buf = Vec::new();
        // The INIT request's unique is 2, as the kernel's first request; later ones follow.
        wire::request(
            &mut buf,
            fuse_opcode::FUSE_INIT,
            2,
            0,
            Caller::default(),
            &[offer.as_bytes()],
        );
        rustix::net::send(&sock, &buf, SendFlags::NOSIGNAL)
            .map_err(|e| format!("sending INIT: {e}"))?;
        let mut reply = vec![0u8; 4096];
        let n = loop {
            let mut fds = [PollFd::new(&sock, PollFlags::IN), PollFd::new(pidfd, PollFlags::IN)];
            let timeout = rustix::event::Timespec::try_from(self.policy.init_timeout).ok();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => {
                    return Err(format!("no answer to INIT within {:?}", self.policy.init_timeout));
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            if !fds[0].revents().contains(PollFlags::IN) {
                return Err("exited before answering INIT".into());
            }
            match rustix::net::recv(&sock, &mut reply[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => break n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(format!("reading the INIT reply: {e}")),
            }
        };
        let bytes = &reply[..n.min(reply.len())];
        // INIT's answer is small: one whole message, never gathered from several.
        let header = wire::reply_header(bytes)
            .filter(|h| h.len as usize == bytes.len())
            .ok_or("malformed INIT reply")?;
        if header.error != 0 {
            return Err(format!("INIT refused: {}", Errno::new(-header.error)));
        }
        let payload = &bytes[OUT_HEADER..];
        let mut init = fuse_init_out::new_zeroed();
        let len = payload.len().min(size_of::<fuse_init_out>());
        if len < 24 {
            return Err("INIT reply too short".into());
        }
        init.as_mut_bytes()[..len].copy_from_slice(&payload[..len]);
        if init.major != offer.major {
            return Err(format!("the server speaks FUSE {}.{}", init.major, init.minor));
        }
        init.minor = init.minor.min(offer.minor);
        if init.minor < crate::MIN_SERVER_MINOR {
            return Err(format!(
                "the server speaks FUSE 7.{}; 7.{} or later is needed",
                init.minor,
                crate::MIN_SERVER_MINOR
            ));
        }
        let offered = u64::from(offer.flags) | u64::from(offer.flags2) << 32;
        let mut asked = u64::from(init.flags);
        if asked & fuse_abi::FUSE_INIT_EXT != 0 {
            asked |= u64::from(init.flags2) << 32;
        }
        let flags = asked & offered;
        // A thread reading replies wakes at least once a second to let the watchdog look at
        // its request (see `Conn::recv_into`).
        if self.policy.watchdog.is_some() {
            rustix::net::sockopt::set_socket_timeout(
                &sock,
                rustix::net::sockopt::Timeout::Recv,
                Some(Duration::from_secs(1)),
            )
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        }
        let conn = {
            let mut state = lock(&self.state);
            if state.stopping {
                return Ok(());
            }
            state.epoch += 1;
            let conn = Arc::new(Conn {
                epoch: state.epoch,
                init,
                flags,
                notes: self.notes.clone(),
                poison: self.poison.clone(),
                watchdog: self.policy.watchdog,
                ..Conn::new(sock, pid, self.max_reply)
            });
            state.conn = Some(conn.clone());
            self.changed.notify_all();
            conn
        };
        let flusher = conn.clone();
        if let Err(err) =
            std::thread::Builder::new().name("forgets".into()).spawn(move || flusher.flush_ticks())
        {
            warn!(%err, "no thread to batch FORGETs: each is sent at once");
            conn.batching.store(false, Ordering::Release);
        }
        info!(
            epoch = conn.epoch,
            pid = conn.pid(),
            minor = init.minor,
            flags = format_args!("{flags:#x}"),
            max_write = init.max_write,
            "stock server initialised"
        );
        // Wait for the process to exit, reading what the server sends while no request is in
        // flight (its notifications): the threads of requests read the socket only while
        // they wait for a reply.
        let mut watch_socket = true;
        loop {
            let mut fds =
                [PollFd::new(pidfd, PollFlags::IN), PollFd::new(&conn.sock, PollFlags::IN)];
            let (fds, timeout) = if watch_socket {
                (&mut fds[..], None)
            } else {
                // A request's thread is reading: look again shortly.
                (&mut fds[..1], rustix::event::Timespec::try_from(Duration::from_millis(10)).ok())
            };
            match rustix::event::poll(fds, timeout.as_ref()) {
                Ok(_) if fds[0].revents().is_empty() => {
                    watch_socket = fds.len() == 1 || conn.read_idle();
                }
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    warn!(%e, "polling the stock server's pidfd");
                    break;
                }
            }
        }
        {
            let mut state = lock(&self.state);
            if state.conn.as_ref().is_some_and(|c| c.epoch == conn.epoch) {
                state.conn = None;
            }
            conn.fail_pending();
            self.changed.notify_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fuse_abi::{fuse_in_header, fuse_out_header};
    use zerocopy::FromBytes;

    use super::*;

    /// A connection whose "server" is the test, at the other end of a socket pair (a pid
    /// that is no process: nothing here kills it).
    fn pair() -> (Arc<Conn>, OwnedFd) {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let pid = Pid::from_raw(i32::MAX).unwrap();
        (Arc::new(Conn::new(ours, pid, 1 << 16)), theirs)
    }

    /// The next message the server end gets: its header and what follows (None: none waiting,
    /// without `wait`; or the wrapper's end shut down).
    fn next(sock: &OwnedFd, wait: bool) -> Option<(fuse_in_header, Vec<u8>)> {
        let mut buf = vec![0u8; 1 << 16];
        let flags = if wait { RecvFlags::empty() } else { RecvFlags::DONTWAIT };
        let (n, _) = rustix::net::recv(sock, &mut buf[..], flags).ok()?;
        if n == 0 {
            return None; // The wrapper's end was shut down.
        }
        let (header, rest) = fuse_in_header::read_from_prefix(&buf[..n]).unwrap();
        assert_eq!(header.len as usize, n);
        Some((header, rest.to_vec()))
    }

    fn answer(sock: &OwnedFd, unique: u64, payload: &[u8]) {
        let len = (size_of::<fuse_out_header>() + payload.len()) as u32;
        let mut buf = fuse_out_header { len, error: 0, unique }.as_bytes().to_vec();
        buf.extend_from_slice(payload);
        rustix::net::send(sock, &buf, SendFlags::empty()).unwrap();
    }

    fn forgets_of(body: &[u8]) -> Vec<(u64, u64)> {
        let (head, rest) = fuse_batch_forget_in::read_from_prefix(body).unwrap();
        let list = <[fuse_forget_one]>::ref_from_bytes(rest).unwrap();
        assert_eq!(list.len(), head.count as usize);
        list.iter().map(|f| (f.nodeid, f.nlookup)).collect()
    }

    #[test]
    fn forgets_wait_and_go_together_as_one_batch() {
        let (conn, server) = pair();
        conn.forget(5, 1);
        conn.forget(6, 2);
        conn.forget(7, 0);
        assert!(next(&server, false).is_none(), "no FORGET goes out on its own");
        let caller = {
            let conn = conn.clone();
            std::thread::spawn(move || {
                conn.call(fuse_opcode::FUSE_GETATTR, 9, Caller::default(), &[&[0u8; 16]])
            })
        };
        let (request, _) = next(&server, true).unwrap();
        assert_eq!((request.opcode, request.nodeid), (fuse_opcode::FUSE_GETATTR as u32, 9));
        answer(&server, request.unique, b"attr");
        assert_eq!(caller.join().unwrap().unwrap(), b"attr");
        conn.flush_forgets();
        let (batch, body) = next(&server, false).unwrap();
        assert_eq!(batch.opcode, fuse_opcode::FUSE_BATCH_FORGET as u32);
        assert_eq!(forgets_of(&body), [(5, 1), (6, 2)]);
        // A lone forget goes as a FORGET.
        conn.forget(8, 3);
        conn.flush_forgets();
        let (forget, body) = next(&server, false).unwrap();
        assert_eq!((forget.opcode, forget.nodeid), (fuse_opcode::FUSE_FORGET as u32, 8));
        assert_eq!(fuse_forget_in::read_from_bytes(&body[..]).unwrap().nlookup, 3);
        assert!(next(&server, false).is_none());
    }

    #[test]
    fn a_full_batch_of_forgets_goes_at_once() {
        let (conn, server) = pair();
        for n in 0..FORGET_BATCH as u64 {
            conn.forget(100 + n, 1);
        }
        let (batch, body) = next(&server, false).expect("the batch went when it was full");
        assert_eq!(batch.opcode, fuse_opcode::FUSE_BATCH_FORGET as u32);
        let list = forgets_of(&body);
        assert_eq!(list.len(), FORGET_BATCH);
        assert_eq!(list[FORGET_BATCH - 1], (100 + FORGET_BATCH as u64 - 1, 1));
        conn.flush_forgets();
        assert!(next(&server, false).is_none(), "nothing was left waiting");
    }

    #[test]
    fn the_flusher_sends_forgets_no_request_took() {
        let (conn, server) = pair();
        let flusher = {
            let conn = conn.clone();
            std::thread::spawn(move || conn.flush_ticks())
        };
        conn.forget(5, 1);
        let (forget, _) = next(&server, true).unwrap();
        assert_eq!((forget.opcode, forget.nodeid), (fuse_opcode::FUSE_FORGET as u32, 5));
        conn.forget(6, 1);
        let (forget, _) = next(&server, true).unwrap();
        assert_eq!((forget.opcode, forget.nodeid), (fuse_opcode::FUSE_FORGET as u32, 6));
        conn.fail_pending();
        flusher.join().unwrap();
        conn.forget(7, 1);
        assert!(lock(&conn.forgets).list.is_empty(), "a dead server's forgets are dropped");
    }
}
