//! The wrapper as a filesystem of our library: every operation is relayed to the stock
//! server with the server's nodeids and handles, and its answer given back with the
//! wrapper's (see [`crate::nodes`]).
//!
//! When the stock server dies with a request in flight, an idempotent request is sent again
//! to its successor; a non-idempotent one is settled first by the rules of
//! docs/EXACTLY_ONCE.md, looking at what the new server shows: a MKDIR whose directory is
//! there is answered with its entry, an UNLINK whose name is gone with success, an append
//! whose bytes are there with their length; otherwise it is sent again. When the wrapper
//! itself dies, the library's journal settles the kernel's resent requests by the same
//! rules, through this filesystem's own operations.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use fuse_abi::*;
use fuse_proto::Errno;
use fuse_recovery::Recoverable;
use fuse_recovery::store::{Store, TableSpec};
use fuse_server::{
    Attr, Context, CopyRange, CreateArgs, DirFiller, Entry, FileHandle, Filesystem, Link, NodeId,
    Notifier, Opened, Rename, SetAttr, SetTime, Statfs,
};
use tracing::{debug, warn};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::nodes::{Bound, Forget, Handle, Nodes, ROOT};
use crate::upstream::{Conn, Failure, Note, Upstream, lock};
use crate::wire::{self, Caller, name_z};

type Result<T> = std::result::Result<T, Errno>;
type Relayed<T> = std::result::Result<T, Failure>;

/// Most parents followed to find an inode again (a store's chain of names may loop).
const MAX_DEPTH: usize = 4096;

/// A request whose server died this many times, each within [`POISON_WINDOW`] of being sent
/// to it, fails with EIO instead of being sent to yet another server: it is what kills them
/// (a request that waits long, a lock, is not taken for one).
const POISON_DEATHS: u32 = 4;
const POISON_WINDOW: Duration = Duration::from_secs(2);

/// Counts the deaths of the servers a request was sent to (see [`POISON_DEATHS`]).
#[derive(Default)]
struct Deaths(u32);

impl Deaths {
    /// A server died with the request in flight, sent at `sent`: Err(EIO) when that makes it
    /// a poison (then remembered: the same request again fails at once).
    fn died(&mut self, sent: std::time::Instant, conn: &Conn, up: &Upstream) -> Result<()> {
        if up.poisoned().last_died() && sent.elapsed() < POISON_WINDOW {
            self.0 += 1;
        }
        if self.0 >= POISON_DEATHS {
            warn!(
                epoch = conn.epoch,
                deaths = self.0,
                "the stock server died each time it was given this request: EIO"
            );
            up.poisoned().remember_last_died();
            return Err(Errno::EIO);
        }
        Ok(())
    }
}

/// Open flags a handle is reopened without: creating and truncating happened once.
const NOT_AGAIN: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC;

/// The FOPEN_* flags of the server's that the kernel is given.
const OPEN_FLAGS: u32 = FOPEN_DIRECT_IO
    | FOPEN_KEEP_CACHE
    | FOPEN_NONSEEKABLE
    | FOPEN_CACHE_DIR
    | FOPEN_STREAM
    | FOPEN_NOFLUSH
    | FOPEN_PARALLEL_DIRECT_WRITES;

/// The wrapper's filesystem.
pub struct Wrap {
    up: Arc<Upstream>,
    nodes: Arc<Nodes>,
    /// The kernel side of forwarded notifications, once the session gives it.
    notifier: Arc<OnceLock<Notifier>>,
    /// The kernel's RELEASEs sent on and not answered yet, per inode (see `wait_released`).
    releasing: Arc<Releasing>,
    /// The kernel's page cache is in writeback mode (set at INIT): it reads through
    /// write-only handles and does O_APPEND itself.
    writeback: AtomicBool,
}

/// How long a removal waits for its inode's releases to be answered, at most (a server that
/// does not answer one is not a reason to fail the removal).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// RELEASEs in flight per wrapper nodeid, and their end.
#[derive(Default)]
struct Releasing {
    count: Mutex<HashMap<u64, u32>>,
    ended: Condvar,
}

impl std::fmt::Debug for Wrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrap").field("up", &self.up).finish_non_exhaustive()
    }
}

fn caller(ctx: &Context<'_>) -> Caller {
    Caller { uid: ctx.uid, gid: ctx.gid, pid: ctx.pid }
}

fn duration(secs: u64, nsec: u32) -> Duration {
    Duration::new(secs, nsec.min(999_999_999))
}

impl Wrap {
    /// The wrapper over `up`, its tables in `store`.
    pub fn new(up: Arc<Upstream>, store: Arc<Store>) -> std::io::Result<Wrap> {
        let nodes = Arc::new(Nodes::open(store).map_err(std::io::Error::other)?);
        let notifier = Arc::new(OnceLock::new());
        let notes = up.notifications();
        let (n, k) = (nodes.clone(), notifier.clone());
        // Forwarded from a thread of their own: the kernel may wait on a request of ours
        // (a READ holding a page lock) to carry one out.
        std::thread::Builder::new()
            .name("notifications".into())
            .spawn(move || forward_notifications(&notes, &n, &k))?;
        Ok(Wrap {
            up,
            nodes,
            notifier,
            releasing: Arc::default(),
            writeback: AtomicBool::new(false),
        })
    }

    /// The stock server (for its restart count).
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.up
    }

    /// Runs `op` against the live server; when that server dies first, again against the
    /// next one. For requests that are safe to repeat.
    fn again<T>(&self, mut op: impl FnMut(&Conn) -> Relayed<T>) -> Result<T> {
        let mut conn = self.up.current()?;
        let mut deaths = Deaths::default();
        loop {
            let sent = std::time::Instant::now();
            self.up.poisoned().clear_last_died();
            match op(&conn) {
                Ok(value) => return Ok(value),
                Err(Failure::Errno(e)) => return Err(e),
                Err(Failure::Died) => {
                    deaths.died(sent, &conn, &self.up)?;
                    debug!(
                        epoch = conn.epoch,
                        "stock server died with a request in flight: sending it again"
                    );
                    conn = self.up.after(conn.epoch)?;
                }
            }
        }
    }

    /// Runs a non-idempotent `op`; when the server dies after the request was sent
    /// (`op` sets its flag before sending), the next server is asked first, through
    /// `settle`, whether it had taken effect (`Some`: the answer).
    fn once<T>(
        &self,
        mut op: impl FnMut(&Conn, &mut bool) -> Relayed<T>,
        mut settle: impl FnMut(&Conn) -> Relayed<Option<T>>,
    ) -> Result<T> {
        let mut conn = self.up.current()?;
        let mut unsure = false;
        let mut deaths = Deaths::default();
        loop {
            let sent = std::time::Instant::now();
            self.up.poisoned().clear_last_died();
            let result = if unsure {
                match settle(&conn) {
                    Ok(Some(value)) => Ok(value),
                    Ok(None) => {
                        unsure = false;
                        op(&conn, &mut unsure)
                    }
                    Err(e) => Err(e),
                }
            } else {
                op(&conn, &mut unsure)
            };
            match result {
                Ok(value) => return Ok(value),
                Err(Failure::Errno(e)) => return Err(e),
                Err(Failure::Died) => {
                    deaths.died(sent, &conn, &self.up)?;
                    conn = self.up.after(conn.epoch)?;
                }
            }
        }
    }

    fn send_forget(&self, conn: &Conn, forget: Option<Forget>) {
        if let Some((s, n)) = forget {
            conn.forget(s, n);
        }
    }

    /// The server's nodeid of `nodeid`, finding the inode again by name if this server has
    /// not seen it yet.
    fn snode(&self, conn: &Conn, nodeid: u64) -> Relayed<u64> {
        self.snode_depth(conn, nodeid, 0)
    }

    fn snode_depth(&self, conn: &Conn, nodeid: u64, depth: usize) -> Relayed<u64> {
        if let Some(s) = self.nodes.server_node(conn.epoch, nodeid) {
            return Ok(s);
        }
        if depth > MAX_DEPTH {
            return Err(Errno::ESTALE.into());
        }
        let node = self.nodes.node(nodeid)?;
        let mut found = None;
        // The recorded name, then the one before a rename that was in progress.
        for (parent, name) in node.name.into_iter().chain(node.before) {
            let sp = self.snode_depth(conn, parent, depth + 1)?;
            let name: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(name);
            if let Some(out) = self.lookup_raw(conn, sp, &name, Caller::default())? {
                found = Some(out);
                break;
            }
        }
        let Some(out) = found else {
            warn!(nodeid, "inode not found again by its name: ESTALE");
            return Err(Errno::ESTALE.into());
        };
        match self.nodes.rebind(conn.epoch, nodeid, &out) {
            Ok(()) => Ok(out.nodeid),
            Err((e, forget)) => {
                self.send_forget(conn, forget);
                warn!(nodeid, "the name now names another inode: ESTALE");
                Err(e.into())
            }
        }
    }

    /// Before a request that names an existing entry of `parent` (UNLINK, RMDIR, RENAME):
    /// the kernel only sends one for an entry it has looked up, and servers count on it
    /// (fuse-overlayfs frees an inode twice when asked to remove one it never answered a
    /// LOOKUP for). A restarted server that has not yet been asked is asked now: the inode
    /// recorded under the name is found again (bound, its lookup the kernel's to forget),
    /// or, with none recorded, the name is looked up and the server lookup returned, to be
    /// forgotten after the request. `known_only`: a name with no inode recorded is taken
    /// for one the kernel holds nothing under (RENAME's new name), and not looked up.
    fn looked_up(
        &self,
        conn: &Conn,
        parent: u64,
        sp: u64,
        name: &OsStr,
        known_only: bool,
    ) -> Relayed<Option<Forget>> {
        let known = self.nodes.named(parent, name);
        if known.is_none() && known_only {
            return Ok(None);
        }
        if let Some(w) = known {
            if self.nodes.server_node(conn.epoch, w).is_some() {
                return Ok(None);
            }
            match self.snode(conn, w) {
                Ok(_) => return Ok(None),
                Err(Failure::Died) => return Err(Failure::Died),
                // Not (or no longer) that inode: as if none were recorded.
                Err(Failure::Errno(_)) => {}
            }
        }
        Ok(self.lookup_raw(conn, sp, name, Caller::default())?.map(|out| (out.nodeid, 1)))
    }

    /// LOOKUP at the server, nothing bound: `None` when the name is not there.
    fn lookup_raw(
        &self,
        conn: &Conn,
        sp: u64,
        name: &OsStr,
        who: Caller,
    ) -> Relayed<Option<fuse_entry_out>> {
        match conn.call(fuse_opcode::FUSE_LOOKUP, sp, who, &[&name_z(name)]) {
            Ok(payload) => {
                let out = wire::entry(&payload)?;
                Ok((out.nodeid != 0).then_some(out))
            }
            Err(Failure::Errno(Errno::ENOENT)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A server entry made the kernel's: bound to a wrapper nodeid and counted.
    fn entry(
        &self,
        ctx: &Context<'_>,
        conn: &Conn,
        parent: u64,
        name: Option<&OsStr>,
        out: &fuse_entry_out,
    ) -> Relayed<Entry> {
        self.find_links(conn, out);
        let Bound { nodeid, generation, ino } = match self.nodes.bind(conn.epoch, parent, name, out)
        {
            Ok(b) => b,
            // The server that answered has died since: its count went with it.
            Err(Errno::EAGAIN) => return Err(Failure::Died),
            Err(e) => {
                self.send_forget(conn, Some((out.nodeid, 1)));
                return Err(e.into());
            }
        };
        let counted = ctx.counted(NodeId(nodeid));
        let mut attr = out.attr;
        attr.ino = ino;
        Ok(Entry {
            counted,
            generation,
            attr,
            entry_valid: duration(out.entry_valid, out.entry_valid_nsec),
            attr_valid: duration(out.attr_valid, out.attr_valid_nsec),
        })
    }

    /// Before a restarted server's entry is bound: an inode the wrapper knows under another
    /// name with the same server inode number (a hard link) is found again by that name
    /// first, so that the entry binds to it if it is the same inode (the same server nodeid)
    /// rather than to a new one.
    fn find_links(&self, conn: &Conn, out: &fuse_entry_out) {
        if out.attr.ino == out.nodeid || self.nodes.knows_server(conn.epoch, out.nodeid) {
            return;
        }
        let kind = wire::kind(&out.attr);
        for w in self.nodes.unfound_with_ino(conn.epoch, out.attr.ino, kind) {
            if self.snode(conn, w).is_ok_and(|s| s == out.nodeid) {
                return;
            }
        }
    }

    /// Whether the server's entry `out` is the inode `nodeid` (server nodeid `s`): the same
    /// server nodeid, or the same inode number where the server has real ones. A server that
    /// numbers each name apart (libfuse's high-level API without use_ino, sshfs) tells no
    /// inode from another: there, the same type, mode, owner, size and modification time.
    /// (Only LINK's settling asks: the kernel sent it because the new name was free, so an
    /// entry there now that looks like the inode is the link.)
    fn is_inode(
        &self,
        ctx: &Context<'_>,
        conn: &Conn,
        nodeid: u64,
        s: u64,
        out: &fuse_entry_out,
    ) -> Relayed<bool> {
        if out.nodeid == s {
            return Ok(true);
        }
        let node = self.nodes.node(nodeid)?;
        if node.server_ino {
            return Ok(out.attr.ino == node.ino);
        }
        let payload = conn.call(
            fuse_opcode::FUSE_GETATTR,
            s,
            caller(ctx),
            &[fuse_getattr_in::new_zeroed().as_bytes()],
        )?;
        let old = wire::parse::<fuse_attr_out>(&payload)?.attr;
        let new = out.attr;
        Ok((old.mode, old.uid, old.gid, old.size, old.mtime, old.mtimensec)
            == (new.mode, new.uid, new.gid, new.size, new.mtime, new.mtimensec))
    }

    /// The server's fh for `fh` (and the server's nodeid), reopening the handle if this
    /// server has not opened it.
    fn sfh(&self, conn: &Conn, fh: FileHandle) -> Relayed<(u64, u64)> {
        let handle = self.nodes.handle(fh.0)?;
        let s = self.snode(conn, handle.nodeid)?;
        if let Some(sfh) = self.nodes.server_fh(conn.epoch, fh.0) {
            return Ok((s, sfh));
        }
        let who = Caller { uid: handle.uid, gid: handle.gid, pid: 0 };
        let opened = self.open_raw(conn, s, handle.dir, handle.flags & !NOT_AGAIN, who)?;
        match self.nodes.set_server_fh(conn.epoch, fh.0, opened.fh) {
            Ok(()) => Ok((s, opened.fh)),
            Err(theirs) => {
                self.release_raw(conn, s, handle.dir, opened.fh, handle.flags);
                theirs.map(|t| (s, t)).ok_or(Failure::Died)
            }
        }
    }

    fn open_raw(
        &self,
        conn: &Conn,
        s: u64,
        dir: bool,
        flags: i32,
        who: Caller,
    ) -> Relayed<fuse_open_out> {
        let opcode = if dir { fuse_opcode::FUSE_OPENDIR } else { fuse_opcode::FUSE_OPEN };
        let arg = fuse_open_in { flags: flags as u32, open_flags: 0 };
        let payload = conn.call(opcode, s, who, &[arg.as_bytes()])?;
        Ok(wire::parse::<fuse_open_out>(&payload)?)
    }

    fn release_raw(&self, conn: &Conn, s: u64, dir: bool, sfh: u64, flags: i32) {
        let opcode = if dir { fuse_opcode::FUSE_RELEASEDIR } else { fuse_opcode::FUSE_RELEASE };
        let arg = fuse_release_in { fh: sfh, flags: flags as u32, release_flags: 0, lock_owner: 0 };
        if let Err(Failure::Errno(e)) = conn.call(opcode, s, Caller::default(), &[arg.as_bytes()]) {
            debug!(%e, "release at the stock server");
        }
    }

    /// Waits (at most [`RELEASE_WAIT`]) until the RELEASEs of the inode under `name` in
    /// `parent` that went to the server are answered, before a request that removes the name
    /// (UNLINK, RENAME over it). The kernel sends RELEASE without waiting for it after a
    /// close, so the application's next request (unlink the file it just closed) can reach a
    /// multi-threaded server first: libfuse's high-level API then takes the file for open and
    /// hides it (renames it to `.fuse_hidden...`, to be removed at the RELEASE). A server
    /// killed between the two leaves the hidden file for ever, and its directory cannot be
    /// removed; waiting here keeps the kernel's order.
    fn wait_released(&self, parent: u64, name: &OsStr) {
        let Some(w) = self.nodes.named(parent, name) else { return };
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        let mut count = lock(&self.releasing.count);
        while count.get(&w).is_some_and(|&n| n > 0) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                debug!(nodeid = w, "a release still unanswered: removing anyway");
                return;
            }
            count =
                self.releasing.ended.wait_timeout(count, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// A new handle for the kernel on `nodeid`, open at the server as `out`.
    fn opened(
        &self,
        ctx: &Context<'_>,
        conn: &Conn,
        nodeid: u64,
        dir: bool,
        flags: i32,
        out: &fuse_open_out,
    ) -> Relayed<Opened> {
        let handle = Handle { nodeid, flags, dir, uid: ctx.uid, gid: ctx.gid };
        let fh = self.nodes.open_handle(conn.epoch, handle, out.fh)?;
        ctx.handle_opened(FileHandle(fh));
        Ok(Opened { fh: FileHandle(fh), open_flags: out.open_flags & OPEN_FLAGS, backing_id: 0 })
    }

    fn attr_out(&self, nodeid: u64, payload: &[u8]) -> Relayed<Attr> {
        let out = wire::parse::<fuse_attr_out>(payload)?;
        let mut attr = out.attr;
        if nodeid != ROOT {
            attr.ino = self.nodes.node(nodeid)?.ino;
        }
        Ok(Attr { attr, valid: duration(out.attr_valid, out.attr_valid_nsec) })
    }

    /// MKDIR, MKNOD, SYMLINK: made once; settled by the name being there, of `kind`.
    fn make(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        kind: Option<u32>,
        opcode: fuse_opcode,
        arg: &[u8],
        tail: &[u8],
    ) -> Result<Entry> {
        let name_bytes = name_z(name);
        self.once(
            |conn, sent| {
                let sp = self.snode(conn, parent.0)?;
                *sent = true;
                let payload = conn.call(opcode, sp, caller(ctx), &[arg, &name_bytes, tail])?;
                let out = wire::entry(&payload)?;
                if out.nodeid == 0 {
                    return Err(Errno::EIO.into());
                }
                self.entry(ctx, conn, parent.0, Some(name), &out)
            },
            |conn| {
                let sp = self.snode(conn, parent.0)?;
                match self.lookup_raw(conn, sp, name, caller(ctx))? {
                    Some(out)
                        if opcode == fuse_opcode::FUSE_MKDIR
                            && wire::kind(&out.attr) == libc::S_IFDIR
                            && self.remove_unfinished_dir(ctx, conn, parent.0, sp, name)? =>
                    {
                        self.send_forget(conn, Some((out.nodeid, 1)));
                        Ok(None)
                    }
                    Some(out) if kind.is_none_or(|k| wire::kind(&out.attr) == k) => {
                        debug!(?opcode, "settled: it had taken effect");
                        self.entry(ctx, conn, parent.0, Some(name), &out).map(Some)
                    }
                    Some(out) => {
                        self.send_forget(conn, Some((out.nodeid, 1)));
                        Ok(None)
                    }
                    None => Ok(None),
                }
            },
        )
    }

    /// The directory found under `name` in `parent` (the server's `sp`) after a MKDIR whose
    /// server died, removed if it is empty, to be made again: a server whose MKDIR takes two
    /// steps leaves one half made when killed between them (gocryptfs: the directory, then its
    /// `gocryptfs.diriv`, without which nothing can be created in it), and the next server
    /// cannot finish it. An empty one is all a finished MKDIR leaves too, and the kernel has
    /// never seen it: made again, it is the same. One that holds anything (RMDIR refused) is
    /// kept, and taken for the MKDIR's. True: removed. Sent as the MKDIR's caller.
    fn remove_unfinished_dir(
        &self,
        ctx: &Context<'_>,
        conn: &Conn,
        parent: u64,
        sp: u64,
        name: &OsStr,
    ) -> Relayed<bool> {
        match conn.call(fuse_opcode::FUSE_RMDIR, sp, caller(ctx), &[&name_z(name)]) {
            Ok(_) => {
                debug!(?name, "an unsure MKDIR's empty directory removed, to be made again");
                self.nodes.unlinked(parent, name);
                Ok(true)
            }
            Err(Failure::Errno(e)) => {
                debug!(?name, %e, "an unsure MKDIR's directory kept");
                Ok(false)
            }
            Err(died) => Err(died),
        }
    }

    /// UNLINK, RMDIR: settled by the name being gone.
    fn remove(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        opcode: fuse_opcode,
    ) -> Result<()> {
        let name_bytes = name_z(name);
        self.wait_released(parent.0, name);
        self.once(
            |conn, sent| {
                let sp = self.snode(conn, parent.0)?;
                let extra = self.looked_up(conn, parent.0, sp, name, false)?;
                *sent = true;
                let result = conn.call(opcode, sp, caller(ctx), &[&name_bytes]);
                self.send_forget(conn, extra);
                result?;
                Ok(())
            },
            |conn| {
                let sp = self.snode(conn, parent.0)?;
                match self.lookup_raw(conn, sp, name, caller(ctx))? {
                    Some(out) => {
                        self.send_forget(conn, Some((out.nodeid, 1)));
                        Ok(None)
                    }
                    None => Ok(Some(())),
                }
            },
        )?;
        self.nodes.unlinked(parent.0, name);
        Ok(())
    }

    fn xattr_exists(&self, conn: &Conn, ctx: &Context<'_>, s: u64, name: &[u8]) -> Relayed<bool> {
        let arg = fuse_getxattr_in { size: 0, padding: 0 };
        match conn.call(fuse_opcode::FUSE_GETXATTR, s, caller(ctx), &[arg.as_bytes(), name]) {
            Ok(_) | Err(Failure::Errno(Errno::ERANGE)) => Ok(true),
            Err(Failure::Errno(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn xattr_value(
        &self,
        conn: &Conn,
        ctx: &Context<'_>,
        s: u64,
        name: &[u8],
        size: usize,
    ) -> Relayed<Option<Vec<u8>>> {
        let arg = fuse_getxattr_in { size: size as u32, padding: 0 };
        match conn.call(fuse_opcode::FUSE_GETXATTR, s, caller(ctx), &[arg.as_bytes(), name]) {
            Ok(v) => Ok(Some(v)),
            Err(Failure::Errno(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Filesystem for Wrap {
    fn notifier(&self, notifier: Notifier) {
        let _ = self.notifier.set(notifier);
    }

    fn init(&self, negotiated_flags: u64) {
        self.writeback.store(negotiated_flags & FUSE_WRITEBACK_CACHE != 0, Ordering::Relaxed);
        self.up.set_offer(crate::offer_flags(negotiated_flags));
    }

    fn destroy(&self) {
        self.up.stop(Duration::from_secs(5));
    }

    fn lookup(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<Entry> {
        self.again(|conn| {
            let sp = self.snode(conn, parent.0)?;
            let payload = conn
                .call(fuse_opcode::FUSE_LOOKUP, sp, caller(ctx), &[&name_z(name)])
                .inspect_err(|e| {
                    debug!(parent = parent.0, ?name, "LOOKUP failed");
                    if matches!(e, Failure::Errno(Errno::ENOENT)) {
                        // Whatever inode was recorded under the name is not there now.
                        self.nodes.unlinked(parent.0, name);
                    }
                })?;
            let out = wire::entry(&payload)?;
            if out.nodeid == 0 {
                self.nodes.unlinked(parent.0, name);
                return Ok(Entry::negative(
                    out.attr,
                    duration(out.entry_valid, out.entry_valid_nsec),
                ));
            }
            self.entry(ctx, conn, parent.0, Some(name), &out)
        })
    }

    fn forget(&self, nodeid: NodeId, nlookup: u64) {
        // Never waits for a server: with none alive, nothing is owed to the next one.
        let conn = self.up.live();
        let forget = self.nodes.forget(nodeid.0, nlookup, conn.as_ref().map(|c| c.epoch));
        if let Some(conn) = conn {
            self.send_forget(&conn, forget);
        }
    }

    fn getattr(&self, ctx: &Context<'_>, nodeid: NodeId, fh: Option<FileHandle>) -> Result<Attr> {
        self.again(|conn| {
            let (s, arg) = match fh {
                Some(fh) if self.nodes.handle(fh.0).is_ok() => {
                    let (s, sfh) = self.sfh(conn, fh)?;
                    (s, fuse_getattr_in { getattr_flags: FUSE_GETATTR_FH, dummy: 0, fh: sfh })
                }
                _ => (self.snode(conn, nodeid.0)?, fuse_getattr_in::new_zeroed()),
            };
            let payload =
                conn.call(fuse_opcode::FUSE_GETATTR, s, caller(ctx), &[arg.as_bytes()])?;
            self.attr_out(nodeid.0, &payload)
        })
    }

    fn setattr(&self, ctx: &Context<'_>, nodeid: NodeId, set: &SetAttr) -> Result<Attr> {
        // Absolute values (truncate to N, chmod to M, chown to U:G, times): sent again.
        self.again(|conn| {
            let mut arg = fuse_setattr_in::new_zeroed();
            let s = match set.fh {
                Some(fh) if self.nodes.handle(fh.0).is_ok() => {
                    let (s, sfh) = self.sfh(conn, fh)?;
                    arg.valid |= FATTR_FH;
                    arg.fh = sfh;
                    s
                }
                _ => self.snode(conn, nodeid.0)?,
            };
            if let Some(mode) = set.mode {
                arg.valid |= FATTR_MODE;
                arg.mode = mode;
            }
            if let Some(uid) = set.uid {
                arg.valid |= FATTR_UID;
                arg.uid = uid;
            }
            if let Some(gid) = set.gid {
                arg.valid |= FATTR_GID;
                arg.gid = gid;
            }
            if let Some(size) = set.size {
                arg.valid |= FATTR_SIZE;
                arg.size = size;
            }
            match set.atime {
                Some(SetTime::Now) => arg.valid |= FATTR_ATIME | FATTR_ATIME_NOW,
                Some(SetTime::At { sec, nsec }) => {
                    arg.valid |= FATTR_ATIME;
                    arg.atime = sec as u64;
                    arg.atimensec = nsec;
                }
                None => {}
            }
            match set.mtime {
                Some(SetTime::Now) => arg.valid |= FATTR_MTIME | FATTR_MTIME_NOW,
                Some(SetTime::At { sec, nsec }) => {
                    arg.valid |= FATTR_MTIME;
                    arg.mtime = sec as u64;
                    arg.mtimensec = nsec;
                }
                None => {}
            }
            if let Some(SetTime::At { sec, nsec }) = set.ctime {
                arg.valid |= FATTR_CTIME;
                arg.ctime = sec as u64;
                arg.ctimensec = nsec;
            }
            if set.kill_suidgid {
                arg.valid |= FATTR_KILL_SUIDGID;
            }
            let payload =
                conn.call(fuse_opcode::FUSE_SETATTR, s, caller(ctx), &[arg.as_bytes()])?;
            self.attr_out(nodeid.0, &payload)
        })
    }

    fn readlink(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<Vec<u8>> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            conn.call(fuse_opcode::FUSE_READLINK, s, caller(ctx), &[])
        })
    }

    fn symlink(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<Entry> {
        self.make(
            ctx,
            parent,
            name,
            Some(libc::S_IFLNK),
            fuse_opcode::FUSE_SYMLINK,
            &[],
            &name_z(target),
        )
    }

    fn mknod(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> Result<Entry> {
        let arg = fuse_mknod_in { mode, rdev, umask, padding: 0 };
        self.make(
            ctx,
            parent,
            name,
            Some(mode & libc::S_IFMT),
            fuse_opcode::FUSE_MKNOD,
            arg.as_bytes(),
            &[],
        )
    }

    fn mkdir(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        let arg = fuse_mkdir_in { mode, umask };
        self.make(
            ctx,
            parent,
            name,
            Some(libc::S_IFDIR),
            fuse_opcode::FUSE_MKDIR,
            arg.as_bytes(),
            &[],
        )
    }

    fn unlink(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        self.remove(ctx, parent, name, fuse_opcode::FUSE_UNLINK)
    }

    fn rmdir(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        self.remove(ctx, parent, name, fuse_opcode::FUSE_RMDIR)
    }

    fn rename(&self, ctx: &Context<'_>, args: &Rename<'_>) -> Result<()> {
        let (old, new) = (name_z(args.name), name_z(args.newname));
        let exchange = args.flags & libc::RENAME_EXCHANGE != 0;
        if !exchange {
            // libfuse's high-level API hides an open file renamed over, as one unlinked.
            self.wait_released(args.newparent.0, args.newname);
        }
        // For an exchange, the inode at the old name before: another one there afterwards
        // means it took effect.
        let before: Cell<Option<(u64, u64)>> = Cell::new(None);
        let moved = if exchange {
            None
        } else {
            self.nodes.rename_begin(args.parent.0, args.name, args.newparent.0, args.newname)
        };
        let result = self.once(
            |conn, sent| {
                let sp = self.snode(conn, args.parent.0)?;
                let snp = self.snode(conn, args.newparent.0)?;
                if exchange && before.get().is_none_or(|(epoch, _)| epoch != conn.epoch) {
                    let out = self.lookup_raw(conn, sp, args.name, caller(ctx))?;
                    if let Some(out) = out {
                        self.send_forget(conn, Some((out.nodeid, 1)));
                        before.set(Some((conn.epoch, out.attr.ino)));
                    }
                }
                let extra = [
                    self.looked_up(conn, args.parent.0, sp, args.name, false)?,
                    self.looked_up(conn, args.newparent.0, snp, args.newname, true)?,
                ];
                *sent = true;
                let result = if args.flags == 0 {
                    let arg = fuse_rename_in { newdir: snp };
                    conn.call(
                        fuse_opcode::FUSE_RENAME,
                        sp,
                        caller(ctx),
                        &[arg.as_bytes(), &old, &new],
                    )
                } else {
                    let arg = fuse_rename2_in { newdir: snp, flags: args.flags, padding: 0 };
                    conn.call(
                        fuse_opcode::FUSE_RENAME2,
                        sp,
                        caller(ctx),
                        &[arg.as_bytes(), &old, &new],
                    )
                };
                for forget in extra {
                    self.send_forget(conn, forget);
                }
                result?;
                Ok(())
            },
            |conn| {
                let sp = self.snode(conn, args.parent.0)?;
                let snp = self.snode(conn, args.newparent.0)?;
                let o = self.lookup_raw(conn, sp, args.name, caller(ctx))?;
                let n = self.lookup_raw(conn, snp, args.newname, caller(ctx))?;
                for out in o.iter().chain(n.iter()) {
                    self.send_forget(conn, Some((out.nodeid, 1)));
                }
                if exchange {
                    // Inode numbers survive a restart of servers with real ones; with
                    // nodeid-numbered ones there is nothing to compare: sent again.
                    return Ok(match (before.get(), o) {
                        (Some((_, ino)), Some(o)) if o.attr.ino != ino => Some(()),
                        _ => None,
                    });
                }
                Ok((o.is_none() && n.is_some()).then_some(()))
            },
        );
        if let Err(e) = result {
            if let Some(w) = moved {
                self.nodes.rename_failed(w, args.parent.0, args.name);
            }
            return Err(e);
        }
        self.nodes.renamed(args.parent.0, args.name, args.newparent.0, args.newname, exchange);
        Ok(())
    }

    fn link(&self, ctx: &Context<'_>, args: &Link<'_>) -> Result<Entry> {
        let newname = name_z(args.newname);
        self.once(
            |conn, sent| {
                let s = self.snode(conn, args.nodeid.0)?;
                let snp = self.snode(conn, args.newparent.0)?;
                *sent = true;
                let arg = fuse_link_in { oldnodeid: s };
                let payload = conn.call(
                    fuse_opcode::FUSE_LINK,
                    snp,
                    caller(ctx),
                    &[arg.as_bytes(), &newname],
                )?;
                let out = wire::entry(&payload)?;
                if out.nodeid == 0 {
                    return Err(Errno::EIO.into());
                }
                self.entry(ctx, conn, args.newparent.0, Some(args.newname), &out)
            },
            |conn| {
                let s = self.snode(conn, args.nodeid.0)?;
                let snp = self.snode(conn, args.newparent.0)?;
                let Some(out) = self.lookup_raw(conn, snp, args.newname, caller(ctx))? else {
                    return Ok(None);
                };
                if self.is_inode(ctx, conn, args.nodeid.0, s, &out)? {
                    return self
                        .entry(ctx, conn, args.newparent.0, Some(args.newname), &out)
                        .map(Some);
                }
                self.send_forget(conn, Some((out.nodeid, 1)));
                Ok(None)
            },
        )
    }

    fn open(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let out = self.open_raw(conn, s, false, flags, caller(ctx))?;
            self.opened(ctx, conn, nodeid.0, false, flags, &out)
        })
    }

    fn read(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let flags = self.nodes.handle(fh.0)?.flags;
        if flags & libc::O_ACCMODE == libc::O_WRONLY && !self.writeback.load(Ordering::Relaxed) {
            // Without the writeback cache the kernel never reads through a write-only file;
            // the library's settling of an append does, and must learn that it cannot
            // (sshfs answers such a READ with data that is not the file's). With it, the
            // kernel reads the page a write covers in part (the server, which asked for
            // writeback, opened the file readable), and no WRITE is settled as an append.
            return Err(Errno::EBADF);
        }
        self.again(|conn| {
            let (s, sfh) = self.sfh(conn, fh)?;
            let arg = fuse_read_in {
                fh: sfh,
                offset,
                size: buf.len() as u32,
                read_flags: 0,
                lock_owner: 0,
                flags: flags as u32,
                padding: 0,
            };
            let data = conn.call(fuse_opcode::FUSE_READ, s, caller(ctx), &[arg.as_bytes()])?;
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            Ok(n)
        })
    }

    fn write(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        flags: i32,
    ) -> Result<u32> {
        let handle = self.nodes.handle(fh.0)?;
        let write_flags = write_flags & !FUSE_WRITE_LOCKOWNER;
        // In writeback mode the kernel appends itself: every WRITE says where its bytes go,
        // and a positioned write done twice is done once.
        let append = handle.flags & libc::O_APPEND != 0 && !self.writeback.load(Ordering::Relaxed);
        let mut done = 0usize;
        while done < data.len() || data.is_empty() {
            let size_before: Cell<Option<(u64, u64)>> = Cell::new(None);
            let chunk_of = |conn: &Conn| {
                let max = (conn.init.max_write as usize).max(4096);
                &data[done..data.len().min(done + max)]
            };
            let n = self.once(
                |conn, sent| {
                    let chunk = chunk_of(conn);
                    let (s, sfh) = self.sfh(conn, fh)?;
                    if append && size_before.get().is_none_or(|(e, _)| e != conn.epoch) {
                        let arg =
                            fuse_getattr_in { getattr_flags: FUSE_GETATTR_FH, dummy: 0, fh: sfh };
                        let payload = conn.call(
                            fuse_opcode::FUSE_GETATTR,
                            s,
                            caller(ctx),
                            &[arg.as_bytes()],
                        )?;
                        size_before.set(Some((
                            conn.epoch,
                            wire::parse::<fuse_attr_out>(&payload)?.attr.size,
                        )));
                    }
                    let arg = fuse_write_in {
                        fh: sfh,
                        offset: offset + done as u64,
                        size: chunk.len() as u32,
                        write_flags,
                        lock_owner: 0,
                        flags: flags as u32,
                        padding: 0,
                    };
                    *sent = true;
                    let payload = conn.call(
                        fuse_opcode::FUSE_WRITE,
                        s,
                        caller(ctx),
                        &[arg.as_bytes(), chunk],
                    )?;
                    Ok(wire::parse::<fuse_write_out>(&payload)?.size as usize)
                },
                |conn| {
                    // Only appends are not safe to repeat (a positioned write of the same
                    // bytes twice is one effect).
                    let Some((_, before)) = size_before.get().filter(|_| append) else {
                        return Ok(None);
                    };
                    let chunk = chunk_of(conn);
                    let (s, sfh) = self.sfh(conn, fh)?;
                    let arg = fuse_getattr_in { getattr_flags: FUSE_GETATTR_FH, dummy: 0, fh: sfh };
                    let payload =
                        conn.call(fuse_opcode::FUSE_GETATTR, s, caller(ctx), &[arg.as_bytes()])?;
                    let size = wire::parse::<fuse_attr_out>(&payload)?.attr.size;
                    if size < before + chunk.len() as u64 {
                        return Ok(None);
                    }
                    if handle.flags & libc::O_ACCMODE == libc::O_WRONLY {
                        return Ok(Some(chunk.len()));
                    }
                    let arg = fuse_read_in {
                        fh: sfh,
                        offset: before,
                        size: chunk.len() as u32,
                        read_flags: 0,
                        lock_owner: 0,
                        flags: handle.flags as u32,
                        padding: 0,
                    };
                    let there =
                        conn.call(fuse_opcode::FUSE_READ, s, caller(ctx), &[arg.as_bytes()])?;
                    Ok((there == chunk).then_some(chunk.len()))
                },
            )?;
            done += n;
            if n == 0 || data.is_empty() {
                break;
            }
        }
        Ok(done as u32)
    }

    fn flush(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        _lock_owner: u64,
    ) -> Result<()> {
        self.again(|conn| {
            // A handle this server never opened has nothing for it to flush: its writes went
            // to an earlier server, and its locks with it. Reopening it to flush it would
            // only cost a round trip (or fail: its file may be gone).
            if self.nodes.server_fh(conn.epoch, fh.0).is_none() {
                return Ok(());
            }
            let (s, sfh) = self.sfh(conn, fh)?;
            let arg = fuse_flush_in { fh: sfh, unused: 0, padding: 0, lock_owner: 0 };
            conn.call(fuse_opcode::FUSE_FLUSH, s, caller(ctx), &[arg.as_bytes()])?;
            Ok(())
        })
    }

    fn release(
        &self,
        _ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        flags: i32,
    ) -> Result<()> {
        self.close(fh, false, flags)
    }

    fn fsync(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        datasync: bool,
    ) -> Result<()> {
        self.sync(ctx, fh, datasync, fuse_opcode::FUSE_FSYNC)
    }

    fn opendir(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let out = self.open_raw(conn, s, true, flags, caller(ctx))?;
            self.opened(ctx, conn, nodeid.0, true, flags, &out)
        })
    }

    fn readdir(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        out: &mut DirFiller<'_, '_>,
    ) -> Result<()> {
        let size = out.size().max(4096) as u32;
        let want_plus = out.is_plus();
        let conn_and_records = self.again(|conn| {
            let (s, sfh) = self.sfh(conn, fh)?;
            let plus = want_plus && conn.has(FUSE_DO_READDIRPLUS);
            let opcode =
                if plus { fuse_opcode::FUSE_READDIRPLUS } else { fuse_opcode::FUSE_READDIR };
            let arg = fuse_read_in {
                fh: sfh,
                offset,
                size,
                read_flags: 0,
                lock_owner: 0,
                flags: 0,
                padding: 0,
            };
            let payload = conn.call(opcode, s, caller(ctx), &[arg.as_bytes()])?;
            Ok((self.up.current().ok(), plus, payload))
        })?;
        let (conn, plus, payload) = conn_and_records;
        let records = wire::dir_records(&payload, plus)?;
        let mut full = false;
        for record in records {
            let dots = record.name == "." || record.name == "..";
            let server_entry = record.entry.filter(|e| e.nodeid != 0 && !dots);
            if full {
                // Not given to the kernel: the server's count of it is given back.
                if let (Some(e), Some(conn)) = (server_entry, &conn) {
                    self.send_forget(conn, Some(self.nodes.server_forget(e.nodeid)));
                }
                continue;
            }
            let Some(e) = server_entry.filter(|_| out.is_plus()) else {
                let ino =
                    if plus { record.entry.map_or(record.ino, |e| e.attr.ino) } else { record.ino };
                if !out.add(ino, record.off, record.typ, record.name) {
                    full = true;
                }
                continue;
            };
            let Some(conn) = &conn else { break };
            let entry = match self.entry(ctx, conn, nodeid.0, Some(record.name), &e) {
                Ok(entry) => entry,
                Err(_) => {
                    // Listed without attributes.
                    if !out.add(e.attr.ino, record.off, record.typ, record.name) {
                        full = true;
                    }
                    continue;
                }
            };
            if let Err(entry) = out.add_plus(entry, record.off, record.typ, record.name) {
                ctx.count_dropped();
                let forget = self.nodes.forget(entry.nodeid().0, 1, Some(conn.epoch));
                self.send_forget(conn, forget);
                full = true;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Context<'_>, _nodeid: NodeId, fh: FileHandle) -> Result<()> {
        self.close(fh, true, 0)
    }

    fn fsyncdir(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        datasync: bool,
    ) -> Result<()> {
        self.sync(ctx, fh, datasync, fuse_opcode::FUSE_FSYNCDIR)
    }

    fn statfs(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<Statfs> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let payload = conn.call(fuse_opcode::FUSE_STATFS, s, caller(ctx), &[])?;
            Ok(wire::parse::<fuse_statfs_out>(&payload)?.st)
        })
    }

    fn setxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let name_bytes = name_z(name);
        let create = flags & libc::XATTR_CREATE != 0;
        let existed: Cell<Option<(u64, bool)>> = Cell::new(None);
        self.once(
            |conn, sent| {
                let s = self.snode(conn, nodeid.0)?;
                if create && existed.get().is_none_or(|(e, _)| e != conn.epoch) {
                    existed.set(Some((conn.epoch, self.xattr_exists(conn, ctx, s, &name_bytes)?)));
                }
                let arg = fuse_setxattr_in {
                    size: value.len() as u32,
                    flags: flags as u32,
                    setxattr_flags: 0,
                    padding: 0,
                };
                let arg_len = if conn.has(FUSE_SETXATTR_EXT) { 16 } else { 8 };
                *sent = true;
                conn.call(
                    fuse_opcode::FUSE_SETXATTR,
                    s,
                    caller(ctx),
                    &[&arg.as_bytes()[..arg_len], &name_bytes, value],
                )?;
                Ok(())
            },
            |conn| {
                // Without XATTR_CREATE the same value set twice is one effect.
                if !create || existed.get().is_some_and(|(_, was)| was) {
                    return Ok(None);
                }
                let s = self.snode(conn, nodeid.0)?;
                let there = self.xattr_value(conn, ctx, s, &name_bytes, value.len().max(1))?;
                Ok((there.as_deref() == Some(value)).then_some(()))
            },
        )
    }

    fn getxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        buf: &mut [u8],
    ) -> Result<usize> {
        let name_bytes = name_z(name);
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let arg = fuse_getxattr_in { size: buf.len() as u32, padding: 0 };
            let payload = conn.call(
                fuse_opcode::FUSE_GETXATTR,
                s,
                caller(ctx),
                &[arg.as_bytes(), &name_bytes],
            )?;
            sized(&payload, buf)
        })
    }

    fn listxattr(&self, ctx: &Context<'_>, nodeid: NodeId, buf: &mut [u8]) -> Result<usize> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let arg = fuse_getxattr_in { size: buf.len() as u32, padding: 0 };
            let payload =
                conn.call(fuse_opcode::FUSE_LISTXATTR, s, caller(ctx), &[arg.as_bytes()])?;
            sized(&payload, buf)
        })
    }

    fn removexattr(&self, ctx: &Context<'_>, nodeid: NodeId, name: &OsStr) -> Result<()> {
        let name_bytes = name_z(name);
        let existed: Cell<Option<(u64, bool)>> = Cell::new(None);
        self.once(
            |conn, sent| {
                let s = self.snode(conn, nodeid.0)?;
                if existed.get().is_none_or(|(e, _)| e != conn.epoch) {
                    existed.set(Some((conn.epoch, self.xattr_exists(conn, ctx, s, &name_bytes)?)));
                }
                *sent = true;
                conn.call(fuse_opcode::FUSE_REMOVEXATTR, s, caller(ctx), &[&name_bytes])?;
                Ok(())
            },
            |conn| {
                if existed.get().is_some_and(|(_, was)| !was) {
                    return Ok(None);
                }
                let s = self.snode(conn, nodeid.0)?;
                Ok((!self.xattr_exists(conn, ctx, s, &name_bytes)?).then_some(()))
            },
        )
    }

    fn access(&self, ctx: &Context<'_>, nodeid: NodeId, mask: u32) -> Result<()> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let arg = fuse_access_in { mask, padding: 0 };
            conn.call(fuse_opcode::FUSE_ACCESS, s, caller(ctx), &[arg.as_bytes()])?;
            Ok(())
        })
    }

    fn creator_uid(&self, _ctx: &Context<'_>) -> Option<u32> {
        // A stock server may create as the caller, as itself or under owners it maps
        // (sshfs): not known here.
        None
    }

    fn keep_resent_mkdir(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        _entry: &Entry,
    ) -> bool {
        // As for an unsure MKDIR whose stock server died (`make`): the directory is made
        // again unless it holds something. Any error: kept, as before.
        let removed = self.again(|conn| {
            let sp = self.snode(conn, parent.0)?;
            self.remove_unfinished_dir(ctx, conn, parent.0, sp, name)
        });
        !removed.unwrap_or(false)
    }

    fn same_inode(&self, ctx: &Context<'_>, nodeid: NodeId, entry: &Entry) -> bool {
        if entry.nodeid() == nodeid {
            return true;
        }
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            let mut out = fuse_entry_out::new_zeroed();
            out.nodeid = self.snode(conn, entry.nodeid().0)?;
            out.attr = entry.attr;
            self.is_inode(ctx, conn, nodeid.0, s, &out)
        })
        .unwrap_or(false)
    }

    fn create(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        let name_bytes = name_z(name);
        self.once(
            |conn, sent| {
                let sp = self.snode(conn, parent.0)?;
                let arg = fuse_create_in {
                    flags: args.flags as u32,
                    mode: args.mode,
                    umask: args.umask,
                    open_flags: 0,
                };
                *sent = true;
                let payload = conn.call(
                    fuse_opcode::FUSE_CREATE,
                    sp,
                    caller(ctx),
                    &[arg.as_bytes(), &name_bytes],
                )?;
                let out = wire::entry(&payload)?;
                let open = wire::parse::<fuse_open_out>(
                    payload.get(size_of::<fuse_entry_out>()..).unwrap_or(&[]),
                )?;
                if out.nodeid == 0 {
                    return Err(Errno::EIO.into());
                }
                self.created(ctx, conn, parent.0, name, &out, &open, args.flags)
            },
            |conn| {
                let sp = self.snode(conn, parent.0)?;
                let Some(out) = self.lookup_raw(conn, sp, name, caller(ctx))? else {
                    return Ok(None);
                };
                if wire::kind(&out.attr) != libc::S_IFREG {
                    self.send_forget(conn, Some((out.nodeid, 1)));
                    return Ok(None);
                }
                let flags = args.flags & !NOT_AGAIN;
                let open = match self.open_raw(conn, out.nodeid, false, flags, caller(ctx)) {
                    Ok(open) => open,
                    Err(e) => {
                        self.send_forget(conn, Some((out.nodeid, 1)));
                        return Err(e);
                    }
                };
                debug!("CREATE settled: it had taken effect");
                self.created(ctx, conn, parent.0, name, &out, &open, flags).map(Some)
            },
        )
    }

    fn fallocate(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<()> {
        self.again(|conn| {
            let (s, sfh) = self.sfh(conn, fh)?;
            let arg = fuse_fallocate_in { fh: sfh, offset, length, mode, padding: 0 };
            conn.call(fuse_opcode::FUSE_FALLOCATE, s, caller(ctx), &[arg.as_bytes()])?;
            Ok(())
        })
    }

    fn lseek(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        whence: u32,
    ) -> Result<u64> {
        self.again(|conn| {
            let (s, sfh) = self.sfh(conn, fh)?;
            let arg = fuse_lseek_in { fh: sfh, offset, whence, padding: 0 };
            let payload = conn.call(fuse_opcode::FUSE_LSEEK, s, caller(ctx), &[arg.as_bytes()])?;
            Ok(wire::parse::<fuse_lseek_out>(&payload)?.offset)
        })
    }

    fn copy_file_range(&self, ctx: &Context<'_>, range: &CopyRange) -> Result<u64> {
        self.again(|conn| {
            let (s_in, fh_in) = self.sfh(conn, range.fh_in)?;
            let (s_out, fh_out) = self.sfh(conn, range.fh_out)?;
            let arg = fuse_copy_file_range_in {
                fh_in,
                off_in: range.off_in,
                nodeid_out: s_out,
                fh_out,
                off_out: range.off_out,
                len: range.len,
                flags: range.flags,
            };
            let payload =
                conn.call(fuse_opcode::FUSE_COPY_FILE_RANGE, s_in, caller(ctx), &[arg.as_bytes()])?;
            Ok(u64::from(wire::parse::<fuse_write_out>(&payload)?.size))
        })
    }

    fn syncfs(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<()> {
        self.again(|conn| {
            let s = self.snode(conn, nodeid.0)?;
            conn.call(
                fuse_opcode::FUSE_SYNCFS,
                s,
                caller(ctx),
                &[fuse_syncfs_in { padding: 0 }.as_bytes()],
            )?;
            Ok(())
        })
    }
}

impl Wrap {
    #[allow(clippy::too_many_arguments)]
    fn created(
        &self,
        ctx: &Context<'_>,
        conn: &Conn,
        parent: u64,
        name: &OsStr,
        out: &fuse_entry_out,
        open: &fuse_open_out,
        flags: i32,
    ) -> Relayed<(Entry, Opened)> {
        let entry = match self.entry(ctx, conn, parent, Some(name), out) {
            Ok(entry) => entry,
            Err(e) => {
                self.release_raw(conn, out.nodeid, false, open.fh, flags);
                return Err(e);
            }
        };
        let opened = match self.opened(ctx, conn, entry.nodeid().0, false, flags, open) {
            Ok(opened) => opened,
            Err(e) => {
                self.release_raw(conn, out.nodeid, false, open.fh, flags);
                ctx.count_dropped();
                let forget = self.nodes.forget(entry.nodeid().0, 1, Some(conn.epoch));
                self.send_forget(conn, forget);
                return Err(e);
            }
        };
        Ok((entry, opened))
    }

    fn close(&self, fh: FileHandle, dir: bool, flags: i32) -> Result<()> {
        let Ok(handle) = self.nodes.handle(fh.0) else {
            // A RELEASE resent after the wrapper had done it: nothing is open under it.
            return Ok(());
        };
        let Ok(conn) = self.up.current() else {
            let _ = self.nodes.close_handle(0, fh.0);
            return Ok(());
        };
        if let Some(sfh) = self.nodes.close_handle(conn.epoch, fh.0)
            && let Some(s) = self.nodes.server_node(conn.epoch, handle.nodeid)
        {
            // Counted until answered, for `wait_released` (its thread waits for the reply,
            // reading the socket itself, so the answer is taken at once). A server that dies
            // now closes it anyway.
            let w = handle.nodeid;
            *lock(&self.releasing.count).entry(w).or_default() += 1;
            self.release_raw(&conn, s, dir, sfh, if dir { 0 } else { flags });
            let mut count = lock(&self.releasing.count);
            if let Some(n) = count.get_mut(&w) {
                *n -= 1;
                if *n == 0 {
                    count.remove(&w);
                }
            }
            self.releasing.ended.notify_all();
        }
        Ok(())
    }

    fn sync(
        &self,
        ctx: &Context<'_>,
        fh: FileHandle,
        datasync: bool,
        opcode: fuse_opcode,
    ) -> Result<()> {
        self.again(|conn| {
            let (s, sfh) = self.sfh(conn, fh)?;
            let arg = fuse_fsync_in { fh: sfh, fsync_flags: u32::from(datasync), padding: 0 };
            conn.call(opcode, s, caller(ctx), &[arg.as_bytes()])?;
            Ok(())
        })
    }
}

/// A GETXATTR or LISTXATTR answer: the size asked for (a probe with an empty buffer), or
/// the bytes.
fn sized(payload: &[u8], buf: &mut [u8]) -> Relayed<usize> {
    if buf.is_empty() {
        return Ok(wire::parse::<fuse_getxattr_out>(payload)?.size as usize);
    }
    if payload.len() > buf.len() {
        return Err(Errno::ERANGE.into());
    }
    buf[..payload.len()].copy_from_slice(payload);
    Ok(payload.len())
}

impl Recoverable for Wrap {
    const TABLES: &'static [TableSpec] = &crate::TABLES;
}

/// Forwards the stock server's notifications to the kernel, in the wrapper's nodeids, until
/// the wrapper's end: INVAL_INODE, INVAL_ENTRY and DELETE of inodes the kernel was given (the
/// others, and those of a server life that has ended or of inodes the kernel does not hold,
/// mean nothing to it and are dropped). STORE, RETRIEVE and POLL are not forwarded.
fn forward_notifications(notes: &Receiver<Note>, nodes: &Nodes, notifier: &OnceLock<Notifier>) {
    use fuse_abi::fuse_notify_code as code;
    // A notification's fixed part, then the name of `namelen` bytes it says follows.
    fn named<T: FromBytes>(
        p: &[u8],
        namelen: impl Fn(&T) -> u32,
    ) -> Option<(T, std::ffi::OsString)> {
        let (out, rest) = T::read_from_prefix(p).ok()?;
        let name = rest.get(..namelen(&out) as usize)?;
        wire::valid_name(name).then(|| (out, OsStr::from_bytes(name).to_owned()))
    }
    while let Ok(note) = notes.recv() {
        let Some(kernel) = notifier.get() else { continue };
        let p = &note.payload;
        let ours = |s: u64| nodes.ours(note.epoch, s).map(NodeId);
        let sent = match note.code {
            c if c == code::FUSE_NOTIFY_INVAL_INODE as i32 => {
                fuse_notify_inval_inode_out::read_from_prefix(p).ok().and_then(|(out, _)| {
                    ours(out.ino).map(|w| kernel.inval_inode(w, out.off, out.len))
                })
            }
            c if c == code::FUSE_NOTIFY_INVAL_ENTRY as i32 => {
                named(p, |o: &fuse_notify_inval_entry_out| o.namelen).and_then(|(out, name)| {
                    ours(out.parent).map(|parent| kernel.inval_entry(parent, &name, out.flags))
                })
            }
            c if c == code::FUSE_NOTIFY_DELETE as i32 => {
                named(p, |o: &fuse_notify_delete_out| o.namelen).and_then(|(out, name)| {
                    let parent = ours(out.parent)?;
                    nodes.unlinked(parent.0, &name);
                    Some(match ours(out.child) {
                        Some(child) => kernel.delete(parent, child, &name),
                        None => kernel.inval_entry(parent, &name, 0),
                    })
                })
            }
            _ => None,
        };
        match sent {
            Some(Err(errno)) => {
                debug!(code = note.code, %errno, "forwarding a notification failed")
            }
            Some(Ok(())) => {}
            None => debug!(code = note.code, epoch = note.epoch, "notification not forwarded"),
        }
    }
}
