#!/usr/bin/env bash
# Exactly once across a wrapper killed in the middle of a request: for each non-idempotent
# request and each crash point, fuse-wrap is started with FUSE_CRASH_AT=OPCODE:POINT (it
# aborts itself before sending the request to the stock server, right after the stock
# server answered it, or after journaling the answer), the request is made, the wrapper dies
# (its stock server with it), a new one is started, and the application must see the request
# succeed with its effect there exactly once.
# Usage: tests/peers/wrap-once.sh TARGET   (TARGET as for tests/peers/wrap-crash.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
target=${1:?usage: wrap-once.sh TARGET}
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
keeper_work "wrap-once-$target" bin
SSHD_PID=
ON_CLEANUP=stop_sshd
. tests/peers/wrap-lib.sh
wrap_stock "$target"
opts=tag=wrap-once-$target,nokeeper_start
m=$work/mnt

# start_wrap [OPCODE:POINT]: a wrapper, armed to abort itself there if given.
start_wrap() {
  if [ -n "${1:-}" ]; then
    FUSE_CRASH_AT=$1 "$WRAP_BIN" -o "$opts" "$m" -- "${stock[@]}" 2>> "$work/wrap.log" &
  else
    "$WRAP_BIN" -o "$opts" "$m" -- "${stock[@]}" 2>> "$work/wrap.log" &
  fi
  PFS_PID=$!
}
exited() { ! kill -0 "$1" 2>/dev/null; }
op_done() { [ -e "$work/op.status" ]; }

start_wrap
wrap_mounted "$m"

# Each case: OPCODE, then a setup, the request (one system call) and a check, run with $1
# the case's own name prefix. The request runs in the background while the armed wrapper
# dies; the check runs after a new wrapper has answered it.
py() { python3 -c "import os, sys; $1" "${@:2}"; }
setup_none() { :; }
setup_file() { printf 'x\n' > "$m/$1.a"; }
setup_dir() { mkdir "$m/$1.a"; }
op_mkdir() { mkdir "$m/$1.a"; }
check_mkdir() { [ -d "$m/$1.a" ]; }
op_create() { py 'os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))' "$m/$1.a"; }
check_create() { [ -f "$m/$1.a" ] && [ ! -s "$m/$1.a" ]; }
op_symlink() { ln -s target "$m/$1.a"; }
check_symlink() { [ "$(readlink "$m/$1.a")" = target ]; }
op_link() { ln "$m/$1.a" "$m/$1.b"; }
check_link() { [ "$(cat "$m/$1.a")" = x ] && [ "$(cat "$m/$1.b")" = x ]; }
op_rename() { py 'os.rename(sys.argv[1], sys.argv[2])' "$m/$1.a" "$m/$1.b"; }
check_rename() { [ ! -e "$m/$1.a" ] && [ "$(cat "$m/$1.b")" = x ]; }
op_unlink() { py 'os.unlink(sys.argv[1])' "$m/$1.a"; }
check_unlink() { [ ! -e "$m/$1.a" ]; }
op_rmdir() { rmdir "$m/$1.a"; }
check_rmdir() { [ ! -e "$m/$1.a" ]; }
op_append() { py 'fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND); os.write(fd, b"y\n"); os.close(fd)' "$m/$1.a"; }
check_append() { [ "$(cat "$m/$1.a")" = "$(printf 'x\ny')" ]; }

cases=(
  "MKDIR none mkdir" "CREATE none create" "SYMLINK none symlink" "LINK file link"
  "RENAME file rename" "UNLINK file unlink" "RMDIR dir rmdir" "WRITE file append"
)
failed=0 n=0
for point in before executed journaled; do
  for c in "${cases[@]}"; do
    read -r opcode setup name <<< "$c"
    n=$((n + 1))
    id="c$n-$name"
    "setup_$setup" "$id"
    # The armed wrapper takes over the connection from the one serving it.
    kill -KILL "$PFS_PID"; wait "$PFS_PID" 2>/dev/null || true
    start_wrap "$opcode:$point"
    rm -f "$work/op.status"
    ( rc=0; "op_$name" "$id" 2> "$work/op.err" || rc=$?; echo "$rc" > "$work/op.status" ) &
    op=$!
    if ! wait_for "$PATIENCE_S" exited "$PFS_PID"; then
      echo "$opcode at $point: the armed wrapper did not abort itself"; failed=1
      kill -KILL "$PFS_PID" 2>/dev/null || true
    fi
    wrap_status=0; wait "$PFS_PID" 2>/dev/null || wrap_status=$?
    start_wrap
    wait_for "$PATIENCE_S" op_done || true
    wait "$op" 2>/dev/null || true
    status=$(cat "$work/op.status" 2>/dev/null || echo "none")
    if [ "$wrap_status" -ne 134 ]; then
      echo "$opcode at $point: FAILED (the armed wrapper exited $wrap_status, not by its abort)"; failed=1
    elif [ "$status" != 0 ]; then
      echo "$opcode at $point: FAILED (the request returned $status: $(cat "$work/op.err"))"; failed=1
    elif ! "check_$name" "$id"; then
      echo "$opcode at $point: FAILED (not done exactly once)"; ls -la "$m" | grep "$id" || true; failed=1
    else
      echo "$opcode at $point: OK"
    fi
  done
done
[ "$failed" -eq 0 ] || tail -30 "$work/wrap.log"
wrap_stop "$m"
exit "$failed"
