//! One convention for every error type of the library: an OS error is part of its error's
//! message and not also its `source`; an error of another of our types is the `source` and not
//! also in the message. Printed whole (`{:#}` with anyhow, or source by source), a chain then
//! says each thing once.

use std::error::Error;
use std::io;

use fuse_keeper_client::KeeperError;
use fuse_recovery::RecoveryError;
use fuse_recovery::store::StoreError;
use fuse_server::SessionError;

/// Every error in `err`'s chain, outermost first.
fn chain(err: &dyn Error) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// No error of the chain repeats its source's message, and the OS error appears once.
fn says_each_thing_once(err: &dyn Error, os: &str) {
    let links = chain(err);
    for pair in links.windows(2) {
        assert!(!pair[0].contains(&pair[1]), "{:?} repeats its source {:?}", pair[0], pair[1]);
    }
    let whole = links.join(": ");
    assert_eq!(whole.matches(os).count(), 1, "{os:?} once in {whole:?}");
}

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(2)
}

const ENOENT: &str = "No such file or directory (os error 2)";

#[test]
fn os_errors_are_in_the_message_and_ours_are_sources() {
    let transport = fuse_transport::mount(
        std::path::Path::new("/nonexistent/fuse-recovery-error-test"),
        &fuse_transport::MountOptions::default(),
    )
    .expect_err("no such mountpoint");
    assert!(transport.source().is_none(), "an OS error is not also a source: {transport:?}");
    says_each_thing_once(&transport, ENOENT);

    let session = SessionError::Mount { path: "/x".into(), error: enoent() };
    says_each_thing_once(&session, ENOENT);
    let recovery = RecoveryError::Session(session);
    says_each_thing_once(&recovery, ENOENT);
    assert_eq!(chain(&recovery).len(), 2, "the session error is the recovery error's source");

    let keeper = KeeperError::Connect { path: "/k.sock".into(), error: enoent() };
    says_each_thing_once(&keeper, ENOENT);
    says_each_thing_once(&KeeperError::from(enoent()), ENOENT);
    let recovery = RecoveryError::Keeper { socket: "/k.sock".into(), source: keeper };
    says_each_thing_once(&recovery, ENOENT);

    says_each_thing_once(&StoreError::Map(enoent()), ENOENT);
    says_each_thing_once(&RecoveryError::Store(StoreError::Create(enoent())), ENOENT);
}
