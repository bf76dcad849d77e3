//! Decoding errors.

/// A message that does not follow the protocol. Each maps to the errno the keeper answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Fewer bytes than a header.
    #[error("message of {0} bytes is shorter than the 16-byte header")]
    ShortHeader(usize),
    /// Wrong magic number.
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    /// Unsupported protocol version.
    #[error("unsupported protocol version {0}")]
    BadVersion(u16),
    /// The reserved header field is not zero.
    #[error("reserved header field is {0}, not 0")]
    Reserved(u16),
    /// The header's payload length disagrees with the bytes received.
    #[error("header says {header} payload bytes, message has {actual}")]
    PayloadLength {
        /// The header's `payload_len`.
        header: u32,
        /// The bytes after the header in the message.
        actual: usize,
    },
    /// The message is longer than 64 KiB (or was truncated on receipt).
    #[error("message larger than the 65536-byte maximum")]
    TooLarge,
    /// More file descriptors than allowed (or the control data was truncated on receipt).
    #[error("too many file descriptors (at most {max})")]
    TooManyFds {
        /// The most the message may carry.
        max: usize,
    },
    /// The header's fd count disagrees with the fds received, or the kind expects another count.
    #[error("{what}: expected {expected} file descriptors, got {actual}")]
    FdCount {
        /// `"request"`, `"reply"` or `"header"`: what set the expected count.
        what: &'static str,
        /// The fds the header or the kind calls for.
        expected: usize,
        /// The fds received.
        actual: usize,
    },
    /// Unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// A message kind that is valid, but not in this direction (a reply sent as a request).
    #[error("unexpected message kind {0}")]
    UnexpectedKind(u16),
    /// The payload ended inside a field.
    #[error("payload truncated in field {0}")]
    Truncated(&'static str),
    /// Bytes left after the last field.
    #[error("{0} trailing bytes after the last field")]
    Trailing(usize),
    /// A string or blob longer than its bound.
    #[error("field {field} is {len} bytes long, at most {max} allowed")]
    TooLong {
        /// The field's name, as in docs/keeper-protocol.md.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// Its bound in bytes.
        max: usize,
    },
    /// A field with a value that is not allowed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field's name, as in docs/keeper-protocol.md.
        field: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl ProtocolError {
    /// The errno of the ERROR reply for this error.
    pub fn errno(&self) -> i32 {
        match self {
            ProtocolError::TooLarge => libc::EMSGSIZE,
            ProtocolError::TooManyFds { .. } | ProtocolError::FdCount { .. } => libc::EBADF,
            ProtocolError::UnknownKind(_) | ProtocolError::UnexpectedKind(_) => libc::EOPNOTSUPP,
            ProtocolError::Invalid { .. } | ProtocolError::TooLong { .. } => libc::EINVAL,
            ProtocolError::ShortHeader(_)
            | ProtocolError::BadMagic(_)
            | ProtocolError::BadVersion(_)
            | ProtocolError::Reserved(_)
            | ProtocolError::PayloadLength { .. }
            | ProtocolError::Truncated(_)
            | ProtocolError::Trailing(_) => libc::EPROTO,
        }
    }
}
