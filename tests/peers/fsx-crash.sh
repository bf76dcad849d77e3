#!/usr/bin/env bash
# fsx while the server is SIGKILLed and restarted every 100-500 ms: a recoverable mount
# (keeper + passthroughfs -o tag=) must give fsx A-OK rounds (OPS_PER_ROUND operations each,
# a new seed each round, until MIN_KILLS kills are done), with kernel passthrough on and off.
# Usage: tests/peers/fsx-crash.sh [OPS_PER_ROUND] [MIN_KILLS]
# FSX_MODES: the modes to run (default "passthrough nopassthrough").
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
ops=${1:-20000}
min_kills=${2:-100}
keeper_work fsx-crash artifacts

failed=0
for mode in ${FSX_MODES:-passthrough nopassthrough}; do
  opts=tag=fsx-$mode,nokeeper_start
  [ "$mode" = nopassthrough ] && opts=$opts,nopassthrough
  start_pfs "$work/src" "$work/mnt" "$opts"
  rm -f "$work/enough"
  fsx_rounds "$ops" 11 "$work/mnt/fsx-$mode" "$work/artifacts" "$work/fsx.log" "$work/enough" &
  WORKLOAD_PID=$!
  crash_while "$WORKLOAD_PID" 100 500 "$work/src" "$work/mnt" "$opts" "$work/server.log" \
    "$min_kills" "$work/enough"
  kills=$KILLS
  status=0; wait "$WORKLOAD_PID" || status=$?
  WORKLOAD_PID=
  if [ "$status" -eq 0 ] && [ "$kills" -ge "$min_kills" ]; then
    echo "fsx with SIGKILLs, $mode: $(rounds_summary "$work/fsx.log"), $kills kills"
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
