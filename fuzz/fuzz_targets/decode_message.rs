//! The keeper's message decoders on arbitrary bytes. Input: one byte giving the number of fds
//! that "arrived" with the message (0..=255, so counts past the 16/17 limits are tried too),
//! then the message. Both decoders must return an error or a value, never panic, and whatever
//! decodes must encode back to the very same bytes (the encoding is canonical), with the same
//! fd count. No message decodes both as a request and as a reply.

#![no_main]

use fuse_keeper_client::protocol::{decode_reply, decode_request, encode_reply, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&fds, msg)) = data.split_first() else { return };
    let fds = usize::from(fds);
    let request = decode_request(msg, fds);
    let reply = decode_reply(msg, fds);
    assert!(request.is_err() || reply.is_err(), "decodes as a request and as a reply");
    if let Ok(req) = request {
        assert_eq!(encode_request(&req), msg, "request {req:?} does not re-encode");
        assert_eq!(req.fd_count(), fds);
    }
    if let Ok(reply) = reply {
        let (bytes, count) = encode_reply(&reply);
        assert_eq!(bytes, msg, "reply {reply:?} does not re-encode");
        assert_eq!(count, fds);
    }
});
