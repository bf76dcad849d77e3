#!/usr/bin/env bash
# Real applications on a recoverable mount while the server is SIGKILLed and restarted every
# 200-600 ms; each checks its own result:
# - sqlite, WAL and rollback journal: every committed row there, integrity_check ok;
# - git: commits in a loop, then gc and fsck --strict;
# - tar: a tree extracted, then compared file by file with the original;
# - rsync: a tree synchronised (with deletions), then compared by checksum with the original;
# - a program writing through a shared mmap, every page read back;
# - fcntl and flock locks held across the crashes, refused to others throughout;
# - a parallel build (make -j2 of a small C project), the program run after each build.
# Usage: tests/peers/apps-crash.sh [SECONDS_PER_APP]
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
seconds=${1:-15}
keeper_work apps
opts=tag=apps,nokeeper_start
start_pfs "$work/src" "$work/mnt" "$opts"
failed=0

# run_crashing NAME COMMAND...: runs COMMAND in the background under the crash loop.
run_crashing() {
  local name=$1 status=0
  shift
  "$@" > "$work/$name.log" 2>&1 &
  WORKLOAD_PID=$!
  crash_while "$WORKLOAD_PID" 200 600 "$work/src" "$work/mnt" "$opts" "$work/server.log"
  wait "$WORKLOAD_PID" || status=$?
  WORKLOAD_PID=
  if [ "$status" -eq 0 ]; then
    echo "$name with SIGKILLs: OK ($KILLS kills) $(tail -1 "$work/$name.log")"
  else
    echo "$name with SIGKILLs: FAILED (status $status, $KILLS kills)"
    tail -20 "$work/$name.log"
    failed=1
  fi
}

for mode in wal delete; do
  run_crashing "sqlite-$mode" python3 tests/peers/apps/sqlite-app.py "$work/mnt/db-$mode" "$mode" "$seconds"
done

git_app() {
  local repo=$1 until=$(( $(date +%s) + seconds )) n=0
  git init -q "$repo"
  cd "$repo"
  git config user.email test@example.invalid
  git config user.name test
  while [ "$(date +%s)" -lt "$until" ]; do
    n=$((n + 1))
    mkdir -p "d$((n % 7))"
    seq 1 "$n" > "d$((n % 7))/f$n"
    git add -A
    git commit -q -m "commit $n"
  done
  git gc -q
  git fsck --strict --no-progress
  test "$(git rev-list --count HEAD)" -eq "$n"
  echo "commits=$n, gc and fsck --strict clean"
}
run_crashing git git_app "$work/mnt/repo"

tar_app() {
  local until=$(( $(date +%s) + seconds )) n=0
  tar -C "$PWD" -cf "$work/tree.tar" --exclude=target --exclude=.git .
  while [ "$(date +%s)" -lt "$until" ]; do
    n=$((n + 1))
    rm -rf "$work/mnt/tree"
    mkdir "$work/mnt/tree"
    tar -C "$work/mnt/tree" -xf "$work/tree.tar"
    diff -r --no-dereference "$PWD" "$work/mnt/tree" -x target -x .git > "$work/tar.diff" || {
      cat "$work/tar.diff"
      return 1
    }
  done
  echo "extractions=$n, every file equal"
}
run_crashing tar tar_app

rsync_app() {
  local until=$(( $(date +%s) + seconds )) n=0 changes
  while [ "$(date +%s)" -lt "$until" ]; do
    n=$((n + 1))
    # Every other round starts from a tree with files to delete and to replace.
    if [ $((n % 2)) -eq 0 ]; then
      mkdir -p "$work/mnt/synced/stale"
      echo stale > "$work/mnt/synced/stale/f"
      echo changed > "$work/mnt/synced/README.md"
    fi
    rsync -a --delete --exclude=target --exclude=.git "$PWD/" "$work/mnt/synced/"
    changes=$(rsync -a --delete --checksum --dry-run --itemize-changes \
      --exclude=target --exclude=.git "$PWD/" "$work/mnt/synced/")
    if [ -n "$changes" ]; then
      echo "round $n: the copy differs from the original:"
      echo "$changes"
      return 1
    fi
  done
  echo "syncs=$n, every file equal by checksum"
}
run_crashing rsync rsync_app

run_crashing mmap python3 tests/peers/apps/mmap-app.py "$work/mnt/mapped" "$seconds"
run_crashing locks python3 tests/peers/apps/locks-app.py "$work/mnt" "$seconds"

make_app() {
  local dir=$1 until=$(( $(date +%s) + seconds )) n=0
  mkdir -p "$dir"
  for i in $(seq 1 24); do
    printf 'int f%d(int x) { return x + %d; }\n' "$i" "$i" > "$dir/f$i.c"
  done
  {
    for i in $(seq 1 24); do printf 'int f%d(int);\n' "$i"; done
    printf 'int main(void) { int s = 0;\n'
    for i in $(seq 1 24); do printf ' s = f%d(s);\n' "$i"; done
    printf ' return s == 300 ? 0 : 1; }\n'
  } > "$dir/main.c"
  printf 'OBJS = $(patsubst %%.c,%%.o,$(wildcard *.c))\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n' > "$dir/Makefile"
  while [ "$(date +%s)" -lt "$until" ]; do
    n=$((n + 1))
    rm -f "$dir"/*.o "$dir/prog"
    make -s -j2 -C "$dir" prog
    "$dir/prog"
  done
  echo "builds=$n, each ran and returned 0"
}
run_crashing make make_app "$work/mnt/build"

umount "$work/mnt" 2>/dev/null || fusermount3 -u "$work/mnt" 2>/dev/null || teardown "$work/mnt" "$PFS_PID"
wait "$PFS_PID" 2>/dev/null || true
PFS_PID=
exit $failed
