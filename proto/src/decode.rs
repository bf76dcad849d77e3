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
    LengthMismatch { header: u32, read: usize },
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
    pub opcode: fuse_opcode,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
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
        return Err(DecodeError::LengthMismatch {
            header: header.len,
            read: bytes.len(),
        });
    }
    let opcode = fuse_opcode::try_from(header.opcode).map_err(DecodeError::UnknownOpcode)?;
    let args = cur.rest();
    // Request extensions (security context, supplementary groups) trail the arguments.
    let ext = usize::from(header.total_extlen) * 8;
    let args = args
        .get(..args.len().checked_sub(ext).ok_or(DecodeError::Truncated)?)
        .unwrap_or(&[]);
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
        FUSE_FORGET => Operation::Forget {
            nlookup: c.fixed::<fuse_forget_in>()?.nlookup,
        },
        FUSE_GETATTR => Operation::Getattr { arg: c.fixed()? },
        FUSE_SETATTR => Operation::Setattr { arg: c.fixed()? },
        FUSE_READLINK => Operation::Readlink,
        FUSE_SYMLINK => Operation::Symlink {
            name: c.name()?,
            target: c.name()?,
        },
        FUSE_MKNOD => Operation::Mknod {
            arg: c.fixed()?,
            name: c.name()?,
        },
        FUSE_MKDIR => Operation::Mkdir {
            arg: c.fixed()?,
            name: c.name()?,
        },
        FUSE_UNLINK => Operation::Unlink { name: c.name()? },
        FUSE_RMDIR => Operation::Rmdir { name: c.name()? },
        FUSE_RENAME => {
            let arg: fuse_rename_in = c.fixed()?;
            Operation::Rename {
                newdir: arg.newdir,
                flags: 0,
                name: c.name()?,
                newname: c.name()?,
            }
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
            Operation::Link {
                oldnodeid: arg.oldnodeid,
                name: c.name()?,
            }
        }
        FUSE_OPEN => Operation::Open { arg: c.fixed()? },
        FUSE_READ => Operation::Read { arg: c.fixed()? },
        FUSE_WRITE => {
            let arg: fuse_abi::fuse_write_in = c.fixed()?;
            let data = c.rest();
            let data = data
                .get(..arg.size as usize)
                .ok_or(DecodeError::BadArgument)?;
            Operation::Write { arg, data }
        }
        FUSE_STATFS => Operation::Statfs,
        FUSE_RELEASE => Operation::Release { arg: c.fixed()? },
        FUSE_FSYNC => Operation::Fsync { arg: c.fixed()? },
        FUSE_SETXATTR => {
            let wire = if negotiated.setxattr_ext {
                size_of::<fuse_setxattr_in>()
            } else {
                FUSE_COMPAT_SETXATTR_IN_SIZE as usize
            };
            let arg: fuse_setxattr_in = c.sized(wire)?;
            let name = c.name()?;
            let value = c.take(arg.size as usize)?;
            Operation::Setxattr { arg, name, value }
        }
        FUSE_GETXATTR => Operation::Getxattr {
            arg: c.fixed()?,
            name: c.name()?,
        },
        FUSE_LISTXATTR => Operation::Listxattr { arg: c.fixed()? },
        FUSE_REMOVEXATTR => Operation::Removexattr { name: c.name()? },
        FUSE_FLUSH => Operation::Flush { arg: c.fixed()? },
        FUSE_INIT => {
            // Kernels before 7.36 send only the first 16 bytes.
            let rest = c.rest();
            if rest.len() < 16 {
                return Err(DecodeError::Truncated);
            }
            Operation::Init {
                arg: Cursor::new(rest).sized::<fuse_init_in>(rest.len())?,
            }
        }
        FUSE_OPENDIR => Operation::Opendir { arg: c.fixed()? },
        FUSE_READDIR => Operation::Readdir { arg: c.fixed()? },
        FUSE_RELEASEDIR => Operation::Releasedir { arg: c.fixed()? },
        FUSE_FSYNCDIR => Operation::Fsyncdir { arg: c.fixed()? },
        FUSE_GETLK => Operation::Getlk { arg: c.fixed()? },
        FUSE_SETLK => Operation::Setlk {
            arg: c.fixed()?,
            sleep: false,
        },
        FUSE_SETLKW => Operation::Setlk {
            arg: c.fixed()?,
            sleep: true,
        },
        FUSE_ACCESS => Operation::Access { arg: c.fixed()? },
        FUSE_CREATE => Operation::Create {
            arg: c.fixed()?,
            name: c.name()?,
        },
        FUSE_INTERRUPT => Operation::Interrupt {
            unique: c.fixed::<fuse_interrupt_in>()?.unique,
        },
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
            Operation::NotifyReply {
                arg,
                data: c.rest(),
            }
        }
        FUSE_BATCH_FORGET => {
            let arg: fuse_batch_forget_in = c.fixed()?;
            let len = (arg.count as usize)
                .checked_mul(size_of::<fuse_forget_one>())
                .ok_or(DecodeError::BadArgument)?;
            Operation::BatchForget {
                forgets: Forgets::new(c.take(len)?),
            }
        }
        FUSE_FALLOCATE => Operation::Fallocate { arg: c.fixed()? },
        FUSE_READDIRPLUS => Operation::Readdirplus { arg: c.fixed()? },
        FUSE_LSEEK => Operation::Lseek { arg: c.fixed()? },
        FUSE_COPY_FILE_RANGE => Operation::CopyFileRange { arg: c.fixed()? },
        FUSE_SETUPMAPPING => Operation::SetupMapping,
        FUSE_REMOVEMAPPING => Operation::RemoveMapping,
        FUSE_SYNCFS => Operation::Syncfs { arg: c.fixed()? },
        FUSE_TMPFILE => Operation::Tmpfile {
            arg: c.fixed()?,
            name: c.name()?,
        },
        FUSE_STATX => Operation::Statx { arg: c.fixed()? },
        other => return Err(DecodeError::UnknownOpcode(other as u32)),
    })
}
