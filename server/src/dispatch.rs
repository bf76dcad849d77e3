//! From a decoded request to a filesystem call and its reply bytes.

use std::ffi::OsStr;
use std::time::Duration;

use fuse_abi::*;
use fuse_proto::reply::ReplyBuf;
use fuse_proto::{Errno, Operation, Request, dirent::DirentBuf};
use tracing::{info, trace, warn};

use crate::channel::{Channel, Context, KEEPER_FH};
use crate::filesystem::*;
use crate::init::Negotiation;
use crate::journal::{
    CrashPoint, Journal, JournalRecord, is_non_idempotent, maybe_crash, original_unique,
};

/// Room in a worker's reply buffer: headers, entries, directory listings (capped to it), with
/// margin. READ data and xattr values go out from the worker's data buffer instead.
pub(crate) const REPLY_CAPACITY: usize = 128 * 1024;

/// What the worker sends after dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The reply is in the reply buffer.
    Reply,
    /// The reply is the reply buffer followed by the first `n` bytes of the data buffer.
    ReplyWithData(usize),
    /// The opcode has no reply (FORGET, BATCH_FORGET, INTERRUPT).
    NoReply,
}

/// Serves one request: calls `fs` and leaves the reply in `reply`. `data` is the worker's
/// scratch buffer for READ data and xattr values.
pub(crate) fn dispatch<F: Filesystem>(
    fs: &F,
    channel: &Channel,
    negotiation: &Negotiation,
    journal: Option<&dyn Journal>,
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
    }
    let mut ctx =
        Context { unique, uid: req.uid, gid: req.gid, pid: req.pid, channel, journal: None };
    let journal = journal.filter(|_| is_non_idempotent(&req.op));
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
        match settle(fs, &ctx, req.nodeid, &req.op, &record, reply) {
            Ok(Some(())) => {
                info!(
                    unique = format_args!("{unique:#x}"),
                    op = opcode.name(),
                    "settled: it had taken effect"
                );
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
            xattr_intent(fs, &ctx, req.nodeid, name)
        }
        Operation::Removexattr { name } => xattr_intent(fs, &ctx, req.nodeid, name),
        Operation::Write { arg, .. } => {
            fs.getattr(&ctx, req.nodeid, Some(arg.fh)).map_or(u64::MAX, |a| a.attr.size)
        }
        Operation::Rename { flags, name, .. } if flags & RENAME_EXCHANGE != 0 => {
            fs.lookup(&ctx, req.nodeid, name).map_or(u64::MAX, |entry| {
                fs.forget(entry.nodeid, 1);
                entry.attr.ino
            })
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
///   theirs: executed again, the request gets EEXIST).
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
///   entry_counted`), one count goes, and a handle it had opened is released.
/// - FALLOCATE, COPY_FILE_RANGE, SETATTR, SETXATTR without XATTR_CREATE: executed
///   again; see docs/EXACTLY_ONCE.md for why each is safe to.
fn settle<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    nodeid: u64,
    op: &Operation<'_>,
    begun: &JournalRecord,
    reply: &mut ReplyBuf,
) -> Result<Option<()>> {
    let intent = begun.intent;
    let found = |parent, name| match fs.lookup(ctx, parent, name) {
        Ok(entry) => Ok(Some(entry)),
        Err(Errno::ENOENT) => Ok(None),
        Err(errno) => Err(errno),
    };
    // The entry a request that had taken effect answers with: the lookup that found it counted
    // it, and so had the crashed execution if it got as far as `entry_counted`; the kernel
    // gets one reply, so one of the two counts goes.
    // (Settling again after another crash does the same: its own lookup counts once more.)
    let answer = |reply: &mut ReplyBuf, entry: &Entry| {
        if begun.counted == entry.nodeid {
            fs.forget(entry.nodeid, 1);
        }
        push_entry(reply, entry);
    };
    // Undoing what the crashed execution did (a count it took, a handle it opened) must not
    // happen twice: this process may reuse the freed nodeid or fh at once, and a settle cut
    // short by another crash is settled again from the same record. So the record forgets it
    // first; a crash in between leaves a count or a handle too many, never one too few.
    let release_orphan = |nodeid: u64, flags: i32| {
        if begun.opened != 0 {
            ctx.handle_opened(0);
            let _ = fs.release(ctx, nodeid, begun.opened, flags);
        }
    };
    // An entry someone else made under the name while the server was down is not the crashed
    // request's: executed again, the request meets it as it would have without a crash.
    let not_ours = |entry: &Entry| entry.attr.uid != fs.creator_uid(ctx);
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
                if want.is_some_and(|w| entry.attr.mode & S_IFMT != w) || not_ours(&entry) {
                    fs.forget(entry.nodeid, 1);
                    None
                } else {
                    answer(reply, &entry);
                    Some(())
                }
            }
            None => None,
        },
        Operation::Link { oldnodeid, name } => match found(nodeid, name)? {
            Some(entry) if entry.nodeid == *oldnodeid => {
                answer(reply, &entry);
                Some(())
            }
            Some(entry) => {
                fs.forget(entry.nodeid, 1);
                None
            }
            None => None,
        },
        Operation::Create { arg, name } => match found(nodeid, name)? {
            Some(entry) if not_ours(&entry) => {
                fs.forget(entry.nodeid, 1);
                None
            }
            Some(entry) => {
                let flags = arg.flags as i32 & !(O_CREAT | O_EXCL | O_TRUNC);
                match fs.reopen_created(ctx, entry.nodeid, flags) {
                    Ok(opened) => {
                        // The crashed execution's handle never reached the kernel.
                        release_orphan(entry.nodeid, flags);
                        answer(reply, &entry);
                        push_open(reply, &opened);
                        Some(())
                    }
                    Err(errno) => {
                        // The kernel gets an error: neither lookup count stays.
                        let crashed = u64::from(begun.counted == entry.nodeid);
                        ctx.entry_counted(0);
                        fs.forget(entry.nodeid, 1 + crashed);
                        release_orphan(entry.nodeid, flags);
                        return Err(errno);
                    }
                }
            }
            None => None,
        },
        Operation::Unlink { name } | Operation::Rmdir { name } => match found(nodeid, name)? {
            Some(entry) => {
                fs.forget(entry.nodeid, 1);
                None
            }
            None => Some(()),
        },
        Operation::Write { arg, data } if intent != u64::MAX => {
            let size = fs.getattr(ctx, nodeid, Some(arg.fh))?.attr.size;
            if size < intent + data.len() as u64 {
                return Ok(None);
            }
            // Compare the bytes when the handle can read; a write-only handle has grown by
            // the request's length, which is all that can be known.
            let mut there = vec![0u8; data.len()];
            let landed = match fs.read(ctx, nodeid, arg.fh, intent, &mut there) {
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
            ctx.entry_counted(0);
            if begun.counted != 0 {
                fs.forget(begun.counted, 1);
            }
            release_orphan(begun.counted, 0);
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
                    fs.forget(entry.nodeid, 1);
                    (entry.attr.ino != intent).then_some(())
                }
                None => None,
            }
        }
        Operation::Rename { newdir, flags, name, newname } if flags & RENAME_EXCHANGE == 0 => {
            let old = found(nodeid, name)?;
            let new = found(*newdir, newname)?;
            for entry in old.iter().chain(new.iter()) {
                fs.forget(entry.nodeid, 1);
            }
            (old.is_none() && new.is_some()).then_some(())
        }
        _ => None,
    })
}

/// An xattr operation's intent: the attribute existed, did not, or could not be probed (0).
const XATTR_WAS_THERE: u64 = 1;
const XATTR_WAS_ABSENT: u64 = 2;

fn xattr_intent<F: Filesystem>(fs: &F, ctx: &Context<'_>, nodeid: u64, name: &OsStr) -> u64 {
    match fs.getxattr(ctx, nodeid, name, &mut []) {
        Ok(_) | Err(Errno::ERANGE) => XATTR_WAS_THERE,
        Err(Errno::ENODATA) => XATTR_WAS_ABSENT,
        Err(_) => 0,
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const O_RDONLY: i32 = 0;
const O_CREAT: i32 = 0o100;
const O_EXCL: i32 = 0o200;
const O_TRUNC: i32 = 0o1000;
const RENAME_EXCHANGE: u32 = 2;
const XATTR_CREATE: i32 = 1;

/// Serves one request without the journal.
fn dispatch_plain<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    negotiation: &Negotiation,
    req: Request<'_>,
    reply: &mut ReplyBuf,
    data: &mut [u8],
) -> Outcome {
    reply.clear();
    let unique = req.unique;
    let result = serve(fs, ctx, negotiation, req.nodeid, req.op, reply, data);
    match result {
        Ok(Outcome::Reply) => {
            reply.finish(unique, 0);
            Outcome::Reply
        }
        Ok(Outcome::ReplyWithData(n)) => {
            reply.finish(unique, n);
            Outcome::ReplyWithData(n)
        }
        Ok(Outcome::NoReply) => Outcome::NoReply,
        Err(errno) => {
            trace!(unique, ?errno, "error reply");
            reply.error(unique, errno);
            Outcome::Reply
        }
    }
}

fn serve<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    negotiation: &Negotiation,
    nodeid: u64,
    op: Operation<'_>,
    reply: &mut ReplyBuf,
    data: &mut [u8],
) -> Result<Outcome> {
    match op {
        Operation::Lookup { name } => push_entry(reply, &fs.lookup(ctx, nodeid, name)?),
        Operation::Forget { nlookup } => {
            fs.forget(nodeid, nlookup);
            return Ok(Outcome::NoReply);
        }
        Operation::BatchForget { forgets } => {
            for one in forgets {
                fs.forget(one.nodeid, one.nlookup);
            }
            return Ok(Outcome::NoReply);
        }
        Operation::Interrupt { unique } => {
            // Every operation here completes without waiting on the application, so the
            // original request's reply answers the interrupt too.
            trace!(interrupted = unique, "interrupt");
            return Ok(Outcome::NoReply);
        }
        Operation::Getattr { arg } => {
            let by_fh = arg.getattr_flags & FUSE_GETATTR_FH != 0 && arg.fh & KEEPER_FH == 0;
            let fh = by_fh.then_some(arg.fh);
            push_attr(reply, &fs.getattr(ctx, nodeid, fh)?);
        }
        Operation::Setattr { arg } => push_attr(reply, &fs.setattr(ctx, nodeid, &set_attr(&arg))?),
        Operation::Readlink => {
            let target = fs.readlink(ctx, nodeid)?;
            reply.push_bytes(&target);
        }
        Operation::Symlink { name, target } => {
            push_entry(reply, &fs.symlink(ctx, nodeid, name, target)?)
        }
        Operation::Mknod { arg, name } => {
            push_entry(reply, &fs.mknod(ctx, nodeid, name, arg.mode, arg.rdev, arg.umask)?)
        }
        Operation::Mkdir { arg, name } => {
            push_entry(reply, &fs.mkdir(ctx, nodeid, name, arg.mode, arg.umask)?)
        }
        Operation::Unlink { name } => fs.unlink(ctx, nodeid, name)?,
        Operation::Rmdir { name } => fs.rmdir(ctx, nodeid, name)?,
        Operation::Rename { newdir, flags, name, newname } => {
            fs.rename(ctx, nodeid, name, newdir, newname, flags)?
        }
        Operation::Link { oldnodeid, name } => {
            push_entry(reply, &fs.link(ctx, oldnodeid, nodeid, name)?)
        }
        Operation::Open { arg } => push_open(reply, &fs.open(ctx, nodeid, arg.flags as i32)?),
        Operation::Read { arg } => {
            let size = (arg.size as usize).min(data.len());
            let n = fs.read(ctx, nodeid, arg.fh, arg.offset, &mut data[..size])?;
            return Ok(Outcome::ReplyWithData(n.min(size)));
        }
        Operation::Write { arg, data: bytes } => {
            let size = fs.write(
                ctx,
                nodeid,
                arg.fh,
                arg.offset,
                bytes,
                arg.write_flags,
                arg.flags as i32,
            )?;
            reply.push(&fuse_write_out { size, padding: 0 });
        }
        Operation::Statfs => reply.push(&fuse_statfs_out { st: fs.statfs(ctx, nodeid)? }),
        Operation::Release { arg } => fs.release(ctx, nodeid, arg.fh, arg.flags as i32)?,
        Operation::Fsync { arg } => {
            fs.fsync(ctx, nodeid, arg.fh, arg.fsync_flags & FUSE_FSYNC_FDATASYNC != 0)?
        }
        Operation::Setxattr { arg, name, value } => {
            fs.setxattr(ctx, nodeid, name, value, arg.flags as i32)?
        }
        Operation::Getxattr { arg, name } => {
            return xattr_reply(reply, data, arg.size, |buf| fs.getxattr(ctx, nodeid, name, buf));
        }
        Operation::Listxattr { arg } => {
            return xattr_reply(reply, data, arg.size, |buf| fs.listxattr(ctx, nodeid, buf));
        }
        Operation::Removexattr { name } => fs.removexattr(ctx, nodeid, name)?,
        Operation::Flush { arg } => fs.flush(ctx, nodeid, arg.fh, arg.lock_owner)?,
        Operation::Init { .. } => {
            // Only a resent INIT reaches a running session (the server died before answering
            // it): the answer is the negotiation already in force.
            reply.push_bytes(crate::init::reply_bytes(negotiation));
        }
        Operation::Opendir { arg } => {
            let opened = fs.opendir(ctx, nodeid, arg.flags as i32)?;
            if opened.fh & KEEPER_FH != 0 {
                // The keeper's handles would be taken for it: never handed out.
                warn!(fh = opened.fh, "opendir returned a handle with bit 63 set: refused");
                fs.releasedir(ctx, nodeid, opened.fh)?;
                return Err(Errno::EIO);
            }
            push_open(reply, &opened)
        }
        Operation::Readdir { mut arg } => {
            arg.fh = dir_fh(fs, ctx, nodeid, arg.fh)?;
            readdir(fs, ctx, nodeid, &arg, false, reply)?
        }
        Operation::Readdirplus { mut arg } => {
            arg.fh = dir_fh(fs, ctx, nodeid, arg.fh)?;
            readdir(fs, ctx, nodeid, &arg, true, reply)?
        }
        Operation::Releasedir { arg } if arg.fh & KEEPER_FH != 0 => {
            // Answered by the keeper while it stood in, or opened here on first use.
            if let Some(ours) = ctx.channel.release_keeper_dir(arg.fh) {
                fs.releasedir(ctx, nodeid, ours)?;
            }
        }
        Operation::Releasedir { arg } => fs.releasedir(ctx, nodeid, arg.fh)?,
        Operation::Fsyncdir { arg } => {
            let fh = dir_fh(fs, ctx, nodeid, arg.fh)?;
            fs.fsyncdir(ctx, nodeid, fh, arg.fsync_flags & FUSE_FSYNC_FDATASYNC != 0)?
        }
        Operation::Getlk { arg } => {
            let lock = fs.getlk(ctx, nodeid, arg.fh, arg.owner, lock_of(&arg.lk))?;
            reply.push(&fuse_lk_out {
                lk: fuse_file_lock {
                    start: lock.start,
                    end: lock.end,
                    r#type: lock.typ,
                    pid: lock.pid,
                },
            });
        }
        Operation::Setlk { arg, sleep } => {
            if arg.lk_flags & FUSE_LK_FLOCK != 0 {
                fs.flock(ctx, nodeid, arg.fh, arg.owner, flock_op(arg.lk.r#type, sleep))?
            } else {
                fs.setlk(ctx, nodeid, arg.fh, arg.owner, lock_of(&arg.lk), sleep)?
            }
        }
        Operation::Access { arg } => fs.access(ctx, nodeid, arg.mask)?,
        Operation::Create { arg, name } => {
            let args = CreateArgs { mode: arg.mode, umask: arg.umask, flags: arg.flags as i32 };
            let (entry, opened) = fs.create(ctx, nodeid, name, args)?;
            push_entry(reply, &entry);
            push_open(reply, &opened);
        }
        Operation::Tmpfile { arg, .. } => {
            let args = CreateArgs { mode: arg.mode, umask: arg.umask, flags: arg.flags as i32 };
            let (entry, opened) = fs.tmpfile(ctx, nodeid, args)?;
            push_entry(reply, &entry);
            push_open(reply, &opened);
        }
        Operation::Bmap { arg } => {
            let block = fs.bmap(ctx, nodeid, arg.blocksize, arg.block)?;
            reply.push(&fuse_bmap_out { block });
        }
        Operation::Destroy => fs.destroy(),
        Operation::Ioctl { arg, data: input } => {
            let out =
                fs.ioctl(ctx, nodeid, arg.fh, arg.flags, arg.cmd, arg.arg, input, arg.out_size)?;
            let len = out.data.len().min(arg.out_size as usize);
            reply.push(&fuse_ioctl_out { result: out.result, flags: 0, in_iovs: 0, out_iovs: 0 });
            reply.push_bytes(&out.data[..len]);
        }
        Operation::Poll { arg } => {
            let revents = fs.poll(ctx, nodeid, arg.fh, arg.kh, arg.flags, arg.events)?;
            reply.push(&fuse_poll_out { revents, padding: 0 });
        }
        Operation::Fallocate { arg } => {
            fs.fallocate(ctx, nodeid, arg.fh, arg.offset, arg.length, arg.mode)?
        }
        Operation::Lseek { arg } => {
            let offset = fs.lseek(ctx, nodeid, arg.fh, arg.offset, arg.whence)?;
            reply.push(&fuse_lseek_out { offset });
        }
        Operation::CopyFileRange { arg, wide } => {
            let range = CopyRange {
                ino_in: nodeid,
                fh_in: arg.fh_in,
                off_in: arg.off_in,
                ino_out: arg.nodeid_out,
                fh_out: arg.fh_out,
                off_out: arg.off_out,
                len: arg.len,
                flags: arg.flags,
            };
            let copied = fs.copy_file_range(ctx, &range)?;
            if wide {
                reply.push(&fuse_copy_file_range_out { bytes_copied: copied });
            } else {
                // The 32-bit reply cannot say more; the kernel asks again for the rest.
                let len = range.len.min(u64::from(u32::MAX));
                reply.push(&fuse_write_out { size: copied.min(len) as u32, padding: 0 });
            }
        }
        Operation::Syncfs { .. } => fs.syncfs(ctx, nodeid)?,
        Operation::NotifyReply { .. } => return Ok(Outcome::NoReply),
        Operation::SetupMapping | Operation::RemoveMapping | Operation::Statx { .. } => {
            return Err(Errno::ENOSYS);
        }
    }
    Ok(Outcome::Reply)
}

/// The filesystem's handle for directory handle `fh`: `fh` itself, or for a keeper handle
/// ([`KEEPER_FH`]: the keeper answered the OPENDIR while the connection had no server), a
/// handle the filesystem opens for it on first use and keeps until its RELEASEDIR.
fn dir_fh<F: Filesystem>(fs: &F, ctx: &Context<'_>, nodeid: u64, fh: u64) -> Result<u64> {
    if fh & KEEPER_FH == 0 {
        return Ok(fh);
    }
    ctx.channel.keeper_dir(fh, || Ok(fs.opendir(ctx, nodeid, O_RDONLY)?.fh))
}

fn readdir<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    nodeid: u64,
    arg: &fuse_read_in,
    plus: bool,
    reply: &mut ReplyBuf,
) -> Result<()> {
    let mut entries = Vec::new();
    let result = {
        let mut buf = DirentBuf::new(reply, (arg.size as usize).min(REPLY_CAPACITY));
        let mut filler = DirFiller { buf: &mut buf, plus, entries: &mut entries };
        fs.readdir(ctx, nodeid, arg.fh, arg.offset, &mut filler)
    };
    if let Err(errno) = result {
        // The entries already counted were never sent: give their lookups back.
        for nodeid in entries {
            fs.forget(nodeid, 1);
        }
        return Err(errno);
    }
    Ok(())
}

/// Answers GETXATTR / LISTXATTR: the size alone when the kernel asks with size 0, the bytes
/// otherwise.
fn xattr_reply(
    reply: &mut ReplyBuf,
    data: &mut [u8],
    size: u32,
    call: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Result<Outcome> {
    if size == 0 {
        let needed = call(&mut [])?;
        reply.push(&fuse_getxattr_out { size: needed as u32, padding: 0 });
        return Ok(Outcome::Reply);
    }
    let size = (size as usize).min(data.len());
    let n = call(&mut data[..size])?;
    Ok(Outcome::ReplyWithData(n.min(size)))
}

fn set_attr(arg: &fuse_setattr_in) -> SetAttr {
    let v = arg.valid;
    let time = |set: u32, now: u32, sec: u64, nsec: u32| {
        if v & now != 0 {
            Some(SetTime::Now)
        } else if v & set != 0 {
            Some(SetTime::At { sec: sec as i64, nsec })
        } else {
            None
        }
    };
    SetAttr {
        mode: (v & FATTR_MODE != 0).then_some(arg.mode),
        uid: (v & FATTR_UID != 0).then_some(arg.uid),
        gid: (v & FATTR_GID != 0).then_some(arg.gid),
        size: (v & FATTR_SIZE != 0).then_some(arg.size),
        atime: time(FATTR_ATIME, FATTR_ATIME_NOW, arg.atime, arg.atimensec),
        mtime: time(FATTR_MTIME, FATTR_MTIME_NOW, arg.mtime, arg.mtimensec),
        ctime: (v & FATTR_CTIME != 0)
            .then_some(SetTime::At { sec: arg.ctime as i64, nsec: arg.ctimensec }),
        // A keeper handle (the root directory, opened while no server served) names no handle
        // of the filesystem's: the nodeid is enough.
        fh: (v & FATTR_FH != 0 && arg.fh & KEEPER_FH == 0).then_some(arg.fh),
        kill_suidgid: v & FATTR_KILL_SUIDGID != 0,
    }
}

fn lock_of(lk: &fuse_file_lock) -> Lock {
    Lock { start: lk.start, end: lk.end, typ: lk.r#type, pid: lk.pid }
}

fn flock_op(typ: u32, sleep: bool) -> i32 {
    const LOCK_SH: i32 = 1;
    const LOCK_EX: i32 = 2;
    const LOCK_NB: i32 = 4;
    const LOCK_UN: i32 = 8;
    const F_RDLCK: u32 = 0;
    const F_WRLCK: u32 = 1;
    let op = match typ {
        F_RDLCK => LOCK_SH,
        F_WRLCK => LOCK_EX,
        _ => LOCK_UN,
    };
    if sleep { op } else { op | LOCK_NB }
}

fn split(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

/// The wire form of an entry.
pub(crate) fn entry_out(entry: &Entry) -> fuse_entry_out {
    let (entry_valid, entry_valid_nsec) = split(entry.entry_valid);
    let (attr_valid, attr_valid_nsec) = split(entry.attr_valid);
    fuse_entry_out {
        nodeid: entry.nodeid,
        generation: entry.generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr: entry.attr,
    }
}

fn push_entry(reply: &mut ReplyBuf, entry: &Entry) {
    reply.push(&entry_out(entry));
}

fn push_attr(reply: &mut ReplyBuf, attr: &Attr) {
    reply.push(&attr_out(attr));
}

/// The wire form of attributes.
pub(crate) fn attr_out(attr: &Attr) -> fuse_attr_out {
    let (attr_valid, attr_valid_nsec) = split(attr.valid);
    fuse_attr_out { attr_valid, attr_valid_nsec, dummy: 0, attr: attr.attr }
}

fn push_open(reply: &mut ReplyBuf, opened: &Opened) {
    reply.push(&fuse_open_out {
        fh: opened.fh,
        open_flags: opened.open_flags,
        backing_id: opened.backing_id,
    });
}
