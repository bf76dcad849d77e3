use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of this crate: one variant per failure site, with the OS error and its context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening `/dev/fuse` (or another device/control file) failed.
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },

    /// `FUSE_DEV_IOC_CLONE` failed.
    #[error("FUSE_DEV_IOC_CLONE failed: {0}")]
    Clone(#[source] io::Error),

    /// The request buffer is smaller than the kernel accepts.
    #[error("request buffer of {len} bytes is smaller than the minimum of {min}")]
    BufferTooSmall { len: usize, min: usize },

    /// `read` on the device failed (EAGAIN on a nonblocking fd ends up here too).
    #[error("read from /dev/fuse failed: {0}")]
    Read(#[source] io::Error),

    /// `writev` on the device failed.
    #[error("writev of a {len}-byte reply to /dev/fuse failed: {source}")]
    Write { len: usize, source: io::Error },

    /// `writev` wrote only part of the reply.
    #[error("short write to /dev/fuse: {written} of {len} bytes")]
    ShortWrite { written: usize, len: usize },

    /// `FUSE_DEV_IOC_BACKING_OPEN` failed.
    #[error("FUSE_DEV_IOC_BACKING_OPEN failed: {0}")]
    BackingOpen(#[source] io::Error),

    /// `FUSE_DEV_IOC_BACKING_OPEN` returned a value that is not a valid backing id.
    #[error("FUSE_DEV_IOC_BACKING_OPEN returned an invalid backing id {0}")]
    InvalidBackingId(i32),

    /// `FUSE_DEV_IOC_BACKING_CLOSE` failed.
    #[error("FUSE_DEV_IOC_BACKING_CLOSE of backing id {id} failed: {source}")]
    BackingClose { id: u32, source: io::Error },

    /// A mount option cannot be used.
    #[error("invalid mount option {option:?}: {reason}")]
    InvalidOption { option: String, reason: &'static str },

    /// `stat` of the mountpoint (to compute `rootmode=`) failed.
    #[error("cannot stat mountpoint {path}: {source}")]
    StatMountpoint { path: PathBuf, source: io::Error },

    /// `mount(2)` failed.
    #[error("mount(2) of {fstype} on {path} (data \"{data}\") failed: {source}")]
    Mount { path: PathBuf, fstype: String, data: String, source: io::Error },

    /// Creating the socket pair to talk to fusermount3 failed.
    #[error("socketpair for fusermount3 failed: {0}")]
    Socketpair(#[source] io::Error),

    /// fusermount3 could not be found in `PATH` (nor in /usr/bin, /bin).
    #[error("fusermount3 not found (install the fuse3 package): {0}")]
    FusermountNotFound(#[source] io::Error),

    /// Spawning or waiting for fusermount3 failed.
    #[error("running {program} failed: {source}")]
    FusermountSpawn { program: PathBuf, source: io::Error },

    /// fusermount3 exited with a failure status.
    #[error("{program} {args} failed ({status}): {stderr}")]
    FusermountFailed { program: PathBuf, args: String, status: ExitStatus, stderr: String },

    /// fusermount3 succeeded but did not pass a device fd, or passed something else.
    #[error("fusermount3 did not pass a /dev/fuse fd: {reason} (stderr: {stderr})")]
    FusermountNoFd { reason: String, stderr: String },

    /// Reading `/proc/self/mountinfo` failed.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    ReadMountinfo(#[source] io::Error),

    /// Making a relative mountpoint absolute failed.
    #[error("cannot get the current directory to resolve {path}: {source}")]
    CurrentDir { path: PathBuf, source: io::Error },

    /// Nothing is mounted at the path.
    #[error("nothing is mounted at {path}")]
    NotMounted { path: PathBuf },

    /// The top mount at the path is not a FUSE mount.
    #[error("the mount at {path} is not a FUSE mount (type {fstype})")]
    NotFuseMount { path: PathBuf, fstype: String },

    /// Mounting fusectl at /sys/fs/fuse/connections failed.
    #[error("cannot mount fusectl on /sys/fs/fuse/connections: {0}")]
    MountFusectl(#[source] io::Error),

    /// Writing to `/sys/fs/fuse/connections/<id>/abort` failed.
    #[error("aborting FUSE connection {id} failed: {source}")]
    Abort { id: u32, source: io::Error },

    /// Reading `/sys/fs/fuse/connections/<id>/waiting` failed.
    #[error("reading the waiting count of FUSE connection {id} failed: {source}")]
    Waiting { id: u32, source: io::Error },

    /// `/sys/fs/fuse/connections/<id>/waiting` did not hold a number.
    #[error("FUSE connection {id}: unexpected content of waiting: {text:?}")]
    ParseWaiting { id: u32, text: String },

    /// `umount2` failed.
    #[error("umount2({path}, MNT_DETACH) failed: {source}")]
    Unmount { path: PathBuf, source: io::Error },

    /// [`force_unmount`](crate::force_unmount) made no progress.
    #[error("{path} is still mounted after {attempts} unmount attempts")]
    StillMounted { path: PathBuf, attempts: u32 },
}

impl Error {
    /// The OS error number behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Open { source, .. }
            | Error::Write { source, .. }
            | Error::BackingClose { source, .. }
            | Error::StatMountpoint { source, .. }
            | Error::Mount { source, .. }
            | Error::FusermountSpawn { source, .. }
            | Error::CurrentDir { source, .. }
            | Error::Abort { source, .. }
            | Error::Waiting { source, .. }
            | Error::Unmount { source, .. } => Some(source),
            Error::Clone(e)
            | Error::Read(e)
            | Error::BackingOpen(e)
            | Error::Socketpair(e)
            | Error::FusermountNotFound(e)
            | Error::ReadMountinfo(e)
            | Error::MountFusectl(e) => Some(e),
            Error::BufferTooSmall { .. }
            | Error::ShortWrite { .. }
            | Error::InvalidBackingId(_)
            | Error::InvalidOption { .. }
            | Error::FusermountFailed { .. }
            | Error::FusermountNoFd { .. }
            | Error::NotMounted { .. }
            | Error::NotFuseMount { .. }
            | Error::ParseWaiting { .. }
            | Error::StillMounted { .. } => None,
        }
    }

    /// True for EAGAIN/EWOULDBLOCK from a nonblocking device fd.
    pub fn is_would_block(&self) -> bool {
        self.io_error().is_some_and(|e| e.kind() == io::ErrorKind::WouldBlock)
    }
}
