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

use fuse_abi::fuse_opcode;
use fuse_proto::{Negotiated, peek_header};
use libfuzzer_sys::fuzz_target;

#[path = "../../proto/tests/decode_checks/mod.rs"]
mod decode_checks;

use decode_checks::check;

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
