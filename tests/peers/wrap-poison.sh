#!/usr/bin/env bash
# A request that kills every stock server it is given to (a poison) fails with EIO after a
# few restarts, instead of restarting the server until the restart limit takes the whole mount
# down; the mount and the other requests go on. The stock server is tests/peers/wrap-poison.py
# (it aborts itself on a LOOKUP of `poison`), behind fuse-wrap with a keeper.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
. tests/peers/wrap-lib.sh
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
keeper_work wrap-poison
m=$work/mnt
"$WRAP_BIN" -o tag=wrap-poison,nokeeper_start "$m" -- python3 tests/peers/wrap-poison.py %m 2>> "$work/wrap.log" &
PFS_PID=$!
wrap_mounted "$m"
failed=0
err=$(stat "$m/poison" 2>&1 >/dev/null || true)
case "$err" in
  *"Input/output error"*) echo "the poison request failed with EIO" ;;
  *) echo "FAILED: the poison request gave '${err:-success}', not EIO"; failed=1 ;;
esac
# fuse-wrap's warning says how many servers the request killed.
deaths=$(sed -n 's/.*given this request: EIO.*deaths=\([0-9]*\).*/\1/p' "$work/wrap.log" | tail -1)
if [ -n "$deaths" ] && [ "$deaths" -ge 2 ] && [ "$deaths" -le 10 ]; then
  echo "the stock server died $deaths times on it"
else
  echo "FAILED: the stock server died $deaths times on it"; failed=1
fi
# Asked again, the same request fails at once: no server dies for it any more.
err=$(stat "$m/poison" 2>&1 >/dev/null || true)
again=$(grep -c "given this request: EIO" "$work/wrap.log" || true)
case "$err" in
  *"Input/output error"*) ;;
  *) echo "FAILED: the poison asked again gave '${err:-success}', not EIO"; failed=1 ;;
esac
if [ "$again" -eq 1 ] && ! grep -q "deaths=$((deaths + 1))" "$work/wrap.log"; then
  echo "asked again, it failed at once (remembered, no server killed)"
else
  echo "FAILED: asked again, it killed servers again ($again poison warnings)"; failed=1
fi
err=$(stat "$m/other" 2>&1 >/dev/null || true)
case "$err" in
  *"No such file or directory"*) echo "the mount goes on: another name is ENOENT" ;;
  *) echo "FAILED: another name gave '${err:-success}', not ENOENT"; failed=1 ;;
esac
if ! kill -0 "$PFS_PID" 2>/dev/null || ! mounted "$m"; then
  echo "FAILED: the wrapper or its mount is gone"; failed=1
fi
[ "$failed" -eq 0 ] || tail -20 "$work/wrap.log"
wrap_stop "$m"
exit "$failed"
