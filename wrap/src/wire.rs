//! The FUSE protocol as the wrapper speaks it to the stock server: requests built the way the
//! kernel builds them, replies split and checked. The stock server's bytes are untrusted: a
//! reply too short for what it answers is an error (EIO for that request), never a panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuse_abi::{
    fuse_attr, fuse_dirent, fuse_direntplus, fuse_entry_out, fuse_in_header, fuse_opcode,
    fuse_out_header,
};
use fuse_proto::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of a request header.
pub const IN_HEADER: usize = size_of::<fuse_in_header>();
/// Size of a reply header.
pub const OUT_HEADER: usize = size_of::<fuse_out_header>();

/// Who a request is made for: the application's ids as the kernel gave them, or the
/// wrapper's own (0) for requests it makes itself (FORGET, a RELEASE nobody asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller {
    /// The caller's fsuid.
    pub uid: u32,
    /// The caller's fsgid.
    pub gid: u32,
    /// The caller's pid.
    pub pid: u32,
}

/// Appends one request to `buf` (cleared first): the header, then `parts` back to back.
pub fn request(
    buf: &mut Vec<u8>,
    opcode: fuse_opcode,
    unique: u64,
    nodeid: u64,
    caller: Caller,
    parts: &[&[u8]],
) {
    buf.clear();
    let len = IN_HEADER + parts.iter().map(|p| p.len()).sum::<usize>();
    let header = fuse_in_header {
        len: len as u32,
        opcode: opcode as u32,
        unique,
        nodeid,
        uid: caller.uid,
        gid: caller.gid,
        pid: caller.pid,
        total_extlen: 0,
        padding: 0,
    };
    buf.extend_from_slice(header.as_bytes());
    for part in parts {
        buf.extend_from_slice(part);
    }
}

/// A name as a request carries it: its bytes, then NUL.
pub fn name_z(name: &OsStr) -> Vec<u8> {
    let mut z = Vec::with_capacity(name.len() + 1);
    z.extend_from_slice(name.as_bytes());
    z.push(0);
    z
}

/// The reply header at the start of `bytes`, one message of the socket, if it has one. The
/// header may say more than the message holds (the rest of the reply follows in later
/// messages: libfuse writes the data of a reply from an fd apart from its header, as for
/// fuse-overlayfs's READ), never less (bytes that no header accounts for).
pub fn reply_header(bytes: &[u8]) -> Option<fuse_out_header> {
    let (header, _) = fuse_out_header::read_from_prefix(bytes).ok()?;
    (header.len as usize >= bytes.len()).then_some(header)
}

/// A struct at the start of a reply payload; EIO if the payload is too short.
pub fn parse<T: FromBytes + KnownLayout + Immutable>(payload: &[u8]) -> Result<T, Errno> {
    T::read_from_prefix(payload).map(|(value, _)| value).map_err(|_| Errno::EIO)
}

/// An entry the stock server answered with, checked: a nodeid of 0 is a negative entry
/// (only LOOKUP may answer one), the root's nodeid is never another inode's.
pub fn entry(payload: &[u8]) -> Result<fuse_entry_out, Errno> {
    parse::<fuse_entry_out>(payload)
}

/// One record of a READDIR or READDIRPLUS reply.
#[derive(Debug, Clone, Copy)]
pub struct DirRecord<'a> {
    /// The entry's inode number as the server gave it.
    pub ino: u64,
    /// The offset of the next record.
    pub off: u64,
    /// The file type (`DT_*`).
    pub typ: u32,
    /// The entry's name (never empty, no `/` or NUL).
    pub name: &'a OsStr,
    /// The entry, for READDIRPLUS (its nodeid 0 when the server gave none).
    pub entry: Option<fuse_entry_out>,
}

/// Splits a READDIR (`plus` false) or READDIRPLUS reply payload into its records; EIO for a
/// payload that is not a sequence of whole, 8-byte-aligned records with valid names.
pub fn dir_records(payload: &[u8], plus: bool) -> Result<Vec<DirRecord<'_>>, Errno> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (entry, after_entry) = if plus {
            let (p, _) = fuse_direntplus::read_from_prefix(rest).map_err(|_| Errno::EIO)?;
            (Some(p.entry_out), size_of::<fuse_entry_out>())
        } else {
            (None, 0)
        };
        let (d, _) = fuse_dirent::read_from_prefix(&rest[after_entry..]).map_err(|_| Errno::EIO)?;
        let start = after_entry + size_of::<fuse_dirent>();
        let namelen = d.namelen as usize;
        let name = rest.get(start..start + namelen).ok_or(Errno::EIO)?;
        if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
            return Err(Errno::EIO);
        }
        let len = (start + namelen).next_multiple_of(8);
        out.push(DirRecord {
            ino: d.ino,
            off: d.off,
            typ: d.r#type,
            name: OsStr::from_bytes(name),
            entry,
        });
        rest = rest.get(len..).unwrap_or(&[]);
    }
    Ok(out)
}

/// A name the stock server may be asked about: what the kernel sent (checked again here, as
/// names come back from the store too).
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.contains(&b'/') && !name.contains(&0)
}

/// The file type bits of an attribute's mode.
pub fn kind(attr: &fuse_attr) -> u32 {
    attr.mode & libc::S_IFMT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_its_header_then_its_parts() {
        let mut buf = Vec::new();
        let caller = Caller { uid: 1, gid: 2, pid: 3 };
        request(&mut buf, fuse_opcode::FUSE_LOOKUP, 6, 1, caller, &[b"ab\0"]);
        assert_eq!(buf.len(), IN_HEADER + 3);
        let (h, rest) = fuse_in_header::read_from_prefix(&buf).unwrap();
        assert_eq!((h.len, h.opcode, h.unique, h.nodeid), (43, 1, 6, 1));
        assert_eq!((h.uid, h.gid, h.pid), (1, 2, 3));
        assert_eq!(rest, b"ab\0");
    }

    #[test]
    fn a_reply_header_must_account_for_every_byte_of_the_message() {
        let h = fuse_out_header { len: 16, error: 0, unique: 4 };
        assert!(reply_header(h.as_bytes()).is_some());
        let mut longer = h.as_bytes().to_vec();
        longer.push(0);
        assert!(reply_header(&longer).is_none());
        assert!(reply_header(&longer[..10]).is_none());
        // A header that says more than the message holds: the rest comes in later messages.
        let short = fuse_out_header { len: 4096 + 16, error: 0, unique: 6 };
        let mut message = short.as_bytes().to_vec();
        message.extend_from_slice(&[7; 100]);
        assert_eq!(reply_header(&message).map(|h| h.unique), Some(6));
    }

    #[test]
    fn directory_records_are_split_and_bad_ones_refused() {
        let mut payload = Vec::new();
        for (ino, name) in [(5u64, &b"a"[..]), (6, b"bcdefghij")] {
            let d = fuse_dirent { ino, off: ino, namelen: name.len() as u32, r#type: 8 };
            payload.extend_from_slice(d.as_bytes());
            payload.extend_from_slice(name);
            payload.resize(payload.len().next_multiple_of(8), 0);
        }
        let records = dir_records(&payload, false).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].name, OsStr::new("bcdefghij"));
        assert_eq!(records[1].off, 6);
        // Cut short, or a name with a slash: EIO, no panic.
        for cut in 1..payload.len() {
            let _ = dir_records(&payload[..cut], false);
            let _ = dir_records(&payload[..cut], true);
        }
        let mut bad = payload.clone();
        bad[size_of::<fuse_dirent>()] = b'/';
        assert_eq!(dir_records(&bad, false).unwrap_err(), Errno::EIO);
    }
}
