//! Serving a connection that outlives its server: attach to the keeper's connection for the
//! tag if it holds one, mount fresh and register otherwise.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse_keeper::client::{KeeperClient, Registration};
use fuse_server::{Channel, DeviceCustody, Filesystem, Negotiation, Session, SessionConfig};
use fuse_transport::MountOptions;
use tracing::{info, warn};
use zerocopy::{FromBytes, IntoBytes};

use crate::store::Store;

/// A filesystem whose state lives in a [`Store`] (the store's memfd goes to the keeper).
pub trait Recoverable: Filesystem {
    fn state(&self) -> &Store;
}

/// How a server recovers.
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// The connection's name at the keeper (with the owner's uid, its key).
    pub tag: String,
    /// The only uid allowed to attach after a crash.
    pub rescue_uid: u32,
    /// How long the keeper keeps an orphaned connection; `None`: for ever.
    pub recovery_timeout: Option<Duration>,
    /// The keeper's socket.
    pub socket: PathBuf,
    /// Start a keeper (detached, outliving us) if none answers.
    pub start_keeper: bool,
    /// Journal non-idempotent requests (exactly once across crashes). Off only to measure
    /// what the journal costs.
    pub journal: bool,
}

/// Why a recoverable session could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("keeper at {socket}")]
    Keeper {
        socket: String,
        #[source]
        source: fuse_keeper::KeeperError,
    },
    #[error("starting a keeper: {0}")]
    StartKeeper(String),
    #[error("the filesystem")]
    Filesystem(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the FUSE session")]
    Session(#[from] fuse_server::SessionError),
    #[error("the saved negotiation is damaged")]
    BadNegotiation,
}

/// How the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Mounted fresh and registered with the keeper.
    Fresh,
    /// Took over an orphaned connection from the keeper, with this many device fds.
    Attached { devices: usize },
}

const EBUSY: i32 = 16;

/// Gives every device fd to the keeper before the first read from it.
struct KeeperCustody {
    client: Arc<Mutex<KeeperClient>>,
    tag: String,
    /// Device fds the keeper already holds (those it handed back on ATTACH).
    held: usize,
    /// For a fresh mount: REGISTER, sent with the first fd.
    register: Mutex<Option<(Registration, OwnedFd)>>,
}

impl DeviceCustody for KeeperCustody {
    fn adopt(&self, fd: BorrowedFd<'_>, index: usize) -> io::Result<()> {
        if index < self.held {
            return Ok(());
        }
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let pending = self.register.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match pending {
            Some((mut registration, state)) => {
                // The mount exists now: its connection number can be read.
                registration.conn_id = fuse_transport::connection_id(&registration.mountpoint)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                client.register(&registration, fd, state.as_fd())
            }
            None => client.add_device(&self.tag, index as u32, fd),
        };
        result.map_err(|e| io::Error::other(format!("keeper refused device fd {index}: {e}")))
    }
}

/// Connects to the keeper at `options.socket`, starting one if none answers and allowed.
pub fn connect(options: &RecoveryOptions) -> Result<KeeperClient, RecoveryError> {
    let socket = options.socket.display().to_string();
    match KeeperClient::connect(&options.socket) {
        Ok(client) => return Ok(client),
        Err(err) if !options.start_keeper => {
            return Err(RecoveryError::Keeper { socket, source: err });
        }
        Err(err) => info!(%err, "no keeper answers; starting one"),
    }
    let bin = fuse_keeper::find_keeper_binary().ok_or_else(|| {
        RecoveryError::StartKeeper("fuse-keeper binary not found (set FUSE_KEEPER_BIN)".into())
    })?;
    fuse_keeper::spawn_detached(&bin, &options.socket)
        .map_err(|e| RecoveryError::StartKeeper(format!("{}: {e}", bin.display())))?;
    KeeperClient::connect(&options.socket)
        .map_err(|source| RecoveryError::Keeper { socket, source })
}

/// Serves `mountpoint` until it is unmounted: re-attaches to the keeper's orphaned
/// connection for the tag if there is one, mounts fresh and registers otherwise. `make_fs`
/// gets the saved state store fd when attaching. `ready` is called once requests are being
/// served (for daemon readiness).
pub fn serve<F: Recoverable>(
    mountpoint: &Path,
    mount_options: &MountOptions,
    config: SessionConfig,
    options: &RecoveryOptions,
    make_fs: impl FnOnce(Option<OwnedFd>) -> Result<F, Box<dyn std::error::Error + Send + Sync>>,
    ready: impl FnOnce(Started),
) -> Result<Started, RecoveryError> {
    let socket = options.socket.display().to_string();
    let keeper_err = |source| RecoveryError::Keeper { socket: socket.clone(), source };
    let mut client = connect(options)?;
    // A server killed an instant ago may still be exiting (freeing its memory) when its
    // successor starts: the keeper sees it alive until its pidfd fires. Wait for that, briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let attached = loop {
        match client.attach(&options.tag) {
            Err(err) if err.errno() == Some(EBUSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => break other.map_err(keeper_err)?,
        }
    };
    let client = Arc::new(Mutex::new(client));
    let started = match attached {
        Some(attached) => {
            if attached.mountpoint != mountpoint {
                warn!(held = %attached.mountpoint.display(), asked = %mountpoint.display(), "tag held for another mountpoint; serving it");
            }
            let devices = attached.devices.len();
            let fs = make_fs(Some(attached.state)).map_err(RecoveryError::Filesystem)?;
            let custody = Arc::new(KeeperCustody {
                client: client.clone(),
                tag: options.tag.clone(),
                held: devices,
                register: Mutex::new(None),
            });
            let channel = Channel::new(attached.devices, custody)
                .map_err(fuse_server::SessionError::Custody)?;
            let saved = fs.state().negotiation();
            info!(tag = %options.tag, devices, negotiated = saved.is_some(), "attached to an orphaned connection");
            let started = Started::Attached { devices };
            match saved {
                Some(bytes) => {
                    let negotiation = Negotiation::read_from_bytes(&bytes)
                        .map_err(|_| RecoveryError::BadNegotiation)?;
                    let session =
                        journaled(Session::resume(fs, channel, negotiation, config), options);
                    let mut ready = Some(ready);
                    session.run_then(|channel| {
                        channel.notify_resend()?;
                        if let Some(ready) = ready.take() {
                            ready(started);
                        }
                        Ok(())
                    })?;
                }
                None => {
                    // The previous server died before answering INIT: it comes again.
                    channel.notify_resend().map_err(fuse_server::SessionError::Custody)?;
                    let session = journaled(
                        Session::start_with(fs, channel, config, save_negotiation)?,
                        options,
                    );
                    ready(started);
                    session.run()?;
                }
            }
            started
        }
        None => {
            let fs = make_fs(None).map_err(RecoveryError::Filesystem)?;
            let state = fs
                .state()
                .fd()
                .try_clone_to_owned()
                .map_err(|e| RecoveryError::Filesystem(Box::new(e)))?;
            let registration = Registration {
                tag: options.tag.clone(),
                rescue_uid: options.rescue_uid,
                mountpoint: mountpoint.to_path_buf(),
                conn_id: 0,
                recovery_timeout: options.recovery_timeout,
                negotiation: Vec::new(),
            };
            let custody = Arc::new(KeeperCustody {
                client: client.clone(),
                tag: options.tag.clone(),
                held: 0,
                register: Mutex::new(Some((registration, state))),
            });
            let channel = fuse_server::mount(mountpoint, mount_options, custody)?;
            let session = match Session::start_with(fs, channel, config, save_negotiation) {
                Ok(session) => journaled(session, options),
                Err(err) => {
                    let _ = fuse_transport::force_unmount(mountpoint);
                    let _ =
                        client.lock().unwrap_or_else(|p| p.into_inner()).unregister(&options.tag);
                    return Err(err.into());
                }
            };
            info!(tag = %options.tag, "mounted fresh and registered with the keeper");
            ready(Started::Fresh);
            session.run()?;
            Started::Fresh
        }
    };
    // Unmounted: the connection is over; the keeper lets it go.
    if let Err(err) = client.lock().unwrap_or_else(|p| p.into_inner()).unregister(&options.tag) {
        info!(%err, "unregister after unmount");
    }
    Ok(started)
}

/// The session with its filesystem store's journal, when the options want one and the
/// store has a journal table.
fn journaled<F: Recoverable>(session: Session<F>, options: &RecoveryOptions) -> Session<F> {
    let journal = options
        .journal
        .then(|| crate::journal::StoreJournal::open(session.filesystem().state()))
        .flatten();
    match journal {
        Some(journal) => session.with_journal(Arc::new(journal)),
        None => session,
    }
}

fn save_negotiation<F: Recoverable>(fs: &F, negotiation: &Negotiation) -> io::Result<()> {
    fs.state().set_negotiation(negotiation.as_bytes()).map_err(|e| io::Error::other(e.to_string()))
}
