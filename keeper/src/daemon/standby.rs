//! Hot standbys: a second server process, started ahead of time, waits at the keeper for the
//! live server of a tag to die, and is handed the connection the moment it does.
//!
//! STANDBY from the standby (allowed to the rescue uid, as ATTACH, with the same audit line
//! and refusal counting): an orphaned connection is attached at once (ATTACHED). For a live
//! server the request is parked and answered OK; then, on one of:
//!
//! - the server's pidfd fires (it died): the entry is orphaned, and unless a pending HANDOVER
//!   takes it first, the standby gets ATTACHED (the same reply as ATTACH's) from the same
//!   loop iteration and becomes the entry's server; no stand-in clone is opened. It writes
//!   RESEND, which brings back what the dead server had read.
//! - the entry goes (UNREGISTER at a clean unmount, UMOUNT, ABORT, the connection ending
//!   while the keeper reads it): the standby gets ERROR ENOENT.
//! - the standby's socket hangs up (it died, or gave up): it is forgotten.
//!
//! At most one standby per entry (a second gets EBUSY while the first's process lives). A
//! parked standby holds nothing but its client connection, which counts against the keeper's
//! client limits like any other; only an uid that could ATTACH the entry can park one. A
//! planned handover leaves the standby parked: it stands by for the new server.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::event_loop::{Keeper, Peer};
use super::handlers::{Commit, Handled, Response, fail};
use super::policy;
use crate::protocol::Reply;

/// A STANDBY waiting for its entry's server to die.
#[derive(Debug)]
pub struct Parked {
    /// The standby's client connection, and its process.
    pub client: u64,
    pub pid: u32,
    pidfd: OwnedFd,
    /// When it was parked.
    since: Instant,
}

impl Keeper {
    /// STANDBY of `tag` by `peer` on client `client`.
    pub(super) fn standby(&mut self, client: u64, peer: &Peer, tag: &str) -> Handled {
        let (id, server) = self.takeover(peer, tag)?;
        let Some(server_pid) = server else {
            tracing::info!(tag, pid = peer.pid, "standby for an orphaned connection: attaching");
            return self.attached(id, client, peer);
        };
        if let Some(parked) = self.standbys.get(&id) {
            if policy::is_alive(parked.pidfd.as_fd()) {
                return Err(fail(
                    libc::EBUSY,
                    format!("a standby (pid {}) is parked for tag {tag} already", parked.pid),
                ));
            }
            // Dead, its hangup not read yet: this one takes its place.
            self.standbys.remove(&id);
        }
        let pidfd = Self::live_pidfd(peer)?;
        tracing::info!(tag, pid = peer.pid, uid = peer.uid, server = server_pid, "standby parked");
        let since = Instant::now();
        self.standbys.insert(id, Parked { client, pid: peer.pid, pidfd, since });
        Ok(Response { commit: Some(Commit::Watch { id }), ..Response::ok() })
    }

    /// LIVENESS from the entry's server: keep its liveness page (replacing one sent before)
    /// and show it to the parked standby. The page must be a memfd of `LIVENESS_LEN` bytes
    /// sealed against shrinking (so that a standby mapping it never faults past its end).
    pub(super) fn liveness(&mut self, peer: &Peer, tag: &str, fds: &mut Vec<OwnedFd>) -> Handled {
        let id = self.served_by_or_log(peer, tag, "liveness")?;
        let [page] = std::mem::take(fds).try_into().map_err(|mut rest: Vec<OwnedFd>| {
            fds.append(&mut rest);
            fail(libc::EBADF, "LIVENESS takes one fd")
        })?;
        if let Err(why) = check_page(page.as_fd()) {
            fds.push(page);
            return Err(fail(libc::EINVAL, format!("not a liveness page: {why}")));
        }
        let entry = self.registry.get(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let who = entry.principal;
        let replacing = entry.server.as_ref().is_some_and(|s| s.liveness.is_some());
        if !replacing {
            self.fd_room(who, 1).map_err(|why| fail(libc::EDQUOT, why))?;
        }
        let server = self
            .registry
            .get_mut(id)
            .and_then(|e| e.server.as_mut())
            .ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let old = server.liveness.replace(page);
        self.closer.close(who, old);
        self.send_watch(id);
        Ok(Response::ok())
    }

    /// WATCH to the standby parked for entry `id`, if it has one and its server sent a
    /// liveness page. Not sent (a failed reopen, the standby gone): it waits for the pidfd,
    /// as without a page.
    pub(super) fn send_watch(&mut self, id: u64) {
        let Some(client) = self.standbys.get(&id).map(|p| p.client) else { return };
        if let Some((reply, page)) = self.watch_message(id)
            && let Err(e) = self.send_to(client, &reply, &[page])
        {
            tracing::warn!("cannot show the standby its server's liveness page: {e}");
        }
    }

    /// The WATCH for entry `id`'s parked standby, if its server sent a liveness page: with a
    /// read-only open of the page.
    pub(super) fn watch_message(&self, id: u64) -> Option<(Reply, OwnedFd)> {
        let server = self.registry.get(id).and_then(|e| e.server.as_ref())?;
        let page = server.liveness.as_ref()?;
        let read_only = rustix::fs::open(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(page)),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        );
        match read_only {
            Ok(fd) => Some((Reply::Watch { server_pid: server.pid }, fd)),
            Err(e) => {
                tracing::warn!(server = server.pid, "cannot reopen its liveness page: {e}");
                None
            }
        }
    }

    /// DIED from client `client`: if it is the standby parked for the entry of `tag`, whose
    /// server is `server_pid`, and the keeper's own read of that server's liveness page proves
    /// every thread of it gone, the entry is orphaned now and handed to the standby (ATTACHED,
    /// as when the pidfd fires). Never answered (a parked standby's STANDBY has an answer to
    /// come, and a DIED that arrives after it has nobody waiting for a reply); anything else
    /// is logged and left to the pidfd.
    pub(super) fn died(&mut self, client: u64, peer: &Peer, tag: &str, server_pid: u32) -> Handled {
        let deferred = Response { commit: Some(Commit::Deferred), ..Response::ok() };
        let Some(id) = self.standbys.iter().find(|(_, p)| p.client == client).map(|(id, _)| *id)
        else {
            // Too late (the pidfd fired first, and the standby serves now) or from no standby:
            // a DIED has no reply, whoever sends it.
            tracing::info!(tag = %crate::text::escape(tag), pid = peer.pid, server = server_pid,
                "DIED from a client that is no parked standby: ignored");
            return Ok(deferred);
        };
        let Some(entry) = self.registry.get(id) else { return Ok(deferred) };
        let verdict = match entry.server.as_ref() {
            _ if entry.tag != tag => Err("another tag than the one it stands by for"),
            None => Err("the connection has no server"),
            Some(s) if s.pid != server_pid => Err("another server than the entry's"),
            Some(s) => match s.liveness.as_ref() {
                None => Err("the server sent no liveness page"),
                Some(page) if read_proves_exit(page.as_fd()) => Ok(()),
                Some(_) => Err("its liveness page does not prove it gone"),
            },
        };
        match verdict {
            // The standby's client is out of the map while its request is served.
            Ok(()) => self.proved_dead.push(id),
            Err(why) => {
                tracing::info!(tag = %crate::text::escape(tag), pid = peer.pid, server = server_pid,
                    "DIED not taken: {why}; waiting for the pidfd");
            }
        }
        Ok(deferred)
    }

    /// Entry `id` was just orphaned: hand it to its parked standby, if it has one that lives.
    /// Not sent (the standby gone meanwhile): the entry stays orphaned, under the usual policy.
    pub(super) fn wake_standby(&mut self, id: u64) {
        if self.registry.get(id).is_none_or(|e| e.server.is_some()) {
            return;
        }
        let Some(parked) = self.standbys.remove(&id) else { return };
        if !policy::is_alive(parked.pidfd.as_fd()) {
            tracing::info!(pid = parked.pid, "the parked standby is gone: the connection waits");
            return;
        }
        let sent = self
            .attached_reply(id)
            .map_err(|_| std::io::Error::other("cannot dup the connection's fds"))
            .and_then(|(reply, fds)| self.send_to(parked.client, &reply, &fds));
        if let Err(e) = sent {
            tracing::warn!(pid = parked.pid, "cannot hand the connection to its standby: {e}");
            // Closed, so that it sees it and can ask again (and then gets it at once).
            self.remove_client(parked.client);
            return;
        }
        let parked_ms = parked.since.elapsed().as_millis() as u64;
        self.counters.standby_takeovers += 1;
        self.become_server(id, parked.pid, parked.pidfd, parked.client, Instant::now());
        if let Some(entry) = self.registry.get(id) {
            tracing::info!(
                tag = %crate::text::escape(&entry.tag), uid = entry.owner_uid, pid = parked.pid,
                parked_ms, devices = entry.devices.len(), "handed over to the standby: serving again"
            );
        }
    }

    /// Entry `id` goes: its standby is told (ENOENT) and forgotten.
    pub(super) fn dismiss_standby(&mut self, id: u64) {
        let Some(parked) = self.standbys.remove(&id) else { return };
        tracing::info!(pid = parked.pid, "the connection ended: its standby is dismissed");
        let reply = Reply::Error {
            errno: libc::ENOENT,
            message: "the connection ended (unmounted or unregistered): nothing to take over"
                .into(),
        };
        let _ = self.send_to(parked.client, &reply, &[]);
    }

    /// Client `client` closed: a standby parked on it is forgotten.
    pub(super) fn standby_gone(&mut self, client: u64) {
        self.standbys.retain(|_, p| {
            if p.client == client {
                tracing::info!(pid = p.pid, "a parked standby hung up");
            }
            p.client != client
        });
    }
}

/// Why `page` is not a liveness page the keeper may hand a standby: a memfd (it has seals) of
/// `LIVENESS_LEN` bytes that can no longer shrink.
fn check_page(page: BorrowedFd<'_>) -> Result<(), String> {
    use rustix::fs::SealFlags;
    let seals = rustix::fs::fcntl_get_seals(page).map_err(|e| format!("no seals ({e})"))?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err("not sealed against shrinking".into());
    }
    let st = rustix::fs::fstat(page).map_err(|e| e.to_string())?;
    if usize::try_from(st.st_size).ok() != Some(crate::protocol::liveness::LIVENESS_LEN) {
        return Err(format!("{} bytes", st.st_size));
    }
    Ok(())
}

/// Whether the keeper's own read of `page` proves its server gone (`protocol::liveness`).
fn read_proves_exit(page: BorrowedFd<'_>) -> bool {
    let mut buf = vec![0; crate::protocol::liveness::LIVENESS_LEN];
    matches!(rustix::io::pread(page, &mut buf, 0), Ok(n) if n == buf.len())
        && crate::protocol::liveness::proves_exit(&buf)
}
