//! The keeper client used by servers (register, add devices, attach, unregister) and by the
//! admin commands (list, abort, umount).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::KeeperError;
use crate::protocol::{self, ConnState, ListEntry, MAX_FDS, MAX_MESSAGE, Register, Reply, Request};

/// The environment variable naming the keeper socket, for the daemon and clients alike.
pub const SOCKET_ENV: &str = "FUSE_KEEPER_SOCKET";
/// Root's keeper socket.
pub const ROOT_SOCKET: &str = "/run/fuse-keeper/keeper.sock";
/// Name of a user's keeper socket in `$XDG_RUNTIME_DIR`.
pub const USER_SOCKET_NAME: &str = "fuse-keeper.sock";
/// How long a client waits for the keeper's reply by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The keeper socket: `$FUSE_KEEPER_SOCKET` if set and not empty; else
/// `/run/fuse-keeper/keeper.sock` for root; else `$XDG_RUNTIME_DIR/fuse-keeper.sock`, with
/// `/run/user/<uid>` standing in for an unset `XDG_RUNTIME_DIR` (never a world-writable
/// directory, where another user could squat the name and receive our fds).
pub fn socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from(ROOT_SOCKET);
    }
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", uid.as_raw())));
    dir.join(USER_SOCKET_NAME)
}

/// What a server hands to the keeper with REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The connection's name, unique per owner uid ([`protocol::validate_tag`]).
    pub tag: String,
    /// The only uid that may ATTACH, in the registrant's user namespace (the keeper
    /// translates it through the registrant's `uid_map`).
    pub rescue_uid: u32,
    /// Where the connection is mounted: absolute and normal (no `.`, `..`, `//`, trailing
    /// slash or symlink).
    pub mountpoint: PathBuf,
    /// The connection's number in `/sys/fs/fuse/connections` (the mount's device minor).
    pub conn_id: u32,
    /// How long an orphaned connection is kept before the keeper aborts it; `None` = forever.
    /// Rounded up to whole milliseconds.
    pub recovery_timeout: Option<Duration>,
    /// Bytes the keeper hands back with ATTACH unread, at most
    /// [`protocol::MAX_NEGOTIATION`] (`fuse-recovery` sends none: its negotiation is in the
    /// state store).
    pub negotiation: Vec<u8>,
    /// When the recovery timeout passes, keep the mount and have the keeper answer its
    /// requests with EIO until a server attaches (instead of aborting it).
    pub fail_on_timeout: bool,
}

/// What ATTACH hands back.
#[derive(Debug)]
pub struct Attached {
    /// Where the registrant said the connection is mounted (its own mount namespace's path).
    pub mountpoint: PathBuf,
    /// The FUSE connection number (the mount's device minor).
    pub conn_id: u32,
    /// The uid that registered the connection (and wrote its state): the attacher's own uid,
    /// or root when root registered it for this rescue uid; never another uid.
    pub owner_uid: u32,
    /// The bytes registered as [`Registration::negotiation`].
    pub negotiation: Vec<u8>,
    /// The state fd registered: the very open file (the state store's memfd), not a reopen.
    pub state: OwnedFd,
    /// Every device fd held, in index order (index 0, the mount's own fd, first).
    pub devices: Vec<OwnedFd>,
}

/// One connection as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The connection's tag.
    pub tag: String,
    /// The uid that registered it.
    pub owner_uid: u32,
    /// The only uid that may ATTACH it, in the keeper's user namespace.
    pub rescue_uid: u32,
    /// Where the registrant said it is mounted.
    pub mountpoint: PathBuf,
    /// The connection's number in `/sys/fs/fuse/connections`.
    pub conn_id: u32,
    /// Whether a server serves it.
    pub state: ConnState,
    /// Its server's pid, as the keeper sees it; `None` if it has no server.
    pub server_pid: Option<u32>,
    /// Requests waiting in the connection (fusectl), if known.
    pub waiting: Option<u32>,
    /// How long the connection has had no server; `None` while serving.
    pub orphaned_for: Option<Duration>,
    /// Servers that attached after the previous one died, since the connection was
    /// registered; `None` from a keeper too old to say (it knows LIST only).
    pub recoveries: Option<u32>,
    /// Planned handovers from a live server; `None` from a keeper too old to say.
    pub handovers: Option<u32>,
    /// How long the last recovery left the connection without a server (the keeper seeing the
    /// death to the next server's ATTACHED); `None` before the first, or from an old keeper.
    pub last_recovery: Option<Duration>,
    /// The pid of the hot standby parked for the connection (STANDBY), as the keeper sees it;
    /// `None` if none is parked, or from a keeper too old to say (it knows no LIST_FULL).
    pub standby_pid: Option<u32>,
    /// The status note published for the connection ([`KeeperClient::note`]), as the keeper
    /// holds it: at most [`protocol::MAX_NOTE`] bytes, for display (print it escaped: an old or
    /// foreign keeper may not check it). `None` if it has none, or from a keeper too old to say
    /// (it knows no LIST_NOTES).
    pub note: Option<String>,
}

impl From<ListEntry> for ConnInfo {
    fn from(e: ListEntry) -> Self {
        ConnInfo {
            tag: e.tag,
            owner_uid: e.owner_uid,
            rescue_uid: e.rescue_uid,
            mountpoint: e.mountpoint,
            conn_id: e.conn_id,
            state: e.state,
            server_pid: (e.server_pid != 0).then_some(e.server_pid),
            waiting: (e.waiting != u32::MAX).then_some(e.waiting),
            orphaned_for: (e.state != ConnState::Serving)
                .then(|| Duration::from_millis(e.orphaned_ms)),
            recoveries: e.stats.map(|s| s.recoveries),
            handovers: e.stats.map(|s| s.handovers),
            last_recovery: e.stats.and_then(|s| s.last_recovery_us).map(Duration::from_micros),
            standby_pid: e.standby_pid.filter(|&pid| pid != 0),
            note: e.note.filter(|note| !note.is_empty()),
        }
    }
}

/// How the keeper answered a STANDBY ([`KeeperClient::standby`]).
#[derive(Debug)]
pub enum StandbyReply {
    /// The connection was orphaned already: taken over at once, as by ATTACH.
    Attached(Attached),
    /// Parked: the keeper answers again, with the connection or with its end, when the
    /// server dies or the connection goes ([`KeeperClient::standby_wait`]).
    Parked,
    /// The keeper holds no connection under the tag that this uid may take over (its server
    /// has not registered yet, or it is gone).
    Unknown,
}

/// What a parked standby hears next ([`KeeperClient::standby_next`]).
#[derive(Debug)]
pub enum StandbyEvent {
    /// The server died: the connection is this standby's now.
    Attached(Attached),
    /// The connection ended first (unmounted cleanly, or through the keeper).
    Ended,
    /// WATCH: the liveness page (read-only) of the server stood by for, `server_pid`. Wait on
    /// it ([`protocol::liveness`]) and send DIED ([`DiedSender`]) once it proves the server
    /// gone: the keeper then answers ATTACHED without waiting for the dead process's
    /// teardown. Another WATCH replaces it (a new server).
    Watch {
        /// The server the page belongs to.
        server_pid: u32,
        /// The page, a read-only memfd of [`protocol::liveness::LIVENESS_LEN`] bytes.
        page: OwnedFd,
    },
}

/// Sends DIED on a parked standby's connection, from any thread, while the standby waits in
/// [`KeeperClient::standby_next`] on the same connection.
#[derive(Debug)]
pub struct DiedSender {
    sock: OwnedFd,
}

impl DiedSender {
    /// DIED: the liveness page of `server_pid` (as WATCH named it) proves every thread of
    /// `tag`'s server died. It has no reply: the parked STANDBY is answered instead.
    pub fn send(&self, tag: &str, server_pid: u32) -> Result<(), KeeperError> {
        let msg = protocol::encode_request(&Request::Died { tag: tag.into(), server_pid });
        protocol::send_message(self.sock.as_fd(), &msg, &[])?;
        Ok(())
    }
}

/// A connection to the keeper. One request at a time: each call sends a request and waits for
/// its reply.
#[derive(Debug)]
pub struct KeeperClient {
    sock: OwnedFd,
    /// HANDOVER_ASKs that arrived while a reply was awaited.
    asks: Vec<HandoverAsk>,
}

/// Another server asks for a connection this client serves (HANDOVER_ASK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverAsk {
    /// The tag of the connection asked for.
    pub tag: String,
    /// The asking process, as the keeper sees it.
    pub pid: u32,
    /// The asking process's uid, as the keeper sees it.
    pub uid: u32,
}

fn timeout_ms(d: Option<Duration>) -> u64 {
    match d {
        None => 0,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            u64::try_from(ms).unwrap_or(u64::MAX).max(1)
        }
    }
}

fn seqpacket() -> std::io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A SOCK_SEQPACKET socket bound at `path` and listening (backlog `backlog`): the kind of
/// socket a keeper listens on, for a stand-in keeper in tests. No directory checks, no
/// permissions set: the daemon's own socket is made with those (`fuse-keeper serve`).
pub fn listen_socket(path: &Path, backlog: i32) -> std::io::Result<OwnedFd> {
    let sock = seqpacket()?;
    rustix::net::bind(&sock, &SocketAddrUnix::new(path)?)?;
    rustix::net::listen(&sock, backlog)?;
    Ok(sock)
}

/// A bare SOCK_SEQPACKET connection to the keeper socket at `path` (what
/// [`KeeperClient::connect`] speaks the protocol over).
pub fn connect_socket(path: &Path) -> std::io::Result<OwnedFd> {
    let sock = seqpacket()?;
    rustix::net::connect(&sock, &SocketAddrUnix::new(path)?)?;
    Ok(sock)
}

impl KeeperClient {
    /// Connect to the keeper socket at `path` (replies are awaited for at most
    /// [`DEFAULT_TIMEOUT`]; see [`KeeperClient::set_timeout`]).
    pub fn connect(path: &Path) -> Result<KeeperClient, KeeperError> {
        let sock = connect_socket(path)
            .map_err(|error| KeeperError::Connect { path: path.into(), error })?;
        let mut client = KeeperClient { sock, asks: Vec::new() };
        client.set_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(client)
    }

    /// Wait at most `timeout` for a reply (and for room to send); `None` waits forever.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), KeeperError> {
        use rustix::net::sockopt::{Timeout, set_socket_timeout};
        set_socket_timeout(&self.sock, Timeout::Recv, timeout).map_err(std::io::Error::from)?;
        set_socket_timeout(&self.sock, Timeout::Send, timeout).map_err(std::io::Error::from)?;
        Ok(())
    }

    fn call(
        &mut self,
        req: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(Reply, Vec<OwnedFd>), KeeperError> {
        let msg = protocol::encode_request(req);
        if msg.len() > MAX_MESSAGE {
            return Err(KeeperError::Protocol("request larger than 64 KiB".into()));
        }
        protocol::send_message(self.sock.as_fd(), &msg, fds)?;
        loop {
            match self.receive()? {
                (Reply::Error { errno, message }, _) => {
                    return Err(KeeperError::Refused { errno, message });
                }
                // Unasked, it may come before our reply: keep it for `next_ask`.
                (Reply::HandoverAsk { tag, pid, uid }, _) => {
                    self.asks.push(HandoverAsk { tag, pid, uid })
                }
                other => return Ok(other),
            }
        }
    }

    fn receive(&mut self) -> Result<(Reply, Vec<OwnedFd>), KeeperError> {
        let received = protocol::recv_message(self.sock.as_fd(), MAX_MESSAGE, MAX_FDS)?
            .ok_or(KeeperError::Closed)?;
        if received.truncated || received.fds_truncated {
            return Err(KeeperError::Protocol("reply truncated".into()));
        }
        Ok((protocol::decode_reply(&received.bytes, received.fds.len())?, received.fds))
    }

    /// The next HANDOVER_ASK, without waiting: one kept while a reply was awaited, else one
    /// waiting on the socket. `Err(KeeperError::Closed)` once the keeper has closed it.
    pub fn next_ask(&mut self) -> Result<Option<HandoverAsk>, KeeperError> {
        if !self.asks.is_empty() {
            return Ok(Some(self.asks.remove(0)));
        }
        let mut fds = [rustix::event::PollFd::new(&self.sock, rustix::event::PollFlags::IN)];
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        if rustix::event::poll(&mut fds, Some(&zero)).map_err(std::io::Error::from)? == 0 {
            return Ok(None);
        }
        match self.receive()? {
            (Reply::HandoverAsk { tag, pid, uid }, _) => Ok(Some(HandoverAsk { tag, pid, uid })),
            (other, _) => Err(unexpected(&other)),
        }
    }

    fn call_ok(&mut self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<(), KeeperError> {
        match self.call(req, fds)? {
            (Reply::Ok, _) => Ok(()),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// REGISTER a connection: the keeper keeps `device` (index 0) and `state`.
    pub fn register(
        &mut self,
        reg: &Registration,
        device: BorrowedFd<'_>,
        state: BorrowedFd<'_>,
    ) -> Result<(), KeeperError> {
        let req = Request::Register(Register {
            tag: reg.tag.clone(),
            rescue_uid: reg.rescue_uid,
            mountpoint: reg.mountpoint.clone(),
            conn_id: reg.conn_id,
            recovery_timeout_ms: timeout_ms(reg.recovery_timeout),
            negotiation: reg.negotiation.clone(),
            flags: if reg.fail_on_timeout { protocol::REGISTER_FAIL_ON_TIMEOUT } else { 0 },
        });
        self.call_ok(&req, &[device, state])
    }

    /// ADD_DEVICE: hand a cloned device fd to the keeper before reading from it.
    pub fn add_device(
        &mut self,
        tag: &str,
        index: u32,
        device: BorrowedFd<'_>,
    ) -> Result<(), KeeperError> {
        self.call_ok(&Request::AddDevice { tag: tag.into(), index }, &[device])
    }

    /// ATTACH to an orphaned connection. `Ok(None)`: the keeper holds no such tag (mount
    /// fresh).
    pub fn attach(&mut self, tag: &str) -> Result<Option<Attached>, KeeperError> {
        self.take_over(&Request::Attach { tag: tag.into() })
    }

    /// HANDOVER: as [`KeeperClient::attach`], and if the connection's server is alive, it is
    /// asked to stop and hand it over (refused: `EPERM`-like errors from the keeper).
    pub fn handover(&mut self, tag: &str) -> Result<Option<Attached>, KeeperError> {
        self.take_over(&Request::Handover { tag: tag.into() })
    }

    /// HANDOVER_DONE: the answer to a [`HandoverAsk`]; `errno` 0 once stopped, else the
    /// reason for refusing. `Ok` means the keeper has taken the connection back (for 0).
    pub fn handover_done(&mut self, tag: &str, errno: i32) -> Result<(), KeeperError> {
        self.call_ok(&Request::HandoverDone { tag: tag.into(), errno }, &[])
    }

    /// STAND_IN: what the keeper may answer for this server's connection `answers.tag` while
    /// it is orphaned (the root's attributes, STATFS, the root's xattrs). Only the
    /// connection's server may send it; each replaces the last.
    pub fn stand_in(&mut self, answers: &protocol::StandIn) -> Result<(), KeeperError> {
        self.call_ok(&Request::StandIn(answers.clone()), &[])
    }

    /// HOLD: the keeper holds a dup of `fd` under `key` for this server's connection `tag`
    /// (replacing what it held there), until [`KeeperClient::release`] or the connection goes;
    /// the next server gets it from [`KeeperClient::held`]. It counts against the fd quota.
    pub fn hold(&mut self, tag: &str, key: u64, fd: BorrowedFd<'_>) -> Result<(), KeeperError> {
        self.call_ok(&Request::Hold { tag: tag.into(), key }, &[fd])
    }

    /// RELEASE: the keeper closes the fd it holds under `key` (ENOENT if none).
    pub fn release(&mut self, tag: &str, key: u64) -> Result<(), KeeperError> {
        self.call_ok(&Request::Release { tag: tag.into(), key }, &[])
    }

    /// HELD: every fd the keeper holds for this server's connection `tag`, with its key, in
    /// key order (dups: the keeper keeps its own until RELEASE).
    pub fn held(&mut self, tag: &str) -> Result<Vec<(u64, OwnedFd)>, KeeperError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let (reply, fds) = self.call(&Request::Held { tag: tag.into(), after }, &[])?;
            let Reply::Held { keys, more } = reply else { return Err(unexpected(&reply)) };
            if keys.len() != fds.len() {
                return Err(KeeperError::Protocol("HELD_REPLY fd count".into()));
            }
            let last = keys.last().copied();
            all.extend(keys.into_iter().zip(fds));
            match last {
                Some(last) if more => after = last,
                _ => return Ok(all),
            }
        }
    }

    fn take_over(&mut self, req: &Request) -> Result<Option<Attached>, KeeperError> {
        let (reply, fds) = match self.call(req, &[]) {
            Err(KeeperError::Refused { errno: libc::ENOENT, .. }) => return Ok(None),
            other => other?,
        };
        attached(reply, fds).map(Some)
    }

    /// STANDBY: wait, as a hot standby, for the live server of `tag` to die, and then take
    /// its connection over. Allowed as ATTACH is (the rescue uid; EACCES otherwise). The
    /// keeper answers at once: with the connection if it is orphaned already, `Parked` if its
    /// server is alive (then call [`KeeperClient::standby_wait`], and send nothing else on
    /// this connection meanwhile), `Unknown` if it holds no such tag. EBUSY: another standby
    /// is parked for the connection; EINVAL: this process is its server.
    pub fn standby(&mut self, tag: &str) -> Result<StandbyReply, KeeperError> {
        let (reply, fds) = match self.call(&Request::Standby { tag: tag.into() }, &[]) {
            Err(KeeperError::Refused { errno: libc::ENOENT, .. }) => {
                return Ok(StandbyReply::Unknown);
            }
            other => other?,
        };
        match reply {
            Reply::Ok => Ok(StandbyReply::Parked),
            reply => attached(reply, fds).map(StandbyReply::Attached),
        }
    }

    /// After [`StandbyReply::Parked`]: wait, for as long as it takes (the reply timeout is
    /// turned off), for the keeper's second answer: `Some` connection once its server died,
    /// `None` if the connection ended first (its server unmounted it cleanly, or it was
    /// unmounted or aborted through the keeper). [`KeeperError::Closed`]: the keeper went
    /// away (the standby may connect again and park again).
    /// WATCHes are read and let go (see [`KeeperClient::standby_next`] for a standby that
    /// uses them).
    pub fn standby_wait(&mut self) -> Result<Option<Attached>, KeeperError> {
        loop {
            match self.standby_next()? {
                StandbyEvent::Attached(attached) => return Ok(Some(attached)),
                StandbyEvent::Ended => return Ok(None),
                StandbyEvent::Watch { .. } => {}
            }
        }
    }

    /// After [`StandbyReply::Parked`]: the keeper's next word, waiting for as long as it takes
    /// (the reply timeout is turned off): the connection, its end, or a WATCH.
    /// [`KeeperError::Closed`]: the keeper went away.
    pub fn standby_next(&mut self) -> Result<StandbyEvent, KeeperError> {
        self.set_timeout(None)?;
        let received = self.receive();
        self.set_timeout(Some(DEFAULT_TIMEOUT))?;
        match received? {
            (Reply::Error { errno: libc::ENOENT, .. }, _) => Ok(StandbyEvent::Ended),
            (Reply::Error { errno, message }, _) => Err(KeeperError::Refused { errno, message }),
            (Reply::Watch { server_pid }, mut fds) => match fds.pop() {
                Some(page) => Ok(StandbyEvent::Watch { server_pid, page }),
                None => Err(KeeperError::Protocol("WATCH without its page".into())),
            },
            (reply, fds) => attached(reply, fds).map(StandbyEvent::Attached),
        }
    }

    /// A [`DiedSender`] on this connection (a dup of its socket).
    pub fn died_sender(&self) -> Result<DiedSender, KeeperError> {
        Ok(DiedSender { sock: self.sock.try_clone()? })
    }

    /// LIVENESS: hand the keeper this server's liveness page for `tag`
    /// ([`protocol::liveness`]), for the standby parked now or later. Allowed to the entry's
    /// server only (EPERM otherwise); EINVAL if `page` is not a memfd of
    /// [`protocol::liveness::LIVENESS_LEN`] bytes sealed against shrinking; EOPNOTSUPP from a
    /// keeper too old (its standbys then wait for the pidfd).
    pub fn liveness(&mut self, tag: &str, page: BorrowedFd<'_>) -> Result<(), KeeperError> {
        self.call_ok(&Request::Liveness { tag: tag.into() }, &[page])
    }

    /// METRICS: the keeper's metrics in the Prometheus text format (root and the keeper's own
    /// uid only: EPERM otherwise).
    pub fn metrics(&mut self) -> Result<String, KeeperError> {
        match self.call(&Request::Metrics, &[])? {
            (Reply::Metrics { text }, _) => Ok(text),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// UNREGISTER: the keeper drops the connection (clean unmount).
    pub fn unregister(&mut self, tag: &str) -> Result<(), KeeperError> {
        self.call_ok(&Request::Unregister { tag: tag.into() }, &[])
    }

    /// NOTE: publish a short status note for the connection `tag` (e.g. what a wrapper runs
    /// and how often it restarted it), shown by [`KeeperClient::list`] and `fuse-keeper ls`;
    /// it replaces the last, an empty one clears it, and it goes with the connection. At most
    /// [`protocol::MAX_NOTE`] bytes of printable UTF-8 ([`protocol::validate_note`]: EINVAL
    /// otherwise). Allowed to the connection's owner uid, its rescue uid and root (EPERM
    /// otherwise); ENOENT if the keeper holds no such tag; EOPNOTSUPP from a keeper too old.
    pub fn note(&mut self, tag: &str, note: &str) -> Result<(), KeeperError> {
        self.call_ok(&Request::Note { tag: tag.into(), note: note.into() }, &[])
    }

    /// Every connection visible to this uid, with its recovery statistics, parked standby and
    /// status note (LIST_NOTES; from a keeper that does not know it, LIST_FULL, then
    /// LIST_STATS, and from one older still, LIST: what they do not say is `None`). Several
    /// requests if they do not fit in one reply.
    pub fn list(&mut self) -> Result<Vec<ConnInfo>, KeeperError> {
        use crate::protocol::ListDetail;
        let mut out = Vec::new();
        let mut detail = ListDetail::Notes;
        loop {
            let skip = u32::try_from(out.len()).unwrap_or(u32::MAX);
            let req = match detail {
                ListDetail::Notes => Request::ListNotes { skip },
                ListDetail::Full => Request::ListFull { skip },
                ListDetail::Stats => Request::ListStats { skip },
                ListDetail::Base => Request::List { skip },
            };
            let (reply, _) = match self.call(&req, &[]) {
                Err(e)
                    if detail != ListDetail::Base
                        && e.errno() == Some(libc::EOPNOTSUPP)
                        && out.is_empty() =>
                {
                    detail = match detail {
                        ListDetail::Notes => ListDetail::Full,
                        ListDetail::Full => ListDetail::Stats,
                        _ => ListDetail::Base,
                    };
                    continue;
                }
                other => other?,
            };
            let (Reply::List { total, entries }
            | Reply::ListStats { total, entries }
            | Reply::ListFull { total, entries }
            | Reply::ListNotes { total, entries }) = reply
            else {
                return Err(unexpected(&reply));
            };
            let got = entries.len();
            out.extend(entries.into_iter().map(ConnInfo::from));
            if got == 0 || out.len() >= total as usize {
                return Ok(out);
            }
        }
    }

    /// ABORT the connection named by a tag or mountpoint, detach its mount, drop it.
    pub fn abort(&mut self, target: &str) -> Result<(), KeeperError> {
        self.call_ok(&Request::Abort { target: target.into() }, &[])
    }

    /// UMOUNT the connection named by a tag or mountpoint, promptly whatever its server's state.
    pub fn umount(&mut self, target: &str) -> Result<(), KeeperError> {
        self.call_ok(&Request::Umount { target: target.into() }, &[])
    }
}

/// The socket, e.g. to watch it for the keeper's hangup.
impl AsFd for KeeperClient {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The connection an ATTACHED `reply` hands over with `fds` (state first, then the devices).
fn attached(reply: Reply, fds: Vec<OwnedFd>) -> Result<Attached, KeeperError> {
    let Reply::Attached { mountpoint, conn_id, negotiation, owner_uid, .. } = reply else {
        return Err(unexpected(&reply));
    };
    let mut fds = fds.into_iter();
    let state = fds.next().ok_or_else(|| KeeperError::Protocol("no state fd".into()))?;
    let devices = fds.collect();
    Ok(Attached { mountpoint, conn_id, owner_uid, negotiation, state, devices })
}

fn unexpected(reply: &Reply) -> KeeperError {
    KeeperError::Protocol(format!("unexpected reply {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ListDetail, ProtocolError};

    /// A keeper that knows the LIST kinds up to `knows` only (older ones answer EOPNOTSUPP to
    /// the newer kinds, as an unknown kind) and holds one connection, noted "n" and with a
    /// standby 7. Serves one client, then returns the kinds it was asked, in order.
    fn old_keeper(knows: ListDetail) -> (PathBuf, std::thread::JoinHandle<Vec<u16>>) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("fk-client-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = listen_socket(&path, 1).unwrap();
        let handle = std::thread::spawn(move || {
            let sock = rustix::net::accept(&listener).unwrap();
            let mut asked = Vec::new();
            while let Some(msg) = protocol::recv_message(sock.as_fd(), MAX_MESSAGE, 0).unwrap() {
                let req = protocol::decode_request(&msg.bytes, 0);
                let (kind, detail) = match req {
                    Ok(Request::List { .. }) => (5, ListDetail::Base),
                    Ok(Request::ListStats { .. }) => (14, ListDetail::Stats),
                    Ok(Request::ListFull { .. }) => (17, ListDetail::Full),
                    Ok(Request::ListNotes { .. }) => (19, ListDetail::Notes),
                    other => panic!("unexpected {other:?}"),
                };
                asked.push(kind);
                let entry = ListEntry {
                    tag: "t".into(),
                    owner_uid: 0,
                    rescue_uid: 0,
                    mountpoint: "/m".into(),
                    conn_id: 1,
                    state: ConnState::Serving,
                    server_pid: 9,
                    waiting: 0,
                    orphaned_ms: 0,
                    stats: (detail >= ListDetail::Stats).then_some(Default::default()),
                    standby_pid: (detail >= ListDetail::Full).then_some(7),
                    note: (detail >= ListDetail::Notes).then(|| "n".to_owned()),
                };
                let entries = vec![entry];
                let reply = if detail > knows {
                    let e = ProtocolError::UnknownKind(kind);
                    Reply::Error { errno: e.errno(), message: e.to_string() }
                } else {
                    match detail {
                        ListDetail::Base => Reply::List { total: 1, entries },
                        ListDetail::Stats => Reply::ListStats { total: 1, entries },
                        ListDetail::Full => Reply::ListFull { total: 1, entries },
                        ListDetail::Notes => Reply::ListNotes { total: 1, entries },
                    }
                };
                let (bytes, _) = protocol::encode_reply(&reply);
                protocol::send_message(sock.as_fd(), &bytes, &[]).unwrap();
            }
            asked
        });
        (path, handle)
    }

    fn list_from(knows: ListDetail) -> (ConnInfo, Vec<u16>) {
        let (path, keeper) = old_keeper(knows);
        let listed = KeeperClient::connect(&path).unwrap().list().unwrap();
        let _ = std::fs::remove_file(&path);
        let asked = keeper.join().unwrap();
        let [info] = <[ConnInfo; 1]>::try_from(listed).unwrap();
        (info, asked)
    }

    #[test]
    fn list_falls_back_to_the_kinds_an_older_keeper_knows() {
        let (info, asked) = list_from(ListDetail::Notes);
        assert_eq!((info.note.as_deref(), info.standby_pid, asked), (Some("n"), Some(7), vec![19]));
        let (info, asked) = list_from(ListDetail::Full);
        assert_eq!((info.note, info.standby_pid, asked), (None, Some(7), vec![19, 17]));
        let (info, asked) = list_from(ListDetail::Stats);
        assert_eq!((info.note, info.standby_pid, info.recoveries), (None, None, Some(0)));
        assert_eq!(asked, vec![19, 17, 14]);
        let (info, asked) = list_from(ListDetail::Base);
        assert_eq!((info.note, info.standby_pid, info.recoveries), (None, None, None));
        assert_eq!(asked, vec![19, 17, 14, 5]);
    }
}
