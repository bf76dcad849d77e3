#!/usr/bin/env bash
# pjdfstest against a recoverable passthroughfs while the server is SIGKILLed and restarted
# every 50-300 ms: must report 0 failed, as without crashes.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
work=$(mktemp -d /tmp/pfs-pjd-crash.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/src" "$work/mnt" "$work/secondary"
export FUSE_KEEPER_SOCKET=$work/keeper.sock
PFS_PID= KEEPER_PID= SUITE_PID=
cleanup() {
  [ -n "$SUITE_PID" ] && kill -KILL "$SUITE_PID" 2>/dev/null || true
  teardown "$work/mnt" "$PFS_PID"
  stop_keeper
  umount -l "$work/secondary" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size=64m tmpfs "$work/secondary"
start_keeper "$work"
conf=$PWD/tests/peers/pjdfstest.toml
opts=allow_other,tag=pjd,nokeeper_start
start_pfs "$work/src" "$work/mnt" "$opts"
(cd "$work/mnt" && exec pjdfstest -c "$conf" -p "$work/mnt" -s "$work/secondary") > "$work/out.txt" 2>&1 &
SUITE_PID=$!
crash_while "$SUITE_PID" 50 300 "$work/src" "$work/mnt" "$opts" "$work/server.log"
kills=$KILLS
wait "$SUITE_PID" || true
SUITE_PID=
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
