//! The keeper daemon (`fuse-keeper serve`): one thread, one epoll loop over the listening
//! socket, the clients, every server's pidfd and a signal pipe.

mod closer;
mod event_loop;
mod handlers;
mod handover;
mod metrics;
mod orphaned;
mod policy;
mod principal;
mod registry;
mod socket;
mod standby;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::metrics_http::MetricsAddr;
pub use registry::MAX_ENTRIES;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub socket: PathBuf,
    /// Let root ATTACH whatever the entry's rescue uid.
    pub root_may_attach: bool,
    /// Bounds on what clients may hold.
    pub limits: Limits,
    /// Where to serve metrics over HTTP (`GET /metrics`), if anywhere.
    pub metrics: Option<MetricsAddr>,
}

/// What one client, or one principal, may make the keeper hold (docs/keeper-protocol.md,
/// "Limits and hostile clients"). A principal is a uid of the keeper's user namespace, with
/// every uid of a user namespace below it charged to that namespace's owner (a user's rootless
/// container), or to the namespace itself when root created it; root and the keeper's own uid
/// are exempt from the per-principal bounds. Every bound is answered with an ERROR, never by
/// blocking or dying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries one principal may hold (EDQUOT beyond): as many as libfuse's default
    /// `mount_max` lets all users mount through fusermount3.
    pub max_tags_per_uid: usize,
    /// Fds one principal's entries may make the keeper hold (each entry: its state, its
    /// devices and its server's pidfd). `None`: an eighth of what [`FdBudget`] gives entries.
    pub max_fds_per_uid: Option<usize>,
    /// Bytes of state memory (allocated pages of their state memfds, measured at each
    /// REGISTER) one principal's entries may hold: a REGISTER that would go beyond is refused
    /// with EDQUOT. A state store costs about 2.4 KiB per inode its server has looked up.
    pub max_state_bytes_per_uid: u64,
    /// Client connections at once, all uids together: the next one is answered EMFILE and
    /// closed.
    pub max_clients: usize,
    /// Client connections at once for one uid other than root and the keeper's own uid (who
    /// could stop the keeper anyway): the next one is answered EMFILE and closed. Every server
    /// keeps one connection open for its whole life, so this also bounds how many servers of
    /// one uid can be connected at once.
    pub max_clients_per_uid: usize,
    /// A connection that has not sent a well-formed request this long after connecting is
    /// closed (silent clients, or clients that only send garbage). A connection that has
    /// spoken may then stay idle for ever: servers keep theirs open to notice the keeper's exit.
    pub first_request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_tags_per_uid: DEFAULT_MAX_TAGS_PER_UID,
            max_fds_per_uid: None,
            max_state_bytes_per_uid: DEFAULT_MAX_STATE_BYTES_PER_UID,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_clients_per_uid: DEFAULT_MAX_CLIENTS_PER_UID,
            first_request_timeout: DEFAULT_FIRST_REQUEST_TIMEOUT,
        }
    }
}

/// Default of [`Limits::max_tags_per_uid`].
pub const DEFAULT_MAX_TAGS_PER_UID: usize = 1000;
/// Default of [`Limits::max_state_bytes_per_uid`]: 2 GiB.
pub const DEFAULT_MAX_STATE_BYTES_PER_UID: u64 = 2 << 30;
/// How the keeper's fd limit (`RLIMIT_NOFILE`, raised to its hard limit at start) is shared.
/// Entries hold fds until they are dropped, whether or not their registrant lives, so they are
/// what a hostile user would pile up: they get three quarters of the limit (the rest is for
/// clients, the closer's queue and the keeper itself), and of that, principals other than root
/// and the keeper's own uid together get three quarters, so that root's servers always find
/// room. Every REGISTER and ADD_DEVICE that would go beyond is refused with EDQUOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Fds all entries together may hold.
    pub entries: usize,
    /// Fds the entries of principals that are not exempt may hold together.
    pub not_exempt: usize,
    /// Fds one principal's entries may hold.
    pub per_principal: usize,
}

impl FdBudget {
    /// The budget for an fd limit of `nofile`, with `limits`' per-principal bound if set.
    pub fn new(nofile: usize, limits: &Limits) -> FdBudget {
        let entries = nofile / 4 * 3;
        let not_exempt = entries / 4 * 3;
        FdBudget {
            entries,
            not_exempt,
            per_principal: limits.max_fds_per_uid.unwrap_or(entries / 8),
        }
    }
}

/// Default of [`Limits::max_clients`].
pub const DEFAULT_MAX_CLIENTS: usize = 8192;
/// Default of [`Limits::max_clients_per_uid`].
pub const DEFAULT_MAX_CLIENTS_PER_UID: usize = 1024;
/// Default of [`Limits::first_request_timeout`].
pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another keeper answers at the socket path.
    #[error("a keeper is already running at {}", .0.display())]
    AlreadyRunning(PathBuf),
    /// Something else occupies the socket path.
    #[error("{} exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// Creating, binding or listening on the socket failed.
    #[error("cannot listen on {}: {error}", path.display())]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// What failed: preparing or checking its directory, socket(2), bind(2), listen(2), or
        /// linking the socket to `path`.
        error: io::Error,
    },
    /// Binding the metrics listener failed.
    #[error("cannot serve metrics at {addr}: {error}")]
    Metrics {
        /// Where.
        addr: MetricsAddr,
        /// What bind(2) or listen(2) said.
        error: io::Error,
    },
    /// Socket activation (`LISTEN_PID` names this process) with no usable socket: fd 3 is not
    /// open, or not a listening `AF_UNIX` `SOCK_SEQPACKET` socket, or `LISTEN_FDS` is garbage.
    #[error("socket activation: {0}")]
    Activation(String),
    /// Setting up epoll or signals failed.
    #[error("cannot set up the event loop: {0}")]
    Setup(io::Error),
    /// `epoll_wait` failed.
    #[error("event loop failed: {0}")]
    Wait(io::Error),
}

/// Run the keeper until SIGTERM or SIGINT. Every held fd is closed on return: connections whose
/// server is dead are then lost (the kernel sees their last close); live servers keep theirs and
/// register again with the next keeper.
///
/// Socket-activated by systemd (`LISTEN_PID` is this process, `LISTEN_FDS` >= 1), it serves on
/// the listening socket passed as fd 3 instead of binding `config.socket`, and leaves that
/// socket's file in place at exit: clients that connect while it restarts wait in the
/// socket's queue and are served by the next keeper.
pub fn serve(config: &Config) -> Result<(), DaemonError> {
    // First, while no thread exists: it edits the environment.
    let activated = socket::activated(&config.socket)?;
    // Whatever the caller's umask (a server that starts a keeper on demand may have set 0):
    // nothing the keeper creates is writable by others unless it sets the mode itself.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    warn_request_timeout();
    raise_fd_limit();
    let signals = event_loop::setup_signals().map_err(DaemonError::Setup)?;
    let listener = match activated {
        Some(listener) => listener,
        None => socket::listen(&config.socket)?,
    };
    if let Some(addr) = &config.metrics {
        match serve_metrics(addr, &config.socket) {
            Ok(bound) => tracing::info!(addr = %bound, "serving metrics"),
            Err(error) => {
                socket::remove(&config.socket, listener.identity);
                return Err(DaemonError::Metrics { addr: addr.clone(), error });
            }
        }
    }
    let result =
        event_loop::Keeper::new(listener.fd, signals, config.root_may_attach, config.limits)?.run();
    socket::remove(&config.socket, listener.identity);
    result
}

/// `--metrics`: each scrape asks the event loop for METRICS through the keeper socket, like any
/// client (as the keeper's own uid, which METRICS allows), so the listener's thread shares no
/// state with the loop.
fn serve_metrics(addr: &MetricsAddr, socket: &std::path::Path) -> io::Result<MetricsAddr> {
    let socket = socket.to_path_buf();
    let mut keeper: Option<crate::KeeperClient> = None;
    let render = move || -> Result<String, String> {
        // Reconnect once if the kept connection broke.
        for _ in 0..2 {
            let client = match keeper.as_mut() {
                Some(c) => c,
                None => {
                    keeper.insert(crate::KeeperClient::connect(&socket).map_err(|e| e.to_string())?)
                }
            };
            match client.metrics() {
                Ok(text) => return Ok(text),
                Err(e) if e.is_unavailable() || matches!(e, crate::KeeperError::Io(_)) => {
                    keeper = None;
                }
                Err(e) => return Err(format!("the keeper did not answer: {e}")),
            }
        }
        Err("the keeper closed the connection twice".into())
    };
    crate::metrics_http::start(addr, "metrics", Box::new(render))
}

/// The kernel's `fs.fuse.default_request_timeout` aborts connections whatever the keeper holds.
fn warn_request_timeout() {
    const PATH: &str = "/proc/sys/fs/fuse/default_request_timeout";
    if let Ok(text) = std::fs::read_to_string(PATH)
        && text.trim() != "0"
    {
        tracing::warn!(
            "fs.fuse.default_request_timeout is {}: the kernel aborts a connection whose server \
             stays dead that long, whatever the keeper holds",
            text.trim()
        );
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit: the keeper holds at least three fds per
/// connection (device, state, server pidfd) and two per client (socket, pidfd), far more than
/// the usual soft limit of 1024.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        tracing::info!(nofile = ?limit.current, "fd limit");
        return;
    }
    let from = limit.current;
    limit.current = limit.maximum;
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => tracing::info!(from = ?from, to = ?limit.current, "raised the fd limit"),
        Err(e) => tracing::warn!(nofile = ?from, "cannot raise the fd limit: {e}"),
    }
}
