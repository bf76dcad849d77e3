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

/// For a hot standby: on the first SIGINT or SIGTERM, if `serving` is set (it has taken a
/// connection over and serves it) detaches the mount at `mountpoint` as [`unmount_on_signal`]
/// does; otherwise (still waiting, it serves nothing) exits the process with status 0, which
/// the keeper sees as its standby hanging up. The mount of the server it stands by for is
/// never touched by a standby's signal.
pub fn unmount_on_signal_once_serving(
    mountpoint: &Path,
    serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<SignalGuard> {
    let mountpoint = mountpoint.to_path_buf();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            if !serving.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::info!(signal, "standby stopped by a signal before taking over");
                std::process::exit(0);
            }
            tracing::info!(signal, "unmounting");
            if let Err(err) = fuse_transport::unmount_detached(&mountpoint) {
                tracing::warn!(%err, "unmount");
            }
        }
    })?;
    Ok(SignalGuard { handle })
}
