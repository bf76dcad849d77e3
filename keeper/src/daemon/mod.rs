//! The keeper daemon (`fuse-keeper serve`): one thread, one epoll loop over the listening
//! socket, the clients, every server's pidfd and a signal pipe.

mod event_loop;
mod handlers;
mod policy;
mod registry;
mod socket;

use std::io;
use std::path::PathBuf;

pub use registry::{MAX_ENTRIES, MAX_TAGS_PER_UID};

/// Most client connections at once; more are answered EMFILE and closed.
pub const MAX_CLIENTS: usize = 1024;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub socket: PathBuf,
    /// Let root ATTACH whatever the entry's rescue uid.
    pub root_may_attach: bool,
}

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
    #[error("cannot listen on {}: {source}", path.display())]
    Listen { path: PathBuf, source: io::Error },
    /// Setting up epoll or signals failed.
    #[error("cannot set up the event loop: {0}")]
    Setup(#[source] io::Error),
    /// `epoll_wait` failed.
    #[error("event loop failed: {0}")]
    Wait(#[source] io::Error),
}

/// Run the keeper until SIGTERM or SIGINT. Every held fd is closed on return: connections whose
/// server is dead are then lost (the kernel sees their last close); live servers keep theirs and
/// register again with the next keeper.
pub fn serve(config: &Config) -> Result<(), DaemonError> {
    warn_request_timeout();
    let signals = event_loop::setup_signals().map_err(DaemonError::Setup)?;
    let listener = socket::listen(&config.socket)?;
    let result = event_loop::Keeper::new(listener.fd, signals, config.root_may_attach)?.run();
    socket::remove(&config.socket, listener.identity);
    result
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
