//! The held connections, keyed by (owner uid, tag).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::principal::Principal;
use crate::protocol::ConnState;

/// Connections the keeper holds in all (each costs at least three fds: device, state, pidfd;
/// the fd budget, [`super::FdBudget`], usually binds first).
pub const MAX_ENTRIES: usize = 16384;

/// The process serving a connection.
#[derive(Debug)]
pub struct Server {
    pub pid: u32,
    /// Watched by the event loop; readable once the process has exited.
    pub pidfd: OwnedFd,
    /// Its liveness page (LIVENESS), if it sent one: shown to the parked standby (WATCH) and
    /// read to check a DIED.
    pub liveness: Option<OwnedFd>,
}

/// One held connection.
#[derive(Debug)]
pub struct Entry {
    /// Never reused; names the entry in epoll tokens.
    pub id: u64,
    pub owner_uid: u32,
    /// Who the entry is charged to (the registrant's principal).
    pub principal: Principal,
    /// True if [`Entry::principal`] is exempt from per-principal quotas (root, the keeper's
    /// uid).
    pub exempt: bool,
    pub tag: String,
    pub rescue_uid: u32,
    pub mountpoint: PathBuf,
    pub conn_id: u32,
    /// `None`: keep an orphaned connection forever.
    pub recovery_timeout: Option<Duration>,
    /// When the timeout passes: answer requests with EIO (true) instead of aborting.
    pub fail_on_timeout: bool,
    /// While the keeper reads the orphaned connection's requests (standing in, or failing):
    /// its own clone of the device (non-blocking).
    pub reader: Option<OwnedFd>,
    /// Past the recovery timeout with the fail policy: requests are answered with EIO.
    pub failing: bool,
    /// What the server said the keeper may answer while it is orphaned (STAND_IN).
    pub stand_in: Option<crate::protocol::StandIn>,
    /// Handles of the root the keeper opened while standing in, until their RELEASEDIR.
    pub keeper_fhs: std::collections::BTreeSet<u64>,
    /// The last of those handed out (never reused for this entry).
    pub next_keeper_fh: u64,
    /// Fds its servers asked the keeper to hold (HOLD), by key: files with no name the next
    /// server could reopen them by.
    pub held: BTreeMap<u64, OwnedFd>,
    pub negotiation: Vec<u8>,
    pub state_fd: OwnedFd,
    /// Device fds by index (0 = the mount's own fd).
    pub devices: BTreeMap<u32, OwnedFd>,
    pub server: Option<Server>,
    /// The client connection the server registered or attached on: where a HANDOVER_ASK
    /// goes. It may be closed since (then no handover can be asked).
    pub server_client: Option<u64>,
    /// When the server was seen to die.
    pub orphaned_at: Option<Instant>,
    /// Recoveries and handovers since it was registered (LIST_STATS).
    pub stats: crate::protocol::EntryStats,
    /// The status note last published for it (NOTE; at most `MAX_NOTE` bytes), if any.
    pub note: Option<String>,
}

impl Entry {
    /// Serving, orphaned or failing.
    pub fn state(&self) -> ConnState {
        match (&self.server, self.failing) {
            (Some(_), _) => ConnState::Serving,
            (None, true) => ConnState::Failing,
            (None, false) => ConnState::Orphaned,
        }
    }

    /// When the grace period of an orphaned entry ends, if it has one (and it is not
    /// failing already).
    pub fn deadline(&self) -> Option<Instant> {
        if self.failing {
            return None;
        }
        self.orphaned_at.zip(self.recovery_timeout).map(|(at, t)| at + t)
    }

    /// The fds the entry is charged: its state, its devices, its held fds, its server's pidfd
    /// (counted while orphaned too: the next server's comes back) and liveness page.
    pub fn fds(&self) -> usize {
        let liveness = self.server.as_ref().is_some_and(|s| s.liveness.is_some());
        2 + self.devices.len() + self.held.len() + usize::from(liveness)
    }

    /// True if `uid` owns or rescues this entry.
    pub fn concerns(&self, uid: u32) -> bool {
        self.owner_uid == uid || self.rescue_uid == uid
    }
}

/// Every held connection.
#[derive(Debug, Default)]
pub struct Registry {
    entries: HashMap<u64, Entry>,
    /// The key: (owner uid, tag) to entry id. Another uid's same tag is another key, so it never
    /// touches this entry.
    keys: HashMap<(u32, String), u64>,
    /// Entries per principal.
    charged: HashMap<Principal, usize>,
    next_id: u64,
}

impl Registry {
    /// A fresh id for [`Registry::insert`].
    pub fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Add `entry`, whose (owner uid, tag) must not be held ([`Registry::find`] first).
    pub fn insert(&mut self, entry: Entry) {
        let key = (entry.owner_uid, entry.tag.clone());
        debug_assert!(!self.keys.contains_key(&key));
        self.keys.insert(key, entry.id);
        *self.charged.entry(entry.principal).or_default() += 1;
        self.entries.insert(entry.id, entry);
    }

    pub fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        let key = (entry.owner_uid, entry.tag.clone());
        if self.keys.get(&key) == Some(&id) {
            self.keys.remove(&key);
        }
        if let Some(n) = self.charged.get_mut(&entry.principal) {
            *n -= 1;
            if *n == 0 {
                self.charged.remove(&entry.principal);
            }
        }
        Some(entry)
    }

    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// All entry ids.
    pub fn ids(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// The entry (owner, tag).
    pub fn find(&self, owner_uid: u32, tag: &str) -> Option<u64> {
        self.keys.get(&(owner_uid, tag.to_owned())).copied()
    }

    /// How many entries are charged to `principal`.
    pub fn count_charged(&self, principal: Principal) -> usize {
        self.charged.get(&principal).copied().unwrap_or(0)
    }

    /// The entries charged to `principal`.
    pub fn charged_to(&self, principal: Principal) -> impl Iterator<Item = &Entry> {
        self.iter().filter(move |e| e.principal == principal)
    }

    /// The entries with this tag, the one owned by `prefer_owner` first, then those `prefer_owner`
    /// rescues, then the others by owner uid.
    pub fn by_tag(&self, tag: &str, prefer_owner: u32) -> Vec<u64> {
        let mut found: Vec<&Entry> = self.iter().filter(|e| e.tag == tag).collect();
        found.sort_by_key(|e| {
            (e.owner_uid != prefer_owner, e.rescue_uid != prefer_owner, e.owner_uid)
        });
        found.into_iter().map(|e| e.id).collect()
    }

    /// The entries mounted at `mountpoint`, owned by `prefer_owner` first.
    pub fn by_mountpoint(&self, mountpoint: &std::path::Path, prefer_owner: u32) -> Vec<u64> {
        let mut found: Vec<&Entry> = self.iter().filter(|e| e.mountpoint == mountpoint).collect();
        found.sort_by_key(|e| (e.owner_uid != prefer_owner, e.owner_uid, e.id));
        found.into_iter().map(|e| e.id).collect()
    }

    /// The nearest grace deadline of any orphaned entry.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.iter().filter_map(Entry::deadline).min()
    }

    /// The entries whose grace deadline is at or before `now`.
    pub fn expired(&self, now: Instant) -> Vec<u64> {
        self.iter().filter(|e| e.deadline().is_some_and(|d| d <= now)).map(|e| e.id).collect()
    }
}
