# Shared by the peer-suite scripts: mount passthroughfs for a suite and always clean up.
# Cleanup never hangs: abort the connection through fusectl, detach the mount, kill the
# server by pid.

PFS_BIN=${PFS_BIN:-${CARGO_TARGET_DIR:-target}/release/passthroughfs}

# How long a script waits for something that must happen (a mount, a keeper answering): only a
# hang takes this long, however loaded the machine is.
PATIENCE_S=${PATIENCE_S:-60}

# wait_for SECONDS COMMAND...: runs COMMAND every 20 ms until it succeeds (status 0) or
# SECONDS have passed (status 1).
wait_for() {
  local until=$(( $(date +%s%N) + $1 * 1000000000 ))
  shift
  until "$@"; do
    [ "$(date +%s%N)" -lt "$until" ] || return 1
    sleep 0.02
  done
}

# mounted MOUNTPOINT: whether MOUNTPOINT is a FUSE connection's mount (from mountinfo).
mounted() { [ -n "$(conn_id "$1")" ]; }

# conn_id MOUNTPOINT: the FUSE connection number, from mountinfo (never stat the mount).
conn_id() {
  awk -v mp="$1" '$5 == mp { split($3, d, ":"); id = d[2] } END { if (id != "") print id }' /proc/self/mountinfo
}

# teardown MOUNTPOINT [PID]: as root, or as the mount's owner (fusectl's abort file is the
# owner's; fusermount3 detaches). Every FUSE mount stacked at MOUNTPOINT goes, topmost first
# (a server killed after mounting and before its keeper had the connection leaves a dead
# mount, and its successor mounts on top of it).
teardown() {
  local mnt=$1 pid=${2:-} id left=16
  while id=$(conn_id "$mnt"); [ -n "$id" ] && [ "$left" -gt 0 ]; do
    left=$((left - 1))
    mountpoint -q /sys/fs/fuse/connections 2>/dev/null || mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
    [ -e "/sys/fs/fuse/connections/$id/abort" ] && echo 1 > "/sys/fs/fuse/connections/$id/abort" || true
    umount -l "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || break
  done
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

# start_pfs SOURCE MOUNTPOINT [OPTIONS]: runs passthroughfs in the foreground in the
# background, sets PFS_PID, waits for the mount.
start_pfs() {
  local src=$1 mnt=$2 opts=${3:-}
  if [ -n "$opts" ]; then
    "$PFS_BIN" -f -o "$opts" "$src" "$mnt" &
  else
    "$PFS_BIN" -f "$src" "$mnt" &
  fi
  PFS_PID=$!
  wait_for "$PATIENCE_S" mounted_or_exited "$mnt" "$PFS_PID" || {
    echo "passthroughfs did not mount $mnt within $PATIENCE_S s" >&2
    return 1
  }
  mounted "$mnt" || { echo "passthroughfs exited before mounting" >&2; return 1; }
}

# mounted_or_exited MOUNTPOINT PID: whether MOUNTPOINT is mounted or PID has exited.
mounted_or_exited() { mounted "$1" || ! kill -0 "$2" 2>/dev/null; }

KEEPER_BIN=${KEEPER_BIN:-${CARGO_TARGET_DIR:-target}/release/fuse-keeper}

# start_keeper DIR: a keeper serving $FUSE_KEEPER_SOCKET, logging to DIR/keeper.log; sets
# KEEPER_PID once it answers (a socket file alone may be a dead keeper's).
start_keeper() {
  "$KEEPER_BIN" serve 2> "$1/keeper.log" &
  KEEPER_PID=$!
  wait_for "$PATIENCE_S" keeper_answers || {
    echo "the keeper did not answer on $FUSE_KEEPER_SOCKET within $PATIENCE_S s" >&2
    return 1
  }
}

# keeper_answers: whether the keeper at $FUSE_KEEPER_SOCKET answers a LIST.
keeper_answers() { "$KEEPER_BIN" ls > /dev/null 2>&1; }

# stop_keeper: kills the keeper started by start_keeper, by pid.
stop_keeper() {
  if [ -n "${KEEPER_PID:-}" ]; then
    kill -KILL "$KEEPER_PID" 2>/dev/null || true
    wait "$KEEPER_PID" 2>/dev/null || true
  fi
  KEEPER_PID=
}

# crash_while WATCH_PID MIN_MS MAX_MS SOURCE MOUNTPOINT OPTIONS LOG [KILLS STOP_FILE]: until
# WATCH_PID exits, SIGKILL the server (PFS_PID) every MIN_MS to MAX_MS milliseconds and start
# it again with the same command line, its stderr to LOG. With KILLS and STOP_FILE, creates
# STOP_FILE once it has killed KILLS times (an fsx_rounds workload then ends after its round)
# and goes on killing until WATCH_PID exits. Leaves the number of kills in KILLS.
crash_while() {
  local watch=$1 min=$2 max=$3 src=$4 mnt=$5 opts=$6 log=$7 enough=${8:-0} stop=${9:-} ms
  KILLS=0
  while kill -0 "$watch" 2>/dev/null; do
    ms=$(( min + RANDOM % (max - min + 1) ))
    sleep "$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))"
    kill -0 "$watch" 2>/dev/null || break
    kill -KILL "$PFS_PID"; wait "$PFS_PID" 2>/dev/null || true
    KILLS=$((KILLS + 1))
    "$PFS_BIN" -f -o "$opts" "$src" "$mnt" 2>> "$log" &
    PFS_PID=$!
    if [ -n "$stop" ] && [ "$KILLS" -ge "$enough" ]; then : > "$stop"; fi
  done
}

# fsx_rounds OPS SEED FILE ARTIFACTS LOG STOP_FILE: fsx rounds of OPS operations each (seeds
# SEED, SEED+1, ...; round N on FILE.N, removed once it is A-OK) until STOP_FILE exists after a
# round, every round's output appended to LOG. Status 0 when every round was A-OK, 1 at the
# first that was not. Run in the background while a loop crashes something and creates
# STOP_FILE once it has done enough: the workload lasts as long as the crashes need, on a fast
# machine or a slow one. fsx's own time per operation grows with the length of a run (about
# 2.9x for twice the operations, on ext4 as on FUSE), so several short rounds cover more
# operations per second than one long run. Leaves "fsx rounds: N A-OK, M operations" in LOG.
fsx_rounds() {
  local ops=$1 seed=$2 file=$3 artifacts=$4 log=$5 stop=$6 round=0
  : > "$log"
  while :; do
    round=$((round + 1))
    if ! fsx -N "$ops" -S "$seed" -P "$artifacts" "$file.$round" > "$log.round" 2>&1 \
      || ! grep -q 'A-OK' "$log.round"; then
      cat "$log.round" >> "$log"
      echo "fsx round $round (seed $seed) FAILED" >> "$log"
      return 1
    fi
    cat "$log.round" >> "$log"
    rm -f "$file.$round"
    [ -e "$stop" ] && break
    seed=$((seed + 1))
  done
  echo "fsx rounds: $round A-OK, $(( round * ops )) operations" >> "$log"
}

# rounds_summary LOG: the "N A-OK, M operations" of an fsx_rounds LOG.
rounds_summary() { sed -n 's/^fsx rounds: //p' "$1"; }

# keeper_work NAME [DIR...]: sets $work to a new /tmp/pfs-NAME.XXXXXX (mode 0755) holding
# src, mnt and the given subdirectories, exports FUSE_KEEPER_SOCKET into it, starts a keeper
# there, and installs an EXIT trap that kills the workload ($WORKLOAD_PID), tears the mount
# down, stops the keeper, runs $ON_CLEANUP if set, and removes the directory.
keeper_work() {
  local name=$1
  shift
  work=$(mktemp -d "/tmp/pfs-$name.XXXXXX")
  chmod 755 "$work"
  mkdir -p "$work/src" "$work/mnt"
  for dir in "$@"; do mkdir -p "$work/$dir"; done
  export FUSE_KEEPER_SOCKET=$work/keeper.sock
  PFS_PID= KEEPER_PID= WORKLOAD_PID=
  trap keeper_work_cleanup EXIT
  start_keeper "$work"
}

keeper_work_cleanup() {
  if [ -n "${WORKLOAD_PID:-}" ]; then kill -KILL "$WORKLOAD_PID" 2>/dev/null || true; fi
  teardown "$work/mnt" "$PFS_PID"
  stop_keeper
  if [ -n "${ON_CLEANUP:-}" ]; then $ON_CLEANUP; fi
  rm -rf "$work"
}

# start_sshd DIR: starts an OpenSSH server for sshfs on 127.0.0.1 only, with its own host key,
# user key, authorized_keys and configuration in DIR (never the system's), on a free port;
# leaves SSHD_PID and writes DIR/ssh_config, the client configuration (`ssh -F`) that reaches it
# as host "wrapped-sshd" with that key and that host key pinned.
start_sshd() {
  local dir=$1 port
  mkdir -p "$dir" /run/sshd
  chmod 700 "$dir"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key"
  cp "$dir/user_key.pub" "$dir/authorized_keys"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$port
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100:30:200
Subsystem sftp internal-sftp
CONF
  echo "[127.0.0.1]:$port $(cat "$dir/host_key.pub")" > "$dir/known_hosts"
  cat > "$dir/ssh_config" <<CONF
Host wrapped-sshd
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $dir/user_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
CONF
  /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2> "$dir/sshd.log" &
  SSHD_PID=$!
  wait_for "$PATIENCE_S" ssh -F "$dir/ssh_config" -o ConnectTimeout=5 wrapped-sshd true 2>/dev/null || {
    echo "the test's sshd did not answer on 127.0.0.1:$port" >&2; cat "$dir/sshd.log" >&2
    return 1
  }
}

# stop_sshd: kills the sshd started by start_sshd (by pid; its sessions end with it).
stop_sshd() {
  if [ -n "${SSHD_PID:-}" ]; then
    kill -TERM "$SSHD_PID" 2>/dev/null || true
    wait "$SSHD_PID" 2>/dev/null || true
  fi
  SSHD_PID=
}
