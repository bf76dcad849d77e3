//! `hello`, surviving `kill -9` of its server: the same filesystem, mounted with a tag and
//! registered with `fuse-keeper`, which holds the connection while no server runs. Started
//! again with the same command line, the server takes the connection over: applications
//! reading `hello.txt` meanwhile wait, then go on, and never see an error.
//!
//! ```sh
//! mkdir -p /tmp/hello
//! cargo run --example hello_recoverable -- /tmp/hello hello   # starts a keeper if none runs
//! kill -9 <its pid>; cargo run --example hello_recoverable -- /tmp/hello hello
//! ```
//!
//! What it takes beyond `hello`: `Recoverable` (the filesystem's tables in the state store:
//! none here, its tree never changes), and `fuse_recovery::serve` instead of mount + start.

#[path = "hello.rs"]
#[allow(dead_code)]
mod hello;

use std::path::PathBuf;

use fuse_recovery::store::TableSpec;
use fuse_recovery::{Recoverable, RecoveryOptions};
use fuse_server::{MountOptions, SessionConfig};

use hello::Hello;

impl Recoverable for Hello {
    // Its nodeids are fixed and its handles all 0: nothing to keep across a restart.
    const TABLES: &'static [TableSpec] = &[];
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(mountpoint), Some(tag)) = (args.next(), args.next()) else {
        return Err("usage: hello_recoverable MOUNTPOINT TAG".into());
    };
    let mountpoint = PathBuf::from(mountpoint);
    let tag = tag.into_string().map_err(|_| "the tag must be UTF-8")?;
    // Read-only: no request can take effect twice, so no journal (a filesystem that writes
    // keeps `journal: true` and lists fuse_recovery::journal::JOURNAL in its TABLES).
    let options = RecoveryOptions { journal: false, ..RecoveryOptions::new(tag) };
    let mount =
        MountOptions { fsname: Some("hello".into()), read_only: true, ..MountOptions::default() };
    let _unmount = fuse_server::unmount_on_signal(&mountpoint)?;
    let started = fuse_recovery::serve(
        &mountpoint,
        &mount,
        SessionConfig::default(),
        &options,
        |_store| Ok(Hello),
        |started| eprintln!("hello_recoverable: serving ({started:?})"),
    )?;
    eprintln!("hello_recoverable: unmounted ({started:?})");
    Ok(())
}
