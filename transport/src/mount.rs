//! Mounting (mount(2) as root, fusermount3 otherwise) and unmounting that never blocks on a dead
//! server.

use std::ffi::{CString, OsStr};
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SocketFlags,
    SocketType,
};

use crate::fusectl::abort_connection;
use crate::mountinfo::{lookup, read_mountinfo};
use crate::{Error, Result, device, sys};

/// Options for mounting, libfuse-compatible names.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Mount source shown in mountinfo (`fsname=`). Defaults to the subtype, else `/dev/fuse`.
    pub fsname: Option<String>,
    /// Filesystem type becomes `fuse.<subtype>`.
    pub subtype: Option<String>,
    /// `allow_other` (for fusermount3 users, needs `user_allow_other` in /etc/fuse.conf).
    pub allow_other: bool,
    /// `default_permissions`: the kernel checks permissions from the file modes.
    pub default_permissions: bool,
    /// Read-only mount (`MS_RDONLY` / `ro`).
    pub read_only: bool,
    /// `max_read=N`.
    pub max_read: Option<u32>,
    /// `blksize=N` (only for fuseblk: the kernel rejects it on plain `fuse` mounts).
    pub blksize: Option<u32>,
    /// Other options, passed to mount(2) as flags (`nosuid`, `nodev`, `noexec`, `noatime`, ...)
    /// or appended to the mount data; passed through to fusermount3 as is. An entry may hold
    /// several comma-separated options; of two opposite flags, the later wins.
    ///
    /// As with libfuse, every mount is `nosuid,nodev` unless `suid` or `dev` is asked for here:
    /// a setuid binary or a device node on the source must not gain its powers through a
    /// mount that other users reach (`allow_other`) when nobody asked for them.
    pub extra: Vec<String>,
}

/// What every mount starts from, before [`MountOptions::extra`]: libfuse's defaults.
const DEFAULT_FLAG_OPTIONS: [&str; 2] = ["nosuid", "nodev"];

/// Mount flags that generic mount options (as in mount(8)) set or clear.
const FLAG_OPTIONS: &[(&str, MountFlags, bool)] = &[
    ("ro", MountFlags::RDONLY, true),
    ("rw", MountFlags::RDONLY, false),
    ("nosuid", MountFlags::NOSUID, true),
    ("suid", MountFlags::NOSUID, false),
    ("nodev", MountFlags::NODEV, true),
    ("dev", MountFlags::NODEV, false),
    ("noexec", MountFlags::NOEXEC, true),
    ("exec", MountFlags::NOEXEC, false),
    ("noatime", MountFlags::NOATIME, true),
    ("atime", MountFlags::NOATIME, false),
    ("nodiratime", MountFlags::NODIRATIME, true),
    ("diratime", MountFlags::NODIRATIME, false),
    ("relatime", MountFlags::RELATIME, true),
    ("norelatime", MountFlags::RELATIME, false),
    ("strictatime", MountFlags::STRICTATIME, true),
    ("nostrictatime", MountFlags::STRICTATIME, false),
    ("lazytime", MountFlags::LAZYTIME, true),
    ("nolazytime", MountFlags::LAZYTIME, false),
    ("sync", MountFlags::SYNCHRONOUS, true),
    ("async", MountFlags::SYNCHRONOUS, false),
    ("dirsync", MountFlags::DIRSYNC, true),
    ("nosymfollow", MountFlags::NOSYMFOLLOW, true),
];

/// Options this crate sets itself (mount(2)) or that fusermount3 forbids.
const RESERVED: &[&str] = &["fd", "rootmode", "user_id", "group_id", "fsname", "subtype"];

impl MountOptions {
    /// The individual `extra` options (comma-separated entries split), validated.
    fn extra_options(&self) -> Result<Vec<&str>> {
        let mut out = Vec::new();
        for option in self.extra.iter().flat_map(|e| e.split(',')) {
            if option.is_empty() {
                continue;
            }
            if option.contains('\0') {
                return Err(invalid(option, "contains a NUL byte"));
            }
            let name = option.split('=').next().unwrap_or(option);
            if RESERVED.contains(&name) {
                return Err(invalid(option, "set by the transport or through MountOptions fields"));
            }
            if name == "auto_unmount" {
                return Err(invalid(
                    option,
                    "needs a fusermount3 process that outlives the mount: not supported",
                ));
            }
            out.push(option);
        }
        Ok(out)
    }

    fn check_names(&self) -> Result<()> {
        for (what, value) in [("fsname", &self.fsname), ("subtype", &self.subtype)] {
            if let Some(v) = value {
                if v.contains('\0') {
                    return Err(invalid(v, "contains a NUL byte"));
                }
                if v.is_empty() {
                    return Err(invalid(what, "is empty"));
                }
            }
        }
        if let Some(subtype) = &self.subtype
            && (subtype.contains(',') || subtype.contains(' ') || subtype.contains('/'))
        {
            return Err(invalid(subtype, "subtype may not contain ',', ' ' or '/'"));
        }
        Ok(())
    }

    /// mount(2) arguments: (source, fstype, flags, data options after the fd/rootmode/ids).
    fn for_mount_syscall(&self) -> Result<(String, String, MountFlags, Vec<String>)> {
        self.check_names()?;
        let source = self
            .fsname
            .clone()
            .or_else(|| self.subtype.clone())
            .unwrap_or_else(|| device::DEVICE_PATH.to_owned());
        let fstype = match &self.subtype {
            Some(s) => format!("fuse.{s}"),
            None => "fuse".to_owned(),
        };
        let mut flags = MountFlags::empty();
        if self.read_only {
            flags |= MountFlags::RDONLY;
        }
        let mut data = Vec::new();
        if self.allow_other {
            data.push("allow_other".to_owned());
        }
        if self.default_permissions {
            data.push("default_permissions".to_owned());
        }
        if let Some(n) = self.max_read {
            data.push(format!("max_read={n}"));
        }
        if let Some(n) = self.blksize {
            data.push(format!("blksize={n}"));
        }
        for option in DEFAULT_FLAG_OPTIONS.into_iter().chain(self.extra_options()?) {
            if let Some((_, flag, set)) = FLAG_OPTIONS.iter().find(|(name, ..)| *name == option) {
                flags.set(*flag, *set);
            } else if !data.iter().any(|d| d == option) {
                data.push(option.to_owned());
            }
        }
        Ok((source, fstype, flags, data))
    }

    /// The `-o` argument for fusermount3: libfuse's defaults, then what is asked.
    fn for_fusermount(&self) -> Result<String> {
        self.check_names()?;
        let mut opts: Vec<String> = DEFAULT_FLAG_OPTIONS.map(str::to_owned).to_vec();
        if self.read_only {
            opts.push("ro".to_owned());
        }
        if let Some(v) = &self.fsname {
            opts.push(format!("fsname={}", escape_option_value(v)));
        }
        if let Some(v) = &self.subtype {
            opts.push(format!("subtype={}", escape_option_value(v)));
        }
        if self.allow_other {
            opts.push("allow_other".to_owned());
        }
        if self.default_permissions {
            opts.push("default_permissions".to_owned());
        }
        if let Some(n) = self.max_read {
            opts.push(format!("max_read={n}"));
        }
        if let Some(n) = self.blksize {
            opts.push(format!("blksize={n}"));
        }
        opts.extend(self.extra_options()?.into_iter().map(str::to_owned));
        Ok(opts.join(","))
    }
}

fn invalid(option: &str, reason: &'static str) -> Error {
    Error::InvalidOption { option: option.to_owned(), reason }
}

/// fusermount3 splits options at commas not preceded by a backslash and removes the backslash.
fn escape_option_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == ',' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Mount as root with mount(2): source = fsname (else subtype, else `/dev/fuse`), type `fuse` or
/// `fuse.<subtype>`, data
/// `fd=N,rootmode=<octal S_IFMT bits of the mountpoint>,user_id=<uid>,group_id=<gid>[,...]`,
/// flags only from what is asked (`read_only`, `nosuid`, `nodev`... in `extra`).
///
/// The mountpoint is `stat`ed (like libfuse) to compute `rootmode`: mounting on top of a FUSE
/// mount whose server does not answer blocks there.
pub fn mount_with_fd(device: BorrowedFd<'_>, mountpoint: &Path, opts: &MountOptions) -> Result<()> {
    let (source, fstype, flags, extra_data) = opts.for_mount_syscall()?;
    let st = rustix::fs::stat(mountpoint)
        .map_err(|e| Error::StatMountpoint { path: mountpoint.to_owned(), error: e.into() })?;
    let rootmode = FileType::from_raw_mode(st.st_mode).as_raw_mode();
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={}",
        device.as_raw_fd(),
        rootmode,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    for option in &extra_data {
        data.push(',');
        data.push_str(option);
    }
    let data_c = CString::new(data.clone()).map_err(|_| invalid(&data, "contains a NUL byte"))?;
    tracing::debug!(?mountpoint, %source, %fstype, ?flags, %data, "mount(2)");
    rustix::mount::mount(source.as_str(), mountpoint, fstype.as_str(), flags, data_c.as_c_str())
        .map_err(|e| Error::Mount { path: mountpoint.to_owned(), fstype, data, error: e.into() })
}

/// The fusermount3 program: the first found in `PATH`, else /usr/bin or /bin.
fn fusermount_program() -> Result<PathBuf> {
    const NAME: &str = "fusermount3";
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(NAME)).find(|p| p.is_file())
    });
    from_path
        .or_else(|| {
            ["/usr/bin/fusermount3", "/bin/fusermount3"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            Error::FusermountNotFound(io::Error::new(
                io::ErrorKind::NotFound,
                "not in PATH, /usr/bin or /bin",
            ))
        })
}

fn display_args(args: &[&OsStr]) -> String {
    args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// Run fusermount3 with `args`, the socket `comm` passed as `_FUSE_COMMFD` if given; wait for it.
/// Returns its stderr; a failure status is an error.
fn run_fusermount(args: &[&OsStr], comm: Option<BorrowedFd<'_>>) -> Result<String> {
    let program = fusermount_program()?;
    let mut cmd = Command::new(&program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(comm) = comm {
        cmd.env("_FUSE_COMMFD", comm.as_raw_fd().to_string());
        sys::inherit_fd_in_child(&mut cmd, comm.as_raw_fd());
    }
    let spawn_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            Error::FusermountNotFound(source)
        } else {
            Error::FusermountSpawn { program: program.clone(), error: source }
        }
    };
    let child = cmd.spawn().map_err(spawn_error)?;
    // fusermount3 exits right after sending the fd (no auto_unmount), so waiting first cannot
    // deadlock, and the fd then waits in the socket.
    let output = child.wait_with_output().map_err(spawn_error)?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        return Err(Error::FusermountFailed {
            program,
            args: display_args(args),
            status: output.status,
            stderr,
        });
    }
    Ok(stderr)
}

/// Receive exactly one fd with `MSG_CMSG_CLOEXEC`, without blocking.
fn receive_fd(sock: BorrowedFd<'_>, stderr: &str) -> Result<OwnedFd> {
    let no_fd = |reason: String| Error::FusermountNoFd { reason, stderr: stderr.to_owned() };
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut iov,
        &mut control,
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
    )
    .map_err(|e| match e {
        Errno::AGAIN => no_fd("fusermount3 exited without sending anything".to_owned()),
        e => Error::FusermountSpawn {
            program: PathBuf::from("fusermount3"),
            error: io::Error::other(format!("recvmsg on the _FUSE_COMMFD socket: {e}")),
        },
    })?;
    if msg.bytes == 0 {
        return Err(no_fd("the socket was closed without a message".to_owned()));
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut other_messages = 0usize;
    for message in control.drain() {
        match message {
            RecvAncillaryMessage::ScmRights(received) => fds.extend(received),
            _ => other_messages += 1,
        }
    }
    // Checked after draining so that every received fd is owned (and closed) on error.
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(no_fd("control message truncated (MSG_CTRUNC)".to_owned()));
    }
    if other_messages != 0 || fds.len() != 1 {
        return Err(no_fd(format!(
            "expected exactly one SCM_RIGHTS fd, got {} fds and {other_messages} other control messages",
            fds.len()
        )));
    }
    Ok(fds.remove(0))
}

/// Unprivileged mount through fusermount3: a `socketpair(AF_UNIX, SOCK_STREAM)`, fusermount3
/// spawned as `fusermount3 [-o <opts>] -- <mountpoint>` with `_FUSE_COMMFD` naming its end of the
/// pair, the `/dev/fuse` fd received by `SCM_RIGHTS` (close-on-exec), fusermount3's exit status
/// checked. Errors carry fusermount3's stderr.
pub fn mount_fusermount(mountpoint: &Path, opts: &MountOptions) -> Result<OwnedFd> {
    let options = opts.for_fusermount()?;
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::Socketpair(e.into()))?;
    // Keep the child's end off 0..=2, which the spawned process's stdio replaces.
    let theirs =
        rustix::io::fcntl_dupfd_cloexec(&theirs, 3).map_err(|e| Error::Socketpair(e.into()))?;
    let mut args: Vec<&OsStr> = Vec::new();
    if !options.is_empty() {
        args.push(OsStr::new("-o"));
        args.push(OsStr::new(&options));
    }
    args.push(OsStr::new("--"));
    args.push(mountpoint.as_os_str());
    tracing::debug!(?mountpoint, %options, "fusermount3");
    let result = run_fusermount(&args, Some(theirs.as_fd()));
    // Close our copy of fusermount3's end: the socket then reads EOF once fusermount3 is gone.
    drop(theirs);
    let stderr = result?;
    receive_fd(ours.as_fd(), &stderr)
}

/// Mount at `mountpoint` and return the device fd: as root (euid 0) [`device::open_device`] +
/// [`mount_with_fd`], otherwise [`mount_fusermount`].
pub fn mount(mountpoint: &Path, opts: &MountOptions) -> Result<OwnedFd> {
    if rustix::process::geteuid().is_root() {
        let dev = device::open_device()?;
        mount_with_fd(dev.as_fd(), mountpoint, opts)?;
        Ok(dev)
    } else {
        mount_fusermount(mountpoint, opts)
    }
}

/// Detach the mount at `mountpoint`: `umount2(MNT_DETACH | UMOUNT_NOFOLLOW)` as root,
/// `fusermount3 -u -z -- <mountpoint>` otherwise. Never `stat`s the mountpoint, so it does not
/// block on a dead server (blocked applications stay blocked: see [`force_unmount`]). Nothing
/// mounted there (EINVAL/ENOENT, or no mountinfo entry for a non-root caller) is success.
pub fn unmount_detached(mountpoint: &Path) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        match rustix::mount::unmount(mountpoint, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::Unmount { path: mountpoint.to_owned(), error: e.into() }),
        }
    } else {
        let entries = read_mountinfo()?;
        if lookup(&entries, mountpoint)?.is_none() {
            return Ok(());
        }
        run_fusermount(
            &[OsStr::new("-u"), OsStr::new("-z"), OsStr::new("--"), mountpoint.as_os_str()],
            None,
        )
        .map(drop)
    }
}

/// Teardown that never hangs: while the topmost mount at `mountpoint` is a FUSE mount, abort its
/// connection through fusectl (releasing blocked applications) and detach it. Stops at a
/// non-FUSE mount or when nothing is mounted; success if there was nothing to do.
pub fn force_unmount(mountpoint: &Path) -> Result<()> {
    const MAX_ATTEMPTS: u32 = 16;
    let mut last_mount_id = None;
    for _ in 0..MAX_ATTEMPTS {
        let entries = read_mountinfo()?;
        let Some(entry) = lookup(&entries, mountpoint)? else {
            return Ok(());
        };
        if !entry.is_fuse() {
            return Ok(());
        }
        if last_mount_id == Some(entry.mount_id) {
            // The previous unmount did not remove it: try once more below, then give up.
            tracing::warn!(
                ?mountpoint,
                mount_id = entry.mount_id,
                "mount still present after unmount"
            );
        }
        last_mount_id = Some(entry.mount_id);
        let id = entry.kernel_dev();
        tracing::debug!(?mountpoint, id, "aborting FUSE connection and detaching");
        abort_connection(id)?;
        unmount_detached(&entry.mount_point)?;
    }
    Err(Error::StillMounted { path: mountpoint.to_owned(), attempts: MAX_ATTEMPTS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_syscall_arguments() {
        let opts = MountOptions {
            fsname: Some("myfs".into()),
            subtype: Some("passthroughfs".into()),
            allow_other: true,
            default_permissions: true,
            read_only: true,
            max_read: Some(131072),
            blksize: None,
            extra: vec!["nosuid,nodev".into(), "noatime".into(), "rw".into(), "allow_other".into()],
        };
        let (source, fstype, flags, data) = opts.for_mount_syscall().unwrap();
        assert_eq!(source, "myfs");
        assert_eq!(fstype, "fuse.passthroughfs");
        // "rw" after read_only clears it, as in mount(8): the last option wins.
        assert_eq!(flags, MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME);
        assert_eq!(data, ["allow_other", "default_permissions", "max_read=131072"]);
    }

    #[test]
    fn mount_syscall_defaults() {
        let (source, fstype, flags, data) = MountOptions::default().for_mount_syscall().unwrap();
        assert_eq!(source, "/dev/fuse");
        assert_eq!(fstype, "fuse");
        // libfuse's defaults.
        assert_eq!(flags, MountFlags::NOSUID | MountFlags::NODEV);
        assert!(data.is_empty());
        // Asked for, suid and dev are kept.
        let opts = MountOptions { extra: vec!["suid,dev".into()], ..Default::default() };
        assert_eq!(opts.for_mount_syscall().unwrap().2, MountFlags::empty());
        let opts = MountOptions { extra: vec!["dev".into()], ..Default::default() };
        assert_eq!(opts.for_mount_syscall().unwrap().2, MountFlags::NOSUID);
        let opts = MountOptions { subtype: Some("x".into()), ..Default::default() };
        assert_eq!(opts.for_mount_syscall().unwrap().0, "x");
    }

    #[test]
    fn fusermount_options() {
        let opts = MountOptions {
            fsname: Some("a,b\\c".into()),
            subtype: Some("t".into()),
            read_only: true,
            default_permissions: true,
            extra: vec!["nosuid".into()],
            ..Default::default()
        };
        assert_eq!(
            opts.for_fusermount().unwrap(),
            "nosuid,nodev,ro,fsname=a\\,b\\\\c,subtype=t,default_permissions,nosuid"
        );
        assert_eq!(MountOptions::default().for_fusermount().unwrap(), "nosuid,nodev");
        let opts = MountOptions { extra: vec!["suid".into()], ..Default::default() };
        assert_eq!(opts.for_fusermount().unwrap(), "nosuid,nodev,suid");
    }

    #[test]
    fn rejected_options() {
        for extra in ["fd=3", "rootmode=40000", "user_id=0", "auto_unmount", "a\0b"] {
            let opts = MountOptions { extra: vec![extra.into()], ..Default::default() };
            assert!(
                matches!(opts.for_mount_syscall(), Err(Error::InvalidOption { .. })),
                "{extra}"
            );
            assert!(matches!(opts.for_fusermount(), Err(Error::InvalidOption { .. })));
        }
        let opts = MountOptions { subtype: Some("a,b".into()), ..Default::default() };
        assert!(opts.for_mount_syscall().is_err());
    }
}
