#!/usr/bin/env bash
# examples/memfs.rs, the in-memory filesystem whose whole state lives in the state store,
# through the same suites as passthroughfs: pjdfstest (0 failed), fsx (default and every
# operation), then fsx and the metadata workload while its server is SIGKILLed and restarted
# every 100-500 ms (50-300 ms for the workload), and pjdfstest under SIGKILLs.
# Usage: tests/peers/memfs.sh [FSX_OPS] [MIN_KILLS] [META_SECONDS] [PJDFSTEST_CRASH_RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PFS_BIN=${MEMFS_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/memfs}
[ -x "$PFS_BIN" ] || { echo "memfs is not built: $PFS_BIN (cargo build --release --bins --examples)" >&2; exit 1; }
ops=${1:-20000}
kills=${2:-100}
seconds=${3:-30}
runs=${4:-5}
# memfs has no kernel passthrough to turn off: one mode.
export FSX_MODES=nopassthrough
tests/peers/pjdfstest.sh
tests/peers/fsx.sh "$ops" 1
tests/peers/fsx-crash.sh "$ops" "$kills"
tests/peers/meta-crash.sh "$seconds" 4
for run in $(seq 1 "$runs"); do tests/peers/pjdfstest-crash.sh; done
