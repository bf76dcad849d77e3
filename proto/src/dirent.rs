//! Directory listings: `fuse_dirent` and `fuse_direntplus` records packed into a reply.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuse_abi::{fuse_dirent, fuse_direntplus, fuse_entry_out};

use crate::reply::ReplyBuf;

/// Fills a READDIR or READDIRPLUS reply up to the size the kernel asked for.
#[derive(Debug)]
pub struct DirentBuf<'r> {
    reply: &'r mut ReplyBuf,
    limit: usize,
}

impl<'r> DirentBuf<'r> {
    /// Appends to `reply`'s payload, never beyond `limit` payload bytes.
    pub fn new(reply: &'r mut ReplyBuf, limit: usize) -> Self {
        DirentBuf { reply, limit }
    }

    /// Adds a READDIR record. Returns false (adding nothing) when it does not fit.
    pub fn push(&mut self, ino: u64, off: u64, typ: u32, name: &OsStr) -> bool {
        let name = name.as_bytes();
        let size = size_of::<fuse_dirent>() + name.len();
        if !self.fits(size) {
            return false;
        }
        let dirent = fuse_dirent { ino, off, namelen: name.len() as u32, r#type: typ };
        self.reply.push(&dirent);
        self.reply.push_bytes(name);
        self.reply.push_zeros(padding(size));
        true
    }

    /// Adds a READDIRPLUS record. Returns false (adding nothing) when it does not fit; the
    /// caller must then not count a lookup for this entry.
    pub fn push_plus(&mut self, entry: &fuse_entry_out, off: u64, typ: u32, name: &OsStr) -> bool {
        let name = name.as_bytes();
        let size = size_of::<fuse_direntplus>() + name.len();
        if !self.fits(size) {
            return false;
        }
        let plus = fuse_direntplus {
            entry_out: *entry,
            dirent: fuse_dirent {
                ino: entry.attr.ino,
                off,
                namelen: name.len() as u32,
                r#type: typ,
            },
        };
        self.reply.push(&plus);
        self.reply.push_bytes(name);
        self.reply.push_zeros(padding(size));
        true
    }

    /// The most payload bytes the reply may hold: the size the kernel asked for.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.reply.payload_len() == 0
    }

    fn fits(&self, size: usize) -> bool {
        self.reply.payload_len() + size + padding(size) <= self.limit
    }
}

fn padding(size: usize) -> usize {
    size.next_multiple_of(8) - size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_8_byte_aligned_and_bounded() {
        let mut reply = ReplyBuf::with_capacity(256);
        reply.clear();
        let mut d = DirentBuf::new(&mut reply, 64);
        assert!(d.push(5, 1, 8, OsStr::new("abc")));
        // 24 + 3 = 27, padded to 32.
        assert!(d.push(6, 2, 4, OsStr::new("defgh")));
        assert!(!d.push(7, 3, 8, OsStr::new("x")), "a third record exceeds 64 bytes");
        assert_eq!(reply.payload_len(), 64);
        let bytes = reply.finish(1, 0).to_vec();
        let first = &bytes[16..48];
        assert_eq!(u64::from_le_bytes(first[0..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(first[16..20].try_into().unwrap()), 3);
        assert_eq!(&first[24..27], b"abc");
        assert_eq!(&first[27..32], &[0; 5]);
    }
}
