//! Planned handover: a new server takes a connection over from a live one that agrees.
//!
//! HANDOVER from the new server (allowed to the rescue uid, as ATTACH): an orphaned
//! connection is attached at once; a live server is sent HANDOVER_ASK on the connection it
//! registered on, and the HANDOVER waits, unanswered, for one of:
//!
//! - HANDOVER_DONE 0 from the server (it has stopped reading and answered every request it
//!   read): the new server gets ATTACHED and becomes the server; the old one gets OK and exits.
//!   Nothing was read and left unanswered, so nothing is resent.
//! - HANDOVER_DONE with an errno (it refuses): the new server gets ECANCELED.
//! - the old server dies: the connection is orphaned, and the new server gets ATTACHED (its
//!   RESEND brings back what the dead server had read).
//! - [`HANDOVER_TIMEOUT`] passes: the new server gets ETIMEDOUT; a HANDOVER_DONE arriving
//!   later is answered ENOENT, and the old server serves on.
//!
//! While one is pending, LIST shows the connection as `attaching`.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::event_loop::{Keeper, Peer};
use super::handlers::{Commit, Handled, Response, fail};
use crate::protocol::Reply;

/// How long the live server has to stop and answer.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// A HANDOVER waiting for the live server's answer.
#[derive(Debug)]
pub struct Pending {
    /// The asking client connection, and its process.
    requester: u64,
    pid: u32,
    pidfd: OwnedFd,
    /// When the HANDOVER arrived.
    asked: Instant,
    pub deadline: Instant,
}

impl Keeper {
    /// HANDOVER of `tag` by `peer` on client `client`.
    pub(super) fn handover(&mut self, client: u64, peer: &Peer, tag: &str) -> Handled {
        let (id, server) = self.takeover(peer, tag)?;
        let Some(old_pid) = server else {
            tracing::info!(tag, pid = peer.pid, "handover of an orphaned connection: attaching");
            return self.attached(id, client, peer);
        };
        if self.handovers.contains_key(&id) {
            return Err(fail(libc::EBUSY, format!("a handover of tag {tag} is in progress")));
        }
        let ask = Reply::HandoverAsk { tag: tag.to_owned(), pid: peer.pid, uid: peer.uid };
        let server_client = self.registry.get(id).and_then(|e| e.server_client);
        let sent = match server_client {
            Some(server_client) => self.send_to(server_client, &ask, &[]),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        };
        if let Err(e) = sent {
            return Err(fail(
                libc::EBUSY,
                format!("tag {tag} is served by pid {old_pid}, which cannot be asked: {e}"),
            ));
        }
        let pidfd = Self::live_pidfd(peer)?;
        tracing::info!(tag, from = old_pid, to = peer.pid, uid = peer.uid, "handover asked");
        let asked = Instant::now();
        let deadline = asked + HANDOVER_TIMEOUT;
        let pending = Pending { requester: client, pid: peer.pid, pidfd, asked, deadline };
        self.handovers.insert(id, pending);
        Ok(Response { reply: Reply::Ok, fds: Vec::new(), commit: Some(Commit::Deferred) })
    }

    /// HANDOVER_DONE of `tag` from its server `peer`.
    pub(super) fn handover_done(&mut self, peer: &Peer, tag: &str, errno: i32) -> Handled {
        let id = self.served_by(peer, tag)?;
        let Some(pending) = self.handovers.remove(&id) else {
            return Err(fail(libc::ENOENT, format!("no handover of tag {tag} is pending")));
        };
        if errno != 0 {
            tracing::info!(tag, pid = peer.pid, errno, "handover refused by the server");
            let refused = Reply::Error {
                errno: libc::ECANCELED,
                message: format!("the server of tag {tag} refused to hand over (errno {errno})"),
            };
            let _ = self.send_to(pending.requester, &refused, &[]);
            self.counters.refuse(libc::ECANCELED);
            return Ok(Response::ok());
        }
        let (reply, fds) = self.attached_reply(id)?;
        if let Err(e) = self.send_to(pending.requester, &reply, &fds) {
            // The old server is told so and serves on.
            self.counters.refuse(libc::ECONNRESET);
            return Err(fail(libc::ECONNRESET, format!("the asking server is gone: {e}")));
        }
        tracing::info!(
            tag,
            from = peer.pid,
            to = pending.pid,
            "handed over: the new server serves, nothing to resend"
        );
        self.become_server(id, pending.pid, pending.pidfd, pending.requester, pending.asked);
        Ok(Response::ok())
    }

    /// The server of entry `id` died: a HANDOVER waiting for it gets the orphaned connection.
    pub(super) fn server_died_during_handover(&mut self, id: u64) {
        let Some(pending) = self.handovers.remove(&id) else { return };
        match self.attached_reply(id) {
            Ok((reply, fds)) if self.send_to(pending.requester, &reply, &fds).is_ok() => {
                tracing::info!(
                    pid = pending.pid,
                    "the server died during the handover: the new server attaches (requests it \
                     had read are resent)"
                );
                self.become_server(
                    id,
                    pending.pid,
                    pending.pidfd,
                    pending.requester,
                    pending.asked,
                );
            }
            _ => tracing::info!(
                pid = pending.pid,
                "the server died during the handover; the \
                                asking server is gone too: the connection stays orphaned"
            ),
        }
    }

    /// HANDOVERs whose server did not answer in time get ETIMEDOUT.
    pub(super) fn expire_handovers(&mut self, now: Instant) {
        let expired: Vec<u64> =
            self.handovers.iter().filter(|(_, p)| p.deadline <= now).map(|(&id, _)| id).collect();
        for id in expired {
            self.cancel_handover(id, libc::ETIMEDOUT, "the server did not answer in time");
        }
    }

    /// Client `client` closed: a HANDOVER it was waiting for is dropped (the server's
    /// HANDOVER_DONE then gets ENOENT and it serves on).
    pub(super) fn requester_gone(&mut self, client: u64) {
        self.handovers.retain(|_, p| p.requester != client);
    }

    /// Fails the HANDOVER pending on entry `id`, if any.
    pub(super) fn cancel_handover(&mut self, id: u64, errno: i32, why: &str) {
        if let Some(pending) = self.handovers.remove(&id) {
            tracing::info!(pid = pending.pid, errno, "handover failed: {why}");
            self.counters.refuse(errno);
            let reply = Reply::Error { errno, message: format!("handover failed: {why}") };
            let _ = self.send_to(pending.requester, &reply, &[]);
        }
    }
}
