//! Example filesystems, each one file you can copy, run with `cargo run --example NAME`:
//!
//! - `hello`: read-only, one file (`hello.txt`); fuser's `examples/hello.rs`, on this library.
//! - `hello_recoverable`: the same filesystem, surviving `kill -9` of its server: mounted with
//!   a tag, held by `fuse-keeper` while no server runs, taken over by the next one.
//! - `memfs`: a read-write in-memory filesystem whose inodes, directory entries, extended
//!   attributes and data are typed records in the state store: a tmpfs that outlives its
//!   server (pjdfstest and fsx clean, also while its server is SIGKILLed:
//!   `tests/peers/memfs.sh`).
//!
//! The tests in `examples/tests/` run each example on a real mount. This library itself is
//! empty: the package exists for its examples.

#![forbid(unsafe_code)]
