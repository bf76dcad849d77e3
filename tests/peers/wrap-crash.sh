#!/usr/bin/env bash
# A stock FUSE server run unmodified behind fuse-wrap (recoverable, with a keeper) while a
# process is SIGKILLed every MIN_MS-MAX_MS ms: the metadata workload (every result checked,
# the final tree equal to a crash-free replay), then fsx rounds, must see no error.
# Usage: tests/peers/wrap-crash.sh TARGET KILL [SECONDS] [FSX_OPS] [MIN_KILLS]
#   TARGET: passthrough_ll, passthrough or passthrough_fh (libfuse's examples, built here
#           from Debian's libfuse3-dev); sshfs (against an sshd the test starts on 127.0.0.1);
#           fuse-overlayfs; gocryptfs; squashfuse (read-only: the image's tree read back
#           whole, round after round, instead of the metadata workload and fsx)
#   KILL:   server  - the stock server is killed; the wrapper restarts it
#           wrapper - fuse-wrap itself is killed (its stock server dies with it) and started
#                     again with the same command line, as a supervisor would
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
target=${1:?usage: wrap-crash.sh TARGET KILL [SECONDS] [FSX_OPS] [MIN_KILLS]}
kill_what=${2:?usage: wrap-crash.sh TARGET KILL [SECONDS] [FSX_OPS] [MIN_KILLS]}
seconds=${3:-20}
fsx_ops=${4:-10000}
min_kills=${5:-30}
MIN_MS=${MIN_MS:-200}
MAX_MS=${MAX_MS:-600}
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
keeper_work "wrap-$target-$kill_what" replay bin artifacts
SSHD_PID=
# WRAP_KEEP=DIR: the logs and trees are copied there when the run ends, for a look afterwards.
keep_logs() {
  if [ -n "${WRAP_KEEP:-}" ]; then
    mkdir -p "$WRAP_KEEP" && cp "$work"/*.log "$work"/tree.* "$work"/counts.json "$WRAP_KEEP"/ 2>/dev/null || true
  fi
  stop_sshd
}
ON_CLEANUP=keep_logs

. tests/peers/wrap-lib.sh
wrap_stock "$target"
opts=tag=wrap-$target,nokeeper_start,restart_limit=100000${WRAP_OPTS:+,$WRAP_OPTS}


start_wrap() {
  "$WRAP_BIN" -o "$opts" "$work/mnt" -- "${stock[@]}" 2>> "$work/wrap.log" &
  PFS_PID=$!
}


# kill_one: SIGKILLs the stock server, or the wrapper (and starts it again).
kill_one() {
  if [ "$kill_what" = server ]; then
    local pid
    pid=$(stock_pid)
    [ -n "$pid" ] || return 1
    kill -KILL "$pid" 2>/dev/null || return 1
  else
    kill -KILL "$PFS_PID"; wait "$PFS_PID" 2>/dev/null || true
    start_wrap
  fi
}

# crash_loop WATCH_PID [ENOUGH STOP_FILE]: kill_one every MIN_MS-MAX_MS ms until WATCH_PID
# exits; with ENOUGH, creates STOP_FILE after that many kills. Leaves the count in KILLS.
crash_loop() {
  local watch=$1 enough=${2:-0} stop=${3:-} ms
  KILLS=0
  while kill -0 "$watch" 2>/dev/null; do
    ms=$(( MIN_MS + RANDOM % (MAX_MS - MIN_MS + 1) ))
    sleep "$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))"
    kill -0 "$watch" 2>/dev/null || break
    kill_one && KILLS=$((KILLS + 1))
    if [ -n "$stop" ] && [ "$KILLS" -ge "$enough" ]; then : > "$stop"; fi
  done
}

# under_kills ENOUGH STOP CMD...: runs CMD in the background while crash_loop kills (creating
# STOP after ENOUGH kills, if ENOUGH > 0); leaves CMD's exit status in STATUS, kills in KILLS.
under_kills() {
  local enough=$1 stop=$2
  shift 2
  "$@" &
  WORKLOAD_PID=$!
  crash_loop "$WORKLOAD_PID" "$enough" "$stop"
  STATUS=0; wait "$WORKLOAD_PID" || STATUS=$?
  WORKLOAD_PID=
}

# finish: unmounts, waits for the wrapper, exits with $failed.
finish() {
  umount "$work/mnt" 2>/dev/null || teardown "$work/mnt" "$PFS_PID"
  wait "$PFS_PID" 2>/dev/null || true
  PFS_PID=
  exit "$failed"
}

# read_rounds: the image's tree read back whole and compared, round after round, until the
# stop file; the rounds counted in app.log.
read_rounds() {
  local rounds=0
  while [ ! -e "$work/enough" ]; do
    diff -r --no-dereference "$work/tree" "$work/mnt" > "$work/app.log" 2>&1 || return 1
    rounds=$((rounds + 1))
  done
  echo "$rounds rounds" > "$work/app.log"
}

# meta_run: the metadata workload, at most 3,000 iterations a process: a server holding an
# fd per inode (passthrough_ll) must not run out of fds (the hard limit here is 20,000),
# wrapped or bare.
meta_run() {
  python3 tests/peers/meta-workload.py run "$work/mnt" 4 "$seconds" "$work/counts.json" 3000 > "$work/app.log" 2>&1
}

# report OK SUCCESS FAILURE [FILE...]: prints SUCCESS when OK is "yes", else FAILURE and the
# last lines of each FILE, and marks the run failed.
report() {
  local ok=$1 success=$2 failure=$3
  shift 3
  if [ "$ok" = yes ]; then
    echo "wrapped $target, $kill_what killed: $success"
    return
  fi
  echo "wrapped $target, $kill_what killed: $failure"
  for file in "$@"; do tail -20 "$file"; done
  failed=1
}

# note_restarts: the restart count in the note `fuse-keeper ls --json` shows for the wrapped
# tag ("wrapped: PROGRAM, N restarts"); empty if there is none, "bad: NOTE" if it says other.
note_restarts() {
  "$KEEPER_BIN" ls --json 2> /dev/null | python3 -c '
import json, re, sys
for c in json.load(sys.stdin)["connections"]:
    if c["tag"] == sys.argv[1] and c.get("note") is not None:
        m = re.fullmatch(r"wrapped: .+, (\d+) restarts?", c["note"])
        print(m.group(1) if m else "bad: " + c["note"])
' "wrap-$target" || true
}

# check_note KILLS: with the stock server killed, the keeper's note for the wrapped tag counts
# at least KILLS restarts (the wrapper publishes the latest count within a second of a
# restart: waited for up to PATIENCE_S). The wrapper's count starts again when it is restarted
# itself, so nothing is checked in wrapper mode.
check_note() {
  [ "$kill_what" = server ] || return 0
  local want=$1 got deadline=$((SECONDS + PATIENCE_S)) ok=no
  while :; do
    got=$(note_restarts)
    case $got in
      '' | bad:*) ;;
      *) if [ "$got" -ge "$want" ]; then ok=yes; break; fi ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.2
  done
  report "$ok" "fuse-keeper ls shows the note with $got restarts ($want kills)" \
    "fuse-keeper ls: note restarts '$got', at least $want expected" "$work/wrap.log"
}

start_wrap
wait_for "$PATIENCE_S" mounted_or_exited "$work/mnt" "$PFS_PID" || true
mounted "$work/mnt" || { echo "fuse-wrap did not mount"; cat "$work/wrap.log"; exit 1; }

failed=0
if [ "$target" = squashfuse ]; then
  under_kills "$min_kills" "$work/enough" read_rounds
  ok=no; if [ "$STATUS" -eq 0 ] && [ "$KILLS" -ge "$min_kills" ]; then ok=yes; fi
  report "$ok" "the image read back whole, $(cat "$work/app.log"), $KILLS kills" \
    "read-back FAILED (status $STATUS, $KILLS kills)" "$work/app.log" "$work/wrap.log"
  check_note "$KILLS"
  finish
fi
under_kills 0 "" meta_run
status=$STATUS meta_kills=$KILLS
cat "$work/app.log"
python3 tests/peers/meta-workload.py replay "$work/replay" "$work/counts.json"
python3 tests/peers/meta-workload.py tree "$work/mnt" > "$work/tree.mnt"
python3 tests/peers/meta-workload.py tree "$work/replay" > "$work/tree.replay"
ok=no
if [ "$status" -eq 0 ] && [ "$meta_kills" -gt 0 ] && cmp -s "$work/tree.mnt" "$work/tree.replay"; then ok=yes; fi
diff "$work/tree.mnt" "$work/tree.replay" > "$work/tree.diff" || true
report "$ok" "metadata workload OK ($meta_kills kills, $(wc -l < "$work/tree.replay") entries match the crash-free replay)" \
  "metadata workload FAILED (status $status, $meta_kills kills)" "$work/tree.diff" "$work/wrap.log"

under_kills "$min_kills" "$work/enough" \
  fsx_rounds "$fsx_ops" 7 "$work/mnt/fsx" "$work/artifacts" "$work/fsx.log" "$work/enough"
ok=no; if [ "$STATUS" -eq 0 ] && [ "$KILLS" -ge "$min_kills" ]; then ok=yes; fi
report "$ok" "fsx $(rounds_summary "$work/fsx.log"), $KILLS kills" \
  "fsx FAILED (status $STATUS, $KILLS kills)" "$work/fsx.log" "$work/wrap.log"
check_note $((meta_kills + KILLS))
finish
