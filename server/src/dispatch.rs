//! Decode, call, encode: from a decoded request to one [`Filesystem`] call and its reply
//! bytes. The journal is [`crate::exactly_once`]'s; this module knows nothing of crashes.

use std::time::Duration;

use fuse_abi::*;
use fuse_proto::reply::ReplyBuf;
use fuse_proto::{Errno, Operation, Request, dirent::DirentBuf};
use tracing::{trace, warn};

use crate::channel::{Context, KEEPER_FH};
use crate::filesystem::*;
use crate::ids::{FileHandle, NodeId};
use crate::init::Negotiation;

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

const O_RDONLY: i32 = 0;

/// Serves one request without the journal.
pub(crate) fn dispatch_plain<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    negotiation: &Negotiation,
    req: Request<'_>,
    reply: &mut ReplyBuf,
    data: &mut [u8],
) -> Outcome {
    reply.clear();
    let unique = req.unique;
    let result = serve(fs, ctx, negotiation, NodeId(req.nodeid), req.op, reply, data);
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
    nodeid: NodeId,
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
                fs.forget(NodeId(one.nodeid), one.nlookup);
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
            let fh = by_fh.then_some(FileHandle(arg.fh));
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
        Operation::Rename { newdir, flags, name, newname } => fs.rename(
            ctx,
            &Rename { parent: nodeid, name, newparent: NodeId(newdir), newname, flags },
        )?,
        Operation::Link { oldnodeid, name } => push_entry(
            reply,
            &fs.link(ctx, &Link { nodeid: NodeId(oldnodeid), newparent: nodeid, newname: name })?,
        ),
        Operation::Open { arg } => push_open(reply, &fs.open(ctx, nodeid, arg.flags as i32)?),
        Operation::Read { arg } => {
            let size = (arg.size as usize).min(data.len());
            let n = fs.read(ctx, nodeid, FileHandle(arg.fh), arg.offset, &mut data[..size])?;
            return Ok(Outcome::ReplyWithData(n.min(size)));
        }
        Operation::Write { arg, data: bytes } => {
            let size = fs.write(
                ctx,
                nodeid,
                FileHandle(arg.fh),
                arg.offset,
                bytes,
                arg.write_flags,
                arg.flags as i32,
            )?;
            reply.push(&fuse_write_out { size, padding: 0 });
        }
        Operation::Statfs => reply.push(&fuse_statfs_out { st: fs.statfs(ctx, nodeid)? }),
        Operation::Release { arg } => {
            fs.release(ctx, nodeid, FileHandle(arg.fh), arg.flags as i32)?
        }
        Operation::Fsync { arg } => {
            fs.fsync(ctx, nodeid, FileHandle(arg.fh), arg.fsync_flags & FUSE_FSYNC_FDATASYNC != 0)?
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
        Operation::Flush { arg } => fs.flush(ctx, nodeid, FileHandle(arg.fh), arg.lock_owner)?,
        Operation::Init { .. } => {
            // Only a resent INIT reaches a running session (the server died before answering
            // it): the answer is the negotiation already in force.
            reply.push_bytes(crate::init::reply_bytes(negotiation));
        }
        Operation::Opendir { arg } => {
            let opened = fs.opendir(ctx, nodeid, arg.flags as i32)?;
            if opened.fh.0 & KEEPER_FH != 0 {
                // The keeper's handles would be taken for it: never handed out.
                warn!(fh = opened.fh.0, "opendir returned a handle with bit 63 set: refused");
                fs.releasedir(ctx, nodeid, opened.fh)?;
                return Err(Errno::EIO);
            }
            push_open(reply, &opened)
        }
        Operation::Readdir { arg } => {
            let fh = dir_fh(fs, ctx, nodeid, arg.fh)?;
            readdir(fs, ctx, nodeid, fh, &arg, false, reply)?
        }
        Operation::Readdirplus { arg } => {
            let fh = dir_fh(fs, ctx, nodeid, arg.fh)?;
            readdir(fs, ctx, nodeid, fh, &arg, true, reply)?
        }
        Operation::Releasedir { arg } if arg.fh & KEEPER_FH != 0 => {
            // Answered by the keeper while it stood in, or opened here on first use.
            if let Some(ours) = ctx.channel.release_keeper_dir(arg.fh) {
                fs.releasedir(ctx, nodeid, ours)?;
            }
        }
        Operation::Releasedir { arg } => fs.releasedir(ctx, nodeid, FileHandle(arg.fh))?,
        Operation::Fsyncdir { arg } => {
            let fh = dir_fh(fs, ctx, nodeid, arg.fh)?;
            fs.fsyncdir(ctx, nodeid, fh, arg.fsync_flags & FUSE_FSYNC_FDATASYNC != 0)?
        }
        Operation::Getlk { arg } => {
            let lock = fs.getlk(ctx, nodeid, FileHandle(arg.fh), arg.owner, lock_of(&arg.lk))?;
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
                fs.flock(
                    ctx,
                    nodeid,
                    FileHandle(arg.fh),
                    arg.owner,
                    flock_op(arg.lk.r#type, sleep),
                )?
            } else {
                fs.setlk(ctx, nodeid, FileHandle(arg.fh), arg.owner, lock_of(&arg.lk), sleep)?
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
            let out = fs.ioctl(
                ctx,
                nodeid,
                FileHandle(arg.fh),
                arg.flags,
                arg.cmd,
                arg.arg,
                input,
                arg.out_size,
            )?;
            let len = out.data.len().min(arg.out_size as usize);
            reply.push(&fuse_ioctl_out { result: out.result, flags: 0, in_iovs: 0, out_iovs: 0 });
            reply.push_bytes(&out.data[..len]);
        }
        Operation::Poll { arg } => {
            let revents =
                fs.poll(ctx, nodeid, FileHandle(arg.fh), arg.kh, arg.flags, arg.events)?;
            reply.push(&fuse_poll_out { revents, padding: 0 });
        }
        Operation::Fallocate { arg } => {
            fs.fallocate(ctx, nodeid, FileHandle(arg.fh), arg.offset, arg.length, arg.mode)?
        }
        Operation::Lseek { arg } => {
            let offset = fs.lseek(ctx, nodeid, FileHandle(arg.fh), arg.offset, arg.whence)?;
            reply.push(&fuse_lseek_out { offset });
        }
        Operation::CopyFileRange { arg, wide } => {
            let range = CopyRange {
                ino_in: nodeid,
                fh_in: FileHandle(arg.fh_in),
                off_in: arg.off_in,
                ino_out: NodeId(arg.nodeid_out),
                fh_out: FileHandle(arg.fh_out),
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
fn dir_fh<F: Filesystem>(fs: &F, ctx: &Context<'_>, nodeid: NodeId, fh: u64) -> Result<FileHandle> {
    if fh & KEEPER_FH == 0 {
        return Ok(FileHandle(fh));
    }
    ctx.channel.keeper_dir(fh, || Ok(fs.opendir(ctx, nodeid, O_RDONLY)?.fh))
}

fn readdir<F: Filesystem>(
    fs: &F,
    ctx: &Context<'_>,
    nodeid: NodeId,
    fh: FileHandle,
    arg: &fuse_read_in,
    plus: bool,
    reply: &mut ReplyBuf,
) -> Result<()> {
    let mut entries = Vec::new();
    let result = {
        let mut buf = DirentBuf::new(reply, (arg.size as usize).min(REPLY_CAPACITY));
        let mut filler = DirFiller { buf: &mut buf, plus, entries: &mut entries };
        fs.readdir(ctx, nodeid, fh, arg.offset, &mut filler)
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
        fh: (v & FATTR_FH != 0 && arg.fh & KEEPER_FH == 0).then_some(FileHandle(arg.fh)),
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
        nodeid: entry.nodeid().0,
        generation: entry.generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr: entry.attr,
    }
}

pub(crate) fn push_entry(reply: &mut ReplyBuf, entry: &Entry) {
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

pub(crate) fn push_open(reply: &mut ReplyBuf, opened: &Opened) {
    reply.push(&fuse_open_out {
        fh: opened.fh.0,
        open_flags: opened.open_flags,
        backing_id: opened.backing_id,
    });
}
