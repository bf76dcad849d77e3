//! One message per `sendmsg`/`recvmsg` on a `SOCK_SEQPACKET` socket, fds with `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// One received message.
#[derive(Debug)]
pub struct Received {
    /// The message bytes (at most the buffer's length).
    pub bytes: Vec<u8>,
    /// The fds that came with it (closed when dropped).
    pub fds: Vec<OwnedFd>,
    /// `MSG_TRUNC`: the message was longer than the buffer.
    pub truncated: bool,
    /// `MSG_CTRUNC`: more fds were sent than there was room for (the kernel closed the rest).
    pub fds_truncated: bool,
}

/// Receive one message of at most `max_len` bytes with room for `max_fds` fds, with
/// `MSG_CMSG_CLOEXEC`. `Ok(None)` at end of stream (a zero-length message reads the same).
pub fn recv_message(
    sock: BorrowedFd<'_>,
    max_len: usize,
    max_fds: usize,
) -> io::Result<Option<Received>> {
    // One byte more than allowed so that an oversized message shows as MSG_TRUNC even if the
    // kernel would not flag it.
    let mut buf = vec![0u8; max_len + 1];
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(max_fds))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = cmsg {
            fds.extend(received);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    let truncated = msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > max_len;
    buf.truncate(msg.bytes.min(max_len));
    Ok(Some(Received {
        bytes: buf,
        fds,
        truncated,
        fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC),
    }))
}

/// Send `bytes` as one message with `fds` attached (`MSG_NOSIGNAL`).
pub fn send_message(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("control buffer too small for the fds"));
    }
    let sent =
        rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SendFlags::NOSIGNAL)?;
    if sent != bytes.len() {
        return Err(io::Error::other(format!("short send: {sent} of {} bytes", bytes.len())));
    }
    Ok(())
}
