#!/usr/bin/env bash
# fsx across planned handovers: while fsx runs on a recoverable mount, a new server is
# started HANDOVERS times with -o handover; each time the running server stops reading,
# answers what it read, hands the connection over through the keeper and exits 0. fsx must
# end A-OK, the keeper must log every handover as clean ("nothing to resend"), and no new
# server may see a resent request. fsx runs rounds of OPS_PER_ROUND operations until the
# handovers are done. With kernel passthrough on and off.
# Usage: tests/peers/handover.sh [OPS_PER_ROUND] [HANDOVERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
ops=${1:-20000}
handovers=${2:-5}
keeper_work handover artifacts

failed=0
for mode in passthrough nopassthrough; do
  opts=tag=ho-$mode,nokeeper_start
  [ "$mode" = nopassthrough ] && opts=$opts,nopassthrough
  RUST_LOG=info "$PFS_BIN" -f -o "$opts" "$work/src" "$work/mnt" 2> "$work/server-0.log" &
  PFS_PID=$!
  if ! wait_for "$PATIENCE_S" mounted "$work/mnt"; then
    echo "fsx across handovers, $mode: FAILED (the first server did not mount)"
    tail -5 "$work/server-0.log"
    exit 1
  fi
  rm -f "$work/enough"
  fsx_rounds "$ops" 23 "$work/mnt/fsx-$mode" "$work/artifacts" "$work/fsx.log" "$work/enough" &
  WORKLOAD_PID=$!
  done_count=0 bad_exit=0
  for n in $(seq 1 "$handovers"); do
    sleep "0.$(( 3 + RANDOM % 5 ))"
    kill -0 "$WORKLOAD_PID" 2>/dev/null || break
    old=$PFS_PID
    RUST_LOG=info "$PFS_BIN" -f -o "$opts,handover" "$work/src" "$work/mnt" 2> "$work/server-$n.log" &
    PFS_PID=$!
    status=0; wait "$old" || status=$?
    if [ "$status" -ne 0 ]; then
      echo "handover $n: the old server exited with status $status" >&2
      bad_exit=1
    fi
    done_count=$n
  done
  : > "$work/enough"
  status=0; wait "$WORKLOAD_PID" || status=$?
  WORKLOAD_PID=
  clean=$(grep -c 'handed over: the new server serves, nothing to resend' "$work/keeper.log" || true)
  resent=$(cat "$work"/server-*.log | grep -c 'resent request' || true)
  if [ "$status" -eq 0 ] && [ "$done_count" -eq "$handovers" ] \
    && [ "$bad_exit" -eq 0 ] && [ "$clean" -eq "$handovers" ] && [ "$resent" -eq 0 ]; then
    echo "fsx across $handovers handovers, $mode: $(rounds_summary "$work/fsx.log"); $clean clean" \
      "handovers in the keeper's log, 0 resent requests"
  else
    echo "fsx across handovers, $mode: FAILED (fsx status $status, $done_count handovers," \
      "$clean clean, $resent resent requests, old servers' exits ok: $((1 - bad_exit)))"
    tail -20 "$work/fsx.log"; tail -20 "$work/keeper.log"
    failed=1
  fi
  umount "$work/mnt" 2>/dev/null || teardown "$work/mnt" "$PFS_PID"
  wait "$PFS_PID" 2>/dev/null || true
  PFS_PID=
  rm -f "$work"/server-*.log
  # Count the next mode's handovers from a fresh log.
  stop_keeper
  start_keeper "$work"
done
exit $failed
