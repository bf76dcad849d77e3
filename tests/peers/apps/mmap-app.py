# A program writing through a shared mmap: pages of a 4 MiB file written in turn and msync'ed,
# each with its page number and a round counter; at the end, read back with plain read(2),
# every page holds its last write. Exit 1 otherwise. Usage: mmap-app.py FILE SECONDS
import mmap, os, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
pages = 1024
fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
os.ftruncate(fd, pages * 4096)
m = mmap.mmap(fd, pages * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
last = [0] * pages
stop, n = time.monotonic() + seconds, 0
while time.monotonic() < stop:
    page = n % pages
    n += 1
    stamp = f"{page:6d} {n:12d}".encode()
    m[page * 4096:page * 4096 + len(stamp)] = stamp
    last[page] = n
    if n % 64 == 0:
        m.flush()
m.flush()
m.close()
bad = 0
for page in range(pages):
    data = os.pread(fd, 19, page * 4096)
    want = f"{page:6d} {last[page]:12d}".encode() if last[page] else b"\0" * 19
    bad += data != want
os.close(fd)
print(f"writes={n}, pages checked={pages}, wrong={bad}")
sys.exit(1 if bad else 0)
