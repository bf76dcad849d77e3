#!/usr/bin/env bash
# pjdfstest (POSIX conformance) against a passthroughfs mount, with a tmpfs as the secondary
# filesystem for the EXDEV cases. Fails unless pjdfstest reports 0 failed.
# Usage: tests/peers/pjdfstest.sh [PASSTHROUGHFS_OPTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
opts=allow_other${1:+,$1}
PJDFSTEST_CONF=$PWD/tests/peers/pjdfstest.toml
work=$(mktemp -d /tmp/pfs-pjdfstest.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/src" "$work/mnt" "$work/secondary"
PFS_PID=
cleanup() {
  teardown "$work/mnt" "$PFS_PID"
  umount -l "$work/secondary" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size=64m tmpfs "$work/secondary"
start_pfs "$work/src" "$work/mnt" "$opts"
echo "pjdfstest on $(basename "$PFS_BIN") -o $opts"
status=0
(cd "$work/mnt" && pjdfstest -c "$PJDFSTEST_CONF" -p "$work/mnt" -s "$work/secondary") \
  > "$work/out.txt" 2>&1 || status=$?
summary=$(grep '^Summary:' "$work/out.txt" || true)
echo "${summary:-no summary (pjdfstest exit $status)}"
grep -E 'FAILED$' "$work/out.txt" || true
grep -E 'skipped$' "$work/out.txt" | sed 's/^/  /' || true
case "$summary" in
  "Summary: 0 failed,"*) exit 0 ;;
  *) tail -40 "$work/out.txt"; exit 1 ;;
esac
