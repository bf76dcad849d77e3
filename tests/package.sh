#!/usr/bin/env bash
# The Debian package installs, runs and goes away: scripts/package-deb builds it; it is
# installed on this machine with dpkg -i (its dependency, fuse3, is already here), the demo is
# run from the installed files only (fuse-recovery-demo, the binaries on PATH, the man pages
# and completions where they belong), and dpkg --purge removes every file it installed. Then
# `cargo install --path` of each binary crate installs a working binary into a scratch root.
# Run as root; refuses to run if the package is installed already (it would be purged).
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=fuse-recovery
installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" = "ii " ]; }
if installed; then
  echo "package test: $pkg is installed on this machine already; not touching it" >&2
  exit 1
fi
work=$(mktemp -d /tmp/pfs-package.XXXXXX)
purge() { dpkg --purge "$pkg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap purge EXIT
deb=$(bash scripts/package-deb "$work")
dpkg-deb --field "$deb" Package Version Depends
files=$(dpkg-deb --contents "$deb" | awk '{print $6}')
for want in ./usr/bin/fuse-keeper ./usr/bin/passthroughfs ./usr/bin/fuse-recovery-demo \
    ./lib/systemd/system/fuse-keeper.service ./lib/systemd/system/passthroughfs@.service \
    ./lib/systemd/system/passthroughfs-standby@.service \
    ./lib/systemd/system/fuse-keeper.socket ./usr/share/man/man8/passthroughfs.8.gz \
    ./sbin/mount.fuse.passthroughfs ./usr/share/man/man1/fuse-keeper.1.gz \
    ./usr/share/bash-completion/completions/fuse-keeper ./usr/share/doc/$pkg/copyright \
    ./usr/share/doc/$pkg/DEPLOYMENT.md; do
  grep -qxF "$want" <<< "$files" || { echo "package test: $want is not in the package" >&2; exit 1; }
done
dpkg -i "$deb" >/dev/null
installed || { echo "package test: dpkg -i did not install $pkg" >&2; exit 1; }
# Only the installed files: PATH without the build tree, and a directory outside the checkout.
for b in fuse-keeper passthroughfs fuse-recovery-demo; do
  [ "$(command -v "$b")" = "/usr/bin/$b" ] || { echo "package test: $b is not /usr/bin/$b" >&2; exit 1; }
done
grep -q '^ExecStart=/usr/bin/fuse-keeper serve' /lib/systemd/system/fuse-keeper.service
fuse-keeper --version | grep -qx "fuse-keeper $(dpkg-query -W -f='${Version}' "$pkg")"
zcat /usr/share/man/man1/fuse-keeper.1.gz | grep -q '^\.TH fuse-keeper'
zcat /usr/share/man/man8/passthroughfs.8.gz | grep -q '^\.TH passthroughfs 8'
bash -n /usr/share/bash-completion/completions/fuse-keeper
bash -n /usr/share/bash-completion/completions/passthroughfs
(cd "$work" && env -u CARGO_TARGET_DIR PATH=/usr/sbin:/usr/bin:/sbin:/bin:$(dirname "$(command -v python3)") \
  fuse-recovery-demo) > "$work/demo.log" 2>&1 || { cat "$work/demo.log"; echo "package test: the installed demo failed" >&2; exit 1; }
grep -q "errors seen by applications: 0" "$work/demo.log" || { cat "$work/demo.log"; exit 1; }
listed=$(dpkg-query -L "$pkg" | grep -v '/$' || true)
dpkg --purge "$pkg" >/dev/null
! installed || { echo "package test: $pkg still installed after purge" >&2; exit 1; }
while read -r f; do
  [ -d "$f" ] && continue
  if [ -e "$f" ] || [ -L "$f" ]; then echo "package test: $f left after purge" >&2; exit 1; fi
done <<< "$listed"
echo "package: built $(basename "$deb"), installed, demo from the installed files: $(grep -c . "$work/demo.log") lines, 0 application errors; purged, nothing left"
# cargo install --path, reusing the build's target directory (no second build of the deps).
for crate in keeper passthroughfs; do
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} cargo install --quiet --locked --offline \
    --path "$crate" --root "$work/cargo-root"
done
"$work/cargo-root/bin/fuse-keeper" --version
"$work/cargo-root/bin/passthroughfs" --version
echo "cargo install --path keeper, --path passthroughfs: both binaries installed"
