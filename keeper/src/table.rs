//! `fuse-keeper ls` output: a text table, or JSON.

use std::fmt::Write;

use std::os::unix::ffi::OsStrExt;

use fuse_keeper::ConnInfo;
use fuse_keeper::text::{escape, escape_bytes, needs_escape};

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn orphaned(info: &ConnInfo) -> String {
    info.orphaned_for.map_or_else(|| "-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// A recovery's duration in milliseconds, to the microsecond.
fn millis(d: std::time::Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1000.0)
}

/// The version of `ls --json`'s schema (docs/keeper-protocol.md, "fuse-keeper ls --json"):
/// raised when a field changes meaning or goes away, not when one is added.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// One line per connection under a header, columns aligned. Tags, mountpoints and notes are
/// client-chosen: printed through [`escape`], so no control character reaches the terminal. The
/// note, free text, is the last column (`-` if none).
pub fn text(entries: &[ConnInfo]) -> String {
    let header = [
        "TAG",
        "OWNER",
        "RESCUE",
        "MOUNTPOINT",
        "STATE",
        "PID",
        "STANDBY",
        "WAITING",
        "ORPHANED",
        "RECOVERIES",
        "LAST_RECOVERY",
        "NOTE",
    ];
    let mut rows: Vec<[String; 12]> = vec![header.map(str::to_owned)];
    for e in entries {
        rows.push([
            escape(&e.tag).into_owned(),
            e.owner_uid.to_string(),
            e.rescue_uid.to_string(),
            escape_bytes(e.mountpoint.as_os_str().as_bytes()).into_owned(),
            e.state.name().to_owned(),
            opt(e.server_pid),
            opt(e.standby_pid),
            opt(e.waiting),
            orphaned(e),
            opt(e.recoveries),
            e.last_recovery.map_or_else(|| "-".to_owned(), millis),
            e.note.as_deref().map_or_else(|| "-".to_owned(), |n| escape(n).into_owned()),
        ]);
    }
    let mut widths = [0usize; 12];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control or invisible character, not only those JSON requires: the output
            // may be shown on a terminal.
            c if needs_escape(c) => {
                // Every such character is in the BMP: one \uXXXX.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

/// `{"schema_version": 1, "connections": [...]}`: one object per connection with the table's
/// fields (times in milliseconds, the last recovery in microseconds; unknown values as null).
pub fn json(entries: &[ConnInfo]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"tag\":{},\"owner_uid\":{},\"rescue_uid\":{},\"mountpoint\":{},\
                 \"conn_id\":{},\"state\":\"{}\",\"server_pid\":{},\"waiting\":{},\
                 \"orphaned_for_ms\":{},\"recoveries\":{},\"handovers\":{},\
                 \"last_recovery_us\":{},\"standby_pid\":{},\"note\":{}}}",
                json_str(&e.tag),
                e.owner_uid,
                e.rescue_uid,
                json_str(&e.mountpoint.to_string_lossy()),
                e.conn_id,
                e.state.name(),
                json_opt(e.server_pid),
                json_opt(e.waiting),
                json_opt(e.orphaned_for.map(|d| d.as_millis())),
                json_opt(e.recoveries),
                json_opt(e.handovers),
                json_opt(e.last_recovery.map(|d| d.as_micros())),
                json_opt(e.standby_pid),
                e.note.as_deref().map_or_else(|| "null".to_owned(), json_str),
            )
        })
        .collect();
    format!("{{\"schema_version\":{JSON_SCHEMA_VERSION},\"connections\":[{}]}}\n", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_keeper::ConnState;

    fn info(note: Option<&str>) -> ConnInfo {
        ConnInfo {
            tag: "t".into(),
            owner_uid: 0,
            rescue_uid: 0,
            mountpoint: "/m".into(),
            conn_id: 1,
            state: ConnState::Serving,
            server_pid: Some(9),
            waiting: Some(0),
            orphaned_for: None,
            recoveries: Some(0),
            handovers: Some(0),
            last_recovery: None,
            standby_pid: None,
            note: note.map(str::to_owned),
        }
    }

    /// The keeper refuses such notes, but an older or foreign keeper may send anything: the
    /// note is printed escaped, as tags and mountpoints are.
    #[test]
    fn the_note_is_the_last_column_and_escaped() {
        let table = text(&[info(Some("wrapped: a\x1b[2J\u{202e}b\n")), info(None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("  NOTE"), "{table}");
        assert!(lines[1].ends_with("  wrapped: a\\x1b[2J\\u{202e}b\\n"), "{table}");
        assert!(lines[2].ends_with("  -"), "{table}");
        let json = json(&[info(Some("a\"\x1b\u{202e}")), info(None)]);
        assert!(json.contains(r#""note":"a\"\u001b\u202e"}"#), "{json}");
        assert!(json.contains(r#""note":null}"#), "{json}");
    }
}
