//! The client's error type.

use std::io;
use std::path::PathBuf;

use crate::protocol::ProtocolError;

/// Every failure of a keeper client call.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// No keeper listens at the path (ENOENT, ECONNREFUSED, ...).
    #[error("cannot connect to the keeper at {}: {error}", path.display())]
    Connect {
        /// The keeper socket's path.
        path: PathBuf,
        /// The socket(2) or connect(2) error.
        error: io::Error,
    },
    /// Sending or receiving on the keeper socket failed.
    #[error("keeper socket I/O failed: {0}")]
    Io(io::Error),
    /// The keeper's reply did not follow the protocol (or an argument cannot be encoded).
    #[error("keeper protocol error: {0}")]
    Protocol(String),
    /// The keeper closed the connection without a reply.
    #[error("the keeper closed the connection")]
    Closed,
    /// The keeper answered with an ERROR.
    #[error("the keeper refused: {message} ({})", io::Error::from_raw_os_error(*errno))]
    Refused {
        /// The ERROR's errno (docs/keeper-protocol.md, "Errno values"); ENOENT for an
        /// unknown tag.
        errno: i32,
        /// The keeper's explanation, for humans.
        message: String,
    },
}

impl KeeperError {
    /// The errno of a refusal, or of the OS error behind a connect or I/O failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KeeperError::Refused { errno, .. } => Some(*errno),
            KeeperError::Connect { error, .. } | KeeperError::Io(error) => error.raw_os_error(),
            KeeperError::Protocol(_) | KeeperError::Closed => None,
        }
    }

    /// True if no keeper is running at the socket path (nothing to connect to), or it went
    /// away mid-request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            KeeperError::Connect { .. } | KeeperError::Closed => true,
            KeeperError::Io(e) => {
                matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET))
            }
            _ => false,
        }
    }
}

impl From<io::Error> for KeeperError {
    fn from(e: io::Error) -> Self {
        KeeperError::Io(e)
    }
}

impl From<ProtocolError> for KeeperError {
    fn from(e: ProtocolError) -> Self {
        KeeperError::Protocol(e.to_string())
    }
}
