//! The epoll loop: accept clients, read one request per readiness, answer it, watch server
//! pidfds, expire grace deadlines, stop on SIGTERM/SIGINT.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use rustix::process::{Pid, PidfdFlags};

use super::handlers::{Commit, Response};
use super::registry::Registry;
use super::{DaemonError, MAX_CLIENTS, policy};
use crate::protocol::{self, MAX_MESSAGE, MAX_REQUEST_FDS, Reply};

const TOKEN_LISTENER: u64 = 0;
const TOKEN_SIGNAL: u64 = 1;
const CLIENT_BIT: u64 = 1 << 62;
const PIDFD_BIT: u64 = 1 << 63;
const ID_MASK: u64 = CLIENT_BIT - 1;

/// Who is at the other end of a client connection (the process that connected).
#[derive(Debug)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// `SO_PEERPIDFD`, else `pidfd_open(pid)`; `None` if the peer was already gone.
    pub pidfd: Option<OwnedFd>,
}

#[derive(Debug)]
struct Client {
    fd: OwnedFd,
    peer: Peer,
}

/// The daemon's state.
#[derive(Debug)]
pub struct Keeper {
    epoll: OwnedFd,
    listener: OwnedFd,
    /// Held for epoll: readable once SIGTERM or SIGINT arrived.
    _signal_rx: OwnedFd,
    clients: HashMap<u64, Client>,
    next_client: u64,
    pub(super) registry: Registry,
    pub(super) root_may_attach: bool,
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
                next_client: 0,
                registry: Registry::default(),
                root_may_attach,
            })
        };
        setup().map_err(DaemonError::Setup)
    }

    /// Serve until SIGTERM or SIGINT.
    pub fn run(mut self) -> Result<(), DaemonError> {
        tracing::info!(root_may_attach = self.root_may_attach, "keeper started");
        let mut events = Vec::with_capacity(64);
        loop {
            let timeout = self.registry.next_deadline().map(|d| {
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
                    t if t & PIDFD_BIT != 0 => self.server_exited(t & ID_MASK),
                    t => self.client_ready(t & ID_MASK, flags),
                }
            }
            self.expire(Instant::now());
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
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_client(&mut self, fd: OwnedFd) {
        if self.clients.len() >= MAX_CLIENTS {
            let reply = Reply::Error { errno: libc::EMFILE, message: "too many clients".into() };
            let _ = protocol::send_message(fd.as_fd(), &protocol::encode_reply(&reply).0, &[]);
            tracing::warn!("refused a client: {MAX_CLIENTS} connections already");
            return;
        }
        let cred = match rustix::net::sockopt::socket_peercred(&fd) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("SO_PEERCRED failed: {e}");
                return;
            }
        };
        let pid = cred.pid.as_raw_nonzero().get();
        let pidfd = crate::sys::peer_pidfd(fd.as_fd())
            .or_else(|_| {
                let pid = Pid::from_raw(pid).ok_or(Errno::SRCH)?;
                rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(io::Error::from)
            })
            .ok();
        let peer = Peer { uid: cred.uid.as_raw(), gid: cred.gid.as_raw(), pid: pid as u32, pidfd };
        self.next_client += 1;
        let id = self.next_client;
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        let data = epoll::EventData::new_u64(CLIENT_BIT | id);
        if let Err(e) = epoll::add(&self.epoll, &fd, data, flags) {
            tracing::warn!("epoll add of a client failed: {e}");
            return;
        }
        self.clients.insert(id, Client { fd, peer });
    }

    fn client_ready(&mut self, id: u64, flags: epoll::EventFlags) {
        let Some(client) = self.clients.remove(&id) else { return };
        if self.serve_one(&client, flags) {
            self.clients.insert(id, client);
        } else {
            let _ = epoll::delete(&self.epoll, &client.fd);
        }
    }

    /// Read and answer one request. False when the client is to be closed.
    fn serve_one(&mut self, client: &Client, flags: epoll::EventFlags) -> bool {
        if !flags.contains(epoll::EventFlags::IN) {
            return false;
        }
        let received = match protocol::recv_message(client.fd.as_fd(), MAX_MESSAGE, MAX_REQUEST_FDS)
        {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
            Err(_) => return false,
        };
        let Response { reply, fds, commit } = self.respond(&client.peer, received);
        let (bytes, _) = protocol::encode_reply(&reply);
        let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
        if let Err(e) = protocol::send_message(client.fd.as_fd(), &bytes, &borrowed) {
            tracing::debug!(pid = client.peer.pid, "reply not sent, closing the client: {e}");
            return false;
        }
        if let Some(commit) = commit {
            self.apply(commit);
        }
        true
    }

    fn respond(&mut self, peer: &Peer, received: protocol::Received) -> Response {
        if received.truncated {
            return Response::error(libc::EMSGSIZE, "message larger than 65536 bytes");
        }
        if received.fds_truncated {
            return Response::error(libc::EBADF, "more than 16 file descriptors");
        }
        match protocol::decode_request(&received.bytes, received.fds.len()) {
            Ok(req) => self.handle(peer, req, received.fds),
            Err(e) => {
                tracing::debug!(pid = peer.pid, uid = peer.uid, "malformed request: {e}");
                Response::error(e.errno(), &e.to_string())
            }
        }
    }

    fn apply(&mut self, commit: Commit) {
        match commit {
            Commit::Attach { id, pid, pidfd } => {
                let data = epoll::EventData::new_u64(PIDFD_BIT | id);
                if let Err(e) = epoll::add(&self.epoll, &pidfd, data, epoll::EventFlags::IN) {
                    tracing::warn!(pid, "cannot watch the attached server's pidfd: {e}");
                }
                if let Some(entry) = self.registry.get_mut(id) {
                    entry.server = Some(super::registry::Server { pid, pidfd });
                    entry.orphaned_at = None;
                    tracing::info!(
                        tag = %entry.tag, uid = entry.owner_uid, pid,
                        devices = entry.devices.len(), "attached: serving again"
                    );
                }
            }
        }
    }

    /// Watch `pidfd` as the server of entry `id`.
    pub(super) fn watch_server(&self, id: u64, pidfd: &OwnedFd) -> io::Result<()> {
        let data = epoll::EventData::new_u64(PIDFD_BIT | id);
        Ok(epoll::add(&self.epoll, pidfd, data, epoll::EventFlags::IN)?)
    }

    /// The entry's server has died (or we were told so): orphan the entry.
    pub(super) fn server_exited(&mut self, id: u64) {
        let Some(entry) = self.registry.get_mut(id) else { return };
        let Some(server) = entry.server.take_if(|s| !policy::is_alive(s.pidfd.as_fd())) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &server.pidfd);
        entry.orphaned_at = Some(Instant::now());
        tracing::info!(
            tag = %entry.tag, uid = entry.owner_uid, pid = server.pid, conn = entry.conn_id,
            timeout_ms = entry.recovery_timeout.map(|t| t.as_millis() as u64),
            "server exited: connection orphaned"
        );
    }

    /// Remove entry `id`, closing its fds.
    pub(super) fn drop_entry(&mut self, id: u64) {
        if let Some(entry) = self.registry.remove(id)
            && let Some(server) = &entry.server
        {
            let _ = epoll::delete(&self.epoll, &server.pidfd);
        }
    }

    fn expire(&mut self, now: Instant) {
        for id in self.registry.expired(now) {
            if let Some(entry) = self.registry.get(id) {
                let since = entry.orphaned_at.map(|t| now - t).unwrap_or(Duration::ZERO);
                tracing::info!(
                    tag = %entry.tag, uid = entry.owner_uid, orphaned_ms = since.as_millis() as u64,
                    "recovery timeout passed: aborting"
                );
                policy::teardown(entry, true, "recovery timeout");
            }
            self.drop_entry(id);
        }
    }
}
