//! Recovery for FUSE servers built on `fuse-server`.
//!
//! [`store`] is the state store: a memfd the keeper holds and the server maps, holding the
//! INIT negotiation and the filesystem's own tables, consistent after the server dies at any
//! instruction, and opened in constant time whatever it holds.

#![warn(missing_docs)]
// The only `unsafe` code is the store's shared mapping (`store/map.rs`) and the liveness
// page's (`liveness.rs`: its mapping, robust futex lists, futex words).
#![deny(unsafe_code)]

pub mod journal;
mod links;
#[allow(unsafe_code)]
pub mod liveness;
mod note;
pub mod serve;
pub mod store;

pub use note::publish_note;
pub use serve::{
    Ended, FdKeeper, Recoverable, RecoveryError, RecoveryOptions, Served, Standing, Started, serve,
    serve_with,
};
