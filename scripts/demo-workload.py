#!/usr/bin/env python3
"""The crash demo's applications: readers and writers on a mount, every result checked.

Usage: demo-workload.py MOUNTPOINT SOURCE SECONDS REPORT_JSON
Readers read whole files through the mount and compare them with the source; writers
create, write, read back and rename files. Every operation's start, end and outcome is kept;
the report has the counts, the errors and the longest operation.
"""
import json, os, random, sys, threading, time

mnt, src, seconds, report_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
files = sorted(f for f in os.listdir(src) if f.startswith("data"))
expected = {f: open(os.path.join(src, f), "rb").read() for f in files}
lock = threading.Lock()
ops, errors, longest = [0], [], [0.0, ""]
stop = time.monotonic() + seconds


def record(name, started, error=None):
    took = time.monotonic() - started
    with lock:
        ops[0] += 1
        if error:
            errors.append(f"{name}: {error}")
        if took > longest[0]:
            longest[0], longest[1] = took, name


def reader(seed):
    rnd = random.Random(seed)
    while time.monotonic() < stop:
        name = rnd.choice(files)
        started = time.monotonic()
        try:
            with open(os.path.join(mnt, name), "rb") as f:
                data = f.read()
            record(f"read {name}", started, None if data == expected[name] else "wrong data")
        except OSError as e:
            record(f"read {name}", started, e.strerror)


def writer(seed):
    rnd = random.Random(seed)
    n = 0
    while time.monotonic() < stop:
        n += 1
        name = f"w{seed}-{n}"
        payload = rnd.randbytes(rnd.randint(1, 256 * 1024))
        started = time.monotonic()
        try:
            with open(os.path.join(mnt, name), "wb") as f:
                f.write(payload)
            with open(os.path.join(mnt, name), "rb") as f:
                ok = f.read() == payload
            os.rename(os.path.join(mnt, name), os.path.join(mnt, name + ".done"))
            os.stat(os.path.join(mnt, name + ".done"))
            record(f"write {name}", started, None if ok else "read back wrong data")
        except OSError as e:
            record(f"write {name}", started, e.strerror)


threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=writer, args=(100 + i,)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
json.dump({"ops": ops[0], "errors": errors, "longest_s": longest[0], "longest_op": longest[1]},
          open(report_path, "w"))
