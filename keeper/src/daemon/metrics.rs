//! What the keeper counts, and its Prometheus text exposition (METRICS, `fuse-keeper metrics`,
//! `serve --metrics`). Every metric is node-wide: no tag, mountpoint or uid appears in a label,
//! so the exposition tells nobody which connections another user has.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::event_loop::Keeper;
use crate::protocol::ConnState;

/// Upper bounds of the orphaned-time buckets, in seconds: from a hot restart (milliseconds) to
/// a server that needed minutes.
const ORPHANED_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Upper bounds of the attach-duration buckets, in seconds: an ATTACH takes microseconds, a
/// HANDOVER as long as the live server takes to stop (at most 5 s).
const ATTACH_BOUNDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A Prometheus histogram: cumulative counts rendered from per-bucket counts.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations in each bucket (not cumulative), the last one above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    /// Count one observation of `d`.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.iter().position(|&b| s <= b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += s;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total: u64 = self.counts.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {total}", self.sum);
    }
}

/// Why an ATTACH or HANDOVER did not give the asker the connection: the `reason` label.
pub fn refusal_reason(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "unknown_tag",
        libc::EACCES | libc::EPERM => "not_rescue_uid",
        libc::EBUSY => "busy",
        libc::EINVAL => "already_serving",
        libc::ECANCELED => "handover_refused",
        libc::ETIMEDOUT => "handover_timeout",
        libc::ECONNRESET => "asker_gone",
        _ => "other",
    }
}

/// The keeper's counters since it started.
#[derive(Debug)]
pub struct Counters {
    started: SystemTime,
    pub registrations: u64,
    pub recoveries: u64,
    pub handovers: u64,
    pub recovery_timeouts: u64,
    /// Recoveries in which a parked standby was handed the connection.
    pub standby_takeovers: u64,
    pub refused: BTreeMap<&'static str, u64>,
    /// Time without a server, observed at each recovery.
    pub orphaned: Histogram,
    /// ATTACH or HANDOVER received to the asker serving.
    pub attach: Histogram,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            started: SystemTime::now(),
            registrations: 0,
            recoveries: 0,
            handovers: 0,
            recovery_timeouts: 0,
            standby_takeovers: 0,
            refused: BTreeMap::new(),
            orphaned: Histogram::new(ORPHANED_BOUNDS),
            attach: Histogram::new(ATTACH_BOUNDS),
        }
    }
}

impl Counters {
    /// Count an ATTACH or HANDOVER refused with `errno`.
    pub fn refuse(&mut self, errno: i32) {
        *self.refused.entry(refusal_reason(errno)).or_default() += 1;
    }
}

/// Every reason [`refusal_reason`] gives, so that each series exists from the start (at 0).
const REASONS: &[&str] = &[
    "unknown_tag",
    "not_rescue_uid",
    "busy",
    "already_serving",
    "handover_refused",
    "handover_timeout",
    "asker_gone",
    "other",
];

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Resident memory of this process, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Open fds of this process.
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

impl Keeper {
    /// The exposition, in the Prometheus text format (version 0.0.4).
    pub(super) fn metrics_text(&mut self) -> String {
        for id in self.registry.ids() {
            self.refresh(id);
        }
        let mut states: BTreeMap<&str, u64> =
            [ConnState::Serving, ConnState::Orphaned, ConnState::Attaching, ConnState::Failing]
                .into_iter()
                .map(|s| (s.name(), 0))
                .collect();
        let (mut waiting, mut held_fds) = (0u64, 0usize);
        for e in self.registry.iter() {
            let state =
                if self.handovers.contains_key(&e.id) { ConnState::Attaching } else { e.state() };
            *states.entry(state.name()).or_default() += 1;
            waiting += u64::from(fuse_transport::waiting_requests(e.conn_id).unwrap_or(0));
            held_fds += e.fds();
        }
        let c = &self.counters;
        let mut out = String::with_capacity(4096);
        metric(&mut out, "fuse_keeper_connections", "gauge", "Connections held, by state.");
        for (state, n) in &states {
            let _ = writeln!(out, "fuse_keeper_connections{{state=\"{state}\"}} {n}");
        }
        let counters = [
            (
                "fuse_keeper_registrations_total",
                "Connections registered (fresh mounts).",
                c.registrations,
            ),
            (
                "fuse_keeper_recoveries_total",
                "Servers that attached to a connection whose server had died.",
                c.recoveries,
            ),
            ("fuse_keeper_handovers_total", "Planned handovers from a live server.", c.handovers),
            (
                "fuse_keeper_recovery_timeouts_total",
                "Orphaned connections whose recovery timeout passed (aborted, or failing).",
                c.recovery_timeouts,
            ),
            (
                "fuse_keeper_standby_takeovers_total",
                "Recoveries in which a parked hot standby was handed the connection.",
                c.standby_takeovers,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "fuse_keeper_attaches_refused_total";
        metric(
            &mut out,
            name,
            "counter",
            "ATTACH, HANDOVER and STANDBY requests that got no connection, by reason.",
        );
        for reason in REASONS {
            let n = c.refused.get(reason).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
        c.orphaned.render(
            &mut out,
            "fuse_keeper_orphaned_seconds",
            "Time a connection had no server, from the keeper seeing its server die to the next \
             server attached, observed at each recovery.",
        );
        c.attach.render(
            &mut out,
            "fuse_keeper_attach_duration_seconds",
            "Time from an ATTACH or HANDOVER request to its server owning the connection.",
        );
        let gauges = [
            (
                "fuse_keeper_requests_waiting",
                "FUSE requests waiting in all held connections (fusectl's waiting).",
                waiting as f64,
            ),
            (
                "fuse_keeper_held_fds",
                "Fds held for connections (devices, states, held files).",
                held_fds as f64,
            ),
            (
                "fuse_keeper_standbys_parked",
                "Hot standbys parked for a connection's live server to die.",
                self.standbys.len() as f64,
            ),
            (
                "fuse_keeper_clients",
                "Client connections to the keeper socket.",
                self.clients_len() as f64,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                resident_bytes().unwrap_or(0) as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                open_fds().unwrap_or(0) as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                super::event_loop::nofile() as f64,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                c.started.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, help, value) in gauges {
            metric(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        metric(&mut out, "fuse_keeper_build_info", "gauge", "The keeper's version, as a label.");
        let _ =
            writeln!(out, "fuse_keeper_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let mut h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.01\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum 2.006\n"), "{out}");
    }

    #[test]
    fn every_refusal_reason_is_listed() {
        for errno in 0..200 {
            assert!(REASONS.contains(&refusal_reason(errno)), "errno {errno}");
        }
    }
}
