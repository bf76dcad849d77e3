//! Open files and directories, by the handle (`fh`) the kernel passes back.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuse_server::Errno;
use rustix::fs::Dir;

use crate::inode::Inode;

/// What a handle refers to.
#[derive(Debug)]
pub enum Handle {
    /// An open regular file (or other non-directory); `backed` is its inode when the handle
    /// uses the inode's kernel passthrough backing id.
    File { fd: OwnedFd, backed: Option<Arc<Inode>> },
    /// An open directory stream.
    Dir(Mutex<Dir>),
}

impl Handle {
    /// The file's fd; EBADF for a directory handle.
    pub fn file(&self) -> Result<&OwnedFd, Errno> {
        match self {
            Handle::File { fd, .. } => Ok(fd),
            Handle::Dir(_) => Err(Errno::EBADF),
        }
    }
}

/// The open handles.
#[derive(Debug, Default)]
pub struct HandleTable {
    map: Mutex<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
}

impl HandleTable {
    /// Stores `handle` and returns its fh (never 0).
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(fh, Arc::new(handle));
        fh
    }

    /// The handle for `fh`; EBADF if unknown.
    pub fn get(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        self.lock().get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// Removes and returns the handle for `fh`.
    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.lock().remove(&fh)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Handle>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
