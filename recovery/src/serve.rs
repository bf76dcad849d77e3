//! Serving a connection that outlives its server: attach to the keeper's connection for the
//! tag if it holds one, mount fresh and register otherwise.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fuse_keeper_client::client::{
    Attached, KeeperClient, Registration, StandbyEvent, StandbyReply,
};
use fuse_keeper_client::{ConnState, KeeperError};
use fuse_server::{Channel, Filesystem, Negotiation, Session, SessionConfig};
use fuse_transport::MountOptions;
use tracing::{info, warn};
use zerocopy::{FromBytes, IntoBytes};

use crate::links::{Custody, HandoverPolicy, Link, Links};
use crate::store::{Store, StoreError, TableSpec};

/// A filesystem whose state lives in a [`Store`]: [`serve`] creates the store with these
/// tables (or opens the one the keeper kept, checking it has them) and hands it to the
/// filesystem; its memfd goes to the keeper.
pub trait Recoverable: Filesystem {
    /// The tables of the filesystem's store, found again with [`Store::table_of`]. With
    /// [`RecoveryOptions::journal`], include [`JOURNAL`](crate::journal::JOURNAL): exactly-once
    /// keeps its records there, and [`serve`] refuses to start without it. A filesystem whose
    /// state needs no table (a fixed tree) lists none.
    const TABLES: &'static [TableSpec];

    /// Called once before requests are served: where to keep fds that must outlive this
    /// process (a file with no name left, which the next server could not open again).
    /// Default: ignored.
    fn set_fd_keeper(&self, keeper: Arc<dyn FdKeeper>) {
        let _ = keeper;
    }

    /// After an attach, before requests are served: the fds the previous servers gave the
    /// [`FdKeeper`], by key. Default: dropped (a filesystem that holds none gets none).
    fn adopt_held(&self, held: Vec<(u64, OwnedFd)>) {
        let _ = held;
    }
}

/// Keeps fds for the servers that come after this one: each keeper holds a copy until
/// [`FdKeeper::release`] or the connection ends, and hands it to a server that attaches
/// ([`Recoverable::adopt_held`]). Failures are logged, never returned: an fd a keeper did not
/// take is only not there for the next server.
pub trait FdKeeper: Send + Sync {
    /// Keep a copy of `fd` under `key` (replacing what is kept there).
    fn hold(&self, key: u64, fd: std::os::fd::BorrowedFd<'_>);
    /// Drop what is kept under `key`.
    fn release(&self, key: u64);
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
    /// The keepers' sockets (at least one): each holds the connection, so one of them may
    /// die at the same time as the server and nothing is lost.
    pub sockets: Vec<PathBuf>,
    /// Start a keeper (detached, outliving us) if none answers on a socket.
    pub start_keeper: bool,
    /// Journal non-idempotent requests (exactly once across crashes). Off only to measure
    /// what the journal costs.
    pub journal: bool,
    /// Take the connection over even from a live server, which is asked to hand it over
    /// (planned upgrade). Without it, a live server's tag is refused (EBUSY).
    pub handover: bool,
    /// Agree when another server asks this one to hand its connection over.
    pub allow_handover: bool,
    /// When `recovery_timeout` passes with no server, keep the mount and have the keeper
    /// answer its requests with EIO until a server attaches (instead of aborting it).
    pub fail_on_timeout: bool,
    /// Be a hot standby: never mount; wait at a keeper (STANDBY) for the live server of the
    /// tag to die and take its connection over the moment it does, as a restarted server
    /// would ([`Started::Attached`]). [`serve_with`] reports the waiting ([`Standing`]). If
    /// the connection ends first (its server unmounts cleanly), [`serve`] returns
    /// [`RecoveryError::Dismissed`]. A keeper that goes away while it waits is connected to
    /// again (backoff 10 ms to 200 ms) and the standby parks again once the server has
    /// registered with it again; no keeper is ever started by a standby.
    pub standby: bool,
    /// Without `standby`: when a live server serves the tag (ATTACH answered EBUSY), stand by
    /// for it as `standby` does instead of failing; otherwise attach or mount as usual. Two
    /// supervised processes with this option take turns: the one that outlives the other
    /// serves, the other's restart stands by (docs/DEPLOYMENT.md).
    pub standby_when_served: bool,
    /// Publish a liveness page (docs/keeper-protocol.md, LIVENESS): every thread of the
    /// server that may touch the connection or the source holds a slot of it, and a hot
    /// standby takes the connection over as soon as the kernel has marked them all died,
    /// without waiting for the dead process's teardown (its memory and fds freed), which the
    /// keeper's pidfd waits for. On by default. Turn it off for a filesystem that leaves I/O
    /// in flight when its threads are gone (Linux AIO submitted with `io_submit`, whose
    /// requests the kernel waits for only in that teardown): a standby would then serve while
    /// that I/O still lands.
    pub liveness: bool,
}

impl RecoveryOptions {
    /// The options most servers want for `tag`: the caller's own uid as the rescue uid, no
    /// recovery timeout (the keeper waits for ever), the default keeper socket
    /// ([`fuse_keeper_client::socket_path`], `$FUSE_KEEPER_SOCKET` if set) with a keeper
    /// started if none answers, the journal on, no handover either way, and an aborted mount
    /// (not an EIO one) if a timeout is set and passes.
    pub fn new(tag: impl Into<String>) -> RecoveryOptions {
        RecoveryOptions {
            tag: tag.into(),
            rescue_uid: rustix::process::getuid().as_raw(),
            recovery_timeout: None,
            sockets: vec![fuse_keeper_client::socket_path()],
            start_keeper: true,
            journal: true,
            handover: false,
            allow_handover: false,
            fail_on_timeout: false,
            standby: false,
            standby_when_served: false,
            liveness: true,
        }
    }
}

/// What a hot standby ([`RecoveryOptions::standby`]) is doing, as [`serve_with`] reports it
/// each time it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Parked at the keeper at `socket`: the connection is taken over the moment its server
    /// dies.
    Parked {
        /// The keeper's socket.
        socket: PathBuf,
    },
    /// Not parked: no keeper answers, or none holds the tag yet (its server has not
    /// registered, or not yet again with a keeper that restarted). Asked again with backoff.
    Waiting {
        /// Why, for humans.
        why: String,
    },
}

/// Why a recoverable session could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// No keeper answered on any socket (this is the first one's error), or one refused the
    /// ATTACH or HANDOVER (e.g. EACCES: not the rescue uid; EBUSY: its server is alive).
    /// Its message names the socket unless the source already does (no keeper answered).
    #[error("{}", match source {
        fuse_keeper_client::KeeperError::Connect { .. } => "no keeper answered".to_string(),
        _ => format!("keeper at {socket}"),
    })]
    Keeper {
        /// The keeper's socket path.
        socket: String,
        /// What the keeper client reported.
        #[source]
        source: fuse_keeper_client::KeeperError,
    },
    /// [`RecoveryOptions::sockets`] is empty.
    #[error("no keeper socket given")]
    NoKeeper,
    /// `make_fs` failed (its error), or the store's fd could not be duplicated.
    #[error("the filesystem")]
    Filesystem(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Mounting, handing a device fd to the keepers, or starting or running the session failed.
    #[error("the FUSE session")]
    Session(#[from] fuse_server::SessionError),
    /// The negotiation saved in the store does not decode, or is not one this server's
    /// `SessionConfig` could have made (protocol version, `max_write`, `max_pages`); the
    /// string says which.
    #[error("the saved negotiation is damaged: {0}")]
    BadNegotiation(String),
    /// The keeper handed over a connection that is not the one asked for: registered by
    /// another uid, or mounted somewhere else. Nothing of it was used.
    #[error("refusing the connection the keeper holds under tag {tag}: {why}")]
    NotOurs {
        /// The tag asked for.
        tag: String,
        /// What differs: the registering uid, the mountpoint, or the mount found there.
        why: String,
    },
    /// A standby ([`RecoveryOptions::standby`]) was parked for the tag's connection and the
    /// connection ended (its server unmounted it cleanly, or it was unmounted or aborted
    /// through the keeper): there is nothing to take over. Not a failure of the standby.
    #[error(
        "the connection under tag {tag} ended while this standby waited for it: nothing to take over"
    )]
    Dismissed {
        /// The tag.
        tag: String,
    },
    /// The store the keeper kept could not be opened with the filesystem's tables, or a new
    /// one could not be made.
    #[error("the state store")]
    Store(#[source] StoreError),
    /// `RecoveryOptions::journal` asks for exactly-once, and the filesystem's store has no
    /// [`JOURNAL`](crate::journal::JOURNAL) table to keep it in.
    #[error(
        "the filesystem's store has no journal table: add fuse_recovery::journal::JOURNAL to \
         its tables, or set RecoveryOptions::journal to false (then a request resent after a \
         crash may take effect twice)"
    )]
    NoJournal,
}

/// How the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Mounted fresh and registered with the keeper.
    Fresh,
    /// Took over an orphaned connection from the keeper: its server had died (or died while
    /// asked to hand over).
    Attached {
        /// How many device fds the keeper handed back: the mount's fd and its clones.
        devices: usize,
    },
    /// Took the connection over from a server that was serving it when the handover was asked
    /// ([`RecoveryOptions::handover`]), as the keeper listed it just before.
    HandedOver {
        /// How many device fds the keeper handed back: the mount's fd and its clones.
        devices: usize,
    },
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The connection ended (the mount was unmounted); the keepers let it go.
    Unmounted,
    /// The connection was handed over to another server, which serves on.
    HandedOver {
        /// The new server's pid, as the keeper saw it asking (in the keeper's pid namespace).
        to_pid: u32,
    },
}

/// What [`serve`] did: how it started serving, and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// How the session started.
    pub started: Started,
    /// Why it stopped.
    pub ended: Ended,
}

const EBUSY: i32 = 16;

/// The name of a new store's memfd (as /proc/PID/fd shows it: `memfd:fuse-recovery-state`).
pub const STORE_NAME: &str = "fuse-recovery-state";

/// ATTACH the tag at one keeper. A server killed an instant ago may still be exiting
/// (freeing its memory) when its successor starts: the keeper sees it alive (EBUSY) until its
/// pidfd fires. Wait for that, briefly.
fn attach(
    client: &mut KeeperClient,
    tag: &str,
    handover: bool,
) -> Result<Option<Attached>, KeeperError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let attached = if handover { client.handover(tag) } else { client.attach(tag) };
        match attached {
            Err(err) if err.errno() == Some(EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

/// The connection attached, and whether a live server handed it over.
type Found = (Attached, bool);

/// Connects to every keeper (starting those that do not answer, if allowed) and attaches to
/// the first one holding an orphaned connection for the tag; the others that hold it too are
/// attached as well (they then know the new server), the rest will be given it. The flag:
/// the connection was handed over by a live server.
fn connect_and_attach(
    options: &RecoveryOptions,
) -> Result<(Vec<Link>, Option<Found>), RecoveryError> {
    let mut links = Vec::new();
    let mut errors = Vec::new();
    for socket in &options.sockets {
        let (link, err) = Link::connect(socket, options.start_keeper);
        if let Some(err) = err {
            errors.push((socket.clone(), err));
        }
        links.push(link);
    }
    if links.iter_mut().all(|l| l.client().is_none()) {
        // The error says it (the first keeper's); a warning would say it twice.
        return Err(match errors.into_iter().next() {
            Some((socket, source)) => {
                RecoveryError::Keeper { socket: socket.display().to_string(), source }
            }
            None => RecoveryError::NoKeeper,
        });
    }
    for (socket, err) in errors {
        warn!(%err, socket = %socket.display(), "keeper unreachable; will retry");
    }
    let mut attached: Option<Attached> = None;
    let mut handed_over = false;
    for link in &mut links {
        let socket = link.socket.display().to_string();
        let Some(client) = link.client() else { continue };
        let handover = options.handover && attached.is_none();
        // Which of the tag's connections a live server serves: the one attached then was
        // handed over by it (or, rarely, taken from it as it died during the handover).
        let serving: Vec<u32> = if handover {
            client
                .list()
                .map(|all| {
                    all.into_iter()
                        .filter(|c| c.tag == options.tag && c.state == ConnState::Serving)
                        .map(|c| c.conn_id)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let found = attach(client, &options.tag, handover)
            .map_err(|source| RecoveryError::Keeper { socket: socket.clone(), source })?;
        match (found, &attached) {
            (Some(found), None) => {
                link.attached(found.devices.len());
                handed_over = serving.contains(&found.conn_id);
                attached = Some(found);
            }
            (Some(found), Some(first)) if found.conn_id == first.conn_id => {
                // The same connection, held here too: its fds are dups of those in hand.
                link.attached(found.devices.len());
            }
            (Some(found), Some(first)) => warn!(
                socket,
                held = found.conn_id,
                serving = first.conn_id,
                "this keeper holds another connection under the tag; leaving it there"
            ),
            (None, _) => {}
        }
    }
    Ok((links, attached.map(|a| (a, handed_over))))
}

/// A standby's wait (see [`RecoveryOptions::standby`]): STANDBY at each keeper in turn until
/// one parks it (or hands the connection over at once, orphaned), then the second answer.
/// `asked` is set to when the connection arrived. The links: the keeper that handed it over
/// (on the very connection it answered on, which is now the server's at that keeper), and the
/// others, attached too if they hold the connection (they orphaned it as the same server
/// died), else given it by the `keeper-watch` thread.
/// Also what was checked ([`check_ours`]) at the keeper that parked it, before parking: the
/// connection's (owner, mountpoint, number), checked then so that taking over need not
/// read mountinfo.
fn stand_by(
    options: &RecoveryOptions,
    mountpoint: &Path,
    standing: &mut dyn FnMut(Standing),
    asked: &mut Instant,
) -> Result<(Vec<Link>, Found, Option<Checked>), RecoveryError> {
    let tag = &options.tag;
    let refused = |socket: &Path, source| RecoveryError::Keeper {
        socket: socket.display().to_string(),
        source,
    };
    let mut backoff = STANDBY_FIRST_RETRY;
    let mut waiting: Option<String> = None;
    loop {
        let mut why = String::from("no keeper holds the tag yet (its server has not registered)");
        for (at, socket) in options.sockets.iter().enumerate() {
            let mut client = match KeeperClient::connect(socket) {
                Ok(client) => client,
                Err(err) => {
                    why = format!("no keeper answers ({err})");
                    continue;
                }
            };
            let checked = precheck(&mut client, tag, mountpoint)
                .map_err(|why| RecoveryError::NotOurs { tag: tag.clone(), why })?;
            let attached = match client.standby(tag) {
                Ok(StandbyReply::Unknown) => continue,
                Ok(StandbyReply::Attached(attached)) => attached,
                Ok(StandbyReply::Parked) => {
                    info!(tag = %tag, socket = %socket.display(), "standing by");
                    standing(Standing::Parked { socket: socket.clone() });
                    waiting = None;
                    backoff = STANDBY_FIRST_RETRY;
                    match wait_parked(&mut client, tag) {
                        Ok(Some(attached)) => attached,
                        Ok(None) => return Err(RecoveryError::Dismissed { tag: tag.clone() }),
                        Err(err) if err.is_unavailable() || matches!(err, KeeperError::Io(_)) => {
                            warn!(%err, socket = %socket.display(), "lost the keeper while standing by; parking again");
                            why = format!("lost the keeper ({err})");
                            break;
                        }
                        Err(err) => return Err(refused(socket, err)),
                    }
                }
                Err(err) if err.is_unavailable() => {
                    why = format!("the keeper went away ({err})");
                    continue;
                }
                Err(err) => return Err(refused(socket, err)),
            };
            *asked = Instant::now();
            let mut link = Link::with_client(socket, options.start_keeper, client);
            link.attached(attached.devices.len());
            let mut links = Vec::with_capacity(options.sockets.len());
            for (i, other) in options.sockets.iter().enumerate() {
                if i == at {
                    continue;
                }
                let (mut other_link, _) = Link::connect(other, false);
                if let Some(client) = other_link.client()
                    && let Ok(Some(same)) = attach(client, tag, false)
                    && same.conn_id == attached.conn_id
                {
                    other_link.attached(same.devices.len());
                }
                links.push(other_link);
            }
            links.insert(at, link);
            return Ok((links, (attached, false), checked));
        }
        if waiting.as_ref() != Some(&why) {
            warn!(tag = %tag, %why, "standby not parked; asking again");
            standing(Standing::Waiting { why: why.clone() });
            waiting = Some(why);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(STANDBY_MAX_RETRY);
    }
}

/// A parked standby's wait for the keeper's last answer: the connection (`Some`), or its end.
/// Each WATCH starts a thread that waits on the server's liveness page and sends DIED once it
/// proves every thread of the server gone, so that the keeper need not wait for the dead
/// process's teardown (its pidfd) before it answers.
fn wait_parked(client: &mut KeeperClient, tag: &str) -> Result<Option<Attached>, KeeperError> {
    use crate::liveness::Waited;
    use std::sync::atomic::{AtomicBool, Ordering};
    /// The running watcher's switch: set when a newer WATCH replaces it or the wait ends.
    struct Watching(Option<Arc<AtomicBool>>);
    impl Drop for Watching {
        fn drop(&mut self) {
            if let Some(cancel) = self.0.take() {
                cancel.store(true, Ordering::Release);
            }
        }
    }
    let mut watching = Watching(None);
    loop {
        match client.standby_next()? {
            StandbyEvent::Attached(attached) => return Ok(Some(attached)),
            StandbyEvent::Ended => return Ok(None),
            StandbyEvent::Watch { server_pid, page } => {
                info!(server = server_pid, "watching the server's liveness page");
                drop(std::mem::replace(&mut watching, Watching(None)));
                let sender = match client.died_sender() {
                    Ok(sender) => sender,
                    Err(err) => {
                        warn!(%err, "cannot watch the server's liveness: waiting for its pidfd");
                        continue;
                    }
                };
                let cancel = Arc::new(AtomicBool::new(false));
                let (tag, cancelled) = (tag.to_owned(), cancel.clone());
                let watcher = std::thread::Builder::new().name("liveness-watch".into()).spawn(
                    move || {
                        let mut sent = None;
                        let waited = crate::liveness::wait_for_exit(&page, &cancelled, || {
                            sent = Some(sender.send(&tag, server_pid));
                        });
                        match (waited, sent) {
                            (Ok(Waited::Died), Some(Ok(()))) => info!(
                                server = server_pid,
                                "every thread of the server died (its liveness page): DIED sent"
                            ),
                            (Ok(Waited::Died), Some(Err(err))) => {
                                warn!(%err, server = server_pid, "DIED not sent");
                            }
                            (Ok(Waited::Unproven), _) => info!(
                                server = server_pid,
                                "the server's liveness page proves nothing: waiting for its pidfd"
                            ),
                            (Ok(Waited::Cancelled | Waited::Died), _) => {}
                            (Err(err), _) => {
                                warn!(%err, server = server_pid, "cannot map the server's liveness page");
                            }
                        }
                    },
                );
                match watcher {
                    Ok(_) => watching = Watching(Some(cancel)),
                    Err(err) => {
                        warn!(%err, "cannot watch the server's liveness: waiting for its pidfd");
                    }
                }
            }
        }
    }
}

/// A connection's (owner uid, mountpoint, number), as [`check_ours`] checked them.
type Checked = (u32, PathBuf, u32);

/// The connection the keeper lists under `tag` for this uid (its own first, else root's),
/// checked as [`check_ours`] checks an attached one; `Ok(None)` if it lists none (or cannot
/// list: the check is then made on taking over).
fn precheck(
    client: &mut KeeperClient,
    tag: &str,
    mountpoint: &Path,
) -> Result<Option<Checked>, String> {
    let uid = rustix::process::geteuid().as_raw();
    let Ok(mut all) = client.list() else { return Ok(None) };
    all.retain(|c| c.tag == tag && (c.owner_uid == uid || c.owner_uid == 0));
    all.sort_by_key(|c| c.owner_uid != uid);
    let Some(c) = all.into_iter().next() else { return Ok(None) };
    check_ours(c.owner_uid, &c.mountpoint, c.conn_id, mountpoint)?;
    Ok(Some((c.owner_uid, c.mountpoint, c.conn_id)))
}

/// A standby's backoff between STANDBYs that did not park it.
const STANDBY_FIRST_RETRY: Duration = Duration::from_millis(10);
const STANDBY_MAX_RETRY: Duration = Duration::from_millis(200);

/// Serves `mountpoint` until it is unmounted: re-attaches to the keepers' orphaned
/// connection for the tag if there is one, mounts fresh and registers otherwise. `make_fs`
/// gets the state store: the one the keeper kept when attaching (the filesystem continues
/// from it), a new one with [`Recoverable::TABLES`] otherwise. `ready` is called once requests are being
/// served (for daemon readiness, and to tell a service manager: [`fuse_server::notify`]). While
/// serving, a keeper that restarts is given the connection again (by the `keeper-watch`
/// thread). It returns when the connection is unmounted or handed over to a new server
/// ([`Ended`]): a server under systemd then calls [`fuse_server::notify::stopping`], or
/// [`fuse_server::notify::main_pid_moved_to`] the new server.
pub fn serve<F: Recoverable>(
    mountpoint: &Path,
    mount_options: &MountOptions,
    config: SessionConfig,
    options: &RecoveryOptions,
    make_fs: impl FnOnce(Arc<Store>) -> Result<F, Box<dyn std::error::Error + Send + Sync>>,
    ready: impl FnOnce(Started),
) -> Result<Served, RecoveryError> {
    serve_with(mountpoint, mount_options, config, options, make_fs, |_| {}, ready)
}

/// As [`serve`], and with [`RecoveryOptions::standby`] (or `standby_when_served`, when it
/// stands by) `standing` is called each time the standby parks at a keeper or stops being
/// parked ([`Standing`]), before `ready` is called once it has taken the connection over.
/// A server that never stands by never calls it.
pub fn serve_with<F: Recoverable>(
    mountpoint: &Path,
    mount_options: &MountOptions,
    mut config: SessionConfig,
    options: &RecoveryOptions,
    make_fs: impl FnOnce(Arc<Store>) -> Result<F, Box<dyn std::error::Error + Send + Sync>>,
    mut standing: impl FnMut(Standing),
    ready: impl FnOnce(Started),
) -> Result<Served, RecoveryError> {
    let mut asked = Instant::now();
    // Made before a standby parks, to be off the path of its takeover.
    let liveness = options
        .liveness
        .then(|| {
            crate::liveness::Liveness::create()
                .inspect_err(|e| warn!("no liveness page ({e}): a standby waits for the pidfd"))
                .ok()
        })
        .flatten();
    // A standby checked the connection while it waited (the same one is handed over).
    let mut checked = None;
    let mut standby = |asked: &mut Instant| {
        if config.buffers.is_empty() {
            // Taking over then faults in no page of the workers' request buffers.
            config.buffers.fill(config.threads.max(1), config.request_buffer_len(), config.pages());
        }
        stand_by(options, mountpoint, &mut standing, asked)
    };
    let (links, attached) = if options.standby {
        let (links, found, precheck) = standby(&mut asked)?;
        checked = precheck;
        (links, Some(found))
    } else {
        match connect_and_attach(options) {
            Err(RecoveryError::Keeper { source, .. })
                if options.standby_when_served && source.errno() == Some(EBUSY) =>
            {
                info!(tag = %options.tag, "a live server serves the tag: standing by for it");
                let (links, found, precheck) = standby(&mut asked)?;
                checked = precheck;
                (links, Some(found))
            }
            other => other?,
        }
    };
    let attach_time = asked.elapsed();
    // Where the connection is, and its number: as the keeper holds it, or (0) read once the
    // fresh mount exists.
    let (store, mountpoint, conn_id, devices) = match attached {
        Some((attached, handed_over)) => {
            let seen = (attached.owner_uid, attached.mountpoint.clone(), attached.conn_id);
            if checked != Some(seen) {
                check_ours(attached.owner_uid, &attached.mountpoint, attached.conn_id, mountpoint)
                    .map_err(|why| RecoveryError::NotOurs { tag: options.tag.clone(), why })?;
            }
            let store = Store::open(attached.state, F::TABLES).map_err(RecoveryError::Store)?;
            (store, attached.mountpoint, attached.conn_id, Some((attached.devices, handed_over)))
        }
        None => {
            let store = Store::create(STORE_NAME, F::TABLES).map_err(RecoveryError::Store)?;
            (store, mountpoint.to_path_buf(), 0, None)
        }
    };
    check_journal(options, &store)?;
    let store = Arc::new(store);
    let fs = make_fs(store.clone()).map_err(RecoveryError::Filesystem)?;
    let registration = Registration {
        tag: options.tag.clone(),
        rescue_uid: options.rescue_uid,
        mountpoint: mountpoint.clone(),
        conn_id,
        recovery_timeout: options.recovery_timeout,
        negotiation: Vec::new(),
        fail_on_timeout: options.fail_on_timeout,
    };
    let state =
        store.fd().try_clone_to_owned().map_err(|e| RecoveryError::Store(StoreError::Map(e)))?;
    let attached_now = devices.is_some();
    let links = Arc::new(Links::new(links, registration, state));
    // Every thread that may touch the connection or the source holds a slot of the liveness
    // page while it may (this one, the workers, keeper-watch, the stand-in refresher), so that
    // a standby learns of this process's death before its teardown (docs/keeper-protocol.md,
    // LIVENESS).
    let _main_slot = liveness.as_ref().and_then(crate::liveness::Liveness::hold);
    if let Some(liveness) = &liveness {
        links.set_liveness(liveness.clone());
        let liveness = liveness.clone();
        config.worker_start = Some(fuse_server::WorkerStart(Arc::new(move || {
            Box::new(liveness.hold()) as Box<dyn std::any::Any>
        })));
    }
    fs.set_fd_keeper(links.clone());
    if attached_now {
        fs.adopt_held(links.fetch_held());
    }
    let custody = Arc::new(Custody(links.clone()));
    let (stop_read, stop_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| {
            RecoveryError::Session(fuse_server::SessionError::Custody(io::Error::from(e)))
        })?;
    let watcher = links.watch(stop_read);
    let result = match devices {
        Some((devices, handed_over)) => {
            let count = devices.len();
            let started = if handed_over {
                Started::HandedOver { devices: count }
            } else {
                Started::Attached { devices: count }
            };
            serve_attached(
                fs,
                &store,
                devices,
                custody,
                config,
                options,
                attach_time,
                started,
                ready,
            )
        }
        None => {
            serve_fresh(fs, &store, &mountpoint, mount_options, custody, config, options, ready)
        }
    };
    drop(stop_write);
    let _ = watcher.join();
    match result {
        Ok((started, ended @ Ended::HandedOver { to_pid })) => {
            info!(tag = %options.tag, to_pid, "the connection is handed over; exiting");
            Ok(Served { started, ended })
        }
        Ok((started, ended @ Ended::Unmounted)) => {
            // The connection is over; the keepers let it go.
            links.unregister(&options.tag);
            Ok(Served { started, ended })
        }
        Err(err) => Err(err),
    }
}

/// Refuses a connection that is not the one this server was asked to serve: one registered by
/// a uid other than ours or root's (the keeper hands out no other, but its word is checked),
/// one registered for another mountpoint, or one whose mountpoint holds another mount. The
/// mount is looked up in mountinfo, never stat'ed (an orphaned connection would not answer).
fn check_ours(owner: u32, at: &Path, conn_id: u32, mountpoint: &Path) -> Result<(), String> {
    let euid = rustix::process::geteuid().as_raw();
    if owner != 0 && owner != euid && Some(owner) != uid_in_parent_ns(euid) {
        return Err(format!("it was registered by uid {owner}, not by uid {euid} or root"));
    }
    if at != mountpoint {
        return Err(format!(
            "it is mounted at {}, not at {} (unmount it with `fuse-keeper umount`, or serve \
             that mountpoint)",
            at.display(),
            mountpoint.display()
        ));
    }
    match fuse_transport::mount_entry(mountpoint) {
        Ok(Some(m)) if m.is_fuse() && m.kernel_dev() == conn_id => Ok(()),
        Ok(Some(m)) => Err(format!(
            "{} holds {} (device {}:{}), not FUSE connection {}",
            mountpoint.display(),
            m.fstype,
            m.major,
            m.minor,
            conn_id
        )),
        // Mounted in a mount namespace we cannot see: nothing to compare.
        Ok(None) | Err(_) => {
            warn!(mountpoint = %mountpoint.display(), conn = conn_id,
                "the attached connection's mount is not visible here; serving it");
            Ok(())
        }
    }
}

/// `uid` of this process's user namespace as its parent namespace sees it (the keeper's, for a
/// server in a container), from /proc/self/uid_map.
fn uid_in_parent_ns(uid: u32) -> Option<u32> {
    let map = std::fs::read_to_string("/proc/self/uid_map").ok()?;
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|v| v.parse::<u32>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        (uid >= inside && uid - inside < count).then(|| outside + (uid - inside))
    })
}

/// Runs `session` until the connection ends or is handed over; `before_reading` is called
/// before the first worker reads, once a handover would be answered (so that a server that
/// reports readiness there can be asked to hand over at once). Workers stopped for a handover that falls through serve
/// again.
///
/// `attached`: the keepers already hold the STAND_IN of the server before (it sent one before
/// its first read), so this one's is left to the refreshing thread (within [`STAND_IN_EVERY`]),
/// off the path of a takeover.
fn run_session<F: Recoverable>(
    session: &Session<F>,
    links: &Links,
    options: &RecoveryOptions,
    attached: bool,
    before_reading: impl FnOnce(&Channel) -> io::Result<()>,
) -> Result<Ended, RecoveryError> {
    let stop = session.stop_handle();
    links.set_handover(HandoverPolicy { stop: stop.clone(), allow: options.allow_handover });
    // Before any worker reads: a request served proves the keepers can stand in.
    let mut published = None;
    if !attached {
        let answers = session.stand_in();
        links.set_stand_in(stand_in_request(&options.tag, &answers));
        published = Some(answers);
    }
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let _held = links.liveness().and_then(|l| l.hold());
            // Off the path of a takeover: the keepers get the liveness page (a fresh mount's
            // have it since REGISTER).
            links.send_liveness();
            // Keep what the keepers answer current, at most once per STAND_IN_EVERY.
            let mut finished = done.0.lock().unwrap_or_else(|p| p.into_inner());
            while !*finished {
                let (guard, _) = done
                    .1
                    .wait_timeout(finished, STAND_IN_EVERY)
                    .unwrap_or_else(|p| p.into_inner());
                finished = guard;
                if *finished {
                    break;
                }
                let now = session.stand_in();
                if published.as_ref() != Some(&now) {
                    links.set_stand_in(stand_in_request(&options.tag, &now));
                    published = Some(now);
                }
            }
        });
        let mut before_reading = Some(before_reading);
        let ended = loop {
            if let Err(e) = session.run_then(|channel| match before_reading.take() {
                Some(f) => f(channel),
                None => Ok(()),
            }) {
                break Err(e.into());
            }
            if !stop.is_stopped() {
                break Ok(Ended::Unmounted);
            }
            if let Some(to_pid) = links.handed_over() {
                break Ok(Ended::HandedOver { to_pid });
            }
        };
        *done.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        done.1.notify_all();
        ended
    })
}

/// How often a serving server refreshes what its keepers may answer while it is down.
const STAND_IN_EVERY: Duration = Duration::from_secs(1);

/// The STAND_IN request for `tag` with the session's `answers`.
fn stand_in_request(
    tag: &str,
    answers: &fuse_server::StandIn,
) -> fuse_keeper_client::protocol::StandIn {
    fuse_keeper_client::protocol::StandIn {
        tag: tag.to_owned(),
        attr: answers.attr.clone().unwrap_or_default(),
        statfs: answers.statfs.clone().unwrap_or_default(),
        xattrs: answers.xattrs.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn serve_attached<F: Recoverable>(
    fs: F,
    store: &Arc<Store>,
    devices: Vec<OwnedFd>,
    custody: Arc<Custody>,
    config: SessionConfig,
    options: &RecoveryOptions,
    attach_time: Duration,
    started: Started,
    ready: impl FnOnce(Started),
) -> Result<(Started, Ended), RecoveryError> {
    let links = custody.0.clone();
    let count = devices.len();
    let channel = Channel::new(devices, custody).map_err(fuse_server::SessionError::Custody)?;
    let saved = store.negotiation();
    info!(
        tag = %options.tag,
        devices = count,
        negotiated = saved.is_some(),
        attach_us = attach_time.as_micros() as u64,
        handed_over = matches!(started, Started::HandedOver { .. }),
        "attached to an orphaned connection"
    );
    let ended = match saved {
        Some(bytes) => {
            let negotiation = Negotiation::read_from_bytes(&bytes)
                .map_err(|_| RecoveryError::BadNegotiation(format!("{} bytes", bytes.len())))?;
            negotiation.check_saved(&config).map_err(RecoveryError::BadNegotiation)?;
            let session =
                journaled(Session::resume(fs, channel, negotiation, config), options, store);
            // After a clean handover nothing waits to be resent, and RESEND re-queues nothing;
            // after a crash it brings back what the dead server had read.
            run_session(&session, &links, options, true, |channel| {
                channel.notify_resend()?;
                ready(started);
                Ok(())
            })?
        }
        None => {
            // The previous server died before answering INIT: it comes again.
            channel.notify_resend().map_err(fuse_server::SessionError::Custody)?;
            let session =
                journaled(Session::start_with(fs, channel, config, saving(store))?, options, store);
            run_session(&session, &links, options, false, |_| {
                ready(started);
                Ok(())
            })?
        }
    };
    Ok((started, ended))
}

#[allow(clippy::too_many_arguments)]
fn serve_fresh<F: Recoverable>(
    fs: F,
    store: &Arc<Store>,
    mountpoint: &Path,
    mount_options: &MountOptions,
    custody: Arc<Custody>,
    config: SessionConfig,
    options: &RecoveryOptions,
    ready: impl FnOnce(Started),
) -> Result<(Started, Ended), RecoveryError> {
    let links = custody.0.clone();
    let channel = fuse_server::mount(mountpoint, mount_options, custody)?;
    let session = match Session::start_with(fs, channel, config, saving(store)) {
        Ok(session) => journaled(session, options, store),
        Err(err) => {
            let _ = fuse_transport::force_unmount(mountpoint);
            links.unregister(&options.tag);
            return Err(err.into());
        }
    };
    info!(tag = %options.tag, "mounted fresh and registered with the keeper");
    let ended = run_session(&session, &links, options, false, |_| {
        ready(Started::Fresh);
        Ok(())
    })?;
    Ok((Started::Fresh, ended))
}

/// A journal asked for needs its table in the store: without one, resent requests would be
/// executed again, silently.
fn check_journal(
    options: &RecoveryOptions,
    store: &crate::store::Store,
) -> Result<(), RecoveryError> {
    if options.journal && store.find_table(crate::journal::JOURNAL.name).is_none() {
        return Err(RecoveryError::NoJournal);
    }
    Ok(())
}

/// The session with its filesystem store's journal, when the options want one and the
/// store has a journal table.
fn journaled<F: Recoverable>(
    session: Session<F>,
    options: &RecoveryOptions,
    store: &Store,
) -> Session<F> {
    let journal = options.journal.then(|| crate::journal::StoreJournal::open(store)).flatten();
    match journal {
        Some(journal) => session.with_journal(Arc::new(journal)),
        None => session,
    }
}

/// The negotiation saved in `store` before the INIT reply is written.
fn saving<F>(store: &Store) -> impl FnOnce(&F, &Negotiation) -> io::Result<()> + '_ {
    move |_, negotiation| {
        store.set_negotiation(negotiation.as_bytes()).map_err(|e| io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod journal_check {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_journal_asked_for_without_its_table_is_an_error() {
        let bare = Store::create("t", &[]).unwrap();
        let with = Store::create("t", &[crate::journal::JOURNAL]).unwrap();
        let mut options = RecoveryOptions::new("t");
        assert!(matches!(check_journal(&options, &bare), Err(RecoveryError::NoJournal)));
        assert!(check_journal(&options, &with).is_ok());
        options.journal = false;
        assert!(check_journal(&options, &bare).is_ok());
    }
}
