//! Exactly once across crashes: the journal of in-flight non-idempotent requests, the rules
//! that settle a resent request the dead server had begun, and the fault-injection switch.
//!
//! A non-idempotent request gets an intent record before it executes and its reply before the
//! reply is written; the record goes once the reply is written. When the kernel resends a
//! request (bit 63) after a crash:
//!
//! - a journaled reply is sent again, byte for byte (with the resent unique): the request is
//!   not executed twice, and the entry it returns is not counted twice;
//! - an intent alone is settled by looking at the filesystem (the rules: `exactly_once.rs`), never by blind
//!   re-execution;
//! - no record: the dead server never began it, so it executes now.

use std::sync::OnceLock;

use fuse_abi::{FUSE_UNIQUE_RESEND, fuse_opcode};
use fuse_proto::Operation;

/// Storage for the journal (the recovery layer keeps it in the state store).
pub trait Journal: Send + Sync {
    /// Records the intent to execute request `unique` (bit 63 clear), with what settling it
    /// will need (`intent`: the file size before an appending WRITE). None if the journal is
    /// full: the request then runs unjournaled.
    fn begin(&self, unique: u64, intent: u64) -> Option<u64>;
    /// Notes that executing the request took a lookup count of `nodeid` for the entry its
    /// reply will carry (see [`Context::counted`](crate::Context::counted)).
    fn counted(&self, entry: u64, nodeid: u64);
    /// Notes that executing the request opened `fh` for its reply (see
    /// [`Context::handle_opened`](crate::Context::handle_opened)).
    fn opened(&self, entry: u64, fh: u64);
    /// Records the reply about to be written for the entry (its unique field is ignored).
    fn record(&self, entry: u64, reply: &[u8]);
    /// Drops the entry: its reply was written.
    fn end(&self, entry: u64);
    /// The entry of request `unique` (bit 63 clear).
    fn find(&self, unique: u64) -> Option<JournalRecord>;
}

/// A journaled request, as a restarted server finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The record's slot, which [`Journal::record`] and [`Journal::end`] take.
    pub entry: u64,
    /// What `begin` was given.
    pub intent: u64,
    /// The reply, if it was recorded before the crash.
    pub reply: Option<Vec<u8>>,
    /// The nodeid whose lookup count the execution took, if it got that far (0: none).
    pub counted: u64,
    /// The handle the execution opened, if it got that far (0: none).
    pub opened: u64,
}

/// Whether `op` is journaled: executing it twice could differ from executing it once.
/// `writeback`: the page cache is in writeback mode, where the kernel does O_APPEND itself
/// (every WRITE names where its bytes go, and the server opens without O_APPEND), so no
/// WRITE is an append.
/// TMPFILE is journaled but never replayed: the unnamed file a crashed attempt made died
/// with the server's fds (a replayed reply would name a file that is gone), so a resent
/// TMPFILE releases what the crashed attempt counted and opened, then executes again.
pub fn is_non_idempotent(op: &Operation<'_>, writeback: bool) -> bool {
    match op {
        Operation::Mkdir { .. }
        | Operation::Tmpfile { .. }
        | Operation::Mknod { .. }
        | Operation::Symlink { .. }
        | Operation::Link { .. }
        | Operation::Create { .. }
        | Operation::Unlink { .. }
        | Operation::Rmdir { .. }
        | Operation::Rename { .. }
        | Operation::Fallocate { .. }
        | Operation::Removexattr { .. }
        | Operation::CopyFileRange { .. } => true,
        Operation::Setattr { arg } => {
            arg.valid
                & (fuse_abi::FATTR_SIZE
                    | fuse_abi::FATTR_MODE
                    | fuse_abi::FATTR_UID
                    | fuse_abi::FATTR_GID)
                != 0
        }
        Operation::Setxattr { arg, .. } => arg.flags != 0,
        // `flags` is the file's open flags: an appending write lands wherever the end is.
        Operation::Write { arg, .. } => !writeback && arg.flags & O_APPEND != 0,
        _ => false,
    }
}

const O_APPEND: u32 = 0o2000;

/// The request id without the resend bit: the journal's key.
pub fn original_unique(unique: u64) -> u64 {
    unique & !FUSE_UNIQUE_RESEND
}

/// Where a test asks the server to abort itself (`FUSE_CRASH_AT=OPCODE:POINT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the intent is journaled, before executing.
    Before,
    /// After executing, before journaling the result.
    Executed,
    /// After journaling the result, before writing the reply.
    Journaled,
}

/// The fault-injection switch, read once: `FUSE_CRASH_AT=MKDIR:executed` makes the first
/// server that sees a MKDIR abort itself after executing it. Points: `before`, `executed`,
/// `journaled`. For tests only; unset, it costs one branch per journaled request.
pub fn crash_at() -> Option<(fuse_opcode, CrashPoint)> {
    static SWITCH: OnceLock<Option<(fuse_opcode, CrashPoint)>> = OnceLock::new();
    *SWITCH.get_or_init(|| {
        let value = std::env::var("FUSE_CRASH_AT").ok()?;
        let (op, point) = value.split_once(':')?;
        let opcode = fuse_abi::fuse_opcode::ALL
            .iter()
            .copied()
            .find(|o| o.name().eq_ignore_ascii_case(op))?;
        let point = match point {
            "before" => CrashPoint::Before,
            "executed" => CrashPoint::Executed,
            "journaled" => CrashPoint::Journaled,
            _ => return None,
        };
        tracing::warn!(?opcode, ?point, "fault injection armed: the server will abort itself");
        Some((opcode, point))
    })
}

/// Aborts the process if the switch names this opcode and point.
#[inline]
pub fn maybe_crash(opcode: fuse_opcode, point: CrashPoint) {
    if let Some(armed) = crash_at()
        && armed == (opcode, point)
    {
        tracing::warn!(?opcode, ?point, "fault injection: aborting");
        std::process::abort();
    }
}
