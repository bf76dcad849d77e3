#!/usr/bin/env python3
"""A stock FUSE server of a few lines, for tests/peers/wrap-poison.sh: it speaks the FUSE
protocol itself on the fd fuse-wrap gives it (/dev/fd/N), serves an empty root, and aborts
itself whenever it is asked to LOOKUP the name `poison` (a request that kills every server it
is given to). Every other LOOKUP is ENOENT; what it does not know, ENOSYS.

Usage: wrap-poison.py /dev/fd/N
"""
import os
import struct
import sys

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
LOOKUP, GETATTR, INIT, OPENDIR, RELEASEDIR, READDIR = 1, 3, 26, 27, 29, 28
ENOENT, ENOSYS = 2, 38


def reply(fd, unique, payload=b"", error=0):
    os.write(fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique) + payload)


def root_attr():
    # fuse_attr_out: attr_valid, attr_valid_nsec, dummy, then fuse_attr.
    attr = struct.pack("<QQQQQQIIIIIIIIII", 1, 0, 0, 0, 0, 0, 0, 0, 0,
                       0o40755, 2, 0, 0, 0, 4096, 0)
    return struct.pack("<QII", 1, 0, 0) + attr


def main():
    fd = int(sys.argv[1].rsplit("/", 1)[1])
    while True:
        try:
            msg = os.read(fd, 1 << 20)
        except OSError:
            return
        if not msg:
            return
        length, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(msg)
        body = msg[IN_HEADER.size:length]
        if opcode == INIT:
            major, minor = struct.unpack_from("<II", body)
            # fuse_init_out (64 bytes): major, minor 31, max_readahead, flags 0,
            # max_background, congestion_threshold, max_write, time_gran, max_pages, ...
            out = struct.pack("<IIIIHHIIHHII", 7, 31, 1 << 17, 0, 16, 12, 1 << 17, 1, 32, 0, 0, 0)
            reply(fd, unique, out + bytes(64 - len(out)))
        elif opcode == GETATTR and nodeid == 1:
            reply(fd, unique, root_attr())
        elif opcode == LOOKUP:
            name = body.split(b"\0", 1)[0]
            if name == b"poison":
                os.abort()
            reply(fd, unique, error=ENOENT)
        elif opcode in (2, 42):  # FORGET, BATCH_FORGET: no reply
            pass
        else:
            reply(fd, unique, error=ENOSYS)


if __name__ == "__main__":
    main()
