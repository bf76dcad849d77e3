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
KEEPER_BIN=${KEEPER_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-keeper}
work=$(mktemp -d /tmp/pfs-fsx-crash.XXXXXX)
mkdir -p "$work/src" "$work/mnt" "$work/artifacts"
export FUSE_KEEPER_SOCKET=$work/keeper.sock
PFS_PID= KEEPER_PID= FSX_PID=
cleanup() {
  [ -n "$FSX_PID" ] && kill -KILL "$FSX_PID" 2>/dev/null || true
  teardown "$work/mnt" "$PFS_PID"
  [ -n "$KEEPER_PID" ] && { kill -KILL "$KEEPER_PID" 2>/dev/null; wait "$KEEPER_PID" 2>/dev/null; } || true
  rm -rf "$work"
}
trap cleanup EXIT
"$KEEPER_BIN" serve 2> "$work/keeper.log" &
KEEPER_PID=$!
for _ in $(seq 1 100); do [ -S "$FUSE_KEEPER_SOCKET" ] && break; sleep 0.05; done

failed=0
for mode in passthrough nopassthrough; do
  opts=tag=fsx-$mode,nokeeper_start
  [ "$mode" = nopassthrough ] && opts=$opts,nopassthrough
  start_pfs "$work/src" "$work/mnt" "$opts"
  fsx -N "$ops" -S 11 -P "$work/artifacts" "$work/mnt/fsx-$mode" > "$work/fsx.log" 2>&1 &
  FSX_PID=$!
  kills=0
  while kill -0 "$FSX_PID" 2>/dev/null; do
    sleep "0.$(( RANDOM % 400 + 100 ))"
    kill -0 "$FSX_PID" 2>/dev/null || break
    kill -KILL "$PFS_PID"; wait "$PFS_PID" 2>/dev/null || true
    kills=$((kills + 1))
    "$PFS_BIN" -f -o "$opts" "$work/src" "$work/mnt" 2>> "$work/server.log" &
    PFS_PID=$!
  done
  status=0; wait "$FSX_PID" || status=$?
  FSX_PID=
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
