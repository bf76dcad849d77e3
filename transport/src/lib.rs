//! `fuse-transport`: the only layer that makes syscalls on `/dev/fuse`, mounts and unmounts.
//!
//! - Device: [`open_device`], [`clone_device`], [`read_request`], [`write_reply`],
//!   [`backing_open`], [`backing_close`].
//! - Mounting: [`mount`] (root: [`mount_with_fd`]; others: [`mount_fusermount`]).
//! - Teardown that never blocks on a dead server: [`unmount_detached`], [`abort_connection`],
//!   [`force_unmount`]. The mountpoint is never `stat`ed there: mounts are looked up in
//!   `/proc/self/mountinfo` ([`connection_id`], [`is_fuse_mount`], [`parse_mountinfo`]).
//!
//! All `unsafe` code is in the private `sys` module.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod device;
mod error;
mod fusectl;
mod inherited;
mod mount;
mod mountinfo;
mod stop;
#[allow(unsafe_code)]
mod sys;

pub use device::{
    BufferPool, DEVICE_PATH, FUSE_MIN_READ_BUFFER, Pages, RequestBuffer, WriteOutcome,
    backing_close, backing_open, clone_device, open_device, prefaulted_buffer,
    prefaulted_buffer_of, read_request, write_reply, zeroed_buffer,
};
pub use error::{Error, Result};
pub use fusectl::{
    FUSECTL_PATH, abort_connection, connection_dir, ensure_fusectl, waiting_requests,
};
pub use inherited::{close_fds_on, cwd_on};
pub use mount::{
    MountOptions, force_unmount, mount, mount_fusermount, mount_with_fd, unmount_detached,
};
pub use mountinfo::{
    MOUNTINFO_PATH, MountInfoEntry, connection_id, connection_id_in, find_top_mount,
    is_fuse_fstype, is_fuse_mount, mount_entry, parse_mountinfo, read_mountinfo,
    resolve_mountpoint, unescape,
};
pub use stop::{ReadStop, Reader, read_request_stoppable};
