//! One function per request: permission checks, registry changes, the reply.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::event_loop::{Keeper, Peer};
use super::policy;
use super::principal::Principal;
use super::registry::{Entry, MAX_ENTRIES, Server};
use crate::protocol::{
    ConnState, ListDetail, ListEntry, MAX_DEVICES, MAX_PAYLOAD, Register, Reply, Request,
};

/// The fds a new entry is charged ([`Entry::fds`] with one device).
const REGISTER_FDS: usize = 3;

/// What to send back, and what to change once it is sent.
#[derive(Debug)]
pub struct Response {
    pub reply: Reply,
    /// Sent with the reply, then closed (dups of what the keeper holds).
    pub fds: Vec<OwnedFd>,
    pub commit: Option<Commit>,
}

/// A change that must happen only if the reply reached the client.
#[derive(Debug)]
pub enum Commit {
    /// The attacher (on client connection `client`) becomes the entry's server.
    Attach { id: u64, pid: u32, pidfd: OwnedFd, client: u64 },
    /// No reply now: it is sent later (a HANDOVER waiting for the live server's answer), or
    /// never (DIED).
    Deferred,
    /// A standby was parked for entry `id`: show it the server's liveness page (WATCH).
    Watch { id: u64 },
}

impl Response {
    pub fn ok() -> Response {
        Response { reply: Reply::Ok, fds: Vec::new(), commit: None }
    }

    pub fn error(errno: i32, message: &str) -> Response {
        Response {
            reply: Reply::Error { errno, message: message.to_owned() },
            fds: Vec::new(),
            commit: None,
        }
    }
}

pub(super) type Handled = Result<Response, Response>;

pub(super) fn fail(errno: i32, message: impl Into<String>) -> Response {
    Response::error(errno, &message.into())
}

impl Keeper {
    /// Answer one decoded request from `peer` that came with `fds` (counts already checked).
    /// `client` names the connection it came on. A handler takes out of `fds` what it keeps;
    /// the caller closes the rest off the loop (their close may wait for a FUSE server).
    pub(super) fn handle(
        &mut self,
        client: u64,
        peer: &Peer,
        req: Request,
        fds: &mut Vec<OwnedFd>,
    ) -> Response {
        // ATTACH, HANDOVER and STANDBY that get no connection are counted by reason (METRICS).
        let takes_over = matches!(
            req,
            Request::Attach { .. } | Request::Handover { .. } | Request::Standby { .. }
        );
        let result = match req {
            Request::Register(reg) => self.register(client, peer, reg, fds),
            Request::AddDevice { tag, index } => self.add_device(client, peer, &tag, index, fds),
            Request::Attach { tag } => self.attach(client, peer, &tag),
            Request::Unregister { tag } => self.unregister(peer, &tag),
            Request::List { skip } => Ok(self.list(peer, skip, ListDetail::Base)),
            Request::ListStats { skip } => Ok(self.list(peer, skip, ListDetail::Stats)),
            Request::ListFull { skip } => Ok(self.list(peer, skip, ListDetail::Full)),
            Request::ListNotes { skip } => Ok(self.list(peer, skip, ListDetail::Notes)),
            Request::Note { tag, note } => self.note(peer, &tag, note),
            Request::Standby { tag } => self.standby(client, peer, &tag),
            Request::Metrics => self.metrics(peer),
            Request::Abort { target } => self.abort_or_umount(peer, &target, true),
            Request::Umount { target } => self.abort_or_umount(peer, &target, false),
            Request::Handover { tag } => self.handover(client, peer, &tag),
            Request::HandoverDone { tag, errno } => self.handover_done(peer, &tag, errno),
            Request::StandIn(answers) => self.stand_in(peer, answers),
            Request::Hold { tag, key } => self.hold(peer, &tag, key, fds),
            Request::Release { tag, key } => self.release(peer, &tag, key),
            Request::Held { tag, after } => self.held(peer, &tag, after),
            Request::Liveness { tag } => self.liveness(peer, &tag, fds),
            Request::Died { tag, server_pid } => self.died(client, peer, &tag, server_pid),
        };
        if takes_over && let Err(Response { reply: Reply::Error { errno, .. }, .. }) = &result {
            self.counters.refuse(*errno);
        }
        result.unwrap_or_else(|e| e)
    }

    pub(super) fn live_pidfd(peer: &Peer) -> Result<OwnedFd, Response> {
        let pidfd = peer.pidfd.as_ref().ok_or_else(|| fail(libc::ESRCH, "peer process gone"))?;
        policy::dup(pidfd).map_err(|e| fail(libc::EMFILE, format!("dup of the pidfd: {e}")))
    }

    /// True if the entry's server is `peer` and alive. A peer outside the keeper's pid namespace
    /// has pid 0, and before Linux 6.9 every pidfd has the same inode: then only a process of the
    /// owner's uid (which could ptrace the server anyway) passes for it.
    pub(super) fn is_server(entry: &Entry, peer: &Peer) -> bool {
        match (&entry.server, &peer.pidfd) {
            (Some(s), Some(p)) => {
                policy::is_alive(s.pidfd.as_fd())
                    && policy::same_process((s.pid, s.pidfd.as_fd()), (peer.pid, p.as_fd()))
                    && (peer.pid != 0 || peer.uid == entry.owner_uid)
            }
            _ => false,
        }
    }

    fn register(
        &mut self,
        client: u64,
        peer: &Peer,
        reg: Register,
        fds: &mut Vec<OwnedFd>,
    ) -> Handled {
        let [device, state] = &fds[..] else {
            return Err(fail(libc::EBADF, "REGISTER needs a device and a state fd"));
        };
        if !policy::is_fuse_device(device.as_fd()) {
            return Err(fail(libc::EBADF, "the device fd is not /dev/fuse (char 10:229)"));
        }
        if !policy::is_sealed_memfd(state.as_fd()) {
            return Err(fail(libc::EBADF, "the state fd is not a memfd sealed against shrinking"));
        }
        check_mountpoint(&reg.mountpoint)?;
        // The registrant names its rescue uid in its own user namespace (a container's). Read
        // through /proc, that namespace is the registrant's only while it is alive (after it
        // exits, its pid may be another process's): unless its pidfd says it still is, the
        // rescue uid cannot be known, and is its own uid (as the keeper sees it).
        let translated = policy::uid_in_keeper_ns(peer.pid, reg.rescue_uid)
            .map_err(|e| fail(libc::EINVAL, format!("rescue uid: {e}")))?;
        let alive =
            peer.pid != 0 && peer.pidfd.as_ref().is_some_and(|p| policy::is_alive(p.as_fd()));
        let rescue_uid = if alive || translated == peer.uid { translated } else { peer.uid };
        if rescue_uid == translated && translated != reg.rescue_uid {
            tracing::info!(
                tag = %crate::text::escape(&reg.tag), pid = peer.pid, given = reg.rescue_uid,
                rescue_uid, "rescue uid translated from the server's user namespace"
            );
        }
        if rescue_uid != translated {
            tracing::warn!(
                tag = %crate::text::escape(&reg.tag), pid = peer.pid, given = reg.rescue_uid,
                rescue_uid, "registrant gone or outside the keeper's pid namespace before its \
                user namespace could be read: its own uid is the rescue uid"
            );
        }
        let reg = Register { rescue_uid, ..reg };
        if let Some(id) = self.registry.find(peer.uid, &reg.tag) {
            self.refresh(id);
            // Its own server registering again (it lost its socket to us): HANDOVER_ASKs go
            // to the new socket from now on.
            if let Some(entry) = self.registry.get_mut(id)
                && Self::is_server(entry, peer)
            {
                entry.server_client = Some(client);
            }
            let alive = self.registry.get(id).is_some_and(|e| e.server.is_some());
            let why = if alive { "its server is alive" } else { "it is orphaned: ATTACH it" };
            return Err(fail(libc::EEXIST, format!("tag {} is registered; {why}", reg.tag)));
        }
        self.within_quota(peer, &reg.tag, state.as_fd())?;
        let id = self.registry.allocate_id();
        // A registrant that died after sending (its process is gone, or it exits before we
        // watch it) leaves a connection that only the keeper holds now: keep it, orphaned, for
        // its next server to attach, as if it had died a moment later.
        let server = match peer.pidfd.as_ref().map(policy::dup) {
            Some(Ok(pidfd)) => {
                self.watch_server(id, &pidfd)
                    .map_err(|e| fail(libc::ENOMEM, format!("cannot watch the server: {e}")))?;
                Some(Server { pid: peer.pid, pidfd, liveness: None })
            }
            Some(Err(e)) => return Err(fail(libc::EMFILE, format!("dup of the pidfd: {e}"))),
            None => None,
        };
        tracing::info!(
            tag = %crate::text::escape(&reg.tag),
            uid = peer.uid, pid = peer.pid, rescue_uid = reg.rescue_uid,
            conn = reg.conn_id, mountpoint = ?reg.mountpoint,
            timeout_ms = reg.recovery_timeout_ms, orphaned = server.is_none(), "registered"
        );
        let orphaned_at = server.is_none().then(Instant::now);
        let state = fds.remove(1);
        let device = fds.remove(0);
        self.registry.insert(Entry {
            id,
            owner_uid: peer.uid,
            principal: peer.principal,
            exempt: self.own.exempt(peer.principal),
            tag: reg.tag,
            rescue_uid: reg.rescue_uid,
            mountpoint: reg.mountpoint,
            conn_id: reg.conn_id,
            recovery_timeout: (reg.recovery_timeout_ms > 0)
                .then(|| Duration::from_millis(reg.recovery_timeout_ms)),
            fail_on_timeout: reg.flags & crate::protocol::REGISTER_FAIL_ON_TIMEOUT != 0,
            reader: None,
            failing: false,
            stand_in: None,
            keeper_fhs: Default::default(),
            next_keeper_fh: 0,
            held: Default::default(),
            negotiation: reg.negotiation,
            state_fd: state,
            devices: [(0, device)].into(),
            server,
            server_client: Some(client),
            orphaned_at,
            stats: Default::default(),
            note: None,
        });
        self.counters.registrations += 1;
        Ok(Response::ok())
    }

    /// Whether `peer`'s principal may hold one more entry, with state `state`: the keeper's
    /// entry and fd bounds, then (for principals that are not exempt) its tag count, its fds,
    /// the fds of all such principals together, and its state bytes (every entry's allocated
    /// pages, measured now: pages written since an entry registered count too).
    fn within_quota(&self, peer: &Peer, tag: &str, state: BorrowedFd<'_>) -> Result<(), Response> {
        let who = peer.principal;
        let refuse = |why: String| {
            tracing::debug!(
                tag = %crate::text::escape(tag), pid = peer.pid, uid = peer.uid,
                principal = %who, "refused REGISTER: {why}"
            );
            Err(fail(libc::EDQUOT, why))
        };
        if self.registry.len() >= MAX_ENTRIES {
            return refuse(format!("the keeper holds {MAX_ENTRIES} connections, its most"));
        }
        if let Err(why) = self.fd_room(who, REGISTER_FDS) {
            return refuse(why);
        }
        if self.own.exempt(who) {
            return Ok(());
        }
        let max_tags = self.limits.max_tags_per_uid;
        if self.registry.count_charged(who) >= max_tags {
            return refuse(format!("at most {max_tags} tags per uid ({who} holds them)"));
        }
        let max_bytes = self.limits.max_state_bytes_per_uid;
        let held: u64 = self
            .registry
            .charged_to(who)
            .map(|e| policy::allocated_bytes(e.state_fd.as_fd()))
            .sum::<u64>()
            .saturating_add(policy::allocated_bytes(state));
        if held > max_bytes {
            return refuse(format!(
                "state memory of {who} would be {held} bytes, above the {max_bytes} allowed"
            ));
        }
        Ok(())
    }

    /// Whether entries may hold `more` fds for `who` ([`super::FdBudget`]), else why not.
    pub(super) fn fd_room(&self, who: Principal, more: usize) -> Result<(), String> {
        let budget = self.fds;
        let (mut all, mut not_exempt, mut mine) = (0, 0, 0);
        for e in self.registry.iter() {
            all += e.fds();
            not_exempt += if e.exempt { 0 } else { e.fds() };
            mine += if e.principal == who { e.fds() } else { 0 };
        }
        if all + more > budget.entries {
            return Err(format!(
                "the keeper's connections hold {all} fds of the {} they may",
                budget.entries
            ));
        }
        if self.own.exempt(who) {
            return Ok(());
        }
        if mine + more > budget.per_principal {
            return Err(format!(
                "at most {} fds per uid ({who} holds {mine})",
                budget.per_principal
            ));
        }
        if not_exempt + more > budget.not_exempt {
            return Err(format!(
                "users other than root hold {not_exempt} fds of the {} they may together",
                budget.not_exempt
            ));
        }
        Ok(())
    }

    /// Notice a server death whose pidfd event is not processed yet.
    pub(super) fn refresh(&mut self, id: u64) {
        if self
            .registry
            .get(id)
            .and_then(|e| e.server.as_ref())
            .is_some_and(|s| !policy::is_alive(s.pidfd.as_fd()))
        {
            self.server_exited(id);
        }
    }

    /// The entry with `tag` whose server is `peer`, else an error saying why not.
    pub(super) fn served_by(&mut self, peer: &Peer, tag: &str) -> Result<u64, Response> {
        let ids = self.registry.by_tag(tag, peer.uid);
        if ids.is_empty() {
            return Err(fail(libc::ENOENT, format!("unknown tag {tag}")));
        }
        ids.into_iter()
            .find(|&id| self.registry.get(id).is_some_and(|e| Self::is_server(e, peer)))
            .ok_or_else(|| fail(libc::EPERM, format!("not the server of tag {tag}")))
    }

    /// [`Keeper::served_by`], with an audit line when the peer is refused.
    pub(super) fn served_by_or_log(
        &mut self,
        peer: &Peer,
        tag: &str,
        what: &str,
    ) -> Result<u64, Response> {
        self.served_by(peer, tag).inspect_err(|refusal| {
            if matches!(refusal.reply, Reply::Error { errno: libc::EPERM, .. }) {
                tracing::warn!(
                    "refused {what} of tag {} by pid {} uid {} gid {}: not its server",
                    crate::text::escape(tag),
                    peer.pid,
                    peer.uid,
                    peer.gid
                );
            }
        })
    }

    fn add_device(
        &mut self,
        client: u64,
        peer: &Peer,
        tag: &str,
        index: u32,
        fds: &mut Vec<OwnedFd>,
    ) -> Handled {
        let id = self.served_by_or_log(peer, tag, "add_device")?;
        if let Some(entry) = self.registry.get_mut(id) {
            entry.server_client = Some(client);
        }
        let device = fds.first().ok_or_else(|| fail(libc::EBADF, "no device fd"))?;
        if !policy::is_fuse_device(device.as_fd()) {
            return Err(fail(libc::EBADF, "the device fd is not /dev/fuse (char 10:229)"));
        }
        let entry = self.registry.get_mut(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        if entry.devices.contains_key(&index) {
            return Err(fail(libc::EEXIST, format!("device {index} of tag {tag} is held")));
        }
        if entry.devices.len() >= MAX_DEVICES {
            return Err(fail(libc::EDQUOT, format!("at most {MAX_DEVICES} devices")));
        }
        let who = entry.principal;
        self.fd_room(who, 1).map_err(|why| fail(libc::EDQUOT, why))?;
        let entry = self.registry.get_mut(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        entry.devices.insert(index, fds.remove(0));
        tracing::info!(tag, uid = entry.owner_uid, index, "device added");
        Ok(Response::ok())
    }

    /// STAND_IN from the entry's server: kept for when it is orphaned.
    fn stand_in(&mut self, peer: &Peer, answers: crate::protocol::StandIn) -> Handled {
        let id = self.served_by_or_log(peer, &answers.tag, "stand_in")?;
        if let Some(entry) = self.registry.get_mut(id) {
            entry.stand_in = Some(answers);
        }
        Ok(Response::ok())
    }

    /// NOTE: the entry's status note, from its owner uid, its rescue uid or root (the decoder
    /// checked its length and characters). The peer's own entry of the tag first, then one it
    /// rescues (another uid's entry of the same tag never shadows its own); replacing the last
    /// note keeps the keeper's memory bounded by its entries. A refusal is logged at debug only:
    /// a note changes nothing but a listing, and the log is not for a hostile uid to fill.
    fn note(&mut self, peer: &Peer, tag: &str, note: String) -> Handled {
        let ids = self.registry.by_tag(tag, peer.uid);
        let permitted = |id: &u64| {
            self.registry.get(*id).is_some_and(|e| peer.uid == 0 || e.concerns(peer.uid))
        };
        let Some(id) = ids.iter().copied().find(permitted) else {
            if ids.is_empty() {
                return Err(fail(libc::ENOENT, format!("unknown tag {tag}")));
            }
            tracing::debug!(
                tag = %crate::text::escape(tag), pid = peer.pid, uid = peer.uid,
                "refused note: neither the owner nor the rescue uid"
            );
            return Err(fail(libc::EPERM, format!("uid {} may not note tag {tag}", peer.uid)));
        };
        let entry = self.registry.get_mut(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        entry.note = (!note.is_empty()).then_some(note);
        Ok(Response::ok())
    }

    /// HOLD from the entry's server: keep the fd under `key`, within the fd quota.
    fn hold(&mut self, peer: &Peer, tag: &str, key: u64, fds: &mut Vec<OwnedFd>) -> Handled {
        let id = self.served_by_or_log(peer, tag, "hold")?;
        if fds.len() != 1 {
            return Err(fail(libc::EBADF, "HOLD takes one fd"));
        }
        let who =
            self.registry.get(id).map(|e| e.principal).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let replacing = self.registry.get(id).is_some_and(|e| e.held.contains_key(&key));
        if !replacing {
            self.fd_room(who, 1).map_err(|why| fail(libc::EDQUOT, why))?;
        }
        let entry = self.registry.get_mut(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let old = entry.held.insert(key, fds.remove(0));
        self.closer.close(who, old);
        Ok(Response::ok())
    }

    /// RELEASE from the entry's server: close the fd held under `key`.
    fn release(&mut self, peer: &Peer, tag: &str, key: u64) -> Handled {
        let id = self.served_by_or_log(peer, tag, "release")?;
        let entry = self.registry.get_mut(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let who = entry.principal;
        let fd = entry.held.remove(&key).ok_or_else(|| fail(libc::ENOENT, "nothing held there"))?;
        self.closer.close(who, [fd]);
        Ok(Response::ok())
    }

    /// HELD from the entry's server: dups of the held fds after `after`, a page at a time.
    fn held(&mut self, peer: &Peer, tag: &str, after: u64) -> Handled {
        let id = self.served_by_or_log(peer, tag, "held")?;
        let entry = self.registry.get(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let mut keys = Vec::new();
        let mut fds = Vec::new();
        let mut more = false;
        let start = after.saturating_add(1);
        for (&key, fd) in entry.held.range(start..).filter(|(k, _)| **k > after) {
            if keys.len() == crate::protocol::MAX_HELD_PER_REPLY {
                more = true;
                break;
            }
            fds.push(policy::dup(fd).map_err(|e| fail(libc::EMFILE, format!("dup: {e}")))?);
            keys.push(key);
        }
        Ok(Response { reply: Reply::Held { keys, more }, fds, commit: None })
    }

    fn attach(&mut self, client: u64, peer: &Peer, tag: &str) -> Handled {
        let id = self.attachable(peer, tag)?;
        if let Some(server) = self.registry.get(id).and_then(|e| e.server.as_ref()) {
            return Err(fail(libc::EBUSY, format!("tag {tag} is served by pid {}", server.pid)));
        }
        self.attached(id, client, peer)
    }

    /// Whether `peer` may take `entry` over: it is the entry's rescue uid (or root, with
    /// `--root-may-attach`), and the entry was registered by the peer's own uid or by root. An
    /// entry another unprivileged uid registered never is: its state store and mountpoint are
    /// that uid's word, and a server that trusted them (a root server reopening the file
    /// handles a forged store names) would work for that uid.
    fn may_attach(&self, entry: &Entry, peer: &Peer) -> bool {
        let registered_by = entry.owner_uid == peer.uid || entry.owner_uid == 0;
        let rescues = entry.rescue_uid == peer.uid || (self.root_may_attach && peer.uid == 0);
        registered_by && rescues
    }

    /// The entry `peer` may take over under `tag` (ATTACH or HANDOVER), else why not.
    ///
    /// Entries another unprivileged uid registered under the tag are not the peer's business:
    /// they are passed over (ENOENT when nothing else is there: mount fresh), so that nobody can
    /// keep a server from starting by registering its tag first. Refused (EACCES, audited) are
    /// the peer's own entries and root's that it does not rescue.
    pub(super) fn attachable(&mut self, peer: &Peer, tag: &str) -> Result<u64, Response> {
        let candidates: Vec<u64> = self
            .registry
            .by_tag(tag, peer.uid)
            .into_iter()
            .filter(|id| {
                self.registry.get(*id).is_some_and(|e| e.owner_uid == peer.uid || e.owner_uid == 0)
            })
            .collect();
        let allowed = |id: &u64| self.registry.get(*id).is_some_and(|e| self.may_attach(e, peer));
        let Some(id) = candidates.iter().copied().find(allowed).or(candidates.first().copied())
        else {
            return Err(fail(libc::ENOENT, format!("unknown tag {tag}: mount fresh")));
        };
        self.refresh(id);
        let entry = self.registry.get(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        if !self.may_attach(entry, peer) {
            tracing::warn!(
                "refused attach of tag {tag} by pid {} uid {} gid {} (owner uid {}, rescue uid {})",
                peer.pid,
                peer.uid,
                peer.gid,
                entry.owner_uid,
                entry.rescue_uid
            );
            return Err(fail(libc::EACCES, format!("uid {} may not attach tag {tag}", peer.uid)));
        }
        Ok(id)
    }

    /// The entry a HANDOVER or STANDBY of `tag` by `peer` is about ([`Keeper::attachable`]),
    /// with the pid of the live server it would take over from; `None` for an orphaned
    /// entry, which the caller attaches at once. EINVAL if `peer` is that server itself.
    pub(super) fn takeover(
        &mut self,
        peer: &Peer,
        tag: &str,
    ) -> Result<(u64, Option<u32>), Response> {
        let id = self.attachable(peer, tag)?;
        let entry = self.registry.get(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let Some(server) = &entry.server else { return Ok((id, None)) };
        if Self::is_server(entry, peer) {
            return Err(fail(libc::EINVAL, format!("pid {} already serves tag {tag}", peer.pid)));
        }
        Ok((id, Some(server.pid)))
    }

    /// The ATTACHED response for entry `id` (its fds dup'ed), making `peer` on `client` its
    /// server once sent.
    pub(super) fn attached(&mut self, id: u64, client: u64, peer: &Peer) -> Handled {
        let pidfd = Self::live_pidfd(peer)?;
        let (reply, fds) = self.attached_reply(id)?;
        let commit = Commit::Attach { id, pid: peer.pid, pidfd, client };
        Ok(Response { reply, fds, commit: Some(commit) })
    }

    /// ATTACHED for entry `id`, with dups of its state and device fds.
    pub(super) fn attached_reply(&self, id: u64) -> Result<(Reply, Vec<OwnedFd>), Response> {
        let entry = self.registry.get(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        let dup_err = |e| fail(libc::EMFILE, format!("dup: {e}"));
        let mut fds = vec![policy::dup(&entry.state_fd).map_err(dup_err)?];
        for device in entry.devices.values() {
            fds.push(policy::dup(device).map_err(dup_err)?);
        }
        let reply = Reply::Attached {
            mountpoint: entry.mountpoint.clone(),
            conn_id: entry.conn_id,
            negotiation: entry.negotiation.clone(),
            device_count: entry.devices.len() as u32,
            owner_uid: entry.owner_uid,
        };
        Ok((reply, fds))
    }

    fn unregister(&mut self, peer: &Peer, tag: &str) -> Handled {
        let id = self.served_by_or_log(peer, tag, "unregister")?;
        if let Some(e) = self.registry.get(id) {
            tracing::info!(tag, uid = e.owner_uid, pid = peer.pid, "unregistered");
        }
        self.drop_entry(id);
        Ok(Response::ok())
    }

    /// METRICS: the exposition, for root and the keeper's own uid (the numbers are
    /// node-wide, and computing them reads every connection's fusectl entry).
    fn metrics(&mut self, peer: &Peer) -> Handled {
        if !self.own.exempt(Principal::Uid(peer.uid)) {
            return Err(fail(libc::EPERM, "metrics are for root and the keeper's own uid"));
        }
        let text = self.metrics_text();
        Ok(Response { reply: Reply::Metrics { text }, fds: Vec::new(), commit: None })
    }

    /// LIST, LIST_STATS, LIST_FULL or LIST_NOTES, as `detail` says.
    fn list(&mut self, peer: &Peer, skip: u32, detail: ListDetail) -> Response {
        for id in self.registry.ids() {
            self.refresh(id);
        }
        let now = Instant::now();
        let mut visible: Vec<&Entry> =
            self.registry.iter().filter(|e| peer.uid == 0 || e.concerns(peer.uid)).collect();
        visible.sort_by(|a, b| (a.owner_uid, &a.tag).cmp(&(b.owner_uid, &b.tag)));
        let total = visible.len() as u32;
        let mut size = 8;
        let mut entries = Vec::new();
        for e in visible.into_iter().skip(skip as usize) {
            let item = ListEntry {
                tag: e.tag.clone(),
                owner_uid: e.owner_uid,
                rescue_uid: e.rescue_uid,
                mountpoint: e.mountpoint.clone(),
                conn_id: e.conn_id,
                state: if self.handovers.contains_key(&e.id) {
                    ConnState::Attaching
                } else {
                    e.state()
                },
                server_pid: e.server.as_ref().map_or(0, |s| s.pid),
                waiting: fuse_transport::waiting_requests(e.conn_id).unwrap_or(u32::MAX),
                orphaned_ms: match e.state() {
                    ConnState::Serving => 0,
                    _ => e
                        .orphaned_at
                        .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64),
                },
                stats: (detail >= ListDetail::Stats).then_some(e.stats),
                standby_pid: (detail >= ListDetail::Full)
                    .then(|| self.standbys.get(&e.id).map_or(0, |p| p.pid)),
                note: (detail >= ListDetail::Notes).then(|| e.note.clone().unwrap_or_default()),
            };
            size += item.encoded_len(detail);
            if size > MAX_PAYLOAD {
                break;
            }
            entries.push(item);
        }
        let reply = match detail {
            ListDetail::Base => Reply::List { total, entries },
            ListDetail::Stats => Reply::ListStats { total, entries },
            ListDetail::Full => Reply::ListFull { total, entries },
            ListDetail::Notes => Reply::ListNotes { total, entries },
        };
        Response { reply, fds: Vec::new(), commit: None }
    }

    /// The entry a target names: a tag (the peer's own first), else a mountpoint.
    fn resolve(&self, peer: &Peer, target: &str) -> Option<u64> {
        let by_tag = self.registry.by_tag(target, peer.uid);
        let ids = if by_tag.is_empty() {
            self.registry.by_mountpoint(Path::new(target), peer.uid)
        } else {
            by_tag
        };
        // A permitted entry first, so that another user's same tag does not shadow ours.
        let permitted = |id: &u64| {
            self.registry.get(*id).is_some_and(|e| peer.uid == 0 || e.concerns(peer.uid))
        };
        ids.iter().copied().find(permitted).or_else(|| ids.first().copied())
    }

    fn abort_or_umount(&mut self, peer: &Peer, target: &str, abort: bool) -> Handled {
        let what = if abort { "abort" } else { "umount" };
        let Some(id) = self.resolve(peer, target) else {
            return self.teardown_unknown(peer, target, what);
        };
        self.refresh(id);
        let entry = self.registry.get(id).ok_or_else(|| fail(libc::ENOENT, "gone"))?;
        if peer.uid != 0 && !entry.concerns(peer.uid) {
            tracing::warn!(
                "refused {what} of tag {} by pid {} uid {} gid {}",
                crate::text::escape(&entry.tag),
                peer.pid,
                peer.uid,
                peer.gid
            );
            return Err(fail(libc::EACCES, format!("uid {} may not {what} {target}", peer.uid)));
        }
        // UMOUNT of a live server only detaches: the server sees the unmount and exits.
        let do_abort = abort || entry.server.is_none();
        let reason = format!("{what} by pid {} uid {}", peer.pid, peer.uid);
        policy::teardown(entry, do_abort, &reason);
        self.drop_entry(id);
        Ok(Response::ok())
    }

    fn teardown_unknown(&mut self, peer: &Peer, target: &str, what: &str) -> Handled {
        let path = Path::new(target);
        // Found in mountinfo by its text alone: nothing is resolved, so a target under a stalled
        // mount cannot block the keeper.
        let mount = policy::is_normal_absolute(target.as_bytes())
            .then(|| policy::unknown_fuse_mount(path))
            .flatten();
        let Some(mount) = mount else {
            return Err(fail(libc::ENOENT, format!("no connection or FUSE mount named {target}")));
        };
        if peer.uid != 0 {
            return Err(fail(
                libc::EPERM,
                format!(
                    "{target} is a FUSE mount the keeper does not hold: only root may {what} it"
                ),
            ));
        }
        policy::teardown_unknown(path, &mount)
            .map_err(|e| fail(libc::EIO, format!("{target}: {e}")))?;
        tracing::info!(target, pid = peer.pid, "{what} of a FUSE mount the keeper did not hold");
        Ok(Response::ok())
    }
}

/// REGISTER's mountpoint rule: absolute and normal ([`policy::is_normal_absolute`]), and no
/// component a symlink in the keeper's view. A path that does not resolve here (the server's
/// own mount namespace, a mount gone already) or that lies inside another FUSE mount (which is
/// not resolved: its server may be stalled) is accepted: teardown verifies the mount again
/// through an fd before acting on it.
fn check_mountpoint(mountpoint: &Path) -> Result<(), Response> {
    use std::os::unix::ffi::OsStrExt;
    if !policy::is_normal_absolute(mountpoint.as_os_str().as_bytes()) {
        return Err(fail(
            libc::EINVAL,
            format!(
                "mountpoint {:?} must be an absolute path without ., .. or empty components or a \
                 trailing slash",
                mountpoint
            ),
        ));
    }
    let mounts = fuse_transport::read_mountinfo().unwrap_or_default();
    match policy::open_mount_root(mountpoint, &mounts) {
        Err(policy::Walk::Symlink(at)) => Err(fail(
            libc::EINVAL,
            format!(
                "mountpoint {mountpoint:?} goes through a symlink ({at:?}): name the real path"
            ),
        )),
        _ => Ok(()),
    }
}
