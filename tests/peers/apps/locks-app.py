# fcntl and flock locks held across the crashes: a holder takes a write lock (fcntl) on one
# file and an exclusive flock on another; until SECONDS have passed, other processes keep
# trying both, non-blocking, and must be refused every time; then the holder lets go and the
# next try succeeds. Exit 1 otherwise. Usage: locks-app.py DIR SECONDS
import fcntl, os, subprocess, sys, time
d, seconds = sys.argv[1], float(sys.argv[2])
a, b = os.path.join(d, "posix.lock"), os.path.join(d, "flock.lock")
fa = os.open(a, os.O_CREAT | os.O_RDWR, 0o644)
fb = os.open(b, os.O_CREAT | os.O_RDWR, 0o644)
fcntl.lockf(fa, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.flock(fb, fcntl.LOCK_EX | fcntl.LOCK_NB)
probe = """
import fcntl, os, sys
fa = os.open(sys.argv[1], os.O_RDWR); fb = os.open(sys.argv[2], os.O_RDWR)
got = []
for f, lock in ((fa, fcntl.lockf), (fb, fcntl.flock)):
    try:
        lock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); got.append('taken')
    except OSError:
        got.append('refused')
print(' '.join(got))
"""
def try_both():
    out = subprocess.run([sys.executable, "-c", probe, a, b], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip()
stop, tries, wrong = time.monotonic() + seconds, 0, []
while time.monotonic() < stop:
    tries += 1
    said = try_both()
    if said != "refused refused":
        wrong.append(said)
    time.sleep(0.05)
os.close(fa); os.close(fb)
after = try_both()
print(f"tries={tries}, wrongly taken={len(wrong)} {wrong[:3]}, after release: {after}")
sys.exit(0 if not wrong and after == "taken taken" else 1)
