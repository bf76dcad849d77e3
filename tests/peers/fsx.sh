#!/usr/bin/env bash
# fsx (file system exerciser), 100,000 operations against passthroughfs: the default
# operation mix and every operation (fsx-all-ops.toml), with kernel passthrough on and off.
# Usage: tests/peers/fsx.sh [NUM_OPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
ops=${1:-100000}
work=$(mktemp -d /tmp/pfs-fsx.XXXXXX)
mkdir -p "$work/src" "$work/mnt" "$work/artifacts"
PFS_PID=
cleanup() {
  teardown "$work/mnt" "$PFS_PID"
  rm -rf "$work"
}
trap cleanup EXIT
failed=0
for mode in passthrough nopassthrough; do
  opts=""
  [ "$mode" = nopassthrough ] && opts=nopassthrough
  start_pfs "$work/src" "$work/mnt" "$opts"
  for mix in default all-ops; do
    args=(-N "$ops" -S 7 -P "$work/artifacts")
    [ "$mix" = all-ops ] && args+=(-f tests/peers/fsx-all-ops.toml)
    start=$(date +%s)
    if fsx "${args[@]}" "$work/mnt/fsx-$mix" > "$work/fsx.log" 2>&1 && grep -q 'A-OK' "$work/fsx.log"; then
      echo "fsx $mix, $mode: A-OK ($ops operations, $(( $(date +%s) - start )) s)"
    else
      echo "fsx $mix, $mode: FAILED"; tail -30 "$work/fsx.log"; failed=1
    fi
  done
  teardown "$work/mnt" "$PFS_PID"
  PFS_PID=
done
exit $failed
