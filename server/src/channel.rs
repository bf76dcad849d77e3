//! The connection's device fds, created in one place, and the per-request [`Context`].

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use fuse_proto::Errno;
use zerocopy::IntoBytes;

use crate::filesystem::Counted;
use crate::ids::{FileHandle, NodeId, Unique};

/// Takes custody of every device fd before anything reads from it.
///
/// The recovery layer implements this to hand each fd to the keeper: a request read from an
/// fd that nobody else holds is lost if the server dies (DESIGN.md, kernel fact 1).
pub trait DeviceCustody: Send + Sync {
    /// `index` 0 is the fd the connection was mounted with; clones count from 1.
    fn adopt(&self, fd: BorrowedFd<'_>, index: usize) -> io::Result<()>;
}

/// The default: nobody else holds the fds.
#[derive(Debug, Default)]
pub struct NoCustody;

impl DeviceCustody for NoCustody {
    fn adopt(&self, _fd: BorrowedFd<'_>, _index: usize) -> io::Result<()> {
        Ok(())
    }
}

/// File handles with this bit set were handed out by the keeper: the root directory's, opened
/// while the connection had no server (docs/keeper-protocol.md, STAND_IN). The session serves
/// requests that carry one by opening the root directory itself on first use; a
/// [`Filesystem`](crate::Filesystem) must never return such a handle from `opendir`.
pub const KEEPER_FH: u64 = 1 << 63;

/// The device fds of one connection. Every fd a worker reads from comes from here.
pub struct Channel {
    custody: Arc<dyn DeviceCustody>,
    devices: Mutex<Vec<Arc<OwnedFd>>>,
    /// Keeper handles ([`KEEPER_FH`]) in use, with the filesystem's handle opened for each.
    keeper_dirs: Mutex<std::collections::HashMap<u64, FileHandle>>,
}

impl Channel {
    /// A channel over `devices` (the first is the mount's own fd). Each is given to `custody`
    /// before this returns; a refused fd fails the whole channel.
    pub fn new(devices: Vec<OwnedFd>, custody: Arc<dyn DeviceCustody>) -> io::Result<Channel> {
        if devices.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no device fd"));
        }
        for (index, fd) in devices.iter().enumerate() {
            custody.adopt(fd.as_fd(), index)?;
        }
        let devices = devices.into_iter().map(Arc::new).collect();
        Ok(Channel { custody, devices: Mutex::new(devices), keeper_dirs: Mutex::default() })
    }

    /// The fd the connection was mounted with.
    pub fn master(&self) -> Arc<OwnedFd> {
        self.lock()[0].clone()
    }

    /// The filesystem's handle for keeper handle `fh`, opened with `open` on first use.
    pub(crate) fn keeper_dir(
        &self,
        fh: u64,
        open: impl FnOnce() -> crate::Result<FileHandle>,
    ) -> crate::Result<FileHandle> {
        let mut dirs = self.keeper_dirs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&ours) = dirs.get(&fh) {
            return Ok(ours);
        }
        let ours = open()?;
        dirs.insert(fh, ours);
        Ok(ours)
    }

    /// Forgets keeper handle `fh`: the filesystem's handle opened for it, if any.
    pub(crate) fn release_keeper_dir(&self, fh: u64) -> Option<FileHandle> {
        self.keeper_dirs.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh)
    }

    /// The device fd for worker `index`: an existing one, or a new FUSE_DEV_IOC_CLONE of the
    /// master, adopted by the custody hook before it is returned.
    pub fn device(&self, index: usize) -> io::Result<Arc<OwnedFd>> {
        let mut devices = self.lock();
        if let Some(fd) = devices.get(index) {
            return Ok(fd.clone());
        }
        let master = devices[0].clone();
        while devices.len() <= index {
            let clone = fuse_transport::clone_device(master.as_fd()).map_err(crate::to_io)?;
            self.custody.adopt(clone.as_fd(), devices.len())?;
            devices.push(Arc::new(clone));
        }
        Ok(devices[index].clone())
    }

    /// Writes FUSE_NOTIFY_RESEND: the kernel re-queues every request that was read from any
    /// of the connection's device fds and not answered, with bit 63 set in its unique
    /// (DESIGN.md, kernel facts 2, 3, 5). Only for a server taking over a dead one's
    /// connection: requests a live server is working on would be delivered twice.
    pub fn notify_resend(&self) -> io::Result<()> {
        let bytes =
            fuse_proto::reply::notification(fuse_abi::fuse_notify_code::FUSE_NOTIFY_RESEND, &[]);
        let master = self.master();
        match fuse_transport::write_reply(master.as_fd(), &[io::IoSlice::new(&bytes)])
            .map_err(crate::to_io)?
        {
            fuse_transport::WriteOutcome::Written => Ok(()),
            other => Err(io::Error::other(format!("FUSE_NOTIFY_RESEND: {other:?}"))),
        }
    }

    /// A handle for notifications to the kernel outside any request (see [`Notifier`]).
    pub fn notifier(&self) -> Notifier {
        Notifier { master: self.master() }
    }

    /// How many device fds the channel holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the channel has no fds (never, once built).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<OwnedFd>>> {
        self.devices.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Who sent the request being served, and the channel it came on.
pub struct Context<'a> {
    /// The request id as received (bit 63 set on a resent request).
    pub unique: Unique,
    /// The calling process's filesystem uid (in the mount's user namespace).
    pub uid: u32,
    /// The calling process's filesystem gid.
    pub gid: u32,
    /// The calling thread's process id (0 for requests no process made, as a writeback
    /// flush).
    pub pid: u32,
    pub(crate) channel: &'a Channel,
    /// The journal and this request's entry in it, for a journaled request.
    pub(crate) journal: Option<(&'a dyn crate::Journal, u64)>,
}

impl<'a> Context<'a> {
    /// The same caller and channel, outside any journal record: for the lookups that settle a
    /// resent request, whose counts are the settling's own business.
    pub(crate) fn without_journal(&self) -> Context<'a> {
        Context {
            unique: self.unique,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            channel: self.channel,
            journal: None,
        }
    }

    /// Says that a lookup of `nodeid` has just been counted for the entry this request will
    /// return, and gives the [`Counted`] that entry is made from. Call it where the count is
    /// taken (right after it, before anything that can fail and return early).
    ///
    /// For a non-idempotent request (mkdir, mknod, symlink, link, create, tmpfile) the count
    /// is also noted in the request's journal record: if the server dies before the reply is
    /// journaled, the resent request is answered without counting that entry a second time.
    pub fn counted(&self, nodeid: NodeId) -> Counted {
        if let Some((journal, entry)) = self.journal {
            journal.counted(entry, nodeid.0);
        }
        Counted { nodeid }
    }

    /// Takes back the journal note of [`Context::counted`]: the request took a count, then
    /// failed and forgot it itself (the kernel gets an error, not the entry). Call it before
    /// forgetting: a crash in between leaves a count too many, never one too few.
    pub fn count_dropped(&self) {
        if let Some((journal, entry)) = self.journal {
            journal.counted(entry, 0);
        }
    }

    /// Tells the library that this request has just opened `fh` for its reply (create): if
    /// the server dies before the reply is journaled, the resent request releases it instead
    /// of leaving it open for ever. A no-op for other requests.
    pub fn handle_opened(&self, fh: FileHandle) {
        if let Some((journal, entry)) = self.journal {
            journal.opened(entry, fh.0);
        }
    }

    /// Registers `file` as a kernel passthrough backing file; returns its backing id for
    /// `Opened::backing_id` (with FOPEN_PASSTHROUGH). Needs CAP_SYS_ADMIN.
    pub fn backing_open(&self, file: BorrowedFd<'_>) -> Result<i32, Errno> {
        let master = self.channel.master();
        let id = fuse_transport::backing_open(master.as_fd(), file).map_err(crate::to_io)?;
        i32::try_from(id).map_err(|_| Errno::EIO)
    }

    /// Tells the kernel to drop the attributes it caches for `nodeid` (FUSE_NOTIFY_INVAL_INODE
    /// with no data range: the page cache is kept), so that its next stat asks the server:
    /// for changes the kernel cannot see, such as writes through a kernel passthrough mmap.
    /// Returns at once; an inode the kernel does not hold is no error. Safe to call while
    /// serving any request, that inode's own included.
    pub fn invalidate_attributes(&self, nodeid: NodeId) -> Result<(), Errno> {
        // off < 0: attributes only.
        self.channel.notifier().inval_inode(nodeid, -1, 0)
    }

    /// Drops a backing id returned by `backing_open`.
    pub fn backing_close(&self, backing_id: i32) -> Result<(), Errno> {
        let master = self.channel.master();
        let id = u32::try_from(backing_id).map_err(|_| Errno::EINVAL)?;
        fuse_transport::backing_close(master.as_fd(), id).map_err(crate::to_io)?;
        Ok(())
    }
}

/// Tells the kernel of changes it cannot see (FUSE_NOTIFY_INVAL_INODE, INVAL_ENTRY, DELETE),
/// from outside any request: for a file system whose data changes on its own (a network file
/// system, a relay of another server). Given to the file system by
/// [`Filesystem::notifier`](crate::Filesystem::notifier) when a session starts; cheap to clone.
///
/// Each call writes one notification and returns; a node or name the kernel does not hold, or
/// a connection gone, is no error. The kernel may take the inode's or the directory's lock
/// to carry one out: never call these from a request on the same inode or directory (or while
/// holding anything such a request waits for), or the two wait for each other.
#[derive(Clone)]
pub struct Notifier {
    master: Arc<OwnedFd>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Drops what the kernel caches of `nodeid`: its attributes, and the page cache from
    /// `offset` for `len` bytes (`len` 0: to the end). `offset` < 0: the attributes only.
    pub fn inval_inode(&self, nodeid: NodeId, offset: i64, len: i64) -> Result<(), Errno> {
        let out = fuse_abi::fuse_notify_inval_inode_out { ino: nodeid.0, off: offset, len };
        self.send(fuse_abi::fuse_notify_code::FUSE_NOTIFY_INVAL_INODE, &[out.as_bytes()])
    }

    /// Drops the kernel's dentry for `name` in `parent` (and the parent's attributes): the
    /// next use of the name looks it up. `flags`: the kernel's `FUSE_EXPIRE_ONLY` (mark it
    /// expired instead), or 0.
    pub fn inval_entry(&self, parent: NodeId, name: &OsStr, flags: u32) -> Result<(), Errno> {
        let name = name.as_bytes();
        let namelen = u32::try_from(name.len()).map_err(|_| Errno::ENAMETOOLONG)?;
        let out = fuse_abi::fuse_notify_inval_entry_out { parent: parent.0, namelen, flags };
        self.send(
            fuse_abi::fuse_notify_code::FUSE_NOTIFY_INVAL_ENTRY,
            &[out.as_bytes(), name, b"\0"],
        )
    }

    /// Tells the kernel that `name` in `parent`, which was `child`, is gone: its dentry is
    /// dropped if it still points to `child` (as after an unlink).
    pub fn delete(&self, parent: NodeId, child: NodeId, name: &OsStr) -> Result<(), Errno> {
        let name = name.as_bytes();
        let namelen = u32::try_from(name.len()).map_err(|_| Errno::ENAMETOOLONG)?;
        let out = fuse_abi::fuse_notify_delete_out {
            parent: parent.0,
            child: child.0,
            namelen,
            padding: 0,
        };
        self.send(fuse_abi::fuse_notify_code::FUSE_NOTIFY_DELETE, &[out.as_bytes(), name, b"\0"])
    }

    fn send(&self, code: fuse_abi::fuse_notify_code, parts: &[&[u8]]) -> Result<(), Errno> {
        let bytes = fuse_proto::reply::notification(code, &parts.concat());
        // Gone (no such inode or name) or disconnected (nothing cached any more): done.
        match fuse_transport::write_reply(self.master.as_fd(), &[io::IoSlice::new(&bytes)]) {
            Ok(_) => Ok(()),
            Err(err) => Err(crate::to_io(err).into()),
        }
    }
}
