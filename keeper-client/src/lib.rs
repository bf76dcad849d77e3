//! The client side of `fuse-keeper`, the per-node daemon that holds every recoverable FUSE
//! connection's `/dev/fuse` fds, saved INIT negotiation and state fd so that a mount outlives
//! its server. A FUSE server links this crate, not the daemon.
//!
//! - [`protocol`]: the wire format, message by message (`docs/keeper-protocol.md`).
//! - [`KeeperClient`]: one connection to a keeper: REGISTER a connection, ATTACH to it again
//!   after a crash, LIST, planned handover, stand-in answers, held fds.
//! - [`socket_path`], [`spawn_detached`], [`find_keeper_binary`]: finding or starting the
//!   keeper a server talks to.
//! - [`metrics_http`]: a minimal `GET /metrics` endpoint, for the keeper and for servers
//!   that publish their own counters.
//! - [`socket_dir`]: the rules a keeper socket's directory must meet, which the keeper and
//!   [`spawn_detached`] both apply.
//!
//! All `unsafe` code is in the private `sys` module (`kcmp`, and the `pre_exec` hook that
//! detaches a spawned keeper).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod error;
pub mod metrics_http;
pub mod protocol;
pub mod socket_dir;
mod spawn;
#[allow(unsafe_code)]
mod sys;

pub use client::{Attached, ConnInfo, KeeperClient, Registration, listen_socket, socket_path};
pub use error::KeeperError;
pub use protocol::ConnState;
pub use spawn::{BIN_ENV, SPAWN_WAIT, find_keeper_binary, spawn_detached};
pub use sys::same_open_file;
