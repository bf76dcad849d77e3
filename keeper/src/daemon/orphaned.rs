//! What the keeper does with the requests of an orphaned connection: stand in for the server
//! (answer what the node's tools ask about the mount) and, past the recovery timeout with the
//! fail policy (`REGISTER_FAIL_ON_TIMEOUT`), answer everything with EIO.
//!
//! Both read requests through the keeper's own clone of the device (its own `/dev/fuse` file,
//! non-blocking, so that the servers' files keep their blocking mode), after writing
//! FUSE_NOTIFY_RESEND on it so that the requests the dead server had read come back to the
//! input queue.
//!
//! Standing in (the server sent STAND_IN): GETATTR (and STATX) of the root, STATFS, GETXATTR of the
//! root for [`STAND_IN_XATTRS`] are answered from what the server last sent; OPENDIR of the root is
//! answered with a handle of the keeper's ([`KEEPER_FH`]) and that handle's RELEASEDIR too.
//! That is what stat(1), df(1), `ls -l` of the parent and umount(8) ask, so none of them hangs
//! while the server is down. Every other request is left unanswered in the clone's processing
//! list; when a server attaches, RESEND moves them back to the input queue before the clone is
//! closed, and the new server reads them like any other resent request. FORGET and
//! BATCH_FORGET take no answer and are not resent: the restarted server keeps those inodes'
//! lookup counts a little high, which only delays their forgetting. An INTERRUPT is dropped:
//! the kernel queues it again when it resends the interrupted request.
//!
//! Failing: every request but FORGET, BATCH_FORGET, INTERRUPT and INIT is answered with EIO.
//!
//! A connection that ends while the keeper reads it (unmounted, aborted) is dropped.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd};

use fuse_abi::{
    fuse_attr_out, fuse_getxattr_in, fuse_getxattr_out, fuse_in_header, fuse_opcode, fuse_open_out,
    fuse_out_header, fuse_release_in, fuse_statx, fuse_statx_out, fuse_sx_time,
};
use zerocopy::{FromBytes, IntoBytes};

use super::event_loop::{Keeper, READER_BITS};
use super::registry::Entry;
use crate::protocol::{KEEPER_FH, STAND_IN_XATTRS};

/// Room for the largest request: FUSE refuses reads into buffers smaller than max_write plus
/// headers; the library negotiates at most 1 MiB (256 pages).
const READ_BUFFER: usize = (1 << 20) + (64 << 10);
/// Requests read per readiness, so that one busy connection cannot starve the others.
const BATCH: usize = 256;
/// The root's nodeid.
const ROOT: u64 = 1;

/// Writes a reply: `payload` after a header with `error` for `unique` (0: a notification).
fn write_reply(
    dev: BorrowedFd<'_>,
    error: i32,
    unique: u64,
    payload: &[u8],
) -> Result<fuse_transport::WriteOutcome, fuse_transport::Error> {
    let len = (size_of::<fuse_out_header>() + payload.len()) as u32;
    let header = fuse_out_header { len, error, unique };
    fuse_transport::write_reply(dev, &[IoSlice::new(header.as_bytes()), IoSlice::new(payload)])
}

fn resend(dev: BorrowedFd<'_>) -> std::io::Result<()> {
    let resend = fuse_abi::fuse_notify_code::FUSE_NOTIFY_RESEND as i32;
    match write_reply(dev, resend, 0, &[]) {
        Ok(fuse_transport::WriteOutcome::Written) => Ok(()),
        Ok(other) => Err(std::io::Error::other(format!("{other:?}"))),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// What a request gets from the keeper.
enum Answer {
    /// Nothing now: left for the next server (or one that takes no answer).
    Leave,
    /// An error reply.
    Error(i32),
    /// A successful reply with this payload.
    Reply(Vec<u8>),
}

/// The answer to an xattr request whose whole result is `value`, for a caller's buffer of
/// `size` bytes (0: it asks for the size).
fn sized(value: &[u8], size: u32) -> Answer {
    if size == 0 {
        let out = fuse_getxattr_out { size: value.len() as u32, padding: 0 };
        Answer::Reply(out.as_bytes().to_vec())
    } else if (size as usize) < value.len() {
        Answer::Error(-libc::ERANGE)
    } else {
        Answer::Reply(value.to_vec())
    }
}

/// What standing in for `entry`'s server answers to a request with header `head` and
/// arguments `args`.
fn stand_in(entry: &mut Entry, head: &fuse_in_header, args: &[u8]) -> Answer {
    let Some(answers) = &entry.stand_in else { return Answer::Leave };
    let op = head.opcode;
    let is = |o: fuse_opcode| o as u32 == op;
    if is(fuse_opcode::FUSE_STATFS) && !answers.statfs.is_empty() {
        return Answer::Reply(answers.statfs.clone());
    }
    if head.nodeid == ROOT {
        if is(fuse_opcode::FUSE_GETATTR) && !answers.attr.is_empty() {
            return Answer::Reply(answers.attr.clone());
        }
        if is(fuse_opcode::FUSE_STATX)
            && let Ok(out) = fuse_attr_out::read_from_bytes(&answers.attr)
        {
            return Answer::Reply(statx_of(&out).as_bytes().to_vec());
        }
        if is(fuse_opcode::FUSE_OPENDIR) {
            entry.next_keeper_fh += 1;
            let fh = KEEPER_FH | entry.next_keeper_fh;
            entry.keeper_fhs.insert(fh);
            let out = fuse_open_out { fh, open_flags: 0, backing_id: 0 };
            return Answer::Reply(out.as_bytes().to_vec());
        }
        if is(fuse_opcode::FUSE_GETXATTR)
            && let Some(xattrs) = &answers.xattrs
            && let Ok((arg, rest)) = fuse_getxattr_in::read_from_prefix(args)
        {
            let name = rest.split(|&b| b == 0).next().unwrap_or_default();
            if STAND_IN_XATTRS.iter().any(|n| n.as_bytes() == name) {
                return match xattrs.iter().find(|(n, _)| n == name) {
                    Some((_, value)) => sized(value, arg.size),
                    None => Answer::Error(-libc::ENODATA),
                };
            }
        }
    }
    if is(fuse_opcode::FUSE_RELEASEDIR)
        && let Ok((arg, _)) = fuse_release_in::read_from_prefix(args)
        && entry.keeper_fhs.remove(&arg.fh)
    {
        return Answer::Reply(Vec::new());
    }
    Answer::Leave
}

/// A STATX reply with the basic statistics of a GETATTR reply (what the kernel would ask
/// GETATTR for if the server did not implement STATX).
fn statx_of(out: &fuse_attr_out) -> fuse_statx_out {
    let a = &out.attr;
    let time =
        |tv_sec: u64, tv_nsec: u32| fuse_sx_time { tv_sec: tv_sec as i64, tv_nsec, __reserved: 0 };
    fuse_statx_out {
        attr_valid: out.attr_valid,
        attr_valid_nsec: out.attr_valid_nsec,
        flags: 0,
        spare: [0; 2],
        stat: fuse_statx {
            mask: STATX_BASIC_STATS,
            blksize: a.blksize,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            mode: a.mode as u16,
            ino: a.ino,
            size: a.size,
            blocks: a.blocks,
            atime: time(a.atime, a.atimensec),
            ctime: time(a.ctime, a.ctimensec),
            mtime: time(a.mtime, a.mtimensec),
            rdev_major: libc::major(a.rdev as libc::dev_t),
            rdev_minor: libc::minor(a.rdev as libc::dev_t),
            ..Default::default()
        },
    }
}

/// `STATX_BASIC_STATS`: type, mode, nlink, uid, gid, atime, mtime, ctime, ino, size, blocks.
const STATX_BASIC_STATS: u32 = 0x7ff;

/// What failing answers to a request of opcode `op`.
fn fail(op: u32) -> Answer {
    let no_answer = [
        fuse_opcode::FUSE_FORGET,
        fuse_opcode::FUSE_BATCH_FORGET,
        fuse_opcode::FUSE_INTERRUPT,
        fuse_opcode::FUSE_INIT,
    ];
    if no_answer.iter().any(|&o| o as u32 == op) {
        Answer::Leave
    } else {
        Answer::Error(-libc::EIO)
    }
}

impl Keeper {
    /// Entry `id` was orphaned: if its server said what to answer meanwhile (STAND_IN), read
    /// its requests and answer those (see the module doc).
    pub(super) fn start_standing_in(&mut self, id: u64) {
        let Some(entry) = self.registry.get(id) else { return };
        // Still orphaned (a pending handover may have handed it to a new server already).
        if entry.server.is_some() || entry.stand_in.is_none() || entry.reader.is_some() {
            return;
        }
        let (tag, uid) = (entry.tag.clone(), entry.owner_uid);
        match self.open_reader(id) {
            Ok(()) => {
                tracing::info!(
                    tag = %crate::text::escape(&tag), uid,
                    "standing in: answering stat, statfs and opendir of the root until a \
                     server attaches"
                );
                self.read_requests(id);
            }
            Err(e) => tracing::warn!(
                tag = %crate::text::escape(&tag), uid,
                "cannot stand in ({e}): requests wait for the next server"
            ),
        }
    }

    /// Clones entry `id`'s device (non-blocking), writes RESEND on it and watches it.
    fn open_reader(&mut self, id: u64) -> std::io::Result<()> {
        let entry = self.registry.get(id).ok_or(std::io::ErrorKind::NotFound)?;
        let device = entry.devices.values().next().ok_or(std::io::ErrorKind::NotFound)?;
        let clone = fuse_transport::clone_device(device.as_fd())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        rustix::fs::fcntl_setfl(&clone, rustix::fs::OFlags::NONBLOCK)?;
        resend(clone.as_fd())?;
        self.watch_fd(&clone, READER_BITS | id)?;
        if self.read_buf.is_empty() {
            self.read_buf = vec![0u8; READ_BUFFER];
        }
        if let Some(entry) = self.registry.get_mut(id) {
            entry.reader = Some(clone);
        }
        Ok(())
    }

    /// Entry `id`'s recovery timeout passed with the fail policy: answer its requests with EIO
    /// from now on. If that cannot be set up, abort it as the default policy would.
    pub(super) fn start_failing(&mut self, id: u64) {
        let Some(entry) = self.registry.get_mut(id) else { return };
        let (tag, uid) = (entry.tag.clone(), entry.owner_uid);
        entry.failing = true;
        let setup = match &entry.reader {
            // Standing in: the requests it left unanswered come back, to be failed.
            Some(reader) => resend(reader.as_fd()),
            None => self.open_reader(id),
        };
        match setup {
            Ok(()) => {
                tracing::info!(
                    tag = %crate::text::escape(&tag), uid,
                    "recovery timeout passed: failing requests with EIO until a server attaches"
                );
                self.read_requests(id);
            }
            Err(e) => {
                tracing::warn!(
                    tag = %crate::text::escape(&tag), uid,
                    "cannot fail requests ({e}): aborting instead"
                );
                self.abort_expired(id);
            }
        }
    }

    /// Reads entry `id`'s waiting requests and answers those it can (see the module doc).
    pub(super) fn read_requests(&mut self, id: u64) {
        let Some(entry) = self.registry.get_mut(id) else { return };
        let Some(reader) = entry.reader.take() else { return };
        let mut answered = 0usize;
        let mut ended = false;
        for _ in 0..BATCH {
            let n = match fuse_transport::read_request(reader.as_fd(), &mut self.read_buf) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) if e.is_would_block() => break,
                Err(e) => {
                    tracing::warn!(id, "reading an orphaned connection: {e}");
                    break;
                }
            };
            let Ok((head, args)) = fuse_in_header::read_from_prefix(&self.read_buf[..n]) else {
                continue;
            };
            let answer =
                if entry.failing { fail(head.opcode) } else { stand_in(entry, &head, args) };
            let written = match answer {
                Answer::Leave => continue,
                Answer::Error(errno) => write_reply(reader.as_fd(), errno, head.unique, &[]),
                Answer::Reply(payload) => write_reply(reader.as_fd(), 0, head.unique, &payload),
            };
            // A request interrupted meanwhile is gone (ENOENT): nothing to do.
            let _ = written;
            answered += 1;
        }
        entry.reader = Some(reader);
        if answered > 0 {
            tracing::debug!(id, answered, failing = entry.failing, "answered requests");
        }
        if ended {
            tracing::info!(
                tag = %crate::text::escape(&entry.tag), uid = entry.owner_uid,
                conn = entry.conn_id, "the orphaned connection ended (unmounted or aborted)"
            );
            super::policy::teardown(entry, false, "connection ended");
            self.drop_entry(id);
        }
    }

    /// Entry `id` gets a server (or goes): stop reading its requests.
    pub(super) fn stop_reading(&mut self, id: u64) {
        let Some(entry) = self.registry.get_mut(id) else { return };
        entry.failing = false;
        entry.keeper_fhs.clear();
        let Some(reader) = entry.reader.take() else { return };
        self.unwatch_fd(&reader);
        // What it left unanswered goes back to the queue before the clone closes (closing it
        // would fail what its processing list holds).
        let _ = resend(reader.as_fd());
        drop(reader);
        if self.registry.iter().all(|e| e.reader.is_none()) {
            self.read_buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ATTR_OUT_LEN, STATFS_OUT_LEN, StandIn};

    fn entry(stand_in: Option<StandIn>) -> Entry {
        let state = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        Entry {
            id: 1,
            owner_uid: 0,
            principal: super::super::principal::Principal::Uid(0),
            exempt: true,
            tag: "t".into(),
            rescue_uid: 0,
            mountpoint: "/m".into(),
            conn_id: 0,
            recovery_timeout: None,
            fail_on_timeout: false,
            reader: None,
            failing: false,
            stand_in,
            keeper_fhs: Default::default(),
            next_keeper_fh: 0,
            held: Default::default(),
            negotiation: Vec::new(),
            state_fd: state,
            devices: Default::default(),
            server: None,
            server_client: None,
            orphaned_at: None,
            stats: Default::default(),
            note: None,
        }
    }

    fn head(opcode: fuse_opcode, nodeid: u64) -> fuse_in_header {
        fuse_in_header { opcode: opcode as u32, nodeid, unique: 7, ..Default::default() }
    }

    fn attr_out() -> fuse_attr_out {
        let mut out = fuse_attr_out { attr_valid: 1, ..Default::default() };
        out.attr.ino = 42;
        out.attr.mode = libc::S_IFDIR | 0o755;
        out.attr.nlink = 3;
        out.attr.size = 4096;
        out.attr.mtime = 1_700_000_000;
        out.attr.mtimensec = 5;
        out
    }

    fn answers() -> StandIn {
        StandIn {
            tag: "t".into(),
            attr: attr_out().as_bytes().to_vec(),
            statfs: vec![3; STATFS_OUT_LEN],
            xattrs: Some(vec![(b"security.selinux".to_vec(), b"label\0".to_vec())]),
        }
    }

    fn reply(answer: Answer) -> Vec<u8> {
        match answer {
            Answer::Reply(payload) => payload,
            Answer::Error(e) => panic!("error {e}"),
            Answer::Leave => panic!("left for the next server"),
        }
    }

    fn error(answer: Answer) -> i32 {
        match answer {
            Answer::Error(e) => e,
            _ => panic!("not an error"),
        }
    }

    fn left(answer: Answer) -> bool {
        matches!(answer, Answer::Leave)
    }

    fn getxattr(name: &[u8], size: u32) -> Vec<u8> {
        let mut args = fuse_getxattr_in { size, padding: 0 }.as_bytes().to_vec();
        args.extend_from_slice(name);
        args.push(0);
        args
    }

    #[test]
    fn the_root_and_statfs_are_answered_from_the_stand_in_and_the_rest_is_left() {
        let mut e = entry(Some(answers()));
        assert_eq!(
            reply(stand_in(&mut e, &head(fuse_opcode::FUSE_GETATTR, 1), &[])).len(),
            ATTR_OUT_LEN
        );
        assert!(left(stand_in(&mut e, &head(fuse_opcode::FUSE_GETATTR, 2), &[])), "not the root");
        assert_eq!(reply(stand_in(&mut e, &head(fuse_opcode::FUSE_STATFS, 9), &[])), vec![3; 80]);
        for op in [fuse_opcode::FUSE_LOOKUP, fuse_opcode::FUSE_READDIR, fuse_opcode::FUSE_WRITE] {
            assert!(left(stand_in(&mut e, &head(op, 1), &[])), "{op:?}");
        }
        let statx = reply(stand_in(&mut e, &head(fuse_opcode::FUSE_STATX, 1), &[]));
        let statx = fuse_statx_out::read_from_bytes(&statx).unwrap();
        assert_eq!(statx.stat.mask, STATX_BASIC_STATS);
        assert_eq!((statx.stat.ino, statx.stat.nlink, statx.stat.size), (42, 3, 4096));
        assert_eq!(u32::from(statx.stat.mode), libc::S_IFDIR | 0o755);
        assert_eq!((statx.stat.mtime.tv_sec, statx.stat.mtime.tv_nsec), (1_700_000_000, 5));
        // Nothing known: everything is left.
        let mut bare = entry(None);
        assert!(left(stand_in(&mut bare, &head(fuse_opcode::FUSE_GETATTR, 1), &[])));
        assert!(left(stand_in(&mut bare, &head(fuse_opcode::FUSE_STATFS, 1), &[])));
    }

    #[test]
    fn opendir_of_the_root_gets_keeper_handles_whose_releasedir_is_answered_once() {
        let mut e = entry(Some(answers()));
        let open = |e: &mut Entry| {
            let out = reply(stand_in(e, &head(fuse_opcode::FUSE_OPENDIR, 1), &[]));
            fuse_open_out::read_from_bytes(&out).unwrap().fh
        };
        let (a, b) = (open(&mut e), open(&mut e));
        assert!(a & KEEPER_FH != 0 && b & KEEPER_FH != 0 && a != b);
        let release = |fh: u64| fuse_release_in { fh, ..Default::default() }.as_bytes().to_vec();
        let rel = head(fuse_opcode::FUSE_RELEASEDIR, 1);
        assert!(reply(stand_in(&mut e, &rel, &release(a))).is_empty());
        assert!(left(stand_in(&mut e, &rel, &release(a))), "a second RELEASEDIR is not ours");
        assert!(left(stand_in(&mut e, &rel, &release(5))), "the server's own handle");
        assert!(left(stand_in(&mut e, &head(fuse_opcode::FUSE_OPENDIR, 2), &[])), "not the root");
    }

    #[test]
    fn getxattr_of_the_root_answers_sizes_values_and_absence_for_the_known_names_only() {
        let mut e = entry(Some(answers()));
        let get = head(fuse_opcode::FUSE_GETXATTR, 1);
        let size = reply(stand_in(&mut e, &get, &getxattr(b"security.selinux", 0)));
        assert_eq!(fuse_getxattr_out::read_from_bytes(&size).unwrap().size, 6);
        assert_eq!(reply(stand_in(&mut e, &get, &getxattr(b"security.selinux", 64))), b"label\0");
        assert_eq!(error(stand_in(&mut e, &get, &getxattr(b"security.selinux", 2))), -libc::ERANGE);
        let acl = getxattr(b"system.posix_acl_access", 64);
        assert_eq!(error(stand_in(&mut e, &get, &acl)), -libc::ENODATA);
        assert!(left(stand_in(&mut e, &get, &getxattr(b"user.secret", 64))), "another name");
        assert!(left(stand_in(&mut e, &head(fuse_opcode::FUSE_GETXATTR, 2), &acl)), "not the root");
        let mut unknown = entry(Some(StandIn { xattrs: None, ..answers() }));
        assert!(left(stand_in(&mut unknown, &get, &acl)), "xattrs unknown");
        assert!(left(stand_in(&mut e, &head(fuse_opcode::FUSE_LISTXATTR, 1), &getxattr(b"", 0))));
    }

    #[test]
    fn failing_answers_eio_except_what_takes_no_answer_and_init() {
        assert_eq!(error(fail(fuse_opcode::FUSE_LOOKUP as u32)), -libc::EIO);
        for op in [
            fuse_opcode::FUSE_FORGET,
            fuse_opcode::FUSE_BATCH_FORGET,
            fuse_opcode::FUSE_INTERRUPT,
            fuse_opcode::FUSE_INIT,
        ] {
            assert!(left(fail(op as u32)), "{op:?}");
        }
    }
}
