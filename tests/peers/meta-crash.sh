#!/usr/bin/env bash
# Several processes loop mkdir, create O_EXCL, rename, link, unlink, rmdir and appends on
# unique names, checking every result, for SECONDS while the server is SIGKILLed and
# restarted every 50-300 ms. Passes when no result was unexpected and the final tree and
# file contents equal a replay of the same iterations with no crash.
# Usage: tests/peers/meta-crash.sh [SECONDS] [PROCS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
seconds=${1:-60}
procs=${2:-4}
keeper_work meta-crash replay
opts=tag=meta,nokeeper_start,nopassthrough
start_pfs "$work/src" "$work/mnt" "$opts"
python3 tests/peers/meta-workload.py run "$work/mnt" "$procs" "$seconds" "$work/counts.json" > "$work/app.log" 2>&1 &
WORKLOAD_PID=$!
crash_while "$WORKLOAD_PID" 50 300 "$work/src" "$work/mnt" "$opts" "$work/server.log"
kills=$KILLS
status=0; wait "$WORKLOAD_PID" || status=$?
WORKLOAD_PID=
cat "$work/app.log"
python3 tests/peers/meta-workload.py replay "$work/replay" "$work/counts.json"
python3 tests/peers/meta-workload.py tree "$work/mnt" > "$work/tree.mnt"
python3 tests/peers/meta-workload.py tree "$work/replay" > "$work/tree.replay"
if [ "$status" -eq 0 ] && cmp -s "$work/tree.mnt" "$work/tree.replay"; then
  echo "metadata workload with SIGKILLs: OK ($kills kills, $(wc -l < "$work/tree.replay") entries match the crash-free replay)"
else
  echo "metadata workload with SIGKILLs: FAILED (status $status, $kills kills)"
  diff "$work/tree.mnt" "$work/tree.replay" | head -20 || true
  grep -iE "settled|replaying" "$work/server.log" | tail -5 || true
  exit 1
fi
umount "$work/mnt" 2>/dev/null || teardown "$work/mnt" "$PFS_PID"
wait "$PFS_PID" 2>/dev/null || true
PFS_PID=
