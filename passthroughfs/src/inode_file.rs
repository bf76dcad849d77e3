//! The inode file (`-o inode_file=PATH`): the inode table saved when a server ends and
//! restored by the next mount's, so that the file handles the kernel gave out (NFS clients
//! hold them across server reboots) still open their files after an unmount and a new mount.
//!
//! A server holds `PATH.lock` (flock) from its start to its end, after the save: a new
//! mount's server, started as soon as `umount` returns, waits for the previous one to have
//! saved. The file is written to `PATH.tmp` and renamed over `PATH`, so a reader sees one
//! whole save. It is input like the state store: it must be a regular file of the server's
//! own user, writable by no one else, and its records are checked as they are restored
//! ([`InodeTable::restore`]); one that is not an inode file is reported and left alone.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::inode::InodeTable;

/// How long a new server waits for the previous one to finish saving.
const LOCK_PATIENCE: Duration = Duration::from_secs(60);

/// Largest inode file read (a full table of names and file handles is about 1.7 GB; one
/// this size holds several million records).
const MAX_FILE: u64 = 1 << 30;

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes the inode file's lock (waiting for the previous server to save), then restores the
/// table from the file if it has one. Returns the lock, held until the server ends.
pub fn restore(path: &Path, inodes: &InodeTable) -> anyhow::Result<OwnedFd> {
    use anyhow::Context as _;
    let lock_path = with_suffix(path, ".lock");
    let lock: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?
        .into();
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => {
                anyhow::bail!(
                    "{} is held by another server ({err}): one inode file per mount",
                    lock_path.display()
                )
            }
        }
    }
    match read(path) {
        Ok(None) => {}
        Ok(Some(bytes)) => match inodes.restore(&bytes) {
            Ok(n) => tracing::info!(n, path = %path.display(), "inodes restored"),
            // A server attaching to a live mount: the table it has is the mount's own.
            Err(crate::inode::RestoreError::NotEmpty) => {}
            Err(err) => tracing::warn!(%err, path = %path.display(), "inode file not restored"),
        },
        Err(err) => tracing::warn!(%err, path = %path.display(), "inode file not restored"),
    }
    Ok(lock)
}

/// The file's bytes; `None` if there is none yet. An error for a file that is not a regular
/// file of this user's, writable by no one else, or too large.
fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Error, ErrorKind, Read};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let mut file = match file {
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let meta = file.metadata()?;
    let euid = rustix::process::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        let what = "not a regular file of this user's, writable by it alone";
        return Err(Error::new(ErrorKind::PermissionDenied, what));
    }
    if meta.len() > MAX_FILE {
        return Err(Error::new(ErrorKind::InvalidData, "larger than any inode file"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Saves the table to the inode file (through `PATH.tmp`, renamed over it). Failures are
/// logged: the mount is over, and the next one starts with the file as it was.
pub fn save(path: &Path, inodes: &InodeTable) {
    let tmp = with_suffix(path, ".tmp");
    let written = (|| -> std::io::Result<u64> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        let n = inodes.save(&mut out)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(n)
    })();
    match written {
        Ok(n) => tracing::info!(n, path = %path.display(), "inodes saved"),
        Err(err) => tracing::error!(%err, path = %path.display(), "inodes not saved"),
    }
}
