//! The fail policy (`REGISTER_FAIL_ON_TIMEOUT`): when an orphaned connection's recovery
//! timeout passes, the keeper keeps the mount and answers its requests with EIO until a server
//! attaches, instead of aborting it.
//!
//! The keeper clones the connection's device (its own `/dev/fuse` file, non-blocking, so that
//! the servers' files keep their blocking mode) and writes FUSE_NOTIFY_RESEND on it: the
//! requests the dead server had read go back to the input queue. It then reads every request
//! and answers EIO, except those that take no answer (FORGET, BATCH_FORGET, INTERRUPT: the
//! restarted server keeps those inodes' lookup counts a little high, which only delays their
//! forgetting) and INIT, which it leaves unanswered for the next server. When a server
//! attaches, the keeper writes RESEND again (INIT goes back to the queue) and closes its clone,
//! whose processing list is then empty.

use std::io::IoSlice;
use std::os::fd::AsFd;

use fuse_abi::{fuse_in_header, fuse_opcode, fuse_out_header};
use zerocopy::{FromBytes, IntoBytes};

use super::event_loop::{FAILING_BITS, Keeper};

/// Room for the largest request: FUSE refuses reads into buffers smaller than max_write plus
/// headers; the library negotiates at most 1 MiB (256 pages).
const READ_BUFFER: usize = (1 << 20) + (64 << 10);
/// Requests answered per readiness, so that one busy connection cannot starve the others.
const BATCH: usize = 256;

/// Writes a bare reply header: an error answer to `unique`, or a notification (`unique` 0).
fn write_header(
    dev: std::os::fd::BorrowedFd<'_>,
    error: i32,
    unique: u64,
) -> Result<fuse_transport::WriteOutcome, fuse_transport::Error> {
    let len = size_of::<fuse_out_header>() as u32;
    let header = fuse_out_header { len, error, unique };
    fuse_transport::write_reply(dev, &[IoSlice::new(header.as_bytes())])
}

fn resend(dev: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    let resend = fuse_abi::fuse_notify_code::FUSE_NOTIFY_RESEND as i32;
    match write_header(dev, resend, 0) {
        Ok(fuse_transport::WriteOutcome::Written) => Ok(()),
        Ok(other) => Err(std::io::Error::other(format!("{other:?}"))),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

impl Keeper {
    /// Entry `id`'s recovery timeout passed with the fail policy: answer its requests with EIO
    /// from now on. If that cannot be set up, abort it as the default policy would.
    pub(super) fn start_failing(&mut self, id: u64) {
        let Some(entry) = self.registry.get(id) else { return };
        let (tag, uid) = (entry.tag.clone(), entry.owner_uid);
        let setup = || -> std::io::Result<std::os::fd::OwnedFd> {
            let device = entry.devices.values().next().ok_or(std::io::ErrorKind::NotFound)?;
            let clone = fuse_transport::clone_device(device.as_fd())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            rustix::fs::fcntl_setfl(&clone, rustix::fs::OFlags::NONBLOCK)?;
            resend(clone.as_fd())?;
            Ok(clone)
        };
        match setup() {
            Ok(clone) => {
                if let Err(e) = self.watch_fd(&clone, FAILING_BITS | id) {
                    tracing::warn!(
                        tag = %crate::text::escape(&tag), uid,
                        "cannot watch the device clone: {e}; aborting"
                    );
                    return self.abort_expired(id);
                }
                if self.fail_buf.is_empty() {
                    self.fail_buf = vec![0u8; READ_BUFFER];
                }
                tracing::info!(
                    tag = %crate::text::escape(&tag), uid,
                    "recovery timeout passed: failing requests with EIO until a server attaches"
                );
                if let Some(entry) = self.registry.get_mut(id) {
                    entry.failing = Some(clone);
                }
                self.fail_requests(id);
            }
            Err(e) => {
                tracing::warn!(
                    tag = %crate::text::escape(&tag), uid,
                    "cannot fail requests ({e}): aborting instead"
                );
                self.abort_expired(id);
            }
        }
    }

    /// Reads entry `id`'s waiting requests and answers each with EIO (see the module doc).
    pub(super) fn fail_requests(&mut self, id: u64) {
        let Some(clone) = self.registry.get(id).and_then(|e| e.failing.as_ref()) else { return };
        let mut answered = 0usize;
        for _ in 0..BATCH {
            let n = match fuse_transport::read_request(clone.as_fd(), &mut self.fail_buf) {
                Ok(Some(n)) => n,
                Ok(None) => break, // the connection is gone; the mount check at teardown says so
                Err(e) if e.is_would_block() => break,
                Err(e) => {
                    tracing::warn!(id, "reading a failing connection: {e}");
                    break;
                }
            };
            let Ok((head, _)) = fuse_in_header::read_from_prefix(&self.fail_buf[..n]) else {
                continue;
            };
            let no_answer = [
                fuse_opcode::FUSE_FORGET,
                fuse_opcode::FUSE_BATCH_FORGET,
                fuse_opcode::FUSE_INTERRUPT,
                fuse_opcode::FUSE_INIT,
            ]
            .iter()
            .any(|&op| op as u32 == head.opcode);
            if no_answer {
                continue;
            }
            let _ = write_header(clone.as_fd(), -libc::EIO, head.unique);
            answered += 1;
        }
        if answered > 0 {
            tracing::debug!(id, answered, "answered EIO");
        }
    }

    /// Entry `id` gets a server (or goes): stop failing its requests.
    pub(super) fn stop_failing(&mut self, id: u64) {
        let Some(clone) = self.registry.get_mut(id).and_then(|e| e.failing.take()) else {
            return;
        };
        self.unwatch_fd(&clone);
        // An INIT left unanswered goes back to the queue before the clone closes (closing it
        // would fail what its processing list holds).
        let _ = resend(clone.as_fd());
        drop(clone);
        if self.registry.iter().all(|e| e.failing.is_none()) {
            self.fail_buf = Vec::new();
        }
    }
}
