#!/usr/bin/env bash
# pjdfstest against a stock FUSE server twice: bare (mounted by itself, the normal way) and
# wrapped by fuse-wrap (recoverable, with a keeper of the test's own). Fails if the wrapped
# run fails any test the bare run passes (the list is printed with pjdfstest's messages);
# tests the bare server fails already (sshfs fails plenty) are not the wrapper's.
# Usage: tests/peers/pjdfstest-wrap.sh TARGET
#   TARGET: passthrough_ll, passthrough or passthrough_fh (libfuse's examples, built here
#           from Debian's libfuse3-dev); sshfs (as root, against an sshd the test starts on
#           127.0.0.1); fuse-overlayfs (a lower layer, an upper one and a work directory);
#           gocryptfs (go-fuse)
# PJD_KEEP=DIR: both runs' pjdfstest output and the wrapper's log are copied there.
# PJD_HANG=SECS: no test ending for that long is a hang (default 90): pjdfstest is killed, the
#   mount torn down and started again, and the tests left run one at a time, a test that
#   hangs alone counted "hung" (bare sshfs 3.7 hangs in a utimensat SETATTR).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
. tests/peers/wrap-lib.sh
target=${1:?usage: pjdfstest-wrap.sh TARGET}
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
PJDFSTEST_CONF=$PWD/tests/peers/pjdfstest.toml
PJD_HANG=${PJD_HANG:-90}
SSHD_PID=
pjd_cleanup() {
  if [ -n "${PJD_KEEP:-}" ]; then
    mkdir -p "$PJD_KEEP" && cp "$work"/*.out "$work"/*.log "$PJD_KEEP"/ 2>/dev/null || true
  fi
  umount -l "$work/secondary" 2>/dev/null || true
  stop_sshd
}
ON_CLEANUP=pjd_cleanup
keeper_work "pjd-wrap-$target" bin secondary bare wrap
mount -t tmpfs -o size=64m tmpfs "$work/secondary"
case "$target" in
  passthrough_ll|passthrough|passthrough_fh)
    gcc -O2 -o "$work/bin/$target" "/usr/share/doc/libfuse3-dev/examples/$target.c" \
      $(pkg-config --cflags --libs fuse3) ;;
  sshfs) start_sshd "$work/sshd" ;;
  fuse-overlayfs|gocryptfs) ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac

# stock_for RUN MOUNTPOINT [MOUNT_OPTIONS]: sets `stock` to the server's command line for RUN
# (bare or wrap: each has its own backing directories under $work/RUN), serving MOUNTPOINT
# (a path, or %m), with MOUNT_OPTIONS added to its -o.
stock_for() {
  local run=$1 mnt=$2 more=${3:+,$3} dir=$work/$1
  mkdir -p "$dir/src"
  case "$target" in
    passthrough_ll)
      stock=("$work/bin/$target" -f -o "source=$dir/src$more" "$mnt") ;;
    passthrough|passthrough_fh)
      # The high-level examples serve / : a subdirectory is given with modules=subdir.
      stock=("$work/bin/$target" -f -o "modules=subdir,subdir=$dir/src$more" "$mnt") ;;
    sshfs)
      stock=(sshfs -f -F "$work/sshd/ssh_config" ${more:+-o "${more#,}"} "wrapped-sshd:$dir/src" "$mnt") ;;
    fuse-overlayfs)
      mkdir -p "$dir/lower/base" "$dir/ovlwork"
      echo lower > "$dir/lower/base/file"
      stock=(fuse-overlayfs -f -o "lowerdir=$dir/lower,upperdir=$dir/src,workdir=$dir/ovlwork$more" "$mnt") ;;
    gocryptfs)
      if [ ! -e "$dir/cipher/gocryptfs.conf" ]; then
        mkdir -p "$dir/cipher"
        echo "a test passphrase" > "$work/passfile"
        gocryptfs -init -q -passfile "$work/passfile" "$dir/cipher" > /dev/null
      fi
      # go-fuse's own flag; no -o allow_other.
      stock=(gocryptfs -f -q ${more:+-allow_other} -passfile "$work/passfile" "$dir/cipher" "$mnt") ;;
  esac
}

# The names of all of pjdfstest's tests, from a run on the secondary tmpfs (its results
# there are not used).
mkdir -p "$work/secondary/list"
(cd "$work/secondary/list" && exec timeout -s KILL 600 pjdfstest -c "$PJDFSTEST_CONF" \
  -p "$work/secondary/list" -s "$work/bin") > "$work/list.out" 2>&1 || true
awk '$NF == "ok" || $NF == "FAILED" || $NF == "skipped" { print $1 }' "$work/list.out" \
  | sort -u > "$work/all"
rm -rf "$work/secondary/list"
[ -s "$work/all" ] || { echo "pjdfstest listed no tests"; exit 1; }

# results RUN: the tests RUN has a result for, "NAME ok|FAILED|skipped|hung", sorted.
results() {
  { awk '$NF == "ok" || $NF == "FAILED" || $NF == "skipped" { print $1, $NF }' "$work/$1.out"
    sed 's/$/ hung/' "$work/$1.hung"; } | sort -u -k1,1
}
result_lines() { grep -cE ' (ok|FAILED|skipped)$' "$work/$1.out" || true; }
server_exited() { ! kill -0 "$PFS_PID" 2>/dev/null; }
pjd_exited() { ! kill -0 "$WORKLOAD_PID" 2>/dev/null; }

# pjd_once RUN [PJDFSTEST_ARGS]: pjdfstest on $work/mnt (every test, or those ARGS name), its output
# appended to $work/RUN.out. Status 1 if it hung: no test ended for PJD_HANG seconds (a
# request the server never answers); it is then killed (the mount is torn down by the caller).
pjd_once() {
  local run=$1 seen=-1 now n since
  shift
  (cd "$work/mnt" && exec pjdfstest -c "$PJDFSTEST_CONF" -p "$work/mnt" -s "$work/secondary" "$@") \
    < /dev/null >> "$work/$run.out" 2>&1 &
  WORKLOAD_PID=$!
  since=$(date +%s)
  until wait_for 1 pjd_exited; do
    n=$(result_lines "$run") now=$(date +%s)
    if [ "$n" != "$seen" ]; then
      seen=$n since=$now
    elif [ $(( now - since )) -ge "$PJD_HANG" ]; then
      kill -KILL "$WORKLOAD_PID" 2>/dev/null || true
      # A child stuck in a request ends once the connection is aborted.
      teardown "$work/mnt"
      wait "$WORKLOAD_PID" 2>/dev/null || true
      WORKLOAD_PID=
      return 1
    fi
  done
  wait "$WORKLOAD_PID" 2>/dev/null || true
  WORKLOAD_PID=
}

# pjd RUN: every test once against RUN's mount (start_RUN mounts it, stop_mount ends it).
# After a hang, the tests without a result yet run one at a time, each hang noted in
# $work/RUN.hung and the mount started again.
pjd() {
  local run=$1 name
  : > "$work/$run.out"
  : > "$work/$run.hung"
  "start_$run"
  if ! pjd_once "$run"; then
    echo "$run $target: pjdfstest hung (no test ended for $PJD_HANG s): the rest one at a time"
    stop_mount
    results "$run" | awk '{ print $1 }' | comm -23 "$work/all" - > "$work/$run.rest"
    "start_$run"
    while read -r name; do
      # -e matches the test's full path (a bare pattern is a substring: chown:: is in lchown::).
      if ! pjd_once "$run" -e "pjdfstest::tests::$name"; then
        echo "$run $target: $name hung"
        echo "$name" >> "$work/$run.hung"
        stop_mount
        "start_$run"
      fi
    done < "$work/$run.rest"
  fi
  stop_mount
  results "$run" > "$work/$run.results"
  echo "$run $target: results for $(wc -l < "$work/$run.results") of $(wc -l < "$work/all") tests"
}

# stop_mount: unmounts $work/mnt and waits for the process that served it (by pid).
stop_mount() {
  umount "$work/mnt" 2>/dev/null || true
  # A clean unmount ends the server (the wrapper, its stock server): it is given the time.
  wait_for "$PATIENCE_S" server_exited || true
  teardown "$work/mnt" "$PFS_PID"
  wait "$PFS_PID" 2>/dev/null || true
  PFS_PID=
}

# await_mount WHAT LOG: waits for $work/mnt to be mounted by $PFS_PID.
await_mount() {
  wait_for "$PATIENCE_S" mounted_or_exited "$work/mnt" "$PFS_PID" || true
  mounted "$work/mnt" || { echo "$1 did not mount"; cat "$2"; exit 1; }
}

# The bare server, mounting itself (libfuse mounts with mount(2) as root).
start_bare() {
  stock_for bare "$work/mnt" allow_other
  "${stock[@]}" 2>> "$work/bare.log" &
  PFS_PID=$!
  await_mount "bare $target" "$work/bare.log"
}

# The same server behind fuse-wrap, mounted with the options the bare server mounted itself
# with (fuse-overlayfs adds default_permissions,suid,noatime of its own; a wrapped server
# mounts nothing, so fuse-wrap is given them).
wrap_mounts=0
start_wrap() {
  # The same command line as bare but for the mountpoint: a server may act on allow_other
  # beyond its mount (gocryptfs as root then gives new files to their creator).
  stock_for wrap %m allow_other
  wrap_mounts=$((wrap_mounts + 1))
  "$WRAP_BIN" -o "tag=pjd-$target-$wrap_mounts,allow_other,nokeeper_start$mirrored" \
    "$work/mnt" -- "${stock[@]}" 2>> "$work/wrap.log" &
  PFS_PID=$!
  await_mount fuse-wrap "$work/wrap.log"
}

start_bare
mirrored=$(wrap_mount_options "$work/mnt")
echo "the bare $target mounts: $(awk -v mp="$work/mnt" '$5 == mp { $1 = $2 = $3 = $4 = ""; print }' /proc/self/mountinfo)"
stop_mount
[ -z "$mirrored" ] || echo "fuse-wrap is given the same: ${mirrored#,}"
pjd bare
pjd wrap

# Per test: bare's result, then wrapped's ("missing": no result).
join -a 1 -e missing -o 0,1.2,2.2 "$work/bare.results" "$work/wrap.results" > "$work/both"
count() { awk -v r="$2" '$2 == r' "$work/$1.results" | wc -l; }
echo "bare:    $(count bare ok) passed, $(count bare FAILED) failed, $(count bare skipped) skipped, $(count bare hung) hung"
echo "wrapped: $(count wrap ok) passed, $(count wrap FAILED) failed, $(count wrap skipped) skipped, $(count wrap hung) hung"
awk '$2 != "ok" && $3 == "ok" { print "  passes only wrapped: " $1 }' "$work/both"
regressions=$(awk '$2 == "ok" && $3 != "ok" { print $1, $3 }' "$work/both")
if [ -z "$regressions" ]; then
  echo "no regressions: wrapped $target fails no test that bare $target passes"
  exit 0
fi
echo "REGRESSIONS: $(echo "$regressions" | wc -l) tests pass bare but not wrapped:"
while read -r name result; do
  echo "  $name $result"
  # pjdfstest's message: the tab-indented lines after the test's own.
  awk -v n="$name" '$1 == n { on = 1; next } on && /^\t/ { print "    " $0; next } { on = 0 }' \
    "$work/wrap.out" | head -8
done <<< "$regressions"
exit 1
