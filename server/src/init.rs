//! FUSE_INIT: what we ask of the kernel, what it agreed to, and how that is saved.

use fuse_abi::*;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// The oldest protocol minor a session accepts (Linux 5.10's FUSE is 7.32).
pub const MIN_MINOR: u32 = 31;

/// What a server wants from the connection; the kernel may grant less.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Largest WRITE payload (the kernel caps it by max_pages).
    pub max_write: u32,
    /// Largest readahead the kernel may ask for, in bytes (capped by the kernel's own).
    pub max_readahead: u32,
    /// Background requests (readahead, writeback, async direct I/O) the kernel keeps in flight.
    pub max_background: u16,
    /// Background requests in flight beyond which the kernel marks the connection congested.
    pub congestion_threshold: u16,
    /// Ask for the page cache in writeback mode (excludes kernel passthrough). The kernel then
    /// reads pages of files opened write-only (a write covering part of a page not in the
    /// cache) and does O_APPEND itself, at offsets of its own: the filesystem must open
    /// write-only files readable and without O_APPEND, and a WRITE is then never an append
    /// (nor journaled as one).
    pub writeback: bool,
    /// Ask for kernel FUSE passthrough (FOPEN_PASSTHROUGH).
    pub passthrough: bool,
    /// Worker threads, each reading its own cloned device fd.
    pub threads: usize,
    /// Further INIT flags to ask for.
    pub extra_flags: u64,
    /// Where the session counts its requests (a fresh [`RequestStats`](crate::RequestStats) by default): keep a
    /// clone to publish them.
    pub stats: std::sync::Arc<crate::RequestStats>,
    /// Where the workers take their request buffers from before making new ones (empty by
    /// default): a hot standby fills it ahead of time ([`SessionConfig::request_buffer_len`]).
    /// [`SessionConfig::pages`] says what buffers not found there are made of.
    pub buffers: fuse_transport::BufferPool,
    /// Make the workers' large buffers (1 MiB and more: the request and READ buffers with
    /// the default `max_write`) of transparent huge pages ([`fuse_transport::Pages::Huge`]):
    /// twice the memory for those (2 MiB each), and a SIGKILLed server's exit, which a
    /// keeper waits for before the next server can take over, shorter by about 0.1 ms per
    /// MiB on a small VM. Off by default; a hot standby and the servers it stands by for
    /// want it.
    pub huge_buffers: bool,
    /// Called first in each worker thread, before it touches its device; what it returns is
    /// dropped in that thread when the worker ends (the recovery layer holds the thread's
    /// liveness slot with it). `None` by default.
    pub worker_start: Option<WorkerStart>,
}

/// A hook run first in each worker thread ([`SessionConfig::worker_start`]); the value it
/// returns lives until the worker ends, in that thread.
#[derive(Clone)]
pub struct WorkerStart(pub std::sync::Arc<dyn Fn() -> Box<dyn std::any::Any> + Send + Sync>);

impl std::fmt::Debug for WorkerStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerStart(..)")
    }
}

impl SessionConfig {
    /// What the workers' large buffers are made of ([`SessionConfig::huge_buffers`]).
    pub fn pages(&self) -> fuse_transport::Pages {
        if self.huge_buffers { fuse_transport::Pages::Huge } else { fuse_transport::Pages::Base }
    }

    /// The length of the request buffer each worker takes ([`SessionConfig::buffers`]) for a
    /// negotiation that grants at most this configuration's sizes.
    pub fn request_buffer_len(&self) -> usize {
        let pages = FUSE_MAX_PAGES_PER_REQ as usize;
        (self.max_write as usize).next_multiple_of(4096).max(pages * 4096) + REQUEST_HEADROOM
    }
}

/// Bytes a worker's request buffer has beyond the payload: the header, the largest argument
/// struct and a name.
pub const REQUEST_HEADROOM: usize = 8192;

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_write: 1 << 20,
            max_readahead: 1 << 20,
            max_background: 64,
            congestion_threshold: 48,
            writeback: false,
            passthrough: false,
            threads: 4,
            extra_flags: 0,
            stats: crate::RequestStats::new(),
            buffers: Default::default(),
            huge_buffers: false,
            worker_start: None,
        }
    }
}

/// The outcome of INIT: the kernel's offer and our reply. It is all a restarted server
/// needs to serve the connection without a new INIT (DESIGN.md, kernel fact 4).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Negotiation {
    /// The kernel's INIT request arguments.
    pub kernel: fuse_init_in,
    /// Our INIT reply.
    pub reply: fuse_init_out,
}

impl Negotiation {
    /// The protocol minor in force.
    pub fn minor(&self) -> u32 {
        self.reply.minor
    }

    /// The agreed flags (both words).
    pub fn flags(&self) -> u64 {
        u64::from(self.reply.flags) | (u64::from(self.reply.flags2) << 32)
    }

    /// Whether `flag` (a FUSE_* INIT flag) is agreed.
    pub fn has(&self, flag: u64) -> bool {
        self.flags() & flag != 0
    }

    /// The largest payload a request can carry: what worker buffers must hold.
    pub fn max_payload(&self) -> usize {
        let pages = usize::from(self.reply.max_pages.max(FUSE_MAX_PAGES_PER_REQ as u16));
        (self.reply.max_write as usize).max(pages * 4096)
    }

    /// Whether this saved negotiation is one [`negotiate`] could have made for `config`: the
    /// protocol and sizes a resumed session sizes its buffers by, checked before they are
    /// trusted (the state store it comes from is input: a `max_write` of 4 GiB would be
    /// allocated by every worker).
    pub fn check_saved(&self, config: &SessionConfig) -> Result<(), String> {
        let r = &self.reply;
        if r.major != FUSE_KERNEL_VERSION || self.kernel.major != FUSE_KERNEL_VERSION {
            return Err(format!("protocol major {} (kernel {})", r.major, self.kernel.major));
        }
        if !(MIN_MINOR..=FUSE_KERNEL_MINOR_VERSION).contains(&r.minor)
            || r.minor > self.kernel.minor
        {
            return Err(format!("protocol minor {} (kernel {})", r.minor, self.kernel.minor));
        }
        let max_pages = config.max_write.div_ceil(4096).max(FUSE_MAX_PAGES_PER_REQ);
        if u32::from(r.max_pages) > max_pages {
            return Err(format!("max_pages {} above {max_pages}", r.max_pages));
        }
        let max_write = config.max_write.max(4096);
        if !(4096..=max_write).contains(&r.max_write) {
            return Err(format!("max_write {} outside 4096..={max_write}", r.max_write));
        }
        Ok(())
    }

    /// What decoding needs of the negotiation.
    pub fn decode_context(&self) -> fuse_proto::Negotiated {
        fuse_proto::Negotiated { setxattr_ext: self.has(FUSE_SETXATTR_EXT) }
    }
}

/// Why INIT cannot be answered with a working session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The kernel speaks another major version; we answer with ours and wait for a new INIT.
    MajorMismatch(u32),
    /// The kernel is older than MIN_MINOR.
    TooOld(u32),
}

/// Computes our INIT reply for the kernel's offer.
pub fn negotiate(kernel: &fuse_init_in, config: &SessionConfig) -> Result<Negotiation, InitError> {
    if kernel.major != FUSE_KERNEL_VERSION {
        return Err(InitError::MajorMismatch(kernel.major));
    }
    if kernel.minor < MIN_MINOR {
        return Err(InitError::TooOld(kernel.minor));
    }
    let mut offered = u64::from(kernel.flags);
    if offered & FUSE_INIT_EXT != 0 {
        offered |= u64::from(kernel.flags2) << 32;
    }
    // Not FUSE_ATOMIC_O_TRUNC: with it, open(O_RDONLY | O_TRUNC) truncates in the
    // filesystem's OPEN, before the VFS finds the file is a running program and answers
    // ETXTBSY - the program loses its text and dies of SIGBUS. Without it the VFS checks
    // first and then truncates with a SETATTR (one more round trip for a truncating open of
    // an existing file). A filesystem may still ask for it through `extra_flags`.
    let mut want = FUSE_ASYNC_READ
        | FUSE_BIG_WRITES
        | FUSE_AUTO_INVAL_DATA
        | FUSE_DO_READDIRPLUS
        | FUSE_READDIRPLUS_AUTO
        | FUSE_ASYNC_DIO
        | FUSE_PARALLEL_DIROPS
        | FUSE_MAX_PAGES
        | FUSE_CACHE_SYMLINKS
        | FUSE_SETXATTR_EXT
        | FUSE_INIT_EXT
        | config.extra_flags;
    if config.writeback {
        want |= FUSE_WRITEBACK_CACHE;
    } else if config.passthrough {
        want |= FUSE_PASSTHROUGH;
    }
    let flags = offered & want;
    let pages_for_write = config.max_write.div_ceil(4096).max(1);
    let max_pages = if flags & FUSE_MAX_PAGES != 0 {
        pages_for_write.min(u32::from(u16::MAX)) as u16
    } else {
        FUSE_MAX_PAGES_PER_REQ as u16
    };
    let max_write = config.max_write.min(u32::from(max_pages) * 4096).max(4096);
    let reply = fuse_init_out {
        major: FUSE_KERNEL_VERSION,
        minor: kernel.minor.min(FUSE_KERNEL_MINOR_VERSION),
        max_readahead: kernel.max_readahead.min(config.max_readahead),
        flags: flags as u32,
        max_background: config.max_background,
        congestion_threshold: config.congestion_threshold,
        max_write,
        time_gran: 1,
        max_pages,
        map_alignment: 0,
        flags2: (flags >> 32) as u32,
        max_stack_depth: if flags & FUSE_PASSTHROUGH != 0 { 1 } else { 0 },
        ..fuse_init_out::new_zeroed()
    };
    Ok(Negotiation { kernel: *kernel, reply })
}

/// The bytes of the INIT reply for a kernel of minor `minor` (older kernels expect a
/// shorter struct).
pub fn reply_bytes(negotiation: &Negotiation) -> &[u8] {
    let bytes = negotiation.reply.as_bytes();
    if negotiation.kernel.minor < 23 { &bytes[..FUSE_COMPAT_22_INIT_OUT_SIZE] } else { bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(minor: u32, flags: u64) -> fuse_init_in {
        fuse_init_in {
            major: 7,
            minor,
            max_readahead: 128 * 1024,
            flags: flags as u32,
            flags2: (flags >> 32) as u32,
            ..fuse_init_in::new_zeroed()
        }
    }

    #[test]
    fn grants_only_what_both_sides_want() {
        let kernel = offer(
            45,
            FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_INIT_EXT | FUSE_PASSTHROUGH | FUSE_MAX_PAGES,
        );
        let cfg = SessionConfig { passthrough: true, ..SessionConfig::default() };
        let n = negotiate(&kernel, &cfg).unwrap();
        assert!(n.has(FUSE_ASYNC_READ));
        assert!(!n.has(FUSE_POSIX_LOCKS), "we never asked for posix locks");
        assert!(n.has(FUSE_PASSTHROUGH));
        assert_eq!(n.reply.max_stack_depth, 1);
        assert_eq!(n.reply.max_readahead, 128 * 1024);
        assert_eq!(n.reply.max_write, 1 << 20);
        assert_eq!(n.reply.max_pages, 256);
        assert_eq!(n.minor(), 45);
    }

    #[test]
    fn writeback_excludes_passthrough() {
        let kernel = offer(45, FUSE_WRITEBACK_CACHE | FUSE_INIT_EXT | FUSE_PASSTHROUGH);
        let cfg = SessionConfig { passthrough: true, writeback: true, ..SessionConfig::default() };
        let n = negotiate(&kernel, &cfg).unwrap();
        assert!(n.has(FUSE_WRITEBACK_CACHE));
        assert!(!n.has(FUSE_PASSTHROUGH));
    }

    #[test]
    fn negotiates_down_to_an_older_kernel_and_refuses_ancient_ones() {
        let n = negotiate(&offer(38, FUSE_ASYNC_READ), &SessionConfig::default()).unwrap();
        assert_eq!(n.minor(), 38);
        assert!(!n.has(FUSE_MAX_PAGES));
        assert_eq!(n.reply.max_write, 32 * 4096, "without MAX_PAGES the kernel caps at 32 pages");
        assert_eq!(
            negotiate(&offer(20, 0), &SessionConfig::default()).unwrap_err(),
            InitError::TooOld(20)
        );
        let mut k = offer(45, 0);
        k.major = 8;
        assert_eq!(
            negotiate(&k, &SessionConfig::default()).unwrap_err(),
            InitError::MajorMismatch(8)
        );
    }

    #[test]
    fn flags2_are_ignored_without_init_ext() {
        let n = negotiate(
            &offer(45, FUSE_PASSTHROUGH),
            &SessionConfig { passthrough: true, ..Default::default() },
        )
        .unwrap();
        assert!(!n.has(FUSE_PASSTHROUGH));
    }

    #[test]
    fn negotiation_round_trips_through_bytes() {
        let n = negotiate(&offer(45, FUSE_ASYNC_READ | FUSE_INIT_EXT), &SessionConfig::default())
            .unwrap();
        let bytes = n.as_bytes().to_vec();
        let back = Negotiation::read_from_bytes(&bytes).unwrap();
        assert_eq!(back.reply.as_bytes(), n.reply.as_bytes());
        assert_eq!(back.kernel.as_bytes(), n.kernel.as_bytes());
    }

    #[test]
    fn a_saved_negotiation_is_checked_before_its_sizes_are_trusted() {
        let cfg = SessionConfig::default();
        for (minor, flags) in [(45, FUSE_MAX_PAGES | FUSE_INIT_EXT), (38, 0), (31, 0)] {
            let n = negotiate(&offer(minor, flags), &cfg).unwrap();
            assert_eq!(n.check_saved(&cfg), Ok(()), "minor {minor}");
        }
        let good = negotiate(&offer(45, FUSE_MAX_PAGES | FUSE_INIT_EXT), &cfg).unwrap();
        let bad = |f: &dyn Fn(&mut Negotiation)| {
            let mut n = good;
            f(&mut n);
            n.check_saved(&cfg).unwrap_err()
        };
        assert!(bad(&|n| n.reply.max_write = u32::MAX).contains("max_write"));
        assert!(bad(&|n| n.reply.max_write = 0).contains("max_write"));
        assert!(bad(&|n| n.reply.max_pages = u16::MAX).contains("max_pages"));
        assert!(bad(&|n| n.reply.minor = 99).contains("minor"));
        assert!(bad(&|n| n.reply.minor = 46.min(n.kernel.minor + 1)).contains("minor"));
        assert!(bad(&|n| n.reply.major = 8).contains("major"));
    }
}
