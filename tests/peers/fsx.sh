#!/usr/bin/env bash
# fsx (file system exerciser) against passthroughfs: the default operation mix and every
# operation (fsx-all-ops.toml), with kernel passthrough on and off, ROUNDS rounds of NUM_OPS
# operations each (a new seed and a new file each round: see fsx_rounds in lib.sh for why
# rounds rather than one long run).
# Usage: tests/peers/fsx.sh [NUM_OPS] [ROUNDS]
# FSX_MODES: the modes to run (default "passthrough nopassthrough").
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
ops=${1:-25000}
rounds=${2:-2}
work=$(mktemp -d /tmp/pfs-fsx.XXXXXX)
mkdir -p "$work/src" "$work/mnt" "$work/artifacts"
PFS_PID=
cleanup() {
  teardown "$work/mnt" "$PFS_PID"
  rm -rf "$work"
}
trap cleanup EXIT
failed=0
for mode in ${FSX_MODES:-passthrough nopassthrough}; do
  opts=""
  [ "$mode" = nopassthrough ] && opts=nopassthrough
  start_pfs "$work/src" "$work/mnt" "$opts"
  for mix in default all-ops; do
    args=(-N "$ops" -P "$work/artifacts")
    [ "$mix" = all-ops ] && args+=(-f tests/peers/fsx-all-ops.toml)
    start=$(date +%s)
    ok=0
    for round in $(seq 1 "$rounds"); do
      if fsx "${args[@]}" -S $(( 6 + round )) "$work/mnt/fsx-$mix-$round" > "$work/fsx.log" 2>&1 \
        && grep -q 'A-OK' "$work/fsx.log"; then
        ok=$((ok + 1))
      else
        echo "fsx $mix, $mode, round $round (seed $(( 6 + round ))): FAILED"; tail -30 "$work/fsx.log"
        failed=1
        break
      fi
    done
    if [ "$ok" -eq "$rounds" ]; then
      echo "fsx $mix, $mode: A-OK ($rounds rounds of $ops operations, $(( $(date +%s) - start )) s)"
    fi
  done
  teardown "$work/mnt" "$PFS_PID"
  PFS_PID=
done
exit $failed
