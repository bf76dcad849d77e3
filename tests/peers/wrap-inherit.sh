#!/usr/bin/env bash
# fuse-wrap restarted by a process that holds files on the mount (a shell or supervisor with
# an fd on it): the wrapper inherits them, and a stock server it started would too. A server's
# exit closes its fds; closing a file on a FUSE mount sends FLUSH and waits for the answer,
# which for the wrapper's own mount only the dying server could give: it would hang in its
# exit (D state) for ever, and the mount with it. Here a holder process opens two files on
# the mount (one to read, one to append), the wrapper is killed, the holder starts it again
# with both inherited, and the stock server is killed several times: each must be replaced and
# the mount must answer; neither the wrapper nor any stock server may hold a file on the mount;
# the holder's own fds read and write on. The holder starts it from inside the mount (its
# cwd there): neither the wrapper nor a stock server may keep that cwd either. (The holder,
# not this shell, holds them: every process this shell started would wait in its exit for
# their FLUSH while nothing serves.)
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
. tests/peers/wrap-lib.sh
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
KILLS=${1:-5}
keeper_work wrap-inherit bin
m=$work/mnt
wrap_stock passthrough_ll
# The mountpoint given relative (with ..): the wrapper resolves it for the keeper.
wrap=("$WRAP_BIN" -o "tag=wrap-inherit,nokeeper_start" "$(realpath --relative-to=. "$m")" -- "${stock[@]}")

cat > "$work/holder.py" <<'PY'
# holder.py MNT LOG CMD...: opens MNT/held and MNT/out, says their fds; then per line read:
# "start": runs CMD (stderr to LOG) with both inherited, says its pid; "check": reads the
# first, appends to the second, says what it read; "close": closes both.
import os, signal, subprocess, sys
mnt, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # what it starts is reaped by the kernel
# Works in MNT (entered while it is served: a chdir into it while no server answers would
# wait), so that what it starts starts there.
os.chdir(mnt)
r = os.open(f"{mnt}/held", os.O_RDONLY)
w = os.open(f"{mnt}/out", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
print(r, w, flush=True)
for line in sys.stdin:
    if line.strip() == "start":
        with open(log, "ab") as err:
            child = subprocess.Popen(cmd, pass_fds=(r, w), stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        print(child.pid, flush=True)
    elif line.strip() == "check":
        data = os.pread(r, 100, 0).decode().strip()
        os.write(w, b"appended\n")
        print(data or "-", flush=True)
    elif line.strip() == "close":
        os.close(r)
        os.close(w)
        print("closed", flush=True)
PY
holder=
stop_holder() { if [ -n "$holder" ]; then kill -KILL "$holder" 2>/dev/null || true; fi; }
# Run by the cleanup after the mount was aborted: the holder's fds then close at once.
ON_CLEANUP=stop_holder

# A read of the mount that cannot hang the test: killed after PATIENCE_S.
read_held() { timeout -s KILL "$PATIENCE_S" cat "$m/held"; }
# on_mount PID: the fds of PID that are files on the mount.
on_mount() {
  local fd
  for fd in /proc/"$1"/fd/*; do
    case "$(readlink "$fd" 2>/dev/null)" in "$m"/*) echo "${fd##*/}" ;; esac
  done
}
# ask WORD: a line to the holder and its answer (within PATIENCE_S) in `answer`.
ask() { echo "$1" >&"${HOLDER[1]}"; answer=; read -r -t "$PATIENCE_S" answer <&"${HOLDER[0]}" || true; }
failed=0
fail() { echo "FAILED: $*"; failed=1; }

"${wrap[@]}" 2>> "$work/wrap.log" &
PFS_PID=$!
wrap_mounted "$m"
echo held > "$m/held"
# The holder's wrapper is given its binary and mountpoint absolute: it starts in the mount.
wrap_abs=("$(realpath "$WRAP_BIN")" -o "tag=wrap-inherit,nokeeper_start" "$m" -- "${stock[@]}")
coproc HOLDER { exec python3 "$work/holder.py" "$m" "$work/wrap.log" "${wrap_abs[@]}"; }
holder=$HOLDER_PID
read -r -t "$PATIENCE_S" fds <&"${HOLDER[0]}"
kill -KILL "$PFS_PID"
wait "$PFS_PID" 2>/dev/null || true
ask start
PFS_PID=$answer
wrap_mounted "$m"
# The premise: the holder holds both, and the wrapper it started inherited them.
[ "$(on_mount "$holder" | sort -n | tr '\n' ' ')" = "$fds " ] || { echo "premise: the holder holds fds '$(on_mount "$holder")', not $fds"; exit 1; }
[ "$(read_held)" = held ] || fail "the restarted wrapper's mount does not read back"
[ -z "$(on_mount "$PFS_PID")" ] || fail "the wrapper holds fds $(on_mount "$PFS_PID" | tr '\n' ' ')on its own mount"
# cwd_in_mount PID: whether PID works in the mount.
cwd_in_mount() { case "$(readlink /proc/"$1"/cwd)" in "$m" | "$m"/*) return 0 ;; esac; return 1; }
! cwd_in_mount "$PFS_PID" || fail "the wrapper works in its own mount ($(readlink /proc/"$PFS_PID"/cwd))"

for kill in $(seq 1 "$KILLS"); do
  old=$(stock_pid)
  [ -n "$old" ] || { fail "no stock server before kill $kill"; break; }
  [ -z "$(on_mount "$old")" ] || fail "stock server $old holds fds $(on_mount "$old" | tr '\n' ' ')on the mount"
  ! cwd_in_mount "$old" || fail "stock server $old works in the mount"
  kill -KILL "$old"
  replaced() { local now; now=$(stock_pid); [ -n "$now" ] && [ "$now" != "$old" ] && ! kill -0 "$old" 2>/dev/null; }
  if ! wait_for "$PATIENCE_S" replaced; then
    fail "kill $kill: stock server $old not replaced within $PATIENCE_S s (its state: $(cut -d' ' -f3 /proc/"$old"/stat 2>/dev/null))"
    break
  fi
  [ "$(read_held)" = held ] || { fail "kill $kill: the mount does not read back"; break; }
done

if [ "$failed" -eq 0 ]; then
  # The holder's own handles, opened before the wrapper's restart and the servers' deaths, go on.
  ask check
  [ "$answer" = held ] || fail "the holder's read fd reads '$answer'"
  [ "$(read_held)" = held ] && [ "$(timeout -s KILL "$PATIENCE_S" cat "$m/out")" = appended ] || fail "what the holder's append fd wrote is not in the file"
  ask close
  [ "$answer" = closed ] || fail "the holder could not close its fds"
  [ "$failed" -ne 0 ] || echo "inherited fds: $KILLS stock servers killed and replaced, the mount answered after each"
fi
if [ "$failed" -eq 0 ]; then
  wrap_stop "$m"
else
  # A mount that hangs is aborted, never unmounted: umount would wait with it.
  tail -20 "$work/wrap.log"
  teardown "$m" "$PFS_PID"
fi
stop_holder
exit "$failed"
