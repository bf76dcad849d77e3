#!/usr/bin/env bash
# tests/peers/apps-crash.sh on an ordinary user's mount: run as root, it copies the repository
# (without target/ and .git) and the two binaries into a directory uid 65534 can read, and runs
# the copy's apps-crash.sh as uid 65534: that user's own keeper, its passthroughfs mounted
# through fusermount3 and SIGKILLed and restarted by it, its applications. The restarted
# server cannot open file handles and finds inodes again by name.
# Usage: tests/peers/apps-crash-user.sh [SECONDS_PER_APP]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
user=65534
target=${CARGO_TARGET_DIR:-target}
stage=$(mktemp -d /tmp/pfs-apps-user.XXXXXX)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
tar -cf - --exclude=./target --exclude=./.git . | tar -C "$stage" -xf -
mkdir "$stage/bin"
cp "$target/release/passthroughfs" "$target/release/fuse-keeper" "$stage/bin/"
chown -R "$user:$user" "$stage"
echo "as uid $user, in a copy at $stage:"
setpriv --reuid="$user" --regid="$user" --clear-groups -- env -i \
  HOME="$stage" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
  PFS_BIN="$stage/bin/passthroughfs" KEEPER_BIN="$stage/bin/fuse-keeper" \
  bash "$stage/tests/peers/apps-crash.sh" "$seconds"
