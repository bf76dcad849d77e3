//! Crate-level unit tests: enum round trips, a byte-exact header fixture
//! and consistency of the compat sizes with the struct layouts.

use core::mem::offset_of;

use zerocopy::{FromBytes, IntoBytes};

use crate::*;

#[test]
fn opcode_round_trip() {
    assert_eq!(fuse_opcode::ALL.len(), 54);
    for &op in fuse_opcode::ALL {
        let raw = op as u32;
        assert_eq!(fuse_opcode::try_from(raw), Ok(op));
        assert_eq!(u32::from(op), raw);
        assert!(!op.name().is_empty());
    }
    assert_eq!(fuse_opcode::FUSE_LOOKUP as u32, 1);
    assert_eq!(fuse_opcode::FUSE_STATX as u32, 52);
    assert_eq!(fuse_opcode::FUSE_COPY_FILE_RANGE_64 as u32, 53);
    assert_eq!(fuse_opcode::CUSE_INIT as u32, 4096);
    assert_eq!(fuse_opcode::CUSE_INIT_BSWAP_RESERVED as u32, (fuse_opcode::CUSE_INIT as u32) << 8);
    assert_eq!(fuse_opcode::FUSE_INIT_BSWAP_RESERVED as u32, (fuse_opcode::FUSE_INIT as u32) << 24);
    assert_eq!(fuse_opcode::FUSE_LOOKUP.name(), "LOOKUP");
    assert_eq!(fuse_opcode::FUSE_BATCH_FORGET.name(), "BATCH_FORGET");
    assert_eq!(fuse_opcode::CUSE_INIT.name(), "CUSE_INIT");
    assert_eq!(fuse_opcode::FUSE_READDIRPLUS.to_string(), "READDIRPLUS");
}

#[test]
fn opcode_unknown() {
    for raw in [0, 7, 19, 54, 4095, 4097, u32::MAX] {
        assert_eq!(fuse_opcode::try_from(raw), Err(raw));
    }
    // Every value in 0..=60 is either in ALL or rejected.
    for raw in 0..=60u32 {
        let known = fuse_opcode::ALL.iter().any(|&op| op as u32 == raw);
        assert_eq!(fuse_opcode::try_from(raw).is_ok(), known, "opcode {raw}");
    }
}

#[test]
fn notify_code_round_trip() {
    for &code in fuse_notify_code::ALL {
        assert_eq!(fuse_notify_code::try_from(code as i32), Ok(code));
        assert_eq!(i32::from(code), code as i32);
    }
    assert_eq!(fuse_notify_code::FUSE_NOTIFY_POLL as i32, 1);
    assert_eq!(fuse_notify_code::FUSE_NOTIFY_RESEND as i32, 7);
    assert_eq!(fuse_notify_code::FUSE_NOTIFY_INC_EPOCH as i32, 8);
    assert_eq!(fuse_notify_code::FUSE_NOTIFY_PRUNE as i32, 9);
    assert_eq!(fuse_notify_code::try_from(0), Err(0));
    assert_eq!(fuse_notify_code::try_from(10), Err(10));
    assert_eq!(fuse_notify_code::try_from(-1), Err(-1));
}

#[test]
fn small_enums_round_trip() {
    for ty in [fuse_ext_type::FUSE_MAX_NR_SECCTX, fuse_ext_type::FUSE_EXT_GROUPS] {
        assert_eq!(fuse_ext_type::try_from(u32::from(ty)), Ok(ty));
    }
    assert_eq!(fuse_ext_type::try_from(0), Err(0));
    for cmd in [
        fuse_uring_cmd::FUSE_IO_URING_CMD_INVALID,
        fuse_uring_cmd::FUSE_IO_URING_CMD_REGISTER,
        fuse_uring_cmd::FUSE_IO_URING_CMD_COMMIT_AND_FETCH,
    ] {
        assert_eq!(fuse_uring_cmd::try_from(u32::from(cmd)), Ok(cmd));
    }
    assert_eq!(fuse_uring_cmd::try_from(3), Err(3));
}

/// A LOOKUP request header as a little-endian kernel writes it.
#[cfg(target_endian = "little")]
const IN_HEADER_FIXTURE: [u8; 40] = [
    0x30, 0x00, 0x00, 0x00, // len = 48
    0x01, 0x00, 0x00, 0x00, // opcode = FUSE_LOOKUP
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // unique
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // nodeid = FUSE_ROOT_ID
    0xe8, 0x03, 0x00, 0x00, // uid = 1000
    0xe9, 0x03, 0x00, 0x00, // gid = 1001
    0x39, 0x30, 0x00, 0x00, // pid = 12345
    0x02, 0x00, // total_extlen = 2
    0x00, 0x00, // padding
];

#[cfg(target_endian = "little")]
#[test]
fn in_header_fixture() {
    let hdr = fuse_in_header::read_from_bytes(&IN_HEADER_FIXTURE).unwrap();
    assert_eq!(hdr.len, 48);
    assert_eq!(hdr.opcode, 1);
    assert_eq!(fuse_opcode::try_from(hdr.opcode), Ok(fuse_opcode::FUSE_LOOKUP));
    assert_eq!(hdr.unique, 0x0102_0304_0506_0708);
    assert_eq!(hdr.nodeid, FUSE_ROOT_ID);
    assert_eq!(hdr.uid, 1000);
    assert_eq!(hdr.gid, 1001);
    assert_eq!(hdr.pid, 12345);
    assert_eq!(hdr.total_extlen, 2);
    assert_eq!(hdr.padding, 0);
    assert_eq!(hdr.as_bytes(), &IN_HEADER_FIXTURE);
    assert!(fuse_in_header::read_from_bytes(&IN_HEADER_FIXTURE[..39]).is_err());
}

#[test]
fn compat_sizes_match_layouts() {
    assert_eq!(
        FUSE_COMPAT_ENTRY_OUT_SIZE,
        offset_of!(fuse_entry_out, attr) + offset_of!(fuse_attr, blksize)
    );
    assert_eq!(
        FUSE_COMPAT_ATTR_OUT_SIZE,
        offset_of!(fuse_attr_out, attr) + offset_of!(fuse_attr, blksize)
    );
    assert_eq!(FUSE_COMPAT_MKNOD_IN_SIZE, offset_of!(fuse_mknod_in, umask));
    assert_eq!(FUSE_COMPAT_WRITE_IN_SIZE, offset_of!(fuse_write_in, lock_owner));
    assert_eq!(FUSE_COMPAT_STATFS_SIZE, offset_of!(fuse_kstatfs, frsize));
    assert_eq!(FUSE_COMPAT_SETXATTR_IN_SIZE, offset_of!(fuse_setxattr_in, setxattr_flags));
    assert_eq!(FUSE_COMPAT_INIT_OUT_SIZE, offset_of!(fuse_init_out, max_readahead));
    assert_eq!(FUSE_COMPAT_22_INIT_OUT_SIZE, offset_of!(fuse_init_out, time_gran));
    assert_eq!(size_of::<fuse_notify_retrieve_in>(), size_of::<fuse_write_in>());
}

#[test]
fn init_layout_offsets() {
    assert_eq!(offset_of!(fuse_init_in, flags2), 16);
    assert_eq!(offset_of!(fuse_init_out, max_pages), 28);
    assert_eq!(offset_of!(fuse_init_out, flags2), 32);
    assert_eq!(offset_of!(fuse_init_out, max_stack_depth), 36);
    assert_eq!(offset_of!(fuse_init_out, request_timeout), 40);
    assert_eq!(offset_of!(fuse_statx, atime), 64);
    assert_eq!(offset_of!(fuse_statx, rdev_major), 128);
}

#[test]
fn flag_values() {
    assert_eq!(FUSE_KERNEL_VERSION, 7);
    assert_eq!(FUSE_KERNEL_MINOR_VERSION, 45);
    assert_eq!(FUSE_INIT_EXT, 0x4000_0000);
    assert_eq!(FUSE_SECURITY_CTX, 1 << 32);
    assert_eq!(FUSE_REQUEST_TIMEOUT >> 32, 1 << 10);
    assert_eq!(FUSE_DIRECT_IO_RELAX, FUSE_DIRECT_IO_ALLOW_MMAP);
    assert_eq!(FUSE_WRITE_KILL_PRIV, FUSE_WRITE_KILL_SUIDGID);
    assert_eq!(FUSE_UNIQUE_RESEND, 0x8000_0000_0000_0000);
    assert_eq!(FUSE_INVALID_UIDGID, 0xffff_ffff);
    assert_eq!(FUSE_REMOVEMAPPING_MAX_ENTRY(4096), 256);
}

#[test]
fn defaults_are_zero() {
    assert!(fuse_init_out::default().as_bytes().iter().all(|&b| b == 0));
    assert!(fuse_uring_req_header::default().as_bytes().iter().all(|&b| b == 0));
}
