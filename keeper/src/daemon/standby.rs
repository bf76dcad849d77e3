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

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::event_loop::{Keeper, Peer};
use super::handlers::{Handled, Response, fail};
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
        Ok(Response::ok())
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
