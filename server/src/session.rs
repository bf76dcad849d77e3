//! A session: a connection's channel, its INIT negotiation, and the workers serving it.
//!
//! Two ways in: [`Session::start`] reads FUSE_INIT and answers it (a fresh mount);
//! [`Session::resume`] takes a saved [`Negotiation`] and reads no INIT (a restarted server
//! serving a connection that outlived its predecessor).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use fuse_abi::{FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, fuse_init_out, fuse_opcode};
use fuse_proto::reply::ReplyBuf;
use fuse_proto::{DecodeError, Errno, Operation, decode, peek_header};
use fuse_transport::{MountOptions, WriteOutcome};
use tracing::{debug, info, warn};
use zerocopy::{FromZeros, IntoBytes};

use crate::channel::{Channel, DeviceCustody};
use crate::dispatch::Outcome;
use crate::exactly_once::serve_request;
use crate::filesystem::Filesystem;
use crate::ids::NodeId;
use crate::init::{InitError, Negotiation, SessionConfig, negotiate, reply_bytes};
use crate::journal::Journal;

/// Why a session could not start or stopped. The convention of every error type here: an OS
/// error is part of the message (never also its `source`), an error of another of our types
/// is the `source` (never also in the message), so a chain printed whole says each thing once.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// mount(2), or fusermount3 for an unprivileged caller, failed.
    #[error("mounting {path}: {error}")]
    Mount {
        /// The mountpoint.
        path: String,
        /// What mount(2) or fusermount3 said.
        error: io::Error,
    },
    /// [`DeviceCustody::adopt`] refused a device fd: the session does not serve one that
    /// nobody else holds.
    #[error("the custody hook refused a device fd: {0}")]
    Custody(io::Error),
    /// read(2) on /dev/fuse failed with an error other than the connection ending.
    #[error("reading from /dev/fuse: {0}")]
    Read(io::Error),
    /// A reply could not be written (other than ENOENT, which means the request was
    /// interrupted, and the connection ending).
    #[error("writing to /dev/fuse: {0}")]
    Write(io::Error),
    /// The connection was aborted or unmounted before the kernel sent FUSE_INIT.
    #[error("the connection ended before FUSE_INIT")]
    GoneBeforeInit,
    /// The kernel speaks a FUSE protocol older than [`MIN_MINOR`](crate::MIN_MINOR).
    #[error("the kernel's FUSE protocol 7.{0} is older than 7.{min}", min = crate::init::MIN_MINOR)]
    KernelTooOld(u32),
    /// A worker thread could not be started.
    #[error("starting worker thread: {0}")]
    Spawn(io::Error),
    /// The `save` hook of [`Session::start_with`] failed: INIT is not answered.
    #[error("saving the INIT negotiation: {0}")]
    Save(io::Error),
    /// The `before_reading` hook of [`Session::run_then`] failed.
    #[error("preparing the session before serving: {0}")]
    Ready(io::Error),
}

/// Mounts `mountpoint` and returns the connection's channel, its device fd already adopted
/// by `custody`. Nothing has been read from it yet.
pub fn mount(
    mountpoint: &Path,
    options: &MountOptions,
    custody: Arc<dyn DeviceCustody>,
) -> Result<Channel, SessionError> {
    let device = fuse_transport::mount(mountpoint, options).map_err(|e| SessionError::Mount {
        path: mountpoint.display().to_string(),
        error: mount_error(e),
    })?;
    Channel::new(vec![device], custody).map_err(SessionError::Custody)
}

/// The transport's mount error as [`SessionError::Mount`]'s `error`: the OS error alone where
/// the transport's message adds only the mountpoint `Mount` already names (its stat, mount(2)
/// on it), the whole message otherwise: what failed was something else (/dev/fuse,
/// fusermount3, a missing fusermount3 with what to install), which the errno alone would pass
/// off as the mountpoint's.
fn mount_error(err: fuse_transport::Error) -> io::Error {
    match err {
        fuse_transport::Error::StatMountpoint { error, .. }
        | fuse_transport::Error::Mount { error, .. } => error,
        other => {
            let kind = other.io_error().map_or(io::ErrorKind::Other, io::Error::kind);
            io::Error::new(kind, other)
        }
    }
}

/// A served connection.
/// Largest xattr value a [`StandIn`] carries.
const MAX_STAND_IN_VALUE: usize = 1024;

/// The extended attributes of the root a keeper answers for while the connection has no
/// server: those `ls -l` asks about (ACLs and the SELinux label), which any user who may stat
/// the root may read. Others (`user.*`, `trusted.*`) depend on who asks and are left to the
/// next server.
pub const STAND_IN_XATTRS: [&str; 3] =
    ["security.selinux", "system.posix_acl_access", "system.posix_acl_default"];

/// What a keeper may answer while the connection has no server ([`Session::stand_in`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandIn {
    /// The payload of a GETATTR reply for the root (`fuse_attr_out`).
    pub attr: Option<Vec<u8>>,
    /// The payload of a STATFS reply (`fuse_statfs_out`).
    pub statfs: Option<Vec<u8>>,
    /// The [`STAND_IN_XATTRS`] the root has, with their values (those absent are not listed);
    /// `None` if they could not all be read.
    pub xattrs: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// A connection being served: its channel, the INIT negotiation in force, the filesystem, and
/// (once [`Session::run`] is called) the worker threads.
pub struct Session<F: Filesystem> {
    fs: Arc<F>,
    channel: Arc<Channel>,
    negotiation: Negotiation,
    config: SessionConfig,
    journal: Option<Arc<dyn Journal>>,
    /// Stops the workers between requests (planned handover).
    stop: fuse_transport::ReadStop,
}

impl<F: Filesystem> Session<F> {
    /// A fresh session: reads FUSE_INIT from the channel's master fd and answers it.
    pub fn start(fs: F, channel: Channel, config: SessionConfig) -> Result<Self, SessionError> {
        Self::start_with(fs, channel, config, |_, _| Ok(()))
    }

    /// As [`Session::start`], calling `save` with the negotiation before the INIT reply is
    /// written: a server that dies after replying must already have it saved, since the
    /// kernel never sends INIT again. An error from `save` fails the start.
    pub fn start_with(
        fs: F,
        channel: Channel,
        config: SessionConfig,
        save: impl FnOnce(&F, &Negotiation) -> io::Result<()>,
    ) -> Result<Self, SessionError> {
        let mut save = Some(save);
        let master = channel.master();
        let mut buf = fuse_transport::prefaulted_buffer(1 << 16);
        let mut reply = ReplyBuf::with_capacity(256);
        let negotiation = loop {
            let n = match fuse_transport::read_request(master.as_fd(), &mut buf) {
                Ok(Some(n)) => n,
                Ok(None) => return Err(SessionError::GoneBeforeInit),
                Err(e) => return Err(SessionError::Read(crate::to_io(e))),
            };
            let bytes = &buf[..n];
            let req = match decode(bytes, &fuse_proto::Negotiated::default()) {
                Ok(req) => req,
                Err(err) => {
                    answer_undecodable(&master, bytes, err, &mut reply)?;
                    continue;
                }
            };
            let Operation::Init { arg } = req.op else {
                warn!(opcode = ?req.opcode, "request before INIT");
                send(&master, reply.error(req.unique, Errno::EIO))?;
                continue;
            };
            match negotiate(&arg, &config) {
                Ok(negotiation) => {
                    if let Some(save) = save.take() {
                        save(&fs, &negotiation).map_err(SessionError::Save)?;
                    }
                    reply.clear();
                    reply.push_bytes(reply_bytes(&negotiation));
                    send(&master, reply.finish(req.unique, 0))?;
                    break negotiation;
                }
                Err(InitError::MajorMismatch(major)) => {
                    // Tell the kernel our major; it retries with a compatible INIT.
                    info!(major, "kernel offered another major version");
                    let ours = fuse_init_out {
                        major: FUSE_KERNEL_VERSION,
                        minor: FUSE_KERNEL_MINOR_VERSION,
                        ..fuse_init_out::new_zeroed()
                    };
                    reply.clear();
                    reply.push_bytes(&ours.as_bytes()[..8]);
                    send(&master, reply.finish(req.unique, 0))?;
                }
                Err(InitError::TooOld(minor)) => {
                    send(&master, reply.error(req.unique, Errno::new(71 /* EPROTO */)))?;
                    return Err(SessionError::KernelTooOld(minor));
                }
            }
        };
        info!(
            minor = negotiation.minor(),
            flags = format_args!("{:#x}", negotiation.flags()),
            max_write = negotiation.reply.max_write,
            "FUSE_INIT answered"
        );
        Ok(Self::resume(fs, channel, negotiation, config))
    }

    /// A resumed session: the connection was initialised by an earlier server; `negotiation`
    /// is what it agreed. Reads no INIT.
    pub fn resume(
        fs: F,
        channel: Channel,
        negotiation: Negotiation,
        config: SessionConfig,
    ) -> Self {
        fs.notifier(channel.notifier());
        fs.init(negotiation.flags());
        let stop = fuse_transport::ReadStop::new().unwrap_or_else(|err| {
            warn!(%err, "no interrupt signal handler: a stop waits for each worker's next request");
            fuse_transport::ReadStop::default()
        });
        Session {
            fs: Arc::new(fs),
            channel: Arc::new(channel),
            negotiation,
            config,
            journal: None,
            stop,
        }
    }

    /// Journals non-idempotent requests, so that each has exactly one effect across a crash
    /// (see [`crate::journal`]).
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The INIT negotiation in force.
    pub fn negotiation(&self) -> &Negotiation {
        &self.negotiation
    }

    /// What a keeper may answer for this connection while no server serves it
    /// (docs/keeper-protocol.md, STAND_IN), asked of the filesystem now as this process's own
    /// uid and gid: the root's attributes, the filesystem's statistics, and those of the
    /// root's extended attributes in [`STAND_IN_XATTRS`]. A part the filesystem fails is left
    /// out (the keeper then leaves those requests to the next server).
    pub fn stand_in(&self) -> StandIn {
        use zerocopy::IntoBytes;
        let ctx = crate::Context {
            unique: crate::Unique(0),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            pid: 0,
            channel: &self.channel,
            journal: None,
        };
        let fs = &*self.fs;
        let attr = fs.getattr(&ctx, NodeId::ROOT, None).ok();
        let statfs = fs.statfs(&ctx, NodeId::ROOT).ok();
        let mut xattrs = Some(Vec::new());
        for name in STAND_IN_XATTRS {
            let name = std::ffi::OsStr::new(name);
            let value = match fs.getxattr(&ctx, NodeId::ROOT, name, &mut []) {
                Ok(0) => Some(Vec::new()),
                Ok(size) if size <= MAX_STAND_IN_VALUE => {
                    let mut buf = vec![0u8; size];
                    fs.getxattr(&ctx, NodeId::ROOT, name, &mut buf).ok().map(|n| {
                        buf.truncate(n);
                        buf
                    })
                }
                // Absent, or no xattrs at all: the keeper answers ENODATA.
                Err(Errno::ENODATA | Errno::ENOSYS | Errno::ENOTSUP) => continue,
                _ => None,
            };
            match (value, &mut xattrs) {
                (Some(value), Some(list)) => list.push((name.as_encoded_bytes().to_vec(), value)),
                _ => xattrs = None,
            }
        }
        StandIn {
            attr: attr.map(|a| crate::dispatch::attr_out(&a).as_bytes().to_vec()),
            statfs: statfs.map(|st| fuse_abi::fuse_statfs_out { st }.as_bytes().to_vec()),
            xattrs,
        }
    }

    /// The connection's device fds.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// The filesystem being served.
    pub fn filesystem(&self) -> &Arc<F> {
        &self.fs
    }

    /// The switch that stops this session's workers: after
    /// [`ReadStop::stop`](fuse_transport::ReadStop::stop) returns, every request a worker had read is answered, no
    /// worker reads again, and [`Session::run`] returns `Ok`; requests not read yet stay
    /// queued in the kernel for the next server of the connection.
    pub fn stop_handle(&self) -> fuse_transport::ReadStop {
        self.stop.clone()
    }

    /// Serves until the connection ends (unmount or abort). Worker `i` reads device fd `i`:
    /// the mount's own fd for worker 0, a FUSE_DEV_IOC_CLONE for the others, each adopted by
    /// the custody hook before its first read.
    pub fn run(&self) -> Result<(), SessionError> {
        self.run_then(|_| Ok(()))
    }

    /// As [`Session::run`], calling `before_reading` once every device fd is in place and
    /// before any worker reads. A resumed session writes FUSE_NOTIFY_RESEND there: written
    /// once workers read, it would also re-queue requests the new server is already working
    /// on, and those would run twice (DESIGN.md, kernel fact 5). An error from it stops the
    /// session before it serves.
    pub fn run_then(
        &self,
        before_reading: impl FnOnce(&Channel) -> io::Result<()>,
    ) -> Result<(), SessionError> {
        let threads = self.config.threads.max(1);
        let mut devices = Vec::with_capacity(threads);
        for index in 0..threads {
            devices.push(self.channel.device(index).map_err(SessionError::Custody)?);
        }
        // Every worker's buffers are prefaulted before it reads. The first worker's are made
        // here, before `before_reading`; the others' in their own threads, in parallel, so
        // that a restarted server serves as soon as one worker is ready.
        let mut devices = devices.into_iter();
        let first = devices.next().map(|device| Worker::new(self, device));
        before_reading(&self.channel).map_err(SessionError::Ready)?;
        thread::scope(|scope| {
            let mut handles = Vec::new();
            let start = || self.config.worker_start.as_ref().map(|hook| (hook.0)());
            if let Some(worker) = first {
                let handle = thread::Builder::new()
                    .name("fuse-worker-0".into())
                    .spawn_scoped(scope, move || {
                        let _held = start();
                        worker.run()
                    })
                    .map_err(SessionError::Spawn)?;
                handles.push(handle);
            }
            for (index, device) in devices.enumerate() {
                let handle = thread::Builder::new()
                    .name(format!("fuse-worker-{}", index + 1))
                    .spawn_scoped(scope, move || {
                        let _held = start();
                        Worker::new(self, device).run()
                    })
                    .map_err(SessionError::Spawn)?;
                handles.push(handle);
            }
            let mut result = Ok(());
            for handle in handles {
                match handle.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            result
        })
    }
}

/// One thread's loop: read a request, dispatch it, write the reply. Its buffers are
/// allocated once and reused; the one the kernel copies requests into is populated before
/// the first read (DESIGN.md, kernel fact 12).
struct Worker<'s, F: Filesystem> {
    session: &'s Session<F>,
    device: Arc<OwnedFd>,
    input: fuse_transport::RequestBuffer,
    data: fuse_transport::RequestBuffer,
    reply: ReplyBuf,
    counts: Arc<crate::stats::WorkerCounts>,
}

impl<'s, F: Filesystem> Worker<'s, F> {
    fn new(session: &'s Session<F>, device: Arc<OwnedFd>) -> Self {
        let payload = session.negotiation.max_payload();
        Worker {
            session,
            device,
            // Header, the largest argument struct and a name before the payload.
            // The kernel copies requests into `input`: it is prefaulted. `data` and the reply
            // buffer are written by this thread before the kernel copies from them, so their
            // pages are always present by then.
            input: session
                .config
                .buffers
                .take(payload + crate::init::REQUEST_HEADROOM, session.config.pages()),
            data: fuse_transport::zeroed_buffer(payload, session.config.pages()),
            // Headers, entries, directory listings: READ data and xattr values are sent from
            // `data`, so the reply buffer needs no room for a whole payload.
            reply: ReplyBuf::with_capacity(crate::dispatch::REPLY_CAPACITY),
            counts: session.config.stats.worker(),
        }
    }

    fn run(mut self) -> Result<(), SessionError> {
        let context = self.session.negotiation.decode_context();
        let stop = &self.session.stop;
        let _reader = stop.reader();
        loop {
            let read =
                fuse_transport::read_request_stoppable(self.device.as_fd(), &mut self.input, stop);
            let n = match read {
                Ok(Some(n)) => n,
                Ok(None) => {
                    debug!(stopped = stop.is_stopped(), "worker done");
                    return Ok(());
                }
                Err(e) => return Err(SessionError::Read(crate::to_io(e))),
            };
            let bytes = &self.input[..n];
            let req = match decode(bytes, &context) {
                Ok(req) => req,
                Err(err) => {
                    answer_undecodable(&self.device, bytes, err, &mut self.reply)?;
                    continue;
                }
            };
            let span = tracing::trace_span!(
                "req",
                unique = req.unique,
                op = req.opcode.name(),
                nodeid = req.nodeid
            );
            let _enter = span.enter();
            self.counts.count(req.opcode as u32);
            let is_destroy = req.opcode == fuse_opcode::FUSE_DESTROY;
            let (outcome, journaled) = serve_request(
                &*self.session.fs,
                &self.session.channel,
                &self.session.negotiation,
                self.session.journal.as_deref(),
                &self.session.config.stats,
                req,
                &mut self.reply,
                &mut self.data,
            );
            let header_and_payload = self.reply.bytes();
            match outcome {
                Outcome::NoReply => {}
                Outcome::Reply => send(&self.device, header_and_payload)?,
                Outcome::ReplyWithData(n) => {
                    let iov = [IoSlice::new(header_and_payload), IoSlice::new(&self.data[..n])];
                    send_iov(&self.device, &iov)?;
                }
            }
            if let (Some(journal), Some(entry)) = (self.session.journal.as_deref(), journaled) {
                journal.end(entry);
            }
            if is_destroy {
                return Ok(());
            }
        }
    }
}

/// Answers a request whose bytes do not decode: ENOSYS for an unknown opcode, EIO otherwise.
/// A request too short to have a header gets nothing (there is no unique to answer).
fn answer_undecodable(
    device: &OwnedFd,
    bytes: &[u8],
    err: DecodeError,
    reply: &mut ReplyBuf,
) -> Result<(), SessionError> {
    let Some(header) = peek_header(bytes) else {
        warn!(len = bytes.len(), "request without a header");
        return Ok(());
    };
    let errno = match err {
        DecodeError::UnknownOpcode(_) => Errno::ENOSYS,
        _ => {
            warn!(unique = header.unique, opcode = header.opcode, %err, "malformed request");
            Errno::EIO
        }
    };
    send(device, reply.error(header.unique, errno))
}

fn send(device: &OwnedFd, bytes: &[u8]) -> Result<(), SessionError> {
    send_iov(device, &[IoSlice::new(bytes)])
}

fn send_iov(device: &OwnedFd, iov: &[IoSlice<'_>]) -> Result<(), SessionError> {
    match fuse_transport::write_reply(device.as_fd(), iov) {
        Ok(WriteOutcome::Written) => Ok(()),
        Ok(WriteOutcome::Gone) => {
            debug!("reply to a request the kernel no longer waits for");
            Ok(())
        }
        // The connection ended; the worker's next read says so.
        Ok(WriteOutcome::Disconnected) => Ok(()),
        Err(e) => Err(SessionError::Write(crate::to_io(e))),
    }
}
