#!/usr/bin/env bash
# The Debian package on a clean Debian bookworm, under a real systemd (pid 1 of a
# systemd-nspawn container booted from a debootstrapped rootfs with only the package's
# dependencies added): `dpkg -i` of scripts/package-deb's package, then its units: socket
# activation of the keeper, passthroughfs@.service as
# Type=notify (MainPID, StatusText), a kill -9 of the server restarted by systemd with a file
# open across it still readable, `systemctl reload` moving MainPID to the new server with the
# unit active throughout, a keeper killed and restarted on systemd's socket, and `systemctl
# stop` unmounting; then the demo run from the installed package (fuse-recovery-demo), and
# `dpkg --purge`.
#
# Needs root, /dev/fuse, systemd-container (systemd-nspawn), dpkg-deb, and a rootfs:
# ROOTFS=DIR (made once with `debootstrap --variant=minbase --include=$PACKAGES bookworm DIR
# http://deb.debian.org/debian`, about a minute and a half; never committed). Without ROOTFS
# it is made under /var/tmp/pfs-systemd-rootfs and kept for the next run. The container runs
# on a throw-away overlay of the rootfs (--volatile=overlay), so every run installs the
# package on the same clean system, and is stopped by its pid at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "tests/systemd.sh: run as root" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "tests/systemd.sh: needs /dev/fuse" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "tests/systemd.sh: needs systemd-nspawn (apt install systemd-container)" >&2; exit 1; }
bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
for b in fuse-keeper passthroughfs; do
  [ -x "$bin/$b" ] || { echo "tests/systemd.sh: $bin/$b missing: cargo build --release first" >&2; exit 1; }
done
root=${ROOTFS:-/var/tmp/pfs-systemd-rootfs}
# systemd to boot; fuse3 (the package's dependency) and python3 (the demo's).
packages=systemd,systemd-sysv,dbus,procps,fuse3,python3
if [ -z "${ROOTFS:-}" ] && [ -d "$root" ] && [ "$(cat "$root/.pfs-packages" 2>/dev/null)" != "$packages" ]; then
  echo "the rootfs $root was made with other packages: making it again"
  rm -rf "$root"
fi
if [ ! -x "$root/lib/systemd/systemd" ]; then
  command -v debootstrap >/dev/null || { echo "tests/systemd.sh: needs debootstrap to make $root" >&2; exit 1; }
  echo "making the rootfs $root (debootstrap bookworm with $packages)"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" \
    http://deb.debian.org/debian >/dev/null
  echo "$packages" > "$root/.pfs-packages"
fi
started=$(date +%s)

# What the container boots with: the package (installed once it runs), one instance's config.
deb=$(bash scripts/package-deb "$(mktemp -d /tmp/pfs-systemd-deb.XXXXXX)")
cp "$deb" "$root/root/fuse-recovery.deb"
rm -rf "$(dirname "$deb")"
mkdir -p "$root/etc/passthroughfs" "$root/srv/x" "$root/mnt/x"
printf 'SOURCE=/srv/x\nMOUNTPOINT=/mnt/x\nOPTIONS=tag=x\n' > "$root/etc/passthroughfs/x.conf"
echo "hello from the source" > "$root/srv/x/f"
# The servers' info log in the journal (the old server's handover, the keeper's activation).
mkdir -p "$root/etc/systemd/system/passthroughfs@.service.d"
printf '[Service]\nEnvironment=RUST_LOG=info\n' > "$root/etc/systemd/system/passthroughfs@.service.d/log.conf"
# No getty, no network setup: only what the test needs.
ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd.service"

log=$(mktemp /tmp/pfs-systemd.XXXXXX)
systemd-nspawn --quiet --register=no --keep-unit --volatile=overlay -D "$root" --bind=/dev/fuse \
  --private-network --console=passive -b > "$log" 2>&1 &
nspawn=$!
leader= holder=
cleanup() {
  [ -n "$holder" ] && kill -KILL "$holder" 2>/dev/null || true
  kill -TERM "$nspawn" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
  # What a clean shutdown left: SIGKILL of the container's init ends every process of its pid
  # namespace (and with the last of them its mounts), then nspawn itself.
  [ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null || true
  kill -KILL "$nspawn" 2>/dev/null || true
  wait "$nspawn" 2>/dev/null || true
  [ -n "$holder" ] && wait "$holder" 2>/dev/null || true
  rm -f "$log" "$log.demo"
}
trap cleanup EXIT
fail() {
  echo "tests/systemd.sh: FAILED: $*" >&2
  echo "--- container console:" >&2; cat "$log" >&2
  if [ -n "${leader:-}" ]; then
    echo "--- container journal:" >&2
    nsenter -t "$leader" -a -- journalctl -b --no-pager 2>&1 | grep -v "Scheduled restart\|Stopped fuse\|Started fuse\|fd limit\|Failed with result\|code=exited" | head -n 60 >&2 || true
  fi
  exit 1
}

# The container's pid 1, as the host sees it: nspawn's child whose NSpid ends in 1.
for _ in $(seq 1 600); do
  for child in $(cat /proc/"$nspawn"/task/*/children 2>/dev/null); do
    if awk '/^NSpid:/ { exit !($NF == 1 && NF > 2) }' "/proc/$child/status" 2>/dev/null; then
      leader=$child
    fi
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn" 2>/dev/null || fail "systemd-nspawn exited"
  sleep 0.1
done
[ -n "$leader" ] || fail "no container init found"
inside() { nsenter -t "$leader" -a -- "$@"; }
# Waits up to 60 s for a command in the container to succeed.
until_in() {
  local what=$1; shift
  for _ in $(seq 1 600); do inside "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "$what"
}
until_in "the container did not boot" sh -c 'systemctl is-system-running | grep -qxE "running|degraded"'
inside sh -c '[ "$(cat /proc/1/comm)" = systemd ]' || fail "pid 1 is not systemd"
show() { inside systemctl show -p "$1" --value passthroughfs@x.service; }
echo "booted: systemd $(inside systemctl --version | awk 'NR==1 {print $2}') as pid 1"
inside sh -c '! command -v passthroughfs' >/dev/null || fail "passthroughfs is there before the package"
inside dpkg -i /root/fuse-recovery.deb >/dev/null || fail "dpkg -i of the package"
inside test -x /usr/bin/passthroughfs -a -f /lib/systemd/system/fuse-keeper.socket || fail "the package installed no binaries or units"
inside grep -q '^ExecStart=/usr/bin/passthroughfs ' /lib/systemd/system/passthroughfs@.service || fail "the unit does not run the packaged binary"
echo "ok: dpkg -i $(basename "$deb") on a clean bookworm: $(inside dpkg-query -W -f='${Package} ${Version}' fuse-recovery)"

# 0. Without the socket unit, the keeper binds its own socket (and removes it when stopped).
inside systemctl start fuse-keeper.service || fail "start fuse-keeper.service alone"
until_in "the keeper alone made no socket" test -S /run/fuse-keeper/keeper.sock
inside fuse-keeper ls >/dev/null || fail "the keeper alone does not answer"
inside journalctl -u fuse-keeper.service | grep -q "socket-activated" && fail "activated without a socket unit"
inside systemctl stop fuse-keeper.service
inside test ! -e /run/fuse-keeper/keeper.sock || fail "the keeper left its own socket behind"
echo "ok: fuse-keeper.service alone binds and removes its socket"

# 1. Socket activation: the socket is systemd's, the keeper starts on the first connection.
inside systemctl enable --now fuse-keeper.socket >/dev/null 2>&1
inside test -S /run/fuse-keeper/keeper.sock || fail "fuse-keeper.socket made no socket"
[ "$(inside systemctl is-active fuse-keeper.service || true)" = inactive ] || fail "the keeper ran before any client"

# 2. Type=notify: start returns once the server says READY=1.
inside systemctl start passthroughfs@x.service || fail "start"
[ "$(show ActiveState)" = active ] || fail "not active after start"
[ "$(show StatusText)" = serving ] || fail "StatusText $(show StatusText), not serving"
main=$(show MainPID)
inside sh -c "[ \"\$(cat /proc/$main/comm)\" = passthroughfs ]" || fail "MainPID $main is not the server"
inside grep -qx "hello from the source" /mnt/x/f || fail "the mount does not serve"
[ "$(inside systemctl is-active fuse-keeper.service)" = active ] || fail "the server did not activate the keeper"
inside journalctl -u fuse-keeper.service | grep -q "socket-activated" || fail "the keeper bound its own socket"
echo "ok: started, MainPID $main, StatusText=serving, keeper socket-activated"

# 3. kill -9: systemd restarts the same command line, which re-attaches; a file open across it
# reads.
inside sh -c 'exec 3</mnt/x/f; echo $$ > /run/holder.pid; while [ ! -e /run/go ]; do sleep 0.05; done; cat <&3 > /run/read' &
holder=$!
until_in "the holder never opened the file" sh -c 'ls -l /proc/$(cat /run/holder.pid)/fd | grep -q /mnt/x/f'
inside kill -9 "$main"
until_in "no restart after kill -9" sh -c "p=\$(systemctl show -p MainPID --value passthroughfs@x.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $main ] && [ \"\$(systemctl show -p StatusText --value passthroughfs@x.service)\" = attached ]"
restarted=$(show MainPID)
[ "$(show NRestarts)" = 1 ] || fail "NRestarts $(show NRestarts)"
inside touch /run/go
wait "$holder" || fail "the file open across the crash failed"
holder=
inside grep -qx "hello from the source" /run/read || fail "the file open across the crash read wrong"
echo "ok: kill -9 $main -> restarted as $restarted, StatusText=attached, the open file read"

# 4. systemctl reload: the handover; MainPID moves to the new server, the unit stays active.
exits() { inside journalctl -u passthroughfs@x.service | grep -cE 'Main process exited|Failed with result' || true; }
exits_before=$(exits)
inside systemctl reload passthroughfs@x.service || fail "reload"
reloaded=$(show MainPID)
[ "$reloaded" != "$restarted" ] && [ "$reloaded" != 0 ] || fail "MainPID did not move ($reloaded)"
[ "$(show ActiveState)" = active ] || fail "not active after reload"
[ "$(show StatusText)" = "handed over" ] || fail "StatusText $(show StatusText)"
until_in "the old server $restarted did not exit" sh -c "! kill -0 $restarted"
inside journalctl -u passthroughfs@x.service | grep -q "the connection is handed over; exiting" || fail "the old server did not hand over"
[ "$(exits)" = "$exits_before" ] || fail "systemd saw the main process exit during the reload"
[ "$(show NRestarts)" = 1 ] || fail "restarted by the reload"
[ "$(show ActiveState)" = active ] || fail "not active after the old server exited"
inside grep -qx "hello from the source" /mnt/x/f || fail "the mount does not serve after reload"
echo "ok: reload -> MainPID $restarted -> $reloaded, StatusText=handed over, old server exited, active"

# 5. The new main process is supervised: kill -9 restarts it again.
inside kill -9 "$reloaded"
until_in "no restart after kill -9 of the reloaded server" sh -c "p=\$(systemctl show -p MainPID --value passthroughfs@x.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $reloaded ] && [ \"\$(systemctl show -p StatusText --value passthroughfs@x.service)\" = attached ]"
[ "$(show NRestarts)" = 2 ] || fail "NRestarts $(show NRestarts)"
inside grep -qx "hello from the source" /mnt/x/f || fail "the mount does not serve after the second restart"
echo "ok: kill -9 of the reloaded server $reloaded -> restarted as $(show MainPID), attached"

# 6. The keeper killed: systemd restarts it on the same socket, the server registers again.
keeper=$(inside systemctl show -p MainPID --value fuse-keeper.service)
inside kill -9 "$keeper"
until_in "the keeper was not restarted" sh -c "p=\$(systemctl show -p MainPID --value fuse-keeper.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $keeper ] && fuse-keeper ls | grep -q '^x '"
inside test -S /run/fuse-keeper/keeper.sock || fail "the socket file went with the keeper"
echo "ok: keeper $keeper killed -> restarted on systemd's socket, the mount registered again"

# 7. stop: SIGTERM unmounts, the unit is inactive (not failed).
inside systemctl stop passthroughfs@x.service
[ "$(show ActiveState)" = inactive ] || fail "ActiveState $(show ActiveState) after stop"
inside sh -c '! grep -q " /mnt/x " /proc/self/mountinfo' || fail "still mounted after stop"
echo "ok: stop -> inactive, unmounted"

# 8. The demo from the installed package: a keeper of its own, a server SIGKILLed under load.
inside systemctl stop fuse-keeper.socket fuse-keeper.service
inside fuse-recovery-demo > "$log.demo" 2>&1 || { cat "$log.demo" >&2; fail "the installed demo failed"; }
grep -q "errors seen by applications: 0" "$log.demo" || { cat "$log.demo" >&2; fail "the demo saw errors"; }
echo "ok: fuse-recovery-demo: $(grep -E 'operations|stall' "$log.demo" | tr '\n' ';')"
rm -f "$log.demo"
inside dpkg --purge fuse-recovery >/dev/null || fail "dpkg --purge"
inside sh -c '! command -v passthroughfs && [ ! -e /lib/systemd/system/fuse-keeper.socket ]' >/dev/null || fail "files left after purge"
echo "ok: dpkg --purge removed it"
echo "tests/systemd.sh: all passed in $(( $(date +%s) - started )) s (not counting the rootfs)"
