//! The server's links to its keepers: each keeper is given every device fd before the server
//! reads from it, and is given them all again when it restarts.
//!
//! A server may register with several keepers (`-o keeper=PATH1:PATH2`), so that one keeper
//! dying while the server dies too loses nothing. The server holds a dup of every device fd
//! and of its state store; a watcher thread sees a keeper's hangup at once (the keeper socket
//! turns readable with EOF), reconnects with backoff (10 ms doubling to 200 ms, so a restarted
//! keeper knows the mount within about 200 ms) and sends REGISTER and ADD_DEVICE again. A
//! keeper that never answered is retried the same way.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fuse_keeper_client::KeeperError;
use fuse_keeper_client::client::{HandoverAsk, KeeperClient, Registration};
use fuse_keeper_client::protocol::StandIn;
use fuse_server::DeviceCustody;

use crate::liveness::Liveness;
use rustix::event::{PollFd, PollFlags};
use tracing::{info, warn};

const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;
const ENOENT: i32 = 2;
const EPERM: i32 = 1;
const FIRST_RETRY: Duration = Duration::from_millis(10);
const MAX_RETRY: Duration = Duration::from_millis(200);

/// One keeper.
pub(crate) struct Link {
    pub socket: PathBuf,
    /// May this server start the keeper when none answers?
    start: bool,
    client: Option<KeeperClient>,
    /// How many of the connection's device fds this keeper holds (index order).
    held: usize,
    /// Whether the keeper holds the registration (REGISTER accepted or ATTACH done).
    registered: bool,
    /// When to try again after a failure.
    retry_at: Instant,
    backoff: Duration,
    /// Whether this keeper holds the latest STAND_IN.
    stand_in_sent: bool,
    /// Whether this keeper holds this server's liveness page (or cannot take one).
    liveness_sent: bool,
}

impl Link {
    /// A link to the keeper at `socket`, connected if it answers (or once started).
    pub fn connect(socket: &Path, start: bool) -> (Link, Option<KeeperError>) {
        let mut link = Link {
            socket: socket.to_path_buf(),
            start,
            client: None,
            held: 0,
            registered: false,
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
            stand_in_sent: false,
            liveness_sent: false,
        };
        let err = link.try_connect().err();
        (link, err)
    }

    /// A link over `client`, already connected to the keeper at `socket` (a standby's, on
    /// which the keeper handed it the connection).
    pub fn with_client(socket: &Path, start: bool, client: KeeperClient) -> Link {
        Link {
            socket: socket.to_path_buf(),
            start,
            client: Some(client),
            held: 0,
            registered: false,
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
            stand_in_sent: false,
            liveness_sent: false,
        }
    }

    fn try_connect(&mut self) -> Result<(), KeeperError> {
        let client = match KeeperClient::connect(&self.socket) {
            Ok(client) => client,
            Err(err) if !self.start => return Err(err),
            Err(err) => {
                info!(%err, socket = %self.socket.display(), "no keeper answers; starting one");
                start_keeper(&self.socket)?;
                KeeperClient::connect(&self.socket)?
            }
        };
        self.client = Some(client);
        Ok(())
    }

    pub fn client(&mut self) -> Option<&mut KeeperClient> {
        self.client.as_mut()
    }

    /// The keeper handed back `devices` device fds on ATTACH: it holds them and the
    /// registration.
    pub fn attached(&mut self, devices: usize) {
        self.held = devices;
        self.registered = true;
    }

    /// What woke the watcher on this keeper's socket. Called with the links locked, so no
    /// request is in flight: the keeper speaks first only to ask for a handover, and a
    /// readable socket with nothing to read (a reply another thread was about to read woke
    /// the watcher) is nothing.
    fn event(&mut self) -> Event {
        let Some(client) = &mut self.client else { return Event::Nothing };
        match client.next_ask() {
            Ok(Some(ask)) => Event::Ask(ask),
            Ok(None) => Event::Nothing,
            // EOF, an error, or a message nobody asked for: start again with a new socket.
            Err(err) => Event::Hangup(err.to_string()),
        }
    }

    fn lost(&mut self, why: &dyn std::fmt::Display) {
        self.stand_in_sent = false;
        self.liveness_sent = false;
        if self.client.take().is_some() {
            warn!(socket = %self.socket.display(), %why, "lost the keeper; reconnecting");
        }
        self.held = 0;
        self.registered = false;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }
}

fn start_keeper(socket: &Path) -> Result<(), KeeperError> {
    let bin = fuse_keeper_client::find_keeper_binary().ok_or_else(|| {
        KeeperError::Protocol("fuse-keeper binary not found (set FUSE_KEEPER_BIN)".into())
    })?;
    fuse_keeper_client::spawn_detached(&bin, socket)
        .map_err(|error| KeeperError::Connect { path: socket.into(), error })
}

enum Event {
    Nothing,
    Hangup(String),
    Ask(HandoverAsk),
}

/// How this server answers a keeper asking it to hand its connection over.
pub(crate) struct HandoverPolicy {
    /// Stops the session's workers between requests.
    pub stop: fuse_transport::ReadStop,
    /// Whether to agree at all.
    pub allow: bool,
}

/// Every keeper of one connection, with what each must be given.
pub(crate) struct Links {
    links: Mutex<Vec<Link>>,
    registration: Mutex<Registration>,
    state: OwnedFd,
    /// Dups of every device fd, in index order, to give a restarted keeper.
    devices: Mutex<Vec<OwnedFd>>,
    /// Set once the session runs.
    handover: Mutex<Option<HandoverPolicy>>,
    /// After the workers were stopped for a handover: `Some(true)` once the keeper took the
    /// connection back, `Some(false)` if the handover fell through (serve again).
    verdict: Mutex<Option<Option<u32>>>,
    verdict_ready: Condvar,
    /// What the keepers may answer while the connection is orphaned (the latest).
    stand_in: Mutex<Option<StandIn>>,
    /// Dups of the fds the keepers hold for the next server (HOLD), by key, to give a keeper
    /// that registers again.
    held: Mutex<std::collections::BTreeMap<u64, OwnedFd>>,
    /// This server's liveness page, given to every keeper that holds the registration.
    liveness: Mutex<Option<Arc<Liveness>>>,
}

impl Links {
    pub fn new(links: Vec<Link>, registration: Registration, state: OwnedFd) -> Links {
        Links {
            links: Mutex::new(links),
            registration: Mutex::new(registration),
            state,
            devices: Mutex::new(Vec::new()),
            handover: Mutex::new(None),
            verdict: Mutex::new(None),
            verdict_ready: Condvar::new(),
            stand_in: Mutex::new(None),
            held: Mutex::default(),
            liveness: Mutex::new(None),
        }
    }

    /// The connection's tag.
    fn tag(&self) -> String {
        self.registration.lock().unwrap_or_else(|p| p.into_inner()).tag.clone()
    }

    /// The fds the keeper this server attached from holds for it (HELD), also kept here to
    /// give a keeper that registers again.
    pub fn fetch_held(&self) -> Vec<(u64, OwnedFd)> {
        let tag = self.tag();
        let mut links = self.lock();
        let Some(client) = links.iter_mut().filter(|l| l.registered).find_map(Link::client) else {
            return Vec::new();
        };
        match client.held(&tag) {
            Ok(held) => {
                let mut ours = self.held.lock().unwrap_or_else(|p| p.into_inner());
                for (key, fd) in &held {
                    if let Ok(dup) = fd.try_clone() {
                        ours.insert(*key, dup);
                    }
                }
                held
            }
            Err(err) => {
                warn!(%err, "the keeper's held fds are not had: files with no name are stale");
                Vec::new()
            }
        }
    }

    /// HOLD of every kept fd to the keepers in `links` (one that registered again).
    fn send_held(&self, links: &mut [Link]) {
        let tag = self.tag();
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for link in links.iter_mut().filter(|l| l.registered) {
            for (&key, fd) in held.iter() {
                let Some(client) = link.client.as_mut() else { break };
                if let Err(err) = client.hold(&tag, key, fd.as_fd()) {
                    warn!(socket = %link.socket.display(), key, %err, "HOLD not taken");
                }
            }
        }
    }

    /// This server's liveness page, from now on: given to each keeper that holds the
    /// registration when it registers (or the next [`Links::send_liveness`]), and held for
    /// the keeper-watch thread.
    pub fn set_liveness(&self, liveness: Arc<Liveness>) {
        *self.liveness.lock().unwrap_or_else(|p| p.into_inner()) = Some(liveness);
    }

    /// The page [`Links::set_liveness`] set.
    pub fn liveness(&self) -> Option<Arc<Liveness>> {
        self.liveness.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// LIVENESS to each registered keeper that lacks the page.
    pub fn send_liveness(&self) {
        let mut links = self.lock();
        self.send_liveness_to(&mut links);
    }

    /// LIVENESS to each keeper of `links` that holds the registration and lacks the page. A
    /// keeper too old to know it is not asked again; any other failure is retried when the
    /// link heals (a standby then waits for the pidfd meanwhile).
    fn send_liveness_to(&self, links: &mut [Link]) {
        let Some(liveness) = self.liveness() else { return };
        let tag = self.tag();
        for link in links.iter_mut().filter(|l| l.registered && !l.liveness_sent) {
            let Some(client) = link.client.as_mut() else { continue };
            match client.liveness(&tag, liveness.fd()) {
                Ok(()) => link.liveness_sent = true,
                Err(err) if err.errno() == Some(EOPNOTSUPP) => {
                    info!(socket = %link.socket.display(), "the keeper takes no liveness page: {err}");
                    link.liveness_sent = true;
                }
                Err(err) => warn!(socket = %link.socket.display(), %err, "LIVENESS not taken"),
            }
        }
    }

    /// What the keepers may answer while the connection is orphaned, from now on: sent to
    /// every keeper that holds the registration now, and to the others once they do.
    pub fn set_stand_in(&self, answers: StandIn) {
        *self.stand_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(answers);
        let mut links = self.lock();
        for link in links.iter_mut() {
            link.stand_in_sent = false;
        }
        self.send_stand_in(&mut links);
    }

    /// Sends the latest STAND_IN to each registered keeper that lacks it. A keeper that does
    /// not know the request (an older one) is not asked again; any other failure is retried
    /// when the link heals.
    fn send_stand_in(&self, links: &mut [Link]) {
        let answers = self.stand_in.lock().unwrap_or_else(|p| p.into_inner());
        let Some(answers) = answers.as_ref() else { return };
        for link in links.iter_mut().filter(|l| l.registered && !l.stand_in_sent) {
            let Some(client) = link.client.as_mut() else { continue };
            match client.stand_in(answers) {
                Ok(()) => link.stand_in_sent = true,
                Err(err) if err.errno() == Some(EOPNOTSUPP) => {
                    info!(socket = %link.socket.display(), "the keeper cannot stand in: {err}");
                    link.stand_in_sent = true;
                }
                Err(err) => warn!(socket = %link.socket.display(), %err, "STAND_IN not taken"),
            }
        }
    }

    /// How to answer a handover request from now on.
    pub fn set_handover(&self, policy: HandoverPolicy) {
        *self.handover.lock().unwrap_or_else(|p| p.into_inner()) = Some(policy);
    }

    /// Called once the session's workers have stopped because of a handover: waits for the
    /// keeper's verdict. `Some(pid)`: the connection is handed over to the server `pid` (as the
    /// keeper saw it asking; exit without unregistering); `None`: serve again.
    pub fn handed_over(&self) -> Option<u32> {
        let mut verdict = self.verdict.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = verdict.take() {
                return v;
            }
            verdict = self.verdict_ready.wait(verdict).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn set_verdict(&self, handed_over: Option<u32>) {
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(handed_over);
        self.verdict_ready.notify_all();
    }

    /// Answers a keeper's HANDOVER_ASK (on the watcher thread): refuse, or stop the workers
    /// (every request they read is answered first), tell the keeper, and pass its verdict to
    /// the thread that ran the session.
    fn answer_ask(&self, i: usize, ask: HandoverAsk) {
        let policy = self.handover.lock().unwrap_or_else(|p| p.into_inner());
        let tag = ask.tag.clone();
        let done = |errno| {
            let mut links = self.lock();
            match links[i].client() {
                Some(client) => client.handover_done(&tag, errno),
                None => Err(KeeperError::Closed),
            }
        };
        let Some(policy) = policy.as_ref().filter(|p| p.allow) else {
            warn!(tag, pid = ask.pid, uid = ask.uid, "handover asked: refused (not allowed)");
            let _ = done(EPERM);
            return;
        };
        info!(tag, pid = ask.pid, uid = ask.uid, "handover asked: stopping the workers");
        let asked = Instant::now();
        policy.stop.stop();
        match done(0) {
            Ok(()) => {
                info!(tag, stop_us = asked.elapsed().as_micros() as u64, "handed over");
                self.set_verdict(Some(ask.pid));
            }
            Err(err) => {
                warn!(tag, %err, "the handover fell through: serving again");
                policy.stop.resume();
                self.set_verdict(None);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives device `index` to every connected keeper that does not hold it yet. With
    /// `strict`, the first keeper's refusal is an error (the server must not read from an fd
    /// its keeper does not hold); otherwise a refusal is logged and healed by the watcher.
    fn give(
        &self,
        links: &mut [Link],
        fd: BorrowedFd<'_>,
        index: usize,
        strict: bool,
    ) -> io::Result<()> {
        let mut registration = self.registration.lock().unwrap_or_else(|p| p.into_inner());
        if index == 0 && registration.conn_id == 0 {
            // A fresh mount exists now: its connection number can be read.
            registration.conn_id = fuse_transport::connection_id(&registration.mountpoint)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        for (i, link) in links.iter_mut().enumerate() {
            if link.held > index {
                continue;
            }
            let Some(client) = link.client.as_mut() else { continue };
            let result = if link.registered {
                client.add_device(&registration.tag, index as u32, fd)
            } else if index == 0 {
                client.register(&registration, fd, self.state.as_fd())
            } else {
                continue;
            };
            // EEXIST: the keeper still holds it, and only our socket to it was lost (it keys
            // registrations by our pidfd, not by the socket).
            let result = match result {
                Err(err) if err.errno() == Some(EEXIST) => Ok(()),
                other => other,
            };
            match result {
                Ok(()) => {
                    link.registered = true;
                    link.held = index + 1;
                    link.backoff = FIRST_RETRY;
                }
                Err(err) if strict && i == 0 => {
                    return Err(io::Error::other(format!(
                        "keeper refused device fd {index}: {err}"
                    )));
                }
                Err(err) => link.lost(&err),
            }
        }
        drop(registration);
        self.send_stand_in(links);
        Ok(())
    }

    /// Gives everything again to each keeper that has lost it (restarted, or never reached).
    fn heal(&self) {
        let devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        let mut links = self.lock();
        let now = Instant::now();
        for i in 0..links.len() {
            let link = &mut links[i];
            if link.client.is_some() && link.registered || link.retry_at > now {
                continue;
            }
            if link.client.is_none()
                && let Err(err) = link.try_connect()
            {
                link.lost(&err);
                continue;
            }
            link.held = 0;
            for (index, fd) in devices.iter().enumerate() {
                let _ = self.give(&mut links[i..=i], fd.as_fd(), index, false);
                if links[i].client.is_none() {
                    break;
                }
            }
            self.send_stand_in(&mut links[i..=i]);
            self.send_liveness_to(&mut links[i..=i]);
            self.send_held(&mut links[i..=i]);
            if links[i].registered && links[i].held == devices.len() {
                info!(
                    socket = %links[i].socket.display(),
                    devices = devices.len(),
                    "registered again with the keeper"
                );
            }
        }
    }

    /// Watches every keeper until `stop` reads EOF (its write end closed): a keeper's hangup
    /// is seen at once and healed.
    pub fn watch(self: &Arc<Self>, stop: OwnedFd) -> std::thread::JoinHandle<()> {
        let links = self.clone();
        std::thread::Builder::new()
            .name("keeper-watch".into())
            .spawn(move || {
                let _held = links.liveness().and_then(|l| l.hold());
                links.watch_loop(stop)
            })
            .expect("spawning the keeper watcher")
    }

    fn watch_loop(&self, stop: OwnedFd) {
        loop {
            // Sockets to watch, and the nearest retry.
            let (socks, next_retry) = {
                let links = self.lock();
                let socks: Vec<Option<OwnedFd>> = links
                    .iter()
                    .map(|l| l.client.as_ref().and_then(|c| c.as_fd().try_clone_to_owned().ok()))
                    .collect();
                let retry = links
                    .iter()
                    .filter(|l| l.client.is_none() || !l.registered)
                    .map(|l| l.retry_at)
                    .min();
                (socks, retry)
            };
            let mut fds = vec![PollFd::new(&stop, PollFlags::IN)];
            let watched: Vec<usize> =
                socks.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|_| i)).collect();
            for s in socks.iter().flatten() {
                fds.push(PollFd::new(s, PollFlags::IN | PollFlags::RDHUP));
            }
            let timeout = next_retry.map(|at| {
                let ms = at.saturating_duration_since(Instant::now()).as_millis();
                rustix::event::Timespec { tv_sec: 0, tv_nsec: (ms.min(999) as i64) * 1_000_000 }
            });
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => {
                    warn!(%err, "keeper watcher: poll failed; stopping");
                    return;
                }
            }
            if !fds[0].revents().is_empty() {
                return;
            }
            let hung: Vec<usize> = fds[1..]
                .iter()
                .zip(&watched)
                .filter(|(fd, _)| !fd.revents().is_empty())
                .map(|(_, &i)| i)
                .collect();
            drop(fds);
            for i in hung {
                let event = self.lock()[i].event();
                match event {
                    Event::Nothing => {}
                    Event::Hangup(why) => {
                        let mut links = self.lock();
                        links[i].backoff = FIRST_RETRY;
                        links[i].lost(&why);
                    }
                    Event::Ask(ask) => self.answer_ask(i, ask),
                }
            }
            self.heal();
        }
    }

    /// Tells every keeper the connection is over (clean unmount).
    pub fn unregister(&self, tag: &str) {
        for link in self.lock().iter_mut() {
            if let Some(client) = link.client.as_mut()
                && let Err(err) = client.unregister(tag)
            {
                info!(%err, socket = %link.socket.display(), "unregister after unmount");
            }
        }
    }
}

/// The [`DeviceCustody`] of a recoverable session: every device fd goes to the keepers
/// before the server reads from it, and a dup stays here for a restarted keeper.
pub(crate) struct Custody(pub Arc<Links>);

impl DeviceCustody for Custody {
    fn adopt(&self, fd: BorrowedFd<'_>, index: usize) -> io::Result<()> {
        let links = &self.0;
        {
            let mut devices = links.devices.lock().unwrap_or_else(|p| p.into_inner());
            if devices.len() == index {
                devices.push(fd.try_clone_to_owned()?);
            }
        }
        let mut all = links.lock();
        links.give(&mut all, fd, index, true)
    }
}

impl crate::serve::FdKeeper for Links {
    fn hold(&self, key: u64, fd: BorrowedFd<'_>) {
        let Ok(dup) = fd.try_clone_to_owned() else { return };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(key, dup);
        let tag = self.tag();
        for link in self.lock().iter_mut().filter(|l| l.registered) {
            let Some(client) = link.client.as_mut() else { continue };
            if let Err(err) = client.hold(&tag, key, fd) {
                warn!(socket = %link.socket.display(), key, %err, "HOLD not taken");
            }
        }
    }

    fn release(&self, key: u64) {
        if self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&key).is_none() {
            return;
        }
        let tag = self.tag();
        for link in self.lock().iter_mut().filter(|l| l.registered) {
            let Some(client) = link.client.as_mut() else { continue };
            match client.release(&tag, key) {
                Ok(()) => {}
                Err(err) if err.errno() == Some(ENOENT) => {}
                Err(err) => warn!(socket = %link.socket.display(), key, %err, "RELEASE failed"),
            }
        }
    }
}
