#!/usr/bin/env bash
# Writes through write-only files on a wrapped stock server that asked for the writeback
# cache (fuse-overlayfs does by default; libfuse's passthrough_ll with -o writeback). In
# that mode the kernel reads the page a write covers in part before writing into it, through
# the write-only file's handle, and does O_APPEND itself. The wrapper once refused every READ
# through a write-only handle (EBADF), so an append to a file whose last page was not in the
# page cache failed with EBADF: here, files written on the backing directory (not through the
# mount, so none of their pages are cached) are appended to and written in the middle, and
# the same again on a handle opened before the stock server was SIGKILLed and restarted.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
keeper_work wrap-writeback bin
SSHD_PID=
. tests/peers/wrap-lib.sh
m=$work/mnt
failed=0

# check NAME WANT: the backing file NAME holds WANT (printf format).
check() {
  local got want
  got=$(od -An -c "$work/src/$1")
  want=$(printf "$2" | od -An -c)
  if [ "$got" = "$want" ]; then
    echo "wrapped $target: $1 as expected"
  else
    echo "wrapped $target: $1 FAILED: holds '$(cat "$work/src/$1")', expected '$(printf "$2")'"
    failed=1
  fi
}

stock_restarted() { local pid; pid=$(stock_pid); [ -n "$pid" ] && [ "$pid" != "$1" ]; }

for target in fuse-overlayfs passthrough_ll; do
  rm -rf "${work:?}/src" "$work/lower" "$work/ovlwork"
  mkdir -p "$work/src"
  wrap_stock "$target"
  if [ "$target" = passthrough_ll ]; then
    stock=("$work/bin/passthrough_ll" -f -o "clone_fd,writeback,source=$work/src" %m)
  fi
  printf 'one\n' > "$work/src/append"
  printf 'abcdefgh\n' > "$work/src/middle"
  printf 'two\n' > "$work/src/append-restart"
  "$WRAP_BIN" -o "tag=wrap-writeback,nokeeper_start" "$m" -- "${stock[@]}" 2>> "$work/wrap.log" &
  PFS_PID=$!
  wrap_mounted "$m"

  if python3 -c '
import os, sys
fd = os.open(sys.argv[1] + "/append", os.O_WRONLY | os.O_APPEND)
os.write(fd, b"more\n")
os.close(fd)
fd = os.open(sys.argv[1] + "/middle", os.O_WRONLY)
os.pwrite(fd, b"XY", 3)
os.close(fd)
' "$m" 2>> "$work/app.log"; then
    check append 'one\nmore\n'
    check middle 'abcXYfgh\n'
  else
    echo "wrapped $target: a write through a write-only file FAILED: $(tail -1 "$work/app.log")"
    failed=1
  fi

  # Opened, then the stock server killed: the wrapper opens it again at the next server,
  # whose READ of the partial page goes through that new handle.
  mkfifo "$work/go"
  python3 -c '
import os, sys
fd = os.open(sys.argv[1] + "/append-restart", os.O_WRONLY | os.O_APPEND)
print("open", flush=True)
open(sys.argv[2]).read()
os.write(fd, b"after\n")
os.close(fd)
' "$m" "$work/go" > "$work/opened" 2>> "$work/app.log" &
  WORKLOAD_PID=$!
  opened() { grep -q open "$work/opened"; }
  wait_for "$PATIENCE_S" opened || { echo "wrapped $target: the file did not open"; failed=1; }
  old=$(stock_pid)
  kill -KILL "$old"
  wait_for "$PATIENCE_S" stock_restarted "$old" || { echo "wrapped $target: the stock server was not restarted"; failed=1; }
  # (Not left blocked opening the fifo if the writer died before reading it.)
  timeout "$PATIENCE_S" bash -c 'echo go > "$1"' _ "$work/go" || true
  if wait "$WORKLOAD_PID"; then
    check append-restart 'two\nafter\n'
  else
    echo "wrapped $target: the write after a restart FAILED: $(tail -1 "$work/app.log")"
    failed=1
  fi
  WORKLOAD_PID=
  rm -f "$work/go"
  wrap_stop "$m"
done
[ "$failed" -eq 0 ] || tail -20 "$work/wrap.log"
exit "$failed"
