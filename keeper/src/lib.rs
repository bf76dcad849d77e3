//! `fuse-keeper`: one small daemon per node that holds every FUSE connection's `/dev/fuse` fds
//! (so the kernel never sees the last close when a server dies), its saved INIT negotiation and
//! its state-store fd, and hands them back only to the connection's rescue uid.
//!
//! - [`protocol`]: the wire format (`docs/keeper-protocol.md`).
//! - [`client`]: what servers and admin commands use: [`KeeperClient`], [`socket_path`],
//!   [`spawn_detached`], [`find_keeper_binary`].
//! - [`daemon`]: the event loop behind `fuse-keeper serve`.
//! - [`text`]: escaping client-chosen strings for terminals and logs.
//!
//! All `unsafe` code is in the private `sys` module.

#![deny(unsafe_code)]

pub mod client;
pub mod daemon;
mod error;
pub mod protocol;
mod spawn;
#[allow(unsafe_code)]
mod sys;
pub mod text;

pub use client::{Attached, ConnInfo, KeeperClient, Registration, socket_path};
pub use error::KeeperError;
pub use protocol::ConnState;
pub use spawn::{BIN_ENV, SPAWN_WAIT, find_keeper_binary, spawn_detached};
pub use sys::same_open_file;
