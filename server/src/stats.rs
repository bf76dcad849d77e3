//! What a session counts: requests by opcode, requests the kernel resent after a restart, and
//! how the journal settled resent non-idempotent requests. Counting costs each worker a load
//! and a store on its own cache lines per request (no shared atomic is written on the hot
//! path); reading sums the workers'.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fuse_abi::fuse_opcode;

/// Slots per worker: every opcode below 64 has its own; higher ones (CUSE_INIT) share slot 0.
const SLOTS: usize = 64;

/// One worker's request counts, written only by that worker.
#[derive(Debug)]
pub(crate) struct WorkerCounts([AtomicU64; SLOTS]);

impl WorkerCounts {
    /// Count one request of `opcode`.
    pub(crate) fn count(&self, opcode: u32) {
        let slot = &self.0[if (opcode as usize) < SLOTS { opcode as usize } else { 0 }];
        // One writer: a load and a store, not a locked read-modify-write.
        slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// A session's counters since the process started serving. Shared through
/// [`SessionConfig::stats`](crate::SessionConfig::stats): a server keeps a clone to publish
/// them (as [`RequestStats::prometheus`] text), and every session started with that config
/// counts into it.
#[derive(Default)]
pub struct RequestStats {
    workers: Mutex<Vec<Arc<WorkerCounts>>>,
    resent: AtomicU64,
    replayed: AtomicU64,
    settled_done: AtomicU64,
    settled_not_done: AtomicU64,
}

impl std::fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("RequestStats")
            .field("requests", &s.requests.iter().map(|(_, n)| n).sum::<u64>())
            .field("resent", &s.resent)
            .finish_non_exhaustive()
    }
}

/// How the journal answered one resent non-idempotent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Its journaled reply was sent again.
    Replayed,
    /// Begun before the crash and found to have taken effect: answered without doing it again.
    TookEffect,
    /// Begun before the crash and found not to have taken effect: done now.
    NotTakenEffect,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Requests served, by opcode name (`"LOOKUP"`, ...; an opcode this crate does not know
    /// is `"unknown"`), only those seen at least once.
    pub requests: Vec<(&'static str, u64)>,
    /// Requests the kernel resent (FUSE_NOTIFY_RESEND after a restart: `FUSE_UNIQUE_RESEND`).
    pub resent: u64,
    /// Resent non-idempotent requests answered with their journaled reply.
    pub replayed: u64,
    /// Resent non-idempotent requests found to have taken effect before the crash.
    pub settled_took_effect: u64,
    /// Resent non-idempotent requests found not to have, and done now.
    pub settled_not_taken_effect: u64,
}

impl RequestStats {
    /// Fresh counters, to put in a [`SessionConfig`](crate::SessionConfig).
    pub fn new() -> Arc<RequestStats> {
        Arc::default()
    }

    /// Counts for one more worker thread.
    pub(crate) fn worker(&self) -> Arc<WorkerCounts> {
        let counts = Arc::new(WorkerCounts(std::array::from_fn(|_| AtomicU64::new(0))));
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(Arc::clone(&counts));
        }
        counts
    }

    pub(crate) fn count_resent(&self) {
        self.resent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_settled(&self, how: Settled) {
        let counter = match how {
            Settled::Replayed => &self.replayed,
            Settled::TookEffect => &self.settled_done,
            Settled::NotTakenEffect => &self.settled_not_done,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now (each worker's as of its last store).
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut by_slot = [0u64; SLOTS];
        if let Ok(workers) = self.workers.lock() {
            for w in workers.iter() {
                for (sum, slot) in by_slot.iter_mut().zip(&w.0) {
                    *sum += slot.load(Ordering::Relaxed);
                }
            }
        }
        let requests = by_slot
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| {
                let name = u32::try_from(i)
                    .ok()
                    .and_then(|op| fuse_opcode::try_from(op).ok())
                    .map_or("unknown", fuse_opcode::name);
                (name, n)
            })
            .collect();
        StatsSnapshot {
            requests,
            resent: self.resent.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            settled_took_effect: self.settled_done.load(Ordering::Relaxed),
            settled_not_taken_effect: self.settled_not_done.load(Ordering::Relaxed),
        }
    }

    /// The counters in the Prometheus text exposition format (0.0.4):
    /// `fuse_server_requests_total{opcode}`, `fuse_server_resent_requests_total`,
    /// `fuse_server_journal_settled_total{outcome="replayed|took_effect|not_taken_effect"}`.
    pub fn prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        let name = "fuse_server_requests_total";
        let _ = writeln!(out, "# HELP {name} FUSE requests served, by opcode.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (op, n) in &s.requests {
            let _ = writeln!(out, "{name}{{opcode=\"{op}\"}} {n}");
        }
        let name = "fuse_server_resent_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests the kernel resent after a restart (FUSE_NOTIFY_RESEND)."
        );
        let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", s.resent);
        let name = "fuse_server_journal_settled_total";
        let _ = writeln!(
            out,
            "# HELP {name} Resent non-idempotent requests the journal settled, by outcome."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        for (outcome, n) in [
            ("replayed", s.replayed),
            ("took_effect", s.settled_took_effect),
            ("not_taken_effect", s.settled_not_taken_effect),
        ] {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_counts_are_summed_by_opcode_name() {
        let stats = RequestStats::new();
        let (a, b) = (stats.worker(), stats.worker());
        a.count(fuse_opcode::FUSE_LOOKUP as u32);
        b.count(fuse_opcode::FUSE_LOOKUP as u32);
        b.count(fuse_opcode::FUSE_GETATTR as u32);
        b.count(4096); // CUSE_INIT: slot 0, which no FUSE opcode has.
        stats.count_resent();
        stats.count_settled(Settled::TookEffect);
        let s = stats.snapshot();
        assert_eq!(s.requests, [("unknown", 1), ("LOOKUP", 2), ("GETATTR", 1)]);
        assert_eq!((s.resent, s.settled_took_effect, s.replayed), (1, 1, 0));
        let text = stats.prometheus();
        assert!(text.contains("fuse_server_requests_total{opcode=\"LOOKUP\"} 2\n"), "{text}");
        assert!(text.contains("fuse_server_resent_requests_total 1\n"), "{text}");
        assert!(text.contains("fuse_server_journal_settled_total{outcome=\"took_effect\"} 1\n"));
    }
}
