//! The fixed 16-byte message header and the message kinds.

use super::ProtocolError;

/// `"FKKR"` read as a little-endian u32.
pub const MAGIC: u32 = 0x524B_4B46;
/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Size of the header.
pub const HEADER_LEN: usize = 16;
/// Largest message, header included.
pub const MAX_MESSAGE: usize = 65536;
/// Largest payload.
pub const MAX_PAYLOAD: usize = MAX_MESSAGE - HEADER_LEN;
/// Most fds a request may carry (the keeper receives with room for this many: more is
/// `MSG_CTRUNC` and the message is refused).
pub const MAX_REQUEST_FDS: usize = 16;
/// Most fds any message may carry: the ATTACHED reply carries the state fd and up to 16 devices.
pub const MAX_FDS: usize = 17;

/// Message kinds. Requests are below 0x8000, replies at or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Kind {
    /// Hand a new connection to the keeper.
    Register = 1,
    /// Hand a cloned device fd of a registered connection to the keeper.
    AddDevice = 2,
    /// Take over an orphaned connection.
    Attach = 3,
    /// Drop a connection (clean unmount).
    Unregister = 4,
    /// List the connections visible to the caller.
    List = 5,
    /// Abort a connection and detach its mount.
    Abort = 6,
    /// Unmount promptly whatever the server's state.
    Umount = 7,
    /// Take over a connection, from its live server if it agrees (planned handover).
    Handover = 8,
    /// A server's answer to HANDOVER_ASK: stopped and handing over, or refused.
    HandoverDone = 9,
    /// What the keeper may answer for the connection while it is orphaned.
    StandIn = 10,
    /// Hold an fd for the connection's servers (a file with no name to reopen it by).
    Hold = 11,
    /// Let a held fd go.
    Release = 12,
    /// The held fds, to a server that attached.
    Held = 13,
    /// LIST, each entry with its recovery statistics.
    ListStats = 14,
    /// The keeper's metrics, in the Prometheus text format.
    Metrics = 15,
    /// Wait, as a hot standby, for the tag's live server to die, then take the connection over
    /// (answered OK once parked, then ATTACHED or ERROR).
    Standby = 16,
    /// LIST_STATS, each entry with its parked standby's pid too.
    ListFull = 17,
    /// A short status note for a connection, shown by LIST_NOTES (replacing the last).
    Note = 18,
    /// LIST_FULL, each entry with its status note too.
    ListNotes = 19,
    /// From a connection's server: its liveness page (a sealed memfd), for a hot standby.
    Liveness = 20,
    /// From a parked standby: the server's liveness page says every thread of it died.
    Died = 21,
    /// Success without data.
    Ok = 0x8000,
    /// Failure: errno and message.
    Error = 0x8001,
    /// Answer to ATTACH.
    Attached = 0x8002,
    /// Answer to LIST.
    ListReply = 0x8003,
    /// Keeper to a live server, unasked: another server wants the connection.
    HandoverAsk = 0x8004,
    /// Answer to HELD: keys, with one fd each.
    HeldReply = 0x8005,
    /// Answer to LIST_STATS.
    ListStatsReply = 0x8006,
    /// Answer to METRICS.
    MetricsReply = 0x8007,
    /// Answer to LIST_FULL.
    ListFullReply = 0x8008,
    /// Answer to LIST_NOTES.
    ListNotesReply = 0x8009,
    /// Keeper to a parked standby, between STANDBY's OK and its last answer: the live
    /// server's liveness page, read-only.
    Watch = 0x800A,
}

impl Kind {
    /// The kind with this number, if any.
    pub fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            1 => Kind::Register,
            2 => Kind::AddDevice,
            3 => Kind::Attach,
            4 => Kind::Unregister,
            5 => Kind::List,
            6 => Kind::Abort,
            7 => Kind::Umount,
            8 => Kind::Handover,
            9 => Kind::HandoverDone,
            10 => Kind::StandIn,
            11 => Kind::Hold,
            12 => Kind::Release,
            13 => Kind::Held,
            14 => Kind::ListStats,
            15 => Kind::Metrics,
            16 => Kind::Standby,
            17 => Kind::ListFull,
            18 => Kind::Note,
            19 => Kind::ListNotes,
            20 => Kind::Liveness,
            21 => Kind::Died,
            0x8000 => Kind::Ok,
            0x8001 => Kind::Error,
            0x8002 => Kind::Attached,
            0x8003 => Kind::ListReply,
            0x8004 => Kind::HandoverAsk,
            0x8005 => Kind::HeldReply,
            0x8006 => Kind::ListStatsReply,
            0x8007 => Kind::MetricsReply,
            0x8008 => Kind::ListFullReply,
            0x8009 => Kind::ListNotesReply,
            0x800A => Kind::Watch,
            _ => return None,
        })
    }

    /// True for the replies (keeper to client).
    pub fn is_reply(self) -> bool {
        self as u16 >= 0x8000
    }
}

/// A decoded header. `magic`, `version` and `reserved` are checked on decode and implied on
/// encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Raw kind number (unknown kinds decode; the caller answers them).
    pub kind: u16,
    /// Bytes after the header.
    pub payload_len: u32,
    /// File descriptors attached to the message.
    pub fd_count: u16,
}

impl Header {
    /// The 16 bytes of this header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&self.kind.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..14].copy_from_slice(&self.fd_count.to_le_bytes());
        out
    }

    /// Decode and check the header at the start of `msg` (the whole received message) against
    /// the message's length and the number of fds that came with it. Returns the header and the
    /// payload.
    pub fn decode(msg: &[u8], fds_received: usize) -> Result<(Header, &[u8]), ProtocolError> {
        let Some((head, payload)) = msg.split_first_chunk::<HEADER_LEN>() else {
            return Err(ProtocolError::ShortHeader(msg.len()));
        };
        let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(ProtocolError::BadVersion(version));
        }
        if u16_at(14) != 0 {
            return Err(ProtocolError::Reserved(u16_at(14)));
        }
        let header = Header { kind: u16_at(6), payload_len: u32_at(8), fd_count: u16_at(12) };
        if msg.len() > MAX_MESSAGE {
            return Err(ProtocolError::TooLarge);
        }
        if usize::try_from(header.payload_len).ok() != Some(payload.len()) {
            return Err(ProtocolError::PayloadLength {
                header: header.payload_len,
                actual: payload.len(),
            });
        }
        if usize::from(header.fd_count) > MAX_FDS || fds_received > MAX_FDS {
            return Err(ProtocolError::TooManyFds { max: MAX_FDS });
        }
        if usize::from(header.fd_count) != fds_received {
            return Err(ProtocolError::FdCount {
                what: "header",
                expected: header.fd_count.into(),
                actual: fds_received,
            });
        }
        Ok((header, payload))
    }
}
