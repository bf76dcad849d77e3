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
    #[error("cannot open {path}: {error}")]
    Open {
        /// The file that would not open.
        path: PathBuf,
        /// The open(2) error.
        error: io::Error,
    },

    /// `FUSE_DEV_IOC_CLONE` failed.
    #[error("FUSE_DEV_IOC_CLONE failed: {0}")]
    Clone(io::Error),

    /// The request buffer is smaller than the kernel accepts.
    #[error("request buffer of {len} bytes is smaller than the minimum of {min}")]
    BufferTooSmall {
        /// The buffer's length in bytes.
        len: usize,
        /// The least the kernel accepts, in bytes ([`crate::FUSE_MIN_READ_BUFFER`]).
        min: usize,
    },

    /// `read` on the device failed (EAGAIN on a nonblocking fd ends up here too).
    #[error("read from /dev/fuse failed: {0}")]
    Read(io::Error),

    /// `writev` on the device failed.
    #[error("writev of a {len}-byte reply to /dev/fuse failed: {error}")]
    Write {
        /// The reply's length in bytes, header included.
        len: usize,
        /// The writev(2) error.
        error: io::Error,
    },

    /// `writev` wrote only part of the reply.
    #[error("short write to /dev/fuse: {written} of {len} bytes")]
    ShortWrite {
        /// The bytes writev(2) reported written.
        written: usize,
        /// The reply's length in bytes, header included.
        len: usize,
    },

    /// `FUSE_DEV_IOC_BACKING_OPEN` failed.
    #[error("FUSE_DEV_IOC_BACKING_OPEN failed: {0}")]
    BackingOpen(io::Error),

    /// `FUSE_DEV_IOC_BACKING_OPEN` returned a value that is not a valid backing id.
    #[error("FUSE_DEV_IOC_BACKING_OPEN returned an invalid backing id {0}")]
    InvalidBackingId(i32),

    /// `FUSE_DEV_IOC_BACKING_CLOSE` failed.
    #[error("FUSE_DEV_IOC_BACKING_CLOSE of backing id {id} failed: {error}")]
    BackingClose {
        /// The backing id that would not close.
        id: u32,
        /// The ioctl(2) error.
        error: io::Error,
    },

    /// A mount option cannot be used.
    #[error("invalid mount option {option:?}: {reason}")]
    InvalidOption {
        /// The offending option as given.
        option: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// `stat` of the mountpoint (to compute `rootmode=`) failed.
    #[error("cannot stat mountpoint {path}: {error}")]
    StatMountpoint {
        /// The mountpoint.
        path: PathBuf,
        /// The stat(2) error.
        error: io::Error,
    },

    /// `mount(2)` failed.
    #[error("mount(2) of {fstype} on {path} (data \"{data}\") failed: {error}")]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// The filesystem type passed: `fuse` or `fuse.SUBTYPE`.
        fstype: String,
        /// The data string passed (`fd=N,rootmode=...,user_id=...,group_id=...` and options).
        data: String,
        /// The mount(2) error.
        error: io::Error,
    },

    /// Creating the socket pair to talk to fusermount3 failed.
    #[error("socketpair for fusermount3 failed: {0}")]
    Socketpair(io::Error),

    /// fusermount3 could not be found in `PATH` (nor in /usr/bin, /bin).
    #[error("fusermount3 not found (install the fuse3 package): {0}")]
    FusermountNotFound(io::Error),

    /// Spawning or waiting for fusermount3 failed.
    #[error("running {program} failed: {error}")]
    FusermountSpawn {
        /// The fusermount3 binary run.
        program: PathBuf,
        /// The error of spawning, waiting, or receiving the fd from it.
        error: io::Error,
    },

    /// fusermount3 exited with a failure status.
    #[error("{program} {args} failed ({status}): {stderr}")]
    FusermountFailed {
        /// The fusermount3 binary run.
        program: PathBuf,
        /// Its arguments, joined with spaces.
        args: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },

    /// fusermount3 succeeded but did not pass a device fd, or passed something else.
    #[error("fusermount3 did not pass a /dev/fuse fd: {reason} (stderr: {stderr})")]
    FusermountNoFd {
        /// What was received instead of one fd.
        reason: String,
        /// What fusermount3 wrote to stderr, trimmed.
        stderr: String,
    },

    /// Reading `/proc/self/mountinfo` failed.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    ReadMountinfo(io::Error),

    /// Making a relative mountpoint absolute failed.
    #[error("cannot get the current directory to resolve {path}: {error}")]
    CurrentDir {
        /// The relative mountpoint.
        path: PathBuf,
        /// The getcwd(2) error.
        error: io::Error,
    },

    /// Nothing is mounted at the path.
    #[error("nothing is mounted at {path}")]
    NotMounted {
        /// The path looked up in mountinfo.
        path: PathBuf,
    },

    /// The top mount at the path is not a FUSE mount.
    #[error("the mount at {path} is not a FUSE mount (type {fstype})")]
    NotFuseMount {
        /// The path looked up in mountinfo.
        path: PathBuf,
        /// The filesystem type mountinfo gives the top mount there.
        fstype: String,
    },

    /// Mounting fusectl at /sys/fs/fuse/connections failed.
    #[error("cannot mount fusectl on /sys/fs/fuse/connections: {0}")]
    MountFusectl(io::Error),

    /// Writing to `/sys/fs/fuse/connections/<id>/abort` failed.
    #[error("aborting FUSE connection {id} failed: {error}")]
    Abort {
        /// The connection number (its directory name under `/sys/fs/fuse/connections`).
        id: u32,
        /// The error opening or writing the `abort` file.
        error: io::Error,
    },

    /// Reading `/sys/fs/fuse/connections/<id>/waiting` failed.
    #[error("reading the waiting count of FUSE connection {id} failed: {error}")]
    Waiting {
        /// The connection number.
        id: u32,
        /// The read error.
        error: io::Error,
    },

    /// `/sys/fs/fuse/connections/<id>/waiting` did not hold a number.
    #[error("FUSE connection {id}: unexpected content of waiting: {text:?}")]
    ParseWaiting {
        /// The connection number.
        id: u32,
        /// What the file held.
        text: String,
    },

    /// `umount2` failed.
    #[error("umount2({path}, MNT_DETACH) failed: {error}")]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// The umount2(2) error.
        error: io::Error,
    },

    /// [`force_unmount`](crate::force_unmount) made no progress.
    #[error("{path} is still mounted after {attempts} unmount attempts")]
    StillMounted {
        /// The mountpoint.
        path: PathBuf,
        /// How many abort-and-detach rounds were tried.
        attempts: u32,
    },
}

impl Error {
    /// The OS error number behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Open { error, .. }
            | Error::Write { error, .. }
            | Error::BackingClose { error, .. }
            | Error::StatMountpoint { error, .. }
            | Error::Mount { error, .. }
            | Error::FusermountSpawn { error, .. }
            | Error::CurrentDir { error, .. }
            | Error::Abort { error, .. }
            | Error::Waiting { error, .. }
            | Error::Unmount { error, .. } => Some(error),
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
