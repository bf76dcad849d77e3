#!/usr/bin/env python3
"""A metadata workload that checks every result, for runs across server crashes.

Usage: meta-workload.py run ROOT PROCS SECONDS COUNTS_JSON [MAX]
                                   (stops after SECONDS, or MAX iterations per process)
       meta-workload.py replay ROOT COUNTS_JSON              (same iterations, no crashes)
       meta-workload.py tree ROOT                            (prints a canonical listing)

Each process works in ROOT/pN with unique names: mkdir, create O_EXCL + write, rename,
link, unlink, an append to its log, and every second iteration rmdir of the previous
directory. Any result other than success is an unexpected result.
"""
import json, os, sys, time, traceback
from multiprocessing import Process, Queue


def iteration(base, p, i):
    d = f"{base}/d{i}"
    os.mkdir(d)
    fd = os.open(f"{d}/f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, f"{p}-{i}\n".encode())
    os.close(fd)
    os.rename(f"{d}/f", f"{d}/g")
    os.link(f"{d}/g", f"{d}/h")
    os.unlink(f"{d}/g")
    fd = os.open(f"{base}/log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    os.write(fd, f"{i}\n".encode())
    os.close(fd)
    if i % 2 == 1:
        prev = f"{base}/d{i - 1}"
        os.unlink(f"{prev}/h")
        os.rmdir(prev)


def worker(root, p, stop, limit, out):
    base = f"{root}/p{p}"
    os.mkdir(base)
    i, unexpected = 0, []
    while time.monotonic() < stop and i < limit:
        try:
            iteration(base, p, i)
        except OSError as e:
            # Which call failed, and when (to find it in the servers' and keeper's logs).
            call = traceback.extract_tb(e.__traceback__)[-1].line
            unexpected.append(f"p{p} iteration {i}: {e} in `{call}` at {time.time():.6f}")
            break
        i += 1
    out.put((p, i, unexpected))


def tree(root):
    lines = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            lines.append(f"{rel}/{name} nlink={st.st_nlink} {open(path, 'rb').read()!r}")
        for name in dirs:
            lines.append(f"{rel}/{name}/")
    return "\n".join(lines)


if sys.argv[1] == "run":
    root, procs, seconds, counts_path = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    limit = int(sys.argv[6]) if len(sys.argv) > 6 else float("inf")
    stop = time.monotonic() + seconds
    out = Queue()
    ps = [Process(target=worker, args=(root, p, stop, limit, out)) for p in range(procs)]
    for p in ps:
        p.start()
    results = [out.get() for _ in ps]
    for p in ps:
        p.join()
    counts = {str(p): n for p, n, _ in results}
    unexpected = [u for _, _, us in results for u in us]
    json.dump(counts, open(counts_path, "w"))
    print(f"iterations: {sum(counts.values())} ({counts}), unexpected results: {len(unexpected)}")
    for u in unexpected:
        print("  " + u)
    sys.exit(1 if unexpected else 0)
elif sys.argv[1] == "replay":
    root, counts = sys.argv[2], json.load(open(sys.argv[3]))
    for p, n in counts.items():
        os.mkdir(f"{root}/p{p}")
        for i in range(n):
            iteration(f"{root}/p{p}", p, i)
elif sys.argv[1] == "tree":
    print(tree(sys.argv[2]))
