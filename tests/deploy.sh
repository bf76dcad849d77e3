#!/usr/bin/env bash
# The shipped deployment files are well-formed: the systemd units pass `systemd-analyze
# verify` (with ExecStart pointed at the built binaries), the Kubernetes manifests parse as
# YAML with the kinds and fields docs/DEPLOYMENT.md relies on.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
work=$(mktemp -d /tmp/pfs-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
for unit in deploy/systemd/*.service; do
  sed "s|/usr/local/bin/|$bin/|g" "$unit" > "$work/$(basename "$unit")"
done
grep -q '^Restart=always$' deploy/systemd/fuse-keeper.service
grep -q '^KillMode=process$' deploy/systemd/fuse-keeper.service
grep -q '^Restart=on-failure$' deploy/systemd/passthroughfs@.service
mkdir -p "$work/etc"
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$work/fuse-keeper.service"
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$work/passthroughfs@example.service"
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
echo "deployment files: systemd units verified, Kubernetes manifests parsed"
