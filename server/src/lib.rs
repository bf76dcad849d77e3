//! FUSE sessions over the transport layer: fresh or resumed, served by worker threads that
//! decode each request, call the [`Filesystem`], and write its reply.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod channel;
mod dispatch;
mod exactly_once;
mod filesystem;
mod ids;
mod init;
pub mod journal;
pub mod notify;
mod session;
mod signals;
mod stats;

pub use channel::{Channel, Context, DeviceCustody, KEEPER_FH, NoCustody, Notifier};
pub use filesystem::*;
pub use fuse_abi::{fuse_attr, fuse_kstatfs};
pub use fuse_proto::Errno;
pub use fuse_transport::MountOptions;
pub use ids::{FileHandle, NodeId, Unique};
pub use init::{MIN_MINOR, Negotiation, SessionConfig, WorkerStart, negotiate};
pub use journal::Journal;
pub use session::{STAND_IN_XATTRS, Session, SessionError, StandIn, mount};
pub use signals::{SignalGuard, unmount_on_signal, unmount_on_signal_once_serving};
pub use stats::{RequestStats, StatsSnapshot};

/// The transport's error as an `io::Error`, keeping the errno where there is one.
pub(crate) fn to_io(err: fuse_transport::Error) -> std::io::Error {
    match err.raw_os_error() {
        Some(errno) => std::io::Error::from_raw_os_error(errno),
        None => std::io::Error::other(err),
    }
}
