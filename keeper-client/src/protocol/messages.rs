//! Requests and replies: their payloads, fd counts and bounds.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Header, Kind, MAX_PAYLOAD, ProtocolError, Reader, Writer};

/// Longest tag, in bytes.
pub const MAX_TAG: usize = 255;
/// Longest mountpoint or ABORT/UMOUNT target, in bytes.
pub const MAX_PATH: usize = 4096;
/// Largest saved INIT negotiation blob.
pub const MAX_NEGOTIATION: usize = 4096;
/// Longest message of an ERROR reply (longer ones are cut on encode).
pub const MAX_ERROR_MESSAGE: usize = 1024;
/// Longest METRICS_REPLY text: what fits in one message.
pub const MAX_METRICS_TEXT: usize = super::MAX_PAYLOAD - 4;
/// Bytes the statistics add to a LIST_STATS_REPLY entry.
const STATS_LEN: usize = 4 + 4 + 8;
/// Bytes the standby's pid adds to a LIST_FULL_REPLY entry (after the statistics).
const STANDBY_LEN: usize = 4;
/// Longest status note (NOTE), in bytes.
pub const MAX_NOTE: usize = 128;

/// How much a LIST-like reply says of each entry: LIST's fields, then LIST_STATS's statistics,
/// then LIST_FULL's parked standby, then LIST_NOTES's status note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListDetail {
    /// LIST_REPLY: the connection and its server.
    Base,
    /// LIST_STATS_REPLY: and its recovery statistics.
    Stats,
    /// LIST_FULL_REPLY: and the pid of the standby parked for it.
    Full,
    /// LIST_NOTES_REPLY: and the status note its server published (NOTE).
    Notes,
}
/// Most device fds per connection (indexes 0..16).
pub const MAX_DEVICES: usize = 16;
/// Largest STAND_IN xattr blob (the root's extended attributes, names and values).
pub const MAX_STAND_IN_XATTRS: usize = 4096;
/// The size of a FUSE GETATTR reply's payload (`fuse_attr_out`), as STAND_IN carries it.
pub const ATTR_OUT_LEN: usize = 104;
/// The size of a FUSE STATFS reply's payload (`fuse_statfs_out`), as STAND_IN carries it.
pub const STATFS_OUT_LEN: usize = 80;
/// The root's extended attributes a STAND_IN speaks for: those `ls -l` asks about, which any
/// user who may stat the root may read. A GETXATTR of one of them is answered from the
/// STAND_IN (ENODATA if it does not list it); of any other name, left to the next server.
pub const STAND_IN_XATTRS: [&str; 3] =
    ["security.selinux", "system.posix_acl_access", "system.posix_acl_default"];
/// File handles with this bit set are the keeper's: OPENDIR of the root answered while the
/// connection was orphaned (docs/keeper-protocol.md, STAND_IN). A server library must never
/// hand out such a handle itself, and must serve requests that carry one (it opens the root
/// directory on the first READDIR, and answers their RELEASEDIR).
pub const KEEPER_FH: u64 = 1 << 63;

/// The STAND_IN request's fields: replies the keeper may give, while the connection is
/// orphaned, to the requests the node's tools send about a mount (stat, df, ls -l of its
/// parent, umount). Each is the payload of the FUSE reply, as the server would write it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandIn {
    /// The connection's tag.
    pub tag: String,
    /// GETATTR of the root: a `fuse_attr_out` ([`ATTR_OUT_LEN`] bytes), or empty (unknown).
    pub attr: Vec<u8>,
    /// STATFS: a `fuse_statfs_out` ([`STATFS_OUT_LEN`] bytes), or empty (unknown).
    pub statfs: Vec<u8>,
    /// Those of [`STAND_IN_XATTRS`] the root has, with their values, or `None` (unknown:
    /// GETXATTR of the root is left to the next server).
    pub xattrs: Option<Xattrs>,
}

/// Extended attributes: (name, value) pairs.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

impl StandIn {
    fn encode_xattrs(&self, w: &mut Writer) {
        let mut blob = Writer::new();
        if let Some(xattrs) = &self.xattrs {
            blob.u32(u32::try_from(xattrs.len()).unwrap_or(u32::MAX));
            for (name, value) in xattrs {
                blob.bytes(name).bytes(value);
            }
        }
        w.bytes(&blob.into_bytes());
    }

    fn decode_xattrs(blob: &[u8]) -> Result<Option<Xattrs>, ProtocolError> {
        if blob.is_empty() {
            return Ok(None);
        }
        let mut r = Reader::new(blob);
        let count = r.u32("xattr count")?;
        let mut xattrs = Vec::new();
        for _ in 0..count {
            let name = r.bytes("xattr name", 255)?;
            if name.is_empty() || name.contains(&0) {
                return Err(ProtocolError::Invalid { field: "xattr name", reason: "empty or NUL" });
            }
            let value = r.bytes("xattr value", MAX_STAND_IN_XATTRS)?;
            xattrs.push((name.to_vec(), value.to_vec()));
        }
        r.finish()?;
        Ok(Some(xattrs))
    }
}

/// The REGISTER request's fields. Its fds are `[device, state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// Name of the connection, unique per owner uid.
    pub tag: String,
    /// The only uid that may ATTACH.
    pub rescue_uid: u32,
    /// Absolute path of the mount.
    pub mountpoint: PathBuf,
    /// The connection's number in `/sys/fs/fuse/connections`.
    pub conn_id: u32,
    /// Milliseconds an orphaned connection is kept before it is aborted; 0 = forever.
    pub recovery_timeout_ms: u64,
    /// The saved INIT negotiation, opaque to the keeper.
    pub negotiation: Vec<u8>,
    /// [`REGISTER_FAIL_ON_TIMEOUT`], or 0.
    pub flags: u32,
}

/// REGISTER flag: when the recovery timeout passes, keep the mount and answer its requests
/// with EIO until a server attaches, instead of aborting the connection.
pub const REGISTER_FAIL_ON_TIMEOUT: u32 = 1;

/// A request (client to keeper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// REGISTER: hold a new connection under (the peer's uid, tag). fds: `[device, state]`.
    Register(Register),
    /// ADD_DEVICE, from the entry's server: hold a `FUSE_DEV_IOC_CLONE` of its device, sent
    /// before the clone is first read. fds: `[device]`.
    AddDevice {
        /// The connection's tag.
        tag: String,
        /// The clone's device index: 1..=15 in practice (0 is REGISTER's device); at least
        /// [`MAX_DEVICES`] is refused.
        index: u32,
    },
    /// ATTACH: take an orphaned connection, allowed to its rescue uid only; answered
    /// ATTACHED, or ERROR ENOENT when there is none (mount fresh). No fds.
    Attach {
        /// The connection's tag.
        tag: String,
    },
    /// UNREGISTER, from the entry's server at a clean unmount: drop the entry and its fds.
    /// No fds.
    Unregister {
        /// The connection's tag.
        tag: String,
    },
    /// LIST: the entries the peer may see, sorted by (owner uid, tag). No fds.
    List {
        /// How many entries to leave out first (paging).
        skip: u32,
    },
    /// LIST_STATS: as LIST, each entry with its recovery statistics. No fds.
    ListStats {
        /// How many entries to leave out first (paging).
        skip: u32,
    },
    /// METRICS: the keeper's metrics (root and the keeper's own uid only). No fds.
    Metrics,
    /// ABORT: abort the connection through fusectl, detach its mount, drop the entry. No fds.
    Abort {
        /// A tag (the peer's own entry first) or an absolute mountpoint.
        target: String,
    },
    /// UMOUNT: detach the mount (aborting it first if its server is dead), drop the entry.
    /// No fds.
    Umount {
        /// A tag (the peer's own entry first) or an absolute mountpoint.
        target: String,
    },
    /// As ATTACH, but a live server is asked to hand the connection over (HANDOVER_ASK);
    /// the reply (ATTACHED or ERROR) waits for its answer. No fds.
    Handover {
        /// The connection's tag.
        tag: String,
    },
    /// A live server's answer to HANDOVER_ASK. No fds.
    HandoverDone {
        /// The connection's tag.
        tag: String,
        /// 0: it has stopped reading and answered every request it read; otherwise the
        /// errno of its refusal (EPERM for `nohandover`), and it goes on serving.
        errno: i32,
    },
    /// From a connection's server: what the keeper may answer while it is orphaned. No fds.
    StandIn(StandIn),
    /// From a connection's server: hold this fd under `key` (replacing any held there) until
    /// RELEASE or the entry goes. fds: `[fd]`.
    Hold {
        /// The connection's tag.
        tag: String,
        /// The server's name for the fd (passthroughfs: the inode's nodeid).
        key: u64,
    },
    /// From a connection's server: close the fd held under `key`. No fds.
    Release {
        /// The connection's tag.
        tag: String,
        /// The key it was held under.
        key: u64,
    },
    /// From a connection's server: the held fds whose key is above `after` (HELD_REPLY). No
    /// fds.
    Held {
        /// The connection's tag.
        tag: String,
        /// Only keys above this one: 0 at first, then the last key of the previous reply.
        after: u64,
    },
    /// STANDBY: as ATTACH (same rules), but while the connection's server is alive the keeper
    /// parks the request, answers OK, and sends ATTACHED the moment the server dies (or ERROR
    /// ENOENT if the connection ends first). No fds.
    Standby {
        /// The connection's tag.
        tag: String,
    },
    /// LIST_FULL: as LIST_STATS, each entry also with its parked standby's pid. No fds.
    ListFull {
        /// How many entries to leave out first (paging).
        skip: u32,
    },
    /// NOTE: a short status note for the connection `tag` (replacing the last; empty: none),
    /// from its owner uid, its rescue uid or root, shown by LIST_NOTES. No fds.
    Note {
        /// The connection's tag.
        tag: String,
        /// At most [`MAX_NOTE`] bytes of printable UTF-8 ([`validate_note`]).
        note: String,
    },
    /// LIST_NOTES: as LIST_FULL, each entry also with its status note. No fds.
    ListNotes {
        /// How many entries to leave out first (paging).
        skip: u32,
    },
    /// LIVENESS, from the entry's server: its liveness page ([`liveness`](super::liveness)),
    /// which the keeper keeps while that server serves and shows its parked standby (WATCH).
    /// fds: `[memfd]`, sealed against shrinking, [`LIVENESS_LEN`](super::liveness::LIVENESS_LEN)
    /// bytes.
    Liveness {
        /// The connection's tag.
        tag: String,
    },
    /// DIED, from the standby parked for `tag`: the liveness page of server `server_pid`
    /// (as WATCH named it) says every thread of it died. No reply of its own: if the keeper's
    /// own read of the page proves it, the parked STANDBY is answered ATTACHED at once;
    /// otherwise it is ignored, and the STANDBY waits for the server's pidfd. No fds.
    Died {
        /// The connection's tag.
        tag: String,
        /// The server the page belongs to.
        server_pid: u32,
    },
}

/// Most fds one HELD_REPLY carries (page with `after`).
pub const MAX_HELD_PER_REPLY: usize = 16;

/// State of a held connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ConnState {
    /// Its server is alive.
    Serving = 0,
    /// Its server died; the keeper holds the connection until a server attaches.
    Orphaned = 1,
    /// A HANDOVER waits for the live server's answer.
    Attaching = 2,
    /// Orphaned past its recovery timeout with the fail policy: the keeper answers its
    /// requests with EIO until a server attaches.
    Failing = 3,
}

impl ConnState {
    /// Lower-case name, as printed by `fuse-keeper ls`.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Serving => "serving",
            ConnState::Orphaned => "orphaned",
            ConnState::Attaching => "attaching",
            ConnState::Failing => "failing",
        }
    }

    fn from_u32(v: u32) -> Result<ConnState, ProtocolError> {
        match v {
            0 => Ok(ConnState::Serving),
            1 => Ok(ConnState::Orphaned),
            2 => Ok(ConnState::Attaching),
            3 => Ok(ConnState::Failing),
            _ => Err(ProtocolError::Invalid { field: "state", reason: "unknown state" }),
        }
    }
}

/// One entry of a LIST_REPLY, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The connection's tag.
    pub tag: String,
    /// The uid that registered it (with the tag, the entry's key).
    pub owner_uid: u32,
    /// The only uid that may ATTACH it, in the keeper's user namespace.
    pub rescue_uid: u32,
    /// Where the registrant said it is mounted.
    pub mountpoint: PathBuf,
    /// The connection's number in `/sys/fs/fuse/connections`.
    pub conn_id: u32,
    /// Whether a server serves it.
    pub state: ConnState,
    /// The server's pid in the keeper's pid namespace; 0 if no server.
    pub server_pid: u32,
    /// Requests waiting in the connection (fusectl's `waiting`); `u32::MAX` if unknown.
    pub waiting: u32,
    /// Milliseconds since its server died; 0 while serving.
    pub orphaned_ms: u64,
    /// Its recovery statistics: in LIST_STATS and LIST_FULL replies only (`None` in LIST
    /// replies).
    pub stats: Option<EntryStats>,
    /// In LIST_FULL and LIST_NOTES replies only (`None` in the others): `Some(pid)` of the
    /// standby parked for this connection (STANDBY), `Some(0)` if none is.
    pub standby_pid: Option<u32>,
    /// In LIST_NOTES replies only (`None` in the others): `Some(note)` the connection's status
    /// note (NOTE), `Some("")` if it has none.
    pub note: Option<String>,
}

/// How often a connection was taken over, and what the last recovery cost (LIST_STATS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryStats {
    /// Servers that attached after the previous one died (ATTACH, or a HANDOVER of an
    /// orphaned connection), since the entry was registered.
    pub recoveries: u32,
    /// Planned handovers from a live server that agreed.
    pub handovers: u32,
    /// How long the last recovery's connection had no server, from the keeper seeing the
    /// death to the next server's ATTACHED, in microseconds; `None` before the first.
    pub last_recovery_us: Option<u64>,
}

impl ListEntry {
    /// Bytes this entry takes in the payload of a reply with this `detail`.
    pub fn encoded_len(&self, detail: ListDetail) -> usize {
        let base =
            4 + self.tag.len() + 4 + 4 + 4 + self.mountpoint.as_os_str().len() + 4 + 4 + 4 + 4 + 8;
        let note = 4 + self.note.as_ref().map_or(0, String::len);
        match detail {
            ListDetail::Base => base,
            ListDetail::Stats => base + STATS_LEN,
            ListDetail::Full => base + STATS_LEN + STANDBY_LEN,
            ListDetail::Notes => base + STATS_LEN + STANDBY_LEN + note,
        }
    }

    fn encode(&self, w: &mut Writer, detail: ListDetail) {
        w.bytes(self.tag.as_bytes()).u32(self.owner_uid).u32(self.rescue_uid);
        w.bytes(self.mountpoint.as_os_str().as_bytes()).u32(self.conn_id);
        w.u32(self.state as u32).u32(self.server_pid).u32(self.waiting).u64(self.orphaned_ms);
        if detail >= ListDetail::Stats {
            let stats = self.stats.unwrap_or_default();
            w.u32(stats.recoveries).u32(stats.handovers);
            w.u64(stats.last_recovery_us.unwrap_or(u64::MAX));
        }
        if detail >= ListDetail::Full {
            w.u32(self.standby_pid.unwrap_or(0));
        }
        if detail >= ListDetail::Notes {
            w.bytes(self.note.as_deref().unwrap_or("").as_bytes());
        }
    }

    fn decode(r: &mut Reader<'_>, detail: ListDetail) -> Result<ListEntry, ProtocolError> {
        let mut entry = ListEntry::decode_base(r)?;
        if detail >= ListDetail::Stats {
            let recoveries = r.u32("recoveries")?;
            let handovers = r.u32("handovers")?;
            let last = r.u64("last_recovery_us")?;
            let last_recovery_us = (last != u64::MAX).then_some(last);
            entry.stats = Some(EntryStats { recoveries, handovers, last_recovery_us });
        }
        if detail >= ListDetail::Full {
            entry.standby_pid = Some(r.u32("standby_pid")?);
        }
        if detail >= ListDetail::Notes {
            // Not checked against the request's rules: a client shows whatever a keeper says
            // escaped, and a later keeper may allow more.
            entry.note = Some(r.string("note", MAX_NOTE)?.to_owned());
        }
        Ok(entry)
    }

    fn decode_base(r: &mut Reader<'_>) -> Result<ListEntry, ProtocolError> {
        Ok(ListEntry {
            tag: r.string("tag", MAX_TAG)?.to_owned(),
            owner_uid: r.u32("owner_uid")?,
            rescue_uid: r.u32("rescue_uid")?,
            mountpoint: path_field(r, "mountpoint")?,
            conn_id: r.u32("conn_id")?,
            state: ConnState::from_u32(r.u32("state")?)?,
            server_pid: r.u32("server_pid")?,
            waiting: r.u32("waiting")?,
            orphaned_ms: r.u64("orphaned_ms")?,
            stats: None,
            standby_pid: None,
            note: None,
        })
    }
}

/// A reply (keeper to client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No fds.
    Ok,
    /// The request was refused. No fds.
    Error {
        /// A positive Linux errno (docs/keeper-protocol.md, "Errno values").
        errno: i32,
        /// Why, for humans; at most [`MAX_ERROR_MESSAGE`] bytes.
        message: String,
    },
    /// Answer to ATTACH and HANDOVER. fds: `[state, device0, ..]`, `1 + device_count` in all.
    Attached {
        /// Where the registrant said the connection is mounted.
        mountpoint: PathBuf,
        /// The connection's number in `/sys/fs/fuse/connections`, as registered.
        conn_id: u32,
        /// The saved INIT negotiation, as registered.
        negotiation: Vec<u8>,
        /// How many device fds follow the state fd, 1..=[`MAX_DEVICES`], in index order.
        device_count: u32,
        /// The uid that registered the connection: the peer's own, or 0.
        owner_uid: u32,
    },
    /// Answer to LIST. No fds.
    List {
        /// How many entries the peer may see in all.
        total: u32,
        /// Those after the requested `skip` that fit in one message.
        entries: Vec<ListEntry>,
    },
    /// Answer to LIST_STATS: as [`Reply::List`], every entry with its
    /// [`ListEntry::stats`]. No fds.
    ListStats {
        /// How many entries the peer may see in all.
        total: u32,
        /// Those after the requested `skip` that fit in one message.
        entries: Vec<ListEntry>,
    },
    /// Answer to LIST_FULL: as [`Reply::ListStats`], every entry with its
    /// [`ListEntry::standby_pid`] too. No fds.
    ListFull {
        /// How many entries the peer may see in all.
        total: u32,
        /// Those after the requested `skip` that fit in one message.
        entries: Vec<ListEntry>,
    },
    /// Answer to LIST_NOTES: as [`Reply::ListFull`], every entry with its
    /// [`ListEntry::note`] too. No fds.
    ListNotes {
        /// How many entries the peer may see in all.
        total: u32,
        /// Those after the requested `skip` that fit in one message.
        entries: Vec<ListEntry>,
    },
    /// Answer to METRICS: the keeper's metrics in the Prometheus text exposition format
    /// (version 0.0.4), at most [`MAX_METRICS_TEXT`] bytes. No fds.
    Metrics {
        /// The exposition.
        text: String,
    },
    /// Sent unasked to the server of `tag`: another process asks for the connection. The
    /// server answers with HANDOVER_DONE. No fds.
    HandoverAsk {
        /// The connection's tag.
        tag: String,
        /// The asking process's pid, as the keeper sees it.
        pid: u32,
        /// The asking process's uid, as the keeper sees it.
        uid: u32,
    },
    /// Answer to HELD. fds: one per key, in that order.
    Held {
        /// The held fds' keys, ascending, at most [`MAX_HELD_PER_REPLY`].
        keys: Vec<u64>,
        /// Others follow the last key: ask again with it as `after`.
        more: bool,
    },
    /// To a parked standby, between STANDBY's OK and its last answer (again whenever the
    /// entry's server sends LIVENESS): the liveness page of the server it stands by for,
    /// read-only. fds: `[page]`.
    Watch {
        /// The server the page belongs to (DIED names it back).
        server_pid: u32,
    },
}

/// A tag is 1 to 255 bytes of UTF-8 without control characters and does not start with `/`
/// (so that an ABORT/UMOUNT target is either a tag or a path).
pub fn validate_tag(tag: &str) -> Result<(), ProtocolError> {
    let invalid = |reason| Err(ProtocolError::Invalid { field: "tag", reason });
    if tag.is_empty() {
        return invalid("empty");
    }
    if tag.len() > MAX_TAG {
        return Err(ProtocolError::TooLong { field: "tag", len: tag.len(), max: MAX_TAG });
    }
    if tag.starts_with('/') {
        return invalid("starts with '/'");
    }
    if tag.chars().any(char::is_control) {
        return invalid("contains a control character");
    }
    Ok(())
}

/// True for the characters no client-chosen text the keeper keeps for display (a NOTE) may
/// hold: control characters (C0, DEL, C1), and the invisible format characters that reorder or
/// hide text (bidirectional overrides and isolates, zero-width characters, line and paragraph
/// separators, the byte order mark). `fuse-keeper ls` prints these escaped wherever they come
/// from (tags, mountpoints).
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// A status note is at most [`MAX_NOTE`] bytes of UTF-8 with no [`is_unprintable`] character
/// (empty: no note).
pub fn validate_note(note: &str) -> Result<(), ProtocolError> {
    if note.len() > MAX_NOTE {
        return Err(ProtocolError::TooLong { field: "note", len: note.len(), max: MAX_NOTE });
    }
    if note.chars().any(is_unprintable) {
        return Err(ProtocolError::Invalid {
            field: "note",
            reason: "contains a control or invisible character",
        });
    }
    Ok(())
}

fn tag_field(r: &mut Reader<'_>) -> Result<String, ProtocolError> {
    let tag = r.string("tag", MAX_TAG)?;
    validate_tag(tag)?;
    Ok(tag.to_owned())
}

fn path_field(r: &mut Reader<'_>, field: &'static str) -> Result<PathBuf, ProtocolError> {
    let bytes = r.bytes(field, MAX_PATH)?;
    if bytes.first() != Some(&b'/') {
        return Err(ProtocolError::Invalid { field, reason: "not an absolute path" });
    }
    if bytes.contains(&0) {
        return Err(ProtocolError::Invalid { field, reason: "contains NUL" });
    }
    Ok(Path::new(OsStr::from_bytes(bytes)).to_owned())
}

fn target_field(r: &mut Reader<'_>) -> Result<String, ProtocolError> {
    let target = r.string("target", MAX_PATH)?;
    if target.is_empty() || target.contains('\0') {
        return Err(ProtocolError::Invalid { field: "target", reason: "empty or contains NUL" });
    }
    Ok(target.to_owned())
}

fn message(kind: Kind, payload: &[u8], fd_count: usize) -> Vec<u8> {
    let header = Header {
        kind: kind as u16,
        payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        fd_count: u16::try_from(fd_count).unwrap_or(u16::MAX),
    };
    let mut out = Vec::with_capacity(super::HEADER_LEN + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

fn expect_fds(what: &'static str, expected: usize, actual: usize) -> Result<(), ProtocolError> {
    if expected == actual { Ok(()) } else { Err(ProtocolError::FdCount { what, expected, actual }) }
}

impl Request {
    /// This request's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Register(_) => Kind::Register,
            Request::AddDevice { .. } => Kind::AddDevice,
            Request::Attach { .. } => Kind::Attach,
            Request::Unregister { .. } => Kind::Unregister,
            Request::List { .. } => Kind::List,
            Request::ListStats { .. } => Kind::ListStats,
            Request::Metrics => Kind::Metrics,
            Request::Abort { .. } => Kind::Abort,
            Request::Umount { .. } => Kind::Umount,
            Request::Handover { .. } => Kind::Handover,
            Request::HandoverDone { .. } => Kind::HandoverDone,
            Request::StandIn(_) => Kind::StandIn,
            Request::Hold { .. } => Kind::Hold,
            Request::Release { .. } => Kind::Release,
            Request::Held { .. } => Kind::Held,
            Request::Standby { .. } => Kind::Standby,
            Request::ListFull { .. } => Kind::ListFull,
            Request::Note { .. } => Kind::Note,
            Request::ListNotes { .. } => Kind::ListNotes,
            Request::Liveness { .. } => Kind::Liveness,
            Request::Died { .. } => Kind::Died,
        }
    }

    /// How many fds this kind of request carries.
    pub fn fd_count(&self) -> usize {
        match self {
            Request::Register(_) => 2,
            Request::AddDevice { .. } | Request::Hold { .. } | Request::Liveness { .. } => 1,
            _ => 0,
        }
    }
}

/// The whole message (header and payload) for `req`; send it with `req.fd_count()` fds.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut w = Writer::new();
    match req {
        Request::Register(r) => {
            w.bytes(r.tag.as_bytes()).u32(r.rescue_uid);
            w.bytes(r.mountpoint.as_os_str().as_bytes()).u32(r.conn_id);
            w.u64(r.recovery_timeout_ms).bytes(&r.negotiation).u32(r.flags);
        }
        Request::AddDevice { tag, index } => {
            w.bytes(tag.as_bytes()).u32(*index);
        }
        Request::Attach { tag }
        | Request::Unregister { tag }
        | Request::Handover { tag }
        | Request::Standby { tag }
        | Request::Liveness { tag } => {
            w.bytes(tag.as_bytes());
        }
        Request::Died { tag, server_pid } => {
            w.bytes(tag.as_bytes()).u32(*server_pid);
        }
        Request::HandoverDone { tag, errno } => {
            w.bytes(tag.as_bytes()).i32(*errno);
        }
        Request::List { skip }
        | Request::ListStats { skip }
        | Request::ListFull { skip }
        | Request::ListNotes { skip } => {
            w.u32(*skip);
        }
        Request::Note { tag, note } => {
            w.bytes(tag.as_bytes()).bytes(note.as_bytes());
        }
        Request::Metrics => {}
        Request::Abort { target } | Request::Umount { target } => {
            w.bytes(target.as_bytes());
        }
        Request::StandIn(s) => {
            w.bytes(s.tag.as_bytes()).bytes(&s.attr).bytes(&s.statfs);
            s.encode_xattrs(&mut w);
        }
        Request::Hold { tag, key } | Request::Release { tag, key } => {
            w.bytes(tag.as_bytes()).u64(*key);
        }
        Request::Held { tag, after } => {
            w.bytes(tag.as_bytes()).u64(*after);
        }
    }
    message(req.kind(), &w.into_bytes(), req.fd_count())
}

/// Decode a whole received request message that came with `fds` file descriptors.
pub fn decode_request(msg: &[u8], fds: usize) -> Result<Request, ProtocolError> {
    let (header, payload) = Header::decode(msg, fds)?;
    let kind = Kind::from_u16(header.kind).ok_or(ProtocolError::UnknownKind(header.kind))?;
    let mut r = Reader::new(payload);
    let req = match kind {
        Kind::Register => {
            let tag = tag_field(&mut r)?;
            let rescue_uid = r.u32("rescue_uid")?;
            let mountpoint = path_field(&mut r, "mountpoint")?;
            let conn_id = r.u32("conn_id")?;
            let recovery_timeout_ms = r.u64("recovery_timeout_ms")?;
            let negotiation = r.bytes("negotiation", MAX_NEGOTIATION)?.to_vec();
            let flags = r.u32("flags")?;
            if flags & !REGISTER_FAIL_ON_TIMEOUT != 0 {
                return Err(ProtocolError::Invalid { field: "flags", reason: "unknown flag" });
            }
            Request::Register(Register {
                tag,
                rescue_uid,
                mountpoint,
                conn_id,
                recovery_timeout_ms,
                negotiation,
                flags,
            })
        }
        Kind::AddDevice => {
            let tag = tag_field(&mut r)?;
            let index = r.u32("index")?;
            if index as usize >= MAX_DEVICES {
                return Err(ProtocolError::Invalid { field: "index", reason: "at least 16" });
            }
            Request::AddDevice { tag, index }
        }
        Kind::Attach => Request::Attach { tag: tag_field(&mut r)? },
        Kind::Unregister => Request::Unregister { tag: tag_field(&mut r)? },
        Kind::List => Request::List { skip: r.u32("skip")? },
        Kind::ListStats => Request::ListStats { skip: r.u32("skip")? },
        Kind::Metrics => Request::Metrics,
        Kind::Abort => Request::Abort { target: target_field(&mut r)? },
        Kind::Umount => Request::Umount { target: target_field(&mut r)? },
        Kind::Handover => Request::Handover { tag: tag_field(&mut r)? },
        Kind::HandoverDone => {
            let tag = tag_field(&mut r)?;
            Request::HandoverDone { tag, errno: r.i32("errno")? }
        }
        Kind::StandIn => {
            let tag = tag_field(&mut r)?;
            let attr = r.bytes("attr", ATTR_OUT_LEN)?.to_vec();
            if !attr.is_empty() && attr.len() != ATTR_OUT_LEN {
                return Err(ProtocolError::Invalid {
                    field: "attr",
                    reason: "not a fuse_attr_out",
                });
            }
            let statfs = r.bytes("statfs", STATFS_OUT_LEN)?.to_vec();
            if !statfs.is_empty() && statfs.len() != STATFS_OUT_LEN {
                return Err(ProtocolError::Invalid {
                    field: "statfs",
                    reason: "not a fuse_statfs_out",
                });
            }
            let xattrs = StandIn::decode_xattrs(r.bytes("xattrs", MAX_STAND_IN_XATTRS)?)?;
            Request::StandIn(StandIn { tag, attr, statfs, xattrs })
        }
        Kind::Hold => Request::Hold { tag: tag_field(&mut r)?, key: r.u64("key")? },
        Kind::Release => Request::Release { tag: tag_field(&mut r)?, key: r.u64("key")? },
        Kind::Held => Request::Held { tag: tag_field(&mut r)?, after: r.u64("after")? },
        Kind::Standby => Request::Standby { tag: tag_field(&mut r)? },
        Kind::ListFull => Request::ListFull { skip: r.u32("skip")? },
        Kind::Note => {
            let tag = tag_field(&mut r)?;
            let note = r.string("note", MAX_NOTE)?;
            validate_note(note)?;
            Request::Note { tag, note: note.to_owned() }
        }
        Kind::ListNotes => Request::ListNotes { skip: r.u32("skip")? },
        Kind::Liveness => Request::Liveness { tag: tag_field(&mut r)? },
        Kind::Died => {
            let tag = tag_field(&mut r)?;
            Request::Died { tag, server_pid: r.u32("server_pid")? }
        }
        Kind::Ok
        | Kind::Error
        | Kind::Attached
        | Kind::ListReply
        | Kind::HandoverAsk
        | Kind::HeldReply
        | Kind::ListStatsReply
        | Kind::MetricsReply
        | Kind::ListFullReply
        | Kind::ListNotesReply
        | Kind::Watch => {
            return Err(ProtocolError::UnexpectedKind(header.kind));
        }
    };
    r.finish()?;
    expect_fds("request", req.fd_count(), fds)?;
    Ok(req)
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The whole message for `reply`, and how many fds go with it.
pub fn encode_reply(reply: &Reply) -> (Vec<u8>, usize) {
    let mut w = Writer::new();
    let (kind, fds) = match reply {
        Reply::Ok => (Kind::Ok, 0),
        Reply::Error { errno, message } => {
            w.i32(*errno).bytes(truncate_str(message, MAX_ERROR_MESSAGE).as_bytes());
            (Kind::Error, 0)
        }
        Reply::Attached { mountpoint, conn_id, negotiation, device_count, owner_uid } => {
            w.bytes(mountpoint.as_os_str().as_bytes()).u32(*conn_id);
            w.bytes(negotiation).u32(*device_count).u32(*owner_uid);
            (Kind::Attached, 1 + *device_count as usize)
        }
        Reply::List { total, entries }
        | Reply::ListStats { total, entries }
        | Reply::ListFull { total, entries }
        | Reply::ListNotes { total, entries } => {
            let (detail, kind) = match reply {
                Reply::ListStats { .. } => (ListDetail::Stats, Kind::ListStatsReply),
                Reply::ListFull { .. } => (ListDetail::Full, Kind::ListFullReply),
                Reply::ListNotes { .. } => (ListDetail::Notes, Kind::ListNotesReply),
                _ => (ListDetail::Base, Kind::ListReply),
            };
            w.u32(*total).u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
            for e in entries {
                e.encode(&mut w, detail);
            }
            (kind, 0)
        }
        Reply::Metrics { text } => {
            w.bytes(truncate_str(text, MAX_METRICS_TEXT).as_bytes());
            (Kind::MetricsReply, 0)
        }
        Reply::HandoverAsk { tag, pid, uid } => {
            w.bytes(tag.as_bytes()).u32(*pid).u32(*uid);
            (Kind::HandoverAsk, 0)
        }
        Reply::Held { keys, more } => {
            w.u32(u32::from(*more)).u32(u32::try_from(keys.len()).unwrap_or(u32::MAX));
            for key in keys {
                w.u64(*key);
            }
            (Kind::HeldReply, keys.len())
        }
        Reply::Watch { server_pid } => {
            w.u32(*server_pid);
            (Kind::Watch, 1)
        }
    };
    debug_assert!(w.len() <= MAX_PAYLOAD);
    (message(kind, &w.into_bytes(), fds), fds)
}

/// Decode a whole received reply message that came with `fds` file descriptors.
pub fn decode_reply(msg: &[u8], fds: usize) -> Result<Reply, ProtocolError> {
    let (header, payload) = Header::decode(msg, fds)?;
    let kind = Kind::from_u16(header.kind).ok_or(ProtocolError::UnknownKind(header.kind))?;
    let mut r = Reader::new(payload);
    let (reply, expected) = match kind {
        Kind::Ok => (Reply::Ok, 0),
        Kind::Error => {
            let errno = r.i32("errno")?;
            let message = r.string("message", MAX_ERROR_MESSAGE)?.to_owned();
            (Reply::Error { errno, message }, 0)
        }
        Kind::Attached => {
            let mountpoint = path_field(&mut r, "mountpoint")?;
            let conn_id = r.u32("conn_id")?;
            let negotiation = r.bytes("negotiation", MAX_NEGOTIATION)?.to_vec();
            let device_count = r.u32("device_count")?;
            if device_count == 0 || device_count as usize > MAX_DEVICES {
                return Err(ProtocolError::Invalid {
                    field: "device_count",
                    reason: "not in 1..=16",
                });
            }
            let owner_uid = r.u32("owner_uid")?;
            let fds = 1 + device_count as usize;
            (Reply::Attached { mountpoint, conn_id, negotiation, device_count, owner_uid }, fds)
        }
        Kind::ListReply | Kind::ListStatsReply | Kind::ListFullReply | Kind::ListNotesReply => {
            let detail = match kind {
                Kind::ListStatsReply => ListDetail::Stats,
                Kind::ListFullReply => ListDetail::Full,
                Kind::ListNotesReply => ListDetail::Notes,
                _ => ListDetail::Base,
            };
            let total = r.u32("total")?;
            let count = r.u32("count")?;
            let mut entries = Vec::new();
            for _ in 0..count {
                entries.push(ListEntry::decode(&mut r, detail)?);
            }
            match detail {
                ListDetail::Base => (Reply::List { total, entries }, 0),
                ListDetail::Stats => (Reply::ListStats { total, entries }, 0),
                ListDetail::Full => (Reply::ListFull { total, entries }, 0),
                ListDetail::Notes => (Reply::ListNotes { total, entries }, 0),
            }
        }
        Kind::MetricsReply => {
            let text = r.string("text", MAX_METRICS_TEXT)?.to_owned();
            (Reply::Metrics { text }, 0)
        }
        Kind::HandoverAsk => {
            let tag = tag_field(&mut r)?;
            (Reply::HandoverAsk { tag, pid: r.u32("pid")?, uid: r.u32("uid")? }, 0)
        }
        Kind::HeldReply => {
            let more = match r.u32("more")? {
                0 => false,
                1 => true,
                _ => return Err(ProtocolError::Invalid { field: "more", reason: "not 0 or 1" }),
            };
            let count = r.u32("count")? as usize;
            if count > MAX_HELD_PER_REPLY {
                return Err(ProtocolError::Invalid { field: "count", reason: "above 16" });
            }
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                keys.push(r.u64("key")?);
            }
            (Reply::Held { keys, more }, count)
        }
        Kind::Watch => (Reply::Watch { server_pid: r.u32("server_pid")? }, 1),
        _ => return Err(ProtocolError::UnexpectedKind(header.kind)),
    };
    r.finish()?;
    expect_fds("reply", expected, fds)?;
    Ok(reply)
}
