//! `fuse-keeper`: one small daemon per node that holds every FUSE connection's `/dev/fuse` fds
//! (so the kernel never sees the last close when a server dies), its saved INIT negotiation and
//! its state-store fd, and hands them back only to the connection's rescue uid.
//!
//! - [`daemon`]: the event loop behind `fuse-keeper serve`.
//! - [`protocol`], [`client`]: the wire format and the client, from the `fuse-keeper-client`
//!   crate (re-exported here): a FUSE server depends on that crate, not on this one.
//! - [`text`]: escaping client-chosen strings for terminals and logs.
//!
//! All `unsafe` code is in the private `sys` module, but for socket activation in
//! `daemon/socket.rs` (taking fd 3, clearing `LISTEN_*` before any thread exists).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod daemon;
#[allow(unsafe_code)]
mod sys;
pub mod text;

pub use fuse_keeper_client::{
    Attached, BIN_ENV, ConnInfo, ConnState, KeeperClient, KeeperError, Registration, SPAWN_WAIT,
    client, find_keeper_binary, metrics_http, protocol, same_open_file, socket_dir, socket_path,
    spawn_detached,
};
