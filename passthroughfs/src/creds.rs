//! Per-thread credentials: each request runs with the caller's uid, gid and supplementary
//! groups, so the source filesystem checks permissions and assigns ownership as it would
//! for the caller itself.
//!
//! Linux credentials are per thread at the syscall level (glibc only broadcasts setuid to
//! all threads in its wrappers); rustix's `set_thread_*` calls are the raw syscalls. The
//! effective ids change and the real and saved ids stay 0, so a thread can always return to
//! root, and its permitted capabilities survive. Switching is lazy: a thread keeps its
//! current identity until a request needs another one, so a root caller costs no syscall.

use std::cell::RefCell;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};

use fuse_server::{Context, Errno};
use rustix::process::{Gid, Uid};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Identity {
    fn root() -> Self {
        Identity { uid: 0, gid: 0, groups: Vec::new() }
    }
}

/// Switching is on only for a server running as root; an unprivileged server (mounted
/// through fusermount3) serves only its own user and cannot change identity.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether requests run as their callers (a root server); otherwise as the server itself.
pub fn switching() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns switching on when the process runs as root. Call once at start.
pub fn init() {
    ENABLED.store(rustix::process::geteuid().is_root(), Ordering::Relaxed);
}

thread_local! {
    static CURRENT: RefCell<Identity> = RefCell::new(Identity::root());
    /// The calling thread's umask, once it has one of its own (`None`: it shares the
    /// process's, 0).
    static UMASK: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Makes `umask` the calling thread's umask, for a creation the kernel sent unmasked
/// (FUSE_DONT_MASK): the source filesystem then applies it exactly as the kernel would have
/// for the caller, that is only where the parent directory has no default ACL (whose entries
/// decide the new file's mode instead). The first call gives the thread a filesystem context
/// of its own (`unshare(CLONE_FS)`), so each worker's umask is its own; a thread's umask is
/// set again only when a request's differs.
pub fn caller_umask(umask: u32) -> Result<(), Errno> {
    let umask = umask & 0o777;
    UMASK.with(|current| {
        match current.get() {
            Some(set) if set == umask => return Ok(()),
            Some(_) => {}
            None => crate::sys::unshare_fs()?,
        }
        rustix::process::umask(rustix::fs::Mode::from_bits_retain(umask));
        current.set(Some(umask));
        Ok(())
    })
}

/// Runs the rest of the calling request as `ctx`'s caller.
pub fn become_caller(ctx: &Context<'_>) -> Result<(), Errno> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    if ctx.uid == 0 && ctx.gid == 0 {
        return switch(Identity::root());
    }
    let wanted = Identity { uid: ctx.uid, gid: ctx.gid, groups: groups_of(ctx.pid, ctx.gid) };
    switch(wanted)
}

/// The calling thread as root (the server's own identity) until the guard is dropped, then
/// back to the identity it had: on every path out of the scope, an early return through `?`
/// or a panic included.
#[must_use = "the thread is root only while the guard lives"]
pub struct AsRoot {
    /// The identity to return to; `None` when nothing was switched (switching off).
    before: Option<Identity>,
}

impl Drop for AsRoot {
    fn drop(&mut self) {
        if let Some(before) = self.before.take()
            && let Err(errno) = switch(before)
        {
            // The thread stays root; the next request that needs its caller's identity
            // switches to it (switching is per request), so no caller's request runs as root.
            tracing::error!(%errno, "cannot return from root to the caller's identity");
        }
    }
}

/// Root until the returned guard is dropped ([`AsRoot`]).
pub fn root() -> Result<AsRoot, Errno> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(AsRoot { before: None });
    }
    let before = CURRENT.with(|current| current.borrow().clone());
    switch(Identity::root())?;
    Ok(AsRoot { before: Some(before) })
}

/// Runs `f` as root, then returns to the identity the thread had (also if `f` panics).
pub fn as_root<T>(f: impl FnOnce() -> T) -> Result<T, Errno> {
    let _root = root()?;
    Ok(f())
}

/// CAP_SYS_ADMIN raised in the thread's effective set until dropped, then lowered again (a
/// panic included).
struct SysAdmin {
    lowered: rustix::thread::CapabilitySets,
}

impl SysAdmin {
    fn raise() -> Result<SysAdmin, Errno> {
        let mut caps = rustix::thread::capabilities(None)?;
        let lowered = caps;
        caps.effective |= rustix::thread::CapabilitySet::SYS_ADMIN;
        rustix::thread::set_capabilities(None, caps)?;
        Ok(SysAdmin { lowered })
    }
}

impl Drop for SysAdmin {
    fn drop(&mut self) {
        if let Err(errno) = rustix::thread::set_capabilities(None, self.lowered) {
            // Never leave a caller's identity with CAP_SYS_ADMIN: back to root (whose next
            // switch to a caller clears the raised set).
            tracing::error!(%errno, "cannot lower CAP_SYS_ADMIN; returning to root");
            if switch(Identity::root()).is_err() {
                tracing::error!("cannot return to root either: aborting");
                std::process::abort();
            }
        }
    }
}

/// Runs `f` as `ctx`'s caller with CAP_SYS_ADMIN raised in the thread's effective set, then
/// lowers it again: for FUSE_DEV_IOC_BACKING_OPEN, which needs CAP_SYS_ADMIN and records the
/// calling thread's credentials for all the I/O the kernel does on the backing file. Recorded
/// as root, a user's writes through kernel passthrough would be root's: into the blocks ext4
/// reserves for root, past the user's disk quota. Recorded as the caller with only
/// CAP_SYS_ADMIN (which neither reserved blocks nor quotas honour), they are the caller's.
pub fn as_caller_with_sys_admin<T>(ctx: &Context<'_>, f: impl FnOnce() -> T) -> Result<T, Errno> {
    if !ENABLED.load(Ordering::Relaxed) || ctx.uid == 0 {
        return as_root(f);
    }
    become_caller(ctx)?;
    let _raised = SysAdmin::raise()?;
    Ok(f())
}

fn switch(wanted: Identity) -> Result<(), Errno> {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        if *current == wanted {
            return Ok(());
        }
        // Back to root first: changing groups and gid needs CAP_SETGID in the effective set.
        if current.uid != 0 {
            set_thread_res_uid(None, Some(Uid::ROOT), None)?;
            current.uid = 0;
        }
        if current.groups != wanted.groups {
            let groups: Vec<Gid> = wanted.groups.iter().map(|&g| Gid::from_raw(g)).collect();
            set_thread_groups(&groups)?;
            current.groups = wanted.groups.clone();
        }
        if current.gid != wanted.gid {
            set_thread_res_gid(None, Some(Gid::from_raw(wanted.gid)), None)?;
            current.gid = wanted.gid;
        }
        if wanted.uid != 0 {
            set_thread_res_uid(None, Some(Uid::from_raw(wanted.uid)), None)?;
            current.uid = wanted.uid;
        }
        Ok(())
    })
}

/// The caller's supplementary groups, from /proc/PID/status (FUSE does not send them). A
/// caller that is gone or unreadable gets just its primary group.
fn groups_of(pid: u32, gid: u32) -> Vec<u32> {
    let mut groups = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| parse_groups(&status))
        .unwrap_or_default();
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

fn parse_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find(|l| l.starts_with("Groups:"))?;
    Some(line["Groups:".len()..].split_whitespace().filter_map(|g| g.parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_groups_line() {
        let status = "Name:\tcat\nUid:\t1\t1\t1\t1\nGroups:\t4 24 27 \nNgid:\t0\n";
        assert_eq!(parse_groups(status), Some(vec![4, 24, 27]));
        assert_eq!(parse_groups("Groups:\t\n"), Some(vec![]));
        assert_eq!(parse_groups("Name:\tx\n"), None);
    }

    /// As a user, then root for a scope left by a normal end, by `?` and by a panic: the
    /// thread is the user again after each. In a thread of its own (credentials are per
    /// thread), as root (CI is).
    #[test]
    fn root_for_a_scope_returns_to_the_caller_on_every_path() {
        assert!(rustix::process::geteuid().is_root(), "run as root");
        std::thread::spawn(|| {
            ENABLED.store(true, Ordering::Relaxed);
            let user = Identity { uid: 65534, gid: 65534, groups: vec![65534] };
            switch(user).unwrap();
            let euid = || rustix::process::geteuid().as_raw();
            assert_eq!(euid(), 65534);
            {
                let _root = root().unwrap();
                assert_eq!(euid(), 0);
            }
            assert_eq!(euid(), 65534, "after the scope");
            let early = || -> Result<(), Errno> {
                let _root = root()?;
                assert_eq!(euid(), 0);
                Err(Errno::EPERM)?;
                unreachable!()
            };
            assert_eq!(early(), Err(Errno::EPERM));
            assert_eq!(euid(), 65534, "after an early return");
            let panicked = std::panic::catch_unwind(|| as_root(|| panic!("inside as_root")));
            assert!(panicked.is_err());
            assert_eq!(euid(), 65534, "after a panic");
            switch(Identity::root()).unwrap();
        })
        .join()
        .unwrap();
    }
}
