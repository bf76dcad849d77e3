//! Who a client's usage is charged to. A uid is not enough: a user with a subordinate uid
//! range (`/etc/subuid`, a rootless container) runs processes under thousands of uids, each of
//! which would get quotas of its own. Every process in a user namespace below the keeper's is
//! charged to the namespace directly below the keeper's that contains it: to its owner's uid
//! (the user who created the container) or, for a namespace root created, to that namespace
//! itself. Root and the keeper's own uid are exempt from per-principal quotas.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What quotas charge a client to (docs/keeper-protocol.md, "Limits and hostile clients").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// A uid of the keeper's user namespace: the peer's own when it shares that namespace,
    /// else the owner of the outermost user namespace the peer is in below the keeper's.
    Uid(u32),
    /// A user namespace directly below the keeper's that root created (a container of a root
    /// runtime), by its inode number: every uid inside it together.
    UserNs(u64),
    /// Peers whose user namespace could not be read (they had exited before the keeper looked,
    /// or it may not read them), other than root and the keeper's own uid: all together.
    Unknown,
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Uid(uid) => write!(f, "uid {uid}"),
            Principal::UserNs(ino) => write!(f, "user namespace {ino}"),
            Principal::Unknown => f.write_str("peers of unknown user namespace"),
        }
    }
}

/// (device, inode) of an nsfs fd: what names a namespace.
fn ns_id(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    rustix::fs::fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
}

/// The keeper's own user namespace, to compare peers' with.
#[derive(Debug, Clone, Copy)]
pub struct OwnNamespace {
    id: Option<(u64, u64)>,
    uid: u32,
}

/// Nesting of user namespaces stops at 32 levels (the kernel's limit); a walk longer than
/// this is not one the kernel allows.
const MAX_DEPTH: usize = 33;

impl OwnNamespace {
    /// The calling process's user namespace and uid.
    pub fn current() -> OwnNamespace {
        let id = std::fs::File::open("/proc/self/ns/user").ok().and_then(|f| ns_id(f.as_fd()));
        OwnNamespace { id, uid: rustix::process::getuid().as_raw() }
    }

    /// True if `principal` is exempt from per-principal quotas: root and the keeper's own uid
    /// (either could stop the keeper anyway).
    pub fn exempt(&self, principal: Principal) -> bool {
        matches!(principal, Principal::Uid(uid) if uid == 0 || uid == self.uid)
    }

    /// The principal of a peer with `uid` (as SO_PEERCRED shows it), whose process `pidfd`
    /// names (`None`: it had exited before it could be opened).
    pub fn principal_of(&self, uid: u32, pidfd: Option<BorrowedFd<'_>>) -> Principal {
        let unknown = || {
            if uid == 0 || uid == self.uid { Principal::Uid(uid) } else { Principal::Unknown }
        };
        let Some(own) = self.id else { return Principal::Uid(uid) };
        let Some(ns) = pidfd.and_then(|p| crate::sys::pidfd_user_ns(p).ok()) else {
            return unknown();
        };
        if ns_id(ns.as_fd()) == Some(own) {
            return Principal::Uid(uid);
        }
        self.outermost_below_own(ns, own).unwrap_or_else(unknown)
    }

    /// Walk up from `ns` to the namespace whose parent is `own` and charge that one.
    fn outermost_below_own(&self, mut ns: OwnedFd, own: (u64, u64)) -> Option<Principal> {
        for _ in 0..MAX_DEPTH {
            let parent = crate::sys::user_ns_parent(ns.as_fd()).ok()?;
            if ns_id(parent.as_fd())? == own {
                let owner = crate::sys::user_ns_owner(ns.as_fd()).ok()?;
                return Some(if owner == 0 {
                    Principal::UserNs(ns_id(ns.as_fd())?.1)
                } else {
                    Principal::Uid(owner)
                });
            }
            ns = parent;
        }
        None
    }
}
