//! The checks of the `decode_request` fuzz target, shared with the stable corpus replay
//! (`proto/tests/fuzz_corpus.rs`): the fuzz target includes this file by path.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuse_abi::{FUSE_COMPAT_SETXATTR_IN_SIZE, fuse_in_header, fuse_opcode};
use fuse_proto::{DecodeError, Negotiated, Operation, Request, decode, peek_header};
use zerocopy::{Immutable, IntoBytes};

/// Opcodes of the ABI that `decode` answers with `UnknownOpcode`.
pub const UNDECODED: [fuse_opcode; 3] = [
    fuse_opcode::CUSE_INIT,
    fuse_opcode::CUSE_INIT_BSWAP_RESERVED,
    fuse_opcode::FUSE_INIT_BSWAP_RESERVED,
];

/// One piece of a decoded request as it lies in the arguments.
#[derive(Debug, PartialEq)]
pub enum Part<'a> {
    /// Bytes copied out of the request.
    Copied(Vec<u8>),
    /// Bytes not exposed (padding).
    Skipped(usize),
    /// A name borrowed from the request, followed there by a NUL.
    Name(&'a [u8]),
    /// Bytes borrowed from the request.
    Borrowed(&'a [u8]),
    /// Nothing of the arguments is left.
    End,
}

use Part::{Borrowed, Copied, End, Name, Skipped};

pub fn fixed<T: IntoBytes + Immutable>(arg: &T) -> Part<'static> {
    Copied(arg.as_bytes().to_vec())
}

pub fn name(name: &OsStr) -> Part<'_> {
    Name(name.as_bytes())
}

/// The opcodes `req.op` may come from, and its wire layout. `args` is the arguments' length.
pub fn layout<'a>(
    req: &Request<'a>,
    negotiated: &Negotiated,
    args: usize,
) -> (Vec<fuse_opcode>, Vec<Part<'a>>) {
    use fuse_opcode::*;
    match &req.op {
        Operation::Lookup { name: n } => (vec![FUSE_LOOKUP], vec![name(n)]),
        Operation::Forget { nlookup } => (vec![FUSE_FORGET], vec![fixed(nlookup)]),
        Operation::Getattr { arg } => (vec![FUSE_GETATTR], vec![fixed(arg)]),
        Operation::Setattr { arg } => (vec![FUSE_SETATTR], vec![fixed(arg)]),
        Operation::Readlink => (vec![FUSE_READLINK], vec![]),
        Operation::Symlink { name: n, target } => (vec![FUSE_SYMLINK], vec![name(n), name(target)]),
        Operation::Mknod { arg, name: n } => (vec![FUSE_MKNOD], vec![fixed(arg), name(n)]),
        Operation::Mkdir { arg, name: n } => (vec![FUSE_MKDIR], vec![fixed(arg), name(n)]),
        Operation::Unlink { name: n } => (vec![FUSE_UNLINK], vec![name(n)]),
        Operation::Rmdir { name: n } => (vec![FUSE_RMDIR], vec![name(n)]),
        Operation::Rename { newdir, flags, name: n, newname } => {
            if req.opcode == FUSE_RENAME2 {
                let parts = vec![fixed(newdir), fixed(flags), Skipped(4), name(n), name(newname)];
                (vec![FUSE_RENAME2], parts)
            } else {
                assert_eq!(*flags, 0, "RENAME with flags: {req:?}");
                (vec![FUSE_RENAME], vec![fixed(newdir), name(n), name(newname)])
            }
        }
        Operation::Link { oldnodeid, name: n } => {
            (vec![FUSE_LINK], vec![fixed(oldnodeid), name(n)])
        }
        Operation::Open { arg } => (vec![FUSE_OPEN], vec![fixed(arg)]),
        Operation::Read { arg } => (vec![FUSE_READ], vec![fixed(arg)]),
        Operation::Write { arg, data } => {
            assert_eq!(data.len(), arg.size as usize, "WRITE data: {req:?}");
            (vec![FUSE_WRITE], vec![fixed(arg), Borrowed(data)])
        }
        Operation::Statfs => (vec![FUSE_STATFS], vec![]),
        Operation::Release { arg } => (vec![FUSE_RELEASE], vec![fixed(arg)]),
        Operation::Fsync { arg } => (vec![FUSE_FSYNC], vec![fixed(arg)]),
        Operation::Setxattr { arg, name: n, value } => {
            assert_eq!(value.len(), arg.size as usize, "SETXATTR value: {req:?}");
            let wire = if negotiated.setxattr_ext {
                arg.as_bytes()
            } else {
                assert_eq!((arg.setxattr_flags, arg.padding), (0, 0), "not sent: {req:?}");
                &arg.as_bytes()[..FUSE_COMPAT_SETXATTR_IN_SIZE]
            };
            (vec![FUSE_SETXATTR], vec![Copied(wire.to_vec()), name(n), Borrowed(value)])
        }
        Operation::Getxattr { arg, name: n } => (vec![FUSE_GETXATTR], vec![fixed(arg), name(n)]),
        Operation::Listxattr { arg } => (vec![FUSE_LISTXATTR], vec![fixed(arg)]),
        Operation::Removexattr { name: n } => (vec![FUSE_REMOVEXATTR], vec![name(n)]),
        Operation::Flush { arg } => (vec![FUSE_FLUSH], vec![fixed(arg)]),
        Operation::Init { arg } => {
            assert!(args >= 16, "INIT from {args} bytes: {req:?}");
            let sent = args.min(arg.as_bytes().len());
            assert!(arg.as_bytes()[sent..].iter().all(|&b| b == 0), "INIT not sent: {req:?}");
            let parts = vec![Copied(arg.as_bytes()[..sent].to_vec()), Skipped(args - sent), End];
            (vec![FUSE_INIT], parts)
        }
        Operation::Opendir { arg } => (vec![FUSE_OPENDIR], vec![fixed(arg)]),
        Operation::Readdir { arg } => (vec![FUSE_READDIR], vec![fixed(arg)]),
        Operation::Releasedir { arg } => (vec![FUSE_RELEASEDIR], vec![fixed(arg)]),
        Operation::Fsyncdir { arg } => (vec![FUSE_FSYNCDIR], vec![fixed(arg)]),
        Operation::Getlk { arg } => (vec![FUSE_GETLK], vec![fixed(arg)]),
        Operation::Setlk { arg, sleep: false } => (vec![FUSE_SETLK], vec![fixed(arg)]),
        Operation::Setlk { arg, sleep: true } => (vec![FUSE_SETLKW], vec![fixed(arg)]),
        Operation::Access { arg } => (vec![FUSE_ACCESS], vec![fixed(arg)]),
        Operation::Create { arg, name: n } => (vec![FUSE_CREATE], vec![fixed(arg), name(n)]),
        Operation::Interrupt { unique } => (vec![FUSE_INTERRUPT], vec![fixed(unique)]),
        Operation::Bmap { arg } => (vec![FUSE_BMAP], vec![fixed(arg)]),
        Operation::Destroy => (vec![FUSE_DESTROY], vec![]),
        Operation::Ioctl { arg, data } => {
            assert_eq!(data.len(), arg.in_size as usize, "IOCTL data: {req:?}");
            (vec![FUSE_IOCTL], vec![fixed(arg), Borrowed(data)])
        }
        Operation::Poll { arg } => (vec![FUSE_POLL], vec![fixed(arg)]),
        Operation::NotifyReply { arg, data } => {
            (vec![FUSE_NOTIFY_REPLY], vec![fixed(arg), Borrowed(data), End])
        }
        Operation::BatchForget { forgets } => {
            let entries: Vec<_> = forgets.clone().collect();
            assert_eq!(entries.len(), forgets.len(), "BATCH_FORGET: {req:?}");
            assert_eq!(entries.is_empty(), forgets.is_empty(), "BATCH_FORGET: {req:?}");
            let count = u32::try_from(entries.len()).unwrap();
            let sent: Vec<u8> = entries
                .iter()
                .flat_map(|one| [one.nodeid, one.nlookup])
                .flat_map(u64::to_ne_bytes)
                .collect();
            (vec![FUSE_BATCH_FORGET], vec![fixed(&count), Skipped(4), Copied(sent)])
        }
        Operation::Fallocate { arg } => (vec![FUSE_FALLOCATE], vec![fixed(arg)]),
        Operation::Readdirplus { arg } => (vec![FUSE_READDIRPLUS], vec![fixed(arg)]),
        Operation::Lseek { arg } => (vec![FUSE_LSEEK], vec![fixed(arg)]),
        Operation::CopyFileRange { arg, wide: false } => {
            (vec![FUSE_COPY_FILE_RANGE], vec![fixed(arg)])
        }
        Operation::CopyFileRange { arg, wide: true } => {
            (vec![FUSE_COPY_FILE_RANGE_64], vec![fixed(arg)])
        }
        Operation::SetupMapping => (vec![FUSE_SETUPMAPPING], vec![]),
        Operation::RemoveMapping => (vec![FUSE_REMOVEMAPPING], vec![]),
        Operation::Syncfs { arg } => (vec![FUSE_SYNCFS], vec![fixed(arg)]),
        Operation::Tmpfile { arg, name: n } => (vec![FUSE_TMPFILE], vec![fixed(arg), name(n)]),
        Operation::Statx { arg } => (vec![FUSE_STATX], vec![fixed(arg)]),
    }
}

/// Checks that `parts` lie in `args` in order, from its first byte.
pub fn lay_out(args: &[u8], parts: &[Part<'_>], req: &Request<'_>) {
    let mut at = 0;
    for part in parts {
        let rest = &args[at..];
        match part {
            Copied(bytes) => {
                assert_eq!(rest.get(..bytes.len()), Some(&bytes[..]), "at {at}: {req:?}");
                at += bytes.len();
            }
            Skipped(n) => {
                assert!(*n <= rest.len(), "{n} skipped at {at} of {}: {req:?}", args.len());
                at += n;
            }
            Name(name) => {
                assert!(!name.is_empty(), "empty name at {at}: {req:?}");
                assert!(!name.contains(&0), "NUL in a name at {at}: {req:?}");
                assert_eq!(name.as_ptr(), rest.as_ptr(), "name not at {at}: {req:?}");
                assert_eq!(rest.get(name.len()), Some(&0), "no NUL after the name: {req:?}");
                at += name.len() + 1;
            }
            Borrowed(data) => {
                assert!(data.len() <= rest.len(), "data past the arguments: {req:?}");
                if !data.is_empty() {
                    assert_eq!(data.as_ptr(), rest.as_ptr(), "data not at {at}: {req:?}");
                }
                at += data.len();
            }
            End => assert_eq!(at, args.len(), "arguments left: {req:?}"),
        }
    }
}

/// Decodes `bytes` under `negotiated` and checks the result; returns the opcode and layout of
/// what decoded, or the error.
pub fn check<'a>(
    bytes: &'a [u8],
    negotiated: &Negotiated,
) -> Result<(fuse_opcode, Vec<Part<'a>>), DecodeError> {
    let result = decode(bytes, negotiated);
    let header_len = size_of::<fuse_in_header>();
    let header = peek_header(bytes);
    assert_eq!(header.is_some(), bytes.len() >= header_len);
    let Some(header) = header else {
        assert_eq!(result.as_ref().unwrap_err(), &DecodeError::Truncated);
        return Err(DecodeError::Truncated);
    };
    assert_eq!(header.as_bytes(), &bytes[..header_len]);
    // The errors the header alone calls for, in the order decode looks.
    let ext = usize::from(header.total_extlen) * 8;
    let args = (bytes.len() - header_len).checked_sub(ext);
    let opcode = fuse_opcode::try_from(header.opcode);
    let expected = if header.len as usize != bytes.len() {
        Some(DecodeError::LengthMismatch { header: header.len, read: bytes.len() })
    } else if opcode.is_err() {
        Some(DecodeError::UnknownOpcode(header.opcode))
    } else if args.is_none() {
        Some(DecodeError::Truncated)
    } else if opcode.is_ok_and(|op| UNDECODED.contains(&op)) {
        Some(DecodeError::UnknownOpcode(header.opcode))
    } else {
        None
    };
    if let Some(error) = expected {
        assert_eq!(result.as_ref().unwrap_err(), &error);
        return Err(error);
    }
    let args = &bytes[header_len..header_len + args.unwrap()];
    let req = match result {
        Ok(req) => req,
        Err(error) => {
            let expected = [DecodeError::Truncated, DecodeError::BadName, DecodeError::BadArgument];
            assert!(expected.contains(&error), "{error:?} for opcode {}", header.opcode);
            return Err(error);
        }
    };
    assert_eq!(req.opcode as u32, header.opcode);
    assert_eq!(
        (req.unique, req.nodeid, req.uid, req.gid, req.pid),
        (header.unique, header.nodeid, header.uid, header.gid, header.pid)
    );
    let (opcodes, parts) = layout(&req, negotiated, args.len());
    assert!(opcodes.contains(&req.opcode), "{:?} decoded as {req:?}", req.opcode);
    lay_out(args, &parts, &req);
    Ok((req.opcode, parts))
}
