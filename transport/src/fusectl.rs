//! The fuse control filesystem (`/sys/fs/fuse/connections`): abort a connection, count its
//! waiting requests.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

use crate::mountinfo::{find_top_mount, read_mountinfo};
use crate::{Error, Result};

/// Where fusectl is mounted.
pub const FUSECTL_PATH: &str = "/sys/fs/fuse/connections";

/// The directory of connection `id` in fusectl.
pub fn connection_dir(id: u32) -> PathBuf {
    Path::new(FUSECTL_PATH).join(id.to_string())
}

/// Mount fusectl at /sys/fs/fuse/connections unless it is there already (needs root).
pub fn ensure_fusectl() -> Result<()> {
    let entries = read_mountinfo()?;
    if find_top_mount(&entries, Path::new(FUSECTL_PATH)).is_some_and(|e| e.fstype == "fusectl") {
        return Ok(());
    }
    match rustix::mount::mount(
        "fusectl",
        FUSECTL_PATH,
        "fusectl",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    ) {
        Ok(()) => Ok(()),
        // Mounted concurrently by someone else.
        Err(rustix::io::Errno::BUSY) => Ok(()),
        Err(e) => {
            // Lost a race with another mounter: fine if it is there now.
            let entries = read_mountinfo()?;
            if find_top_mount(&entries, Path::new(FUSECTL_PATH))
                .is_some_and(|e| e.fstype == "fusectl")
            {
                Ok(())
            } else {
                Err(Error::MountFusectl(e.into()))
            }
        }
    }
}

/// Abort connection `id`: mount fusectl if needed, then write `1` to
/// `/sys/fs/fuse/connections/<id>/abort`. Requests blocked on the connection fail (ECONNABORTED
/// or ENOTCONN) and device reads return ECONNABORTED. A connection that is already gone (no
/// directory) is success.
pub fn abort_connection(id: u32) -> Result<()> {
    ensure_fusectl()?;
    let path = connection_dir(id).join("abort");
    let file = std::fs::OpenOptions::new().write(true).open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(id, "FUSE connection already gone");
            return Ok(());
        }
        Err(e) => return Err(Error::Abort { id, error: e }),
    };
    match file.write_all(b"1") {
        Ok(()) => Ok(()),
        // The connection went away between open and write.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(error) => Err(Error::Abort { id, error }),
    }
}

/// Number of requests waiting in connection `id` (`/sys/fs/fuse/connections/<id>/waiting`:
/// queued plus being processed by the server). Requires fusectl to be mounted (see
/// [`ensure_fusectl`]).
pub fn waiting_requests(id: u32) -> Result<u32> {
    let path = connection_dir(id).join("waiting");
    let text = std::fs::read_to_string(&path).map_err(|error| Error::Waiting { id, error })?;
    text.trim().parse().map_err(|_| Error::ParseWaiting { id, text })
}
