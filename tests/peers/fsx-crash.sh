#!/usr/bin/env bash
# fsx while the server is SIGKILLed and restarted every 100-500 ms: a recoverable mount
# (keeper + passthroughfs -o tag=) must give fsx an A-OK run, with kernel passthrough on and
# off, across at least MIN_KILLS kills each.
# Usage: tests/peers/fsx-crash.sh [NUM_OPS] [MIN_KILLS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
ops=${1:-100000}
min_kills=${2:-50}
keeper_work fsx-crash artifacts

failed=0
for mode in passthrough nopassthrough; do
  opts=tag=fsx-$mode,nokeeper_start
  [ "$mode" = nopassthrough ] && opts=$opts,nopassthrough
  start_pfs "$work/src" "$work/mnt" "$opts"
  fsx -N "$ops" -S 11 -P "$work/artifacts" "$work/mnt/fsx-$mode" > "$work/fsx.log" 2>&1 &
  WORKLOAD_PID=$!
  crash_while "$WORKLOAD_PID" 100 500 "$work/src" "$work/mnt" "$opts" "$work/server.log"
  kills=$KILLS
  status=0; wait "$WORKLOAD_PID" || status=$?
  WORKLOAD_PID=
  if [ "$status" -eq 0 ] && grep -q 'A-OK' "$work/fsx.log" && [ "$kills" -ge "$min_kills" ]; then
    echo "fsx with SIGKILLs, $mode: A-OK ($ops operations, $kills kills)"
  else
    echo "fsx with SIGKILLs, $mode: FAILED (status $status, $kills kills)"
    tail -30 "$work/fsx.log"; tail -20 "$work/server.log" 2>/dev/null || true
    failed=1
  fi
  umount "$work/mnt" 2>/dev/null || teardown "$work/mnt" "$PFS_PID"
  wait "$PFS_PID" 2>/dev/null || true
  PFS_PID=
done
exit $failed
