//! `Passthrough`: the `Filesystem` that mirrors a source directory.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse_abi::{FOPEN_NOFLUSH, FOPEN_PASSTHROUGH, fuse_attr, fuse_kstatfs};
use fuse_server::{
    Attr, Context, CopyRange, Counted, CreateArgs, DirFiller, Entry, Errno, FileHandle, Filesystem,
    Link, NodeId, Opened, Rename, Result, SetAttr, SetTime, Statfs,
};
use rustix::fs::{
    AtFlags, CWD, Dir, FallocateFlags, Mode, OFlags, RenameFlags, Statx, StatxFlags, Timespec,
    Timestamps, XattrFlags,
};

use crate::creds::become_caller;
use crate::handle::{HANDLES, Handle, HandleRecord, HandleTable};
use crate::inode::{INODES, Inode, InodeKey, InodeTable, ROOT};
use fuse_recovery::store::{Store, TableSpec};

/// How the filesystem behaves; the mount options that concern it.
#[derive(Debug, Clone)]
pub struct FsConfig {
    pub entry_timeout: Duration,
    pub attr_timeout: Duration,
    /// Hand open regular files to the kernel as passthrough backing files.
    pub passthrough: bool,
    /// The page cache runs in writeback mode: the kernel may read from files opened
    /// write-only and does O_APPEND itself.
    pub writeback: bool,
    /// Test switch (`PASSTHROUGHFS_TEST_READ_DELAY_MS`): every READ waits this long inside
    /// the server before reading, so tests can kill a server with a READ in flight.
    pub read_delay: Option<Duration>,
    /// How many inodes the kernel forgot keep their records, so that file handles it gave
    /// out (NFS export, `open_by_handle_at`) still find them; 0: no file-handle support.
    pub remember_inodes: usize,
    /// The mount's access-time policy (`relatime`, the default, `noatime`, `strictatime`),
    /// kept on the source whatever the source's own mount has (see [`Passthrough::new`]).
    pub atime: Atime,
    /// `nodiratime`: directory listings leave the source directories' access times alone.
    pub nodiratime: bool,
    /// `ro`: reads leave the source's access times alone, as on a read-only mount.
    pub read_only: bool,
    /// `inode_file=PATH`: the inode table is saved there when the server ends and restored
    /// by the next mount's, so that file handles (an NFS export's) outlive the mount.
    pub inode_file: Option<std::path::PathBuf>,
}

/// An access-time policy, as mount(8) names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Atime {
    /// Updated on a read when older than the last change, or a day old.
    #[default]
    Relatime,
    /// Never updated by a read.
    Noatime,
    /// Updated on every read.
    Strictatime,
}

/// Forgotten inodes remembered by default: about 13 MB of state store at most.
pub const REMEMBER_INODES: usize = 1 << 16;

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            passthrough: true,
            writeback: false,
            read_delay: None,
            remember_inodes: REMEMBER_INODES,
            atime: Atime::Relatime,
            nodiratime: false,
            read_only: false,
            inode_file: None,
        }
    }
}

/// A passthrough filesystem over a source directory.
pub struct Passthrough {
    inodes: InodeTable,
    handles: HandleTable,
    config: FsConfig,
    /// The source is on a local filesystem, where `AT_STATX_DONT_SYNC` returns current
    /// attributes (a network or FUSE filesystem may answer from a stale cache).
    local_source: bool,
    /// Devices of other users' FUSE mounts inside the source that a lookup was refused, each
    /// logged once.
    refused_mounts: Mutex<std::collections::HashSet<u64>>,
    /// Kernel passthrough in force (asked for, and agreed at INIT).
    passthrough: std::sync::atomic::AtomicBool,
    /// A (parent, name) of each symlink the kernel knows, by nodeid: the only way to its
    /// extended attributes (an `O_PATH` fd of a symlink reaches no xattr call, and
    /// `/proc/self/fd/N` follows to it only to follow it further). Kept current through
    /// RENAME and UNLINK; checked to still name the symlink before each use.
    symlinks: Mutex<std::collections::HashMap<u64, (u64, std::ffi::OsString)>>,
    /// FUSE_DONT_MASK agreed at INIT: creations arrive with the caller's mode unmasked, and
    /// the source applies the caller's umask where the kernel's rule says (no default ACL).
    dont_mask: std::sync::atomic::AtomicBool,
    /// Where the fds of open inodes that have no name left are kept for the next server
    /// (recoverable mounts only).
    fd_keeper: std::sync::OnceLock<Arc<dyn fuse_recovery::FdKeeper>>,
    /// The inodes the keepers hold an fd of, pinned in the inode cache, by nodeid.
    held: Mutex<std::collections::HashMap<u64, Arc<Inode>>>,
    /// How many handles open for writing through kernel passthrough each inode has (this
    /// process's opens). Their writes through an mmap change the source's mtime and ctime
    /// without the kernel knowing, so their attributes are not cached meanwhile.
    passthrough_writers: Mutex<std::collections::HashMap<u64, u32>>,
    /// (the detached copy's mount id, the source's): inodes seen through the copy of the
    /// source's mount (see [`Passthrough::new`]) are identified by the source's mount id.
    mnt_alias: Option<(u64, u64)>,
    /// The access-time options are kept with O_NOATIME on each fd (no detached copy).
    atime_by_fd: bool,
    /// The lock on the inode file (`inode_file=`), held while the server runs.
    inode_file_lock: Option<OwnedFd>,
}

/// The state store's tables: inodes, handles, the journal of in-flight requests, and the
/// names inodes are found again by when file handles cannot be opened.
pub const STORE_TABLES: [TableSpec; 4] =
    [INODES, HANDLES, fuse_recovery::journal::JOURNAL, crate::inode::NAMES];

/// `/proc/self/fd/N`: reaches the inode of an `O_PATH` fd for calls that take a path. Made
/// without allocating: every OPEN of a known inode, and xattr calls without `getxattrat(2)`,
/// resolve one.
fn proc_path(fd: BorrowedFd<'_>) -> ProcPath {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 32];
    // At most 14 + 11 bytes: room for the NUL after them.
    let _ = write!(&mut buf[..31], "/proc/self/fd/{}", fd.as_raw_fd());
    ProcPath(buf)
}

/// A NUL-terminated `/proc/self/fd/N` (14 bytes, at most 10 digits, then NULs).
struct ProcPath([u8; 32]);

impl ProcPath {
    fn as_c_str(&self) -> &std::ffi::CStr {
        std::ffi::CStr::from_bytes_until_nul(&self.0).unwrap_or(c"/proc/self/fd/")
    }
}

const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::MNT_ID);

fn statx_fd(fd: BorrowedFd<'_>) -> Result<Statx> {
    rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW, STATX_MASK)
        .map_err(Errno::from)
}

/// `inode` is a regular file owned by `uid`.
fn owns_regular_file(inode: &Inode, uid: u32) -> Result<bool> {
    let st = statx_fd(inode.fd.as_fd())?;
    Ok(st.stx_uid == uid && u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFREG)
}

/// The kernel's view of a source inode's attributes.
pub fn attr_of(st: &Statx) -> fuse_attr {
    fuse_attr {
        ino: st.stx_ino,
        size: st.stx_size,
        blocks: st.stx_blocks,
        atime: st.stx_atime.tv_sec as u64,
        mtime: st.stx_mtime.tv_sec as u64,
        ctime: st.stx_ctime.tv_sec as u64,
        atimensec: st.stx_atime.tv_nsec,
        mtimensec: st.stx_mtime.tv_nsec,
        ctimensec: st.stx_ctime.tv_nsec,
        mode: u32::from(st.stx_mode),
        nlink: st.stx_nlink,
        uid: st.stx_uid,
        gid: st.stx_gid,
        rdev: libc::makedev(st.stx_rdev_major, st.stx_rdev_minor) as u32,
        blksize: st.stx_blksize,
        flags: 0,
    }
}

/// True for filesystems whose `statx(AT_STATX_DONT_SYNC)` answers current attributes: local
/// ones, by their `statfs` magic (ext2/3/4, xfs, btrfs, tmpfs, ramfs, f2fs, bcachefs, zfs,
/// exfat, vfat, squashfs, erofs, iso9660). Anything else (NFS, CIFS, FUSE, overlay over any
/// of them...) is asked again without it.
fn is_local_fs(magic: i64) -> bool {
    const LOCAL: [i64; 13] = [
        0xEF53,
        0x5846_5342,
        0x9123_683E,
        0x0102_1994,
        0x8584_58F6,
        0xF2F5_2010,
        0xCA45_1A4E,
        0x2FC1_2FC1,
        0x2011_BAB0,
        0x4D44,
        0x7371_7368,
        0xE0F5_E1E2,
        0x9660,
    ];
    LOCAL.contains(&(magic & 0xFFFF_FFFF))
}

/// The owner (`user_id=`) of the FUSE connection whose anonymous device is `major:minor`, or
/// `None` if that device is not a FUSE connection. A live connection has a fusectl directory
/// named by its device minor; only then is mountinfo read (text: no FUSE request).
fn fuse_mount_owner(major: u32, minor: u32) -> Option<u32> {
    let fusectl = Path::new("/sys/fs/fuse/connections");
    if major != 0 || (fusectl.is_dir() && !fusectl.join(minor.to_string()).exists()) {
        return None;
    }
    let mounts = fuse_transport::read_mountinfo().ok()?;
    let m = mounts.iter().find(|m| m.is_fuse() && m.major == major && m.minor == minor)?;
    // No user_id option: the kernel's default, the mounting process's uid; unknown here.
    let owner = m.super_options.split(',').find_map(|o| o.strip_prefix("user_id="));
    Some(owner.and_then(|u| u.parse().ok()).unwrap_or(u32::MAX))
}

/// `FUSE_SUPER_MAGIC`.
const FUSE_MAGIC: i64 = 0x6573_5546;

/// The identity of the inode `st` describes; `alias` (the detached copy's mount id, the
/// source's) names the source's mount for the copy's.
fn key_of(st: &Statx, alias: Option<(u64, u64)>) -> InodeKey {
    InodeKey {
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mnt_id: mnt_of(st.stx_mnt_id, alias),
    }
}

fn mnt_of(mnt_id: u64, alias: Option<(u64, u64)>) -> u64 {
    match alias {
        Some((copy, source)) if mnt_id == copy => source,
        _ => mnt_id,
    }
}

/// The source's access-time policy, from its mount's flags.
fn atime_of(flags: Option<rustix::fs::StatVfsMountFlags>) -> (Atime, bool) {
    use rustix::fs::StatVfsMountFlags as F;
    let has = |flag| flags.is_some_and(|f: F| f.contains(flag));
    let atime = if has(F::NOATIME) {
        Atime::Noatime
    } else if has(F::RELATIME) {
        Atime::Relatime
    } else {
        Atime::Strictatime
    };
    (atime, has(F::NODIRATIME))
}

/// How the source is reached so that the mount's access-time options hold (see
/// [`Passthrough::new`]): a detached copy of its mount with them, or (`None`) the source
/// itself, with whether they must then be kept with O_NOATIME on each fd. May turn kernel
/// passthrough off in `config`.
fn source_view(
    source: &Path,
    original: &OwnedFd,
    config: &mut FsConfig,
) -> (Option<OwnedFd>, bool) {
    let wanted = if config.read_only { Atime::Noatime } else { config.atime };
    let (has, has_nodiratime) = atime_of(rustix::fs::fstatvfs(original).map(|s| s.f_flag).ok());
    let nodiratime = config.nodiratime && wanted != Atime::Noatime;
    if wanted == has && (!nodiratime || has_nodiratime) {
        return (None, false);
    }
    let submounts = has_submounts(source);
    if rustix::process::geteuid().is_root() && !submounts {
        let attr = match wanted {
            Atime::Relatime => crate::sys::MOUNT_ATTR_RELATIME,
            Atime::Noatime => crate::sys::MOUNT_ATTR_NOATIME,
            Atime::Strictatime => crate::sys::MOUNT_ATTR_STRICTATIME,
        };
        match crate::sys::clone_with_atime(source, attr, nodiratime) {
            Ok(copy) => return (Some(copy), false),
            Err(err) => {
                tracing::warn!(%err, "no copy of the source's mount with the mount's access-time options")
            }
        }
    }
    let why = if submounts { "other mounts inside the source" } else { "not root" };
    if wanted == Atime::Noatime && config.passthrough && has != Atime::Noatime {
        // Kernel passthrough reads through a file on the source's own mount, whose atime
        // policy applies: only the server's reads (O_NOATIME) can keep noatime.
        tracing::warn!(
            "noatime ({why}): kernel passthrough off (mount the source noatime to keep it)"
        );
        config.passthrough = false;
    }
    if wanted == Atime::Strictatime {
        tracing::warn!("strictatime ({why}): access times follow the source's own policy");
    }
    (None, true)
}

/// Whether another mount is under `dir` (in this process's mount namespace).
fn has_submounts(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    let dir = dir.as_os_str().as_bytes();
    info.lines().filter_map(|line| line.split(' ').nth(4)).any(|point| {
        let point = fuse_transport::unescape(point.as_bytes());
        point.len() > dir.len()
            && point.starts_with(dir)
            && (point[dir.len()] == b'/' || dir == b"/")
    })
}

fn time(t: Option<SetTime>) -> Timespec {
    match t {
        None => Timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        Some(SetTime::Now) => Timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        Some(SetTime::At { sec, nsec }) => Timespec { tv_sec: sec, tv_nsec: i64::from(nsec) },
    }
}

/// Whether `t` is an explicit time within the last minute (a request may wait out a server
/// restart) and not in the future: what the writeback-cache kernel sends for "now".
fn is_recent(t: Option<SetTime>) -> bool {
    let Some(SetTime::At { sec, .. }) = t else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (now - 60..=now + 1).contains(&sec)
}

impl Passthrough {
    /// A filesystem mirroring `source`, its tables in `store` ([`STORE_TABLES`]): a restarted
    /// server's store from the keeper continues where the previous server stopped; a new one
    /// ([`Passthrough::new_store`]) starts empty.
    ///
    /// Access times: every access to the source goes through a file on the source's mount,
    /// kernel passthrough's too, so the source mount's policy applies. When the mount's own
    /// (`noatime`, `strictatime`, `nodiratime`; `ro` counts as `noatime`) differs, a root
    /// server works on a detached copy of the source's mount with the mount's policy
    /// (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr`, attached nowhere), whose mount id is
    /// taken for the source's in inode identities, so that they stay what earlier servers
    /// recorded. Without it (not root, or other mounts inside the source, which the copy
    /// would hide), `noatime` is O_NOATIME on the server's fds with kernel passthrough off,
    /// and `strictatime` is the source's policy.
    pub fn new(source: &Path, config: FsConfig, store: Arc<Store>) -> anyhow::Result<Self> {
        crate::creds::init();
        let original = rustix::fs::open(
            source,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::statx(&original, "", AtFlags::EMPTY_PATH, STATX_MASK)?;
        // `f_type`'s type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let source_type = rustix::fs::fstatfs(&original).ok().map(|s| s.f_type as i64);
        let local_source = source_type.is_some_and(is_local_fs);
        let mut config = config;
        let (view, atime_by_fd) = source_view(source, &original, &mut config);
        let (fd, mnt_alias) = match view {
            Some(view) => {
                let clone_id =
                    rustix::fs::statx(&view, "", AtFlags::EMPTY_PATH, STATX_MASK)?.stx_mnt_id;
                (view, Some((clone_id, st.stx_mnt_id)))
            }
            None => (original, None),
        };
        let mount_fd = rustix::fs::openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Without CAP_DAC_READ_SEARCH (not root), or on a source whose file handles cannot be
        // opened (tried once, on the source's root), or a FUSE source (whose handles open only
        // inodes its kernel still caches unless its server supports exports), a restarted
        // server finds inodes again by the names they were looked up by.
        let handles = source_type != Some(FUSE_MAGIC)
            && rustix::process::geteuid().is_root()
            && crate::sys::name_to_handle(fd.as_fd())
                .and_then(|h| {
                    let flags = libc::O_PATH | libc::O_CLOEXEC;
                    crate::sys::open_by_handle(mount_fd.as_fd(), &h, flags)
                })
                .is_ok();
        let by_name = !handles;
        tracing::debug!(by_name, "how inodes are found again after a restart");
        let mut inodes = InodeTable::new(&store, fd, key_of(&st, None), mount_fd, by_name)?
            .remembering(config.remember_inodes);
        if !by_name {
            // Half the open-file limit for inode fds, the rest for open files; beyond it
            // inodes are reopened by file handle (which needs root).
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            inodes = inodes.with_max_cached(limit.map_or(1 << 20, |l| (l / 2) as usize));
        }
        let inode_file_lock = match &config.inode_file {
            Some(path) => Some(crate::inode_file::restore(path, &inodes)?),
            None => None,
        };
        Ok(Passthrough {
            inodes,
            handles: HandleTable::new(&store)?,
            passthrough: std::sync::atomic::AtomicBool::new(false),
            dont_mask: std::sync::atomic::AtomicBool::new(false),
            symlinks: Mutex::default(),
            local_source,
            refused_mounts: Mutex::default(),
            fd_keeper: std::sync::OnceLock::new(),
            held: Mutex::default(),
            passthrough_writers: Mutex::default(),
            mnt_alias,
            atime_by_fd,
            inode_file_lock,
            config,
        })
    }

    /// A new, empty store for a server without a tag (nobody keeps it).
    pub fn new_store() -> anyhow::Result<Arc<Store>> {
        Ok(Arc::new(Store::create("passthroughfs-state", &STORE_TABLES)?))
    }

    /// The caller's `umask` for the creation about to be made, when the kernel sent its mode
    /// unmasked (FUSE_DONT_MASK): the source applies it, or the parent's default ACL instead,
    /// as the kernel would have.
    fn creating(&self, umask: u32) -> Result<()> {
        if self.dont_mask.load(std::sync::atomic::Ordering::Relaxed) {
            crate::creds::caller_umask(umask)?;
        }
        Ok(())
    }

    fn entry(&self, counted: Counted, generation: u32, st: &Statx) -> Entry {
        let attr_valid = self.attr_valid(counted.nodeid().0, u32::from(st.stx_mode));
        Entry {
            counted,
            generation: u64::from(generation),
            attr: attr_of(st),
            entry_valid: self.config.entry_timeout,
            attr_valid,
        }
    }

    /// Under `noatime` (or `nodiratime`, for a directory), sets O_NOATIME on the source fd
    /// `fd` that reads (kernel passthrough's too) and listings go through: the mount's option
    /// then holds on the source, whose own mount may update access times. Only the owner or
    /// root may set it: as root for a caller who does not own the file (who has opened it
    /// already, with the permission checks of its own identity).
    fn keep_atime(&self, fd: &OwnedFd, dir: bool) -> Result<()> {
        let noatime = self.config.atime == Atime::Noatime || self.config.read_only;
        if !self.atime_by_fd || !(noatime || dir && self.config.nodiratime) {
            return Ok(());
        }
        let flags = rustix::fs::fcntl_getfl(fd)?;
        let set = || rustix::fs::fcntl_setfl(fd, flags | OFlags::NOATIME);
        match set() {
            Err(rustix::io::Errno::PERM) => {
                let _root = crate::creds::root()?;
                set()?
            }
            other => other?,
        }
        Ok(())
    }

    /// How long the kernel may cache `st`, the attributes of `nodeid`: not at all for a
    /// regular file with setuid or setgid, nor for one open for writing through kernel
    /// passthrough. A write or fallocate by a user without CAP_FSETID clears setuid and
    /// setgid on the source (as the caller, by the source's rule: FUSE_HANDLE_KILLPRIV_V2),
    /// and the kernel, which never hears of it through kernel passthrough and refreshes only
    /// times and size after a write, would show the old mode until the attributes expire;
    /// a write through a passthrough mmap changes mtime and ctime with no request at all.
    fn attr_valid(&self, nodeid: u64, mode: u32) -> Duration {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return self.config.attr_timeout;
        }
        let sxid = mode & (libc::S_ISUID | libc::S_ISGID) != 0;
        // Writers are counted only under kernel passthrough: no lock on this path otherwise.
        let passthrough = self.passthrough.load(std::sync::atomic::Ordering::Relaxed);
        if sxid || passthrough && self.writers_lock().contains_key(&nodeid) {
            Duration::ZERO
        } else {
            self.config.attr_timeout
        }
    }

    fn writers_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, u32>> {
        self.passthrough_writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle opened for writing through kernel passthrough (`opened`), or one of them
    /// released (`!opened`). While one is open the inode's attributes are not cached
    /// ([`Passthrough::attr_valid`]); the first one also drops what the kernel caches, from
    /// before the writes, if it may cache any (`known`: not for an inode whose entry this
    /// very request answers, a CREATE's, which gives that entry no cache time instead).
    fn passthrough_writer(
        &self,
        ctx: &Context<'_>,
        record: &HandleRecord,
        opened: bool,
        known: bool,
    ) {
        let writable = record.flags & libc::O_ACCMODE != libc::O_RDONLY;
        if !record.backed || !writable {
            return;
        }
        let mut writers = self.writers_lock();
        if opened {
            let n = writers.entry(record.nodeid).or_insert(0);
            *n += 1;
            let first = *n == 1;
            drop(writers);
            if first
                && known
                && let Err(errno) = ctx.invalidate_attributes(NodeId(record.nodeid))
            {
                tracing::debug!(%errno, "invalidating attributes");
            }
        } else if let Some(n) = writers.get_mut(&record.nodeid) {
            *n -= 1;
            if *n == 0 {
                writers.remove(&record.nodeid);
            }
        }
    }

    /// Looks `name` up in `parent` and counts the lookup.
    fn do_lookup(&self, ctx: &Context<'_>, parent: &Inode, name: &OsStr) -> Result<Entry> {
        let fd = rustix::fs::openat(
            &parent.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // First without asking whatever serves the inode (`AT_STATX_DONT_SYNC`; the `O_PATH`
        // open crossed into a mount without a request either): the name may be the root of
        // another user's FUSE mount, whose server may never answer.
        let flags = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
        let quick = rustix::fs::statx(&fd, "", flags, STATX_MASK)?;
        let crossed = mnt_of(quick.stx_mnt_id, self.mnt_alias) != parent.key.mnt_id;
        if crossed {
            self.may_enter(&quick)?;
        }
        let st = if crossed || !self.local_source { statx_fd(fd.as_fd())? } else { quick };
        let entry = self.adopt_with(ctx, fd, &st)?;
        self.inodes.set_name(entry.nodeid().0, parent.nodeid, name.as_bytes());
        if u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFLNK {
            self.symlinks_lock().insert(entry.nodeid().0, (parent.nodeid, name.to_owned()));
        }
        Ok(entry)
    }

    /// LOOKUP of "." in `nodeid` (FUSE_EXPORT_SUPPORT): the inode, found by its record even
    /// if the kernel forgot it (see [`InodeTable::revive`]), with one more lookup counted.
    fn lookup_self(&self, ctx: &Context<'_>, nodeid: u64) -> Result<Entry> {
        let inode = self.inodes.revive(nodeid)?;
        match statx_fd(inode.fd.as_fd()) {
            Ok(st) => Ok(self.entry(ctx.counted(NodeId(nodeid)), inode.generation, &st)),
            Err(errno) => {
                self.inodes.forget(nodeid, 1);
                Err(errno)
            }
        }
    }

    /// LOOKUP of ".." in the directory `nodeid` (FUSE_EXPORT_SUPPORT): its parent. The
    /// root's parent is the root: nothing above the source is served.
    fn lookup_parent(&self, ctx: &Context<'_>, nodeid: u64) -> Result<Entry> {
        let dir = self.inodes.get(nodeid)?;
        if dir.nodeid == ROOT {
            let st = statx_fd(dir.fd.as_fd())?;
            return Ok(self.entry(ctx.counted(NodeId(ROOT)), 0, &st));
        }
        if dir.kind != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir.fd, "..", flags, Mode::empty())?;
        let st = statx_fd(fd.as_fd())?;
        self.adopt_with(ctx, fd, &st)
    }

    /// Whether a lookup may enter the mount whose root `st` describes: not if it is the FUSE
    /// mount of a user other than root (`user_id=`). Such a mount is the user's to serve, and
    /// its server may stall: every request that reached it would hold one of our workers for
    /// as long as it stalls (with `allow_other`, which `user_allow_other` in /etc/fuse.conf
    /// lets users set), until no worker is left for anybody. It stays reachable at its own
    /// path. Its name is still listed (READDIRPLUS lists names whose lookup fails).
    fn may_enter(&self, st: &Statx) -> Result<()> {
        let Some(owner) = fuse_mount_owner(st.stx_dev_major, st.stx_dev_minor) else {
            return Ok(());
        };
        if owner == 0 {
            return Ok(());
        }
        let dev = libc::makedev(st.stx_dev_major, st.stx_dev_minor);
        if self.refused_mounts.lock().unwrap_or_else(|e| e.into_inner()).insert(dev) {
            tracing::warn!(
                owner,
                conn = st.stx_dev_minor,
                "not entering the FUSE mount of uid {owner} inside the source (EACCES): its \
                server could hold our workers"
            );
        }
        Err(Errno::EACCES)
    }

    /// Runs `remove`, which takes the name `name` of `dir` away (UNLINK, RENAME over it), and
    /// gives the keepers the inode it named if that is open and left with no name
    /// ([`Passthrough::keep_if_nameless`]). The victim is looked at before (an `openat`, a
    /// `statx` and a `close`) only with keepers and while some file is open; after a removal
    /// that found none open, a file opened meanwhile (its OPEN answered between that look
    /// and the removal) may be the victim: every open file with no name left is kept.
    fn removing_name(
        &self,
        dir: &Inode,
        name: &OsStr,
        remove: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.fd_keeper.get().is_none() {
            return remove();
        }
        let looked = self.handles.any_file_open();
        let victim = looked.then(|| self.known_at(dir, name)).flatten();
        remove()?;
        match victim {
            Some(nodeid) => self.keep_if_nameless(nodeid),
            None if !looked => {
                for nodeid in self.handles.open_files() {
                    self.keep_if_nameless(nodeid);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Gives the keepers the fd of inode `nodeid` if it is open and has no name left (unlinked,
    /// renamed over, or made with O_TMPFILE): the next server could not open it again
    /// otherwise. The keeper hands it to the next server; FORGET lets it go.
    fn keep_if_nameless(&self, nodeid: u64) {
        let Some(keeper) = self.fd_keeper.get() else { return };
        // Open first: an inode nobody has open needs no keeping, and is not reopened (its fd
        // may have left the inode cache, and a file with no name left does not open by
        // handle: every unlink of such a file cost a failing open_by_handle_at and a warning).
        if !self.handles.is_open(nodeid) {
            return;
        }
        let Ok(inode) = self.inodes.get(nodeid) else { return };
        let nameless = statx_fd(inode.fd.as_fd()).is_ok_and(|st| st.stx_nlink == 0);
        if !nameless {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let std::collections::hash_map::Entry::Vacant(slot) = held.entry(nodeid) {
            keeper.hold(nodeid, inode.fd.as_fd());
            slot.insert(inode);
        }
    }

    /// The inode `nodeid` is forgotten: the keepers let its fd go, if they held it.
    fn unkeep(&self, nodeid: u64) {
        let gone = self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&nodeid);
        if let (Some(gone), Some(keeper)) = (gone, self.fd_keeper.get()) {
            keeper.release(nodeid);
            drop(gone);
        }
    }

    /// Reopens `inode` with `flags`; for an unprivileged server, a regular file it owns whose
    /// mode denies them is reopened all the same: the owner may change that mode anyway, so
    /// owner read and write are added for the open and the mode put back.
    fn reopen_owned(&self, inode: &Inode, flags: OFlags) -> Result<OwnedFd> {
        let euid = rustix::process::geteuid().as_raw();
        match self.reopen(inode, flags) {
            Err(Errno::EACCES) if !crate::creds::switching() && owns_regular_file(inode, euid)? => {
            }
            result => return result,
        }
        let st = statx_fd(inode.fd.as_fd())?;
        let mode = u32::from(st.stx_mode) & 0o7777;
        let path = proc_path(inode.fd.as_fd());
        let chmod = |m: u32| {
            rustix::fs::chmod(path.as_c_str(), Mode::from_bits_retain(m)).map_err(Errno::from)
        };
        chmod(mode | 0o600)?;
        let reopened = self.reopen(inode, flags);
        chmod(mode)?;
        reopened
    }

    /// The nodeid of the inode at `name` in `dir`, if the kernel knows it.
    fn known_at(&self, dir: &Inode, name: &OsStr) -> Option<u64> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir.fd, name, flags, Mode::empty()).ok()?;
        let st = statx_fd(fd.as_fd()).ok()?;
        self.inodes.nodeid_of(&fd, &key_of(&st, self.mnt_alias))
    }

    /// Counts a lookup of the inode `fd` (an `O_PATH` fd) refers to, whose attributes `st`
    /// the caller read. The count is told to `ctx` at once: for a request that made the entry
    /// (mkdir, create...) it goes in the journal, so a resend after a crash does not count it
    /// again.
    fn adopt_with(&self, ctx: &Context<'_>, fd: OwnedFd, st: &Statx) -> Result<Entry> {
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        let (nodeid, generation) = self.inodes.lookup(fd, key_of(st, self.mnt_alias), kind)?;
        Ok(self.entry(ctx.counted(NodeId(nodeid)), generation, st))
    }

    fn attr(&self, inode: &Inode) -> Result<Attr> {
        let st = statx_fd(inode.fd.as_fd())?;
        Ok(Attr {
            attr: attr_of(&st),
            valid: self.attr_valid(inode.nodeid, u32::from(st.stx_mode)),
        })
    }

    fn file(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles.get(fh, |record| self.reopen_handle(record))
    }

    /// Reopens a handle a previous server opened, with its original flags less those that
    /// acted at open time (O_CREAT, O_EXCL, O_TRUNC).
    fn reopen_handle(&self, record: HandleRecord) -> Result<Handle> {
        let inode = self.inodes.get(record.nodeid)?;
        crate::creds::as_root(|| {
            if record.is_dir {
                let fd =
                    self.reopen(&inode, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
                self.keep_atime(&fd, true)?;
                Ok(Handle::Dir(Mutex::new(Dir::new(fd)?)))
            } else {
                let flags = self.open_flags(record.flags) & !OFlags::TRUNC;
                // An unprivileged server's own file that its mode now denies (git writes its
                // packs O_RDWR with mode 0444).
                let fd = self.reopen_owned(&inode, flags)?;
                self.keep_atime(&fd, false)?;
                Ok(Handle::File { fd, record })
            }
        })?
    }

    /// The flags to open the source file with, from the flags of a FUSE OPEN or CREATE (or a
    /// handle record, after a restart): what the file's I/O needs, nothing that steers path
    /// resolution. Opens go through `/proc/self/fd/N` or an `O_PATH` parent, where O_NOFOLLOW
    /// would fail on the magic link (ELOOP: CREATE passes the application's O_NOFOLLOW on;
    /// the kernel already resolved the name), and O_PATH, O_TMPFILE or O_DIRECTORY would make
    /// another kind of open than the one the kernel made.
    fn open_flags(&self, flags: i32) -> OFlags {
        let io = OFlags::RWMODE
            | OFlags::APPEND
            | OFlags::NONBLOCK
            | OFlags::DSYNC
            | OFlags::SYNC
            | OFlags::DIRECT
            | OFlags::NOATIME
            | OFlags::LARGEFILE
            | OFlags::TRUNC;
        let mut flags = OFlags::from_bits_retain(flags as u32) & io;
        if !self.passthrough.load(std::sync::atomic::Ordering::Relaxed) {
            // Served by the server, O_DIRECT I/O would need the request's data aligned in
            // the server's buffers (it is not: EINVAL). The kernel already bypasses its page
            // cache for the application's O_DIRECT; the server's own I/O need not.
            flags &= !OFlags::DIRECT;
        }
        if self.config.writeback {
            // The kernel reads pages of files opened write-only and appends by itself.
            if flags & OFlags::RWMODE == OFlags::WRONLY {
                flags = (flags & !OFlags::RWMODE) | OFlags::RDWR;
            }
            flags &= !OFlags::APPEND;
        }
        flags | OFlags::CLOEXEC
    }

    /// Wraps an open file of `inode` in a handle, using the inode's kernel passthrough
    /// backing id when passthrough is on (registering `fd` as the backing file if the inode
    /// has none yet). `known`: the kernel may cache the inode's attributes already (see
    /// [`Passthrough::passthrough_writer`]).
    fn open_handle(
        &self,
        ctx: &Context<'_>,
        inode: &Inode,
        fd: OwnedFd,
        flags: i32,
        known: bool,
    ) -> Result<Opened> {
        // No FLUSH on close: locks are the kernel's (no POSIX lock delegation) and writes reach
        // the source synchronously, so FLUSH has nothing to do; without it a close costs no
        // round trip and never waits on a server being restarted (an exec closing inherited
        // fds would otherwise pause until the new server answers).
        self.keep_atime(&fd, false)?;
        let mut opened = Opened { open_flags: FOPEN_NOFLUSH, ..Opened::default() };
        let mut record = HandleRecord { nodeid: inode.nodeid, flags, is_dir: false, backed: false };
        if inode.kind == libc::S_IFREG
            && self.passthrough.load(std::sync::atomic::Ordering::Relaxed)
        {
            let backing =
                self.inodes.backing_acquire(
                    inode,
                    || match crate::creds::as_caller_with_sys_admin(ctx, || {
                        ctx.backing_open(fd.as_fd())
                    }) {
                        Ok(Ok(id)) => Some(id),
                        Ok(Err(errno)) | Err(errno) => {
                            tracing::debug!(%errno, "no kernel passthrough for this file");
                            None
                        }
                    },
                );
            if let Some(id) = backing {
                record.backed = true;
                opened.open_flags |= FOPEN_PASSTHROUGH;
                opened.backing_id = id;
            }
        }
        match self.handles.insert(record, Handle::File { fd, record }) {
            Ok(fh) => {
                opened.fh = FileHandle(fh);
                self.passthrough_writer(ctx, &record, true, known);
            }
            Err(errno) => {
                self.release_backing(ctx, &record);
                return Err(errno);
            }
        }
        Ok(opened)
    }

    /// Drops a handle's use of its inode's backing id; the last one closes it.
    fn release_backing(&self, ctx: &Context<'_>, record: &HandleRecord) {
        if !record.backed {
            return;
        }
        if let Some(id) = self.inodes.backing_release(record.nodeid) {
            match crate::creds::as_root(|| ctx.backing_close(id)) {
                Ok(Ok(())) => {}
                Ok(Err(errno)) | Err(errno) => {
                    tracing::warn!(%errno, backing_id = id, "closing backing id")
                }
            }
        }
    }

    fn reopen(&self, inode: &Inode, flags: OFlags) -> Result<OwnedFd> {
        rustix::fs::open(proc_path(inode.fd.as_fd()).as_c_str(), flags, Mode::empty())
            .map_err(Errno::from)
    }

    fn set_times(
        &self,
        inode: &Inode,
        handle: Option<&Handle>,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
    ) -> Result<()> {
        let times = Timestamps { last_access: time(atime), last_modification: time(mtime) };
        match handle.map(Handle::file) {
            Some(Ok(fd)) => rustix::fs::futimens(fd, &times).map_err(Errno::from),
            _ => rustix::fs::utimensat(
                &inode.fd,
                "",
                &times,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(Errno::from),
        }
    }

    fn set_mode(&self, inode: &Inode, handle: Option<&Handle>, mode: u32) -> Result<()> {
        let mode = Mode::from_bits_retain(mode & 0o7777);
        match handle.map(Handle::file) {
            Some(Ok(fd)) => rustix::fs::fchmod(fd, mode).map_err(Errno::from),
            _ if inode.is_symlink() => Err(Errno::ENOTSUP),
            _ => {
                rustix::fs::chmod(proc_path(inode.fd.as_fd()).as_c_str(), mode).map_err(Errno::from)
            }
        }
    }
}

impl Filesystem for Passthrough {
    fn init(&self, negotiated_flags: u64) {
        let on = self.config.passthrough && negotiated_flags & fuse_abi::FUSE_PASSTHROUGH != 0;
        self.passthrough.store(on, std::sync::atomic::Ordering::Relaxed);
        let dont_mask = negotiated_flags & fuse_abi::FUSE_DONT_MASK != 0;
        self.dont_mask.store(dont_mask, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(kernel_passthrough = on, dont_mask, "passthroughfs ready");
    }

    fn lookup(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<Entry> {
        become_caller(ctx)?;
        match name.as_bytes() {
            // The kernel resolving a file handle (NFS, open_by_handle_at) of an inode it no
            // longer caches: the inode itself, or the parent of a directory. Only these two
            // requests name "." or ".."; path walks resolve them in the kernel.
            b"." => self.lookup_self(ctx, parent.0),
            b".." => self.lookup_parent(ctx, parent.0),
            _ => {
                let parent = self.inodes.get(parent.0)?;
                self.do_lookup(ctx, &parent, name)
            }
        }
    }

    fn forget(&self, nodeid: NodeId, nlookup: u64) {
        self.inodes.forget(nodeid.0, nlookup);
        if self.inodes.lookup_count(nodeid.0) == 0 {
            self.unkeep(nodeid.0);
            self.symlinks_lock().remove(&nodeid.0);
        }
    }

    fn getattr(&self, _ctx: &Context<'_>, nodeid: NodeId, _fh: Option<FileHandle>) -> Result<Attr> {
        let inode = self.inodes.get(nodeid.0)?;
        self.attr(&inode)
    }

    fn setattr(&self, ctx: &Context<'_>, nodeid: NodeId, set: &SetAttr) -> Result<Attr> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        let handle = set.fh.map(|fh| self.file(fh.0)).transpose()?;
        if let Some(mode) = set.mode {
            match self.set_mode(&inode, handle.as_deref(), mode) {
                Err(Errno::EPERM)
                    if ctx.uid != 0
                        && clears_only_suid_sgid(&inode, mode)?
                        && may(&inode, rustix::fs::Access::WRITE_OK).is_ok() =>
                {
                    // The kernel drops setuid/setgid itself before a write or truncate by a
                    // caller who need not own the file (file_remove_privs). Only for a caller
                    // who may write it: anyone else asking is a chmod they may not do.
                    let _root = crate::creds::root()?;
                    self.set_mode(&inode, handle.as_deref(), mode)?;
                }
                other => other?,
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            let uid = set.uid.map(rustix::fs::Uid::from_raw);
            let gid = set.gid.map(rustix::fs::Gid::from_raw);
            rustix::fs::chownat(
                &inode.fd,
                "",
                uid,
                gid,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(size) = set.size {
            match handle.as_deref().map(Handle::file) {
                Some(Ok(fd)) => rustix::fs::ftruncate(fd, size)?,
                _ => {
                    let fd = self.reopen(&inode, OFlags::WRONLY | OFlags::CLOEXEC)?;
                    rustix::fs::ftruncate(&fd, size)?;
                }
            }
        }
        if set.atime.is_some() || set.mtime.is_some() {
            match self.set_times(&inode, handle.as_deref(), set.atime, set.mtime) {
                // With the writeback cache the kernel keeps mtime itself and sends a "now"
                // mtime as an explicit time, without FATTR_MTIME_NOW; only an owner may set
                // explicit times. What the caller asked for was "now":
                Err(Errno::EPERM) if self.config.writeback && is_recent(set.mtime) => {
                    if set.size.is_some() && set.atime.is_none() {
                        // a truncate, which stamped mtime and ctime on the source itself;
                    } else if set.atime.is_none()
                        && may(&inode, rustix::fs::Access::WRITE_OK).is_ok()
                    {
                        // the kernel writing back the mtime its cache kept for writes
                        // (fuse_flush_times, at close or fsync), as the last writer: what the
                        // writes would have stamped on a local filesystem, where no
                        // permission is asked for it. Only for a caller who may write.
                        let _root = crate::creds::root()?;
                        self.set_times(&inode, handle.as_deref(), None, set.mtime)?
                    } else if matches!(set.atime, Some(SetTime::Now)) {
                        // a touch: both "now", for which the source filesystem checks write
                        // permission (EACCES without it), as it would have.
                        let now = Some(SetTime::Now);
                        self.set_times(&inode, handle.as_deref(), now, now)?
                    } else {
                        return Err(Errno::EPERM);
                    }
                }
                other => other?,
            }
        }
        self.attr(&inode)
    }

    fn readlink(&self, ctx: &Context<'_>, nodeid: NodeId) -> Result<Vec<u8>> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        let target = rustix::fs::readlinkat(&inode.fd, "", Vec::new())?;
        Ok(target.into_bytes())
    }

    fn symlink(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<Entry> {
        become_caller(ctx)?;
        let parent = self.inodes.get(parent.0)?;
        rustix::fs::symlinkat(target, &parent.fd, name)?;
        self.do_lookup(ctx, &parent, name)
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
        become_caller(ctx)?;
        self.creating(umask)?;
        let parent = self.inodes.get(parent.0)?;
        let kind = rustix::fs::FileType::from_raw_mode(mode);
        rustix::fs::mknodat(
            &parent.fd,
            name,
            kind,
            Mode::from_bits_retain(mode & 0o7777),
            u64::from(rdev),
        )?;
        self.do_lookup(ctx, &parent, name)
    }

    fn mkdir(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry> {
        become_caller(ctx)?;
        self.creating(umask)?;
        let parent = self.inodes.get(parent.0)?;
        rustix::fs::mkdirat(&parent.fd, name, Mode::from_bits_retain(mode & 0o7777))?;
        self.do_lookup(ctx, &parent, name)
    }

    fn unlink(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        become_caller(ctx)?;
        let parent = self.inodes.get(parent.0)?;
        self.removing_name(&parent, name, || {
            rustix::fs::unlinkat(&parent.fd, name, AtFlags::empty()).map_err(Errno::from)
        })?;
        self.symlink_moved((parent.nodeid, name), None);
        Ok(())
    }

    fn rmdir(&self, ctx: &Context<'_>, parent: NodeId, name: &OsStr) -> Result<()> {
        become_caller(ctx)?;
        let parent = self.inodes.get(parent.0)?;
        rustix::fs::unlinkat(&parent.fd, name, AtFlags::REMOVEDIR).map_err(Errno::from)
    }

    fn rename(&self, ctx: &Context<'_>, args: &Rename<'_>) -> Result<()> {
        let Rename { parent, name, newparent, newname, flags } = *args;
        become_caller(ctx)?;
        let old = self.inodes.get(parent.0)?;
        let new = self.inodes.get(newparent.0)?;
        let flags = RenameFlags::from_bits(flags).ok_or(Errno::EINVAL)?;
        // Found again by name after a restart: each inode that moves is given its new name
        // first, its old one kept as the fallback (the server may die on either side).
        if self.inodes.by_name() {
            let moving = |dir: &Inode, at: &OsStr, to: &Inode, to_name: &OsStr| {
                if let Some(nodeid) = self.known_at(dir, at) {
                    self.inodes.renaming(nodeid, to.nodeid, to_name.as_bytes());
                }
            };
            moving(&old, name, &new, newname);
            if flags.contains(RenameFlags::EXCHANGE) {
                moving(&new, newname, &old, name);
            }
        }
        let rename = || {
            rustix::fs::renameat_with(&old.fd, name, &new.fd, newname, flags).map_err(Errno::from)
        };
        if flags.contains(RenameFlags::EXCHANGE) {
            // Both names stay: nothing loses its last one.
            rename()?;
            self.symlinks_exchanged((old.nodeid, name), (new.nodeid, newname));
        } else {
            self.removing_name(&new, newname, rename)?;
            self.symlink_moved((new.nodeid, newname), None);
            self.symlink_moved((old.nodeid, name), Some((new.nodeid, newname)));
        }
        Ok(())
    }

    fn link(&self, ctx: &Context<'_>, args: &Link<'_>) -> Result<Entry> {
        let Link { nodeid, newparent, newname } = *args;
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        let parent = self.inodes.get(newparent.0)?;
        rustix::fs::linkat(
            CWD,
            proc_path(inode.fd.as_fd()).as_c_str(),
            &parent.fd,
            newname,
            AtFlags::SYMLINK_FOLLOW,
        )?;
        self.do_lookup(ctx, &parent, newname)
    }

    fn open(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        let exec = flags & FMODE_EXEC != 0 && crate::creds::switching();
        if exec {
            // execve(2): without default_permissions the kernel only checked that some
            // execute bit is set (and with it, against attributes up to attr_timeout old):
            // the caller's own permission, as the source sees it now.
            may(&inode, rustix::fs::Access::EXEC_OK)?;
        }
        let fd = match self.reopen(&inode, self.open_flags(flags)) {
            // A program whose mode lets the caller execute but not read it (0711): the kernel
            // loads it through this open, read-only, and gives the caller no fd of it, as on
            // the source.
            Err(Errno::EACCES) if exec => {
                crate::creds::as_root(|| self.reopen(&inode, self.open_flags(flags)))??
            }
            // The writeback cache opens a write-only file read-write (the kernel reads the
            // pages a write covers in part): for a caller who may write the file but not
            // read it, read-write as root once the caller's own write-only open (without
            // O_TRUNC, which the real open does) shows the write allowed. The kernel gives
            // the caller no read of it (its open was write-only).
            Err(Errno::EACCES)
                if self.config.writeback && flags & libc::O_ACCMODE == libc::O_WRONLY =>
            {
                let check = self.open_flags(flags) & !(OFlags::RWMODE | OFlags::TRUNC);
                drop(self.reopen(&inode, check | OFlags::WRONLY)?);
                crate::creds::as_root(|| self.reopen(&inode, self.open_flags(flags)))??
            }
            result => result?,
        };
        self.open_handle(ctx, &inode, fd, flags, true)
    }

    fn creator_uid(&self, ctx: &Context<'_>) -> Option<u32> {
        // A root server creates as the caller; an unprivileged one as itself.
        Some(if crate::creds::switching() { ctx.uid } else { rustix::process::geteuid().as_raw() })
    }

    fn reopen_created(&self, ctx: &Context<'_>, nodeid: NodeId, flags: i32) -> Result<Opened> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        let open_flags = self.open_flags(flags);
        let fd = match self.reopen(&inode, open_flags) {
            // The mode the caller gave its new file may not let it open the file again
            // (`open(O_CREAT | O_RDWR, 0)`). Its owner may change that mode anyway, so
            // opening it as root grants nothing more: only a regular file, only its owner.
            Err(Errno::EACCES)
                if crate::creds::switching() && owns_regular_file(&inode, ctx.uid)? =>
            {
                crate::creds::as_root(|| self.reopen(&inode, open_flags))??
            }
            // An unprivileged server creates files as itself (git writes its objects `O_RDWR`
            // with mode 0444).
            Err(Errno::EACCES) if !crate::creds::switching() => {
                self.reopen_owned(&inode, open_flags)?
            }
            result => result?,
        };
        self.open_handle(ctx, &inode, fd, flags, true)
    }

    fn read(
        &self,
        _ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let handle = self.file(fh.0)?;
        if let Some(delay) = self.config.read_delay {
            std::thread::sleep(delay);
        }
        rustix::io::pread(handle.file()?, buf, offset).map_err(Errno::from)
    }

    fn write(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: u32,
        _flags: i32,
    ) -> Result<u32> {
        // As the caller: the blocks ext4 reserves for root and disk quotas go by the writing
        // thread's credentials, not by the open file's.
        become_caller(ctx)?;
        let handle = self.file(fh.0)?;
        let n = rustix::io::pwrite(handle.file()?, data, offset)?;
        Ok(n as u32)
    }

    fn flush(
        &self,
        _ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        _lock_owner: u64,
    ) -> Result<()> {
        // close(dup(fd)): what close(2) on the source file would do (e.g. an NFS flush).
        let handle = self.file(fh.0)?;
        let dup = rustix::io::fcntl_dupfd_cloexec(handle.file()?, 0)?;
        drop(dup);
        Ok(())
    }

    fn release(
        &self,
        ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        _flags: i32,
    ) -> Result<()> {
        if let Some(record) = self.handles.remove(fh.0) {
            self.passthrough_writer(ctx, &record, false, true);
            self.release_backing(ctx, &record);
        }
        Ok(())
    }

    fn fsync(
        &self,
        _ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        datasync: bool,
    ) -> Result<()> {
        let handle = self.file(fh.0)?;
        let fd = handle.file()?;
        if datasync { rustix::fs::fdatasync(fd) } else { rustix::fs::fsync(fd) }
            .map_err(Errno::from)
    }

    fn opendir(&self, ctx: &Context<'_>, nodeid: NodeId, _flags: i32) -> Result<Opened> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        let fd = self.reopen(&inode, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
        self.keep_atime(&fd, true)?;
        let dir = Dir::new(fd)?;
        let record = HandleRecord { nodeid: nodeid.0, flags: 0, is_dir: true, backed: false };
        let fh = self.handles.insert(record, Handle::Dir(Mutex::new(dir)))?;
        Ok(Opened { fh: FileHandle(fh), ..Opened::default() })
    }

    fn readdir(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        out: &mut DirFiller<'_, '_>,
    ) -> Result<()> {
        let handle = self.file(fh.0)?;
        let Handle::Dir(dir) = &*handle else {
            return Err(Errno::ENOTDIR);
        };
        let parent = if out.is_plus() {
            become_caller(ctx)?;
            Some(self.inodes.get(nodeid.0)?)
        } else {
            None
        };
        let mut dir = dir.lock().unwrap_or_else(|p| p.into_inner());
        dir.seek(offset as i64)?;
        while let Some(item) = dir.read() {
            let item = item?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            let next = item.offset() as u64;
            let typ = item.file_type().as_raw_mode() >> 12;
            // `add` lists a name without attributes (in READDIRPLUS too, with nodeid 0): the
            // kernel looks it up when it is used.
            let added = match &parent {
                None => out.add(item.ino(), next, typ, name),
                Some(_) if name == "." || name == ".." => out.add(item.ino(), next, typ, name),
                Some(parent) => match self.do_lookup(ctx, parent, name) {
                    Ok(entry) => match out.add_plus(entry, next, typ, name) {
                        Ok(()) => true,
                        Err(entry) => {
                            // Not sent: the count goes back.
                            self.inodes.forget(entry.nodeid().0, 1);
                            false
                        }
                    },
                    // Gone since getdents read it: list the others.
                    Err(Errno::ENOENT) => continue,
                    // One entry the caller cannot stat (another user's FUSE mount on it, which
                    // refuses everyone else) does not make the directory unlistable: getdents
                    // lists it, so do we, and its own lookup fails later.
                    Err(_) => out.add(item.ino(), next, typ, name),
                },
            };
            if !added {
                break;
            }
        }
        Ok(())
    }

    fn releasedir(&self, _ctx: &Context<'_>, _nodeid: NodeId, fh: FileHandle) -> Result<()> {
        self.handles.remove(fh.0);
        Ok(())
    }

    fn fsyncdir(
        &self,
        _ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        datasync: bool,
    ) -> Result<()> {
        let handle = self.file(fh.0)?;
        let Handle::Dir(dir) = &*handle else {
            return Err(Errno::ENOTDIR);
        };
        let dir = dir.lock().unwrap_or_else(|p| p.into_inner());
        let fd = dir.fd()?;
        if datasync { rustix::fs::fdatasync(fd) } else { rustix::fs::fsync(fd) }
            .map_err(Errno::from)
    }

    fn statfs(&self, _ctx: &Context<'_>, nodeid: NodeId) -> Result<Statfs> {
        let inode = self.inodes.get(nodeid.0)?;
        let st = rustix::fs::fstatvfs(&inode.fd)?;
        Ok(fuse_kstatfs {
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            bsize: st.f_bsize as u32,
            namelen: st.f_namemax as u32,
            frsize: st.f_frsize as u32,
            ..fuse_kstatfs::default()
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
        become_caller(ctx)?;
        let (path, symlink, _held) = self.xattr_path(nodeid.0)?;
        let flags = XattrFlags::from_bits(flags as u32).ok_or(Errno::EINVAL)?;
        let path = path.as_c_str();
        if symlink {
            rustix::fs::lsetxattr(path, name, value, flags)
        } else {
            rustix::fs::setxattr(path, name, value, flags)
        }
        .map_err(Errno::from)?;
        self.acl_changed(ctx, nodeid, name);
        Ok(())
    }

    fn getxattr(
        &self,
        ctx: &Context<'_>,
        nodeid: NodeId,
        name: &OsStr,
        buf: &mut [u8],
    ) -> Result<usize> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        if inode.is_symlink() {
            let (path, _, _held) = self.xattr_path(nodeid.0)?;
            if buf.is_empty() {
                return rustix::fs::lgetxattr_query(path.as_c_str(), name).map_err(Errno::from);
            }
            return rustix::fs::lgetxattr(path.as_c_str(), name, buf).map_err(Errno::from);
        }
        // The name as a C string, on the stack (names are at most 255 bytes).
        let mut cname = [0u8; 256];
        let bytes = name.as_encoded_bytes();
        let cname = cname
            .get_mut(..bytes.len() + 1)
            .and_then(|c| {
                c[..bytes.len()].copy_from_slice(bytes);
                std::ffi::CStr::from_bytes_with_nul(c).ok()
            })
            .ok_or(Errno::new(libc::ERANGE))?;
        if let Some(result) = crate::sys::getxattr_fd(inode.fd.as_fd(), cname, buf) {
            return result.map_err(|e| Errno::new(e.raw_os_error().unwrap_or(libc::EIO)));
        }
        let path = proc_path(inode.fd.as_fd());
        // An empty buffer is a size query (rustix answers 0 for it through `getxattr`).
        if buf.is_empty() {
            return rustix::fs::getxattr_query(path.as_c_str(), name).map_err(Errno::from);
        }
        rustix::fs::getxattr(path.as_c_str(), name, buf).map_err(Errno::from)
    }

    fn listxattr(&self, ctx: &Context<'_>, nodeid: NodeId, buf: &mut [u8]) -> Result<usize> {
        become_caller(ctx)?;
        let (path, symlink, _held) = self.xattr_path(nodeid.0)?;
        let path = path.as_c_str();
        match (buf.is_empty(), symlink) {
            (true, false) => rustix::fs::listxattr_query(path),
            (true, true) => rustix::fs::llistxattr_query(path),
            (false, false) => rustix::fs::listxattr(path, buf),
            (false, true) => rustix::fs::llistxattr(path, buf),
        }
        .map_err(Errno::from)
    }

    fn removexattr(&self, ctx: &Context<'_>, nodeid: NodeId, name: &OsStr) -> Result<()> {
        become_caller(ctx)?;
        let (path, symlink, held) = self.xattr_path(nodeid.0)?;
        let path = path.as_c_str();
        let remove = || {
            if symlink {
                rustix::fs::lremovexattr(path, name)
            } else {
                rustix::fs::removexattr(path, name)
            }
            .map_err(Errno::from)
        };
        match remove() {
            // The kernel removing a file's capabilities before a user's write, truncate or
            // fallocate (file_remove_privs): a user's own removexattr of it never gets here
            // (the kernel asks for CAP_SETFCAP first), and anyone who may write the file may
            // have them removed by writing. Done as root, as the kernel does it for a local
            // filesystem, for a caller who may write the file.
            Err(Errno::EPERM)
                if ctx.uid != 0
                    && name.as_bytes() == b"security.capability"
                    && !symlink
                    && may(&held[0], rustix::fs::Access::WRITE_OK).is_ok() =>
            {
                let _root = crate::creds::root()?;
                remove()
            }
            other => other,
        }?;
        self.acl_changed(ctx, nodeid, name);
        Ok(())
    }

    fn access(&self, ctx: &Context<'_>, nodeid: NodeId, mask: u32) -> Result<()> {
        become_caller(ctx)?;
        let inode = self.inodes.get(nodeid.0)?;
        may(&inode, rustix::fs::Access::from_bits_retain(mask))
    }

    fn create(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        name: &OsStr,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        become_caller(ctx)?;
        self.creating(args.umask)?;
        let parent = self.inodes.get(parent.0)?;
        let flags = self.open_flags(args.flags)
            | OFlags::CREATE
            | (OFlags::from_bits_retain(args.flags as u32) & OFlags::EXCL);
        let fd = rustix::fs::openat(
            &parent.fd,
            name,
            flags,
            Mode::from_bits_retain(args.mode & 0o7777),
        )?;
        self.created(ctx, fd, args.flags, Some((&parent, name)))
    }

    fn tmpfile(
        &self,
        ctx: &Context<'_>,
        parent: NodeId,
        args: CreateArgs,
    ) -> Result<(Entry, Opened)> {
        become_caller(ctx)?;
        self.creating(args.umask)?;
        let parent = self.inodes.get(parent.0)?;
        let flags =
            (self.open_flags(args.flags) & !OFlags::RWMODE) | OFlags::TMPFILE | OFlags::RDWR;
        let fd =
            rustix::fs::openat(&parent.fd, ".", flags, Mode::from_bits_retain(args.mode & 0o7777))?;
        // Nameless: a server that finds inodes by name cannot find it again after a restart.
        self.created(ctx, fd, args.flags, None)
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
        become_caller(ctx)?;
        let handle = self.file(fh.0)?;
        let mode = FallocateFlags::from_bits_retain(mode);
        rustix::fs::fallocate(handle.file()?, mode, offset, length).map_err(Errno::from)
    }

    fn lseek(
        &self,
        _ctx: &Context<'_>,
        _nodeid: NodeId,
        fh: FileHandle,
        offset: u64,
        whence: u32,
    ) -> Result<u64> {
        let handle = self.file(fh.0)?;
        let seek = match whence {
            0 => rustix::fs::SeekFrom::Start(offset),
            1 => rustix::fs::SeekFrom::Current(offset as i64),
            2 => rustix::fs::SeekFrom::End(offset as i64),
            3 => rustix::fs::SeekFrom::Data(offset),
            4 => rustix::fs::SeekFrom::Hole(offset),
            _ => return Err(Errno::EINVAL),
        };
        rustix::fs::seek(handle.file()?, seek).map_err(Errno::from)
    }

    fn copy_file_range(&self, ctx: &Context<'_>, r: &CopyRange) -> Result<u64> {
        become_caller(ctx)?;
        let input = self.file(r.fh_in.0)?;
        let output = self.file(r.fh_out.0)?;
        let (mut off_in, mut off_out) = (r.off_in, r.off_out);
        let len = usize::try_from(r.len).unwrap_or(usize::MAX);
        let n = rustix::fs::copy_file_range(
            input.file()?,
            Some(&mut off_in),
            output.file()?,
            Some(&mut off_out),
            len,
        )?;
        Ok(n as u64)
    }

    fn syncfs(&self, _ctx: &Context<'_>, _nodeid: NodeId) -> Result<()> {
        let root = self.inodes.get(ROOT)?;
        let fd = self.reopen(&root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
        rustix::fs::syncfs(&fd).map_err(Errno::from)
    }
}

impl Passthrough {
    /// The entry and handle for a file just created through `fd`, as `name` in a parent if
    /// it has one.
    fn created(
        &self,
        ctx: &Context<'_>,
        fd: OwnedFd,
        flags: i32,
        name: Option<(&Inode, &OsStr)>,
    ) -> Result<(Entry, Opened)> {
        let st = statx_fd(fd.as_fd())?;
        let path_fd = self.path_fd_of(&fd, &st, name)?;
        let mut entry = self.adopt_with(ctx, path_fd, &st)?;
        let nodeid = entry.nodeid().0;
        if let Some((parent, name)) = name {
            self.inodes.set_name(nodeid, parent.nodeid, name.as_bytes());
        }
        let nameless = name.is_none();
        let inode = self.inodes.get(nodeid)?;
        match self.open_handle(ctx, &inode, fd, flags, false) {
            Ok(opened) => {
                // Made before the handle opened: a writer through kernel passthrough now
                // counts (and is not told to the kernel by an invalidation).
                entry.attr_valid = self.attr_valid(nodeid, entry.attr.mode);
                ctx.handle_opened(opened.fh);
                if nameless {
                    self.keep_if_nameless(nodeid);
                }
                Ok((entry, opened))
            }
            Err(errno) => {
                // Unnoted first: a crash between the two leaves one count too many (a record
                // kept longer), never one too few.
                ctx.count_dropped();
                self.inodes.forget(nodeid, 1);
                Err(errno)
            }
        }
    }

    /// An `O_PATH` fd of the very inode `fd` (just created as `name`, if it has one, and
    /// whose attributes are `st`) is open on. By its name first, checked to be that inode
    /// (half the cost of resolving `/proc/self/fd/N`, a procfs walk and a magic link);
    /// through `/proc/self/fd/N` if the name is gone or names another inode now (renamed or
    /// replaced on the source since).
    fn path_fd_of(
        &self,
        fd: &OwnedFd,
        st: &Statx,
        name: Option<(&Inode, &OsStr)>,
    ) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::CLOEXEC;
        if let Some((parent, name)) = name
            && let Ok(path_fd) =
                rustix::fs::openat(&parent.fd, name, flags | OFlags::NOFOLLOW, Mode::empty())
        {
            let found = rustix::fs::fstat(&path_fd)?;
            let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
            if (found.st_dev, found.st_ino) == (dev, st.stx_ino) {
                return Ok(path_fd);
            }
        }
        rustix::fs::open(proc_path(fd.as_fd()).as_c_str(), flags, Mode::empty())
            .map_err(Errno::from)
    }

    fn symlinks_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (u64, std::ffi::OsString)>> {
        self.symlinks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The symlink known as `from` now has the name `to`, or none.
    fn symlink_moved(&self, from: (u64, &OsStr), to: Option<(u64, &OsStr)>) {
        let mut symlinks = self.symlinks_lock();
        if symlinks.is_empty() {
            return;
        }
        let moved: Vec<u64> = symlinks
            .iter()
            .filter(|(_, (p, n))| *p == from.0 && n.as_os_str() == from.1)
            .map(|(&id, _)| id)
            .collect();
        for id in moved {
            match to {
                Some((parent, name)) => {
                    symlinks.insert(id, (parent, name.to_owned()));
                }
                None => {
                    symlinks.remove(&id);
                }
            }
        }
    }

    /// RENAME_EXCHANGE swapped the names `a` and `b`.
    fn symlinks_exchanged(&self, a: (u64, &OsStr), b: (u64, &OsStr)) {
        let mut symlinks = self.symlinks_lock();
        for (p, n) in symlinks.values_mut() {
            if *p == a.0 && n.as_os_str() == a.1 {
                (*p, *n) = (b.0, b.1.to_owned());
            } else if *p == b.0 && n.as_os_str() == b.1 {
                (*p, *n) = (a.0, a.1.to_owned());
            }
        }
    }

    /// After a change of `name` on `nodeid`: an access ACL changes the mode too (its entries
    /// are the mode's bits), which the kernel does not refresh by itself without
    /// FUSE_POSIX_ACL (no `default_permissions`): its cached attributes are dropped.
    fn acl_changed(&self, ctx: &Context<'_>, nodeid: NodeId, name: &OsStr) {
        if name.as_bytes() == b"system.posix_acl_access"
            && let Err(errno) = ctx.invalidate_attributes(nodeid)
        {
            tracing::debug!(%errno, "invalidating attributes after an ACL change");
        }
    }

    /// Where an xattr call reaches the inode `nodeid`: `/proc/self/fd/N` of its `O_PATH` fd,
    /// or for a symlink (which that path would follow) `/proc/self/fd/P/NAME` through its
    /// parent, called with the `l*xattr` calls (`true`), once its name is checked to be that
    /// very symlink. ENOTSUP for a symlink whose name is not known any more. The inodes
    /// returned keep the fds of the path open.
    fn xattr_path(&self, nodeid: u64) -> Result<(CString, bool, Vec<Arc<Inode>>)> {
        let inode = self.inodes.get(nodeid)?;
        if !inode.is_symlink() {
            return Ok((proc_path(inode.fd.as_fd()).as_c_str().to_owned(), false, vec![inode]));
        }
        let known = self.symlinks_lock().get(&nodeid).cloned();
        let (parent, name) = known.ok_or(Errno::ENOTSUP)?;
        let parent = self.inodes.get(parent)?;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&parent.fd, &name, flags, Mode::empty())?;
        if key_of(&statx_fd(fd.as_fd())?, self.mnt_alias) != inode.key {
            return Err(Errno::ENOTSUP);
        }
        let mut path = proc_path(parent.fd.as_fd()).as_c_str().to_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
        let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
        Ok((path, true, vec![inode, parent]))
    }
}

impl Drop for Passthrough {
    /// Saves the inode table to the inode file (`inode_file=`), for the next mount.
    fn drop(&mut self) {
        if let Some(path) = &self.config.inode_file {
            crate::inode_file::save(path, &self.inodes);
        }
        // Released once saved: the next mount's server waits for it.
        drop(self.inode_file_lock.take());
    }
}

/// `__FMODE_EXEC` in an OPEN's flags: the kernel opens the file to execute it (execve, uselib).
const FMODE_EXEC: i32 = 0x20;

/// Whether the caller (whose credentials the thread has) may access `inode` as `access` asks.
fn may(inode: &Inode, access: rustix::fs::Access) -> Result<()> {
    let path = proc_path(inode.fd.as_fd());
    rustix::fs::accessat(CWD, path.as_c_str(), access, AtFlags::EACCESS).map_err(Errno::from)
}

/// Whether setting `mode` on `inode` only clears its setuid/setgid bits.
fn clears_only_suid_sgid(inode: &Inode, mode: u32) -> Result<bool> {
    let st = statx_fd(inode.fd.as_fd())?;
    let old = u32::from(st.stx_mode) & 0o7777;
    let new = mode & 0o7777;
    let kill = libc::S_ISUID | libc::S_ISGID;
    Ok(new != old && new & !kill == old & !kill && new & kill == new & old & kill)
}

impl fuse_recovery::Recoverable for Passthrough {
    const TABLES: &'static [TableSpec] = &STORE_TABLES;

    fn set_fd_keeper(&self, keeper: Arc<dyn fuse_recovery::FdKeeper>) {
        let _ = self.fd_keeper.set(keeper);
    }

    fn adopt_held(&self, held: Vec<(u64, OwnedFd)>) {
        for (nodeid, fd) in held {
            match self.inodes.seed(nodeid, fd) {
                Ok(inode) => {
                    self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(nodeid, inode);
                }
                Err(_) => {
                    tracing::info!(nodeid, "a held fd is not the inode recorded: let go");
                    if let Some(keeper) = self.fd_keeper.get() {
                        keeper.release(nodeid);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_paths_name_the_fd() {
        use std::os::fd::{AsFd, AsRawFd};
        let file = std::fs::File::open("/").unwrap();
        let high = rustix::io::fcntl_dupfd_cloexec(&file, 12345).unwrap();
        for fd in [file.as_fd(), high.as_fd()] {
            let path = super::proc_path(fd);
            assert_eq!(
                path.as_c_str().to_str().unwrap(),
                format!("/proc/self/fd/{}", fd.as_raw_fd())
            );
        }
    }

    use super::*;

    #[test]
    fn submounts_are_found_below_a_directory_only() {
        // /proc is a mount below /, and nothing is mounted below /proc/self/fd.
        assert!(has_submounts(Path::new("/")));
        assert!(!has_submounts(Path::new("/proc/self/fd")));
    }

    #[test]
    fn the_copy_of_the_sources_mount_is_known_by_the_sources_mount_id() {
        assert_eq!(mnt_of(7, Some((7, 3))), 3);
        assert_eq!(mnt_of(9, Some((7, 3))), 9, "another mount (a submount) is itself");
        assert_eq!(mnt_of(7, None), 7);
    }
}
