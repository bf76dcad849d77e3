//! Encoding replies: a reusable buffer that holds `fuse_out_header` and the payload.
//!
//! One [`ReplyBuf`] belongs to one worker and is reused for every reply it sends. Every byte
//! the kernel copies out of it was written by the worker just before, so its pages are present
//! when the kernel reads them (DESIGN.md, kernel fact 12).

use fuse_abi::{fuse_notify_code, fuse_out_header};
use zerocopy::{Immutable, IntoBytes};

use crate::Errno;

const HEADER: usize = size_of::<fuse_out_header>();

/// A reply under construction: header first, payload after it.
#[derive(Debug)]
pub struct ReplyBuf {
    buf: Vec<u8>,
}

impl ReplyBuf {
    /// A buffer with room for `capacity` payload bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(HEADER + capacity);
        buf.resize(HEADER, 0);
        ReplyBuf { buf }
    }

    /// Starts a new reply: drops the previous payload.
    pub fn clear(&mut self) {
        self.buf.truncate(0);
        self.buf.resize(HEADER, 0);
    }

    /// Appends a fixed struct to the payload.
    pub fn push<T: IntoBytes + Immutable + ?Sized>(&mut self, value: &T) {
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// Appends raw bytes to the payload.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends `n` zero bytes (dirent padding).
    pub fn push_zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Bytes of payload so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - HEADER
    }

    /// Drops payload bytes beyond `len` (undoing a partial append).
    pub fn truncate_payload(&mut self, len: usize) {
        self.buf.truncate(HEADER + len);
    }

    /// Writes a success header for `unique` covering the payload plus `extra` bytes that the
    /// caller sends after it in the same writev; returns the header and payload bytes.
    pub fn finish(&mut self, unique: u64, extra: usize) -> &[u8] {
        let header = fuse_out_header { len: (self.buf.len() + extra) as u32, error: 0, unique };
        self.buf[..HEADER].copy_from_slice(header.as_bytes());
        &self.buf
    }

    /// The reply as last finished (header and payload).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Replaces the reply with an error: header only, `error = -errno`.
    pub fn error(&mut self, unique: u64, errno: Errno) -> &[u8] {
        self.buf.truncate(HEADER);
        let header = fuse_out_header { len: HEADER as u32, error: -errno.raw(), unique };
        self.buf.copy_from_slice(header.as_bytes());
        &self.buf
    }
}

/// The bytes of a notification: a header with unique 0 and the notify code in `error`.
pub fn notification(code: fuse_notify_code, payload: &[u8]) -> Vec<u8> {
    let header =
        fuse_out_header { len: (HEADER + payload.len()) as u32, error: code as i32, unique: 0 };
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_is_a_bare_negated_header() {
        let mut r = ReplyBuf::with_capacity(64);
        r.push_bytes(b"ignored");
        let bytes = r.error(0x8000_0000_0000_0007, Errno::ENOENT).to_vec();
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[0..4], &16u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &(-2i32).to_le_bytes());
        assert_eq!(&bytes[8..16], &0x8000_0000_0000_0007u64.to_le_bytes());
    }

    #[test]
    fn finish_counts_payload_and_extra() {
        let mut r = ReplyBuf::with_capacity(64);
        r.clear();
        r.push(&7u64);
        let bytes = r.finish(9, 100).to_vec();
        assert_eq!(bytes.len(), 24);
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 124);
        assert_eq!(i32::from_le_bytes(bytes[4..8].try_into().unwrap()), 0);
        assert_eq!(&bytes[16..24], &7u64.to_le_bytes());
    }

    #[test]
    fn resend_notification_is_a_bare_header_with_code_7() {
        let bytes = notification(fuse_notify_code::FUSE_NOTIFY_RESEND, &[]);
        assert_eq!(bytes, [16, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
