#!/usr/bin/env bash
# A stock server's notifications reach the kernel through fuse-wrap, in the wrapper's
# nodeids: libfuse's notify_inval_inode (a file whose contents change every second, cached
# by the kernel for ever unless the server invalidates them) and notify_inval_entry (a file
# whose name changes every second, its old name cached for ever unless invalidated), both
# unmodified, wrapped (recoverable, with a keeper). Without forwarding, the kernel keeps the
# first contents and the first name: the checks below wait for a change, and fail after
# PATIENCE_S seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
. tests/peers/wrap-lib.sh
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
keeper_work wrap-notify bin
m=$work/mnt
for example in notify_inval_inode notify_inval_entry; do
  gcc -O2 -o "$work/bin/$example" "/usr/share/doc/libfuse3-dev/examples/$example.c" $(pkg-config --cflags --libs fuse3)
done

# start_wrap EXAMPLE [OPTION...]
start_wrap() {
  local example=$1
  shift
  "$WRAP_BIN" -o "tag=wrap-notify,nokeeper_start" "$m" -- "$work/bin/$example" -f --update-interval=1 "$@" %m 2>> "$work/wrap.log" &
  PFS_PID=$!
  wrap_mounted "$m"
}
stop_wrap() { wrap_stop "$m"; }
failed=0

start_wrap notify_inval_inode
first=$(cat "$m/current_time")
contents_changed() { [ "$(cat "$m/current_time")" != "$first" ]; }
if wait_for "$PATIENCE_S" contents_changed; then
  echo "INVAL_INODE forwarded: the cached contents changed ($first -> $(cat "$m/current_time"))"
else
  echo "INVAL_INODE FAILED: the kernel still shows '$first' after $PATIENCE_S s"; failed=1
fi
stop_wrap

# Names cached for an hour: only an invalidation makes the old one go.
start_wrap notify_inval_entry --timeout=3600
name=$(ls "$m" | head -1)
stat "$m/$name" > /dev/null
old_name_gone() { ! stat "$m/$name" > /dev/null 2>&1; }
if wait_for "$PATIENCE_S" old_name_gone; then
  echo "INVAL_ENTRY forwarded: the cached name $name is gone (now $(ls "$m" | head -1))"
else
  echo "INVAL_ENTRY FAILED: the kernel still finds $name after $PATIENCE_S s"; failed=1
fi
stop_wrap
[ "$failed" -eq 0 ] || tail -20 "$work/wrap.log"
exit "$failed"
