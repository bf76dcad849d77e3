//! The keeper's wire protocol (see `docs/keeper-protocol.md`): a 16-byte header, a payload of
//! little-endian fields, and file descriptors passed with `SCM_RIGHTS` on the same
//! `SOCK_SEQPACKET` message. Decoding never panics: every malformed input is a
//! [`ProtocolError`].

mod codec;
mod error;
mod header;
pub mod liveness;
mod messages;
mod wire;

pub use codec::{Reader, Writer};
pub use error::ProtocolError;
pub use header::{
    HEADER_LEN, Header, Kind, MAGIC, MAX_FDS, MAX_MESSAGE, MAX_PAYLOAD, MAX_REQUEST_FDS, VERSION,
};
pub use messages::{
    ATTR_OUT_LEN, ConnState, EntryStats, KEEPER_FH, ListDetail, ListEntry, MAX_DEVICES,
    MAX_ERROR_MESSAGE, MAX_HELD_PER_REPLY, MAX_METRICS_TEXT, MAX_NEGOTIATION, MAX_NOTE, MAX_PATH,
    MAX_STAND_IN_XATTRS, MAX_TAG, REGISTER_FAIL_ON_TIMEOUT, Register, Reply, Request,
    STAND_IN_XATTRS, STATFS_OUT_LEN, StandIn, decode_reply, decode_request, encode_reply,
    encode_request, is_unprintable, validate_note, validate_tag,
};
pub use wire::{Received, recv_message, send_message};

#[cfg(test)]
mod tests;
