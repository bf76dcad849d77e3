#!/usr/bin/env bash
# The shipped deployment files are well-formed: the systemd units (the keeper's service and
# socket, the server's template and its standby's) pass `systemd-analyze verify` (with ExecStart pointed at the
# built binaries) and have the settings docs/DEPLOYMENT.md relies on, the Kubernetes manifests parse as
# YAML with the kinds and fields docs/DEPLOYMENT.md relies on.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
work=$(mktemp -d /tmp/pfs-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
for unit in deploy/systemd/*.service deploy/systemd/*.socket; do
  sed "s|/usr/local/bin/|$bin/|g" "$unit" > "$work/$(basename "$unit")"
done
has() { # FILE LINE: the unit has exactly this line
  grep -qxF -- "$2" "deploy/systemd/$1" || { echo "deploy/systemd/$1 lacks: $2" >&2; exit 1; }
}
has fuse-keeper.service 'Restart=always'
has fuse-keeper.service 'KillMode=process'
has fuse-keeper.service 'RuntimeDirectoryPreserve=yes'
has fuse-keeper.socket 'ListenSequentialPacket=/run/fuse-keeper/keeper.sock'
has fuse-keeper.socket 'SocketMode=0666'
has fuse-keeper.socket 'DirectoryMode=0755'
has fuse-keeper.socket 'Service=fuse-keeper.service'
has passthroughfs@.service 'Type=notify'
has passthroughfs@.service 'NotifyAccess=all'
has passthroughfs@.service 'ExecStart=/usr/local/bin/passthroughfs -f -o ${OPTIONS} ${SOURCE} ${MOUNTPOINT}'
has passthroughfs@.service 'ExecReload=/usr/local/bin/passthroughfs -o ${OPTIONS} -o handover ${SOURCE} ${MOUNTPOINT}'
has passthroughfs@.service 'ExitType=main'
has passthroughfs@.service 'KillMode=control-group'
has passthroughfs@.service 'Restart=on-failure'
has passthroughfs@.service 'KillSignal=SIGTERM'
has passthroughfs-standby@.service 'Type=notify'
has passthroughfs-standby@.service 'ExecStart=/usr/local/bin/passthroughfs -f -o ${OPTIONS} -o standby ${SOURCE} ${MOUNTPOINT}'
has passthroughfs-standby@.service 'After=fuse-keeper.service fuse-keeper.socket passthroughfs@%i.service'
has passthroughfs-standby@.service 'Restart=on-failure'
mkdir -p "$work/etc"
# verify exits 0 on unknown settings and bad values: any line naming one of the units fails.
verify() {
  local out
  out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$@" 2>&1) || { echo "$out" >&2; exit 1; }
  if grep -F "$work/" <<<"$out" >&2; then
    echo "systemd-analyze verify warned about the units above" >&2
    exit 1
  fi
}
verify "$work/fuse-keeper.service"
verify "$work/fuse-keeper.socket" "$work/fuse-keeper.service"
verify "$work/passthroughfs@example.service"
verify "$work/passthroughfs-standby@example.service"
/usr/bin/python3 - <<'PY'
import yaml
docs = list(yaml.safe_load_all(open("deploy/kubernetes/fuse-keeper-daemonset.yaml")))
kinds = [d["kind"] for d in docs]
assert kinds == ["DaemonSet", "Pod"], kinds
ds = docs[0]["spec"]["template"]["spec"]
assert ds["hostPID"] is True
keeper = ds["containers"][0]
env = {e["name"]: e["value"] for e in keeper["env"]}
assert env["FUSE_KEEPER_SOCKET"] == "/run/fuse-keeper/keeper.sock"
mounts = {m["mountPath"] for m in keeper["volumeMounts"]}
assert {"/run/fuse-keeper", "/sys/fs/fuse/connections", "/dev/fuse"} <= mounts, mounts
server = docs[1]["spec"]["containers"][0]
assert any("tag=" in a for a in server["command"]), server["command"]
PY
echo "deployment files: systemd units (service, socket, template) verified, Kubernetes manifests parsed"
