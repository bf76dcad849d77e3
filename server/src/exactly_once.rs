//! Exactly once across a crash: the entry point for every request, which journals a
//! non-idempotent one (intent before it executes, reply before it is written) and settles one
//! the kernel resent after a crash from its record and the filesystem's state
//! (docs/EXACTLY_ONCE.md). Everything else goes straight to [`crate::dispatch`].

use std::ffi::OsStr;

use fuse_abi::*;
use fuse_proto::reply::ReplyBuf;
use fuse_proto::{Errno, Operation, Request};
use tracing::{debug, info};

use crate::channel::{Channel, Context};
use crate::dispatch::{Outcome, dispatch_plain, push_entry, push_open};
use crate::filesystem::*;
use crate::ids::{FileHandle, NodeId, Unique};
use crate::init::Negotiation;
use crate::journal::{
    CrashPoint, Journal, JournalRecord, is_non_idempotent, maybe_crash, original_unique,
};
use crate::stats::{RequestStats, Settled};

/// Serves one request: calls `fs` and leaves the reply in `reply`. `data` is the worker's
/// scratch buffer for READ data and xattr values.
pub(crate) fn serve_request<F: Filesystem>(
    fs: &F,
    channel: &Channel,
    negotiation: &Negotiation,
    journal: Option<&dyn Journal>,
    stats: &RequestStats,
    req: Request<'_>,
    reply: &mut ReplyBuf,
    data: &mut [u8],
) -> (Outcome, Option<u64>) {
    let unique = req.unique;
    let opcode = req.opcode;
    let original = original_unique(unique);
    if unique != original {
        info!(
            unique = format_args!("{unique:#x}"),
            op = opcode.name(),
            nodeid = req.nodeid,
            "resent request"
        );
        stats.count_resent();
    }
    let mut ctx = Context {
        unique: Unique(unique),
        uid: req.uid,
        gid: req.gid,
        pid: req.pid,
        channel,
        journal: None,
    };
    let writeback = negotiation.has(fuse_abi::FUSE_WRITEBACK_CACHE);
    let journal = journal.filter(|_| is_non_idempotent(&req.op, writeback));
    let Some(journal) = journal else {
        // Unjournaled requests honour the fault-injection switch too (a resent one is simply
        // executed).
        maybe_crash(opcode, CrashPoint::Before);
        let outcome = dispatch_plain(fs, &ctx, negotiation, req, reply, data);
        maybe_crash(opcode, CrashPoint::Executed);
        maybe_crash(opcode, CrashPoint::Journaled);
        return (outcome, None);
    };
    if unique != original
        && let Some(record) = journal.find(original)
    {
        let entry = record.entry;
        let replayable = !matches!(req.op, Operation::Tmpfile { .. });
        if let Some(bytes) = record.reply.as_deref().filter(|_| replayable) {
            // Executed and answered before the crash, the answer never delivered: send it again.
            info!(
                unique = format_args!("{unique:#x}"),
                op = opcode.name(),
                "replaying the journaled reply"
            );
            stats.count_settled(Settled::Replayed);
            reply.clear();
            reply.push_bytes(bytes.get(16..).unwrap_or_default());
            let error =
                bytes.get(4..8).map_or(0, |e| i32::from_le_bytes(e.try_into().unwrap_or_default()));
            if error < 0 {
                reply.error(unique, Errno::new(-error));
            } else {
                reply.finish(unique, 0);
            }
            return (Outcome::Reply, Some(entry));
        }
        // Begun, never answered: look at the filesystem before doing anything.
        ctx.journal = Some((journal, entry));
        reply.clear();
        match settle(fs, &ctx, NodeId(req.nodeid), &req.op, &record, reply) {
            Ok(Some(())) => {
                info!(
                    unique = format_args!("{unique:#x}"),
                    op = opcode.name(),
                    "settled: it had taken effect"
                );
                stats.count_settled(Settled::TookEffect);
                reply.finish(unique, 0);
                journal.record(entry, reply.bytes());
                return (Outcome::Reply, Some(entry));
            }
            Ok(None) => {
                info!(
                    unique = format_args!("{unique:#x}"),
                    op = opcode.name(),
                    "settled: it had not taken effect"
                );
                stats.count_settled(Settled::NotTakenEffect);
                let outcome = dispatch_plain(fs, &ctx, negotiation, req, reply, data);
                journal.record(entry, reply.bytes());
                return (outcome, Some(entry));
            }
            Err(errno) => {
                reply.error(unique, errno);
                journal.record(entry, reply.bytes());
                return (Outcome::Reply, Some(entry));
            }
        }
    }
    // An appending WRITE's intent is where the end of the file was; RENAME_EXCHANGE's is the
    // inode number at the old name (it changes when the exchange is done); an exclusive
    // SETXATTR's and a REMOVEXATTR's whether the attribute existed (`XATTR_WAS_THERE`), since
    // the state that means "done" is also the state in which they fail.
    let intent = match &req.op {
        Operation::Setxattr { arg, name, .. } if arg.flags as i32 & XATTR_CREATE != 0 => {
            xattr_intent(fs, &ctx, NodeId(req.nodeid), name)
        }
        Operation::Removexattr { name } => xattr_intent(fs, &ctx, NodeId(req.nodeid), name),
        Operation::Write { arg, .. } => fs
            .getattr(&ctx, NodeId(req.nodeid), Some(FileHandle(arg.fh)))
            .map_or(u64::MAX, |a| a.attr.size),
        Operation::Rename { flags, name, .. } if flags & RENAME_EXCHANGE != 0 => {
            match fs.lookup(&ctx, NodeId(req.nodeid), name) {
                Ok(entry) if entry.nodeid().0 != 0 => {
                    fs.forget(entry.nodeid(), 1);
                    entry.attr.ino
                }
                _ => u64::MAX,
            }
        }
        _ => 0,
    };
    let entry = journal.begin(original, intent);
    ctx.journal = entry.map(|entry| (journal, entry));
    maybe_crash(opcode, CrashPoint::Before);
    let outcome = dispatch_plain(fs, &ctx, negotiation, req, reply, data);
    maybe_crash(opcode, CrashPoint::Executed);
    if let Some(entry) = entry {
        journal.record(entry, reply.bytes());
    }
    maybe_crash(opcode, CrashPoint::Journaled);
    (outcome, entry)
}

/// Settles a resent request whose intent, but no result, is journaled: decides from the
/// filesystem whether it had taken effect. `Ok(Some(()))`: it had; its reply is in `reply`.
/// `Ok(None)`: it had not; execute it. The rules, per operation:
///
/// - MKDIR, MKNOD, SYMLINK: the name exists (with the right type for MKDIR and SYMLINK), owned
///   by the uid the caller's entries get (`Filesystem::creator_uid`) -> taken effect, answered
///   with its entry. Otherwise not (an entry another user made while the server was down is
///   theirs: executed again, the request gets EEXIST). A MKDIR's directory the filesystem
///   finds half made and removes (`Filesystem::keep_resent_mkdir`) -> executed again.
/// - LINK: the new name is the same inode -> taken effect.
/// - CREATE: the name exists, owned as for MKDIR -> taken effect: opened again without
///   O_CREAT, O_EXCL, O_TRUNC
///   (`Filesystem::reopen_created`: the creator may open it whatever its mode).
/// - UNLINK, RMDIR: the name is gone -> taken effect.
/// - RENAME (plain, NOREPLACE): the old name is gone and the new one exists -> taken effect.
/// - appending WRITE: the file has grown past where its end was at the intent, and holds
///   the request's bytes there -> taken effect.
/// - SETXATTR with XATTR_CREATE: the attribute exists with the request's value -> taken
///   effect. REMOVEXATTR: the attribute is gone -> taken effect.
/// - RENAME_EXCHANGE: the old name holds another inode than at the intent -> taken effect.
/// - TMPFILE: the crashed attempt's count and handle are dropped (its file died with it); then
///   executed again.
/// - MKDIR, MKNOD, SYMLINK, LINK, CREATE answered from the filesystem: the lookup that found
///   the entry counted it; when the crashed attempt had counted it too (`Context::
///   counted`), one count goes, and a handle it had opened is released.
/// - FALLOCATE, COPY_FILE_RANGE, SETATTR, SETXATTR without XATTR_CREATE: executed
///   again; see docs/EXACTLY_ONCE.md for why each is safe to.
fn settle<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    nodeid: NodeId,
    op: &Operation<'_>,
    begun: &JournalRecord,
    reply: &mut ReplyBuf,
) -> Result<Option<()>> {
    let intent = begun.intent;
    // Lookups made to settle are not the request's own counts: they stay out of its record.
    let probe = ctx.without_journal();
    let found = |parent, name| match fs.lookup(&probe, parent, name) {
        // A negative entry (nodeid 0, counted by no one) says the name is not there.
        Ok(entry) if entry.nodeid().0 == 0 => Ok(None),
        Ok(entry) => Ok(Some(entry)),
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(errno),
    };
    // The entry a request that had taken effect answers with: the lookup that found it counted
    // it, and so had the crashed execution if it got as far as `Context::counted`; the kernel
    // gets one reply, so one of the two counts goes.
    // (Settling again after another crash does the same: its own lookup counts once more.)
    let answer = |reply: &mut ReplyBuf, entry: &Entry| {
        if begun.counted == entry.nodeid().0 {
            fs.forget(entry.nodeid(), 1);
        }
        push_entry(reply, entry);
    };
    // Undoing what the crashed execution did (a count it took, a handle it opened) must not
    // happen twice: this process may reuse the freed nodeid or fh at once, and a settle cut
    // short by another crash is settled again from the same record. So the record forgets it
    // first; a crash in between leaves a count or a handle too many, never one too few.
    let release_orphan = |nodeid: NodeId, flags: i32| {
        if begun.opened != 0 {
            ctx.handle_opened(FileHandle(0));
            let _ = fs.release(ctx, nodeid, FileHandle(begun.opened), flags);
        }
    };
    // An entry someone else made under the name while the server was down is not the crashed
    // request's: executed again, the request meets it as it would have without a crash.
    let not_ours = |entry: &Entry| fs.creator_uid(ctx).is_some_and(|uid| entry.attr.uid != uid);
    Ok(match op {
        Operation::Mkdir { name, .. }
        | Operation::Mknod { name, .. }
        | Operation::Symlink { name, .. } => match found(nodeid, name)? {
            Some(entry) => {
                let want = match op {
                    Operation::Mkdir { .. } => Some(S_IFDIR),
                    Operation::Symlink { .. } => Some(S_IFLNK),
                    _ => None,
                };
                let remade = || match op {
                    Operation::Mkdir { name, .. } => {
                        !fs.keep_resent_mkdir(&probe, nodeid, name, &entry)
                    }
                    _ => false,
                };
                if want.is_some_and(|w| entry.attr.mode & S_IFMT != w)
                    || not_ours(&entry)
                    || remade()
                {
                    fs.forget(entry.nodeid(), 1);
                    None
                } else {
                    answer(reply, &entry);
                    Some(())
                }
            }
            None => None,
        },
        Operation::Link { oldnodeid, name } => match found(nodeid, name)? {
            Some(entry) if fs.same_inode(&probe, NodeId(*oldnodeid), &entry) => {
                answer(reply, &entry);
                Some(())
            }
            Some(entry) => {
                fs.forget(entry.nodeid(), 1);
                None
            }
            None => None,
        },
        Operation::Create { arg, name } => match found(nodeid, name)? {
            Some(entry) if not_ours(&entry) => {
                fs.forget(entry.nodeid(), 1);
                None
            }
            Some(entry) => {
                let flags = arg.flags as i32 & !(O_CREAT | O_EXCL | O_TRUNC);
                match fs.reopen_created(ctx, entry.nodeid(), flags) {
                    Ok(opened) => {
                        // The crashed execution's handle never reached the kernel.
                        release_orphan(entry.nodeid(), flags);
                        answer(reply, &entry);
                        push_open(reply, &opened);
                        Some(())
                    }
                    Err(errno) => {
                        // The kernel gets an error: neither lookup count stays.
                        let crashed = u64::from(begun.counted == entry.nodeid().0);
                        ctx.count_dropped();
                        fs.forget(entry.nodeid(), 1 + crashed);
                        release_orphan(entry.nodeid(), flags);
                        return Err(errno);
                    }
                }
            }
            None => None,
        },
        Operation::Unlink { name } | Operation::Rmdir { name } => match found(nodeid, name)? {
            Some(entry) => {
                fs.forget(entry.nodeid(), 1);
                None
            }
            None => Some(()),
        },
        Operation::Write { arg, data } if intent != u64::MAX => {
            let size = fs.getattr(ctx, nodeid, Some(FileHandle(arg.fh)))?.attr.size;
            debug!(intent, size, len = data.len(), "settling an appending WRITE");
            if size < intent + data.len() as u64 {
                return Ok(None);
            }
            // Compare the bytes when the handle can read; a write-only handle has grown by
            // the request's length, which is all that can be known.
            let mut there = vec![0u8; data.len()];
            let landed = match fs.read(ctx, nodeid, FileHandle(arg.fh), intent, &mut there) {
                Ok(n) => n == data.len() && there == *data,
                Err(Errno::EBADF) => true,
                Err(errno) => return Err(errno),
            };
            if landed {
                reply.push(&fuse_write_out { size: data.len() as u32, padding: 0 });
                Some(())
            } else {
                None
            }
        }
        Operation::Setxattr { arg, name, value } if arg.flags as i32 & XATTR_CREATE != 0 => {
            if intent == XATTR_WAS_THERE {
                // It failed (EEXIST) or would: executing again gives that answer.
                return Ok(None);
            }
            let mut there = vec![0u8; value.len()];
            match fs.getxattr(ctx, nodeid, name, &mut there) {
                Ok(n) if n == value.len() && there == *value => Some(()),
                _ => None,
            }
        }
        Operation::Tmpfile { .. } => {
            // The crashed attempt's file is gone with its fds; drop what it left counted and
            // open, and make a new one.
            ctx.count_dropped();
            if begun.counted != 0 {
                fs.forget(NodeId(begun.counted), 1);
            }
            release_orphan(NodeId(begun.counted), 0);
            None
        }
        // Absent at the intent: it failed (ENODATA) or would; executing again gives that.
        Operation::Removexattr { .. } if intent == XATTR_WAS_ABSENT => None,
        Operation::Removexattr { name } => match fs.getxattr(ctx, nodeid, name, &mut []) {
            Err(Errno::ENODATA) => Some(()),
            _ => None,
        },
        Operation::Rename { flags, name, .. }
            if flags & RENAME_EXCHANGE != 0 && intent != u64::MAX =>
        {
            match found(nodeid, name)? {
                Some(entry) => {
                    fs.forget(entry.nodeid(), 1);
                    (entry.attr.ino != intent).then_some(())
                }
                None => None,
            }
        }
        Operation::Rename { newdir, flags, name, newname } if flags & RENAME_EXCHANGE == 0 => {
            let old = found(nodeid, name)?;
            let new = found(NodeId(*newdir), newname)?;
            for entry in old.iter().chain(new.iter()) {
                fs.forget(entry.nodeid(), 1);
            }
            (old.is_none() && new.is_some()).then_some(())
        }
        _ => None,
    })
}

/// An xattr operation's intent: the attribute existed, did not, or could not be probed (0).
const XATTR_WAS_THERE: u64 = 1;
const XATTR_WAS_ABSENT: u64 = 2;

fn xattr_intent<F: Filesystem>(fs: &F, ctx: &Context<'_>, nodeid: NodeId, name: &OsStr) -> u64 {
    match fs.getxattr(ctx, nodeid, name, &mut []) {
        Ok(_) | Err(Errno::ERANGE) => XATTR_WAS_THERE,
        Err(Errno::ENODATA) => XATTR_WAS_ABSENT,
        Err(_) => 0,
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const O_CREAT: i32 = 0o100;
const O_EXCL: i32 = 0o200;
const O_TRUNC: i32 = 0o1000;
const RENAME_EXCHANGE: u32 = 2;
const XATTR_CREATE: i32 = 1;
