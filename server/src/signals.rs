//! Unmounting on SIGINT and SIGTERM, as a server run in a terminal is expected to.

use std::io;
use std::path::Path;

use signal_hook::consts::{SIGINT, SIGTERM};

/// What [`unmount_on_signal`] installed: the thread waiting for the signals. Dropping it
/// leaves the thread waiting; [`SignalGuard::close`] ends it.
#[derive(Debug)]
pub struct SignalGuard {
    handle: signal_hook::iterator::Handle,
}

impl SignalGuard {
    /// Stops waiting for the signals (their default action is not restored: they are
    /// ignored from then on).
    pub fn close(&self) {
        self.handle.close();
    }
}

/// On the first SIGINT or SIGTERM, detaches the mount at `mountpoint`
/// ([`fuse_transport::unmount_detached`]: `umount2(MNT_DETACH)` as root, `fusermount3 -u -z`
/// otherwise). The kernel then ends the connection, every worker sees it, and
/// [`Session::run`](crate::Session::run) returns `Ok`: Ctrl-C stops a server cleanly instead
/// of leaving a mount whose server is gone.
pub fn unmount_on_signal(mountpoint: &Path) -> io::Result<SignalGuard> {
    let mountpoint = mountpoint.to_path_buf();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(signal, "unmounting");
            if let Err(err) = fuse_transport::unmount_detached(&mountpoint) {
                tracing::warn!(%err, "unmount");
            }
        }
    })?;
    Ok(SignalGuard { handle })
}
