//! The FUSE request decoder (`fuse_proto::decode`) on arbitrary bytes, as if read from
//! `/dev/fuse`. Input: one byte whose bit 0 is the negotiated `setxattr_ext` (the only part of
//! the INIT negotiation `decode` distinguishes; the other bits are ignored), then the request.
//! The request is decoded under that negotiation and under the other one; each result must
//! be an error or a request, never a panic, and:
//!
//! - `peek_header` reads a header exactly when there are 40 bytes, and an error is the one the
//!   header calls for: `Truncated` below 40 bytes, `LengthMismatch` when `len` is not the
//!   input's length, `UnknownOpcode` for an opcode the ABI does not define or one of the three
//!   the decoder rejects (`CUSE_INIT` and the byte-swap detectors; for these, `Truncated`
//!   first when `total_extlen` reaches past the arguments, as for every opcode);
//! - a decoded request has the header's fields and opcode, and an `Operation` variant of that
//!   opcode; laid out again as the wire has it (each fixed struct's bytes, each name with its
//!   NUL, each data slice), it is a prefix of the arguments (the bytes between the header and
//!   the extensions): names are non-empty, hold no NUL, are followed by one and are borrowed
//!   from the input at their place; data slices (WRITE, SETXATTR, IOCTL, NOTIFY_REPLY) are
//!   borrowed from the input at their place and have the length their struct gives; a
//!   BATCH_FORGET has `count` entries, equal to the bytes sent; INIT copies the bytes sent (16
//!   to 64) and zeroes the rest; a SETXATTR without the extension has `setxattr_flags` 0;
//! - only SETXATTR decodes differently under the two negotiations.

#![no_main]

use fuse_abi::{fuse_in_header, fuse_opcode};
use fuse_proto::{DecodeError, Negotiated, Operation, Request, decode, peek_header};
use libfuzzer_sys::fuzz_target;
use zerocopy::IntoBytes;

/// Opcodes of the ABI that `decode` answers with `UnknownOpcode`.
const UNDECODED: [fuse_opcode; 3] = [
    fuse_opcode::CUSE_INIT,
    fuse_opcode::CUSE_INIT_BSWAP_RESERVED,
    fuse_opcode::FUSE_INIT_BSWAP_RESERVED,
];

/// One piece of a decoded request, as it lies in the arguments.
#[derive(Debug, PartialEq)]
enum Part<'a> {
    /// Bytes copied out of the request (a fixed struct or some of its fields).
    Copied(Vec<u8>),
    /// Bytes the operation does not expose (padding).
    Skipped(usize),
    /// A name borrowed from the request; a NUL follows it there.
    Name(&'a [u8]),
    /// Bytes borrowed from the request.
    Borrowed(&'a [u8]),
    /// The operation took all the arguments.
    End,
}

use Part::{Borrowed, Copied, End, Name, Skipped};

fn name(n: &std::ffi::OsStr) -> Part<'_> {
    Name(std::os::unix::ffi::OsStrExt::as_bytes(n))
}

/// The wire layout of `req`'s operation, after checking that its variant is one of
/// `req.opcode`'s. `args` is the length of the arguments.
fn layout<'a>(req: &Request<'a>, negotiated: &Negotiated, args: usize) -> Vec<Part<'a>> {
    use fuse_opcode::*;
    let opcode = req.opcode;
    let is = |ops: &[fuse_opcode]| assert!(ops.contains(&opcode), "{opcode:?} decoded as {req:?}");
    match &req.op {
        Operation::Lookup { name: n } => {
            is(&[FUSE_LOOKUP]);
            vec![name(n)]
        }
        Operation::Forget { nlookup } => {
            is(&[FUSE_FORGET]);
            vec![Copied(nlookup.to_ne_bytes().to_vec())]
        }
        Operation::Getattr { arg } => {
            is(&[FUSE_GETATTR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Setattr { arg } => {
            is(&[FUSE_SETATTR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Readlink => {
            is(&[FUSE_READLINK]);
            vec![]
        }
        Operation::Symlink { name: n, target } => {
            is(&[FUSE_SYMLINK]);
            vec![name(n), name(target)]
        }
        Operation::Mknod { arg, name: n } => {
            is(&[FUSE_MKNOD]);
            vec![Copied(arg.as_bytes().to_vec()), name(n)]
        }
        Operation::Mkdir { arg, name: n } => {
            is(&[FUSE_MKDIR]);
            vec![Copied(arg.as_bytes().to_vec()), name(n)]
        }
        Operation::Unlink { name: n } => {
            is(&[FUSE_UNLINK]);
            vec![name(n)]
        }
        Operation::Rmdir { name: n } => {
            is(&[FUSE_RMDIR]);
            vec![name(n)]
        }
        Operation::Rename { newdir, flags, name: n, newname } => {
            is(&[FUSE_RENAME, FUSE_RENAME2]);
            let mut parts = vec![Copied(newdir.to_ne_bytes().to_vec())];
            if opcode == FUSE_RENAME2 {
                parts.extend([Copied(flags.to_ne_bytes().to_vec()), Skipped(4)]);
            } else {
                assert_eq!(*flags, 0, "RENAME with flags: {req:?}");
            }
            parts.extend([name(n), name(newname)]);
            parts
        }
        Operation::Link { oldnodeid, name: n } => {
            is(&[FUSE_LINK]);
            vec![Copied(oldnodeid.to_ne_bytes().to_vec()), name(n)]
        }
        Operation::Open { arg } => {
            is(&[FUSE_OPEN]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Read { arg } => {
            is(&[FUSE_READ]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Write { arg, data } => {
            is(&[FUSE_WRITE]);
            assert_eq!(data.len(), arg.size as usize, "WRITE data: {req:?}");
            vec![Copied(arg.as_bytes().to_vec()), Borrowed(data)]
        }
        Operation::Statfs => {
            is(&[FUSE_STATFS]);
            vec![]
        }
        Operation::Release { arg } => {
            is(&[FUSE_RELEASE]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Fsync { arg } => {
            is(&[FUSE_FSYNC]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Setxattr { arg, name: n, value } => {
            is(&[FUSE_SETXATTR]);
            assert_eq!(value.len(), arg.size as usize, "SETXATTR value: {req:?}");
            let wire = if negotiated.setxattr_ext {
                arg.as_bytes()
            } else {
                assert_eq!((arg.setxattr_flags, arg.padding), (0, 0), "not sent: {req:?}");
                &arg.as_bytes()[..fuse_abi::FUSE_COMPAT_SETXATTR_IN_SIZE]
            };
            vec![Copied(wire.to_vec()), name(n), Borrowed(value)]
        }
        Operation::Getxattr { arg, name: n } => {
            is(&[FUSE_GETXATTR]);
            vec![Copied(arg.as_bytes().to_vec()), name(n)]
        }
        Operation::Listxattr { arg } => {
            is(&[FUSE_LISTXATTR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Removexattr { name: n } => {
            is(&[FUSE_REMOVEXATTR]);
            vec![name(n)]
        }
        Operation::Flush { arg } => {
            is(&[FUSE_FLUSH]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Init { arg } => {
            is(&[FUSE_INIT]);
            // 16 bytes before 7.36, 64 since; whatever the kernel did not send is zero.
            assert!(args >= 16, "INIT from {args} bytes: {req:?}");
            let sent = args.min(arg.as_bytes().len());
            assert!(arg.as_bytes()[sent..].iter().all(|&b| b == 0), "INIT not sent: {req:?}");
            vec![Copied(arg.as_bytes()[..sent].to_vec()), Skipped(args - sent), End]
        }
        Operation::Opendir { arg } => {
            is(&[FUSE_OPENDIR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Readdir { arg } => {
            is(&[FUSE_READDIR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Releasedir { arg } => {
            is(&[FUSE_RELEASEDIR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Fsyncdir { arg } => {
            is(&[FUSE_FSYNCDIR]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Getlk { arg } => {
            is(&[FUSE_GETLK]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Setlk { arg, sleep } => {
            is(&[if *sleep { FUSE_SETLKW } else { FUSE_SETLK }]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Access { arg } => {
            is(&[FUSE_ACCESS]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Create { arg, name: n } => {
            is(&[FUSE_CREATE]);
            vec![Copied(arg.as_bytes().to_vec()), name(n)]
        }
        Operation::Interrupt { unique } => {
            is(&[FUSE_INTERRUPT]);
            vec![Copied(unique.to_ne_bytes().to_vec())]
        }
        Operation::Bmap { arg } => {
            is(&[FUSE_BMAP]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Destroy => {
            is(&[FUSE_DESTROY]);
            vec![]
        }
        Operation::Ioctl { arg, data } => {
            is(&[FUSE_IOCTL]);
            assert_eq!(data.len(), arg.in_size as usize, "IOCTL data: {req:?}");
            vec![Copied(arg.as_bytes().to_vec()), Borrowed(data)]
        }
        Operation::Poll { arg } => {
            is(&[FUSE_POLL]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::NotifyReply { arg, data } => {
            is(&[FUSE_NOTIFY_REPLY]);
            vec![Copied(arg.as_bytes().to_vec()), Borrowed(data), End]
        }
        Operation::BatchForget { forgets } => {
            is(&[FUSE_BATCH_FORGET]);
            let entries: Vec<_> = forgets.clone().collect();
            assert_eq!(entries.len(), forgets.len(), "BATCH_FORGET: {req:?}");
            assert_eq!(entries.is_empty(), forgets.is_empty(), "BATCH_FORGET: {req:?}");
            let count = u32::try_from(entries.len()).expect("count is a u32");
            let mut sent = Vec::new();
            for one in &entries {
                sent.extend(one.nodeid.to_ne_bytes());
                sent.extend(one.nlookup.to_ne_bytes());
            }
            vec![Copied(count.to_ne_bytes().to_vec()), Skipped(4), Copied(sent)]
        }
        Operation::Fallocate { arg } => {
            is(&[FUSE_FALLOCATE]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Readdirplus { arg } => {
            is(&[FUSE_READDIRPLUS]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Lseek { arg } => {
            is(&[FUSE_LSEEK]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::CopyFileRange { arg, wide } => {
            is(&[if *wide { FUSE_COPY_FILE_RANGE_64 } else { FUSE_COPY_FILE_RANGE }]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::SetupMapping => {
            is(&[FUSE_SETUPMAPPING]);
            vec![]
        }
        Operation::RemoveMapping => {
            is(&[FUSE_REMOVEMAPPING]);
            vec![]
        }
        Operation::Syncfs { arg } => {
            is(&[FUSE_SYNCFS]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
        Operation::Tmpfile { arg, name: n } => {
            is(&[FUSE_TMPFILE]);
            vec![Copied(arg.as_bytes().to_vec()), name(n)]
        }
        Operation::Statx { arg } => {
            is(&[FUSE_STATX]);
            vec![Copied(arg.as_bytes().to_vec())]
        }
    }
}

/// Checks that `parts` lie in `args` in order, from its first byte.
fn lay_out(args: &[u8], parts: &[Part<'_>], req: &Request<'_>) {
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

/// Decodes `bytes` under `negotiated` and checks the result; returns the decoded request's
/// layout, or the error.
fn check<'a>(bytes: &'a [u8], negotiated: &Negotiated) -> Result<Vec<Part<'a>>, DecodeError> {
    let result = decode(bytes, negotiated);
    let header = peek_header(bytes);
    let header_len = size_of::<fuse_in_header>();
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
    let args = &bytes[header_len..header_len + args.expect("checked above")];
    let req = match result {
        Ok(req) => req,
        Err(error) => {
            assert!(
                matches!(
                    error,
                    DecodeError::Truncated | DecodeError::BadName | DecodeError::BadArgument
                ),
                "{error:?} for opcode {}",
                header.opcode
            );
            return Err(error);
        }
    };
    assert_eq!(header.len as usize, bytes.len());
    assert_eq!(req.opcode as u32, header.opcode);
    assert_eq!(
        (req.unique, req.nodeid, req.uid, req.gid, req.pid),
        (header.unique, header.nodeid, header.uid, header.gid, header.pid)
    );
    let parts = layout(&req, negotiated, args.len());
    lay_out(args, &parts, &req);
    Ok(parts)
}

fuzz_target!(|data: &[u8]| {
    let Some((&negotiation, bytes)) = data.split_first() else { return };
    let negotiated = Negotiated { setxattr_ext: negotiation & 1 != 0 };
    let other = Negotiated { setxattr_ext: !negotiated.setxattr_ext };
    let first = check(bytes, &negotiated);
    let second = check(bytes, &other);
    if peek_header(bytes).is_none_or(|h| h.opcode != fuse_opcode::FUSE_SETXATTR as u32) {
        assert_eq!(first, second, "the negotiation changed a non-SETXATTR request");
    }
});
