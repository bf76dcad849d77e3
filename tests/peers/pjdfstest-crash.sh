#!/usr/bin/env bash
# pjdfstest against a recoverable passthroughfs while the server is SIGKILLed and restarted
# every 50-300 ms: must report 0 failed, as without crashes.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
unmount_secondary() { umount -l "$work/secondary" 2>/dev/null || true; }
ON_CLEANUP=unmount_secondary
keeper_work pjd-crash secondary
mount -t tmpfs -o size=64m tmpfs "$work/secondary"
conf=$PWD/tests/peers/pjdfstest.toml
opts=allow_other,tag=pjd,nokeeper_start
start_pfs "$work/src" "$work/mnt" "$opts"
(cd "$work/mnt" && exec pjdfstest -c "$conf" -p "$work/mnt" -s "$work/secondary") > "$work/out.txt" 2>&1 &
WORKLOAD_PID=$!
crash_while "$WORKLOAD_PID" 50 300 "$work/src" "$work/mnt" "$opts" "$work/server.log"
kills=$KILLS
wait "$WORKLOAD_PID" || true
WORKLOAD_PID=
summary=$(grep '^Summary:' "$work/out.txt" || true)
echo "pjdfstest with SIGKILLs ($kills kills): ${summary:-no summary}"
grep -E 'FAILED$' -A3 "$work/out.txt" | head -40 || true
case "$summary" in
  "Summary: 0 failed,"*) ;;
  *) exit 1 ;;
esac
umount "$work/mnt" 2>/dev/null || teardown "$work/mnt" "$PFS_PID"
wait "$PFS_PID" 2>/dev/null || true
PFS_PID=
