# A database committing in a loop: transactions of 10 rows, synchronous=FULL; at the end
# every committed row is there, none other, and integrity_check says ok. Exit 1 otherwise.
# Usage: sqlite-app.py DB JOURNAL_MODE SECONDS
import os, sqlite3, sys, time
db, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
con = sqlite3.connect(db, timeout=60, isolation_level=None)
con.execute(f"PRAGMA journal_mode={mode}")
con.execute("PRAGMA synchronous=FULL")
con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
stop = time.monotonic() + seconds
n = 0
errors = []
while time.monotonic() < stop:
    try:
        con.execute("BEGIN IMMEDIATE")
        for i in range(10):
            con.execute("INSERT INTO t (v) VALUES (?)", (f"row {n} {i} " + "x" * 200,))
        con.execute("COMMIT")
        n += 1
    except sqlite3.Error as e:
        errors.append(str(e))
        try: con.execute("ROLLBACK")
        except sqlite3.Error: pass
        if len(errors) > 5: break
count = con.execute("SELECT count(*) FROM t").fetchone()[0]
check = con.execute("PRAGMA integrity_check").fetchone()[0]
print(f"{mode}: commits={n} rows={count} integrity={check} errors={errors[:3]}")
sys.exit(0 if not errors and count == n * 10 and check == "ok" else 1)
