#!/usr/bin/env bash
# Another user on a root fuse-wrap mount with allow_other (libfuse's passthrough_ll as root,
# which opens every file as root and checks no permissions itself): the kernel checks them,
# since fuse-wrap turns default_permissions on. uid 65534 (setpriv) may not read a 0600 file,
# write into a 0755 directory, chmod, unlink or rename root's files, and may not take the
# wrapped mount through the keeper; what it may do (read a 0644 file, work in a 1777
# directory) it can. The same with `nodefault_permissions` shows why: the stock server alone
# lets it read the 0600 file.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/peers/lib.sh
. tests/peers/wrap-lib.sh
WRAP_BIN=${WRAP_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-wrap}
keeper_work wrap-hostile bin
chmod 755 "$work/src"
m=$work/mnt
gcc -O2 -o "$work/bin/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c $(pkg-config --cflags --libs fuse3)
echo secret > "$work/src/secret"; chmod 600 "$work/src/secret"
echo public > "$work/src/public"; chmod 644 "$work/src/public"
mkdir -m 755 "$work/src/rootdir"; mkdir -m 1777 "$work/src/shared"

# start_wrap OPTIONS
start_wrap() {
  "$WRAP_BIN" -o "tag=wrap-hostile,nokeeper_start,allow_other$1" "$m" -- "$work/bin/passthrough_ll" -f -o "source=$work/src" %m 2>> "$work/wrap.log" &
  PFS_PID=$!
  wrap_mounted "$m"
}
stop_wrap() { wrap_stop "$m"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
failed=0
# refused WHAT CMD...: the command, run as uid 65534, must fail.
refused() {
  local what=$1
  shift
  if as_nobody "$@" > /dev/null 2>&1; then
    echo "FAILED: uid 65534 could $what"; failed=1
  else
    echo "refused: uid 65534 may not $what"
  fi
}
allowed() {
  local what=$1
  shift
  if as_nobody "$@" > /dev/null 2>&1; then
    echo "allowed: uid 65534 may $what"
  else
    echo "FAILED: uid 65534 could not $what"; failed=1
  fi
}

start_wrap ""
refused "read root's 0600 file" cat "$m/secret"
refused "write root's 0644 file" sh -c "echo x >> '$m/public'"
refused "create in root's 0755 directory" touch "$m/rootdir/new"
refused "chmod root's file" chmod 666 "$m/secret"
refused "unlink root's file" rm -f "$m/public"
refused "rename root's file" mv "$m/public" "$m/shared/stolen"
refused "unmount the wrapped mount through the keeper" "$KEEPER_BIN" umount "$m"
mounted "$m" || { echo "FAILED: the mount is gone"; failed=1; }
allowed "read a 0644 file" cat "$m/public"
# (passthrough_ll as root creates it as root: removing it is then the sticky bit's to refuse,
# as on the bare server.)
allowed "create and write a file in a 1777 directory" \
  sh -c "echo mine > '$m/shared/mine' && [ \"\$(cat '$m/shared/mine')\" = mine ]"
[ "$(cat "$work/src/secret")" = secret ] && [ -e "$work/src/public" ] || { echo "FAILED: root's files changed"; failed=1; }
stop_wrap

# The refusals above are the kernel's: without its checks the stock server lets anyone read
# anything (the premise of this test, checked).
start_wrap ",nodefault_permissions"
if as_nobody cat "$m/secret" > /dev/null 2>&1; then
  echo "premise: with nodefault_permissions passthrough_ll alone lets uid 65534 read it"
else
  echo "FAILED: with nodefault_permissions the read was refused too: the checks above prove nothing"; failed=1
fi
stop_wrap
[ "$failed" -eq 0 ] || tail -20 "$work/wrap.log"
exit "$failed"
