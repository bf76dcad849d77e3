//! Client-chosen strings (tags, mountpoints, targets) made safe to print on a terminal or in a
//! log line.

use std::borrow::Cow;
use std::fmt::Write;

/// True for characters printed as an escape by [`escape`]: control characters (C0, DEL, C1),
/// and the invisible format characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters, line and paragraph separators, the byte order mark).
/// (The same characters a NOTE may not hold: [`crate::protocol::is_unprintable`].)
pub fn needs_escape(c: char) -> bool {
    crate::protocol::is_unprintable(c)
}

/// `bytes` as printable text: valid UTF-8 is kept except that a backslash becomes `\\`, `\n`,
/// `\r` and `\t` become those two-character escapes, and every other character of
/// [`needs_escape`] becomes `\xHH` (below U+0080) or `\u{H..}`; each byte that is not valid
/// UTF-8 becomes `\xHH`. The result holds no control character, so it cannot move a terminal's
/// cursor, clear its screen or start a new log line, and distinct inputs give distinct results.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return escape(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// [`escape_bytes`] for a string: borrowed when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    push_escaped(&mut out, s);
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_become_visible_escapes() {
        assert_eq!(escape("plain/tag"), "plain/tag");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("\x1b[2J\nx\\y\t\r\x7f"), "\\x1b[2J\\nx\\\\y\\t\\r\\x7f");
        assert_eq!(escape("a\u{9b}b\u{202e}c"), "a\\u{9b}b\\u{202e}c");
        assert_eq!(escape_bytes(b"/mnt/\xff\x1b"), "/mnt/\\xff\\x1b");
        assert_eq!(escape("é ü"), "é ü");
    }
}
