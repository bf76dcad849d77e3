#!/usr/bin/env python3
"""delaylink.py DELAY_MS HOST PORT: an ssh ProxyCommand that connects to HOST:PORT and relays
stdin -> socket and socket -> stdout, each chunk held DELAY_MS milliseconds before it is
passed on (so a round trip costs 2 x DELAY_MS more), in order: a slow link on loopback,
confined to the one ssh connection that runs it (bench/wrap's sshfs-wan target), where netem
on lo would slow every other program's loopback traffic too.

Exits when either side ends (ssh, and so sshfs, sees the connection end).
"""
import os
import socket
import sys
import threading
import time
from collections import deque


def relay(read, write, delay):
    """Chunks from read() go to write() delay seconds after they came, in order."""
    queue = deque()
    ready = threading.Condition()
    ended = []

    def reader():
        while True:
            try:
                data = read()
            except OSError:
                data = b""
            with ready:
                queue.append((time.monotonic() + delay, data))
                ready.notify()
            if not data:
                return

    threading.Thread(target=reader, daemon=True).start()
    while True:
        with ready:
            while not queue:
                ready.wait()
            due, data = queue.popleft()
        left = due - time.monotonic()
        if left > 0:
            time.sleep(left)
        if not data:
            return
        try:
            write(data)
        except OSError:
            return


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: delaylink.py DELAY_MS HOST PORT")
    delay = float(sys.argv[1]) / 1000
    sock = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()

    def write_all(fd):
        def write(data):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        return write

    def upstream():
        relay(lambda: os.read(stdin, 65536), sock.sendall, delay)
        try:
            sock.shutdown(socket.SHUT_WR)  # ssh ended: the server sees the end too
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    relay(lambda: sock.recv(65536), write_all(stdout), delay)
    # The server ended the connection: so does the client side.
    os._exit(0)


if __name__ == "__main__":
    main()
