//! The epoll loop: accept clients, read one request per readiness, answer it, watch server
//! pidfds, expire grace deadlines and silent clients, stop on SIGTERM/SIGINT.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use rustix::process::{Pid, PidfdFlags};

use super::handlers::{Commit, Response};
use super::handover::Pending;
use super::principal::{OwnNamespace, Principal};
use super::registry::Registry;
use super::{DaemonError, FdBudget, Limits, policy};
use crate::protocol::{self, MAX_MESSAGE, MAX_REQUEST_FDS, Reply};

const TOKEN_LISTENER: u64 = 0;
const TOKEN_SIGNAL: u64 = 1;
const CLIENT_BIT: u64 = 1 << 62;
const PIDFD_BIT: u64 = 1 << 63;
/// Both bits: the keeper's device clone of an orphaned entry whose requests it reads.
pub(super) const READER_BITS: u64 = CLIENT_BIT | PIDFD_BIT;
const ID_MASK: u64 = CLIENT_BIT - 1;

/// How long the listener rests when the keeper is out of fds even after freeing its reserve
/// (so that a full fd table does not turn the level-triggered listener into a busy loop).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Refused or timed-out clients are logged at most this often (with a count of the others), so
/// that a flood of connections cannot flood the log.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Who is at the other end of a client connection (the process that connected).
#[derive(Debug)]
pub struct Peer {
    pub uid: u32,
    /// Who its requests are charged to ([`Limits`]).
    pub principal: Principal,
    pub gid: u32,
    /// 0 if the process is outside the keeper's pid namespace.
    pub pid: u32,
    /// `SO_PEERPIDFD`, else `pidfd_open(pid)`; `None` if the peer was already gone.
    pub pidfd: Option<OwnedFd>,
}

#[derive(Debug)]
struct Client {
    fd: OwnedFd,
    peer: Peer,
    /// Until its first well-formed request: when it is closed if none came.
    silent_until: Option<Instant>,
}

/// A log line at most every [`LOG_EVERY`], counting the ones left out.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    left_out: u64,
}

impl Throttle {
    /// `Some(lines left out since the last one)` if this one is to be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY) {
            self.left_out += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.left_out))
    }
}

/// The daemon's state.
#[derive(Debug)]
pub struct Keeper {
    epoll: OwnedFd,
    listener: OwnedFd,
    /// Held for epoll: readable once SIGTERM or SIGINT arrived.
    _signal_rx: OwnedFd,
    clients: HashMap<u64, Client>,
    /// Connections by principal, for [`Limits::max_clients_per_uid`].
    clients_per_uid: HashMap<Principal, usize>,
    /// (deadline, client id) of the clients that have not spoken yet, soonest first.
    silent: BTreeSet<(Instant, u64)>,
    next_client: u64,
    /// An open `/dev/null`, closed to make room for accepting (and refusing) a client when the
    /// keeper is out of fds.
    reserve_fd: Option<OwnedFd>,
    /// Set while the listener is out of epoll after an accept that failed for want of fds.
    accept_paused_until: Option<Instant>,
    refusals: Throttle,
    timeouts: Throttle,
    /// The keeper's user namespace and uid: what principals are found from.
    pub(super) own: OwnNamespace,
    pub(super) limits: Limits,
    /// How the fd limit is shared between entries.
    pub(super) fds: FdBudget,
    pub(super) registry: Registry,
    /// HANDOVERs waiting for the live server's answer, by entry id.
    pub(super) handovers: HashMap<u64, Pending>,
    /// Hot standbys parked for an entry's live server to die (STANDBY), by entry id.
    pub(super) standbys: HashMap<u64, super::standby::Parked>,
    /// Entries whose server a DIED just proved gone: orphaned (and handed to their standby)
    /// once the client that sent it is back in the map.
    pub(super) proved_dead: Vec<u64>,
    /// Where orphaned entries' requests are read (allocated while the keeper reads any).
    pub(super) read_buf: Vec<u8>,
    pub(super) root_may_attach: bool,
    /// Where fds the keeper drops are closed (off the loop when their close may wait).
    pub(super) closer: super::closer::Closer,
    /// What METRICS reports.
    pub(super) counters: super::metrics::Counters,
}

/// A pipe that becomes readable on SIGTERM or SIGINT (set up before listening, so that a signal
/// sent as soon as the socket answers already stops the keeper cleanly).
pub fn setup_signals() -> io::Result<OwnedFd> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let (rx, tx) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(signal, policy::dup(&tx)?)?;
    }
    Ok(rx)
}

impl Keeper {
    /// A keeper serving on the bound, listening, non-blocking `listener`, stopped by
    /// `signal_rx` (see [`setup_signals`]).
    pub fn new(
        listener: OwnedFd,
        signal_rx: OwnedFd,
        root_may_attach: bool,
        limits: Limits,
    ) -> Result<Keeper, DaemonError> {
        let setup = || -> io::Result<Keeper> {
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            let data = epoll::EventData::new_u64;
            epoll::add(&epoll, &listener, data(TOKEN_LISTENER), epoll::EventFlags::IN)?;
            epoll::add(&epoll, &signal_rx, data(TOKEN_SIGNAL), epoll::EventFlags::IN)?;
            Ok(Keeper {
                epoll,
                listener,
                _signal_rx: signal_rx,
                clients: HashMap::new(),
                clients_per_uid: HashMap::new(),
                silent: BTreeSet::new(),
                next_client: 0,
                reserve_fd: open_reserve(),
                accept_paused_until: None,
                refusals: Throttle::default(),
                timeouts: Throttle::default(),
                own: OwnNamespace::current(),
                fds: FdBudget::new(nofile(), &limits),
                limits,
                registry: Registry::default(),
                handovers: HashMap::new(),
                standbys: HashMap::new(),
                proved_dead: Vec::new(),
                read_buf: Vec::new(),
                root_may_attach,
                closer: super::closer::Closer::default(),
                counters: super::metrics::Counters::default(),
            })
        };
        setup().map_err(DaemonError::Setup)
    }

    /// Serve until SIGTERM or SIGINT.
    pub fn run(mut self) -> Result<(), DaemonError> {
        tracing::info!(
            root_may_attach = self.root_may_attach,
            max_tags_per_uid = self.limits.max_tags_per_uid,
            max_state_bytes_per_uid = self.limits.max_state_bytes_per_uid,
            entry_fds = self.fds.entries,
            entry_fds_not_root = self.fds.not_exempt,
            entry_fds_per_uid = self.fds.per_principal,
            max_clients = self.limits.max_clients,
            max_clients_per_uid = self.limits.max_clients_per_uid,
            first_request_timeout_ms = self.limits.first_request_timeout.as_millis() as u64,
            "keeper started"
        );
        let mut events = Vec::with_capacity(64);
        loop {
            let deadlines = [
                self.registry.next_deadline(),
                self.silent.first().map(|&(d, _)| d),
                self.accept_paused_until,
                self.handovers.values().map(|p| p.deadline).min(),
            ];
            let timeout = deadlines.into_iter().flatten().min().map(|d| {
                let wait = d.saturating_duration_since(Instant::now());
                Timespec::try_from(wait).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 })
            });
            events.clear();
            match epoll::wait(&self.epoll, spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(DaemonError::Wait(e.into())),
            }
            for event in &events {
                let (token, flags) = (event.data.u64(), event.flags);
                match token {
                    TOKEN_LISTENER => self.accept(),
                    TOKEN_SIGNAL => {
                        tracing::info!(
                            held = self.registry.len(),
                            "signal received: exiting (held fds are closed; mounts of dead \
                             servers are lost)"
                        );
                        return Ok(());
                    }
                    t if t & READER_BITS == READER_BITS => self.read_requests(t & ID_MASK),
                    t if t & PIDFD_BIT != 0 => self.server_exited(t & ID_MASK),
                    t => self.client_ready(t & ID_MASK, flags),
                }
            }
            let now = Instant::now();
            self.expire(now);
            self.expire_handovers(now);
            self.close_silent(now);
            self.resume_accept(now);
        }
    }

    fn accept(&mut self) {
        loop {
            match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(fd) => self.add_client(fd),
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return,
                Err(Errno::MFILE | Errno::NFILE) => {
                    self.accept_without_fds();
                    return;
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Out of fds: free the reserve to accept one client and tell it so, then take the reserve
    /// back. If even that fails, take the listener out of epoll for [`ACCEPT_PAUSE`] instead of
    /// spinning on it.
    fn accept_without_fds(&mut self) {
        let now = Instant::now();
        if let Some(left_out) = self.refusals.allow(now) {
            tracing::warn!(left_out, "out of file descriptors: refusing clients");
        }
        self.reserve_fd = None;
        let accepted =
            rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK);
        if let Ok(fd) = &accepted {
            refuse(fd, "the keeper is out of file descriptors");
        }
        drop(accepted);
        self.reserve_fd = open_reserve();
        if self.reserve_fd.is_none() {
            let _ = epoll::modify(
                &self.epoll,
                &self.listener,
                epoll::EventData::new_u64(TOKEN_LISTENER),
                epoll::EventFlags::empty(),
            );
            self.accept_paused_until = Some(now + ACCEPT_PAUSE);
        }
    }

    fn resume_accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.reserve_fd = self.reserve_fd.take().or_else(open_reserve);
            let _ = epoll::modify(
                &self.epoll,
                &self.listener,
                epoll::EventData::new_u64(TOKEN_LISTENER),
                epoll::EventFlags::IN,
            );
        }
    }

    fn add_client(&mut self, fd: OwnedFd) {
        let now = Instant::now();
        let (pid, uid, gid) = match crate::sys::peer_cred(fd.as_fd()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("SO_PEERCRED failed: {e}");
                return;
            }
        };
        let pidfd = crate::sys::peer_pidfd(fd.as_fd())
            .or_else(|_| {
                let pid = Pid::from_raw(pid as i32).ok_or(Errno::SRCH)?;
                rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(io::Error::from)
            })
            .ok();
        let principal = self.own.principal_of(uid, pidfd.as_ref().map(AsFd::as_fd));
        let of_principal = self.clients_per_uid.get(&principal).copied().unwrap_or(0);
        let refusal = if self.clients.len() >= self.limits.max_clients {
            Some(format!("too many clients ({} connections)", self.limits.max_clients))
        } else if !self.own.exempt(principal) && of_principal >= self.limits.max_clients_per_uid {
            Some(format!(
                "too many clients for {principal} ({} connections)",
                self.limits.max_clients_per_uid
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            refuse(&fd, &why);
            if let Some(left_out) = self.refusals.allow(now) {
                tracing::warn!(pid, uid, gid, left_out, "refused a client: {why}");
            }
            return;
        }
        let peer = Peer { uid, principal, gid, pid, pidfd };
        self.next_client += 1;
        let id = self.next_client;
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        let data = epoll::EventData::new_u64(CLIENT_BIT | id);
        if let Err(e) = epoll::add(&self.epoll, &fd, data, flags) {
            tracing::warn!("epoll add of a client failed: {e}");
            return;
        }
        let silent_until = now + self.limits.first_request_timeout;
        self.silent.insert((silent_until, id));
        *self.clients_per_uid.entry(principal).or_default() += 1;
        self.clients.insert(id, Client { fd, peer, silent_until: Some(silent_until) });
    }

    /// Forget client `id` and close its socket.
    pub(super) fn remove_client(&mut self, id: u64) {
        self.requester_gone(id);
        self.standby_gone(id);
        let Some(client) = self.clients.remove(&id) else { return };
        let _ = epoll::delete(&self.epoll, &client.fd);
        if let Some(deadline) = client.silent_until {
            self.silent.remove(&(deadline, id));
        }
        if let Some(n) = self.clients_per_uid.get_mut(&client.peer.principal) {
            *n -= 1;
            if *n == 0 {
                self.clients_per_uid.remove(&client.peer.principal);
            }
        }
    }

    /// Close the clients that have not sent a well-formed request in time.
    fn close_silent(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.silent.first() {
            if deadline > now {
                return;
            }
            if let Some(c) = self.clients.get(&id)
                && let Some(left_out) = self.timeouts.allow(now)
            {
                let (pid, uid, gid) = (c.peer.pid, c.peer.uid, c.peer.gid);
                tracing::info!(pid, uid, gid, left_out, "closed a client that sent no request");
            }
            // Out of the set first, whatever happens to the client, so that the loop ends.
            self.silent.remove(&(deadline, id));
            self.remove_client(id);
        }
    }

    fn client_ready(&mut self, id: u64, flags: epoll::EventFlags) {
        // Out of the map while it is served (the handlers borrow the keeper mutably).
        let Some(client) = self.clients.remove(&id) else { return };
        let served = self.serve_one(id, &client, flags);
        let spoke = served == Served::Spoke;
        self.clients.insert(id, client);
        for entry in std::mem::take(&mut self.proved_dead) {
            self.orphan(entry, true);
        }
        if served == Served::Close {
            self.remove_client(id);
        } else if spoke
            && let Some(client) = self.clients.get_mut(&id)
            && let Some(deadline) = client.silent_until.take()
        {
            self.silent.remove(&(deadline, id));
        }
    }

    /// Read and answer one request.
    fn serve_one(&mut self, id: u64, client: &Client, flags: epoll::EventFlags) -> Served {
        if !flags.contains(epoll::EventFlags::IN) {
            return Served::Close;
        }
        let arrived = Instant::now();
        // With no room left to close a request's fds off the loop, receive it without room for
        // fds: the kernel drops them (with no FLUSH) and the request is refused below.
        let busy = self.closer.saturated(client.peer.principal);
        let room = if busy { 0 } else { MAX_REQUEST_FDS };
        let received = match protocol::recv_message(client.fd.as_fd(), MAX_MESSAGE, room) {
            Ok(Some(r)) => r,
            Ok(None) => return Served::Close,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Served::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Served::Keep,
            Err(_) => return Served::Close,
        };
        let (Response { reply, fds, commit }, well_formed) =
            self.respond(id, &client.peer, received, busy);
        if matches!(commit, Some(Commit::Deferred)) {
            return Served::Spoke;
        }
        let (bytes, _) = protocol::encode_reply(&reply);
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        if let Err(e) = protocol::send_message(client.fd.as_fd(), &bytes, &borrowed) {
            tracing::debug!(pid = client.peer.pid, "reply not sent, closing the client: {e}");
            return Served::Close;
        }
        match commit {
            // A standby just parked on this client (out of the map while served): its WATCH
            // goes after the OK.
            Some(Commit::Watch { id }) => {
                if let Some((reply, page)) = self.watch_message(id) {
                    let (bytes, _) = protocol::encode_reply(&reply);
                    if let Err(e) =
                        protocol::send_message(client.fd.as_fd(), &bytes, &[page.as_fd()])
                    {
                        tracing::debug!(
                            pid = client.peer.pid,
                            "WATCH not sent, closing the client: {e}"
                        );
                        return Served::Close;
                    }
                }
            }
            Some(commit) => self.apply(commit, arrived),
            None => {}
        }
        if well_formed { Served::Spoke } else { Served::Keep }
    }

    /// The response, and whether the request was well-formed. The received fds are closed
    /// here unless a handler keeps them.
    fn respond(
        &mut self,
        client: u64,
        peer: &Peer,
        mut received: protocol::Received,
        busy: bool,
    ) -> (Response, bool) {
        let response = self.respond_to(client, peer, &mut received, busy);
        // What no handler kept: closed off the loop if its close may wait for a FUSE server.
        self.closer.close(peer.principal, std::mem::take(&mut received.fds));
        response
    }

    fn respond_to(
        &mut self,
        client: u64,
        peer: &Peer,
        received: &mut protocol::Received,
        busy: bool,
    ) -> (Response, bool) {
        if received.truncated {
            return (Response::error(libc::EMSGSIZE, "message larger than 65536 bytes"), false);
        }
        if busy && received.fds_truncated {
            let why = "the keeper is still closing earlier clients' fds: try again later";
            return (Response::error(libc::EAGAIN, why), false);
        }
        if received.fds_truncated {
            return (Response::error(libc::EBADF, "more than 16 file descriptors"), false);
        }
        match protocol::decode_request(&received.bytes, received.fds.len()) {
            Ok(req) => (self.handle(client, peer, req, &mut received.fds), true),
            Err(e) => {
                tracing::debug!(pid = peer.pid, uid = peer.uid, "malformed request: {e}");
                (Response::error(e.errno(), &e.to_string()), false)
            }
        }
    }

    /// Make the change of a request that `arrived` then, now that its reply is sent.
    fn apply(&mut self, commit: Commit, arrived: Instant) {
        match commit {
            Commit::Attach { id, pid, pidfd, client } => {
                self.become_server(id, pid, pidfd, client, arrived);
                if let Some(entry) = self.registry.get(id) {
                    tracing::info!(
                        tag = %crate::text::escape(&entry.tag), uid = entry.owner_uid, pid,
                        devices = entry.devices.len(), "attached: serving again"
                    );
                }
            }
            Commit::Deferred | Commit::Watch { .. } => {}
        }
    }

    /// Process `pid` (watched through `pidfd`), on client connection `client`, serves entry
    /// `id` from now on, in place of any previous server (no longer watched). `asked`: when it
    /// sent its ATTACH or HANDOVER. Taking over an orphaned entry is a recovery; from a live
    /// server, a handover.
    pub(super) fn become_server(
        &mut self,
        id: u64,
        pid: u32,
        pidfd: OwnedFd,
        client: u64,
        asked: Instant,
    ) {
        let data = epoll::EventData::new_u64(PIDFD_BIT | id);
        if let Err(e) = epoll::add(&self.epoll, &pidfd, data, epoll::EventFlags::IN) {
            tracing::warn!(pid, "cannot watch the new server's pidfd: {e}");
        }
        self.stop_reading(id);
        if let Some(entry) = self.registry.get_mut(id) {
            if let Some(old) = entry.server.take() {
                let _ = epoll::delete(&self.epoll, &old.pidfd);
            }
            let now = Instant::now();
            match entry.orphaned_at.take() {
                Some(at) => {
                    let orphaned = now.saturating_duration_since(at);
                    entry.stats.recoveries = entry.stats.recoveries.saturating_add(1);
                    entry.stats.last_recovery_us =
                        Some(u64::try_from(orphaned.as_micros()).unwrap_or(u64::MAX));
                    self.counters.recoveries += 1;
                    self.counters.orphaned.observe(orphaned);
                }
                None => {
                    entry.stats.handovers = entry.stats.handovers.saturating_add(1);
                    self.counters.handovers += 1;
                }
            }
            self.counters.attach.observe(now.saturating_duration_since(asked));
            entry.server = Some(super::registry::Server { pid, pidfd, liveness: None });
            entry.server_client = Some(client);
        }
    }

    /// How many client connections are open.
    pub(super) fn clients_len(&self) -> usize {
        self.clients.len()
    }

    /// Sends `reply` with `fds` to client `id` (without blocking), if it is connected.
    pub(super) fn send_to(&self, id: u64, reply: &Reply, fds: &[OwnedFd]) -> io::Result<()> {
        let client = self.clients.get(&id).ok_or(io::ErrorKind::NotConnected)?;
        let (bytes, _) = protocol::encode_reply(reply);
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        protocol::send_message(client.fd.as_fd(), &bytes, &borrowed)
    }

    /// Watch `fd` (readable when requests wait) under `token`.
    pub(super) fn watch_fd(&self, fd: &OwnedFd, token: u64) -> io::Result<()> {
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::add(&self.epoll, fd, data, epoll::EventFlags::IN)?)
    }

    /// Stop watching `fd`.
    pub(super) fn unwatch_fd(&self, fd: &OwnedFd) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// Watch `pidfd` as the server of entry `id`.
    pub(super) fn watch_server(&self, id: u64, pidfd: &OwnedFd) -> io::Result<()> {
        let data = epoll::EventData::new_u64(PIDFD_BIT | id);
        Ok(epoll::add(&self.epoll, pidfd, data, epoll::EventFlags::IN)?)
    }

    /// The entry's server has died (or we were told so): orphan the entry.
    pub(super) fn server_exited(&mut self, id: u64) {
        let dead = |s: &super::registry::Server| !policy::is_alive(s.pidfd.as_fd());
        if self.registry.get(id).and_then(|e| e.server.as_ref()).is_some_and(dead) {
            self.orphan(id, false);
        }
    }

    /// Orphan entry `id` now: its server's pidfd fired, or (`by_liveness`) its liveness page
    /// proved every thread of it gone before the process was torn down (DIED).
    pub(super) fn orphan(&mut self, id: u64, by_liveness: bool) {
        let Some(entry) = self.registry.get_mut(id) else { return };
        let Some(server) = entry.server.take() else { return };
        let _ = epoll::delete(&self.epoll, &server.pidfd);
        entry.orphaned_at = Some(Instant::now());
        let seen = if by_liveness { "its threads' liveness page" } else { "its pidfd" };
        tracing::info!(
            tag = %crate::text::escape(&entry.tag),
            uid = entry.owner_uid, pid = server.pid, conn = entry.conn_id,
            timeout_ms = entry.recovery_timeout.map(|t| t.as_millis() as u64),
            seen,
            "server exited: connection orphaned"
        );
        self.server_died_during_handover(id);
        self.wake_standby(id);
        self.start_standing_in(id);
    }

    /// Remove entry `id`, closing its fds.
    pub(super) fn drop_entry(&mut self, id: u64) {
        self.cancel_handover(id, libc::ENOENT, "the connection is gone");
        self.dismiss_standby(id);
        self.stop_reading(id);
        if let Some(entry) = self.registry.remove(id) {
            if let Some(server) = &entry.server {
                let _ = epoll::delete(&self.epoll, &server.pidfd);
            }
            // Through the closer like every dropped fd; the state is a memfd and the devices
            // /dev/fuse (REGISTER checked both), so neither close waits; held fds may.
            self.closer.close(
                entry.principal,
                std::iter::once(entry.state_fd).chain(entry.held.into_values()),
            );
        }
    }

    fn expire(&mut self, now: Instant) {
        for id in self.registry.expired(now) {
            self.counters.recovery_timeouts += 1;
            if self.registry.get(id).is_some_and(|e| e.fail_on_timeout) {
                self.start_failing(id);
            } else {
                self.abort_expired(id);
            }
        }
    }

    /// Entry `id`'s recovery timeout passed: abort its connection, detach its mount, drop it.
    pub(super) fn abort_expired(&mut self, id: u64) {
        if let Some(entry) = self.registry.get(id) {
            let since = entry
                .orphaned_at
                .map_or(Duration::ZERO, |t| Instant::now().saturating_duration_since(t));
            tracing::info!(
                tag = %crate::text::escape(&entry.tag),
                uid = entry.owner_uid, orphaned_ms = since.as_millis() as u64,
                "recovery timeout passed: aborting"
            );
            policy::teardown(entry, true, "recovery timeout");
        }
        self.drop_entry(id);
    }
}

/// What serving one readiness of a client came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Nothing read, or a malformed request answered: keep the connection.
    Keep,
    /// A well-formed request answered: keep the connection, which has now spoken.
    Spoke,
    /// End of stream, a hangup, or a reply that could not be sent: close it.
    Close,
}

/// Answer a client the keeper will not serve with an EMFILE ERROR (without blocking: the socket
/// is non-blocking); the caller then closes it. A request it already sent is read and dropped
/// first (with any fds): closing a socket with unread messages would make the client's next
/// read fail with ECONNRESET before it could see the ERROR.
fn refuse(fd: &OwnedFd, why: &str) {
    let reply = Reply::Error { errno: libc::EMFILE, message: why.into() };
    let _ = protocol::send_message(fd.as_fd(), &protocol::encode_reply(&reply).0, &[]);
    for _ in 0..4 {
        // No room for fds: the kernel drops any without a FLUSH, which closing them could send.
        match protocol::recv_message(fd.as_fd(), MAX_MESSAGE, 0) {
            Ok(Some(_)) => {}
            _ => return,
        }
    }
}

/// The soft `RLIMIT_NOFILE` (the keeper raised it to the hard limit before).
pub(super) fn nofile() -> usize {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// The fd given up when the keeper runs out of fds, so that it can still accept and refuse.
fn open_reserve() -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()
}
