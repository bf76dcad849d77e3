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

/// One line per connection under a header, columns aligned. Tags and mountpoints are
/// registrant-chosen: printed through [`escape`], so no control character reaches the terminal.
pub fn text(entries: &[ConnInfo]) -> String {
    let header = ["TAG", "OWNER", "RESCUE", "MOUNTPOINT", "STATE", "PID", "WAITING", "ORPHANED"];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for e in entries {
        rows.push([
            escape(&e.tag).into_owned(),
            e.owner_uid.to_string(),
            e.rescue_uid.to_string(),
            escape_bytes(e.mountpoint.as_os_str().as_bytes()).into_owned(),
            e.state.name().to_owned(),
            opt(e.server_pid),
            opt(e.waiting),
            orphaned(e),
        ]);
    }
    let mut widths = [0usize; 8];
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

/// A JSON array of objects with the same fields as the table (times in milliseconds, unknown
/// values as null).
pub fn json(entries: &[ConnInfo]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{{\"tag\":{},\"owner_uid\":{},\"rescue_uid\":{},\"mountpoint\":{},\
                 \"conn_id\":{},\"state\":\"{}\",\"server_pid\":{},\"waiting\":{},\
                 \"orphaned_for_ms\":{}}}",
                json_str(&e.tag),
                e.owner_uid,
                e.rescue_uid,
                json_str(&e.mountpoint.to_string_lossy()),
                e.conn_id,
                e.state.name(),
                json_opt(e.server_pid),
                json_opt(e.waiting),
                json_opt(e.orphaned_for.map(|d| d.as_millis())),
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}
