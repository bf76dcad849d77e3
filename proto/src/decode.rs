//! From the bytes of one `/dev/fuse` read to a [`Request`].

use std::fmt;

use fuse_abi::{
    FUSE_COMPAT_SETXATTR_IN_SIZE, fuse_batch_forget_in, fuse_forget_in, fuse_forget_one,
    fuse_in_header, fuse_init_in, fuse_interrupt_in, fuse_link_in, fuse_opcode, fuse_rename_in,
    fuse_rename2_in, fuse_setxattr_in,
};
use zerocopy::FromBytes;

use crate::cursor::Cursor;
use crate::operation::{Forgets, Operation};

/// What decoding needs to know of the INIT negotiation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// FUSE_SETXATTR_EXT was agreed: SETXATTR carries the extended `fuse_setxattr_in`.
    pub setxattr_ext: bool,
}

/// Why a request could not be decoded. The request is then answered EIO (or ENOSYS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the opcode's arguments need.
    Truncated,
    /// `fuse_in_header.len` disagrees with the number of bytes read.
    LengthMismatch {
        /// The request's length as the header gives it, in bytes.
        header: u32,
        /// The bytes the read returned.
        read: usize,
    },
    /// A name argument without its NUL terminator, or empty.
    BadName,
    /// An opcode this protocol version does not define.
    UnknownOpcode(u32),
    /// An argument value that cannot be right (e.g. a WRITE size beyond the data sent).
    BadArgument,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("request shorter than its arguments"),
            DecodeError::LengthMismatch { header, read } => {
                write!(f, "header says {header} bytes but {read} were read")
            }
            DecodeError::BadName => f.write_str("name argument not NUL-terminated or empty"),
            DecodeError::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            DecodeError::BadArgument => f.write_str("inconsistent argument"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A decoded request: the header's fields and the operation.
#[derive(Debug)]
pub struct Request<'a> {
    /// The request id exactly as received, bit 63 (FUSE_UNIQUE_RESEND) included.
    pub unique: u64,
    /// The opcode `op` was decoded for.
    pub opcode: fuse_opcode,
    /// The inode the request is about (1 is the root); 0 for requests about none (INIT,
    /// INTERRUPT, BATCH_FORGET, DESTROY).
    pub nodeid: u64,
    /// The caller's fsuid in the connection's user namespace; 0 in requests the kernel sends
    /// for no caller (FORGET, INTERRUPT, RELEASE, ...).
    pub uid: u32,
    /// The caller's fsgid in the connection's user namespace; 0 where `uid` is.
    pub gid: u32,
    /// The calling thread's id in the connection's pid namespace; 0 where `uid` is, or when
    /// the caller is not visible there.
    pub pid: u32,
    /// The operation and its arguments.
    pub op: Operation<'a>,
}

/// Reads just the header, for answering a request whose arguments do not decode.
pub fn peek_header(bytes: &[u8]) -> Option<fuse_in_header> {
    fuse_in_header::read_from_prefix(bytes).ok().map(|(h, _)| h)
}

/// Decodes one request. `bytes` is exactly what one read from the device returned.
pub fn decode<'a>(bytes: &'a [u8], negotiated: &Negotiated) -> Result<Request<'a>, DecodeError> {
    let mut cur = Cursor::new(bytes);
    let header: fuse_in_header = cur.fixed()?;
    if header.len as usize != bytes.len() {
        return Err(DecodeError::LengthMismatch { header: header.len, read: bytes.len() });
    }
    let opcode = fuse_opcode::try_from(header.opcode).map_err(DecodeError::UnknownOpcode)?;
    let args = cur.rest();
    // Request extensions (security context, supplementary groups) trail the arguments.
    let ext = usize::from(header.total_extlen) * 8;
    let args =
        args.get(..args.len().checked_sub(ext).ok_or(DecodeError::Truncated)?).unwrap_or(&[]);
    let op = decode_op(opcode, Cursor::new(args), negotiated)?;
    Ok(Request {
        unique: header.unique,
        opcode,
        nodeid: header.nodeid,
        uid: header.uid,
        gid: header.gid,
        pid: header.pid,
        op,
    })
}

fn decode_op<'a>(
    opcode: fuse_opcode,
    mut c: Cursor<'a>,
    negotiated: &Negotiated,
) -> Result<Operation<'a>, DecodeError> {
    use fuse_opcode::*;
    Ok(match opcode {
        FUSE_LOOKUP => Operation::Lookup { name: c.name()? },
        FUSE_FORGET => Operation::Forget { nlookup: c.fixed::<fuse_forget_in>()?.nlookup },
        FUSE_GETATTR => Operation::Getattr { arg: c.fixed()? },
        FUSE_SETATTR => Operation::Setattr { arg: c.fixed()? },
        FUSE_READLINK => Operation::Readlink,
        FUSE_SYMLINK => Operation::Symlink { name: c.name()?, target: c.name()? },
        FUSE_MKNOD => Operation::Mknod { arg: c.fixed()?, name: c.name()? },
        FUSE_MKDIR => Operation::Mkdir { arg: c.fixed()?, name: c.name()? },
        FUSE_UNLINK => Operation::Unlink { name: c.name()? },
        FUSE_RMDIR => Operation::Rmdir { name: c.name()? },
        FUSE_RENAME => {
            let arg: fuse_rename_in = c.fixed()?;
            Operation::Rename { newdir: arg.newdir, flags: 0, name: c.name()?, newname: c.name()? }
        }
        FUSE_RENAME2 => {
            let arg: fuse_rename2_in = c.fixed()?;
            Operation::Rename {
                newdir: arg.newdir,
                flags: arg.flags,
                name: c.name()?,
                newname: c.name()?,
            }
        }
        FUSE_LINK => {
            let arg: fuse_link_in = c.fixed()?;
            Operation::Link { oldnodeid: arg.oldnodeid, name: c.name()? }
        }
        FUSE_OPEN => Operation::Open { arg: c.fixed()? },
        FUSE_READ => Operation::Read { arg: c.fixed()? },
        FUSE_WRITE => {
            let arg: fuse_abi::fuse_write_in = c.fixed()?;
            let data = c.rest();
            let data = data.get(..arg.size as usize).ok_or(DecodeError::BadArgument)?;
            Operation::Write { arg, data }
        }
        FUSE_STATFS => Operation::Statfs,
        FUSE_RELEASE => Operation::Release { arg: c.fixed()? },
        FUSE_FSYNC => Operation::Fsync { arg: c.fixed()? },
        FUSE_SETXATTR => {
            let wire = if negotiated.setxattr_ext {
                size_of::<fuse_setxattr_in>()
            } else {
                FUSE_COMPAT_SETXATTR_IN_SIZE
            };
            let arg: fuse_setxattr_in = c.sized(wire)?;
            let name = c.name()?;
            let value = c.take(arg.size as usize)?;
            Operation::Setxattr { arg, name, value }
        }
        FUSE_GETXATTR => Operation::Getxattr { arg: c.fixed()?, name: c.name()? },
        FUSE_LISTXATTR => Operation::Listxattr { arg: c.fixed()? },
        FUSE_REMOVEXATTR => Operation::Removexattr { name: c.name()? },
        FUSE_FLUSH => Operation::Flush { arg: c.fixed()? },
        FUSE_INIT => {
            // Kernels before 7.36 send only the first 16 bytes.
            let rest = c.rest();
            if rest.len() < 16 {
                return Err(DecodeError::Truncated);
            }
            Operation::Init { arg: Cursor::new(rest).sized::<fuse_init_in>(rest.len())? }
        }
        FUSE_OPENDIR => Operation::Opendir { arg: c.fixed()? },
        FUSE_READDIR => Operation::Readdir { arg: c.fixed()? },
        FUSE_RELEASEDIR => Operation::Releasedir { arg: c.fixed()? },
        FUSE_FSYNCDIR => Operation::Fsyncdir { arg: c.fixed()? },
        FUSE_GETLK => Operation::Getlk { arg: c.fixed()? },
        FUSE_SETLK => Operation::Setlk { arg: c.fixed()?, sleep: false },
        FUSE_SETLKW => Operation::Setlk { arg: c.fixed()?, sleep: true },
        FUSE_ACCESS => Operation::Access { arg: c.fixed()? },
        FUSE_CREATE => Operation::Create { arg: c.fixed()?, name: c.name()? },
        FUSE_INTERRUPT => Operation::Interrupt { unique: c.fixed::<fuse_interrupt_in>()?.unique },
        FUSE_BMAP => Operation::Bmap { arg: c.fixed()? },
        FUSE_DESTROY => Operation::Destroy,
        FUSE_IOCTL => {
            let arg: fuse_abi::fuse_ioctl_in = c.fixed()?;
            let data = c.take(arg.in_size as usize)?;
            Operation::Ioctl { arg, data }
        }
        FUSE_POLL => Operation::Poll { arg: c.fixed()? },
        FUSE_NOTIFY_REPLY => {
            let arg: fuse_abi::fuse_notify_retrieve_in = c.fixed()?;
            Operation::NotifyReply { arg, data: c.rest() }
        }
        FUSE_BATCH_FORGET => {
            let arg: fuse_batch_forget_in = c.fixed()?;
            let len = (arg.count as usize)
                .checked_mul(size_of::<fuse_forget_one>())
                .ok_or(DecodeError::BadArgument)?;
            Operation::BatchForget { forgets: Forgets::new(c.take(len)?) }
        }
        FUSE_FALLOCATE => Operation::Fallocate { arg: c.fixed()? },
        FUSE_READDIRPLUS => Operation::Readdirplus { arg: c.fixed()? },
        FUSE_LSEEK => Operation::Lseek { arg: c.fixed()? },
        FUSE_COPY_FILE_RANGE => Operation::CopyFileRange { arg: c.fixed()?, wide: false },
        FUSE_COPY_FILE_RANGE_64 => Operation::CopyFileRange { arg: c.fixed()?, wide: true },
        FUSE_SETUPMAPPING => Operation::SetupMapping,
        FUSE_REMOVEMAPPING => Operation::RemoveMapping,
        FUSE_SYNCFS => Operation::Syncfs { arg: c.fixed()? },
        FUSE_TMPFILE => Operation::Tmpfile { arg: c.fixed()?, name: c.name()? },
        FUSE_STATX => Operation::Statx { arg: c.fixed()? },
        other => return Err(DecodeError::UnknownOpcode(other as u32)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fuse_abi::{FUSE_UNIQUE_RESEND, fuse_write_in};
    use zerocopy::IntoBytes;

    fn request(opcode: u32, unique: u64, nodeid: u64, args: &[u8]) -> Vec<u8> {
        let header = fuse_in_header {
            len: (40 + args.len()) as u32,
            opcode,
            unique,
            nodeid,
            uid: 1000,
            gid: 100,
            pid: 42,
            total_extlen: 0,
            padding: 0,
        };
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(args);
        bytes
    }

    #[test]
    fn lookup_keeps_the_resend_bit_and_the_name() {
        let unique = 7 | FUSE_UNIQUE_RESEND;
        let bytes = request(1, unique, 1, b"name\0");
        let req = decode(&bytes, &Negotiated::default()).unwrap();
        assert_eq!(req.unique, unique, "bit 63 must survive decoding");
        assert_eq!((req.uid, req.gid, req.pid, req.nodeid), (1000, 100, 42, 1));
        match req.op {
            Operation::Lookup { name } => assert_eq!(name, "name"),
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn write_borrows_exactly_its_data() {
        let arg = fuse_write_in { fh: 3, offset: 4096, size: 5, ..Default::default() };
        let mut args = arg.as_bytes().to_vec();
        args.extend_from_slice(b"hello");
        let bytes = request(16, 9, 2, &args);
        match decode(&bytes, &Negotiated::default()).unwrap().op {
            Operation::Write { arg, data } => {
                assert_eq!((arg.fh, arg.offset), (3, 4096));
                assert_eq!(data, b"hello");
            }
            other => panic!("decoded {other:?}"),
        }
        // A size beyond the bytes sent is an error, not a panic.
        let arg = fuse_write_in { size: 500, ..Default::default() };
        let bytes = request(16, 9, 2, arg.as_bytes());
        assert_eq!(decode(&bytes, &Negotiated::default()).unwrap_err(), DecodeError::BadArgument);
    }

    #[test]
    fn rename2_and_symlink_take_two_names() {
        let mut args = fuse_rename2_in { newdir: 5, flags: 1, padding: 0 }.as_bytes().to_vec();
        args.extend_from_slice(b"a\0b\0");
        match decode(&request(45, 1, 1, &args), &Negotiated::default()).unwrap().op {
            Operation::Rename { newdir, flags, name, newname } => {
                assert_eq!((newdir, flags), (5, 1));
                assert_eq!((name.to_str(), newname.to_str()), (Some("a"), Some("b")));
            }
            other => panic!("decoded {other:?}"),
        }
        match decode(&request(6, 1, 1, b"link\0target\0"), &Negotiated::default()).unwrap().op {
            Operation::Symlink { name, target } => {
                assert_eq!((name.to_str(), target.to_str()), (Some("link"), Some("target")))
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn batch_forget_reads_every_entry() {
        let mut args = fuse_batch_forget_in { count: 2, dummy: 0 }.as_bytes().to_vec();
        args.extend_from_slice(fuse_forget_one { nodeid: 10, nlookup: 3 }.as_bytes());
        args.extend_from_slice(fuse_forget_one { nodeid: 11, nlookup: 1 }.as_bytes());
        match decode(&request(42, 0, 0, &args), &Negotiated::default()).unwrap().op {
            Operation::BatchForget { forgets } => {
                let all: Vec<_> = forgets.map(|f| (f.nodeid, f.nlookup)).collect();
                assert_eq!(all, [(10, 3), (11, 1)]);
            }
            other => panic!("decoded {other:?}"),
        }
        // A count larger than the entries sent is truncated input.
        let args = fuse_batch_forget_in { count: 1000, dummy: 0 }.as_bytes().to_vec();
        assert_eq!(
            decode(&request(42, 0, 0, &args), &Negotiated::default()).unwrap_err(),
            DecodeError::Truncated
        );
    }

    #[test]
    fn setxattr_size_follows_the_negotiation() {
        let mut compat =
            fuse_setxattr_in { size: 2, flags: 1, ..Default::default() }.as_bytes()[..8].to_vec();
        compat.extend_from_slice(b"user.x\0ab");
        match decode(&request(21, 1, 2, &compat), &Negotiated { setxattr_ext: false }).unwrap().op {
            Operation::Setxattr { arg, name, value } => {
                assert_eq!((arg.size, arg.flags), (2, 1));
                assert_eq!((name.to_str(), value), (Some("user.x"), &b"ab"[..]));
            }
            other => panic!("decoded {other:?}"),
        }
        let mut ext = fuse_setxattr_in { size: 2, flags: 1, setxattr_flags: 1, padding: 0 }
            .as_bytes()
            .to_vec();
        ext.extend_from_slice(b"user.x\0ab");
        match decode(&request(21, 1, 2, &ext), &Negotiated { setxattr_ext: true }).unwrap().op {
            Operation::Setxattr { arg, value, .. } => {
                assert_eq!((arg.setxattr_flags, value), (1, &b"ab"[..]))
            }
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        let ctx = Negotiated::default();
        assert_eq!(decode(&[0u8; 10], &ctx).unwrap_err(), DecodeError::Truncated);
        let mut bytes = request(1, 1, 1, b"x\0");
        bytes.push(0);
        assert!(matches!(decode(&bytes, &ctx).unwrap_err(), DecodeError::LengthMismatch { .. }));
        assert_eq!(
            decode(&request(1, 1, 1, b"noterminator"), &ctx).unwrap_err(),
            DecodeError::BadName
        );
        assert_eq!(decode(&request(1, 1, 1, b"\0"), &ctx).unwrap_err(), DecodeError::BadName);
        assert_eq!(
            decode(&request(9999, 1, 1, b""), &ctx).unwrap_err(),
            DecodeError::UnknownOpcode(9999)
        );
        assert_eq!(decode(&request(3, 1, 1, b"short"), &ctx).unwrap_err(), DecodeError::Truncated);
        // Extension length beyond the arguments.
        let mut bytes = request(1, 1, 1, b"x\0");
        bytes[36] = 200;
        assert_eq!(decode(&bytes, &ctx).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn every_prefix_of_every_opcode_decodes_or_errs() {
        // No input may panic: try each opcode with every length of a 200-byte pattern.
        let pattern: Vec<u8> = (0..200u32).map(|i| (i * 7 + 1) as u8).collect();
        for opcode in 0..60u32 {
            for len in 0..pattern.len() {
                let bytes = request(opcode, 1, 1, &pattern[..len]);
                let _ = decode(&bytes, &Negotiated { setxattr_ext: len % 2 == 0 });
            }
        }
    }
}
